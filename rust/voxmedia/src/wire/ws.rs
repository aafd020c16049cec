//! Server-side reader of WebSocket (RFC 6455) data frames, sans I/O.
//!
//! Why it exists: a call's 50 media messages per second each arrive as one small masked text
//! frame. Parsing the header and unmasking in Python cost ~4 us a frame, more than the whole
//! media hot path; here it is one pass over bytes that are already in cache, and the payload
//! is unmasked in place so the media path can read it without a copy.
//!
//! Scope: only what a relay needs on its fast path. Data frames (text, binary, continuation)
//! are returned with their payload; control frames are returned whole and still masked, so the
//! caller can give exactly those bytes to a full WebSocket implementation (which answers pings
//! and closes); anything it must not judge itself (reserved bits or opcodes, an unmasked frame,
//! a fragmented or oversized control frame, a data frame over the limit) makes the reader stop
//! on that frame's first byte and hand the rest of the stream over ([`Next::Handoff`]).
//! Reassembling fragmented messages is the caller's business.

use std::ops::Range;

/// What the bytes fed so far hold next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Not a whole frame yet: feed more bytes.
    NeedMore,
    /// A data frame (opcode 0 continuation, 1 text, 2 binary); `payload` indexes the unmasked
    /// payload in [`FrameReader::bytes`], valid until the next `push`.
    Data {
        opcode: u8,
        fin: bool,
        payload: Range<usize>,
    },
    /// A control frame (ping, pong, close): `frame` indexes its raw bytes, header and masked
    /// payload included, in [`FrameReader::bytes`].
    Control { frame: Range<usize> },
    /// This reader stops here: [`FrameReader::take_rest`] gives the bytes from the start of the
    /// frame it would not judge; every later call returns `Handoff` again.
    Handoff,
}

/// Incremental parser of client-to-server frames.
#[derive(Debug, Clone)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Start of the first unparsed frame in `buf`.
    pos: usize,
    max_payload: u64,
    stopped: bool,
}

impl FrameReader {
    /// A reader that hands over (rather than judges) data frames above `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        FrameReader {
            buf: Vec::with_capacity(1024),
            pos: 0,
            max_payload: max_payload as u64,
            stopped: false,
        }
    }

    /// Appends bytes read from the socket. Drops what earlier frames used first, so the buffer
    /// holds at most one partial frame plus this read.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The reader's buffer; the ranges [`Next`] returns index it.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes fed but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True once the reader has handed the stream over.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Stops the reader and returns every byte not yet returned as a frame.
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.stopped = true;
        let rest = self.buf[self.pos..].to_vec();
        self.buf.clear();
        self.pos = 0;
        rest
    }

    /// Parses the next frame. A data frame's payload is unmasked in place.
    pub fn next_frame(&mut self) -> Next {
        if self.stopped {
            return Next::Handoff;
        }
        let b = &self.buf[self.pos..];
        if b.len() < 2 {
            return Next::NeedMore;
        }
        let (b0, b1) = (b[0], b[1]);
        let opcode = b0 & 0x0f;
        let reserved_op = (3..8).contains(&opcode) || opcode > 10;
        if reserved_op || b0 & 0x70 != 0 || b1 & 0x80 == 0 {
            // Reserved opcode, an extension bit nobody negotiated, or an unmasked client frame.
            return self.stop();
        }
        let fin = b0 & 0x80 != 0;
        let short = u64::from(b1 & 0x7f);
        if opcode >= 8 {
            if short > 125 || !fin {
                return self.stop();
            }
            let end = 6 + short as usize;
            if b.len() < end {
                return Next::NeedMore;
            }
            let frame = self.pos..self.pos + end;
            self.pos += end;
            return Next::Control { frame };
        }
        let (len, head) = match short {
            126 if b.len() < 4 => return Next::NeedMore,
            126 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() < 10 => return Next::NeedMore,
            127 => (
                u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
                10,
            ),
            n => (n, 2),
        };
        let start = head + 4;
        // Over the limit, or a length no buffer here could hold (possible when the limit is
        // near usize::MAX): handed over like any oversized frame.
        let end = match usize::try_from(len).ok().and_then(|n| n.checked_add(start)) {
            Some(end) if len <= self.max_payload => end,
            _ => return self.stop(),
        };
        if b.len() < end {
            return Next::NeedMore;
        }
        let key: [u8; 4] = b[head..start].try_into().expect("4 bytes");
        let base = self.pos;
        unmask(&mut self.buf[base + start..base + end], key);
        self.pos += end;
        Next::Data {
            opcode,
            fin,
            payload: base + start..base + end,
        }
    }

    fn stop(&mut self) -> Next {
        self.stopped = true;
        Next::Handoff
    }
}

