"""The conversation agent's turn logic, driven event by event without sockets or models.

The providers here are scripted fakes (the issue allows them for session logic); the real
engines run end to end in test_conversation_e2e.py. Each test feeds the agent the events a
session would send and checks what it asks of the call and what enters the context.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import numpy as np
import pytest
from voxrelay.agent import (
    BargeIn,
    CallEnded,
    CallStarted,
    MarkPlayed,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
)
from voxrelay.conversation.engine import (
    ConversationAgent,
    ConversationConfig,
    Engines,
    input_rate_for,
    stt_sink,
)
from voxrelay.conversation.providers import (
    PCM16_16K,
    AudioChunk,
    AudioFormat,
    CancelToken,
    Message,
    Transcript,
)
from voxrelay.conversation.scripted_llm import Script, ScriptedLLM
from voxrelay.media import Resampler, ulaw_encode

SCRIPT = """
greeting = "Hello, how can I help?"
fallback = "Sorry, say again?"
goodbye = "Goodbye then!"

[[rule]]
keywords = ["open"]
answer = "We open at noon. We close at eleven in the evening, every day but Monday."
"""

MS_PER_CHAR = 10.0  # fake speech: 10 ms of audio per character of text


class FakeCall:
    """A `CallControl` that records what the agent asked for and keeps the audio clock."""

    def __init__(self) -> None:
        self.played: list[tuple[int, int, bool]] = []  # (bytes, rate, last)
        self.ulaw: list[tuple[int, bool]] = []  # play_ulaw: (bytes, last)
        self.end_after: list[tuple[float, int]] = []
        self.configured: dict[str, int | None] = {}
        self.records: list[Mapping[str, object]] = []
        self.clears = 0
        self.hung_up = asyncio.Event()
        self.sink: Callable[[bytes], None] | None = None
        self.audio_ms = 0.0
        self.heard_ms = 0.0
        self.play_event = asyncio.Event()
        self.live_token = -1
        self._first: Callable[[float], None] | None = None

    def play(self, pcm: bytes, rate: int, *, last: bool = True) -> None:
        self.played.append((len(pcm), rate, last))
        self.audio_ms += len(pcm) * 500 / rate
        if self._first is not None and pcm:
            notify, self._first = self._first, None
            notify(asyncio.get_running_loop().time())
        self.play_event.set()

    def play_ulaw(self, codes: bytes, *, last: bool = True) -> None:
        self.ulaw.append((len(codes), last))
        self.audio_ms += len(codes) / 8
        self.play_event.set()

    async def clear(self) -> float:
        self.clears += 1
        self.audio_ms = self.heard_ms
        return self.heard_ms

    async def hangup(self, reason: str = "agent hangup") -> None:
        self.hung_up.set()

    @property
    def playing(self) -> bool:
        return self.heard_ms < self.audio_ms

    @property
    def audio_end_ms(self) -> float:
        return self.audio_ms

    def configure_turns(
        self,
        *,
        end_ms: int | None = None,
        pause_ms: int | None = None,
        barge_in_ms: int | None = None,
    ) -> None:
        self.configured = {"end_ms": end_ms, "pause_ms": pause_ms, "barge_in_ms": barge_in_ms}

    def end_turn_after(self, silence_ms: float, token: int) -> bool:
        self.end_after.append((silence_ms, token))
        return token == self.live_token

    def set_audio_sink(self, sink: Callable[[bytes], None] | None) -> None:
        self.sink = sink

    def notify_first_frame(self, callback: Callable[[float], None]) -> None:
        self._first = callback

    def record_turn(self, record: Mapping[str, object]) -> None:
        self.records.append(record)


class FakeSTT:
    """Returns queued texts: one per `interim()` / non-reused `finalize()`."""

    def __init__(self, fmt: AudioFormat = PCM16_16K) -> None:
        self.fmt = fmt
        self.texts: list[str] = []
        self.audio = bytearray()
        self.finals: list[bool] = []  # reuse_interim per finalize
        self._q: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._last = ""

    @property
    def input_format(self) -> AudioFormat:
        return self.fmt

    async def start(self) -> None:
        pass

    def send_audio(self, pcm: bytes) -> None:
        self.audio += pcm

    async def interim(self) -> None:
        self._last = self.texts.pop(0)
        self._q.put_nowait(Transcript(self._last, False, 0.0, 100.0))

    async def finalize(self, *, reuse_interim: bool = False) -> None:
        self.finals.append(reuse_interim)
        text = self._last if reuse_interim else self.texts.pop(0)
        self._q.put_nowait(Transcript(text, True, 0.0, 100.0))

    async def events(self) -> AsyncIterator[Transcript]:
        while (t := await self._q.get()) is not None:
            yield t

    async def close(self) -> None:
        self._q.put_nowait(None)


class FakeTTS:
    """One chunk per clause, `MS_PER_CHAR` of 8 kHz PCM per character, cancellable."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.gate: asyncio.Event | None = None  # set: synthesis waits for it (a slow engine)

    @property
    def output_format(self) -> AudioFormat:
        return AudioFormat("pcm16", 8000)

    async def synthesize(
        self, text: str, *, cancel: CancelToken | None = None
    ) -> AsyncIterator[AudioChunk]:
        self.clauses.append(text)
        if self.gate is not None:
            await self.gate.wait()
        if cancel is not None and cancel.cancelled:
            return
        yield AudioChunk(b"\x00\x00" * int(len(text) * MS_PER_CHAR * 8), 8000)

    async def close(self) -> None:
        pass


