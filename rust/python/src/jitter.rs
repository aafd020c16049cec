//! Jitter buffer and loss concealment bindings. Frames are small (a few hundred bytes), so the
//! GIL is kept: releasing it would cost more than the work.

use crate::buffer::{new_bytes, pcm_samples, Bytes};
use crate::errors::media_err;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use voxmedia::jitter::{Codec, JitterBuffer, JitterConfig, JitterStats, MAX_SEQ};
use voxmedia::plc::Concealer;

fn non_negative(name: &str, v: i128, max: u64) -> PyResult<u64> {
    if v < 0 || v > max as i128 {
        return Err(PyValueError::new_err(format!(
            "{name} = {v} is out of range; valid: 0..={max}"
        )));
    }
    Ok(v as u64)
}

/// Per-packet integer argument: the u64 fast path, falling back to i128 only to word the error.
fn u64_arg(obj: &Bound<'_, PyAny>, name: &str, max: u64) -> PyResult<u64> {
    match obj.extract::<u64>() {
        Ok(v) if v <= max => Ok(v),
        Ok(v) => non_negative(name, v as i128, max),
        Err(e) => match obj.extract::<i128>() {
            Ok(v) => non_negative(name, v, max),
            Err(_) => Err(e),
        },
    }
}

fn pcm_to_bytes<'py>(py: Python<'py>, pcm: &[i16]) -> PyResult<Bound<'py, PyBytes>> {
    new_bytes(py, pcm.len() * 2, |buf| {
        for (o, &x) in buf.chunks_exact_mut(2).zip(pcm) {
            o.copy_from_slice(&x.to_le_bytes());
        }
    })
}

/// Adaptive jitter buffer with G.711 Appendix I loss concealment.
///
/// Two playout modes: `pop` is clock-driven (call once per frame period; the buffer holds audio
/// back by a delay that adapts to the observed jitter), `pop_ready` is arrival-driven for
/// in-order transports (frames come out as soon as they are there; a gap is concealed once
/// `reorder_window` later frames have arrived). Times are milliseconds on one monotonic clock;
/// when `now_ms` is omitted it is `time.monotonic() * 1000`.
#[pyclass(name = "JitterBuffer", module = "voxrelay._media")]
pub struct PyJitterBuffer {
    inner: JitterBuffer,
    out: Vec<i16>,
    clock: Py<PyAny>,
}

impl PyJitterBuffer {
    fn now(&self, py: Python<'_>, now_ms: Option<f64>) -> PyResult<f64> {
        match now_ms {
            Some(t) => Ok(t),
            None => Ok(self.clock.bind(py).call0()?.extract::<f64>()? * 1000.0),
        }
    }
}

#[pymethods]
impl PyJitterBuffer {
    #[new]
    #[pyo3(signature = (*, sample_rate=8000, frame_ms=20, codec="ulaw", min_delay_ms=20, max_delay_ms=500,
                        max_packets=None, quantile=0.97, forget_factor=0.997, reorder_window=2,
                        initial_delay_ms=60))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        sample_rate: i128,
        frame_ms: i128,
        codec: &str,
        min_delay_ms: i128,
        max_delay_ms: i128,
        max_packets: Option<i128>,
        quantile: f64,
        forget_factor: f64,
        reorder_window: i128,
        initial_delay_ms: i128,
    ) -> PyResult<Self> {
        let codec = match codec {
            "ulaw" => Codec::Ulaw,
            "alaw" => Codec::Alaw,
            "pcm16" => Codec::Pcm16,
            other => {
                return Err(PyValueError::new_err(format!(
                    "codec = {other:?} is not supported; valid: 'ulaw', 'alaw', 'pcm16'"
                )))
            }
        };
        let u32max = u32::MAX as u64;
        let frame_ms = non_negative("frame_ms", frame_ms, u32max)? as u32;
        let max_delay_ms = non_negative("max_delay_ms", max_delay_ms, u32max)? as u32;
        let reorder_window = non_negative("reorder_window", reorder_window, 1 << 20)? as usize;
        let max_packets = max_packets
            .map(|n| non_negative("max_packets", n, 1 << 20).map(|n| n as usize))
            .transpose()?;
        let mut cfg = JitterConfig {
            sample_rate: non_negative("sample_rate", sample_rate, u32max)? as u32,
            frame_ms,
            codec,
            min_delay_ms: non_negative("min_delay_ms", min_delay_ms, u32max)? as u32,
            max_delay_ms,
            max_packets: 0,
            quantile,
            forget_factor,
            reorder_window,
            initial_delay_ms: non_negative("initial_delay_ms", initial_delay_ms, u32max)? as u32,
        };
        // Unless given: enough for max_delay_ms, and never fewer than 64 slots.
        cfg.max_packets = max_packets.unwrap_or_else(|| cfg.packets_default());
        let inner = JitterBuffer::new(cfg).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let clock = py.import("time")?.getattr("monotonic")?.unbind();
        Ok(PyJitterBuffer {
            out: vec![0; inner.frame_len()],
            inner,
            clock,
        })
    }

    /// Add one packet. `seq` is the media frame counter (Twilio's `media.chunk`), `payload` one
    /// frame in the configured codec. Returns "accepted", "duplicate", "late", "flushed" or
    /// "restarted".
    #[pyo3(signature = (seq, timestamp_ms, payload, *, now_ms=None))]
    fn push(
        &mut self,
        py: Python<'_>,
        seq: &Bound<'_, PyAny>,
        timestamp_ms: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        now_ms: Option<f64>,
    ) -> PyResult<&'static str> {
        let seq = u64_arg(seq, "seq", MAX_SEQ)?;
        let ts = u64_arg(timestamp_ms, "timestamp_ms", u64::MAX)?;
        let data = Bytes::extract(payload, "payload")?;
        let now = self.now(py, now_ms)?;
        let outcome = self
            .inner
            .push(seq, ts, data.as_slice(), now)
            .map_err(media_err)?;
        Ok(outcome.name())
    }

    /// Clock-driven playout: one frame of PCM16 and its status ("normal", "concealed" or
    /// "silence"). Call once per frame period.
    #[pyo3(signature = (*, now_ms=None))]
    fn pop<'py>(
        &mut self,
        py: Python<'py>,
        now_ms: Option<f64>,
    ) -> PyResult<(Bound<'py, PyBytes>, &'static str)> {
        let now = self.now(py, now_ms)?;
        let status = self.inner.pop_into(&mut self.out, now).map_err(media_err)?;
        Ok((pcm_to_bytes(py, &self.out)?, status.name()))
    }

    /// Arrival-driven playout: the next frame if it can be released now, else None. Call it in
    /// a loop after each push.
    fn pop_ready<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, &'static str)>> {
        match self
            .inner
            .pop_ready_into(&mut self.out)
            .map_err(media_err)?
        {
            Some(status) => Ok(Some((pcm_to_bytes(py, &self.out)?, status.name()))),
            None => Ok(None),
        }
    }

    /// Counters since construction or reset, plus the current and target depth.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.inner.stats())
    }

    /// Forget all packets, timing and statistics.
    fn reset(&mut self) {
        self.inner.reset();
    }

    /// Current target delay plus the concealer's fixed 3.75 ms, in ms.
    #[getter]
    fn latency_ms(&self) -> f64 {
        self.inner.latency_ms()
    }

    /// Samples per frame.
    #[getter]
    fn frame_len(&self) -> usize {
        self.inner.frame_len()
    }

    /// Bytes of one packet's payload.
    #[getter]
    fn payload_len(&self) -> usize {
        self.inner.payload_len()
    }
}

