//! A 2:1 half-band pre-decimator that writes straight into the next stage's history.
//!
//! Why: ahead of the 48 kHz -> 8 kHz main stage (3:1, three deinterleaved streams) the
//! half-band cost about three times its arithmetic as a direct-form stage of its own. Its taps
//! sit at odd distances from each other, so with eight consecutive outputs in a vector every
//! tap is a load of its own (most of them split across cache lines), and its output was staged,
//! copied and split again into the main stage's streams. The same holds for the half-bands
//! from 44.1 and 22.05 kHz.
//!
//! Here the half-band's history is kept as `2 M` deinterleaved streams, `M` the streams of the
//! next stage's history. The output that becomes item `v` of the next stage's stream `s` (its
//! input sample `M v + s`) reads every tap from item `v + shift` of one of those streams, so
//! each of the `M` rows of a block is eight contiguous outputs, written straight into the next
//! stage's history, and the rows of one block share their input vectors: for the 17-tap phone
//! half-band at 48 kHz, 13 loads for 24 outputs instead of 27.
//!
//! Ahead of a stage with linear history (the grouped kernel of 11.025 kHz -> 8 kHz) there are
//! no streams to write into, but the shared loads pay all the same: the half-band runs with
//! two rows (four streams), and each block's two rows are interleaved back into sixteen
//! consecutive samples of that history. From 22.05 kHz its 11 tap pairs then need 25 loads for
//! 16 outputs instead of 46, and its outputs skip a staging copy. From 44.1 kHz the second
//! half-band does that, and the first writes four rows into its four streams (15 loads for 32
//! outputs).
//!
//! Chunking invariance: every output is `centre * x` and then one multiply-add per tap pair,
//! nearest the centre first, in one lane, whatever block, row or call it falls in.

use super::direct::{mirrored, Vec8, PAD};
use super::{Bank, State};

/// Most rows: the streams of the next stage's history (3 for the 3:1 stage of 48 kHz -> 8 kHz,
/// 4 for the second half-band from 44.1 kHz).
const MAX_ROWS: usize = 4;
/// Rows interleaved into linear history (by `Vec8::zip2`).
const LINEAR_ROWS: usize = 2;
/// Vector registers of the narrowest target (AVX2's sixteen): a block keeps every pair's
/// coefficient, every row's accumulator and two loaded vectors in them. With more it spills,
/// and ran 13 % slower than the direct form (the 22.05 kHz `voice` half-band, 13 pairs).
const VECTOR_REGS: usize = 16;
/// Most tap pairs either side of the centre (the kernel is unrolled for each count).
const MAX_PAIRS: usize = VECTOR_REGS - 2 - 2;

/// The half-band's taps, split for the fused kernel.
#[derive(Debug, Clone)]
pub(super) struct Fused {
    /// The streams of the next stage's history (its decimation, or the streams of the
    /// half-band it is), or the rows interleaved into linear history; the half-band's own
    /// history has twice as many streams.
    pub(super) rows: usize,
    /// The next stage keeps linear history (rows are interleaved into it).
    linear: bool,
    centre: f32,
    /// Coefficient of each pair of taps at odd distances from the centre, nearest first.
    pairs: Vec<f32>,
    /// How far the centre tap is behind an output's newest input sample.
    kc: usize,
}

