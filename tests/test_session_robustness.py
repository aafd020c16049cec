"""Bad input, dead peers and races on real loopback sockets: each gets a specific error or
close code, is logged once, and never stalls or crashes the server or another call.

Nothing here sleeps to synchronise: every wait is on a message, a close, a future or an event,
bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pytest
from call_support import run
from relay_support import ACCOUNT, CALL, SID, closed, serving, start_call, ws_url
from voxrelay import media
from voxrelay.agent import (
    AgentEvent,
    BargeIn,
    CallControl,
    CallEnded,
    CallStarted,
    Dtmf,
)
from voxrelay.conversation.engine import ConversationAgent, ConversationConfig, Engines
from voxrelay.conversation.providers import (
    PCM16_16K,
    ULAW_8K,
    AudioChunk,
    CancelToken,
    Message,
    Transcript,
)
from voxrelay.httpd import RelayConnection, RelayHttp, connection_class
from voxrelay.protocols import twilio as tw
from voxrelay.protocols.marks import PlayoutTracker
from voxrelay.server import RelayServer
from voxrelay.session import Session
from voxrelay.settings import Settings
from voxrelay.turns import BARGE_IN
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def next_event(ws: ClientConnection) -> tw.TwilioEvent:
    return tw.parse_message(await ws.recv())


def the_session(server: RelayServer) -> Session:
    (session,) = server.sessions
    return session


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def codes_of(ev: tw.TwilioEvent) -> bytes:
    assert isinstance(ev, tw.Media)
    return base64.b64decode(ev.payload)


# ----------------------------------------------------------------------------------------------
# 1. Barge-in: audio handed over in the same loop step as the interruption is not played

FIRST = b"\x00\x04" * 8000 * 2  # 2 s of what the agent was saying
STALE = b"\x00\x10" * 1600  # 200 ms the TTS handed over as the caller interrupted
REPLY = b"\x00\xf0" * 1600  # 200 ms of the agent's answer to the interruption


class GatedSpeaker:
    """Says FIRST; the rest of that reply (STALE) waits on `gate` as a TTS thread's hop does.
    On BargeIn it answers at once with REPLY."""

    instances: ClassVar[list[GatedSpeaker]] = []

    def __init__(self, call: CallControl) -> None:
        self.call = call
        loop = asyncio.get_running_loop()
        self.gate: asyncio.Future[None] = loop.create_future()
        self.barge: asyncio.Future[BargeIn] = loop.create_future()
        self.tasks: set[asyncio.Task[None]] = set()
        self.instances.append(self)

    async def _rest_of_the_reply(self) -> None:
        await self.gate
        self.call.play(STALE, 8000)

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, CallStarted):
            self.call.play(FIRST, 8000)
            self.tasks.add(asyncio.get_running_loop().create_task(self._rest_of_the_reply()))
        elif isinstance(event, BargeIn):
            self.call.play(REPLY, 8000)
            self.barge.set_result(event)


def test_audio_handed_over_as_the_caller_barges_in_is_dropped_and_the_next_reply_plays() -> None:
    GatedSpeaker.instances.clear()
    first_code, reply_code, stale_code = (
        media.ulaw_encode(pcm[:2]) for pcm in (FIRST, REPLY, STALE)
    )

    async def main() -> None:
        async with serving(factory=GatedSpeaker) as server, connect(ws_url(server)) as ws:
            await start_call(ws)
            ev = await next_event(ws)
            while not isinstance(ev, tw.Media):
                ev = await next_event(ws)
            assert set(codes_of(ev)) == set(first_code)
            session = the_session(server)
            agent = GatedSpeaker.instances[0]

            def same_step() -> None:
                agent.gate.set_result(None)  # the TTS hands over the rest of the reply ...
                session._on_turn(BARGE_IN, b"")  # ... as the caller's barge-in lands

            asyncio.get_running_loop().call_soon(same_step)
            while not isinstance(ev, tw.Clear):
                ev = await next_event(ws)
            await agent.barge
            # Everything after the clear is the answer to the interruption, in full.
            after: list[bytes] = []
            while len(after) < len(REPLY) // 320:
                ev = await next_event(ws)
                if isinstance(ev, tw.Media):
                    after.append(codes_of(ev))
            assert set(b"".join(after)) == set(reply_code) != set(stale_code)
            stats = session.stats
            assert stats["barge_ins"] == 1
            assert stats["audio_dropped_ms"] == len(STALE) * 500 // 8000
            assert session._barge_pending == 0
            await ws.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            rest = []
            try:
                while True:
                    rest.append(await next_event(ws))
            except ConnectionClosed:
                pass
            assert not any(
                isinstance(e, tw.Media) and codes_of(e)[0] == stale_code[0] for e in rest
            )

    run(main())


class FakeSTT:
    input_format = PCM16_16K

    def __init__(self) -> None:
        self.q: asyncio.Queue[Transcript | None] = asyncio.Queue()

    async def start(self) -> None:
        pass

    def send_audio(self, pcm: bytes) -> None:
        pass

    async def events(self) -> AsyncIterator[Transcript]:
        while True:
            t = await self.q.get()
            if t is None:
                return
            yield t

    async def interim(self) -> None:
        pass

    async def finalize(self, *, reuse_interim: bool = False) -> None:
        self.q.put_nowait(Transcript("hello there", True, 0, 0))

    async def close(self) -> None:
        self.q.put_nowait(None)


class FakeLLM:
    async def stream(
        self, messages: list[Message], *, cancel: CancelToken | None = None
    ) -> AsyncIterator[str]:
        yield "Sure."


class GatedTTS:
    """The first clause at once; each later one waits on `gate`, as a synthesis thread's hop
    back to the loop does. 2 s of mu-law silence per clause."""

    output_format = ULAW_8K

    def __init__(self) -> None:
        self.n = 0
        self.waiting: asyncio.Future[asyncio.Future[None]] | None = None

    async def synthesize(
        self, text: str, *, cancel: CancelToken | None = None
    ) -> AsyncIterator[AudioChunk]:
        self.n += 1
        if self.n > 1:
            loop = asyncio.get_running_loop()
            gate: asyncio.Future[None] = loop.create_future()
            assert self.waiting is not None
            self.waiting.set_result(gate)
            await gate
        yield AudioChunk(b"\xff" * 8000 * 2, 8000, "ulaw")

    async def close(self) -> None:
        pass


def test_conversation_clause_synthesised_as_the_caller_barges_in_is_not_played() -> None:
    tts = GatedTTS()
    agents: list[ConversationAgent] = []
    handled: list[asyncio.Future[None]] = []

    class Agent(ConversationAgent):
        async def on_event(self, event: AgentEvent) -> None:
            await super().on_event(event)
            if isinstance(event, BargeIn):
                handled[0].set_result(None)

    def factory(call: CallControl) -> ConversationAgent:
        config = ConversationConfig(
            greeting="First clause here. Second clause here.", reprompt_after_s=0
        )
        agent = Agent(call, Engines(FakeSTT, FakeLLM(), tts), config)
        agents.append(agent)
        return agent

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tts.waiting = loop.create_future()
        handled.append(loop.create_future())
        async with serving(factory=factory) as server, connect(ws_url(server)) as ws:
            await start_call(ws)
            while not isinstance(await next_event(ws), tw.Media):
                pass
            gate = await tts.waiting  # the second clause waits on its TTS hop
            session = the_session(server)

            def same_step() -> None:
                gate.set_result(None)  # the TTS thread hands over clause 2 ...
                session._on_turn(BARGE_IN, b"")  # ... and the caller's barge-in lands

            loop.call_soon(same_step)
            while not isinstance(await next_event(ws), tw.Clear):
                pass
            await handled[0]
            await ws.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            after = 0
            try:
                while True:
                    after += isinstance(await next_event(ws), tw.Media)
            except ConnectionClosed:
                pass
            # Whatever the pacer would have sent of clause 2 went out before the close.
            assert after == 0
            assert session.stats["audio_dropped_ms"] == 2000
            turn = agents[0]._turn
            assert turn is not None and turn.cancel.reason == "barge-in"
            # The context does not claim the caller heard the clause they were spared.
            assert "Second clause" not in json.dumps(
                [m.content for m in agents[0].conversation.messages()]
            )

    run(main())


# ----------------------------------------------------------------------------------------------
# 2. A start that cannot begin a stream closes the call at once


def _start_without_call_sid() -> str:
    msg = json.loads(tw.start_message(SID, CALL, ACCOUNT))
    del msg["start"]["callSid"]
    return json.dumps(msg)


@pytest.mark.parametrize(
    ("start", "kind"),
    [
        (tw.start_message(SID, CALL, ACCOUNT, encoding="audio/x-alaw"), "bad_media"),
        (tw.start_message(SID, CALL, ACCOUNT, sample_rate=16000), "bad_media"),
        (tw.start_message(SID, CALL, ACCOUNT, channels=2), "bad_media"),
        (_start_without_call_sid(), "missing_field"),
    ],
    ids=["alaw", "16k", "stereo", "no-callSid"],
)
def test_rejected_start_closes_the_call_at_once(
    start: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "voxrelay")

    async def main() -> None:
        # The idle watchdog and the flood limit are far off: only the start can close it.
        async with (
            serving(Settings(idle_timeout_s=60)) as server,
            connect(ws_url(server)) as bad,
            connect(ws_url(server)) as good,
        ):
            await start_call(good)
            await bad.send(tw.connected_message())
            await bad.send(start)
            code, reason = await asyncio.wait_for(closed(bad), 5)
            assert code == 1007
            assert reason.startswith("bad start: ")
            assert len(reason.encode()) <= 123
            # The other call goes on.
            await good.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(good), 5))[0] == 1000

    run(main())
    (rejected,) = messages(caplog, "start rejected")
    assert kind in rejected.getMessage()
    ended = messages(caplog, "(bad_start)")
    assert len(ended) == 1 and f"'{kind}': 1" in ended[0].getMessage()


# ----------------------------------------------------------------------------------------------
# 3. Close reasons a close frame cannot carry, and closes that fail


LONG_REASON = "conversation finished: " + "café au lait, " * 20


class Hanger:
    reason: ClassVar[str] = LONG_REASON
    hangups: ClassVar[list[asyncio.Task[None]]] = []

    def __init__(self, call: CallControl) -> None:
        self.call = call

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, CallStarted):
            loop = asyncio.get_running_loop()
            self.hangups.append(loop.create_task(self.call.hangup(self.reason)))


def test_hangup_with_a_long_reason_closes_with_the_reason_cut_on_a_character() -> None:
    Hanger.hangups.clear()

    async def main() -> None:
        async with serving(Settings(idle_timeout_s=60), Hanger) as server:
            async with connect(ws_url(server)) as ws:
                await start_call(ws)
                code, reason = await asyncio.wait_for(closed(ws), 5)
            assert code == 1000
            data = LONG_REASON.encode()
            assert len(data) > 123
            assert 120 <= len(reason.encode()) <= 123
            assert LONG_REASON.startswith(reason)
            await asyncio.wait_for(Hanger.hangups[0], 5)

    run(main())


def test_a_close_that_fails_drops_the_connection_and_ends_the_call(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    Hanger.hangups.clear()
    monkeypatch.setattr(Hanger, "reason", "bye")

    async def broken_close(self: RelayConnection, code: int = 1000, reason: str = "") -> None:
        raise RuntimeError("cannot close")

    async def main() -> None:
        async with serving(Settings(idle_timeout_s=60), Hanger) as server:
            monkeypatch.setattr(RelayConnection, "close", broken_close)
            async with connect(ws_url(server)) as ws:
                await start_call(ws)
                code, _ = await asyncio.wait_for(closed(ws), 5)
                assert code == 1006  # no close frame: the transport was aborted
            await asyncio.wait_for(Hanger.hangups[0], 5)
            monkeypatch.undo()

    run(main())
    assert len(messages(caplog, "close failed")) == 1


# ----------------------------------------------------------------------------------------------
# 4. A platform that never echoes marks does not stop the pacer


class Player:
    def __init__(self, call: CallControl) -> None:
        self.call = call

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, CallStarted):
            self.call.play(b"\x10\x00" * 8000, 8000)  # 1 s: 10 marks at 100 ms


def test_pacer_keeps_going_when_marks_are_never_echoed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # 4096 pending marks take half an hour of audio; 4 make the same point quickly.
    monkeypatch.setattr(
        "voxrelay.session.PlayoutTracker", functools.partial(PlayoutTracker, max_pending=4)
    )

    async def main() -> None:
        settings = Settings(mark_interval_ms=100, idle_timeout_s=60)
        async with serving(settings, Player) as server, connect(ws_url(server)) as ws:
            await start_call(ws)
            n_media = n_marks = 0
            async with asyncio.timeout(10):
                while n_marks < 10:
                    ev = await next_event(ws)
                    n_media += isinstance(ev, tw.Media)
                    n_marks += isinstance(ev, tw.Mark)
            assert n_media == 50
            session = the_session(server)
            assert session.stats["marks_dropped"] == 6
            assert session.tracker.pending == ("m7", "m8", "m9", "m10")
            # The dropped marks count as played: a barge-in now knows the caller heard them.
            assert session.tracker.heard_ms >= 600
            await ws.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(ws), 5))[0] == 1000

    run(main())
    assert len(messages(caplog, "not echoing")) == 1


def test_tracker_drops_the_oldest_mark_as_played() -> None:
    t = PlayoutTracker(max_pending=2)
    t.audio_started(0)
    t.sent("a", 500)
    assert not t.full
    t.sent("b", 1000)
    assert t.full
    with pytest.raises(ValueError, match="not echoing"):
        t.sent("c", 1500)
    assert t.drop_oldest(now_ms=2000) == "a"
    assert not t.full and t.pending == ("b",)
    assert t.heard_ms == 500 and t.played_ms == 500
    t.sent("c", 1500)
    # Heard from the dropped mark on, capped at the next pending one.
    assert t.position_ms(2200) == 700
    cleared = t.cleared(2200)
    assert cleared.heard_ms == 700 and cleared.flushed == ("b", "c")
    # A late echo of the dropped mark is not news.
    t.echoed("a")
    assert t.unknown_echoes == 1 and t.flushed_echoes == 0
    assert t.stats()["dropped_marks"] == 1
    assert PlayoutTracker().drop_oldest() is None


# ----------------------------------------------------------------------------------------------
# 5. Malformed WebSocket fragmentation


async def raw_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write(
        (
            f"GET /twilio HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await r.readuntil(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"101", head
    return r, w


def frame(op: int, payload: str | bytes, *, fin: bool = True) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    n = len(data)
    b0 = (0x80 if fin else 0) | op
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0x80 | 126)) + struct.pack(">H", n)
    else:
        head = bytes((b0, 0x80 | 127)) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data))


async def close_frame(r: asyncio.StreamReader) -> tuple[int, str]:
    """Skip server frames up to the close frame; its (code, reason)."""
    while True:
        head = await r.readexactly(2)
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", await r.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await r.readexactly(8))[0]
        payload = await r.readexactly(n)
        if head[0] & 0x0F == 8:
            return struct.unpack(">H", payload[:2])[0], payload[2:].decode()


@pytest.mark.parametrize(
    ("frames", "code", "logged"),
    [
        (
            [frame(1, tw.connected_message()), frame(0, '{"event":"dtmf"}')],
            1002,
            "unexpected continuation frame",
        ),
        (
            [frame(1, '{"event":"conn', fin=False), frame(1, tw.connected_message())],
            1002,
            "expected a continuation frame",
        ),
        (
            [frame(1, "x" * 10000, fin=False), frame(0, "x" * 10000, fin=False)],
            1009,
            "message too big",
        ),
    ],
    ids=["stray-continuation", "text-inside-fragmented", "fragments-too-big"],
)
def test_malformed_fragmentation_fails_the_connection_once_and_spares_other_calls(
    frames: list[bytes], code: int, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "voxrelay")

    async def main() -> None:
        # Socket-level limit: 16 x max_message_bytes = 16000 bytes.
        async with (
            serving(Settings(max_message_bytes=1000, idle_timeout_s=60)) as server,
            connect(ws_url(server)) as good,
        ):
            await start_call(good)
            r, w = await raw_connect(server.port)
            w.write(b"".join(frames))
            # What follows must not be delivered either.
            w.write(frame(1, tw.start_message(SID, CALL, ACCOUNT)))
            got, reason = await asyncio.wait_for(close_frame(r), 5)
            assert got == code
            assert logged in reason
            w.close()
            await good.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(good), 5))[0] == 1000

    run(main())
    assert len(messages(caplog, logged)) == 1
    assert len(messages(caplog, "started (stream")) == 1  # only the good call started


# ----------------------------------------------------------------------------------------------
# 6. An unauthorised stream cannot touch a finished call's turn records


class Recording:
    recorded: ClassVar[list[asyncio.Future[None]]] = []
    calls: ClassVar[list[CallControl]] = []

    def __init__(self, call: CallControl) -> None:
        self.call = call
        self.calls.append(call)

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, CallStarted):
            self.call.record_turn({"turn": 1, "reply_ms": 640.0})
            self.recorded[0].set_result(None)


def test_unauthorised_stream_does_not_replace_a_finished_calls_records() -> None:
    async def main() -> None:
        Recording.recorded[:] = [asyncio.get_running_loop().create_future()]
        Recording.calls.clear()
        async with serving(Settings(stream_secret="s3cret"), Recording) as server:
            async with connect(ws_url(server)) as ws:
                await start_call(ws, {"voxrelay_token": "s3cret"})
                await Recording.recorded[0]
                await ws.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
                assert (await asyncio.wait_for(closed(ws), 5))[0] == 1000
            expected = [{"turn": 1, "reply_ms": 640.0}]
            assert await server.turn_records(CALL, wait_s=5) == expected
            async with connect(ws_url(server)) as ws:
                await start_call(ws, {})  # the same call SID, without the token
                assert await asyncio.wait_for(closed(ws), 5) == (
                    1008,
                    "stream token missing or wrong",
                )
            intruder = Recording.calls[1]
            assert isinstance(intruder, Session)
            assert CALL not in server.live_call_sids
            await server.wait_until(lambda: intruder not in server.sessions)
            assert await server.turn_records(CALL) == expected
            assert not intruder.started

    run(main())


# ----------------------------------------------------------------------------------------------
# 7. Draining: the port stays open and says so


async def http_status(port: int, request: str) -> int:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(request.encode())
    line = await r.readline()
    w.close()
    return int(line.split()[1])


def test_while_draining_health_and_new_calls_get_503_then_the_port_closes() -> None:
    async def main() -> None:
        server = RelayServer(Settings(port=0))
        await server.start()
        port = server.port
        health = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        webhook = (
            f"POST /twilio/voice HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n"
        )
        try:
            live = await connect(ws_url(server))
            await start_call(live)
            assert await http_status(port, health) == 200
            shutdown = asyncio.create_task(server.shutdown(drain_timeout_s=30.0))
            await server.wait_until(lambda: not server.http._is_serving())
            assert not shutdown.done()
            assert await http_status(port, health) == 503
            assert await http_status(port, webhook) == 503
            with pytest.raises(InvalidStatus) as refused:
                await connect(ws_url(server))
            assert refused.value.response.status_code == 503
            # The live call is untouched and ends on its own; then the drain ends.
            await live.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(live), 5))[0] == 1000
            await asyncio.wait_for(shutdown, 5)
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", port)
        finally:
            await server.shutdown(drain_timeout_s=0.0)

    run(main())


# ----------------------------------------------------------------------------------------------
# 8. Agent failures: logged once per kind; cancellation is not swallowed


class Faulty:
    def __init__(self, call: CallControl) -> None:
        self.call = call

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, Dtmf) and event.digit == "1":
            raise ValueError("agent bug on 1")
        raise RuntimeError("agent bug")


def test_agent_failures_are_logged_once_per_kind_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "voxrelay")

    async def main() -> None:
        async with serving(factory=Faulty) as server, connect(ws_url(server)) as ws:
            await start_call(ws)
            for i in range(30):
                await ws.send(tw.dtmf_message(SID, 3 + i, "1" if i % 3 == 0 else "2"))
            await ws.send(tw.stop_message(SID, 33, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(ws), 5))[0] == 1000

    run(main())
    failed = messages(caplog, "agent failed")
    assert sorted(r.exc_info[0].__name__ for r in failed if r.exc_info and r.exc_info[0]) == [
        "RuntimeError",
        "ValueError",
    ]
    assert len(failed) == 2
    (ended,) = messages(caplog, "ended (stop)")
    # CallStarted, 20 DTMF 2s and CallEnded raise RuntimeError; 10 DTMF 1s raise ValueError.
    assert "agent_errors={'RuntimeError': 22, 'ValueError': 10}" in ended.getMessage()


class StuckOnEnd:
    ending: ClassVar[list[asyncio.Future[None]]] = []

    def __init__(self, call: CallControl) -> None:
        self.call = call

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, CallEnded):
            self.ending[0].set_result(None)
            await asyncio.Event().wait()  # an agent that takes its time to wind down


def test_cancelling_a_session_while_its_agent_winds_down_is_not_swallowed() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        StuckOnEnd.ending[:] = [loop.create_future()]
        settings = Settings(port=0)
        running: asyncio.Future[asyncio.Task[None]] = loop.create_future()

        async def handler(conn: Any) -> None:
            session = Session(conn, settings, StuckOnEnd)
            task = loop.create_task(session.run())
            running.set_result(task)
            await asyncio.wait([task])

        app = RelayHttp(settings)
        async with serve(
            handler, "127.0.0.1", 0, create_connection=connection_class(app), compression=None
        ) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/twilio") as ws:
                await start_call(ws)
                task = await running
            await StuckOnEnd.ending[0]  # run() now waits for the agent to finish
            task.cancel()
            await asyncio.wait([task], timeout=5)
            assert task.cancelled()

    run(main())


# ----------------------------------------------------------------------------------------------
# 9. Barge-in follow-ups: the BargeIn always reaches the agent, play() checks its arguments


def agent_loop_task() -> asyncio.Task[Any]:
    """The task running the (only) call's agent loop."""
    (task,) = (
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "Session._agent_loop"
    )
    return task


