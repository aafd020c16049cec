//! Turn-taking from per-frame VAD decisions: speech started, speech ended, barge-in, pause.
//!
//! Sans-I/O and clock-free: time is the duration of the audio fed in, so the same detector
//! gives the same answer live, in a replay and in a test. It runs on every frame the media path
//! releases (50 per second per call), which is why it lives here rather than in Python: fused
//! into the socket reader, a frame that changes nothing never reaches the interpreter.
//!
//! Durations are f64 milliseconds computed exactly as the original Python detector did
//! (`bytes / (rate * 2 / 1000)`), so decisions are identical to it frame for frame.

use crate::resample::SUPPORTED_RATES;
use std::collections::VecDeque;
use std::fmt;

/// Longest `start_ms`, `end_ms`, `barge_in_ms` (and so `pause_ms`, `keep_tail_ms`): a minute.
/// Longer is no turn-taking a caller would notice, and the bound keeps every buffer sized from
/// these (the pre-roll is allocated up front) to a few MB.
pub const MAX_TIMING_MS: u32 = 60_000;
/// Longest `max_utterance_ms`: ten minutes (dictation), 58 MB of PCM at 48 kHz at most.
pub const MAX_UTTERANCE_MS: u32 = 600_000;

/// The caller has spoken for `start_ms`: an utterance is open.
pub const STARTED: u32 = 1;
/// `end_ms` of silence (or the length cap) closed the utterance; read it with `utterance`.
pub const ENDED: u32 = 2;
/// The current run of speech just reached `barge_in_ms` (once per run).
pub const BARGE_IN: u32 = 4;
/// The open utterance has been silent for `pause_ms` (once per silence run).
pub const PAUSED: u32 = 8;

/// Timing of a [`TurnDetector`], in ms, at `rate` (one of [`SUPPORTED_RATES`]). Durations are
/// 1..=[`MAX_TIMING_MS`] (`max_utterance_ms` 1..=[`MAX_UTTERANCE_MS`]), `preroll_ms`
/// 0..=2000, `keep_tail_ms` 0..=`end_ms`, `pause_ms` 0..`end_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnConfig {
    pub rate: u32,
    pub start_ms: u32,
    pub end_ms: u32,
    pub barge_in_ms: u32,
    pub preroll_ms: u32,
    pub max_utterance_ms: u32,
    pub keep_tail_ms: u32,
    /// 0 turns PAUSED off.
    pub pause_ms: u32,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            rate: 16000,
            start_ms: 80,
            end_ms: 500,
            barge_in_ms: 150,
            preroll_ms: 200,
            max_utterance_ms: 30000,
            keep_tail_ms: 100,
            pause_ms: 0,
        }
    }
}

/// Errors of the turn-taking domain: a timing outside its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnError {
    /// A value that must be a positive integer (that fits 32 bits).
    NotPositive { name: &'static str, value: i64 },
    /// Pre-roll outside 0..=2000 ms, or a kept tail outside 0..=`end_ms`.
    PrerollOrTail {
        preroll_ms: i64,
        keep_tail_ms: i64,
        end_ms: i64,
    },
    /// `pause_ms` outside 0..`end_ms`.
    Pause { pause_ms: i64, end_ms: i64 },
    /// `end_ms` shorter than the kept tail (on reconfiguration).
    EndBelowTail { end_ms: u32 },
    /// A positive duration above its maximum (`max` ms).
    TooLong {
        name: &'static str,
        value: i64,
        max: u32,
    },
    /// A rate the media engine does not produce (not in [`SUPPORTED_RATES`]).
    Rate(i64),
}

impl fmt::Display for TurnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TurnError::NotPositive { name, value } => {
                write!(f, "{name} must be a positive integer, got {value}")
            }
            TurnError::PrerollOrTail {
                preroll_ms,
                keep_tail_ms,
                end_ms,
            } => write!(
                f,
                "preroll_ms must be 0..2000 and keep_tail_ms 0..end_ms ({end_ms}), got \
                 {preroll_ms} and {keep_tail_ms}"
            ),
            TurnError::Pause { pause_ms, end_ms } => write!(
                f,
                "pause_ms must be 0 (off) .. end_ms ({end_ms}) - 1, got {pause_ms}"
            ),
            TurnError::EndBelowTail { end_ms } => {
                write!(f, "end_ms {end_ms} is shorter than the kept tail")
            }
            TurnError::TooLong { name, value, max } => {
                write!(f, "{name} must be 1..={max}, got {value}")
            }
            TurnError::Rate(rate) => write!(
                f,
                "rate must be one of {} Hz, got {rate}",
                SUPPORTED_RATES.map(|r| r.to_string()).join(", ")
            ),
        }
    }
}