impl Fused {
    /// The plan for half-band `hb` feeding `next`, when `hb` has the half-band shape (non-zero
    /// centre, zeros at even distances from it, mirrored pairs at odd distances) and `next`
    /// is a half-band fused in turn (`next_fused`), a direct-form decimator by 2 or 3, or
    /// runs grouped, and its pairs and rows fit the vector registers.
    pub(super) fn new(hb: &Bank, next: &Bank, next_fused: Option<&Fused>) -> Option<Fused> {
        let (rows, linear) = match (next_fused, &next.direct, &next.bcast) {
            (Some(f), _, _) => (f.streams(), false),
            (None, Some(d), _) if next.l == 1 && d.streams == next.m => (next.m, false),
            (None, None, Some(_)) => (LINEAR_ROWS, true),
            _ => return None,
        };
        if hb.l != 1 || hb.m != 2 || !(2..=MAX_ROWS).contains(&rows) {
            return None;
        }
        // Tap k (distance behind the newest input) is window index taps - 1 - k.
        let c = hb.phase(0);
        let h = |k: usize| c[hb.taps - 1 - k];
        let first = (0..hb.taps).find(|&k| h(k) != 0.0)?;
        let last = (0..hb.taps).rev().find(|&k| h(k) != 0.0)?;
        let span = last - first;
        if span % 4 != 2 {
            return None;
        }
        let kc = first + span / 2;
        let n = (span + 2) / 4;
        if !(1..=MAX_PAIRS).contains(&n) || n + rows + 2 > VECTOR_REGS || h(kc) == 0.0 {
            return None;
        }
        // Taps at odd distances from the centre (every other one from `first`) mirror each
        // other; the rest, but the centre, are zero.
        let odd: Vec<f32> = (first..=last).step_by(2).map(h).collect();
        let even_zero = (first + 1..last).step_by(2).all(|k| k == kc || h(k) == 0.0);
        if !even_zero || !mirrored(&odd, &odd) {
            return None;
        }
        Some(Fused {
            rows,
            linear,
            centre: h(kc),
            pairs: (0..n).map(|j| h(kc - 2 * j - 1)).collect(),
            kc,
        })
    }

    /// Streams of the half-band's history.
    pub(super) fn streams(&self) -> usize {
        2 * self.rows
    }

