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
//! Cost: all filters are short FIRs on fixed arrays; logarithms use a bit-trick approximation.
//! No allocation after construction.

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
    InvalidParam { name: &'static str, value: f32, range: &'static str },
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
    /// deviation of its level in dB): bands whose noise level jumps around (rumble, quantisation
    /// noise, few samples) need more evidence than steady ones.
    pub spread_factor: f32,
    /// A band contributes at most this many dB, so one band cannot carry a decision alone.
    pub band_cap_db: f32,
    /// Frames quieter than this (dBFS) are never speech, whatever their SNR.
    pub min_level_dbfs: f32,
    /// Band levels (dBFS) are clamped up to this before any comparison: below it, mu-law
    /// quantisation noise switches on and off with the waveform and would look like speech
    /// against a floor learnt from digital silence.
    pub min_band_dbfs: f32,
    /// Consecutive above-threshold time needed before speech starts, in ms (0 = first frame).
    pub onset_ms: u32,
    /// Time speech is held after the score drops, in ms.
    pub hangover_ms: u32,
    /// Time constant of the noise floor while the signal is judged noise, in ms.
    pub noise_adapt_ms: f32,
    /// Time constant of the noise floor rising during speech, in ms: slow, so speech does not
    /// raise the floor, but a lasting noise step up is still learnt.
    pub noise_rise_ms: f32,
    /// Time constant of the noise floor falling during speech, in ms.
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
            spread_factor: 1.0,
            min_level_dbfs: -62.0,
            min_band_dbfs: -75.0,
            onset_ms: 0,
            hangover_ms: 80,
            noise_adapt_ms: 800.0,
            noise_rise_ms: 6000.0,
            noise_fall_ms: 300.0,
            band_weights: [0.3, 1.0, 1.0, 0.8, 0.6],
        }
    }
}

/// Frames during which the floor is a running mean of everything seen (cold start).
const WARMUP_FRAMES: u32 = 10;
/// Noise spread assumed before any has been measured, dB.
const INITIAL_SPREAD_DB: f32 = 2.0;

impl VadConfig {
    fn validate(&self) -> Result<(), VadError> {
        if !FRAME_MS.contains(&self.frame_ms) {
            return Err(VadError::UnsupportedFrameMs(self.frame_ms));
        }
        let check = |name: &'static str, v: f32, lo: f32, hi: f32, range: &'static str| {
            if v.is_finite() && v >= lo && v <= hi {
                Ok(())
            } else {
                Err(VadError::InvalidParam { name, value: v, range })
            }
        };
        check("threshold", self.threshold, 0.0, 200.0, "[0, 200]")?;
        check("release", self.release, 0.0, self.threshold, "[0, threshold]")?;
        check("band_margin_db", self.band_margin_db, 0.0, 40.0, "[0, 40]")?;
        check("spread_factor", self.spread_factor, 0.0, 20.0, "[0, 20]")?;
        check("band_cap_db", self.band_cap_db, 1.0, 100.0, "[1, 100]")?;
        check("min_level_dbfs", self.min_level_dbfs, -120.0, 0.0, "[-120, 0]")?;
        check("min_band_dbfs", self.min_band_dbfs, -120.0, 0.0, "[-120, 0]")?;
        check("onset_ms", self.onset_ms as f32, 0.0, 1000.0, "[0, 1000]")?;
        check("hangover_ms", self.hangover_ms as f32, 0.0, 5000.0, "[0, 5000]")?;
        check("noise_adapt_ms", self.noise_adapt_ms, 10.0, 60000.0, "[10, 60000]")?;
        check("noise_rise_ms", self.noise_rise_ms, 10.0, 600000.0, "[10, 600000]")?;
        check("noise_fall_ms", self.noise_fall_ms, 10.0, 60000.0, "[10, 60000]")?;
        for &w in &self.band_weights {
            check("band_weights[i]", w, 0.0, 10.0, "[0, 10]")?;
        }
        Ok(())
    }
}

