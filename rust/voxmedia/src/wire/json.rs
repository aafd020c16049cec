//! A no-allocation walker over one JSON text, enough to pull a handful of fields out of a
//! platform message while validating the structure it passes over.

use super::FrameError;

/// Nesting deeper than this is rejected rather than walked (platform messages nest 2-3 levels).
const MAX_DEPTH: usize = 32;

/// A JSON string as it appears in the text, without the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStr<'a> {
    pub raw: &'a [u8],
    /// True when the raw text contains backslash escapes (then `raw` is not the value).
    pub escaped: bool,
}

impl<'a> RawStr<'a> {
    /// The value when it needs no unescaping.
    pub fn plain(&self) -> Option<&'a [u8]> {
        (!self.escaped).then_some(self.raw)
    }

    /// Unescape into `out` (cleared first). Only the escapes a platform can put in an ASCII
    /// field are accepted; `\uXXXX` outside ASCII is refused.
    pub fn unescape_into(&self, out: &mut Vec<u8>) -> Result<(), &'static str> {
        out.clear();
        let mut i = 0;
        let s = self.raw;
        while i < s.len() {
            let c = s[i];
            if c != b'\\' {
                out.push(c);
                i += 1;
                continue;
            }
            let e = *s.get(i + 1).ok_or("dangling backslash")?;
            i += 2;
            out.push(match e {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 8,
                b'f' => 12,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let hex = s.get(i..i + 4).ok_or("short \\u escape")?;
                    let v = hex4(hex).ok_or("bad \\u escape")?;
                    i += 4;
                    if v > 0x7F {
                        return Err("non-ASCII \\u escape in an ASCII field");
                    }
                    v as u8
                }
                _ => return Err("unknown escape"),
            });
        }
        Ok(())
    }
}

/// The value of exactly four ASCII hex digits (`from_str_radix` would also take a sign).
#[inline]
fn hex4(h: &[u8]) -> Option<u16> {
    let [a, b, c, d] = *h else { return None };
    [a, b, c, d].iter().try_fold(0u16, |v, &x| {
        let digit = (x as char).to_digit(16)?;
        Some(v << 4 | digit as u16)
    })
}

/// A scalar value the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    Str(RawStr<'a>),
    /// A number's text.
    Num(&'a [u8]),
    Other,
}

impl Scalar<'_> {
    /// An unsigned integer given as a JSON number or a decimal string (Twilio sends counters as
    /// strings, Plivo and Telnyx as numbers).
    pub fn as_u64(&self) -> Option<u64> {
        let digits = match self {
            Scalar::Str(s) => s.plain()?,
            Scalar::Num(n) => n,
            Scalar::Other => return None,
        };
        if digits.is_empty() || digits.len() > 19 {
            return None;
        }
        let mut v: u64 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u64::from(d - b'0');
        }
        Some(v)
    }
}

/// Index of the first byte that ends a run of string content: a quote, a backslash, or a
/// control character (invalid unescaped in JSON). SSE2 is part of x86_64, so the 16-byte
/// path needs no run-time detection; a message's ~400 bytes take a few dozen instructions.
#[inline]
fn find_string_stop(s: &[u8]) -> Option<usize> {
    #[inline(always)]
    fn is_stop(c: u8) -> bool {
        c == b'"' || c == b'\\' || c < 0x20
    }
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; loads stay within `s` (i + 16 <= len).
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let ctl_max = _mm_set1_epi8(0x1F);
            while i + 16 <= s.len() {
                let v = _mm_loadu_si128(s.as_ptr().add(i) as *const __m128i);
                // Unsigned v <= 0x1F  <=>  min(v, 0x1F) == v.
                let ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl_max), v);
                let hit = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                    ctl,
                );
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    return Some(i + mask.trailing_zeros() as usize);
                }
                i += 16;
            }
        }
    }
    s[i..].iter().position(|&c| is_stop(c)).map(|k| i + k)
}

/// The plain (escape-free) string whose body starts at `s[pos]` (just after its opening
/// quote): its body and the index just past its closing quote. `None` when the string has an
/// escape, a control character or no end; the caller then falls back to [`Walker`], which
/// handles or reports those.
#[inline(always)]
pub fn plain_string_at(s: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = s.get(pos..)?;
    let k = find_string_stop(rest)?;
    (rest[k] == b'"').then(|| (&rest[..k], pos + k + 1))
}

pub struct Walker<'a> {
    s: &'a [u8],
    pub pos: usize,
}

