"""One phone call: the receive loop, turn events, the outbound pacer, barge-in and teardown.

Everything a call owns lives on its `Session` and goes when the session returns, so calls
share nothing but the event loop. Three tasks per call:

- the receive loop (the connection handler itself): one media-engine call per WebSocket
  message; media frames feed the turn detector and nothing else happens for them in Python;
- the pacer: sends agent audio at 1x real time, never more than `playout_lead_ms` ahead of the
  caller's ear, topping up in small bursts so it wakes a few times per 100 ms, not per frame;
- the agent task: delivers turn-level events to the agent in order, so a slow agent delays
  only itself.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque
from typing import Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voxrelay import media
from voxrelay.agent import (
    Agent,
    AgentEvent,
    AgentFactory,
    BargeIn,
    CallEnded,
    CallStarted,
    Dtmf,
    MarkPlayed,
    SpeechEnded,
    SpeechStarted,
)
from voxrelay.protocols.badinput import BadInputCounter
from voxrelay.protocols.errors import ProtocolError, classify_frame_error
from voxrelay.protocols.marks import Cleared, PlayoutTracker
from voxrelay.protocols.twilio import Dtmf as DtmfMsg
from voxrelay.protocols.twilio import Mark as MarkMsg
from voxrelay.protocols.twilio import Start, Stop, StreamState, clear_message, mark_message
from voxrelay.settings import Settings
from voxrelay.turns import BARGE_IN, ENDED, STARTED, TurnDetector

__all__ = ["Session"]

log = logging.getLogger("voxrelay.session")

AGENT_RATE: Final = 16000
"""Rate of the caller audio handed to agents (what speech recognisers want)."""
FRAME_S: Final = 0.020
_AGENT_QUEUE: Final = 256
_MARK: Final = 0
_MEDIA: Final = 1


class Session:
    """A Twilio Media Streams call from `start` to the end of the socket."""

    def __init__(self, ws: ServerConnection, settings: Settings, agent_factory: AgentFactory):
        self.ws = ws
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        self.state = StreamState(max_message_bytes=settings.max_message_bytes)
        self.inbound = media.TwilioInbound(
            out_rate=AGENT_RATE, max_message_bytes=settings.max_message_bytes
        )
        self.bad_input = BadInputCounter(settings.bad_input_max, settings.bad_input_window_s)
        self.turns = TurnDetector(
            rate=AGENT_RATE,
            start_ms=settings.speech_start_ms,
            end_ms=settings.speech_end_ms,
            barge_in_ms=settings.barge_in_ms,
            preroll_ms=settings.preroll_ms,
            max_utterance_ms=settings.max_utterance_ms,
        )
        self.tracker = PlayoutTracker()
        self._outbound: media.TwilioOutbound | None = None
        # Outbound items in send order: (_MEDIA, text) frames and (_MARK, name) after chunks.
        self._queue: deque[tuple[int, str]] = deque()
        self._wake = asyncio.Event()
        self._lead_s = settings.playout_lead_ms / 1000
        self._low_s = settings.playout_low_ms / 1000
        self._mark_frames = max(1, settings.mark_interval_ms // 20)
        # Wall time (loop clock) at which the caller will have heard everything sent so far.
        self._play_end = 0.0
        self._sent_ms = 0.0
        self._marks = 0
        self._streaming = False
        self._ending: str | None = None
        self._rx = 0
        self._events: asyncio.Queue[AgentEvent] = asyncio.Queue(_AGENT_QUEUE)
        self.stats: dict[str, int] = {
            "media_in": 0,
            "media_out": 0,
            "marks_sent": 0,
            "marks_played": 0,
            "clears": 0,
            "barge_ins": 0,
            "utterances": 0,
            "agent_events_dropped": 0,
        }
        self.agent: Agent = agent_factory(self)

    # -- identity -------------------------------------------------------------------------

    @property
    def call_sid(self) -> str:
        return self.state.call_sid or "-"

    @property
    def stream_sid(self) -> str | None:
        return self.state.stream_sid

    # -- CallControl: what the agent may do -------------------------------------------------

    @property
    def playing(self) -> bool:
        """Agent audio is queued, or sent and still playing at the caller's end."""
        return bool(self._queue) or self._play_end > self._loop.time()

    def play(self, pcm: bytes, rate: int, *, last: bool = True) -> None:
        sid = self.state.stream_sid
        if sid is None or not self._streaming:
            raise RuntimeError("no stream to play to yet (before start, or after the call)")
        out = self._outbound
        if out is None or out.in_rate != rate:
            if out is not None:
                self._enqueue(out.flush())
            out = self._outbound = media.TwilioOutbound(sid, rate)
        frames = out.process(pcm)
        if last:
            frames += out.flush()
        self._enqueue(frames)

    def _enqueue(self, frames: list[str]) -> None:
        if not frames:
            return
        q = self._queue
        step = self._mark_frames
        for i in range(0, len(frames), step):
            q.extend((_MEDIA, f) for f in frames[i : i + step])
            self._marks += 1
            q.append((_MARK, f"m{self._marks}"))
        self._wake.set()

    async def clear(self) -> float:
        """Drop queued and buffered agent audio; returns the heard position in ms."""
        return (await self._clear()).heard_ms

    async def hangup(self, reason: str = "agent hangup") -> None:
        self._ending = self._ending or "hangup"
        await self.ws.close(1000, reason)

    # -- the call ----------------------------------------------------------------------------

    async def run(self) -> None:
        agent_task = self._loop.create_task(self._agent_loop())
        pacer = self._loop.create_task(self._pace())
        watchdog = self._loop.call_later(self.settings.idle_timeout_s, self._check_idle, 0)
        try:
            await self._receive()
        finally:
            watchdog.cancel()
            pacer.cancel()
            self._queue.clear()
            self._streaming = False
            self._post(CallEnded(self._ending or "disconnected"), force=True)
            try:
                await asyncio.wait_for(agent_task, timeout=2.0)
            except (TimeoutError, asyncio.CancelledError):
                agent_task.cancel()
            log.info(
                "call %s ended (%s): %s bad=%s",
                self.call_sid,
                self._ending or "disconnected",
                self.stats,
                self.bad_input.counts(),
            )
            self._outbound = None

    def terminate(self, code: int, reason: str, why: str) -> None:
        """Close the call from outside (shutdown, idle watchdog); the run loop then ends."""
        self._ending = self._ending or why
        self._loop.create_task(self.ws.close(code, reason))

    def _check_idle(self, seen: int) -> None:
        if self._rx == seen:
            log.warning(
                "call %s: nothing received for %.0f s; closing",
                self.call_sid,
                self.settings.idle_timeout_s,
            )
            self.terminate(1001, "idle timeout", "idle")
            return
        self._loop.call_later(self.settings.idle_timeout_s, self._check_idle, self._rx)

    async def _receive(self) -> None:
        process = self.inbound.process
        feed = self.turns.feed
        stats = self.stats
        try:
            async for msg in self.ws:
                self._rx += 1
                if isinstance(msg, bytes):
                    try:
                        self.state.receive_binary(msg)
                    except ProtocolError as e:
                        if await self._bad(e.kind, str(e)):
                            return
                    continue
                try:
                    event, pcm, speech = process(msg)
                except media.FrameError as e:
                    text = str(e)
                    if await self._bad(classify_frame_error(text), text):
                        return
                    continue
                if event == "media" and self._streaming:
                    stats["media_in"] += 1
                    if speech is not None:
                        flags = feed(pcm, speech)
                        if flags:
                            await self._on_turn(flags)
                    continue
                try:
                    ev = self.state.receive(event, msg)
                except ProtocolError as e:
                    if await self._bad(e.kind, str(e)):
                        return
                    continue
                if ev is not None and await self._on_control(ev):
                    return
        except ConnectionClosed:
            pass

    async def _bad(self, kind: str, message: str) -> bool:
        """Count one bad message; True when the flood limit says to close the call."""
        v = self.bad_input.record(kind, self._loop.time())
        if v.log:
            log.warning(
                "call %s: bad input (%s): %s; further %s on this call are counted, not logged",
                self.call_sid,
                kind,
                message[:200],
                kind,
            )
        if v.close and v.close_code is not None:
            log.warning("call %s: closing with %d: %s", self.call_sid, v.close_code, v.reason)
            self._ending = self._ending or "bad_input"
            await self.ws.close(v.close_code, v.reason)
            return True
        return False

    async def _on_control(self, ev: object) -> bool:
        if isinstance(ev, Start):
            secret = self.settings.stream_secret
            if secret is not None:
                given = ev.custom_parameters.get(self.settings.stream_secret_param, "")
                if not hmac.compare_digest(given.encode(), secret.encode()):
                    log.warning("call %s: stream token missing or wrong; closing", ev.call_sid)
                    self._ending = "unauthorised"
                    await self.ws.close(1008, "stream token missing or wrong")
                    return True
            self._streaming = True
            log.info("call %s started (stream %s)", ev.call_sid, ev.stream_sid)
            self._post(
                CallStarted(ev.stream_sid, ev.call_sid, ev.account_sid, dict(ev.custom_parameters))
            )
        elif isinstance(ev, MarkMsg):
            t = self.tracker
            ignored = t.unknown_echoes + t.flushed_echoes
            heard = t.echoed(ev.name, self._loop.time() * 1000)
            if t.unknown_echoes + t.flushed_echoes == ignored:
                self.stats["marks_played"] += 1
                self._post(MarkPlayed(ev.name, heard))
        elif isinstance(ev, DtmfMsg):
            self._post(Dtmf(ev.digit))
        elif isinstance(ev, Stop):
            self._ending = "stop"
            self._streaming = False
            await self.ws.close(1000, "stream stopped")
            return True
        return False

    async def _on_turn(self, flags: int) -> None:
        turns = self.turns
        if flags & STARTED:
            self._post(SpeechStarted(turns.speech_start_ms))
        if flags & BARGE_IN and self.playing:
            cleared = await self._clear()
            self.stats["barge_ins"] += 1
            self._post(BargeIn(cleared.heard_ms, cleared.sent_ms))
        if flags & ENDED:
            self.stats["utterances"] += 1
            self._post(
                SpeechEnded(turns.utterance(), AGENT_RATE, turns.speech_start_ms, turns.position_ms)
            )

    async def _clear(self) -> Cleared:
        now = self._loop.time()
        self._queue.clear()
        if self._outbound is not None:
            self._outbound.reset()
        cleared = self.tracker.cleared(now * 1000)
        self._play_end = now
        self.stats["clears"] += 1
        sid = self.state.stream_sid
        if sid is not None:
            try:
                await self.ws.send(clear_message(sid))
            except ConnectionClosed:
                pass
        return cleared

    def _post(self, ev: AgentEvent, *, force: bool = False) -> None:
        try:
            self._events.put_nowait(ev)
        except asyncio.QueueFull:
            if force:
                self._events.get_nowait()
                self._events.put_nowait(ev)
            self.stats["agent_events_dropped"] += 1

    async def _agent_loop(self) -> None:
        on_event = self.agent.on_event
        while True:
            ev = await self._events.get()
            try:
                await on_event(ev)
            except Exception:
                log.exception("call %s: agent failed on %s", self.call_sid, type(ev).__name__)
            if isinstance(ev, CallEnded):
                return

    async def _pace(self) -> None:
        """Send queued agent audio on a playout clock at 1x with at most `lead` ahead."""
        loop = self._loop
        q = self._queue
        wake = self._wake
        lead = self._lead_s
        low = self._low_s
        send = self.ws.send
        tracker = self.tracker
        stats = self.stats
        sid = ""
        try:
            while True:
                if not q:
                    wake.clear()
                    await wake.wait()
                    continue
                now = loop.time()
                if self._play_end < now:
                    # The caller's buffer ran dry (or this is the first audio): playback of
                    # what we send now starts now.
                    self._play_end = now
                    tracker.audio_started(now * 1000)
                while q:
                    kind, item = q[0]
                    if kind == _MARK:
                        q.popleft()
                        sid = sid or (self.state.stream_sid or "")
                        tracker.sent(item, self._sent_ms)
                        stats["marks_sent"] += 1
                        await send(mark_message(sid, item))
                        continue
                    if self._play_end + FRAME_S - now > lead + 1e-6:
                        break
                    q.popleft()
                    self._play_end += FRAME_S
                    self._sent_ms += 20.0
                    stats["media_out"] += 1
                    await send(item)
                if q:
                    # Sleep until the lead has shrunk to `low`, then top up again.
                    await asyncio.sleep(max(0.0, self._play_end - loop.time() - low))
        except ConnectionClosed:
            q.clear()
