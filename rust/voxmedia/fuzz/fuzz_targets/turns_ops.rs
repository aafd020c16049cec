//! The turn detector under any timing (any integers, as a binding passes them) and any
//! sequence of frames, VAD decisions, pause ends and reconfigurations: construction and
//! `configure` refuse what is out of range, and what is accepted never panics (integer
//! overflow included: fuzz builds check it), and its clocks stay finite and ordered.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use voxmedia::turns::{TurnConfig, TurnDetector};

#[derive(Debug, Arbitrary)]
enum Op {
    Feed {
        len: u16,
        speech: bool,
        level: i16,
    },
    /// Many 20 ms frames of one kind: long calls, long utterances.
    Run {
        frames: u16,
        speech: bool,
    },
    EndAfter {
        silence_ms: f64,
        token_delta: i8,
    },
    Configure(Option<i64>, Option<i64>, Option<i64>),
    ClearUtterance,
    Reset,
}

#[derive(Debug, Arbitrary)]
struct Case {
    timings: [i64; 8],
    /// Use the fuzzed timings as given, else small ones (so most cases reach the detector).
    raw: bool,
    ops: Vec<Op>,
}

fuzz_target!(|c: Case| {
    let t = c.timings;
    let t = if c.raw {
        t
    } else {
        let rates = [8000, 16000, 24000, 48000];
        [
            rates[t[0].rem_euclid(4) as usize],
            1 + t[1].rem_euclid(400),
            1 + t[2].rem_euclid(2000),
            1 + t[3].rem_euclid(400),
            t[4].rem_euclid(500),
            1 + t[5].rem_euclid(60_000),
            t[6].rem_euclid(300),
            t[7].rem_euclid(300),
        ]
    };
    let Ok(cfg) = TurnConfig::from_ms(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]) else {
        return;
    };
    let rate = cfg.rate as usize;
    let Ok(mut d) = TurnDetector::new(cfg) else {
        return;
    };
    let frame20 = vec![1000i16; rate / 50];
    let mut pcm = Vec::new();
    for op in c.ops.iter().take(200) {
        match *op {
            Op::Feed { len, speech, level } => {
                pcm.clear();
                pcm.resize(usize::from(len) % (rate / 10 + 1), level);
                d.feed(&pcm, speech);
            }
            Op::Run { frames, speech } => {
                for _ in 0..frames % 3000 {
                    d.feed(&frame20, speech);
                }
            }
            Op::EndAfter {
                silence_ms,
                token_delta,
            } => {
                let token = d.run_token().wrapping_add(i64::from(token_delta % 2));
                d.end_after(silence_ms, token);
            }
            Op::Configure(e, p, b) => {
                let _ = d.configure(e, p, b);
            }
            Op::ClearUtterance => d.clear_utterance(),
            Op::Reset => d.reset(),
        }
        assert!(d.position_ms().is_finite() && d.silence_ms() >= 0.0 && d.speech_run_ms() >= 0.0);
        assert!(d.speech_start_ms() <= d.position_ms());
        assert!(d.audio_so_far().len() <= (t[5].max(0) as usize + 2_000 + 1_000) * rate / 1000);
    }
});
