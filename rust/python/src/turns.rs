//! `TurnDetector`: turn-taking over VAD decisions (see `voxmedia::turns`).
//!
//! Subclassable so that `voxrelay.turns.TurnDetector` can keep its Python-level argument
//! checks (type errors for bools and non-integers) while every per-frame method is Rust.

use crate::buffer::{pcm_samples, Bytes};
use crate::errors::media_err;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use voxmedia::turns::{TurnConfig, TurnDetector};

#[pyclass(module = "voxrelay.media", name = "TurnDetector", subclass)]
pub struct PyTurns {
    pub(crate) inner: TurnDetector,
}

fn positive(name: &str, v: i64) -> PyResult<u32> {
    if v < 1 || v > i64::from(u32::MAX) {
        return Err(PyValueError::new_err(format!(
            "{name} must be a positive integer, got {v}"
        )));
    }
    Ok(v as u32)
}

fn ms(name: &str, v: i64, max: i64) -> PyResult<u32> {
    if !(0..=max).contains(&v) {
        return Err(PyValueError::new_err(format!(
            "{name} must be 0..{max}, got {v}"
        )));
    }
    Ok(v as u32)
}

pub(crate) fn pcm_bytes_of<'py>(py: Python<'py>, pcm: &[i16]) -> Bound<'py, PyBytes> {
    PyBytes::new_with(py, pcm.len() * 2, |buf| {
        for (o, s) in buf.chunks_exact_mut(2).zip(pcm) {
            o.copy_from_slice(&s.to_le_bytes());
        }
        Ok(())
    })
    .expect("filling a new bytes object cannot fail")
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
        let cfg = TurnConfig {
            rate: positive("rate", rate)?,
            start_ms: positive("start_ms", start_ms)?,
            end_ms: positive("end_ms", end_ms)?,
            barge_in_ms: positive("barge_in_ms", barge_in_ms)?,
            max_utterance_ms: positive("max_utterance_ms", max_utterance_ms)?,
            preroll_ms: ms("preroll_ms", preroll_ms, 2000)?,
            keep_tail_ms: ms("keep_tail_ms", keep_tail_ms, end_ms)?,
            pause_ms: ms("pause_ms", pause_ms, end_ms)?,
        };
        let inner = TurnDetector::new(cfg).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyTurns { inner })
    }

    /// One released frame (PCM16) and its VAD decision; returns the event flags.
    fn feed(&mut self, pcm: &Bound<'_, PyAny>, speech: bool) -> PyResult<u32> {
        let b = Bytes::extract(pcm, "pcm")?;
        let bytes = b.as_slice();
        if bytes.len() % 2 != 0 {
            return Err(media_err(format!(
                "PCM16 input has an odd length of {} bytes; it must be a multiple of 2",
                bytes.len()
            )));
        }
        Ok(self.inner.feed(&pcm_samples(bytes), speech))
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
        let end = end_ms.map(|v| positive("end_ms", v)).transpose()?;
        let barge = barge_in_ms
            .map(|v| positive("barge_in_ms", v))
            .transpose()?;
        let end_now = i64::from(end.unwrap_or(self.inner.end_ms()));
        let pause = pause_ms
            .map(|v| {
                if (0..end_now).contains(&v) {
                    Ok(v as u32)
                } else {
                    Err(PyValueError::new_err(format!(
                        "pause_ms must be 0 (off) .. end_ms ({end_now}) - 1, got {v}"
                    )))
                }
            })
            .transpose()?;
        self.inner
            .configure(end, pause, barge)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// The open utterance's audio so far, pre-roll included.
    fn audio_so_far<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        pcm_bytes_of(py, self.inner.audio_so_far())
    }

    /// The utterance closed by the last ENDED flag; empty once taken.
    fn utterance<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let out = pcm_bytes_of(py, self.inner.utterance());
        self.inner.clear_utterance();
        out
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
