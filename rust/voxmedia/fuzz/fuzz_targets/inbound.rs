//! The inbound hot path on any sequence of messages: arbitrary bytes and well-formed media
//! messages with arbitrary counters, timestamps and payloads. It never panics, a message
//! releases a bounded number of frames, and the PCM it returns is those frames: exactly at
//! 8 kHz, never more than they make when resampled.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use voxmedia::g711::Law;
use voxmedia::pipeline::{Inbound, InboundConfig};
use voxmedia::resample::Quality;

#[derive(Debug, Arbitrary)]
enum Msg {
    Raw(Vec<u8>),
    Media {
        chunk: Option<u64>,
        timestamp: Option<u64>,
        /// Counters as JSON numbers rather than strings (Plivo, Telnyx).
        numbers: bool,
        payload: Vec<u8>,
        /// Payload bytes as given (not base64), to reach the base64 decoder's errors.
        raw_payload: bool,
        /// Cut or pad the payload to exactly one frame, so most messages reach the buffer.
        exact: bool,
    },
    Reset,
}

#[derive(Debug, Arbitrary)]
struct Case {
    out_rate: u8,
    frame_ms: u8,
    alaw: bool,
    reorder_window: u8,
    quality: u8,
    msgs: Vec<Msg>,
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            s.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
        for _ in c.len()..3 {
            s.push('=');
        }
    }
    s
}

fuzz_target!(|c: Case| {
    let rates = [8000, 16000, 24000, 48000, 11025, 22050, 32000, 44100];
    let cfg = InboundConfig {
        out_rate: rates[usize::from(c.out_rate) % rates.len()],
        frame_ms: [10, 20, 30][usize::from(c.frame_ms) % 3],
        law: if c.alaw { Law::Alaw } else { Law::Ulaw },
        reorder_window: u32::from(c.reorder_window % 8),
        quality: [Quality::Voice, Quality::Phone, Quality::High][usize::from(c.quality) % 3],
        ..InboundConfig::default()
    };
    let frame_ms = cfg.frame_ms;
    let out_rate = cfg.out_rate;
    let Ok(mut inbound) = Inbound::new(cfg) else {
        return;
    };
    let mut released = 0u64;
    let mut out_total = 0usize;
    for m in c.msgs.iter().take(200) {
        let text = match m {
            Msg::Raw(b) => b.clone(),
            Msg::Reset => {
                inbound.reset();
                released = 0;
                out_total = 0;
                continue;
            }
            Msg::Media {
                chunk,
                timestamp,
                numbers,
                payload,
                raw_payload,
                exact,
            } => {
                let mut payload = payload.clone();
                if *exact {
                    let fill = payload.first().copied().unwrap_or(0xff);
                    payload.resize(usize::try_from(8 * frame_ms).unwrap(), fill);
                }
                let q = if *numbers { "" } else { "\"" };
                let mut s = String::from("{\"event\":\"media\",\"media\":{");
                if let Some(n) = chunk {
                    s += &format!("\"chunk\":{q}{n}{q},");
                }
                if let Some(t) = timestamp {
                    s += &format!("\"timestamp\":{q}{t}{q},");
                }
                s += "\"payload\":\"";
                let mut b = s.into_bytes();
                if *raw_payload {
                    b.extend(
                        payload
                            .iter()
                            .filter(|&&c| c != b'"' && c != b'\\' && c >= 0x20),
                    );
                } else {
                    b.extend(b64(&payload).bytes());
                }
                b.extend_from_slice(b"\"}}");
                b
            }
        };
        if let Ok(step) = inbound.process(&text) {
            assert!(step.concealed <= step.frames);
            assert_eq!(step.speech.is_some(), step.frames > 0);
            // A message can release what the ring holds and the frames it conceals before
            // it, never an unbounded run (a counter far ahead restarts the buffer).
            assert!(
                step.frames <= 1024,
                "{} frames from one message",
                step.frames
            );
            released += u64::from(step.frames);
            let pcm = inbound.output().len();
            out_total += pcm;
            if out_rate == 8000 {
                assert_eq!(pcm, step.frames as usize * (8 * frame_ms) as usize);
            }
        } else {
            assert!(inbound.output().is_empty());
        }
    }
    // Resampled output tracks the frames released (the filter delay holds back a little).
    let expect = released as f64 * f64::from(frame_ms) * f64::from(out_rate) / 1000.0;
    assert!((out_total as f64) <= expect + 1.0);
});
