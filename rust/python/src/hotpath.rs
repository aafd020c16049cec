//! The per-message hot path: `TwilioInbound` and `TwilioOutbound`, one Rust call per message.

use crate::buffer::{pcm16_samples, Bytes};
use crate::errors::{media_err, FrameError};
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use voxmedia::g711::Law;
use voxmedia::pipeline::{
    Inbound, InboundConfig, Outbound, PipelineError, INBOUND_FRAME_MS, OUTBOUND_FRAME_MS, WIRE_RATE,
};
use voxmedia::resample::Quality;
use voxmedia::wire::twilio::Event;

fn parse_law(codec: &str) -> PyResult<Law> {
    match codec {
        "ulaw" | "pcmu" | "mulaw" => Ok(Law::Ulaw),
        "alaw" | "pcma" => Ok(Law::Alaw),
        _ => Err(PyValueError::new_err(format!(
            "codec {codec:?} is not supported; valid: 'ulaw' or 'alaw'"
        ))),
    }
}

const EVENTS: [Event; 8] = [
    Event::Connected,
    Event::Start,
    Event::Media,
    Event::Dtmf,
    Event::Mark,
    Event::Stop,
    Event::Clear,
    Event::Other,
];

fn event_index(e: Event) -> usize {
    EVENTS
        .iter()
        .position(|&x| x == e)
        .unwrap_or(EVENTS.len() - 1)
}

/// PCM16 samples as a new little-endian `bytes`. On little-endian hosts that is one copy
/// straight from the samples (`PyBytes::new_with` zero-fills first and then converts sample by
/// sample; this runs on every inbound message).
pub(crate) fn pcm_bytes<'py>(py: Python<'py>, pcm: &[i16]) -> PyResult<Bound<'py, PyBytes>> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: `pcm` is valid for `2 * len` bytes, which are its LE encoding on this host;
        // CPython copies them into a new object and returns a new reference or NULL with an
        // exception set.
        unsafe {
            let p = pyo3::ffi::PyBytes_FromStringAndSize(
                pcm.as_ptr().cast(),
                (pcm.len() * 2) as pyo3::ffi::Py_ssize_t,
            );
            Ok(Bound::from_owned_ptr_or_err(py, p)?.cast_into_unchecked())
        }
    }
    #[cfg(not(target_endian = "little"))]
    {
        PyBytes::new_with(py, pcm.len() * 2, |buf| {
            for (o, s) in buf.chunks_exact_mut(2).zip(pcm) {
                o.copy_from_slice(&s.to_le_bytes());
            }
            Ok(())
        })
    }
}

/// Inbound half of a Twilio Media Streams call.
///
/// `process(message)` takes one WebSocket text message exactly as received and returns
/// `(event, pcm, speech)`: the event name, the PCM16 at `out_rate` that the message released
/// (empty for non-media events, or while the jitter buffer waits for a reordered frame), and
/// the VAD decision of the last released frame (`None` when none was released). Non-media
/// messages are only classified: parse them with your JSON library. The PCM is resampled at
/// `quality`, `"phone"` unless given (see `Resampler`: G.711's noise hides the difference from
/// `"voice"`, and it is sooner).
#[pyclass(module = "voxrelay.media", name = "TwilioInbound")]
pub struct PyInbound {
    inner: Inbound,
    events: Vec<Py<PyString>>,
}

/// Integer settings are taken as i128, so that one out of the engine's integer types (a
/// negative rate, a frame of 2**40 ms) raises the ValueError naming it and the valid values
/// that an in-range bad value gets, not PyO3's OverflowError.
fn setting<T: TryFrom<i128>>(v: i128, name: &'static str, valid: &'static str) -> PyResult<T> {
    T::try_from(v).map_err(|_| {
        PyValueError::new_err(
            PipelineError::Setting {
                name,
                value: v,
                valid,
            }
            .to_string(),
        )
    })
}

fn rate(v: i128) -> PyResult<u32> {
    crate::resample::rate_arg(v).map_err(PyValueError::new_err)
}

