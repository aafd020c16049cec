//! `WsReader`: the connection's WebSocket frame reader, with the media hot path fused in.

use crate::buffer::Bytes;
use crate::hotpath::{message_limit, pcm_bytes, PyInbound};
use crate::turns::PyTurns;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyTuple};
use voxmedia::wire::twilio::Event;
use voxmedia::wire::ws::{FrameReader, Next};

/// Item kinds `next` returns beyond the data opcodes 0, 1 and 2.
const CONTROL: i32 = 8;
const MEDIA: i32 = 16;
const EVENT: i32 = 17;
const ERROR: i32 = 18;
const TURN: i32 = 19;
const HANDOFF: i32 = -1;

/// Reads client frames from socket bytes; see `voxmedia::wire::ws` for what it judges itself.
///
/// `next(inbound)` returns the next item, or `None` when more bytes are needed:
/// - `(opcode, payload, fin)` for a data frame (0 continuation, 1 text, 2 binary);
/// - `(8, frame, True)` for a control frame, raw and still masked, for a full implementation;
/// - with `inbound` given, a whole text frame goes through `inbound` instead and gives
///   `(16, pcm, speech)` for media, `(17, payload, event)` for other events, and
///   `(18, payload, error)` for a malformed message;
/// - with `turns` given too, media PCM goes on into the turn detector, and a media message
///   reaches Python only as `(19, pcm, flags)` when the detector raised flags, or when `audio`
///   is true and an utterance is open (a streaming recogniser wants every frame of it); every
///   other media message is consumed here and counted in `media`;
/// - `(-1, rest, False)` once it meets a frame it must not judge: `rest` is every byte from
///   that frame's first, and the reader is done.
#[pyclass(module = "voxrelay.media", name = "WsReader")]
pub struct PyWsReader {
    inner: FrameReader,
    media: u64,
}

fn item<'py>(
    py: Python<'py>,
    kind: i32,
    a: Bound<'py, PyAny>,
    b: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, [kind.into_pyobject(py)?.into_any(), a, b])
}

#[pymethods]
impl PyWsReader {
    #[new]
    #[pyo3(signature = (max_message_bytes))]
    fn new(max_message_bytes: i128) -> PyResult<Self> {
        Ok(PyWsReader {
            inner: FrameReader::new(message_limit(max_message_bytes, ">= 0")?),
            media: 0,
        })
    }

    /// Appends bytes read from the socket.
    fn feed(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let b = Bytes::extract(data, "data")?;
        self.inner.push(b.as_slice());
        Ok(())
    }

    #[pyo3(signature = (inbound=None, turns=None, audio=false))]
    fn next<'py>(
        &mut self,
        py: Python<'py>,
        inbound: Option<&Bound<'py, PyInbound>>,
        turns: Option<&Bound<'py, PyTurns>>,
        audio: bool,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        loop {
            let out = match self.inner.next_frame() {
                Next::NeedMore => return Ok(None),
                Next::Handoff => {
                    let rest = PyBytes::new(py, &self.inner.take_rest());
                    item(
                        py,
                        HANDOFF,
                        rest.into_any(),
                        PyBool::new(py, false).to_owned().into_any(),
                    )?
                }
                Next::Control { frame } => {
                    let raw = PyBytes::new(py, &self.inner.bytes()[frame]);
                    item(
                        py,
                        CONTROL,
                        raw.into_any(),
                        PyBool::new(py, true).to_owned().into_any(),
                    )?
                }
                Next::Data {
                    opcode: 1,
                    fin: true,
                    payload,
                } if inbound.is_some() => {
                    let inbound = inbound.expect("checked");
                    let msg = &self.inner.bytes()[payload];
                    let mut inb = inbound.try_borrow_mut()?;
                    match inb.step_raw(msg) {
                        Ok((Event::Media, speech)) => {
                            self.media += 1;
                            match (turns, speech) {
                                (None, speech) => item(
                                    py,
                                    MEDIA,
                                    pcm_bytes(py, inb.output())?.into_any(),
                                    speech.into_pyobject(py)?.into_any(),
                                )?,
                                // Nothing released (the jitter buffer waits): nothing to feed.
                                (Some(_), None) => continue,
                                (Some(turns), Some(speech)) => {
                                    let mut t = turns.try_borrow_mut()?;
                                    let flags = t.inner.feed(inb.output(), speech);
                                    if flags == 0 && !(audio && t.inner.in_speech()) {
                                        continue;
                                    }
                                    item(
                                        py,
                                        TURN,
                                        pcm_bytes(py, inb.output())?.into_any(),
                                        flags.into_pyobject(py)?.into_any(),
                                    )?
                                }
                            }
                        }
                        Ok((event, _)) => item(
                            py,
                            EVENT,
                            PyBytes::new(py, msg).into_any(),
                            inb.event_name(py, event).into_bound(py).into_any(),
                        )?,
                        Err(e) => item(
                            py,
                            ERROR,
                            PyBytes::new(py, msg).into_any(),
                            e.to_string().into_pyobject(py)?.into_any(),
                        )?,
                    }
                }
                Next::Data {
                    opcode,
                    fin,
                    payload,
                } => {
                    let data = PyBytes::new(py, &self.inner.bytes()[payload]);
                    item(
                        py,
                        i32::from(opcode),
                        data.into_any(),
                        PyBool::new(py, fin).to_owned().into_any(),
                    )?
                }
            };
            return Ok(Some(out));
        }
    }

    /// Media messages run through the inbound path by this reader so far.
    #[getter]
    fn media(&self) -> u64 {
        self.media
    }

    /// Stops the reader and returns the bytes not yet returned as frames.
    fn take_rest<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.take_rest())
    }

    /// Bytes fed but not yet returned as frames.
    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }

    #[getter]
    fn stopped(&self) -> bool {
        self.inner.stopped()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWsReader>()?;
    Ok(())
}
