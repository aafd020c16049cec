//! Voice activity detection for telephony audio: multi-band SNR against adaptive noise floors,
//! with onset and hangover smoothing.
//!
//! Why this design: phone-line noise is mostly stationary but coloured (white hiss, pink/brown
//! rumble, mains hum). A single full-band energy threshold confuses loud low-frequency noise with
//! speech; webrtcvad's fixed GMMs are tuned to other conditions. So every input is first brought
//! to one 8 kHz analysis rate (tuning then holds across rates), split by a cheap half-band tree
//! into five octave-ish bands (0-250, 250-500, 500-1k, 1-2k, 2-4 kHz), and each band is compared
//! with its own noise floor. Coloured noise raises the floors of the bands it occupies while the
//! other bands still show speech. The score is a weighted sum of per-band SNR above a margin;
//! hysteresis, an onset requirement and a hangover (which also covers the quiet tails that
//! energy cannot see under noise) turn it into decisions.
//!
//! Three details carry most of the robustness:
//! - Each band's margin grows with the noise's own frame-to-frame spread in that band, so bands
//!   whose noise level jumps (rumble, few samples per frame) need more evidence.
//! - A band more than `quant_snr_db` below the frame's total level is ignored: in G.711 audio
//!   that is quantisation noise, which rises and falls with loud rumble and would otherwise look
//!   like speech in the upper bands.
//! - Floors rise slowly during speech (so speech does not teach the floor) but never stay far
//!   below a two-second minimum of the band level (minimum statistics), so a lasting noise step
//!   up cannot lock the detector into "speech".
//!
//! The first frame only primes the filters and the second seeds the floors, so the first two
//! frames of a stream (or after `reset`) are never speech.
//!
//! Cost: all filters are short FIRs on fixed arrays (polyphase, vectorisable); logarithms use a
//! bit-trick approximation. No allocation after construction.

use std::fmt;

/// Every input rate is decimated to this rate before analysis.
pub const ANALYSIS_RATE: u32 = 8000;
/// Supported input rates.
pub const RATES: [u32; 4] = [8000, 16000, 24000, 48000];
/// Supported frame durations in milliseconds.
pub const FRAME_MS: [u32; 3] = [10, 20, 30];
/// Largest frame in samples (30 ms at 48 kHz): the size of the fixed internal buffers.
pub const MAX_FRAME: usize = 48 * 30;
/// Number of analysis bands.
pub const BANDS: usize = 5;
/// Upper edges of the analysis bands in Hz, for documentation and callers' plots.
pub const BAND_EDGES_HZ: [u32; BANDS] = [250, 500, 1000, 2000, 4000];

/// Errors of the VAD domain.
#[derive(Debug, Clone, PartialEq)]
pub enum VadError {
    /// Sample rate outside [`RATES`].
    UnsupportedRate(u32),
    /// Frame duration outside [`FRAME_MS`].
    UnsupportedFrameMs(u32),
    /// A frame passed to `is_speech` whose length is not exactly one frame.
    FrameLength { got: usize, expected: usize },
    /// PCM16 bytes whose length is not a whole number of samples.
    OddLength(usize),
    /// A tuning knob out of its valid range.
    InvalidParam {
        name: &'static str,
        value: f32,
        range: &'static str,
    },
}

impl fmt::Display for VadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VadError::UnsupportedRate(r) => {
                write!(f, "unsupported sample rate {r} Hz; valid rates are 8000, 16000, 24000 and 48000 Hz")
            }
            VadError::UnsupportedFrameMs(ms) => {
                write!(f, "unsupported frame duration {ms} ms; valid durations are 10, 20 and 30 ms")
            }
            VadError::FrameLength { got, expected } => write!(
                f,
                "frame holds {got} samples ({} bytes) but exactly {expected} samples ({} bytes) are needed",
                got * 2,
                expected * 2
            ),
            VadError::OddLength(n) => write!(
                f,
                "PCM16 input has an odd length of {n} bytes; it must be a multiple of 2 (16-bit samples)"
            ),
            VadError::InvalidParam { name, value, range } => {
                write!(f, "{name} = {value} is out of range; valid range is {range}")
            }
        }
    }
}

impl std::error::Error for VadError {}

/// Tuning of [`Vad`]. Defaults were tuned on 8 kHz mu-law telephony speech under white, pink,
/// brown and mains-hum noise from clean down to 0 dB SNR.
#[derive(Debug, Clone, PartialEq)]
pub struct VadConfig {
    /// Frame duration: 10, 20 or 30 ms.
    pub frame_ms: u32,
    /// Score (sum of weighted per-band dB above the margin) needed to start speech.
    pub threshold: f32,
    /// Score needed to stay in speech once started (hysteresis; <= threshold).
    pub release: f32,
    /// Per-band SNR in dB that counts as nothing: absorbs the frame-to-frame spread of noise.
    pub band_margin_db: f32,
    /// Extra per-band margin, in units of the band's own learnt noise spread (mean absolute
    /// frame-to-frame change of its level in dB, measured on noise): bands whose noise level
    /// jumps around (rumble, few samples per frame) need more evidence than steady ones.
    pub spread_factor: f32,
    /// A band contributes at most this many dB, so one band cannot carry a decision alone.
    pub band_cap_db: f32,
    /// Frames quieter than this (dBFS) are never speech, whatever their SNR.
    pub min_level_dbfs: f32,
    /// Band levels (dBFS) are clamped up to this before any comparison: below it, mu-law
    /// quantisation noise switches on and off with the waveform and would look like speech
    /// against a floor learnt from digital silence.
    pub min_band_dbfs: f32,
    /// A band more than this many dB below the frame's total level counts for nothing: G.711
    /// quantisation noise sits about 38 dB below the signal, spread over all bands, so under
    /// loud rumble the upper bands carry noise that rises and falls with the rumble.
    pub quant_snr_db: f32,
    /// Above-threshold time needed before speech starts, in ms: speech starts on the
    /// `ceil(onset_ms / frame_ms)`-th consecutive above-threshold frame (at least the first).
    pub onset_ms: u32,
    /// A score this many times the threshold starts speech without waiting for the onset time.
    pub strong_factor: f32,
    /// Time speech is held after the score drops, in ms.
    pub hangover_ms: u32,
    /// Time constant of the noise floor while the signal is judged noise, in ms.
    pub noise_adapt_ms: f32,
    /// Time constant of the noise floor rising during speech, in ms: slow, so speech does not
    /// raise the floor, but a lasting noise step up is still learnt.
    pub noise_rise_ms: f32,
    /// Time constant of the noise floor falling (in speech, and in noise when faster than
    /// `noise_adapt_ms`), in ms: a noise step down is learnt quickly.
    pub noise_fall_ms: f32,
    /// Weight of each band's SNR in the score, bands 0-250, 250-500, 500-1k, 1-2k, 2-4k Hz.
    pub band_weights: [f32; BANDS],
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            frame_ms: 20,
            threshold: 6.0,
            release: 3.0,
            band_margin_db: 0.0,
            band_cap_db: 15.0,
            spread_factor: 0.6,
            min_level_dbfs: -62.0,
            min_band_dbfs: -75.0,
            quant_snr_db: 35.0,
            onset_ms: 40,
            strong_factor: 1.5,
            hangover_ms: 80,
            noise_adapt_ms: 800.0,
            noise_rise_ms: 3000.0,
            noise_fall_ms: 300.0,
            band_weights: [0.15, 1.0, 1.0, 0.8, 0.6],
        }
    }
}

