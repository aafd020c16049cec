//! The VAD under any configuration (every tuning field any value, NaN included) and any PCM:
//! `Vad::new` refuses what it cannot run, and what it accepts never panics and keeps finite
//! levels; `process` gives one decision per whole frame, the same however the PCM is split.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use voxmedia::vad::{Vad, VadConfig};

#[derive(Debug, Arbitrary)]
struct Case {
    rate: u32,
    frame_ms: u32,
    floats: [f32; 12],
    onset_ms: u32,
    hangover_ms: u32,
    weights: [f32; 5],
    /// Use the fuzzed tuning, else the defaults (so most cases reach the detector).
    tuned: bool,
    cut: u16,
    pcm: Vec<i16>,
}

fuzz_target!(|c: Case| {
    let rate = if c.rate.is_multiple_of(2) {
        [8000, 16000, 24000, 48000][(c.rate / 2 % 4) as usize]
    } else {
        c.rate
    };
    let mut cfg = VadConfig {
        frame_ms: [10, 20, 30][(c.frame_ms % 3) as usize],
        ..VadConfig::default()
    };
    if c.tuned {
        let f = c.floats;
        cfg = VadConfig {
            frame_ms: c.frame_ms,
            threshold: f[0],
            release: f[1],
            band_margin_db: f[2],
            spread_factor: f[3],
            band_cap_db: f[4],
            min_level_dbfs: f[5],
            min_band_dbfs: f[6],
            quant_snr_db: f[7],
            onset_ms: c.onset_ms,
            strong_factor: f[8],
            hangover_ms: c.hangover_ms,
            noise_adapt_ms: f[9],
            noise_rise_ms: f[10],
            noise_fall_ms: f[11],
            band_weights: c.weights,
        };
    }
    let Ok(mut whole) = Vad::new(rate, cfg) else {
        return;
    };
    let mut split = whole.clone();
    let pcm = &c.pcm[..c.pcm.len().min(48_000)];
    let mut a = Vec::new();
    let n = whole.process(pcm, &mut a);
    assert_eq!(n, a.len());
    assert_eq!(n, pcm.len() / whole.frame_len());
    let cut = usize::from(c.cut).min(pcm.len());
    let mut b = Vec::new();
    split.process(&pcm[..cut], &mut b);
    split.process(&pcm[cut..], &mut b);
    assert_eq!(a, b);
    assert!(!whole.level_dbfs().is_nan() && !whole.noise_floor_dbfs().is_nan());
    if let Some(frame) = pcm.get(..whole.frame_len()) {
        whole.is_speech(frame).expect("a whole frame");
    }
    assert!(whole.is_speech(&pcm[..0]).is_err() || whole.frame_len() == 0);
});
