"""The conversation agent: caller speech -> STT -> turn decision -> LLM -> TTS -> the call.

How a turn flows (all on the call's agent task, never on the media path):

1. The session streams the open utterance to the STT engine (`set_audio_sink`).
2. At a short pause (`SpeechPaused`, ~160 ms of silence) the engine asks the STT for a
   speculative transcript. When it comes back, `TurnEndPolicy` says how much silence ends the
   turn for that text (250 ms for a finished sentence, up to 1.2 s mid-phrase) and the engine
   tells the session (`end_turn_after`); the session's detector ends the utterance on the
   audio clock, at once if the silence is already long enough. Words after the pause void it.
3. `SpeechEnded`: if nothing was said after the speculative transcript, it becomes the final
   without a second decode (Whisper has no partials; this is where most of its latency hides).
4. The reply streams: LLM pieces -> `ClauseSplitter` -> TTS clause by clause -> `play`
   (paced by the session). The user turn and the reply enter the context when the first
   audio plays, so a reply cancelled before the caller heard anything leaves no trace and
   its question is merged with what the caller says next.
5. Barge-in: sustained speech (`interrupt_min_ms`) makes the session clear the audio and send
   `BargeIn`; a shorter utterance over the agent's audio interrupts only if it has words other
   than backchannels. Either way the LLM and TTS are cancelled through one `CancelToken` and
   the context keeps only what the caller heard, marked interrupted.
6. Silence after the agent finished: a re-prompt, then a goodbye and a hang-up.
7. A failing engine is logged once per kind per call and the caller hears `error_text`
   rather than silence: an LLM or TTS that fails a reply, an STT that cannot start, whose
   audio input or transcript stream dies (then every later utterance gets the apology), or
   that gives no final transcript within `final_timeout_s` of the end of an utterance. A
   final that comes after its turn gave up is told from the next turn's own by the audio it
   covers (`Transcript.end_ms` against what was sent before each `finalize()`), so it never
   becomes a later turn's text, and a final that never comes costs only its own turn (at
   most one more with an engine whose times mean nothing).
   An apology is not started over a reply that is still playing (one reply at a time).

Engines are shared by all calls (loaded once by `ConversationFactory.prepare`, off the event
loop); each call gets its own STT stream and context.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from voxrelay.agent import (
    AgentEvent,
    BargeIn,
    CallControl,
    CallEnded,
    CallStarted,
    MarkPlayed,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
)
from voxrelay.conversation.clauses import stream_clauses
from voxrelay.conversation.context import Conversation, Reply
from voxrelay.conversation.endpoint import TurnEndPolicy
from voxrelay.conversation.latency import TurnLatency
from voxrelay.conversation.providers import (
    AudioChunk,
    CancelToken,
    ChatLLM,
    Message,
    StreamingSTT,
    StreamingTTS,
    Transcript,
    check_provider,
    make_llm,
    make_stt,
    make_tts,
)
from voxrelay.media import Resampler, ulaw_decode, ulaw_encode
from voxrelay.settings import Settings

__all__ = [
    "ConversationAgent",
    "ConversationConfig",
    "ConversationFactory",
    "Engines",
    "input_rate_for",
    "stt_sink",
]

log = logging.getLogger("voxrelay.conversation")

_HANGUP_GRACE_S: Final = 2.0
_FINAL_TIMEOUT_S: Final = 10.0
"""Longest wait for an utterance's final transcript once it ended (finalize included). A
local tiny.en decode takes ~0.3-1 s, a cloud final well under a second; ten seconds leaves
room for a recogniser queue shared by many calls, and past it the caller is told we have
trouble rather than left in silence."""
_POSITION_SLACK_MS: Final = 20.0
"""Rounding room (a frame) when a final's `end_ms` is compared with the audio sent."""
_WORD: Final = re.compile(r"[a-z0-9']+(?:-[a-z0-9']+)*")


def parse_words(csv: str) -> frozenset[str]:
    """A comma-separated setting ("mhm, Yeah,okay") as a set of lower-case words."""
    return frozenset(w.strip().lower() for w in csv.split(",") if w.strip())


# The `Settings` default, parsed once rather than per config made without it.
_BACKCHANNELS: Final = parse_words(Settings().backchannels)


