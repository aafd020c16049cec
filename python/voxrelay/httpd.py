"""Plain HTTP next to the WebSocket on one port: the Twilio webhook, health, signatures.

`websockets` parses only body-less requests (it answers anything with a body by dropping the
connection), but Twilio's call webhook is a form POST. Rather than a second port or a second
framework, each new connection's request line is sniffed: `GET` goes to `websockets` untouched
(upgrades, and `GET /healthz` via `process_request`); any other method is handed to `h11`, a
small, strict, well-kept HTTP/1.1 parser, for one request and a `Connection: close` answer.
The hook is `websockets`' documented `create_connection` (a `ServerConnection` subclass), so no
private API is touched and the WebSocket path costs nothing extra once the first bytes are in.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol
from urllib.parse import parse_qsl, urlsplit

import h11
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event

from voxrelay.protocols.signature import validate
from voxrelay.protocols.twiml import connect_stream_twiml, public_ws_url
from voxrelay.settings import Settings

__all__ = [
    "FrameSink",
    "HttpReply",
    "RelayConnection",
    "RelayHttp",
    "connection_class",
    "public_http_url",
]

log = logging.getLogger("voxrelay.http")

STREAM_PATH: Final = "/twilio"
VOICE_PATH: Final = "/twilio/voice"
HEALTH_PATH: Final = "/healthz"
_SNIFF_MAX: Final = 16  # longer than any method name


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


class RelayHttp:
    """The HTTP side of the relay: pure functions of request -> reply, no I/O."""

    def __init__(self, settings: Settings, is_serving: Callable[[], bool] | None = None) -> None:
        self.settings = settings
        self._is_serving = is_serving or (lambda: True)

    def _signature_ok(self, url: str, params: Mapping[str, str], sig: str | None) -> bool:
        token = self.settings.twilio_auth_token
        if token is None:
            return True
        return sig is not None and validate(token, url, params, sig)

    def voice(
        self, method: str, target: str, headers: Mapping[str, str], form: Mapping[str, str]
    ) -> HttpReply:
        """Twilio's call webhook: answer with `<Connect><Stream>` to our WebSocket."""
        s = self.settings
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
        if path in (HEALTH_PATH, STREAM_PATH):
            return _text(405, "method not allowed\n")
        return _text(404, "not found\n")

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """`websockets` hook for GET requests: health, GET webhooks, upgrade signatures."""
        target = request.path
        path = urlsplit(target).path
        headers = request.headers
        if path == STREAM_PATH:
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


class FrameSink(Protocol):
    """Receives whole data messages straight from `data_received` (the call's session)."""

    def on_text(self, data: bytes | bytearray | memoryview) -> None: ...
    def on_binary(self, data: bytes | bytearray | memoryview) -> None: ...


class RelayConnection(ServerConnection):
    """A `ServerConnection` that serves non-GET HTTP via h11 and dispatches frames directly.

    Two departures from the stock connection, both behind documented extension points
    (`create_connection`, the sans-I/O `protocol`):

    - the request line is sniffed; anything but GET goes to `app` through h11;
    - once a sink is attached, complete data messages go straight to it from
      `data_received`, bypassing the message queue and the `recv()` future per message.
      Control frames (ping, pong, close) are still handled by `websockets`. Frames that arrive
      between the handshake and `attach` are held (bounded) and replayed in order.
    """

    app: ClassVar[RelayHttp]
    _mode = 0
    _sniffed = b""
    _h11: h11.Connection | None = None
    _req: h11.Request | None = None
    _body: bytearray | None = None
    sink: FrameSink | None = None
    _early: list[Frame] | None = None
    _detached = False
    _frag_op: Opcode | None = None
    _frag: bytearray | None = None

    # -- WebSocket frames -------------------------------------------------------------------

    def attach(self, sink: FrameSink) -> None:
        self.sink = sink
        early, self._early = self._early, None
        for frame in early or ():
            self._dispatch(frame)

    def detach(self) -> None:
        self.sink = None
        self._detached = True
        self._early = None

    def process_event(self, event: Event) -> None:
        if self.request is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake request
            return
        op = event.opcode
        if op is Opcode.TEXT or op is Opcode.BINARY or op is Opcode.CONT:
            if self.sink is not None:
                self._dispatch(event)
            elif not self._detached:
                early = self._early
                if early is None:
                    early = self._early = []
                if len(early) < _EARLY_FRAMES:
                    early.append(event)
            return
        super().process_event(event)  # pong acknowledgements

    def _dispatch(self, frame: Frame) -> None:
        sink = self.sink
        assert sink is not None
        op: Opcode | None = frame.opcode
        data: bytes | bytearray | memoryview
        if op is Opcode.CONT:
            if self._frag is None:
                return
            self._frag += frame.data
            if not frame.fin:
                return
            op, data = self._frag_op, bytes(self._frag)
            self._frag_op = self._frag = None
        elif not frame.fin:
            self._frag_op, self._frag = op, bytearray(frame.data)
            return
        else:
            data = frame.data
        try:
            if op is Opcode.TEXT:
                sink.on_text(data)
            else:
                sink.on_binary(data)
        except Exception:
            # A bug in one call must not reach the transport (which would drop it without a
            # close frame) or anything else: end that call with 1011 and keep serving.
            log.exception("call failed while handling a message")
            self.detach()
            self.loop.create_task(self.close(1011, "internal error"))

    # -- plain HTTP -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        mode = self._mode
        if mode == _WS:
            super().data_received(data)
            return
        if mode == _HTTP:
            self._http_data(data)
            return
        buf = self._sniffed + data
        space = buf.find(b" ", 0, _SNIFF_MAX)
        if space < 0 and len(buf) < _SNIFF_MAX:
            self._sniffed = buf
            return
        self._sniffed = b""
        if space < 0 or buf[:space] == b"GET":
            # Upgrades and health checks, and garbage (websockets rejects it).
            self._mode = _WS
            super().data_received(buf)
        else:
            self._mode = _HTTP
            self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
            self._http_data(buf)

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
