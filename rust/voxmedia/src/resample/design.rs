//! Prototype low-pass design (Kaiser-windowed sinc, or an offline table) and its polyphase split.
//!
//! Edges are given in units of the lower Nyquist frequency `ny`, from what a phone leg needs:
//! a flat passband to 0.85 ny, and
//! - downsampling: aliases gone from 1.05 ny (everything above the output Nyquist folds back);
//! - upsampling: images of tones up to 0.9 ny start at 1.1 ny, so the transition can be centred
//!   on the input Nyquist, which makes the prototype an L-th band filter with a trivial phase.
//!
//! Kaiser's length formula targets the same deviation in both bands, but only the stopband
//! needs it: a 0.1 dB passband allows a ripple ~500x larger. So the downsampling transition is
//! centred below its nominal midpoint: 0.05 dB at 0.85 ny (of the 0.1 dB allowed) for ~14% fewer
//! taps than the symmetric design.
//!
//! Down-conversions from 22.05, 44.1 and 48 kHz to 8 kHz are cascades (see [`cascade`]):
//! Kaiser half-bands halve the rate first (flat to 1.05 x the output Nyquist, so they leave the
//! main stage's passband and transition alone), then the usual design converts the rest.

use super::{tables, Bank, Lanes, Quality};

/// Kaiser design target of the `phone` quality's run-time designs, dB (its tables are
/// least-squares designs to -82 dB; see `gen_tables.py`).
const PHONE_KAISER_ATTEN: f64 = 82.0;

struct Spec {
    /// Stopband attenuation target, dB.
    atten: f64,
    /// Cutoff (-6 dB point), in units of the lower Nyquist.
    cutoff: f64,
    /// Half the transition width, in units of the lower Nyquist.
    half_width: f64,
    /// Centre the prototype on a multiple of L so one phase is a pure delay.
    nyquist: bool,
}

