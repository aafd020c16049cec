//! Output-vectorised direct form for the integer ratios (1:L upsampling, M:1 decimation).
//!
//! Why a second engine: the dot-product kernels pay a horizontal reduction per output and
//! reload the window for every output. For an integer ratio every output phase is a plain FIR
//! over one contiguous stream (the input itself for 1:L, one of its M deinterleaved polyphase
//! streams for M:1), so eight consecutive outputs can be the eight lanes of one vector:
//! no reduction, and with `K` blocks in flight each input vector loaded feeds `K` multiply-adds.
//!
//! Taps are visited residue-major (`u = r, r + 8, r + 16, ...` for `r = 0..8`): when the tap
//! index grows by 8 the vector block `b` needs is the one block `b + 1` used, so a window of
//! `K` vectors slides by one register and only one new load is needed per step. Linear-phase
//! rows (and mirrored pairs of polyphase streams) are folded: `c[u] * (p[u] + q[-u])` halves
//! the multiply-adds; the adds run on the otherwise idle FP add pipes.
//!
//! Chunking invariance: every output lane is computed by the same instruction sequence in the
//! same order whatever block it sits in and however many lanes of the block are used (a lane
//! never reads its neighbours), and partial blocks read stale-but-allocated padding instead of
//! taking another code path. So any split of the input gives the one-shot bits.

use super::{Bank, Sample, State};

/// Vector blocks of 8 outputs kept in flight by the main loop.
pub(super) const K: usize = 4;
/// Samples of slack after the last valid one in every stream, so that the unused lanes of a
/// partial block read allocated memory.
pub(super) const PAD: usize = 8 * K + 16;
/// Outputs computed per `emit` call at most (bounds the staging buffer).
pub(super) const OUT_CAP: usize = 1024;
/// Staging floats reserved for per-phase block results.
pub(super) const TMP: usize = MAX_STREAMS * 8 * K;
/// Most polyphase streams of a supported decimation (48k -> 8k).
const MAX_STREAMS: usize = 6;

/// Eight f32 lanes; the portable and the AVX2+FMA implementations differ only in fusing.
pub(super) trait Vec8: Copy {
    /// # Safety
    /// The CPU supports the implementation's instructions.
    unsafe fn zero() -> Self;
    /// # Safety
    /// `p` valid for one read.
    unsafe fn splat(p: *const f32) -> Self;
    /// `splat` of each of four consecutive values.
    ///
    /// # Safety
    /// `p` valid for four reads.
    #[inline(always)]
    unsafe fn splat4(p: *const f32) -> [Self; 4] {
        [
            Self::splat(p),
            Self::splat(p.add(1)),
            Self::splat(p.add(2)),
            Self::splat(p.add(3)),
        ]
    }
    /// # Safety
    /// `p` valid for eight reads.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// The CPU supports the implementation's instructions.
    unsafe fn add(a: Self, b: Self) -> Self;
    /// `a * b + c`.
    ///
    /// # Safety
    /// The CPU supports the implementation's instructions.
    unsafe fn madd(a: Self, b: Self, c: Self) -> Self;
    /// # Safety
    /// `p` valid for eight writes.
    unsafe fn store(self, p: *mut f32);
    /// `i16::from_f32` over `src`, into `dst` (same length).
    ///
    /// # Safety
    /// The CPU supports the implementation's instructions.
    #[inline(always)]
    unsafe fn to_i16(dst: &mut [i16], src: &[f32]) {
        i16::from_f32_slice(dst, src)
    }
    /// Interleaves eight items of each of `s[0]`, `s[1]`, `s[2]` into `dst[..24]`.
    ///
    /// # Safety
    /// Each `s[i]` valid for eight reads, `dst` for 24 writes.
    #[inline(always)]
    unsafe fn zip3(s: [*const f32; 3], dst: *mut f32) {
        for j in 0..8 {
            for (i, p) in s.iter().enumerate() {
                *dst.add(3 * j + i) = *p.add(j);
            }
        }
    }
    /// Splits `8 N` samples at `x` into `N` runs of 8 (sample `N j + i` to `d[i][j]`), as f32
    /// (`unzip3_i16` and its kin; the implementations override them at their arities).
    ///
    /// # Safety
    /// `x` valid for `8 N` reads, each `d[i]` for eight writes; the CPU supports the
    /// implementation's instructions.
    #[inline(always)]
    unsafe fn unzip<T: Copy + Into<f32>, const N: usize>(x: *const T, d: [*mut f32; N]) {
        for j in 0..8 {
            for (i, p) in d.iter().enumerate() {
                *p.add(j) = (*x.add(N * j + i)).into();
            }
        }
    }
    /// [`Vec8::unzip`] of 24 PCM16 samples.
    ///
    /// # Safety
    /// As [`Vec8::unzip`].
    #[inline(always)]
    unsafe fn unzip3_i16(x: *const i16, d: [*mut f32; 3]) {
        Self::unzip(x, d)
    }
    /// [`Vec8::unzip`] of 16 PCM16 samples.
    ///
    /// # Safety
    /// As [`Vec8::unzip`].
    #[inline(always)]
    unsafe fn unzip2_i16(x: *const i16, d: [*mut f32; 2]) {
        Self::unzip(x, d)
    }
    /// [`Vec8::unzip`] of 32 PCM16 samples.
    ///
    /// # Safety
    /// As [`Vec8::unzip`].
    #[inline(always)]
    unsafe fn unzip4_i16(x: *const i16, d: [*mut f32; 4]) {
        Self::unzip(x, d)
    }
    /// [`Vec8::unzip`] of 48 PCM16 samples.
    ///
    /// # Safety
    /// As [`Vec8::unzip`].
    #[inline(always)]
    unsafe fn unzip6_i16(x: *const i16, d: [*mut f32; 6]) {
        Self::unzip(x, d)
    }
    /// [`Vec8::unzip`] of 64 PCM16 samples.
    ///
    /// # Safety
    /// As [`Vec8::unzip`].
    #[inline(always)]
    unsafe fn unzip8_i16(x: *const i16, d: [*mut f32; 8]) {
        Self::unzip(x, d)
    }
    /// [`Vec8::unzip`] of 24 f32 samples.
    ///
    /// # Safety
    /// As [`Vec8::unzip`].
    #[inline(always)]
    unsafe fn unzip3(x: *const f32, d: [*mut f32; 3]) {
        Self::unzip(x, d)
    }
    /// [`Vec8::zip2`] then `i16::from_f32`.
    ///
    /// # Safety
    /// As [`Vec8::zip2`]; the CPU supports the implementation's instructions.
    #[inline(always)]
    unsafe fn zip2_i16(a: *const f32, b: *const f32, dst: *mut i16) {
        for j in 0..8 {
            *dst.add(2 * j) = i16::from_f32(*a.add(j));
            *dst.add(2 * j + 1) = i16::from_f32(*b.add(j));
        }
    }
    /// Interleaves the lanes of `a` and of `b` into `dst[..16]` (`a0 b0 a1 b1 ...`).
    ///
    /// # Safety
    /// `dst` valid for sixteen writes; the CPU supports the implementation's instructions.
    #[inline(always)]
    unsafe fn zip2(a: Self, b: Self, dst: *mut f32) {
        let (mut x, mut y) = ([0f32; 8], [0f32; 8]);
        a.store(x.as_mut_ptr());
        b.store(y.as_mut_ptr());
        for j in 0..8 {
            *dst.add(2 * j) = x[j];
            *dst.add(2 * j + 1) = y[j];
        }
    }
}

