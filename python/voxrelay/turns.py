"""Turn-taking from per-frame VAD decisions: speech started, speech ended, barge-in, pause.

Sans-I/O and clock-free: time is the duration of the audio fed in, so the same detector gives
the same answer live, in a replay, and in a test. The detector itself is the media engine's
(`voxrelay.media.TurnDetector`, Rust): the connection's frame reader feeds it every frame the
inbound path releases, 50 per second, and a frame that changes nothing never reaches Python.
`feed` returns an int of flags rather than event objects so that the common case, nothing
happened, allocates nothing. This module names the flags.
"""

from __future__ import annotations

from typing import Final

from voxrelay.media import TurnDetector

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
