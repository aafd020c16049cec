"""Twilio Media Streams: typed control events, message builders and the per-call state machine.

Sans-I/O: nothing here reads a socket or a clock. The server feeds each text message to
`StreamState.receive` together with the event name the Rust hot path
(`voxrelay.media.TwilioInbound.process`) already returned, so media messages (50 per second)
are never parsed twice; control messages are rare and are parsed here with the `json` module.

Telnyx and Exotel send the same shape in snake_case (`stream_id`/`stream_sid`,
`sequence_number`, `media_format`, ...); those spellings are accepted and the event records the
`dialect` that arrived, so the deployment can see which platform is really on the line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Final, Literal, NoReturn, TypeAlias

from voxrelay.protocols.errors import ErrorKind, ProtocolError

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Clear",
    "Connected",
    "ControlEvent",
    "Dialect",
    "Dtmf",
    "Mark",
    "Media",
    "Phase",
    "ProtocolError",
    "Start",
    "Stop",
    "StreamState",
    "TwilioEvent",
    "clear_message",
    "connected_message",
    "dtmf_message",
    "mark_echo_message",
    "mark_message",
    "media_message",
    "parse_control",
    "parse_message",
    "start_message",
    "stop_message",
]

Dialect: TypeAlias = Literal["twilio", "telnyx", "exotel"]
Phase: TypeAlias = Literal["new", "connected", "streaming", "stopped"]

# Same default as the hot path's `max_message_bytes`: a start message with many custom
# parameters is a few KB, so this only stops a peer from making us parse megabytes.
DEFAULT_MAX_MESSAGE_BYTES: Final = 65536

DTMF_DIGITS: Final = frozenset("0123456789*#ABCDabcd")


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str
    _: KW_ONLY
    sequence_number: int | None = None
    dialect: Dialect = "twilio"


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    encoding: str
    sample_rate: int
    channels: int
    # Per-call values from TwiML `<Parameter>`: the only reliable channel for per-call secrets,
    # since Twilio may drop the stream URL's query string.
    custom_parameters: dict[str, str] = field(hash=False)
    _: KW_ONLY
    sequence_number: int | None = None
    dialect: Dialect = "twilio"


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    track: str
    _: KW_ONLY
    stream_sid: str = ""
    sequence_number: int | None = None
    dialect: Dialect = "twilio"


@dataclass(frozen=True, slots=True)
class Mark:
    name: str
    _: KW_ONLY
    stream_sid: str = ""
    sequence_number: int | None = None
    dialect: Dialect = "twilio"


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str
    account_sid: str
    _: KW_ONLY
    stream_sid: str = ""
    sequence_number: int | None = None
    # Exotel says why (`stopped` or `callended`); Twilio and Telnyx do not.
    reason: str = ""
    dialect: Dialect = "twilio"


@dataclass(frozen=True, slots=True)
class Media:
    """A media message parsed in Python: for the simulator side and tests, not the hot path."""

    payload: str
    track: str
    chunk: int | None
    timestamp_ms: int | None
    _: KW_ONLY
    stream_sid: str = ""
    sequence_number: int | None = None
    dialect: Dialect = "twilio"


@dataclass(frozen=True, slots=True)
class Clear:
    """Server-to-platform only; parsed so the simulator can act on it."""

    _: KW_ONLY
    stream_sid: str = ""
    sequence_number: int | None = None
    dialect: Dialect = "twilio"


ControlEvent: TypeAlias = Connected | Start | Dtmf | Mark | Stop
TwilioEvent: TypeAlias = Connected | Start | Dtmf | Mark | Stop | Media | Clear


# --------------------------------------------------------------------------------------------
# Parsing


def _snippet(value: object, limit: int = 60) -> str:
    """repr of a bad value, cut so a hostile megabyte never lands in a log line."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _fail(kind: ErrorKind, message: str) -> NoReturn:
    raise ProtocolError(kind, message)


def _reject_constant(name: str) -> NoReturn:
    _fail("not_json", f"message is not valid JSON: {name} is not a JSON number")