/// Portable lanes (auto-vectorised to SSE2 / NEON); multiply then add, unfused.
#[derive(Clone, Copy)]
pub(super) struct P8([f32; 8]);

impl Vec8 for P8 {
    #[inline(always)]
    unsafe fn zero() -> Self {
        P8([0.0; 8])
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        P8([*p; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        P8(p.cast::<[f32; 8]>().read_unaligned())
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        P8(std::array::from_fn(|i| a.0[i] + b.0[i]))
    }
    #[inline(always)]
    unsafe fn madd(a: Self, b: Self, c: Self) -> Self {
        P8(std::array::from_fn(|i| a.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        p.cast::<[f32; 8]>().write_unaligned(self.0)
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::Vec8;
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(in super::super) struct A8(__m256);

    impl Vec8 for A8 {
        #[inline(always)]
        unsafe fn zero() -> Self {
            A8(_mm256_setzero_ps())
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            A8(_mm256_broadcast_ss(&*p))
        }
        /// One 16-byte load and four shuffles: a broadcast from memory costs a load slot
        /// each, and loads are what bound the kernels that broadcast.
        #[inline(always)]
        unsafe fn splat4(p: *const f32) -> [Self; 4] {
            let mut q = _mm_loadu_ps(p);
            // LLVM folds load-then-shuffle back into four broadcasts from memory (it costs
            // them as cheap); an empty asm statement hides where `q` came from, so the
            // shuffles stay. The grouped 11.025 kHz -> 8 kHz stage: -5 % (`rs_profile`).
            // SAFETY: the statement is empty; it reads and writes `q` only.
            std::arch::asm!(
                "/* {0} */",
                inout(xmm_reg) q,
                options(pure, nomem, nostack, preserves_flags)
            );
            let v = _mm256_set_m128(q, q);
            [
                A8(_mm256_permute_ps(v, 0x00)),
                A8(_mm256_permute_ps(v, 0x55)),
                A8(_mm256_permute_ps(v, 0xAA)),
                A8(_mm256_permute_ps(v, 0xFF)),
            ]
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            A8(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            A8(_mm256_add_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn madd(a: Self, b: Self, c: Self) -> Self {
            A8(_mm256_fmadd_ps(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0)
        }
        #[inline(always)]
        unsafe fn to_i16(dst: &mut [i16], src: &[f32]) {
            // Same values as `i16::from_f32`: the clamp maps NaN to -32768 (maxps returns its
            // second operand on NaN), and cvtps2dq rounds half to even like the 1.5 * 2^23
            // trick; the saturating pack then needs no further clamping.
            let n = dst.len().min(src.len());
            let (lo, hi) = (_mm256_set1_ps(-32768.0), _mm256_set1_ps(32767.0));
            let mut i = 0;
            while i + 16 <= n {
                let a = _mm256_loadu_ps(src.as_ptr().add(i));
                let b = _mm256_loadu_ps(src.as_ptr().add(i + 8));
                let a = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(a, lo), hi));
                let b = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(b, lo), hi));
                let p = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0b11_01_10_00);
                _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), p);
                i += 16;
            }
            <i16 as crate::resample::Sample>::from_f32_slice(&mut dst[i..n], &src[i..n]);
        }
        #[inline(always)]
        unsafe fn zip3(s: [*const f32; 3], dst: *mut f32) {
            // Per 128-bit lane (no lane crossing): rotate each input so that every output
            // quad takes fixed positions from each, then two blends per quad:
            // r0 = a0 b0 c0 a1, r1 = b1 c1 a2 b2, r2 = c2 a3 b3 c3.
            let a = _mm256_permute_ps(_mm256_loadu_ps(s[0]), 0b01_10_11_00); // a0 a3 a2 a1
            let b = _mm256_permute_ps(_mm256_loadu_ps(s[1]), 0b10_11_00_01); // b1 b0 b3 b2
            let c = _mm256_permute_ps(_mm256_loadu_ps(s[2]), 0b11_00_01_10); // c2 c1 c0 c3
            let r0 = _mm256_blend_ps(_mm256_blend_ps(a, b, 0b0010_0010), c, 0b0100_0100);
            let r1 = _mm256_blend_ps(_mm256_blend_ps(b, c, 0b0010_0010), a, 0b0100_0100);
            let r2 = _mm256_blend_ps(_mm256_blend_ps(c, a, 0b0010_0010), b, 0b0100_0100);
            _mm_storeu_ps(dst, _mm256_castps256_ps128(r0));
            _mm_storeu_ps(dst.add(4), _mm256_castps256_ps128(r1));
            _mm_storeu_ps(dst.add(8), _mm256_castps256_ps128(r2));
            _mm_storeu_ps(dst.add(12), _mm256_extractf128_ps(r0, 1));
            _mm_storeu_ps(dst.add(16), _mm256_extractf128_ps(r1, 1));
            _mm_storeu_ps(dst.add(20), _mm256_extractf128_ps(r2, 1));
        }
        #[inline(always)]
        unsafe fn unzip3_i16(x: *const i16, d: [*mut f32; 3]) {
            // Quads x0..3 | x12..15, x4..7 | x16..19, x8..11 | x20..23 as f32, then as
            // `unzip3`.
            let quad = |o: usize| {
                let v = _mm_unpacklo_epi64(
                    _mm_loadl_epi64(x.add(o).cast()),
                    _mm_loadl_epi64(x.add(o + 12).cast()),
                );
                _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(v))
            };
            unzip3_quads([quad(0), quad(4), quad(8)], d);
        }
        #[inline(always)]
        unsafe fn unzip2_i16(x: *const i16, d: [*mut f32; 2]) {
            // Each pair of samples as one 32-bit item.
            store_halves(_mm256_loadu_si256(x.cast()), d[0], d[1]);
        }
        #[inline(always)]
        unsafe fn unzip4_i16(x: *const i16, d: [*mut f32; 4]) {
            // Sample pairs (4j, 4j + 1) and (4j + 2, 4j + 3) as 32-bit items: the even and
            // odd items of each 128-bit lane, then the middle 64-bit quarters swapped into
            // order, then split into halves.
            let p0 = _mm256_castsi256_ps(_mm256_loadu_si256(x.cast()));
            let p1 = _mm256_castsi256_ps(_mm256_loadu_si256(x.add(16).cast()));
            let order = |v: __m256| _mm256_permute4x64_epi64(_mm256_castps_si256(v), 0b11_01_10_00);
            store_halves(order(_mm256_shuffle_ps(p0, p1, 0b10_00_10_00)), d[0], d[1]);
            store_halves(order(_mm256_shuffle_ps(p0, p1, 0b11_01_11_01)), d[2], d[3]);
        }
        #[inline(always)]
        unsafe fn unzip6_i16(x: *const i16, d: [*mut f32; 6]) {
            // Sample pairs (6j + 2r, 6j + 2r + 1) as 32-bit items split three ways like
            // `unzip3`, then split into halves.
            let split = unzip3_regs(quads(x.cast::<f32>()));
            for (r, p) in split.into_iter().enumerate() {
                store_halves(_mm256_castps_si256(p), d[2 * r], d[2 * r + 1]);
            }
        }
        #[inline(always)]
        unsafe fn unzip8_i16(x: *const i16, d: [*mut f32; 8]) {
            // Sample pairs (8j + 2r, 8j + 2r + 1) as 32-bit items, run j in one 128-bit half:
            // runs j | j + 4 in each register, so that in-lane unpacks and shuffles leave the
            // four items r of runs 0..7 in order, then split into halves.
            let x = x.cast::<f32>();
            let run = |j: usize| halves(x.add(4 * j), x.add(4 * j + 16));
            let (p0, p1, p2, p3) = (run(0), run(1), run(2), run(3));
            let (t0, t1) = (_mm256_unpacklo_ps(p0, p1), _mm256_unpackhi_ps(p0, p1));
            let (t2, t3) = (_mm256_unpacklo_ps(p2, p3), _mm256_unpackhi_ps(p2, p3));
            let r = [
                _mm256_shuffle_ps(t0, t2, 0b01_00_01_00),
                _mm256_shuffle_ps(t0, t2, 0b11_10_11_10),
                _mm256_shuffle_ps(t1, t3, 0b01_00_01_00),
                _mm256_shuffle_ps(t1, t3, 0b11_10_11_10),
            ];
            for (k, p) in r.into_iter().enumerate() {
                store_halves(_mm256_castps_si256(p), d[2 * k], d[2 * k + 1]);
            }
        }
        #[inline(always)]
        unsafe fn unzip3(x: *const f32, d: [*mut f32; 3]) {
            unzip3_quads(quads(x), d);
        }
        #[inline(always)]
        unsafe fn zip2_i16(a: *const f32, b: *const f32, dst: *mut i16) {
            // As `to_i16`; the in-lane pack gives a0..a3 b0..b3 | a4..a7 b4..b7 and an in-lane
            // byte shuffle interleaves that to a0 b0 .. a3 b3 | a4 b4 .. a7 b7: output order.
            let (lo, hi) = (_mm256_set1_ps(-32768.0), _mm256_set1_ps(32767.0));
            let (a, b) = (_mm256_loadu_ps(a), _mm256_loadu_ps(b));
            let a = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(a, lo), hi));
            let b = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(b, lo), hi));
            let idx = _mm256_setr_epi8(
                0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15, //
                0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,
            );
            let p = _mm256_shuffle_epi8(_mm256_packs_epi32(a, b), idx);
            _mm256_storeu_si256(dst.cast(), p);
        }
        #[inline(always)]
        unsafe fn zip2(a: Self, b: Self, dst: *mut f32) {
            // In-lane unpacks, then the 128-bit halves stored in order: no lane-crossing
            // shuffle (slow on 2x128-bit cores).
            let lo = _mm256_unpacklo_ps(a.0, b.0); // a0 b0 a1 b1 | a4 b4 a5 b5
            let hi = _mm256_unpackhi_ps(a.0, b.0); // a2 b2 a3 b3 | a6 b6 a7 b7
            _mm_storeu_ps(dst, _mm256_castps256_ps128(lo));
            _mm_storeu_ps(dst.add(4), _mm256_castps256_ps128(hi));
            _mm_storeu_ps(dst.add(8), _mm256_extractf128_ps(lo, 1));
            _mm_storeu_ps(dst.add(12), _mm256_extractf128_ps(hi, 1));
        }
    }

    /// The inverse of `zip3` on quads `r` = x0..3 | x12..15, x4..7 | x16..19, x8..11 | x20..23:
    /// blended to a0 a3 a2 a1 etc. and rotated back, all within 128-bit lanes.
    #[inline(always)]
    unsafe fn unzip3_quads(r: [__m256; 3], d: [*mut f32; 3]) {
        for (p, v) in d.into_iter().zip(unzip3_regs(r)) {
            _mm256_storeu_ps(p, v);
        }
    }

    /// The quads [`unzip3_quads`] takes, from 24 32-bit items at `x` (valid for 24 reads).
    #[inline(always)]
    unsafe fn quads(x: *const f32) -> [__m256; 3] {
        [0, 4, 8].map(|o| halves(x.add(o), x.add(o + 12)))
    }

    /// Four items at `lo` in the low 128-bit half, four at `hi` in the high one (each valid
    /// for four reads).
    #[inline(always)]
    unsafe fn halves(lo: *const f32, hi: *const f32) -> __m256 {
        _mm256_insertf128_ps(
            _mm256_castps128_ps256(_mm_loadu_ps(lo)),
            _mm_loadu_ps(hi),
            1,
        )
    }

    /// Eight PCM16 sample pairs, one per 32-bit item of `p`, as f32: the low halves to `lo`,
    /// sign-extended in one operation (lo * 1 + hi * 0), the high halves to `hi` by an
    /// arithmetic shift (each valid for eight writes).
    #[inline(always)]
    unsafe fn store_halves(p: __m256i, lo: *mut f32, hi: *mut f32) {
        let low = _mm256_madd_epi16(p, _mm256_set1_epi32(1));
        _mm256_storeu_ps(lo, _mm256_cvtepi32_ps(low));
        _mm256_storeu_ps(hi, _mm256_cvtepi32_ps(_mm256_srai_epi32(p, 16)));
    }

    /// [`unzip3_quads`] into registers (32-bit items of any kind).
    #[inline(always)]
    unsafe fn unzip3_regs(r: [__m256; 3]) -> [__m256; 3] {
        let [r0, r1, r2] = r;
        let a = _mm256_blend_ps(_mm256_blend_ps(r0, r1, 0b0100_0100), r2, 0b0010_0010);
        let b = _mm256_blend_ps(_mm256_blend_ps(r1, r0, 0b0010_0010), r2, 0b0100_0100);
        let c = _mm256_blend_ps(_mm256_blend_ps(r2, r1, 0b0010_0010), r0, 0b0100_0100);
        [
            _mm256_permute_ps(a, 0b01_10_11_00),
            _mm256_permute_ps(b, 0b10_11_00_01),
            _mm256_permute_ps(c, 0b11_00_01_10),
        ]
    }
}

