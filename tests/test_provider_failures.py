"""Dead or failing providers and bad settings: a specific error, logged once, the call goes on.

The calls here run through the real relay (loopback WebSocket, session, turn detector, media
engine) with the real conversation agent; only the engines are scripted, since a recogniser
that drops its connection on cue is what is being tested. Caller speech is spoken by
espeak-ng. Nothing sleeps to synchronise: waits are on the agent's speech, a close, or an
event, each bounded.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import logging
import os
import socket
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from call_support import run, silence, speak
from relay_support import ACCOUNT, CALL, SID
from voxrelay import media
from voxrelay.agent import CallControl
from voxrelay.conversation import models
from voxrelay.conversation.engine import (
    ConversationAgent,
    ConversationConfig,
    Engines,
    stt_sink,
)
from voxrelay.conversation.providers import (
    PCM16_16K,
    ULAW_8K,
    AudioChunk,
    AudioFormat,
    CancelToken,
    Message,
    Transcript,
)
from voxrelay.protocols import twilio as tw
from voxrelay.server import RelayServer
from voxrelay.settings import Settings, load_settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

GREETING = "Hi there."
SORRY = "Sorry, I have trouble hearing you."
ANSWER = "We open at noon."
QUESTION = "When are you open?"
WAIT_S = 15.0  # bound on any one wait: a hang fails the test instead of the run


@pytest.fixture(scope="module")
def question() -> bytes:
    """The caller's utterance and the silence that ends it (the turn cap is 1.2 s)."""
    return speak("When are you open on Sunday?") + silence(2.0)


# ----------------------------------------------------------------------------------------------
# Scripted engines


HANG = "hang"
Step = str | tuple[str, str] | BaseException | None
"""What one `finalize()` does: emit that final text; (late, own): first the late final of the
previous utterance, then this one's; kill the transcript stream with that error; emit
nothing (a final lost on the way); or HANG: never return (cut short by the timeout)."""


