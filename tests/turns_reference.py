"""The pure-Python turn detector voxrelay used before it moved into the media engine, kept as
the reference model for `tests/test_turns.py`: the Rust detector must agree with it on every
flag and every property, frame by frame.

Turn-taking from per-frame VAD decisions: speech started, speech ended, barge-in threshold.

Sans-I/O and clock-free: time is the duration of the audio fed in, so the same detector gives
the same answer live, in a replay, and in a test. The session feeds it every frame the media
engine releases (50 per second); `feed` returns an int of flags rather than event objects so
that the common case, nothing happened, allocates nothing.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["BARGE_IN", "ENDED", "PAUSED", "STARTED", "ReferenceTurnDetector"]

STARTED: Final = 1
"""The caller has spoken for `start_ms`: an utterance is open."""
ENDED: Final = 2
"""`end_ms` of silence (or the length cap) closed the utterance; take it with `utterance()`."""
BARGE_IN: Final = 4
"""The current run of speech just reached `barge_in_ms` (once per run)."""
PAUSED: Final = 8
"""The open utterance has been silent for `pause_ms` (once per silence run): the moment to
transcribe speculatively, so the text is there when the turn decision needs it."""


class ReferenceTurnDetector:
    """Collects one caller utterance at a time between VAD onset and trailing silence."""

    __slots__ = (
        "_barge_ms",
        "_bytes_per_ms",
        "_end_ms",
        "_max_ms",
        "_parts",
        "_pause_ms",
        "_preroll",
        "_preroll_bytes",
        "_preroll_max",
        "_run_token",
        "_silence_run",
        "_speech_run",
        "_start_ms",
        "_tail_bytes",
        "_utt_end_ms",
        "_utt_ms",
        "_utterance",
        "in_speech",
        "onset_offset_ms",
        "pause_count",
        "position_ms",
        "speech_start_ms",
    )

    def __init__(
        self,
        *,
        rate: int = 16000,
        start_ms: int = 80,
        end_ms: int = 500,
        barge_in_ms: int = 150,
        preroll_ms: int = 200,
        max_utterance_ms: int = 30000,
        keep_tail_ms: int = 100,
        pause_ms: int = 0,
    ) -> None:
        for name, v in (
            ("rate", rate),
            ("start_ms", start_ms),
            ("end_ms", end_ms),
            ("barge_in_ms", barge_in_ms),
            ("max_utterance_ms", max_utterance_ms),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0 <= preroll_ms <= 2000 or not 0 <= keep_tail_ms <= end_ms:
            raise ValueError(
                f"preroll_ms must be 0..2000 and keep_tail_ms 0..end_ms ({end_ms}), "
                f"got {preroll_ms} and {keep_tail_ms}"
            )
        if not 0 <= pause_ms < end_ms:
            raise ValueError(f"pause_ms must be 0 (off) .. end_ms ({end_ms}) - 1, got {pause_ms}")
        self._bytes_per_ms = rate * 2 / 1000
        self._pause_ms = pause_ms
        self._utt_end_ms = float(end_ms)
        self._run_token = -1
        self.pause_count = 0
        """PAUSED flags so far: a token that tells a late transcript whether it is stale."""
        self._start_ms = start_ms
        self._end_ms = end_ms
        self._barge_ms = barge_in_ms
        self._max_ms = max_utterance_ms
        # The onset frames themselves plus the pre-roll before them.
        self._preroll_max = int((preroll_ms + start_ms) * self._bytes_per_ms)
        self._tail_bytes = int(keep_tail_ms * self._bytes_per_ms)
        self._preroll: deque[bytes] = deque()
        self._preroll_bytes = 0
        self._parts: list[bytes] = []
        self._utterance = b""
        self._speech_run = 0.0
        self._silence_run = 0.0
        self._utt_ms = 0.0
        self.in_speech = False
        self.position_ms = 0.0
        """Audio fed so far (ms): the detector's clock."""
        self.speech_start_ms = 0.0
        """Where the open (or last) utterance's speech began, on that clock."""
        self.onset_offset_ms = 0.0
        """Where in the utterance's audio the speech began (the pre-roll before it)."""

    def feed(self, pcm: bytes, speech: bool) -> int:
        """One released frame and its VAD decision; returns STARTED | ENDED | BARGE_IN flags."""
        ms = len(pcm) / self._bytes_per_ms
        self.position_ms += ms
        flags = 0
        if speech:
            before = self._speech_run
            self._speech_run = before + ms
            if self._silence_run:
                # New words void any decision taken on the text before them.
                self._silence_run = 0.0
                self._utt_end_ms = self._end_ms
                self._run_token = -1
            if before < self._barge_ms <= self._speech_run:
                flags = BARGE_IN
        else:
            self._speech_run = 0.0
            before = self._silence_run
            self._silence_run = before + ms
            if self.in_speech and before < self._pause_ms <= self._silence_run:
                self.pause_count += 1
                self._run_token = self.pause_count
                flags = PAUSED
        if not self.in_speech:
            pre = self._preroll
            pre.append(pcm)
            self._preroll_bytes += len(pcm)
            while self._preroll_bytes - len(pre[0]) >= self._preroll_max:
                self._preroll_bytes -= len(pre.popleft())
            if self._speech_run >= self._start_ms:
                self.in_speech = True
                self.speech_start_ms = self.position_ms - self._speech_run
                self._parts = list(pre)
                self._utt_ms = self._preroll_bytes / self._bytes_per_ms
                self.onset_offset_ms = self._utt_ms - self._speech_run
                pre.clear()
                self._preroll_bytes = 0
                flags |= STARTED
            return flags
        self._parts.append(pcm)
        self._utt_ms += ms
        if self._silence_run >= self._utt_end_ms or self._utt_ms >= self._max_ms:
            flags |= self._close()
        return flags

    def _close(self) -> int:
        if not self.in_speech:
            return 0
        audio = b"".join(self._parts)
        # Keep a short tail of the trailing silence: playback should not end abruptly,
        # but half a second of nothing is not part of what the caller said.
        cut = int(self._silence_run * self._bytes_per_ms) - self._tail_bytes
        if cut > 0:
            cut -= cut % 2
            audio = audio[: len(audio) - cut]
        self._utterance = audio
        self._parts = []
        self._utt_ms = 0.0
        self.in_speech = False
        self._utt_end_ms = self._end_ms
        return ENDED

    def end_after(self, silence_ms: float, token: int) -> int:
        """Let the current silence end the utterance once it lasts `silence_ms`.

        The turn engine calls this when the transcript of the speech before pause `token`
        says how long to wait. Returns ENDED (take the audio with `utterance()`) when the
        silence is already that long, else 0; a stale token (the caller spoke again, or the
        utterance is over) changes nothing.
        """
        if not self.in_speech or token != self._run_token:
            return 0
        self._utt_end_ms = max(float(silence_ms), float(self._pause_ms))
        if self._silence_run >= self._utt_end_ms:
            return self._close()
        return 0

    @property
    def run_token(self) -> int:
        """The pause token of the current silence run, -1 if it has not reached `pause_ms`.

        Read it with ENDED: equal to a transcript's token means nothing was said after it.
        """
        return self._run_token

    @property
    def silence_ms(self) -> float:
        """Length of the current run of silence (0 while the caller speaks)."""
        return self._silence_run

    @property
    def end_ms(self) -> int:
        return self._end_ms

    def configure(
        self,
        *,
        end_ms: int | None = None,
        pause_ms: int | None = None,
        barge_in_ms: int | None = None,
    ) -> None:
        """Change timing mid-call (the agent knows what it needs); checked like `__init__`."""
        end = self._end_ms if end_ms is None else end_ms
        pause = self._pause_ms if pause_ms is None else pause_ms
        barge = self._barge_ms if barge_in_ms is None else barge_in_ms
        for name, v in (("end_ms", end), ("barge_in_ms", barge)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(pause, bool) or not isinstance(pause, int) or not 0 <= pause < end:
            raise ValueError(f"pause_ms must be 0 (off) .. end_ms ({end}) - 1, got {pause!r}")
        if self._tail_bytes > end * self._bytes_per_ms:
            raise ValueError(f"end_ms {end} is shorter than the kept tail")
        self._end_ms, self._pause_ms, self._barge_ms = end, pause, barge
        self._utt_end_ms = float(end)

    def audio_so_far(self) -> bytes:
        """The open utterance's audio (pre-roll included): what a streaming recogniser gets
        at the onset, before the frames that follow one by one."""
        return b"".join(self._parts)

    def utterance(self) -> bytes:
        """The utterance closed by the last ENDED flag (PCM16 at the detector's rate)."""
        audio, self._utterance = self._utterance, b""
        return audio

    @property
    def speech_run_ms(self) -> float:
        return self._speech_run

    def reset(self) -> None:
        self._preroll.clear()
        self._preroll_bytes = 0
        self._parts = []
        self._utterance = b""
        self._speech_run = self._silence_run = self._utt_ms = 0.0
        self._utt_end_ms = float(self._end_ms)
        self._run_token = -1
        self.in_speech = False
