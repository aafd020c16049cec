//! The hot path's JSON scanner against serde_json, on any bytes: it must accept exactly the
//! well-formed JSON objects (bar the limits it documents) and read the same `event` and
//! `media` fields from them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use voxmedia::wire::twilio::{scan, Event};

/// The scanner's nesting limit (objects and arrays inside the top-level object).
const MAX_DEPTH: usize = 32;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fuzz_target!(|msg: &[u8]| {
    let got = scan(msg, usize::MAX);
    let want: Result<Value, _> = serde_json::from_slice(msg);
    let value = match want {
        Err(e) => {
            // Limits serde_json has and the scanner (rightly, for routing) does not: UTF-8
            // validation and surrogate pairing are left to the Python layer, which decodes every
            // non-media message; numbers are only ever read as counters.
            let s = e.to_string();
            let lenient = std::str::from_utf8(msg).is_err()
                || s.contains("surrogate")
                || s.contains("number out of range")
                || s.contains("recursion limit")
                || s.contains("unicode code point");
            assert!(
                got.is_err() || lenient,
                "scan accepted what serde_json refuses ({s}): {:?}",
                String::from_utf8_lossy(msg)
            );
            return;
        }
        Ok(v) => v,
    };
    let Value::Object(obj) = &value else {
        assert!(
            got.is_err(),
            "scan accepted a non-object: {:?}",
            String::from_utf8_lossy(msg)
        );
        return;
    };
    if depth(&value) > MAX_DEPTH {
        return;
    }
    // Field comparisons only where the bytes name each field once and escape nothing: the
    // scanner matches raw (unescaped) keys and values by design, and duplicate keys resolve by
    // type as well as by order.
    let simple = !msg.contains(&b'\\')
        && count(msg, b"\"event\"") <= 1
        && count(msg, b"\"media\"") <= 1
        && count(msg, b"\"payload\"") <= 1;
    let media_event = obj.get("event").and_then(Value::as_str) == Some("media");
    if !media_event {
        let s = got.unwrap_or_else(|e| panic!("scan refused a valid object ({e}): {value}"));
        if simple {
            assert_ne!(s.event, Event::Media, "{value}");
            assert!(s.media.is_none());
        }
        return;
    }
    let payload = obj
        .get("media")
        .and_then(Value::as_object)
        .and_then(|m| m.get("payload"));
    match (payload.and_then(Value::as_str), simple) {
        (Some(p), true) => {
            let s = got.unwrap_or_else(|e| panic!("scan refused a media message ({e}): {value}"));
            assert_eq!(s.event, Event::Media);
            let m = s.media.expect("a media body");
            assert_eq!(m.payload.plain(), Some(p.as_bytes()), "{value}");
        }
        (None, true) => assert!(got.is_err(), "media without a payload: {value}"),
        _ => {}
    }
});
