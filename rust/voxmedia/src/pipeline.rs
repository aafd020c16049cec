//! The per-frame hot path of a call, one call per WebSocket message each way.
//!
//! Inbound: a Twilio `media` message exactly as received -> JSON fields -> base64 -> jitter
//! buffer (reorder, conceal gaps, G.711 decode) -> VAD on the 8 kHz frame -> resample to the
//! STT rate. Outbound: agent PCM at any rate -> resample to 8 kHz -> 20 ms frames -> G.711 ->
//! base64 -> ready-to-send `media` JSON. After construction neither direction allocates in
//! steady state: every buffer is owned by the pipeline and reused.

use crate::g711::Law;
use crate::jitter::{Codec, FrameStatus, JitterBuffer, JitterConfig, JitterError};
use crate::resample::{Quality, ResampleError, Resampler};
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
    /// A setting of the pipeline itself.
    Setting {
        name: &'static str,
        value: i64,
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
                value: cfg.frame_ms as i64,
                valid: "10, 20 or 30",
            });
        }
        if cfg.max_message_bytes < 256 {
            return Err(PipelineError::Setting {
                name: "max_message_bytes",
                value: cfg.max_message_bytes as i64,
                valid: ">= 256",
            });
        }
        let frame_len = (WIRE_RATE * cfg.frame_ms / 1000) as usize;
        let jitter = JitterBuffer::new(JitterConfig {
            sample_rate: WIRE_RATE,
            frame_ms: cfg.frame_ms,
            codec: match cfg.law {
                Law::Ulaw => Codec::Ulaw,
                Law::Alaw => Codec::Alaw,
            },
            reorder_window: cfg.reorder_window as usize,
            ..JitterConfig::default()
        })
        .map_err(PipelineError::Jitter)?;
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
                Resampler::new(WIRE_RATE, cfg.out_rate, Quality::Voice)
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
pub struct Outbound {
    builder: MediaMessageBuilder,
    law: Law,
    in_rate: u32,
    resampler: Option<Resampler>,
    frame_len: usize,
    /// 8 kHz samples not yet making a whole frame, at the front of `wire`.
    wire: Vec<i16>,
    codes: Vec<u8>,
    /// Concatenated messages of the last call, and where each ends.
    messages: Vec<u8>,
    ends: Vec<usize>,
}

impl Outbound {
    pub fn new(
        stream_sid: &str,
        in_rate: u32,
        law: Law,
        frame_ms: u32,
    ) -> Result<Self, PipelineError> {
        if !matches!(frame_ms, 10 | 20 | 30 | 40 | 60 | 100) {
            return Err(PipelineError::Setting {
                name: "frame_ms",
                value: frame_ms as i64,
                valid: "10, 20, 30, 40, 60 or 100",
            });
        }
        let resampler = if in_rate == WIRE_RATE {
            None
        } else {
            Some(
                Resampler::new(in_rate, WIRE_RATE, Quality::Voice)
                    .map_err(PipelineError::Resample)?,
            )
        };
        let frame_len = (WIRE_RATE * frame_ms / 1000) as usize;
        Ok(Outbound {
            builder: MediaMessageBuilder::new(stream_sid),
            law,
            in_rate,
            resampler,
            frame_len,
            wire: Vec::with_capacity(frame_len * KEEP_MESSAGES),
            codes: vec![0; frame_len],
            messages: Vec::with_capacity(KEEP_MESSAGE_BYTES),
            ends: Vec::with_capacity(KEEP_MESSAGES),
        })
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// Clears the last call's messages, and gives back what a bulk call grew: a call's steady
    /// state is 20 ms chunks, and a reply handed over whole (an echo, a TTS clause) must not
    /// pin its size for the rest of the call. Shrinking reallocates only after such a call.
    fn begin(&mut self) {
        self.messages.clear();
        self.ends.clear();
        if self.messages.capacity() > KEEP_MESSAGE_BYTES {
            self.messages.shrink_to(KEEP_MESSAGE_BYTES);
        }
        if self.ends.capacity() > KEEP_MESSAGES {
            self.ends.shrink_to(KEEP_MESSAGES);
        }
        let keep_wire = self.frame_len * KEEP_MESSAGES;
        if self.wire.capacity() > keep_wire {
            self.wire.shrink_to(keep_wire);
        }
    }

    /// Add agent PCM; returns the number of whole-frame messages now ready (see `messages`).
    pub fn process(&mut self, pcm: &[i16]) -> usize {
        self.begin();
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
        self.ends.len()
    }

    /// End of an utterance: drain the resampler and pad the last partial frame with silence.
    pub fn flush(&mut self) -> usize {
        self.begin();
        if let Some(r) = &mut self.resampler {
            let start = self.wire.len();
            self.wire.resize(start + r.flush_len_max(), 0);
            let k = r.flush_into(&mut self.wire[start..]).unwrap_or(0);
            self.wire.truncate(start + k);
            r.reset();
        }
        let rem = self.wire.len() % self.frame_len;
        if rem != 0 {
            self.wire.resize(self.wire.len() + self.frame_len - rem, 0);
        }
        self.emit_whole_frames();
        self.ends.len()
    }

    /// Drop everything not yet sent (barge-in).
    pub fn reset(&mut self) {
        self.wire.clear();
        self.messages.clear();
        self.ends.clear();
        if let Some(r) = &mut self.resampler {
            r.reset();
        }
    }

    fn emit_whole_frames(&mut self) {
        let whole = self.wire.len() / self.frame_len * self.frame_len;
        for f in self.wire[..whole].chunks_exact(self.frame_len) {
            // Sizes are equal by construction, so encoding cannot fail.
            let _ = self.law.encode_into(f, &mut self.codes);
            self.builder.append(&self.codes, &mut self.messages);
            self.ends.push(self.messages.len());
        }
        self.wire.drain(..whole);
    }

    /// Messages produced by the last `process`/`flush`, each a complete JSON text.
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&e| {
            let m = &self.messages[start..e];
            start = e;
            m
        })
    }

    /// Audio held back for want of a whole frame, in 8 kHz samples.
    pub fn pending_samples(&self) -> usize {
        self.wire.len()
    }

    pub fn latency_ms(&self) -> f64 {
        self.resampler.as_ref().map_or(0.0, |r| r.latency_ms())
    }
}