    /// Computes every half-band output whose input has arrived (as many as `next` has room
    /// for) into `next`'s streams; returns how many.
    #[inline(always)]
    pub(super) fn emit<V: Vec8>(&self, hb: &mut State, next: &mut State) -> usize {
        macro_rules! dispatch {
            ($($n:literal)*) => {
                match (self.pairs.len(), self.rows) {
                    $(($n, 2) => self.emit_n::<V, $n, 2>(hb, next),
                      ($n, 3) => self.emit_n::<V, $n, 3>(hb, next),
                      ($n, 4) => self.emit_n::<V, $n, 4>(hb, next),)*
                    _ => 0,
                }
            };
        }
        dispatch!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[inline(always)]
    fn emit_n<V: Vec8, const N: usize, const R: usize>(
        &self,
        hb: &mut State,
        next: &mut State,
    ) -> usize {
        let s_in = 2 * R;
        let room = if self.linear {
            // Each block writes 8 R samples from its first (see the linear store below).
            R == LINEAR_ROWS && next.stride == 0 && next.buf.len() >= next.cap + 8 * R
        } else {
            next.stride != 0 && next.buf.len() >= R * next.stride
        };
        if !room || hb.stride == 0 || hb.buf.len() < s_in * hb.stride || PAD < 8 {
            return 0;
        }
        let count = super::ready(hb.fill, hb.next, 2).min(next.cap - next.fill);
        if count == 0 {
            return 0;
        }
        // Row s of a block holds next-stage samples p0 + s, p0 + s + R, ...: the call's
        // outputs in order, R at a time, whatever p0 is (so no output is ever alone). Output
        // p0 + R u + s has its newest input at half-band sample hb.next + 2 R u + 2 s, and tap
        // k is the sample k before that: item u + shift of one of the 2R streams.
        let p0 = next.fill;
        let src = hb.buf.as_ptr();
        let at = |o: isize| at::<R>(src, hb.stride, o);
        let (n0, kc) = (hb.next as isize, self.kc as isize);
        let base = n0 - kc - 2 * N as isize + 1;
        // Odd-distance vector e (R + 2N - 1 of them) starts at `at(base + 2 e)`: with 2R
        // streams that is item e / R of the base of vector e % R, so R pointers and constant
        // offsets address them all (one pointer each overflowed the registers and spilled).
        let mut odd = [src; MAX_ROWS];
        for (e, p) in odd.iter_mut().enumerate().take(R) {
            *p = at(base + 2 * e as isize);
        }
        let mut cen = [src; MAX_ROWS];
        for (s, p) in cen.iter_mut().enumerate().take(R) {
            *p = at(n0 + 2 * s as isize - kc);
        }
        let out = next.buf.as_mut_ptr();
        let mut dst = [out; MAX_ROWS];
        // Linear history has no streams: its rows are interleaved from `out` on.
        let rows = if self.linear { 0 } else { R };
        for (s, d) in dst.iter_mut().enumerate().take(rows) {
            let p = p0 + s;
            // SAFETY: sample p is item p / R of stream p % R, inside the buffer: p0 < next.cap
            // and s < R, so the item is at most cap / R + 1, and each stream has
            // cap.div_ceil(R) + PAD items.
            *d = unsafe { out.add(p % R * next.stride + p / R) };
        }
        let pairs: &[f32; N] = self.pairs[..].try_into().expect("N pairs");
        let mut u = 0;
        while R * u < count {
            // SAFETY: the lanes of outputs before p0 + count read samples from
            // hb.next + 1 - taps on, all in the history; later lanes read at most 8 items past
            // the newest sample of a stream, inside its PAD.
            let acc = unsafe { block::<V, N, R>(&odd, &cen, self.centre, pairs, u) };
            // SAFETY: at most 8 items past the next stage's newest sample of a stream are
            // written, inside its PAD (count <= next.cap - p0); linear, samples
            // p0 + R u .. p0 + R u + 8 R with R u < count <= next.cap - p0, inside the
            // `next.cap + 8 R` checked above.
            unsafe {
                if self.linear {
                    V::zip2(acc[0], acc[R - 1], out.add(p0 + R * u));
                } else {
                    for (s, a) in acc.iter().enumerate() {
                        a.store(dst[s].add(u));
                    }
                }
            }
            u += 8;
        }
        let p_end = p0 + count;
        hb.next += 2 * count;
        next.fill = p_end;
        count
    }
}

/// Where item `o` of the half-band's history (`2 R` streams of `stride`) is: item `o / 2R` of
/// stream `o % 2R`. Only in-bounds items are ever read through these (see `Fused::emit_n`);
/// the bases themselves may lie before a stream. A function of `R`, not a closure: the
/// divisions by the constant must be inlined into the kernel's instruction set (a closure
/// there was a call with two integer divisions, ~4% of 44.1 kHz -> 8 kHz).
#[inline(always)]
fn at<const R: usize>(src: *const f32, stride: usize, o: isize) -> *const f32 {
    let s_in = 2 * R as isize;
    src.wrapping_offset(o.rem_euclid(s_in) * stride as isize + o.div_euclid(s_in))
}

/// Eight outputs `u..u + 8` of each of the `R` rows.
///
/// # Safety
/// Every pointer plus `u` must be valid for eight reads, lane by lane as described in
/// [`Fused::emit_n`].
#[inline(always)]
unsafe fn block<V: Vec8, const N: usize, const R: usize>(
    odd: &[*const f32; MAX_ROWS],
    cen: &[*const f32; MAX_ROWS],
    centre: f32,
    pairs: &[f32; N],
    u: usize,
) -> [V; R] {
    let c0 = V::splat(&centre);
    let mut acc: [V; R] =
        std::array::from_fn(|s| V::madd(c0, V::load(cen[s].wrapping_add(u)), V::zero()));
    let vector = |e: usize| V::load(odd[e % R].wrapping_add(e / R + u));
    for (j, g) in pairs.iter().enumerate() {
        let g = V::splat(g);
        for (s, a) in acc.iter_mut().enumerate() {
            // Row s, pair j: the older tap is vector s + N - 1 - j, the newer s + N + j.
            let x = V::add(vector(s + N - 1 - j), vector(s + N + j));
            *a = V::madd(g, x, *a);
        }
    }
    acc
}
