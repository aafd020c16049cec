"""Server settings: defaults, then a TOML file, then `VOXRELAY_*` variables, then the command line.

One frozen dataclass is the whole configuration, so a session never reads the environment or a
file on its own and a test can build any configuration in one expression. The later sources win
because that is what an operator expects: a file for the deployment, the environment for the
container, a flag for the one-off run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, get_type_hints

from voxrelay.media import TurnDetector
from voxrelay.protocols.twiml import public_ws_url

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX: Final = "VOXRELAY_"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    agent: str = "echo"
    """`echo`, or `package.module:factory` for a callable taking the session."""
    public_url: str | None = None
    """`https://example.com[/base]` as the platform sees us; else Host/X-Forwarded-Proto.
    Checked at startup: an absolute http(s):// or ws(s):// URL; empty in a file or the
    environment means unset."""
    twilio_auth_token: str | None = field(default=None, repr=False)
    """When set, `X-Twilio-Signature` is required on the webhook and the WebSocket upgrade."""
    stream_secret: str | None = field(default=None, repr=False)
    """When set, the TwiML carries it as a `<Parameter>` and `start` must bring it back."""
    stream_secret_param: str = "voxrelay_token"
    allow_insecure_ws: bool = False
    """Let the webhook hand out `ws://` stream URLs (local testing without TLS)."""
    max_message_bytes: int = 65536
    bad_input_max: int = 50
    """More bad messages than this within `bad_input_window_s` closes the call (1007/1008)."""
    bad_input_window_s: float = 1.0
    speech_start_ms: int = 80
    """Caller speech this long (VAD) makes a `SpeechStarted` event."""
    speech_end_ms: int = 500
    """Silence this long after speech ends the utterance (`SpeechEnded`)."""
    barge_in_ms: int = 150
    """Caller speech this long while agent audio plays stops the agent (`clear`)."""
    preroll_ms: int = 200
    """Audio kept before the detected onset, so the utterance's first syllable is not cut."""
    max_utterance_ms: int = 30000
    playout_lead_ms: int = 100
    """How far outbound audio may run ahead of what the caller hears."""
    playout_low_ms: int = 40
    """The pacer tops up when the lead falls to this; lower means more wake-ups per second."""
    mark_interval_ms: int = 500
    """Longest stretch of agent audio between two marks (finer barge-in accounting)."""
    # -- conversation agent (`--agent conversation`) -------------------------------------------
    stt: str = "whisper-local"
    """Speech-to-text engine; `voxrelay serve --help` lists the registered ones."""
    llm: str = "scripted"
    tts: str = "piper-local"
    llm_script: str | None = None
    """TOML script for the `scripted` LLM (the bundled restaurant demo when unset)."""
    system_prompt: str = (
        "You are a friendly phone assistant. Answer in one or two short spoken sentences."
    )
    greeting: str | None = None
    """Said when the call starts; unset asks the LLM (the scripted one has a greeting)."""
    turn_complete_ms: int = 250
    """Silence that ends a turn whose transcript reads as a finished sentence."""
    turn_incomplete_ms: int = 1200
    """Silence tolerated when the transcript ends mid-phrase ("and", "um", "at 7")."""
    turn_default_ms: int = 600
    """Silence for transcripts the classifier cannot call either way."""
    turn_pause_ms: int = 160
    """A pause this long triggers the speculative transcript that feeds the turn decision."""
    interrupt_min_ms: int = 600
    """Sustained caller speech that interrupts the agent (longer than a backchannel)."""
    interrupt_min_words: int = 1
    """A shorter utterance interrupts when it has this many words besides backchannels."""
    backchannels: str = "mhm,mm,hmm,uh-huh,mm-hmm,yeah,yep,yes,okay,ok,right,sure,alright,uh"
    """Comma-separated words that never interrupt the agent ("mhm", "okay")."""
    reprompt_after_s: float = 8.0
    """Caller silence after the agent finished speaking before it asks again (0: never)."""
    hangup_after_s: float = 10.0
    """Further silence after the re-prompt before a polite goodbye and hang-up (0: never)."""
    reprompt_text: str = "Are you still there?"
    goodbye_text: str = "I haven't heard from you, so I'll hang up now. Goodbye!"
    idle_timeout_s: float = 10.0
    """A call that sends nothing for this long is closed (a peer gone without a FIN); > 0."""
    drain_timeout_s: float = 10.0
    """On SIGTERM/SIGINT, live calls get this long to end before they are closed with 1001."""
    ping_interval_s: float | None = 20.0
    """WebSocket keepalive ping period, also the wait for its pong; > 0, or None for no pings."""
    open_timeout_s: float = 10.0
    """Time a new connection gets to finish its opening handshake; > 0."""
    max_http_body_bytes: int = 65536
    turn_records_texts: bool = False
    """Include what the caller said and the reply text in `GET /calls/{sid}/turns`. Off by
    default: transcripts are personal data, the timings are what monitoring needs."""
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        for name in ("bad_input_window_s", "idle_timeout_s", "ping_interval_s", "open_timeout_s"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                # 0 is not "off" here: it would close every call at once.
                off = " (or none to switch pings off)" if name == "ping_interval_s" else ""
                raise ValueError(f"{name} must be a finite number of seconds > 0{off}, got {v!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or v is None or isinstance(v, str):
                continue
            if isinstance(v, int | float) and (not math.isfinite(v) or v < 0):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {v!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        for name in ("max_message_bytes", "bad_input_max", "max_http_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        # The pacer counts the frame the platform is playing as unheard, so the lead must hold
        # it and at least one more.
        if not 40 <= self.playout_lead_ms <= 1000:
            raise ValueError(f"playout_lead_ms must be 40..1000, got {self.playout_lead_ms}")
        if not 0 <= self.playout_low_ms < self.playout_lead_ms:
            raise ValueError(
                f"playout_low_ms must be 0..playout_lead_ms-1 ({self.playout_lead_ms - 1}), "
                f"got {self.playout_low_ms}"
            )
        if self.mark_interval_ms < 20:
            raise ValueError(f"mark_interval_ms must be >= 20, got {self.mark_interval_ms}")
        if self.speech_end_ms < 20:
            raise ValueError(f"speech_end_ms must be >= 20, got {self.speech_end_ms}")
        if not 20 <= self.turn_complete_ms <= self.turn_default_ms <= self.turn_incomplete_ms:
            raise ValueError(
                "turn timing must satisfy 20 <= turn_complete_ms <= turn_default_ms <= "
                f"turn_incomplete_ms, got {self.turn_complete_ms}, {self.turn_default_ms}, "
                f"{self.turn_incomplete_ms}"
            )
        if not 20 <= self.turn_pause_ms < self.turn_complete_ms:
            raise ValueError(
                f"turn_pause_ms must be 20..turn_complete_ms-1 ({self.turn_complete_ms - 1}), "
                f"got {self.turn_pause_ms}"
            )
        if self.interrupt_min_ms < 20:
            raise ValueError(f"interrupt_min_ms must be >= 20, got {self.interrupt_min_ms}")
        self._check_turn_timing()
        if self.stream_secret == "" or self.twilio_auth_token == "":
            # An empty secret would silently accept anyone: refuse rather than guess.
            raise ValueError("stream_secret and twilio_auth_token must be unset or non-empty")
        if self.public_url is not None:
            # Checked once here, not at each webhook: a bad one would refuse every call.
            try:
                public_ws_url({}, "/", self.public_url)
            except ValueError as e:
                raise ValueError(
                    f"public_url {self.public_url!r} must be an absolute http(s):// or "
                    "ws(s):// URL such as https://voice.example.com (or unset)"
                ) from e

    def turn_detector(self, rate: int) -> TurnDetector:
        """A call's turn detector at `rate`, with these settings' timings."""
        return TurnDetector(
            rate=rate,
            start_ms=self.speech_start_ms,
            end_ms=self.speech_end_ms,
            barge_in_ms=self.barge_in_ms,
            preroll_ms=self.preroll_ms,
            max_utterance_ms=self.max_utterance_ms,
        )

    def _check_turn_timing(self) -> None:
        """The media engine's own limits on the timings each call's turn detector gets (at
        the call's start, and from the conversation agent): checked once here by building one,
        so that a setting past them stops `serve` instead of failing every call."""

        def named(e: ValueError, names: dict[str, str]) -> ValueError:
            text = str(e)
            for param, setting in names.items():
                if text.startswith(param + " "):
                    text = setting + text[len(param) :]
            return ValueError(text)

        try:
            det = self.turn_detector(16000)
        except ValueError as e:
            raise named(e, {"start_ms": "speech_start_ms", "end_ms": "speech_end_ms"}) from e
        try:
            det.configure(
                end_ms=self.turn_incomplete_ms,
                pause_ms=self.turn_pause_ms,
                barge_in_ms=self.interrupt_min_ms,
            )
        except ValueError as e:
            names = {
                "end_ms": "turn_incomplete_ms",
                "pause_ms": "turn_pause_ms",
                "barge_in_ms": "interrupt_min_ms",
            }
            raise named(e, names) from e

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_HINTS: Final[dict[str, Any]] = get_type_hints(Settings)
_FIELDS: Final = frozenset(f.name for f in fields(Settings))
_EMPTY_KEPT: Final = frozenset({"twilio_auth_token", "stream_secret", "greeting"})
"""Optional strings whose empty value is not read as unset: an empty secret is refused by
`Settings` rather than silently switching the check off, and an empty greeting is silence."""


def _convert(name: str, raw: Any, source: str) -> Any:
    """Coerce one value from a file or the environment to the field's declared type."""
    hint = _HINTS[name]
    optional = type(None) in getattr(hint, "__args__", ())
    base = next((a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)), hint)
    if base is str:
        if raw is None and optional:
            return None
        if not isinstance(raw, str):
            raise ValueError(f"{source}: {name} must be a string, got {raw!r}")
        if optional and not raw.strip() and name not in _EMPTY_KEPT:
            return None  # `VOXRELAY_PUBLIC_URL=` is how an environment leaves a value unset
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        if optional and text.lower() in ("", "none", "null"):
            return None
        if base is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{source}: {name} must be true or false, got {raw!r}")
        try:
            return base(text)
        except ValueError:
            raise ValueError(
                f"{source}: {name} must be {'an integer' if base is int else 'a number'}, "
                f"got {raw!r}"
            ) from None
    if base is bool:
        if not isinstance(raw, bool):
            raise ValueError(f"{source}: {name} must be true or false, got {raw!r}")
        return raw
    if base is float and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if base is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    raise ValueError(f"{source}: {name} has the wrong type: {raw!r}")


def load_settings(
    *,
    config: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults < TOML `config` (top level or a `[voxrelay]` table) < env < overrides.

    Unknown keys are errors, not warnings: a misspelt `twilio_auth_tokn` must not silently
    disable signature checks.
    """
    values: dict[str, Any] = {}
    if config is not None:
        path = Path(config)
        with path.open("rb") as f:
            doc = tomllib.load(f)
        table = doc.get("voxrelay", doc)
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [voxrelay] must be a table")
        for k, v in table.items():
            key = k.replace("-", "_")
            if key not in _FIELDS:
                raise ValueError(
                    f"{path}: unknown setting {k!r}; valid: {', '.join(sorted(_FIELDS))}"
                )
            values[key] = _convert(key, v, str(path))
    environ = os.environ if env is None else env
    for k, v in environ.items():
        if not k.startswith(ENV_PREFIX) or k == "VOXRELAY_CONFIG":
            continue
        key = k[len(ENV_PREFIX) :].lower()
        if key not in _FIELDS:
            raise ValueError(
                f"unknown environment setting {k}; valid: VOXRELAY_<SETTING> for "
                f"{', '.join(sorted(_FIELDS))}"
            )
        values[key] = _convert(key, v, k)
    for k, v in (overrides or {}).items():
        if k not in _FIELDS:
            raise ValueError(f"unknown setting {k!r}")
        if v is not None:
            values[k] = v
    return Settings(**values)