@dataclass(frozen=True, slots=True)
class ConversationConfig:
    """Per-call behaviour; see the matching `Settings` fields for what each one means."""

    policy: TurnEndPolicy = field(default_factory=TurnEndPolicy)
    pause_ms: int = 160
    interrupt_min_ms: int = 600
    interrupt_min_words: int = 1
    backchannels: frozenset[str] = _BACKCHANNELS
    system_prompt: str = ""
    greeting: str | None = None
    reprompt_after_s: float = 8.0
    hangup_after_s: float = 10.0
    reprompt_text: str = "Are you still there?"
    goodbye_text: str = "Goodbye!"
    error_text: str = "Sorry, I'm having trouble answering right now. Please try again."
    record_texts: bool = False
    """Put transcripts and replies in the per-turn log lines (personal data: off by default)."""
    final_timeout_s: float = _FINAL_TIMEOUT_S
    """How long a turn waits for its final transcript before the caller gets `error_text`."""

    @classmethod
    def from_settings(cls, s: Settings) -> ConversationConfig:
        return cls(
            policy=TurnEndPolicy(
                complete_silence_ms=s.turn_complete_ms,
                incomplete_silence_ms=s.turn_incomplete_ms,
                default_silence_ms=s.turn_default_ms,
            ),
            pause_ms=s.turn_pause_ms,
            interrupt_min_ms=s.interrupt_min_ms,
            interrupt_min_words=s.interrupt_min_words,
            backchannels=parse_words(s.backchannels),
            system_prompt=s.system_prompt,
            greeting=s.greeting,
            reprompt_after_s=s.reprompt_after_s,
            hangup_after_s=s.hangup_after_s,
            reprompt_text=s.reprompt_text,
            goodbye_text=s.goodbye_text,
            record_texts=s.turn_records_texts,
        )

    def is_backchannel(self, text: str) -> bool:
        """Only backchannel words (or nothing): "Mhm.", "Yeah, okay." do not take the turn."""
        return self.interrupting_words(text) < 1

    def interrupting_words(self, text: str) -> int:
        return sum(1 for w in _WORD.findall(text.lower()) if w not in self.backchannels)


@dataclass(slots=True)
class Engines:
    """The providers shared by all calls of a process."""

    stt_factory: Callable[[], StreamingSTT]
    llm: ChatLLM
    tts: StreamingTTS


class ConversationFactory:
    """`AgentFactory` for `--agent conversation`: loads the engines once, then one agent per call.

    `prepare()` must run before the first call (the server awaits it before listening): model
    loading takes seconds of blocking I/O and CPU, so it runs in a thread, reporting progress.
    """

    def __init__(self, settings: Settings) -> None:
        for kind, name in (("stt", settings.stt), ("llm", settings.llm), ("tts", settings.tts)):
            check_provider(kind, name)  # type: ignore[arg-type]
        self.settings = settings
        self.config = ConversationConfig.from_settings(settings)
        self.engines: Engines | None = None
        self.on_agent: Callable[[ConversationAgent], None] | None = None
        """Told of each call's agent as it is made: for demos, benches and tests that read
        the conversation or its latency records from outside."""

    async def prepare(self, progress: Callable[[str], None] | None = None) -> Engines:
        if self.engines is not None:
            return self.engines
        s = self.settings
        say = progress or (lambda _msg: None)
        loop = asyncio.get_running_loop()
        say(f"loading speech recogniser ({s.stt})")
        first_stt = await loop.run_in_executor(None, make_stt, s.stt)
        warm = getattr(first_stt, "warmup", None)
        if warm is not None:
            say("warming up the recogniser")
            await warm()
        say(f"loading voice ({s.tts})")
        # Every call is on a phone leg (mu-law 8 kHz): engines that can speak it do, in their
        # own threads, so no TTS audio is resampled or encoded on the event loop.
        tts = await loop.run_in_executor(None, lambda: make_tts(s.tts, phone=True))
        warm_tts = getattr(tts, "warmup", None)
        if warm_tts is not None:
            await warm_tts()
        say(f"loading language model ({s.llm})")
        llm_opts: dict[str, Any] = {}
        if s.llm == "scripted" and s.llm_script is not None:
            llm_opts["script"] = s.llm_script
        llm = await loop.run_in_executor(None, lambda: make_llm(s.llm, **llm_opts))
        spare: list[StreamingSTT] = [first_stt]

        def stt_factory() -> StreamingSTT:
            # Engines load their model once per process; a per-call instance is cheap.
            return spare.pop() if spare else make_stt(s.stt)

        self.engines = Engines(stt_factory, llm, tts)
        say("ready")
        return self.engines

    def __call__(self, call: CallControl) -> ConversationAgent:
        if self.engines is None:
            raise RuntimeError("ConversationFactory.prepare() must run before the first call")
        agent = ConversationAgent(call, self.engines, self.config)
        if self.on_agent is not None:
            self.on_agent(agent)
        return agent


