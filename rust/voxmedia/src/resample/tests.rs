use super::kernel::Kernel;
use super::*;
use proptest::prelude::*;

fn all_pairs() -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    for &a in &SUPPORTED_RATES {
        for &b in &SUPPORTED_RATES {
            v.push((a, b));
        }
    }
    v
}

const QUALITIES: [Quality; 3] = [Quality::Voice, Quality::High, Quality::Phone];

/// `n` samples of a deterministic, broadband float signal (peak 0.7).
fn test_signal(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 2000) as f32 / 1000.0 - 1.0) * 0.7)
        .collect()
}

/// The largest absolute difference between paired samples of `a` and `b`.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(u, v)| (u - v).abs())
        .fold(0f32, f32::max)
}

fn kernels() -> Vec<Kernel> {
    let mut k = vec![Kernel::Scalar];
    let d = Kernel::detect();
    if d != Kernel::Scalar {
        k.push(d);
    }
    k
}

fn make(a: u32, b: u32, q: Quality, k: Kernel) -> Resampler {
    let mut r = Resampler::new(a, b, q).unwrap();
    r.kernel = k;
    r
}

/// Feeds `x` split at `cuts` (sorted offsets), then flushes; returns everything emitted.
fn run_split<S: Sample + Default>(r: &mut Resampler, x: &[S], cuts: &[usize]) -> Vec<S>
where
    Resampler: Io<S>,
{
    let mut out = Vec::new();
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&x.len())) {
        let c = c.clamp(prev, x.len());
        let chunk = &x[prev..c];
        let mut buf = vec![S::default(); r.output_len_max(chunk.len())];
        assert_eq!(r.output_len(chunk.len()), {
            let n = r.io_process(chunk, &mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
            n
        });
        prev = c;
    }
    let mut buf = vec![S::default(); r.flush_len_max()];
    let n = r.io_flush(&mut buf).unwrap();
    out.extend_from_slice(&buf[..n]);
    out
}

trait Io<S> {
    fn io_process(&mut self, x: &[S], out: &mut [S]) -> Result<usize, ResampleError>;
    fn io_flush(&mut self, out: &mut [S]) -> Result<usize, ResampleError>;
}

impl Io<i16> for Resampler {
    fn io_process(&mut self, x: &[i16], out: &mut [i16]) -> Result<usize, ResampleError> {
        self.process_into(x, out)
    }
    fn io_flush(&mut self, out: &mut [i16]) -> Result<usize, ResampleError> {
        self.flush_into(out)
    }
}

impl Io<f32> for Resampler {
    fn io_process(&mut self, x: &[f32], out: &mut [f32]) -> Result<usize, ResampleError> {
        self.process_f32_into(x, out)
    }
    fn io_flush(&mut self, out: &mut [f32]) -> Result<usize, ResampleError> {
        self.flush_f32_into(out)
    }
}

fn tone(f: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
    (0..n)
        .map(|i| (amp * (2.0 * std::f64::consts::PI * f * i as f64 / rate as f64).sin()) as f32)
        .collect()
}

fn resample_f32(a: u32, b: u32, q: Quality, x: &[f32]) -> Vec<f32> {
    let mut r = Resampler::new(a, b, q).unwrap();
    let mut out = vec![0f32; r.output_len_max(x.len())];
    let n = r.process_f32_into(x, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Least-squares fit of sinusoids at `freqs` over the steady part of `y`: the amplitude of
/// each, and the RMS of what they leave unexplained.
fn fit(y: &[f32], rate: u32, freqs: &[f64]) -> (Vec<f64>, f64) {
    let y = &y[y.len() / 4..y.len() - y.len() / 8];
    let k = 2 * freqs.len();
    let basis = |i: usize| -> Vec<f64> {
        freqs
            .iter()
            .flat_map(|&f| {
                let (s, c) = (2.0 * std::f64::consts::PI * f * i as f64 / rate as f64).sin_cos();
                [s, c]
            })
            .collect()
    };
    let mut a = vec![vec![0.0; k + 1]; k];
    for (i, &v) in y.iter().enumerate() {
        let b = basis(i);
        for r in 0..k {
            for c in 0..k {
                a[r][c] += b[r] * b[c];
            }
            a[r][k] += b[r] * v as f64;
        }
    }
    for p in 0..k {
        let pivot = a[p].clone();
        for row in a.iter_mut().skip(p + 1) {
            let f = row[p] / pivot[p];
            for (x, y) in row.iter_mut().zip(&pivot).skip(p) {
                *x -= f * y;
            }
        }
    }
    let mut coef = vec![0.0; k];
    for p in (0..k).rev() {
        let s: f64 = (p + 1..k).map(|c| a[p][c] * coef[c]).sum();
        coef[p] = (a[p][k] - s) / a[p][p];
    }
    let amps = coef.chunks(2).map(|c| c[0].hypot(c[1])).collect();
    let res: f64 = y
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let m: f64 = basis(i).iter().zip(&coef).map(|(b, c)| b * c).sum();
            (v as f64 - m).powi(2)
        })
        .sum();
    (amps, (res / y.len() as f64).sqrt())
}

fn rms(y: &[f32]) -> f64 {
    let y = &y[y.len() / 4..y.len() - y.len() / 8];
    (y.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / y.len() as f64).sqrt()
}

fn db(x: f64) -> f64 {
    20.0 * x.max(1e-30).log10()
}

#[test]
fn rejects_bad_rates_with_valid_set() {
    let e = Resampler::new(12345, 8000, Quality::Voice).unwrap_err();
    assert_eq!(e, ResampleError::UnsupportedRate(12345));
    let msg = e.to_string();
    assert!(
        msg.contains("12345") && msg.contains("8000, 11025, 16000"),
        "{msg}"
    );
    assert_eq!(
        Resampler::new(8000, 0, Quality::High).unwrap_err(),
        ResampleError::UnsupportedRate(0)
    );
    let q = Quality::from_name("best").unwrap_err().to_string();
    assert!(q.contains("'best'") && q.contains("'voice', 'high'"), "{q}");
    assert_eq!(Quality::from_name("high").unwrap(), Quality::High);
}