class ScriptedSTT:
    """A streaming recogniser that fails on cue: at `start`, in `send_audio`, or per turn."""

    def __init__(
        self,
        *,
        start_error: BaseException | None = None,
        send_error: BaseException | None = None,
        steps: Sequence[Step] = (),
        timed: bool = True,
    ) -> None:
        """`timed`: finals say which audio they cover, as the protocol asks; False gives
        every final the same meaningless times (0-100 ms), as some engines might."""
        self.start_error = start_error
        self.send_error = send_error
        self.steps = list(steps)
        self.timed = timed
        self.sent = 0  # send_audio calls, failed ones included
        self.finalized = 0
        self.sent_ms = 0.0  # audio received since start(), the clock of Transcript times
        self.spans: list[tuple[float, float]] = [(0.0, 0.0)]  # audio of each finalize()
        self.q: asyncio.Queue[Transcript | BaseException | None] = asyncio.Queue()

    @property
    def input_format(self) -> AudioFormat:
        return PCM16_16K

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error

    def send_audio(self, pcm: bytes) -> None:
        self.sent += 1
        if self.send_error is not None:
            raise self.send_error
        self.sent_ms += len(pcm) / 32  # PCM16 16 kHz

    def emit(self, text: str, utterance: int = -1) -> None:
        """A final for the audio of that `finalize()` (the latest by default)."""
        start, end = self.spans[utterance] if self.timed else (0.0, 100.0)
        self.q.put_nowait(Transcript(text, True, start, end))

    async def events(self) -> AsyncIterator[Transcript]:
        while (item := await self.q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def interim(self) -> None:
        pass  # no speculative text: each turn ends on the silence cap

    async def finalize(self, *, reuse_interim: bool = False) -> None:
        self.finalized += 1
        self.spans.append((self.spans[-1][1], self.sent_ms))
        step = self.steps.pop(0) if self.steps else ""
        if step == HANG:
            await asyncio.Event().wait()
        elif isinstance(step, str):
            self.emit(step)
        elif isinstance(step, tuple):
            late, own = step
            self.emit(late, -2)
            self.emit(own)
        elif step is not None:
            self.q.put_nowait(step)

    async def close(self) -> None:
        self.q.put_nowait(None)


class OneLineLLM:
    async def stream(
        self, messages: Sequence[Message], *, cancel: CancelToken | None = None
    ) -> AsyncIterator[str]:
        yield ANSWER


class ListeningTTS:
    """`ms` of mu-law per clause; what the agent says is readable in order from `said`.

    No audio by default: the test caller, who speaks faster than real time, then never speaks
    over a reply still playing (which does not take the turn when its words are unknown).
    """

    def __init__(self, ms: int = 0) -> None:
        self.said: asyncio.Queue[str] = asyncio.Queue()
        self.ms = ms

    @property
    def output_format(self) -> AudioFormat:
        return ULAW_8K

    async def synthesize(
        self, text: str, *, cancel: CancelToken | None = None
    ) -> AsyncIterator[AudioChunk]:
        self.said.put_nowait(text)
        yield AudioChunk(b"\xff" * (self.ms * 8), 8000, "ulaw")

    async def close(self) -> None:
        pass

    async def next(self) -> str:
        return await asyncio.wait_for(self.said.get(), WAIT_S)


class Relay:
    """A relay whose calls get a conversation agent over the given recogniser."""

    def __init__(self, stt: ScriptedSTT, *, tts_ms: int = 0, **config: Any) -> None:
        self.stt = stt
        self.tts = ListeningTTS(tts_ms)
        self.config = ConversationConfig(
            greeting=GREETING, error_text=SORRY, reprompt_after_s=0, **config
        )
        self.agents: list[ConversationAgent] = []

    def __call__(self, call: CallControl) -> ConversationAgent:
        agent = ConversationAgent(
            call, Engines(lambda: self.stt, OneLineLLM(), self.tts), self.config
        )
        self.agents.append(agent)
        return agent

    @asynccontextmanager
    async def call(self) -> AsyncIterator[ClientConnection]:
        server = RelayServer(Settings(port=0), self)
        await server.start()
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/twilio") as ws:
                await ws.send(tw.connected_message())
                await ws.send(tw.start_message(SID, CALL, ACCOUNT))
                yield ws
        finally:
            await server.shutdown(drain_timeout_s=0.0)


class Caller:
    """The platform side of one call: sends media as Twilio does, numbered on from the last."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seq = 2

    async def say(self, pcm8: bytes) -> None:
        codes = media.ulaw_encode(pcm8)
        codes += b"\xff" * (-len(codes) % 160)
        for i in range(0, len(codes), 160):
            n = self.seq - 2  # chunk and timestamp go on across utterances, as on a call
            payload = base64.b64encode(codes[i : i + 160]).decode()
            await self.ws.send(tw.media_message(SID, self.seq, n + 1, n * 20, payload))
            self.seq += 1

    async def hang_up(self) -> tuple[int | None, str]:
        """Send `stop`; the relay's close code and reason."""
        await self.ws.send(tw.stop_message(SID, self.seq, CALL, ACCOUNT))
        try:
            async with asyncio.timeout(WAIT_S):
                while True:
                    await self.ws.recv()
        except ConnectionClosed:
            pass
        return self.ws.close_code, self.ws.close_reason or ""


def stt_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "stt provider failed" in r.getMessage()]


def call_endings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if " ended (" in r.getMessage()]


# ----------------------------------------------------------------------------------------------
# 1. The recogniser's send_audio raises


def test_sink_reports_the_first_send_failure_and_stops_forwarding() -> None:
    stt = ScriptedSTT(send_error=ConnectionError("stt socket closed"))
    errors: list[Exception] = []
    sink = stt_sink(stt, 8000, on_error=errors.append)  # through the resampler too
    for _ in range(3):
        sink(b"\0\0" * 160)  # must not raise: it runs on the media path
    assert stt.sent == 1
    assert [str(e) for e in errors] == ["stt socket closed"]


