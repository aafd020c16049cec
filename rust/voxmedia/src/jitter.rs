//! Adaptive jitter buffer with packet-loss concealment.
//!
//! Packets are decoded to PCM when pushed, into a ring of preallocated slots indexed by sequence
//! number, so neither `push` nor the pops allocate.
//!
//! Two ways to read it:
//! - clock-driven (`pop_into`, once per playout tick): the buffer holds audio back by an adaptive
//!   target delay. The delay is estimated as in WebRTC NetEq: each packet's *relative* arrival
//!   delay (its transit time minus the smallest transit seen in the last 2 s) goes into a
//!   histogram that forgets old packets exponentially, and the target is its 0.97 quantile,
//!   clamped to `[min_delay_ms, max_delay_ms]`. The playout point is kept at that target: when the
//!   buffer runs dry while below target, a concealed frame is inserted without advancing (the
//!   delay grows by one frame); when it is more than a frame above target, a quiet frame is
//!   dropped (or any frame, once far above), with a short cross-fade.
//!
//! A lost frame is concealed with G.711 Appendix I (`plc`); when the frames after it are
//! already buffered (always the case in arrival-driven mode), up to 40 ms of them are given to
//! the concealer as look-ahead, so the gap fades into the real continuation. Concealment lasts
//! 60 ms, after which frames are silent.
//! - arrival-driven (`pop_ready_into`), for in-order transports such as WebSockets over TCP: a
//!   frame is released as soon as it is there, and a missing one is concealed once a packet
//!   `reorder_window` frames later has arrived.
//!
//! Sequence numbers count media frames, so `seq * frame_ms` is the media clock; the platform's
//! `timestamp_ms` is recorded in the stats but not trusted for timing (platforms stamp it at
//! different points of their pipeline).

use crate::g711::ALAW_DEC;
use crate::plc::{Concealer, PlcError};
use std::fmt;

/// Payload encoding of pushed packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Ulaw,
    Alaw,
    /// 16-bit signed little-endian linear PCM.
    Pcm16,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::Ulaw => "ulaw",
            Codec::Alaw => "alaw",
            Codec::Pcm16 => "pcm16",
        }
    }

    pub fn bytes_per_sample(self) -> usize {
        match self {
            Codec::Pcm16 => 2,
            _ => 1,
        }
    }
}

/// What a popped frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStatus {
    /// Received audio.
    Normal,
    /// Synthesised by loss concealment (at most 60 ms into a loss).
    Concealed,
    /// Zeros: before the first packet, while pre-buffering, or more than 60 ms into a loss.
    Silence,
}

impl FrameStatus {
    pub fn name(self) -> &'static str {
        match self {
            FrameStatus::Normal => "normal",
            FrameStatus::Concealed => "concealed",
            FrameStatus::Silence => "silence",
        }
    }
}

/// What `push` did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Accepted,
    /// Already buffered; ignored.
    Duplicate,
    /// Its playout time has passed (or it was given up as lost); ignored.
    Late,
    /// Accepted, but so far ahead that older buffered frames were discarded to make room.
    Flushed,
    /// So far behind the playout point (more than 10 s) that the sender must have restarted its
    /// numbering: the timeline was reset and the packet accepted as the first of a new stream.
    Restarted,
}

impl PushOutcome {
    pub fn name(self) -> &'static str {
        match self {
            PushOutcome::Accepted => "accepted",
            PushOutcome::Duplicate => "duplicate",
            PushOutcome::Late => "late",
            PushOutcome::Flushed => "flushed",
            PushOutcome::Restarted => "restarted",
        }
    }
}

/// Buffer configuration. `Default` is Twilio's: 8 kHz mu-law in 20 ms frames.
#[derive(Debug, Clone, PartialEq)]
pub struct JitterConfig {
    /// Hz; a multiple of 8000 up to 48000.
    pub sample_rate: u32,
    /// Frame duration, a multiple of 10 ms in 10..=120.
    pub frame_ms: u32,
    pub codec: Codec,
    /// Lower bound of the adaptive target delay.
    pub min_delay_ms: u32,
    /// Upper bound of the adaptive target delay (at most 5000).
    pub max_delay_ms: u32,
    /// Slots in the ring; must cover `max_delay_ms` plus the reorder window and two frames.
    pub max_packets: usize,
    /// Quantile of the relative delay distribution to cover, in 0.5..=0.999.
    pub quantile: f64,
    /// Per-packet forgetting factor of the delay histogram, in 0.9..=0.99999.
    pub forget_factor: f64,
    /// Frames a missing packet may be overtaken by before `pop_ready_into` conceals it.
    pub reorder_window: usize,
    /// Target delay used until the histogram has seen a second of packets.
    pub initial_delay_ms: u32,
}

impl JitterConfig {
    /// The fewest slots (`max_packets`) this config works with: `max_delay_ms` of frames, the
    /// reorder window and two more. Meaningful once `frame_ms` is valid (0 counts as 1).
    pub fn packets_needed(&self) -> usize {
        self.max_delay_ms.div_ceil(self.frame_ms.max(1)) as usize + self.reorder_window + 2
    }

    /// [`JitterConfig::packets_needed`], never fewer than 64 slots nor more than 4096: the
    /// size a caller that does not choose `max_packets` itself should ask for.
    pub fn packets_default(&self) -> usize {
        self.packets_needed().clamp(64, 4096)
    }
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            sample_rate: 8000,
            frame_ms: 20,
            codec: Codec::Ulaw,
            min_delay_ms: 20,
            max_delay_ms: 500,
            max_packets: 64,
            quantile: 0.97,
            forget_factor: 0.997,
            reorder_window: 2,
            initial_delay_ms: 60,
        }
    }
}

/// Errors of the jitter-buffer domain.
#[derive(Debug, Clone, PartialEq)]
pub enum JitterError {
    /// A configuration field out of range.
    Config {
        name: &'static str,
        value: String,
        valid: String,
    },
    /// Payload size does not match one frame of the codec.
    PayloadLength {
        codec: Codec,
        got: usize,
        expected: usize,
    },
    /// PCM16 payload with an odd number of bytes.
    OddPcm16Length(usize),
    /// Output buffer of the wrong size.
    OutputLength { expected: usize, got: usize },
    /// A time that is NaN or infinite.
    NonFiniteTime(f64),
    /// Sequence number above `MAX_SEQ`.
    SeqOutOfRange(u64),
}

