"""The simulator as a conversational caller, against the real relay on loopback.

Each call runs in real time with espeak-ng speech, so the utterances are short. Every
assertion is about order on the call's own tick timeline (who spoke when, relative to what
was heard), never about how fast the relay was: that is for benches.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from call_support import run, silence, speak
from hypothesis import given, settings
from hypothesis import strategies as st
from voxrelay import cli
from voxrelay.agent import AgentEvent, CallControl, CallEnded, CallStarted, EchoAgent, SpeechEnded
from voxrelay.conversation.latency import TurnLatency
from voxrelay.server import RelayServer
from voxrelay.settings import Settings
from voxrelay.simulator import (
    CallOptions,
    CallResult,
    _Impairer,
    fetch_turn_records,
    run_call,
    speech_segments,
    turns_url,
    write_wav,
    write_wav_stereo,
)

SECRET = "s3cret-stream-token"
REPLY_SILENCE_MS = 500


@pytest.fixture(scope="module")
def hello() -> bytes:
    return silence(0.2) + speak("Hello there.")


@pytest.fixture(scope="module")
def two_utterances(hello: bytes) -> bytes:
    """Two short phrases a second apart: two caller turns for the energy gate."""
    return hello + silence(1.0) + speak("Thank you.")


def tone(seconds: float, hz: float = 440.0, rate: int = 8000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


class RecordingEcho:
    """Echo agent that greets with a short tone and keeps a latency record per reply.

    The records are real measurements (speech end -> first reply frame on the wire) plus
    made-up texts, so the test can see that the relay filters the texts out.
    """

    def __init__(self, call: CallControl, greet: bool = True) -> None:
        self.call = call
        self.echo = EchoAgent(call)
        self.greet = greet
        self.records: list[TurnLatency] = []

    async def on_event(self, event: AgentEvent) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(event, CallStarted) and self.greet:
            self.call.play(tone(0.4), 8000)
        elif isinstance(event, SpeechEnded):
            rec = TurnLatency(
                turn=len(self.records) + 1,
                user_text=f"private words {len(self.records) + 1}",
                reply_text="(echo)",
                turn_wait_ms=event.silence_ms,
                turn_decided_ms=(loop.time() - event.at) * 1000 + event.silence_ms,
            )
            self.records.append(rec)
            speech_end = event.at - event.silence_ms / 1000

            def sent(t: float, rec: TurnLatency = rec) -> None:
                rec.first_frame_sent_ms = (t - speech_end) * 1000

            self.call.notify_first_frame(sent)
            await self.echo.on_event(event)
        elif isinstance(event, CallEnded):
            for rec in self.records:
                self.call.record_turn(rec.as_dict())


@asynccontextmanager
async def serving(
    settings: Settings, agents: list[RecordingEcho], greet: bool = True
) -> AsyncIterator[RelayServer]:
    def factory(call: CallControl) -> RecordingEcho:
        agents.append(RecordingEcho(call, greet))
        return agents[-1]

    server = RelayServer(settings.replace(port=0), factory)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown(drain_timeout_s=0.0)


def loud_segments(r: CallResult) -> list[tuple[int, int]]:
    """What the caller heard, as (start_ms, end_ms) stretches of sound."""
    return speech_segments(r.heard, min_gap_ms=REPLY_SILENCE_MS)


def test_converse_waits_for_each_reply_and_reads_back_the_records(
    two_utterances: bytes, tmp_path: Path
) -> None:
    agents: list[RecordingEcho] = []

    async def main() -> CallResult:
        async with serving(Settings(), agents) as server:
            return await run_call(
                CallOptions(
                    f"ws://127.0.0.1:{server.port}/twilio",
                    two_utterances,
                    converse=True,
                    greeting_wait_s=2.0,
                    reply_silence_ms=REPLY_SILENCE_MS,
                    tail_s=0.2,
                )
            )

    r = run(main())
    assert r.close_code == 1000
    assert len(r.turns) == 2 and all(t.latency_ms is not None for t in r.turns), r.turns
    first, second = r.turns
    # The real caller timeline: the said track holds exactly the turns, where they were sent.
    assert len(r.said) == len(r.heard)
    assert speech_segments(r.said) == [(t.start_ms, t.end_ms) for t in r.turns]
    heard = loud_segments(r)
    # The greeting tone, then the reply to each utterance; nothing else was heard.
    assert len(heard) == 3, heard
    greeting, reply1, reply2 = heard
    # Each utterance waited for the agent to finish, and then for the reply silence.
    assert greeting[1] + REPLY_SILENCE_MS <= first.start_ms
    assert first.end_ms <= reply1[0] and first.reply_ms == reply1[0]
    assert reply1[1] + REPLY_SILENCE_MS <= second.start_ms
    assert second.end_ms <= reply2[0] and second.reply_ms == reply2[0]
    assert not r.clears_ms
    # The relay's records came back: the agent's, without the texts.
    (agent,) = agents
    assert all(rec.first_frame_sent_ms is not None for rec in agent.records)
    expected = [
        {k: v for k, v in rec.as_dict().items() if k not in ("user_text", "reply_text")}
        for rec in agent.records
    ]
    assert r.turn_records == expected and len(expected) == 2
    # Both sides in one stereo file: caller left, heard right.
    out = tmp_path / "both.wav"
    write_wav_stereo(out, r.said, r.heard)
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, len(r.said) // 2)
        both = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert both[:, 0].tobytes() == r.said and both[:, 1].tobytes() == r.heard


def test_barge_in_talks_over_the_reply_and_the_relay_clears_it(two_utterances: bytes) -> None:
    agents: list[RecordingEcho] = []

    async def main() -> CallResult:
        async with serving(Settings(), agents, greet=False) as server:
            return await run_call(
                CallOptions(
                    f"ws://127.0.0.1:{server.port}/twilio",
                    two_utterances,
                    converse=True,
                    barge_in={0: 200},
                    greeting_wait_s=0.3,
                    reply_silence_ms=REPLY_SILENCE_MS,
                    tail_s=0.2,
                )
            )

    r = run(main())
    assert r.close_code == 1000 and len(r.turns) == 2
    first, second = r.turns
    assert first.reply_ms is not None and first.reply_ms < second.start_ms
    # The second utterance began while the reply to the first was still being heard ...
    loud = [a <= second.start_ms < b for a, b in loud_segments(r)]
    assert any(loud), (second, loud_segments(r))
    # ... and the relay cut that reply: a clear after the caller spoke up, before the echo of
    # the second utterance (its reply) began.
    assert second.reply_ms is not None
    assert any(second.start_ms <= c <= second.reply_ms for c in r.clears_ms), r.clears_ms
    assert r.marks_received == r.marks_echoed


def test_voxrelay_call_converse_cli_prints_the_waterfall(
    hello: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.wav"
    write_wav(src, hello)
    both = tmp_path / "both.wav"
    agents: list[RecordingEcho] = []
    cfg = Settings(stream_secret=SECRET, turn_records_texts=True)

    async def main() -> int:
        async with serving(cfg, agents, greet=False) as server:
            argv = [
                "call",
                f"ws://127.0.0.1:{server.port}/twilio",
                "--wav",
                str(src),
                "--converse",
                "--tail",
                "0.2",
                "--out-both",
                str(both),
                "--token",
                SECRET,
            ]
            return await asyncio.to_thread(cli.main, argv)

    assert run(main()) == 0
    out = capsys.readouterr().out
    assert "1 turn(s)" in out and "closed: 1000" in out
    # The relay's record, texts included because this relay is configured to serve them.
    assert "turn 1: caller 'private words 1'" in out and "first frame sent" in out
    with wave.open(str(both)) as w:
        assert w.getnchannels() == 2
    assert len(agents) == 1 and len(agents[0].records) == 1


def test_barge_in_flag_needs_converse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.wav"
    write_wav(src, silence(0.1))
    argv = ["call", "ws://127.0.0.1:9/twilio", "--wav", str(src), "--barge-in", "0:300"]
    assert cli.main(argv) == 2
    assert "--converse" in capsys.readouterr().err
    assert cli.main([*argv[:-1], "zero:300", "--converse"]) == 2
    assert "UTTERANCE:MS" in capsys.readouterr().err


def test_turns_url_follows_the_stream_url() -> None:
    assert (
        turns_url("ws://127.0.0.1:8080/twilio", "CA1")
        == "http://127.0.0.1:8080/calls/CA1/turns?wait=5"
    )
    assert (
        turns_url("wss://relay.example/base/twilio?x=1", "CA1", wait_s=2.5, token="a b")
        == "https://relay.example/base/calls/CA1/turns?wait=2.5&token=a+b"
    )
    with pytest.raises(ValueError, match="ws://"):
        turns_url("http://relay.example/twilio", "CA1")


def test_records_fetch_never_fails_the_call() -> None:
    async def main() -> None:
        # A port with nothing listening, a non-WebSocket URL: no records, no exception.
        srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        srv.close()
        await srv.wait_closed()
        assert await fetch_turn_records(f"ws://127.0.0.1:{port}/twilio", "CA1", wait_s=0) == []
        assert await fetch_turn_records("http://nowhere/twilio", "CA1") == []

    run(main())


@given(
    n=st.integers(0, 120),
    loss=st.sampled_from([0.0, 0.1, 0.5]),
    reorder=st.sampled_from([0.0, 0.2, 0.9]),
    jitter_ms=st.sampled_from([0.0, 15.0, 70.0]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_online_impairments_deliver_each_frame_at_most_once(
    n: int, loss: float, reorder: float, jitter_ms: float, seed: int
) -> None:
    """Converse mode makes frames as it goes; its impairer must neither duplicate nor invent
    frames, nor send one before it was made, and only a frame held for reordering at the very
    end may be missing besides the lost ones."""
    opts = CallOptions("ws://x/twilio", b"", loss=loss, reorder=reorder, jitter_ms=jitter_ms)
    imp = _Impairer(opts, np.random.default_rng(seed))
    sent: list[tuple[int, int]] = []
    for k in range(n + int(jitter_ms // 20) + 2):
        if k < n:
            imp.push(k, k)
        sent += [(k, i) for i in imp.due(k)]
    frames = [i for _, i in sent]
    assert len(frames) == len(set(frames)) and set(frames) <= set(range(n))
    assert all(k >= i for k, i in sent)
    assert n - 1 <= len(frames) + imp.lost <= n
    if loss == reorder == jitter_ms == 0:
        assert sent == [(i, i) for i in range(n)]


def test_stereo_wav_pads_the_shorter_side(tmp_path: Path) -> None:
    left = np.arange(-5, 5, dtype="<i2").tobytes()
    right = np.array([7, 8, 9], "<i2").tobytes()
    write_wav_stereo(tmp_path / "s.wav", left, right)
    with wave.open(str(tmp_path / "s.wav")) as w:
        got = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert got[:, 0].tolist() == list(range(-5, 5))
    assert got[:, 1].tolist() == [7, 8, 9] + [0] * 7
