//! The WebSocket frame reader on any bytes, in any split: it never panics, and it yields the
//! same frames (and stops at the same byte) however the stream is cut into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxmedia::wire::ws::{FrameReader, Next};

#[derive(Debug, PartialEq)]
enum Seen {
    Data(u8, bool, Vec<u8>),
    Control(Vec<u8>),
}

/// Frames read until the reader wants more or hands over, and the bytes it hands over.
fn drain(r: &mut FrameReader, out: &mut Vec<Seen>) -> Option<Vec<u8>> {
    loop {
        match r.next_frame() {
            Next::NeedMore => return None,
            Next::Data {
                opcode,
                fin,
                payload,
            } => out.push(Seen::Data(opcode, fin, r.bytes()[payload].to_vec())),
            Next::Control { frame } => out.push(Seen::Control(r.bytes()[frame].to_vec())),
            Next::Handoff => return Some(r.take_rest()),
        }
    }
}

fn read(stream: &[u8], cuts: &[usize], max: usize) -> (Vec<Seen>, Option<Vec<u8>>, usize) {
    let mut r = FrameReader::new(max);
    let mut seen = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        let end = c.clamp(start, stream.len());
        r.push(&stream[start..end]);
        start = end;
        if let Some(mut rest) = drain(&mut r, &mut seen) {
            // Whatever was not pushed yet belongs to the handed-over stream too.
            rest.extend_from_slice(&stream[start..]);
            return (seen, Some(rest), 0);
        }
    }
    let pending = r.pending();
    (seen, None, pending)
}

fuzz_target!(|input: (u16, Vec<u16>, Vec<u8>)| {
    let (max, mut cuts, stream) = input;
    let max = usize::from(max);
    cuts.truncate(64);
    let mut cuts: Vec<usize> = cuts.into_iter().map(usize::from).collect();
    cuts.sort_unstable();
    let whole = read(&stream, &[], max);
    let split = read(&stream, &cuts, max);
    assert_eq!(whole, split);
    // Every byte is accounted for: returned as a frame, handed over, or still pending.
    let (seen, rest, pending) = whole;
    let framed: usize = seen
        .iter()
        .map(|s| match s {
            Seen::Data(_, _, p) => p.len(),
            Seen::Control(f) => f.len(),
        })
        .sum();
    assert!(framed + rest.map_or(0, |r| r.len()) + pending <= stream.len());
});
