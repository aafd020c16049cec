//! Twilio Media Streams messages (and the same shape as Telnyx sends it).
//!
//! Inbound, only `event` and the `media` object's `payload`, `chunk`, `timestamp` and `track`
//! are read; everything else is validated as JSON and skipped. Outbound media messages are
//! built from a prefix rendered once per stream.

use super::json::{plain_string_at, RawStr, Scalar, Walker};
use super::FrameError;
use base64_simd::{Out, STANDARD, STANDARD_NO_PAD};

/// Message kinds a Twilio-shaped stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Connected,
    Start,
    Media,
    Dtmf,
    Mark,
    Stop,
    Clear,
    /// Any other or missing `event` value; the caller decides what to do with it.
    Other,
}

impl Event {
    fn from_name(name: &[u8]) -> Event {
        match name {
            b"media" => Event::Media,
            b"connected" => Event::Connected,
            b"start" => Event::Start,
            b"dtmf" => Event::Dtmf,
            b"mark" => Event::Mark,
            b"stop" => Event::Stop,
            b"clear" => Event::Clear,
            _ => Event::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Event::Connected => "connected",
            Event::Start => "start",
            Event::Media => "media",
            Event::Dtmf => "dtmf",
            Event::Mark => "mark",
            Event::Stop => "stop",
            Event::Clear => "clear",
            Event::Other => "other",
        }
    }
}

/// The fields of a `media` message the hot path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media<'a> {
    pub payload: RawStr<'a>,
    /// Media chunk counter (Twilio: string, 1-based; counts media messages only).
    pub chunk: Option<u64>,
    /// Milliseconds since the stream started.
    pub timestamp: Option<u64>,
    pub track: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned<'a> {
    pub event: Event,
    /// Present when `event` is media and the message has a `media.payload`.
    pub media: Option<Media<'a>>,
}

/// Scan one text message. Any well-formed JSON object is accepted; for `media` events the
/// payload must be present as a string.
pub fn scan(msg: &[u8], max_size: usize) -> Result<Scanned<'_>, FrameError> {
    if msg.len() > max_size {
        return Err(FrameError::TooLarge {
            size: msg.len(),
            max: max_size,
        });
    }
    match scan_compact_media(msg) {
        Some(s) => Ok(s),
        None => scan_walk(msg),
    }
}

/// [`scan`] by the general walker: any JSON layout, and the precise error for a bad message.
fn scan_walk(msg: &[u8]) -> Result<Scanned<'_>, FrameError> {
    let mut w = Walker::new(msg);
    let mut event = Event::Other;
    let mut payload: Option<RawStr<'_>> = None;
    let (mut chunk, mut timestamp, mut track) = (None, None, None);
    let mut bad: Option<FrameError> = None;
    w.ws();
    w.object(0, |key, w, depth| {
        match key {
            b"event" => {
                if let Scalar::Str(s) = w.value(depth)? {
                    event = s.plain().map_or(Event::Other, Event::from_name);
                }
            }
            b"media" => {
                w.ws();
                // Only an object is a media body; anything else is skipped and reported below.
                if w.pos < msg.len() && msg[w.pos] == b'{' {
                    w.object(depth + 1, |k, w, d| {
                        let v = w.value(d)?;
                        match (k, v) {
                            (b"payload", Scalar::Str(s)) => payload = Some(s),
                            (b"payload", _) => {
                                bad = Some(FrameError::BadField {
                                    field: "payload",
                                    what: "not a string",
                                })
                            }
                            (b"chunk", v) => chunk = v.as_u64(),
                            (b"timestamp", v) => timestamp = v.as_u64(),
                            (b"track", Scalar::Str(s)) => track = s.plain(),
                            _ => {}
                        }
                        Ok(())
                    })?;
                } else {
                    w.value(depth)?;
                    bad = Some(FrameError::BadField {
                        field: "media",
                        what: "not an object",
                    });
                }
            }
            _ => {
                w.value(depth)?;
            }
        }
        Ok(())
    })?;
    w.end()?;
    if event != Event::Media {
        return Ok(Scanned { event, media: None });
    }
    if let Some(e) = bad {
        return Err(e);
    }
    let payload = payload.ok_or(FrameError::MissingField("media.payload"))?;
    Ok(Scanned {
        event,
        media: Some(Media {
            payload,
            chunk,
            timestamp,
            track,
        }),
    })
}