class SelfCancelling:
    """Cancels and awaits its own TTS task on DTMF 1 (the CancelledError escapes on_event);
    answers a BargeIn with REPLY; gets stuck on DTMF 9."""

    instances: ClassVar[list[SelfCancelling]] = []

    def __init__(self, call: CallControl) -> None:
        self.call = call
        loop = asyncio.get_running_loop()
        self.cancelled_own: asyncio.Future[None] = loop.create_future()
        self.barge: asyncio.Future[BargeIn] = loop.create_future()
        self.stuck: asyncio.Future[None] = loop.create_future()
        self.tts: asyncio.Task[Any] | None = None
        self.instances.append(self)

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, CallStarted):
            self.call.play(FIRST, 8000)
            self.tts = asyncio.get_running_loop().create_task(asyncio.Event().wait())
        elif isinstance(event, Dtmf) and event.digit == "1":
            assert self.tts is not None
            self.tts.cancel()
            self.cancelled_own.set_result(None)
            await self.tts
        elif isinstance(event, Dtmf) and event.digit == "9":
            self.stuck.set_result(None)
            await asyncio.Event().wait()
        elif isinstance(event, BargeIn):
            self.call.play(REPLY, 8000)
            self.barge.set_result(event)


def test_an_agent_awaiting_its_own_cancelled_task_keeps_getting_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    SelfCancelling.instances.clear()

    async def main() -> None:
        async with serving(factory=SelfCancelling) as server, connect(ws_url(server)) as ws:
            await start_call(ws)
            ev = await next_event(ws)
            while not isinstance(ev, tw.Media):
                ev = await next_event(ws)
            session = the_session(server)
            agent = SelfCancelling.instances[0]
            await ws.send(tw.dtmf_message(SID, 3, "1"))
            await asyncio.wait_for(agent.cancelled_own, 5)
            session._on_turn(BARGE_IN, b"")
            # The loop went on: the BargeIn arrives and what the agent plays then is played.
            await asyncio.wait_for(agent.barge, 5)
            assert session._barge_pending == 0
            assert session.stats["audio_dropped_ms"] == 0
            assert session._agent_errors == {"CancelledError": 1}
            # A real cancellation of the agent's loop still ends it.
            await ws.send(tw.dtmf_message(SID, 4, "9"))
            await asyncio.wait_for(agent.stuck, 5)
            task = agent_loop_task()
            task.cancel()
            await asyncio.wait([task], timeout=5)
            assert task.cancelled()
            await ws.send(tw.stop_message(SID, 5, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(ws), 5))[0] == 1000

    run(main())
    (failed,) = messages(caplog, "agent failed")
    assert failed.exc_info is not None and failed.exc_info[0] is asyncio.CancelledError


