//! Output-vectorised kernel for rational down-conversions with many phases (22.05 kHz -> 8 kHz
//! and the rest of the 44.1 kHz family).
//!
//! Why: with l = 160 phases every output of a 20 ms frame has its own coefficient row, so the
//! dot-product kernels pay, per output, a horizontal reduction and unaligned window loads that
//! often split cache lines, and run at a fraction of FMA throughput. Here the outputs of 16
//! consecutive phase slots (a "group", whose window starts are a fixed pattern of offsets from
//! the group's first window) are the lanes of two vectors: the group's rows are stored shifted
//! by those offsets and interleaved, so that step `t` is one broadcast input sample times two
//! aligned coefficient vectors (zero for lanes whose window does not cover `t`). No reduction,
//! no unaligned vector loads, and the table is read once per frame, sequentially.
//!
//! Chunking invariance: a lane's result is its own products in a fixed order (four chains by
//! `t mod 4`, each in a fixed order of steps, then `(a0 + a1) + (a2 + a3)`) plus exact zeros
//! (an accumulator that starts at +0 is unchanged by adding +-0); a group whose later lanes
//! are not yet ready is still computed whole (those lanes read stale, allocated, finite history
//! and are discarded), so every output gets the same bits however the input was split. The one
//! exception is a non-finite f32 input, whose zero products are NaN; PCM16 input is always
//! finite.

use super::{Bank, Lanes, Sample, State};
use crate::resample::direct::Vec8;

/// Lanes (outputs) per group: two vectors, so each broadcast input sample feeds two
/// multiply-adds (loads, not FMAs, bound the single-vector form).
pub(super) const W: usize = 16;
/// Vectors per group.
const NV: usize = W / 8;
/// Independent multiply-add chains per vector (with `NV`, enough to cover FMA latency).
const CH: usize = 4;
/// Allocated samples the history needs after its capacity: a group reads up to about
/// `W * m / l` samples past its first output's newest input.
pub(super) const PAD: usize = 128;

/// Whether an `l / m` conversion is computed in groups (if its table fits, see `Bcast::new`).
pub(super) fn grouped(l: usize, m: usize) -> bool {
    l >= 2 * W && l % W == 0 && m > l
}

#[derive(Debug, Clone)]
pub(super) struct Bcast {
    /// Steps per group, a multiple of `CH`.
    span: usize,
    /// Coefficient vectors, group after group; each group's only those its kernel reads (see
    /// `group`): the first vector's steps before `split.0`, then both vectors' steps up to
    /// `split.1` (step-major), then the second vector's steps from there.
    coefs: Vec<Lanes>,
    /// Per group: where its vectors start in `coefs`.
    base: Vec<usize>,
    /// Per group: index of step 0 relative to the group's first window start.
    lead: Vec<usize>,
    /// Per slot: input advance from its group's first output (`next` offset).
    rel: Vec<usize>,
    /// Per group: input advance from its first output to the next group's first output.
    adv: Vec<usize>,
    /// Per group: steps before `.0` touch only the first vector's lanes, steps from `.1` only
    /// the second's (multiples of `CH`); the rest touch both. Skipping all-zero coefficient
    /// vectors saves ~12% of the loads and cannot change a bit (see `group`).
    split: Vec<(usize, usize)>,
}

