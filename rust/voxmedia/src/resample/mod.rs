//! Streaming sample-rate conversion between the telephony and media rates.
//!
//! A rational L/M polyphase FIR. The prototype low-pass is a Kaiser-windowed sinc designed in
//! f64 at construction (or, for the hot 2:1 and 3:1 decimators, a near-minimax table designed
//! offline, see `gen_tables.py`), normalised to unity DC gain per phase and stored as one
//! contiguous, time-reversed, 32-byte aligned f32 array per phase, so every output sample is a
//! single contiguous dot product over a linear history buffer.
//!
//! Why these choices:
//! - Output is emitted as soon as the newest input sample it needs has arrived, so the only
//!   latency is the filter's group delay (no block is withheld, unless the caller asks, see
//!   below); a call leg cannot afford more.
//! - Every output sample is computed by exactly the same arithmetic on exactly the same window
//!   whatever the input chunking was (the grouped and the single-output kernels share one
//!   summation order), so any split of a stream gives the one-shot result bit for bit.
//! - Upsamplers use a Nyquist (L-th band) prototype whose cutoff is the input Nyquist: one phase
//!   is then a pure delay and costs a copy instead of a dot product, which nearly halves the
//!   work of the hot 8k->16k case.
//! - The dot product kernel is picked at run time (AVX2+FMA where the CPU has it) because wheels
//!   are built for baseline x86_64. Outputs of one phase that are all ready are computed eight
//!   at a time with the coefficients loaded once (two at a time when there are many phases and
//!   the table does not fit L1); the rest four at a time, interleaved.
//! - Integer ratios (1:L and M:1, which include every hot telephony pair) skip the dot products
//!   for the output-vectorised direct form in `direct.rs`: eight consecutive outputs of one
//!   phase are the lanes of one vector, so there is no horizontal reduction and each loaded
//!   input vector feeds several outputs. Decimators keep their history as M deinterleaved
//!   streams (filled as input arrives) so that those outputs read contiguous memory.
//! - Rational down-conversions with many phases (the 44.1 kHz family to 8 or 16 kHz, e.g.
//!   piper's 22.05 kHz TTS to a phone leg) use the grouped kernel in `bcast.rs`: 16
//!   consecutive outputs (16 different phases) are the lanes of two vectors, each step one
//!   broadcast input sample times two aligned coefficient vectors. A group that straddles two
//!   calls is computed in both, unless the caller lets the stage hold it back
//!   (`Resampler::hold_partial_groups`), as the outbound pipeline does: its frames are whole
//!   groups, so it loses no time by that.
//! - TTS rates far above the 8 kHz phone leg (22.05, 44.1 and 48 kHz) are first halved by
//!   short half-band decimators (`design::cascade`), then converted by the main stage from
//!   11.025 or 24 kHz: the main filter's length in input samples, which sets the work per
//!   output, halves with each halving, and a half-band whose transition only protects what the
//!   later stages pass is a few folded taps. Stages pass their f32 samples to each other as
//!   they are, and each is chunking-invariant, so the cascade is too; its latency is the sum of
//!   the group delays.
//!   Half-bands write straight into the next stage's history (`fused.rs`): into the streams
//!   of the 3:1 stage or of the second half-band, or interleaved into the grouped stage's
//!   linear history. Each block of outputs then shares its input loads, and no output is
//!   staged and copied. All of the phone quality's do; the voice quality's 22.05 kHz
//!   half-band has too many taps for the registers and runs as a stage of its own.

mod bcast;
mod design;
mod direct;
mod fused;
mod kernel;
mod tables;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use kernel::{Kernel, GROUP};

/// The sample rates the engine converts between (Hz).
pub const SUPPORTED_RATES: [u32; 8] = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000];

/// Outputs a grouped stage computes at once (see [`Resampler::hold_partial_groups`]).
pub const OUTPUT_GROUP: usize = bcast::W;

/// Input samples staged per block: large enough that bulk conversion amortises the history
/// move (10 s conversions measured the same as with 4096), small enough that the history of
/// every resampler of every call stays small (~4 KB instead of ~16 KB) and in L1.
const BLOCK: usize = 1024;

/// Filter design target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// About 96 dB stopband (91.5 dB for the hot 2:1, 3:1 and 11.025k -> 8k decimators'
    /// least-squares designs, 90 dB for the hot 1:2 half-band and the other rational
    /// down-conversions of the 44.1 kHz family): at or below the PCM16 noise floor, at under
    /// 6 ms of delay (including the pre-decimators of a cascade).
    Voice,
    /// About 130 dB stopband for float pipelines; longer filters and delay.
    High,
    /// For audio on its way to (or from) a G.711 phone leg: flat to 0.85 x the lower Nyquist
    /// (3.4 kHz for 8 kHz) and 80 dB down from 1.15 x (4.6 kHz, where ITU-T G.712 asks a PCM
    /// channel for 25 dB). Mu-law adds noise ~38 dB under the signal, so aliases 80 dB under it
    /// cannot be heard or measured in the coded audio; the wider, shallower design has a third
    /// fewer taps than `Voice` to 8 kHz from 16, 24, 32 and 48 kHz (a quarter from 22.05 and
    /// 44.1 kHz, whose 22.05 kHz half-band must stay flat to 4.2 kHz), and 0.8-1.2 ms less
    /// delay (1.25 ms from 8 kHz to 16 kHz). Its 1.0-1.15 ny band may alias, so it is only for
    /// a G.711 leg: a pair without 8 kHz gets the `Voice` design (`Resampler::quality` still
    /// says `Phone`).
    Phone,
}

