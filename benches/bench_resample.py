"""Resampling: voxrelay's Resampler vs python-soxr, streaming (one 20 ms frame per call, the way
a phone leg uses it) and bulk (10 s of audio in one call).

`extra_info` records each implementation's latency in ms (filter delay plus output withheld
after the first frames), because a faster resampler that holds audio back is not a win here.

    pytest benches/bench_resample.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from voxrelay import media

# 22050 -> 8000: piper (the default TTS voice) to a phone leg.
PAIRS = [(8000, 16000), (16000, 8000), (24000, 8000), (22050, 8000), (44100, 16000)]


def noise(rate: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(rate)
    return (rng.standard_normal(int(rate * seconds)) * 3000).astype(np.int16)


def withheld_ms(step, a: int, b: int) -> float:
    """Worst shortfall of output vs input time over 50 frames of 20 ms."""
    n = a // 50
    x = noise(a, 1.0)
    fed = got = 0
    worst = 0.0
    for i in range(0, len(x) - n + 1, n):
        got += step(x[i : i + n])
        fed += n
        worst = max(worst, (fed * b / a - got) / b * 1000)
    return worst


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=lambda v: str(v))
@pytest.mark.parametrize("impl", ["voxrelay", "soxr-HQ"])
def test_stream_20ms(benchmark, impl: str, a: int, b: int) -> None:
    benchmark.group = f"stream 20ms {a}->{b}"
    frame = noise(a, 0.02)
    if impl == "voxrelay":
        r = media.Resampler(a, b)
        data = frame.tobytes()
        benchmark.extra_info["latency_ms"] = r.latency_ms + withheld_ms(
            lambda x: len(r.process(x.tobytes())) // 2, a, b
        )
        r.reset()
        out = benchmark(r.process, data)
        assert abs(len(out) // 2 - b // 50) <= 1
    else:
        s = soxr.ResampleStream(a, b, 1, dtype="int16", quality="HQ")
        benchmark.extra_info["latency_ms"] = withheld_ms(lambda x: len(s.resample_chunk(x)), a, b)
        # soxr holds output back and then releases it in bursts, so no per-call size check.
        benchmark(s.resample_chunk, frame)


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=lambda v: str(v))
@pytest.mark.parametrize("impl", ["voxrelay", "soxr-HQ"])
def test_bulk_10s(benchmark, impl: str, a: int, b: int) -> None:
    benchmark.group = f"bulk 10s {a}->{b}"
    x = noise(a, 10.0)
    if impl == "voxrelay":
        data = x.tobytes()

        def run() -> int:
            r = media.Resampler(a, b)
            return (len(r.process(data)) + len(r.flush())) // 2

    else:

        def run() -> int:
            return len(soxr.resample(x, a, b, quality="HQ"))

    n = benchmark(run)
    assert abs(n - 10 * b) <= b // 100 + 1
