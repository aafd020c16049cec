"""Barge-in: how soon the relay clears the reply a caller talks over (issue #3's goal: the
`clear` within 0.8 s of the caller's speech onset), and how soon an echo comes back.

Real-time calls on loopback: the relay with its echo agent, and the Twilio simulator in
converse mode, which starts the caller's second utterance 300 ms into the echo of the first as
it hears it. Times are on the simulated phone's tick timeline (what the caller experiences:
the jitter buffer, the VAD's onset and hang-over, the network and the relay's own work).
These are wall-clock figures, so they live here rather than in the tests, which assert only
the order of events.

    pytest benches/bench_barge_in.py --benchmark-only -s
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from voxrelay.server import RelayServer
from voxrelay.settings import Settings
from voxrelay.simulator import CallOptions, CallResult, run_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from call_support import speak  # the tests' espeak-ng speech

CALLS = 5
BARGE_IN_MS = 300


async def calls(audio: bytes, n: int) -> list[CallResult]:
    server = RelayServer(Settings(port=0))
    await server.start()
    try:
        url = f"ws://127.0.0.1:{server.port}/twilio"
        opts = CallOptions(
            url, audio, tail_s=0.5, converse=True, barge_in={0: BARGE_IN_MS}, greeting_wait_s=0.3
        )
        return [await run_call(opts) for _ in range(n)]
    finally:
        await server.shutdown(drain_timeout_s=0.0)


def figures(results: list[CallResult]) -> dict[str, Any]:
    clear, echo = [], []
    for r in results:
        assert len(r.turns) == 2, r.turns
        onset = r.turns[1].start_ms
        after = [c for c in r.clears_ms if c >= onset]
        assert after, (onset, r.clears_ms)
        clear.append(after[0] - onset)
        if r.turns[0].latency_ms is not None:
            echo.append(r.turns[0].latency_ms)
    return {
        "calls": len(results),
        "clear_after_onset_ms_median": round(float(np.median(clear)), 1),
        "clear_after_onset_ms_max": round(float(max(clear)), 1),
        "goal_clear_after_onset_ms": 800,
        "echo_after_speech_end_ms_median": float(np.median(echo)) if echo else None,
        "echo_after_speech_end_ms_max": float(max(echo)) if echo else None,
    }


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_barge_in_clear_latency(benchmark: Any) -> None:
    gap = b"\0\0" * 8000
    audio = speak("Hello, I would like to check the status of my order.") + gap
    audio += speak("Wait, wait, stop there please, I have another question.")
    out: dict[str, Any] = {}

    def once() -> None:
        out.update(figures(asyncio.run(calls(audio, CALLS))))

    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    for k, v in out.items():
        print(f"{k}: {v}")
