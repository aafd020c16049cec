//! 8 kHz -> 16 kHz resampling of 20 ms chunks in a loop, for `perf record` (profiling profile).
use std::hint::black_box;
use voxmedia::resample::{Quality, Resampler};
fn main() {
    let pcm: Vec<i16> = (0..160 * 500)
        .map(|i| ((i * 7919) % 20000 - 10000) as i16)
        .collect();
    let mut up = Resampler::new(8000, 16000, Quality::Voice).unwrap();
    let mut o = vec![0i16; 400];
    for _ in 0..4000 {
        for c in pcm.chunks_exact(160) {
            black_box(up.process_into(black_box(c), &mut o).unwrap());
        }
    }
}
