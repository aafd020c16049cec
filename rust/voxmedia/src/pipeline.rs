//! The per-frame hot path of a call, one call per WebSocket message each way.
//!
//! Inbound: a Twilio `media` message exactly as received -> JSON fields -> base64 -> jitter
//! buffer (reorder, conceal gaps, G.711 decode) -> VAD on the 8 kHz frame -> resample to the
//! STT rate. Outbound: agent PCM at any rate -> resample to 8 kHz -> 20 ms frames -> G.711 ->
//! base64 -> ready-to-send `media` JSON. After construction neither direction allocates in
//! steady state: every buffer is owned by the pipeline and reused.

use crate::g711::Law;
use crate::jitter::{Codec, FrameStatus, JitterBuffer, JitterConfig, JitterError};
use crate::resample::{Quality, ResampleError, Resampler, OUTPUT_GROUP};
use crate::vad::{Vad, VadConfig, VadError};
use crate::wire::twilio::{self, Event, MediaMessageBuilder};
use crate::wire::FrameError;
use std::fmt;

/// Construction errors of a pipeline, by the component that refused its settings.
#[derive(Debug)]
pub enum PipelineError {
    Resample(ResampleError),
    Vad(VadError),
    Jitter(JitterError),
    /// A setting of the pipeline itself (`value` as wide as a binding's integers).
    Setting {
        name: &'static str,
        value: i128,
        valid: &'static str,
    },
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Resample(e) => e.fmt(f),
            PipelineError::Vad(e) => e.fmt(f),
            PipelineError::Jitter(e) => e.fmt(f),
            PipelineError::Setting { name, value, valid } => {
                write!(f, "{name} = {value} is not supported; valid: {valid}")
            }
        }
    }
}

impl std::error::Error for PipelineError {}

/// Telephony audio on these platforms is 8 kHz narrowband.
pub const WIRE_RATE: u32 = 8000;

/// The `frame_ms` values [`Inbound`] takes, as its error names them.
pub const INBOUND_FRAME_MS: &str = "10, 20 or 30";
/// The `frame_ms` values [`Outbound`] takes, as its error names them.
pub const OUTBOUND_FRAME_MS: &str = "10, 20, 30, 40, 60 or 100";
/// The smallest `max_message_bytes` [`Inbound`] takes (a media message is ~400 bytes).
pub const MIN_MESSAGE_BYTES: usize = 256;

#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// Rate of the PCM handed to speech recognition.
    pub out_rate: u32,
    pub frame_ms: u32,
    pub law: Law,
    /// Messages longer than this are refused before parsing.
    pub max_message_bytes: usize,
    pub vad: VadConfig,
    /// Frames that may arrive after a missing one before it is concealed.
    pub reorder_window: u32,
    /// The resampler's design, from the wire to `out_rate`. `Quality::Phone` by default: the
    /// audio is G.711, whose noise hides what the voice design adds, and it is 1.25 ms sooner
    /// and a third less work to 16 kHz.
    pub quality: Quality,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            out_rate: 16000,
            frame_ms: 20,
            law: Law::Ulaw,
            max_message_bytes: 64 * 1024,
            vad: VadConfig::default(),
            reorder_window: 2,
            quality: Quality::Phone,
        }
    }
}

/// What one inbound message produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundStep {
    pub event: Event,
    /// 20 ms frames released by the jitter buffer (usually 1; 0 while it waits for a
    /// reordered packet; more after a gap is filled).
    pub frames: u32,
    /// How many of those were concealed losses.
    pub concealed: u32,
    /// VAD decision of the last released frame, `None` when no frame was released.
    pub speech: Option<bool>,
}

pub struct Inbound {
    cfg: InboundConfig,
    jitter: JitterBuffer,
    vad: Vad,
    resampler: Option<Resampler>,
    frame_bytes: usize,
    payload: Vec<u8>,
    scratch: Vec<u8>,
    frame: Vec<i16>,
    /// Output PCM in `out[..out_len]`. `out` stays at its high-water length so that a frame
    /// is written into it without zero-filling the room first.
    out: Vec<i16>,
    out_len: usize,
    next_seq: u64,
}

