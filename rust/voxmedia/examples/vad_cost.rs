//! Rust-only cost of `Vad::is_speech` per frame (no Python call overhead).
//!
//! cargo run -p voxmedia --profile quick --example vad_cost

use std::hint::black_box;
use std::time::Instant;
use voxmedia::vad::{Vad, VadConfig};

fn main() {
    for &(rate, ms) in &[
        (8000u32, 20u32),
        (8000, 10),
        (8000, 30),
        (16000, 20),
        (48000, 20),
    ] {
        let mut vad = Vad::new(
            rate,
            VadConfig {
                frame_ms: ms,
                ..VadConfig::default()
            },
        )
        .unwrap();
        let n = vad.frame_len();
        // Deterministic pseudo-noise plus a tone, ten seconds' worth of distinct frames.
        let frames = (10_000 / ms) as usize;
        let mut seed = 1u32;
        let pcm: Vec<i16> = (0..n * frames)
            .map(|i| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = ((seed >> 16) as i32 - 32768) / 16;
                let tone = (3000.0 * (i as f32 * 0.1).sin()) as i32;
                (noise + tone) as i16
            })
            .collect();
        // The fastest of 20 passes: the machine is shared, and other load only adds time.
        let mut ns = f64::MAX;
        let mut count = 0usize;
        for _ in 0..20 {
            count = 0;
            let t = Instant::now();
            for f in pcm.chunks_exact(n) {
                count += black_box(vad.is_speech(black_box(f)).unwrap()) as usize;
            }
            ns = ns.min(t.elapsed().as_nanos() as f64 / frames as f64);
        }
        println!("{rate} Hz {ms} ms: {ns:.0} ns/frame ({count} speech in the last pass)");
    }
}
