#!/usr/bin/env python3
"""Generates tables.rs: near-minimax low-pass prototypes for the hot 2:1 and 3:1 decimators and
the hot 1:2 interpolator, and those of the `phone` quality (see `phone`).

Iteratively reweighted least squares (Lawson) on a type-I linear-phase FIR, edges at the goals'
measurement points (0.85 and 1.05 x the output Nyquist). Kaiser's window spends the same
deviation in both bands; spending 0.07 dB in the passband (of the 0.1 dB allowed) instead cuts
the taps by ~25%, and these are the per-frame hot paths. The shortest length meeting 0.07 dB /
-91.5 dB is kept: the alias goal is 85 dB, and an alias of a half-scale tone at -91.5 dB is
under half a PCM16 LSB, so it mostly rounds away (measured 88-90 dB; at -91.3 dB, 77 taps for
2:1, one test tone's alias rounded up to 85.8 dB). These tables were -100 dB at 87 and 129
taps: ~10% more work per frame for a margin no PCM16 output can show.

The 1:2 interpolator (8k -> 16k, every inbound call frame) is a half-band filter: every other
tap is zero, so one polyphase branch is a pure delay, and its response is symmetric about the
input Nyquist (stopband error at pi - w = passband error at w), so only the passband is
designed, on the odd cosines. Images of tones up to 0.9 x the input Nyquist must go: edges
0.9 / 1.1. A uniform -90 dB stopband keeps images ~4 dB under the PCM16 noise of a half-scale
tone, with 27 folded taps per output instead of the Kaiser design's 31 (-96 dB).

The 11.025 kHz -> 8 kHz stage (piper's 22.05 kHz and 44.1 kHz TTS reach it after half-band
pre-decimation) has 320 phases, so its prototype runs at 3.528 MHz and is far too long for a
least-squares design. Its *seed* is designed here instead: the same edges (3.4 / 4.2 kHz) at
22.05 kHz. The engine interpolates the seed onto the prototype's grid with a short
Kaiser-windowed sinc (`design::seeded`), so the prototype keeps the seed's response: 63 taps
per phase where the 90 dB Kaiser design needed 79, and ~0.4 ms less delay. Each output of that
stage reads every tap of a phase it will not use again for two frames, so taps are the cost.
The stopband weight rises with frequency (slope 2): an equiripple stopband leaves the same
level at 11.025 and 22.05 kHz, where a polyphase bank's phases then differ by exactly that
much, which showed as ~86 dB SNR at 1 kHz; rising weight pushes it far down there for 4 more
taps. The depth is the 2:1 and 3:1 tables' -91.5 dB, for the same reason (at -88.5 dB the
aliases of half-scale tones rounded up to 85.5 dB).

    python rust/voxmedia/src/resample/gen_tables.py > rust/voxmedia/src/resample/tables.rs
"""

import numpy as np


def ls_design(
    k: int, wp: float, ws: float, ratio: float, iters: int = 100, grid: int = 24, slope: float = 0.0
):
    g = grid * (k + 1)
    span = wp + np.pi - ws
    wpass = np.linspace(0, wp, max(int(g * wp / span), 8))
    wstop = np.linspace(ws, np.pi, max(int(g * (np.pi - ws) / span), 8))
    w = np.concatenate([wpass, wstop])
    want = np.concatenate([np.ones_like(wpass), np.zeros_like(wstop)])
    scale = np.concatenate([np.ones_like(wpass), ratio * (wstop / ws) ** slope])
    weight = scale**2
    basis = np.cos(np.outer(w, np.arange(k + 1)))
    for _ in range(iters):
        a = np.linalg.solve(basis.T @ (weight[:, None] * basis), basis.T @ (weight * want))
        err = scale * np.abs(basis @ a - want)
        weight = weight * err / err.mean()
        weight /= weight.max()
    h = np.concatenate([a[:0:-1] / 2, [a[0]], a[1:] / 2])
    return h / h.sum()


def check(h: np.ndarray, m: float, stop: float = 1.05) -> tuple[float, float]:
    """Passband ripple to 0.85 and stopband peak from `stop`, in units of the output Nyquist."""
    n = 1 << 18
    mag = np.abs(np.fft.rfft(h, n))
    f = np.fft.rfftfreq(n, 1.0) * m * 2  # units of the output Nyquist
    return np.abs(20 * np.log10(mag[f <= 0.85])).max(), 20 * np.log10(mag[f >= stop] + 1e-20).max()