/// `y[k] += sum_u c[u] * (s_p[k + p + u] + s_q[k + q - u])`, the second part only when
/// `q` is set (a folded linear-phase row or mirrored stream pair).
#[derive(Debug, Clone)]
struct Term {
    c: Vec<f32>,
    p: (usize, usize),
    q: Option<(usize, usize)>,
}

/// One output phase: a pure delay (copy of stream sample `off`) or a sum of terms.
#[derive(Debug, Clone)]
enum Row {
    Copy(usize, usize),
    Fir(Vec<Term>),
}

/// Direct-form plan of an integer-ratio bank.
#[derive(Debug, Clone)]
pub(super) struct Direct {
    /// Per output slot (1:L), or the single row (M:1).
    rows: Vec<Row>,
    /// Input streams: `m` deinterleaved streams for M:1, the linear input for 1:L.
    pub(super) streams: usize,
}

/// Leading offset and the non-zero span of `c`.
fn trim(c: &[f32]) -> (usize, Vec<f32>) {
    let first = c.iter().position(|&v| v != 0.0).unwrap_or(0);
    let last = c.iter().rposition(|&v| v != 0.0).unwrap_or(0);
    (first, c[first..=last.max(first)].to_vec())
}

/// Whether `b` is `a` reversed, to float rounding of `a`'s largest value.
pub(super) fn mirrored(a: &[f32], b: &[f32]) -> bool {
    let peak = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.len() == b.len()
        && a.iter()
            .zip(b.iter().rev())
            .all(|(x, y)| (x - y).abs() <= peak * 1e-6)
}