/// Frames during which the floor is a running mean of everything seen (cold start).
const WARMUP_FRAMES: u32 = 10;
/// Noise spread assumed before any has been measured, dB.
const INITIAL_SPREAD_DB: f32 = 2.0;
/// Minimum-statistics window: this many sub-windows of `MIN_SUBWINDOW_MS`.
const MIN_SUBWINDOWS: usize = 4;
const MIN_SUBWINDOW_MS: u32 = 500;
/// The floor is kept at least this many noise spreads above the windowed minimum: the minimum
/// of steady noise sits about that far below its mean.
const MIN_BIAS_SPREADS: f32 = 2.0;

impl VadConfig {
    fn validate(&self) -> Result<(), VadError> {
        if !FRAME_MS.contains(&self.frame_ms) {
            return Err(VadError::UnsupportedFrameMs(self.frame_ms));
        }
        let check = |name: &'static str, v: f32, lo: f32, hi: f32, range: &'static str| {
            if v.is_finite() && v >= lo && v <= hi {
                Ok(())
            } else {
                Err(VadError::InvalidParam {
                    name,
                    value: v,
                    range,
                })
            }
        };
        check("threshold", self.threshold, 0.0, 200.0, "[0, 200]")?;
        check(
            "release",
            self.release,
            0.0,
            self.threshold,
            "[0, threshold]",
        )?;
        check("band_margin_db", self.band_margin_db, 0.0, 40.0, "[0, 40]")?;
        check("spread_factor", self.spread_factor, 0.0, 20.0, "[0, 20]")?;
        check("band_cap_db", self.band_cap_db, 1.0, 100.0, "[1, 100]")?;
        check(
            "min_level_dbfs",
            self.min_level_dbfs,
            -120.0,
            0.0,
            "[-120, 0]",
        )?;
        check(
            "min_band_dbfs",
            self.min_band_dbfs,
            -120.0,
            0.0,
            "[-120, 0]",
        )?;
        check("quant_snr_db", self.quant_snr_db, 10.0, 120.0, "[10, 120]")?;
        check("onset_ms", self.onset_ms as f32, 0.0, 1000.0, "[0, 1000]")?;
        check("strong_factor", self.strong_factor, 1.0, 100.0, "[1, 100]")?;
        check(
            "hangover_ms",
            self.hangover_ms as f32,
            0.0,
            5000.0,
            "[0, 5000]",
        )?;
        check(
            "noise_adapt_ms",
            self.noise_adapt_ms,
            10.0,
            60000.0,
            "[10, 60000]",
        )?;
        check(
            "noise_rise_ms",
            self.noise_rise_ms,
            10.0,
            600000.0,
            "[10, 600000]",
        )?;
        check(
            "noise_fall_ms",
            self.noise_fall_ms,
            10.0,
            60000.0,
            "[10, 60000]",
        )?;
        for &w in &self.band_weights {
            check("band_weights[i]", w, 0.0, 10.0, "[0, 10]")?;
        }
        Ok(())
    }
}

/// log2 by exponent bits plus a quartic on the mantissa (error < 3e-4, i.e. < 0.001 dB): five of these per frame
/// would otherwise be a tenth of the budget.
#[inline]
fn fast_log2(x: f32) -> f32 {
    let x = x.max(1e-20);
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    // Least-squares quartic for log2 on [1, 2).
    let p =
        (((-0.079_149_67 * m + 0.628_810_6) * m - 2.081_046_5) * m + 4.028_357) * m - 2.496_767_3;
    e as f32 + p
}

#[inline]
fn db(power: f32) -> f32 {
    3.010_3 * fast_log2(power + 1e-12)
}

/// Sum of squares with eight independent accumulators: a single running f32 sum is one long
/// dependency chain (strict FP order forbids the compiler from splitting it), which made this
/// the most expensive part of a frame.
#[inline]
fn sum_sq(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let mut s: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for a in acc {
        s += a;
    }
    s
}

/// PCM16 as the analysis sees it, in [-1, 1) (the SSE2 loaders scale by the same constant).
const PCM_SCALE: f32 = 1.0 / 32768.0;

/// `src` scaled by [`PCM_SCALE`] into `dst` (the first `src.len()` items).
fn pcm_to_unit(dst: &mut [f32], src: &[i16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s as f32 * PCM_SCALE;
    }
}

/// Inputs of the SSE2 half-band: f32 samples, or PCM16 scaled by 1/32768 as it is loaded, so
/// the first stage reads the frame itself instead of a converted copy.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    pub(super) trait Src: Copy {
        fn len(self) -> usize;
        /// Sample `i` (< `len`) as the analysis sees it.
        fn at(self, i: usize) -> f32;
        /// Samples `i..i + 16` as four vectors of `at` values.
        ///
        /// # Safety
        /// `i + 16 <= self.len()`.
        unsafe fn block(self, i: usize) -> [__m128; 4];
    }

    impl Src for &[f32] {
        #[inline(always)]
        fn len(self) -> usize {
            <[f32]>::len(self)
        }
        #[inline(always)]
        fn at(self, i: usize) -> f32 {
            self[i]
        }
        #[inline(always)]
        unsafe fn block(self, i: usize) -> [__m128; 4] {
            // SAFETY: the caller guarantees `i + 16 <= len`; SSE2 is baseline on x86_64.
            unsafe {
                let p = self.as_ptr().add(i);
                [
                    _mm_loadu_ps(p),
                    _mm_loadu_ps(p.add(4)),
                    _mm_loadu_ps(p.add(8)),
                    _mm_loadu_ps(p.add(12)),
                ]
            }
        }
    }

    impl Src for &[i16] {
        #[inline(always)]
        fn len(self) -> usize {
            <[i16]>::len(self)
        }
        #[inline(always)]
        fn at(self, i: usize) -> f32 {
            self[i] as f32 * super::PCM_SCALE
        }
        #[inline(always)]
        unsafe fn block(self, i: usize) -> [__m128; 4] {
            // i16 -> i32 by sign extension (unpack onto itself, shift right by 16), then the
            // exact conversion and the exact power-of-two scale that `at` does.
            // SAFETY (intrinsics): SSE and SSE2 are part of the x86_64 baseline.
            let widen = |v: __m128i| unsafe {
                let k = _mm_set1_ps(super::PCM_SCALE);
                let lo = _mm_srai_epi32::<16>(_mm_unpacklo_epi16(v, v));
                let hi = _mm_srai_epi32::<16>(_mm_unpackhi_epi16(v, v));
                (
                    _mm_mul_ps(_mm_cvtepi32_ps(lo), k),
                    _mm_mul_ps(_mm_cvtepi32_ps(hi), k),
                )
            };
            // SAFETY: the caller guarantees `i + 16 <= len`: two loads of 8 samples.
            let (a, b) = unsafe {
                let p = self.as_ptr().add(i);
                (_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(8).cast()))
            };
            let ((x0, x1), (x2, x3)) = (widen(a), widen(b));
            [x0, x1, x2, x3]
        }
    }
}

/// Half-band 7-tap lowpass (-1, 0, 9, 16, 9, 0, -1)/32 with decimation by 2; its complement
/// (delta minus lowpass) gives the upper half's power for free. Computed in polyphase form
/// (even and odd samples apart) so the loop is contiguous and vectorises.
#[derive(Debug, Clone)]
struct HalfBand {
    even: [f32; 3],
    odd: [f32; 3],
}