class Harness:
    def __init__(self, **config: object) -> None:
        self.call = FakeCall()
        self.stt = FakeSTT()
        self.tts = FakeTTS()
        self.llm = ScriptedLLM(Script.loads(SCRIPT))
        cfg = ConversationConfig(**config)  # type: ignore[arg-type]
        self.agent = ConversationAgent(
            self.call, Engines(lambda: self.stt, self.llm, self.tts), cfg
        )
        self._token = 0

    async def send(self, *events: object) -> None:
        for ev in events:
            await self.agent.on_event(ev)  # type: ignore[arg-type]

    async def start(self) -> None:
        await self.send(CallStarted("MZ1", "CA1", "AC1", {}))
        await self.until_replied()

    async def until_replied(self) -> None:
        """Until the current reply task has finished (it plays into the fake call)."""
        turn = self.agent._turn
        assert turn is not None and turn.task is not None
        await asyncio.wait_for(asyncio.shield(turn.task), 5)

    def hear_all(self) -> MarkPlayed:
        self.call.heard_ms = self.call.audio_ms
        return MarkPlayed("m", self.call.heard_ms)

    async def utterance(
        self, interim: str, *, final: str | None = None, silence_ms: float = 250.0
    ) -> None:
        """The caller says something, pauses (speculative transcript), and the turn ends."""
        self._token += 1
        tok = self._token
        self.call.live_token = tok
        self.stt.texts.append(interim)
        if final is not None:
            self.stt.texts.append(final)
        await self.send(SpeechStarted(0.0))
        await self.send(SpeechPaused(tok, 1000.0, 160.0, asyncio.get_running_loop().time()))
        await self.wait_for(lambda: len(self.call.end_after) >= tok)
        token = -1 if final is not None else tok
        loop = asyncio.get_running_loop()
        heard = len(self.agent.transcripts)
        await self.send(SpeechEnded(b"", 16000, 0.0, 1000.0, 0.0, silence_ms, loop.time(), token))
        await self.wait_for(lambda: len(self.agent.transcripts) > heard)

    async def wait_for(self, cond: Callable[[], bool]) -> None:
        async def poll() -> None:
            while not cond():
                await asyncio.sleep(0)

        await asyncio.wait_for(poll(), 5)


def run(coro_fn: Callable[[Harness], object], **config: object) -> Harness:
    async def main() -> Harness:
        h = Harness(**config)
        await coro_fn(h)  # type: ignore[misc]
        await h.send(CallEnded("stop"))
        return h

    return asyncio.run(main())


def turns(h: Harness) -> list[tuple[str, str, bool]]:
    return [(m.role, m.content, m.interrupted) for m in h.agent.conversation.turns]