/// Terms for a set of (stream, offset, coefficients), folding mirror images.
fn terms(parts: Vec<(usize, usize, Vec<f32>)>) -> Vec<Term> {
    let mut used = vec![false; parts.len()];
    let mut out = Vec::new();
    for i in 0..parts.len() {
        if used[i] {
            continue;
        }
        used[i] = true;
        let (s, off, ref c) = parts[i];
        if c.len() >= 2 && mirrored(c, c) {
            let half = c.len() / 2;
            out.push(Term {
                c: c[..half].to_vec(),
                p: (s, off),
                q: Some((s, off + c.len() - 1)),
            });
            if c.len() % 2 == 1 {
                out.push(Term {
                    c: vec![c[half]],
                    p: (s, off + half),
                    q: None,
                });
            }
            continue;
        }
        let partner = (i + 1..parts.len()).find(|&j| !used[j] && mirrored(c, &parts[j].2));
        match partner {
            Some(j) => {
                used[j] = true;
                let (s2, off2, ref c2) = parts[j];
                out.push(Term {
                    c: c.clone(),
                    p: (s, off),
                    q: Some((s2, off2 + c2.len() - 1)),
                });
            }
            None => out.push(Term {
                c: c.clone(),
                p: (s, off),
                q: None,
            }),
        }
    }
    out
}

