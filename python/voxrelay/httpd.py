"""Plain HTTP next to the WebSocket on one port: the Twilio webhook, health, signatures.

`websockets` parses only body-less requests (it answers anything with a body by dropping the
connection), but Twilio's call webhook is a form POST. Rather than a second port or a second
framework, each new connection's request line is sniffed: `GET` goes to `websockets` untouched
(upgrades, and `GET /healthz` via `process_request`); any other method is handed to `h11`, a
small, strict, well-kept HTTP/1.1 parser, for one request and a `Connection: close` answer.
The hook is `websockets`' documented `create_connection` (a `ServerConnection` subclass).

`GET /calls/{call_sid}/turns` serves the per-turn latency records of a finished call (see
`RelayHttp.turns`): monitoring, and the simulator's waterfall, read them back over the same port.

The same subclass also reads WebSocket data frames itself (see `RelayConnection`). That part
overrides two undocumented methods of the asyncio connection (`data_received`,
`process_event`) and uses the documented sans-I/O protocol object for everything else, so the
dependency is bounded to the `websockets` major versions it was tested with.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

import h11
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State

from voxrelay.media import TurnDetector, TwilioInbound, WsReader
from voxrelay.protocols.signature import validate
from voxrelay.protocols.twiml import connect_stream_twiml, public_ws_url
from voxrelay.settings import Settings

__all__ = [
    "FrameSink",
    "HttpReply",
    "RelayConnection",
    "RelayHttp",
    "TurnRecordSource",
    "connection_class",
    "public_http_url",
]

log = logging.getLogger("voxrelay.http")

STREAM_PATH: Final = "/twilio"
VOICE_PATH: Final = "/twilio/voice"
HEALTH_PATH: Final = "/healthz"
TURNS_PATH: Final = re.compile(r"/calls/([A-Za-z0-9_-]{1,64})/turns")
MAX_TURNS_WAIT_S: Final = 10.0
_SNIFF_MAX: Final = 16  # longer than any method name
# RFC 6455: a close frame's reason is at most 123 bytes of UTF-8.
_MAX_REASON_BYTES: Final = 123


def close_reason(reason: str) -> str:
    """`reason` cut to what a close frame can carry, on a character boundary."""
    data = reason.encode("utf-8", "replace")  # a lone surrogate (which cannot be sent) -> "?"
    if len(data) <= _MAX_REASON_BYTES:
        return data.decode("utf-8")
    return data[:_MAX_REASON_BYTES].decode("utf-8", "ignore")


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


def _text(status: int, text: str) -> HttpReply:
    return HttpReply(status, text.encode())


def public_http_url(headers: Mapping[str, str], target: str, configured: str | None) -> str:
    """The https:// URL a platform used to reach `target` here (what Twilio signs)."""
    ws = public_ws_url(headers, target, configured, default_scheme="https")
    return "https" + ws[3:] if ws.startswith("wss:") else "http" + ws[2:]


class TurnRecordSource(Protocol):
    """Where finished calls' turn records live (the server); see `RelayServer.turn_records`."""

    async def turn_records(
        self, call_sid: str, wait_s: float = 0.0
    ) -> list[dict[str, object]] | Literal["live", "unknown"]: ...


def _public_record(record: Mapping[str, object], texts: bool) -> dict[str, object]:
    """A record as served: without free text unless enabled, and valid JSON (no NaN)."""
    out: dict[str, object] = {}
    for k, v in record.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if texts or v is None or isinstance(v, bool | int | float):
            out[k] = v
    return out


