"""Conversation latency with the local engines: end of the caller's question -> first reply audio.

Runs the relay in-process with `--agent conversation` (Whisper tiny.en, the scripted LLM, the
piper voice) and places `--calls` simulated calls one after another, each speaking the bundled
caller lines in converse mode (the caller waits for each answer; no barge-in, so every turn
gets a whole reply). Per turn it takes the relay's own latency record (see
`voxrelay.conversation.latency`) and reports, over all turns:

- response: end of speech -> first reply frame on the wire (goal: median <= 1500 ms);
- the parts: the deliberate turn wait, STT, LLM and TTS compute on the critical path;
- relay: what is left, the relay's own share (goal: <= 30 ms);
- what the simulated caller measured (end of speech -> first audible reply).

    python benches/conversation_latency.py [--calls 3] [--parallel 1] [--json FILE]

On a 2-core machine the engines compete for the cores, so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from typing import Any

from voxrelay.conversation.engine import ConversationAgent, ConversationFactory
from voxrelay.conversation.latency import TurnLatency
from voxrelay.demo_audio import caller_audio
from voxrelay.server import RelayServer
from voxrelay.settings import Settings
from voxrelay.simulator import CallOptions, run_call

GAP = b"\x00\x00" * 8000 * 2  # 2 s between lines: separate turns for the simulator


async def measure(calls: int, parallel: int = 1) -> tuple[list[TurnLatency], list[float]]:
    server = RelayServer(
        Settings(port=0, agent="conversation", log_level="WARNING"),
        progress=lambda msg: print(f"  {msg}", file=sys.stderr),
    )
    factory = server.agent_factory
    assert isinstance(factory, ConversationFactory)
    agents: list[ConversationAgent] = []
    factory.on_agent = agents.append
    await server.start()
    heard: list[float] = []
    try:
        audio = GAP.join(pcm for _text, pcm in caller_audio())

        async def one(i: int) -> None:
            # Parallel calls start 1.3 s apart: in lock-step every turn would collide.
            await asyncio.sleep(1.3 * (i % parallel))
            opts = CallOptions(
                f"ws://127.0.0.1:{server.port}/twilio",
                audio,
                converse=True,
                tail_s=0.5,
                seed=i,
                fetch_turns=False,
            )
            result = await run_call(opts)
            heard.extend(t.latency_ms for t in result.turns if t.latency_ms is not None)
            print(f"  call {i + 1}/{calls}: {len(result.turns)} turns", file=sys.stderr)

        for first in range(0, calls, parallel):
            await asyncio.gather(*(one(i) for i in range(first, min(calls, first + parallel))))
    finally:
        await server.shutdown(drain_timeout_s=5.0)
    return [r for a in agents for r in a.records], heard


def _stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    q = statistics.quantiles(values, n=10) if len(values) > 1 else [values[0]] * 9
    return (
        f"median {statistics.median(values):7.1f}  p90 {q[8]:7.1f}  "
        f"min {min(values):7.1f}  max {max(values):7.1f}  (n={len(values)})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=1, help="calls at the same time")
    ap.add_argument("--json", default=None, help="write the per-turn records here")
    args = ap.parse_args()
    try:
        import uvloop

        records, heard = uvloop.run(measure(args.calls, args.parallel))
    except ImportError:  # pragma: no cover
        records, heard = asyncio.run(measure(args.calls, args.parallel))
    done = [r for r in records if r.first_frame_sent_ms is not None and not r.interrupted]
    rows: list[tuple[str, list[float]]] = [
        ("response (speech end -> first frame sent)", [r.first_frame_sent_ms or 0 for r in done]),
        ("  turn wait (deliberate)", [r.turn_wait_ms or 0 for r in done]),
        ("  STT on the critical path", [r.stt_compute_ms for r in done]),
        ("  LLM to first clause", [r.llm_compute_ms for r in done]),
        ("  TTS first clause", [r.tts_compute_ms for r in done]),
        ("  relay's own share", [r.relay_ms or 0 for r in done]),
        ("first frame heard (from marks)", [r.first_frame_heard_ms or 0 for r in done]),
        ("caller-measured (first audible reply)", heard),
    ]
    print(
        f"turns: {len(done)} answered of {len(records)}; speculative STT reused in "
        f"{sum(r.speculative for r in done)}"
    )
    for label, values in rows:
        print(f"{label:<42} {_stats(values)} ms")
    if args.json:
        data: list[dict[str, Any]] = [r.as_dict() for r in records]
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
