//! The jitter buffer under any configuration and any sequence of pushes (any counters,
//! timestamps, arrival times and payload sizes) and pops: errors, never panics; the counters
//! add up; the depth stays within the ring.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use voxmedia::jitter::{Codec, JitterBuffer, JitterConfig};

#[derive(Debug, Arbitrary)]
enum Op {
    Push {
        seq: u64,
        ts: u64,
        arrival: f64,
        size: u16,
        fill: u8,
    },
    /// A packet one after the last, on time: the common case.
    Next {
        late_ms: u8,
        fill: u8,
    },
    Pop(f64),
    PopReady,
    Reset,
}

#[derive(Debug, Arbitrary)]
struct Case {
    rate: u8,
    frame_ms: u8,
    codec: u8,
    min_delay_ms: u16,
    max_delay_ms: u16,
    max_packets: u16,
    quantile: f64,
    forget_factor: f64,
    reorder_window: u8,
    initial_delay_ms: u16,
    /// Use the fuzzed settings as given, else fold them into the valid ranges (so most cases
    /// reach the buffer).
    raw: bool,
    ops: Vec<Op>,
}

fuzz_target!(|c: Case| {
    let mut cfg = JitterConfig {
        sample_rate: [8000, 16000, 24000, 48000, 44100][usize::from(c.rate) % 5],
        frame_ms: u32::from(c.frame_ms),
        codec: [Codec::Ulaw, Codec::Alaw, Codec::Pcm16][usize::from(c.codec) % 3],
        min_delay_ms: u32::from(c.min_delay_ms),
        max_delay_ms: u32::from(c.max_delay_ms),
        max_packets: usize::from(c.max_packets),
        quantile: c.quantile,
        forget_factor: c.forget_factor,
        reorder_window: usize::from(c.reorder_window),
        initial_delay_ms: u32::from(c.initial_delay_ms),
    };
    if !c.raw {
        cfg.frame_ms = 10 * (1 + cfg.frame_ms % 12);
        cfg.min_delay_ms %= 300;
        cfg.max_delay_ms = cfg.min_delay_ms + cfg.max_delay_ms % 2000;
        cfg.reorder_window %= 8;
        cfg.max_packets = cfg.packets_needed() + cfg.max_packets % 64;
        cfg.quantile = 0.5 + (f64::from(c.max_packets) % 499.0) / 1000.0;
        cfg.forget_factor = 0.9 + f64::from(c.min_delay_ms % 99) / 1000.0;
        cfg.initial_delay_ms %= 1000;
    }
    let Ok(mut jb) = JitterBuffer::new(cfg.clone()) else {
        return;
    };
    let mut out = vec![0i16; jb.frame_len()];
    let (mut seq, mut clock) = (0u64, 0f64);
    for op in c.ops.iter().take(500) {
        match *op {
            Op::Push {
                seq: s,
                ts,
                arrival,
                size,
                fill,
            } => {
                let payload = vec![fill; usize::from(size) % (2 * jb.payload_len() + 2)];
                let _ = jb.push(s, ts, &payload, arrival);
                seq = s;
            }
            Op::Next { late_ms, fill } => {
                seq = seq.wrapping_add(1);
                let payload = vec![fill; jb.payload_len()];
                let ts = seq.wrapping_mul(u64::from(cfg.frame_ms));
                let _ = jb.push(seq, ts, &payload, clock + f64::from(late_ms));
            }
            Op::Pop(now) => {
                let _ = jb.pop_into(&mut out, now);
            }
            Op::PopReady => {
                clock += f64::from(cfg.frame_ms);
                let _ = jb.pop_into(&mut out, clock);
                let _ = jb.pop_ready_into(&mut out);
            }
            Op::Reset => jb.reset(),
        }
        let st = jb.stats();
        assert!(st.buffered_frames <= cfg.max_packets, "{st:?}");
        assert!(!st.target_depth_ms.is_nan());
    }
    assert!(jb
        .pop_into(&mut vec![0i16; jb.frame_len() + 1], 0.0)
        .is_err());
});