def halfband_design(k: int, wp: float, iters: int = 300, grid: int = 40) -> np.ndarray:
    """Minimax (Lawson) half-band with 2k non-zero side taps, padded with a zero at each end so
    that the centre (and so the pure-delay branch) sits on an even index. The DC gain is held at
    exactly 1 (a_1 = 1/2 - sum of the others): the engine normalises each branch to unity DC
    gain, and a branch rescaled by the design's DC error would leak that error into the images.
    """
    w = np.linspace(0, wp, grid * k)
    ks = np.arange(3, 2 * k, 2)
    basis = np.cos(np.outer(w, ks)) - np.cos(w)[:, None]
    want = 0.5 - 0.5 * np.cos(w)
    weight = np.ones_like(w)
    for _ in range(iters):
        sw = np.sqrt(weight)
        a = np.linalg.lstsq(basis * sw[:, None], want * sw, rcond=None)[0]
        err = np.abs(basis @ a - want)
        weight = weight * err / err.mean()
        weight /= weight.max()
    a = np.concatenate([[0.5 - a.sum()], a])
    h = np.zeros(4 * k + 1)
    c = 2 * k
    h[c] = 0.5
    for kk, ak in zip(np.arange(1, 2 * k, 2), a, strict=True):
        h[c + kk] = h[c - kk] = ak / 2
    return h


def check_interp(h: np.ndarray, stop: float = 1.1) -> tuple[float, float]:
    """Passband ripple to 0.85 and image peak from `stop`, in units of the input Nyquist, of
    the taps as stored (f32)."""
    n = 1 << 18
    mag = np.abs(np.fft.rfft(h.astype(np.float32).astype(np.float64), n))
    f = np.fft.rfftfreq(n, 1.0) * 4  # units of the input Nyquist
    return np.abs(20 * np.log10(mag[f <= 0.85])).max(), 20 * np.log10(mag[f >= stop] + 1e-20).max()


def shortest(
    ks: range,
    wp: float,
    ws: float,
    m: float,
    ripple_max: float,
    ratios: np.ndarray,
    depth: float = 91.5,
    **kw: float,
) -> tuple[np.ndarray, float, float]:
    """The shortest least-squares design within `ripple_max` dB and `-depth` dB. The stopband
    weight that gives the deepest stopband within the passband budget is not monotonic in the
    length (IRLS is only near-minimax), so it is scanned at each length."""
    for k in ks:
        for ratio in ratios:
            h = ls_design(k, wp, ws, ratio, **kw)  # type: ignore[arg-type]
            ripple, stop = check(h, m, ws * m / np.pi)  # type: ignore[arg-type]
            if ripple <= ripple_max and stop <= -depth:
                return h, ripple, stop
    raise SystemExit(f"no design up to {ks.stop - 1}")


def table(name: str, h: np.ndarray, doc: str) -> None:
    print(f"\n{doc}")
    print(f"pub(super) const {name}: [f64; {len(h)}] = [")
    for v in h:
        print(f"    {float(v)!r},")
    print("];")


def main() -> None:
    print("//! Generated by gen_tables.py; do not edit.")
    print("//! Near-minimax decimation prototypes (edges 0.85 / 1.05 x output Nyquist) and the 1:2")
    print("//! half-band interpolation prototype (edges 0.9 / 1.1 x input Nyquist); then the")
    print("//! `phone` quality's (edges 3.4 / 4.6 kHz at 80 dB).")
    for m in (2, 3):
        wp, ws = np.pi * 0.85 / m, np.pi * 1.05 / m
        h, ripple, stop = shortest(range(36, 120), wp, ws, m, 0.07, np.geomspace(20, 2000, 40))
        doc = f"/// {m}:1, {len(h)} taps: passband {ripple:.3f} dB, stopband {stop:.1f} dB."
        table(f"DECIM{m}", h, doc)
    # The 11.025 kHz -> 8 kHz seed at 22.05 kHz (see the module docstring).
    wp, ws = np.pi * 3400 / 11025, np.pi * 4200 / 11025
    ratios = np.geomspace(20, 2000, 30)
    h, ripple, stop = shortest(
        range(50, 80), wp, ws, 11025 / 4000, 0.06, ratios, grid=32, slope=2.0
    )
    doc = (
        f"/// Seed of the 11.025 kHz -> 8 kHz prototype, at 22.05 kHz: {len(h)} taps, passband\n"
        f"/// {ripple:.3f} dB, stopband {stop:.1f} dB (edges 3.4 / 4.2 kHz)."
    )
    table("SEED_11025_8000", h, doc)
    wp = np.pi * 0.9 / 2
    for k in range(16, 40):
        h = halfband_design(k, wp)
        ripple, stop = check_interp(h)
        if stop <= -90:
            break
    doc = (
        f"/// 1:2 half-band, {len(h)} taps ({2 * k} non-zero side taps): passband "
        f"{ripple:.4f} dB,\n/// stopband {stop:.1f} dB."
    )
    table("INTERP2", h, doc)
    phone()


PHONE_DEPTH = 82.0
"""Design depth of the `phone` quality's tables, dB: the goal is 80 dB from 4.6 kHz after
PCM16 rounding, which adds up to a decibel at a stopband peak (at -80.5 dB, a 4.6 kHz tone
through the 22.05 kHz cascade measured -79.9 dB; at -81 dB, a dense scan of 16 kHz -> 8 kHz
found -80.7 dB at 4.65 kHz)."""


