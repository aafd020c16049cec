//! Python exception classes. Each subclasses `ValueError` so callers can catch the familiar type.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(
    voxrelay.media,
    MediaError,
    PyValueError,
    "Invalid audio or argument given to the media engine."
);
create_exception!(
    voxrelay.media,
    FrameError,
    MediaError,
    "A malformed wire frame (bad JSON, base64, payload size or codec)."
);

pub fn media_err(msg: impl std::fmt::Display) -> PyErr {
    MediaError::new_err(msg.to_string())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MediaError", m.py().get_type::<MediaError>())?;
    m.add("FrameError", m.py().get_type::<FrameError>())?;
    Ok(())
}
