//! PyO3 bindings: `voxrelay._media`. Converts arguments, releases the GIL for bulk work, and maps
//! voxmedia's error enums to Python exceptions. No DSP lives here.

use pyo3::prelude::*;

mod buffer;
mod errors;
mod g711;
mod hotpath;
mod jitter;
mod resample;
mod turns;
mod vad;
mod ws;

#[pymodule]
fn _media(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    g711::register(m)?;
    resample::register(m)?;
    vad::register(m)?;
    jitter::register(m)?;
    hotpath::register(m)?;
    ws::register(m)?;
    turns::register(m)?;
    Ok(())
}