#[test]
fn empty_input_and_small_output() {
    for (a, b) in [(8000, 16000), (16000, 8000), (8000, 8000), (44100, 16000)] {
        let mut r = Resampler::new(a, b, Quality::Voice).unwrap();
        assert_eq!(r.process_into(&[], &mut []).unwrap(), 0);
        let x = [1000i16; 160];
        let need = r.output_len(x.len());
        assert!(need <= r.output_len_max(x.len()));
        let mut out = vec![0i16; need.saturating_sub(1)];
        assert_eq!(
            r.process_into(&x, &mut out).unwrap_err(),
            ResampleError::OutputTooSmall {
                needed: need,
                got: need - 1
            }
        );
        // The failed call changed nothing.
        let mut fresh = Resampler::new(a, b, Quality::Voice).unwrap();
        let mut o1 = vec![0i16; need];
        let mut o2 = vec![0i16; need];
        r.process_into(&x, &mut o1).unwrap();
        fresh.process_into(&x, &mut o2).unwrap();
        assert_eq!(o1, o2);
    }
}

#[test]
fn passthrough_is_a_copy() {
    let x: Vec<i16> = (0..500).map(|i| (i * 131 % 65536 - 32768) as i16).collect();
    let mut r = Resampler::new(16000, 16000, Quality::Voice).unwrap();
    let mut out = vec![0i16; 500];
    assert_eq!(r.process_into(&x, &mut out).unwrap(), 500);
    assert_eq!(out, x);
    assert_eq!(r.latency_ms(), 0.0);
    assert_eq!(r.flush_into(&mut []).unwrap(), 0);
}

#[test]
fn output_rate_is_exact_per_chunk() {
    // Every 20 ms chunk after the first gives 20 ms (+-1 sample): nothing is withheld.
    for (a, b) in all_pairs() {
        let mut r = Resampler::new(a, b, Quality::Voice).unwrap();
        let n = a as usize / 50;
        let x = vec![0i16; n];
        let mut out = vec![0i16; r.output_len_max(n)];
        let (mut fed, mut got) = (0u64, 0u64);
        for _ in 0..20 {
            got += r.process_into(&x, &mut out).unwrap() as u64;
            fed += n as u64;
            // Never behind by a whole output sample.
            assert!(got * a as u64 >= fed * b as u64, "{a}->{b}");
            // Nor ahead by one (two for a cascade: each stage emits an output as soon as its
            // newest input has arrived, so each may lead by a fraction of its own sample, and
            // a pre-decimator's sample is worth under one output sample).
            let lead = if r.pre.is_empty() { 1 } else { 2 };
            assert!((got - lead) * (a as u64) < fed * b as u64, "{a}->{b}");
        }
    }
}

#[test]
fn dc_gain_is_unity() {
    for (a, b) in all_pairs() {
        for q in QUALITIES {
            let y = resample_f32(a, b, q, &vec![0.5f32; a as usize / 5]);
            for &v in &y[y.len() / 2..] {
                assert!((v - 0.5).abs() < 1e-4, "{a}->{b} {q:?}: {v}");
            }
        }
    }
}

#[test]
fn tones_pass_flat_and_at_the_right_frequency() {
    for (a, b) in all_pairs() {
        let ny = a.min(b) as f64 / 2.0;
        for (q, frac) in [Quality::Voice, Quality::Phone]
            .into_iter()
            .flat_map(|q| [0.05, 0.3, 0.6, 0.85].map(|frac| (q, frac)))
        {
            let f = frac * ny;
            let y = resample_f32(a, b, q, &tone(f, a, a as usize / 4, 0.5));
            let (amps, res) = fit(&y, b, &[f]);
            let amp = amps[0];
            let g = db(amp / 0.5);
            assert!(g.abs() < 0.08, "{a}->{b} {q:?} at {f} Hz: {g} dB");
            // Nothing else of note: the residual is far below the tone (for an upsampler, the
            // image of a tone at 0.85 ny is at the phone quality's 1.15 ny stopband edge).
            let floor = if q == Quality::Phone { -80.0 } else { -85.0 };
            assert!(
                db(res / amp) < floor,
                "{a}->{b} {q:?} at {f} Hz: residual {} dB",
                db(res / amp)
            );
        }
    }
}

#[test]
fn aliases_and_images_are_rejected() {
    for (a, b) in all_pairs() {
        if a == b {
            continue;
        }
        // The grouped rational down-conversions are designed to 90 dB (the goal is 85 dB).
        let voice = if grouped_pairs().contains(&(a, b)) {
            -88.0
        } else {
            -90.0
        };
        // The phone quality's stopband starts at 1.15 x the lower Nyquist (4.6 kHz for 8 kHz),
        // and it only has to clear the images of tones up to 0.85 x; pairs without 8 kHz get
        // the voice design.
        let phone = if a == 8000 || b == 8000 {
            (Quality::Phone, -80.0, 1.15, 0.85)
        } else {
            (Quality::Phone, voice, 1.05, 0.9)
        };
        for (q, limit, stop, top) in [
            (Quality::Voice, voice, 1.05, 0.9),
            (Quality::High, -120.0, 1.05, 0.9),
            phone,
        ] {
            let ny = a.min(b) as f64 / 2.0;
            for i in 0..6 {
                if b < a {
                    // Everything from the stopband edge up to the input Nyquist is gone.
                    let f = stop * ny + (0.97 * a as f64 / 2.0 - stop * ny) * i as f64 / 5.0;
                    let y = resample_f32(a, b, q, &tone(f, a, a as usize / 4, 0.5));
                    let lvl = db(rms(&y) * 2f64.sqrt() / 0.5);
                    assert!(lvl < limit, "{a}->{b} {q:?} alias of {f} Hz: {lvl} dB");
                } else {
                    // The first image of a tone at up to `top` x the input Nyquist.
                    let f = 0.1 * ny + (top - 0.1) * ny * i as f64 / 5.0;
                    let y = resample_f32(a, b, q, &tone(f, a, a as usize / 4, 0.5));
                    let lvl = db(fit(&y, b, &[f, a as f64 - f]).0[1] / 0.5);
                    assert!(lvl < limit, "{a}->{b} {q:?} image of {f} Hz: {lvl} dB");
                }
            }
        }
    }
}

