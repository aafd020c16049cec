"""The agent interface: what a conversation engine sees of a call, and what it can do to it.

Small on purpose. An agent receives a handful of turn-level events (never per-frame audio:
the session does turn detection, pacing and barge-in, so an agent cannot stall the media path)
and answers through `CallControl.play` / `clear` / `hangup`. `on_event` is awaited in order,
one event at a time, on the agent's own task; a slow agent delays only its own events.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from voxrelay.settings import Settings

__all__ = [
    "Agent",
    "AgentEvent",
    "AgentFactory",
    "BargeIn",
    "CallControl",
    "CallEnded",
    "CallStarted",
    "Dtmf",
    "EchoAgent",
    "MarkPlayed",
    "SpeechEnded",
    "SpeechPaused",
    "SpeechStarted",
    "load_agent",
]


@dataclass(frozen=True, slots=True)
class CallStarted:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: Mapping[str, str] = field(hash=False)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    at_ms: float
    """Where the speech began in the caller's audio (ms since the stream started)."""


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    pcm: bytes = field(repr=False)
    """The utterance, PCM16 mono at `rate`, from shortly before the onset to the silence."""
    rate: int
    start_ms: float
    end_ms: float
    """Caller-audio time at which the end-of-speech silence was confirmed."""
    onset_offset_ms: float = 0.0
    """Where in `pcm` the detected speech begins; before it is pre-roll kept for recognisers."""
    silence_ms: float = 0.0
    """The trailing silence that closed the utterance: the speech itself ended that long
    before `end_ms` (and before `at`)."""
    at: float = 0.0
    """Event-loop time (`loop.time()`, seconds) when the session closed the utterance."""
    pause_token: int = -1
    """The `SpeechPaused.token` of the silence that closed it (-1: none); equal to the token
    of a speculative transcript, it means nothing was said after that transcript's audio."""

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) * 500 / self.rate


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """The open utterance has been silent for the pause threshold; it may or may not be over.

    A turn engine transcribes what it has so far and answers with `CallControl.end_turn_after`
    (how much silence ends the turn, given that text), quoting `token`.
    """

    token: int
    at_ms: float
    """Caller-audio time of the pause (ms since the stream started)."""
    silence_ms: float
    at: float
    """Event-loop time (seconds) when the pause was detected."""


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    name: str
    heard_ms: float
    """Agent audio (ms, cumulative on the call) the caller has now heard."""


@dataclass(frozen=True, slots=True)
class BargeIn:
    heard_ms: float
    """How far into the agent's audio (cumulative ms) the caller got before interrupting."""
    sent_ms: float
    """How much had been sent; `sent_ms - heard_ms` was cut off."""


@dataclass(frozen=True, slots=True)
class CallEnded:
    reason: str
    """Why the call ended: `stop` (the platform stopped the stream), `hangup` (the agent),
    `disconnected` (the socket closed without either), `shutdown` (the server's drain ran
    out), `idle` (nothing received for `idle_timeout_s`), `bad_input` (too many bad messages),
    `bad_start` (a `start` that cannot begin a stream), `unauthorised` (wrong or missing
    stream token) or `error` (the peer stopped reading)."""


AgentEvent: TypeAlias = (
    CallStarted
    | SpeechStarted
    | SpeechPaused
    | SpeechEnded
    | Dtmf
    | MarkPlayed
    | BargeIn
    | CallEnded
)