/// The common case in one pass: a compact `media` message (no whitespace) that starts with its
/// `event` and whose values are plain strings, apart from the `media` object (of plain strings).
/// Twilio and Telnyx send exactly that, 50 times a second per call, and the general walker's
/// per-value dispatch cost more than the rest of the frame's parsing. Anything else (other
/// events, whitespace, numbers, escapes, duplicate `event` keys, errors) returns `None` and
/// takes the walker. Every message accepted here is well-formed JSON that the walker reads to
/// the same result (later duplicate fields overwrite earlier ones in both), so this changes the
/// speed only, never what is accepted or which error is reported.
#[inline]
fn scan_compact_media(msg: &[u8]) -> Option<Scanned<'_>> {
    const HEAD: &[u8] = b"{\"event\":\"media\",\"";
    if !msg.starts_with(HEAD) {
        return None;
    }
    if let Some(s) = scan_twilio_layout(msg) {
        return Some(s);
    }
    let plain = |raw| RawStr {
        raw,
        escaped: false,
    };
    let mut pos = HEAD.len();
    let (mut payload, mut chunk, mut timestamp, mut track) = (None, None, None, None);
    loop {
        // At the body of a key (its opening quote consumed).
        let (key, p) = plain_string_at(msg, pos)?;
        if msg.get(p) != Some(&b':') {
            return None;
        }
        pos = p + 1;
        match (key, *msg.get(pos)?) {
            (b"media", b'{') => {
                pos += 1;
                loop {
                    if msg.get(pos) != Some(&b'"') {
                        return None;
                    }
                    let (k, p) = plain_string_at(msg, pos + 1)?;
                    if msg.get(p..p + 2) != Some(&b":\""[..]) {
                        return None;
                    }
                    let (v, p) = plain_string_at(msg, p + 2)?;
                    match k {
                        b"payload" => payload = Some(plain(v)),
                        b"chunk" => chunk = Scalar::Str(plain(v)).as_u64(),
                        b"timestamp" => timestamp = Scalar::Str(plain(v)).as_u64(),
                        b"track" => track = Some(v),
                        _ => {}
                    }
                    pos = p + 1;
                    match *msg.get(p)? {
                        b',' => {}
                        b'}' => break,
                        _ => return None,
                    }
                }
            }
            // A second `event`, or a `media` that is not an object: the walker decides.
            (b"event" | b"media", _) => return None,
            (_, b'"') => pos = plain_string_at(msg, pos + 1)?.1,
            _ => return None,
        }
        match *msg.get(pos)? {
            b',' if msg.get(pos + 1) == Some(&b'"') => pos += 2,
            b'}' if pos + 1 == msg.len() => break,
            _ => return None,
        }
    }
    Some(Scanned {
        event: Event::Media,
        media: Some(Media {
            payload: payload?,
            chunk,
            timestamp,
            track,
        }),
    })
}

/// Twilio's exact layout, `{"event":"media","sequenceNumber":"..","media":{"track":"..",
/// "chunk":"..","timestamp":"..","payload":".."},"streamSid":".."}`: the punctuation and keys
/// between the values are compared as whole literals, and only the values are scanned. A
/// subset of what [`scan_compact_media`] accepts, with the same result; `None` otherwise.
#[inline]
fn scan_twilio_layout(msg: &[u8]) -> Option<Scanned<'_>> {
    #[inline(always)]
    fn lit(msg: &[u8], pos: usize, want: &[u8]) -> Option<usize> {
        (msg.get(pos..pos + want.len())? == want).then_some(pos + want.len())
    }
    let pos = lit(msg, 0, b"{\"event\":\"media\",\"sequenceNumber\":\"")?;
    let (_, pos) = plain_string_at(msg, pos)?;
    let pos = lit(msg, pos, b",\"media\":{\"track\":\"")?;
    let (track, pos) = plain_string_at(msg, pos)?;
    let pos = lit(msg, pos, b",\"chunk\":\"")?;
    let (chunk, pos) = plain_string_at(msg, pos)?;
    let pos = lit(msg, pos, b",\"timestamp\":\"")?;
    let (timestamp, pos) = plain_string_at(msg, pos)?;
    let pos = lit(msg, pos, b",\"payload\":\"")?;
    let (payload, pos) = plain_string_at(msg, pos)?;
    let pos = lit(msg, pos, b"},\"streamSid\":\"")?;
    let (_, pos) = plain_string_at(msg, pos)?;
    if pos + 1 != msg.len() || msg[pos] != b'}' {
        return None;
    }
    let plain = |raw| RawStr {
        raw,
        escaped: false,
    };
    Some(Scanned {
        event: Event::Media,
        media: Some(Media {
            payload: plain(payload),
            chunk: Scalar::Str(plain(chunk)).as_u64(),
            timestamp: Scalar::Str(plain(timestamp)).as_u64(),
            track: Some(track),
        }),
    })
}