# One decoder for every message: `json.loads` with an argument builds a new one per call, which
# was a sixth of the cost of a mark echo.
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def _load(text: str | bytes | bytearray | memoryview, max_size: int) -> dict[str, Any]:
    if isinstance(text, str):
        # Characters are never more than the UTF-8 bytes; only encode when it could matter.
        size = len(text) if len(text) * 4 <= max_size else len(text.encode("utf-8", "replace"))
    else:
        text = bytes(text)
        size = len(text)
    if size > max_size:
        _fail("too_large", f"message of {size} bytes exceeds the limit of {max_size} bytes")
    if not isinstance(text, str):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = text[e.start : e.start + 8]
            _fail("not_json", f"message is not valid UTF-8 at byte {e.start}: {_snippet(bad)}")
    try:
        obj = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        _fail(
            "not_json",
            f"message is not valid JSON ({e.msg} at char {e.pos}): {_snippet(text)}",
        )
    except RecursionError:
        _fail("not_json", f"message nests too deeply: {_snippet(text)}")
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        _fail("not_object", f"message is a JSON {kind}, not an object: {_snippet(obj)}")
    return obj


_MISSING: Final = object()


def _pick(obj: Mapping[str, Any], keys: Sequence[str]) -> tuple[str, Any]:
    for k in keys:
        if k in obj:
            return k, obj[k]
    return keys[0], _MISSING


def _path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _object(obj: Mapping[str, Any], parent: str, *keys: str) -> dict[str, Any]:
    key, v = _pick(obj, keys)
    if v is _MISSING:
        _fail("missing_field", f"{_path(parent, key)} is missing")
    if not isinstance(v, dict):
        _fail("bad_field", f"{_path(parent, key)} must be an object, got {_snippet(v)}")
    return v


def _opt_str(obj: Mapping[str, Any], parent: str, *keys: str, default: str = "") -> str:
    key, v = _pick(obj, keys)
    if v is _MISSING:
        return default
    if not isinstance(v, str):
        _fail("bad_field", f"{_path(parent, key)} must be a string, got {_snippet(v)}")
    return v


def _str(obj: Mapping[str, Any], parent: str, *keys: str) -> str:
    key, v = _pick(obj, keys)
    if v is _MISSING:
        _fail("missing_field", f"{_path(parent, key)} is missing")
    if not isinstance(v, str):
        _fail("bad_field", f"{_path(parent, key)} must be a string, got {_snippet(v)}")
    return v