/// log2 by exponent bits plus a quartic on the mantissa (error < 1e-4): five of these per frame
/// would otherwise be a tenth of the budget.
#[inline]
fn fast_log2(x: f32) -> f32 {
    let x = x.max(1e-20);
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let p = -1.741_793_9 + (2.821_202_6 + (-1.469_956_8 + (0.447_179_55 - 0.056_570_851 * m) * m) * m) * m;
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
        HalfBand { even: [0.0; 3], odd: [0.0; 3] }
    }

    /// Decimates `inp` (even length) into `lo[..inp.len()/2]` and returns the mean power of
    /// the upper half-band. `e` and `o` are scratch of at least `inp.len()/2 + 3`.
    #[inline]
    fn run(&mut self, inp: &[f32], lo: &mut [f32], e: &mut [f32], o: &mut [f32]) -> f32 {
        let half = inp.len() / 2;
        if half == 0 {
            return 0.0;
        }
        let (e, o, lo) = (&mut e[..half + 3], &mut o[..half + 3], &mut lo[..half]);
        e[..3].copy_from_slice(&self.even);
        o[..3].copy_from_slice(&self.odd);
        for ((pair, de), dodd) in inp.chunks_exact(2).zip(e[3..].iter_mut()).zip(o[3..].iter_mut()) {
            *de = pair[0];
            *dodd = pair[1];
        }
        // With w = history ++ input: w[2k] = e[k], w[2k+1] = o[k]; output m is centred on
        // w[2m+3] = o[m+1].
        let (e0, e1, e2, e3) = (&e[..half], &e[1..half + 1], &e[2..half + 2], &e[3..half + 3]);
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
        for (out, w) in lo[..n / 3].iter_mut().zip(work.chunks_exact(3).zip(work[3..].chunks_exact(3))) {
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
    frames_seen: u32,
    run: u32,
    hang: u32,
    speech: bool,
    level_db: f32,
    // Fixed scratch.
    work: [f32; MAX_FRAME + 8],
    even: [f32; MAX_FRAME / 2 + 4],
    odd: [f32; MAX_FRAME / 2 + 4],
    a: [f32; MAX_FRAME],
    b: [f32; MAX_FRAME],
    pending: [i16; MAX_FRAME],
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
        Ok(Vad {
            rate: sample_rate,
            frame_len: (sample_rate / 1000 * config.frame_ms) as usize,
            an_len: (ANALYSIS_RATE / 1000 * config.frame_ms) as usize,
            a_noise: alpha(config.noise_adapt_ms),
            a_rise: alpha(config.noise_rise_ms),
            a_fall: alpha(config.noise_fall_ms),
            onset_frames: frames(config.onset_ms).max(1),
            hang_frames: frames(config.hangover_ms),
            cfg: config,
            pre2: HalfBand::new(),
            pre3: Third::new(),
            split: [HalfBand::new(), HalfBand::new(), HalfBand::new(), HalfBand::new()],
            floor_db: [0.0; BANDS],
            spread_db: [INITIAL_SPREAD_DB; BANDS],
            prev_power: [0.0; BANDS],
            frames_seen: 0,
            run: 0,
            hang: 0,
            speech: false,
            level_db: -120.0,
            work: [0.0; MAX_FRAME + 8],
            even: [0.0; MAX_FRAME / 2 + 4],
            odd: [0.0; MAX_FRAME / 2 + 4],
            a: [0.0; MAX_FRAME],
            b: [0.0; MAX_FRAME],
            pending: [0; MAX_FRAME],
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
        self.split = [HalfBand::new(), HalfBand::new(), HalfBand::new(), HalfBand::new()];
        self.floor_db = [0.0; BANDS];
        self.spread_db = [INITIAL_SPREAD_DB; BANDS];
        self.prev_power = [0.0; BANDS];
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
            return Err(VadError::FrameLength { got: frame.len(), expected: self.frame_len });
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
            let frame = self.pending;
            out.push(self.analyse(&frame[..fl]));
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
        // Level: exact integer sum of squares (vectorises; 1440 * 2^30 fits easily).
        let sq: i64 = frame.iter().map(|&s| (s as i32 * s as i32) as i64).sum();
        self.level_db = db(sq as f32 * (1.0 / (32768.0 * 32768.0)) / n as f32).max(-120.0);
        for (d, &s) in self.a[..n].iter_mut().zip(frame) {
            *d = s as f32 * (1.0 / 32768.0);
        }

        // To 8 kHz in `a[..an]`.
        match self.rate {
            16000 => {
                self.pre2.run(&self.a[..n], &mut self.b[..n / 2], &mut self.even, &mut self.odd);
                self.a[..an].copy_from_slice(&self.b[..an]);
            }
            24000 => {
                self.pre3.run(&self.a[..n], &mut self.b[..an], &mut self.work);
                self.a[..an].copy_from_slice(&self.b[..an]);
            }
            48000 => {
                self.pre2.run(&self.a[..n], &mut self.b[..n / 2], &mut self.even, &mut self.odd);
                self.pre3.run(&self.b[..n / 2], &mut self.a[..an], &mut self.work);
            }
            _ => {}
        }

        // Band powers: p[4] = 2-4k, p[3] = 1-2k, p[2] = 500-1k, p[1] = 250-500, p[0] = 0-250.
        // Each stage's output goes right after its input in `a`, so no copies.
        let mut p = [0.0f32; BANDS];
        let (mut start, mut len) = (0, an);
        for k in 0..4 {
            let (done, rest) = self.a.split_at_mut(start + len);
            p[BANDS - 1 - k] = self.split[k].run(&done[start..], &mut rest[..len / 2], &mut self.even, &mut self.odd);
            start += len;
            len /= 2;
        }
        p[0] = sum_sq(&self.a[start..start + len]) / len as f32;

        let mut l = [0.0f32; BANDS];
        // 10 ms frames hold too few samples per band for a steady estimate: analyse a 20 ms
        // window (this frame and the last) with a 10 ms hop, so the tuning is the same.
        if self.cfg.frame_ms == 10 {
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
        self.decide(&l)
    }

    fn decide(&mut self, l: &[f32; BANDS]) -> bool {
        let c = &self.cfg;
        if self.frames_seen == 0 {
            self.floor_db = *l;
        }
        let mut score = 0.0f32;
        for b in 0..BANDS {
            let snr = l[b] - self.floor_db[b] - c.band_margin_db - c.spread_factor * self.spread_db[b];
            score += c.band_weights[b] * snr.clamp(0.0, c.band_cap_db);
        }
        let loud = self.level_db >= c.min_level_dbfs;
        let thr = if self.speech { c.release } else { c.threshold };
        let raw = loud && score > thr;

        if raw {
            self.run += 1;
            if self.speech || self.run >= self.onset_frames {
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
        for b in 0..BANDS {
            let d = l[b] - self.floor_db[b];
            let a = if warm {
                (1.0 / (self.frames_seen + 1) as f32).max(self.a_noise)
            } else if noise_like {
                self.a_noise
            } else if d < 0.0 {
                self.a_fall
            } else {
                self.a_rise
            };
            self.floor_db[b] += a * d;
            if warm || noise_like {
                self.spread_db[b] += a * (d.abs() - self.spread_db[b]);
            }
        }
        self.frames_seen = self.frames_seen.saturating_add(1);
        self.speech
    }
}