impl Direct {
    /// The plan for `bank` when its ratio is integer (`l == 1` or `m == 1`).
    pub(super) fn new(bank: &Bank) -> Option<Direct> {
        let (l, m, taps) = (bank.l, bank.m, bank.taps);
        if m == 1 {
            let rows = (0..l)
                .map(|slot| match bank.trivial[slot] {
                    Some(i) => Row::Copy(0, i),
                    None => {
                        let (off, c) = trim(bank.phase(slot));
                        Row::Fir(terms(vec![(0, off, c)]))
                    }
                })
                .collect();
            Some(Direct { rows, streams: 1 })
        } else if l == 1 && m <= MAX_STREAMS {
            // The window base of every output is a multiple of m (it starts at 0 and advances
            // by m), so window index i is sample i / m of stream i % m.
            let c = bank.phase(0);
            let parts = (0..m)
                .map(|s| {
                    let d: Vec<f32> = (s..taps).step_by(m).map(|i| c[i]).collect();
                    let (off, d) = trim(&d);
                    (s, off, d)
                })
                .filter(|p| p.2.iter().any(|&v| v != 0.0))
                .collect();
            Some(Direct {
                rows: vec![Row::Fir(terms(parts))],
                streams: m,
            })
        } else {
            None
        }
    }
}