impl Quality {
    /// All names accepted by [`Quality::from_name`].
    pub const NAMES: [&'static str; 3] = ["voice", "high", "phone"];

    pub fn name(self) -> &'static str {
        match self {
            Quality::Voice => "voice",
            Quality::High => "high",
            Quality::Phone => "phone",
        }
    }

    pub fn from_name(name: &str) -> Result<Self, ResampleError> {
        match name {
            "voice" => Ok(Quality::Voice),
            "high" => Ok(Quality::High),
            "phone" => Ok(Quality::Phone),
            other => Err(ResampleError::UnknownQuality(other.to_string())),
        }
    }
}

/// Errors of the resampling domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResampleError {
    /// A rate outside [`SUPPORTED_RATES`].
    UnsupportedRate(u32),
    /// A quality name other than those in [`Quality::NAMES`].
    UnknownQuality(String),
    /// Output buffer shorter than this call produces.
    OutputTooSmall { needed: usize, got: usize },
    /// Byte input that is not a whole number of samples of `sample_bytes` bytes.
    OddLength { len: usize, sample_bytes: usize },
}

impl fmt::Display for ResampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResampleError::UnsupportedRate(r) => write!(
                f,
                "unsupported sample rate {r} Hz; supported rates are {}",
                rates_list()
            ),
            ResampleError::UnknownQuality(q) => write!(
                f,
                "unknown resampler quality '{q}'; valid qualities are {}",
                Quality::NAMES.map(|n| format!("'{n}'")).join(", ")
            ),
            ResampleError::OutputTooSmall { needed, got } => {
                write!(
                    f,
                    "output buffer holds {got} samples but {needed} are needed"
                )
            }
            ResampleError::OddLength { len, sample_bytes } => write!(
                f,
                "input has a length of {len} bytes, which is not a multiple of {sample_bytes} \
                 (the size of one sample)"
            ),
        }
    }
}

impl std::error::Error for ResampleError {}

fn rates_list() -> String {
    SUPPORTED_RATES.map(|r| r.to_string()).join(", ")
}

/// A sample type the resampler can read and write. All arithmetic is f32 in PCM16 units, so
/// i16 and f32 calls on one object share one state, and PCM16, the hot format, is converted
/// without a multiply either way. The f32 API's [-1, 1) is scaled by 2^15 on the way in and
/// back on the way out, which is exact: a filter's outputs come out with the same bits as if
/// it had worked at the f32 API's scale (for any input short of 1e34 in magnitude, beyond
/// which the scaled value overflows, and not in the subnormal range under 1e-34 or so).
pub trait Sample: Copy + Send + Sync + 'static {
    const ZERO: Self;
    fn to_f32(self) -> f32;
    fn from_f32(y: f32) -> Self;
    /// `from_f32` over a slice; written so that it vectorises.
    #[inline(always)]
    fn from_f32_slice(dst: &mut [Self], src: &[f32]) {
        for (d, &y) in dst.iter_mut().zip(src) {
            *d = Self::from_f32(y);
        }
    }
}

impl Sample for i16 {
    const ZERO: Self = 0;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn from_f32(y: f32) -> Self {
        // Saturate (max/min also map NaN to -32768), then round half to even with the
        // 1.5 * 2^23 trick: plain arithmetic, so it vectorises and needs neither SSE4.1 nor a
        // libm call on baseline x86_64.
        #[allow(clippy::manual_clamp)] // clamp keeps NaN, which the unchecked cast must not see
        let v = y.max(-32768.0).min(32767.0);
        let r = (v + 12_582_912.0) - 12_582_912.0;
        // SAFETY: `r` is a finite integer in [-32768, 32767].
        unsafe { r.to_int_unchecked::<i32>() as i16 }
    }
}

impl Sample for f32 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self * 32768.0
    }
    #[inline(always)]
    fn from_f32(y: f32) -> Self {
        y * (1.0 / 32768.0)
    }
}

/// A sample in the filters' own units, passed between the stages of a cascade as is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(transparent)]
struct Unit(f32);

impl Sample for Unit {
    const ZERO: Self = Unit(0.0);
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self.0
    }
    #[inline(always)]
    fn from_f32(y: f32) -> Self {
        Unit(y)
    }
}

/// Polyphase coefficient bank.
#[derive(Debug, Clone)]
struct Bank {
    l: usize,
    m: usize,
    /// Taps per phase, a multiple of 8.
    taps: usize,
    /// `l * taps / 8` lanes, phase-major; each phase reversed so that it lines up with the
    /// oldest-first window `x[n - taps + 1 ..= n]`. 32-byte aligned so no coefficient load
    /// splits a cache line.
    coefs: Vec<Lanes>,
    /// Per phase slot: `Some(i)` when the phase is a unit impulse at window index `i` (a copy).
    trivial: Vec<Option<usize>>,
    /// Per phase slot: (input advance, next slot) after emitting an output of this slot. Slots
    /// are phases in visiting order: slot `s` is phase `s * m mod l`.
    step: Vec<(usize, usize)>,
    /// Group delay in input samples.
    delay_in: f64,
    /// Output-vectorised plan, for integer ratios.
    direct: Option<direct::Direct>,
    /// Output-vectorised plan, for rational down-conversions with many phases.
    bcast: Option<bcast::Bcast>,
}

