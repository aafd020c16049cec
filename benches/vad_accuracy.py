#!/usr/bin/env python3
"""Balanced accuracy of voxrelay's Vad (and webrtcvad, for comparison) on labelled dev sets.

A dev set is a directory written by ``shared/tools/vad_devset.py`` (or ``benches/vad_variants.py``):
8 kHz mu-law ``*.ulaw`` files, ``labels.npy`` with one 0/1 label per 20 ms frame, ``meta.json``.
Balanced accuracy = (speech frames flagged + non-speech frames rejected) / 2; FPR is the share of
non-speech frames flagged (false barge-ins).

  python benches/vad_accuracy.py DEVSET_DIR [DEVSET_DIR ...] [--webrtc 0,3] [--kw threshold=9]
  python benches/vad_accuracy.py --noise-only     # false positives on 10 s of pure line noise
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from voxrelay.media import Vad, ulaw_decode, ulaw_encode


def load(devset: str) -> tuple[list[str], dict[str, bytes], np.ndarray]:
    meta = json.load(open(os.path.join(devset, "meta.json")))
    labels = np.load(os.path.join(devset, "labels.npy")).astype(bool)
    pcm = {}
    for name in meta["files"]:
        with open(os.path.join(devset, name + ".ulaw"), "rb") as f:
            pcm[name] = ulaw_decode(f.read())
    return meta["files"], pcm, labels


def score(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    pred = np.asarray(pred[: len(labels)], dtype=bool)
    tpr = pred[labels].mean()
    fpr = pred[~labels].mean()
    return float((tpr + 1 - fpr) / 2), float(fpr)


def voxrelay_decisions(pcm: bytes, **kw: float) -> np.ndarray:
    return np.array(Vad(8000, frame_ms=20, **kw).process(pcm), dtype=bool)


def webrtc_decisions(pcm: bytes, mode: int) -> np.ndarray:
    import webrtcvad

    v = webrtcvad.Vad(mode)
    return np.array([v.is_speech(pcm[i : i + 320], 8000) for i in range(0, len(pcm) - 319, 320)])


def parse_kw(items: list[str]) -> dict[str, float]:
    kw: dict[str, float] = {}
    for it in items:
        k, v = it.split("=")
        kw[k] = int(v) if k.endswith("_ms") and float(v).is_integer() else float(v)
    return kw


def line_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """The dev set's noise shapes (shared/tools/vad_devset.py), unit RMS."""
    w = rng.standard_normal(n)
    if kind == "white":
        x = w
    elif kind in ("pink", "brown"):
        f = np.fft.rfft(w)
        k = np.arange(len(f), dtype=float)
        k[0] = 1
        x = np.fft.irfft(f / (np.sqrt(k) if kind == "pink" else k), n)
    else:
        t = np.arange(n) / 8000
        x = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t) + 0.1 * w
    return x / np.sqrt(np.mean(x**2))


def noise_only(modes: list[int], kw: dict[str, float]) -> None:
    """Share of frames flagged on speech-free line noise: every one is a false barge-in."""
    rng = np.random.default_rng(99)
    systems = ["voxrelay"] + [f"webrtc{m}" for m in modes]
    print(f"{'noise':<8}{'dBFS':>6}" + "".join(f"{s + ' FPR':>14}" for s in systems))
    totals: dict[str, list[float]] = {s: [] for s in systems}
    for kind in ["white", "pink", "brown", "hum"]:
        for level in [-60, -45, -30, -20]:
            x = line_noise(kind, 8000 * 10, rng) * 10 ** (level / 20)
            pcm = ulaw_decode(
                ulaw_encode(np.clip(x * 32768, -32768, 32767).astype("<i2").tobytes())
            )
            row = f"{kind:<8}{level:>6}"
            for s in systems:
                if s == "voxrelay":
                    pred = voxrelay_decisions(pcm, **kw)
                else:
                    pred = webrtc_decisions(pcm, int(s[6:]))
                totals[s].append(float(np.mean(pred)))
                row += f"{np.mean(pred):>14.3f}"
            print(row)
    print(f"{'mean':<14}" + "".join(f"{np.mean(totals[s]):>14.3f}" for s in systems))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("devsets", nargs="*")
    ap.add_argument("--noise-only", action="store_true", help="false positives on pure noise")
    ap.add_argument("--webrtc", default="3", help="comma-separated webrtcvad modes ('' = none)")
    ap.add_argument("--kw", nargs="*", default=[], help="Vad tuning kwargs, key=value")
    ap.add_argument("--quiet", action="store_true", help="only print means")
    a = ap.parse_args()
    kw = parse_kw(a.kw)
    modes = [int(m) for m in a.webrtc.split(",") if m.strip()]
    if a.noise_only:
        noise_only(modes, kw)
        return
    systems = ["voxrelay"] + [f"webrtc{m}" for m in modes]
    all_ba: dict[str, list[float]] = {s: [] for s in systems}
    all_fp: dict[str, list[float]] = {s: [] for s in systems}
    for d in a.devsets:
        names, pcm, labels = load(d)
        if not a.quiet:
            print(f"\n== {d}: {len(labels)} frames, {labels.mean():.0%} speech")
            print(f"{'file':<14}" + "".join(f"{s + ' BA':>13}{'FPR':>7}" for s in systems))
        set_ba: dict[str, list[float]] = {s: [] for s in systems}
        for name in names:
            row = f"{name:<14}"
            for s in systems:
                if s == "voxrelay":
                    pred = voxrelay_decisions(pcm[name], **kw)
                else:
                    pred = webrtc_decisions(pcm[name], int(s[6:]))
                ba, fp = score(pred, labels)
                set_ba[s].append(ba)
                all_ba[s].append(ba)
                all_fp[s].append(fp)
                row += f"{ba:>13.3f}{fp:>7.3f}"
            if not a.quiet:
                print(row)
        print(
            f"{os.path.basename(d.rstrip('/')):<14}"
            + "".join(f"{np.mean(set_ba[s]):>13.3f}{'':>7}" for s in systems)
            + "  (mean BA)"
        )
    print(
        "ALL           "
        + "".join(f"{np.mean(all_ba[s]):>13.3f}{np.mean(all_fp[s]):>7.3f}" for s in systems)
        + "  (mean BA, mean FPR)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