impl Inbound {
    pub fn new(cfg: InboundConfig) -> Result<Self, PipelineError> {
        if !matches!(cfg.frame_ms, 10 | 20 | 30) {
            return Err(PipelineError::Setting {
                name: "frame_ms",
                value: cfg.frame_ms.into(),
                valid: INBOUND_FRAME_MS,
            });
        }
        if cfg.max_message_bytes < MIN_MESSAGE_BYTES {
            return Err(PipelineError::Setting {
                name: "max_message_bytes",
                value: cfg.max_message_bytes as i128,
                valid: ">= 256",
            });
        }
        let frame_len = (WIRE_RATE * cfg.frame_ms / 1000) as usize;
        let mut jcfg = JitterConfig {
            sample_rate: WIRE_RATE,
            frame_ms: cfg.frame_ms,
            codec: match cfg.law {
                Law::Ulaw => Codec::Ulaw,
                Law::Alaw => Codec::Alaw,
            },
            reorder_window: cfg.reorder_window as usize,
            ..JitterConfig::default()
        };
        // The ring is sized here, not by the caller, so its size must follow what the other
        // settings need (10 ms frames and a wide reorder window need more than the default).
        jcfg.max_packets = jcfg.packets_default();
        let jitter = JitterBuffer::new(jcfg).map_err(PipelineError::Jitter)?;
        let vad = Vad::new(
            WIRE_RATE,
            VadConfig {
                frame_ms: cfg.frame_ms,
                ..cfg.vad.clone()
            },
        )
        .map_err(PipelineError::Vad)?;
        let resampler = if cfg.out_rate == WIRE_RATE {
            None
        } else {
            Some(
                Resampler::new(WIRE_RATE, cfg.out_rate, cfg.quality)
                    .map_err(PipelineError::Resample)?,
            )
        };
        let out_cap = resampler
            .as_ref()
            .map_or(frame_len, |r| r.output_len_max(frame_len))
            * 8;
        Ok(Inbound {
            frame_bytes: frame_len,
            // Room for twice a frame, so an oversized payload is measured, not truncated.
            payload: vec![0; frame_len * 2],
            scratch: Vec::with_capacity(frame_len * 3),
            frame: vec![0; frame_len],
            out: vec![0; out_cap],
            out_len: 0,
            next_seq: 1,
            jitter,
            vad,
            resampler,
            cfg,
        })
    }

    /// Handle one text message. Non-media events are classified and left to the caller.
    pub fn process(&mut self, msg: &[u8]) -> Result<InboundStep, FrameError> {
        self.out_len = 0;
        let scanned = twilio::scan(msg, self.cfg.max_message_bytes)?;
        let mut step = InboundStep {
            event: scanned.event,
            frames: 0,
            concealed: 0,
            speech: None,
        };
        let Some(media) = scanned.media else {
            return Ok(step);
        };
        let n = twilio::decode_payload(&media.payload, &mut self.scratch, &mut self.payload)
            .map_err(|e| match e {
                FrameError::PayloadSize { got, .. } => FrameError::PayloadSize {
                    got,
                    expected: self.frame_bytes,
                },
                e => e,
            })?;
        if n != self.frame_bytes {
            return Err(FrameError::PayloadSize {
                got: n,
                expected: self.frame_bytes,
            });
        }
        let seq = media.chunk.unwrap_or(self.next_seq);
        self.next_seq = seq.wrapping_add(1);
        let ts = media
            .timestamp
            .unwrap_or(seq.saturating_mul(self.cfg.frame_ms as u64));
        // The size was checked above, so the only refusal left is a counter out of range.
        self.jitter
            .push(seq, ts, &self.payload[..n], ts as f64)
            .map_err(|_| FrameError::BadField {
                field: "media.chunk",
                what: "counter out of range",
            })?;
        // `frame` has the buffer's frame length, so pop cannot fail.
        while let Ok(Some(status)) = self.jitter.pop_ready_into(&mut self.frame) {
            step.frames += 1;
            if status != FrameStatus::Normal {
                step.concealed += 1;
            }
            step.speech = Some(self.vad.is_speech(&self.frame).unwrap_or(false));
            let start = self.out_len;
            let room = self
                .resampler
                .as_ref()
                .map_or(self.frame.len(), |r| r.output_len_max(self.frame.len()));
            if self.out.len() < start + room {
                self.out.resize(start + room, 0);
            }
            self.out_len += match &mut self.resampler {
                Some(r) => r
                    .process_into(&self.frame, &mut self.out[start..start + room])
                    .unwrap_or(0),
                None => {
                    self.out[start..start + room].copy_from_slice(&self.frame);
                    room
                }
            };
        }
        Ok(step)
    }

