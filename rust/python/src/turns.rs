//! `TurnDetector`: turn-taking over VAD decisions (see `voxmedia::turns`).
//!
//! Subclassable so that `voxrelay.turns.TurnDetector` can refuse bools and non-integers with
//! its own messages while every per-frame method is Rust. Ranges are checked once, by
//! `TurnConfig::from_ms` and `TurnDetector::configure` in voxmedia.

use crate::buffer::{pcm16_samples, Bytes};
use crate::hotpath::pcm_bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use voxmedia::turns::{TurnConfig, TurnDetector};

#[pyclass(module = "voxrelay.media", name = "TurnDetector", subclass)]
pub struct PyTurns {
    pub(crate) inner: TurnDetector,
}

#[pymethods]
impl PyTurns {
    #[new]
    #[pyo3(signature = (*, rate=16000, start_ms=80, end_ms=500, barge_in_ms=150, preroll_ms=200,
                        max_utterance_ms=30000, keep_tail_ms=100, pause_ms=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        rate: i64,
        start_ms: i64,
        end_ms: i64,
        barge_in_ms: i64,
        preroll_ms: i64,
        max_utterance_ms: i64,
        keep_tail_ms: i64,
        pause_ms: i64,
    ) -> PyResult<Self> {
        let cfg = TurnConfig::from_ms(
            rate,
            start_ms,
            end_ms,
            barge_in_ms,
            preroll_ms,
            max_utterance_ms,
            keep_tail_ms,
            pause_ms,
        )
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

    #[pyo3(signature = (*, end_ms=None, pause_ms=None, barge_in_ms=None))]
    fn configure(
        &mut self,
        end_ms: Option<i64>,
        pause_ms: Option<i64>,
        barge_in_ms: Option<i64>,
    ) -> PyResult<()> {
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
