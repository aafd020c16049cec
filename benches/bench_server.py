"""Load benchmark: N simultaneous real-time echo calls against `voxrelay serve` on loopback.

Reports the relay's own cost, measured on the server process only (it runs as a subprocess,
the simulated phones run here):

- server CPU per call-second (goal <= 2 ms at 50 calls, i.e. >= 500 calls per core), over
  the whole run and in the steady state (all calls live; the whole-run figure also carries
  each call's handshake, setup and teardown, which a real call spreads over minutes);
- the reply latency beyond the configured end-of-speech silence (what the relay adds between
  "the caller stopped" + `speech_end_ms` and "the caller hears the echo"; goal <= 10 ms of
  relay work on top of the jitter buffer and one 20 ms tick of playout quantisation);
- resident memory per call (peak RSS growth / calls);
- whether the calls kept pace: frames lost, gaps in the replies, ticks the phones ran late.

    pytest benches/bench_server.py --benchmark-only -s          # 50 calls
    python benches/bench_server.py --calls 50 --repeat 2         # same, without pytest
    python benches/bench_server.py --floor    # sessions ignore every message: sockets,
                                              # event loop, WebSocket framing and one
                                              # Python call per message (the real server
                                              # keeps most media messages in Rust, so
                                              # this is near, not under, its floor)
    python benches/bench_server.py --drop     # connections drop every byte read: sockets
                                              # and event loop only
    python benches/bench_server.py --silent   # callers never speak: the relay's own memory
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from voxrelay.simulator import CallOptions, read_wav, run_calls

SPEECH_END_MS = 500
STAGGER_S = 1.0
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


def _cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _phones(args: tuple[CallOptions, int]) -> list[Any]:
    """One worker process's share of the calls (the phones need CPU too)."""
    opts, n = args
    try:
        import uvloop

        return uvloop.run(run_calls(opts, n, stagger_s=STAGGER_S))
    except ImportError:
        return asyncio.run(run_calls(opts, n, stagger_s=STAGGER_S))


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


_FLOOR = """
import sys
from voxrelay.session import Session
Session.on_text = lambda self, data: None  # sockets, event loop, framing, one call a message
from voxrelay.cli import main
sys.exit(main(["serve", "--port", "0"]))
"""


_DROP = """
import sys
from voxrelay.httpd import RelayConnection
RelayConnection._ws_data = lambda self, data: None  # below the floor: sockets and loop only
from voxrelay.cli import main
sys.exit(main(["serve", "--port", "0"]))
"""


PARROT = Path(__file__).with_name("parrot_server.py")


