"""Turn-taking from per-frame VAD decisions: speech started, speech ended, barge-in, pause.

Sans-I/O and clock-free: time is the duration of the audio fed in, so the same detector gives
the same answer live, in a replay, and in a test. The detector itself is the media engine's
(`voxrelay.media.TurnDetector`, Rust): the connection's frame reader feeds it every frame the
inbound path releases, 50 per second, and a frame that changes nothing never reaches Python.
`feed` returns an int of flags rather than event objects so that the common case, nothing
happened, allocates nothing. This module adds the flag names and Python-level argument checks.
"""

from __future__ import annotations

from typing import Final

from voxrelay.media import TurnDetector as _Core

__all__ = ["BARGE_IN", "ENDED", "PAUSED", "STARTED", "TurnDetector"]

STARTED: Final = 1
"""The caller has spoken for `start_ms`: an utterance is open."""
ENDED: Final = 2
"""`end_ms` of silence (or the length cap) closed the utterance; take it with `utterance()`."""
BARGE_IN: Final = 4
"""The current run of speech just reached `barge_in_ms` (once per run)."""
PAUSED: Final = 8
"""The open utterance has been silent for `pause_ms` (once per silence run): the moment to
transcribe speculatively, so the text is there when the turn decision needs it."""


def _integer(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class TurnDetector(_Core):
    """Collects one caller utterance at a time between VAD onset and trailing silence.

    `feed(pcm, speech) -> flags`; `utterance()` after ENDED; `audio_so_far()` while one is
    open; `end_after(silence_ms, token)` lets a transcript end the turn early;
    `configure(...)` changes timing mid-call. Properties: `in_speech`, `position_ms` (the
    detector's clock: audio fed so far), `speech_start_ms`, `onset_offset_ms`, `silence_ms`,
    `speech_run_ms`, `pause_count`, `run_token` (the current silence's pause token, -1 before
    `pause_ms`), `end_ms`.
    """

    __slots__ = ()

    def __new__(
        cls,
        *,
        rate: int = 16000,
        start_ms: int = 80,
        end_ms: int = 500,
        barge_in_ms: int = 150,
        preroll_ms: int = 200,
        max_utterance_ms: int = 30000,
        keep_tail_ms: int = 100,
        pause_ms: int = 0,
    ) -> TurnDetector:
        # Ranges are checked once, in the media engine, with these same messages; here only
        # what the binding would take as an integer but must not (a bool) or would refuse as a
        # TypeError (anything else).
        for name, v in (
            ("rate", rate),
            ("start_ms", start_ms),
            ("end_ms", end_ms),
            ("barge_in_ms", barge_in_ms),
            ("max_utterance_ms", max_utterance_ms),
        ):
            if not _integer(v):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not _integer(pause_ms):
            raise ValueError(f"pause_ms must be 0 (off) .. end_ms ({end_ms}) - 1, got {pause_ms!r}")
        return super().__new__(
            cls,
            rate=rate,
            start_ms=start_ms,
            end_ms=end_ms,
            barge_in_ms=barge_in_ms,
            preroll_ms=preroll_ms,
            max_utterance_ms=max_utterance_ms,
            keep_tail_ms=keep_tail_ms,
            pause_ms=pause_ms,
        )

    def configure(
        self,
        *,
        end_ms: int | None = None,
        pause_ms: int | None = None,
        barge_in_ms: int | None = None,
    ) -> None:
        """Change timing mid-call (the agent knows what it needs); checked like the constructor."""
        for name, v in (("end_ms", end_ms), ("barge_in_ms", barge_in_ms)):
            if v is not None and not _integer(v):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if pause_ms is not None and not _integer(pause_ms):
            end = self.end_ms if end_ms is None else end_ms
            raise ValueError(f"pause_ms must be 0 (off) .. end_ms ({end}) - 1, got {pause_ms!r}")
        super().configure(end_ms=end_ms, pause_ms=pause_ms, barge_in_ms=barge_in_ms)