impl fmt::Display for JitterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JitterError::Config { name, value, valid } => {
                write!(f, "{name} = {value} is out of range; valid: {valid}")
            }
            JitterError::PayloadLength { codec, got, expected } => write!(
                f,
                "{} payload of {got} bytes does not match the frame size; expected exactly {expected} bytes",
                codec.name()
            ),
            JitterError::OddPcm16Length(n) => write!(
                f,
                "pcm16 payload has an odd length of {n} bytes; it must be a multiple of 2 (16-bit samples)"
            ),
            JitterError::OutputLength { expected, got } => {
                write!(f, "output buffer holds {got} samples but exactly {expected} are needed")
            }
            JitterError::NonFiniteTime(t) => write!(f, "time {t} ms is not a finite number"),
            JitterError::SeqOutOfRange(s) => {
                write!(f, "seq = {s} is out of range; valid: 0..={MAX_SEQ}")
            }
        }
    }
}

impl std::error::Error for JitterError {}

/// Counters since construction or `reset`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct JitterStats {
    /// Packets accepted into the buffer.
    pub received: u64,
    pub late: u64,
    pub duplicate: u64,
    /// Sequence numbers skipped without ever being played.
    pub lost: u64,
    /// Frames popped with status `Normal`.
    pub played: u64,
    /// Frames popped with status `Concealed`.
    pub concealed: u64,
    /// Frames popped with status `Silence`.
    pub silence: u64,
    /// Received frames dropped to shrink the delay.
    pub dropped: u64,
    /// Concealed or silent frames inserted while starved, to grow the delay.
    pub expanded: u64,
    /// Buffered frames discarded because a packet arrived too far ahead.
    pub flushed: u64,
    pub restarts: u64,
    /// Playout delay behind the earliest-arriving packets, at the last clock-driven pop.
    pub current_depth_ms: f64,
    /// Adaptive target for `current_depth_ms`.
    pub target_depth_ms: f64,
    /// Frames waiting in the buffer.
    pub buffered_frames: usize,
    /// Timestamp of the newest packet pushed.
    pub last_timestamp_ms: u64,
}

const EMPTY: u64 = u64::MAX;
/// Largest sequence number accepted: far beyond any real stream, and it keeps `seq + window`
/// arithmetic free of overflow.
pub const MAX_SEQ: u64 = 1 << 62;
/// Window of the minimum-transit reference.
const MIN_TRANSIT_WINDOW_MS: u32 = 2000;
/// A packet this far behind the playout point means the sender restarted its numbering.
const RESTART_MS: u64 = 10_000;
/// Histogram resolution.
const BUCKET_MS: f64 = 1.0;
/// Cross-fade across a dropped frame.
const DROP_FADE_MS: u32 = 5;
/// Above target by this many frames, drop even audible frames.
const FORCE_DROP_FRAMES: f64 = 4.0;
/// A frame below this fraction of the average frame energy counts as quiet enough to drop.
const QUIET_RATIO: f32 = 0.1;
/// Absolute quiet floor (mean square, about -50 dBFS).
const QUIET_FLOOR: f32 = 10_000.0;

/// Sliding minimum over the last `cap` values (monotonic deque in a fixed ring).
///
/// The ring has a power-of-two size of at least `cap`, so positions wrap with a mask: a `%`
/// by the window length was a 64-bit division per step, two or three per packet.
#[derive(Debug, Clone)]
struct SlidingMin {
    idx: Vec<u64>,
    val: Vec<f64>,
    /// Window length.
    cap: usize,
    /// Ring size minus one.
    mask: usize,
    head: usize,
    len: usize,
    count: u64,
}

impl SlidingMin {
    fn new(cap: usize) -> Self {
        let ring = cap.max(1).next_power_of_two();
        SlidingMin {
            idx: vec![0; ring],
            val: vec![0.0; ring],
            cap,
            mask: ring - 1,
            head: 0,
            len: 0,
            count: 0,
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.count = 0;
    }

    fn push(&mut self, v: f64) -> f64 {
        // At most `cap <= ring` entries are live, so the masked positions never collide.
        let (cap, mask) = (self.cap, self.mask);
        while self.len > 0 {
            let back = (self.head + self.len - 1) & mask;
            if self.val[back] >= v {
                self.len -= 1;
            } else {
                break;
            }
        }
        while self.len > 0 && self.idx[self.head] + cap as u64 <= self.count {
            self.head = (self.head + 1) & mask;
            self.len -= 1;
        }
        let pos = (self.head + self.len) & mask;
        self.idx[pos] = self.count;
        self.val[pos] = v;
        self.len += 1;
        self.count += 1;
        self.val[self.head]
    }
}

/// Histogram of relative delays with exponential forgetting and an incrementally tracked
/// quantile: instead of scaling every bucket per packet, new packets get growing weights
/// (renormalised rarely), and the quantile bucket moves by amortised O(1) steps.
#[derive(Debug, Clone)]
struct DelayHistogram {
    buckets: Vec<f64>,
    weight: f64,
    total: f64,
    /// Mass of buckets `0..=q`.
    cum: f64,
    q: usize,
    quantile: f64,
    forget: f64,
    n: u64,
}

impl DelayHistogram {
    fn new(n_buckets: usize, quantile: f64, forget: f64) -> Self {
        DelayHistogram {
            buckets: vec![0.0; n_buckets],
            weight: 1.0,
            total: 0.0,
            cum: 0.0,
            q: 0,
            quantile,
            forget,
            n: 0,
        }
    }

    fn clear(&mut self) {
        self.buckets.fill(0.0);
        self.weight = 1.0;
        self.total = 0.0;
        self.cum = 0.0;
        self.q = 0;
        self.n = 0;
    }

    fn add(&mut self, delay_ms: f64) {
        let last = self.buckets.len() - 1;
        let b = ((delay_ms / BUCKET_MS).max(0.0) as usize).min(last);
        let w = self.weight;
        self.buckets[b] += w;
        self.total += w;
        if b <= self.q {
            self.cum += w;
        }
        let want = self.quantile * self.total;
        while self.cum < want && self.q < last {
            self.q += 1;
            self.cum += self.buckets[self.q];
        }
        while self.q > 0 && self.cum - self.buckets[self.q] >= want {
            self.cum -= self.buckets[self.q];
            self.q -= 1;
        }
        self.n += 1;
        // Equal weights until the forgetting horizon is reached, so early estimates use all
        // packets instead of being dominated by the first one.
        if self.n as f64 * (1.0 - self.forget) >= 1.0 {
            self.weight /= self.forget;
        }
        if self.weight > 1e100 {
            let s = 1.0 / self.weight;
            self.buckets.iter_mut().for_each(|x| *x *= s);
            self.total = self.buckets.iter().sum();
            self.cum = self.buckets[..=self.q].iter().sum();
            self.weight = 1.0;
        }
    }