async def _text_pieces(text: str) -> AsyncIterator[str]:
    yield text


class _CallGone(Exception):
    """The session would not take more audio: the call ended under the reply."""


class _SttUnavailable(Exception):
    """The recogniser failed earlier on this call (start, audio or transcript stream)."""


class _Turn:
    """One reply in flight and the bookkeeping for its latency record."""

    __slots__ = (
        "audio_started",
        "cancel",
        "record",
        "reply",
        "t0",
        "task",
        "user_text",
    )

    def __init__(self, user_text: str, record: TurnLatency | None, t0: float) -> None:
        self.user_text = user_text
        self.record = record
        self.t0 = t0  # loop time of the end of the caller's speech
        self.cancel = CancelToken()
        self.reply: Reply | None = None
        self.audio_started = False
        self.task: asyncio.Task[None] | None = None

    def ms(self, t: float) -> float:
        return (t - self.t0) * 1000


class ConversationAgent:
    """One call's conversation; see the module docstring for the flow."""

    def __init__(self, call: CallControl, engines: Engines, config: ConversationConfig) -> None:
        self.call = call
        self.config = config
        self.llm = engines.llm
        self.tts = engines.tts
        self.stt = engines.stt_factory()
        self.conversation = Conversation(config.system_prompt)
        self.records: list[TurnLatency] = []
        self.transcripts: list[str] = []
        """Every final transcript of the call, in order (backchannels included)."""
        self._loop = asyncio.get_running_loop()
        self._turn: _Turn | None = None
        self._pending_user = ""
        self._interim: tuple[int, Transcript, float] | None = None  # token, text, ready at
        self._interim_running = False
        self._interim_wanted = -1
        self._interim_tokens: list[int] = []
        # The waiting turn's final transcript; an exception when the recogniser died under it.
        self._finals: asyncio.Queue[Transcript | BaseException] = asyncio.Queue()
        self._sent_ms = 0.0  # caller audio handed to the recogniser: its transcripts' clock
        self._asked_ms = 0.0  # ... as of the latest finalize(): where the next utterance begins
        self._want_final = False  # a turn asked for its final and has not got it yet
        # Turns that gave up while their final may still come, and the audio those finals
        # cover (from the start of the first such utterance to the end of the last).
        self._owed = 0
        self._owed_span = (0.0, 0.0)
        self._took_owed = False  # the waiting turn saw a final dropped as an owed one
        self._stt_error: BaseException | None = None  # set once the recogniser is gone
        self._ended: asyncio.Queue[SpeechEnded] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._caller_speaking = False
        self._idle_handle: asyncio.TimerHandle | None = None
        self._idle_stage = 0
        self._hangup_at_ms: float | None = None
        self._closing = False
        self._failed: set[str] = set()
        self._logged: set[int] = set()
        self.observer: Callable[[str, str], None] | None = None
        """Told ("caller", text) for each final transcript and ("agent", text) for each reply
        as it finishes ("agent-interrupted" with the heard part): for live displays."""

    @property
    def input_rate(self) -> int:
        """Read by the session when the call is set up: the rate of the caller audio we get."""
        return input_rate_for(self.stt)

    # -- events -------------------------------------------------------------------------------

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, SpeechPaused):
            self._on_pause(event)
        elif isinstance(event, SpeechEnded):
            self._caller_speaking = False
            self._ended.put_nowait(event)
        elif isinstance(event, SpeechStarted):
            self._on_speech_started()
        elif isinstance(event, BargeIn):
            self._on_barge_in(event)
        elif isinstance(event, MarkPlayed):
            self._on_mark(event)
        elif isinstance(event, CallStarted):
            await self._on_call_started()
        elif isinstance(event, CallEnded):
            await self._on_call_ended()

    async def _on_call_started(self) -> None:
        cfg = self.config
        self.call.configure_turns(
            end_ms=cfg.policy.incomplete_silence_ms,
            pause_ms=cfg.pause_ms,
            barge_in_ms=cfg.interrupt_min_ms,
        )
        try:
            await self.stt.start()
        except Exception as e:  # a recogniser that cannot connect: say so, keep the call
            self._stt_dead(e)
        else:
            self.call.set_audio_sink(self._counting_sink())
            self._spawn(self._read_transcripts())
        self._spawn(self._turn_worker())
        # Without a recogniser a greeting would invite speech nobody hears: apologise instead
        # (every utterance gets the same answer; the caller decides when to hang up).
        first = cfg.greeting if self._stt_error is None else cfg.error_text
        self._start_reply("", None, self._loop.time(), fixed=first)

    def _counting_sink(self) -> Callable[[bytes], None]:
        """`stt_sink`, keeping count of the audio sent (the clock of `Transcript` times)."""
        send = stt_sink(self.stt, self.input_rate, on_error=self._stt_dead)
        ms_per_byte = 500 / self.input_rate  # PCM16 at the session's rate

        def sink(pcm: bytes) -> None:
            self._sent_ms += len(pcm) * ms_per_byte
            send(pcm)

        return sink

    async def _on_call_ended(self) -> None:
        self._closing = True
        self.call.set_audio_sink(None)
        self._cancel_idle()
        if self._turn is not None:
            self._turn.cancel.cancel("call ended")
        if self.records:
            self._log_record(self.records[-1])  # the earlier ones went as each next began
        for rec in self.records:
            self.call.record_turn(rec.as_dict())
        try:
            await self.stt.close()
        except Exception as e:
            self._provider_failed("stt", e)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("conversation task failed", exc_info=task.exception())

    # -- caller speech ------------------------------------------------------------------------

    def _on_speech_started(self) -> None:
        self._caller_speaking = True
        self._cancel_idle()
        self._idle_stage = 0
        turn = self._turn
        if turn is not None and not turn.audio_started and turn.record is not None:
            # The caller went on before hearing a word of the reply: they were not done.
            # Drop the reply and answer the whole thing once they finish.
            turn.cancel.cancel("caller continued")
            self._pending_user = turn.user_text
            if turn.record in self.records:
                self.records.remove(turn.record)

    def _on_pause(self, ev: SpeechPaused) -> None:
        if self._stt_error is not None:
            return  # no recogniser: the turn ends on the silence cap
        self._interim_wanted = ev.token
        if not self._interim_running:
            self._run_interim(ev.token)

    def _run_interim(self, token: int) -> None:
        self._interim_running = True
        self._interim_tokens.append(token)
        self._spawn(self._interim_job())

    async def _interim_job(self) -> None:
        try:
            await self.stt.interim()
        except Exception as e:
            # No speculative text this time: the turn ends on the silence cap instead.
            self._interim_running = False
            if self._interim_tokens:
                self._interim_tokens.pop()
            self._provider_failed("stt", e)

    def _on_interim(self, t: Transcript) -> None:
        token = self._interim_tokens.pop(0) if self._interim_tokens else -1
        self._interim_running = False
        now = self._loop.time()
        self._interim = (token, t, now)
        text = _join(self._pending_user, t.text)
        needed = self.config.policy.silence_needed_ms(text)
        live = self.call.end_turn_after(needed, token)
        log.debug(
            "interim %d %r -> needs %d ms of silence (%s)",
            token,
            t.text,
            needed,
            "applied" if live else "stale",
        )
        if self._interim_wanted > token and self._caller_speaking:
            self._run_interim(self._interim_wanted)  # newer pause: transcribe again

    async def _read_transcripts(self) -> None:
        events = aiter(self.stt.events())
        while True:
            try:
                t = await anext(events)
            except StopAsyncIteration:
                if not self._closing:  # it ends after close(), not before
                    self._stt_dead(EOFError("the transcript stream ended while the call went on"))
                return
            except Exception as e:
                if not self._closing:
                    self._stt_dead(e)
                return
            if not t.is_final:
                self._on_interim(t)
            else:
                self._on_final(t)

    def _on_final(self, t: Transcript) -> None:
        """Route a final transcript to the turn waiting for it, or drop it.

        Finals come in order, one per `finalize()`. One a turn gave up on may still come:
        before the next turn asks for its own, any final is that late one (or one nobody
        asked for); while the next turn waits, a final is the late one only if it covers the
        audio of the turns that gave up. Engines whose times mean nothing fall back to the
        order alone, which can cost one more turn but never shifts every later turn by one.
        """
        if self._owed and (not self._want_final or self._is_owed(t)):
            # That turn got an apology; its text must not become a later turn's.
            self._owed -= 1
            self._took_owed = self._want_final
            log.debug("dropped a final transcript that came after its turn gave up")
        elif not self._want_final:
            log.debug("dropped a final transcript that no turn asked for")
        else:
            self._want_final = False
            self._owed = 0  # finals come in order: any still owed before this one are lost
            self._finals.put_nowait(t)

    def _is_owed(self, t: Transcript) -> bool:
        start, end = self._owed_span
        return start - _POSITION_SLACK_MS < t.end_ms <= end + _POSITION_SLACK_MS

    def _gave_up(self, start_ms: float, end_ms: float) -> None:
        """A turn stopped waiting for the final of the audio `start_ms`..`end_ms`."""
        own = 0
        while not self._finals.empty():  # queued in the very step the deadline fired
            own += isinstance(self._finals.get_nowait(), Transcript)
        if own or self._took_owed:
            # Its final did come (too late), or the one dropped as an earlier turn's while
            # it waited was its own: either way, nothing more is owed for it.
            return
        self._owed_span = (self._owed_span[0] if self._owed else start_ms, end_ms)
        self._owed += 1

    def _stt_dead(self, exc: BaseException) -> None:
        """The recogniser is gone for this call (its start, audio input or transcript stream
        failed): logged once, even after a passing STT failure was; a turn waiting for its
        final and every later one get `error_text` instead of silence, and caller audio is
        no longer forwarded."""
        if self._stt_error is None:
            self._stt_error = exc
            if "stt" in self._failed:  # an interim failure or a timeout was logged before
                log.error(
                    "stt provider failed (%s: %s); the recogniser is gone for this call",
                    type(exc).__name__,
                    exc,
                )
            else:
                self._provider_failed("stt", exc)
            self._finals.put_nowait(exc)  # wakes a turn waiting for its final
            if not self._closing:
                # Not from inside the sink's own call on the media path: next loop pass.
                self._loop.call_soon(self._drop_sink)

    def _drop_sink(self) -> None:
        if not self._closing:
            self.call.set_audio_sink(None)

    def _observe(self, who: str, text: str) -> None:
        if self.observer is not None:
            try:
                self.observer(who, text)
            except Exception:
                log.exception("conversation observer failed")

    def _provider_failed(self, kind: str, exc: BaseException) -> None:
        """A dead or failing engine: logged once per kind per call; the call goes on."""
        if kind not in self._failed:
            self._failed.add(kind)
            log.error(
                "%s provider failed (%s: %s); further %s failures on this call are not logged",
                kind,
                type(exc).__name__,
                exc,
                kind,
            )

    async def _turn_worker(self) -> None:
        """Utterances in order: final transcript, then respond, ignore, or interrupt."""
        while True:
            ev = await self._ended.get()
            try:
                await self._on_utterance(ev)
            except Exception as e:  # the STT failed: say so, keep the call
                self._provider_failed("stt", e)
                if self._closing:
                    continue
                if self._reply_busy():
                    # As a backchannel: unheard words do not take the turn from a reply
                    # (with a dead recogniser, a cough during the apology would be another).
                    log.debug("no transcript for an utterance over a reply: not answered")
                else:
                    self._start_reply("", None, self._loop.time(), fixed=self.config.error_text)

    def _reply_busy(self) -> bool:
        """A reply is being made or is still playing (and nobody cancelled it)."""
        turn = self._turn
        if turn is None or turn.cancel.cancelled:
            return False
        if turn.task is not None and not turn.task.done():
            return True
        return turn.audio_started and self.call.playing

    async def _on_utterance(self, ev: SpeechEnded) -> None:
        t0 = ev.at - ev.silence_ms / 1000
        interim = self._interim
        token = ev.pause_token
        # Nothing was said after the speculative transcript (done or still running) of
        # the pause that ended the turn: it is the final.
        reuse = token >= 0 and (
            (interim is not None and interim[0] == token) or token in self._interim_tokens
        )
        if interim is not None and interim[0] != token:
            interim = None
        self._interim = None
        if self._stt_error is not None:
            raise _SttUnavailable("the recogniser failed earlier on this call")
        finalize = self.stt.finalize
        t_dec = self._loop.time()
        timeout = self.config.final_timeout_s
        while not self._finals.empty():  # nothing queued before this turn asked is its own
            self._finals.get_nowait()
        # The audio this utterance's final covers, on the recogniser's clock.
        start_ms, end_ms = self._asked_ms, self._sent_ms
        self._asked_ms = end_ms
        self._want_final = True
        self._took_owed = False
        try:
            async with asyncio.timeout(timeout) as deadline:
                await finalize(reuse_interim=reuse)
                final = await self._finals.get()
        except TimeoutError:
            if not deadline.expired():
                raise  # the recogniser's own error
            # Owed even if finalize itself was cut short: the engine may still emit it.
            self._gave_up(start_ms, end_ms)
            raise TimeoutError(
                f"no final transcript {timeout:g} s after the end of the utterance"
            ) from None
        finally:
            self._want_final = False
        if isinstance(final, BaseException):
            raise _SttUnavailable("the recogniser failed while transcribing") from final
        t_final = self._loop.time()
        log.debug(
            "turn ended after %.0f ms of silence (pause %d, reuse %s): %r in %.0f ms",
            ev.silence_ms,
            token,
            reuse,
            final.text,
            (t_final - t_dec) * 1000,
        )
        self.transcripts.append(final.text)
        self._observe("caller", final.text)
        playing = self._turn is not None and self._turn.audio_started and self.call.playing
        if playing and self.config.interrupting_words(final.text) < max(
            1, self.config.interrupt_min_words
        ):
            log.debug("backchannel %r while speaking: not a turn", final.text)
            return
        text = _join(self._pending_user, final.text)
        if not text:
            return  # noise, a cough: nothing to answer
        if self._caller_speaking and not playing:
            # They went on while we transcribed: answer it all once they finish.
            self._pending_user = text
            return
        cur = self._turn
        if playing or (cur is not None and cur.task is not None and not cur.task.done()):
            await self._interrupt_current()
        self._pending_user = ""
        if self.records:
            self._log_record(self.records[-1])
        rec = TurnLatency(turn=len(self.records) + 1, user_text=text)
        rec.speculative = reuse
        silence = ev.silence_ms
        needed = self.config.policy.silence_needed_ms(text)
        rec.turn_wait_ms = min(silence, float(needed))
        rec.turn_decided_ms = silence
        if reuse and interim is not None and interim[2] <= t_dec:
            rec.stt_final_ms = (interim[2] - t0) * 1000
            rec.stt_compute_ms = max(0.0, silence - needed)
        else:
            rec.stt_final_ms = (t_final - t0) * 1000
            rec.stt_compute_ms = max(0.0, silence - needed) + (t_final - t_dec) * 1000
        self.records.append(rec)
        self._start_reply(text, rec, t0)

    # -- replies ------------------------------------------------------------------------------

    def _start_reply(
        self, user_text: str, record: TurnLatency | None, t0: float, *, fixed: str | None = None
    ) -> None:
        turn = _Turn(user_text, record, t0)
        self._turn = turn
        turn.task = self._spawn(self._speak(turn, fixed))

    async def _interrupt_current(self) -> None:
        turn = self._turn
        if turn is None:
            return
        turn.cancel.cancel("interrupted")
        if turn.audio_started:
            heard = await self.call.clear()
            self._interrupted(turn, heard)

    def _on_barge_in(self, ev: BargeIn) -> None:
        turn = self._turn
        if turn is None or turn.cancel.cancelled:
            return
        turn.cancel.cancel("barge-in")
        self._interrupted(turn, ev.heard_ms)

    def _interrupted(self, turn: _Turn, heard_ms: float) -> None:
        if turn.reply is not None:
            msg = turn.reply.interrupt(heard_ms)
            self._observe("agent-interrupted", msg.content if msg is not None else "")
            if turn.record is not None:
                turn.record.interrupted = True
                turn.record.reply_text = msg.content if msg is not None else ""
            kept = msg.content if msg is not None else ""
            log.info(
                "caller interrupted the reply at %.0f ms; the context keeps %d of its %d words",
                heard_ms - turn.reply.start_ms,
                len(kept.split()),
                len(turn.reply.text.split()),
            )

    async def _speak(self, turn: _Turn, fixed: str | None) -> None:
        """Stream one reply: LLM (or fixed text) -> clauses -> TTS -> the call."""
        cancel = turn.cancel
        rec = turn.record
        loop = self._loop
        messages = self.conversation.messages()
        if turn.user_text:
            messages.append(Message("user", turn.user_text))
        pieces = (
            _text_pieces(fixed) if fixed is not None else self.llm.stream(messages, cancel=cancel)
        )
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        t_request = loop.time()

        async def timed() -> AsyncIterator[str]:
            """The LLM's pieces, noting when the first one came."""
            async for piece in pieces:
                if rec is not None and rec.llm_first_token_ms is None:
                    rec.llm_first_token_ms = turn.ms(loop.time())
                yield piece

        async def produce() -> None:
            first_clause = True
            try:
                async for c in stream_clauses(timed(), cancel=cancel):
                    if first_clause and rec is not None:
                        rec.first_clause_ms = turn.ms(loop.time())
                        rec.llm_compute_ms = (loop.time() - t_request) * 1000
                    first_clause = False
                    clauses.put_nowait(c)
            except Exception as e:  # a dead LLM: apologise rather than leave silence
                llm_failed.append(e)
                self._provider_failed("llm", e)
            finally:
                clauses.put_nowait(None)

        llm_failed: list[BaseException] = []
        producer = self._spawn(produce())
        rate = self.tts.output_format.sample_rate
        ulaw = False

        async def say(clause: str) -> bool:
            """Synthesise and queue one clause; False when the TTS failed."""
            nonlocal rate, ulaw
            t_clause = loop.time()
            first_chunk = True
            try:
                async for chunk in self.tts.synthesize(clause, cancel=cancel):
                    if cancel.cancelled or self._closing:
                        break
                    if not turn.audio_started:
                        self._begin_audio(turn, t_clause)
                    assert turn.reply is not None
                    if first_chunk:
                        turn.reply.add_clause(clause)
                        first_chunk = False
                    turn.reply.add_audio(chunk.duration_ms)
                    try:
                        ulaw = self._play(chunk)
                    except RuntimeError as e:  # the session refuses: the call is over
                        raise _CallGone from e
                    rate = chunk.sample_rate
            except _CallGone:
                raise
            except Exception as e:
                self._provider_failed("tts", e)
                return False
            return True

        try:
            while not cancel.cancelled:
                clause = await clauses.get()
                if clause is None:
                    if llm_failed and not turn.audio_started and not cancel.cancelled:
                        await say(self.config.error_text)
                    break
                if not await say(clause):
                    break
            if cancel.cancelled or self._closing:
                return
            if turn.audio_started:
                if ulaw:
                    self.call.play_ulaw(b"", last=True)
                else:
                    self.call.play(b"", rate, last=True)
                assert turn.reply is not None
                turn.reply.complete()
                self._observe("agent", turn.reply.text)
                if rec is not None:
                    rec.reply_text = turn.reply.text
                end = self.call.audio_end_ms
                ends_call = getattr(self.llm, "ends_call", None)
                if (fixed is None and ends_call is not None and ends_call(messages)) or (
                    fixed == self.config.goodbye_text and self._idle_stage >= 2
                ):
                    self._hangup_at_ms = end
                    # Marks say when it has been heard; should they never come back, hang
                    # up once it must have played anyway.
                    playout_s = (end - turn.reply.start_ms) / 1000
                    self._loop.call_later(playout_s + _HANGUP_GRACE_S, self._hangup_if_pending)
        except (_CallGone, RuntimeError) as e:  # the call is gone (play after the end)
            log.debug("reply stopped: %s", e)
        finally:
            producer.cancel()

    def _play(self, chunk: AudioChunk) -> bool:
        """Queue one chunk; True when it went out as mu-law 8 kHz without transcoding."""
        if chunk.encoding == "ulaw":
            if chunk.sample_rate == 8000:
                self.call.play_ulaw(chunk.pcm, last=False)
                return True
            self.call.play(ulaw_decode(chunk.pcm), chunk.sample_rate, last=False)
            return False
        self.call.play(chunk.pcm, chunk.sample_rate, last=False)
        return False

    def _log_record(self, rec: TurnLatency) -> None:
        """One line per turn, once it is final (the next turn began, or the call ended).

        Transcripts are personal data: they are left out unless `turn_records_texts` is on.
        """
        if rec.turn in self._logged:
            return
        self._logged.add(rec.turn)
        data = rec.as_dict()
        if not self.config.record_texts:
            data = {k: v for k, v in data.items() if not isinstance(v, str)}
        log.info("turn %s", json.dumps(data, ensure_ascii=False))

    def _begin_audio(self, turn: _Turn, t_clause: float) -> None:
        """First audio of a reply: the user turn and the reply enter the context now."""
        turn.audio_started = True
        if turn.user_text:
            self.conversation.add_user(turn.user_text)
        turn.reply = self.conversation.begin_reply(self.call.audio_end_ms)
        rec = turn.record
        if rec is not None:
            now = self._loop.time()
            rec.tts_first_audio_ms = turn.ms(now)
            rec.tts_compute_ms = (now - t_clause) * 1000

            def sent(t: float) -> None:
                rec.first_frame_sent_ms = turn.ms(t)

            self.call.notify_first_frame(sent)

    # -- playout, silence, hang-up ------------------------------------------------------------

    def _on_mark(self, ev: MarkPlayed) -> None:
        now = self._loop.time()
        turn = self._turn
        if turn is not None and turn.reply is not None and turn.record is not None:
            rec = turn.record
            start = turn.reply.start_ms
            if rec.first_frame_heard_ms is None and ev.heard_ms > start:
                # The mark trails the first frame by the audio between them.
                # (Estimated back from the first mark echo; 20 ms framing can put the estimate
                # a frame before the send, which cannot be.)
                heard = turn.ms(now - (ev.heard_ms - start) / 1000)
                sent = rec.first_frame_sent_ms
                rec.first_frame_heard_ms = heard if sent is None else max(heard, sent)
        if ev.heard_ms + 1 >= self.call.audio_end_ms:
            self._played_out()

    def _played_out(self) -> None:
        """Everything the agent said has been heard."""
        if self._hangup_at_ms is not None:
            self._hangup_at_ms = None
            self._spawn(self.call.hangup("conversation finished"))
            return
        turn = self._turn
        if turn is not None and turn.task is not None and not turn.task.done():
            return
        self._arm_idle()

    def _hangup_if_pending(self) -> None:
        if self._hangup_at_ms is not None and not self._closing:
            self._hangup_at_ms = None
            self._spawn(self.call.hangup("conversation finished"))

    def _arm_idle(self) -> None:
        self._cancel_idle()
        cfg = self.config
        wait = cfg.reprompt_after_s if self._idle_stage == 0 else cfg.hangup_after_s
        if wait > 0 and not self._closing and not self._caller_speaking:
            self._idle_handle = self._loop.call_later(wait, self._on_idle)

    def _cancel_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _on_idle(self) -> None:
        self._idle_handle = None
        if self._closing or self._caller_speaking:
            return
        self._idle_stage += 1
        text = self.config.reprompt_text if self._idle_stage == 1 else self.config.goodbye_text
        self._start_reply("", None, self._loop.time(), fixed=text)