class RelayHttp:
    """The HTTP side of the relay: request -> reply, no I/O of its own (the turn records may
    wait for a call to end)."""

    def __init__(
        self,
        settings: Settings,
        is_serving: Callable[[], bool] | None = None,
        turns: TurnRecordSource | None = None,
    ) -> None:
        self.settings = settings
        self._is_serving = is_serving or (lambda: True)
        self._turns = turns

    def _signature_ok(self, url: str, params: Mapping[str, str], sig: str | None) -> bool:
        token = self.settings.twilio_auth_token
        if token is None:
            return True
        return sig is not None and validate(token, url, params, sig)

    def voice(
        self, method: str, target: str, headers: Mapping[str, str], form: Mapping[str, str]
    ) -> HttpReply:
        """Twilio's call webhook: answer with `<Connect><Stream>` to our WebSocket (503 while
        draining, so the platform tries its fallback rather than a stream we would refuse)."""
        s = self.settings
        if not self._is_serving():
            return _text(503, "draining\n")
        try:
            url = public_http_url(headers, target, s.public_url)
        except ValueError as e:
            return _text(400, f"{e}\n")
        sig = _get(headers, "X-Twilio-Signature")
        if not self._signature_ok(url, form, sig):
            log.warning("webhook %s %s: bad or missing X-Twilio-Signature", method, target)
            return _text(403, "invalid X-Twilio-Signature\n")
        params = {s.stream_secret_param: s.stream_secret} if s.stream_secret else {}
        try:
            ws_url = public_ws_url(headers, STREAM_PATH, s.public_url)
            twiml = connect_stream_twiml(ws_url, params, allow_insecure=s.allow_insecure_ws)
        except ValueError as e:
            log.error("webhook: cannot build the stream URL: %s", e)
            return _text(500, f"{e}\n")
        return HttpReply(200, twiml.encode(), "text/xml; charset=utf-8")

    async def turns(self, call_sid: str, query: Mapping[str, str]) -> HttpReply:
        """`GET /calls/{call_sid}/turns[?wait=S][&token=T]`: the call's per-turn records.

        With `wait`, a live call is waited for (on its end, not by polling) so a client that
        just hung up gets the records in one request. The records carry the caller's words
        and the reply, so by default only timings, counts and flags are served
        (`turn_records_texts` adds the texts), and with a `stream_secret` the caller must know
        it: the same secret that admits a stream admits its records.
        """
        s = self.settings
        if s.stream_secret is not None:
            given = query.get("token", "")
            if not hmac.compare_digest(given.encode(), s.stream_secret.encode()):
                return _text(403, "missing or wrong token\n")
        raw = query.get("wait", "0")
        try:
            wait = float(raw)
        except ValueError:
            wait = math.nan
        if not 0 <= wait <= MAX_TURNS_WAIT_S:
            return _text(400, f"wait must be 0..{MAX_TURNS_WAIT_S:g} seconds, got {raw!r}\n")
        if self._turns is None:
            return _text(404, "no turn records here\n")
        # websockets' open_timeout covers this handler: answer before it cuts the connection.
        if s.open_timeout_s > 0:
            wait = min(wait, max(0.0, s.open_timeout_s - 1.0))
        found = await self._turns.turn_records(call_sid, wait)
        if found == "unknown":
            return _text(404, "unknown call\n")
        if found == "live":
            return _text(409, "call still in progress\n")
        texts = s.turn_records_texts
        body = {"call_sid": call_sid, "turns": [_public_record(r, texts) for r in found]}
        return HttpReply(
            200, json.dumps(body, default=str).encode(), "application/json; charset=utf-8"
        )

    def handle_body_request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> HttpReply:
        """Requests that `websockets` cannot take (anything but GET)."""
        path = urlsplit(target).path
        if path == VOICE_PATH:
            if method != "POST":
                return _text(405, "use POST or GET\n")
            ctype = _get(headers, "Content-Type") or ""
            if "application/x-www-form-urlencoded" not in ctype.lower():
                return _text(415, "expected application/x-www-form-urlencoded\n")
            try:
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except (UnicodeDecodeError, ValueError):
                return _text(400, "form body is not valid UTF-8 urlencoded data\n")
            return self.voice(method, target, headers, form)
        if path in (HEALTH_PATH, STREAM_PATH) or TURNS_PATH.fullmatch(path):
            return _text(405, "method not allowed\n")
        return _text(404, "not found\n")

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """`websockets` hook for GET requests: health, GET webhooks, upgrade signatures, turn
        records. A coroutine (websockets >= 13 awaits it) because the records may wait."""
        target = request.path
        path = urlsplit(target).path
        headers = request.headers
        if path == STREAM_PATH:
            if not self._is_serving():
                return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            if self.settings.twilio_auth_token is not None:
                try:
                    url = public_ws_url(headers, target, self.settings.public_url)
                except ValueError:
                    url = ""
                if not url or not self._signature_ok(url, {}, headers.get("X-Twilio-Signature")):
                    log.warning("upgrade %s: bad or missing X-Twilio-Signature", target)
                    return connection.respond(http.HTTPStatus.FORBIDDEN, "invalid signature\n")
            return None
        if path == HEALTH_PATH:
            if not self._is_serving():
                return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path == VOICE_PATH:
            reply = self.voice("GET", target, headers, {})
            return _response(reply)
        m = TURNS_PATH.fullmatch(path)
        if m is not None:
            query = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
            return _response(await self.turns(m.group(1), query))
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")


def _get(headers: Mapping[str, str], name: str) -> str | None:
    v = headers.get(name)
    if v is not None:
        return v
    low = name.lower()
    for k, v in headers.items():
        if k.lower() == low:
            return v
    return None


