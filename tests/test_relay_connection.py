"""The connection's own data-frame path, driven with bytes (no sockets).

The relay parses data frames itself and hands control frames to `websockets` on a frame
boundary; these tests check that any split of any mix of frames delivers exactly the messages
a client sent, in order, and that pings still get their pongs.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from voxrelay import media
from voxrelay.httpd import RelayHttp, connection_class
from voxrelay.protocols.twilio import mark_echo_message, media_message
from voxrelay.settings import Settings
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def writelines(self, chunks: Any) -> None:
        for c in chunks:
            self.out += c

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    def on_text(self, data: Any) -> None:
        self.got.append(("text", bytes(data)))

    def on_binary(self, data: Any) -> None:
        self.got.append(("binary", bytes(data)))

    def on_media(self, pcm: bytes, speech: bool | None) -> None:
        self.got.append(("media", pcm, speech))  # type: ignore[arg-type]

    def on_event(self, event: str, data: bytes) -> None:
        self.got.append(("event", event, bytes(data)))  # type: ignore[arg-type]

    def on_frame_error(self, text: str) -> None:
        self.got.append(("error", text))  # type: ignore[arg-type]


async def _open(attach: bool = True) -> tuple[Any, ClientProtocol, Transport, Sink]:
    async def handler(conn: Any) -> None:
        return None

    server = SimpleNamespace(handler=handler, handler_tasks=set(), is_serving=lambda: True)
    conn = connection_class(RelayHttp(Settings()))(ServerProtocol(max_size=2**20), server)  # type: ignore[arg-type]
    transport = Transport()
    conn.connection_made(transport)
    client = ClientProtocol(parse_uri("ws://relay.test/twilio"))
    client.send_request(client.connect())
    handshake = asyncio.get_running_loop().create_task(conn.handshake())
    for chunk in client.data_to_send():
        conn.data_received(chunk)
    await handshake
    assert conn.protocol.state is State.OPEN
    client.receive_data(transport.take())
    assert client.state is State.OPEN
    sink = Sink()
    if attach:
        conn.attach(sink)
    return conn, client, transport, sink


Message = tuple[str, bytes, int]  # kind, payload, fragments

messages = st.lists(
    st.tuples(
        st.sampled_from(["text", "binary", "ping"]),
        st.one_of(
            st.binary(max_size=130),
            st.binary(min_size=126, max_size=400),
            st.just(b"x" * 70000),  # 64-bit length form
        ),
        st.integers(1, 3),
    ),
    max_size=8,
)


def _wire(client: ClientProtocol, msgs: list[Message]) -> tuple[bytes, list[tuple[str, bytes]]]:
    expected: list[tuple[str, bytes]] = []
    for kind, payload, parts in msgs:
        if kind == "ping":
            client.send_ping(payload[:125])
            continue
        if kind == "text":
            payload = payload.decode("latin-1").encode("utf-8")
        expected.append((kind, payload))
        step = max(1, len(payload) // parts + 1)
        pieces = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
        first = client.send_text if kind == "text" else client.send_binary
        for i, piece in enumerate(pieces):
            fin = i == len(pieces) - 1
            if i == 0:
                first(piece, fin=fin)
            else:
                client.send_continuation(piece, fin=fin)
    return b"".join(client.data_to_send()), expected


@settings(max_examples=60, deadline=None)
@given(msgs=messages, cuts=st.lists(st.integers(0, 80000), max_size=12))
def test_any_split_delivers_the_same_messages(msgs: list[Message], cuts: list[int]) -> None:
    async def main() -> None:
        conn, client, transport, sink = await _open()
        wire, expected = _wire(client, msgs)
        bounds = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
        for a, b in itertools.pairwise(bounds):
            conn.data_received(wire[a:b])
        assert sink.got == expected
        # Every ping was answered with a pong carrying its payload.
        client.receive_data(transport.take())
        pongs = [e.data for e in client.events_received() if isinstance(e, Frame)]
        pings = [p[:125] for k, p, _ in msgs if k == "ping"]
        assert [bytes(p) for p in pongs] == pings
        assert conn.protocol.state is State.OPEN
        assert conn._reader is not None  # control frames did not push it off its own path

    asyncio.run(main())


def test_byte_by_byte_and_messages_before_attach() -> None:
    async def main() -> None:
        conn, client, _, sink = await _open(attach=False)
        wire, expected = _wire(
            client, [("text", b'{"event":"connected"}', 1), ("binary", b"\x00" * 300, 2)]
        )
        for i in range(len(wire)):
            conn.data_received(wire[i : i + 1])
        assert sink.got == []
        conn.attach(sink)  # held messages are replayed in order
        assert sink.got == expected

    asyncio.run(main())


def test_close_frame_goes_to_websockets_and_later_data_is_not_delivered() -> None:
    async def main() -> None:
        conn, client, transport, sink = await _open()
        client.send_text(b"before")
        client.send_close(1000, "bye")
        wire = b"".join(client.data_to_send())
        conn.data_received(wire + b"\x81\x85" + b"\x00" * 9)  # junk after the close
        assert sink.got == [("text", b"before")]
        assert conn.protocol.state is not State.OPEN
        client.receive_data(transport.take())
        closes = [e for e in client.events_received() if isinstance(e, Frame)]
        assert closes and closes[0].opcode is Opcode.CLOSE

    asyncio.run(main())


def test_unmasked_frame_fails_the_connection_as_websockets_does() -> None:
    async def main() -> None:
        conn, _, transport, sink = await _open()
        conn.data_received(b"\x81\x02hi")  # clients must mask
        assert sink.got == []
        assert conn.protocol.state is not State.OPEN
        assert b"\x03\xea" in transport.take()  # close frame with 1002 (protocol error)

    asyncio.run(main())


def _twilio_messages(kinds: list[str]) -> list[bytes]:
    """Media messages with speech-like codes, a malformed one, and a mark echo, in order."""
    out = []
    for i, kind in enumerate(kinds):
        codes = bytes((i * 37 + j * 11) % 256 for j in range(160))
        if kind == "media":
            b64 = base64.b64encode(codes).decode()
            out.append(media_message("MZ1", i + 2, i + 1, i * 20, b64).encode())
        elif kind == "bad":
            out.append(media_message("MZ1", i + 2, i + 1, i * 20, "not*base64").encode())
        else:
            out.append(mark_echo_message("MZ1", i + 2, f"m{i}").encode())
    return out


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["media", "media", "media", "bad", "mark"]), max_size=12),
    pings=st.sets(st.integers(0, 12), max_size=3),
    cuts=st.lists(st.integers(0, 6000), max_size=12),
)
def test_frames_through_the_inbound_match_the_inbound_itself(
    kinds: list[str], pings: set[int], cuts: list[int]
) -> None:
    """With `media_inbound` set, the frame reader runs each text frame through it: the session
    gets exactly what `TwilioInbound.process` gives for the same messages, whatever the split,
    and pings in between are still answered."""
    msgs = _twilio_messages(kinds)
    expected: list[tuple[Any, ...]] = []
    reference = media.TwilioInbound()
    for m in msgs:
        try:
            event, pcm, speech = reference.process(m)
        except media.FrameError as e:
            expected.append(("error", str(e)))
            continue
        expected.append(("media", pcm, speech) if event == "media" else ("event", event, m))

    async def main() -> None:
        conn, client, transport, sink = await _open()
        conn.media_inbound = media.TwilioInbound()
        for i, m in enumerate(msgs):
            if i in pings:
                client.send_ping(b"p%d" % i)
            client.send_text(m)
        wire = b"".join(client.data_to_send())
        bounds = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
        for a, b in itertools.pairwise(bounds):
            conn.data_received(wire[a:b])
        assert sink.got == expected
        client.receive_data(transport.take())
        pongs = [bytes(e.data) for e in client.events_received() if isinstance(e, Frame)]
        assert pongs == [b"p%d" % i for i in sorted(pings) if i < len(msgs)]
        assert conn._reader is not None

    asyncio.run(main())


def test_detach_stops_the_inbound_path() -> None:
    """After the session lets go, media frames are neither processed nor delivered."""

    async def main() -> None:
        conn, client, _, sink = await _open()
        inbound = media.TwilioInbound()
        conn.media_inbound = inbound
        conn.detach()
        assert conn.media_inbound is None
        for m in _twilio_messages(["media", "media"]):
            client.send_text(m)
        conn.data_received(b"".join(client.data_to_send()))
        assert sink.got == []
        assert inbound.stats()["received"] == 0

    asyncio.run(main())


def test_reader_hands_over_what_it_must_not_judge() -> None:
    reader = media.WsReader(1000)
    client = ClientProtocol(parse_uri("ws://relay.test/twilio"))
    client.state = State.OPEN
    client.send_text(b"ok")
    ok = b"".join(client.data_to_send())
    reader.feed(ok + b"\x81\x02hi" + ok)  # the second frame is unmasked
    assert reader.next() == (1, b"ok", True)
    kind, rest, _ = reader.next() or (None, b"", None)
    assert (kind, rest) == (-1, b"\x81\x02hi" + ok)
    assert reader.stopped and reader.next() == (-1, b"", False)


def test_frames_the_session_builds_parse_as_text_messages() -> None:
    """The session frames its outbound messages itself; a real client parser must read them
    at every length form (7-bit, 16-bit, 64-bit)."""
    from voxrelay.session import _text_header
    from websockets.protocol import Protocol, Side

    client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    texts = [b"", b"x" * 125, b"y" * 126, b"z" * 65535, b"w" * 65536]
    client.receive_data(b"".join(_text_header(len(t)) + t for t in texts))
    got = [bytes(e.data) for e in client.events_received() if isinstance(e, Frame)]
    assert got == texts


def test_a_failing_frame_reader_ends_only_that_call(caplog: Any) -> None:
    """Should the media engine raise while reading frames, the call is detached and closed
    with 1011 (logged once) and nothing propagates into the event loop's transport."""

    class Broken:
        pending = 0

        def feed(self, data: bytes) -> None:
            pass

        def next(self, *args: Any) -> None:
            raise RuntimeError("bug in the reader")

    async def main() -> None:
        conn, *_ = await _open()
        conn._reader = Broken()
        with caplog.at_level("ERROR", logger="voxrelay.http"):
            conn.data_received(b"\x81\x80abcd")
        assert conn.sink is None
        assert [r.getMessage() for r in caplog.records] == ["call failed while handling a message"]
        close = next(t for t in asyncio.all_tasks() if "close" in repr(t.get_coro()))
        close.cancel()

    asyncio.run(main())


