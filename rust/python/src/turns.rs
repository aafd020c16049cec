//! `TurnDetector`: turn-taking over VAD decisions (see `voxmedia::turns`).
//!
//! Arguments are taken as Python objects and checked here for type only: a bool (which Python
//! would pass as 0 or 1) or anything else that is not an integer is refused with a ValueError
//! naming the argument and its range. Ranges are checked once, by `TurnConfig::from_ms` and
//! `TurnDetector::configure` in voxmedia. None means "not given", as in `configure`: the
//! default in the constructor, unchanged in `configure`.

use crate::buffer::{pcm16_samples, Bytes};
use crate::hotpath::pcm_bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes};
use voxmedia::turns::{TurnConfig, TurnDetector};

/// Collects one caller utterance at a time between VAD onset and trailing silence.
///
/// `feed(pcm, speech) -> flags`; `utterance()` after ENDED; `audio_so_far()` while one is
/// open; `end_after(silence_ms, token)` lets a transcript end the turn early;
/// `configure(...)` changes timing mid-call. Properties: `in_speech`, `position_ms` (the
/// detector's clock: audio fed so far), `speech_start_ms`, `onset_offset_ms`, `silence_ms`,
/// `speech_run_ms`, `pause_count`, `run_token` (the current silence's pause token, -1 before
/// `pause_ms`), `end_ms`. The flag values are in `voxrelay.turns`. `rate` is one of the
/// engine's rates (8000 to 48000 Hz); timings are at most 60000 ms (`max_utterance_ms`
/// 600000), so the buffers sized from them stay small.
#[pyclass(module = "voxrelay.media", name = "TurnDetector")]
pub struct PyTurns {
    pub(crate) inner: TurnDetector,
}

/// `v` as an integer, or a ValueError "`name` must be `what`, got `repr(v)`".
fn integer(v: &Bound<'_, PyAny>, name: &str, what: &str) -> PyResult<i64> {
    let refuse = || -> PyErr {
        let shown = v.repr().map_or_else(|_| "?".to_string(), |r| r.to_string());
        PyValueError::new_err(format!("{name} must be {what}, got {shown}"))
    };
    if v.is_instance_of::<PyBool>() {
        return Err(refuse());
    }
    v.extract::<i64>().map_err(|_| refuse())
}

fn positive(v: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    integer(v, name, "a positive integer")
}

fn pause(v: &Bound<'_, PyAny>, end_ms: impl std::fmt::Display) -> PyResult<i64> {
    integer(v, "pause_ms", &format!("0 (off) .. end_ms ({end_ms}) - 1"))
}

