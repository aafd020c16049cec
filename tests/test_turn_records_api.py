"""`GET /calls/{call_sid}/turns` on a real relay on loopback, asked with real HTTP requests.

The calls carry no audio (connect, start, stop), so they are instant; the records come from a
test agent. Waiting for a live call is checked by holding the call open until the server is
known to be waiting, then ending it: ordering, no sleeps.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest
import voxrelay.server as server_mod
from call_support import run
from voxrelay.agent import AgentEvent, CallControl, CallEnded, CallStarted
from voxrelay.conversation.latency import TurnLatency
from voxrelay.httpd import RelayHttp
from voxrelay.protocols import twilio as tw
from voxrelay.server import RelayServer
from voxrelay.settings import Settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

SID = "MZ" + "0" * 32
ACCOUNT = "AC" + "2" * 32
SECRET = "stream-secret-123"


def record(turn: int) -> dict[str, Any]:
    return TurnLatency(
        turn=turn,
        user_text="my card number is 4111",
        reply_text="thanks, noted",
        interrupted=turn == 2,
        turn_wait_ms=250.0,
        turn_decided_ms=255.5,
        first_frame_sent_ms=612.25,
        stt_compute_ms=40.0,
    ).as_dict()


class Recorder:
    """Records two turns when the call ends; tells the test when the call has started."""

    started: asyncio.Event

    def __init__(self, call: CallControl) -> None:
        self.call = call

    async def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, CallStarted):
            self.started.set()
        elif isinstance(event, CallEnded):
            self.call.record_turn(record(1))
            self.call.record_turn(record(2))


class WatchedServer(RelayServer):
    """Signals when a records request has begun waiting, so the test can end the call then."""

    waiting: asyncio.Event

    async def turn_records(
        self, call_sid: str, wait_s: float = 0.0
    ) -> list[dict[str, object]] | Literal["live", "unknown"]:
        if wait_s > 0:
            self.waiting.set()
        return await super().turn_records(call_sid, wait_s)


@asynccontextmanager
async def serving(settings: Settings | None = None) -> AsyncIterator[WatchedServer]:
    started = asyncio.Event()
    factory = type("Rec", (Recorder,), {"started": started})
    server = WatchedServer((settings or Settings()).replace(port=0), factory)
    server.waiting = asyncio.Event()
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown(drain_timeout_s=0.0)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


async def get(server: RelayServer, path: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}{path}")


async def post(server: RelayServer, path: str) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=b"a=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    def send() -> int:
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return e.code

    return await asyncio.to_thread(send)


async def open_call(
    server: RelayServer, call_sid: str, token: str | None = None
) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{server.port}/twilio")
    params = {"voxrelay_token": token} if token else {}
    await ws.send(tw.connected_message())
    await ws.send(tw.start_message(SID, call_sid, ACCOUNT, params))
    return ws


async def end_call(ws: ClientConnection, call_sid: str) -> None:
    await ws.send(tw.stop_message(SID, 3, call_sid, ACCOUNT))
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass


async def one_call(server: RelayServer, call_sid: str, token: str | None = None) -> None:
    await end_call(await open_call(server, call_sid, token), call_sid)


def without_texts(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in ("user_text", "reply_text")}


def test_finished_call_serves_timings_without_texts() -> None:
    call = "CA" + "a" * 32

    async def main() -> None:
        async with serving() as server:
            await one_call(server, call)
            # wait: the close reaches the client before the server has filed the records.
            status, ctype, body = await get(server, f"/calls/{call}/turns?wait=5")
            assert status == 200 and ctype.startswith("application/json"), body
            data = json.loads(body)
            assert data == {
                "call_sid": call,
                "turns": [without_texts(record(1)), without_texts(record(2))],
            }
            assert "4111" not in body and "noted" not in body
            assert data["turns"][1]["interrupted"] is True and data["turns"][0]["turn"] == 1
            # Once filed, no wait is needed.
            assert (await get(server, f"/calls/{call}/turns"))[0] == 200
            assert (await get(server, "/calls/CAunknown/turns?wait=1"))[0] == 404
            assert (await get(server, "/calls/CA%2F..%2Fx/turns"))[0] == 404
            assert (await get(server, f"/calls/{call}/turns/extra"))[0] == 404
            for bad in ("abc", "-1", "11", "nan"):
                status, _, text = await get(server, f"/calls/{call}/turns?wait={bad}")
                assert status == 400 and "0..10" in text, (bad, status, text)
            assert await post(server, f"/calls/{call}/turns") == 405

    run(main())


def test_texts_are_served_when_enabled() -> None:
    call = "CA" + "b" * 32

    async def main() -> None:
        async with serving(Settings(turn_records_texts=True)) as server:
            await one_call(server, call)
            status, _, body = await get(server, f"/calls/{call}/turns?wait=5")
            assert status == 200
            assert json.loads(body)["turns"] == [record(1), record(2)]

    run(main())


def test_wait_returns_the_records_once_the_live_call_ends() -> None:
    call = "CA" + "c" * 32

    async def main() -> None:
        async with serving() as server:
            ws = await open_call(server, call)
            await server.agent_factory.started.wait()  # type: ignore[attr-defined]
            assert call in server.live_call_sids
            # Live: without a wait, or when the wait runs out, the answer is 409.
            assert (await get(server, f"/calls/{call}/turns"))[0] == 409
            assert (await get(server, f"/calls/{call}/turns?wait=0.05"))[0] == 409
            server.waiting.clear()
            pending = asyncio.ensure_future(get(server, f"/calls/{call}/turns?wait=10"))
            await server.waiting.wait()
            assert not pending.done()
            await end_call(ws, call)
            status, _, body = await pending
            assert status == 200 and len(json.loads(body)["turns"]) == 2
            assert call not in server.live_call_sids

    run(main())


def test_stream_secret_guards_the_records() -> None:
    call = "CA" + "d" * 32

    async def main() -> None:
        async with serving(Settings(stream_secret=SECRET)) as server:
            await one_call(server, call, token=SECRET)
            path = f"/calls/{call}/turns?wait=5"
            assert (await get(server, path))[0] == 403
            assert (await get(server, path + "&token=wrong"))[0] == 403
            assert (await get(server, path + "&token=" + SECRET[:-1]))[0] == 403
            # An unknown call is not told apart from a known one without the token.
            assert (await get(server, "/calls/CAnope/turns"))[0] == 403
            status, _, body = await get(server, path + "&token=" + SECRET)
            assert status == 200 and len(json.loads(body)["turns"]) == 2
            assert (await get(server, "/calls/CAnope/turns?token=" + SECRET))[0] == 404

    run(main())


def test_only_recent_calls_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_mod, "RECORDS_KEPT", 2)
    calls = ["CA" + c * 32 for c in "123"]

    async def main() -> None:
        async with serving() as server:
            for call in calls:
                await one_call(server, call)
                assert (await get(server, f"/calls/{call}/turns?wait=5"))[0] == 200
            assert list(server.records) == calls[1:]
            assert (await get(server, f"/calls/{calls[0]}/turns"))[0] == 404

    run(main())


def test_http_side_without_a_record_source() -> None:
    async def main() -> None:
        http = RelayHttp(Settings())
        assert (await http.turns("CA1", {})).status == 404
        assert (await http.turns("CA1", {"wait": "inf"})).status == 400

    run(main())