/// The bank for a rate pair and quality, designed once per process and shared by every
/// resampler that uses it: a call's resamplers then cost no design time on the event loop
/// (up to a few ms for 44.1 kHz-family pairs) and no table memory of their own (~100 KB for
/// 22.05 kHz -> 8 kHz). At most 8 x 8 rate pairs x 3 qualities can ever be cached, plus the
/// few half-band pre-decimators of the cascades, keyed by (their input rate, the cascade's
/// output rate, the quality, `true`): their design depends on all three.
fn shared_bank(in_rate: u32, out_rate: u32, quality: Quality, halfband: bool) -> Arc<Bank> {
    type Cache = Mutex<HashMap<(u32, u32, Quality, bool), Arc<Bank>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = (in_rate, out_rate, quality, halfband);
    // A poisoned lock only means another thread panicked while inserting an immutable Arc.
    if let Some(bank) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Arc::clone(bank);
    }
    // Design outside the lock; if two threads race, the first insert wins and both agree.
    let bank = Arc::new(if halfband {
        design::halfband(in_rate, out_rate, quality)
    } else {
        design::bank(in_rate, out_rate, quality)
    });
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(map.entry(key).or_insert(bank))
}

/// Eight coefficients on a 32-byte boundary.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Lanes([f32; 8]);

impl Bank {
    /// The `taps` coefficients of phase `ph`.
    #[inline(always)]
    fn phase(&self, ph: usize) -> &[f32] {
        let lanes = &self.coefs[ph * self.taps / 8..(ph + 1) * self.taps / 8];
        // SAFETY: `Lanes` is `repr(C)` over `[f32; 8]` with no padding.
        unsafe { std::slice::from_raw_parts(lanes.as_ptr().cast::<f32>(), lanes.len() * 8) }
    }
}

/// Mutable streaming state of a non-passthrough resampler.
#[derive(Debug, Clone)]
struct State {
    /// History, oldest first: `fill` valid samples, stored linearly, or for a direct-form
    /// decimator by m as m deinterleaved streams of `stride` (sample p is item p / m of
    /// stream p % m). `direct::PAD` allocated samples follow the capacity of every stream.
    buf: Vec<f32>,
    /// Samples the history holds at most.
    cap: usize,
    /// 0 for linear storage, else the stream stride.
    stride: usize,
    fill: usize,
    /// Index in `buf` of the newest input sample the next output needs.
    next: usize,
    /// Phase slot of the next output (see `Bank::step`).
    phase: usize,
    /// f32 outputs staged before conversion, so the conversion loop vectorises.
    ybuf: Vec<f32>,
    /// A grouped stage holds back the outputs of a group until all of them are ready (see
    /// [`Resampler::hold_partial_groups`]); only ever set on a grouped stage.
    hold: bool,
}

impl State {
    fn new(bank: &Bank) -> Self {
        let streams = match &bank.direct {
            Some(d) if d.streams > 1 => bank.m,
            _ => 0,
        };
        Self::with_streams(bank, streams)
    }

    /// History kept as `streams` deinterleaved streams (linear for 0).
    fn with_streams(bank: &Bank, streams: usize) -> Self {
        let (taps, l) = (bank.taps, bank.l);
        let cap = taps - 1 + BLOCK;
        let stride = match streams {
            0 => 0,
            m => cap.div_ceil(m) + direct::PAD,
        };
        let len = if stride > 0 {
            stride * streams
        } else {
            cap + direct::PAD.max(bcast::PAD)
        };
        State {
            buf: vec![0.0; len],
            cap,
            stride,
            fill: taps - 1,
            next: taps - 1,
            phase: 0,
            ybuf: vec![0.0; (1024 + GROUP * l).max(direct::OUT_CAP + direct::PAD + direct::TMP)],
            hold: false,
        }
    }

    fn reset(&mut self, taps: usize) {
        if self.stride > 0 {
            self.buf.fill(0.0);
        } else {
            self.buf[..taps - 1].fill(0.0);
        }
        self.fill = taps - 1;
        self.next = taps - 1;
        self.phase = 0;
    }
}

/// Streaming mono resampler between two [`SUPPORTED_RATES`].
#[derive(Debug, Clone)]
pub struct Resampler {
    in_rate: u32,
    out_rate: u32,
    quality: Quality,
    /// 2:1 half-band pre-decimators run before `core`, in order (see `design::cascade`);
    /// empty for most pairs.
    pre: Vec<(Arc<Bank>, State)>,
    /// f32 staging after each pre-decimator not fused (see [`staging`]).
    mid: Vec<Vec<Unit>>,
    /// The main (or only) stage; `None` for equal rates (passthrough copy).
    core: Option<(Arc<Bank>, State)>,
    /// The plans of the first `fused.len()` pre-decimators, each writing straight into the
    /// next stage's history (see `fused.rs`); their histories then have `streams()` streams.
    /// Either every pre-decimator or only the first.
    fused: Vec<fused::Fused>,
    kernel: Kernel,
}

/// Plans which half-bands of the cascade `pre` (ahead of `main`) write straight into the next
/// stage (`fused.rs`), and gives those the history their plan needs; returns the plans, first
/// stage first. The last is planned first: a fused stage's streams decide the rows of the one
/// before it. Without `fuse_last` the last half-band runs as a stage of its own, as when it
/// does not fit a fused plan.
fn fuse(pre: &mut [(Arc<Bank>, State)], main: Option<&Bank>, fuse_last: bool) -> Vec<fused::Fused> {
    let mut fused = Vec::new();
    if let (true, Some((hb, _)), Some(main)) = (fuse_last, pre.last(), main) {
        fused.extend(fused::Fused::new(hb, main, None));
    }
    if let [(hb, _), (next, _)] = &pre[..] {
        match fused::Fused::new(hb, next, fused.first()) {
            Some(f) => fused.insert(0, f),
            // A fused second stage is only ever fed by a fused first.
            None => fused.clear(),
        }
    }
    for ((hb, st), f) in pre.iter_mut().zip(&fused) {
        *st = State::with_streams(hb, f.streams());
    }
    fused
}

