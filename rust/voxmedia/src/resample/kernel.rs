//! Dot-product kernels with run-time dispatch.
//!
//! Every kernel keeps one summation structure, whether it computes one window or eight: eight
//! lanes, one accumulator per window over all 8-tap steps, then
//! `((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7))`. The grouped and single paths therefore return the
//! same bits, which is what makes the output independent of input chunking.

use super::fused::Fused;
use super::{emit_with, ingest_with, Bank, Sample, State};

/// Windows computed at once by [`Dot::dot8`] (outputs of one phase sharing coefficients).
pub(super) const GROUP: usize = 8;

pub(super) trait Dot {
    /// Lanes of the direct-form engine with the same instruction set.
    type V: super::direct::Vec8;
    /// # Safety
    /// `c` and `x` must be valid for `n` reads; `n` is a multiple of 8.
    unsafe fn dot(c: *const f32, x: *const f32, n: usize) -> f32;
    /// Eight windows at `x + k * stride`, same coefficients (loaded once for all eight).
    ///
    /// # Safety
    /// `c` valid for `n` reads, `x` for `7 * stride + n`; `n` is a multiple of 8.
    unsafe fn dot8(c: *const f32, x: *const f32, stride: usize, n: usize) -> [f32; GROUP];
    /// Two windows at `x` and `x + stride`, same coefficients.
    ///
    /// # Safety
    /// `c` valid for `n` reads, `x` for `stride + n`; `n` is a multiple of 8.
    unsafe fn dot2(c: *const f32, x: *const f32, stride: usize, n: usize) -> [f32; 2];
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

/// Portable kernel (SSE2 / NEON by auto-vectorisation of the lane array).
pub(super) struct Scalar;

impl Scalar {
    #[inline(always)]
    unsafe fn acc(c: *const f32, x: *const f32, n: usize) -> [f32; 8] {
        let c = std::slice::from_raw_parts(c, n);
        let x = std::slice::from_raw_parts(x, n);
        let mut a = [0f32; 8];
        for (cc, xx) in c.chunks_exact(8).zip(x.chunks_exact(8)) {
            for i in 0..8 {
                a[i] += cc[i] * xx[i];
            }
        }
        a
    }
}

impl Dot for Scalar {
    type V = super::direct::P8;
    #[inline(always)]
    unsafe fn dot(c: *const f32, x: *const f32, n: usize) -> f32 {
        reduce8(Self::acc(c, x, n))
    }

    #[inline(always)]
    unsafe fn dot8(c: *const f32, x: *const f32, stride: usize, n: usize) -> [f32; GROUP] {
        std::array::from_fn(|k| reduce8(Self::acc(c, x.add(k * stride), n)))
    }

    #[inline(always)]
    unsafe fn dot2(c: *const f32, x: *const f32, stride: usize, n: usize) -> [f32; 2] {
        [0, 1].map(|k| reduce8(Self::acc(c, x.add(k * stride), n)))
    }

    #[inline(always)]
    unsafe fn dot4g(c: [*const f32; 4], x: [*const f32; 4], n: usize) -> [f32; 4] {
        [0, 1, 2, 3].map(|k| reduce8(Self::acc(c[k], x[k], n)))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{reduce8, Dot, GROUP};
    use std::arch::x86_64::*;

    pub(in super::super) struct Avx2;

    impl Dot for Avx2 {
        type V = crate::resample::direct::avx2::A8;
        #[inline(always)]
        unsafe fn dot(c: *const f32, x: *const f32, n: usize) -> f32 {
            let mut a = _mm256_setzero_ps();
            let mut i = 0;
            while i < n {
                a = _mm256_fmadd_ps(_mm256_loadu_ps(c.add(i)), _mm256_loadu_ps(x.add(i)), a);
                i += 8;
            }
            let mut v = [0f32; 8];
            _mm256_storeu_ps(v.as_mut_ptr(), a);
            reduce8(v)
        }

        #[inline(always)]
        unsafe fn dot8(c: *const f32, x: *const f32, stride: usize, n: usize) -> [f32; GROUP] {
            let mut a = [_mm256_setzero_ps(); GROUP];
            let mut i = 0;
            while i < n {
                let cv = _mm256_load_ps(c.add(i));
                for (k, acc) in a.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(cv, _mm256_loadu_ps(x.add(k * stride + i)), *acc);
                }
                i += 8;
            }
            // Two rounds of hadd leave, per 128-bit half, the half-sums of four windows in
            // reduce8's order; crossing the halves and adding finishes all eight at once.
            let h0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
            let h1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
            let lo = _mm256_permute2f128_ps(h0, h1, 0x20);
            let hi = _mm256_permute2f128_ps(h0, h1, 0x31);
            let mut r = [0f32; GROUP];
            _mm256_storeu_ps(r.as_mut_ptr(), _mm256_add_ps(lo, hi));
            r
        }

        #[inline(always)]
        unsafe fn dot2(c: *const f32, x: *const f32, stride: usize, n: usize) -> [f32; 2] {
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let x1 = x.add(stride);
            let mut i = 0;
            while i < n {
                let cv = _mm256_load_ps(c.add(i));
                a0 = _mm256_fmadd_ps(cv, _mm256_loadu_ps(x.add(i)), a0);
                a1 = _mm256_fmadd_ps(cv, _mm256_loadu_ps(x1.add(i)), a1);
                i += 8;
            }
            let h = _mm256_hadd_ps(a0, a1);
            let h = _mm256_hadd_ps(h, h);
            let s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            let mut r = [0f32; 4];
            _mm_storeu_ps(r.as_mut_ptr(), s);
            [r[0], r[1]]
        }

        #[inline(always)]
        unsafe fn dot4g(c: [*const f32; 4], x: [*const f32; 4], n: usize) -> [f32; 4] {
            let mut a = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i < n {
                for k in 0..4 {
                    let cv = _mm256_load_ps(c[k].add(i));
                    a[k] = _mm256_fmadd_ps(cv, _mm256_loadu_ps(x[k].add(i)), a[k]);
                }
                i += 8;
            }
            let h = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
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

    /// Appends `x` to the history (see `ingest_with`).
    #[inline]
    pub(super) fn ingest<S: Sample>(self, m: usize, st: &mut State, x: &[S]) {
        match self {
            Kernel::Scalar => ingest_with::<S, super::direct::P8>(m, st, x),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only selected when the CPU reports AVX2 and FMA.
            Kernel::Avx2 => unsafe { ingest_avx2(m, st, x) },
        }
    }

    /// Runs a fused half-band into the next stage's streams (see `fused.rs`).
    #[inline]
    pub(super) fn fused(self, f: &Fused, hb: &mut State, next: &mut State) -> usize {
        match self {
            Kernel::Scalar => f.emit::<super::direct::P8>(hb, next),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only selected when the CPU reports AVX2 and FMA.
            Kernel::Avx2 => unsafe { fused_avx2(f, hb, next) },
        }
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn ingest_avx2<S: Sample>(m: usize, st: &mut State, x: &[S]) {
    ingest_with::<S, super::direct::avx2::A8>(m, st, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fused_avx2(f: &Fused, hb: &mut State, next: &mut State) -> usize {
    f.emit::<super::direct::avx2::A8>(hb, next)
}