def test_a_sink_set_mid_utterance_first_gets_the_audio_so_far() -> None:
    """An agent may attach its recogniser a few frames after the onset (it does so from its
    own task); the frames it missed come first, then each new one, with nothing lost."""
    from call_support import media_frames, speak
    from voxrelay.agent import load_agent
    from voxrelay.protocols.twilio import connected_message, start_message
    from voxrelay.session import Session

    async def main() -> None:
        conn, client, _, _ = await _open(attach=False)
        settings = Settings()
        session = Session(conn, settings, load_agent("echo", settings))
        conn.attach(session)

        def send(text: str) -> None:
            client.send_text(text.encode())
            conn.data_received(b"".join(client.data_to_send()))

        send(connected_message())
        send(start_message("MZ1", "CA1", "AC1"))
        frames = media_frames(bytes(3200) + speak("Hello there, how are you today?"), "MZ1")
        sent = 0
        while not session.turns.in_speech:
            assert sent < len(frames), "the speech never opened an utterance"
            send(frames[sent])
            sent += 1
        got: list[bytes] = []
        session.set_audio_sink(got.append)
        assert got == [session.turns.audio_so_far()]
        send(frames[sent])
        assert len(got) == 2 and b"".join(got) == session.turns.audio_so_far()

    asyncio.run(main())