impl std::error::Error for TurnError {}

/// Collects one caller utterance at a time between VAD onset and trailing silence.
#[derive(Debug, Clone)]
pub struct TurnDetector {
    /// The Python detector's unit, kept so that every duration is computed as it was.
    bytes_per_ms: f64,
    start_ms: u32,
    end_ms: u32,
    barge_ms: u32,
    pause_ms: u32,
    max_ms: u32,
    /// Samples of pre-roll (the onset frames plus `preroll_ms` before them) kept at most.
    preroll_max: usize,
    tail_bytes: usize,
    /// Recent frames while no utterance is open: samples, and each frame's length.
    preroll: VecDeque<i16>,
    preroll_frames: VecDeque<usize>,
    /// The open utterance, pre-roll included.
    parts: Vec<i16>,
    /// The utterance closed by the last ENDED.
    utterance: Vec<i16>,
    speech_run: f64,
    silence_run: f64,
    utt_ms: f64,
    utt_end_ms: f64,
    run_token: i64,
    pause_count: i64,
    in_speech: bool,
    position_ms: f64,
    speech_start_ms: f64,
    onset_offset_ms: f64,
}

fn positive(name: &'static str, value: i64) -> Result<u32, TurnError> {
    match u32::try_from(value) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(TurnError::NotPositive { name, value }),
    }
}

/// A positive duration of at most `max` ms (compared before narrowing, so a huge value is
/// reported against its range, not as "not positive").
fn duration(name: &'static str, value: i64, max: u32) -> Result<u32, TurnError> {
    if value > i64::from(max) {
        return Err(TurnError::TooLong { name, value, max });
    }
    positive(name, value)
}

fn pause(pause_ms: i64, end_ms: u32) -> Result<u32, TurnError> {
    match u32::try_from(pause_ms) {
        Ok(p) if p < end_ms => Ok(p),
        _ => Err(TurnError::Pause {
            pause_ms,
            end_ms: i64::from(end_ms),
        }),
    }
}

impl TurnConfig {
    /// A config from integers of any sign (as a binding receives them), checked in one place
    /// and in a fixed order, so every layer above reports the same error for the same input.
    #[allow(clippy::too_many_arguments)]
    pub fn from_ms(
        rate: i64,
        start_ms: i64,
        end_ms: i64,
        barge_in_ms: i64,
        preroll_ms: i64,
        max_utterance_ms: i64,
        keep_tail_ms: i64,
        pause_ms: i64,
    ) -> Result<Self, TurnError> {
        if rate > 0 && !SUPPORTED_RATES.iter().any(|&r| i64::from(r) == rate) {
            return Err(TurnError::Rate(rate));
        }
        let rate = positive("rate", rate)?;
        let start_ms = duration("start_ms", start_ms, MAX_TIMING_MS)?;
        let end = duration("end_ms", end_ms, MAX_TIMING_MS)?;
        let barge_in_ms = duration("barge_in_ms", barge_in_ms, MAX_TIMING_MS)?;
        let max_utterance_ms = duration("max_utterance_ms", max_utterance_ms, MAX_UTTERANCE_MS)?;
        if !(0..=2000).contains(&preroll_ms) || !(0..=end_ms).contains(&keep_tail_ms) {
            return Err(TurnError::PrerollOrTail {
                preroll_ms,
                keep_tail_ms,
                end_ms,
            });
        }
        Ok(TurnConfig {
            rate,
            start_ms,
            end_ms: end,
            barge_in_ms,
            preroll_ms: preroll_ms as u32,
            max_utterance_ms,
            keep_tail_ms: keep_tail_ms as u32,
            pause_ms: pause(pause_ms, end)?,
        })
    }
}