impl HalfBand {
    const fn new() -> Self {
        HalfBand {
            even: [0.0; 3],
            odd: [0.0; 3],
        }
    }

    /// Decimates `inp` (even length) into `lo[..inp.len()/2]` and returns the mean power of
    /// the upper half-band. `e` and `o` are scratch of at least `inp.len()/2 + 3` (used only
    /// off x86_64).
    #[inline]
    fn run(&mut self, inp: &[f32], lo: &mut [f32], e: &mut [f32], o: &mut [f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        {
            let _ = (e, o);
            self.run_sse2(inp, lo)
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.run_portable(inp, lo, e, o)
    }

    /// [`HalfBand::run`] on PCM16 scaled by 1/32768; `conv` is scratch for that scaling
    /// (used only off x86_64, where the SSE2 form scales as it loads).
    #[inline]
    fn run_pcm(
        &mut self,
        inp: &[i16],
        lo: &mut [f32],
        conv: &mut [f32],
        e: &mut [f32],
        o: &mut [f32],
    ) -> f32 {
        #[cfg(target_arch = "x86_64")]
        {
            let _ = (conv, e, o);
            self.run_sse2(inp, lo)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let conv = &mut conv[..inp.len()];
            pcm_to_unit(conv, inp);
            self.run_portable(conv, lo, e, o)
        }
    }

    /// Same arithmetic as [`HalfBand::run_portable`], operation for operation (so the bits of
    /// `lo` and of the returned power are the same), but in one pass with the even/odd phases
    /// kept in registers: the portable form's deinterleave, filter and power loops each
    /// round-tripped through memory, and at the short lower stages their loop overheads, a
    /// store-forwarding stall (the filter's shifted loads straddle the deinterleave's stores)
    /// and the serial tail sums cost more than the arithmetic.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn run_sse2<S: sse2::Src>(&mut self, inp: S, lo: &mut [f32]) -> f32 {
        use std::arch::x86_64::*;
        let half = inp.len() / 2;
        if half == 0 {
            return 0.0;
        }
        let lo = &mut lo[..half];
        let blocks = half / 8;
        // Power of the upper band: lanes i % 8 of the first `8 * blocks` outputs accumulate
        // apart, the rest add up in order, then the eight lanes are added in lane
        // order, exactly as the portable form does.
        let mut lanes = [0.0f32; 8];
        // SAFETY: SSE and SSE2 are part of the x86_64 baseline, so the intrinsics run on
        // every x86_64 CPU. Block `blk < blocks = half / 8` reads `inp[16 blk..16 blk + 16]`
        // (`16 blk + 16 <= 2 half <= inp.len()`, the condition `Src::block` asks) and writes
        // `lo[8 blk..8 blk + 8]` through a slice of exactly 8; the last two stores write the
        // two vectors of `acc` into the 8 floats of `lanes`.
        unsafe {
            // With E = even history ++ inp[0], inp[2], ... and O likewise for the odd phase:
            // lo[i] = (16 O[i+1] + 9 (E[i+1] + E[i+2]) - (E[i] + E[i+3])) / 32.
            let (c16, c9, c32) = (_mm_set1_ps(16.0), _mm_set1_ps(9.0), _mm_set1_ps(1.0 / 32.0));
            // Four outputs from a = E[i-1..i+3], b = E[i+3..i+7], oa/ob likewise for O.
            let four = |a: __m128, b: __m128, oa: __m128, ob: __m128| {
                let t = _mm_shuffle_ps::<0x0F>(a, b); // a3 a3 b0 b0
                let e0 = _mm_shuffle_ps::<0x89>(a, t); // a1 a2 a3 b0
                let e1 = _mm_shuffle_ps::<0x4E>(a, b); // a2 a3 b0 b1
                let e2 = _mm_shuffle_ps::<0x98>(t, b); // a3 b0 b1 b2
                let o1 = _mm_shuffle_ps::<0x4E>(oa, ob);
                let s = _mm_add_ps(_mm_mul_ps(c16, o1), _mm_mul_ps(c9, _mm_add_ps(e1, e2)));
                let l = _mm_mul_ps(_mm_sub_ps(s, _mm_add_ps(e0, b)), c32);
                let h = _mm_sub_ps(o1, l);
                (l, _mm_mul_ps(h, h))
            };
            // E[i-1..i+3] and O[i-1..i+3] of the block starting at output i (lane 0 unused at
            // the start).
            // Read from `self`, written a frame ago: going through a local copy made the
            // compiler store the three floats as 8 + 4 bytes and load them back at other
            // offsets at once, a store-forwarding stall per stage.
            let mut pe = _mm_setr_ps(0.0, self.even[0], self.even[1], self.even[2]);
            let mut po = _mm_setr_ps(0.0, self.odd[0], self.odd[1], self.odd[2]);
            let (mut acc0, mut acc1) = (_mm_setzero_ps(), _mm_setzero_ps());
            let mut eight = |x: [__m128; 4]| {
                let (e0, o0) = (
                    _mm_shuffle_ps::<0x88>(x[0], x[1]),
                    _mm_shuffle_ps::<0xDD>(x[0], x[1]),
                );
                let (e1, o1) = (
                    _mm_shuffle_ps::<0x88>(x[2], x[3]),
                    _mm_shuffle_ps::<0xDD>(x[2], x[3]),
                );
                let (l0, h0) = four(pe, e0, po, o0);
                let (l1, h1) = four(e0, e1, o0, o1);
                (pe, po) = (e1, o1);
                (l0, l1, h0, h1)
            };
            for blk in 0..blocks {
                let (l0, l1, h0, h1) = eight(inp.block(16 * blk));
                let q = &mut lo[8 * blk..8 * blk + 8];
                _mm_storeu_ps(q.as_mut_ptr(), l0);
                _mm_storeu_ps(q.as_mut_ptr().add(4), l1);
                acc0 = _mm_add_ps(acc0, h0);
                acc1 = _mm_add_ps(acc1, h1);
            }
            _mm_storeu_ps(lanes.as_mut_ptr(), acc0);
            _mm_storeu_ps(lanes.as_mut_ptr().add(4), acc1);
        }
        let (ev, od) = (self.even, self.odd);
        let e_at = |j: usize| if j < 3 { ev[j] } else { inp.at(2 * (j - 3)) };
        let o_at = |j: usize| {
            if j < 3 {
                od[j]
            } else {
                inp.at(2 * (j - 3) + 1)
            }
        };
        let mut hp = 0.0f32;
        // The outputs after the last whole block, one at a time (indexed: the taps are
        // positions around `i`, not items of one slice).
        #[allow(clippy::needless_range_loop)]
        for i in 8 * blocks..half {
            let (e0, e1, e2, e3, o1) =
                (e_at(i), e_at(i + 1), e_at(i + 2), e_at(i + 3), o_at(i + 1));
            let l = (16.0 * o1 + 9.0 * (e1 + e2) - (e0 + e3)) * (1.0 / 32.0);
            lo[i] = l;
            hp += (o1 - l) * (o1 - l);
        }
        for a in lanes {
            hp += a;
        }
        // The next call's history: E[half..half+3], O[half..half+3].
        let n = 2 * half;
        if half >= 3 {
            self.even = [inp.at(n - 6), inp.at(n - 4), inp.at(n - 2)];
            self.odd = [inp.at(n - 5), inp.at(n - 3), inp.at(n - 1)];
        } else {
            self.even = [e_at(half), e_at(half + 1), e_at(half + 2)];
            self.odd = [o_at(half), o_at(half + 1), o_at(half + 2)];
        }
        hp / half as f32
    }

    /// Decimates `inp` (even length) into `lo[..inp.len()/2]` and returns the mean power of
    /// the upper half-band. `e` and `o` are scratch of at least `inp.len()/2 + 3`.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    fn run_portable(&mut self, inp: &[f32], lo: &mut [f32], e: &mut [f32], o: &mut [f32]) -> f32 {
        let half = inp.len() / 2;
        if half == 0 {
            return 0.0;
        }
        let (e, o, lo) = (&mut e[..half + 3], &mut o[..half + 3], &mut lo[..half]);
        e[..3].copy_from_slice(&self.even);
        o[..3].copy_from_slice(&self.odd);
        // Indexed over equal-length slices: the stride-2 loads vectorise (the zipped
        // `chunks_exact(2)` form stayed scalar and was the costliest loop of a frame).
        let (ed, od, src) = (&mut e[3..], &mut o[3..], &inp[..2 * half]);
        for i in 0..half {
            ed[i] = src[2 * i];
            od[i] = src[2 * i + 1];
        }
        // With w = history ++ input: w[2k] = e[k], w[2k+1] = o[k]; output m is centred on
        // w[2m+3] = o[m+1].
        let (e0, e1, e2, e3) = (
            &e[..half],
            &e[1..half + 1],
            &e[2..half + 2],
            &e[3..half + 3],
        );
        let o1 = &o[1..half + 1];
        for i in 0..half {
            lo[i] = (16.0 * o1[i] + 9.0 * (e1[i] + e2[i]) - (e0[i] + e3[i])) * (1.0 / 32.0);
        }
        let mut acc = [0.0f32; 8];
        let mut hp = 0.0f32;
        let mut lc = lo.chunks_exact(8);
        let mut oc = o1.chunks_exact(8);
        for (l8, o8) in (&mut lc).zip(&mut oc) {
            for ((a, &l), &c) in acc.iter_mut().zip(l8).zip(o8) {
                let h = c - l;
                *a += h * h;
            }
        }
        for (&l, &c) in lc.remainder().iter().zip(oc.remainder()) {
            hp += (c - l) * (c - l);
        }
        for a in acc {
            hp += a;
        }
        self.even.copy_from_slice(&e[half..half + 3]);
        self.odd.copy_from_slice(&o[half..half + 3]);
        hp / half as f32
    }
}

