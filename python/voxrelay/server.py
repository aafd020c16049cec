"""`voxrelay serve`: the relay server on uvloop + websockets, many calls on one event loop.

The server object only accepts connections, routes them, and keeps the set of live sessions
for shutdown; each call's state lives in its `Session`. Shutdown is two-phase: stop accepting
(the port stays open, but new upgrades and webhooks get 503 and `/healthz` says draining),
give live calls `drain_timeout_s` to end on their own, then close the rest with 1001 (going
away) so the platform can fail over, and close the port. The server also keeps the per-turn
latency records of the last `RECORDS_KEPT` calls, for `GET /calls/{call_sid}/turns`: they
outlive the session, which is freed when the call ends.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final, Literal

from websockets.asyncio.server import Server, ServerConnection, serve

from voxrelay.agent import AgentFactory, load_agent
from voxrelay.httpd import STREAM_PATH, RelayConnection, RelayHttp, connection_class
from voxrelay.session import Session
from voxrelay.settings import Settings

__all__ = ["RelayServer", "run"]

log = logging.getLogger("voxrelay.server")

GOING_AWAY: Final = 1001
RECORDS_KEPT: Final = 1000
"""Finished calls whose turn records stay available: bounded, so a busy server's memory is."""
# Socket-level cap well above the protocol limit, so an oversized message is counted as bad
# input (the call goes on) rather than killing the connection; only absurd frames hit this.
_MAX_FRAME_FACTOR: Final = 16


