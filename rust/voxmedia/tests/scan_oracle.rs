//! The hot path's JSON scanner (`wire::twilio::scan`) against serde_json as the oracle, on
//! generated Twilio-shaped messages: every whitespace and escape choice JSON allows, numbers
//! of every form, nesting, and one damaged byte in some of them (the rules: `oracle.rs`).
//! `rust/voxmedia/fuzz`'s `twilio_scan` checks the same on arbitrary bytes, coverage-guided;
//! this runs in every `cargo test`.

#[path = "scan_oracle/oracle.rs"]
mod oracle;

use proptest::prelude::*;

fn check(msg: &[u8]) -> Result<(), TestCaseError> {
    oracle::check(msg).map_err(TestCaseError::fail)
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", " ", "\n", "\t", "\r\n  "])
}

/// A JSON string (quotes included) whose content is `text`, a character in ten written as a
/// `\u` escape (or `\/`), and the characters JSON must escape always escaped.
fn string_of(text: String) -> impl Strategy<Value = Vec<u8>> {
    let n = text.chars().count();
    prop::collection::vec(prop::bool::weighted(0.1), n).prop_map(move |escape| {
        let mut out = vec![b'"'];
        for (c, e) in text.chars().zip(escape) {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '/' if e => out.extend_from_slice(b"\\/"),
                c if (c as u32) < 0x20 || (e && (c as u32) < 0x10000) => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out.push(b'"');
        out
    })
}

fn any_string() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec!["media", "start", "mark", "event", "payload", "", "é"])
            .prop_map(str::to_string),
        "[a-zA-Z0-9+/=\"\\\\\n\u{1}é€😀 ]{0,12}",
    ]
    .prop_flat_map(string_of)
}

fn number() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        "0",
        "-0",
        "7",
        "123456789",
        "1.5",
        "-0.25",
        "1e5",
        "2E-3",
        "6.02e+23",
        "1e400",
        "18446744073709551616",
    ])
    .prop_map(|s| s.as_bytes().to_vec())
}

/// Rendered JSON: scalars, then arrays and objects of them with random spacing.
fn value() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        prop::sample::select(vec!["null", "true", "false"]).prop_map(|s| s.as_bytes().to_vec()),
        number(),
        any_string(),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone(), ws()), 0..4).prop_map(|items| {
                join(b'[', b']', items.into_iter().map(|(a, v, b)| pad(a, v, b)))
            }),
            prop::collection::vec((any_string(), ws(), inner, ws()), 0..4).prop_map(|fields| {
                join(
                    b'{',
                    b'}',
                    fields.into_iter().map(|(k, a, v, b)| member(k, a, v, b)),
                )
            }),
        ]
    })
}

fn pad(a: &str, v: Vec<u8>, b: &str) -> Vec<u8> {
    [a.as_bytes(), &v, b.as_bytes()].concat()
}

fn member(key: Vec<u8>, a: &str, v: Vec<u8>, b: &str) -> Vec<u8> {
    [&key, a.as_bytes(), b":", &pad(a, v, b)].concat()
}

fn join(open: u8, close: u8, items: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = vec![open];
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend(item);
    }
    out.push(close);
    out
}

/// An object of `fields` (names written plainly), in the order of their `order` keys.
fn object(mut fields: Vec<(&str, Vec<u8>)>, order: &[u32], spaces: &[(&str, &str)]) -> Vec<u8> {
    let mut keyed: Vec<_> = fields.drain(..).zip(order.iter().cycle()).collect();
    keyed.sort_by_key(|(_, &k)| k);
    let members = keyed
        .into_iter()
        .zip(spaces.iter().cycle())
        .map(|(((k, v), _), (a, b))| member(format!("\"{k}\"").into_bytes(), a, v, b));
    join(b'{', b'}', members)
}

type Extras = Vec<(&'static str, Vec<u8>)>;

/// Up to three more members, named from `names`, of any value.
fn extras(names: &'static [&'static str]) -> impl Strategy<Value = Extras> {
    prop::collection::vec((prop::sample::select(names), value()), 0..3)
}

fn layout() -> impl Strategy<Value = (Vec<u32>, Vec<(&'static str, &'static str)>)> {
    (
        prop::collection::vec(any::<u32>(), 6),
        prop::collection::vec((ws(), ws()), 6),
    )
}

/// A message: mostly a media message in any layout (members in any order, any spacing, some
/// escapes, counters as strings or numbers, extra members of any JSON), sometimes without
/// its event, body or payload, with one of them of the wrong type, or repeated.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let payload = prop_oneof![
        9 => "[A-Za-z0-9+/]{0,16}={0,2}".prop_flat_map(string_of),
        1 => value(),
    ];
    let counter = prop_oneof![number(), "[0-9]{1,20}".prop_flat_map(string_of)];
    let body = (
        prop::option::weighted(0.9, payload),
        prop::option::of(counter.clone()),
        prop::option::of(counter),
        extras(&["track", "other", "payload"]),
        layout(),
    )
        .prop_map(|(payload, chunk, ts, mut fields, (order, spaces))| {
            fields.extend(payload.map(|p| ("payload", p)));
            fields.extend(chunk.map(|c| ("chunk", c)));
            fields.extend(ts.map(|t| ("timestamp", t)));
            object(fields, &order, &spaces)
        });
    let event = prop_oneof![8 => string_of("media".into()), 1 => any_string(), 1 => value()];
    (
        prop::option::weighted(0.95, event),
        prop::option::weighted(0.95, prop_oneof![19 => body, 1 => value()]),
        extras(&["streamSid", "sequenceNumber", "extra", "event", "media"]),
        layout(),
    )
        .prop_map(|(event, body, mut fields, (order, spaces))| {
            fields.extend(event.map(|e| ("event", e)));
            fields.extend(body.map(|b| ("media", b)));
            object(fields, &order, &spaces)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn scan_reads_json_as_serde_json_does(msg in message()) {
        check(&msg)?;
    }

    #[test]
    fn scan_reads_any_json_value_as_serde_json_does(msg in value()) {
        check(&msg)?;
    }

    #[test]
    fn scan_refuses_what_a_damaged_byte_breaks(
        msg in message(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        delete in any::<bool>(),
    ) {
        let mut m = msg;
        if !m.is_empty() {
            let i = at.index(m.len());
            if delete {
                m.remove(i);
            } else {
                m[i] = byte;
            }
        }
        check(&m)?;
    }
}
