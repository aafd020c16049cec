//! Loops the inbound pipeline over pre-built messages, for `perf record`:
//!
//!     cargo build -p voxmedia --profile profiling --example inbound_profile
//!     perf record target/profiling/examples/inbound_profile
//!
//! Messages are made once (outside the timed loop) so the profile shows only the pipeline.

use std::hint::black_box;
use std::time::Instant;
use voxmedia::g711::Law;
use voxmedia::pipeline::{Inbound, InboundConfig};
use voxmedia::wire::twilio::MediaMessageBuilder;

fn main() {
    let frames: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let n = 3000;
    let pcm: Vec<i16> = (0..160 * n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin().powi(2);
            let x: f64 = (1..12)
                .map(|k| (2.0 * std::f64::consts::PI * 140.0 * k as f64 * t).sin() / k as f64)
                .sum();
            (x * env * 5000.0) as i16
        })
        .collect();
    let mut codes = vec![0u8; pcm.len()];
    Law::Ulaw.encode_into(&pcm, &mut codes).unwrap();
    let builder = MediaMessageBuilder::new("MZ18ad3ab5a668481ce02b83e7395059f0");
    let payloads: Vec<String> = (0..n)
        .map(|i| {
            let mut m = Vec::new();
            builder.append(&codes[i * 160..(i + 1) * 160], &mut m);
            let p = m.len() - 3 - 216;
            String::from_utf8(m[p..p + 216].to_vec()).unwrap()
        })
        .collect();
    let mut inb = Inbound::new(InboundConfig::default()).unwrap();
    let t = Instant::now();
    for i in 0..frames {
        // Counters grow with i so the jitter buffer sees an in-order call.
        let msg = format!(
            "{{\"event\":\"media\",\"sequenceNumber\":\"{}\",\"media\":{{\"track\":\"inbound\",\"chunk\":\"{}\",\"timestamp\":\"{}\",\"payload\":\"{}\"}},\"streamSid\":\"MZ18ad3ab5a668481ce02b83e7395059f0\"}}",
            i + 2,
            i + 1,
            i * 20,
            payloads[i % n]
        );
        black_box(inb.process(black_box(msg.as_bytes())).unwrap());
    }
    println!(
        "{:.0} ns/frame (message formatting included)",
        t.elapsed().as_nanos() as f64 / frames as f64
    );
}
