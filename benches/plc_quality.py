"""PESQ-NB of loss concealment on espeak-ng speech: zero-fill, repeat-previous and voxrelay's
G.711 Appendix I concealer, without and with look-ahead (up to 40 ms of received audio after
the gap, as the jitter buffer has), on the same random 20 ms frame-loss patterns.

Run: python benches/plc_quality.py [--rates 0.05,0.1,0.2] [--seeds 4]
Needs espeak-ng, sox and the `pesq` package.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import jitter_support as js
import numpy as np
from voxrelay.media import Concealer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="0.05,0.1,0.2", help="frame loss rates")
    ap.add_argument("--seeds", type=int, default=4, help="loss patterns per clip")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    seeds = list(range(1, args.seeds + 1))
    t0 = time.time()
    clips = js.corpus()
    secs = sum(len(c) for c in clips) / 8000
    print(f"corpus: {len(clips)} clips ({', '.join(js.VOICES)}), {secs:.1f} s of 8 kHz speech")
    print(f"PESQ-NB (pesq package, 'nb'), mean over clips x {len(seeds)} loss patterns")
    methods = ["zero-fill", "repeat-previous", "voxrelay", "voxrelay+lookahead"]
    print(f"{'loss':>5} {'voice':>15} | " + " ".join(f"{m:>18}" for m in methods))
    for rate in rates:
        per_clip = [
            js.plc_table([c], rate, [1000 * i + s for s in seeds], Concealer)
            for i, c in enumerate(clips)
        ]
        for v, row in zip(js.VOICES, per_clip, strict=True):
            print(f"{rate:>5.0%} {v:>15} | " + " ".join(f"{row[m]:>18.3f}" for m in methods))
        mean = {m: float(np.mean([r[m] for r in per_clip])) for m in methods}
        print(f"{rate:>5.0%} {'MEAN':>15} | " + " ".join(f"{mean[m]:>18.3f}" for m in methods))
    print(f"({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