/// Input samples a cascade passes through all its stages at a time (bounds the staging).
const PIECE: usize = 2048;

/// The f32 staging after each pre-decimator of `pre`, sized for one [`PIECE`] of input; none
/// for the first `fused`, which write straight into the next stage (2-4 KB each saved per
/// resampler, that is per call).
fn staging(pre: &[(Arc<Bank>, State)], fused: usize) -> Vec<Vec<Unit>> {
    let mut n = PIECE;
    pre.iter()
        .enumerate()
        .map(|(k, (b, _))| {
            n = ceil_div(n as u128 * b.l as u128, b.m as u128);
            if k < fused {
                Vec::new()
            } else {
                vec![Unit::ZERO; n]
            }
        })
        .collect()
}

const ZEROS_I16: [i16; 256] = [0; 256];
const ZEROS_F32: [f32; 256] = [0.0; 256];

impl Resampler {
    /// Designs the filter for `in_rate -> out_rate` (allocates; do it once per stream).
    pub fn new(in_rate: u32, out_rate: u32, quality: Quality) -> Result<Self, ResampleError> {
        for r in [in_rate, out_rate] {
            if !SUPPORTED_RATES.contains(&r) {
                return Err(ResampleError::UnsupportedRate(r));
            }
        }
        let with_state = |bank: Arc<Bank>| {
            let state = State::new(&bank);
            (bank, state)
        };
        // What the filters are designed for; `quality` is what the caller asked for.
        let design = design::design_quality(in_rate, out_rate, quality);
        let rates = design::cascade(in_rate, out_rate, design);
        let mut pre: Vec<_> = rates
            .iter()
            .map(|&r| with_state(shared_bank(r, out_rate, design, true)))
            .collect();
        let main_rate = rates.last().map_or(in_rate, |&r| r / 2);
        let core = (in_rate != out_rate)
            .then(|| with_state(shared_bank(main_rate, out_rate, design, false)));
        let fused = fuse(&mut pre, core.as_ref().map(|(b, _)| &**b), true);
        let mid = staging(&pre, fused.len());
        Ok(Resampler {
            in_rate,
            out_rate,
            quality,
            pre,
            mid,
            core,
            fused,
            kernel: Kernel::detect(),
        })
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    pub fn quality(&self) -> Quality {
        self.quality
    }

    /// Upper bound on the samples one `process_into` call with `input_len` samples writes,
    /// whatever the state.
    pub fn output_len_max(&self, input_len: usize) -> usize {
        let n = self.stages().fold(input_len, |n, (b, _)| match b.l {
            1 if n < usize::MAX / 2 => div(n + b.m - 1, b.m),
            _ => ceil_div(n as u128 * b.l as u128, b.m as u128),
        });
        // A held group can come out with the next call's outputs.
        if self.holding() {
            n.saturating_add(bcast::W - 1)
        } else {
            n
        }
    }

    /// Exactly how many samples the next `process_into` with `input_len` samples writes.
    /// (A stage's output count depends only on how much it has been fed, and a cascade feeds
    /// each stage everything the one before emitted.)
    pub fn output_len(&self, input_len: usize) -> usize {
        self.stages()
            .fold(input_len, |n, (b, s)| stage_output_len(b, s, n))
    }

    /// The stages in order: pre-decimators, then the main stage (none for a passthrough).
    fn stages(&self) -> impl Iterator<Item = &(Arc<Bank>, State)> {
        self.pre.iter().chain(self.core.iter())
    }

    /// Zero samples fed by a flush: enough to carry the last input through every stage's
    /// group delay, and one more sample of the main stage's input.
    fn flush_zeros(&self) -> usize {
        if self.core.is_none() {
            return 0;
        }
        // Stage k runs at the input rate / 2^k (only pre-decimators, all 2:1, come before).
        let delay: f64 = self
            .stages()
            .enumerate()
            .map(|(k, (b, _))| b.delay_in * (1u64 << k) as f64)
            .sum();
        let per_main = 1usize << self.pre.len();
        delay.ceil() as usize + per_main
    }

    /// Exactly how many samples the next `flush_into` writes. The flush turns any hold off
    /// first (its tail ends the stream), so every ready output counts, held or not.
    pub fn flush_len(&self) -> usize {
        self.stages()
            .fold(self.flush_zeros(), |n, (b, s)| ready_len(b, s, n))
    }

    /// Upper bound on what `flush_into` writes, whatever the state.
    pub fn flush_len_max(&self) -> usize {
        self.output_len_max(self.flush_zeros())
    }

    /// Converts one chunk of PCM16; returns the number of samples written to `out`.
    /// No allocation. `out` must hold `output_len(input.len())` samples (`output_len_max` is a
    /// state-independent bound).
    pub fn process_into(&mut self, input: &[i16], out: &mut [i16]) -> Result<usize, ResampleError> {
        self.run(input, out)
    }

    /// Float variant (samples nominally in [-1, 1]); same state as the PCM16 calls.
    pub fn process_f32_into(
        &mut self,
        input: &[f32],
        out: &mut [f32],
    ) -> Result<usize, ResampleError> {
        self.run(input, out)
    }

    /// Ends the stream: emits the filter tail (the last input carried through the delay), then
    /// resets so the object can start a new stream.
    pub fn flush_into(&mut self, out: &mut [i16]) -> Result<usize, ResampleError> {
        self.flush_with(&ZEROS_I16, out)
    }

    /// Float variant of [`Resampler::flush_into`].
    pub fn flush_f32_into(&mut self, out: &mut [f32]) -> Result<usize, ResampleError> {
        self.flush_with(&ZEROS_F32, out)
    }

    fn flush_with<S: Sample>(
        &mut self,
        zeros: &[S],
        out: &mut [S],
    ) -> Result<usize, ResampleError> {
        // The tail ends the stream, so a group's last outputs are all there will be.
        let hold = self.holding();
        self.hold_partial_groups(false);
        let done = self.tail(zeros, out);
        self.hold_partial_groups(hold);
        done
    }

    fn tail<S: Sample>(&mut self, zeros: &[S], out: &mut [S]) -> Result<usize, ResampleError> {
        let mut left = self.flush_zeros();
        let needed = self.output_len(left);
        if out.len() < needed {
            return Err(ResampleError::OutputTooSmall {
                needed,
                got: out.len(),
            });
        }
        let mut done = 0;
        while left > 0 {
            let n = left.min(zeros.len());
            done += self.run(&zeros[..n], &mut out[done..])?;
            left -= n;
        }
        self.reset();
        Ok(done)
    }

    /// Lets a grouped last stage (the 22.05 and 44.1 kHz families down to a lower rate, see
    /// `bcast.rs`) hold back its outputs until a whole group of [`OUTPUT_GROUP`] is ready.
    ///
    /// Why: those outputs are computed 16 at a time; a group that straddles two calls is
    /// otherwise computed in both: up to a tenth of the stage's work at 20 ms per call. The output
    /// is the same, sample for sample; only when it is returned changes. A caller that sends
    /// output in frames of a multiple of [`OUTPUT_GROUP`] samples, counted from the start of
    /// the stream (or the last flush or reset), gets every whole frame from the same call as
    /// without the hold: a frame ends where a group ends. `flush_into` still returns everything.
    /// No effect on other conversions (only a grouped stage's hold is ever set).
    pub fn hold_partial_groups(&mut self, on: bool) {
        if let Some((b, st)) = &mut self.core {
            st.hold = on && b.bcast.is_some();
        }
    }

    /// Whether the main stage holds partial groups.
    fn holding(&self) -> bool {
        self.core.as_ref().is_some_and(|(_, st)| st.hold)
    }

    /// Outputs whose input has arrived but which a held group keeps back (see
    /// [`Resampler::hold_partial_groups`]); less than [`OUTPUT_GROUP`].
    pub fn held_len(&self) -> usize {
        match &self.core {
            Some((b, st)) if st.hold => ready_len(b, st, 0),
            _ => 0,
        }
    }

    /// Forgets all history: the next call behaves as on a fresh object.
    pub fn reset(&mut self) {
        for (b, s) in self.pre.iter_mut().chain(self.core.iter_mut()) {
            s.reset(b.taps);
        }
    }

    /// How late a sound comes out, in ms: the filters' group delays (nothing is withheld beyond
    /// the fraction of an output sample whose input has not arrived).
    pub fn latency_ms(&self) -> f64 {
        let mut rate = self.in_rate as f64;
        let mut ms = 0.0;
        for (b, _) in self.stages() {
            ms += b.delay_in * 1000.0 / rate;
            rate = rate * b.l as f64 / b.m as f64;
        }
        ms
    }

    fn run<S: Sample>(&mut self, input: &[S], out: &mut [S]) -> Result<usize, ResampleError> {
        let needed = self.output_len(input.len());
        if out.len() < needed {
            return Err(ResampleError::OutputTooSmall {
                needed,
                got: out.len(),
            });
        }
        let kernel = self.kernel;
        let Some((bank, st)) = &mut self.core else {
            out[..input.len()].copy_from_slice(input);
            return Ok(input.len());
        };
        if self.pre.is_empty() {
            return Ok(run_stage(bank, st, kernel, input, out));
        }
        if !self.fused.is_empty() {
            let mut written = 0;
            match (&self.fused[..], &mut self.pre[..]) {
                ([f], [(hb_bank, hb)]) => run_fused(f, (hb_bank, hb), st, kernel, input, |st| {
                    written += drain(bank, st, kernel, &mut out[written..]);
                }),
                ([f, f2], [(hb_bank, hb), (b2, s2)]) => {
                    run_fused(f, (hb_bank, hb), s2, kernel, input, |s2| {
                        pump(f2, (b2, s2), st, kernel, |st| {
                            written += drain(bank, st, kernel, &mut out[written..]);
                        })
                    })
                }
                ([f], [(hb_bank, hb), (b2, s2)]) => {
                    let mid = &mut self.mid[1][..];
                    run_fused(f, (hb_bank, hb), s2, kernel, input, |s2| loop {
                        let n = drain(b2, s2, kernel, mid);
                        written += run_stage(bank, st, kernel, &mid[..n], &mut out[written..]);
                        if n < mid.len() {
                            break;
                        }
                    })
                }
                _ => unreachable!("half-bands are fused into the next of at most two"),
            }
            debug_assert_eq!(written, needed);
            return Ok(written);
        }
        // A cascade: each piece goes through every stage before the next is read, in f32
        // (no rounding between stages). Every stage sees the same stream whatever the caller's
        // chunking, and each stage is chunking-invariant, so the cascade is too.
        let mut written = 0;
        for piece in input.chunks(PIECE) {
            let (b0, s0) = &mut self.pre[0];
            let mut n = run_stage(b0, s0, kernel, piece, &mut self.mid[0][..]);
            for k in 1..self.pre.len() {
                let (done, rest) = self.mid.split_at_mut(k);
                let (b, s) = &mut self.pre[k];
                n = run_stage(b, s, kernel, &done[k - 1][..n], &mut rest[0][..]);
            }
            let last = &self.mid[self.pre.len() - 1][..n];
            written += run_stage(bank, st, kernel, last, &mut out[written..]);
        }
        debug_assert_eq!(written, needed);
        Ok(written)
    }
}

/// Exactly how many samples one stage emits when fed `input_len` more samples.
fn stage_output_len(b: &Bank, s: &State, input_len: usize) -> usize {
    let ready = ready_len(b, s, input_len);
    if s.hold {
        // Only whole groups: up to the last group boundary the ready outputs reach.
        let lane = s.phase % bcast::W;
        return ((lane + ready) / bcast::W * bcast::W).saturating_sub(lane);
    }
    ready
}

/// How many outputs of one stage have their input once it is fed `input_len` more samples,
/// held or not.
fn ready_len(b: &Bank, s: &State, input_len: usize) -> usize {
    let avail = (s.fill + input_len) as u128;
    let next = s.next as u128;
    if avail <= next {
        return 0;
    }
    if b.l == 1 {
        // M:1: outputs at next, next + m, ... up to the newest input.
        return div((avail - next - 1) as usize, b.m) + 1;
    }
    let ph = s.phase * b.m % b.l;
    let k = (avail - next) * b.l as u128 - ph as u128;
    ceil_div(k, b.m as u128)
}

/// Feeds `input` to one stage and writes every output it makes ready to `out` (which must
/// hold `stage_output_len` of them); returns how many.
fn run_stage<I: Sample, O: Sample>(
    bank: &Bank,
    st: &mut State,
    kernel: Kernel,
    input: &[I],
    out: &mut [O],
) -> usize {
    let mut written = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let take = rest.len().min(st.cap - st.fill);
        kernel.ingest(bank.m, st, &rest[..take]);
        st.fill += take;
        rest = &rest[take..];
        written += drain(bank, st, kernel, &mut out[written..]);
    }
    written
}

