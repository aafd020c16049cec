"""`voxrelay demo`: a whole phone conversation on this machine, no network and no keys.

It starts the relay with the conversation agent and the local engines (Whisper tiny.en,
the scripted restaurant LLM, the piper voice), then places a simulated Twilio call whose
caller speaks the bundled lines, waiting for each answer as a person would, and barging in
on the long opening-hours answer. It prints what each side said, each turn's latency
waterfall, and writes the call (caller left, agent right) to a stereo WAV.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from voxrelay.conversation.latency import format_waterfall
from voxrelay.settings import Settings

__all__ = ["run_conversation_demo"]

_GAP_S = 1.5  # silence between the bundled lines, so the simulator splits them into turns
_BARGE_IN_MS = 2500  # line 2 interrupts the answer to line 1 this far into it


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_conversation_demo(
    *,
    out: str | None,
    stt: str | None = None,
    llm: str | None = None,
    tts: str | None = None,
    script: str | None = None,
    loss: float = 0.0,
    seed: int = 7,
    printer: Callable[[str], None] = print,
) -> int:
    changes: dict[str, Any] = {"port": 0, "agent": "conversation", "llm_script": script}
    for key, value in (("stt", stt), ("llm", llm), ("tts", tts)):
        if value is not None:
            changes[key] = value
    settings = Settings(**changes)
    return _run(_demo(settings, out, loss, seed, printer))


async def _demo(
    settings: Settings, out: str | None, loss: float, seed: int, say: Callable[[str], None]
) -> int:
    from voxrelay.conversation.engine import ConversationAgent, ConversationFactory
    from voxrelay.demo_audio import caller_audio
    from voxrelay.server import RelayServer
    from voxrelay.simulator import CallOptions, run_call, summary, write_wav_stereo

    t0 = time.monotonic()

    def progress(msg: str) -> None:
        say(f"[{time.monotonic() - t0:5.1f} s] {msg}")

    try:
        server = RelayServer(settings, progress=progress)
    except (ValueError, ImportError) as e:
        say(f"voxrelay demo: {e}")
        return 2
    agents: list[ConversationAgent] = []

    def made(agent: ConversationAgent) -> None:
        agents.append(agent)
        agent.observer = live

    def live(who: str, text: str) -> None:
        if who == "agent-interrupted":
            progress(f"  agent  (cut off by the caller after: {text!r})")
        elif text:
            progress(f"  {who:<6} {text!r}" + ("" if who == "agent" else "  (transcribed)"))

    factory = server.agent_factory
    if isinstance(factory, ConversationFactory):
        factory.on_agent = made
    try:
        await server.start()  # loads the models, with progress
    except (ValueError, ImportError) as e:
        say(f"voxrelay demo: {e}")
        return 2
    lines = caller_audio()
    gap = b"\x00\x00" * int(8000 * _GAP_S)
    audio = gap.join(pcm for _text, pcm in lines)
    url = f"ws://127.0.0.1:{server.port}/twilio"
    progress(f"calling {url}: the caller says {len(lines)} lines and barges in once")
    opts = CallOptions(
        url,
        audio,
        converse=True,
        barge_in={0: _BARGE_IN_MS},
        tail_s=1.0,
        loss=loss,
        seed=seed,
    )
    try:
        result = await run_call(opts)
    finally:
        await server.shutdown(drain_timeout_s=5.0)
    progress("call ended")
    say("")
    if agents:
        agent = agents[0]
        say("conversation (as the agent's context records it):")
        for m in agent.conversation.turns:
            who = "caller" if m.role == "user" else "agent "
            cut = "  [interrupted: the caller heard only this]" if m.interrupted else ""
            say(f"  {who}: {m.content}{cut}")
        say("")
        say("latency per turn (ms after the caller stopped speaking):")
        say(format_waterfall(agent.records, texts=False))
        sent = [r.first_frame_sent_ms for r in agent.records if r.first_frame_sent_ms is not None]
        relay = [r.relay_ms for r in agent.records if r.relay_ms is not None]
        if sent:
            say(
                f"end of speech -> first reply audio: median {np.median(sent):.0f} ms over "
                f"{len(sent)} turns; relay's own share: median {np.median(relay):.0f} ms, "
                f"max {max(relay):.0f} ms"
            )
    say("")
    say("as the simulated caller measured it:")
    say(summary([result]))
    if out:
        write_wav_stereo(out, result.said, result.heard)
        say(f"wrote {out}: the call in stereo, caller left, agent right (8 kHz)")
    ok = result.close_code in (1000, 1001) and bool(agents) and bool(agents[0].records)
    return 0 if ok else 1
