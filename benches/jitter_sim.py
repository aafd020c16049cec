"""Network simulation of the clock-driven jitter buffer: prints delay, late loss and concealment
for jitter sd 10/30/60 ms x bursty loss 1/5/10 %, then an adaptation trace.

Run: python benches/jitter_sim.py   (deterministic: fixed seeds)
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from jitter_support import simulate
from voxrelay.media import JitterBuffer


def main() -> None:
    print("60 s per row, 20 ms mu-law frames; delay: gamma(2) + 1% spikes;")
    print("loss: Gilbert-Elliott, mean burst 2 packets")
    print("added delay = playout time - earliest possible arrival (stats current_depth_ms)")
    hdr = (
        f"{'jitter sd':>9} {'loss':>5} | {'net loss':>8} {'mean delay':>10} {'p95 delay':>9} "
        f"{'late':>6} {'concealed':>9} {'target':>6} {'dropped':>7} {'expanded':>8}"
    )
    print(hdr)
    print("-" * len(hdr))
    for sd in (10, 30, 60):
        for loss in (0.01, 0.05, 0.10):
            r = simulate(
                lambda: JitterBuffer(), [(60.0, sd, loss)], seed=1000 * sd + int(loss * 100)
            )
            st = r["stats"]
            print(
                f"{sd:>7}ms {loss:>5.0%} | {r['net_loss']:>8.1%} {r['mean_delay']:>8.1f}ms "
                f"{r['p95_delay']:>7.1f}ms {r['late_rate']:>6.2%} {r['conceal_ratio']:>9.2%} "
                f"{st['target_depth_ms']:>4.0f}ms {st['dropped']:>7} {st['expanded']:>8}"
            )
    print()
    print("adaptation: 30 s sd 5 ms, 60 s sd 60 ms, 90 s sd 5 ms (1% loss)")
    r = simulate(
        lambda: JitterBuffer(), [(30.0, 5, 0.01), (60.0, 60, 0.01), (90.0, 5, 0.01)], seed=7
    )
    t, d = r["target"], r["depth"]
    for sec in (10, 29, 35, 45, 60, 89, 95, 105, 120, 150, 179):
        i = int(sec * 50)
        print(f"  t={sec:>3}s target {t[i]:>5.0f} ms  depth {d[i]:>6.1f} ms")
    st = r["stats"]
    print(f"  dropped {st['dropped']} expanded {st['expanded']} late {st['late']}")


if __name__ == "__main__":
    main()