class Blocked:
    """Plays FIRST, then stays in its CallStarted handler until `gate`; records its BargeIn."""

    instances: ClassVar[list[Blocked]] = []

    def __init__(self, call: CallControl) -> None:
        self.call = call
        loop = asyncio.get_running_loop()
        self.busy: asyncio.Future[None] = loop.create_future()
        self.gate: asyncio.Future[None] = loop.create_future()
        self.barge: asyncio.Future[BargeIn] = loop.create_future()
        self.instances.append(self)

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, CallStarted):
            self.call.play(FIRST, 8000)
            self.busy.set_result(None)
            await self.gate
        elif isinstance(event, BargeIn):
            self.barge.set_result(event)


@asynccontextmanager
async def blocked_call() -> AsyncIterator[tuple[Session, Blocked, ClientConnection]]:
    """A call whose agent is playing FIRST and is busy (its event queue is not read)."""
    Blocked.instances.clear()
    async with serving(factory=Blocked) as server, connect(ws_url(server)) as ws:
        await start_call(ws)
        ev = await next_event(ws)
        while not isinstance(ev, tw.Media):
            ev = await next_event(ws)
        agent = Blocked.instances[0]
        await asyncio.wait_for(agent.busy, 5)
        yield the_session(server), agent, ws
        if not agent.gate.done():
            agent.gate.set_result(None)
        await ws.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
        assert (await asyncio.wait_for(closed(ws), 5))[0] == 1000