/// Accumulates `c[u] * p[8b + u + lane]` into `acc[b]`, residue-major.
///
/// # Safety
/// `p` valid for reads up to `p + c.len() + 8 * NB - 1`.
#[inline(always)]
unsafe fn fir<V: Vec8, const NB: usize>(acc: &mut [V; NB], c: &[f32], p: *const f32) {
    let n = c.len();
    for r in 0..n.min(8) {
        let mut w: [V; NB] = std::array::from_fn(|b| V::load(p.add(r + 8 * b)));
        let mut u = r;
        loop {
            let cv = V::splat(c.as_ptr().add(u));
            for b in 0..NB {
                acc[b] = V::madd(cv, w[b], acc[b]);
            }
            u += 8;
            if u >= n {
                break;
            }
            for b in 0..NB - 1 {
                w[b] = w[b + 1];
            }
            w[NB - 1] = V::load(p.add(u + 8 * (NB - 1)));
        }
    }
}

/// Accumulates `c[u] * (p[8b + u + lane] + q[8b - u + lane])` into `acc[b]`, residue-major.
///
/// # Safety
/// `p` as in [`fir`]; `q` valid for reads from `q - c.len() + 1` to `q + 8 * NB - 1`.
#[inline(always)]
unsafe fn fir_sym<V: Vec8, const NB: usize>(
    acc: &mut [V; NB],
    c: &[f32],
    p: *const f32,
    q: *const f32,
) {
    let n = c.len();
    for r in 0..n.min(8) {
        let mut w: [V; NB] = std::array::from_fn(|b| V::load(p.add(r + 8 * b)));
        let mut z: [V; NB] = std::array::from_fn(|b| V::load(q.sub(r).add(8 * b)));
        let mut u = r;
        loop {
            let cv = V::splat(c.as_ptr().add(u));
            for b in 0..NB {
                acc[b] = V::madd(cv, V::add(w[b], z[b]), acc[b]);
            }
            u += 8;
            if u >= n {
                break;
            }
            for b in 0..NB - 1 {
                w[b] = w[b + 1];
            }
            w[NB - 1] = V::load(p.add(u + 8 * (NB - 1)));
            for b in (1..NB).rev() {
                z[b] = z[b - 1];
            }
            z[0] = V::load(q.sub(u));
        }
    }
}

/// [`fir`] for four blocks with the window in named locals: LLVM keeps an array window in
/// memory, and the ymm store-to-load round trips cost more than the arithmetic. Unrolled by
/// four with the window's register names rotating instead of its values moving: on cores that
/// split ymm operations in two, the register moves of a sliding window took dispatch slots
/// from the arithmetic. Same operations on the same values as [`fir`], in the same order.
///
/// # Safety
/// As [`fir`] with `NB = 4`.
#[inline(always)]
unsafe fn fir4<V: Vec8>(acc: &mut [V; 4], c: &[f32], p: *const f32) {
    let n = c.len();
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    for r in 0..n.min(8) {
        let pr = p.add(r);
        let (mut w0, mut w1, mut w2, mut w3) = (
            V::load(pr),
            V::load(pr.add(8)),
            V::load(pr.add(16)),
            V::load(pr.add(24)),
        );
        let mut u = r;
        macro_rules! step {
            ($x0:ident, $x1:ident, $x2:ident, $x3:ident) => {
                let cv = V::splat(c.as_ptr().add(u));
                a0 = V::madd(cv, $x0, a0);
                a1 = V::madd(cv, $x1, a1);
                a2 = V::madd(cv, $x2, a2);
                a3 = V::madd(cv, $x3, a3);
                u += 8;
                if u >= n {
                    break;
                }
                // The oldest vector leaves the window; its register takes the newest.
                $x0 = V::load(p.add(u + 24));
            };
        }
        loop {
            step!(w0, w1, w2, w3);
            step!(w1, w2, w3, w0);
            step!(w2, w3, w0, w1);
            step!(w3, w0, w1, w2);
        }
    }
    *acc = [a0, a1, a2, a3];
}