/// Writes every output of one stage whose input is staged to `out`, then drops the history no
/// later output needs; returns how many.
fn drain<O: Sample>(bank: &Bank, st: &mut State, kernel: Kernel, out: &mut [O]) -> usize {
    let mut written = 0;
    loop {
        let room = st.ybuf.len().min(out.len() - written);
        let k = kernel.emit(bank, st, &mut out[written..]);
        written += k;
        // No output can be ready once the next one needs an input not yet staged; held, none
        // is when a group would still have fitted.
        if k == 0 || st.next >= st.fill || (st.hold && k + bcast::W <= room) {
            break;
        }
    }
    // Keep only the history the next output needs (from its group's first window when
    // outputs are computed in groups).
    let back = bank.bcast.as_ref().map_or(0, |b| b.back(st.phase));
    compact(st, st.next + 1 - bank.taps - back, bank.m);
    written
}

/// Drops history before `keep_from`; `streams` is the number of deinterleaved streams when
/// the history has them (`keep_from` is then rounded down to a whole round of them).
fn compact(st: &mut State, keep_from: usize, streams: usize) {
    let keep_from = keep_from.min(st.fill);
    let keep_from = if st.stride > 0 {
        let (from, to) = (div(keep_from, streams), div(st.fill + streams - 1, streams));
        for s in 0..streams {
            let b = s * st.stride;
            st.buf.copy_within(b + from..b + to, b);
        }
        from * streams
    } else {
        st.buf.copy_within(keep_from..st.fill, 0);
        keep_from
    };
    st.fill -= keep_from;
    st.next -= keep_from;
}

