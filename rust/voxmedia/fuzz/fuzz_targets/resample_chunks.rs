//! The resampler on any rate pair, quality, hold setting, signal and split: chunked output is
//! the one-shot output bit for bit, every call writes exactly `output_len` samples (within
//! `output_len_max`), a flush exactly `flush_len`, and a short output buffer is an error, not
//! a panic. Float input of any value (NaN and infinities included) never panics.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use voxmedia::resample::{Quality, Resampler, SUPPORTED_RATES};

#[derive(Debug, Arbitrary)]
struct Case {
    rates: (u8, u8),
    quality: u8,
    hold: bool,
    cuts: Vec<u16>,
    pcm: Vec<i16>,
    floats: Vec<f32>,
}

const QUALITIES: [Quality; 3] = [Quality::Voice, Quality::High, Quality::Phone];

fn new(c: &Case) -> Resampler {
    let rate = |i: u8| SUPPORTED_RATES[usize::from(i) % SUPPORTED_RATES.len()];
    let q = QUALITIES[usize::from(c.quality) % QUALITIES.len()];
    let mut r = Resampler::new(rate(c.rates.0), rate(c.rates.1), q).expect("supported rates");
    r.hold_partial_groups(c.hold);
    r
}

/// Output of `pcm` fed in the pieces `cuts` gives, then flushed.
fn run(r: &mut Resampler, pcm: &[i16], cuts: &[usize]) -> Vec<i16> {
    let mut all = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&pcm.len())) {
        let end = c.clamp(start, pcm.len());
        let piece = &pcm[start..end];
        start = end;
        let want = r.output_len(piece.len());
        assert!(want <= r.output_len_max(piece.len()));
        if want > 0 {
            let mut short = vec![0i16; want - 1];
            let mut probe = r.clone();
            assert!(probe.process_into(piece, &mut short).is_err());
        }
        let mut out = vec![0i16; want];
        let n = r
            .process_into(piece, &mut out)
            .expect("room for output_len");
        assert_eq!(n, want);
        all.extend_from_slice(&out);
    }
    let want = r.flush_len();
    assert!(want <= r.flush_len_max());
    let mut out = vec![0i16; want];
    assert_eq!(r.flush_into(&mut out).expect("room for flush_len"), want);
    all.extend_from_slice(&out);
    all
}

fuzz_target!(|c: Case| {
    let mut pcm = c.pcm.clone();
    pcm.truncate(6000);
    let mut cuts: Vec<usize> = c
        .cuts
        .iter()
        .take(32)
        .map(|&x| usize::from(x) % 6001)
        .collect();
    cuts.sort_unstable();
    let mut r = new(&c);
    let whole = run(&mut r, &pcm, &[]);
    let split = run(&mut new(&c), &pcm, &cuts);
    assert_eq!(whole, split);
    // A flushed object starts a new stream: the same input gives the same output again.
    assert_eq!(run(&mut r, &pcm, &cuts), whole);

    let mut f = new(&c);
    let floats = &c.floats[..c.floats.len().min(4000)];
    let mut out = vec![0f32; f.output_len_max(floats.len())];
    let n = f.process_f32_into(floats, &mut out).expect("room");
    assert!(n <= out.len());
    let mut tail = vec![0f32; f.flush_len_max()];
    f.flush_f32_into(&mut tail).expect("room for the tail");
});
