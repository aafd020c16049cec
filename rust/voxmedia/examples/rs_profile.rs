//! Resampling in chunks (20 ms unless given) in a loop, for `perf record` (profiling profile);
//! prints the time per 20 ms of input.
//!
//!     cargo run -p voxmedia --profile profiling --example rs_profile -- 48000 8000 [chunk_ms]
//!
//! The quality is `voice` unless the environment sets `QUALITY` (`phone`, `high`); with `HOLD`
//! set, the resampler holds partial groups (`Resampler::hold_partial_groups`); `ROUNDS` sets
//! how many times the 500 chunks are resampled.
use std::hint::black_box;
use voxmedia::resample::{Quality, Resampler};
fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a rate in Hz"))
        .collect();
    let (src, dst, ms) = match args[..] {
        [a, b] => (a, b, 20),
        [a, b, ms] => (a, b, ms),
        _ => (8000, 16000, 20),
    };
    let chunk = src as usize * ms as usize / 1000;
    let pcm: Vec<i16> = (0..chunk * 500)
        .map(|i| ((i * 7919) % 20000 - 10000) as i16)
        .collect();
    let quality = std::env::var("QUALITY").unwrap_or_else(|_| "voice".into());
    let quality = Quality::from_name(&quality).expect("a quality name");
    let mut rs = Resampler::new(src, dst, quality).unwrap();
    let hold = std::env::var_os("HOLD").is_some();
    rs.hold_partial_groups(hold);
    let mut o = vec![0i16; rs.output_len_max(chunk)];
    let t = std::time::Instant::now();
    // `ROUNDS` (of 500 chunks) for a shorter run, e.g. under `valgrind --tool=callgrind`.
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(40_000 / ms as usize);
    for _ in 0..rounds {
        for c in pcm.chunks_exact(chunk) {
            black_box(rs.process_into(black_box(c), &mut o).unwrap());
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / (rounds * 500) as f64 * 20.0 / ms as f64;
    let q = quality.name();
    let h = if hold { ", holding partial groups" } else { "" };
    eprintln!("{src} -> {dst} ({q}{h}) in {ms} ms chunks: {ns:.0} ns per 20 ms");
}
