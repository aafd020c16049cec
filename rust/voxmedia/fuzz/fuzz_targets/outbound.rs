//! The outbound hot path on any sequence of PCM, G.711 codes, flushes and resets: it never
//! panics, every message is one frame of valid Twilio `media` JSON whose payload decodes to
//! exactly one frame of codes, and each WebSocket frame is that JSON behind a correct header.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use voxmedia::g711::Law;
use voxmedia::pipeline::Outbound;
use voxmedia::resample::{Quality, SUPPORTED_RATES};

#[derive(Debug, Arbitrary)]
enum Op {
    Pcm(Vec<i16>),
    Codes(Vec<u8>, bool),
    Flush,
    Reset,
}

#[derive(Debug, Arbitrary)]
struct Case {
    sid: String,
    rate: u8,
    alaw: bool,
    frame_ms: u8,
    quality: u8,
    ops: Vec<Op>,
}

fn b64_len(codes: usize) -> usize {
    codes.div_ceil(3) * 4
}

fuzz_target!(|c: Case| {
    let rate = SUPPORTED_RATES[usize::from(c.rate) % SUPPORTED_RATES.len()];
    let frame_ms = [10, 20, 30, 40, 60, 100][usize::from(c.frame_ms) % 6];
    let quality = [Quality::Voice, Quality::Phone, Quality::High][usize::from(c.quality) % 3];
    let law = if c.alaw { Law::Alaw } else { Law::Ulaw };
    let Ok(mut out) = Outbound::new(&c.sid, rate, law, frame_ms, quality) else {
        return;
    };
    let frame = (8 * frame_ms) as usize;
    for op in c.ops.iter().take(64) {
        let n = match op {
            Op::Pcm(p) => out.process(&p[..p.len().min(20_000)]),
            Op::Codes(k, last) => out.process_codes(&k[..k.len().min(20_000)], *last),
            Op::Flush => out.flush(),
            Op::Reset => {
                out.reset();
                assert_eq!(out.messages().len(), 0);
                continue;
            }
        };
        assert_eq!(out.messages().len(), n);
        assert_eq!(out.frames().len(), n);
        for (m, f) in out.messages().zip(out.frames()) {
            let v: Value = serde_json::from_slice(m).expect("valid JSON");
            assert_eq!(v["event"], "media");
            assert_eq!(v["streamSid"].as_str(), Some(c.sid.as_str()));
            let payload = v["media"]["payload"].as_str().expect("a payload");
            assert_eq!(payload.len(), b64_len(frame));
            // The frame: FIN + text opcode, unmasked length, then exactly the message.
            assert_eq!(f[0], 0x81);
            assert!(f.ends_with(m));
            let head = f.len() - m.len();
            let len = match f[1] {
                126 => usize::from(u16::from_be_bytes([f[2], f[3]])),
                127 => usize::try_from(u64::from_be_bytes(f[2..10].try_into().unwrap())).unwrap(),
                l => usize::from(l),
            };
            assert_eq!(len, m.len());
            assert_eq!(
                head,
                if m.len() < 126 {
                    2
                } else if m.len() < 65536 {
                    4
                } else {
                    10
                }
            );
        }
    }
});