/// Triangular 5-tap lowpass (1, 2, 3, 2, 1)/9 with decimation by 3 (24 kHz -> 8 kHz): a zero at
/// the first alias band is all a detector needs.
#[derive(Debug, Clone)]
struct Third {
    hist: [f32; 4],
}

impl Third {
    const fn new() -> Self {
        Third { hist: [0.0; 4] }
    }

    /// `work` is scratch of at least `inp.len() + 4`.
    fn run(&mut self, inp: &[f32], lo: &mut [f32], work: &mut [f32]) {
        let n = inp.len();
        let work = &mut work[..n + 4];
        work[..4].copy_from_slice(&self.hist);
        work[4..].copy_from_slice(inp);
        for (out, w) in lo[..n / 3]
            .iter_mut()
            .zip(work.chunks_exact(3).zip(work[3..].chunks_exact(3)))
        {
            let (a, b) = w;
            *out = (a[0] + b[1] + 2.0 * (a[1] + b[0]) + 3.0 * a[2]) * (1.0 / 9.0);
        }
        self.hist.copy_from_slice(&work[n..n + 4]);
    }
}

/// Streaming voice activity detector. See the module docs for the method.
#[derive(Debug, Clone)]
pub struct Vad {
    rate: u32,
    cfg: VadConfig,
    frame_len: usize,
    an_len: usize,
    // Per-frame constants derived from the config.
    a_noise: f32,
    a_rise: f32,
    a_fall: f32,
    onset_frames: u32,
    hang_frames: u32,
    // Rate conversion to 8 kHz.
    pre2: HalfBand,
    pre3: Third,
    // Band split.
    split: [HalfBand; 4],
    // State.
    floor_db: [f32; BANDS],
    spread_db: [f32; BANDS],
    prev_power: [f32; BANDS],
    prev_db: [f32; BANDS],
    prev2_db: [f32; BANDS],
    // Minimum statistics: per-band minimum over `MIN_SUBWINDOWS` sub-windows.
    cur_min: [f32; BANDS],
    mins: [[f32; BANDS]; MIN_SUBWINDOWS],
    min_pos: usize,
    sub_count: u32,
    sub_frames: u32,
    frames_seen: u32,
    run: u32,
    hang: u32,
    speech: bool,
    level_db: f32,
    // Scratch, sized once for this rate, frame length and instruction set (a call's detector
    // at 8 kHz needs ~1.3 KB of it on x86_64; arrays sized for the largest frame were 26 KB in
    // every call).
    work: Box<[f32]>,
    even: Box<[f32]>,
    odd: Box<[f32]>,
    a: Box<[f32]>,
    b: Box<[f32]>,
    pending: Box<[i16]>,
    pending_len: usize,
}

impl Vad {
    /// A detector for `sample_rate` (8000, 16000, 24000 or 48000 Hz) mono PCM16.
    pub fn new(sample_rate: u32, config: VadConfig) -> Result<Self, VadError> {
        if !RATES.contains(&sample_rate) {
            return Err(VadError::UnsupportedRate(sample_rate));
        }
        config.validate()?;
        let fms = config.frame_ms as f32;
        let alpha = |tau_ms: f32| 1.0 - (-fms / tau_ms).exp();
        let frames = |ms: u32| ms.div_ceil(config.frame_ms);
        let frame_len = (sample_rate / 1000 * config.frame_ms) as usize;
        let an_len = (ANALYSIS_RATE / 1000 * config.frame_ms) as usize;
        let zeros = |n: usize| vec![0.0f32; n].into_boxed_slice();
        let portable = !cfg!(target_arch = "x86_64");
        let third = sample_rate > 16000;
        Ok(Vad {
            rate: sample_rate,
            frame_len,
            an_len,
            a_noise: alpha(config.noise_adapt_ms),
            a_rise: alpha(config.noise_rise_ms),
            a_fall: alpha(config.noise_fall_ms),
            onset_frames: frames(config.onset_ms).max(1),
            hang_frames: frames(config.hangover_ms),
            cfg: config,
            pre2: HalfBand::new(),
            pre3: Third::new(),
            split: [
                HalfBand::new(),
                HalfBand::new(),
                HalfBand::new(),
                HalfBand::new(),
            ],
            floor_db: [0.0; BANDS],
            spread_db: [INITIAL_SPREAD_DB; BANDS],
            prev_power: [0.0; BANDS],
            prev_db: [0.0; BANDS],
            prev2_db: [0.0; BANDS],
            cur_min: [f32::MAX; BANDS],
            mins: [[f32::MAX; BANDS]; MIN_SUBWINDOWS],
            min_pos: 0,
            sub_count: 0,
            sub_frames: (MIN_SUBWINDOW_MS / fms as u32).max(1),
            frames_seen: 0,
            run: 0,
            hang: 0,
            speech: false,
            level_db: -120.0,
            // Only the scratch this rate's path uses (a call's VAD runs at 8 kHz, where on
            // x86_64 that is `a` alone): the analysis band splits write their outputs one after
            // another into `a` (at most twice the 8 kHz frame); the 3:1 stage (24 and 48 kHz)
            // stages through `b` and `work`; the portable half-band (off x86_64) scales PCM
            // into `work` and deinterleaves into `even` and `odd`.
            work: zeros(if portable || third { frame_len + 8 } else { 0 }),
            even: zeros(if portable { frame_len / 2 + 4 } else { 0 }),
            odd: zeros(if portable { frame_len / 2 + 4 } else { 0 }),
            a: zeros(2 * an_len + 8),
            b: zeros(if third { frame_len } else { 0 }),
            pending: vec![0i16; frame_len].into_boxed_slice(),
            pending_len: 0,
        })
    }