def input_rate_for(stt: StreamingSTT) -> int:
    """The caller-audio rate to ask the session for: the phone's own 8 kHz for recognisers
    that take 8 kHz (no resampling at all; mu-law ones get the wire's codes back exactly),
    16 kHz for everything else."""
    return 8000 if stt.input_format.sample_rate == 8000 else 16000


def stt_sink(
    stt: StreamingSTT,
    rate: int = 16000,
    *,
    on_error: Callable[[Exception], None] | None = None,
) -> Callable[[bytes], None]:
    """Caller PCM at `rate` (what the session gives) -> the recogniser's declared format.

    At most one Rust call per frame. The common cases do no DSP: 16 kHz PCM recognisers take
    the frames as they are, and 8 kHz ones get the wire's audio sample for sample (the session
    skips its resampler; re-encoding decoded mu-law gives the phone's codes back, but for the
    sign of zero).

    The sink is called on the media path, so it never raises: the first failure (a cloud
    recogniser's dropped socket) goes to `on_error` (else it is logged) and later audio is
    dropped, leaving the call to go on without the recogniser.
    """
    fmt = stt.input_format
    send = stt.send_audio
    rs = Resampler(rate, fmt.sample_rate) if fmt.sample_rate != rate else None
    convert: Callable[[bytes], bytes] | None
    if fmt.encoding == "ulaw":
        convert = ulaw_encode if rs is None else (lambda pcm: ulaw_encode(rs.process(pcm)))
    else:
        convert = None if rs is None else rs.process
    failed = False

    def sink(pcm: bytes) -> None:
        nonlocal failed
        if failed:
            return
        try:
            send(pcm if convert is None else convert(pcm))
        except Exception as e:
            failed = True
            if on_error is not None:
                on_error(e)
            else:
                log.error(
                    "stt send_audio failed (%s: %s); caller audio is no longer forwarded",
                    type(e).__name__,
                    e,
                )

    return sink


def _join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())