class RelayServer:
    def __init__(
        self,
        settings: Settings,
        agent_factory: AgentFactory | None = None,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.agent_factory = agent_factory or load_agent(settings.agent, settings)
        self._progress = progress
        self.sessions: set[Session] = set()
        # Counters of recently finished calls, for tests, benches and a future metrics page.
        self.finished: deque[dict[str, int]] = deque(maxlen=1000)
        self.records: OrderedDict[str, list[dict[str, object]]] = OrderedDict()
        """Turn records of recently finished calls by call SID, oldest first."""
        self._ended: dict[Session, asyncio.Event] = {}
        self._ws_server: Server | None = None
        self._port: int | None = None
        self._draining = False
        self.http = RelayHttp(settings, is_serving=lambda: not self._draining, turns=self)
        self._idle = asyncio.Event()
        self._idle.set()
        self._change = asyncio.Event()

    def _changed(self) -> None:
        """Wake `wait_until`: the live or finished calls (a call connected, started streaming
        or ended), or the draining state, changed."""
        ev, self._change = self._change, asyncio.Event()
        ev.set()

    async def wait_until(self, cond: Callable[[], bool], timeout: float = 5.0) -> None:
        """Return once `cond()` holds, checked again whenever a call connects, starts streaming
        (its `start` accepted) or ends, or the server starts draining; TimeoutError after
        `timeout` s. For tests and tools that drive a server in the same process: they wait on
        what the server did, not for a while."""
        async with asyncio.timeout(timeout):
            while not cond():
                await self._change.wait()

    @property
    def port(self) -> int:
        """The bound port (the real one when settings asked for port 0)."""
        assert self._port is not None, "start() first"
        return self._port

    async def start(self) -> None:
        s = self.settings
        prepare = getattr(self.agent_factory, "prepare", None)
        if prepare is not None:
            # Models load before the port opens: a call must never wait for them.
            await prepare(self._progress)
        self._ws_server = await serve(
            self._handler,
            s.host,
            s.port,
            process_request=self.http.process_request,
            create_connection=connection_class(self.http),
            compression=None,
            max_size=s.max_message_bytes * _MAX_FRAME_FACTOR,
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_interval_s,
            open_timeout=s.open_timeout_s,
            close_timeout=2.0,
        )
        self._port = int(self._ws_server.sockets[0].getsockname()[1])
        log.info("voxrelay listening on %s:%d (agent %s)", s.host, self.port, s.agent)

    async def _handler(self, conn: ServerConnection) -> None:
        assert isinstance(conn, RelayConnection)
        ws = conn
        if ws.request is None or not ws.request.path.split("?")[0] == STREAM_PATH:
            await ws.close(1008, "unknown path")
            return
        if self._draining:
            await ws.close(GOING_AWAY, "server shutting down")
            return
        try:
            session = Session(ws, self.settings, self.agent_factory, on_started=self._changed)
        except Exception:
            log.exception("could not set up a session")
            await ws.close(1011, "internal error")
            return
        self.sessions.add(session)
        self._ended[session] = asyncio.Event()
        self._idle.clear()
        self._changed()
        try:
            await session.run()
        except Exception:
            # A bug in one call must not take the server or other calls with it.
            log.exception("call %s failed", session.call_sid)
            await ws.close(1011, "internal error")
        finally:
            self.finished.append(dict(session.stats))
            self._keep_records(session)
            self.sessions.discard(session)
            self._ended.pop(session).set()
            if not self.sessions:
                self._idle.set()
            self._changed()

    def _keep_records(self, session: Session) -> None:
        sid = session.state.call_sid
        if not sid or not session.started:
            # Never streamed (no start, or one refused for a wrong stream token): nothing
            # anyone could ask for, and its claimed call SID must not replace a real call's.
            return
        self.records[sid] = list(session.turn_records)
        self.records.move_to_end(sid)
        while len(self.records) > RECORDS_KEPT:
            self.records.popitem(last=False)

    @property
    def live_call_sids(self) -> set[str]:
        """Call SIDs of calls in progress (known once their `start` was accepted)."""
        return {sid for s in self.sessions if s.started and (sid := s.state.call_sid)}

    async def turn_records(
        self, call_sid: str, wait_s: float = 0.0
    ) -> list[dict[str, object]] | Literal["live", "unknown"]:
        """The records of a finished call, or `live` if it is still going after waiting up to
        `wait_s` for it to end (on its end event: a caller asking right after hanging up gets
        the records as soon as the session has let go), or `unknown` (or forgotten)."""
        ended = next(
            (ev for s, ev in self._ended.items() if s.started and s.state.call_sid == call_sid),
            None,
        )
        if ended is not None and wait_s > 0:
            try:
                await asyncio.wait_for(ended.wait(), timeout=wait_s)
            except TimeoutError:
                return "live"
        if ended is not None and not ended.is_set():
            return "live"
        return self.records.get(call_sid, "unknown")

    async def shutdown(self, drain_timeout_s: float | None = None) -> None:
        """Stop accepting, wait for calls to end, then close the rest with 1001 and the port.

        While draining the port stays open so that health checks see 503 (and a load balancer
        moves on) instead of a refused connection; new upgrades and webhooks get 503 too
        (`RelayHttp`, and `_handler` for an upgrade that was already under way)."""
        drain = self.settings.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        self._draining = True
        self._changed()
        server = self._ws_server
        if server is None:
            return
        live = len(self.sessions)
        if live:
            log.info("shutting down: %d call(s) live, draining up to %.1f s", live, drain)
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=drain)
            except TimeoutError:
                log.info("drain timeout: closing %d call(s) with 1001", len(self.sessions))
                for session in list(self.sessions):
                    session.close(GOING_AWAY, "server shutting down", "shutdown")
        # Stop listening; the calls closed above finish their closing handshakes.
        server.close(close_connections=False)
        await server.wait_closed()
        log.info("server stopped")

    async def serve_until(self, stop: asyncio.Event) -> None:
        await self.start()
        await stop.wait()
        await self.shutdown()


def _install_signals(stop: asyncio.Event) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    sigs = (signal.SIGTERM, signal.SIGINT)
    for sig in sigs:
        loop.add_signal_handler(sig, stop.set)

    def remove() -> None:
        for sig in sigs:
            loop.remove_signal_handler(sig)

    return remove


async def _main(
    settings: Settings,
    ready: Callable[[RelayServer], None] | None,
    progress: Callable[[str], None] | None = None,
) -> None:
    stop = asyncio.Event()
    remove = _install_signals(stop)
    server = RelayServer(settings, progress=progress)
    try:
        await server.start()
        if ready is not None:
            ready(server)
        await stop.wait()
        log.info("signal received: stop accepting, drain")
        await server.shutdown()
    finally:
        remove()


def run(
    settings: Settings,
    ready: Callable[[RelayServer], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Run the relay on uvloop until SIGTERM/SIGINT, then shut down gracefully."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # faster-whisper logs every decode at INFO: per-utterance noise in a relay's log.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; Windows lacks it
        asyncio.run(_main(settings, ready, progress))
    else:
        uvloop.run(_main(settings, ready, progress))
    return 0