impl Bcast {
    /// The plan for `bank` when it is a rational down-conversion with a multiple of 8 phases.
    pub(super) fn new(bank: &Bank) -> Option<Bcast> {
        let (l, m, taps) = (bank.l, bank.m, bank.taps);
        if !grouped(l, m) || bank.trivial.iter().any(|t| t.is_some()) {
            return None;
        }
        let groups = l / W;
        let mut rel = vec![0usize; l];
        let mut adv = vec![0usize; groups];
        for g in 0..groups {
            let mut d = 0;
            for j in 0..W {
                rel[g * W + j] = d;
                d += bank.step[g * W + j].0;
            }
            adv[g] = d;
        }
        // Per group, the first and one-past-last window index with a nonzero coefficient.
        let mut lead = vec![0usize; groups];
        let mut span = 0;
        for g in 0..groups {
            let (mut lo, mut hi) = (usize::MAX, 0);
            for j in 0..W {
                let c = bank.phase(g * W + j);
                let r = rel[g * W + j];
                if let Some(first) = c.iter().position(|&v| v != 0.0) {
                    let last = c.iter().rposition(|&v| v != 0.0).unwrap_or(first);
                    lo = lo.min(r + first);
                    hi = hi.max(r + last + 1);
                }
            }
            if lo == usize::MAX {
                lo = 0;
                hi = 0;
            }
            lead[g] = lo;
            span = usize::max(span, hi - lo);
        }
        let span = span.div_ceil(CH) * CH;
        // Reads reach `lead + span - taps` past the newest sample of a group's first output,
        // which must stay within the allocated padding after the history.
        if lead.iter().any(|&ld| ld + span > taps + PAD) {
            return None;
        }
        let mut coefs = vec![Lanes::default(); groups * span * NV];
        for g in 0..groups {
            for j in 0..W {
                let c = bank.phase(g * W + j);
                let r = rel[g * W + j];
                for (i, &v) in c.iter().enumerate() {
                    if v != 0.0 {
                        coefs[(g * span + r + i - lead[g]) * NV + j / 8].0[j % 8] = v;
                    }
                }
            }
        }
        let nonzero = |g: usize, t: usize, v: usize| {
            coefs[(g * span + t) * NV + v].0.iter().any(|&c| c != 0.0)
        };
        let split: Vec<(usize, usize)> = (0..groups)
            .map(|g| {
                let first1 = (0..span).find(|&t| nonzero(g, t, 1)).unwrap_or(span);
                let end0 = (0..span)
                    .rev()
                    .find(|&t| nonzero(g, t, 0))
                    .map_or(0, |t| t + 1);
                let (a, b) = (first1 / CH * CH, end0.div_ceil(CH) * CH);
                (a.min(b), a.max(b))
            })
            .collect();
        // Keep only the vectors the kernel reads, in the order it reads them.
        let mut packed = Vec::with_capacity(coefs.len());
        let mut base = Vec::with_capacity(groups);
        for (g, &(s0, s1)) in split.iter().enumerate() {
            base.push(packed.len());
            let v = |t: usize, v: usize| coefs[(g * span + t) * NV + v];
            packed.extend((0..s0).map(|t| v(t, 0)));
            packed.extend((s0..s1).flat_map(|t| [v(t, 0), v(t, 1)]));
            packed.extend((s1..span).map(|t| v(t, 1)));
        }
        Some(Bcast {
            span,
            coefs: packed,
            base,
            lead,
            rel,
            adv,
            split,
        })
    }

    /// History to keep before the window of the output in `slot`: its group's first window
    /// starts this much earlier.
    pub(super) fn back(&self, slot: usize) -> usize {
        self.rel[slot]
    }
}

/// The `W` outputs of one group: `sum_t c[t] * x[t]` in `CH` chains per vector (step `t` in
/// chain `t mod CH`; the first vector's chains take their steps in order, the second's take
/// those from `split.1` first), then `(a0 + a1) + (a2 + a3)`; written to `y`. Steps outside
/// `[0, split.1)` for the first vector and `[split.0, n)` for the second are skipped: their
/// coefficients are all zero, and adding a zero product leaves an accumulator that started at
/// +0 bit for bit unchanged. So they are not stored either (`c` is the group's packed table,
/// see `Bcast::coefs`): 100 vectors instead of 120 for 11.025 kHz -> 8 kHz, whose frame of 160
/// outputs then reads 32 KB of table instead of 38 (the L1 cache's size; 2-3 % faster).
///
/// # Safety
/// `c` valid for `n + split.1 - split.0` vectors, `x` for `n` reads, `y` for `W` writes, `n` and both split
/// points multiples of `CH` with `split.0 <= split.1 <= n`; the CPU supports `V`.
#[inline(always)]
unsafe fn group<V: Vec8>(
    c: *const Lanes,
    x: *const f32,
    n: usize,
    split: (usize, usize),
    y: *mut f32,
) {
    const { assert!(NV == 2) };
    let c = c.cast::<f32>();
    let (s0, s1) = split;
    // The packed table (see `Bcast::coefs`): the first vector alone, both, the second alone.
    let (ca, cb, cc) = (c, c.add(8 * s0), c.add(8 * (s0 + 2 * (s1 - s0))));
    let mut a = [[V::zero(); CH]; NV];
    // The steps only one vector has, at the start (the first's) and the end (the second's),
    // feed disjoint accumulators: they run side by side, so eight chains cover the multiply-add
    // latency instead of four.
    const { assert!(CH == 4) };
    /// Steps `t..t + CH` of one vector alone, its coefficients from `c` on.
    #[inline(always)]
    unsafe fn step<V: Vec8>(acc: &mut [V; CH], c: *const f32, x: *const f32) {
        let xs = V::splat4(x);
        for (r, a) in acc.iter_mut().enumerate() {
            let cv = V::load(c.add(8 * r));
            *a = V::madd(cv, xs[r], *a);
        }
    }
    let (first, last) = (s0, n - s1);
    let [a0, a1] = &mut a;
    let mut t = 0;
    while t < first.min(last) {
        step(a0, ca.add(8 * t), x.add(t));
        step(a1, cc.add(8 * t), x.add(s1 + t));
        t += CH;
    }
    for t in (t..first).step_by(CH) {
        step(a0, ca.add(8 * t), x.add(t));
    }
    for t in (t..last).step_by(CH) {
        step(a1, cc.add(8 * t), x.add(s1 + t));
    }
    let mut t = s0;
    while t < s1 {
        let xs = V::splat4(x.add(t));
        let cv = cb.add(16 * (t - s0));
        for (r, &xv) in xs.iter().enumerate() {
            for (v, acc) in a.iter_mut().enumerate() {
                acc[r] = V::madd(V::load(cv.add(8 * (2 * r + v))), xv, acc[r]);
            }
        }
        t += CH;
    }
    for (v, acc) in a.iter().enumerate() {
        V::add(V::add(acc[0], acc[1]), V::add(acc[2], acc[3])).store(y.add(8 * v));
    }
}

