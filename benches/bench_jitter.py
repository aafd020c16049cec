"""Per-frame cost of the jitter buffer and concealer through Python (pytest-benchmark).

Run: pytest benches/bench_jitter.py --benchmark-only
The Rust-only figures come from `cargo run -p voxmedia --profile quick --example jitter_cost`.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from voxrelay.media import Concealer, JitterBuffer

FRAME = 160


@pytest.fixture
def payload() -> bytes:
    return bytes(np.random.default_rng(1).integers(0, 256, FRAME, dtype=np.uint8))


def test_push_pop_clock_driven(benchmark, payload):
    jb = JitterBuffer()
    seq = itertools.count()

    def frame():
        s = next(seq)
        jb.push(s, 20 * s, payload, now_ms=20.0 * s)
        return jb.pop(now_ms=20.0 * s)

    benchmark(frame)
    assert jb.stats()["played"] > 0


def test_push_pop_ready(benchmark, payload):
    jb = JitterBuffer()
    seq = itertools.count()

    def frame():
        s = next(seq)
        jb.push(s, 20 * s, payload, now_ms=20.0 * s)
        return jb.pop_ready()

    benchmark(frame)
    assert jb.stats()["played"] > 0


def test_plc_good_frame(benchmark):
    c = Concealer(8000, FRAME)
    f = (np.sin(np.arange(FRAME) * 0.3) * 8000).astype("<i2").tobytes()
    benchmark(c.good, f)


def test_plc_first_lost_frame(benchmark):
    """The first lost frame of an erasure pays for the pitch search."""
    c = Concealer(8000, FRAME)
    f = (np.sin(np.arange(FRAME) * 0.3) * 8000).astype("<i2").tobytes()

    def one():
        c.good(f)
        return c.lost()

    benchmark(one)