    /// PCM at `out_rate` produced by the last `process` call.
    pub fn output(&self) -> &[i16] {
        &self.out[..self.out_len]
    }

    pub fn vad(&self) -> &Vad {
        &self.vad
    }

    pub fn jitter(&self) -> &JitterBuffer {
        &self.jitter
    }

    /// The resampler's design (`None` when the output is at the wire rate).
    pub fn quality(&self) -> Option<Quality> {
        self.resampler.as_ref().map(Resampler::quality)
    }

    pub fn out_rate(&self) -> u32 {
        self.cfg.out_rate
    }

    /// Delay this path adds to the caller's audio, in ms.
    pub fn latency_ms(&self) -> f64 {
        self.jitter.concealment_latency_ms()
            + self.resampler.as_ref().map_or(0.0, |r| r.latency_ms())
    }

    pub fn reset(&mut self) {
        self.jitter.reset();
        self.vad.reset();
        if let Some(r) = &mut self.resampler {
            r.reset();
        }
        self.out_len = 0;
        self.next_seq = 1;
    }
}

/// Messages (and their bytes) an `Outbound` keeps room for between calls: 16 frames, more
/// than a streamed chunk of TTS gives per call.
const KEEP_MESSAGES: usize = 16;
const KEEP_MESSAGE_BYTES: usize = KEEP_MESSAGES * 512;

/// Agent audio -> paced-ready Twilio media messages.
///
/// Audio comes in two forms: PCM at the agent's rate (`process`, `flush`), or G.711 codes of
/// this outbound's law at 8 kHz (`process_codes`), which most cloud TTS can speak and which then
/// needs no resampling or encoding. Each message is stored behind its WebSocket frame header,
/// so a server that writes its own frames (`frames`) sends them as they are, and a client API
/// (`messages`) gets the JSON alone; building the header costs a few bytes per message.
pub struct Outbound {
    builder: MediaMessageBuilder,
    law: Law,
    in_rate: u32,
    resampler: Option<Resampler>,
    frame_len: usize,
    /// 8 kHz samples not yet making a whole frame, at the front of `wire`.
    wire: Vec<i16>,
    codes: Vec<u8>,
    /// G.711 codes given by `process_codes` not yet making a whole frame.
    codes_rest: Vec<u8>,
    /// The law's code for digital silence (what a partial frame is padded with).
    silence: u8,
    /// PCM went into the resampler since it was last flushed or reset: only then does a flush
    /// have a filter tail to drain (a resampler flushed with nothing in it gives a frame of
    /// silence).
    fed: bool,
    /// The messages of the last call.
    out: Frames,
}

/// Framed messages, concatenated: frame `i` starts where frame `i - 1` ends, its message (the
/// JSON after the header) at `starts[i]`, and both end at `ends[i]`.
struct Frames {
    bytes: Vec<u8>,
    starts: Vec<usize>,
    ends: Vec<usize>,
}

impl Frames {
    fn new() -> Self {
        Frames {
            bytes: Vec::with_capacity(KEEP_MESSAGE_BYTES),
            starts: Vec::with_capacity(KEEP_MESSAGES),
            ends: Vec::with_capacity(KEEP_MESSAGES),
        }
    }