def measure(
    calls: int = 50,
    procs: int = 2,
    floor: bool | str = False,
    server: str = "voxrelay",
    silent: bool = False,
) -> dict[str, Any]:
    """`floor=True` runs a server whose sessions ignore every message: what the sockets,
    the event loop, WebSocket framing and one Python call per message cost before any relay
    work (`start` is ignored too, so no media takes the reader's all-Rust path). `silent`
    callers send digital silence for as long: no utterances and no replies, so the memory per
    call is the relay's own (session, media engine, sockets) without audio an agent holds."""
    audio = caller_audio()
    if silent:
        audio = bytes(len(audio))
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    env = {
        **os.environ,
        "VOXRELAY_LOG_LEVEL": "INFO",
        "VOXRELAY_SPEECH_END_MS": str(SPEECH_END_MS),
    }
    if server == "parrot":
        cmd = [sys.executable, str(PARROT), "--speech-end-ms", str(SPEECH_END_MS)]
    elif floor:
        cmd = [sys.executable, "-c", _DROP if floor == "drop" else _FLOOR]
    else:
        cmd = [sys.executable, "-m", "voxrelay.cli", "serve", "--port", "0"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        pid = proc.pid
        (u0, s0), rss0 = _cpu_s(pid), _rss_kb(pid)
        peak = rss0
        opts = CallOptions(f"ws://127.0.0.1:{port}/twilio", audio, tail_s=0.5)
        shares = [calls // procs + (1 if i < calls % procs else 0) for i in range(procs)]
        # Steady state: after every call has connected (they start within `STAGGER_S`) and
        # before the first can have ended. Whole-run figures also carry each call's setup and
        # teardown (handshake, session, agent), which a real call amortises over minutes.
        call_s_each = len(audio) / 2 / 8000 + opts.tail_s
        t0 = time.perf_counter()
        steady_from, steady_to = t0 + STAGGER_S + 1.0, t0 + call_s_each - 0.5
        samples: list[tuple[float, float]] = []
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            pending = pool.map_async(
                _phones, [(replace(opts, seed=1000 * i), n) for i, n in enumerate(shares) if n]
            )
            while not pending.ready():
                peak = max(peak, _rss_kb(pid))
                now = time.perf_counter()
                if steady_from <= now <= steady_to:
                    samples.append((now, sum(_cpu_s(pid))))
                pending.wait(0.25)
            results = [r for part in pending.get() for r in part]
        wall = time.perf_counter() - t0
        u1, s1 = _cpu_s(pid)
        cpu = (u1 - u0) + (s1 - s0)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    log.seek(0)
    reply_us = [int(m) for m in re.findall(r"'reply_us_max': (\d+)", log.read())]
    log.close()
    # A `--drop` server never answers, so the phones record no call time: use the nominal.
    call_s = sum(r.duration_ms for r in results) / 1000 or calls * call_s_each
    lat = np.array([t.latency_ms for r in results for t in r.turns if t.latency_ms is not None])
    turns = sum(len(r.turns) for r in results)
    return {
        "server": server,
        "calls": calls,
        "wall_s": round(wall, 2),
        "call_seconds": round(call_s, 1),
        "server_cpu_ms_per_call_s": round(cpu * 1000 / call_s, 3),
        "of_which_user_ms": round((u1 - u0) * 1000 / call_s, 3),
        "of_which_system_ms": round((s1 - s0) * 1000 / call_s, 3),
        "calls_per_core_at_that_cost": int(call_s / cpu) if cpu else None,
        "steady_state_cpu_ms_per_call_s": _steady(samples, calls),
        "replies": f"{len(lat)}/{turns}",
        "reply_latency_ms_median": float(np.median(lat)) if len(lat) else None,
        "reply_latency_ms_max": float(lat.max()) if len(lat) else None,
        "latency_beyond_speech_end_ms_median": float(np.median(lat) - SPEECH_END_MS)
        if len(lat)
        else None,
        "server_end_of_speech_to_first_reply_frame_us_median": int(np.median(reply_us))
        if reply_us
        else None,
        "server_end_of_speech_to_first_reply_frame_us_max": max(reply_us) if reply_us else None,
        "reply_start_beyond_speech_end_ms_median": _reply_start(results),
        "rss_kb_per_call": round((peak - rss0) / calls, 1),
        "frames_sent": sum(r.frames_sent for r in results),
        "reply_gaps": sum(r.underruns for r in results),
        "max_lead_ms": max(r.max_buffered_ms for r in results),
        "phone_late_ticks": sum(r.late_ticks for r in results),
        "clean_closes": sum(1 for r in results if r.close_code == 1000),
    }


def _steady(samples: list[tuple[float, float]], calls: int) -> float | None:
    """CPU ms per call-second while all calls were live (None if the window was too short)."""
    if len(samples) < 8:
        return None
    (ta, ca), (tb, cb) = samples[0], samples[-1]
    return round((cb - ca) * 1000 / (calls * (tb - ta)), 3)


def _reply_start(results: list[Any]) -> float | None:
    """Median of (first reply frame heard - end of caller speech - configured silence)."""
    d = []
    for r in results:
        for t in r.turns:
            nxt = [m for m in r.first_media_ms if m >= t.end_ms]
            if nxt:
                d.append(nxt[0] - t.end_ms - SPEECH_END_MS)
    return round(float(np.median(d)), 1) if d else None


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
@pytest.mark.parametrize("server", ["voxrelay", "parrot"])
def test_fifty_echo_calls(benchmark: Any, server: str) -> None:
    figures: dict[str, Any] = {}

    def once() -> None:
        figures.update(measure(50, server=server))

    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    for k, v in figures.items():
        print(f"{k}: {v}")
    assert figures["clean_closes"] == 50


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--procs", type=int, default=2, help="processes playing the phones")
    ap.add_argument("--floor", action="store_true", help="sessions ignore all messages")
    ap.add_argument("--drop", action="store_true", help="connections drop all bytes read")
    ap.add_argument("--silent", action="store_true", help="callers send silence only")
    ap.add_argument(
        "--server",
        default="voxrelay",
        help="voxrelay, parrot (plain-Python baseline), or both (alternating in one run)",
    )
    a = ap.parse_args()
    servers = ["voxrelay", "parrot"] if a.server == "both" else [a.server]
    for _ in range(a.repeat):
        for server in servers:
            figures = measure(
                a.calls, a.procs, "drop" if a.drop else a.floor, server, silent=a.silent
            )
            for k, v in figures.items():
                print(f"{k}: {v}")
            print()