    /// Upper edge of the quantile bucket, ms.
    fn quantile_ms(&self) -> f64 {
        (self.q + 1) as f64 * BUCKET_MS
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    frame_len: usize,
    frame_ms: f64,
    /// Frames the buffer holds (`max_packets`): every policy decision uses this.
    cap: usize,
    /// Slot storage is the next power of two above `cap`, minus one: `seq & mask` picks the
    /// slot without the 64-bit division (tens of cycles each, several per packet) that
    /// `seq % cap` cost. Buffered frames always lie within `cap` of `next_seq`, so they
    /// still get distinct slots.
    mask: u64,
    pcm: Vec<i16>,
    slot_seq: Vec<u64>,
    slot_energy: Vec<f32>,
    scratch: Vec<i16>,
    /// Look-ahead for the concealer: up to two buffered frames after a lost one.
    ahead: Vec<i16>,
    fade_len: usize,
    plc: Concealer,
    started: bool,
    playing: bool,
    next_seq: u64,
    highest_seq: u64,
    origin_seq: u64,
    buffered: usize,
    min_transit: f64,
    transits: SlidingMin,
    hist: DelayHistogram,
    warmup_packets: u64,
    energy_avg: f32,
    stats: JitterStats,
}

fn cfg_err(name: &'static str, value: impl fmt::Display, valid: impl Into<String>) -> JitterError {
    JitterError::Config {
        name,
        value: value.to_string(),
        valid: valid.into(),
    }
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Result<Self, JitterError> {
        if cfg.frame_ms == 0 || cfg.frame_ms % 10 != 0 || cfg.frame_ms > 120 {
            return Err(cfg_err(
                "frame_ms",
                cfg.frame_ms,
                "10..=120, a multiple of 10",
            ));
        }
        let frame_len = (cfg.sample_rate as u64 * cfg.frame_ms as u64 / 1000) as usize;
        let plc = Concealer::new(cfg.sample_rate, frame_len).map_err(|e| match e {
            PlcError::UnsupportedSampleRate(sr) => cfg_err(
                "sample_rate",
                sr,
                "8000, 16000, 24000, 32000, 40000 or 48000",
            ),
            _ => cfg_err("frame_ms", cfg.frame_ms, "10..=120, a multiple of 10"),
        })?;
        if cfg.max_delay_ms > 5000 {
            return Err(cfg_err("max_delay_ms", cfg.max_delay_ms, "0..=5000"));
        }
        if cfg.min_delay_ms > cfg.max_delay_ms {
            return Err(cfg_err(
                "min_delay_ms",
                cfg.min_delay_ms,
                format!("0..={} (max_delay_ms)", cfg.max_delay_ms),
            ));
        }
        if !(0.5..=0.999).contains(&cfg.quantile) {
            return Err(cfg_err("quantile", cfg.quantile, "0.5..=0.999"));
        }
        if !(0.9..=0.99999).contains(&cfg.forget_factor) {
            return Err(cfg_err("forget_factor", cfg.forget_factor, "0.9..=0.99999"));
        }
        if cfg.reorder_window == 0 || cfg.reorder_window > 50 {
            return Err(cfg_err("reorder_window", cfg.reorder_window, "1..=50"));
        }
        let need = cfg.packets_needed();
        if cfg.max_packets < need || cfg.max_packets > 4096 {
            return Err(cfg_err(
                "max_packets",
                cfg.max_packets,
                format!("{need}..=4096 (max_delay_ms / frame_ms + reorder_window + 2 at least)"),
            ));
        }
        let cap = cfg.max_packets;
        let slots = cap.next_power_of_two();
        let frame_ms = cfg.frame_ms as f64;
        let window = (MIN_TRANSIT_WINDOW_MS / cfg.frame_ms) as usize;
        let mut jb = JitterBuffer {
            frame_len,
            frame_ms,
            cap,
            mask: slots as u64 - 1,
            pcm: vec![0; slots * frame_len],
            slot_seq: vec![EMPTY; slots],
            slot_energy: vec![0.0; slots],
            scratch: vec![0; frame_len],
            ahead: vec![0; 2 * frame_len],
            fade_len: (cfg.sample_rate * DROP_FADE_MS / 1000) as usize,
            plc,
            started: false,
            playing: false,
            next_seq: 0,
            highest_seq: 0,
            origin_seq: 0,
            buffered: 0,
            min_transit: 0.0,
            transits: SlidingMin::new(window),
            hist: DelayHistogram::new(
                (cfg.max_delay_ms as f64 / BUCKET_MS) as usize + 1,
                cfg.quantile,
                cfg.forget_factor,
            ),
            warmup_packets: (1000 / cfg.frame_ms) as u64,
            energy_avg: 0.0,
            stats: JitterStats {
                target_depth_ms: 0.0,
                ..Default::default()
            },
            cfg,
        };
        jb.stats.target_depth_ms = jb.target_ms();
        Ok(jb)
    }

    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    /// Samples per frame.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Bytes of one packet's payload for the configured codec.
    pub fn payload_len(&self) -> usize {
        self.frame_len * self.cfg.codec.bytes_per_sample()
    }

    /// Current target delay plus the concealer's fixed 3.75 ms output delay.
    pub fn latency_ms(&self) -> f64 {
        self.target_ms() + self.concealment_latency_ms()
    }

    /// The concealer's fixed output delay alone: all the delay of arrival-driven playout
    /// (`pop_ready_into`), which holds no target depth.
    pub fn concealment_latency_ms(&self) -> f64 {
        self.plc.latency_samples() as f64 * 1000.0 / self.cfg.sample_rate as f64
    }

    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.buffered_frames = self.buffered;
        s.target_depth_ms = self.target_ms();
        s
    }

    /// Forget everything, as at construction (stats too).
    pub fn reset(&mut self) {
        self.reset_timeline();
        self.stats = JitterStats::default();
        self.energy_avg = 0.0;
        self.stats.target_depth_ms = self.target_ms();
    }

    fn reset_timeline(&mut self) {
        self.slot_seq.fill(EMPTY);
        self.buffered = 0;
        self.started = false;
        self.playing = false;
        self.plc.reset();
        self.transits.clear();
        self.hist.clear();
    }

    fn target_ms(&self) -> f64 {
        let mut t = if self.hist.n == 0 {
            0.0
        } else {
            self.hist.quantile_ms()
        };
        if self.hist.n < self.warmup_packets {
            t = t.max(self.cfg.initial_delay_ms as f64);
        }
        t.clamp(self.cfg.min_delay_ms as f64, self.cfg.max_delay_ms as f64)
    }

    #[inline]
    fn slot(&self, seq: u64) -> usize {
        (seq & self.mask) as usize
    }

    #[inline]
    fn present(&self, seq: u64) -> bool {
        self.slot_seq[self.slot(seq)] == seq
    }

    /// Media time of `seq` relative to the first packet, ms.
    #[inline]
    fn media_ms(&self, seq: u64) -> f64 {
        seq.wrapping_sub(self.origin_seq) as i64 as f64 * self.frame_ms
    }

    /// Playout delay behind the earliest-arriving packets if `next_seq` played at `now_ms`.
    #[inline]
    fn offset_ms(&self, now_ms: f64) -> f64 {
        now_ms - self.media_ms(self.next_seq) - self.min_transit
    }

