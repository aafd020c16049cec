"""Conversation context: the system prompt and the turns, as the caller actually heard them.

A reply is generated faster than it is spoken, so when the caller interrupts, the LLM text is
well ahead of what reached their ear. Recording the whole reply would make the model believe
it said things the caller never heard ("as I mentioned, we close at ten"). The session
therefore reports the playout position, and the context keeps only the heard part, marked
`interrupted`.

How much was heard is measured in audio, not text: a `Reply` learns each clause's synthesised
duration as the TTS produces it, so a barge-in at `heard_ms` keeps every clause that finished
playing and the proportional part (whole words, rounded down) of the one that was playing.
When only a total duration is known, `truncate_last_assistant` does the same by proportion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from voxrelay.conversation.providers import Message

__all__ = ["Conversation", "Reply", "heard_prefix"]

_WORD: Final = re.compile(r"\S+")


def heard_prefix(text: str, fraction: float) -> str:
    """The whole words of `text` spoken within `fraction` of its audio.

    Speaking time is taken as proportional to characters (closer than per word: "a" is quicker
    than "reservation"); a word counts as heard only once its last character is, so a word
    cut in half is dropped: the context errs towards "not said".
    """
    if fraction != fraction:  # NaN
        raise ValueError("fraction is NaN; valid range [0, 1]")
    text = text.strip()
    if fraction >= 1.0:
        return text
    if fraction <= 0.0 or not text:
        return ""
    limit = fraction * len(text)
    end = 0
    for m in _WORD.finditer(text):
        if m.end() > limit:
            break
        end = m.end()
    return text[:end]


@dataclass(slots=True)
class _Clause:
    text: str
    audio_ms: float = 0.0


@dataclass(slots=True)
class Reply:
    """One assistant reply in flight: its clauses, their audio, and how it ended.

    `start_ms` is the reply's first sample on the call's cumulative agent-audio clock (the
    session's sent position when the reply started): the clock that `BargeIn.heard_ms` uses.
    The engine calls `add_clause` when it hands a clause to TTS, `add_audio` for each chunk of
    that clause's audio, then `complete()` when the text is all out, and `interrupt(heard_ms)`
    on barge-in: before or after `complete()`, since audio keeps playing after generation ends.
    """

    conversation: Conversation
    start_ms: float = 0.0
    _clauses: list[_Clause] = field(default_factory=list)
    _message: Message | None = None
    _interrupted: bool = False

    @property
    def text(self) -> str:
        return " ".join(c.text for c in self._clauses)

    @property
    def audio_ms(self) -> float:
        return sum(c.audio_ms for c in self._clauses)

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    def add_clause(self, text: str, audio_ms: float = 0.0) -> None:
        if self._interrupted:
            raise RuntimeError("reply was interrupted; start a new one")
        text = text.strip()
        if text:
            self._clauses.append(_Clause(text, _check_ms(audio_ms, "audio_ms")))

    def add_audio(self, ms: float) -> None:
        """More audio of the latest clause (TTS streams a clause in several chunks)."""
        if not self._clauses:
            raise RuntimeError("add_audio before any add_clause")
        self._clauses[-1].audio_ms += _check_ms(ms, "ms")

    def heard_text(self, played_ms: float) -> str:
        """What `played_ms` of this reply's audio said: whole clauses, then part of one."""
        played = _check_ms(played_ms, "played_ms")
        parts: list[str] = []
        for c in self._clauses:
            if played >= c.audio_ms:
                parts.append(c.text)
                played -= c.audio_ms
                continue
            part = heard_prefix(c.text, played / c.audio_ms) if c.audio_ms > 0 else ""
            if part:
                parts.append(part)
            break
        return " ".join(parts)

    def complete(self) -> Message | None:
        """Generation ended normally: record the whole reply (if nothing was cut off yet)."""
        if self._interrupted or self._message is not None:
            return self._message
        self._message = self.conversation.add_assistant(self.text)
        return self._message

    def interrupt(self, heard_ms: float) -> Message | None:
        """Barge-in at `heard_ms` (cumulative call clock): keep only what was heard."""
        if self._interrupted:
            return self._message
        self._interrupted = True
        heard = self.heard_text(max(0.0, _check_ms(heard_ms, "heard_ms") - self.start_ms))
        return self._replace(heard)

    def _replace(self, heard: str) -> Message | None:
        conv = self.conversation
        if self._message is None:
            self._message = conv.add_assistant(heard, interrupted=True)
        else:
            # In place: the caller's next turn may already follow the completed reply.
            self._message = conv._replace(self._message, heard)
        return self._message


def _check_ms(ms: float, name: str) -> float:
    if not ms >= 0.0 or ms == float("inf"):
        raise ValueError(f"{name} {ms} out of range [0, inf) ms")
    return float(ms)


class Conversation:
    """The LLM's view of the call: a system prompt plus alternating turns.

    `max_turns` bounds the context on long calls (oldest turns go first; the system prompt
    always stays).
    """

    __slots__ = ("_turns", "max_turns", "system_prompt")

    def __init__(self, system_prompt: str = "", *, max_turns: int | None = None) -> None:
        if max_turns is not None and max_turns < 1:
            raise ValueError(f"max_turns {max_turns} out of range [1, inf) or None")
        self.system_prompt = system_prompt
        self.max_turns = max_turns
        self._turns: list[Message] = []

    @property
    def turns(self) -> tuple[Message, ...]:
        return tuple(self._turns)

    def messages(self) -> list[Message]:
        """What to send to the LLM: the system prompt (if any) then the turns."""
        head = [Message("system", self.system_prompt)] if self.system_prompt else []
        return head + self._turns

    def add_user(self, text: str) -> Message:
        return self._append(Message("user", text.strip()))

    def add_assistant(self, text: str, *, interrupted: bool = False) -> Message | None:
        """Record a reply; an empty one (interrupted before a word was heard) is not a turn."""
        text = text.strip()
        if not text:
            return None
        return self._append(Message("assistant", text, interrupted))

    def begin_reply(self, start_ms: float = 0.0) -> Reply:
        """Track a streamed reply clause by clause; see `Reply`."""
        return Reply(self, _check_ms(start_ms, "start_ms"))

    def record_interrupted(self, heard_text: str) -> Message | None:
        """Replace the last assistant turn by the part the caller heard, marked interrupted
        (appended if the last turn is not the assistant's)."""
        last = self._last_assistant()
        if last is not None:
            return self._replace(last, heard_text)
        return self.add_assistant(heard_text, interrupted=True)

    def truncate_last_assistant(self, heard_ms: float, total_ms: float) -> Message | None:
        """By proportion when only the reply's total duration is known."""
        heard = _check_ms(heard_ms, "heard_ms")
        total = _check_ms(total_ms, "total_ms")
        last = self._last_assistant()
        if last is None:
            raise ValueError("no assistant turn to truncate (last turn is not the assistant's)")
        fraction = 1.0 if total == 0.0 else min(1.0, heard / total)
        return self.record_interrupted(heard_prefix(last.content, fraction))

    def _last_assistant(self) -> Message | None:
        if self._turns and self._turns[-1].role == "assistant":
            return self._turns[-1]
        return None

    def _append(self, message: Message) -> Message:
        self._turns.append(message)
        if self.max_turns is not None and len(self._turns) > self.max_turns:
            del self._turns[: len(self._turns) - self.max_turns]
        return message

    def _replace(self, old: Message, heard: str) -> Message | None:
        """Swap `old` for its heard part, marked interrupted (dropped if nothing was heard)."""
        heard = heard.strip()
        for k in range(len(self._turns) - 1, -1, -1):
            if self._turns[k] is old:
                if not heard:
                    del self._turns[k]
                    return None
                new = Message("assistant", heard, interrupted=True)
                self._turns[k] = new
                return new
        return None  # already trimmed away by max_turns