/// Emits every ready output (up to the staging capacity); returns how many.
#[inline(always)]
pub(super) fn emit<S: Sample, V: Vec8>(
    bank: &Bank,
    b: &Bcast,
    st: &mut State,
    dst: &mut [S],
) -> usize {
    let taps = bank.taps;
    let groups = bank.l / W;
    let fill = st.fill;
    let cap = st.ybuf.len().min(dst.len());
    let (out, _) = st.ybuf.split_at_mut(cap);
    let buf = &st.buf[..];
    let mut next = st.next;
    let mut phase = st.phase;
    let mut o = 0;
    let mut lanes = [0f32; W];
    let hold = st.hold;
    while next < fill && o < out.len() {
        let (g, j0) = (phase / W, phase % W);
        let n0 = next - b.rel[phase];
        let start = n0 + 1 - taps + b.lead[g];
        debug_assert!(start + b.span <= buf.len());
        let (s0, s1) = b.split[g];
        debug_assert!(b.base[g] + b.span + s1 - s0 <= b.coefs.len());
        let coefs = b.coefs[b.base[g]..].as_ptr();
        let next_group = if g + 1 == groups { 0 } else { (g + 1) * W };
        // Most groups are whole: every lane ready and room for all of them. Those are written
        // straight to the output; only a call's first and last group go lane by lane.
        let all = n0 + b.rel[g * W + W - 1] < fill;
        let whole = j0 == 0 && all && o + W <= out.len();
        if hold && !whole && !(all && o + W - j0 <= out.len()) {
            break;
        }
        let y = if whole {
            out[o..o + W].as_mut_ptr()
        } else {
            lanes.as_mut_ptr()
        };
        // SAFETY: the group's packed table has `span + split.1 - split.0` vectors (as built in
        // `Bcast::new`); `start + span <= buf.len()` because `n0 < fill <= cap` and
        // `lead + span <= taps + PAD` (checked in `Bcast::new`); `y` has room for `W` lanes.
        unsafe { group::<V>(coefs, buf[start..].as_ptr(), b.span, b.split[g], y) };
        if whole {
            o += W;
            next = n0 + b.adv[g];
            phase = next_group;
            continue;
        }
        // Lanes j0..k are ready and fit.
        let mut k = j0 + 1;
        while k < W && n0 + b.rel[g * W + k] < fill && o + (k - j0) < out.len() {
            k += 1;
        }
        out[o..o + k - j0].copy_from_slice(&lanes[j0..k]);
        o += k - j0;
        if k == W {
            next = n0 + b.adv[g];
            phase = next_group;
        } else {
            next = n0 + b.rel[g * W + k];
            phase = g * W + k;
        }
    }
    st.next = next;
    st.phase = phase;
    S::from_f32_slice(&mut dst[..o], &out[..o]);
    o
}