/// Decode a payload into `out`, which must hold the largest acceptable frame; returns the byte
/// count. `scratch` is only used when the JSON string carries escapes (e.g. `\/`). Padding is
/// optional (some platforms strip it).
pub fn decode_payload(
    payload: &RawStr<'_>,
    scratch: &mut Vec<u8>,
    out: &mut [u8],
) -> Result<usize, FrameError> {
    let text: &[u8] = match payload.plain() {
        Some(t) => t,
        None => {
            payload
                .unescape_into(scratch)
                .map_err(|what| FrameError::BadField {
                    field: "payload",
                    what,
                })?;
            scratch
        }
    };
    let engine = if text.len() % 4 == 0 {
        &STANDARD
    } else {
        &STANDARD_NO_PAD
    };
    let n = engine
        .decoded_length(text)
        .map_err(|_| base64_error(text))?;
    if n > out.len() {
        return Err(FrameError::PayloadSize {
            got: n,
            expected: out.len(),
        });
    }
    // Whole 32-symbol blocks first (never the last quantum, which may carry padding); the
    // library decodes the rest, and everything again if a block was not plain base64, so
    // errors and their offsets are exactly the library's.
    let done = decode_blocks(text, &mut out[..n]);
    let head = done / 4 * 3;
    match engine.decode(&text[done..], Out::from_slice(&mut out[head..n])) {
        Ok(d) => Ok(head + d.len()),
        Err(_) => match engine.decode(text, Out::from_slice(&mut out[..n])) {
            Ok(d) => Ok(d.len()),
            Err(_) => Err(base64_error(text)),
        },
    }
}

/// Decodes leading whole blocks of 32 base64 symbols (24 bytes each) while they are all in the
/// standard alphabet, leaving at least the last 4 symbols; returns the symbols consumed. AVX2
/// only (Mula and Lemire's method: nibble lookups validate, a byte shuffle maps to 6-bit values,
/// two multiply-adds pack them): at a frame's size (216 symbols) most of the library call's
/// time was its set-up and dispatch, so it is left only the last few symbols.
fn decode_blocks(text: &[u8], out: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if text.len() >= 36 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU reports AVX2.
        return unsafe { decode_blocks_avx2(text, out) };
    }
    let _ = (text, out);
    0
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn decode_blocks_avx2(text: &[u8], out: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    #[rustfmt::skip]
    let (lut_lo, lut_hi, lut_roll) = (
        _mm256_setr_epi8(
            0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A,
            0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A,
        ),
        _mm256_setr_epi8(
            0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
            0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
        ),
        _mm256_setr_epi8(
            0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0,
        ),
    );
    #[rustfmt::skip]
    let order = _mm256_setr_epi8(
        2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
        2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
    );
    let pack = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
    let mask_2f = _mm256_set1_epi8(0x2f);
    let (mul1, mul2) = (
        _mm256_set1_epi32(0x0140_0140),
        _mm256_set1_epi32(0x0001_1000),
    );
    let (mut c, mut o) = (0, 0);
    // Each block stores 32 bytes (the last 8 are overwritten by what follows).
    while c + 36 <= text.len() && o + 32 <= out.len() {
        let src = _mm256_loadu_si256(text.as_ptr().add(c).cast());
        let hi_nib = _mm256_and_si256(_mm256_srli_epi32(src, 4), mask_2f);
        let lo_nib = _mm256_and_si256(src, mask_2f);
        let lo = _mm256_shuffle_epi8(lut_lo, lo_nib);
        let hi = _mm256_shuffle_epi8(lut_hi, hi_nib);
        if _mm256_testz_si256(lo, hi) == 0 {
            break;
        }
        let eq_2f = _mm256_cmpeq_epi8(src, mask_2f);
        let roll = _mm256_shuffle_epi8(lut_roll, _mm256_add_epi8(eq_2f, hi_nib));
        let v = _mm256_add_epi8(src, roll);
        let merged = _mm256_madd_epi16(_mm256_maddubs_epi16(v, mul1), mul2);
        let bytes = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(merged, order), pack);
        _mm256_storeu_si256(out.as_mut_ptr().add(o).cast(), bytes);
        c += 32;
        o += 24;
    }
    c
}

