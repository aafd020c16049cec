"""Per-turn latency records: where the time between "caller stopped" and "caller hears" goes.

One record per caller turn, with every stage as milliseconds after the end of the caller's
speech (the last voiced frame), all on the event loop's clock:

    speech end -> turn decided -> STT final -> LLM first token -> first clause ->
    TTS first audio -> first frame sent -> first frame heard (the platform's mark echo)

The stages overlap by design: speculative transcription means the STT final is usually ready
*before* the turn is decided, and the LLM streams while TTS speaks. So the record also carries
the compute each engine spent on the critical path, and `relay_ms` is what remains: the
relay's own share (scheduling, queues, resampling, pacing), the figure the issue bounds at
30 ms. Records are plain data (`as_dict`) so logs, the `/calls/{sid}/turns` endpoint and the
simulator's waterfall all show the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

__all__ = ["STAGES", "TurnLatency", "format_waterfall"]

STAGES: Final = (
    ("turn_decided_ms", "turn decided"),
    ("stt_final_ms", "STT final"),
    ("llm_first_token_ms", "LLM first token"),
    ("first_clause_ms", "first clause"),
    ("tts_first_audio_ms", "TTS first audio"),
    ("first_frame_sent_ms", "first frame sent"),
    ("first_frame_heard_ms", "first frame heard"),
)
"""Waterfall stages in order: (field, label)."""


@dataclass(slots=True)
class TurnLatency:
    """One caller turn and its reply; times in ms after the caller's speech ended."""

    turn: int
    user_text: str = ""
    reply_text: str = ""
    interrupted: bool = False
    speculative: bool = False
    """The STT final was the transcript made at the pause (no decode after the decision)."""
    turn_wait_ms: float | None = None
    """Deliberate: the silence the turn policy waited for (speech end -> decision)."""
    turn_decided_ms: float | None = None
    stt_final_ms: float | None = None
    llm_first_token_ms: float | None = None
    first_clause_ms: float | None = None
    tts_first_audio_ms: float | None = None
    first_frame_sent_ms: float | None = None
    first_frame_heard_ms: float | None = None
    stt_compute_ms: float = 0.0
    """STT decode time after the decision (0 when the speculative transcript was reused)."""
    llm_compute_ms: float = 0.0
    """Request -> first clause complete (the LLM's time to produce the first clause)."""
    tts_compute_ms: float = 0.0
    """First clause -> its first audio chunk (synthesis of the first sentence)."""

    @property
    def response_ms(self) -> float | None:
        """End of the caller's speech -> first reply frame on the wire."""
        return self.first_frame_sent_ms

    @property
    def relay_ms(self) -> float | None:
        """The relay's own share: the response time minus the deliberate wait and the engines'
        compute on the critical path."""
        if self.first_frame_sent_ms is None or self.turn_wait_ms is None:
            return None
        spent = self.turn_wait_ms + self.stt_compute_ms + self.llm_compute_ms
        return max(0.0, self.first_frame_sent_ms - spent - self.tts_compute_ms)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["response_ms"] = self.response_ms
        d["relay_ms"] = self.relay_ms
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TurnLatency:
        """Inverse of `as_dict` (derived keys ignored); for records read back from JSON."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _ms(v: float | None) -> str:
    return "     -" if v is None else f"{v:6.0f}"


def format_waterfall(records: Iterable[TurnLatency], *, texts: bool = True) -> str:
    """A plain-text waterfall per turn: each stage's time after the end of speech, a bar."""
    lines: list[str] = []
    scale = 40  # ms per bar character
    for r in records:
        head = f"turn {r.turn}"
        if texts:
            head += f": caller {r.user_text!r}"
        lines.append(head)
        if texts and r.reply_text:
            cut = " (interrupted)" if r.interrupted else ""
            lines.append(f"        reply  {r.reply_text!r}{cut}")
        lines.append(f"  {'speech end':<18}{_ms(0.0)} ms |")
        for key, label in STAGES:
            v = getattr(r, key)
            bar = "" if v is None else "#" * max(1, int(max(0.0, v) / scale))
            note = ""
            if key == "stt_final_ms" and r.speculative:
                note = "  (speculative, at the pause)"
            lines.append(f"  {label:<18}{_ms(v)} ms |{bar}{note}")
        relay = r.relay_ms
        lines.append(
            f"  compute: turn wait {_ms(r.turn_wait_ms).strip()} ms, "
            f"STT {r.stt_compute_ms:.0f} ms, LLM {r.llm_compute_ms:.0f} ms, "
            f"TTS {r.tts_compute_ms:.0f} ms; relay {_ms(relay).strip()} ms"
        )
    return "\n".join(lines)