    /// Appends the media message for one frame of `codes`.
    fn push(&mut self, builder: &MediaMessageBuilder, codes: &[u8]) {
        self.starts
            .push(builder.append_framed(codes, &mut self.bytes));
        self.ends.push(self.bytes.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.starts.clear();
        self.ends.clear();
    }

    /// Gives back what a bulk call grew (see `Outbound::begin`).
    fn shrink(&mut self) {
        if self.bytes.capacity() > KEEP_MESSAGE_BYTES {
            self.bytes.shrink_to(KEEP_MESSAGE_BYTES);
        }
        if self.ends.capacity() > KEEP_MESSAGES {
            self.starts.shrink_to(KEEP_MESSAGES);
            self.ends.shrink_to(KEEP_MESSAGES);
        }
    }
}

impl Outbound {
    /// `quality` designs the resampler from `in_rate` to the 8 kHz wire: `Quality::Phone` is
    /// made for this (see its doc: G.711 hides the difference, and it is cheaper and sooner).
    pub fn new(
        stream_sid: &str,
        in_rate: u32,
        law: Law,
        frame_ms: u32,
        quality: Quality,
    ) -> Result<Self, PipelineError> {
        if !matches!(frame_ms, 10 | 20 | 30 | 40 | 60 | 100) {
            return Err(PipelineError::Setting {
                name: "frame_ms",
                value: frame_ms.into(),
                valid: OUTBOUND_FRAME_MS,
            });
        }
        let frame_len = (WIRE_RATE * frame_ms / 1000) as usize;
        let resampler = if in_rate == WIRE_RATE {
            None
        } else {
            let mut r =
                Resampler::new(in_rate, WIRE_RATE, quality).map_err(PipelineError::Resample)?;
            // Frames are whole groups of the resampler's grouped stage (from 22.05 and 44.1
            // kHz): the samples a held group keeps back are ones a frame would wait for anyway,
            // and the resampler and the framing start together (both restart on flush and
            // reset), so every frame leaves in the same call as without the hold.
            r.hold_partial_groups(frame_len % OUTPUT_GROUP == 0);
            Some(r)
        };
        let mut silence = [0u8];
        // One sample in, one code out: cannot fail.
        let _ = law.encode_into(&[0], &mut silence);
        Ok(Outbound {
            builder: MediaMessageBuilder::new(stream_sid),
            law,
            in_rate,
            resampler,
            frame_len,
            wire: Vec::with_capacity(frame_len * KEEP_MESSAGES),
            codes: vec![0; frame_len],
            codes_rest: Vec::with_capacity(frame_len),
            silence: silence[0],
            fed: false,
            out: Frames::new(),
        })
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// The resampler's design (`None` when the agent speaks at the wire rate).
    pub fn quality(&self) -> Option<Quality> {
        self.resampler.as_ref().map(Resampler::quality)
    }

    /// Clears the last call's messages, and gives back what a bulk call grew: a call's steady
    /// state is 20 ms chunks, and a reply handed over whole (an echo, a TTS clause) must not
    /// pin its size for the rest of the call. Shrinking reallocates only after such a call.
    fn begin(&mut self) {
        self.out.clear();
        self.out.shrink();
        let keep_wire = self.frame_len * KEEP_MESSAGES;
        if self.wire.capacity() > keep_wire {
            self.wire.shrink_to(keep_wire);
        }
    }

    /// Add agent PCM; returns the number of whole-frame messages now ready (see `messages`).
    /// Codes left waiting by `process_codes` go first, padded to a frame with silence: a change
    /// of form is the end of that utterance, and its audio must not play after this one.
    pub fn process(&mut self, pcm: &[i16]) -> usize {
        self.begin();
        self.finish_codes();
        self.fed |= !pcm.is_empty();
        match &mut self.resampler {
            Some(r) => {
                let start = self.wire.len();
                self.wire.resize(start + r.output_len_max(pcm.len()), 0);
                let k = r.process_into(pcm, &mut self.wire[start..]).unwrap_or(0);
                self.wire.truncate(start + k);
            }
            None => self.wire.extend_from_slice(pcm),
        }
        self.emit_whole_frames();
        self.out.len()
    }

    /// End of an utterance: drain the resampler and pad the last partial frame (PCM or codes)
    /// with silence.
    pub fn flush(&mut self) -> usize {
        self.begin();
        self.finish_codes();
        self.finish_pcm();
        self.out.len()
    }

    /// Add G.711 codes of this outbound's law at 8 kHz (no resampling, no encoding); with
    /// `last`, the final partial frame is padded with silence. PCM still waiting in the
    /// resampler or for a whole frame goes first (flushed as by `flush`), for the same reason
    /// codes go first in `process`. Returns the number of messages now ready.
    pub fn process_codes(&mut self, codes: &[u8], last: bool) -> usize {
        self.begin();
        self.finish_pcm();
        let mut codes = codes;
        if !self.codes_rest.is_empty() {
            let take = (self.frame_len - self.codes_rest.len()).min(codes.len());
            self.codes_rest.extend_from_slice(&codes[..take]);
            codes = &codes[take..];
            if self.codes_rest.len() == self.frame_len {
                self.out.push(&self.builder, &self.codes_rest);
                self.codes_rest.clear();
            }
        }
        let mut frames = codes.chunks_exact(self.frame_len);
        for f in &mut frames {
            self.out.push(&self.builder, f);
        }
        self.codes_rest.extend_from_slice(frames.remainder());
        if last {
            self.finish_codes();
        }
        self.out.len()
    }

    /// Pads waiting codes to a whole frame with silence and emits it.
    fn finish_codes(&mut self) {
        if self.codes_rest.is_empty() {
            return;
        }
        self.codes_rest.resize(self.frame_len, self.silence);
        self.out.push(&self.builder, &self.codes_rest);
        self.codes_rest.clear();
    }

    /// Drains the resampler, pads the PCM to a whole frame with silence and emits it.
    fn finish_pcm(&mut self) {
        if let (Some(r), true) = (&mut self.resampler, self.fed) {
            let start = self.wire.len();
            self.wire.resize(start + r.flush_len_max(), 0);
            let k = r.flush_into(&mut self.wire[start..]).unwrap_or(0);
            self.wire.truncate(start + k);
            r.reset();
        }
        self.fed = false;
        let rem = self.wire.len() % self.frame_len;
        if rem != 0 {
            self.wire.resize(self.wire.len() + self.frame_len - rem, 0);
        }
        self.emit_whole_frames();
    }

    /// Drop everything not yet sent (barge-in).
    pub fn reset(&mut self) {
        self.wire.clear();
        self.codes_rest.clear();
        self.out.clear();
        self.fed = false;
        if let Some(r) = &mut self.resampler {
            r.reset();
        }
    }

    fn emit_whole_frames(&mut self) {
        let whole = self.wire.len() / self.frame_len * self.frame_len;
        for f in self.wire[..whole].chunks_exact(self.frame_len) {
            // Sizes are equal by construction, so encoding cannot fail.
            let _ = self.law.encode_into(f, &mut self.codes);
            self.out.push(&self.builder, &self.codes);
        }
        self.wire.drain(..whole);
    }

    /// Messages produced by the last `process`/`flush`/`process_codes`, each a complete JSON
    /// text.
    pub fn messages(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        let out = &self.out;
        out.starts
            .iter()
            .zip(&out.ends)
            .map(|(&s, &e)| &out.bytes[s..e])
    }

    /// The same messages, each as a whole unmasked WebSocket text frame (header included),
    /// ready for a server to write.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        let out = &self.out;
        let mut start = 0;
        out.ends.iter().map(move |&e| {
            let f = &out.bytes[start..e];
            start = e;
            f
        })
    }