/// Where a payload stops being base64 (cold path: only after the SIMD decoder refused it).
#[cold]
fn base64_error(text: &[u8]) -> FrameError {
    let body = text.len()
        - text
            .iter()
            .rev()
            .take(2)
            .take_while(|&&c| c == b'=')
            .count();
    let bad = text[..body]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/'));
    // No bad symbol: the length or the final symbol's spare bits are wrong.
    FrameError::Base64 {
        offset: bad.unwrap_or(text.len()),
    }
}

/// Append `s` to `out` as a JSON string body (no quotes), in ASCII: anything outside it is
/// written as `\uXXXX` (a surrogate pair above U+FFFF). The messages built from it reach Python
/// through the ASCII codec, which is cheaper than the UTF-8 one per message; JSON readers see
/// the same string.
pub fn escape_json_into(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let unit = |u: u16, out: &mut Vec<u8>| {
        out.extend_from_slice(b"\\u");
        out.extend([12, 8, 4, 0].map(|sh| HEX[usize::from(u >> sh & 15)]));
    };
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\0'..='\x1f' => unit(c as u16, out),
            ' '..='~' | '\x7f' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for &u in c.encode_utf16(&mut units).iter() {
                    unit(u, out);
                }
            }
        }
    }
}

/// Builds `{"event":"media","streamSid":"..","media":{"payload":".."}}` messages.
#[derive(Debug, Clone)]
pub struct MediaMessageBuilder {
    prefix: Vec<u8>,
}

const SUFFIX: &[u8] = b"\"}}";

impl MediaMessageBuilder {
    pub fn new(stream_sid: &str) -> Self {
        let mut prefix = b"{\"event\":\"media\",\"streamSid\":\"".to_vec();
        escape_json_into(stream_sid, &mut prefix);
        prefix.extend_from_slice(b"\",\"media\":{\"payload\":\"");
        MediaMessageBuilder { prefix }
    }

    /// Length of the message for a payload of `n` bytes.
    pub fn message_len(&self, n: usize) -> usize {
        self.prefix.len() + n.div_ceil(3) * 4 + SUFFIX.len()
    }

    /// Append one message for `codes` to `out` (no allocation once `out` has grown).
    pub fn append(&self, codes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        let start = out.len();
        let n = codes.len().div_ceil(3) * 4;
        out.resize(start + n, 0);
        let _ = STANDARD.encode(codes, Out::from_slice(&mut out[start..]));
        out.extend_from_slice(SUFFIX);
    }

