//! voxmedia: the real-time media engine behind voxrelay.
//!
//! Everything here is plain Rust with no Python in it, so it can be tested with `cargo test`,
//! fuzzed, and reused. The PyO3 layer in `rust/python` only converts arguments and errors.
//!
//! Hot-path rule: after construction, per-frame methods do not allocate; callers pass output
//! buffers (`*_into`) or reuse the object's own scratch space. The one exception is what is
//! meant to grow: the turn detector's open utterance, whose buffer doubles as it fills.

pub mod g711;
pub mod jitter;
pub mod pipeline;
pub mod plc;
pub mod resample;
pub mod turns;
pub mod vad;
pub mod wire;