    /// Add a packet. `arrival_ms` is the receive time on the same clock as the `now_ms` given to
    /// `pop_into`.
    pub fn push(
        &mut self,
        seq: u64,
        timestamp_ms: u64,
        payload: &[u8],
        arrival_ms: f64,
    ) -> Result<PushOutcome, JitterError> {
        let expected = self.payload_len();
        if self.cfg.codec == Codec::Pcm16 && payload.len() % 2 != 0 {
            return Err(JitterError::OddPcm16Length(payload.len()));
        }
        if payload.len() != expected {
            return Err(JitterError::PayloadLength {
                codec: self.cfg.codec,
                got: payload.len(),
                expected,
            });
        }
        if !arrival_ms.is_finite() {
            return Err(JitterError::NonFiniteTime(arrival_ms));
        }
        if seq > MAX_SEQ {
            return Err(JitterError::SeqOutOfRange(seq));
        }
        let mut outcome = PushOutcome::Accepted;
        if !self.started {
            self.start_at(seq);
        } else if seq < self.next_seq {
            let behind = self.next_seq - seq;
            if behind.saturating_mul(self.cfg.frame_ms as u64) > RESTART_MS {
                self.reset_timeline();
                self.stats.restarts += 1;
                self.start_at(seq);
                outcome = PushOutcome::Restarted;
            } else if !self.playing && self.highest_seq - seq < self.cap as u64 {
                // Still pre-buffering: an earlier packet simply extends the start.
                self.next_seq = seq;
            } else {
                self.observe_delay(seq, arrival_ms);
                self.stats.late += 1;
                return Ok(PushOutcome::Late);
            }
        }
        if self.present(seq) {
            self.stats.duplicate += 1;
            return Ok(PushOutcome::Duplicate);
        }
        if seq - self.next_seq >= self.cap as u64 {
            self.flush_before(seq - (self.cap as u64 - 1));
            outcome = PushOutcome::Flushed;
        }
        let slot = self.slot(seq);
        let frame = &mut self.pcm[slot * self.frame_len..(slot + 1) * self.frame_len];
        match self.cfg.codec {
            Codec::Ulaw => crate::g711::ulaw_decode_slice(payload, frame),
            Codec::Alaw => frame
                .iter_mut()
                .zip(payload)
                .for_each(|(o, &c)| *o = ALAW_DEC[c as usize]),
            Codec::Pcm16 => frame
                .iter_mut()
                .zip(payload.chunks_exact(2))
                .for_each(|(o, b)| *o = i16::from_le_bytes([b[0], b[1]])),
        }
        let sum_sq = crate::g711::sum_sq_i16(frame);
        let energy = sum_sq as f32 / self.frame_len as f32;
        self.slot_energy[slot] = energy;
        self.energy_avg += 0.02 * (energy - self.energy_avg);
        self.slot_seq[slot] = seq;
        self.buffered += 1;
        if seq > self.highest_seq {
            self.highest_seq = seq;
        }
        self.observe_delay(seq, arrival_ms);
        self.stats.received += 1;
        self.stats.last_timestamp_ms = timestamp_ms;
        Ok(outcome)
    }

    fn start_at(&mut self, seq: u64) {
        self.started = true;
        self.playing = false;
        self.origin_seq = seq;
        self.next_seq = seq;
        self.highest_seq = seq;
    }

    fn observe_delay(&mut self, seq: u64, arrival_ms: f64) {
        let transit = arrival_ms - self.media_ms(seq);
        self.min_transit = self.transits.push(transit);
        self.hist.add(transit - self.min_transit);
    }

    /// Discard everything before `new_next` (counting unplayed frames as lost).
    fn flush_before(&mut self, new_next: u64) {
        let skipped = new_next - self.next_seq;
        if skipped >= self.cap as u64 {
            let n = self.buffered as u64;
            self.slot_seq.fill(EMPTY);
            self.stats.flushed += n;
            self.stats.lost += skipped - n;
            self.buffered = 0;
        } else {
            for s in self.next_seq..new_next {
                let slot = self.slot(s);
                if self.slot_seq[slot] == s {
                    self.slot_seq[slot] = EMPTY;
                    self.buffered -= 1;
                    self.stats.flushed += 1;
                } else {
                    self.stats.lost += 1;
                }
            }
        }
        self.next_seq = new_next;
    }

    /// Frees the slot of buffered frame `seq` (its samples stay readable until overwritten)
    /// and returns it.
    fn release(&mut self, seq: u64) -> usize {
        let slot = self.slot(seq);
        self.slot_seq[slot] = EMPTY;
        self.buffered -= 1;
        slot
    }

    /// Move frame `seq` into `out` and free its slot.
    fn take(&mut self, seq: u64, out: &mut [i16]) {
        let slot = self.release(seq);
        out.copy_from_slice(&self.pcm[slot * self.frame_len..(slot + 1) * self.frame_len]);
    }

    fn play(&mut self, out: &mut [i16]) -> FrameStatus {
        // The concealer reads the frame from its slot and writes its (delayed) output: one
        // pass, where taking the frame into `out` and handing that to `good_frame` was three.
        let slot = self.release(self.next_seq);
        let fl = self.frame_len;
        let _ = self
            .plc
            .good_frame_from(&self.pcm[slot * fl..(slot + 1) * fl], out);
        self.next_seq += 1;
        self.stats.played += 1;
        FrameStatus::Normal
    }

    /// Conceal the frame before `next_seq`. When `next_seq` (and the one after) are already
    /// here, the concealer cross-fades into them instead of only extrapolating the past.
    fn conceal(&mut self, out: &mut [i16]) -> FrameStatus {
        if self.present(self.next_seq) {
            let fl = self.frame_len;
            let mut n = 0;
            for s in self.next_seq..self.next_seq + 2 {
                if !self.present(s) {
                    break;
                }
                let slot = self.slot(s);
                self.ahead[n..n + fl].copy_from_slice(&self.pcm[slot * fl..(slot + 1) * fl]);
                n += fl;
            }
            let _ = self.plc.lost_frame_before(out, &self.ahead[..n]);
        } else {
            let _ = self.plc.lost_frame(out);
        }
        if self.plc.is_silent() {
            out.fill(0);
            self.stats.silence += 1;
            FrameStatus::Silence
        } else {
            self.stats.concealed += 1;
            FrameStatus::Concealed
        }
    }

    fn silence(&mut self, out: &mut [i16]) -> FrameStatus {
        out.fill(0);
        self.stats.silence += 1;
        FrameStatus::Silence
    }

    fn check_out(&self, out: &[i16]) -> Result<(), JitterError> {
        if out.len() != self.frame_len {
            return Err(JitterError::OutputLength {
                expected: self.frame_len,
                got: out.len(),
            });
        }
        Ok(())
    }