def test_greets_then_answers_a_question_from_the_speculative_transcript() -> None:
    async def body(h: Harness) -> None:
        await h.start()
        assert h.call.configured == {"end_ms": 1200, "pause_ms": 160, "barge_in_ms": 600}
        assert h.call.sink is not None  # caller audio streams to the recogniser
        await h.send(h.hear_all())
        await h.utterance("What time do you open?")
        await h.wait_for(lambda: len(h.agent.records) == 1)
        await h.until_replied()

    h = run(body)
    # A complete question: the turn may end after the short silence.
    assert h.call.end_after == [(250, 1)]
    assert h.stt.finals == [True]  # the pause's transcript became the final: no second decode
    assert turns(h) == [
        ("assistant", "Hello, how can I help?", False),
        ("user", "What time do you open?", False),
        (
            "assistant",
            "We open at noon. We close at eleven in the evening, every day but Monday.",
            False,
        ),
    ]
    # Clause by clause: the first sentence went to TTS on its own.
    assert h.tts.clauses[1:] == [
        "We open at noon.",
        "We close at eleven in the evening,",
        "every day but Monday.",
    ]
    assert h.call.played[-1] == (0, 8000, True)  # the reply ends with a flush
    rec = h.call.records[0]
    assert rec["user_text"] == "What time do you open?" and rec["speculative"] is True
    for key in ("turn_decided_ms", "stt_final_ms", "llm_first_token_ms", "tts_first_audio_ms"):
        assert isinstance(rec[key], float)
    assert isinstance(rec["first_frame_sent_ms"], float)


def test_mid_phrase_transcript_asks_for_the_long_silence() -> None:
    async def body(h: Harness) -> None:
        await h.start()
        await h.send(h.hear_all())
        h.call.live_token = 1
        h.stt.texts.append("I'd like to book a table for")
        await h.send(SpeechStarted(0.0))
        await h.send(SpeechPaused(1, 500.0, 160.0, 0.0))
        await h.wait_for(lambda: bool(h.call.end_after))

    h = run(body)
    assert h.call.end_after == [(1200, 1)]


def test_backchannel_while_speaking_neither_interrupts_nor_takes_a_turn() -> None:
    async def body(h: Harness) -> None:
        await h.start()  # the greeting is "playing": nothing heard yet
        await h.utterance("Mhm.")
        await h.wait_for(lambda: h.agent.transcripts == ["Mhm."])

    h = run(body)
    assert h.call.clears == 0
    assert turns(h) == [("assistant", "Hello, how can I help?", False)]
    assert h.agent.records == []


def test_a_real_word_over_the_agent_interrupts_and_truncates_the_context() -> None:
    async def body(h: Harness) -> None:
        await h.start()
        await h.send(h.hear_all())
        await h.utterance("When are you open?")
        await h.until_replied()
        # The caller has heard the first sentence and a bit: then says "stop".
        start = h.agent._turn.reply.start_ms  # type: ignore[union-attr]
        h.call.heard_ms = start + len("We open at noon. We close") * MS_PER_CHAR
        await h.utterance("Stop.")
        await h.wait_for(lambda: len(h.agent.records) == 2)
        await h.until_replied()

    h = run(body)
    assert h.call.clears == 1
    assert turns(h)[2] == ("assistant", "We open at noon. We close", True)
    assert turns(h)[3] == ("user", "Stop.", False)
    assert h.call.records[0]["interrupted"] is True


def test_sustained_barge_in_cancels_generation_and_keeps_what_was_heard() -> None:
    async def body(h: Harness) -> None:
        await h.start()
        await h.send(h.hear_all())
        await h.utterance("Are you open?")
        await h.wait_for(lambda: h.agent._turn is not None and h.agent._turn.audio_started)
        turn = h.agent._turn
        assert turn is not None and turn.reply is not None
        heard = turn.reply.start_ms + len("We open at") * MS_PER_CHAR
        await h.send(BargeIn(heard, h.call.audio_ms))
        assert turn.cancel.cancelled
        await h.until_replied()

    h = run(body)
    assert turns(h)[-1] == ("assistant", "We open at", True)


