//! How many 8-lane f32 operations per ns this machine sustains: the ceiling on the resampler's
//! filters, which cost one multiply-add per tap per eight outputs (or, folded, one add and one
//! multiply-add per pair of taps).
//!
//!     cargo run -p voxmedia --release --example fp_throughput
//!
//! On paper first-generation Zen issues multiply-adds and adds on separate pipes, so a mix of
//! the two would run at the sum of their rates. Measured on the project's machine it does not
//! (its FP unit behaves as if shared, e.g. with an SMT sibling): every kind of vector op comes
//! out of one budget of ~2.3 per ns, which bounds every filter from below.

#[cfg(target_arch = "x86_64")]
mod probe {
    use std::arch::x86_64::*;
    use std::hint::black_box;
    use std::time::Instant;

    const N: u64 = 100_000_000;

    /// Ten independent chains per iteration (enough to cover either latency), in registers.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run(kind: &str) -> f64 {
        let b = _mm256_set1_ps(black_box(0.999));
        let c = _mm256_set1_ps(black_box(0.0001));
        let (mut x0, mut x1, mut x2, mut x3, mut x4) = (b, b, b, b, b);
        let (mut x5, mut x6, mut x7, mut x8, mut x9) = (b, b, b, b, b);
        let t = Instant::now();
        match kind {
            "multiply-adds" => {
                for _ in 0..N {
                    x0 = _mm256_fmadd_ps(x0, b, c);
                    x1 = _mm256_fmadd_ps(x1, b, c);
                    x2 = _mm256_fmadd_ps(x2, b, c);
                    x3 = _mm256_fmadd_ps(x3, b, c);
                    x4 = _mm256_fmadd_ps(x4, b, c);
                    x5 = _mm256_fmadd_ps(x5, b, c);
                    x6 = _mm256_fmadd_ps(x6, b, c);
                    x7 = _mm256_fmadd_ps(x7, b, c);
                    x8 = _mm256_fmadd_ps(x8, b, c);
                    x9 = _mm256_fmadd_ps(x9, b, c);
                }
            }
            "adds" => {
                for _ in 0..N {
                    x0 = _mm256_add_ps(x0, c);
                    x1 = _mm256_add_ps(x1, c);
                    x2 = _mm256_add_ps(x2, c);
                    x3 = _mm256_add_ps(x3, c);
                    x4 = _mm256_add_ps(x4, c);
                    x5 = _mm256_add_ps(x5, c);
                    x6 = _mm256_add_ps(x6, c);
                    x7 = _mm256_add_ps(x7, c);
                    x8 = _mm256_add_ps(x8, c);
                    x9 = _mm256_add_ps(x9, c);
                }
            }
            _ => {
                for _ in 0..N {
                    x0 = _mm256_fmadd_ps(x0, b, c);
                    x1 = _mm256_add_ps(x1, c);
                    x2 = _mm256_fmadd_ps(x2, b, c);
                    x3 = _mm256_add_ps(x3, c);
                    x4 = _mm256_fmadd_ps(x4, b, c);
                    x5 = _mm256_add_ps(x5, c);
                    x6 = _mm256_fmadd_ps(x6, b, c);
                    x7 = _mm256_add_ps(x7, c);
                    x8 = _mm256_fmadd_ps(x8, b, c);
                    x9 = _mm256_add_ps(x9, c);
                }
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / N as f64;
        black_box([x0, x1, x2, x3, x4, x5, x6, x7, x8, x9]);
        ns
    }

    pub fn main() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            println!("no AVX2+FMA on this CPU");
            return;
        }
        for kind in ["multiply-adds", "adds", "half of each"] {
            // SAFETY: the features were detected above.
            let ns = unsafe { run(kind) };
            println!(
                "10 x 8-lane {kind:<13}: {ns:.2} ns, {:.2} vector ops per ns",
                10.0 / ns
            );
        }
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    probe::main();
}