    /// Audio held back for want of a whole frame, in 8 kHz samples (PCM or codes), including
    /// what the resampler holds back for a whole group.
    pub fn pending_samples(&self) -> usize {
        let held = self.resampler.as_ref().map_or(0, Resampler::held_len);
        self.wire.len() + self.codes_rest.len() + held
    }

    pub fn latency_ms(&self) -> f64 {
        self.resampler.as_ref().map_or(0.0, |r| r.latency_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64_simd::STANDARD;
    use proptest::prelude::*;

    const SID: &str = "MZ1";

    /// The payload codes of each message, checking each frame is its header then its message.
    fn payloads(out: &Outbound) -> Vec<Vec<u8>> {
        assert_eq!(out.frames().len(), out.messages().len());
        out.frames()
            .zip(out.messages())
            .map(|(f, m)| {
                let mut header = Vec::new();
                crate::wire::ws::push_text_header(m.len(), &mut header);
                assert_eq!(f, [&header[..], m].concat());
                let text = std::str::from_utf8(m).unwrap();
                let b64 = text
                    .strip_prefix(r#"{"event":"media","streamSid":"MZ1","media":{"payload":""#)
                    .and_then(|t| t.strip_suffix(r#""}}"#))
                    .expect("a media message");
                STANDARD.decode_to_vec(b64).unwrap()
            })
            .collect()
    }

    fn codes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 37 % 251) as u8).collect()
    }

    /// The jitter ring is sized by the pipeline, so any reorder window the jitter buffer
    /// takes must work at every frame length (10 ms frames and a window of 20 used to be
    /// refused naming `max_packets`, which the caller cannot set); a window out of range is
    /// refused naming the window.
    #[test]
    fn every_reorder_window_works_at_every_frame_length() {
        for frame_ms in [10, 20, 30] {
            for reorder_window in [1, 2, 20, 50] {
                let cfg = InboundConfig {
                    frame_ms,
                    reorder_window,
                    ..InboundConfig::default()
                };
                if let Err(e) = Inbound::new(cfg) {
                    panic!("{frame_ms} ms, window {reorder_window}: {e}");
                }
            }
        }
        for reorder_window in [0, 51] {
            let cfg = InboundConfig {
                frame_ms: 10,
                reorder_window,
                ..InboundConfig::default()
            };
            let e = Inbound::new(cfg).err().expect("refused").to_string();
            assert!(e.starts_with("reorder_window = "), "{e}");
            assert!(e.contains("1..=50"), "{e}");
        }
    }

    #[test]
    fn codes_are_framed_as_given_and_the_last_frame_padded_with_the_laws_silence() {
        for (law, silence) in [(Law::Ulaw, 0xff), (Law::Alaw, 0xd5)] {
            let mut out = Outbound::new(SID, 8000, law, 20, Quality::Phone).unwrap();
            let c = codes(400);
            assert_eq!(out.process_codes(&c, false), 2);
            assert_eq!(payloads(&out), [c[..160].to_vec(), c[160..320].to_vec()]);
            assert_eq!(out.pending_samples(), 80);
            assert_eq!(out.process_codes(&[], true), 1);
            let mut last = c[320..].to_vec();
            last.resize(160, silence);
            assert_eq!(payloads(&out), [last]);
            assert_eq!(out.pending_samples(), 0);
        }
    }

    #[test]
    fn a_change_of_form_sends_what_waits_in_the_other_form_first() {
        let mut out = Outbound::new(SID, 8000, Law::Ulaw, 20, Quality::Phone).unwrap();
        let c = codes(100);
        assert_eq!(out.process_codes(&c, false), 0);
        // PCM after codes: the codes' frame (padded) first.
        let pcm = vec![1000i16; 200];
        assert_eq!(out.process(&pcm), 2);
        let got = payloads(&out);
        let mut first = c.clone();
        first.resize(160, 0xff);
        assert_eq!(got[0], first);
        assert_eq!(got[1], vec![crate::g711::ulaw_encode_sample(1000); 160]);
        // Codes after PCM: the PCM's partial frame (padded) first.
        assert_eq!(out.process_codes(&c, true), 2);
        let got = payloads(&out);
        let mut pcm_tail = vec![crate::g711::ulaw_encode_sample(1000); 40];
        pcm_tail.resize(160, 0xff);
        assert_eq!(got, [pcm_tail, first]);
    }

    #[test]
    fn reset_drops_waiting_codes_and_pcm() {
        let mut out = Outbound::new(SID, 16000, Law::Ulaw, 20, Quality::Phone).unwrap();
        out.process_codes(&codes(100), false);
        out.process(&[1000; 100]);
        out.reset();
        assert_eq!(out.pending_samples(), 0);
        assert_eq!(out.flush(), 0);
    }

    #[test]
    fn a_resampler_with_nothing_in_it_adds_no_frame() {
        // Codes through a 16 kHz outbound: no filter tail of silence between their frames.
        let mut out = Outbound::new(SID, 16000, Law::Ulaw, 20, Quality::Phone).unwrap();
        assert_eq!(out.process_codes(&codes(100), false), 0);
        assert_eq!(out.process_codes(&codes(60), false), 1);
        assert_eq!(out.flush(), 0);
        // PCM then flush drains the tail once; a second flush has nothing to add.
        // (320 samples at 16 kHz are one whole frame at once; the delay is in the content.)
        assert_eq!(out.process(&[1000; 320]), 1);
        assert_eq!(out.flush(), 1);
        assert_eq!(out.flush(), 0);
    }

    /// Agent PCM at `rate` (a speech-like mix that moves every sample).
    fn agent_pcm(rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / rate as f64;
                let v = 9000.0 * (2.0 * std::f64::consts::PI * 310.0 * t).sin()
                    + 4000.0 * (2.0 * std::f64::consts::PI * 2630.0 * t).sin();
                v as i16 ^ (i as i16 & 7)
            })
            .collect()
    }