impl TurnDetector {
    pub fn new(c: TurnConfig) -> Result<Self, TurnError> {
        let c = TurnConfig::from_ms(
            c.rate.into(),
            c.start_ms.into(),
            c.end_ms.into(),
            c.barge_in_ms.into(),
            c.preroll_ms.into(),
            c.max_utterance_ms.into(),
            c.keep_tail_ms.into(),
            c.pause_ms.into(),
        )?;
        let bytes_per_ms = f64::from(c.rate) * 2.0 / 1000.0;
        // Bounded by the ranges above (2 s + 60 s at 48 kHz: 6 MB); summed in f64, exactly.
        let preroll_bytes =
            ((f64::from(c.preroll_ms) + f64::from(c.start_ms)) * bytes_per_ms) as usize;
        // Frames leave the pre-roll while what stays holds at least `preroll_bytes`.
        let preroll_max = preroll_bytes.div_ceil(2);
        Ok(TurnDetector {
            bytes_per_ms,
            start_ms: c.start_ms,
            end_ms: c.end_ms,
            barge_ms: c.barge_in_ms,
            pause_ms: c.pause_ms,
            max_ms: c.max_utterance_ms,
            preroll_max,
            tail_bytes: (f64::from(c.keep_tail_ms) * bytes_per_ms) as usize,
            preroll: VecDeque::with_capacity(preroll_max + 2048),
            preroll_frames: VecDeque::with_capacity(64),
            parts: Vec::new(),
            utterance: Vec::new(),
            speech_run: 0.0,
            silence_run: 0.0,
            utt_ms: 0.0,
            utt_end_ms: f64::from(c.end_ms),
            run_token: -1,
            pause_count: 0,
            in_speech: false,
            position_ms: 0.0,
            speech_start_ms: 0.0,
            onset_offset_ms: 0.0,
        })
    }

    /// One released frame and its VAD decision; returns STARTED | ENDED | BARGE_IN | PAUSED.
    pub fn feed(&mut self, pcm: &[i16], speech: bool) -> u32 {
        let ms = (pcm.len() * 2) as f64 / self.bytes_per_ms;
        self.position_ms += ms;
        let mut flags = 0;
        if speech {
            let before = self.speech_run;
            self.speech_run = before + ms;
            if self.silence_run != 0.0 {
                // New words void any decision taken on the text before them.
                self.silence_run = 0.0;
                self.utt_end_ms = f64::from(self.end_ms);
                self.run_token = -1;
            }
            let barge = f64::from(self.barge_ms);
            if before < barge && barge <= self.speech_run {
                flags = BARGE_IN;
            }
        } else {
            self.speech_run = 0.0;
            let before = self.silence_run;
            self.silence_run = before + ms;
            let pause = f64::from(self.pause_ms);
            if self.in_speech && before < pause && pause <= self.silence_run {
                self.pause_count += 1;
                self.run_token = self.pause_count;
                flags = PAUSED;
            }
        }
        if !self.in_speech {
            self.preroll.extend(pcm);
            self.preroll_frames.push_back(pcm.len());
            while let Some(&first) = self.preroll_frames.front() {
                if self.preroll.len() - first < self.preroll_max {
                    break;
                }
                self.preroll.drain(..first);
                self.preroll_frames.pop_front();
            }
            if self.speech_run >= f64::from(self.start_ms) {
                self.in_speech = true;
                self.speech_start_ms = self.position_ms - self.speech_run;
                self.parts.clear();
                // Room for a couple of seconds before the first regrowth.
                self.parts
                    .reserve(self.preroll.len() + (2000.0 * self.bytes_per_ms) as usize / 2);
                self.parts.extend(self.preroll.iter());
                self.utt_ms = (self.preroll.len() * 2) as f64 / self.bytes_per_ms;
                self.onset_offset_ms = self.utt_ms - self.speech_run;
                self.preroll.clear();
                self.preroll_frames.clear();
                flags |= STARTED;
            }
            return flags;
        }
        self.parts.extend_from_slice(pcm);
        self.utt_ms += ms;
        if self.silence_run >= self.utt_end_ms || self.utt_ms >= f64::from(self.max_ms) {
            flags |= self.close();
        }
        flags
    }

    /// Ends the open utterance (callers check that one is open).
    fn close(&mut self) -> u32 {
        debug_assert!(self.in_speech);
        // Keep a short tail of the trailing silence: playback should not end abruptly, but
        // half a second of nothing is not part of what the caller said.
        let cut = (self.silence_run * self.bytes_per_ms) as i64 - self.tail_bytes as i64;
        if cut > 0 {
            let samples = (cut / 2) as usize;
            self.parts
                .truncate(self.parts.len().saturating_sub(samples));
        }
        // Hand the buffer over rather than keep two utterance-sized buffers per call: memory
        // per call matters more than one allocation per utterance.
        self.utterance = std::mem::take(&mut self.parts);
        self.utt_ms = 0.0;
        self.in_speech = false;
        self.utt_end_ms = f64::from(self.end_ms);
        ENDED
    }

