//! G.711 functions: bytes-like in, `bytes` out.

use crate::buffer::{new_bytes, Bytes};
use crate::errors::media_err;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use voxmedia::g711::{G711Error, Law};

fn decode<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    law: Law,
) -> PyResult<Bound<'py, PyBytes>> {
    let input = Bytes::extract(data, "data")?;
    let (codes, detach) = input.for_work();
    new_bytes(py, codes.len() * 2, |out| {
        let mut run = || law.decode_to_le_bytes(&codes, out).expect("sized above");
        if detach {
            py.detach(run)
        } else {
            run()
        }
    })
}

fn encode<'py>(
    py: Python<'py>,
    pcm: &Bound<'py, PyAny>,
    law: Law,
) -> PyResult<Bound<'py, PyBytes>> {
    let input = Bytes::extract(pcm, "pcm")?;
    let (pcm, detach) = input.for_work();
    if pcm.len() % 2 != 0 {
        return Err(media_err(G711Error::OddPcmLength(pcm.len())));
    }
    new_bytes(py, pcm.len() / 2, |out| {
        let mut run = || law.encode_from_le_bytes(&pcm, out).expect("checked above");
        if detach {
            py.detach(run)
        } else {
            run()
        }
    })
}

/// Decode G.711 mu-law codes to PCM16 little-endian.
#[pyfunction]
fn ulaw_decode<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    decode(py, data, Law::Ulaw)
}

/// Decode G.711 A-law codes to PCM16 little-endian.
#[pyfunction]
fn alaw_decode<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    decode(py, data, Law::Alaw)
}

/// Encode PCM16 little-endian to G.711 mu-law (ITU-T G.191 exact).
#[pyfunction]
fn ulaw_encode<'py>(py: Python<'py>, pcm: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    encode(py, pcm, Law::Ulaw)
}

/// Encode PCM16 little-endian to G.711 A-law.
#[pyfunction]
fn alaw_encode<'py>(py: Python<'py>, pcm: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    encode(py, pcm, Law::Alaw)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ulaw_decode, m)?)?;
    m.add_function(wrap_pyfunction!(ulaw_encode, m)?)?;
    m.add_function(wrap_pyfunction!(alaw_decode, m)?)?;
    m.add_function(wrap_pyfunction!(alaw_encode, m)?)?;
    Ok(())
}
