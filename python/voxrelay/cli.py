"""`voxrelay` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="voxrelay", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "demo",
        help="run a simulated phone call through the media engine (no network, no keys)",
    )
    d.add_argument("--out", default="voxrelay-demo.wav", help="WAV of what the relay heard")
    d.add_argument("--loss", type=float, default=0.05, help="packet loss rate (bursty)")
    d.add_argument("--reorder", type=float, default=0.02, help="share of packets swapped")
    d.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    if args.command == "demo":
        from voxrelay.demo import run_media_demo

        return run_media_demo(out=args.out, loss=args.loss, reorder=args.reorder, seed=args.seed)
    return 2


if __name__ == "__main__":
    sys.exit(main())
