"""TTS audio in the phone leg's own format, made where the speech is synthesised.

Why: a local voice speaks PCM at 22.05 kHz, and the phone leg takes mu-law at 8 kHz. Converted
on the way out (`TwilioOutbound`), that costs ~2.5 us of event-loop time per 20 ms frame, for
every call at once: the resampler's share of the one thread all calls share. The engine's
synthesis already runs in a worker thread a clause at a time, so converting there, in one bulk
call per chunk (the GIL released for long ones), takes that work off the loop: the session
then only frames the codes (`Session.play_ulaw`), a fraction of a microsecond per frame.

Each `synthesize` call gets its own encoder and ends with its filter tail, so clauses are
converted independently: the same audio whatever happens between them (a barge-in, a voice
change), at the cost of the resampler's ~4 ms tail per clause, inside the clause's own silence.
"""

from __future__ import annotations

from typing import Final

from voxrelay import media
from voxrelay.conversation.providers import ULAW_8K

__all__ = ["OUTPUTS", "PHONE_RATE", "PhoneEncoder", "check_output"]

PHONE_RATE: Final = ULAW_8K.sample_rate

OUTPUTS: Final = ("native", "ulaw8k")
"""What a local voice can deliver: its own PCM, or the phone leg's mu-law 8 kHz."""


def check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise ValueError(f"output {output!r} is not supported; valid: 'native' or 'ulaw8k'")
    return output


class PhoneEncoder:
    """PCM16 at a voice's rate -> mu-law 8 kHz, streaming: `encode` per chunk, then `finish`."""

    __slots__ = ("_resampler",)

    def __init__(self, rate: int, quality: str = "phone") -> None:
        # `TwilioOutbound`'s default quality, so the codes are the ones it would send.
        self._resampler = (
            None if rate == PHONE_RATE else media.Resampler(rate, PHONE_RATE, quality=quality)
        )

    def encode(self, pcm: bytes) -> bytes:
        rs = self._resampler
        return media.ulaw_encode(pcm if rs is None else rs.process(pcm))

    def finish(self) -> bytes:
        """The filter tail: the last input's delayed samples (then ready for a new stream)."""
        rs = self._resampler
        return b"" if rs is None else media.ulaw_encode(rs.flush())

    @property
    def latency_ms(self) -> float:
        return 0.0 if self._resampler is None else self._resampler.latency_ms
