//! Dot-product kernels with run-time dispatch.
//!
//! Both kernels keep the same summation structure for a single window and for four windows at
//! once: eight lanes, two accumulators (even and odd 8-tap steps), then
//! `((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7))`. The grouped and single paths therefore return the
//! same bits, which is what makes the output independent of input chunking.

use super::{emit_with, Bank, Sample, State};

pub(super) trait Dot {
    /// # Safety
    /// `c` and `x` must be valid for `n` reads; `n` is a multiple of 8.
    unsafe fn dot(c: *const f32, x: *const f32, n: usize) -> f32;
    /// Four windows at `x`, `x + stride`, `x + 2 stride`, `x + 3 stride`, same coefficients.
    ///
    /// # Safety
    /// `c` valid for `n` reads, `x` for `3 * stride + n`; `n` is a multiple of 8.
    unsafe fn dot4(c: *const f32, x: *const f32, stride: usize, n: usize) -> [f32; 4];
    /// Four independent (coefficients, window) pairs, interleaved to hide FMA latency.
    ///
    /// # Safety
    /// Every `c[k]` and `x[k]` must be valid for `n` reads; `n` is a multiple of 8.
    unsafe fn dot4g(c: [*const f32; 4], x: [*const f32; 4], n: usize) -> [f32; 4];
}

#[inline(always)]
fn reduce8(v: [f32; 8]) -> f32 {
    ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
}

/// Portable kernel (SSE2 / NEON by auto-vectorisation of the lane arrays).
pub(super) struct Scalar;

impl Scalar {
    #[inline(always)]
    unsafe fn acc(c: *const f32, x: *const f32, n: usize) -> [f32; 8] {
        let c = std::slice::from_raw_parts(c, n);
        let x = std::slice::from_raw_parts(x, n);
        let mut a = [[0f32; 8]; 2];
        for (s, (cc, xx)) in c.chunks_exact(8).zip(x.chunks_exact(8)).enumerate() {
            let acc = &mut a[s & 1];
            for i in 0..8 {
                acc[i] += cc[i] * xx[i];
            }
        }
        let mut v = [0f32; 8];
        for i in 0..8 {
            v[i] = a[0][i] + a[1][i];
        }
        v
    }
}

impl Dot for Scalar {
    #[inline(always)]
    unsafe fn dot(c: *const f32, x: *const f32, n: usize) -> f32 {
        reduce8(Self::acc(c, x, n))
    }

    #[inline(always)]
    unsafe fn dot4(c: *const f32, x: *const f32, stride: usize, n: usize) -> [f32; 4] {
        [0, 1, 2, 3].map(|k| reduce8(Self::acc(c, x.add(k * stride), n)))
    }