    /// The frames of each call, for `pcm` split at `cuts` and then flushed, twice (two
    /// utterances on one object), with the resampler holding partial groups (as
    /// `Outbound::new` sets it for these frame lengths) or not.
    fn frames_per_call(
        rate: u32,
        frame_ms: u32,
        hold: bool,
        pcm: &[i16],
        cuts: &[usize],
    ) -> Vec<Vec<Vec<u8>>> {
        let mut out = Outbound::new(SID, rate, Law::Ulaw, frame_ms, Quality::Phone).unwrap();
        out.resampler.as_mut().unwrap().hold_partial_groups(hold);
        let mut calls = Vec::new();
        for _ in 0..2 {
            let mut at = 0;
            for &cut in cuts.iter().chain([&pcm.len()]) {
                out.process(&pcm[at..cut]);
                calls.push(payloads(&out));
                at = cut;
            }
            out.flush();
            calls.push(payloads(&out));
        }
        calls
    }

    #[test]
    fn holding_partial_groups_sends_every_frame_in_the_same_call() {
        for rate in [11025, 22050, 44100] {
            let pcm = agent_pcm(rate, rate as usize);
            let chunk = rate as usize / 50;
            for frame_ms in [10, 20, 30, 100] {
                // 20 ms calls, 100 ms calls, and calls of no whole number of output samples.
                for step in [chunk, 5 * chunk, 997] {
                    let cuts: Vec<usize> = (step..pcm.len()).step_by(step).collect();
                    let held = frames_per_call(rate, frame_ms, true, &pcm, &cuts);
                    let plain = frames_per_call(rate, frame_ms, false, &pcm, &cuts);
                    assert_eq!(
                        held, plain,
                        "{rate} Hz, {frame_ms} ms frames, {step}-sample calls"
                    );
                }
            }
        }
    }