/// [`run_stage`] for a half-band fused into the next stage (see `fused.rs`): the half-band's
/// outputs go straight into that stage's streams, and `sink` then drains it (and the stages
/// after it) each time.
fn run_fused<I: Sample>(
    f: &fused::Fused,
    (hb_bank, hb): (&Bank, &mut State),
    next: &mut State,
    kernel: Kernel,
    input: &[I],
    mut sink: impl FnMut(&mut State),
) {
    let mut rest = input;
    while !rest.is_empty() {
        let take = rest.len().min(hb.cap - hb.fill);
        if take == 0 {
            // Cannot happen: the loop below empties the half-band's ready outputs and the
            // compaction leaves it room. Dropping the input beats looping forever.
            debug_assert!(false, "fused half-band history full");
            break;
        }
        kernel.ingest(f.streams(), hb, &rest[..take]);
        hb.fill += take;
        rest = &rest[take..];
        pump(f, (hb_bank, hb), next, kernel, &mut sink);
    }
}

/// Runs a fused half-band over what its history holds, into `next`, letting `sink` drain
/// `next` after each round, then drops the history no later output needs.
#[inline(always)]
fn pump(
    f: &fused::Fused,
    (hb_bank, hb): (&Bank, &mut State),
    next: &mut State,
    kernel: Kernel,
    mut sink: impl FnMut(&mut State),
) {
    loop {
        let k = kernel.fused(f, hb, next);
        sink(next);
        if k == 0 || hb.next >= hb.fill {
            break;
        }
    }
    compact(hb, hb.next + 1 - hb_bank.taps, f.streams());
}

