"""One phone call: message handling, turn events, the outbound pacer, barge-in and teardown.

Everything a call owns lives on its `Session` and goes when the session ends, so calls share
nothing but the event loop. The media path has no per-message task, future or queue:

- inbound: between `start` and `stop` the connection's frame reader (Rust, see
  `httpd.RelayConnection`) takes socket bytes through the WebSocket framing, the inbound hot
  path and this call's turn detector in one call; only a frame that raised a turn flag (or,
  while an audio sink streams an utterance, each of its frames) reaches `on_turn_frame`.
  Other messages come to `on_event`; before `start`, whole frames come to `on_text`;
- outbound: the pacer is a timer callback on the playout clock. It writes agent audio at 1x
  real time, never more than `playout_lead_ms` ahead of the caller's ear, topping up in small
  bursts so it wakes a few times per 100 ms, not once per frame;
- agent events go through a small queue to the agent's own task, so a slow agent delays only
  itself and never the media path.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

from websockets.protocol import State

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
    SpeechPaused,
    SpeechStarted,
)
from voxrelay.protocols.badinput import BadInputCounter
from voxrelay.protocols.errors import ProtocolError, classify_frame_error
from voxrelay.protocols.marks import Cleared, PlayoutTracker
from voxrelay.protocols.twilio import (
    ControlEvent,
    Start,
    Stop,
    StreamState,
    clear_message,
    mark_message,
)
from voxrelay.protocols.twilio import Dtmf as DtmfMsg
from voxrelay.protocols.twilio import Mark as MarkMsg
from voxrelay.settings import Settings
from voxrelay.turns import BARGE_IN, ENDED, PAUSED, STARTED

if TYPE_CHECKING:
    from voxrelay.httpd import RelayConnection

__all__ = ["Session"]

log = logging.getLogger("voxrelay.session")

AGENT_RATE: Final = 16000
"""Rate of the caller audio handed to agents (what speech recognisers want)."""
AGENT_RATES: Final = (8000, 16000)
"""The rates an agent may ask for as its `input_rate`."""
FRAME_S: Final = 0.020
_AGENT_QUEUE: Final = 256
# A peer that stops reading while we keep writing gets closed before it costs real memory.
_MAX_WRITE_BUFFER: Final = 1 << 20


def _text_header(n: int) -> bytes:
    """RFC 6455 header of an unmasked, unfragmented text frame of `n` payload bytes."""
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


def _text_frame(text: str) -> bytes:
    """A whole text message as a server's WebSocket frame."""
    data = text.encode()
    return _text_header(len(data)) + data