/// Appends the RFC 6455 header of an unmasked text frame with FIN set, of `len` payload bytes:
/// what a server writes before a message it sends whole (servers never mask).
pub fn push_text_header(len: usize, out: &mut Vec<u8>) {
    if len < 126 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else if len < 65536 {
        out.extend_from_slice(&[0x81, 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[0x81, 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// XORs `data` with the repeating 4-byte masking key, eight bytes at a time.
pub fn unmask(data: &mut [u8], key: [u8; 4]) {
    let k8 = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().expect("8 bytes")) ^ k8;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, x) in chunks.into_remainder().iter_mut().enumerate() {
        *x ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A client frame as RFC 6455 builds it.
    fn frame(opcode: u8, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
    }

    fn drain(r: &mut FrameReader, out: &mut Vec<(u8, bool, Vec<u8>)>) -> bool {
        loop {
            match r.next_frame() {
                Next::NeedMore => return false,
                Next::Handoff => return true,
                Next::Data {
                    opcode,
                    fin,
                    payload,
                } => out.push((opcode, fin, r.bytes()[payload].to_vec())),
                Next::Control { frame } => out.push((8, true, r.bytes()[frame].to_vec())),
            }
        }
    }

    #[test]
    fn text_frames_of_each_length_form_are_unmasked() {
        for n in [0, 1, 7, 125, 126, 399, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let mut r = FrameReader::new(1 << 20);
            r.push(&frame(1, true, &payload, [0x12, 0x34, 0x56, 0x78]));
            let mut got = Vec::new();
            assert!(!drain(&mut r, &mut got));
            assert_eq!(got, vec![(1, true, payload)], "length {n}");
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn control_frames_come_back_raw_and_masked() {
        let ping = frame(9, true, b"hi", [1, 2, 3, 4]);
        let mut r = FrameReader::new(1024);
        r.push(&ping);
        r.push(&frame(1, true, b"x", [9, 9, 9, 9]));
        let mut got = Vec::new();
        drain(&mut r, &mut got);
        assert_eq!(got, vec![(8, true, ping), (1, true, b"x".to_vec())]);
    }

    #[test]
    fn frames_it_must_not_judge_stop_it_on_their_first_byte() {
        let ok = frame(1, true, b"ok", [1, 2, 3, 4]);
        let mut unmasked = frame(1, true, b"no", [0; 4]);
        unmasked[1] &= 0x7f;
        let mut rsv = frame(1, true, b"no", [1, 1, 1, 1]);
        rsv[0] |= 0x40;
        let cases = [
            unmasked,
            rsv,
            frame(3, true, b"no", [1, 1, 1, 1]), // reserved data opcode
            frame(11, true, b"no", [1, 1, 1, 1]), // reserved control opcode
            frame(9, false, b"no", [1, 1, 1, 1]), // fragmented ping
            frame(9, true, &[0u8; 126], [1, 1, 1, 1]), // control over 125 bytes
            frame(2, true, &vec![0u8; 2000], [1; 4]), // over the limit
        ];
        for bad in cases {
            let mut r = FrameReader::new(1000);
            let mut wire = ok.clone();
            wire.extend_from_slice(&bad);
            wire.extend_from_slice(&ok);
            r.push(&wire);
            let mut got = Vec::new();
            assert!(drain(&mut r, &mut got));
            assert_eq!(got, vec![(1, true, b"ok".to_vec())]);
            let mut rest = bad.clone();
            rest.extend_from_slice(&ok);
            assert_eq!(r.take_rest(), rest);
            assert_eq!(r.next_frame(), Next::Handoff);
        }
    }

    /// With a limit near `usize::MAX`, a declared length the header arithmetic cannot hold
    /// used to overflow (a panic); it is handed over like any frame over the limit.
    #[test]
    fn lengths_past_usize_are_handed_over_whatever_the_limit() {
        for len in [u64::MAX, u64::MAX - 9, u64::MAX - 13] {
            let mut wire = frame(1, true, b"ok", [1, 2, 3, 4]);
            let mut bad = vec![0x82, 0x80 | 127];
            bad.extend_from_slice(&len.to_be_bytes());
            bad.extend_from_slice(&[0; 4]);
            wire.extend_from_slice(&bad);
            let mut r = FrameReader::new(usize::MAX);
            r.push(&wire);
            let mut got = Vec::new();
            assert!(drain(&mut r, &mut got), "length {len}");
            assert_eq!(got, vec![(1, true, b"ok".to_vec())]);
            assert_eq!(r.take_rest(), bad);
        }
    }

    #[test]
    fn text_headers_use_the_shortest_length_form() {
        let header = |len| {
            let mut h = Vec::new();
            push_text_header(len, &mut h);
            h
        };
        assert_eq!(header(0), [0x81, 0]);
        assert_eq!(header(125), [0x81, 125]);
        assert_eq!(header(126), [0x81, 126, 0, 126]);
        assert_eq!(header(65535), [0x81, 126, 0xff, 0xff]);
        assert_eq!(header(65536), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn unmask_matches_bytewise_xor_at_every_length() {
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x5a).collect();
            let key = [0xde, 0xad, 0xbe, 0xef];
            let mut fast = data.clone();
            unmask(&mut fast, key);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    proptest! {
        /// Any split of any sequence of frames yields the same frames, in order.
        #[test]
        fn any_split_gives_the_same_frames(
            msgs in prop::collection::vec(
                (prop::sample::select(vec![0u8, 1, 2, 9, 10]), any::<bool>(),
                 prop::collection::vec(any::<u8>(), 0..300), any::<[u8; 4]>()),
                0..8),
            cuts in prop::collection::vec(0usize..4000, 0..10),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (op, fin, payload, key) in &msgs {
                let (fin, payload) = if *op >= 8 { (true, &payload[..payload.len().min(125)]) } else { (*fin, &payload[..]) };
                let f = frame(*op, fin, payload, *key);
                expected.push(if *op >= 8 { (8, true, f.clone()) } else { (*op, fin, payload.to_vec()) });
                wire.extend_from_slice(&f);
            }
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            bounds.extend([0, wire.len()]);
            bounds.sort_unstable();
            bounds.dedup();
            let mut r = FrameReader::new(1 << 16);
            let mut got = Vec::new();
            for w in bounds.windows(2) {
                r.push(&wire[w[0]..w[1]]);
                prop_assert!(!drain(&mut r, &mut got));
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(r.pending(), 0);
        }

        /// Arbitrary bytes never panic, and the reader never returns more bytes than it got.
        #[test]
        fn never_panics_on_any_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
            let mut r = FrameReader::new(256);
            r.push(&data);
            let mut got = Vec::new();
            let stopped = drain(&mut r, &mut got);
            let used: usize = got.iter().map(|g| g.2.len()).sum();
            prop_assert!(used <= data.len());
            if stopped {
                prop_assert!(r.take_rest().len() <= data.len());
            }
        }
    }
}