fn spec(in_rate: u32, out_rate: u32, quality: Quality) -> Spec {
    let atten = match quality {
        Quality::Voice => 96.0,
        Quality::High => 130.0,
        // Kaiser's formula lands right at its target; the goal is 80 dB.
        Quality::Phone => PHONE_KAISER_ATTEN,
    };
    if quality == Quality::Phone {
        // Flat to 0.85 ny, stopband (or the images of tones up to 0.85 ny) from 1.15 ny: the
        // transition is centred on the lower Nyquist either way, so an upsampler's prototype
        // is an L-th band filter with a trivial phase.
        return Spec {
            atten,
            cutoff: 1.0,
            half_width: 0.15,
            nyquist: out_rate > in_rate,
        };
    }
    if out_rate > in_rate {
        Spec {
            atten,
            cutoff: 1.0,
            half_width: 0.1,
            nyquist: true,
        }
    } else {
        Spec {
            atten,
            cutoff: 0.936,
            half_width: 0.114,
            nyquist: false,
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Zeroth-order modified Bessel function of the first kind (power series; converges fast for
/// the beta values used here).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    loop {
        term *= q / (k * k);
        sum += term;
        if term < sum * 1e-17 {
            return sum;
        }
        k += 1.0;
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Kaiser-windowed sinc prototype at `proto` Hz; returns the taps and the centre index.
fn kaiser(sp: &Spec, ny: f64, proto: f64, l: usize) -> (Vec<f64>, f64) {
    let fc = sp.cutoff * ny / proto; // cycles per prototype sample
    let dw = 2.0 * std::f64::consts::PI * (2.0 * sp.half_width * ny) / proto;
    let beta = 0.1102 * (sp.atten - 8.7);
    let mut n = ((sp.atten - 7.95) / (2.285 * dw)).ceil() as usize + 1;
    let mut centre = (n - 1) as f64 / 2.0;
    if sp.nyquist {
        let c = ((n - 1) as f64 / 2.0 / l as f64).ceil() as usize * l;
        n = 2 * c + 1;
        centre = c as f64;
    }
    let half = (n - 1) as f64 / 2.0;
    let i0b = bessel_i0(beta);
    let h: Vec<f64> = (0..n)
        .map(|i| {
            let t = i as f64 - centre;
            if sp.nyquist && (i as f64 - centre) % l as f64 == 0.0 && t != 0.0 {
                return 0.0; // exact zeros of the L-th band sinc
            }
            let r = (i as f64 - half) / half;
            let w = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0b;
            2.0 * fc * sinc(2.0 * fc * t) * w
        })
        .collect();
    (h, centre)
}

pub(super) fn bank(in_rate: u32, out_rate: u32, quality: Quality) -> Bank {
    let g = gcd(in_rate, out_rate);
    let l = (out_rate / g) as usize;
    let m = (in_rate / g) as usize;
    let mut sp = spec(in_rate, out_rate, quality);
    if quality == Quality::Voice && super::bcast::grouped(l, m) {
        // Rational down-conversions of the 44.1 kHz family (piper's 22.05 kHz TTS to a phone
        // leg) pay for every tap on each of l phases per frame; 90 dB still clears the 85 dB
        // alias goal with margin and the PCM16 noise of speech-level signals, for ~9% fewer
        // taps (ripple at 0.85 ny stays ~0.07 dB of the 0.1 dB allowed).
        sp.atten = 90.0;
    }
    let ny = in_rate.min(out_rate) as f64 / 2.0;
    let proto = in_rate as f64 * l as f64;
    // The hot 2:1 and 3:1 decimators use offline near-minimax designs to -91.5 dB (see
    // gen_tables.py for why that depth): ~25% fewer taps than the 96 dB Kaiser design. The hot
    // 1:2 interpolator uses a minimax half-band designed to 90 dB: 27 instead of 31 folded
    // taps per output (the PCM16 noise of a half-scale tone is at -92 dB, so the Kaiser
    // design's 96 dB bought nothing measurable).
    let table: Option<&[f64]> = match (quality, l, m) {
        (Quality::Voice, 1, 2) => Some(&tables::DECIM2),
        (Quality::Voice, 1, 3) => Some(&tables::DECIM3),
        (Quality::Voice, 2, 1) => Some(&tables::INTERP2),
        (Quality::Phone, 1, 2) => Some(&tables::PHONE_DECIM2),
        (Quality::Phone, 1, 3) => Some(&tables::PHONE_DECIM3),
        (Quality::Phone, 2, 1) => Some(&tables::PHONE_INTERP2),
        _ => None,
    };
    let (h, centre) = match (table, quality, in_rate, out_rate) {
        (Some(t), ..) => (t.to_vec(), (t.len() - 1) as f64 / 2.0),
        // The main stage of piper's 22.05 kHz (and 44.1 kHz) TTS to the phone leg, after the
        // half-band pre-decimators: a near-minimax seed interpolated onto the 320-phase grid,
        // 63 taps per phase instead of the Kaiser design's 79 (see `seeded`). The phone seed
        // is at 44.1 kHz, where the kernel's reach is half as many input samples: 39 taps
        // instead of 42 (see `gen_tables.py`).
        (None, Quality::Voice, 11025, 8000) => seeded(&tables::SEED_11025_8000, 22050, proto),
        (None, Quality::Phone, 11025, 8000) => seeded(&tables::PHONE_SEED_11025_8000, 44100, proto),
        _ => kaiser(&sp, ny, proto, l),
    };
    polyphase(&h, centre, l, m)
}

/// Half-width, in seed samples, of the kernel that interpolates a seed (see [`seeded`]).
const SEED_KERNEL_HALF: f64 = 6.0;
/// Stopband of that kernel, dB (its Kaiser window's parameter).
const SEED_KERNEL_ATTEN: f64 = 120.0;

/// A prototype at `proto` Hz from a linear-phase `seed` designed at `seed_rate` Hz (a rate
/// well above the seed's stopband edge); returns the taps and the centre index.
///
/// Why: a least-squares design is ~20% shorter than a Kaiser design for the same edges (it
/// spends the loose passband budget), but a prototype with hundreds of phases has ~20,000
/// taps, far beyond what least squares can solve. The prototype's band is only the seed's,
/// though, so it is the seed evaluated between its samples: band-limited interpolation with a
/// Kaiser-windowed sinc that is flat (to ~1e-6) up to the seed's stopband edge and rejects
/// the seed's images, which start at `seed_rate` minus that edge. With the seed at 22.05 kHz
/// and edges of 4.2 kHz that is a transition of 4.2 -> 17.85 kHz, so a kernel of +-6 seed
/// samples reaches 120 dB and the prototype keeps the seed's -91.5 dB stopband, and its phases
/// agree with each other to ~-98 dB (both checked in the tests).
///
/// Cost: the prototype has a whole number of samples per seed sample (160 here), so the kernel
/// is only ever needed at multiples of 1/160 of a seed sample: it is tabulated once (~2,000
/// values) and each prototype tap is a dozen multiply-adds. Evaluating the kernel for every
/// product instead took 21 ms, on the event loop, the first time a call played 22.05 kHz TTS.
fn seeded(seed: &[f64], seed_rate: u32, proto: f64) -> (Vec<f64>, f64) {
    let up = (proto / seed_rate as f64).round() as usize; // prototype samples per seed sample
    assert!(
        (proto / seed_rate as f64 - up as f64).abs() < 1e-9 && seed.len() % 2 == 1,
        "a seed needs an odd length and a whole number of prototype samples per sample"
    );
    let sc = (seed.len() - 1) / 2;
    let reach = SEED_KERNEL_HALF as usize * up; // the kernel's half-width in prototype samples
    let beta = 0.1102 * (SEED_KERNEL_ATTEN - 8.7);
    let i0b = bessel_i0(beta);
    // kernel[reach + n]: the Kaiser-windowed sinc at n / up seed samples.
    let kernel: Vec<f64> = (0..=2 * reach)
        .map(|k| {
            let d = (k as f64 - reach as f64) / up as f64;
            let r = d / SEED_KERNEL_HALF;
            sinc(d) * bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0b
        })
        .collect();
    // Prototype tap n (from its centre) is the sum over seed taps j of seed[j] at
    // n - (j - sc) * up prototype samples from the kernel's centre.
    let half = sc * up + reach;
    let h = (0..2 * half + 1)
        .map(|i| {
            let n = i as i64 - half as i64;
            let (up, sc, reach) = (up as i64, sc as i64, reach as i64);
            // The seed taps within the kernel's reach, |n - (j - sc) * up| <= reach: from
            // ceil((n - reach) / up) to floor((n + reach) / up), relative to the centre.
            let lo = (sc - (reach - n).div_euclid(up)).max(0);
            let hi = (sc + (n + reach).div_euclid(up)).min(seed.len() as i64 - 1);
            (lo..=hi)
                .map(|j| seed[j as usize] * kernel[(n - (j - sc) * up + reach) as usize])
                .sum()
        })
        .collect();
    (h, half as f64)
}

/// The G.711 phone leg's rate: the `Phone` designs are for pairs with it on one side.
const PHONE_RATE: u32 = 8000;

/// The design `quality` stands for between `in_rate` and `out_rate`: the phone quality's
/// relaxed band edges are only safe where the audio is G.711 on one side (its noise hides what
/// they let through), so other pairs get the voice design.
pub(super) fn design_quality(in_rate: u32, out_rate: u32, quality: Quality) -> Quality {
    if quality == Quality::Phone && in_rate != PHONE_RATE && out_rate != PHONE_RATE {
        Quality::Voice
    } else {
        quality
    }
}

/// Input rates of the 2:1 pre-decimators that run ahead of the main stage of `in -> out`
/// (outermost first); the main stage then converts from the last of them halved.
///
/// Why: a TTS stream at 22.05, 44.1 or 48 kHz to the 8 kHz phone leg pays, per output, for a
/// filter whose length in input samples grows with the input rate (the transition band is a
/// fixed 800 Hz). Halving first with a half-band, whose transition only has to protect what
/// the later stages pass, is cheap (wide transition, every other tap zero), and the main stage
/// then needs half the taps in input samples: 22.05k -> 8k becomes 22.05k -> 11.025k -> 8k,
/// 44.1k two halvings then 11.025k -> 8k, 48k -> 24k then the 3:1 table. Only for the phone
/// rate at the voice and phone qualities: the `high` designs and the other pairs are
/// unchanged. Not ahead of a 2:1 main stage (32k -> 8k stays one 4:1 direct-form pass): there
/// the half-band's leak and the 2:1 table's stopband add up to an alias of one test tone at
/// 85.8 dB, under the margin.
pub(super) fn cascade(in_rate: u32, out_rate: u32, quality: Quality) -> Vec<u32> {
    let mut rates = Vec::new();
    if quality == Quality::High || out_rate != 8000 {
        return rates;
    }
    let mut r = in_rate;
    while r % 2 == 0
        && r / 2 > out_rate
        && r / 2 != 2 * out_rate
        && super::SUPPORTED_RATES.contains(&(r / 2))
    {
        rates.push(r);
        r /= 2;
    }
    rates
}

/// Stopband of the 2:1 pre-decimators, dB: they are short, so the default voice target costs
/// little, and it keeps their leak well under the main stage's.
const HALFBAND_ATTEN: f64 = 96.0;

/// The 2:1 half-band pre-decimator at `in_rate` ahead of a main stage to `out_rate` (see
/// [`cascade`]). Flat to 1.05 x the output Nyquist (`pass`, the main stage's stopband edge,
/// so its whole passband and transition are untouched), and since a half-band is symmetric
/// about `in_rate / 4`, its stopband starts at `in_rate / 2 - pass`: exactly the tones that
/// fold onto `[0, pass]` after halving. Tones that fold higher land in a later stage's
/// stopband (each later half-band has the same `pass`). A Kaiser half-band, designed at run
/// time, because the edges differ per input rate and the filter is a small part of the work.
///
/// At the phone quality the main stage's stopband starts at 1.15 x the output Nyquist, so the
/// half-band is flat to there instead, to 80 dB: least-squares tables for the rates a cascade
/// reaches (48, 44.1 and 22.05 kHz; the last flat to 4.2 kHz only, which the main stage's
/// roll-off allows, see `gen_tables.py`).
pub(super) fn halfband(in_rate: u32, out_rate: u32, quality: Quality) -> Bank {
    let (edge, atten) = match quality {
        Quality::Phone => {
            let table: Option<&[f64]> = match (in_rate, out_rate) {
                (48000, 8000) => Some(&tables::PHONE_HALFBAND_48000),
                (44100, 8000) => Some(&tables::PHONE_HALFBAND_44100),
                (22050, 8000) => Some(&tables::PHONE_HALFBAND_22050),
                _ => None,
            };
            if let Some(t) = table {
                return polyphase(t, ((t.len() - 1) / 2) as f64, 1, 2);
            }
            (1.15, PHONE_KAISER_ATTEN)
        }
        _ => (1.05, HALFBAND_ATTEN),
    };
    let pass = edge * out_rate as f64 / 2.0;
    let quarter = in_rate as f64 / 4.0;
    let sp = Spec {
        atten,
        cutoff: 1.0,
        half_width: 1.0 - pass / quarter,
        nyquist: true,
    };
    // In units of `quarter`, centred on a multiple of 2: zeros at every even offset.
    let (h, centre) = kaiser(&sp, quarter, in_rate as f64, 2);
    polyphase(&h, centre, 1, 2)
}

/// Splits prototype `h` (centred at index `centre`) into the `l`-phase bank of an `l / m`
/// converter, with the direct-form or grouped plan when one applies.
fn polyphase(h: &[f64], centre: f64, l: usize, m: usize) -> Bank {
    let n = h.len();

    let per_phase = n.div_ceil(l);
    let taps = per_phase.div_ceil(8) * 8;
    let mut flat = vec![0f32; l * taps];
    let mut trivial = vec![None; l];
    // Rows are stored in the order the outputs visit the phases (slot s holds phase s*m mod l),
    // so a run of outputs streams through the table instead of jumping by m rows each time.
    for slot in 0..l {
        let ph = slot * m % l;
        let row: Vec<f64> = (0..per_phase)
            .map(|k| h.get(k * l + ph).copied().unwrap_or(0.0))
            .collect();
        let sum: f64 = row.iter().sum();
        let dst = &mut flat[slot * taps..(slot + 1) * taps];
        for (k, &v) in row.iter().enumerate() {
            // x[n - k] sits at window index taps - 1 - k.
            dst[taps - 1 - k] = (v / sum) as f32;
        }
        let nonzero: Vec<usize> = (0..taps).filter(|&i| dst[i] != 0.0).collect();
        if nonzero.len() == 1 && dst[nonzero[0]] == 1.0 {
            trivial[slot] = Some(nonzero[0]);
        }
    }
    let coefs = flat
        .chunks_exact(8)
        .map(|c| Lanes(c.try_into().expect("chunks of 8")))
        .collect();
    let step = (0..l)
        .map(|slot| ((slot * m % l + m) / l, (slot + 1) % l))
        .collect();
    let mut bank = Bank {
        l,
        m,
        taps,
        coefs,
        trivial,
        step,
        delay_in: centre / l as f64,
        direct: None,
        bcast: None,
    };
    bank.direct = super::direct::Direct::new(&bank);
    if bank.direct.is_none() {
        bank.bcast = super::bcast::Bcast::new(&bank);
    }
    bank
}