class CallControl(Protocol):
    """What an agent may do to its call (implemented by the server's session)."""

    def play(self, pcm: bytes, rate: int, *, last: bool = True) -> None:
        """Queue agent audio (PCM16 mono at `rate`); the session paces it at 1x real time.

        `last=False` keeps a partial 20 ms frame for the next call (streaming TTS); `last=True`
        pads and ends the chunk. A mark follows every chunk.

        Audio handed over between a barge-in and the agent receiving its `BargeIn` is dropped
        (counted in the call's `audio_dropped_ms`): it was meant for the reply just cut off.
        From the `BargeIn`'s `on_event` on, audio plays as usual.
        """
        ...

    def play_ulaw(self, codes: bytes, *, last: bool = True) -> None:
        """Queue agent audio already in mu-law 8 kHz: sent without transcoding (and dropped,
        as `play`'s is, between a barge-in and the agent receiving its `BargeIn`)."""
        ...

    async def clear(self) -> float:
        """Stop the agent's audio now; returns the heard position (ms)."""
        ...

    async def hangup(self, reason: str = "agent hangup") -> None: ...

    @property
    def playing(self) -> bool: ...

    @property
    def audio_end_ms(self) -> float:
        """Where audio played now would start on the call's agent-audio clock (the clock of
        `heard_ms`): everything sent or queued so far, in ms."""
        ...

    def configure_turns(
        self,
        *,
        end_ms: int | None = None,
        pause_ms: int | None = None,
        barge_in_ms: int | None = None,
    ) -> None:
        """Turn timing for this call: the silence that ends an utterance when nobody decides
        sooner, the pause that triggers `SpeechPaused` (0: off), and the sustained speech
        that interrupts agent audio."""
        ...

    def end_turn_after(self, silence_ms: float, token: int) -> bool:
        """End the utterance paused at `token` once its silence lasts `silence_ms` (now, if
        it already does). False when `token` is stale: the caller spoke again."""
        ...

    def set_audio_sink(self, sink: Callable[[bytes], None] | None) -> None:
        """Stream the caller's utterances (PCM16 at the agent's rate) to `sink` as spoken: the
        open utterance's pre-roll at the onset, then every frame until it ends. For streaming
        recognisers; it is called from the media path and must not block."""
        ...

    def notify_first_frame(self, callback: Callable[[float], None]) -> None:
        """Call `callback(loop_time)` when the next frame of agent audio goes on the wire."""
        ...

    def record_turn(self, record: Mapping[str, object]) -> None:
        """Keep a per-turn record (latency waterfall) with the call, for logs and the API."""
        ...


@runtime_checkable
class Agent(Protocol):
    """An agent may also have an `input_rate` attribute (8000 or 16000, default 16000): the
    rate of the caller audio it gets (`SpeechEnded.pcm`, the audio sink). 8000 is the phone's
    own rate, with no resampling at all."""

    async def on_event(self, event: AgentEvent) -> None: ...


AgentFactory: TypeAlias = Callable[[CallControl], Agent]


class EchoAgent:
    """A parrot: plays each caller utterance back. The end-to-end test of media and barge-in."""

    __slots__ = ("_call",)

    # Keep this much before the detected onset: VAD onsets are a frame or two late, and a
    # clipped first consonant sounds wrong. The rest of the pre-roll would only delay the reply.
    LEAD_IN_MS = 60

    def __init__(self, call: CallControl) -> None:
        self._call = call

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, SpeechEnded) and event.pcm:
            skip_ms = max(0.0, event.onset_offset_ms - self.LEAD_IN_MS)
            skip = int(skip_ms * event.rate / 1000) * 2
            self._call.play(event.pcm[skip:], event.rate)


_BUILTIN: dict[str, AgentFactory] = {"echo": EchoAgent}


def load_agent(name: str, settings: Settings | None = None) -> AgentFactory:
    """`echo`, `conversation` (STT -> LLM -> TTS, engines from `settings`), or
    `package.module:callable` taking the call control and returning an Agent.

    A factory with an async `prepare(progress)` method gets it awaited before the server
    accepts calls (model loading)."""
    if name in _BUILTIN:
        return _BUILTIN[name]
    if name == "conversation":
        from voxrelay.conversation.engine import ConversationFactory
        from voxrelay.settings import Settings

        return ConversationFactory(settings or Settings())
    mod_name, colon, attr = name.partition(":")
    if not colon or not mod_name or not attr:
        raise ValueError(
            f"agent {name!r} is not known; valid: {', '.join(sorted(_BUILTIN))}, conversation or "
            "'package.module:factory'"
        )
    module = importlib.import_module(mod_name)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"agent {name!r}: {attr!r} in {mod_name!r} is not callable")
    return factory  # type: ignore[no-any-return]