/// Stores `x` as the next samples of the history (converted to f32, deinterleaved for a
/// direct-form decimator). Inlined into the kernel's instruction set so that it vectorises
/// at full width; the conversion is exact, so the result does not depend on the kernel.
#[inline(always)]
fn ingest_with<S: Sample, V: direct::Vec8>(m: usize, st: &mut State, x: &[S]) {
    let (fill, stride) = (st.fill, st.stride);
    let buf = &mut st.buf[..];
    if stride == 0 {
        for (d, &v) in buf[fill..fill + x.len()].iter_mut().zip(x) {
            *d = v.to_f32();
        }
        return;
    }
    let mut p = fill;
    let mut x = x;
    let mut t0 = div(p, m);
    while p != t0 * m && !x.is_empty() {
        buf[(p - t0 * m) * stride + t0] = x[0].to_f32();
        x = &x[1..];
        p += 1;
        t0 = div(p, m);
    }
    // The vector splits below take 8 m samples at a time, and finish with one block of the rest
    // zero-padded: a 20 ms frame rarely starts on a block boundary, and sample-by-sample tails
    // cost as much as the blocks. The padding's zeros land in items past the new fill, inside
    // each stream's `PAD`, which no output reads before they are overwritten.
    let is = |id| std::any::TypeId::of::<S>() == id;
    let (i16_in, unit_in) = (
        is(std::any::TypeId::of::<i16>()),
        is(std::any::TypeId::of::<Unit>()),
    );
    let base = buf.as_mut_ptr();
    /// Item `t` of each of the first `N` streams.
    #[inline(always)]
    fn at<const N: usize>(base: *mut f32, stride: usize, t: usize) -> [*mut f32; N] {
        std::array::from_fn(|q| base.wrapping_add(q * stride + t))
    }
    /// Most streams a vector split fills (44.1 kHz's first fused half-band).
    const MAX_M: usize = 8;
    // `$split` of every 8 m samples of `x` as `$t`, then of the rest zero-padded. A macro, not
    // a closure: the split must be inlined into the kernel's instruction set.
    macro_rules! blocks {
        ($t:ty, $split:ident) => {{
            // SAFETY: S is `$t` (tested by the match arm; Unit is a transparent f32); each
            // split reads 8m samples, from `x` or from `tmp`; it writes items t0 + t ..
            // t0 + t + 8 with t <= x.len() / m, and t0 + x.len() / m is at most the history's
            // capacity over m (the caller stages at most the capacity), so they end within the
            // stride's `PAD` (>= 8); this runs only in code compiled for V's instruction set.
            unsafe {
                let src = x.as_ptr().cast::<$t>();
                let mut t = 0;
                while m * (t + 8) <= x.len() {
                    V::$split(src.add(m * t), at(base, stride, t0 + t));
                    t += 8;
                }
                let rest = x.len() - m * t;
                if rest > 0 {
                    let mut tmp = [<$t>::default(); 8 * MAX_M];
                    std::ptr::copy_nonoverlapping(src.add(m * t), tmp.as_mut_ptr(), rest);
                    V::$split(tmp.as_ptr(), at(base, stride, t0 + t));
                }
            }
        }};
    }
    match (m, i16_in, unit_in) {
        (2, true, _) => blocks!(i16, unzip2_i16),
        (3, true, _) => blocks!(i16, unzip3_i16),
        (3, _, true) => blocks!(f32, unzip3),
        // A fused half-band's history: ahead of the grouped stage (22.05 kHz), a 3:1 stage
        // (48 kHz) or a fused half-band (44.1 kHz).
        (4, true, _) => blocks!(i16, unzip4_i16),
        (6, true, _) => blocks!(i16, unzip6_i16),
        (8, true, _) => blocks!(i16, unzip8_i16),
        _ => {
            let g = div(x.len(), m);
            for q in 0..m {
                let s = &mut buf[q * stride + t0..q * stride + t0 + g];
                for (y, c) in s.iter_mut().zip(x.chunks_exact(m)) {
                    *y = c[q].to_f32();
                }
            }
            for (i, v) in x[g * m..].iter().enumerate() {
                let p = p + g * m + i;
                buf[(p % m) * stride + p / m] = v.to_f32();
            }
        }
    }
}

/// `a / d` without a hardware divide for the divisors of the hot paths (the decimations and
/// stream counts of the telephony pairs): a division costs tens of cycles on some cores, and
/// a 20 ms frame's bookkeeping does a dozen of them.
#[inline(always)]
pub(super) fn div(a: usize, d: usize) -> usize {
    match d {
        1 => a,
        2 => a / 2,
        3 => a / 3,
        4 => a / 4,
        6 => a / 6,
        _ => a / d,
    }
}

/// Outputs ready at history positions `next`, `next + step`, ... up to the newest staged
/// sample, `fill - 1` (a decimator's outputs, or a direct-form interpolator's rounds).
#[inline(always)]
pub(super) fn ready(fill: usize, next: usize, step: usize) -> usize {
    if next < fill {
        div(fill - 1 - next, step) + 1
    } else {
        0
    }
}

fn ceil_div(a: u128, b: u128) -> usize {
    // u64 division is far cheaper than the u128 library call and covers every real length.
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => a.div_ceil(b).min(usize::MAX as u64) as usize,
        _ => a.div_ceil(b).min(usize::MAX as u128) as usize,
    }
}