def _response(reply: HttpReply) -> Response:
    status = http.HTTPStatus(reply.status)
    h = Headers()
    h["Content-Type"] = reply.content_type
    h["Content-Length"] = str(len(reply.body))
    h["Connection"] = "close"
    return Response(status.value, status.phrase, h, reply.body)


_WS: Final = 1
_HTTP: Final = 2
_EARLY_FRAMES: Final = 256
_MAX_REQUEST: Final = 16384  # a handshake request's head; websockets enforces its own limits
_MAX_PIPELINED: Final = 65536
_NO_LIMIT: Final = 1 << 62
# Item kinds of `WsReader.next` beyond the data opcodes 0, 1, 2; those from _MEDIA up went
# through the call's inbound path.
_CONTROL: Final = 8
_MEDIA: Final = 16
_EVENT: Final = 17
_ERROR: Final = 18
_TURN: Final = 19


class FrameSink(Protocol):
    """Receives whole data messages straight from `data_received` (the call's session)."""

    def on_text(self, data: bytes | bytearray | memoryview) -> None: ...
    def on_binary(self, data: bytes | bytearray | memoryview) -> None: ...
    # While the connection's `media_inbound` is set, whole text frames arrive already run
    # through it: as PCM for media, as (event, raw message) otherwise, or as the error text.
    def on_media(self, pcm: bytes, speech: bool | None) -> None: ...
    def on_event(self, event: str, data: bytes) -> None: ...
    def on_frame_error(self, text: str) -> None: ...
    # With `media_turns` set too, media PCM goes on into that detector inside the reader, and
    # only frames that raised flags (or, with `media_audio`, frames of an open utterance)
    # arrive here; the rest are counted in `media_frames`.
    def on_turn_frame(self, pcm: bytes, flags: int) -> None: ...