/// G.711 Appendix I loss concealment on its own, for callers that track loss themselves.
/// Output is delayed by `latency_samples` (3.75 ms).
#[pyclass(name = "Concealer", module = "voxrelay._media")]
pub struct PyConcealer {
    inner: Concealer,
    out: Vec<i16>,
}

#[pymethods]
impl PyConcealer {
    #[new]
    fn new(sample_rate: i128, frame_len: i128) -> PyResult<Self> {
        let sr = non_negative("sample_rate", sample_rate, u32::MAX as u64)? as u32;
        let n = non_negative("frame_len", frame_len, 1 << 20)? as usize;
        let inner = Concealer::new(sr, n).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyConcealer {
            out: vec![0; n],
            inner,
        })
    }

    /// A received frame (PCM16); returns the output frame.
    fn good<'py>(
        &mut self,
        py: Python<'py>,
        frame: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = Bytes::extract(frame, "frame")?;
        let bytes = data.as_slice();
        if bytes.len() != self.out.len() * 2 {
            return Err(media_err(format!(
                "frame has {} bytes but the concealer was built for {} (frame_len {} PCM16 samples)",
                bytes.len(),
                self.out.len() * 2,
                self.out.len()
            )));
        }
        for (o, b) in self.out.iter_mut().zip(bytes.chunks_exact(2)) {
            *o = i16::from_le_bytes([b[0], b[1]]);
        }
        self.inner.good_frame(&mut self.out).map_err(media_err)?;
        pcm_to_bytes(py, &self.out)
    }

    /// The output for a lost frame. `lookahead`: PCM16 that follows the lost frame, if already
    /// known (at least 20 ms; 30-40 ms is best): the gap is then cross-faded into it, and it must
    /// be passed to `good` next.
    #[pyo3(signature = (*, lookahead=None))]
    fn lost<'py>(
        &mut self,
        py: Python<'py>,
        lookahead: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        match lookahead {
            None => self.inner.lost_frame(&mut self.out).map_err(media_err)?,
            Some(obj) => {
                let data = Bytes::extract(obj, "lookahead")?;
                let bytes = data.as_slice();
                if bytes.len() % 2 != 0 {
                    return Err(media_err(format!(
                        "lookahead has an odd length of {} bytes; it must be PCM16 (a multiple of 2)",
                        bytes.len()
                    )));
                }
                let ahead = pcm_samples(bytes);
                self.inner
                    .lost_frame_before(&mut self.out, &ahead)
                    .map_err(media_err)?;
            }
        }
        pcm_to_bytes(py, &self.out)
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    #[getter]
    fn latency_samples(&self) -> usize {
        self.inner.latency_samples()
    }

    #[getter]
    fn frame_len(&self) -> usize {
        self.inner.frame_len()
    }
}

/// The jitter counters as a dict; shared with the hot-path pipeline's `stats()`.
pub fn stats_dict<'py>(py: Python<'py>, s: &JitterStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("received", s.received)?;
    d.set_item("late", s.late)?;
    d.set_item("duplicate", s.duplicate)?;
    d.set_item("lost", s.lost)?;
    d.set_item("played", s.played)?;
    d.set_item("concealed", s.concealed)?;
    d.set_item("silence", s.silence)?;
    d.set_item("dropped", s.dropped)?;
    d.set_item("expanded", s.expanded)?;
    d.set_item("flushed", s.flushed)?;
    d.set_item("restarts", s.restarts)?;
    d.set_item("current_depth_ms", s.current_depth_ms)?;
    d.set_item("target_depth_ms", s.target_depth_ms)?;
    d.set_item("buffered_frames", s.buffered_frames)?;
    d.set_item("last_timestamp_ms", s.last_timestamp_ms)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyJitterBuffer>()?;
    m.add_class::<PyConcealer>()?;
    Ok(())
}
