#!/usr/bin/env python3
"""Variations of the shared VAD dev set, so the detector is not tuned to one voice, speed or level.

Same file layout and label rule as ``shared/tools/vad_devset.py`` (a frame is speech when the
clean speech in it is within 35 dB of the speech level), with knobs for the speech level, the
voices and speeds, the gap lengths and the SNRs.

  python benches/vad_variants.py OUT --seed 5 --level -30 --speed-scale 1.2 --voice-shift 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "vad_devset", os.path.join(HERE, "..", "..", "shared", "tools", "vad_devset.py")
)
if spec is None or spec.loader is None or not os.path.exists(spec.origin or ""):
    spec = importlib.util.spec_from_file_location("vad_devset", "/work/shared/tools/vad_devset.py")
dv = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(dv)  # type: ignore[union-attr]

EXTRA = [
    "Hello? Hello, can you hear me now?",
    "I would like to check the balance on my account, please.",
    "Sorry, what was that? The line is really bad.",
    "Send it by email. Thanks, goodbye.",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--level", type=float, default=-20.0, help="speech active RMS, dBFS")
    ap.add_argument("--speed-scale", type=float, default=1.0)
    ap.add_argument("--voice-shift", type=int, default=0)
    ap.add_argument("--gap", type=str, default="0.5,2.2", help="min,max gap seconds")
    ap.add_argument("--snrs", type=str, default="clean,20,10,5,0")
    ap.add_argument("--extra", action="store_true", help="use other sentences too")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    sents = dv.SENTENCES + (EXTRA if a.extra else [])
    voices = dv.VOICES
    lvl = 10 ** (a.level / 20)
    gmin, gmax = (float(v) for v in a.gap.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        clips = [
            dv.synth(
                s,
                voices[(i + a.voice_shift) % len(voices)],
                int([135, 155, 170, 185][(i + a.voice_shift) % 4] * a.speed_scale),
                tmp,
            )
            for i, s in enumerate(sents)
        ]
    parts = []
    for c in clips:
        idx = np.where(np.abs(c) > 0.01)[0]
        c = c[idx[0] : idx[-1] + 1]
        c = c * (lvl / np.sqrt(np.mean(c[np.abs(c) > 0.01 * np.max(np.abs(c))] ** 2)))
        parts += [np.zeros(int(8000 * rng.uniform(gmin, gmax))), c]
    parts.append(np.zeros(8000))
    clean = np.concatenate(parts)
    nf = len(clean) // 160
    clean = clean[: nf * 160]
    level = np.sqrt(np.mean(clean.reshape(nf, 160) ** 2, axis=1))
    labels = (level > lvl * 10 ** (-35 / 20)).astype(np.uint8)
    names = []
    for kind in ["white", "pink", "brown", "hum"]:
        for snr_s in a.snrs.split(","):
            snr = None if snr_s == "clean" else float(snr_s)
            if snr is None and kind != "white":
                continue
            x = clean.copy()
            if snr is not None:
                nz = dv.noise(kind, len(x), rng)
                x = x + nz * (lvl * 10 ** (-snr / 20) / np.sqrt(np.mean(nz**2)))
            name = f"{kind}_{'clean' if snr is None else f'{snr:g}dB'}"
            dv.mulaw_encode(np.clip(x, -1, 1)).tofile(os.path.join(a.out, name + ".ulaw"))
            names.append(name)
    np.save(os.path.join(a.out, "labels.npy"), labels)
    json.dump(
        {
            "files": names,
            "frame_ms": 20,
            "rate": 8000,
            "encoding": "mulaw",
            "frames": int(nf),
            "speech_frames": int(labels.sum()),
            "args": vars(a),
        },
        open(os.path.join(a.out, "meta.json"), "w"),
        indent=1,
    )
    print(f"{a.out}: {len(names)} files, {nf} frames, {int(labels.sum())} speech")


if __name__ == "__main__":
    main()