def test_barge_in_reaches_an_agent_whose_queue_is_full() -> None:
    async def main() -> None:
        async with blocked_call() as (session, agent, _):
            for _ in range(256):
                assert session._post(Dtmf("1"))
            assert not session._post(Dtmf("1"))  # full
            session._on_turn(BARGE_IN, b"")
            assert session._barge_pending == 1
            assert session.stats["agent_events_dropped"] == 2  # the Dtmf above, and one more
            session.play(STALE, 8000)  # the rest of the reply the clear was for
            assert session.stats["audio_dropped_ms"] == 200
            agent.gate.set_result(None)
            await asyncio.wait_for(agent.barge, 5)
            assert session._barge_pending == 0

    run(main())


def test_play_checks_its_arguments_while_a_barge_in_is_pending() -> None:
    async def main() -> None:
        async with blocked_call() as (session, agent, _):
            session._on_turn(BARGE_IN, b"")
            assert session._barge_pending == 1
            with pytest.raises(ValueError, match="unsupported sample rate 0"):
                session.play(STALE, 0)
            with pytest.raises(ValueError, match="unsupported sample rate 12345"):
                session.play(STALE, 12345)
            with pytest.raises(media.MediaError, match="odd length of 3 bytes"):
                session.play(b"\0\0\0", 8000)
            assert session.stats["audio_dropped_ms"] == 0
            session.play(REPLY, 16000)  # a good call is still dropped, at its own rate
            assert session.stats["audio_dropped_ms"] == 100
            session.play(REPLY, 8000)
            assert session.stats["audio_dropped_ms"] == 300
            agent.gate.set_result(None)
            await asyncio.wait_for(agent.barge, 5)
            assert session._barge_pending == 0

    run(main())