/// [`fir_sym`] for four blocks, window in named locals and rotating (see [`fir4`]).
///
/// # Safety
/// As [`fir_sym`] with `NB = 4`.
#[inline(always)]
unsafe fn fir_sym4<V: Vec8>(acc: &mut [V; 4], c: &[f32], p: *const f32, q: *const f32) {
    let n = c.len();
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    for r in 0..n.min(8) {
        let (pr, qr) = (p.add(r), q.sub(r));
        let (mut w0, mut w1, mut w2, mut w3) = (
            V::load(pr),
            V::load(pr.add(8)),
            V::load(pr.add(16)),
            V::load(pr.add(24)),
        );
        let (mut z0, mut z1, mut z2, mut z3) = (
            V::load(qr),
            V::load(qr.add(8)),
            V::load(qr.add(16)),
            V::load(qr.add(24)),
        );
        let mut u = r;
        macro_rules! step {
            ($x0:ident, $x1:ident, $x2:ident, $x3:ident; $y0:ident, $y1:ident, $y2:ident, $y3:ident) => {
                let cv = V::splat(c.as_ptr().add(u));
                a0 = V::madd(cv, V::add($x0, $y0), a0);
                a1 = V::madd(cv, V::add($x1, $y1), a1);
                a2 = V::madd(cv, V::add($x2, $y2), a2);
                a3 = V::madd(cv, V::add($x3, $y3), a3);
                u += 8;
                if u >= n {
                    break;
                }
                // `p` slides forward (its oldest vector leaves), `q` backward (its newest
                // leaves); the freed registers take the new vectors.
                $x0 = V::load(p.add(u + 24));
                $y3 = V::load(q.sub(u));
            };
        }
        loop {
            step!(w0, w1, w2, w3; z0, z1, z2, z3);
            step!(w1, w2, w3, w0; z3, z0, z1, z2);
            step!(w2, w3, w0, w1; z2, z3, z0, z1);
            step!(w3, w0, w1, w2; z1, z2, z3, z0);
        }
    }
    *acc = [a0, a1, a2, a3];
}

/// Computes `8 * NB` outputs of `terms` from output `k0` on into `dst` (all lanes stored).
///
/// # Safety
/// Every stream pointer plus `k0` plus the terms' offsets must satisfy [`fir`]/[`fir_sym`];
/// `dst` must be valid for `8 * NB` writes.
#[inline(always)]
unsafe fn block<V: Vec8, const NB: usize>(
    terms: &[Term],
    base: &[*const f32],
    k0: usize,
    dst: *mut f32,
) {
    let mut acc = [V::zero(); NB];
    for t in terms {
        let p = base[t.p.0].add(k0 + t.p.1);
        let q = t.q.map(|(s, off)| base[s].add(k0 + off));
        if NB == 4 {
            // SAFETY: `acc` is exactly `[V; 4]` here.
            let a = &mut *acc.as_mut_ptr().cast::<[V; 4]>();
            match q {
                Some(q) => fir_sym4::<V>(a, &t.c, p, q),
                None => fir4::<V>(a, &t.c, p),
            }
        } else {
            match q {
                Some(q) => fir_sym::<V, NB>(&mut acc, &t.c, p, q),
                None => fir::<V, NB>(&mut acc, &t.c, p),
            }
        }
    }
    for (b, a) in acc.iter().enumerate() {
        a.store(dst.add(8 * b));
    }
}