def _as_count(v: Any, name: str) -> int:
    """Twilio sends counters as strings, Plivo and Telnyx sometimes as numbers: take both."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    # isdecimal() would also admit non-ASCII digits such as "٣"; the platforms never send those.
    if isinstance(v, str) and 0 < len(v) <= 20 and v.isascii() and v.isdigit():
        return int(v)
    _fail("bad_field", f"{name} must be a non-negative integer or digit string, got {_snippet(v)}")


def _opt_count(obj: Mapping[str, Any], parent: str, *keys: str) -> int | None:
    key, v = _pick(obj, keys)
    if v is _MISSING or v is None:
        return None
    return _as_count(v, _path(parent, key))


def _count(obj: Mapping[str, Any], parent: str, *keys: str) -> int:
    key, v = _pick(obj, keys)
    if v is _MISSING:
        _fail("missing_field", f"{_path(parent, key)} is missing")
    return _as_count(v, _path(parent, key))


def _dialect(obj: Mapping[str, Any]) -> Dialect:
    if "stream_id" in obj:
        return "telnyx"
    if "stream_sid" in obj:
        return "exotel"
    if "sequence_number" in obj:
        return "telnyx"
    return "twilio"


_STREAM_KEYS: Final = ("streamSid", "stream_sid", "stream_id")
_SEQ_KEYS: Final = ("sequenceNumber", "sequence_number")


def _parse_start(obj: dict[str, Any], seq: int | None, dialect: Dialect) -> Start:
    s = _object(obj, "", "start")
    fmt_key = "media_format" if "media_format" in s else "mediaFormat"
    if dialect == "twilio" and fmt_key == "media_format":
        dialect = "telnyx"
    fmt = _object(s, "start", fmt_key)
    fmt_path = f"start.{fmt_key}"
    inner_sid = _opt_str(s, "start", *_STREAM_KEYS)
    outer_sid = _opt_str(obj, "", *_STREAM_KEYS)
    if inner_sid and outer_sid and inner_sid != outer_sid:
        _fail(
            "bad_field",
            f"start.streamSid {_snippet(inner_sid)} differs from streamSid {_snippet(outer_sid)}",
        )
    stream_sid = inner_sid or outer_sid
    if not stream_sid:
        _fail("missing_field", "streamSid is missing or empty")
    call_sid = _str(s, "start", "callSid", "call_sid", "call_control_id")
    # Telnyx has no account in the start message; Twilio always sends one.
    if dialect == "twilio":
        account_sid = _str(s, "start", "accountSid", "account_sid")
    else:
        account_sid = _opt_str(s, "start", "accountSid", "account_sid")
    tracks_v = s.get("tracks", _MISSING)
    if tracks_v is _MISSING:
        tracks: tuple[str, ...] = ("inbound",)
    elif isinstance(tracks_v, list) and all(isinstance(t, str) for t in tracks_v):
        tracks = tuple(tracks_v)
    else:
        _fail("bad_field", f"start.tracks must be a list of strings, got {_snippet(tracks_v)}")
    encoding = _str(fmt, fmt_path, "encoding")
    sample_rate = _count(fmt, fmt_path, "sampleRate", "sample_rate")
    channels_v = _opt_count(fmt, fmt_path, "channels")
    channels = 1 if channels_v is None else channels_v
    pkey, params_v = _pick(s, ("customParameters", "custom_parameters"))
    params: dict[str, str] = {}
    if params_v is not _MISSING and params_v is not None:
        if not isinstance(params_v, dict):
            _fail("bad_field", f"start.{pkey} must be an object, got {_snippet(params_v)}")
        for k, v in params_v.items():
            if not isinstance(v, str):
                _fail("bad_field", f"start.{pkey}.{k} must be a string, got {_snippet(v)}")
            params[k] = v
    return Start(
        stream_sid,
        call_sid,
        account_sid,
        tracks,
        encoding,
        sample_rate,
        channels,
        params,
        sequence_number=seq,
        dialect=dialect,
    )


def parse_message(
    text: str | bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_MESSAGE_BYTES
) -> TwilioEvent:
    """Parse any Twilio-shaped message of either direction.

    Raises ProtocolError whose `kind` says what is wrong and whose message names the bad value.
    """
    obj = _load(text, max_size)
    if "event" not in obj:
        _fail("missing_field", f"event is missing (keys: {_snippet(sorted(obj))})")
    event = obj["event"]
    if not isinstance(event, str):
        _fail("bad_field", f"event must be a string, got {_snippet(event)}")
    dialect = _dialect(obj)
    seq = _opt_count(obj, "", *_SEQ_KEYS)
    if event == "start":
        return _parse_start(obj, seq, dialect)
    stream_sid = _opt_str(obj, "", *_STREAM_KEYS)
    if event == "media":
        m = _object(obj, "", "media")
        return Media(
            _str(m, "media", "payload"),
            _opt_str(m, "media", "track", default="inbound"),
            _opt_count(m, "media", "chunk"),
            _opt_count(m, "media", "timestamp"),
            stream_sid=stream_sid,
            sequence_number=seq,
            dialect=dialect,
        )
    if event == "mark":
        mk = _object(obj, "", "mark")
        name = _str(mk, "mark", "name")
        return Mark(name, stream_sid=stream_sid, sequence_number=seq, dialect=dialect)
    if event == "dtmf":
        d = _object(obj, "", "dtmf")
        digit = _str(d, "dtmf", "digit")
        if digit not in DTMF_DIGITS:
            _fail("bad_field", f"dtmf.digit must be one of 0-9 * # A-D, got {_snippet(digit)}")
        return Dtmf(
            digit,
            _opt_str(d, "dtmf", "track", default="inbound_track"),
            stream_sid=stream_sid,
            sequence_number=seq,
            dialect=dialect,
        )
    if event == "stop":
        st = obj.get("stop", _MISSING)
        if st is _MISSING or st is None:
            st = {}
        elif not isinstance(st, dict):
            _fail("bad_field", f"stop must be an object, got {_snippet(st)}")
        return Stop(
            _opt_str(st, "stop", "callSid", "call_sid", "call_control_id"),
            _opt_str(st, "stop", "accountSid", "account_sid"),
            stream_sid=stream_sid,
            sequence_number=seq,
            reason=_opt_str(st, "stop", "reason"),
            dialect=dialect,
        )
    if event == "connected":
        return Connected(
            _opt_str(obj, "", "protocol"),
            _opt_str(obj, "", "version"),
            sequence_number=seq,
            dialect=dialect,
        )
    if event == "clear":
        return Clear(stream_sid=stream_sid, sequence_number=seq, dialect=dialect)
    _fail("unknown_event", f"unknown event {_snippet(event)}")


def parse_control(
    text: str | bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_MESSAGE_BYTES
) -> ControlEvent:
    """Parse a platform-to-server control message (connected, start, dtmf, mark, stop)."""
    ev = parse_message(text, max_size=max_size)
    if isinstance(ev, Media):
        _fail("unknown_event", "event 'media' is not a control event (the media engine owns it)")
    if isinstance(ev, Clear):
        _fail("unknown_event", "event 'clear' is sent by the server, never by the platform")
    return ev


# --------------------------------------------------------------------------------------------
# Builders: compact JSON in the documented key order, counters as strings as Twilio sends them


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _counter(value: int, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return str(value)


def mark_message(stream_sid: str, name: str) -> str:
    """Server -> platform: ask to be told when everything sent so far has been played."""
    return _dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    """Server -> platform: drop buffered audio (barge-in); pending marks come back at once."""
    return _dumps({"event": "clear", "streamSid": stream_sid})


def connected_message() -> str:
    return _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_message(
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    custom_parameters: Mapping[str, str] | None = None,
    *,
    sequence_number: int = 1,
    tracks: Sequence[str] = ("inbound",),
    encoding: str = "audio/x-mulaw",
    sample_rate: int = 8000,
    channels: int = 1,
) -> str:
    return _dumps(
        {
            "event": "start",
            "sequenceNumber": _counter(sequence_number, "sequence_number"),
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": list(tracks),
                "mediaFormat": {
                    "encoding": encoding,
                    "sampleRate": sample_rate,
                    "channels": channels,
                },
                "customParameters": dict(custom_parameters or {}),
            },
            "streamSid": stream_sid,
        }
    )


def media_message(
    stream_sid: str,
    seq: int,
    chunk: int,
    timestamp_ms: int,
    payload_b64: str,
    *,
    track: str = "inbound",
) -> str:
    """Platform -> server media; `timestamp_ms` counts from the start of the stream."""
    return _dumps(
        {
            "event": "media",
            "sequenceNumber": _counter(seq, "seq"),
            "media": {
                "track": track,
                "chunk": _counter(chunk, "chunk"),
                "timestamp": _counter(timestamp_ms, "timestamp_ms"),
                "payload": payload_b64,
            },
            "streamSid": stream_sid,
        }
    )


def dtmf_message(stream_sid: str, seq: int, digit: str, *, track: str = "inbound_track") -> str:
    if digit not in DTMF_DIGITS:
        raise ValueError(f"digit must be one of 0-9 * # A-D, got {digit!r}")
    return _dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": _counter(seq, "seq"),
            "dtmf": {"track": track, "digit": digit},
        }
    )


def mark_echo_message(stream_sid: str, seq: int, name: str) -> str:
    """Platform -> server: the audio sent before mark `name` has been played."""
    return _dumps(
        {
            "event": "mark",
            "sequenceNumber": _counter(seq, "seq"),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    )


def stop_message(stream_sid: str, seq: int, call_sid: str, account_sid: str) -> str:
    return _dumps(
        {
            "event": "stop",
            "sequenceNumber": _counter(seq, "seq"),
            "stop": {"accountSid": account_sid, "callSid": call_sid},
            "streamSid": stream_sid,
        }
    )


# --------------------------------------------------------------------------------------------
# State machine

_ENCODINGS: Final[dict[str, frozenset[str]]] = {
    "ulaw": frozenset({"audio/x-mulaw", "pcmu"}),
    "alaw": frozenset({"audio/x-alaw", "pcma"}),
}
_WIRE_RATE: Final = 8000


class StreamState:
    """One call's protocol state, server side: `new` -> (`connected`) -> `streaming` -> `stopped`.

    Feed every text message with the event name the media engine returned for it. Media
    messages are only checked against the phase (the engine already decoded them); control
    messages are parsed and checked. Any violation raises ProtocolError and leaves the state as
    it was, so the caller can count the error and decide whether to go on.
    """

    __slots__ = (
        "_codec",
        "_max_size",
        "_phase",
        "_start",
        "media_messages",
    )

    def __init__(
        self,
        *,
        codec: Literal["ulaw", "alaw"] = "ulaw",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if codec not in _ENCODINGS:
            raise ValueError(f"codec {codec!r} is not supported; valid: 'ulaw' or 'alaw'")
        if (
            isinstance(max_message_bytes, bool)
            or not isinstance(max_message_bytes, int)
            or (max_message_bytes < 1)
        ):
            raise ValueError(
                f"max_message_bytes must be a positive integer, got {max_message_bytes!r}"
            )
        self._codec = codec
        self._max_size = max_message_bytes
        self._phase: Phase = "new"
        self._start: Start | None = None
        self.media_messages = 0

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def start(self) -> Start | None:
        return self._start

    @property
    def stream_sid(self) -> str | None:
        return None if self._start is None else self._start.stream_sid

    @property
    def call_sid(self) -> str | None:
        return None if self._start is None else self._start.call_sid

    @property
    def account_sid(self) -> str | None:
        return None if self._start is None else self._start.account_sid

    @property
    def custom_parameters(self) -> Mapping[str, str]:
        return {} if self._start is None else self._start.custom_parameters

    @property
    def dialect(self) -> Dialect | None:
        return None if self._start is None else self._start.dialect

    def receive(
        self, event_name: str, text: str | bytes | bytearray | memoryview
    ) -> ControlEvent | None:
        """Check one text message; returns the parsed control event, or None for media."""
        phase = self._phase
        if event_name == "media":
            if phase == "streaming":
                self.media_messages += 1
                return None
            if phase == "stopped":
                _fail("after_stop", "media message after stop")
            _fail("media_before_start", f"media message before start (phase {phase!r})")
        if phase == "stopped":
            _fail("after_stop", f"{_snippet(event_name)} message after stop")
        ev = parse_message(text, max_size=self._max_size)
        if isinstance(ev, Media):
            # The engine did not see "media" (e.g. an escaped event name), so it never decoded
            # this payload: accepting it would silently drop audio.
            _fail("bad_field", f"media message the engine classified as {_snippet(event_name)}")
        if isinstance(ev, Clear):
            _fail("unknown_event", "event 'clear' is sent by the server, never by the platform")
        start = self._start
        if start is not None and not isinstance(ev, Start | Connected) and ev.stream_sid:
            if ev.stream_sid != start.stream_sid:
                _fail(
                    "bad_field",
                    f"streamSid {_snippet(ev.stream_sid)} does not match this stream's "
                    f"{_snippet(start.stream_sid)}",
                )
        if isinstance(ev, Connected):
            if phase != "new":
                _fail("out_of_order", f"connected message in phase {phase!r}")
            self._phase = "connected"
        elif isinstance(ev, Start):
            if phase == "streaming":
                _fail("out_of_order", f"second start message (stream {_snippet(ev.stream_sid)})")
            self._check_format(ev)
            self._start = ev
            self._phase = "streaming"
        elif isinstance(ev, Stop):
            # A stop may come without a start when the call fails early: always honour it.
            self._phase = "stopped"
        elif phase != "streaming":
            name = "dtmf" if isinstance(ev, Dtmf) else "mark"
            _fail("out_of_order", f"{name} message before start (phase {phase!r})")
        return ev

    def receive_binary(self, data: bytes | bytearray | memoryview) -> NoReturn:
        """Twilio-shaped platforms only send text frames; a binary one is always an error."""
        _fail("binary_frame", f"binary frame of {len(data)} bytes; this protocol uses text frames")

    def mark_message(self, name: str) -> str:
        return mark_message(self._require_sid(), name)

    def clear_message(self) -> str:
        return clear_message(self._require_sid())

    def _require_sid(self) -> str:
        if self._start is None or self._phase != "streaming":
            raise RuntimeError(f"no stream to send to (phase {self._phase!r})")
        return self._start.stream_sid

    def _check_format(self, ev: Start) -> None:
        allowed = _ENCODINGS[self._codec]
        if ev.encoding.lower() not in allowed or ev.sample_rate != _WIRE_RATE or ev.channels != 1:
            _fail(
                "bad_media",
                f"media format {_snippet(ev.encoding)} {ev.sample_rate} Hz {ev.channels} ch is "
                f"not supported; expected {sorted(allowed)[0]} {_WIRE_RATE} Hz mono",
            )