impl<'a> Walker<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Walker { s, pos: 0 }
    }

    fn err(&self, what: &'static str) -> FrameError {
        FrameError::Json {
            offset: self.pos,
            what,
        }
    }

    #[inline(always)]
    pub fn ws(&mut self) {
        // Platform messages are compact: test the common no-whitespace case first.
        if !matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            return;
        }
        while let Some(&c) = self.s.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    #[inline(always)]
    fn eat(&mut self, c: u8, what: &'static str) -> Result<(), FrameError> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// A string starting at the current (whitespace-skipped) position.
    #[inline(always)]
    pub fn string(&mut self) -> Result<RawStr<'a>, FrameError> {
        self.eat(b'"', "expected a string")?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            let rest = &self.s[self.pos..];
            let Some(k) = find_string_stop(rest) else {
                self.pos = self.s.len();
                return Err(self.err("unterminated string"));
            };
            self.pos += k;
            match rest[k] {
                b'"' => {
                    let raw = &self.s[start..self.pos];
                    self.pos += 1;
                    return Ok(RawStr { raw, escaped });
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return Err(self.err("control character in string")),
            }
        }
    }

    /// Checks the escape at the current backslash and steps over it: one of `"\\/bfnrt`, or
    /// `u` and exactly four hex digits. Cold: platforms escape nothing in media messages.
    #[cold]
    fn escape(&mut self) -> Result<(), FrameError> {
        let Some(&e) = self.s.get(self.pos + 1) else {
            self.pos = self.s.len();
            return Err(self.err("unterminated string"));
        };
        match e {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
            b'u' => {
                if self
                    .s
                    .get(self.pos + 2..self.pos + 6)
                    .and_then(hex4)
                    .is_none()
                {
                    return Err(self.err("\\u escape without four hex digits"));
                }
                self.pos += 6;
            }
            _ => return Err(self.err("invalid escape in string")),
        }
        Ok(())
    }

    /// Digits from the current position; how many.
    #[inline]
    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number by the JSON grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Result<&'a [u8], FrameError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ if self.pos == start => return Err(self.err("expected a value")),
            _ => return Err(self.err("expected a digit after '-'")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("expected a digit after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("expected a digit in the exponent"));
            }
        }
        Ok(&self.s[start..self.pos])
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), FrameError> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("expected a value"))
        }
    }

    /// Read a scalar or skip a composite value, validating its structure.
    pub fn value(&mut self, depth: usize) -> Result<Scalar<'a>, FrameError> {
        self.ws();
        match self.peek() {
            Some(b'"') => Ok(Scalar::Str(self.string()?)),
            Some(b'{') => {
                self.object(depth + 1, |_, w, d| w.value(d).map(|_| ()))?;
                Ok(Scalar::Other)
            }
            Some(b'[') => {
                if depth + 1 > MAX_DEPTH {
                    return Err(self.err("nesting too deep"));
                }
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Scalar::Other);
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Scalar::Other);
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b't') => self.literal(b"true").map(|_| Scalar::Other),
            Some(b'f') => self.literal(b"false").map(|_| Scalar::Other),
            Some(b'n') => self.literal(b"null").map(|_| Scalar::Other),
            Some(_) => Ok(Scalar::Num(self.number()?)),
            None => Err(self.err("unexpected end of input")),
        }
    }

    /// Walk an object, calling `field(key, walker, depth)` positioned at each value; the callback
    /// must consume the value (with `value` or a nested `object`).
    pub fn object(
        &mut self,
        depth: usize,
        mut field: impl FnMut(&'a [u8], &mut Self, usize) -> Result<(), FrameError>,
    ) -> Result<(), FrameError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.eat(b'{', "expected an object")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.eat(b':', "expected ':'")?;
            // Keys we look for never need escapes; an escaped key simply matches nothing.
            let k = if key.escaped { &b"\\"[..] } else { key.raw };
            field(k, self, depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    /// After the top-level value: only whitespace may follow.
    pub fn end(&mut self) -> Result<(), FrameError> {
        self.ws();
        if self.pos == self.s.len() {
            Ok(())
        } else {
            Err(self.err("trailing characters after the JSON value"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_all(s: &str) -> Result<(), FrameError> {
        let mut w = Walker::new(s.as_bytes());
        w.value(0)?;
        w.end()
    }

    #[test]
    fn accepts_valid_json() {
        for s in [
            r#"{}"#,
            r#"{"a":1,"b":[1,2,{"c":null}],"d":"x\"y","e":true,"f":-1.5e3}"#,
            " { \"a\" : [ ] , \"b\" : { } } ",
            r#"[0,-0,0.5,-0.0e0,1e5,1E+5,-1.5e-3,10,123.456e789]"#,
            r#"{"x\u00aFy":"\b\f\n\r\t\/\\\"\uD83D\ude00"}"#,
        ] {
            walk_all(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    #[test]
    fn rejects_malformed_json_with_offset() {
        for s in [
            r#"{"a":}"#,
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            r#"{"a":"x}"#,
            r#"{"a":1}x"#,
            "",
            "[1,]",
        ] {
            let e = walk_all(s).unwrap_err();
            assert!(matches!(e, FrameError::Json { .. }), "{s}: {e:?}");
        }
    }

    /// Numbers follow the JSON grammar exactly; it used to take any run of `0-9.eE+-`.
    #[test]
    fn rejects_numbers_outside_the_grammar() {
        for n in [
            "+", ".", "-", "+1", ".5", "1.", "1.2.3", "01", "-01", "00", "1e", "1e+", "1E-",
            "1.e5", "1e5.0", "1e5e5", "--1", "1-", "1+1", "-.5", "0x10", "1ee5",
        ] {
            let s = format!(r#"{{"x":{n}}}"#);
            let e = walk_all(&s).unwrap_err();
            assert!(matches!(e, FrameError::Json { .. }), "{s}: {e:?}");
        }
    }

    /// Escapes are checked in every string the walker passes, keys included; `\u` takes
    /// exactly four hex digits (no sign).
    #[test]
    fn rejects_invalid_escapes_anywhere() {
        for bad in [
            r#"\q"#,
            r#"\x41"#,
            r#"\u+02F"#,
            r#"\u-02F"#,
            r#"\u02"#,
            r#"\u02G1"#,
            r#"\U0041"#,
            r#"\u 041"#,
            r#"\'"#,
            "\\\u{e9}",
            r#"\"#,
        ] {
            for s in [
                format!(r#"{{"x":"{bad}"}}"#),
                format!(r#"{{"{bad}":1}}"#),
                format!(r#"[["{bad}"]]"#),
            ] {
                let e = walk_all(&s).unwrap_err();
                assert!(matches!(e, FrameError::Json { .. }), "{s}: {e:?}");
            }
        }
    }

    #[test]
    fn depth_limit() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(walk_all(&deep).is_err());
        let ok = "[".repeat(10) + &"]".repeat(10);
        assert!(walk_all(&ok).is_ok());
    }

    #[test]
    fn unescape() {
        let mut out = Vec::new();
        RawStr {
            raw: br"a\/b\u0041\n",
            escaped: true,
        }
        .unescape_into(&mut out)
        .unwrap();
        assert_eq!(out, b"a/bA\n");
        assert!(RawStr {
            raw: br"\u00e9",
            escaped: true
        }
        .unescape_into(&mut out)
        .is_err());
        // Exactly four hex digits: `from_str_radix` took a leading '+'.
        for raw in [
            &br"\u+02F"[..],
            br"\u+07F",
            br"\u-002",
            br"\u 041",
            br"\u004",
        ] {
            let got = RawStr { raw, escaped: true }.unescape_into(&mut out);
            assert!(got.is_err(), "{raw:?}: {out:?}");
        }
    }

    #[test]
    fn u64_from_string_or_number() {
        assert_eq!(Scalar::Num(b"42").as_u64(), Some(42));
        assert_eq!(
            Scalar::Str(RawStr {
                raw: b"7",
                escaped: false
            })
            .as_u64(),
            Some(7)
        );
        assert_eq!(Scalar::Num(b"-1").as_u64(), None);
        assert_eq!(Scalar::Num(b"1.5").as_u64(), None);
        assert_eq!(Scalar::Num(b"99999999999999999999").as_u64(), None);
    }

    #[test]
    fn string_stop_matches_a_plain_search_at_every_position() {
        for len in 0..70 {
            for at in 0..=len {
                for stop in [b'"', b'\\', 0x00, 0x1F] {
                    let mut s = vec![b'a'; len];
                    if at < len {
                        s[at] = stop;
                    }
                    s.extend_from_slice(b"\x7f\x80\xff ");
                    let want = s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
                    assert_eq!(find_string_stop(&s), want, "len {len} at {at} stop {stop}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut w = Walker::new(&s);
            let _ = w.value(0).and_then(|_| w.end());
        }
    }
}
