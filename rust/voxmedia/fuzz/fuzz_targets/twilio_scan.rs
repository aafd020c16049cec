//! The hot path's JSON scanner against serde_json, on any bytes: it must accept exactly the
//! well-formed JSON objects (bar the limits it documents) and read the same `event` and
//! `media` fields from them. The rules are the `scan_oracle` tests' (`oracle.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/scan_oracle/oracle.rs"]
mod oracle;

fuzz_target!(|msg: &[u8]| {
    if let Err(why) = oracle::check(msg) {
        panic!("{why}");
    }
});