/// Emits every output whose input has arrived. Generic over the dot-product kernel so that the
/// AVX2 instantiation compiles the whole loop with AVX2 enabled.
#[inline(always)]
fn emit_with<S: Sample, K: kernel::Dot>(bank: &Bank, st: &mut State, dst: &mut [S]) -> usize {
    if let Some(d) = &bank.direct {
        return direct::emit::<S, K::V>(bank, d, st, dst);
    }
    if let Some(b) = &bank.bcast {
        return bcast::emit::<S, K::V>(bank, b, st, dst);
    }
    let (l, m, taps) = (bank.l, bank.m, bank.taps);
    let cap = st.ybuf.len().min(dst.len());
    let out = &mut st.ybuf[..cap];
    let buf = &st.buf[..st.fill];
    let fill = st.fill;
    let mut next = st.next;
    let mut phase = st.phase;
    let mut o = 0;
    loop {
        // A group is GROUP rounds of l outputs; each round advances the input by exactly m and
        // returns to the same phase, so the GROUP outputs of one phase share their coefficients.
        let last_off = (phase * m % l + (l - 1) * m) / l;
        let span = (GROUP - 1) * m;
        if next + last_off + span < fill && o + GROUP * l <= out.len() {
            let (mut n, mut ph) = (next, phase);
            for r in 0..l {
                let start = n + 1 - taps;
                let ys: [f32; GROUP] = match bank.trivial[ph] {
                    Some(i) => std::array::from_fn(|k| buf[start + i + k * m]),
                    None => {
                        let c = bank.phase(ph);
                        // The last window ends at start + span + taps <= fill (checked above).
                        let w = &buf[start..start + span + taps];
                        // SAFETY: `c` has `taps` items, 32-byte aligned; `w` covers all windows.
                        unsafe { K::dot8(c.as_ptr(), w.as_ptr(), m, taps) }
                    }
                };
                for (k, y) in ys.into_iter().enumerate() {
                    out[o + r + k * l] = y;
                }
                let (dn, np) = bank.step[ph];
                n += dn;
                ph = np;
            }
            o += GROUP * l;
            next += GROUP * m;
            continue;
        }
        // Many phases (e.g. 44.1k <-> 16k): the coefficient table does not stay in L1, so pair
        // each output with the one a round later (same phase, input m further on) to fetch each
        // phase once for two outputs. `pairs` outputs are paired; the rest of the round is not
        // yet complete and is left to the paths below.
        if l >= 16 && next < fill && o + 2 * l <= out.len() {
            let ph0 = phase * m % l;
            let k = ((fill - next) * l).saturating_sub(ph0); // outputs with input: ceil(k / m)
            let ready = k.div_ceil(m);
            if ready > l {
                let pairs = (ready - l).min(l);
                let (mut n, mut ph) = (next, phase);
                for r in 0..pairs {
                    let start = n + 1 - taps;
                    let ys = match bank.trivial[ph] {
                        Some(i) => [buf[start + i], buf[start + i + m]],
                        None => {
                            let c = bank.phase(ph);
                            let w = &buf[start..start + m + taps];
                            // SAFETY: `c` has `taps` items, aligned; `w` covers both windows.
                            unsafe { K::dot2(c.as_ptr(), w.as_ptr(), m, taps) }
                        }
                    };
                    out[o + r] = ys[0];
                    out[o + l + r] = ys[1];
                    let (dn, np) = bank.step[ph];
                    n += dn;
                    ph = np;
                }
                // The unpaired middle of the round, one by one (same kernel order as `dot`).
                for r in pairs..l {
                    let start = n + 1 - taps;
                    out[o + r] = match bank.trivial[ph] {
                        Some(i) => buf[start + i],
                        None => {
                            let c = bank.phase(ph);
                            let w = &buf[start..start + taps];
                            // SAFETY: both slices have `taps` items.
                            unsafe { K::dot(c.as_ptr(), w.as_ptr(), taps) }
                        }
                    };
                    let (dn, np) = bank.step[ph];
                    n += dn;
                    ph = np;
                }
                // After a full round the phase is back to `phase` and the input is m further on;
                // the `pairs` outputs of the second round are already written.
                let (mut n2, mut ph2) = (next + m, phase);
                for _ in 0..pairs {
                    let (dn, np) = bank.step[ph2];
                    n2 += dn;
                    ph2 = np;
                }
                o += l + pairs;
                next = n2;
                phase = ph2;
                continue;
            }
        }
        // Four consecutive outputs (any phases) at once: four independent FMA chains.
        let (d0, p1) = bank.step[phase];
        let (d1, p2) = bank.step[p1];
        let (d2, p3) = bank.step[p2];
        let n3 = next + d0 + d1 + d2;
        if n3 < fill && o + 4 <= out.len() {
            let ns = [next, next + d0, next + d0 + d1, n3];
            let ps = [phase, p1, p2, p3];
            let w = &buf[next + 1 - taps..n3 + 1];
            let c = ps.map(|p| bank.phase(p).as_ptr());
            // SAFETY: window k starts at ns[k] - next within `w` and ends at or before its end.
            let mut ys = unsafe { K::dot4g(c, ns.map(|n| w.as_ptr().add(n - next)), taps) };
            for k in 0..4 {
                if let Some(i) = bank.trivial[ps[k]] {
                    ys[k] = buf[ns[k] + 1 - taps + i];
                }
            }
            out[o..o + 4].copy_from_slice(&ys);
            o += 4;
            let (d3, p4) = bank.step[p3];
            next = n3 + d3;
            phase = p4;
            continue;
        }
        if next < fill && o < out.len() {
            let start = next + 1 - taps;
            let y = match bank.trivial[phase] {
                Some(i) => buf[start + i],
                None => {
                    let c = bank.phase(phase);
                    let w = &buf[start..start + taps];
                    // SAFETY: both slices have `taps` items.
                    unsafe { K::dot(c.as_ptr(), w.as_ptr(), taps) }
                }
            };
            out[o] = y;
            o += 1;
            let (dn, np) = bank.step[phase];
            next += dn;
            phase = np;
            continue;
        }
        break;
    }
    st.next = next;
    st.phase = phase;
    S::from_f32_slice(&mut dst[..o], &out[..o]);
    o
}

#[cfg(test)]
mod tests;