/// Emits every ready output (at most [`OUT_CAP`] per call, whole input positions only, so the
/// phase stays 0). Generic over the lane type so that the AVX2 instantiation inlines fully.
#[inline(always)]
pub(super) fn emit<S: Sample, V: Vec8>(
    bank: &Bank,
    d: &Direct,
    st: &mut State,
    dst: &mut [S],
) -> usize {
    let (l, m, taps) = (bank.l, bank.m, bank.taps);
    let State {
        buf,
        ybuf,
        fill,
        next,
        stride,
        ..
    } = st;
    let (fill, stride) = (*fill, *stride);
    if *next >= fill || l > MAX_STREAMS || d.rows.len() != l || ybuf.len() < OUT_CAP + PAD + TMP {
        return 0;
    }
    // Per-phase block results live at the end of the staging buffer (no per-call zeroing).
    let split = ybuf.len() - TMP;
    let (ybuf, tmp) = ybuf.split_at_mut(split);
    // Ready positions: outputs (M:1) or rounds of l outputs (1:L).
    let cap = super::div(OUT_CAP.min(dst.len()).min(ybuf.len() - PAD), l);
    let count = super::ready(fill, *next, m).min(cap);
    if count == 0 {
        return 0;
    }
    // Stream index of output 0's window start (a multiple of m, see `Direct::new`).
    let b0 = super::div(*next + 1 - taps, m);
    let base: [*const f32; MAX_STREAMS] =
        std::array::from_fn(|s| buf[(s * stride + b0).min(buf.len())..].as_ptr());
    let pcm16 = std::any::TypeId::of::<S>() == std::any::TypeId::of::<i16>();
    let mut k0 = 0;
    while k0 < count {
        let left = count - k0;
        let nb = if left > 16 {
            K
        } else if left > 8 {
            2
        } else {
            1
        };
        let cnt = left.min(8 * nb);
        for (row, t) in d.rows.iter().zip(tmp.chunks_exact_mut(8 * K)) {
            if let Row::Fir(terms) = row {
                // M:1 writes straight to the staging buffer (it has PAD >= 8 * K spare).
                let dst = if l == 1 {
                    ybuf[k0..].as_mut_ptr()
                } else {
                    t.as_mut_ptr()
                };
                // SAFETY: stream s holds valid samples up to the newest input, and PAD more
                // allocated ones; the reads of lane j of output k0 + j end at that output's
                // newest input (valid for j < cnt), the rest within 8 * nb samples of it.
                // `dst` has 8 * nb writable items.
                unsafe {
                    match nb {
                        K => block::<V, K>(terms, &base, k0, dst),
                        2 => block::<V, 2>(terms, &base, k0, dst),
                        _ => block::<V, 1>(terms, &base, k0, dst),
                    }
                }
            }
        }
        if l > 1 {
            // The phases' outputs, interleaved; a copy row reads the stream directly.
            let src = |slot: usize| -> &[f32] {
                match &d.rows[slot] {
                    Row::Copy(s, off) => {
                        let i = s * stride + b0 + off + k0;
                        &buf[i..i + cnt]
                    }
                    Row::Fir(_) => &tmp[slot * 8 * K..][..cnt],
                }
            };
            let o = &mut ybuf[k0 * l..(k0 + cnt) * l];
            match l {
                2 if pcm16 => {
                    // Interleave and convert in one pass, straight into the caller's buffer.
                    let (a, b) = (src(0), src(1));
                    // SAFETY: S is i16 (same type, so same layout); dst holds count * l items.
                    let d16 = unsafe {
                        std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<i16>(), count * l)
                    };
                    let d16 = &mut d16[k0 * 2..(k0 + cnt) * 2];
                    let full = cnt / 8 * 8;
                    for j in (0..full).step_by(8) {
                        // SAFETY: j + 8 <= cnt = a.len() = b.len(), 2 * (j + 8) <= d16.len();
                        // this runs only in code compiled for V's instruction set.
                        unsafe {
                            V::zip2_i16(
                                a.as_ptr().add(j),
                                b.as_ptr().add(j),
                                d16[2 * j..].as_mut_ptr(),
                            )
                        };
                    }
                    for j in full..cnt {
                        d16[2 * j] = i16::from_f32(a[j]);
                        d16[2 * j + 1] = i16::from_f32(b[j]);
                    }
                }
                2 => {
                    let (a, b) = (src(0), src(1));
                    let full = cnt / 8 * 8;
                    for j in (0..full).step_by(8) {
                        // SAFETY: j + 8 <= cnt = a.len() = b.len(), 2 * (j + 8) <= o.len().
                        unsafe {
                            V::zip2(
                                V::load(a.as_ptr().add(j)),
                                V::load(b.as_ptr().add(j)),
                                o[2 * j..].as_mut_ptr(),
                            )
                        };
                    }
                    for j in full..cnt {
                        o[2 * j] = a[j];
                        o[2 * j + 1] = b[j];
                    }
                }
                3 => {
                    let (a, b, c) = (src(0), src(1), src(2));
                    let full = cnt / 8 * 8;
                    for j in (0..full).step_by(8) {
                        // SAFETY: j + 8 <= cnt = len of a, b, c; 3 * (j + 8) <= o.len().
                        unsafe {
                            V::zip3(
                                [a.as_ptr().add(j), b.as_ptr().add(j), c.as_ptr().add(j)],
                                o[3 * j..].as_mut_ptr(),
                            )
                        };
                    }
                    for j in full..cnt {
                        o[3 * j] = a[j];
                        o[3 * j + 1] = b[j];
                        o[3 * j + 2] = c[j];
                    }
                }
                _ => {
                    for slot in 0..l {
                        for (y, &v) in o.chunks_exact_mut(l).zip(src(slot)) {
                            y[slot] = v;
                        }
                    }
                }
            }
        }
        k0 += cnt;
    }
    let n_out = count * l;
    *next += count * m;
    let y = &ybuf[..n_out];
    if pcm16 && l == 2 {
        // Already written by the interleaving pass.
    } else if pcm16 {
        // SAFETY: S is i16 (same type, so same layout).
        let d = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<i16>(), n_out) };
        // SAFETY: this runs only in code compiled for V's instruction set (see `Kernel`).
        unsafe { V::to_i16(d, y) };
    } else {
        S::from_f32_slice(&mut dst[..n_out], y);
    }
    n_out
}
