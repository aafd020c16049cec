"""Load benchmark: N simultaneous real-time echo calls against `voxrelay serve` on loopback.

Reports the relay's own cost, measured on the server process only (it runs as a subprocess,
the simulated phones run here):

- server CPU per call-second (goal <= 2 ms at 50 calls, i.e. >= 500 calls per core);
- the reply latency beyond the configured end-of-speech silence (what the relay adds between
  "the caller stopped" + `speech_end_ms` and "the caller hears the echo"; goal <= 10 ms of
  relay work on top of the jitter buffer and one 20 ms tick of playout quantisation);
- resident memory per call (peak RSS growth / calls);
- whether the calls kept pace: frames lost, gaps in the replies, ticks the phones ran late.

    pytest benches/bench_server.py --benchmark-only -s          # 50 calls
    python benches/bench_server.py --calls 50 --repeat 2         # same, without pytest
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from voxrelay.simulator import CallOptions, read_wav, run_calls

SPEECH_END_MS = 500
SENTENCES = [
    "Hello, I would like to check the status of my order.",
    "It was placed last Tuesday, and the number is four five two one.",
]


def caller_audio() -> bytes:
    parts = [b"\0\0" * 1600]
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            path = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True)
            parts += [read_wav(path), b"\0\0" * 8000 * 4]  # room for the echo
    return b"".join(parts)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(calls: int = 50) -> dict[str, Any]:
    audio = caller_audio()
    env = {
        **os.environ,
        "VOXRELAY_LOG_LEVEL": "WARNING",
        "VOXRELAY_SPEECH_END_MS": str(SPEECH_END_MS),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxrelay.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        pid = proc.pid
        cpu0, rss0 = _cpu_s(pid), _rss_kb(pid)
        peak = [rss0]

        async def main() -> list[Any]:
            async def sample() -> None:
                while True:
                    peak[0] = max(peak[0], _rss_kb(pid))
                    await asyncio.sleep(0.25)

            sampler = asyncio.get_running_loop().create_task(sample())
            opts = CallOptions(f"ws://127.0.0.1:{port}/twilio", audio, tail_s=0.5)
            try:
                return await run_calls(opts, calls)
            finally:
                sampler.cancel()

        t0 = time.perf_counter()
        try:
            import uvloop

            results = uvloop.run(main())
        except ImportError:
            results = asyncio.run(main())
        wall = time.perf_counter() - t0
        cpu = _cpu_s(pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    call_s = sum(r.duration_ms for r in results) / 1000
    lat = np.array([t.latency_ms for r in results for t in r.turns if t.latency_ms is not None])
    turns = sum(len(r.turns) for r in results)
    return {
        "calls": calls,
        "wall_s": round(wall, 2),
        "call_seconds": round(call_s, 1),
        "server_cpu_ms_per_call_s": round(cpu * 1000 / call_s, 3),
        "calls_per_core_at_that_cost": int(call_s / cpu) if cpu else None,
        "replies": f"{len(lat)}/{turns}",
        "reply_latency_ms_median": float(np.median(lat)) if len(lat) else None,
        "reply_latency_ms_max": float(lat.max()) if len(lat) else None,
        "latency_beyond_speech_end_ms_median": float(np.median(lat) - SPEECH_END_MS)
        if len(lat)
        else None,
        "rss_kb_per_call": round((peak[0] - rss0) / calls, 1),
        "frames_sent": sum(r.frames_sent for r in results),
        "reply_gaps": sum(r.underruns for r in results),
        "max_lead_ms": max(r.max_buffered_ms for r in results),
        "phone_late_ticks": sum(r.late_ticks for r in results),
        "clean_closes": sum(1 for r in results if r.close_code == 1000),
    }


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_fifty_echo_calls(benchmark: Any) -> None:
    figures: dict[str, Any] = {}

    def once() -> None:
        figures.update(measure(50))

    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    for k, v in figures.items():
        print(f"{k}: {v}")
    assert figures["clean_closes"] == 50


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    for _ in range(a.repeat):
        for k, v in measure(a.calls).items():
            print(f"{k}: {v}")
        print()