    /// Clock-driven playout: the frame to play at `now_ms` (call once per frame period).
    pub fn pop_into(&mut self, out: &mut [i16], now_ms: f64) -> Result<FrameStatus, JitterError> {
        self.check_out(out)?;
        if !now_ms.is_finite() {
            return Err(JitterError::NonFiniteTime(now_ms));
        }
        if !self.started {
            return Ok(self.silence(out));
        }
        let target = self.target_ms();
        self.stats.target_depth_ms = target;
        let mut offset = self.offset_ms(now_ms);
        if !self.playing {
            if offset < target {
                self.stats.current_depth_ms = offset;
                return Ok(self.silence(out));
            }
            self.playing = true;
        }
        let f = self.frame_ms;
        // Behind schedule with the next frame missing: skip to the first buffered frame, but
        // no further than the target allows.
        if !self.present(self.next_seq) && self.buffered > 0 && offset - target >= f {
            let max_skip = (((offset - target) / f) as u64).min(self.cap as u64);
            let mut k = 1;
            while k < max_skip && !self.present(self.next_seq + k) {
                k += 1;
            }
            self.next_seq += k;
            self.stats.lost += k;
            offset -= k as f64 * f;
        }
        let status = if self.present(self.next_seq) {
            let excess = offset - target;
            let can_drop = excess > f && self.present(self.next_seq + 1);
            if can_drop && (excess > FORCE_DROP_FRAMES * f || self.is_quiet(self.next_seq)) {
                self.drop_one(out);
                offset -= f;
            } else {
                self.play(out);
            }
            FrameStatus::Normal
        } else if self.buffered > 0 && offset >= target {
            // A later packet is here and this one is overdue: give it up.
            self.next_seq += 1;
            self.stats.lost += 1;
            self.conceal(out)
        } else {
            // Nothing later has arrived, or we are still below target: the packet may just be
            // late, so stretch with concealment (the delay grows by a frame) instead of skipping.
            self.stats.expanded += 1;
            offset += f;
            self.conceal(out)
        };
        self.stats.current_depth_ms = offset;
        Ok(status)
    }

    fn is_quiet(&self, seq: u64) -> bool {
        let e = self.slot_energy[self.slot(seq)];
        e <= QUIET_FLOOR || e <= QUIET_RATIO * self.energy_avg
    }

    /// Skip `next_seq`, cross-fading from its start into the following frame.
    fn drop_one(&mut self, out: &mut [i16]) {
        let mut dropped = std::mem::take(&mut self.scratch);
        self.take(self.next_seq, &mut dropped);
        self.next_seq += 1;
        self.stats.dropped += 1;
        self.take(self.next_seq, out);
        self.next_seq += 1;
        let n = self.fade_len.min(out.len());
        for i in 0..n {
            let w = (i + 1) as f32 / (n + 1) as f32;
            out[i] = (dropped[i] as f32 * (1.0 - w) + out[i] as f32 * w).round() as i16;
        }
        self.scratch = dropped;
        let _ = self.plc.good_frame(out);
        self.stats.played += 1;
    }