    #[test]
    fn the_outbound_resampler_holds_partial_groups_from_the_44k1_family() {
        for (rate, holds) in [(22050, true), (44100, true), (11025, true), (16000, false)] {
            let mut out = Outbound::new(SID, rate, Law::Ulaw, 20, Quality::Phone).unwrap();
            // 15 ms in 5 ms calls: no whole frame yet, so what the framing holds is what the
            // resampler gave it.
            let step = rate as usize / 200;
            let pcm = agent_pcm(rate, 3 * step);
            for c in pcm.chunks(step) {
                assert_eq!(out.process(c), 0);
            }
            let mut plain = Resampler::new(rate, WIRE_RATE, Quality::Phone).unwrap();
            let mut buf = vec![0; plain.output_len_max(pcm.len())];
            let ready = plain.process_into(&pcm, &mut buf).unwrap();
            let framing = out.wire.len();
            if holds {
                assert_ne!(
                    ready % OUTPUT_GROUP,
                    0,
                    "{rate}: the test needs a partial group"
                );
                assert_eq!(framing, ready / OUTPUT_GROUP * OUTPUT_GROUP, "{rate}");
            } else {
                assert_eq!(framing, ready, "{rate}");
            }
            // What waits is counted the same either way.
            assert_eq!(out.pending_samples(), ready, "{rate}");
        }
    }

    proptest! {
        /// With the hold, any split of agent PCM gives each frame in the call that gives it
        /// without (and so the frames of the one-shot call).
        #[test]
        fn held_groups_keep_every_frame_in_its_call(
            rate in prop::sample::select(vec![11025u32, 22050, 44100]),
            frame_ms in prop::sample::select(vec![10u32, 20, 40]),
            cuts in prop::collection::vec(0usize..6000, 0..10),
        ) {
            let pcm = agent_pcm(rate, 6000);
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(
                frames_per_call(rate, frame_ms, true, &pcm, &cuts),
                frames_per_call(rate, frame_ms, false, &pcm, &cuts)
            );
        }

        /// Any split of a code stream gives the frames of the one-shot call.
        #[test]
        fn codes_are_chunking_invariant(cuts in prop::collection::vec(0usize..700, 0..6)) {
            let c = codes(700);
            let mut one = Outbound::new(SID, 8000, Law::Ulaw, 20, Quality::Phone).unwrap();
            one.process_codes(&c, true);
            let want = payloads(&one).concat();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut out = Outbound::new(SID, 8000, Law::Ulaw, 20, Quality::Phone).unwrap();
            let mut got = Vec::new();
            let mut at = 0;
            for &cut in cuts.iter().chain([&700]) {
                out.process_codes(&c[at..cut], cut == 700);
                got.extend(payloads(&out).concat());
                at = cut;
            }
            prop_assert_eq!(got, want);
        }
    }
}