class RelayConnection(ServerConnection):
    """A `ServerConnection` that serves non-GET HTTP via h11 and reads data frames itself.

    Departures from the stock connection, all behind `websockets`' documented extension points
    (`create_connection`, the sans-I/O `protocol`):

    - the request line is sniffed; anything but GET goes to `app` through h11;
    - after the handshake, data frames (text, binary, continuation) are parsed by the media
      engine's `WsReader` and whole messages go straight to the attached sink from
      `data_received`: no message queue, no `recv()` future and no generator-based parsing per
      20 ms frame, which is where most of a call's CPU went. While the session is streaming,
      the reader also runs each text frame through the call's `TwilioInbound`, so a media
      message costs one Rust call from socket bytes to PCM and VAD decision. Every control
      frame (ping, pong, close), anything malformed (reserved bits, unmasked, oversized) and
      everything after the connection leaves OPEN is handed, byte for byte and on a frame
      boundary, to `websockets`, which answers and fails connections exactly as it always
      does. Frames a client pipelines behind its handshake request wait (bounded) for the
      upgrade to finish.
    - messages that arrive before the session attaches are held (bounded) and replayed.
    """

    app: ClassVar[RelayHttp]
    _mode = 0
    _sniffed = b""
    _h11: h11.Connection | None = None
    _req: h11.Request | None = None
    _body: bytearray | None = None
    sink: FrameSink | None = None
    _early: list[tuple[int, bool, bytes | bytearray | memoryview]] | None = None
    _detached = False
    _frag_op = 0
    _frag: bytearray | None = None
    _close_task: asyncio.Task[None] | None = None
    _reader: WsReader | None = None  # None before the upgrade and on the stock websockets path
    media_inbound: TwilioInbound | None = None
    """Set by the attached sink while media may flow: whole text frames then go through this
    inbound hot path inside the frame reader, and media reaches the sink as PCM."""
    media_turns: TurnDetector | None = None
    media_audio = False
    _media_done = 0

    # -- WebSocket frames -------------------------------------------------------------------

    def attach(self, sink: FrameSink) -> None:
        self.sink = sink
        early, self._early = self._early, None
        for op, fin, data in early or ():
            self._data_frame(op, fin, data)
        reader = self._reader
        if reader is not None and reader.pending:
            self._ws_data(b"")  # frames that were pipelined behind the handshake

    def detach(self) -> None:
        self.sink = None
        self.media_inbound = None
        self.media_turns = None
        self._detached = True
        self._early = None

    def process_event(self, event: Event) -> None:
        """Events from `websockets`' own parser (the stock path, and control frames)."""
        if self.request is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake request
            return
        op = event.opcode
        if op is Opcode.TEXT or op is Opcode.BINARY or op is Opcode.CONT:
            self._data_frame(op.value, event.fin, event.data)
            return
        super().process_event(event)  # pong acknowledgements

    def _ws_data(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:  # the stock path
            super().data_received(data)
            return
        reader.feed(data)
        state = self.protocol.state
        if state is State.OPEN:
            self._drain(reader)
        elif state is State.CONNECTING:
            # Frames pipelined behind the handshake: hold them until the upgrade is done.
            if reader.pending > _MAX_PIPELINED:
                self._handoff(reader.take_rest())
        else:
            self._handoff(reader.take_rest())

    def _drain(self, reader: WsReader) -> None:
        """Deliver every whole frame the reader holds. The connection is OPEN on entry; only
        what a frame runs here (websockets on a control frame, a handler) can change that, so
        the state is checked after each delivered item. Media frames that change nothing are
        consumed inside `reader.next`, so a typical read costs one call that returns None."""
        proto = self.protocol
        while True:
            try:
                item = reader.next(self.media_inbound, self.media_turns, self.media_audio)
            except Exception:  # a bug in the media engine ends this call, not the server
                self._failed()
                return
            if item is None:
                return
            kind, a, b = item
            if kind >= _MEDIA:
                # Through the call's inbound path: only while a sink is attached.
                sink = self.sink
                assert sink is not None
                try:
                    if kind == _TURN:
                        sink.on_turn_frame(a, b)
                    elif kind == _MEDIA:
                        sink.on_media(a, b)
                    elif kind == _EVENT:
                        sink.on_event(b, a)
                    else:
                        sink.on_frame_error(b)
                except Exception:
                    self._failed()
            elif 0 <= kind <= 2:
                self._data_frame(kind, b, a)
            elif kind == _CONTROL:
                # Ping, pong, close: websockets answers them. Handing over exactly the frame's
                # bytes keeps websockets' parser on a frame boundary and the fast path for what
                # follows.
                super().data_received(a)
            else:  # reserved bits or opcode, unmasked, oversized: websockets fails the connection
                self._handoff(a)
                return
            if proto.state is not State.OPEN:
                self._handoff(reader.take_rest())
                return

    @property
    def media_frames(self) -> int:
        """Media messages the frame reader ran through `media_inbound` (the session counts
        the rest)."""
        reader = self._reader
        return self._media_done + (reader.media if reader is not None else 0)

    def _handoff(self, rest: bytes) -> None:
        """A control frame websockets must judge, something malformed, or the connection is
        closing: from here on websockets parses everything, starting on a frame boundary."""
        self._media_done = self.media_frames
        self._reader = None
        self.media_inbound = None
        self.media_turns = None
        if rest:
            super().data_received(rest)

    def _failed(self) -> None:
        # A bug in one call must not reach the transport (which would drop it without a
        # close frame) or anything else: end that call with 1011 and keep serving.
        log.exception("call failed while handling a message")
        self._end(1011, "internal error")

    def _end(self, code: int, reason: str) -> None:
        """Stop delivering messages and close with `code`."""
        call = getattr(self.sink, "call_sid", "-")
        self._frag = None
        self.detach()
        self.close_soon(code, reason, call)

    def close_soon(self, code: int, reason: str, call: str) -> None:
        """Start the closing handshake from a callback (once per connection; the task is kept,
        not dropped), with `reason` cut to what a close frame can carry."""
        if self._close_task is None:
            task = self._close_task = self.loop.create_task(self.close(code, close_reason(reason)))
            task.add_done_callback(lambda t: self._close_done(t, call))

    def _close_done(self, task: asyncio.Task[None], call: str) -> None:
        """The closing handshake could not even start: drop the connection (logged once; there
        is one close task per connection), or the call (and anyone awaiting its `hangup`)
        would wait for a close that never comes."""
        if task.cancelled():
            return
        e = task.exception()
        if e is None:
            return
        log.warning("call %s: close failed (%r); dropping the connection", call, e)
        self.transport.abort()

    def _bad_frames(self, code: int, reason: str) -> None:
        """Data frames that break RFC 6455's fragmentation rules (or the size limit): the
        stream can no longer be read reliably, so the connection fails with `code`, as
        `websockets` fails it when it parses frames itself. Logged once: nothing is delivered
        after it."""
        call = getattr(self.sink, "call_sid", "-")
        log.warning("call %s: %s; closing with %d", call, reason, code)
        self._end(code, reason)

    def _data_frame(self, op: int, fin: bool, data: bytes | bytearray | memoryview) -> None:
        if self.sink is None:
            if not self._detached:
                early = self._early
                if early is None:
                    early = self._early = []
                if len(early) < _EARLY_FRAMES:
                    early.append((op, fin, data))
            return
        if op == 0:  # continuation
            frag = self._frag
            if frag is None:
                self._bad_frames(1002, "unexpected continuation frame")
                return
            frag += data
            limit = self.protocol.max_message_size
            if limit is not None and len(frag) > limit:
                self._bad_frames(1009, f"message too big: over {limit} bytes in fragments")
                return
            if not fin:
                return
            op, data = self._frag_op, bytes(frag)
            self._frag = None
        elif self._frag is not None:
            self._bad_frames(1002, "expected a continuation frame")
            return
        elif not fin:
            self._frag_op, self._frag = op, bytearray(data)
            return
        sink = self.sink
        try:
            if op == 1:
                sink.on_text(data)
            else:
                sink.on_binary(data)
        except Exception:
            self._failed()

    # -- plain HTTP -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        mode = self._mode
        if mode == _WS:
            self._ws_data(data)
            return
        if mode == _HTTP:
            self._http_data(data)
            return
        buf = self._sniffed + data
        space = buf.find(b" ", 0, _SNIFF_MAX)
        if space < 0 and len(buf) < _SNIFF_MAX:
            self._sniffed = buf
            return
        if space >= 0 and buf[:space] != b"GET":
            self._sniffed = b""
            self._mode = _HTTP
            self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
            self._http_data(buf)
            return
        end = buf.find(b"\r\n\r\n") if space >= 0 else -1
        if end < 0 and space >= 0 and len(buf) <= _MAX_REQUEST:
            self._sniffed = buf  # the rest of the GET request is still on its way
            return
        self._sniffed = b""
        self._mode = _WS
        if end < 0:
            # Garbage or an oversized request: websockets rejects it in its own words.
            super().data_received(buf)
            return
        # websockets gets exactly the request; anything after it is ours to parse.
        self._reader = WsReader(self.protocol.max_message_size or _NO_LIMIT)
        self._reader.feed(buf[end + 4 :])
        super().data_received(buf[: end + 4])

    def eof_received(self) -> None:
        if self._mode == _HTTP:
            self._http_data(b"")
            return
        super().eof_received()

    def _http_data(self, data: bytes) -> None:
        conn = self._h11
        if conn is None or self.transport.is_closing():
            return
        app = self.app
        limit = app.settings.max_http_body_bytes
        try:
            conn.receive_data(data)
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA or ev is h11.PAUSED:
                    return
                if isinstance(ev, h11.Request):
                    self._req = ev
                    self._body = bytearray()
                    length = _header_value(ev.headers, b"content-length")
                    if length is not None and length.isdigit() and int(length) > limit:
                        self._http_reply(_text(413, "request body too large\n"))
                        return
                elif isinstance(ev, h11.Data):
                    assert self._body is not None
                    self._body += ev.data
                    if len(self._body) > limit:
                        self._http_reply(_text(413, "request body too large\n"))
                        return
                elif isinstance(ev, h11.EndOfMessage):
                    req = self._req
                    assert req is not None and self._body is not None
                    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in req.headers}
                    try:
                        reply = app.handle_body_request(
                            req.method.decode("ascii"),
                            req.target.decode("ascii"),
                            headers,
                            bytes(self._body),
                        )
                    except Exception:
                        log.exception("HTTP handler failed")
                        reply = _text(500, "internal error\n")
                    self._http_reply(reply)
                    return
                elif isinstance(ev, h11.ConnectionClosed):
                    self.transport.close()
                    return
        except h11.RemoteProtocolError as e:
            self._http_reply(_text(e.error_status_hint, f"bad request: {e}\n"))

    def _http_reply(self, reply: HttpReply) -> None:
        conn = self._h11
        assert conn is not None
        try:
            phrase = http.HTTPStatus(reply.status).phrase.encode()
            out = conn.send(
                h11.Response(
                    status_code=reply.status,
                    reason=phrase,
                    headers=[
                        ("Content-Type", reply.content_type),
                        ("Content-Length", str(len(reply.body))),
                        ("Connection", "close"),
                    ],
                )
            )
            out = (out or b"") + (conn.send(h11.Data(data=reply.body)) or b"")
            out += conn.send(h11.EndOfMessage()) or b""
            self.transport.write(out)
        except h11.LocalProtocolError:
            # h11 will not answer a request it could not parse at all: say so by hand.
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        # One request per connection: the webhook is one POST per call.
        self.transport.close()


def connection_class(app: RelayHttp) -> type[RelayConnection]:
    """`RelayConnection` bound to `app`, for `serve(create_connection=...)`."""
    return type("BoundRelayConnection", (RelayConnection,), {"app": app})


def _header_value(headers: Any, name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return str(v.decode("latin-1"))
    return None