    /// Arrival-driven playout: the next frame if it is here, a concealed frame if it is missing
    /// but `reorder_window` later frames have overtaken it, otherwise `None`.
    pub fn pop_ready_into(&mut self, out: &mut [i16]) -> Result<Option<FrameStatus>, JitterError> {
        self.check_out(out)?;
        if !self.started {
            return Ok(None);
        }
        self.playing = true;
        if self.present(self.next_seq) {
            return Ok(Some(self.play(out)));
        }
        if self.buffered > 0 && self.highest_seq >= self.next_seq + self.cfg.reorder_window as u64 {
            self.next_seq += 1;
            self.stats.lost += 1;
            return Ok(Some(self.conceal(out)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711::Law;
    use proptest::prelude::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts allocations made by the current thread, to prove the hot path makes none.
    struct CountingAlloc;
    thread_local! { static ALLOCS: Cell<usize> = const { Cell::new(0) }; }
    unsafe impl GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            unsafe { System.dealloc(p, l) }
        }
    }
    #[global_allocator]
    static A: CountingAlloc = CountingAlloc;

    const F: usize = 160;

    fn pcm_cfg() -> JitterConfig {
        JitterConfig {
            codec: Codec::Pcm16,
            ..Default::default()
        }
    }

    /// A voiced-speech-like test signal: harmonics of a slowly gliding pitch.
    fn voice(n: usize) -> Vec<i16> {
        let mut ph = 0.0f64;
        (0..n)
            .map(|i| {
                let f0 = 120.0 + 30.0 * (i as f64 / 4000.0).sin();
                ph += 2.0 * std::f64::consts::PI * f0 / 8000.0;
                (3000.0 * (ph.sin() + 0.6 * (2.0 * ph).sin() + 0.3 * (3.0 * ph).sin())) as i16
            })
            .collect()
    }

    fn pcm_payload(x: &[i16]) -> Vec<u8> {
        x.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn frames(sig: &[i16]) -> Vec<Vec<u8>> {
        sig.chunks(F).map(pcm_payload).collect()
    }

    /// Pushes `(seq, arrival)` packets and pops every 20 ms up to `end_ms`; returns the
    /// concatenated output and statuses.
    fn run(
        jb: &mut JitterBuffer,
        payloads: &[Vec<u8>],
        mut arrivals: Vec<(u64, f64)>,
        end_ms: f64,
    ) -> (Vec<i16>, Vec<FrameStatus>) {
        arrivals.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut out = vec![0i16; F];
        let (mut pcm, mut st) = (Vec::new(), Vec::new());
        let mut i = 0;
        let mut now = 0.0;
        while now < end_ms {
            while i < arrivals.len() && arrivals[i].1 <= now {
                let (s, a) = arrivals[i];
                jb.push(s, s * 20, &payloads[s as usize], a).unwrap();
                i += 1;
            }
            st.push(jb.pop_into(&mut out, now).unwrap());
            pcm.extend_from_slice(&out);
            now += 20.0;
        }
        (pcm, st)
    }

    fn first_normal(st: &[FrameStatus]) -> usize {
        st.iter().position(|&s| s == FrameStatus::Normal).unwrap()
    }

    #[test]
    fn in_order_stream_is_played_intact_after_prebuffering() {
        let sig = voice(F * 50);
        let p = frames(&sig);
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        let arr = (0..50).map(|s| (s, s as f64 * 20.0 + 3.0)).collect();
        let (pcm, st) = run(&mut jb, &p, arr, 1200.0);
        let k = first_normal(&st);
        // Initial target 60 ms: the first packet (arrived at 3 ms) plays at the 80 ms tick.
        assert_eq!(k, 4);
        assert!(st[..k].iter().all(|&s| s == FrameStatus::Silence));
        assert!(
            st[k..k + 50].iter().all(|&s| s == FrameStatus::Normal),
            "{st:?}"
        );
        let delay = jb.plc.latency_samples();
        assert_eq!(&pcm[k * F + delay..(k + 50) * F], &sig[..50 * F - delay]);
        let s = jb.stats();
        assert_eq!(
            (s.received, s.played, s.lost, s.late, s.duplicate),
            (50, 50, 0, 0, 0)
        );
    }

    #[test]
    fn reordered_packets_are_played_in_sequence() {
        let sig = voice(F * 40);
        let p = frames(&sig);
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        // Swap pairs: odd packets arrive 15 ms early, before their predecessor.
        let arr = (0..40)
            .map(|s| (s, s as f64 * 20.0 + if s % 2 == 1 { 10.0 } else { 25.0 }))
            .collect();
        let (pcm, st) = run(&mut jb, &p, arr, 1200.0);
        let k = first_normal(&st);
        assert!(
            st[k..k + 40].iter().all(|&s| s == FrameStatus::Normal),
            "{st:?}"
        );
        let delay = jb.plc.latency_samples();
        assert_eq!(&pcm[k * F + delay..(k + 40) * F], &sig[..40 * F - delay]);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn duplicates_and_late_packets_are_reported_and_ignored() {
        let p = frames(&voice(F * 10));
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        assert_eq!(jb.push(0, 0, &p[0], 0.0).unwrap(), PushOutcome::Accepted);
        assert_eq!(jb.push(0, 0, &p[0], 1.0).unwrap(), PushOutcome::Duplicate);
        assert_eq!(jb.push(1, 20, &p[1], 20.0).unwrap(), PushOutcome::Accepted);
        let mut out = vec![0i16; F];
        assert_eq!(jb.pop_into(&mut out, 60.0).unwrap(), FrameStatus::Normal);
        assert_eq!(jb.push(0, 0, &p[0], 61.0).unwrap(), PushOutcome::Late);
        let s = jb.stats();
        assert_eq!(
            (s.received, s.duplicate, s.late, s.played, s.buffered_frames),
            (2, 1, 1, 1, 1)
        );
    }

    #[test]
    fn pcm16_and_g711_payloads_decode_exactly() {
        let sig = voice(F);
        for (codec, payload) in [
            (Codec::Pcm16, pcm_payload(&sig)),
            (Codec::Ulaw, {
                let mut c = vec![0u8; F];
                Law::Ulaw.encode_into(&sig, &mut c).unwrap();
                c
            }),
            (Codec::Alaw, {
                let mut c = vec![0u8; F];
                Law::Alaw.encode_into(&sig, &mut c).unwrap();
                c
            }),
        ] {
            let mut jb = JitterBuffer::new(JitterConfig {
                codec,
                ..Default::default()
            })
            .unwrap();
            jb.push(7, 140, &payload, 0.0).unwrap();
            let mut out = vec![0i16; F];
            assert_eq!(
                jb.pop_ready_into(&mut out).unwrap(),
                Some(FrameStatus::Normal)
            );
            let mut expect = vec![0i16; F];
            match codec {
                Codec::Pcm16 => expect.copy_from_slice(&sig),
                Codec::Ulaw => Law::Ulaw.decode_into(&payload, &mut expect).unwrap(),
                Codec::Alaw => Law::Alaw.decode_into(&payload, &mut expect).unwrap(),
            }
            assert_eq!(&out[30..], &expect[..F - 30], "{codec:?}");
        }
    }

    #[test]
    fn gap_is_concealed_for_60_ms_then_silent_and_resumes() {
        let sig = voice(F * 20);
        let p = frames(&sig);
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        let mut out = vec![0i16; F];
        let mut got = Vec::new();
        for s in (0..5).chain(11..20) {
            jb.push(s, s * 20, &p[s as usize], s as f64 * 20.0).unwrap();
            while let Some(st) = jb.pop_ready_into(&mut out).unwrap() {
                got.push(st);
            }
        }
        use FrameStatus::*;
        // The last lost frame fades in from the next one (look-ahead), so it is not silent.
        let expect = [Normal; 5]
            .iter()
            .chain(&[Concealed; 3])
            .chain(&[Silence; 2])
            .chain(&[Concealed; 1])
            .chain(&[Normal; 9])
            .copied()
            .collect::<Vec<_>>();
        assert_eq!(got, expect);
        let s = jb.stats();
        assert_eq!((s.lost, s.concealed, s.silence, s.played), (6, 4, 2, 14));
    }

    #[test]
    fn pop_ready_waits_for_reorder_window() {
        let p = frames(&voice(F * 10));
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        let mut out = vec![0i16; F];
        assert_eq!(
            jb.pop_ready_into(&mut out).unwrap(),
            None,
            "nothing before the first packet"
        );
        jb.push(0, 0, &p[0], 0.0).unwrap();
        assert_eq!(
            jb.pop_ready_into(&mut out).unwrap(),
            Some(FrameStatus::Normal)
        );
        assert_eq!(jb.pop_ready_into(&mut out).unwrap(), None);
        jb.push(2, 40, &p[2], 40.0).unwrap();
        assert_eq!(
            jb.pop_ready_into(&mut out).unwrap(),
            None,
            "1 is within the reorder window"
        );
        jb.push(1, 20, &p[1], 41.0).unwrap();
        assert_eq!(
            jb.pop_ready_into(&mut out).unwrap(),
            Some(FrameStatus::Normal)
        );
        assert_eq!(
            jb.pop_ready_into(&mut out).unwrap(),
            Some(FrameStatus::Normal)
        );
        jb.push(4, 80, &p[4], 80.0).unwrap();
        assert_eq!(jb.pop_ready_into(&mut out).unwrap(), None);
        jb.push(5, 100, &p[5], 100.0).unwrap();
        assert_eq!(
            jb.pop_ready_into(&mut out).unwrap(),
            Some(FrameStatus::Concealed)
        );
        assert_eq!(
            jb.pop_ready_into(&mut out).unwrap(),
            Some(FrameStatus::Normal)
        );
        assert_eq!(
            jb.pop_ready_into(&mut out).unwrap(),
            Some(FrameStatus::Normal)
        );
        assert_eq!(jb.pop_ready_into(&mut out).unwrap(), None);
        assert_eq!(jb.push(3, 60, &p[3], 101.0).unwrap(), PushOutcome::Late);
        assert_eq!(jb.stats().lost, 1);
    }

    use crate::plc::tests::max_step;

    #[test]
    fn loss_and_resume_have_no_discontinuity_spike() {
        let sig = voice(F * 60);
        let p = frames(&sig);
        for lost in [1u64, 2, 3, 5] {
            let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
            let arr = (0..60)
                .filter(|&s| !(20..20 + lost).contains(&s))
                .map(|s| (s, s as f64 * 20.0 + 1.0))
                .collect();
            let (pcm, st) = run(&mut jb, &p, arr, 1400.0);
            assert!(st.contains(&FrameStatus::Concealed));
            let k = first_normal(&st);
            let natural = max_step(&sig);
            let got = max_step(&pcm[k * F..]);
            assert!(
                got <= natural * 13 / 10,
                "lost {lost}: step {got} vs natural {natural}"
            );
        }
    }

    /// Deterministic Box-Muller normal from a xorshift generator.
    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform().max(1e-12), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    #[test]
    fn depth_adapts_up_with_jitter_and_back_down() {
        let n = 6000u64; // 120 s
        let p: Vec<Vec<u8>> = (0..n).map(|_| pcm_payload(&[0i16; F])).collect();
        let mut rng = Rng(0x9e3779b97f4a7c15);
        // 40 s of sd-40 ms jitter, then 80 s of sd-2 ms.
        let arr = (0..n)
            .map(|s| {
                let sd = if s < 2000 { 40.0 } else { 2.0 };
                (s, s as f64 * 20.0 + 50.0 + (rng.normal() * sd).abs())
            })
            .collect::<Vec<_>>();
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        let mut out = vec![0i16; F];
        let mut sorted = arr.clone();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (mut i, mut now) = (0, 0.0);
        let target_at = |t: f64, jb: &JitterBuffer| {
            (t, jb.stats().target_depth_ms, jb.stats().current_depth_ms)
        };
        let mut marks = Vec::new();
        let mut late_at_40s = 0;
        while now < n as f64 * 20.0 {
            while i < sorted.len() && sorted[i].1 <= now {
                let (s, a) = sorted[i];
                jb.push(s, s * 20, &p[s as usize], a).unwrap();
                i += 1;
            }
            jb.pop_into(&mut out, now).unwrap();
            if now == 40_000.0 {
                marks.push(target_at(now, &jb));
                late_at_40s = jb.stats().late;
            }
            if now == 119_000.0 {
                marks.push(target_at(now, &jb));
            }
            now += 20.0;
        }
        let (hi, lo) = (marks[0], marks[1]);
        // |N(0, 40)| has its 97% quantile near 87 ms.
        assert!(hi.1 > 70.0 && hi.1 < 110.0, "target under jitter {hi:?}");
        assert!(hi.2 >= hi.1 - 20.0, "depth follows target {hi:?}");
        assert!(lo.1 <= 25.0, "target after jitter stopped {lo:?}");
        assert!(lo.2 <= 25.0 + 20.0, "depth shrank {lo:?}");
        assert!((late_at_40s as f64) < 0.03 * 2000.0, "late {late_at_40s}");
        assert!(jb.stats().dropped > 0);
    }

    #[test]
    fn clock_driven_long_gap_conceals_then_silence_then_recovers_depth() {
        let n = 400u64;
        let sig = voice(F * n as usize);
        let p = frames(&sig);
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        // The platform skips 1 s of frames (seq 100..150): nothing arrives meanwhile.
        let arr = (0..n)
            .filter(|s| !(100..150).contains(s))
            .map(|s| (s, s as f64 * 20.0 + 2.0))
            .collect();
        let (_, st) = run(&mut jb, &p, arr, n as f64 * 20.0);
        let k = first_normal(&st);
        let gap_start = k + 100;
        use FrameStatus::*;
        assert_eq!(
            &st[gap_start..gap_start + 4],
            &[Concealed, Concealed, Concealed, Silence]
        );
        // Silence until the stream resumes; the last gap frame fades into it (look-ahead).
        let resume = gap_start + st[gap_start..].iter().position(|&s| s == Normal).unwrap();
        // 50 frames were skipped; excess delay from the start-up target is shed meanwhile.
        assert!(
            (45..=52).contains(&(resume - gap_start)),
            "{:?}",
            &st[gap_start..resume]
        );
        assert!(st[gap_start + 3..resume - 1].iter().all(|&s| s == Silence));
        assert_eq!(st[resume - 1], Concealed);
        assert!(st[resume..].iter().all(|&s| s == Normal));
        let s = jb.stats();
        assert_eq!(s.lost, 50);
        assert!(s.current_depth_ms <= s.target_depth_ms + 20.0, "{s:?}");
    }

    #[test]
    fn starvation_expands_and_keeps_the_late_packet() {
        let p = frames(&voice(F * 20));
        let mut jb = JitterBuffer::new(JitterConfig {
            initial_delay_ms: 20,
            ..pcm_cfg()
        })
        .unwrap();
        let mut out = vec![0i16; F];
        jb.push(0, 0, &p[0], 0.0).unwrap();
        jb.push(1, 20, &p[1], 20.0).unwrap();
        assert_eq!(jb.pop_into(&mut out, 20.0).unwrap(), FrameStatus::Normal);
        assert_eq!(jb.pop_into(&mut out, 40.0).unwrap(), FrameStatus::Normal);
        // Packet 2 is 50 ms late: the buffer stretches instead of skipping it.
        assert_eq!(jb.pop_into(&mut out, 60.0).unwrap(), FrameStatus::Concealed);
        assert_eq!(jb.pop_into(&mut out, 80.0).unwrap(), FrameStatus::Concealed);
        assert_eq!(jb.push(2, 40, &p[2], 90.0).unwrap(), PushOutcome::Accepted);
        assert_eq!(jb.pop_into(&mut out, 100.0).unwrap(), FrameStatus::Normal);
        let s = jb.stats();
        assert_eq!((s.expanded, s.lost, s.late, s.concealed), (2, 0, 0, 2));
        assert!(s.current_depth_ms > 50.0, "{s:?}");
    }

    #[test]
    fn far_ahead_packet_flushes_and_far_behind_restarts() {
        let p = frames(&voice(F * 2));
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        jb.push(10, 200, &p[0], 0.0).unwrap();
        jb.push(11, 220, &p[1], 20.0).unwrap();
        assert_eq!(
            jb.push(10 + 64 + 5, 0, &p[0], 40.0).unwrap(),
            PushOutcome::Flushed
        );
        let s = jb.stats();
        assert_eq!((s.flushed, s.buffered_frames), (2, 1));
        let mut out = vec![0i16; F];
        // The ring keeps the newest 64 frames: 16..=79, of which only 79 is here.
        assert_eq!(jb.stats().lost, 4);
        assert_eq!(
            jb.pop_ready_into(&mut out).unwrap(),
            Some(FrameStatus::Concealed)
        );
        assert_eq!(jb.push(0, 0, &p[0], 60.0).unwrap(), PushOutcome::Late);
        let mut jb2 = JitterBuffer::new(pcm_cfg()).unwrap();
        jb2.push(100_000, 0, &p[0], 0.0).unwrap();
        jb2.pop_ready_into(&mut out).unwrap();
        assert_eq!(jb2.push(3, 0, &p[0], 1.0).unwrap(), PushOutcome::Restarted);
        assert_eq!(
            jb2.pop_ready_into(&mut out).unwrap(),
            Some(FrameStatus::Normal)
        );
        assert_eq!(jb2.stats().restarts, 1);
    }

    #[test]
    fn errors_name_values_and_ranges() {
        let mut jb = JitterBuffer::new(JitterConfig::default()).unwrap();
        let e = jb.push(0, 0, &[0u8; 100], 0.0).unwrap_err();
        assert_eq!(
            e,
            JitterError::PayloadLength {
                codec: Codec::Ulaw,
                got: 100,
                expected: 160
            }
        );
        assert!(e.to_string().contains("100") && e.to_string().contains("160"));
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        assert_eq!(
            jb.push(0, 0, &[0u8; 319], 0.0).unwrap_err(),
            JitterError::OddPcm16Length(319)
        );
        assert!(jb.push(0, 0, &[0u8; 320], f64::NAN).is_err());
        let e = jb.push(u64::MAX, 0, &[0u8; 320], 0.0).unwrap_err();
        assert_eq!(e, JitterError::SeqOutOfRange(u64::MAX));
        assert!(e.to_string().contains("4611686018427387904"));
        let mut out = vec![0i16; 10];
        assert_eq!(
            jb.pop_into(&mut out, 0.0).unwrap_err(),
            JitterError::OutputLength {
                expected: 160,
                got: 10
            }
        );
        for (cfg, name, val) in [
            (
                JitterConfig {
                    frame_ms: 25,
                    ..Default::default()
                },
                "frame_ms",
                "25",
            ),
            (
                JitterConfig {
                    sample_rate: 11025,
                    ..Default::default()
                },
                "sample_rate",
                "11025",
            ),
            (
                JitterConfig {
                    min_delay_ms: 600,
                    ..Default::default()
                },
                "min_delay_ms",
                "600",
            ),
            (
                JitterConfig {
                    max_packets: 10,
                    ..Default::default()
                },
                "max_packets",
                "10",
            ),
            (
                JitterConfig {
                    quantile: 1.5,
                    ..Default::default()
                },
                "quantile",
                "1.5",
            ),
            (
                JitterConfig {
                    forget_factor: 0.5,
                    ..Default::default()
                },
                "forget_factor",
                "0.5",
            ),
            (
                JitterConfig {
                    reorder_window: 0,
                    ..Default::default()
                },
                "reorder_window",
                "0",
            ),
            (
                JitterConfig {
                    max_delay_ms: 9000,
                    ..Default::default()
                },
                "max_delay_ms",
                "9000",
            ),
        ] {
            let msg = JitterBuffer::new(cfg).unwrap_err().to_string();
            assert!(
                msg.contains(name) && msg.contains(val) && msg.contains("valid"),
                "{msg}"
            );
        }
    }

    #[test]
    fn push_and_pop_do_not_allocate() {
        let p = frames(&voice(F * 4));
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        let mut out = vec![0i16; F];
        let before = ALLOCS.with(|c| c.get());
        for s in 0..2000u64 {
            let now = s as f64 * 20.0;
            if s % 7 != 3 {
                jb.push(s, s * 20, &p[(s % 4) as usize], now + (s % 5) as f64 * 9.0)
                    .unwrap();
            }
            jb.pop_into(&mut out, now).unwrap();
            jb.pop_ready_into(&mut out).unwrap();
        }
        let _ = jb.stats();
        assert_eq!(ALLOCS.with(|c| c.get()), before);
    }

    /// Slots are picked by a mask over a power-of-two ring larger than `max_packets`: a full
    /// buffer of `max_packets` frames, filled out of order at several points of the ring, must
    /// still give every frame back, in order.
    #[test]
    fn a_full_buffer_returns_every_frame_at_any_ring_position() {
        let cap = 30; // ring of 32 slots
        let payload = |seq: u64| {
            let v = (seq as i16).to_le_bytes();
            v.repeat(F)
        };
        for start in [0u64, 7, 31, 32, 1000, 1 << 40] {
            let mut jb = JitterBuffer::new(JitterConfig {
                codec: Codec::Pcm16,
                max_packets: cap,
                ..Default::default()
            })
            .unwrap();
            let mut out = vec![0i16; F];
            let mut next = start;
            for round in 0..4u64 {
                let first = start + round * cap as u64;
                // The first frame last, the rest newest first: every slot of the window is
                // written before any is read.
                let mut order: Vec<u64> = (first + 1..first + cap as u64).rev().collect();
                order.push(first);
                if round == 0 {
                    order.rotate_right(1); // the stream has to start somewhere
                }
                for seq in order {
                    assert_eq!(
                        jb.push(seq, 0, &payload(seq), 0.0).unwrap(),
                        PushOutcome::Accepted,
                        "start {start} seq {seq}"
                    );
                }
                assert_eq!(jb.stats().buffered_frames, cap);
                for _ in 0..cap {
                    assert_eq!(
                        jb.pop_ready_into(&mut out).unwrap(),
                        Some(FrameStatus::Normal)
                    );
                    // The concealer delays its output by a few ms: the second half of the
                    // frame is all this frame's.
                    assert!(
                        out[F / 2..].iter().all(|&x| x == next as i16),
                        "start {start} frame {next}"
                    );
                    next += 1;
                }
                assert_eq!(jb.pop_ready_into(&mut out).unwrap(), None);
            }
        }
    }

    #[test]
    fn reset_forgets_everything() {
        let p = frames(&voice(F));
        let mut jb = JitterBuffer::new(pcm_cfg()).unwrap();
        jb.push(5, 100, &p[0], 0.0).unwrap();
        jb.reset();
        assert_eq!(jb.stats(), JitterBuffer::new(pcm_cfg()).unwrap().stats());
        let mut out = vec![1i16; F];
        assert_eq!(jb.pop_into(&mut out, 1000.0).unwrap(), FrameStatus::Silence);
        assert!(out.iter().all(|&x| x == 0));
    }

    proptest! {
        #[test]
        fn no_panic_on_arbitrary_sequences(ops in prop::collection::vec(
            (0u8..4, any::<u64>(), 0u64..200, 0usize..400, -1e6f64..1e6), 1..200)) {
            let mut jb = JitterBuffer::new(JitterConfig { codec: Codec::Pcm16, max_packets: 30, ..Default::default() }).unwrap();
            let mut out = vec![0i16; F];
            let payload = vec![0x55u8; 400];
            let mut now = 0.0;
            for (op, big, small, len, t) in ops {
                let seq = if big % 3 == 0 { big } else { small };
                match op {
                    0 | 1 => { let _ = jb.push(seq, big, &payload[..len], t); let _ = jb.push(small, 0, &payload[..320], now + t / 1e4); }
                    2 => { now += 20.0; prop_assert!(jb.pop_into(&mut out, now).is_ok()); }
                    _ => { let _ = jb.pop_ready_into(&mut out); }
                }
                let s = jb.stats();
                prop_assert!(s.buffered_frames <= 30);
            }
        }
    }
}