    /// Lets the current silence end the utterance once it lasts `silence_ms`, if `token` is
    /// the current pause token; returns ENDED when the silence is already that long.
    pub fn end_after(&mut self, silence_ms: f64, token: i64) -> u32 {
        if !self.in_speech || token != self.run_token {
            return 0;
        }
        self.utt_end_ms = silence_ms.max(f64::from(self.pause_ms));
        if self.silence_run >= self.utt_end_ms {
            return self.close();
        }
        0
    }

    /// Changes timing mid-call; `None` keeps a value.
    pub fn configure(
        &mut self,
        end_ms: Option<i64>,
        pause_ms: Option<i64>,
        barge_in_ms: Option<i64>,
    ) -> Result<(), TurnError> {
        let end = duration(
            "end_ms",
            end_ms.unwrap_or(self.end_ms.into()),
            MAX_TIMING_MS,
        )?;
        let barge = duration(
            "barge_in_ms",
            barge_in_ms.unwrap_or(self.barge_ms.into()),
            MAX_TIMING_MS,
        )?;
        let pause = pause(pause_ms.unwrap_or(self.pause_ms.into()), end)?;
        if self.tail_bytes as f64 > f64::from(end) * self.bytes_per_ms {
            return Err(TurnError::EndBelowTail { end_ms: end });
        }
        self.end_ms = end;
        self.pause_ms = pause;
        self.barge_ms = barge;
        self.utt_end_ms = f64::from(end);
        Ok(())
    }

    /// The open utterance so far, pre-roll included.
    pub fn audio_so_far(&self) -> &[i16] {
        &self.parts
    }

    /// The utterance closed by the last ENDED (empty once cleared).
    pub fn utterance(&self) -> &[i16] {
        &self.utterance
    }

    /// Forgets (and frees) the last utterance.
    pub fn clear_utterance(&mut self) {
        self.utterance = Vec::new();
    }

    pub fn reset(&mut self) {
        self.preroll.clear();
        self.preroll_frames.clear();
        self.parts.clear();
        self.utterance.clear();
        self.speech_run = 0.0;
        self.silence_run = 0.0;
        self.utt_ms = 0.0;
        self.utt_end_ms = f64::from(self.end_ms);
        self.run_token = -1;
        self.in_speech = false;
    }

