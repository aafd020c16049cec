//! `Vad`: streaming voice activity detection on PCM16 bytes.

use crate::buffer::{pcm_samples, Bytes};
use crate::errors::media_err;
use pyo3::prelude::*;
use pyo3::types::PyList;
use voxmedia::vad::{Vad as CoreVad, VadConfig, VadError};

/// Voice activity detector for 16-bit little-endian mono PCM (8, 16, 24 or 48 kHz).
///
/// Multi-band SNR against adaptive noise floors, so coloured line noise (hum, rumble, hiss)
/// is not taken for speech; a hangover keeps quiet word tails. Decisions are per frame with no
/// lookahead (`latency_ms` is 0); the first two frames after construction or `reset` only
/// prime the filters and floors and are never speech.
///
/// The keyword-only tuning arguments mirror `voxmedia::vad::VadConfig` (defaults were tuned
/// on 8 kHz mu-law calls under white, pink, brown and hum noise down to 0 dB SNR): raise
/// `threshold` or `onset_ms` for fewer false barge-ins, raise `hangover_ms` to keep more of
/// word tails.
#[pyclass(module = "voxrelay._media", name = "Vad")]
pub struct PyVad {
    inner: CoreVad,
    out: Vec<bool>,
}

#[pymethods]
impl PyVad {
    #[new]
    #[pyo3(signature = (
        sample_rate, *, frame_ms=20, threshold=None, release=None, band_margin_db=None,
        band_cap_db=None, spread_factor=None, min_level_dbfs=None, min_band_dbfs=None, quant_snr_db=None, onset_ms=None, strong_factor=None, hangover_ms=None,
        noise_adapt_ms=None, noise_rise_ms=None, noise_fall_ms=None, band_weights=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        sample_rate: i128,
        frame_ms: i128,
        threshold: Option<f32>,
        release: Option<f32>,
        band_margin_db: Option<f32>,
        band_cap_db: Option<f32>,
        spread_factor: Option<f32>,
        min_level_dbfs: Option<f32>,
        min_band_dbfs: Option<f32>,
        quant_snr_db: Option<f32>,
        onset_ms: Option<i64>,
        strong_factor: Option<f32>,
        hangover_ms: Option<i64>,
        noise_adapt_ms: Option<f32>,
        noise_rise_ms: Option<f32>,
        noise_fall_ms: Option<f32>,
        band_weights: Option<[f32; 5]>,
    ) -> PyResult<Self> {
        let d = VadConfig::default();
        let rate = u32::try_from(sample_rate)
            .map_err(|_| media_err(format!("unsupported sample rate {sample_rate} Hz; valid rates are 8000, 16000, 24000 and 48000 Hz")))?;
        let fms = u32::try_from(frame_ms).map_err(|_| {
            media_err(format!(
                "unsupported frame duration {frame_ms} ms; valid durations are 10, 20 and 30 ms"
            ))
        })?;
        let ms = |name: &str, v: Option<i64>, dflt: u32, hi: u32| -> PyResult<u32> {
            match v {
                None => Ok(dflt),
                Some(x) if (0..=hi as i64).contains(&x) => Ok(x as u32),
                Some(x) => Err(media_err(format!(
                    "{name} = {x} is out of range; valid range is [0, {hi}]"
                ))),
            }
        };
        let release = release.unwrap_or(d.release.min(threshold.unwrap_or(d.threshold)));
        let cfg = VadConfig {
            frame_ms: fms,
            threshold: threshold.unwrap_or(d.threshold),
            release,
            band_margin_db: band_margin_db.unwrap_or(d.band_margin_db),
            band_cap_db: band_cap_db.unwrap_or(d.band_cap_db),
            spread_factor: spread_factor.unwrap_or(d.spread_factor),
            min_level_dbfs: min_level_dbfs.unwrap_or(d.min_level_dbfs),
            min_band_dbfs: min_band_dbfs.unwrap_or(d.min_band_dbfs),
            quant_snr_db: quant_snr_db.unwrap_or(d.quant_snr_db),
            onset_ms: ms("onset_ms", onset_ms, d.onset_ms, 1000)?,
            strong_factor: strong_factor.unwrap_or(d.strong_factor),
            hangover_ms: ms("hangover_ms", hangover_ms, d.hangover_ms, 5000)?,
            noise_adapt_ms: noise_adapt_ms.unwrap_or(d.noise_adapt_ms),
            noise_rise_ms: noise_rise_ms.unwrap_or(d.noise_rise_ms),
            noise_fall_ms: noise_fall_ms.unwrap_or(d.noise_fall_ms),
            band_weights: band_weights.unwrap_or(d.band_weights),
        };
        let inner = CoreVad::new(rate, cfg).map_err(media_err)?;
        Ok(PyVad {
            inner,
            out: Vec::new(),
        })
    }

    /// Decision for exactly one frame (`frame_len` samples, `2 * frame_len` bytes).
    fn is_speech(&mut self, frame: &Bound<'_, PyAny>) -> PyResult<bool> {
        let input = Bytes::extract(frame, "frame")?;
        let bytes = input.as_slice();
        let expected = self.inner.frame_len();
        if bytes.len() != expected * 2 {
            let msg = if bytes.len() % 2 != 0 {
                format!(
                    "frame has {} bytes but exactly {} bytes ({} samples) are needed",
                    bytes.len(),
                    expected * 2,
                    expected
                )
            } else {
                VadError::FrameLength {
                    got: bytes.len() / 2,
                    expected,
                }
                .to_string()
            };
            return Err(media_err(msg));
        }
        let pcm = pcm_samples(bytes);
        self.inner.is_speech(&pcm).map_err(media_err)
    }

    /// One decision per whole frame; a trailing partial frame is kept for the next call.
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        pcm: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let input = Bytes::extract(pcm, "pcm")?;
        let (bytes, detach) = input.for_work();
        if bytes.len() % 2 != 0 {
            return Err(media_err(VadError::OddLength(bytes.len())));
        }
        let samples = pcm_samples(&bytes);
        self.out.clear();
        let (inner, out) = (&mut self.inner, &mut self.out);
        if detach {
            py.detach(|| inner.process(&samples, out));
        } else {
            inner.process(&samples, out);
        }
        PyList::new(py, self.out.iter())
    }

    /// Forget the noise floors, smoothing state and any partial frame.
    fn reset(&mut self) {
        self.inner.reset();
    }

    #[getter]
    fn level_dbfs(&self) -> f32 {
        self.inner.level_dbfs()
    }

    #[getter]
    fn noise_floor_dbfs(&self) -> f32 {
        self.inner.noise_floor_dbfs()
    }

    #[getter]
    fn frame_len(&self) -> usize {
        self.inner.frame_len()
    }

    #[getter]
    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }

    #[getter]
    fn frame_ms(&self) -> u32 {
        self.inner.config().frame_ms
    }

    #[getter]
    fn latency_ms(&self) -> u32 {
        self.inner.latency_ms()
    }

    fn __repr__(&self) -> String {
        format!(
            "Vad(sample_rate={}, frame_ms={})",
            self.inner.sample_rate(),
            self.inner.config().frame_ms
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVad>()?;
    Ok(())
}
