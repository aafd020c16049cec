"""A relay server on loopback and the first steps of a Twilio client, shared by the tests that
talk to a live server: its ids, a started server that shuts down after the test, the URL, a
`connected` + `start`, and draining a socket until the server closes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from voxrelay.protocols import twilio as tw
from voxrelay.server import RelayServer
from voxrelay.settings import Settings
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

SID = "MZ" + "0" * 32
CALL = "CA" + "1" * 32
ACCOUNT = "AC" + "2" * 32


@asynccontextmanager
async def serving(
    settings: Settings | None = None, factory: Any = None
) -> AsyncIterator[RelayServer]:
    """A started server on a free port (`factory` makes each call's agent; None: the
    settings' agent), shut down without a drain when the block ends."""
    server = RelayServer((settings or Settings()).replace(port=0), factory)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown(drain_timeout_s=0.0)


def ws_url(server: RelayServer, path: str = "/twilio") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def start_call(ws: ClientConnection, params: dict[str, str] | None = None) -> None:
    await ws.send(tw.connected_message())
    await ws.send(tw.start_message(SID, CALL, ACCOUNT, params or {}))


async def closed(ws: ClientConnection) -> tuple[int | None, str]:
    """Drain until the server closes; returns (code, reason)."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason or ""