def test_barge_in_after_unechoed_marks_reports_the_playout_clocks_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "voxrelay.session.PlayoutTracker", functools.partial(PlayoutTracker, max_pending=4)
    )

    async def main() -> None:
        settings = Settings(mark_interval_ms=100, playout_lead_ms=100, idle_timeout_s=60)
        async with serving(settings, Player) as server, connect(ws_url(server)) as ws:
            await start_call(ws)
            n_marks = 0
            while n_marks < 10:  # all 1 s sent; nothing echoed
                n_marks += isinstance(await asyncio.wait_for(next_event(ws), 5), tw.Mark)
            session = the_session(server)
            assert session.stats["marks_dropped"] == 6
            # The tracker alone stops at the oldest pending mark (m7 at 700 ms) ...
            now_ms = asyncio.get_running_loop().time() * 1000
            assert session.tracker.position_ms(now_ms) <= 700
            heard = await session.clear()
            # ... while the pacer kept the caller's ear within the lead of what was sent.
            assert session._sent_ms == 1000
            assert heard >= 1000 - settings.playout_lead_ms
            await ws.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(ws), 5))[0] == 1000

    run(main())


# ----------------------------------------------------------------------------------------------
# 10. Closing: the connection's own close failing, reasons that cannot be sent


def test_a_failed_close_after_bad_frames_drops_the_connection(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_close(self: RelayConnection, code: int = 1000, reason: str = "") -> None:
        raise RuntimeError("cannot close")

    async def main() -> None:
        async with serving(Settings(idle_timeout_s=60)) as server:
            monkeypatch.setattr(RelayConnection, "close", broken_close)
            r, w = await raw_connect(server.port)
            w.write(frame(1, tw.connected_message()) + frame(0, '{"event":"dtmf"}'))
            try:
                rest = await asyncio.wait_for(r.read(), 5)
            except ConnectionResetError:
                rest = b""
            assert rest == b""  # no close frame: the transport was aborted
            w.close()
            monkeypatch.undo()

    run(main())
    assert len(messages(caplog, "unexpected continuation frame")) == 1
    (failed,) = messages(caplog, "close failed")
    assert "cannot close" in failed.getMessage()


def test_close_reasons_with_lone_surrogates_are_sent_with_replacements(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voxrelay.httpd import close_reason

    assert close_reason("bye \ud800 now") == "bye ? now"
    assert close_reason("café") == "café"
    Hanger.hangups.clear()
    monkeypatch.setattr(Hanger, "reason", "bye \udcff")

    async def main() -> None:
        async with serving(Settings(idle_timeout_s=60), Hanger) as server:
            async with connect(ws_url(server)) as ws:
                await start_call(ws)
                assert await asyncio.wait_for(closed(ws), 5) == (1000, "bye ?")
            await asyncio.wait_for(Hanger.hangups[0], 5)

    run(main())


# ----------------------------------------------------------------------------------------------
# 11. wait_until wakes when a call starts streaming


def test_wait_until_sees_a_call_start_streaming() -> None:
    async def main() -> None:
        async with serving(factory=Player) as server, connect(ws_url(server)) as ws:
            await server.wait_until(lambda: len(server.sessions) == 1)
            assert CALL not in server.live_call_sids
            await start_call(ws)
            await server.wait_until(lambda: CALL in server.live_call_sids, timeout=5)
            await ws.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(ws), 5))[0] == 1000

    run(main())
