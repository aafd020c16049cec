//! Read-only access to any C-contiguous bytes-like object (bytes, bytearray, memoryview,
//! numpy arrays, array.array) without copying it, except a large one that is not `bytes` and
//! is read with the GIL released (see [`Bytes::for_work`]).

use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::mem::MaybeUninit;

/// Borrowed view of a Python buffer's bytes; released on drop.
pub enum Bytes<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(Box<ffi::Py_buffer>),
}

impl<'py> Bytes<'py> {
    pub fn extract(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Bytes::Bytes(b.clone()));
        }
        let mut view = Box::new(MaybeUninit::<ffi::Py_buffer>::uninit());
        // PyBUF_SIMPLE: a contiguous run of bytes, whatever the item format (so int16 numpy
        // arrays are read as their little-endian bytes on the platforms we ship).
        let rc =
            unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_SIMPLE) };
        if rc != 0 {
            let _ = PyErr::take(obj.py());
            return Err(PyTypeError::new_err(format!(
                "{what} must be a bytes-like object (bytes, bytearray, memoryview or a contiguous \
                 numpy array), not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "?".into())
            )));
        }
        let view: Box<ffi::Py_buffer> = unsafe { Box::from_raw(Box::into_raw(view).cast()) };
        if view.buf.is_null() && view.len != 0 {
            return Err(PyBufferError::new_err(format!(
                "{what}: buffer has no data pointer"
            )));
        }
        Ok(Bytes::Buffer(view))
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Bytes(b) => b.as_bytes(),
            Bytes::Buffer(v) => {
                if v.len == 0 {
                    &[]
                } else {
                    unsafe { std::slice::from_raw_parts(v.buf as *const u8, v.len as usize) }
                }
            }
        }
    }
}

impl Bytes<'_> {
    /// The bytes for work that releases the GIL when they reach [`DETACH_BYTES`], and whether
    /// it may: `true` for inputs that large. Borrowed unless such an input is not a `bytes`
    /// object: with the GIL released, another thread may write a bytearray or numpy array
    /// while Rust reads it (a data race, undefined behaviour), so it is copied first (a
    /// memcpy, small beside the work). A read-only view is copied too: it may alias memory
    /// that is writable through another object (`memoryview(bytearray).toreadonly()`).
    pub fn for_work(&self) -> (std::borrow::Cow<'_, [u8]>, bool) {
        let raw = self.as_slice();
        if raw.len() < DETACH_BYTES {
            return (std::borrow::Cow::Borrowed(raw), false);
        }
        match self {
            Bytes::Bytes(_) => (std::borrow::Cow::Borrowed(raw), true),
            Bytes::Buffer(_) => (std::borrow::Cow::Owned(raw.to_vec()), true),
        }
    }
}

impl Drop for Bytes<'_> {
    fn drop(&mut self) {
        if let Bytes::Buffer(v) = self {
            unsafe { ffi::PyBuffer_Release(&mut **v) };
        }
    }
}

/// Bulk inputs above this size are processed with the GIL released; below it the release and
/// re-acquire would cost more than the work.
pub const DETACH_BYTES: usize = 32 * 1024;

/// View little-endian PCM16 bytes as samples without copying when aligned.
pub fn pcm_samples(bytes: &[u8]) -> std::borrow::Cow<'_, [i16]> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: any bit pattern is a valid i16; align_to only yields the aligned middle part.
        let (pre, mid, post) = unsafe { bytes.align_to::<i16>() };
        if pre.is_empty() && post.is_empty() {
            return std::borrow::Cow::Borrowed(mid);
        }
    }
    std::borrow::Cow::Owned(
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
    )
}

/// [`pcm_samples`] of a PCM16 argument whose domain has no error of its own for an odd byte
/// count (the hot path's outbound side, the turn detector).
pub fn pcm16_samples(bytes: &[u8]) -> PyResult<std::borrow::Cow<'_, [i16]>> {
    if bytes.len() % 2 != 0 {
        return Err(crate::errors::media_err(format!(
            "PCM16 input has an odd length of {} bytes; it must be a multiple of 2 (16-bit samples)",
            bytes.len()
        )));
    }
    Ok(pcm_samples(bytes))
}

/// New `bytes` of `len` filled in place by `f`, no intermediate copy.
pub fn new_bytes<'py>(
    py: Python<'py>,
    len: usize,
    f: impl FnOnce(&mut [u8]),
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, len, |buf| {
        f(buf);
        Ok(())
    })
}