    /// [`MediaMessageBuilder::append`] behind its WebSocket text frame header (see
    /// [`super::ws::push_text_header`]); returns where the message starts in `out`.
    pub fn append_framed(&self, codes: &[u8], out: &mut Vec<u8>) -> usize {
        super::ws::push_text_header(self.message_len(codes.len()), out);
        let start = out.len();
        self.append(codes, out);
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEDIA: &str = r#"{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"AAEC"},"streamSid":"MZ1"}"#;

    #[test]
    fn scans_a_twilio_media_message() {
        let s = scan(MEDIA.as_bytes(), 65536).unwrap();
        assert_eq!(s.event, Event::Media);
        let m = s.media.unwrap();
        assert_eq!(m.payload.raw, b"AAEC");
        assert_eq!(m.chunk, Some(2));
        assert_eq!(m.timestamp, Some(5));
        assert_eq!(m.track, Some(&b"inbound"[..]));
        let mut out = [0u8; 160];
        let n = decode_payload(&m.payload, &mut Vec::new(), &mut out).unwrap();
        assert_eq!(&out[..n], &[0, 1, 2]);
    }

    #[test]
    fn fields_in_any_order_and_numbers_accepted() {
        let msg =
            br#"{ "media" : { "payload":"AAEC", "timestamp": 40, "chunk": 3 }, "event":"media" }"#;
        let m = scan(msg, 65536).unwrap().media.unwrap();
        assert_eq!((m.chunk, m.timestamp), (Some(3), Some(40)));
    }

    #[test]
    fn a_payload_key_inside_another_field_is_not_taken() {
        let msg = br#"{"event":"media","start":{"payload":"BBBB"},"media":{"payload":"AAEC"}}"#;
        assert_eq!(
            scan(msg, 65536).unwrap().media.unwrap().payload.raw,
            b"AAEC"
        );
    }

    #[test]
    fn other_events_are_classified() {
        for (msg, ev) in [
            (
                r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
                Event::Connected,
            ),
            (r#"{"event":"stop","stop":{"callSid":"CA"}}"#, Event::Stop),
            (r#"{"event":"mark","mark":{"name":"x"}}"#, Event::Mark),
            (r#"{"event":"wat"}"#, Event::Other),
            (r#"{"noevent":1}"#, Event::Other),
        ] {
            assert_eq!(scan(msg.as_bytes(), 65536).unwrap().event, ev, "{msg}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            scan(MEDIA.as_bytes(), 10).unwrap_err(),
            FrameError::TooLarge {
                size: MEDIA.len(),
                max: 10
            }
        );
        assert!(matches!(
            scan(b"not json", 100),
            Err(FrameError::Json { .. })
        ));
        assert!(matches!(scan(b"[1]", 100), Err(FrameError::Json { .. })));
        assert_eq!(
            scan(br#"{"event":"media","media":{}}"#, 100).unwrap_err(),
            FrameError::MissingField("media.payload")
        );
        assert!(matches!(
            scan(br#"{"event":"media","media":{"payload":5}}"#, 100),
            Err(FrameError::BadField {
                field: "payload",
                ..
            })
        ));
        assert!(matches!(
            scan(br#"{"event":"media","media":"x"}"#, 100),
            Err(FrameError::BadField { field: "media", .. })
        ));
        let bad = RawStr {
            raw: b"AA*C",
            escaped: false,
        };
        assert_eq!(
            decode_payload(&bad, &mut Vec::new(), &mut [0u8; 160]).unwrap_err(),
            FrameError::Base64 { offset: 2 }
        );
        let big = "A".repeat(400);
        let p = RawStr {
            raw: big.as_bytes(),
            escaped: false,
        };
        assert!(matches!(
            decode_payload(&p, &mut Vec::new(), &mut [0u8; 160]),
            Err(FrameError::PayloadSize {
                got: 300,
                expected: 160
            })
        ));
    }

    #[test]
    fn escaped_payload_is_unescaped() {
        let p = RawStr {
            raw: br"ab\/+",
            escaped: true,
        };
        let mut out = [0u8; 8];
        let n = decode_payload(&p, &mut Vec::new(), &mut out).unwrap();
        assert_eq!(&out[..n], &[0x69, 0xBF, 0xFE]);
    }

    #[test]
    fn builds_outbound_media_messages() {
        let b = MediaMessageBuilder::new("MZ\"x");
        let mut out = Vec::new();
        b.append(&[0xFF; 160], &mut out);
        assert_eq!(out.len(), b.message_len(160));
        let s = std::str::from_utf8(&out).unwrap();
        assert!(s.starts_with(r#"{"event":"media","streamSid":"MZ\"x","media":{"payload":"////"#));
        assert!(s.ends_with("\"}}"));
        // And it scans back to the same payload.
        let m = scan(&out, 65536).unwrap().media.unwrap();
        let mut back = [0u8; 160];
        assert_eq!(
            decode_payload(&m.payload, &mut Vec::new(), &mut back).unwrap(),
            160
        );
        assert_eq!(back, [0xFF; 160]);
    }

    /// Both scanners on `msg`: the fast path may decline, but never disagree.
    fn check_fast_path(msg: &[u8]) -> bool {
        let walked = scan_walk(msg);
        match scan_compact_media(msg) {
            Some(fast) => {
                assert_eq!(Ok(fast), walked, "{}", String::from_utf8_lossy(msg));
                true
            }
            None => false,
        }
    }

    #[test]
    fn fast_path_takes_compact_media_and_agrees_with_the_walker() {
        assert!(check_fast_path(MEDIA.as_bytes()));
        assert_eq!(
            scan_twilio_layout(MEDIA.as_bytes()),
            scan_compact_media(br#"{"event":"media","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"AAEC"}}"#)
        );
        let b = MediaMessageBuilder::new("MZ1");
        let mut out = Vec::new();
        b.append(&[1, 2, 3], &mut out);
        assert!(check_fast_path(&out));
        // Telnyx's names, fields in another order, duplicates: still the fast path.
        for m in [
            r#"{"event":"media","sequence_number":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"AAEC"},"stream_id":"x"}"#,
            r#"{"event":"media","media":{"payload":"AAEC","chunk":"9"},"streamSid":"MZ1"}"#,
            r#"{"event":"media","media":{"payload":"AAEC"},"media":{"chunk":"3"}}"#,
            r#"{"event":"media","media":{"payload":"AAEC","payload":"BBBB","chunk":"x"}}"#,
        ] {
            assert!(check_fast_path(m.as_bytes()), "{m}");
        }
        // Everything else is declined, and the walker's answer (or error) stands.
        for m in [
            r#"{"event":"media","media":{"payload":"AAEC"}} "#,
            r#"{ "event":"media","media":{"payload":"AAEC"}}"#,
            r#"{"event":"media","media":{"payload":"AA\/C"}}"#,
            r#"{"event":"media","media":{"payload":"AAEC"},"event":"mark"}"#,
            r#"{"event":"media","media":"AAEC"}"#,
            r#"{"event":"media","media":{}}"#,
            r#"{"event":"media","media":{"chunk":"1"}}"#,
            r#"{"event":"media","media":{"payload":5}}"#,
            r#"{"event":"media","sequenceNumber":4,"media":{"payload":"AAEC"}}"#,
            r#"{"event":"media","media":{"payload":"AAEC"},}"#,
            r#"{"event":"media","media":{"payload":"AAEC"}}}"#,
            r#"{"event":"media","media":{"payload":"AAEC"}"#,
            "{\"event\":\"media\",\"media\":{\"payload\":\"AA\nC\"}}",
            r#"{"event":"mark","media":{"payload":"AAEC"}}"#,
        ] {
            assert!(!check_fast_path(m.as_bytes()), "{m}");
        }
    }

    /// The library alone, as `decode_payload` worked before its block decoder.
    fn library_decode(text: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
        let engine = if text.len() % 4 == 0 {
            &STANDARD
        } else {
            &STANDARD_NO_PAD
        };
        let n = engine
            .decoded_length(text)
            .map_err(|_| base64_error(text))?;
        if n > out.len() {
            return Err(FrameError::PayloadSize {
                got: n,
                expected: out.len(),
            });
        }
        engine
            .decode(text, Out::from_slice(&mut out[..n]))
            .map(|d| d.len())
            .map_err(|_| base64_error(text))
    }

    #[test]
    fn block_decoder_agrees_with_the_library_on_every_symbol() {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        // Every alphabet symbol at every position of a block, and every other byte once.
        let base: Vec<u8> = (0..216).map(|i| ALPHABET[(i * 37 + 5) % 64]).collect();
        let mut cases = vec![base.clone()];
        for (k, &sym) in ALPHABET.iter().enumerate() {
            let mut t = base.clone();
            t[(k * 3) % 200] = sym;
            cases.push(t);
        }
        for b in 0..=255u8 {
            let mut t = base.clone();
            t[b as usize % 190] = b;
            cases.push(t);
        }
        // Endings: padding, non-canonical spare bits, stray '=', missing padding.
        for end in [
            "AB==", "AA==", "AAB=", "AAA=", "A===", "====", "AAA", "AAB", "AB", "AQ", "A", "=A==",
            "AA=A", "",
        ] {
            for keep in [0, 28, 36, 64, 212] {
                let mut t = base[..keep].to_vec();
                t.extend_from_slice(end.as_bytes());
                cases.push(t);
            }
        }
        for t in &cases {
            let raw = RawStr {
                raw: t,
                escaped: false,
            };
            let (mut a, mut b) = ([0u8; 320], [0u8; 320]);
            let got = decode_payload(&raw, &mut Vec::new(), &mut a);
            let want = library_decode(t, &mut b);
            assert_eq!(got, want, "{}", String::from_utf8_lossy(t));
            if let Ok(n) = got {
                assert_eq!(&a[..n], &b[..n]);
            }
        }
    }

    /// A JSON string body read back by the grammar (the test's own reader, for
    /// `escape_json_into`): simple escapes and `\\uXXXX`, surrogate pairs joined.
    fn json_string_body(body: &[u8]) -> String {
        let text = std::str::from_utf8(body).unwrap();
        let mut units = Vec::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c != '\\' {
                units.extend(c.encode_utf16(&mut [0; 2]).iter());
                rest = &rest[c.len_utf8()..];
                continue;
            }
            let e = rest.as_bytes()[1];
            rest = &rest[2..];
            match e {
                b'"' | b'\\' | b'/' => units.push(u16::from(e)),
                b'n' => units.push(10),
                b'u' => {
                    assert!(rest.as_bytes()[..4].iter().all(u8::is_ascii_hexdigit));
                    units.push(u16::from_str_radix(&rest[..4], 16).unwrap());
                    rest = &rest[4..];
                }
                _ => panic!("unexpected escape {e}"),
            }
        }
        char::decode_utf16(units).map(Result::unwrap).collect()
    }

    #[test]
    fn non_ascii_ids_are_escaped_as_utf16_units() {
        let mut out = Vec::new();
        escape_json_into("MZ\u{e9}\u{1f600}\"\\\n\x7f~", &mut out);
        assert_eq!(out, b"MZ\\u00e9\\ud83d\\ude00\\\"\\\\\\u000a\x7f~");
        let b = MediaMessageBuilder::new("MZ\u{e9}");
        let mut msg = Vec::new();
        b.append(&[0xff; 3], &mut msg);
        assert_eq!(
            msg,
            b"{\"event\":\"media\",\"streamSid\":\"MZ\\u00e9\",\"media\":{\"payload\":\"////\"}}"
        );
        assert_eq!(b.message_len(3), msg.len());
    }

    proptest::proptest! {
        #[test]
        fn block_decoder_agrees_with_the_library(
            text in proptest::collection::vec(proptest::sample::select(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ *".to_vec()), 0..300),
        ) {
            let raw = RawStr { raw: &text, escaped: false };
            let (mut a, mut b) = ([0u8; 320], [0u8; 320]);
            let got = decode_payload(&raw, &mut Vec::new(), &mut a);
            let want = library_decode(&text, &mut b);
            proptest::prop_assert_eq!(&got, &want);
            if let Ok(n) = got {
                proptest::prop_assert_eq!(&a[..n], &b[..n]);
            }
        }

        #[test]
        fn fast_path_agrees_with_the_walker_on_damaged_messages(
            cut in 0usize..200,
            at in 0usize..200,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let mut m = MEDIA.as_bytes().to_vec();
            let at = at % m.len();
            m[at] = byte;
            check_fast_path(&m);
            m.truncate(cut.min(m.len()));
            check_fast_path(&m);
        }

        #[test]
        fn scan_never_panics(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(Scanned { media: Some(m), .. }) = scan(&s, 1 << 16) {
                let _ = decode_payload(&m.payload, &mut Vec::new(), &mut [0u8; 160]);
            }
        }

        /// Any stream id comes out as ASCII JSON that reads back as itself (a non-ASCII id
        /// was passed through as UTF-8, which the binding's ASCII codec refused on every
        /// message).
        #[test]
        fn escaped_ids_are_ascii_and_read_back(sid in "\\PC{0,20}|[\\x00-\\x7f\\u{e9}\\u{1f600}]{0,20}") {
            let mut out = Vec::new();
            escape_json_into(&sid, &mut out);
            proptest::prop_assert!(out.is_ascii());
            proptest::prop_assert_eq!(json_string_body(&out), sid);
        }

        #[test]
        fn media_round_trip(codes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), sid in "[ -~]{0,40}") {
            let b = MediaMessageBuilder::new(&sid);
            let mut out = Vec::new();
            b.append(&codes, &mut out);
            let m = scan(&out, 1 << 16).unwrap().media.unwrap();
            let mut back = vec![0u8; 400];
            let n = decode_payload(&m.payload, &mut Vec::new(), &mut back).unwrap();
            proptest::prop_assert_eq!(&back[..n], &codes[..]);
        }
    }
}
