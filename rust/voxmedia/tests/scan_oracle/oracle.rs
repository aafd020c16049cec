//! serde_json as the oracle for the hot path's JSON scanner (`wire::twilio::scan`): shared by
//! the `scan_oracle` tests and the `twilio_scan` fuzz target.
//!
//! The scanner must accept exactly the JSON objects serde_json accepts, bar what it leaves to
//! the Python layer by design: invalid UTF-8, lone surrogate escapes, numbers beyond f64 (it
//! reads numbers only as counters), nesting deeper than 32. It must read the same `event` and `media.payload`,
//! except where the scanner's documented rules differ. It matches member names and the event
//! name as written, so an escaped name is not theirs. With repeated members it keeps the last
//! `event` that is a string, where serde_json keeps the last.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use voxmedia::wire::twilio::{scan, Event};

/// The scanner's nesting limit: objects and arrays inside the top-level object.
const MAX_DEPTH: usize = 32;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// An object's members in order, duplicates kept, each value as its raw text.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = map.next_entry()? {
                    out.push(kv);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The one member named `name` (after unescaping), if there is exactly one.
fn only<'a>(members: &'a Members, name: &str) -> Option<&'a RawValue> {
    let mut found = members.0.iter().filter(|(k, _)| k == name);
    let (_, v) = found.next()?;
    found.next().is_none().then_some(&**v)
}

/// How often `"name"` is written, quotes included, anywhere in `msg`.
fn written(msg: &[u8], name: &str) -> usize {
    let quoted = format!("\"{name}\"");
    msg.windows(quoted.len())
        .filter(|w| *w == quoted.as_bytes())
        .count()
}

/// The raw value of `media.payload` when the scanner must find it: one `media` member and in
/// it one `payload` member, both named without escapes. Names are counted in the whole text,
/// so a name that also appears elsewhere skips the check.
fn payload_of(top: &Members, msg: &[u8]) -> Option<Box<RawValue>> {
    let media = only(top, "media")?;
    // One `"media"` is the event's value.
    if written(msg, "media") != 2 || written(msg, "payload") != 1 {
        return None;
    }
    let members: Members = serde_json::from_str(media.get()).ok()?;
    only(&members, "payload").map(ToOwned::to_owned)
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

/// Whether `scan` reads `msg` as serde_json does (see the module doc); why not, if not.
pub fn check(msg: &[u8]) -> Result<(), String> {
    let got = scan(msg, usize::MAX);
    let shown = String::from_utf8_lossy(msg);
    let value = match serde_json::from_slice::<Value>(msg) {
        Err(e) => {
            let s = e.to_string();
            // JSON's grammar allows a lone surrogate escape; serde_json refuses it (Python's
            // json, which reads the messages the scanner routes on, takes it).
            let lenient = std::str::from_utf8(msg).is_err()
                || s.contains("number out of range")
                || s.contains("recursion limit")
                || s.contains("surrogate")
                || s.contains("unicode code point");
            return ensure(got.is_err() || lenient, || {
                format!("scan accepted {shown:?}: serde_json says {s}")
            });
        }
        Ok(v) => v,
    };
    if !value.is_object() {
        return ensure(got.is_err(), || {
            format!("scan accepted a non-object: {shown:?}")
        });
    }
    if depth(&value) > MAX_DEPTH {
        return Ok(());
    }
    let top: Members = serde_json::from_slice(msg).expect("an object");
    // The `event` the scanner reads: the one `event` member, when written without escapes.
    let Some(event) = only(&top, "event").filter(|_| written(msg, "event") == 1) else {
        return Ok(());
    };
    let is_media = event.get() == "\"media\"";
    let s = match (&got, is_media) {
        (Ok(s), _) => s,
        // A media message the scanner refuses must lack a usable `media.payload`.
        (Err(e), true) => {
            let payload = payload_of(&top, msg);
            return ensure(!payload.is_some_and(|p| p.get().starts_with('"')), || {
                format!("scan refused {shown:?}: {e:?}")
            });
        }
        (Err(e), false) => return Err(format!("scan refused {shown:?}: {e:?}")),
    };
    ensure((s.event == Event::Media) == is_media, || {
        format!("scan read event {:?} from {shown:?}", s.event)
    })?;
    if !is_media {
        return ensure(s.media.is_none(), || format!("a media body from {shown:?}"));
    }
    // One `media` object with one `payload` string: the scanner gives that string.
    if let Some(p) = payload_of(&top, msg) {
        let want: String =
            serde_json::from_str(p.get()).map_err(|_| format!("scan took {p} as a payload"))?;
        let mut raw = Vec::new();
        let got = s
            .media
            .ok_or_else(|| format!("no media body from {shown:?}"))?
            .payload;
        // Payloads are base64: the scanner unescapes ASCII only and refuses the rest.
        match got.unescape_into(&mut raw) {
            Ok(()) => ensure(raw == want.as_bytes(), || {
                format!(
                    "scan read payload {:?} from {shown:?}",
                    String::from_utf8_lossy(&raw)
                )
            })?,
            Err(_) => ensure(!want.is_ascii(), || format!("payload refused: {shown:?}"))?,
        }
    }
    Ok(())
}