/// A message size limit: negative is refused; past `usize::MAX` it is no limit, as
/// `usize::MAX` is.
pub(crate) fn message_limit(v: i128, valid: &'static str) -> PyResult<usize> {
    if v < 0 {
        return setting(v, "max_message_bytes", valid);
    }
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

#[pymethods]
impl PyInbound {
    #[new]
    #[pyo3(signature = (*, out_rate=16000, codec="ulaw", frame_ms=20, max_message_bytes=65536, reorder_window=2, quality="phone"))]
    fn new(
        py: Python<'_>,
        out_rate: i128,
        codec: &str,
        frame_ms: i128,
        max_message_bytes: i128,
        reorder_window: i128,
        quality: &str,
    ) -> PyResult<Self> {
        let cfg = InboundConfig {
            out_rate: rate(out_rate)?,
            frame_ms: setting(frame_ms, "frame_ms", INBOUND_FRAME_MS)?,
            law: parse_law(codec)?,
            max_message_bytes: message_limit(max_message_bytes, ">= 256")?,
            reorder_window: setting(reorder_window, "reorder_window", "1..=50")?,
            quality: Quality::from_name(quality).map_err(media_err)?,
            ..InboundConfig::default()
        };
        let inner = Inbound::new(cfg).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let events = EVENTS
            .iter()
            .map(|e| PyString::intern(py, e.name()).unbind())
            .collect();
        Ok(PyInbound { inner, events })
    }

    fn process<'py>(
        &mut self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<(Py<PyString>, Bound<'py, PyBytes>, Option<bool>)> {
        let step = if let Ok(s) = message.cast::<PyString>() {
            self.inner.process(s.to_str()?.as_bytes())
        } else {
            let b = Bytes::extract(message, "message")?;
            self.inner.process(b.as_slice())
        }
        .map_err(|e| FrameError::new_err(e.to_string()))?;
        let out = pcm_bytes(py, self.inner.output())?;
        Ok((
            self.events[event_index(step.event)].clone_ref(py),
            out,
            step.speech,
        ))
    }

    /// Jitter-buffer counters plus the VAD's current level and noise floor.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = crate::jitter::stats_dict(py, &self.inner.jitter().stats())?;
        d.set_item("level_dbfs", self.inner.vad().level_dbfs())?;
        d.set_item("noise_floor_dbfs", self.inner.vad().noise_floor_dbfs())?;
        Ok(d)
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    #[getter]
    fn out_rate(&self) -> u32 {
        self.inner.out_rate()
    }

    /// The resampler's quality name, or `None` for output at 8 kHz (nothing to resample).
    #[getter]
    fn quality(&self) -> Option<&'static str> {
        self.inner.quality().map(Quality::name)
    }

    #[getter]
    fn latency_ms(&self) -> f64 {
        self.inner.latency_ms()
    }
}

/// Outbound half: agent audio -> Twilio `media` messages of one frame each.
///
/// Audio is PCM16 at `in_rate` (`process(pcm)`), or G.711 codes of `codec` at 8 kHz
/// (`process_codes(codes, last=True)`: no resampling or encoding). Each returns the messages
/// that are complete (a partial frame waits for more audio); switching form sends what waits
/// in the other form first, padded to a frame with silence. `flush()` ends an utterance,
/// padding the last frame with silence; `reset()` drops what is pending (barge-in). The
/// `*_frames` variants return each message as a whole unmasked WebSocket text frame
/// (`bytes`, header included) for a server that writes its own frames. Pace the messages at
/// 1x real time.
///
/// PCM at another rate than 8 kHz is resampled at `quality`, `"phone"` unless given: the
/// codec's own noise hides the difference from `"voice"`, and it costs 7-16% less per frame
/// and ~1 ms less delay (see `Resampler`).
#[pyclass(module = "voxrelay.media", name = "TwilioOutbound")]
pub struct PyOutbound {
    inner: Outbound,
}

impl PyOutbound {
    fn feed(&mut self, pcm: &Bound<'_, PyAny>) -> PyResult<()> {
        let b = Bytes::extract(pcm, "pcm")?;
        self.inner.process(&pcm16_samples(b.as_slice())?);
        Ok(())
    }

    fn feed_codes(&mut self, codes: &Bound<'_, PyAny>, last: bool) -> PyResult<()> {
        let b = Bytes::extract(codes, "codes")?;
        self.inner.process_codes(b.as_slice(), last);
        Ok(())
    }

    /// The messages of the last call as a list of `str`. Per 20 ms frame this is most of the
    /// boundary's cost beyond the call itself, so: the list is created at its final size (no
    /// growth), and each string is made by the ASCII codec, which copies without the UTF-8
    /// decoder's validation (both are in the stable ABI the wheel is built for; `PyUnicode_New`
    /// is not).
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        new_list(py, self.inner.messages(), |m| {
            // Built from ASCII base64, JSON punctuation and an escaped stream id: always ASCII
            // (the codec would raise on anything else rather than build a wrong string).
            // SAFETY: `m` is valid for m.len() bytes; NULL errors is the strict handler.
            unsafe {
                ffi::PyUnicode_DecodeASCII(
                    m.as_ptr().cast(),
                    m.len() as ffi::Py_ssize_t,
                    std::ptr::null(),
                )
            }
        })
    }

    /// The same messages as whole WebSocket text frames, a list of `bytes`.
    fn take_frames<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        new_list(py, self.inner.frames(), |f| {
            // SAFETY: `f` is valid for f.len() bytes, which the new object copies.
            unsafe { ffi::PyBytes_FromStringAndSize(f.as_ptr().cast(), f.len() as ffi::Py_ssize_t) }
        })
    }
}

