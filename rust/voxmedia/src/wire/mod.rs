//! Per-frame work of the telephony wire formats: finding the few fields a media message carries,
//! base64, and building outbound messages, without a general JSON parser or any allocation.
//!
//! Control messages (start, mark, stop, ...) are rare and are left to the caller's JSON library;
//! only `media` messages, 50 per second per call, take this path.

pub mod json;
pub mod twilio;
pub mod ws;

use std::fmt;

/// Errors of the wire domain: a message that is not what the platform promised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The message is larger than the configured limit.
    TooLarge { size: usize, max: usize },
    /// Not well-formed JSON (or not an object) at byte `offset`.
    Json { offset: usize, what: &'static str },
    /// A field the message kind requires is absent.
    MissingField(&'static str),
    /// A field has the wrong JSON type or an unusable value.
    BadField {
        field: &'static str,
        what: &'static str,
    },
    /// The payload is not valid base64.
    Base64 { offset: usize },
    /// The decoded payload has the wrong size for the codec and frame duration.
    PayloadSize { got: usize, expected: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Json { offset, what } => write!(f, "malformed JSON at byte {offset}: {what}"),
            FrameError::MissingField(name) => write!(f, "media message has no {name:?} field"),
            FrameError::BadField { field, what } => write!(f, "field {field:?}: {what}"),
            FrameError::Base64 { offset } => {
                write!(f, "payload is not valid base64 (first bad symbol at offset {offset})")
            }
            FrameError::PayloadSize { got, expected } => write!(
                f,
                "payload decodes to {got} bytes; expected {expected} (one frame of the negotiated codec)"
            ),
        }
    }
}

impl std::error::Error for FrameError {}