    #[inline(always)]
    unsafe fn dot4g(c: [*const f32; 4], x: [*const f32; 4], n: usize) -> [f32; 4] {
        [0, 1, 2, 3].map(|k| reduce8(Self::acc(c[k], x[k], n)))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{reduce8, Dot};
    use std::arch::x86_64::*;

    pub(in super::super) struct Avx2;

    impl Dot for Avx2 {
        #[inline(always)]
        unsafe fn dot(c: *const f32, x: *const f32, n: usize) -> f32 {
            let mut a0 = _mm256_setzero_ps();
            let mut a1 = _mm256_setzero_ps();
            let mut i = 0;
            while i + 16 <= n {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(c.add(i)), _mm256_loadu_ps(x.add(i)), a0);
                a1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(c.add(i + 8)),
                    _mm256_loadu_ps(x.add(i + 8)),
                    a1,
                );
                i += 16;
            }
            if i < n {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(c.add(i)), _mm256_loadu_ps(x.add(i)), a0);
            }
            let mut v = [0f32; 8];
            _mm256_storeu_ps(v.as_mut_ptr(), _mm256_add_ps(a0, a1));
            reduce8(v)
        }

        #[inline(always)]
        unsafe fn dot4(c: *const f32, x: *const f32, stride: usize, n: usize) -> [f32; 4] {
            let (x0, x1, x2, x3) = (x, x.add(stride), x.add(2 * stride), x.add(3 * stride));
            let z = _mm256_setzero_ps();
            let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
            let (mut b0, mut b1, mut b2, mut b3) = (z, z, z, z);
            let mut i = 0;
            while i + 16 <= n {
                let ca = _mm256_loadu_ps(c.add(i));
                let cb = _mm256_loadu_ps(c.add(i + 8));
                a0 = _mm256_fmadd_ps(ca, _mm256_loadu_ps(x0.add(i)), a0);
                a1 = _mm256_fmadd_ps(ca, _mm256_loadu_ps(x1.add(i)), a1);
                a2 = _mm256_fmadd_ps(ca, _mm256_loadu_ps(x2.add(i)), a2);
                a3 = _mm256_fmadd_ps(ca, _mm256_loadu_ps(x3.add(i)), a3);
                b0 = _mm256_fmadd_ps(cb, _mm256_loadu_ps(x0.add(i + 8)), b0);
                b1 = _mm256_fmadd_ps(cb, _mm256_loadu_ps(x1.add(i + 8)), b1);
                b2 = _mm256_fmadd_ps(cb, _mm256_loadu_ps(x2.add(i + 8)), b2);
                b3 = _mm256_fmadd_ps(cb, _mm256_loadu_ps(x3.add(i + 8)), b3);
                i += 16;
            }
            if i < n {
                let ca = _mm256_loadu_ps(c.add(i));
                a0 = _mm256_fmadd_ps(ca, _mm256_loadu_ps(x0.add(i)), a0);
                a1 = _mm256_fmadd_ps(ca, _mm256_loadu_ps(x1.add(i)), a1);
                a2 = _mm256_fmadd_ps(ca, _mm256_loadu_ps(x2.add(i)), a2);
                a3 = _mm256_fmadd_ps(ca, _mm256_loadu_ps(x3.add(i)), a3);
            }
            finish4([a0, a1, a2, a3], [b0, b1, b2, b3])
        }

        #[inline(always)]
        unsafe fn dot4g(c: [*const f32; 4], x: [*const f32; 4], n: usize) -> [f32; 4] {
            let z = _mm256_setzero_ps();
            let mut a = [z; 4];
            let mut b = [z; 4];
            let mut i = 0;
            while i + 16 <= n {
                for k in 0..4 {
                    let ca = _mm256_loadu_ps(c[k].add(i));
                    a[k] = _mm256_fmadd_ps(ca, _mm256_loadu_ps(x[k].add(i)), a[k]);
                }
                for k in 0..4 {
                    let cb = _mm256_loadu_ps(c[k].add(i + 8));
                    b[k] = _mm256_fmadd_ps(cb, _mm256_loadu_ps(x[k].add(i + 8)), b[k]);
                }
                i += 16;
            }
            if i < n {
                for k in 0..4 {
                    let ca = _mm256_loadu_ps(c[k].add(i));
                    a[k] = _mm256_fmadd_ps(ca, _mm256_loadu_ps(x[k].add(i)), a[k]);
                }
            }
            finish4(a, b)
        }
    }

    /// Sums the two accumulators of four windows and reduces each in `reduce8`'s order.
    #[inline(always)]
    unsafe fn finish4(a: [__m256; 4], b: [__m256; 4]) -> [f32; 4] {
        {
            let v0 = _mm256_add_ps(a[0], b[0]);
            let v1 = _mm256_add_ps(a[1], b[1]);
            let v2 = _mm256_add_ps(a[2], b[2]);
            let v3 = _mm256_add_ps(a[3], b[3]);
            // hadd pairs lanes within each 128-bit half: after two rounds lane k of the low half
            // holds (v0+v1)+(v2+v3) of window k, the high half (v4+v5)+(v6+v7): reduce8's order.
            let h01 = _mm256_hadd_ps(v0, v1);
            let h23 = _mm256_hadd_ps(v2, v3);
            let h = _mm256_hadd_ps(h01, h23);
            let s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            let mut r = [0f32; 4];
            _mm_storeu_ps(r.as_mut_ptr(), s);
            r
        }
    }
}

/// Which kernel this CPU runs; chosen once per object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    #[inline]
    pub(super) fn emit<S: Sample>(self, bank: &Bank, st: &mut State, out: &mut [S]) -> usize {
        match self {
            Kernel::Scalar => emit_with::<S, Scalar>(bank, st, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only selected when the CPU reports AVX2 and FMA.
            Kernel::Avx2 => unsafe { emit_avx2::<S>(bank, st, out) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn emit_avx2<S: Sample>(bank: &Bank, st: &mut State, out: &mut [S]) -> usize {
    emit_with::<S, avx2::Avx2>(bank, st, out)
}