def test_caller_going_on_before_the_reply_is_heard_merges_the_turns() -> None:
    async def body(h: Harness) -> None:
        await h.start()
        await h.send(h.hear_all())
        h.tts.clauses.clear()
        # "Hi." ends the turn (it reads complete); the caller goes on before any reply audio.
        h.call.live_token = 1
        h.stt.texts.append("Hi.")
        await h.send(SpeechStarted(0.0), SpeechPaused(1, 400.0, 160.0, 0.0))
        await h.wait_for(lambda: bool(h.call.end_after))
        loop = asyncio.get_running_loop()
        await h.send(SpeechEnded(b"", 16000, 0.0, 650.0, 0.0, 250.0, loop.time(), 1))
        await h.send(SpeechStarted(900.0))  # before any reply audio: nothing heard
        await h.wait_for(lambda: h.agent.transcripts == ["Hi."])
        h.call.live_token = 2
        h.stt.texts.append("When do you open?")
        await h.send(SpeechPaused(2, 2000.0, 160.0, 0.0))
        await h.wait_for(lambda: len(h.call.end_after) == 2)
        await h.send(SpeechEnded(b"", 16000, 900.0, 2300.0, 0.0, 250.0, loop.time(), 2))
        await h.wait_for(lambda: len(h.agent.records) == 1)
        await h.until_replied()

    h = run(body)
    user = [t for t in turns(h) if t[0] == "user"]
    assert user == [("user", "Hi. When do you open?", False)]
    assert h.call.end_after[1] == (250, 2)
    assert [r.user_text for r in h.agent.records] == ["Hi. When do you open?"]


def test_silence_reprompts_then_says_goodbye_and_hangs_up() -> None:
    async def body(h: Harness) -> None:
        await h.start()
        h.call.play_event.clear()
        await h.send(h.hear_all())  # greeting heard: the silence clock starts
        await asyncio.wait_for(h.call.play_event.wait(), 5)
        await h.until_replied()
        h.call.play_event.clear()
        await h.send(h.hear_all())
        await asyncio.wait_for(h.call.play_event.wait(), 5)
        await h.until_replied()
        await h.send(h.hear_all())
        await asyncio.wait_for(h.call.hung_up.wait(), 5)

    h = run(body, reprompt_after_s=0.01, hangup_after_s=0.01, goodbye_text="Bye now.")
    assert [c for (r, c, _i) in turns(h) if r == "assistant"] == [
        "Hello, how can I help?",
        "Are you still there?",
        "Bye now.",
    ]


def test_goodbye_from_the_llm_hangs_up_once_it_has_been_heard() -> None:
    async def body(h: Harness) -> None:
        await h.start()
        await h.send(h.hear_all())
        await h.utterance("Thanks, bye.")
        await h.wait_for(lambda: len(h.agent.records) == 1)
        await h.until_replied()
        assert not h.call.hung_up.is_set()  # not before the caller heard it
        await h.send(h.hear_all())
        await asyncio.wait_for(h.call.hung_up.wait(), 5)

    h = run(body)
    assert turns(h)[-1] == ("assistant", "Goodbye then!", False)


@pytest.mark.parametrize(
    ("text", "words"),
    [("Mhm.", 0), ("Yeah, okay.", 0), ("Uh-huh", 0), ("Stop.", 1), ("Wait, what?", 2), ("", 0)],
)
def test_backchannel_words(text: str, words: int) -> None:
    cfg = ConversationConfig()
    assert cfg.interrupting_words(text) == words
    assert cfg.is_backchannel(text) == (words == 0)


def test_messages_sent_to_the_llm_carry_the_system_prompt_and_context() -> None:
    seen: list[Sequence[Message]] = []

    async def body(h: Harness) -> None:
        real = h.llm.stream

        def spy(
            messages: Sequence[Message], *, cancel: CancelToken | None = None
        ) -> AsyncIterator[str]:
            seen.append(list(messages))
            return real(messages, cancel=cancel)

        h.agent.llm = type("Spy", (), {"stream": staticmethod(spy)})()  # type: ignore[assignment]
        await h.start()
        await h.send(h.hear_all())
        await h.utterance("Are you open?")
        await h.wait_for(lambda: len(h.agent.records) == 1)
        await h.until_replied()

    run(body, system_prompt="Be brief.")
    assert [m.role for m in seen[0]] == ["system"]
    assert [(m.role, m.content) for m in seen[1]] == [
        ("system", "Be brief."),
        ("assistant", "Hello, how can I help?"),
        ("user", "Are you open?"),
    ]