def phone() -> None:
    """The `phone` quality: a G.712 channel filter's edges (flat to 3.4 kHz, stopband from
    4.6 kHz, which is where G.712 asks a PCM channel for its 25 dB of alias rejection) at 80 dB,
    for audio on its way to G.711. Mu-law's own quantising noise sits ~38 dB under the signal,
    so an alias 80 dB under it is ~40 dB below what the codec adds anyway, while the wider
    transition (1.2 kHz instead of 0.8) and the shallower depth cut the taps by about a third:
    the per-frame cost and the group delay of every TTS stream sent to a phone."""
    ratios = np.geomspace(3, 3000, 25)
    for m in (2, 3):
        wp, ws = np.pi * 0.85 / m, np.pi * 1.15 / m
        h, ripple, stop = shortest(range(10, 80), wp, ws, m, 0.07, ratios, PHONE_DEPTH)
        doc = (
            f"/// Phone {m}:1, {len(h)} taps: passband {ripple:.3f} dB, stopband {stop:.1f} dB "
            "(edges 3.4 / 4.6 kHz)."
        )
        table(f"PHONE_DECIM{m}", h, doc)
    # At 44.1 kHz, not 22.05 like the voice seed: the kernel that interpolates it reaches
    # +-6 seed samples, which is +-1.5 input samples of the 11.025 kHz stage instead of +-3, so
    # each phase is 39 taps long instead of 42 for the same response, and the grouped kernel's
    # span (a group's 16 windows, ~21 samples apart end to end) drops from 64 steps to 60.
    wp, ws = np.pi * 3400 / 22050, np.pi * 4600 / 22050
    h, ripple, stop = shortest(
        range(55, 90), wp, ws, 22050 / 4000, 0.06, ratios, PHONE_DEPTH, grid=32, slope=2.0
    )
    doc = (
        f"/// Seed of the phone 11.025 kHz -> 8 kHz prototype, at 44.1 kHz: {len(h)} taps,\n"
        f"/// passband {ripple:.3f} dB, stopband {stop:.1f} dB (edges 3.4 / 4.6 kHz)."
    )
    table("PHONE_SEED_11025_8000", h, doc)
    # The 2:1 pre-decimators of the phone cascades: flat to 4.6 kHz, so that the main stage's
    # passband and transition are untouched, and (a half-band being symmetric about a quarter
    # of its rate) a stopband from half the rate minus 4.6 kHz: what would fold onto [0, 4.6k].
    # Except at 22.05 kHz, whose half-band would then need 61 taps: it is flat to 4.2 kHz and
    # stops from 6.825 kHz (45 taps). The tones it only partly stops fold onto 4.2-4.6 kHz at
    # 11.025 kHz, the main stage's transition band, whose roll-off takes the rest: in a dense
    # scan the worst of them leaves at -88.6 dB, and the worst tone from 4.6 kHz up is still
    # the main stage's own, -82.1 dB (flat to 4.0 kHz, 37 taps, let one through at -71 dB;
    # `tests.rs`, `phone_cascades_keep_every_tone_above_the_stopband_edge_80_db_down`).
    for rate in (48000, 44100, 22050):
        edge = 4200 if rate == 22050 else 4600
        wp = 2 * np.pi * edge / rate
        for k in range(2, 40):
            h = halfband_design(k, wp)
            n = 1 << 18
            f = np.fft.rfftfreq(n, 1.0 / rate)
            db = 20 * np.log10(np.abs(np.fft.rfft(h, n)) + 1e-20)
            ripple, stop = np.abs(db[f <= edge]).max(), db[f >= rate / 2 - edge].max()
            if stop <= -PHONE_DEPTH:
                break
        doc = (
            f"/// Phone 2:1 pre-decimator at {rate} Hz, {len(h)} taps ({2 * k} non-zero side "
            f"taps):\n/// passband {ripple:.4f} dB, stopband {stop:.1f} dB."
        )
        table(f"PHONE_HALFBAND_{rate}", h, doc)
    # The 1:2 interpolator (8k -> 16k: every inbound call frame), a half-band: flat to 0.85 x
    # the input Nyquist, and so (symmetric about it) the images of those tones gone from 1.15 x.
    # The phone's audio is G.711, whose own noise is ~38 dB under the signal.
    wp = np.pi * 0.85 / 2
    for k in range(4, 40):
        h = halfband_design(k, wp)
        ripple, stop = check_interp(h, 1.15)
        if stop <= -PHONE_DEPTH:
            break
    doc = (
        f"/// Phone 1:2 half-band, {len(h)} taps ({2 * k} non-zero side taps): passband "
        f"{ripple:.4f} dB,\n/// stopband {stop:.1f} dB (edges 0.85 / 1.15 x the input Nyquist)."
    )
    table("PHONE_INTERP2", h, doc)


if __name__ == "__main__":
    main()
