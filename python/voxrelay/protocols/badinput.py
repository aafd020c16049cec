"""Per-call accounting of bad input: log each kind once, close the call on a flood.

A misbehaving or hostile peer can send thousands of bad messages a second; logging each would
turn one bad call into a logging outage, and tolerating them forever lets the peer burn CPU.
So each kind is logged the first time only, all kinds are counted, and more than
`max_per_window` bad messages within `window_s` seconds ends the call with the close code the
kind calls for. No clock is read: `now_s` comes from the caller (any monotonic clock).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from voxrelay.protocols.errors import CLOSE_CODES, KINDS

__all__ = ["BadInputCounter", "Verdict"]

# RFC 6455: a close frame's reason is at most 123 bytes of UTF-8.
_MAX_REASON_BYTES = 123


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str
    log: bool
    """True only for the first occurrence of `kind` on this call."""
    close: bool
    """True once the flood limit has been exceeded; stays True for the rest of the call."""
    close_code: int | None
    """WebSocket close code when `close`, else None."""
    reason: str
    """Close reason (ASCII, at most 123 bytes) when `close`, else ""."""
    count: int
    """Occurrences of `kind` on this call so far, this one included."""


class BadInputCounter:
    """Sliding-window flood limit plus per-kind counters for one call."""

    __slots__ = ("_closed", "_counts", "_last", "_max", "_times", "_window")

    def __init__(self, max_per_window: int, window_s: float) -> None:
        if isinstance(max_per_window, bool) or not isinstance(max_per_window, int):
            raise ValueError(f"max_per_window must be an integer >= 1, got {max_per_window!r}")
        if max_per_window < 1:
            raise ValueError(f"max_per_window must be an integer >= 1, got {max_per_window!r}")
        if (
            isinstance(window_s, bool)
            or not isinstance(window_s, int | float)
            or not (math.isfinite(window_s) and window_s > 0)
        ):
            raise ValueError(f"window_s must be a finite number of seconds > 0, got {window_s!r}")
        self._max = max_per_window
        self._window = float(window_s)
        # Bounded: only the newest max_per_window + 1 times can decide the verdict.
        self._times: deque[float] = deque(maxlen=max_per_window + 1)
        self._counts: dict[str, int] = {}
        self._last = -math.inf
        self._closed: Verdict | None = None

    def record(self, kind: str, now_s: float) -> Verdict:
        """Count one bad message of `kind` received at `now_s`."""
        if kind not in KINDS:
            raise ValueError(
                f"unknown protocol error kind {kind!r}; valid: {', '.join(sorted(KINDS))}"
            )
        if isinstance(now_s, bool) or not isinstance(now_s, int | float) or math.isnan(now_s):
            raise ValueError(f"now_s must be a number of seconds, got {now_s!r}")
        # A clock that steps back must not re-open the window; treat it as standing still.
        now = max(float(now_s), self._last)
        self._last = now
        count = self._counts.get(kind, 0) + 1
        self._counts[kind] = count
        log = count == 1
        if self._closed is not None:
            c = self._closed
            return Verdict(kind, log, True, c.close_code, c.reason, count)
        times = self._times
        times.append(now)
        horizon = now - self._window
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) <= self._max:
            return Verdict(kind, log, False, None, "", count)
        code = CLOSE_CODES[kind]
        reason = f"too much bad input: over {self._max} in {self._window:g} s, last {kind}"
        reason = reason.encode("ascii", "replace")[:_MAX_REASON_BYTES].decode("ascii")
        verdict = Verdict(kind, log, True, code, reason, count)
        self._closed = verdict
        return verdict

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def counts(self) -> dict[str, int]:
        """Occurrences per kind on this call (kinds never seen are absent)."""
        return dict(self._counts)