#[test]
fn latency_matches_impulse_position() {
    for (a, b) in all_pairs() {
        for q in QUALITIES {
            let mut x = vec![0f32; a as usize / 10];
            let p = a as usize / 20 + 3;
            x[p] = 0.5;
            let mut r = Resampler::new(a, b, q).unwrap();
            let mut out = vec![0f32; r.output_len_max(x.len())];
            let n = r.process_f32_into(&x, &mut out).unwrap();
            // Peak position with parabolic interpolation, in ms after the impulse.
            let (k, _) = out[..n].iter().enumerate().fold((0, 0f32), |m, (i, &v)| {
                if v.abs() > m.1 {
                    (i, v.abs())
                } else {
                    m
                }
            });
            let (y0, y1, y2) = (out[k - 1] as f64, out[k] as f64, out[k + 1] as f64);
            let peak = k as f64 + 0.5 * (y0 - y2) / (y0 - 2.0 * y1 + y2);
            let measured = (peak / b as f64 - p as f64 / a as f64) * 1000.0;
            let lat = r.latency_ms();
            assert!(
                (measured - lat).abs() < 0.5 * 1000.0 / b as f64,
                "{a}->{b}: {measured} vs {lat}"
            );
            if q != Quality::High {
                assert!(lat <= 6.0, "{a}->{b}: {lat} ms");
            }
        }
    }
}

#[test]
fn flush_emits_the_tail_then_resets() {
    for (a, b) in [
        (8000, 16000),
        (16000, 8000),
        (44100, 16000),
        (16000, 24000),
        (22050, 8000),
        (44100, 8000),
        (48000, 8000),
    ] {
        let mut r = Resampler::new(a, b, Quality::Voice).unwrap();
        // An impulse in the last input sample must come out during the flush.
        let mut x = vec![0i16; 320];
        x[319] = 20000;
        let mut out = vec![0i16; r.output_len_max(x.len())];
        let n = r.process_into(&x, &mut out).unwrap();
        assert!(out[..n].iter().all(|&v| v.abs() < 2000), "{a}->{b}");
        let mut tail = vec![0i16; r.flush_len_max()];
        let t = r.flush_into(&mut tail).unwrap();
        let energy = |v: &[i16]| v.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
        let (head_e, tail_e) = (energy(&out[..n]), energy(&tail[..t]));
        assert!(
            tail_e > 100.0 * head_e && tail_e > 0.0,
            "{a}->{b}: {head_e} then {tail_e}"
        );
        // Total covers the input plus the delay.
        let expect = (x.len() as f64 / a as f64 * 1000.0 + r.latency_ms()) * b as f64 / 1000.0;
        assert!(
            ((n + t) as f64 - expect).abs() <= 2.0 + b as f64 / a as f64,
            "{a}->{b}"
        );
        // After a flush the object is fresh again.
        let mut fresh = Resampler::new(a, b, Quality::Voice).unwrap();
        assert_eq!(run_split(&mut r, &x, &[]), run_split(&mut fresh, &x, &[]));
    }
}

#[test]
fn reset_equals_fresh() {
    for (a, b) in all_pairs() {
        let x: Vec<i16> = (0..900)
            .map(|i| ((i * 7919) % 30000 - 15000) as i16)
            .collect();
        let mut r = Resampler::new(a, b, Quality::Voice).unwrap();
        run_split(&mut r, &x[..333], &[100]);
        let mut out = vec![0i16; r.output_len_max(77)];
        r.process_into(&x[..77], &mut out).unwrap();
        r.reset();
        let mut fresh = Resampler::new(a, b, Quality::Voice).unwrap();
        assert_eq!(
            run_split(&mut r, &x, &[50, 400]),
            run_split(&mut fresh, &x, &[])
        );
    }
}

#[test]
fn int16_output_saturates_and_rounds() {
    // The filters work in PCM16 units.
    assert_eq!(i16::from_f32(65536.0), 32767);
    assert_eq!(i16::from_f32(-65536.0), -32768);
    // NaN (only reachable through the float API) saturates instead of panicking.
    assert_eq!(i16::from_f32(f32::NAN), -32768);
    assert_eq!(i16::from_f32(0.5), 0);
    assert_eq!(i16::from_f32(1.5), 2);
    assert_eq!(i16::from_f32(-1.5), -2);
    assert_eq!(i16::from_f32(100.4), 100);
    // Full-scale square waves overshoot (Gibbs) and must clip, not wrap.
    let x: Vec<i16> = (0..4000)
        .map(|i| if (i / 20) % 2 == 0 { 32767 } else { -32768 })
        .collect();
    let mut r = Resampler::new(8000, 48000, Quality::Voice).unwrap();
    let y = run_split(&mut r, &x, &[]);
    assert!(y.contains(&32767) && y.contains(&-32768));
}

/// Any split of the input gives exactly the one-shot output, on every kernel.
fn check_chunking(
    a: u32,
    b: u32,
    q: Quality,
    x: &[i16],
    mut cuts: Vec<usize>,
) -> Result<(), TestCaseError> {
    cuts.sort_unstable();
    for k in kernels() {
        let whole = run_split(&mut make(a, b, q, k), x, &[]);
        let split = run_split(&mut make(a, b, q, k), x, &cuts);
        prop_assert_eq!(&whole, &split);
        let mut held = make(a, b, q, k);
        held.hold_partial_groups(true);
        prop_assert_eq!(&whole, &run_split(&mut held, x, &cuts));
    }
    Ok(())
}

