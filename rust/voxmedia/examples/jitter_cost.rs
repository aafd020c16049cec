//! Per-frame cost of the jitter buffer and the concealer, without Python.
//!
//! Run: cargo run -p voxmedia --profile quick --example jitter_cost

use std::hint::black_box;
use std::time::Instant;
use voxmedia::jitter::{JitterBuffer, JitterConfig};
use voxmedia::plc::Concealer;

fn main() {
    let frames = 200_000u64;
    let payloads: Vec<Vec<u8>> = (0..8)
        .map(|k| (0..160).map(|i| ((i * 7 + k * 13) % 256) as u8).collect())
        .collect();
    let mut out = vec![0i16; 160];

    // Clock-driven, in order, small jitter: one push and one pop per 20 ms frame.
    let mut jb = JitterBuffer::new(JitterConfig::default()).unwrap();
    let t = Instant::now();
    for s in 0..frames {
        let now = s as f64 * 20.0;
        jb.push(
            s,
            s * 20,
            &payloads[(s % 8) as usize],
            now + (s % 3) as f64 * 4.0,
        )
        .unwrap();
        black_box(jb.pop_into(&mut out, now).unwrap());
    }
    let ns = t.elapsed().as_nanos() as f64 / frames as f64;
    println!(
        "clock-driven push+pop_into: {ns:.0} ns/frame ({:?})",
        jb.stats().played
    );

    // Arrival-driven, 10% of frames missing (each concealed).
    let mut jb = JitterBuffer::new(JitterConfig::default()).unwrap();
    let t = Instant::now();
    let mut n = 0u64;
    for s in 0..frames {
        if s % 10 != 5 {
            jb.push(s, s * 20, &payloads[(s % 8) as usize], s as f64 * 20.0)
                .unwrap();
        }
        while let Some(st) = jb.pop_ready_into(&mut out).unwrap() {
            black_box(st);
            n += 1;
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("arrival-driven push+pop_ready_into, 10% loss: {ns:.0} ns/frame");

    // Concealer alone.
    let mut c = Concealer::new(8000, 160).unwrap();
    let mut f: Vec<i16> = (0..160)
        .map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16)
        .collect();
    let t = Instant::now();
    for _ in 0..frames {
        f.copy_from_slice(&out);
        c.good_frame(black_box(&mut f)).unwrap();
    }
    println!(
        "plc good_frame: {:.0} ns/frame",
        t.elapsed().as_nanos() as f64 / frames as f64
    );
    let mut total = 0.0;
    let mut first = 0.0;
    let reps = 50_000;
    for _ in 0..reps {
        c.good_frame(&mut f).unwrap();
        let t = Instant::now();
        c.lost_frame(black_box(&mut out)).unwrap();
        let e = t.elapsed().as_nanos() as f64;
        first += e;
        let t = Instant::now();
        c.lost_frame(black_box(&mut out)).unwrap();
        total += t.elapsed().as_nanos() as f64;
    }
    println!(
        "plc lost_frame: first of an erasure (pitch search) {:.0} ns, continuing {:.0} ns",
        first / reps as f64,
        total / reps as f64
    );
}
