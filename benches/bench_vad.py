"""Cost of voice activity detection per 20 ms frame at 8 kHz: voxrelay vs webrtcvad mode 3.

  pytest benches/bench_vad.py --benchmark-only

Target: <= 1 us per frame for `Vad.is_speech` through Python. Accuracy is measured separately
by benches/vad_accuracy.py; each benchmark here also checks its detector's answer on the frame
so a fast wrong result cannot pass unnoticed.
"""

from __future__ import annotations

import numpy as np
import pytest
from voxrelay.media import Vad

webrtcvad = pytest.importorskip("webrtcvad")

RATE = 8000


def _speechy(seconds: float) -> bytes:
    """Harmonic complex at a gliding pitch, syllabic envelope, with pauses, in light noise."""
    t = np.arange(int(RATE * seconds)) / RATE
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(h * phase) / h for h in range(1, 20) if h * 190 < 3600)
    x = x * (0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 3 * t)))
    x = x * (t % 2.0 >= 0.6)  # 0.6 s pauses between 1.4 s talk spurts
    x = 0.1 * x / np.sqrt(np.mean(x**2)) + 0.003 * np.random.default_rng(1).standard_normal(len(t))
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()


AUDIO = _speechy(10.0)
FRAME = AUDIO[2 * 9000 : 2 * 9160]  # 20 ms at 1.125 s: talk spurt, envelope peak


def test_voxrelay_is_speech_20ms_8k(benchmark) -> None:  # type: ignore[no-untyped-def]
    vad = Vad(RATE)
    vad.process(AUDIO[:16000])  # learn the floor on the first second
    assert vad.is_speech(FRAME) is True
    # The same frame over and over is steady noise by definition, so the answer may change
    # as the floor adapts; only the first one is checked.
    benchmark(vad.is_speech, FRAME)


def test_webrtcvad3_is_speech_20ms_8k(benchmark) -> None:  # type: ignore[no-untyped-def]
    vad = webrtcvad.Vad(3)
    for i in range(0, 16000, 320):
        vad.is_speech(AUDIO[i : i + 320], RATE)
    assert vad.is_speech(FRAME, RATE) is True
    benchmark(vad.is_speech, FRAME, RATE)


def test_voxrelay_process_10s_8k(benchmark) -> None:  # type: ignore[no-untyped-def]
    def run() -> list[bool]:
        return Vad(RATE).process(AUDIO)

    out = benchmark(run)
    assert len(out) == 500 and 300 < sum(out) < 400


def test_webrtcvad3_10s_8k_loop(benchmark) -> None:  # type: ignore[no-untyped-def]
    def run() -> list[bool]:
        v = webrtcvad.Vad(3)
        return [v.is_speech(AUDIO[i : i + 320], RATE) for i in range(0, len(AUDIO), 320)]

    out = benchmark(run)
    assert len(out) == 500 and 300 < sum(out) < 400