def test_raising_stt_send_keeps_the_call_and_answers_with_an_apology(
    question: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    relay = Relay(ScriptedSTT(send_error=ConnectionError("stt socket closed")))

    async def main() -> tuple[int | None, str]:
        async with relay.call() as ws:
            caller = Caller(ws)
            assert await relay.tts.next() == GREETING
            await caller.say(question)
            assert await relay.tts.next() == SORRY
            await caller.say(question)  # the recogniser stays dead: the same answer
            assert await relay.tts.next() == SORRY
            return await caller.hang_up()

    assert run(main()) == (1000, "stream stopped")
    assert relay.stt.sent == 1  # no audio pushed at a dead recogniser
    assert stt_failures(caplog) == [
        "stt provider failed (ConnectionError: stt socket closed); further stt failures on "
        "this call are not logged"
    ]
    assert [m for m in call_endings(caplog) if "ended (stop)" in m]


# ----------------------------------------------------------------------------------------------
# 2. A dead recogniser: start fails, the transcript stream dies, a final never comes


def test_stt_that_cannot_start_gets_an_apology_not_silence(
    question: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    relay = Relay(ScriptedSTT(start_error=ConnectionError("stt endpoint refused")))

    async def main() -> tuple[int | None, str]:
        async with relay.call() as ws:
            caller = Caller(ws)
            # No greeting that invites speech nobody will hear.
            assert await relay.tts.next() == SORRY
            await caller.say(question)
            assert await relay.tts.next() == SORRY  # each utterance is still answered
            return await caller.hang_up()

    assert run(main()) == (1000, "stream stopped")
    assert relay.stt.sent == 0 and relay.stt.finalized == 0
    assert len(stt_failures(caplog)) == 1
    assert "ConnectionError: stt endpoint refused" in stt_failures(caplog)[0]


def test_transcript_stream_dying_under_a_turn_wakes_it_with_an_apology(
    question: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    relay = Relay(ScriptedSTT(steps=[ConnectionError("stt websocket dropped")]))

    async def main() -> tuple[int | None, str]:
        async with relay.call() as ws:
            caller = Caller(ws)
            assert await relay.tts.next() == GREETING
            await caller.say(question)  # its turn waits for a final that will never come
            assert await relay.tts.next() == SORRY
            await caller.say(question)
            assert await relay.tts.next() == SORRY
            return await caller.hang_up()

    assert run(main()) == (1000, "stream stopped")
    assert relay.stt.finalized == 1  # the second turn did not ask a dead recogniser
    assert len(stt_failures(caplog)) == 1
    assert "ConnectionError: stt websocket dropped" in stt_failures(caplog)[0]
    assert relay.agents[0].transcripts == []


def test_transcript_stream_ending_mid_call_is_a_dead_recogniser(
    question: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    stt = ScriptedSTT()
    relay = Relay(stt)

    async def main() -> None:
        async with relay.call() as ws:
            caller = Caller(ws)
            assert await relay.tts.next() == GREETING
            stt.q.put_nowait(None)  # events() returns although nobody closed the engine
            await caller.say(question)
            assert await relay.tts.next() == SORRY
            await caller.hang_up()

    run(main())
    assert len(stt_failures(caplog)) == 1
    assert "EOFError: the transcript stream ended" in stt_failures(caplog)[0]


def test_final_that_never_comes_times_out_and_a_late_one_is_not_the_next_turns(
    question: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    stt = ScriptedSTT(steps=[None, QUESTION])  # turn 1's final is lost, turn 2's comes
    relay = Relay(stt, final_timeout_s=0.3)

    async def main() -> tuple[int | None, str]:
        async with relay.call() as ws:
            caller = Caller(ws)
            assert await relay.tts.next() == GREETING
            await caller.say(question)
            assert await relay.tts.next() == SORRY
            stt.emit("words of the turn that gave up")  # its final, too late
            await caller.say(question)
            assert await relay.tts.next() == ANSWER  # the call works again
            return await caller.hang_up()

    assert run(main()) == (1000, "stream stopped")
    assert relay.agents[0].transcripts == [QUESTION]
    assert stt_failures(caplog) == [
        "stt provider failed (TimeoutError: no final transcript 0.3 s after the end of the "
        "utterance); further stt failures on this call are not logged"
    ]


async def ask(relay: Relay, question: bytes, times: int = 4) -> list[str]:
    """What the caller hears: the greeting, then the answer to each time it asks."""
    async with relay.call() as ws:
        caller = Caller(ws)
        heard = [await relay.tts.next()]
        for _ in range(times):
            await caller.say(question)
            heard.append(await relay.tts.next())
        await caller.hang_up()
        return heard


def test_a_final_that_never_comes_costs_only_its_own_turn(
    question: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # Counting owed finals made every later turn drop its own final as the lost one's,
    # wait out the timeout and apologise, for the rest of the call.
    stt = ScriptedSTT(steps=[None, "first", "second", "third"])
    relay = Relay(stt, final_timeout_s=0.3)

    assert run(ask(relay, question)) == [GREETING, SORRY, ANSWER, ANSWER, ANSWER]
    assert relay.agents[0].transcripts == ["first", "second", "third"]
    assert len(stt_failures(caplog)) == 1


def test_without_meaningful_times_a_lost_final_costs_at_most_one_more_turn(
    question: bytes,
) -> None:
    # An engine whose finals all claim the same audio cannot be told from a late final while
    # the next turn waits: that turn may be lost too, but the ones after it are not.
    stt = ScriptedSTT(steps=[None, "first", "second", "third"], timed=False)
    relay = Relay(stt, final_timeout_s=0.3)

    assert run(ask(relay, question)) == [GREETING, SORRY, SORRY, ANSWER, ANSWER]
    assert relay.agents[0].transcripts == ["second", "third"]


def test_a_late_final_that_comes_while_the_next_turn_waits_is_not_its_text(
    question: bytes,
) -> None:
    # Turn 1's final comes only after turn 2 asked for its own: told apart by the audio each
    # covers, it is dropped and turn 2 answers its own words.
    stt = ScriptedSTT(steps=[None, ("words of the turn that gave up", QUESTION), "next"])
    relay = Relay(stt, final_timeout_s=0.3)

    assert run(ask(relay, question, 3)) == [GREETING, SORRY, ANSWER, ANSWER]
    assert relay.agents[0].transcripts == [QUESTION, "next"]


def test_a_final_whose_finalize_was_cut_short_is_not_the_next_turns(question: bytes) -> None:
    stt = ScriptedSTT(steps=[HANG, QUESTION])  # turn 1's finalize never returns
    relay = Relay(stt, final_timeout_s=0.3)

    async def main() -> None:
        async with relay.call() as ws:
            caller = Caller(ws)
            assert await relay.tts.next() == GREETING
            await caller.say(question)
            assert await relay.tts.next() == SORRY
            stt.emit("words of the turn that gave up", 1)  # the engine emits it after all
            await caller.say(question)
            assert await relay.tts.next() == ANSWER
            await caller.hang_up()

    run(main())
    assert relay.agents[0].transcripts == [QUESTION]


def test_final_timeout_default_is_documented_and_bounded() -> None:
    # The wait exists by default (no setting needed to avoid a hang) and is long enough for
    # a loaded shared recogniser.
    assert 5.0 <= ConversationConfig().final_timeout_s <= 30.0


def test_a_recogniser_dying_after_a_logged_timeout_is_logged_too(
    question: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # A final timeout is logged as an "stt" failure; the recogniser's death afterwards is
    # news (every later utterance gets the apology) and must not hide behind it.
    stt = ScriptedSTT(steps=[None, ConnectionError("stt websocket dropped")])
    relay = Relay(stt, final_timeout_s=0.3)

    async def main() -> None:
        async with relay.call() as ws:
            caller = Caller(ws)
            assert await relay.tts.next() == GREETING
            for _ in range(3):
                await caller.say(question)
                assert await relay.tts.next() == SORRY
            await caller.hang_up()

    run(main())
    assert stt_failures(caplog) == [
        "stt provider failed (TimeoutError: no final transcript 0.3 s after the end of the "
        "utterance); further stt failures on this call are not logged",
        "stt provider failed (ConnectionError: stt websocket dropped); the recogniser is gone "
        "for this call",
    ]
    assert stt.finalized == 2


@contextmanager
def logged(message: str) -> Iterator[asyncio.Event]:
    """An event set when the conversation logs `message` (at any level): to wait on what the
    agent decided when that decision has no other outward sign."""
    event = asyncio.Event()

    class Signal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == message:
                event.set()

    logger = logging.getLogger("voxrelay.conversation")
    handler = Signal(logging.DEBUG)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield event
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_an_utterance_over_an_apology_does_not_start_a_second_one(
    question: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # With a dead recogniser every utterance takes the apology path: a cough while the
    # apology plays started another, and both played interleaved.
    relay = Relay(ScriptedSTT(start_error=ConnectionError("stt endpoint refused")), tts_ms=5000)
    cough = speak("Oh.") + silence(2.0)  # shorter than a barge-in

    async def main() -> None:
        with logged("no transcript for an utterance over a reply: not answered") as skipped:
            async with relay.call() as ws:
                caller = Caller(ws)
                assert await relay.tts.next() == SORRY  # 5 s of it: still playing below
                await caller.say(cough)
                await asyncio.wait_for(skipped.wait(), WAIT_S)
                await caller.hang_up()

    run(main())
    assert relay.tts.said.empty()  # one apology, not two at once
    assert len(relay.agents[0].records) == 0


# ----------------------------------------------------------------------------------------------
# 3. A call's recogniser is built on the event loop: no disk there


@contextmanager
def no_disk() -> Iterator[None]:
    """Inside, a stat or a path resolution fails the test (undone on the way out, before
    pytest reports, which needs the disk)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"file-system call on a call's path: {args!r}")

    with pytest.MonkeyPatch.context() as m:
        m.setattr(os, "stat", refuse)
        m.setattr(os, "lstat", refuse)
        m.setattr(os.path, "realpath", refuse)
        yield


def test_verified_model_files_are_not_looked_at_again(tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"abc")
    pins = {"m.bin": hashlib.sha256(b"abc").hexdigest()}
    models.verify(tmp_path, pins)
    with no_disk():
        models.verify(tmp_path, pins)


def test_a_calls_whisper_engine_reuses_the_loaded_model_without_disk() -> None:
    from voxrelay.conversation.stt_whisper import WhisperSTT

    first = WhisperSTT()  # as at startup (prepare): loads and verifies the bundled model
    with no_disk():
        second = WhisperSTT()  # as each call does, on the event loop
    assert first._fast is not None
    assert second._fast is first._fast  # the tokenizer set-up is not paid again


def test_a_whisper_model_let_go_of_by_the_cache_is_not_kept_alive_by_its_fast_path() -> None:
    from voxrelay.conversation import stt_whisper

    stt = stt_whisper.WhisperSTT(cpu_threads=1)
    assert stt._fast is not None
    model, fast = weakref.ref(stt._model), weakref.ref(stt._fast)
    del stt
    stt_whisper._load_model.cache_clear()  # as when two other models pushed it out
    gc.collect()
    assert (model(), fast()) == (None, None)


# ----------------------------------------------------------------------------------------------
# 4-5. Settings


@pytest.mark.parametrize("url", ["voice.example.com", "ftp://voice.example.com", "https://", " "])
def test_public_url_that_cannot_be_used_is_refused_at_startup(url: str) -> None:
    with pytest.raises(ValueError, match=r"public_url .* must be an absolute http\(s\)://"):
        Settings(public_url=url)


def test_empty_public_url_from_the_environment_or_a_file_means_unset(tmp_path: Path) -> None:
    assert load_settings(env={"VOXRELAY_PUBLIC_URL": ""}).public_url is None
    cfg = tmp_path / "relay.toml"
    cfg.write_text('public_url = ""\nllm_script = ""\n')
    s = load_settings(config=cfg, env={})
    assert (s.public_url, s.llm_script) == (None, None)
    # Not for secrets (an empty one is refused, never read as "no check") nor the greeting
    # (empty is a silent start).
    with pytest.raises(ValueError, match="non-empty"):
        load_settings(env={"VOXRELAY_TWILIO_AUTH_TOKEN": ""})
    assert load_settings(env={"VOXRELAY_GREETING": ""}).greeting == ""
    url = "https://voice.example.com/base"
    assert load_settings(env={"VOXRELAY_PUBLIC_URL": url}).public_url == url


@pytest.mark.parametrize("name", ["idle_timeout_s", "ping_interval_s", "open_timeout_s"])
@pytest.mark.parametrize("value", [0, 0.0, -1.0, float("inf")])
def test_timeouts_must_be_positive(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a finite number of seconds > 0"):
        Settings().replace(**{name: value})
    with pytest.raises(ValueError, match=rf"{name} .*got {value!r}"):
        load_settings(env={f"VOXRELAY_{name.upper()}": str(value)})


def test_pings_can_still_be_switched_off() -> None:
    assert Settings(ping_interval_s=None).ping_interval_s is None
    assert load_settings(env={"VOXRELAY_PING_INTERVAL_S": "none"}).ping_interval_s is None
    assert Settings(idle_timeout_s=0.05).idle_timeout_s == 0.05


# ----------------------------------------------------------------------------------------------
# 6. voxrelay serve


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    """`voxrelay serve` as an operator runs it; bounded, so one that serves fails the test."""
    return subprocess.run(
        [sys.executable, "-m", "voxrelay.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_on_a_port_in_use_says_so_in_one_line(taken_port: int) -> None:
    done = serve("--host", "127.0.0.1", "--port", str(taken_port), "--agent", "echo")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("voxrelay serve: ")
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert "address already in use" in done.stderr and str(taken_port) in done.stderr
    assert "listening" not in done.stdout


def test_serve_with_a_bad_public_url_stops_before_listening() -> None:
    done = serve("--port", "0", "--agent", "echo", "--public-url", "voice.example.com")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("voxrelay serve: public_url 'voice.example.com' must be ")
    assert done.stderr.count("\n") == 1
    assert "listening" not in done.stdout