/// A list created at its final size from `items`, each made into a new object by `make` (which
/// returns a new reference, or NULL with an exception set).
fn new_list<'py, 'a>(
    py: Python<'py>,
    items: impl ExactSizeIterator<Item = &'a [u8]>,
    make: impl Fn(&[u8]) -> *mut ffi::PyObject,
) -> PyResult<Bound<'py, PyList>> {
    // SAFETY: PyList_New returns a new reference (or NULL with an exception set); its n slots
    // are NULL until each is set exactly once below (a list dropped with NULL slots is valid).
    let list = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyList_New(items.len() as ffi::Py_ssize_t))?
    };
    for (i, item) in items.enumerate() {
        // SAFETY: `make` returns a new reference or NULL with an exception set.
        let obj = unsafe { Bound::from_owned_ptr_or_err(py, make(item))? };
        // SAFETY: `i` is a fresh slot of a list nobody else has seen; SetItem steals the
        // reference.
        unsafe { ffi::PyList_SetItem(list.as_ptr(), i as ffi::Py_ssize_t, obj.into_ptr()) };
    }
    // SAFETY: `list` is a list object.
    Ok(unsafe { list.cast_into_unchecked() })
}

#[pymethods]
impl PyOutbound {
    #[new]
    #[pyo3(signature = (stream_sid, in_rate, *, codec="ulaw", frame_ms=20, quality="phone"))]
    fn new(
        stream_sid: &str,
        in_rate: i128,
        codec: &str,
        frame_ms: i128,
        quality: &str,
    ) -> PyResult<Self> {
        let q = Quality::from_name(quality).map_err(media_err)?;
        let in_rate = rate(in_rate)?;
        let frame_ms = setting(frame_ms, "frame_ms", OUTBOUND_FRAME_MS)?;
        let inner = Outbound::new(stream_sid, in_rate, parse_law(codec)?, frame_ms, q)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyOutbound { inner })
    }

    fn process<'py>(
        &mut self,
        py: Python<'py>,
        pcm: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.feed(pcm)?;
        self.take(py)
    }

    fn process_frames<'py>(
        &mut self,
        py: Python<'py>,
        pcm: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.feed(pcm)?;
        self.take_frames(py)
    }

    #[pyo3(signature = (codes, *, last=true))]
    fn process_codes<'py>(
        &mut self,
        py: Python<'py>,
        codes: &Bound<'py, PyAny>,
        last: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        self.feed_codes(codes, last)?;
        self.take(py)
    }

    #[pyo3(signature = (codes, *, last=true))]
    fn process_codes_frames<'py>(
        &mut self,
        py: Python<'py>,
        codes: &Bound<'py, PyAny>,
        last: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        self.feed_codes(codes, last)?;
        self.take_frames(py)
    }

    fn flush<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.inner.flush();
        self.take(py)
    }

    fn flush_frames<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.inner.flush();
        self.take_frames(py)
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    /// Audio waiting for a whole frame, in ms.
    #[getter]
    fn pending_ms(&self) -> f64 {
        self.inner.pending_samples() as f64 * 1000.0 / WIRE_RATE as f64
    }

    #[getter]
    fn in_rate(&self) -> u32 {
        self.inner.in_rate()
    }

    /// The resampler's quality name, or `None` for PCM at 8 kHz (nothing to resample).
    #[getter]
    fn quality(&self) -> Option<&'static str> {
        self.inner.quality().map(Quality::name)
    }

    #[getter]
    fn latency_ms(&self) -> f64 {
        self.inner.latency_ms()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyInbound>()?;
    m.add_class::<PyOutbound>()?;
    Ok(())
}

impl PyInbound {
    /// One message for the fused socket reader when a turn detector takes the PCM first:
    /// nothing is built for Python unless the frame turns out to matter.
    pub(crate) fn step_raw(
        &mut self,
        message: &[u8],
    ) -> Result<(Event, Option<bool>), voxmedia::wire::FrameError> {
        let step = self.inner.process(message)?;
        Ok((step.event, step.speech))
    }

    /// The PCM the last `step_raw` released.
    pub(crate) fn output(&self) -> &[i16] {
        self.inner.output()
    }

    /// The interned name of an event.
    pub(crate) fn event_name(&self, py: Python<'_>, e: Event) -> Py<PyString> {
        self.events[event_index(e)].clone_ref(py)
    }
}