#[pymethods]
impl PyTurns {
    /// Omitted (or None) arguments take `TurnConfig::default()`'s values, which the signature
    /// shows.
    #[new]
    #[pyo3(signature = (*, rate=None, start_ms=None, end_ms=None, barge_in_ms=None,
                        preroll_ms=None, max_utterance_ms=None, keep_tail_ms=None, pause_ms=None))]
    #[pyo3(
        text_signature = "(*, rate=16000, start_ms=80, end_ms=500, barge_in_ms=150, \
                             preroll_ms=200, max_utterance_ms=30000, keep_tail_ms=100, pause_ms=0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        rate: Option<&Bound<'_, PyAny>>,
        start_ms: Option<&Bound<'_, PyAny>>,
        end_ms: Option<&Bound<'_, PyAny>>,
        barge_in_ms: Option<&Bound<'_, PyAny>>,
        preroll_ms: Option<&Bound<'_, PyAny>>,
        max_utterance_ms: Option<&Bound<'_, PyAny>>,
        keep_tail_ms: Option<&Bound<'_, PyAny>>,
        pause_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let d = TurnConfig::default();
        let or = |v: Option<&Bound<'_, PyAny>>,
                  default: u32,
                  check: &dyn Fn(&Bound<'_, PyAny>) -> PyResult<i64>| {
            v.map_or(Ok(default as i64), check)
        };
        // Types first, in `from_ms`'s order; then `from_ms` checks the values.
        let rate = or(rate, d.rate, &|v| positive(v, "rate"))?;
        let start = or(start_ms, d.start_ms, &|v| positive(v, "start_ms"))?;
        let end = or(end_ms, d.end_ms, &|v| positive(v, "end_ms"))?;
        let barge = or(barge_in_ms, d.barge_in_ms, &|v| positive(v, "barge_in_ms"))?;
        let preroll = or(preroll_ms, d.preroll_ms, &|v| {
            integer(v, "preroll_ms", "an integer 0..2000")
        })?;
        let max = or(max_utterance_ms, d.max_utterance_ms, &|v| {
            positive(v, "max_utterance_ms")
        })?;
        let tail = or(keep_tail_ms, d.keep_tail_ms, &|v| {
            integer(v, "keep_tail_ms", &format!("an integer 0..end_ms ({end})"))
        })?;
        let pause_ms = or(pause_ms, d.pause_ms, &|v| pause(v, end))?;
        let cfg = TurnConfig::from_ms(rate, start, end, barge, preroll, max, tail, pause_ms)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let inner = TurnDetector::new(cfg).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyTurns { inner })
    }

    /// One released frame (PCM16) and its VAD decision; returns the event flags.
    fn feed(&mut self, pcm: &Bound<'_, PyAny>, speech: bool) -> PyResult<u32> {
        let b = Bytes::extract(pcm, "pcm")?;
        Ok(self.inner.feed(&pcm16_samples(b.as_slice())?, speech))
    }

    fn end_after(&mut self, silence_ms: f64, token: i64) -> u32 {
        self.inner.end_after(silence_ms, token)
    }

    /// Changes timing mid-call (the agent knows what it needs); checked like the constructor.
    #[pyo3(signature = (*, end_ms=None, pause_ms=None, barge_in_ms=None))]
    fn configure(
        &mut self,
        end_ms: Option<&Bound<'_, PyAny>>,
        pause_ms: Option<&Bound<'_, PyAny>>,
        barge_in_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let end_ms = end_ms.map(|v| positive(v, "end_ms")).transpose()?;
        let barge_in_ms = barge_in_ms
            .map(|v| positive(v, "barge_in_ms"))
            .transpose()?;
        let end = end_ms.unwrap_or(self.inner.end_ms() as i64);
        let pause_ms = pause_ms.map(|v| pause(v, end)).transpose()?;
        self.inner
            .configure(end_ms, pause_ms, barge_in_ms)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// The open utterance's audio so far, pre-roll included.
    fn audio_so_far<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        pcm_bytes(py, self.inner.audio_so_far())
    }

    /// The utterance closed by the last ENDED flag; empty once taken.
    fn utterance<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let out = pcm_bytes(py, self.inner.utterance())?;
        self.inner.clear_utterance();
        Ok(out)
    }

    fn reset(&mut self) {
        self.inner.reset();
    }

    #[getter]
    fn in_speech(&self) -> bool {
        self.inner.in_speech()
    }
    #[getter]
    fn run_token(&self) -> i64 {
        self.inner.run_token()
    }
    #[getter]
    fn pause_count(&self) -> i64 {
        self.inner.pause_count()
    }
    #[getter]
    fn silence_ms(&self) -> f64 {
        self.inner.silence_ms()
    }
    #[getter]
    fn speech_run_ms(&self) -> f64 {
        self.inner.speech_run_ms()
    }
    #[getter]
    fn end_ms(&self) -> u32 {
        self.inner.end_ms()
    }
    #[getter]
    fn position_ms(&self) -> f64 {
        self.inner.position_ms()
    }
    #[getter]
    fn speech_start_ms(&self) -> f64 {
        self.inner.speech_start_ms()
    }
    #[getter]
    fn onset_offset_ms(&self) -> f64 {
        self.inner.onset_offset_ms()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTurns>()?;
    Ok(())
}