    pub fn in_speech(&self) -> bool {
        self.in_speech
    }
    pub fn run_token(&self) -> i64 {
        self.run_token
    }
    pub fn pause_count(&self) -> i64 {
        self.pause_count
    }
    pub fn silence_ms(&self) -> f64 {
        self.silence_run
    }
    pub fn speech_run_ms(&self) -> f64 {
        self.speech_run
    }
    pub fn end_ms(&self) -> u32 {
        self.end_ms
    }
    pub fn position_ms(&self) -> f64 {
        self.position_ms
    }
    pub fn speech_start_ms(&self) -> f64 {
        self.speech_start_ms
    }
    pub fn onset_offset_ms(&self) -> f64 {
        self.onset_offset_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = 320; // 20 ms at 16 kHz

    fn run(det: &mut TurnDetector, pattern: &str) -> Vec<u32> {
        pattern
            .chars()
            .map(|c| {
                let v = if c == 's' { 1000 } else { 0 };
                det.feed(&[v; FRAME], c == 's')
            })
            .collect()
    }

    #[test]
    fn onset_end_and_preroll() {
        let mut det = TurnDetector::new(TurnConfig::default()).unwrap();
        let flags = run(
            &mut det,
            &(".".repeat(30) + &"s".repeat(50) + &".".repeat(25)),
        );
        assert_eq!(flags[33], STARTED);
        assert_eq!(flags.iter().filter(|&&f| f & ENDED != 0).count(), 1);
        // 200 ms pre-roll + 1000 ms speech + 100 ms tail.
        assert_eq!(det.utterance().len(), (10 + 50 + 5) * FRAME);
        det.clear_utterance();
        assert!(det.utterance().is_empty());
        assert_eq!(det.onset_offset_ms(), 200.0);
    }

    #[test]
    fn barge_in_once_per_run_and_pause_tokens() {
        let cfg = TurnConfig {
            pause_ms: 160,
            ..TurnConfig::default()
        };
        let mut det = TurnDetector::new(cfg).unwrap();
        let flags = run(&mut det, &"s".repeat(20));
        assert_eq!(flags.iter().filter(|&&f| f & BARGE_IN != 0).count(), 1);
        let flags = run(&mut det, &".".repeat(8));
        assert_eq!(flags[7], PAUSED);
        assert_eq!(det.run_token(), 1);
        assert_eq!(det.end_after(150.0, 0), 0, "a stale token changes nothing");
        assert_eq!(
            det.end_after(150.0, 1),
            ENDED,
            "the silence is already long enough"
        );
    }

    #[test]
    fn errors_name_the_value_and_range() {
        let bad = TurnConfig {
            pause_ms: 500,
            ..TurnConfig::default()
        };
        let e = TurnDetector::new(bad).unwrap_err().to_string();
        assert_eq!(e, "pause_ms must be 0 (off) .. end_ms (500) - 1, got 500");
        let zero = TurnConfig {
            start_ms: 0,
            ..TurnConfig::default()
        };
        let e = TurnDetector::new(zero).unwrap_err().to_string();
        assert_eq!(e, "start_ms must be a positive integer, got 0");
    }

    /// Every timing is bounded before anything is sized from it: a huge `start_ms` used to
    /// size the pre-roll (2^31 ms at 16 kHz: 64 GB, an abort), a huge rate the onset's
    /// reservation, and `preroll_ms + start_ms` could overflow u32.
    #[test]
    fn huge_timings_and_rates_are_refused_naming_the_range() {
        let cfg = |f: fn(&mut TurnConfig)| {
            let mut c = TurnConfig::default();
            f(&mut c);
            TurnDetector::new(c).map(|_| ()).unwrap_err().to_string()
        };
        assert_eq!(
            cfg(|c| c.start_ms = 1 << 31),
            "start_ms must be 1..=60000, got 2147483648"
        );
        assert_eq!(
            cfg(|c| c.start_ms = u32::MAX),
            "start_ms must be 1..=60000, got 4294967295"
        );
        assert_eq!(
            cfg(|c| c.end_ms = 60_001),
            "end_ms must be 1..=60000, got 60001"
        );
        assert_eq!(
            cfg(|c| c.barge_in_ms = u32::MAX),
            "barge_in_ms must be 1..=60000, got 4294967295"
        );
        assert_eq!(
            cfg(|c| c.max_utterance_ms = 600_001),
            "max_utterance_ms must be 1..=600000, got 600001"
        );
        assert_eq!(
            cfg(|c| c.rate = 1 << 31),
            "rate must be one of 8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000 Hz, \
             got 2147483648"
        );
        assert_eq!(
            cfg(|c| c.rate = 7),
            "rate must be one of 8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000 Hz, got 7"
        );
        let mut det = TurnDetector::new(TurnConfig::default()).unwrap();
        assert_eq!(
            det.configure(Some(1 << 40), None, None)
                .unwrap_err()
                .to_string(),
            "end_ms must be 1..=60000, got 1099511627776"
        );
        assert_eq!(
            det.configure(None, None, Some(60_001))
                .unwrap_err()
                .to_string(),
            "barge_in_ms must be 1..=60000, got 60001"
        );
        assert_eq!(det.end_ms(), 500, "a refused call changes nothing");
    }

    /// The largest accepted config builds and detects a turn (its buffers are sized from the
    /// maxima).
    #[test]
    fn the_largest_config_works() {
        let cfg = TurnConfig {
            rate: 48000,
            start_ms: MAX_TIMING_MS,
            end_ms: MAX_TIMING_MS,
            barge_in_ms: MAX_TIMING_MS,
            preroll_ms: 2000,
            max_utterance_ms: MAX_UTTERANCE_MS,
            keep_tail_ms: MAX_TIMING_MS,
            pause_ms: MAX_TIMING_MS - 1,
        };
        let mut det = TurnDetector::new(cfg).unwrap();
        let frame = [1000i16; 960]; // 20 ms at 48 kHz
        let mut flags = 0;
        for i in 0..200 + 3001 {
            flags |= det.feed(&frame, i >= 200);
        }
        assert_eq!(flags & STARTED, STARTED);
        // 2 s of pre-roll before the minute of speech that opened the utterance, plus 20 ms.
        assert_eq!(det.audio_so_far().len(), 3101 * 960);
    }
}