def test_reply_cancelled_when_the_caller_goes_on_before_hearing_it() -> None:
    async def body(h: Harness) -> None:
        await h.start()
        await h.send(h.hear_all())
        h.tts.gate = asyncio.Event()
        await h.utterance("Hi.")
        turn = h.agent._turn
        assert turn is not None and turn.user_text == "Hi." and not turn.audio_started
        await h.send(SpeechStarted(900.0))
        assert turn.cancel.cancelled and h.agent.records == []
        h.tts.gate.set()
        await h.until_replied()
        played = len(h.call.played)
        await h.utterance("When do you open?")
        await h.wait_for(lambda: len(h.agent.records) == 1)
        await h.until_replied()
        assert len(h.call.played) > played

    h = run(body)
    assert [t for t in turns(h) if t[0] == "user"] == [("user", "Hi. When do you open?", False)]
    assert turns(h)[-1][1].startswith("We open at noon.")


def test_mulaw_8k_voice_is_played_without_transcoding() -> None:
    class UlawTTS(FakeTTS):
        @property
        def output_format(self) -> AudioFormat:
            return AudioFormat("ulaw", 8000)

        async def synthesize(
            self, text: str, *, cancel: CancelToken | None = None
        ) -> AsyncIterator[AudioChunk]:
            yield AudioChunk(b"\x7f" * int(len(text) * MS_PER_CHAR * 8), 8000, "ulaw")

    async def body(h: Harness) -> None:
        h.agent.tts = UlawTTS()
        await h.start()

    h = run(body)
    greeting = "Hello, how can I help?"
    assert h.call.played == []  # nothing went through the PCM path
    assert h.call.ulaw == [(int(len(greeting) * MS_PER_CHAR * 8), False), (0, True)]
    assert turns(h) == [("assistant", greeting, False)]


@pytest.mark.parametrize(
    ("fmt", "nbytes"),
    [(PCM16_16K, 640), (AudioFormat("pcm16", 8000), 320), (AudioFormat("ulaw", 8000), 160)],
)
def test_caller_audio_reaches_the_recogniser_in_its_own_format(
    fmt: AudioFormat, nbytes: int
) -> None:
    stt = FakeSTT(fmt)
    sink = stt_sink(stt)
    frame = (np.sin(np.arange(320) / 5) * 8000).astype("<i2").tobytes()  # 20 ms at 16 kHz
    for _ in range(10):
        sink(frame)
    assert len(stt.audio) == pytest.approx(10 * nbytes, abs=nbytes)  # resampler delay only
    # The content, not just the amount: what one resampler (chunking-invariant) makes of the
    # whole, then the recogniser's encoding; 16 kHz PCM passes through untouched.
    want = frame * 10
    if fmt.sample_rate != 16000:
        want = Resampler(16000, fmt.sample_rate).process(want)
    if fmt.encoding == "ulaw":
        want = ulaw_encode(want)
    assert bytes(stt.audio) == want


class Flaky:
    """Wraps a provider method to raise on its first `n` calls: a dead or flaky engine."""

    def __init__(self, fn: Callable[..., object], n: int = 1) -> None:
        self.fn, self.left = fn, n

    def __call__(self, *args: object, **kwargs: object) -> object:
        if self.left > 0:
            self.left -= 1
            raise ConnectionError("provider unreachable")
        return self.fn(*args, **kwargs)