fn pair_strategy() -> impl Strategy<Value = (u32, u32)> {
    (0..8usize, 0..8usize).prop_map(|(i, j)| (SUPPORTED_RATES[i], SUPPORTED_RATES[j]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunking_invariance_i16(
        (a, b) in pair_strategy(),
        q in prop::sample::select(QUALITIES.to_vec()),
        x in prop::collection::vec(any::<i16>(), 0..3000),
        cuts in prop::collection::vec(0..3000usize, 0..12),
    ) {
        check_chunking(a, b, q, &x, cuts)?;
    }

    #[test]
    fn chunking_invariance_f32(
        (a, b) in pair_strategy(),
        q in prop::sample::select(QUALITIES.to_vec()),
        x in prop::collection::vec(-1.5f32..1.5, 0..3000),
        mut cuts in prop::collection::vec(0..3000usize, 0..12),
    ) {
        cuts.sort_unstable();
        for k in kernels() {
            let whole = run_split(&mut make(a, b, q, k), &x, &[]);
            let split = run_split(&mut make(a, b, q, k), &x, &cuts);
            prop_assert_eq!(whole.len(), split.len());
            for (u, v) in whole.iter().zip(&split) {
                prop_assert_eq!(u.to_bits(), v.to_bits());
            }
        }
    }

    #[test]
    fn no_panic_on_any_input(
        (a, b) in pair_strategy(),
        x in prop::collection::vec(any::<f32>(), 0..2000),
        short in 0..50usize,
    ) {
        let mut r = Resampler::new(a, b, Quality::Voice).unwrap();
        let mut out = vec![0f32; short];
        let need = r.output_len(x.len());
        match r.process_f32_into(&x, &mut out) {
            Ok(n) => prop_assert_eq!(n, need),
            Err(e) => prop_assert_eq!(e, ResampleError::OutputTooSmall { needed: need, got: short }),
        }
        let mut out16 = vec![0i16; r.output_len_max(x.len())];
        let x16: Vec<i16> = x.iter().map(|v| v.to_bits() as i16).collect();
        r.process_into(&x16, &mut out16).unwrap();
        let mut tail = vec![0i16; r.flush_len_max()];
        r.flush_into(&mut tail).unwrap();
    }
}

#[test]
fn kernels_agree_to_rounding() {
    // The SIMD kernel fuses multiply-adds, so bits may differ from the portable one, but only
    // at the level of f32 rounding.
    let ks = kernels();
    let x = test_signal(4000);
    for (a, b) in all_pairs() {
        let outs: Vec<Vec<f32>> = ks
            .iter()
            .map(|&k| run_split(&mut make(a, b, Quality::High, k), &x, &[1234]))
            .collect();
        for o in &outs[1..] {
            assert_eq!(o.len(), outs[0].len());
            let worst = max_abs_diff(o, &outs[0]);
            assert!(worst < 1e-5, "{a}->{b}: {worst}");
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_pcm16_conversion_matches_scalar() {
    use super::direct::Vec8;
    if Kernel::detect() == Kernel::Scalar {
        return; // nothing to compare on this CPU
    }
    // Halves (round to even), the clip edges, beyond them, NaN and infinities, and a sweep.
    let mut x: Vec<f32> = vec![
        0.5,
        1.5,
        2.5,
        -0.5,
        -1.5,
        32767.5,
        -32768.5,
        32768.0,
        -32768.0,
        1e30,
        -1e30,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
    ];
    x.extend((0..5000).map(|i| (i as f32 - 2500.0) * 16.94));
    let mut want = vec![0i16; x.len()];
    i16::from_f32_slice(&mut want, &x);
    for start in 0..3 {
        let mut got = vec![0i16; x.len() - start];
        // SAFETY: the CPU has AVX2 (checked above).
        unsafe { super::direct::avx2::A8::to_i16(&mut got, &x[start..]) };
        assert_eq!(got, want[start..], "offset {start}");
    }
    // The interleaving variant: a and b are two consecutive runs of 8 of `x`.
    for g in (0..x.len() - 16).step_by(5) {
        let mut got = [0i16; 16];
        // SAFETY: the CPU has AVX2; 8 items from g and g + 8, 16 outputs.
        unsafe {
            super::direct::avx2::A8::zip2_i16(
                x[g..].as_ptr(),
                x[g + 8..].as_ptr(),
                got.as_mut_ptr(),
            )
        };
        let want: Vec<i16> = (0..16)
            .map(|k| i16::from_f32(x[g + k / 2 + 8 * (k % 2)]))
            .collect();
        assert_eq!(got[..], want[..], "group at {g}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_interleaves_match_scalar() {
    use super::direct::{avx2::A8, Vec8, P8};
    if Kernel::detect() == Kernel::Scalar {
        return; // nothing to compare on this CPU
    }
    let x: Vec<f32> = (0..24).map(|i| i as f32 + 0.25).collect();
    let (mut got, mut want) = ([0f32; 24], [0f32; 24]);
    let s = [x.as_ptr(), x[8..].as_ptr(), x[16..].as_ptr()];
    // SAFETY: the CPU has AVX2; three runs of 8, 24 outputs.
    unsafe {
        A8::zip3(s, got.as_mut_ptr());
        P8::zip3(s, want.as_mut_ptr());
    }
    assert_eq!(got, want);
    let expect: Vec<f32> = (0..24).map(|k| x[k / 3 + 8 * (k % 3)]).collect();
    assert_eq!(want[..], expect[..]);
    let pcm: Vec<i16> = (0..64).map(|i| (i * 1021 - 32000) as i16).collect();
    check_unzip::<i16, 2>(&pcm, A8::unzip2_i16, P8::unzip2_i16);
    check_unzip::<i16, 3>(&pcm, A8::unzip3_i16, P8::unzip3_i16);
    check_unzip::<i16, 4>(&pcm, A8::unzip4_i16, P8::unzip4_i16);
    check_unzip::<i16, 6>(&pcm, A8::unzip6_i16, P8::unzip6_i16);
    check_unzip::<i16, 8>(&pcm, A8::unzip8_i16, P8::unzip8_i16);
    check_unzip::<f32, 3>(&x, A8::unzip3, P8::unzip3);
    let (mut got, mut want) = ([0f32; 16], [0f32; 16]);
    // SAFETY: as above, two runs of 8, 16 outputs.
    unsafe {
        let (a, b) = (A8::load(x.as_ptr()), A8::load(x[8..].as_ptr()));
        A8::zip2(a, b, got.as_mut_ptr());
        let (a, b) = (P8::load(x.as_ptr()), P8::load(x[8..].as_ptr()));
        P8::zip2(a, b, want.as_mut_ptr());
    }
    assert_eq!(got, want);
}

/// The AVX2 and the portable split of `src` into `N` runs of 8 agree, and put sample `N j + i`
/// in run `i`, item `j` (as f32, unscaled).
#[cfg(target_arch = "x86_64")]
fn check_unzip<T: Copy + Into<f32>, const N: usize>(
    src: &[T],
    simd: unsafe fn(*const T, [*mut f32; N]),
    portable: unsafe fn(*const T, [*mut f32; N]),
) {
    let (mut g, mut w) = ([[0f32; 8]; N], [[0f32; 8]; N]);
    let runs = |r: &mut [[f32; 8]; N]| -> [*mut f32; N] {
        let mut it = r.iter_mut().map(|x| x.as_mut_ptr());
        std::array::from_fn(|_| it.next().expect("N runs"))
    };
    assert!(src.len() >= 8 * N);
    // SAFETY: the caller checked the CPU has AVX2; 8N samples in, N runs of 8 out.
    unsafe {
        simd(src.as_ptr(), runs(&mut g));
        portable(src.as_ptr(), runs(&mut w));
    }
    assert_eq!(g, w, "{N} runs");
    for (i, run) in w.iter().enumerate() {
        for (j, &v) in run.iter().enumerate() {
            assert_eq!(v, src[N * j + i].into(), "{N} runs");
        }
    }
}

#[test]
fn integer_ratios_invariant_across_staging_blocks() {
    // Long inputs cross the staging block and the per-call output cap of the direct form;
    // the proptests' inputs are shorter than either.
    let x: Vec<i16> = (0..13_000i64)
        .map(|i| ((i * 7919) % 60_000 - 30_000) as i16)
        .collect();
    for (a, b) in [
        (8000, 16000),
        (16000, 8000),
        (24000, 8000),
        (8000, 24000),
        (48000, 8000),
        (8000, 48000),
        (32000, 8000),
    ] {
        for k in kernels() {
            let whole = run_split(&mut make(a, b, Quality::Voice, k), &x, &[]);
            let split = run_split(
                &mut make(a, b, Quality::Voice, k),
                &x,
                &[1, 4095, 4096, 4097, 4200, 9001, 12_999],
            );
            assert_eq!(whole, split, "{a}->{b} {k:?}");
        }
    }
}

#[test]
fn banks_are_shared_but_streams_are_independent() {
    let mut a = Resampler::new(22050, 8000, Quality::Voice).unwrap();
    let mut b = Resampler::new(22050, 8000, Quality::Voice).unwrap();
    let c = Resampler::new(22050, 8000, Quality::High).unwrap();
    let bank = |r: &Resampler| Arc::clone(&r.core.as_ref().unwrap().0);
    assert!(Arc::ptr_eq(&bank(&a), &bank(&b)));
    assert!(!Arc::ptr_eq(&bank(&a), &bank(&c)));
    // Interleaved use of two streams on one bank gives each the output it gets alone.
    let x: Vec<i16> = (0..4410).map(|i| ((i * 37) % 2000) as i16 - 1000).collect();
    let y: Vec<i16> = (0..4410).map(|i| ((i * 91) % 3000) as i16 - 1500).collect();
    let alone = |input: &[i16]| {
        let mut r = Resampler::new(22050, 8000, Quality::Voice).unwrap();
        let mut out = vec![0i16; r.output_len_max(input.len())];
        let n = r.process_into(input, &mut out).unwrap();
        out.truncate(n);
        out
    };
    let (mut oa, mut ob) = (Vec::new(), Vec::new());
    for (xa, yb) in x.chunks(441).zip(y.chunks(441)) {
        let mut buf = vec![0i16; a.output_len_max(441)];
        let n = a.process_into(xa, &mut buf).unwrap();
        oa.extend_from_slice(&buf[..n]);
        let n = b.process_into(yb, &mut buf).unwrap();
        ob.extend_from_slice(&buf[..n]);
    }
    assert_eq!(oa, alone(&x));
    assert_eq!(ob, alone(&y));
}

/// Rate pairs computed by the grouped rational kernel (`bcast.rs`).
fn grouped_pairs() -> Vec<(u32, u32)> {
    all_pairs()
        .into_iter()
        .filter(|&(a, b)| {
            let r = Resampler::new(a, b, Quality::Voice).unwrap();
            matches!(&r.core, Some((bank, _)) if bank.bcast.is_some())
        })
        .collect()
}

/// The same resampler with the grouped kernel switched off (the dot-product kernels instead).
fn ungrouped(a: u32, b: u32, q: Quality, k: Kernel) -> Resampler {
    let mut r = make(a, b, q, k);
    if let Some((bank, _)) = &mut r.core {
        let mut plain = (**bank).clone();
        plain.bcast = None;
        *bank = std::sync::Arc::new(plain);
    }
    r
}

#[test]
fn grouped_kernel_covers_the_44k1_family_down_conversions() {
    let pairs = grouped_pairs();
    for p in [(22050, 8000), (44100, 8000), (11025, 8000), (44100, 16000)] {
        assert!(pairs.contains(&p), "{p:?} not grouped: {pairs:?}");
    }
    // Upsamplers and integer ratios keep their own engines.
    assert!(pairs.iter().all(|&(a, b)| a > b));
    assert!(!pairs.contains(&(24000, 8000)) && !pairs.contains(&(48000, 16000)));
}

#[test]
fn grouped_kernel_matches_the_dot_kernels() {
    let x = test_signal(9000);
    for (a, b) in grouped_pairs() {
        for q in [Quality::Voice, Quality::High] {
            for k in kernels() {
                let frame = a as usize / 50;
                let cuts: Vec<usize> = (1..x.len() / frame).map(|i| i * frame).collect();
                let got = run_split(&mut make(a, b, q, k), &x, &cuts);
                let want = run_split(&mut ungrouped(a, b, q, k), &x, &cuts);
                assert_eq!(got.len(), want.len(), "{a}->{b} {q:?} {k:?}");
                let worst = max_abs_diff(&got, &want);
                assert!(worst < 1e-5, "{a}->{b} {q:?} {k:?}: {worst}");
            }
        }
    }
}

#[test]
fn grouped_kernel_invariant_across_staging_blocks_and_tiny_chunks() {
    let x: Vec<i16> = (0..13_000i64)
        .map(|i| ((i * 7919) % 60_000 - 30_000) as i16)
        .collect();
    let ones: Vec<usize> = (1..200).collect();
    for (a, b) in grouped_pairs() {
        for k in kernels() {
            let whole = run_split(&mut make(a, b, Quality::Voice, k), &x, &[]);
            for cuts in [
                &[1, 4095, 4096, 4097, 4200, 9001, 12_999][..],
                &ones[..],
                &[441, 882, 1323, 1764, 2205][..],
            ] {
                let split = run_split(&mut make(a, b, Quality::Voice, k), &x, cuts);
                assert_eq!(whole, split, "{a}->{b} {k:?} {cuts:?}");
            }
        }
    }
}

fn grouped_pair_strategy() -> impl Strategy<Value = (u32, u32)> {
    let pairs = grouped_pairs();
    (0..pairs.len()).prop_map(move |i| pairs[i])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn grouped_kernel_chunking_invariance(
        (a, b) in grouped_pair_strategy(),
        q in prop::sample::select(QUALITIES.to_vec()),
        x in prop::collection::vec(any::<i16>(), 0..3000),
        cuts in prop::collection::vec(0..3000usize, 0..24),
    ) {
        check_chunking(a, b, q, &x, cuts)?;
    }
}

#[test]
fn tts_rates_to_the_phone_leg_are_cascades() {
    // Which pairs get half-band pre-decimators, and from what rate the main stage converts.
    for (a, stages, main) in [
        (22050, 1, 11025),
        (44100, 2, 11025),
        (48000, 1, 24000),
        (16000, 0, 16000),
        (24000, 0, 24000),
        (32000, 0, 32000),
        (11025, 0, 11025),
    ] {
        for q in [Quality::Voice, Quality::Phone] {
            let r = Resampler::new(a, 8000, q).unwrap();
            assert_eq!(r.pre.len(), stages, "{a} {q:?}");
            let (bank, _) = r.core.as_ref().unwrap();
            assert_eq!(main as usize * bank.l, 8000 * bank.m, "{a} {q:?}");
        }
        // High quality keeps the single-stage designs.
        assert!(Resampler::new(a, 8000, Quality::High)
            .unwrap()
            .pre
            .is_empty());
    }
    // Only towards the phone rate.
    assert!(Resampler::new(44100, 16000, Quality::Voice)
        .unwrap()
        .pre
        .is_empty());
}

#[test]
fn phone_quality_is_shorter_and_sooner_to_the_phone_leg() {
    // What the phone quality is for: every TTS rate to 8 kHz with fewer taps per output (the
    // work per frame) and less delay than the voice designs.
    for a in [11025, 16000, 22050, 24000, 32000, 44100, 48000] {
        let voice = Resampler::new(a, 8000, Quality::Voice).unwrap();
        let phone = Resampler::new(a, 8000, Quality::Phone).unwrap();
        // Multiply-adds per output sample over the stages: a pre-decimator emits m / l of the
        // next stage's inputs per output of that stage, and so on down the cascade.
        let work = |r: &Resampler| -> f64 {
            let stages: Vec<_> = r.stages().collect();
            let mut per_out = 0.0;
            let mut outputs = 1.0;
            for (b, _) in stages.iter().rev() {
                // Non-zero taps per output of this stage (the kernels skip a half-band's zeros).
                let nonzero = (0..b.l)
                    .map(|p| b.phase(p).iter().filter(|&&c| c != 0.0).count())
                    .sum::<usize>() as f64
                    / b.l as f64;
                per_out += outputs * nonzero;
                outputs *= b.m as f64 / b.l as f64;
            }
            per_out
        };
        let (wv, wp) = (work(&voice), work(&phone));
        assert!(wp < 0.87 * wv, "{a}: {wp} vs {wv} taps per output");
        let (lv, lp) = (voice.latency_ms(), phone.latency_ms());
        assert!(lp < lv - 0.7, "{a}: {lp} vs {lv} ms");
    }
}

#[test]
fn phone_quality_is_the_voice_design_without_a_phone_leg() {
    // The phone design's 1.0-1.15 ny band may alias: only G.711 hides that, so a pair without
    // 8 kHz is converted exactly as at the voice quality (and still reports phone).
    let x: Vec<i16> = (0..6000)
        .map(|i: i32| (i * 7919 % 20000 - 10000) as i16)
        .collect();
    for (a, b) in all_pairs() {
        if a == b || a == 8000 || b == 8000 {
            continue;
        }
        let mut phone = Resampler::new(a, b, Quality::Phone).unwrap();
        assert_eq!(phone.quality(), Quality::Phone);
        let mut voice = Resampler::new(a, b, Quality::Voice).unwrap();
        assert_eq!(phone.latency_ms(), voice.latency_ms(), "{a}->{b}");
        assert_eq!(
            run_split(&mut phone, &x, &[777]),
            run_split(&mut voice, &x, &[777]),
            "{a}->{b}"
        );
    }
    // With the phone leg on either side it is the phone design.
    for (a, b) in [(8000, 16000), (48000, 8000)] {
        let phone = Resampler::new(a, b, Quality::Phone).unwrap();
        let voice = Resampler::new(a, b, Quality::Voice).unwrap();
        assert!(phone.latency_ms() < voice.latency_ms(), "{a}->{b}");
    }
}

#[test]
fn cascades_match_their_stages_run_by_hand() {
    // Unfused, a cascade is its stages in series, each run on its own: the same bits. (Every
    // phone cascade is fused; this is the voice quality's path from 22.05 kHz, and any
    // design's that does not fit a fused plan.)
    let x = test_signal(9000);
    for rate in [22050, 44100, 48000] {
        for k in kernels() {
            let (whole, by_hand) = cascade_by_hand(rate, Quality::Voice, k, &x, 0);
            assert_eq!(whole, by_hand, "{rate} {k:?}");
        }
    }
}

/// `rate -> 8 kHz` with at most its first `fused` half-bands fused (the rest run as stages of
/// their own, with staging between them), as `Resampler::new` plans it when the later ones
/// do not fit a fused plan.
fn make_fused(rate: u32, q: Quality, k: Kernel, fused: usize) -> Resampler {
    let mut r = make(rate, 8000, q, k);
    if fused < r.fused.len() {
        for (hb, st) in r.pre.iter_mut() {
            *st = State::new(hb);
        }
        r.fused = match fused {
            0 => Vec::new(),
            _ => super::fuse(&mut r.pre, r.core.as_ref().map(|(b, _)| &**b), false),
        };
        r.mid = super::staging(&r.pre, r.fused.len());
    }
    r
}

/// What `rate -> 8 kHz` (with at most `fused` half-bands fused) gives for `x`, and what its
/// stages give run one after the other, each on its own.
fn cascade_by_hand(
    rate: u32,
    q: Quality,
    k: Kernel,
    x: &[f32],
    fused: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut whole = make_fused(rate, q, k, fused);
    let mut out = vec![0f32; whole.output_len_max(x.len())];
    let n = whole.process_f32_into(x, &mut out).unwrap();
    out.truncate(n);
    let mut y = x.to_vec();
    for (b, _) in whole.stages() {
        let mut st = State::new(b);
        let mut next = vec![0f32; y.len() + 16];
        let m = run_stage(b, &mut st, k, &y, &mut next);
        next.truncate(m);
        y = next;
    }
    (out, y)
}

#[test]
fn seeded_prototype_keeps_the_seed_response_and_its_phases_agree() {
    // The 11.025k -> 8k bank is the least-squares seed interpolated onto a 320-phase grid; the
    // interpolation must neither raise its stopband anywhere up to the prototype's Nyquist nor
    // make the phases disagree (a phase-dependent error is a spur on every tone).
    check_seeded(Quality::Voice, 4200.0, -91.0, 64, -95.0);
    check_seeded(Quality::Phone, 4600.0, -80.0, 40, -84.0);
}

/// The seeded 11.025k -> 8k bank of quality `q`: flat to 3.4 kHz, under `floor` dB from `stop`
/// Hz to the prototype's Nyquist, at most `max_taps` per phase, and its phases within `agree`
/// dB of each other at 1 kHz.
fn check_seeded(q: Quality, stop: f64, floor: f64, max_taps: usize, agree: f64) {
    let bank = super::design::bank(11025, 8000, q);
    let (l, taps) = (bank.l, bank.taps);
    assert_eq!(l, 320);
    assert!(taps <= max_taps, "{q:?}: {taps} taps per phase");
    // Rebuild the prototype from the bank: phase p's coefficient k (time-reversed in storage)
    // is prototype sample k * l + p.
    let mut h = vec![0f64; l * taps];
    for slot in 0..l {
        let ph = slot * bank.m % l;
        let c = bank.phase(slot);
        for k in 0..taps {
            h[k * l + ph] = c[taps - 1 - k] as f64;
        }
    }
    // |H(f)| of the whole prototype, at its rate, per phase (each phase has unity DC gain).
    let gain = |f: f64| {
        let (re, im) = dtft(&h, 2.0 * std::f64::consts::PI * f / (11025.0 * l as f64));
        (re * re + im * im).sqrt() / l as f64
    };
    for f in [100.0, 1000.0, 2000.0, 3000.0, 3400.0] {
        let g = db(gain(f));
        assert!(g.abs() < 0.07, "passband at {f} Hz: {g} dB");
    }
    // Everything from the stopband edge to the prototype's Nyquist, densely near the edge,
    // then across the whole band (the seed's images would sit around multiples of 22.05 kHz).
    let edge = (0..200).map(|i| stop + i as f64 * 10.0);
    let wide = (0..400).map(|i| stop + 2000.0 + i as f64 * (11025.0 * 160.0 - stop) / 400.0);
    for f in edge.chain(wide) {
        let g = db(gain(f));
        assert!(g < floor, "{q:?} stopband at {f} Hz: {g} dB");
    }
    // Every phase delays a 1 kHz tone by its own fraction of a sample, all at the same gain
    // (the passband ripple at 1 kHz is common to all of them).
    let centre = bank.delay_in * l as f64;
    let w = 2.0 * std::f64::consts::PI * 1000.0 / 11025.0;
    let rel: Vec<(f64, f64)> = (0..l)
        .map(|slot| {
            let ph = slot * bank.m % l;
            // Phase ph is every l-th prototype sample from ph, at the input rate.
            let row: Vec<f64> = h[ph..].iter().step_by(l).copied().collect();
            let (re, im) = dtft(&row, w);
            // Response over the ideal delay's.
            let a = w * (centre - ph as f64) / l as f64;
            (re * a.cos() - im * a.sin(), re * a.sin() + im * a.cos())
        })
        .collect();
    let mean = rel.iter().fold((0.0, 0.0), |s, r| {
        (s.0 + r.0 / l as f64, s.1 + r.1 / l as f64)
    });
    assert!(
        db(mean.0).abs() < 0.07 && db(mean.1.abs()) < agree,
        "{q:?}: {mean:?}"
    );
    for (slot, r) in rel.iter().enumerate() {
        let err = db(((r.0 - mean.0).powi(2) + (r.1 - mean.1).powi(2)).sqrt());
        assert!(err < agree, "{q:?} slot {slot}: {err} dB from the others");
    }
}

/// The DTFT of `x` at `w` radians per sample, as (re, im).
fn dtft(x: &[f64], w: f64) -> (f64, f64) {
    x.iter().enumerate().fold((0.0, 0.0), |(re, im), (i, &v)| {
        (re + v * (w * i as f64).cos(), im - v * (w * i as f64).sin())
    })
}

#[test]
fn fused_halfband_matches_its_stages_run_by_hand() {
    // 48 kHz -> 8 kHz runs its half-band straight into the 3:1 stage's streams, 22.05 kHz
    // into the grouped stage's linear history, 44.1 kHz both its half-bands, the first into
    // the second's streams and that into the grouped stage (`fused.rs`); with only the first
    // fused, the second runs as a stage of its own. Each must be its stages in series: the
    // same outputs as the stages run one after the other (to float rounding: the fused
    // half-band sums its taps in another order), on every kernel; and any chunking, down to
    // single samples and across staging blocks, gives the one-shot bits.
    let x = test_signal(13_000);
    // The voice designs' half-band at 22.05 kHz has too many pairs for the registers: that
    // one runs on its own (from 22.05 kHz), or fed by the first (from 44.1 kHz).
    let (voice, phone) = (Quality::Voice, Quality::Phone);
    let plans = [
        (48000, 1, phone),
        (22050, 1, phone),
        (44100, 2, phone),
        (44100, 1, phone),
        (48000, 1, voice),
        (22050, 0, voice),
        (44100, 1, voice),
    ];
    for (rate, fused, q) in plans {
        for k in kernels() {
            let whole = make(rate, 8000, q, k);
            let r = make_fused(rate, q, k, fused);
            assert!(
                r.fused.len() == fused && whole.fused.len() >= fused,
                "{rate} {q:?}"
            );
            // The voice rows are what `Resampler::new` plans.
            assert!(q == phone || whole.fused.len() == fused, "{rate} {q:?}");
            // Staging only after the half-bands that are not fused.
            for p in [&whole, &r] {
                let staged: Vec<bool> = p.mid.iter().map(|m| !m.is_empty()).collect();
                let want: Vec<bool> = (0..p.pre.len()).map(|k| k >= p.fused.len()).collect();
                assert_eq!(staged, want, "{rate} {q:?}");
            }
            let (out, out2) = cascade_by_hand(rate, q, k, &x, fused);
            assert_eq!(out.len(), out2.len(), "{rate} {q:?} {k:?}");
            let worst = max_abs_diff(&out, &out2);
            assert!(worst < 1e-6, "{rate} {q:?} {k:?}: {worst}");
            let pcm: Vec<i16> = x.iter().map(|&v| (v * 32767.0) as i16).collect();
            let mut cuts: Vec<usize> = (1..40).chain([4095, 4096, 4097, 6143, 9001]).collect();
            cuts.extend((100..140).step_by(3));
            cuts.sort_unstable();
            let one = run_split(&mut make_fused(rate, q, k, fused), &pcm, &[]);
            let split = run_split(&mut make_fused(rate, q, k, fused), &pcm, &cuts);
            assert_eq!(one, split, "{rate} {q:?} {k:?}");
            let one = run_split(&mut make_fused(rate, q, k, fused), &x, &[]);
            let split = run_split(&mut make_fused(rate, q, k, fused), &x, &cuts);
            let bits = |v: &[f32]| v.iter().map(|y| y.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one), bits(&split), "{rate} {q:?} {k:?} f32");
        }
    }
}

#[test]
fn phone_cascades_keep_every_tone_above_the_stopband_edge_80_db_down() {
    // The phone quality's promise from every TTS rate: a tone anywhere from 4.6 kHz to the
    // input Nyquist leaves under -80 dB in the 8 kHz output, whatever stage of a cascade lets
    // it through or folds it. Densely, so that no notch between the six tones of
    // `aliases_and_images_are_rejected` hides a peak.
    for a in [16000, 22050, 24000, 32000, 44100, 48000] {
        let mut worst = (f64::MIN, 0.0);
        for i in 0..400 {
            let f = 4600.0 + (0.985 * a as f64 / 2.0 - 4600.0) * i as f64 / 399.0;
            let y = resample_f32(a, 8000, Quality::Phone, &tone(f, a, a as usize / 8, 0.5));
            // Past the filters' start-up: every stage's delay is under 10 ms.
            let steady = &y[80..];
            let lvl = db(rms(steady) * 2f64.sqrt() / 0.5);
            if lvl > worst.0 {
                worst = (lvl, f);
            }
        }
        assert!(
            worst.0 < -80.0,
            "{a}: {:.1} dB at {:.0} Hz",
            worst.0,
            worst.1
        );
    }
}

/// After each call, how many outputs have come out (cumulative) and how many are held back,
/// for `x` in calls of `step` samples; then everything, flushed.
fn cumulative(r: &mut Resampler, x: &[i16], step: usize) -> (Vec<usize>, Vec<usize>, Vec<i16>) {
    let mut out = Vec::new();
    let (mut counts, mut held) = (Vec::new(), Vec::new());
    for c in x.chunks(step) {
        let mut buf = vec![0; r.output_len_max(c.len())];
        let n = r.process_into(c, &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
        counts.push(out.len());
        held.push(r.held_len());
    }
    let mut buf = vec![0; r.flush_len_max()];
    let n = r.flush_into(&mut buf).unwrap();
    out.extend_from_slice(&buf[..n]);
    (counts, held, out)
}

#[test]
fn holding_partial_groups_gives_whole_groups_of_the_same_samples() {
    let x: Vec<i16> = (0..9000i64)
        .map(|i| ((i * 7919) % 50_000 - 25_000) as i16)
        .collect();
    for q in [Quality::Phone, Quality::Voice] {
        for (a, b) in all_pairs() {
            let grouped = matches!(
                &Resampler::new(a, b, q).unwrap().core,
                Some((bank, _)) if bank.bcast.is_some()
            );
            for k in kernels() {
                for step in [1, 7, a as usize / 200, a as usize / 50, 4097] {
                    let mut plain = make(a, b, q, k);
                    let mut held = make(a, b, q, k);
                    held.hold_partial_groups(true);
                    // Two streams each: the hold outlasts a flush, and a refused one.
                    for _ in 0..2 {
                        let refused = held.flush_into(&mut []);
                        let fresh = held.flush_len() == 0;
                        assert!(
                            fresh || matches!(refused, Err(ResampleError::OutputTooSmall { .. }))
                        );
                        let (cp, hp, op) = cumulative(&mut plain, &x, step);
                        let (ch, hh, oh) = cumulative(&mut held, &x, step);
                        let what = format!("{a}->{b} {q:?} {k:?} in {step}s");
                        assert!(op == oh, "{what}: different samples");
                        assert!(hp.iter().all(|&h| h == 0), "{what}: held without the hold");
                        // Whole groups out, the rest held; nothing held where not grouped.
                        let partial = |n: &usize| if grouped { n % OUTPUT_GROUP } else { 0 };
                        let want: Vec<usize> = cp.iter().map(partial).collect();
                        assert!(hh == want, "{what}: not the partial group held");
                        let ready: Vec<usize> = ch.iter().zip(&hh).map(|(c, h)| c + h).collect();
                        assert!(ready == cp, "{what}: not every ready output out or held");
                    }
                }
            }
        }
    }
}

proptest! {
    /// `flush_len` is exact with the hold on too: the flush turns the hold off before its
    /// tail, so the held outputs come out with it (it used to count whole groups only, and a
    /// buffer of `flush_len` was refused).
    #[test]
    fn flush_len_is_exact_with_or_without_the_hold(
        a in prop::sample::select(vec![44100u32, 22050]),
        hold in any::<bool>(),
        chunks in prop::collection::vec(0usize..1500, 0..6),
    ) {
        let mut r = Resampler::new(a, 8000, Quality::Phone).unwrap();
        r.hold_partial_groups(hold);
        let x: Vec<i16> = (0..1500i64).map(|i| ((i * 7919) % 50_000 - 25_000) as i16).collect();
        for &n in &chunks {
            let mut buf = vec![0; r.output_len_max(n)];
            r.process_into(&x[..n], &mut buf).unwrap();
        }
        let n = r.flush_len();
        prop_assert!(n <= r.flush_len_max());
        if n > 0 {
            let refused = r.clone().flush_into(&mut vec![0; n - 1]);
            prop_assert!(
                matches!(refused, Err(ResampleError::OutputTooSmall { .. })),
                "flush_len() - 1 accepted"
            );
        }
        let mut tail = vec![0; n];
        prop_assert_eq!(r.flush_into(&mut tail), Ok(n));
    }
}
