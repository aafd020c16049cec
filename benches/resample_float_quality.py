#!/usr/bin/env python3
"""The measurements of ../shared/tools/resampler_quality.py on float32 I/O (process_float), for
quality "high", whose ~130 dB stopband is below what int16 I/O can show. 20 ms chunks.

    python benches/resample_float_quality.py [voice|high|phone]
"""

import sys

import numpy as np
from voxrelay.media import Resampler

PAIRS = [
    (8000, 16000),
    (16000, 8000),
    (24000, 8000),
    (8000, 24000),
    (48000, 16000),
    (44100, 16000),
    (16000, 24000),
    (22050, 8000),
]


def run(a: int, b: int, x: np.ndarray, quality: str) -> tuple[np.ndarray, float]:
    r = Resampler(a, b, quality=quality)
    n = a // 50
    chunks = [
        np.frombuffer(r.process_float(x[i : i + n].astype(np.float32)), np.float32)
        for i in range(0, len(x) - n + 1, n)
    ]
    return np.concatenate(chunks).astype(np.float64), r.latency_ms


def tone(f: float, rate: int, sec: float, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * f * np.arange(int(rate * sec)) / rate)


def fit(y: np.ndarray, rate: int, f: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(len(y)) / rate
    m = np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t), np.ones_like(t)], 1)
    c, *_ = np.linalg.lstsq(m, y, rcond=None)
    return m[:, :2] @ c[:2], y - m @ c


def steady(y: np.ndarray) -> np.ndarray:
    return y[len(y) // 4 : -len(y) // 8]


def measure(a: int, b: int, q: str) -> tuple[float, float, float, float]:
    ny = min(a, b) / 2
    y, latency = run(a, b, tone(1000, a, 2.0), q)
    sig, res = fit(steady(y), b, 1000)
    snr = 10 * np.log10(np.sum(sig**2) / np.sum(res**2))
    ripple = 0.0
    for f in np.linspace(0.05 * ny, 0.85 * ny, 9):
        sig, _ = fit(steady(run(a, b, tone(f, a, 1.0), q)[0]), b, f)
        ripple = max(ripple, abs(20 * np.log10(np.sqrt(np.mean(sig**2)) / (0.5 / np.sqrt(2)))))
    reject = 300.0
    if b < a:
        for f in np.linspace(1.05 * ny, 0.97 * a / 2, 8):
            yy = steady(run(a, b, tone(f, a, 1.0), q)[0])
            level = np.sqrt(np.mean(yy**2)) / (0.5 / np.sqrt(2)) + 1e-15
            reject = min(reject, -20 * np.log10(level))
    else:
        for f in np.linspace(0.1 * ny, 0.9 * ny, 6):
            yy = steady(run(a, b, tone(f, a, 1.0), q)[0])
            yy = yy * np.blackman(len(yy))  # Hann leakage would floor this near 120 dB
            spec = np.abs(np.fft.rfft(yy)) ** 2
            fr = np.fft.rfftfreq(len(yy), 1 / b)
            reject = min(reject, 10 * np.log10(spec.sum() / max(spec[fr > 1.05 * ny].sum(), 1e-30)))
    return snr, ripple, reject, latency


def main() -> None:
    q = sys.argv[1] if len(sys.argv) > 1 else "high"
    print(f"quality={q} float32 I/O")
    print(f"{'pair':>13s} {'snr_1k':>7s} {'ripple':>7s} {'reject':>7s} {'latency':>7s}")
    for a, b in PAIRS:
        snr, ripple, reject, latency = measure(a, b, q)
        print(f"{a:>6}->{b:<6} {snr:7.1f} {ripple:7.4f} {reject:7.1f} {latency:7.2f}")


if __name__ == "__main__":
    main()