def test_dead_llm_gets_an_apology_and_the_call_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def body(h: Harness) -> None:
        await h.start()
        await h.send(h.hear_all())
        real = h.llm.stream

        async def broken(
            messages: Sequence[Message], *, cancel: CancelToken | None = None
        ) -> AsyncIterator[str]:
            yield "We"
            raise ConnectionError("LLM connection reset")

        h.agent.llm = type("Broken", (), {"stream": staticmethod(broken)})()  # type: ignore[assignment]
        await h.utterance("When are you open?")
        await h.until_replied()
        await h.send(h.hear_all())
        h.agent.llm = type("Fixed", (), {"stream": staticmethod(real)})()  # type: ignore[assignment]
        await h.utterance("When are you open?")
        await h.until_replied()

    h = run(body)
    said = [c for (r, c, _i) in turns(h) if r == "assistant"]
    assert said[1] == ConversationConfig().error_text
    assert said[2].startswith("We open at noon.")
    assert sum("llm provider failed" in r.message for r in caplog.records) == 1


def test_failing_stt_is_logged_once_and_answered(caplog: pytest.LogCaptureFixture) -> None:
    async def body(h: Harness) -> None:
        await h.start()
        await h.send(h.hear_all())
        h.stt.finalize = Flaky(h.stt.finalize, n=2)  # type: ignore[method-assign]
        for _ in range(2):
            h.stt.texts.append("lost")
            loop = asyncio.get_running_loop()
            await h.send(SpeechStarted(0.0))
            await h.send(SpeechEnded(b"", 16000, 0.0, 900.0, 0.0, 1200.0, loop.time(), -1))
            await h.wait_for(
                lambda: (
                    h.agent._turn is not None
                    and h.agent._turn.user_text == ""
                    and h.agent._turn.task is not None
                    and h.agent._turn.task.done()
                    and h.call.audio_ms > h.call.heard_ms
                )
            )
            await h.send(h.hear_all())
        h.stt.texts.clear()
        await h.utterance("When are you open?")
        await h.until_replied()

    h = run(body)
    said = [c for (r, c, _i) in turns(h) if r == "assistant"]
    assert said[1:3] == [ConversationConfig().error_text] * 2
    assert said[3].startswith("We open at noon.")
    assert sum("stt provider failed" in r.message for r in caplog.records) == 1


def test_failing_tts_stops_the_reply_without_killing_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(h: Harness) -> None:
        await h.start()
        await h.send(h.hear_all())
        h.tts.synthesize = Flaky(h.tts.synthesize, n=1)  # type: ignore[method-assign]
        await h.utterance("When are you open?")
        await h.until_replied()
        await h.utterance("When are you open?")
        await h.until_replied()

    h = run(body)
    said = [c for (r, c, _i) in turns(h) if r == "assistant"]
    assert said[-1].startswith("We open at noon.")
    assert sum("tts provider failed" in r.message for r in caplog.records) == 1


def test_one_log_line_per_turn_without_transcripts(caplog: pytest.LogCaptureFixture) -> None:
    async def body(h: Harness) -> None:
        await h.start()
        await h.send(h.hear_all())
        for _ in range(2):
            await h.utterance("When are you open?")
            await h.until_replied()
            await h.send(h.hear_all())

    with caplog.at_level("INFO", logger="voxrelay.conversation"):
        run(body)
    lines = [r.message for r in caplog.records if r.message.startswith("turn {")]
    assert len(lines) == 2
    records = [json.loads(line[5:]) for line in lines]
    assert [r["turn"] for r in records] == [1, 2]
    assert all("user_text" not in r and "reply_text" not in r for r in records)
    assert all(isinstance(r["first_frame_sent_ms"], float) for r in records)
    assert "When are you open" not in caplog.text


def test_phone_rate_recognisers_skip_resampling() -> None:
    pcm8 = (np.sin(np.arange(160) / 3) * 8000).astype("<i2").tobytes()  # 20 ms at 8 kHz
    ulaw_stt = FakeSTT(AudioFormat("ulaw", 8000))
    assert input_rate_for(ulaw_stt) == 8000
    stt_sink(ulaw_stt, 8000)(pcm8)
    assert bytes(ulaw_stt.audio) == ulaw_encode(pcm8)  # encoded, nothing else
    pcm_stt = FakeSTT(AudioFormat("pcm16", 8000))
    stt_sink(pcm_stt, 8000)(pcm8)
    assert bytes(pcm_stt.audio) == pcm8
    assert input_rate_for(FakeSTT()) == 16000