    /// Samples per frame at the input rate.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    pub fn config(&self) -> &VadConfig {
        &self.cfg
    }

    /// Decisions are made on the frame itself, no lookahead.
    pub fn latency_ms(&self) -> u32 {
        0
    }

    /// Level of the last frame, dBFS (RMS relative to full scale; a full-scale sine is -3).
    pub fn level_dbfs(&self) -> f32 {
        self.level_db
    }

    /// Current noise floor estimate over all bands (0-4 kHz), dBFS.
    pub fn noise_floor_dbfs(&self) -> f32 {
        if self.frames_seen == 0 {
            return -120.0;
        }
        // Each band power is a mean per sample of the 8 kHz signal, so they add up.
        let p: f32 = self.floor_db.iter().map(|&f| 10f32.powf(f / 10.0)).sum();
        (10.0 * p.max(1e-12).log10()).max(-120.0)
    }

    /// Forget everything: floors, smoothing state and any partial frame kept by `process`.
    pub fn reset(&mut self) {
        self.pre2 = HalfBand::new();
        self.pre3 = Third::new();
        self.split = [
            HalfBand::new(),
            HalfBand::new(),
            HalfBand::new(),
            HalfBand::new(),
        ];
        self.floor_db = [0.0; BANDS];
        self.spread_db = [INITIAL_SPREAD_DB; BANDS];
        self.prev_power = [0.0; BANDS];
        self.prev_db = [0.0; BANDS];
        self.prev2_db = [0.0; BANDS];
        self.cur_min = [f32::MAX; BANDS];
        self.mins = [[f32::MAX; BANDS]; MIN_SUBWINDOWS];
        self.min_pos = 0;
        self.sub_count = 0;
        self.frames_seen = 0;
        self.run = 0;
        self.hang = 0;
        self.speech = false;
        self.level_db = -120.0;
        self.pending_len = 0;
    }

    /// Decision for exactly one frame. Independent of any partial frame `process` holds.
    pub fn is_speech(&mut self, frame: &[i16]) -> Result<bool, VadError> {
        if frame.len() != self.frame_len {
            return Err(VadError::FrameLength {
                got: frame.len(),
                expected: self.frame_len,
            });
        }
        Ok(self.analyse(frame))
    }

    /// Appends one decision per whole frame of `pending + pcm` to `out`, keeping a trailing
    /// partial frame for the next call; returns the number of decisions appended.
    pub fn process(&mut self, pcm: &[i16], out: &mut Vec<bool>) -> usize {
        let fl = self.frame_len;
        let mut rest = pcm;
        let mut count = 0;
        if self.pending_len > 0 {
            let take = (fl - self.pending_len).min(rest.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&rest[..take]);
            self.pending_len += take;
            rest = &rest[take..];
            if self.pending_len < fl {
                return 0;
            }
            // Taken out for the call (analyse borrows self) and put back: no copy, no allocation.
            let frame = std::mem::take(&mut self.pending);
            out.push(self.analyse(&frame[..fl]));
            self.pending = frame;
            self.pending_len = 0;
            count += 1;
        }
        let mut chunks = rest.chunks_exact(fl);
        for frame in &mut chunks {
            out.push(self.analyse(frame));
            count += 1;
        }
        let tail = chunks.remainder();
        self.pending[..tail.len()].copy_from_slice(tail);
        self.pending_len = tail.len();
        count
    }

    /// Samples held by `process` that do not yet make a whole frame.
    pub fn pending_samples(&self) -> usize {
        self.pending_len
    }

    fn analyse(&mut self, frame: &[i16]) -> bool {
        let n = frame.len();
        let an = self.an_len;
        let sq = crate::g711::sum_sq_i16(frame);
        self.level_db = db(sq as f32 * (1.0 / (32768.0 * 32768.0)) / n as f32).max(-120.0);
        // To 8 kHz in `a[..an]`. A half-band stage that reads the frame first converts each
        // sample as it loads it; at 8 kHz the first band split reads the frame itself.
        let mut p = [0.0f32; BANDS];
        let mut first = 0;
        match self.rate {
            8000 => {
                p[BANDS - 1] = self.split[0].run_pcm(
                    frame,
                    &mut self.a[..an / 2],
                    &mut self.work,
                    &mut self.even,
                    &mut self.odd,
                );
                first = 1;
            }
            16000 => {
                self.pre2.run_pcm(
                    frame,
                    &mut self.a[..an],
                    &mut self.work,
                    &mut self.even,
                    &mut self.odd,
                );
            }
            24000 => {
                pcm_to_unit(&mut self.b[..n], frame);
                self.pre3
                    .run(&self.b[..n], &mut self.a[..an], &mut self.work);
            }
            // 48000, the one rate left (`new` accepts only `RATES`).
            _ => {
                self.pre2.run_pcm(
                    frame,
                    &mut self.b[..n / 2],
                    &mut self.work,
                    &mut self.even,
                    &mut self.odd,
                );
                self.pre3
                    .run(&self.b[..n / 2], &mut self.a[..an], &mut self.work);
            }
        }

        // Band powers: p[4] = 2-4k, p[3] = 1-2k, p[2] = 500-1k, p[1] = 250-500, p[0] = 0-250.
        // Each stage's output goes right after its input in `a`, so no copies.
        let (mut start, mut len) = (0, an >> first);
        for k in first..4 {
            let (done, rest) = self.a.split_at_mut(start + len);
            p[BANDS - 1 - k] = self.split[k].run(
                &done[start..],
                &mut rest[..len / 2],
                &mut self.even,
                &mut self.odd,
            );
            start += len;
            len /= 2;
        }
        p[0] = sum_sq(&self.a[start..start + len]) / len as f32;

        let mut l = [0.0f32; BANDS];
        // 10 ms frames hold too few samples per band for a steady estimate: analyse a 20 ms
        // window (this frame and the last) with a 10 ms hop, so the tuning is the same.
        if self.cfg.frame_ms == 10 {
            if self.frames_seen == 0 {
                self.prev_power = p;
            }
            let cur = p;
            for (v, &q) in p.iter_mut().zip(self.prev_power.iter()) {
                *v = 0.5 * (*v + q);
            }
            self.prev_power = cur;
        }
        let lo = self.cfg.min_band_dbfs;
        for (d, &v) in l.iter_mut().zip(p.iter()) {
            *d = db(v).max(lo);
        }
        let quant = db(p.iter().sum::<f32>()) - self.cfg.quant_snr_db;
        self.decide(&l, quant)
    }

    // Several per-band arrays are updated together; indexing reads clearer than zipping five.
    #[allow(clippy::needless_range_loop)]
    fn decide(&mut self, l: &[f32; BANDS], quant_db: f32) -> bool {
        let c = &self.cfg;
        // The first frame only primes the filters (their history starts at zero); the floor
        // starts from the second.
        if self.frames_seen <= 1 {
            self.floor_db = *l;
            self.prev_db = *l;
            self.prev2_db = *l;
        }
        let mut score = 0.0f32;
        for b in 0..BANDS {
            let floor = self.floor_db[b].max(quant_db);
            let snr = l[b] - floor - c.band_margin_db - c.spread_factor * self.spread_db[b];
            score += c.band_weights[b] * snr.clamp(0.0, c.band_cap_db);
        }
        let loud = self.level_db >= c.min_level_dbfs;
        let thr = if self.speech { c.release } else { c.threshold };
        let raw = loud && score > thr && self.frames_seen >= 2;

        if raw {
            self.run += 1;
            // Clear evidence starts speech at once; marginal evidence must persist for the
            // onset time, which is what keeps isolated noise blips out.
            if self.speech
                || self.run >= self.onset_frames
                || score >= c.strong_factor * c.threshold
            {
                self.speech = true;
                self.hang = self.hang_frames;
            }
        } else {
            self.run = 0;
            if self.speech {
                if self.hang > 0 {
                    self.hang -= 1;
                } else {
                    self.speech = false;
                }
            }
        }

        // Noise floor update.
        let warm = self.frames_seen < WARMUP_FRAMES;
        let noise_like = !self.speech && score <= c.threshold;
        // Step sizes for a band level at or above its floor, and below it. Chosen per band by
        // indexing, not branching: whether noise sits above or below its floor is a coin toss
        // per band and frame, which a branch predictor cannot learn.
        let steps = if warm {
            [(1.0 / (self.frames_seen + 1) as f32).max(self.a_noise); 2]
        } else if noise_like {
            [self.a_noise, self.a_noise.max(self.a_fall)]
        } else {
            [self.a_rise, self.a_fall]
        };
        for b in 0..BANDS {
            let d = l[b] - self.floor_db[b];
            let a = steps[(d < 0.0) as usize];
            self.floor_db[b] += a * d;
            if warm || noise_like {
                // Frame-to-frame change, not distance to the floor: independent of the floor
                // estimate, so floor and spread cannot feed each other.
                let jump = (l[b] - self.prev_db[b]).abs();
                self.spread_db[b] += a * (jump - self.spread_db[b]);
            }
            // With 10 ms frames the previous window overlaps this one; compare with the one
            // before it so the spread means the same at every frame size.
            if self.cfg.frame_ms == 10 {
                self.prev_db[b] = self.prev2_db[b];
                self.prev2_db[b] = l[b];
            } else {
                self.prev_db[b] = l[b];
            }
        }
        // Minimum statistics: speech has dips to the noise within two seconds, so a floor far
        // below the windowed minimum means the noise stepped up while we judged it speech
        // (without this the detector could lock into "speech" on a lasting noise step).
        let mut wmin = self.cur_min;
        for b in 0..BANDS {
            self.cur_min[b] = self.cur_min[b].min(l[b]);
            for m in &self.mins {
                wmin[b] = wmin[b].min(m[b]);
            }
            wmin[b] = wmin[b].min(l[b]);
        }
        if self.mins[self.min_pos][0] < f32::MAX {
            for b in 0..BANDS {
                let target = wmin[b] + MIN_BIAS_SPREADS * self.spread_db[b];
                // `floor < target ? target : floor`, written so that it compiles to one
                // `maxss` rather than a data-dependent branch.
                let floor = self.floor_db[b];
                self.floor_db[b] = if target > floor { target } else { floor };
            }
        }
        self.sub_count += 1;
        if self.sub_count >= self.sub_frames {
            self.mins[self.min_pos] = self.cur_min;
            self.min_pos = (self.min_pos + 1) % MIN_SUBWINDOWS;
            self.cur_min = [f32::MAX; BANDS];
            self.sub_count = 0;
        }
        self.frames_seen = self.frames_seen.saturating_add(1);
        self.speech
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic white noise, Gaussian-ish (sum of 4 uniforms), unit RMS.
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> f32 {
            let mut s = 0.0;
            for _ in 0..4 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                s += (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            s * 3.0f32.sqrt()
        }
    }

    fn dbfs_amp(db: f32) -> f32 {
        32768.0 * 10f32.powf(db / 20.0)
    }

    fn to_pcm(x: &[f32]) -> Vec<i16> {
        x.iter()
            .map(|&v| v.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    fn white(rate: u32, secs: f32, level_dbfs: f32, seed: u64) -> Vec<f32> {
        let mut n = Noise(seed);
        let a = dbfs_amp(level_dbfs);
        (0..(rate as f32 * secs) as usize)
            .map(|_| a * n.next())
            .collect()
    }

    /// Voiced speech stand-in: harmonics of a pitch gliding between 120 and 220 Hz with a
    /// falling spectral tilt, amplitude-modulated at a syllabic 4 Hz rate, RMS near `level_dbfs`.
    fn voiced(rate: u32, secs: f32, level_dbfs: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        let mut phase = 0.0f32;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let t = i as f32 / rate as f32;
            let f0 = 170.0 + 50.0 * (2.0 * std::f32::consts::PI * 0.7 * t).sin();
            phase += 2.0 * std::f32::consts::PI * f0 / rate as f32;
            let mut v = 0.0;
            for h in 1..=15 {
                if f0 * h as f32 >= 3600.0 {
                    break;
                }
                v += (h as f32 * phase).sin() / h as f32;
            }
            let env = 0.35 + 0.65 * (2.0 * std::f32::consts::PI * 4.0 * t).sin().abs();
            out.push(v * env);
        }
        let rms = (out.iter().map(|v| v * v).sum::<f32>() / n as f32).sqrt();
        let g = dbfs_amp(level_dbfs) / rms;
        out.iter_mut().for_each(|v| *v *= g);
        out
    }

    fn decisions(vad: &mut Vad, pcm: &[i16]) -> Vec<bool> {
        pcm.chunks_exact(vad.frame_len())
            .map(|f| vad.is_speech(f).unwrap())
            .collect()
    }

    fn share(d: &[bool]) -> f32 {
        d.iter().filter(|&&b| b).count() as f32 / d.len().max(1) as f32
    }

    fn all_configs() -> Vec<(u32, u32)> {
        RATES
            .iter()
            .flat_map(|&r| FRAME_MS.iter().map(move |&m| (r, m)))
            .collect()
    }

    fn vad(rate: u32, frame_ms: u32) -> Vad {
        Vad::new(
            rate,
            VadConfig {
                frame_ms,
                ..VadConfig::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn frame_len_per_rate_and_duration() {
        for (rate, ms) in all_configs() {
            assert_eq!(vad(rate, ms).frame_len(), (rate / 1000 * ms) as usize);
        }
    }

    #[test]
    fn digital_silence_is_never_speech() {
        for (rate, ms) in all_configs() {
            let mut v = vad(rate, ms);
            let d = decisions(&mut v, &vec![0i16; rate as usize * 3]);
            assert!(d.iter().all(|&b| !b), "{rate} Hz {ms} ms");
            assert!(v.level_dbfs() <= -100.0);
        }
    }

    #[test]
    fn steady_noise_is_not_speech_at_any_level() {
        for (rate, ms) in all_configs() {
            for (i, level) in [-70.0, -50.0, -35.0, -20.0].into_iter().enumerate() {
                let mut v = vad(rate, ms);
                let d = decisions(&mut v, &to_pcm(&white(rate, 5.0, level, 7 + i as u64)));
                assert!(
                    share(&d) <= 0.03,
                    "{rate} Hz {ms} ms {level} dBFS: {}",
                    share(&d)
                );
                assert!(
                    (v.level_dbfs() - level).abs() < 1.5,
                    "level {} vs {level}",
                    v.level_dbfs()
                );
            }
        }
    }

    #[test]
    fn voiced_signal_is_speech_and_gaps_are_not() {
        for (rate, ms) in all_configs() {
            let mut v = vad(rate, ms);
            let gap = white(rate, 1.0, -55.0, 3);
            let talk = voiced(rate, 1.5, -26.0);
            let mut x = gap.clone();
            for k in 0..3 {
                let mut noise = Noise(100 + k);
                x.extend(talk.iter().map(|&s| s + dbfs_amp(-55.0) * noise.next()));
                x.extend(white(rate, 1.0, -55.0, 10 + k));
            }
            let d = decisions(&mut v, &to_pcm(&x));
            let fpr = (rate as f32 / 1000.0 * ms as f32) as usize;
            let per_sec = rate as usize / fpr;
            let talk_frames = talk.len() / fpr;
            let mut in_talk = Vec::new();
            let mut in_gap = d[..per_sec].to_vec();
            for k in 0..3 {
                let s = per_sec + k * (talk_frames + per_sec);
                in_talk.extend_from_slice(&d[s..s + talk_frames]);
                // Skip the hangover right after the talk spurt.
                in_gap.extend_from_slice(
                    &d[s + talk_frames + 200 / ms as usize..s + talk_frames + per_sec],
                );
            }
            assert!(
                share(&in_talk) >= 0.95,
                "{rate} Hz {ms} ms: talk {}",
                share(&in_talk)
            );
            assert!(
                share(&in_gap) <= 0.02,
                "{rate} Hz {ms} ms: gap {}",
                share(&in_gap)
            );
        }
    }

    #[test]
    fn voiced_signal_is_found_in_white_noise_at_5_db_snr() {
        let rate = 8000;
        let mut v = vad(rate, 20);
        let mut x = white(rate, 2.0, -31.0, 5);
        let talk = voiced(rate, 2.0, -26.0);
        let mut noise = Noise(77);
        x.extend(talk.iter().map(|&s| s + dbfs_amp(-31.0) * noise.next()));
        let d = decisions(&mut v, &to_pcm(&x));
        assert!(share(&d[10..100]) <= 0.05, "noise {}", share(&d[10..100]));
        assert!(share(&d[100..]) >= 0.8, "talk {}", share(&d[100..]));
    }

    #[test]
    fn noise_floor_tracks_a_step_up_and_down() {
        let rate = 8000;
        let mut v = vad(rate, 20);
        let mut x = white(rate, 3.0, -60.0, 1);
        x.extend(white(rate, 12.0, -30.0, 2));
        x.extend(white(rate, 3.0, -60.0, 3));
        let pcm = to_pcm(&x);
        let mut floors = Vec::new();
        let mut d = Vec::new();
        for f in pcm.chunks_exact(v.frame_len()) {
            d.push(v.is_speech(f).unwrap());
            floors.push(v.noise_floor_dbfs());
        }
        // Settled on the quiet noise, then on the loud noise, then back; within a few dB
        // (the floor is a log-domain mean, a little below the power mean).
        assert!(
            (floors[149] + 60.0).abs() < 4.0,
            "quiet floor {}",
            floors[149]
        );
        assert!(
            (floors[749] + 30.0).abs() < 4.0,
            "loud floor {}",
            floors[749]
        );
        assert!(
            (floors[899] + 60.0).abs() < 4.0,
            "quiet again {}",
            floors[899]
        );
        // The step up may read as speech for a while, but not for the whole loud stretch.
        assert!(
            share(&d[400..750]) <= 0.02,
            "loud noise still speech: {}",
            share(&d[400..750])
        );
        // The floor falls fast: within half a second of the step down.
        assert!(floors[775] < -50.0, "floor after step down {}", floors[775]);
        assert!(share(&d[780..900]) <= 0.02);
    }

    /// Quiet noise, then `burst_frames` frames of a loud voiced signal, then quiet noise.
    fn burst(v: &mut Vad, burst_frames: usize) -> Vec<bool> {
        let rate = v.sample_rate();
        let fl = v.frame_len();
        let mut x = white(rate, 1.0, -60.0, 9);
        let talk = voiced(rate, 1.0, -20.0);
        x.extend_from_slice(&talk[..burst_frames * fl]);
        x.extend(white(rate, 1.0, -60.0, 11));
        decisions(v, &to_pcm(&x))
    }

    fn first_false_from(d: &[bool], from: usize) -> usize {
        from + d[from..].iter().position(|&b| !b).unwrap()
    }

    #[test]
    fn onset_delays_the_start_and_hangover_holds_the_end() {
        let rate = 8000;
        let start = 50; // one second of 20 ms frames
                        // A loud onset (score far above the threshold) starts speech on its first frame.
        let d = burst(&mut vad(rate, 20), 20);
        assert!(
            !d[start - 1] && d[start],
            "speech starts on the first loud frame"
        );
        // Hangover 80 ms = 4 frames after the last loud frame, plus one frame whose filter
        // memory still holds the end of the burst.
        assert_eq!(first_false_from(&d, start), start + 20 + 4 + 1);

        // Without the strong-evidence bypass, a 60 ms onset needs three loud frames.
        let cfg = VadConfig {
            onset_ms: 60,
            strong_factor: 100.0,
            hangover_ms: 200,
            ..VadConfig::default()
        };
        let d = burst(&mut Vad::new(rate, cfg.clone()).unwrap(), 20);
        assert!(
            !d[start] && !d[start + 1] && d[start + 2],
            "onset of 3 frames"
        );
        assert_eq!(first_false_from(&d, start + 2), start + 20 + 10 + 1);
        // ... so a single loud frame is ignored, while by default it is taken (with hangover).
        let d = burst(&mut Vad::new(rate, cfg).unwrap(), 1);
        assert!(d.iter().all(|&b| !b));
        let d = burst(&mut vad(rate, 20), 1);
        assert_eq!(d.iter().filter(|&&b| b).count(), 1 + 4 + 1);

        // No hangover: speech ends right after the burst (and its filter tail).
        let cfg = VadConfig {
            hangover_ms: 0,
            ..VadConfig::default()
        };
        let d = burst(&mut Vad::new(rate, cfg).unwrap(), 20);
        assert_eq!(first_false_from(&d, start), start + 20 + 1);
    }

    #[test]
    fn reset_forgets_everything() {
        let mut v = vad(16000, 10);
        let x = to_pcm(&voiced(16000, 1.0, -20.0));
        let mut out = Vec::new();
        v.process(&x[..1234], &mut out);
        v.reset();
        assert_eq!(v.pending_samples(), 0);
        let mut fresh = vad(16000, 10);
        assert_eq!(decisions(&mut v, &x), decisions(&mut fresh, &x));
        assert_eq!(v.noise_floor_dbfs(), fresh.noise_floor_dbfs());
    }

    #[test]
    fn errors_name_the_value_and_the_valid_range() {
        let e = Vad::new(44100, VadConfig::default()).unwrap_err();
        assert_eq!(e, VadError::UnsupportedRate(44100));
        assert!(
            e.to_string().contains("44100")
                && e.to_string().contains("8000, 16000, 24000 and 48000")
        );
        let e = Vad::new(
            8000,
            VadConfig {
                frame_ms: 25,
                ..VadConfig::default()
            },
        )
        .unwrap_err();
        assert_eq!(e, VadError::UnsupportedFrameMs(25));
        assert!(e.to_string().contains("25 ms") && e.to_string().contains("10, 20 and 30"));
        let mut v = vad(8000, 20);
        let e = v.is_speech(&[0; 159]).unwrap_err();
        assert_eq!(
            e,
            VadError::FrameLength {
                got: 159,
                expected: 160
            }
        );
        assert!(e.to_string().contains("159") && e.to_string().contains("160"));
        let e = Vad::new(
            8000,
            VadConfig {
                threshold: f32::NAN,
                ..VadConfig::default()
            },
        )
        .unwrap_err();
        assert!(matches!(
            e,
            VadError::InvalidParam {
                name: "threshold",
                ..
            }
        ));
        let e = Vad::new(
            8000,
            VadConfig {
                release: 9.0,
                ..VadConfig::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("release = 9") && e.to_string().contains("[0, threshold]"));
        let e = Vad::new(
            8000,
            VadConfig {
                hangover_ms: 9000,
                ..VadConfig::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("9000") && e.to_string().contains("[0, 5000]"));
        assert!(VadError::OddLength(3)
            .to_string()
            .contains("odd length of 3"));
    }

    #[test]
    fn fast_log2_is_accurate() {
        for k in -60..60 {
            let x = 1.37f32 * 2f32.powi(k) * (1.0 + k as f32 * 0.003).abs();
            assert!((fast_log2(x) - x.log2()).abs() < 3e-4, "x = {x}");
        }
    }

    /// The SSE2 half-band must give the portable form's bits, not just close values: VAD
    /// decisions compare dB levels against thresholds, and the measured accuracy is that of
    /// the portable arithmetic. Streams of several calls carry the history across calls.
    #[cfg(target_arch = "x86_64")]
    fn half_band_bits_match(x: &[f32], cuts: &[usize]) -> Result<(), TestCaseError> {
        let (mut fast, mut slow) = (HalfBand::new(), HalfBand::new());
        let mut e = [0.0f32; MAX_FRAME / 2 + 4];
        let mut o = [0.0f32; MAX_FRAME / 2 + 4];
        let (mut lo_f, mut lo_s) = ([0.0f32; MAX_FRAME / 2], [0.0f32; MAX_FRAME / 2]);
        for w in cuts.windows(2) {
            let inp = &x[w[0]..w[1]];
            let half = inp.len() / 2;
            let pf = fast.run_sse2(inp, &mut lo_f);
            let ps = slow.run_portable(inp, &mut lo_s, &mut e, &mut o);
            prop_assert_eq!(pf.to_bits(), ps.to_bits(), "power, {} samples", inp.len());
            for i in 0..half {
                prop_assert_eq!(lo_f[i].to_bits(), lo_s[i].to_bits(), "lo[{}]", i);
            }
            prop_assert_eq!(fast.even.map(f32::to_bits), slow.even.map(f32::to_bits));
            prop_assert_eq!(fast.odd.map(f32::to_bits), slow.odd.map(f32::to_bits));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn never_panics_on_any_samples(
            cfg in 0usize..12,
            pcm in proptest::collection::vec(any::<i16>(), 0..4000),
            split in 0usize..4000,
        ) {
            let (rate, ms) = all_configs()[cfg];
            let mut v = vad(rate, ms);
            let mut out = Vec::new();
            let split = split.min(pcm.len());
            let n = v.process(&pcm[..split], &mut out) + v.process(&pcm[split..], &mut out);
            prop_assert_eq!(n, pcm.len() / v.frame_len());
            prop_assert_eq!(out.len(), n);
            prop_assert!(v.level_dbfs().is_finite() && v.noise_floor_dbfs().is_finite());
            for f in pcm.chunks(v.frame_len()) {
                let r = v.is_speech(f);
                prop_assert_eq!(r.is_ok(), f.len() == v.frame_len());
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[test]
        fn sse2_half_band_is_bit_identical_to_portable(
            x in proptest::collection::vec(-1.0f32..1.0, 0..MAX_FRAME),
            scale in prop_oneof![Just(1.0f32), Just(1e-6), Just(3e-39), Just(1e3)],
            cuts in proptest::collection::vec(0usize..MAX_FRAME, 0..6),
        ) {
            let x: Vec<f32> = x.iter().map(|v| v * scale).collect();
            // Every split length 0..=MAX_FRAME shows up over the cases; each call takes at
            // most MAX_FRAME samples, as in `analyse`.
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (x.len() + 1)).collect();
            cuts.push(0);
            cuts.push(x.len());
            cuts.sort_unstable();
            half_band_bits_match(&x, &cuts)?;
        }

        /// The PCM16 input path scales as it loads; it must give the bits of scaling first.
        #[cfg(target_arch = "x86_64")]
        #[test]
        fn sse2_half_band_on_pcm16_is_bit_identical_to_portable(
            pcm in proptest::collection::vec(any::<i16>(), 0..MAX_FRAME),
            cut in 0usize..MAX_FRAME,
        ) {
            let cut = cut % (pcm.len() + 1);
            let (mut fast, mut slow) = (HalfBand::new(), HalfBand::new());
            let mut e = [0.0f32; MAX_FRAME / 2 + 4];
            let mut o = [0.0f32; MAX_FRAME / 2 + 4];
            let mut conv = [0.0f32; MAX_FRAME];
            let (mut lo_f, mut lo_s) = ([0.0f32; MAX_FRAME / 2], [0.0f32; MAX_FRAME / 2]);
            for part in [&pcm[..cut], &pcm[cut..]] {
                let pf = fast.run_pcm(part, &mut lo_f, &mut conv, &mut e, &mut o);
                let scaled: Vec<f32> = part.iter().map(|&v| v as f32 / 32768.0).collect();
                let ps = slow.run_portable(&scaled, &mut lo_s, &mut e, &mut o);
                prop_assert_eq!(pf.to_bits(), ps.to_bits());
                for i in 0..part.len() / 2 {
                    prop_assert_eq!(lo_f[i].to_bits(), lo_s[i].to_bits(), "lo[{}]", i);
                }
                prop_assert_eq!(fast.even.map(f32::to_bits), slow.even.map(f32::to_bits));
                prop_assert_eq!(fast.odd.map(f32::to_bits), slow.odd.map(f32::to_bits));
            }
        }

        #[test]
        fn chunked_process_matches_frame_by_frame(
            cfg in 0usize..12,
            seed in 1u64..1000,
            speechy in any::<bool>(),
            cuts in proptest::collection::vec(0usize..3000, 0..12),
        ) {
            let (rate, ms) = all_configs()[cfg];
            let x = if speechy {
                let mut n = Noise(seed);
                voiced(rate, 1.0, -25.0).iter().map(|&s| s + 300.0 * n.next()).collect()
            } else {
                white(rate, 1.0, -40.0, seed)
            };
            let pcm = to_pcm(&x);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (pcm.len() + 1)).collect();
            cuts.push(0);
            cuts.push(pcm.len());
            cuts.sort_unstable();
            let mut v = vad(rate, ms);
            let mut out = Vec::new();
            for w in cuts.windows(2) {
                v.process(&pcm[w[0]..w[1]], &mut out);
            }
            let expected = decisions(&mut vad(rate, ms), &pcm);
            prop_assert_eq!(out, expected);
        }
    }
}
