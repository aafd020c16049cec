"""What the caller has actually heard of the agent's audio, from mark echoes.

The session sends agent audio in chunks and a mark after each; the platform echoes a mark once
everything sent before it has been played. On barge-in the session sends `clear`, and the
platform then returns every pending mark at once: those echoes mean "discarded", not "played",
and must not advance the heard position, or the conversation history would claim the caller
heard words that were cut off.

Positions are in "sent" coordinates: milliseconds of agent audio sent on this call so far, as
the session counts them (after a clear, new audio continues from the sent total, so positions
keep mapping back to the text that produced them). `played_ms` separately counts the audio
genuinely played. No clock is read: times are passed in, in milliseconds of any monotonic clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = ["Cleared", "PlayoutTracker"]


@dataclass(frozen=True, slots=True)
class Cleared:
    """Result of a barge-in: where playback stopped and what was thrown away."""

    heard_ms: float
    """Sent-coordinate position the caller had heard up to when the clear went out."""
    sent_ms: float
    """Sent-coordinate position of the last mark sent before the clear."""
    flushed: tuple[str, ...]
    """Marks that were pending; their echoes will be ignored."""

    @property
    def unplayed_ms(self) -> float:
        return self.sent_ms - self.heard_ms


def _check_ms(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of milliseconds, got {value!r}")
    return float(value)


class PlayoutTracker:
    """Tracks mark echoes for one call and derives the heard position."""

    __slots__ = (
        "_anchor_ms",
        "_anchor_pos",
        "_flushed",
        "_max_pending",
        "_pending",
        "_played",
        "_segment_start",
        "_sent",
        "dropped_marks",
        "flushed_echoes",
        "skipped_marks",
        "unknown_echoes",
    )

    def __init__(self, *, max_pending: int = 4096) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be a positive integer, got {max_pending!r}")
        self._max_pending: Final = max_pending
        # Insertion-ordered: marks echo in the order they were sent.
        self._pending: dict[str, float] = {}
        # Marks pending at a clear, whose echoes must be recognised and ignored.
        self._flushed: dict[str, None] = {}
        self._sent = 0.0
        # Interpolation anchor: position known played, and when (None: time unknown).
        self._anchor_pos = 0.0
        self._anchor_ms: float | None = None
        # Where the current run of contiguous playback started (after a clear, the sent total).
        self._segment_start = 0.0
        self._played = 0.0
        self.unknown_echoes = 0
        self.flushed_echoes = 0
        self.skipped_marks = 0
        self.dropped_marks = 0

    # -- what the session did -----------------------------------------------------------------

    def sent(self, name: str, audio_ms_total_at_mark: float) -> None:
        """A mark was sent after `audio_ms_total_at_mark` ms of audio (cumulative on the call)."""
        pos = _check_ms(audio_ms_total_at_mark, "audio_ms_total_at_mark")
        if pos < self._sent:
            raise ValueError(
                f"audio_ms_total_at_mark went backwards: {pos} after {self._sent}; "
                "it is the cumulative audio sent on the call"
            )
        if name in self._pending:
            raise ValueError(f"mark {name!r} is already pending; mark names must be unique")
        if len(self._pending) >= self._max_pending:
            raise ValueError(
                f"{len(self._pending)} marks pending (max_pending={self._max_pending}); "
                "the platform is not echoing marks"
            )
        # A reused name that was flushed earlier is live again: its next echo is genuine.
        self._flushed.pop(name, None)
        self._pending[name] = pos
        self._sent = pos

    @property
    def full(self) -> bool:
        """`max_pending` marks are pending: `sent` refuses another until one goes."""
        return len(self._pending) >= self._max_pending

    def drop_oldest(self, now_ms: float | None = None) -> str | None:
        """Stop waiting for the oldest pending mark and count it as played at `now_ms`.

        For a platform that does not echo marks: the session sends audio at 1x real time, so
        the audio before a mark sent `max_pending` marks ago has played by now. Counting it as
        played (as an echo of it would, and as `echoed` does for marks it skips) rather than as
        flushed keeps a later barge-in from claiming the caller heard none of it. Its echo, if
        it ever comes, counts as unknown. Returns the mark's name (None if none was pending).

        The heard position still trails playback by about `max_pending` marks: it is anchored
        at the dropped mark and capped at the oldest one still pending. Once `dropped_marks`
        is non-zero, a caller with a playout clock of its own should take the later of the two.
        """
        if not self._pending:
            return None
        name = next(iter(self._pending))
        self.echoed(name, now_ms)
        self.dropped_marks += 1
        return name

    def audio_started(self, now_ms: float) -> None:
        """Audio was sent at `now_ms` after a quiet spell; playback of it starts about then.

        Gives the interpolation an anchor before the first echo of an utterance, so a barge-in
        during the first chunk still reports a position. Ignored while audio is still pending,
        since then playback is continuous and the last echo is the better anchor.
        """
        now = _check_ms(now_ms, "now_ms")
        if not self._pending:
            self._anchor_pos = self._sent
            self._anchor_ms = now

    def cleared(self, now_ms: float | None = None) -> Cleared:
        """The session sent `clear`: every pending mark will come back and does not count."""
        heard = self.position_ms(now_ms)
        flushed = tuple(self._pending)
        for name in flushed:
            self._flushed[name] = None
        # Bounded: the oldest flushed names are the least likely to still come back.
        while len(self._flushed) > self._max_pending:
            del self._flushed[next(iter(self._flushed))]
        self._pending.clear()
        self._played += heard - self._segment_start
        result = Cleared(heard_ms=heard, sent_ms=self._sent, flushed=flushed)
        # Whatever is sent next starts a fresh run at the sent total; nothing of it plays yet.
        self._segment_start = self._sent
        self._anchor_pos = self._sent
        self._anchor_ms = None
        return result

    # -- what the platform said ---------------------------------------------------------------

    def echoed(self, name: str, now_ms: float | None = None) -> float:
        """The platform echoed mark `name`; returns the heard position (sent coordinates)."""
        now = None if now_ms is None else _check_ms(now_ms, "now_ms")
        pos = self._pending.pop(name, None)
        if pos is None:
            if name in self._flushed:
                del self._flushed[name]
                self.flushed_echoes += 1
            else:
                self.unknown_echoes += 1
            return self._anchor_pos
        # Echoes come in order; an earlier mark still pending has been played too.
        while self._pending:
            first = next(iter(self._pending))
            if self._pending[first] > pos:
                break
            del self._pending[first]
            self.skipped_marks += 1
        self._anchor_pos = max(self._anchor_pos, pos)
        self._anchor_ms = now
        return self._anchor_pos

    # -- queries ------------------------------------------------------------------------------

    def position_ms(self, now_ms: float | None = None) -> float:
        """Heard position now: last genuine echo, plus the time since it when `now_ms` is given.

        The interpolation is capped at the next pending mark: that mark has not come back, so
        its audio has not finished playing (give or take the echo's network latency). With no
        mark pending, everything sent has been heard.
        """
        now = None if now_ms is None else _check_ms(now_ms, "now_ms")
        base = self._anchor_pos
        if now is None or self._anchor_ms is None or not self._pending:
            return base
        cap = next(iter(self._pending.values()))
        return min(max(base, base + (now - self._anchor_ms)), cap)

    @property
    def heard_ms(self) -> float:
        return self._anchor_pos

    @property
    def sent_ms(self) -> float:
        return self._sent

    @property
    def played_ms(self) -> float:
        """Audio genuinely played on the call (discarded spans excluded), up to the last echo."""
        return self._played + (self._anchor_pos - self._segment_start)

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(self._pending)

    def stats(self) -> dict[str, float]:
        return {
            "sent_ms": self._sent,
            "played_ms": self.played_ms,
            "pending_marks": len(self._pending),
            "unknown_echoes": self.unknown_echoes,
            "flushed_echoes": self.flushed_echoes,
            "skipped_marks": self.skipped_marks,
            "dropped_marks": self.dropped_marks,
        }