class Session:
    """A Twilio Media Streams call from the upgrade to the end of the socket."""

    def __init__(
        self,
        ws: RelayConnection,
        settings: Settings,
        agent_factory: AgentFactory,
        *,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        """`on_started`, if given, is called once an authorised `start` began the stream (the
        server wakes its `wait_until` with it)."""
        self.ws = ws
        self._on_started = on_started
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        self.state = StreamState(max_message_bytes=settings.max_message_bytes)
        self.bad_input = BadInputCounter(settings.bad_input_max, settings.bad_input_window_s)
        self._turn_config: dict[str, int] = {}  # configure_turns' settings so far
        self._set_agent_rate(AGENT_RATE)
        self.tracker = PlayoutTracker()
        self._outbound: media.TwilioOutbound | None = None
        # Outbound items in send order: media messages as ready WebSocket frames (bytes, built
        # by TwilioOutbound), and after each chunk of them the name of a mark (str).
        self._queue: deque[bytes | str] = deque()
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._lead_s = settings.playout_lead_ms / 1000
        self._low_s = settings.playout_low_ms / 1000
        self._mark_frames = max(1, settings.mark_interval_ms // 20)
        # Loop-clock time at which the caller will have heard everything sent so far.
        self._play_end = 0.0
        self._sent_ms = 0.0
        self._queued = 0  # media frames in _queue
        self._sink: Callable[[bytes], None] | None = None
        self._first_frame: Callable[[float], None] | None = None
        self.turn_records: list[dict[str, object]] = []
        self._marks = 0
        self._streaming = False
        self.started = False
        """True once an authorised `start` began the stream (only such calls keep records)."""
        self._closed = False
        # Barge-ins cleared on the media path whose BargeIn the agent has not been handed yet:
        # while any is, agent audio is dropped (it was meant for the reply just cut off).
        self._barge_pending = 0
        self._agent_errors: dict[str, int] = {}
        self._marks_overflow_logged = False
        self._ending: str | None = None
        self._rx = 0
        self._t_ended = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.media_in = 0
        self._events: asyncio.Queue[AgentEvent] = asyncio.Queue(_AGENT_QUEUE)
        self._counts: dict[str, int] = {
            "media_out": 0,
            "marks_sent": 0,
            "marks_played": 0,
            "clears": 0,
            "barge_ins": 0,
            "utterances": 0,
            "agent_events_dropped": 0,
            "audio_dropped_ms": 0,
            "reply_us_max": 0,
        }
        self.agent: Agent = agent_factory(self)
        rate = getattr(self.agent, "input_rate", AGENT_RATE)
        if rate != AGENT_RATE:
            self._set_agent_rate(rate)

    def _set_agent_rate(self, rate: int) -> None:
        """Caller audio for the agent at `rate`: 16 kHz, or the wire's own 8 kHz for agents
        whose recogniser takes phone audio (no resampling; mu-law re-encodes exactly)."""
        if rate not in AGENT_RATES:
            raise ValueError(f"agent input_rate {rate} is not supported; valid: 8000, 16000")
        s = self.settings
        self.agent_rate = rate
        self.inbound = media.TwilioInbound(out_rate=rate, max_message_bytes=s.max_message_bytes)
        self._process = self.inbound.process
        self.turns = s.turn_detector(rate)
        self._feed = self.turns.feed
        self.turns.configure(**self._turn_config)

    # -- identity and counters ----------------------------------------------------------------

    @property
    def call_sid(self) -> str:
        return self.state.call_sid or "-"

    @property
    def stream_sid(self) -> str | None:
        return self.state.stream_sid

    @property
    def stats(self) -> dict[str, int]:
        return {
            "media_in": self.media_in + self.ws.media_frames,
            **self._counts,
            "marks_dropped": self.tracker.dropped_marks,
        }

    # -- CallControl: what the agent may do -----------------------------------------------------

    @property
    def playing(self) -> bool:
        """Agent audio is queued, or sent and still playing at the caller's end."""
        return bool(self._queue) or self._play_end > self._loop.time()

    def play(self, pcm: bytes, rate: int, *, last: bool = True) -> None:
        sid = self.state.stream_sid
        if sid is None or not self._streaming or self._closed:
            raise RuntimeError("no stream to play to (before start, or after the call)")
        out = self._outbound
        if out is None or out.in_rate != rate:
            fresh = media.TwilioOutbound(sid, rate)  # ValueError for an unsupported rate
            if out is not None and not self._barge_pending:
                self._enqueue(out.flush_frames())
            # (While a barge-in is pending the old one holds nothing: `_clear` reset it and
            # nothing has been played since.)
            out = self._outbound = fresh
        if self._barge_pending:
            # Checked as `process_frames` would, so that a bad call fails whatever the timing.
            if len(pcm) % 2:
                raise media.MediaError(
                    f"PCM16 input has an odd length of {len(pcm)} bytes; it must be a "
                    "multiple of 2 (16-bit samples)"
                )
            self._counts["audio_dropped_ms"] += len(pcm) * 500 // rate
            return
        frames = out.process_frames(pcm)
        if last:
            frames += out.flush_frames()
        self._enqueue(frames)

    def play_ulaw(self, codes: bytes, *, last: bool = True) -> None:
        """Agent audio already in the phone's format, mu-law 8 kHz: framed and sent as is.

        A TTS engine that speaks mu-law 8 kHz (most cloud TTS can) needs no decode, resample
        or encode on the way out; this is that path. `last` as for `play`.
        """
        sid = self.state.stream_sid
        if sid is None or not self._streaming or self._closed:
            raise RuntimeError("no stream to play to (before start, or after the call)")
        if self._barge_pending:
            self._counts["audio_dropped_ms"] += len(codes) // 8
            return
        # PCM still waiting goes first; TwilioOutbound keeps a partial frame of codes until
        # more arrive (or `last` pads it), whatever its PCM rate.
        out = self._outbound
        if out is None:
            out = self._outbound = media.TwilioOutbound(sid, 8000)
        self._enqueue(out.process_codes_frames(codes, last=last))

    @property
    def audio_end_ms(self) -> float:
        return self._sent_ms + 20.0 * self._queued

    def configure_turns(
        self,
        *,
        end_ms: int | None = None,
        pause_ms: int | None = None,
        barge_in_ms: int | None = None,
    ) -> None:
        self.turns.configure(end_ms=end_ms, pause_ms=pause_ms, barge_in_ms=barge_in_ms)
        # Kept so that a detector rebuilt for the agent's input rate (the agent is asked for
        # it only once it exists) keeps what its constructor asked for.
        given = {"end_ms": end_ms, "pause_ms": pause_ms, "barge_in_ms": barge_in_ms}
        self._turn_config.update({k: v for k, v in given.items() if v is not None})

    def end_turn_after(self, silence_ms: float, token: int) -> bool:
        turns = self.turns
        if self._closed or not turns.in_speech or turns.run_token != token:
            return False
        flags = turns.end_after(silence_ms, token)
        if flags:
            self._on_turn(flags, b"")
        return True

    def set_audio_sink(self, sink: Callable[[bytes], None] | None) -> None:
        """Stream the caller's utterances to `sink` frame by frame. Set while an utterance is
        already open (an agent that sets it on CallStarted can be a few frames late), the
        sink first gets that utterance's audio so far, so a recogniser never misses an onset."""
        self._sink = sink
        self.ws.media_audio = sink is not None
        if sink is not None and self.turns.in_speech:
            sink(self.turns.audio_so_far())

    def notify_first_frame(self, callback: Callable[[float], None]) -> None:
        self._first_frame = callback

    def record_turn(self, record: Mapping[str, object]) -> None:
        self.turn_records.append(dict(record))

    async def clear(self) -> float:
        """Drop queued and buffered agent audio; returns the heard position in ms."""
        return self._clear().heard_ms

    async def hangup(self, reason: str = "agent hangup") -> None:
        self.close(1000, reason, "hangup")
        await self.ws.wait_closed()

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the call until the socket is closed (by either side), then free everything."""
        ws = self.ws
        agent_task = self._loop.create_task(self._agent_loop())
        self._watchdog = self._loop.call_later(self.settings.idle_timeout_s, self._check_idle, 0)
        ws.attach(self)
        try:
            await ws.wait_closed()
        finally:
            ws.detach()
            self._closed = True
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._stop_pacer()
            self._streaming = False
            self._post(CallEnded(self._ending or "disconnected"), force=True)
            cancelled = False
            try:
                await asyncio.wait_for(agent_task, timeout=2.0)
            except TimeoutError:
                agent_task.cancel()
            except asyncio.CancelledError:
                agent_task.cancel()
                # The agent task was cancelled (by the agent itself, say): the call ends as
                # usual. But if this task is being cancelled, that must not be swallowed.
                task = asyncio.current_task()
                cancelled = task is not None and task.cancelling() > 0
            log.info(
                "call %s ended (%s): %s bad=%s%s",
                self.call_sid,
                self._ending or "disconnected",
                self.stats,
                self.bad_input.counts(),
                f" agent_errors={self._agent_errors}" if self._agent_errors else "",
            )
            self._outbound = None
            if cancelled:
                raise asyncio.CancelledError

    def close(self, code: int, reason: str, why: str) -> None:
        """Close the call (from any callback); `run` then finishes the teardown."""
        if self._closed:
            return
        self._closed = True
        self._ending = self._ending or why
        self._stop_pacer()
        self.ws.close_soon(code, reason, self.call_sid)

    @property
    def _received(self) -> int:
        """Messages so far, for the idle watchdog (the reader consumes most media itself)."""
        return self._rx + self.ws.media_frames

    def _check_idle(self, seen: int) -> None:
        if self._closed:
            return
        if self._received == seen:
            log.warning(
                "call %s: nothing received for %.0f s; closing",
                self.call_sid,
                self.settings.idle_timeout_s,
            )
            self.close(1001, "idle timeout", "idle")
            return
        self._watchdog = self._loop.call_later(
            self.settings.idle_timeout_s, self._check_idle, self._received
        )

    def _send(self, text: str) -> None:
        """Write one text message now (no await: the pacer and barge-in run in callbacks)."""
        self._write((_text_frame(text),))

    def _write(self, frames: Iterable[bytes]) -> None:
        """Hand several whole WebSocket frames to the transport in one write.

        The pacer sends a few frames and a mark per wake-up; on loopback and in VMs the
        write system call costs more than the framing, so they go out together. The frames
        are built by us, not `websockets`' `send_text` (4 us a message): media frames come
        ready from `TwilioOutbound`, the rare control texts through `_text_frame`. Anything
        `websockets` itself has waiting (a pong) goes first, so the stream stays in order.
        """
        ws = self.ws
        proto = ws.protocol
        if proto.state is not State.OPEN:
            return
        ws.send_data()
        transport = ws.transport
        transport.writelines(frames)
        if transport.get_write_buffer_size() > _MAX_WRITE_BUFFER:
            log.warning("call %s: peer is not reading; closing", self.call_sid)
            self.close(1008, "peer not reading", "error")

    # -- inbound (called by the connection for each complete data frame) ----------------------

    def on_text(self, data: bytes | bytearray | memoryview) -> None:
        """A whole text message the connection did not run through the inbound path itself
        (before `start`, or on the stock `websockets` path)."""
        if self._closed:
            return
        try:
            event, pcm, speech = self._process(data)
        except media.FrameError as e:
            self.on_frame_error(str(e))
            return
        if event == "media" and self._streaming:
            self.media_in += 1
            self._rx += 1  # the reader counts the media it runs itself (`ws.media_frames`)
            self.on_media(pcm, speech)
        else:
            self.on_event(event, data)

    def on_media(self, pcm: bytes, speech: bool | None) -> None:
        """One media message, already through the inbound hot path (jitter buffer, G.711,
        VAD, resampling): `pcm` is what it released, `speech` the VAD decision, None if the
        jitter buffer released nothing."""
        if self._closed:
            return
        if speech is not None:
            flags = self._feed(pcm, speech)
            if flags:
                self._on_turn(flags, pcm)
            elif self._sink is not None and self.turns.in_speech:
                self._sink(pcm)

    def on_turn_frame(self, pcm: bytes, flags: int) -> None:
        """A media frame the connection's reader already fed to `self.turns` (which it does
        while streaming): only frames that raised flags, or, while an audio sink is set,
        frames of an open utterance, come here."""
        if self._closed:
            return
        if flags:
            self._on_turn(flags, pcm)
        elif self._sink is not None:
            self._sink(pcm)

    def on_event(self, event: str, data: bytes | bytearray | memoryview) -> None:
        """Any other message: parsed and checked by the protocol state machine."""
        if self._closed:
            return
        self._rx += 1
        try:
            ev = self.state.receive(event, data)
        except ProtocolError as e:
            if event == "start" and not self._streaming:
                self._start_rejected(e)
            else:
                self._bad(e.kind, str(e))
            return
        if ev is not None:
            self._on_control(ev)

    def _start_rejected(self, e: ProtocolError) -> None:
        """A `start` that cannot begin a stream (wrong media format, missing fields...): the
        call cannot carry audio, so it ends now with the close code the error calls for,
        rather than lingering while its media are counted as arriving before a start."""
        self.bad_input.record(e.kind, self._loop.time())
        log.warning(
            "call %s: start rejected (%s): %s; closing with %d",
            self.call_sid,
            e.kind,
            str(e)[:200],
            e.close_code,
        )
        self.close(e.close_code, f"bad start: {e}", "bad_start")

    def on_frame_error(self, text: str) -> None:
        """A message the inbound path could not read (bad JSON, base64, payload size...)."""
        if self._closed:
            return
        self._rx += 1
        self._bad(classify_frame_error(text), text)

    def on_binary(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            return
        self._rx += 1
        try:
            self.state.receive_binary(data)
        except ProtocolError as e:
            self._bad(e.kind, str(e))

    def _bad(self, kind: str, message: str) -> None:
        """Count one bad message; close the call when the flood limit says so."""
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
            self.close(v.close_code, v.reason, "bad_input")

    def _on_control(self, ev: ControlEvent) -> None:
        if isinstance(ev, Start):
            secret = self.settings.stream_secret
            if secret is not None:
                given = ev.custom_parameters.get(self.settings.stream_secret_param, "")
                if not hmac.compare_digest(given.encode(), secret.encode()):
                    log.warning("call %s: stream token missing or wrong; closing", ev.call_sid)
                    self.close(1008, "stream token missing or wrong", "unauthorised")
                    return
            self.started = True
            self._set_streaming(True)
            log.info("call %s started (stream %s)", ev.call_sid, ev.stream_sid)
            if self._on_started is not None:
                self._on_started()
            self._post(
                CallStarted(ev.stream_sid, ev.call_sid, ev.account_sid, dict(ev.custom_parameters))
            )
        elif isinstance(ev, MarkMsg):
            t = self.tracker
            ignored = t.unknown_echoes + t.flushed_echoes
            heard = t.echoed(ev.name, self._loop.time() * 1000)
            if t.unknown_echoes + t.flushed_echoes == ignored:
                self._counts["marks_played"] += 1
                self._post(MarkPlayed(ev.name, heard))
        elif isinstance(ev, DtmfMsg):
            self._post(Dtmf(ev.digit))
        elif isinstance(ev, Stop):
            self._set_streaming(False)
            self.close(1000, "stream stopped", "stop")

    def _set_streaming(self, on: bool) -> None:
        """Media flows between `start` and `stop`; meanwhile the connection's frame reader
        runs text frames through this call's inbound path itself (one Rust call per message)."""
        self._streaming = on
        ws = self.ws
        ws.media_inbound = self.inbound if on else None
        ws.media_turns = self.turns if on else None

    def _on_turn(self, flags: int, pcm: bytes) -> None:
        turns = self.turns
        sink = self._sink
        if sink is not None:
            if flags & STARTED:
                sink(turns.audio_so_far())
            elif pcm and (turns.in_speech or flags & ENDED):
                sink(pcm)
        if flags & STARTED:
            self._post(SpeechStarted(turns.speech_start_ms))
        if flags & PAUSED:
            self._post(
                SpeechPaused(
                    turns.pause_count, turns.position_ms, turns.silence_ms, self._loop.time()
                )
            )
        if flags & BARGE_IN and self.playing:
            cleared = self._clear()
            self._counts["barge_ins"] += 1
            # Until the agent has the BargeIn (its task runs later), audio it hands over was
            # meant for the reply just cut off: drop it (see `play`), or the caller would hear
            # the rest of a clause the clear was for.
            # Forced: with the agent's queue full, dropping the BargeIn would leave the rest
            # of the reply playing (`_post` takes back the count of a BargeIn it drops).
            self._post(BargeIn(cleared.heard_ms, cleared.sent_ms), force=True)
            self._barge_pending += 1
        if flags & ENDED:
            self._counts["utterances"] += 1
            self._t_ended = self._loop.time()
            self._post(
                SpeechEnded(
                    turns.utterance(),
                    self.agent_rate,
                    turns.speech_start_ms,
                    turns.position_ms,
                    turns.onset_offset_ms,
                    turns.silence_ms,
                    self._t_ended,
                    turns.run_token,
                )
            )

    # -- agent events -------------------------------------------------------------------------

    def _post(self, ev: AgentEvent, *, force: bool = False) -> bool:
        """Queue `ev` for the agent; False if it was dropped (the agent is far behind). Forced,
        the oldest queued event is dropped instead."""
        try:
            self._events.put_nowait(ev)
        except asyncio.QueueFull:
            self._counts["agent_events_dropped"] += 1
            if not force:
                return False
            dropped = self._events.get_nowait()
            if isinstance(dropped, BargeIn) and self._barge_pending:
                self._barge_pending -= 1
            self._events.put_nowait(ev)
        return True

    async def _agent_loop(self) -> None:
        on_event = self.agent.on_event
        while True:
            ev = await self._events.get()
            if isinstance(ev, BargeIn) and self._barge_pending:
                # From here the agent knows: what it plays next is its new reply.
                self._barge_pending -= 1
            try:
                await on_event(ev)
            except asyncio.CancelledError as e:
                # A CancelledError from an agent awaiting a task it cancelled itself (its TTS,
                # say) is an agent failure like any other: the loop must go on, or later
                # events (a BargeIn ending a barge-in's drop of agent audio) go unread. Only a
                # cancellation of this task ends it.
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                self._agent_failed(ev, e)
            except Exception as e:
                self._agent_failed(ev, e)
            if isinstance(ev, CallEnded):
                return

    def _agent_failed(self, ev: AgentEvent, e: BaseException) -> None:
        """Log each kind of agent failure once per call (an agent can fail on every 20 ms
        event); the count of each goes in the call's end line."""
        kind = type(e).__name__
        n = self._agent_errors[kind] = self._agent_errors.get(kind, 0) + 1
        if n == 1:
            log.error(
                "call %s: agent failed on %s; further %s on this call are counted, not logged",
                self.call_sid,
                type(ev).__name__,
                kind,
                exc_info=e,
            )

    # -- outbound -----------------------------------------------------------------------------

    def _enqueue(self, frames: list[bytes]) -> None:
        if not frames:
            return
        q = self._queue
        step = self._mark_frames
        for i in range(0, len(frames), step):
            chunk = frames[i : i + step]
            q.extend(chunk)
            self._queued += len(chunk)
            self._marks += 1
            q.append(f"m{self._marks}")
        if self._timer is None:
            self._timer = self._loop.call_soon(self._pump)

    def _stop_pacer(self) -> None:
        self._queue.clear()
        self._queued = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _pump(self) -> None:
        """Send what the playout clock allows, then sleep until the lead falls to `low`."""
        self._timer = None
        q = self._queue
        if not q or self._closed:
            return
        loop = self._loop
        now = loop.time()
        if self._play_end < now:
            # The caller's buffer ran dry (or this is the first audio): what we send now
            # starts playing now.
            self._play_end = now
            self.tracker.audio_started(now * 1000)
        # The platform plays whole frames on a clock whose phase we cannot see: the frame it
        # is playing may have only just started. Counting that frame as unheard keeps the
        # audio ahead of the caller's ear within `playout_lead_ms` whatever the phase.
        limit = now + self._lead_s - FRAME_S + 1e-6
        sid = self.state.stream_sid or ""
        counts = self._counts
        out: list[bytes] = []
        queued_before = self._queued
        while q:
            item = q[0]
            if isinstance(item, str):  # a mark's name
                q.popleft()
                self._mark_sent(item, now)
                counts["marks_sent"] += 1
                out.append(_text_frame(mark_message(sid, item)))
                continue
            if self._play_end + FRAME_S > limit:
                break
            q.popleft()
            self._queued -= 1
            self._play_end += FRAME_S
            self._sent_ms += 20.0
            counts["media_out"] += 1
            out.append(item)
        if out:
            self._write(out)
            if self._first_frame is not None and self._queued < queued_before:
                notify, self._first_frame = self._first_frame, None
                notify(loop.time())
            if self._t_ended:
                # End of caller speech -> first reply frame on the wire: the relay's share of
                # the response time (agent included), kept per call for benches and logs.
                delay_us = int((loop.time() - self._t_ended) * 1e6)
                self._t_ended = 0.0
                counts["reply_us_max"] = max(counts["reply_us_max"], delay_us)
        if q and not self._closed:
            self._timer = loop.call_at(self._play_end - self._low_s, self._pump)

    def _mark_sent(self, name: str, now: float) -> None:
        """Tell the tracker a mark went out. A platform that never echoes marks fills it up:
        then the oldest pending mark counts as played (its audio went out at 1x real time
        long ago), so the pacer goes on and the heard position still moves."""
        t = self.tracker
        if t.full:
            if not self._marks_overflow_logged:
                self._marks_overflow_logged = True
                log.warning(
                    "call %s: %d marks pending, the platform is not echoing them; from now on "
                    "the oldest pending mark counts as played when another is sent",
                    self.call_sid,
                    len(t.pending),
                )
            t.drop_oldest(now * 1000)
        t.sent(name, self._sent_ms)

    def _clear(self) -> Cleared:
        """Stop agent audio now: drop the queue, tell the platform, work out what was heard.

        Marks give the platform's word for it; between the last echoed mark and the first
        pending one the tracker interpolates. Frames sent after the last mark have no mark yet,
        so when none is pending the playout clock fills in (sent minus what is still queued at
        the caller's end). Once marks were dropped unechoed (see `_mark_sent`) the tracker
        lags playback by about `max_pending` marks, so the clock's estimate counts then too.
        """
        now = self._loop.time()
        clock_heard = self._sent_ms - max(0.0, self._play_end - now) * 1000
        self._stop_pacer()
        if self._outbound is not None:
            self._outbound.reset()
        cleared = self.tracker.cleared(now * 1000)
        if cleared.flushed and not self.tracker.dropped_marks:
            heard = cleared.heard_ms
        else:
            heard = max(cleared.heard_ms, clock_heard)
        cleared = Cleared(heard_ms=heard, sent_ms=self._sent_ms, flushed=cleared.flushed)
        self._play_end = now
        self._counts["clears"] += 1
        sid = self.state.stream_sid
        if sid is not None:
            self._send(clear_message(sid))
        return cleared
