"""`voxrelay call`: the platform side of a Twilio Media Stream, as a developer's phone.

It behaves as Twilio does: `connected`, `start` (mediaFormat, customParameters), 20 ms mu-law
frames with string counters paced in real time, then `stop`. What the server sends is played
through a playout buffer at 1x; each mark is echoed when playback reaches it; `clear` drops
the buffer and returns pending marks at once. One clock tick every 20 ms drives both sending
and playout, so "what the caller heard" is aligned sample for sample with what it said, and a
reply's latency is read off the same timeline.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import wave
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voxrelay import media
from voxrelay.protocols.signature import compute_signature
from voxrelay.protocols.twilio import (
    Clear,
    Mark,
    Media,
    ProtocolError,
    connected_message,
    dtmf_message,
    mark_echo_message,
    media_message,
    parse_message,
    start_message,
    stop_message,
)

__all__ = [
    "CallOptions",
    "CallResult",
    "read_wav",
    "run_call",
    "speech_segments",
    "write_wav",
]

RATE: Final = 8000
FRAME: Final = 160  # samples (and mu-law bytes) per 20 ms
FRAME_MS: Final = 20
_SILENCE_CODE: Final = b"\xff"  # mu-law of 0


def read_wav(path: str | Path, rate: int = RATE) -> bytes:
    """PCM16 mono at `rate` from a WAV of any common rate, width (8/16/24/32) and channels."""
    with wave.open(str(path)) as w:
        src_rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
        raw = w.readframes(w.getnframes())
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 16
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.int64) >> 16
    else:
        raise ValueError(f"{path}: sample width of {width} bytes is not supported (1..4)")
    if channels > 1:
        x = x[: len(x) - len(x) % channels].reshape(-1, channels).mean(axis=1)
    pcm: bytes = np.clip(x, -32768, 32767).astype("<i2").tobytes()
    if src_rate != rate:
        rs = media.Resampler(src_rate, rate)
        pcm = rs.process(pcm) + rs.flush()
    return pcm


def write_wav(path: str | Path, pcm: bytes, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def _frame_rms(pcm: bytes) -> np.ndarray:
    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % (2 * FRAME)], "<i2").astype(np.float64)
    return np.sqrt(np.mean(x.reshape(-1, FRAME) ** 2, axis=1)) if len(x) else np.zeros(0)


def speech_segments(
    pcm: bytes, *, threshold: float = 300.0, min_gap_ms: int = 400, min_len_ms: int = 100
) -> list[tuple[int, int]]:
    """(start_ms, end_ms) of the loud stretches of 8 kHz PCM: the caller's turns, offline.

    A plain energy gate is right here: the input is a known clean recording, and it keeps the
    simulator's notion of a turn independent of the server's VAD that it is measuring.
    """
    loud = _frame_rms(pcm) > threshold
    segs: list[tuple[int, int]] = []
    start = None
    gap = 0
    for i, v in enumerate(loud):
        if v:
            if start is None:
                start = i
            gap = 0
        elif start is not None:
            gap += 1
            if gap * FRAME_MS >= min_gap_ms:
                segs.append((start, i - gap + 1))
                start = None
                gap = 0
    if start is not None:
        segs.append((start, len(loud) - gap))
    return [(a * FRAME_MS, b * FRAME_MS) for a, b in segs if (b - a) * FRAME_MS >= min_len_ms]


@dataclass
class CallOptions:
    url: str
    audio: bytes
    """Caller audio, PCM16 mono 8 kHz."""
    tail_s: float = 2.0
    """Silence sent after the audio, so the last reply can be heard, before `stop`."""
    jitter_ms: float = 0.0
    loss: float = 0.0
    reorder: float = 0.0
    seed: int = 1
    dtmf: str = ""
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    auth_token: str | None = None
    """Sign the upgrade with `X-Twilio-Signature` as Twilio does."""
    headers: Mapping[str, str] = field(default_factory=dict)
    send_stop: bool = True
    stop_when_idle: bool = False
    """End early once the audio is out, each caller turn got a reply, and it has played."""


@dataclass
class Turn:
    start_ms: int
    end_ms: int
    reply_ms: float | None = None
    """Time of the first audible reply audio after this turn ended (None: no reply)."""

    @property
    def latency_ms(self) -> float | None:
        return None if self.reply_ms is None else self.reply_ms - self.end_ms


@dataclass
class CallResult:
    heard: bytes = b""
    """What the caller heard, PCM16 8 kHz, tick-aligned with the caller audio."""
    frames_sent: int = 0
    frames_lost: int = 0
    media_received: int = 0
    marks_received: int = 0
    marks_echoed: int = 0
    clears_ms: list[float] = field(default_factory=list)
    first_media_ms: list[float] = field(default_factory=list)
    """Arrival times of the first media message after each silence of the server."""
    max_buffered_ms: float = 0.0
    """Most reply audio ever waiting in the playout buffer: the server's lead."""
    underruns: int = 0
    """Reply audio that arrived into an empty buffer mid-chunk (no mark in between): gaps."""
    late_ticks: int = 0
    """Ticks more than one frame late: the simulator itself could not keep real time."""
    close_code: int | None = None
    close_reason: str = ""
    turns: list[Turn] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def received_ms(self) -> int:
        return self.media_received * FRAME_MS


def _decode(payload: str) -> bytes:
    return media.ulaw_decode(base64.b64decode(payload))


class _Phone:
    """One simulated call's state: what was sent, what is buffered for playout, what was heard."""

    def __init__(self, opts: CallOptions) -> None:
        self.opts = opts
        self.sid = "MZ" + secrets.token_hex(16)
        self.call_sid = "CA" + secrets.token_hex(16)
        self.account_sid = "AC" + secrets.token_hex(16)
        self.result = CallResult()
        self.buffer = bytearray()  # received, not yet played (PCM16)
        self.received = 0  # bytes ever appended to the buffer (playout coordinates)
        self.played = 0
        self.marks: deque[tuple[int, str]] = deque()  # (playout position, name)
        self.to_echo: list[str] = []
        self.seq = 0
        self.t0 = 0.0
        self.quiet = True  # nothing received since the last playout drain
        self.last_was_media = False

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def now_ms(self) -> float:
        return (asyncio.get_running_loop().time() - self.t0) * 1000

    def on_message(self, text: str | bytes) -> None:
        try:
            ev = parse_message(text)
        except ProtocolError:
            return
        r = self.result
        if isinstance(ev, Media):
            pcm = _decode(ev.payload)
            if self.quiet:
                r.first_media_ms.append(self.now_ms())
                self.quiet = False
            elif not self.buffer and self.last_was_media:
                r.underruns += 1
            self.last_was_media = True
            self.buffer += pcm
            self.received += len(pcm)
            r.media_received += 1
            r.max_buffered_ms = max(r.max_buffered_ms, len(self.buffer) / 16)
        elif isinstance(ev, Mark):
            self.last_was_media = False
            r.marks_received += 1
            if self.received <= self.played:
                self.to_echo.append(ev.name)
            else:
                self.marks.append((self.received, ev.name))
        elif isinstance(ev, Clear):
            r.clears_ms.append(self.now_ms())
            self.buffer.clear()
            self.played = self.received
            # Twilio returns every pending mark at once after a clear.
            self.to_echo.extend(name for _, name in self.marks)
            self.marks.clear()
            self.quiet = True
            self.last_was_media = False

    def play_tick(self) -> bytes:
        """20 ms of playout: buffered audio or silence; queue marks that were reached."""
        n = 2 * FRAME
        buf = self.buffer
        if len(buf) >= n:
            out = bytes(buf[:n])
            del buf[:n]
        elif buf:
            out = bytes(buf) + b"\0" * (n - len(buf))
            buf.clear()
        else:
            out = b"\0" * n
        self.played = self.received - len(buf)
        while self.marks and self.marks[0][0] <= self.played:
            self.to_echo.append(self.marks.popleft()[1])
        if not buf and not self.marks:
            self.quiet = True
        return out


def _schedule(n: int, opts: CallOptions, rng: np.random.Generator) -> tuple[list[list[int]], int]:
    """Which frame indices go out at each tick, after loss, reordering and jitter."""
    keep = [i for i in range(n) if not (opts.loss > 0 and rng.random() < opts.loss)]
    lost = n - len(keep)
    for j in range(len(keep) - 1):
        if opts.reorder > 0 and rng.random() < opts.reorder:
            keep[j], keep[j + 1] = keep[j + 1], keep[j]
    due = []
    for pos, i in enumerate(keep):
        delay = rng.uniform(0, opts.jitter_ms) if opts.jitter_ms > 0 else 0.0
        due.append((pos * FRAME_MS + delay, i))
    due.sort()
    ticks: list[list[int]] = [[] for _ in range(n + int(opts.jitter_ms // FRAME_MS) + 2)]
    for t, i in due:
        ticks[int(np.ceil(t / FRAME_MS - 1e-9))].append(i)
    return ticks, lost


async def run_call(opts: CallOptions) -> CallResult:
    """Place one call and play it out in real time; returns what happened."""
    phone = _Phone(opts)
    r = phone.result
    audio = opts.audio
    tail = int(opts.tail_s * 1000 / FRAME_MS)
    n_speech = (len(audio) // 2 + FRAME - 1) // FRAME
    codes = media.ulaw_encode(audio) if audio else b""
    codes += _SILENCE_CODE * (n_speech * FRAME - len(codes) + tail * FRAME)
    n = n_speech + tail
    payloads = [
        base64.b64encode(codes[i * FRAME : (i + 1) * FRAME]).decode("ascii") for i in range(n)
    ]
    rng = np.random.default_rng(opts.seed)
    ticks, r.frames_lost = _schedule(n, opts, rng)
    headers = dict(opts.headers)
    if opts.auth_token:
        headers["X-Twilio-Signature"] = compute_signature(
            opts.auth_token, opts.url.split("?")[0], {}
        )
    heard: list[bytes] = []
    loop = asyncio.get_running_loop()
    conn = None
    try:
        async with connect(
            opts.url, additional_headers=headers, compression=None, max_size=2**22
        ) as ws:
            conn = ws

            async def receive() -> None:
                try:
                    async for msg in ws:
                        phone.on_message(msg)
                except ConnectionClosed:
                    pass

            rx = loop.create_task(receive())
            await ws.send(connected_message())
            await ws.send(
                start_message(
                    phone.sid,
                    phone.call_sid,
                    phone.account_sid,
                    opts.custom_parameters,
                    sequence_number=phone.next_seq(),
                )
            )
            expected_replies = len(speech_segments(audio))
            quiet_ticks = 0
            phone.t0 = t0 = loop.time()
            dtmf_tick = n_speech
            digits = list(opts.dtmf)
            for k, batch in enumerate(ticks):
                deadline = t0 + k * FRAME_MS / 1000
                delay = deadline - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif -delay > FRAME_MS / 1000:
                    r.late_ticks += 1
                if rx.done():
                    break
                for i in batch:
                    await ws.send(
                        media_message(phone.sid, phone.next_seq(), i + 1, i * FRAME_MS, payloads[i])
                    )
                    r.frames_sent += 1
                if digits and k >= dtmf_tick and (k - dtmf_tick) % 5 == 0:
                    await ws.send(dtmf_message(phone.sid, phone.next_seq(), digits.pop(0)))
                heard.append(phone.play_tick())
                quiet_ticks = quiet_ticks + 1 if phone.quiet else 0
                for name in phone.to_echo:
                    await ws.send(mark_echo_message(phone.sid, phone.next_seq(), name))
                    r.marks_echoed += 1
                phone.to_echo.clear()
                if (
                    opts.stop_when_idle
                    and k > n_speech
                    and quiet_ticks >= 25  # half a second with nothing more to play
                    and not digits
                    and len(r.first_media_ms) >= expected_replies
                ):
                    break
            r.duration_ms = (loop.time() - t0) * 1000
            if opts.send_stop and not rx.done():
                await ws.send(
                    stop_message(phone.sid, phone.next_seq(), phone.call_sid, phone.account_sid)
                )
            try:
                await asyncio.wait_for(rx, timeout=5)
            except TimeoutError:
                rx.cancel()
    except ConnectionClosed:
        pass
    finally:
        r.heard = b"".join(heard)
    if conn is not None:
        r.close_code = conn.close_code
        r.close_reason = conn.close_reason or ""
    _analyse(r, audio)
    return r


def _analyse(r: CallResult, audio: bytes) -> None:
    turns = [Turn(a, b) for a, b in speech_segments(audio)]
    heard_loud = _frame_rms(r.heard) > 300.0
    for j, t in enumerate(turns):
        limit = turns[j + 1].end_ms if j + 1 < len(turns) else len(heard_loud) * FRAME_MS
        for k in range(t.end_ms // FRAME_MS, min(limit // FRAME_MS, len(heard_loud))):
            if heard_loud[k]:
                t.reply_ms = float(k * FRAME_MS)
                break
    r.turns = turns


def summary(results: Sequence[CallResult]) -> str:
    """A human-readable report: turns, response latencies, audio and control traffic."""
    lines = []
    lat = [t.latency_ms for r in results for t in r.turns if t.latency_ms is not None]
    for idx, r in enumerate(results):
        head = f"call {idx + 1}: " if len(results) > 1 else ""
        per_turn = ", ".join(
            f"{t.start_ms / 1000:.2f}-{t.end_ms / 1000:.2f}s -> "
            + ("no reply" if t.latency_ms is None else f"{t.latency_ms:.0f} ms")
            for t in r.turns
        )
        expected = sum(t.end_ms - t.start_ms for t in r.turns)
        lines.append(
            f"{head}{len(r.turns)} turn(s): {per_turn or 'none'}\n"
            f"  audio: sent {r.frames_sent} frames ({r.frames_lost} lost by impairment), "
            f"received {r.received_ms / 1000:.2f} s (caller speech {expected / 1000:.2f} s)\n"
            f"  marks: {r.marks_received} received, {r.marks_echoed} echoed; "
            f"clears: {len(r.clears_ms)}; playout lead max {r.max_buffered_ms:.0f} ms, "
            f"gaps {r.underruns}; late ticks: {r.late_ticks}; "
            f"closed: {r.close_code} {r.close_reason}"
        )
    if lat:
        a = np.array(lat)
        lines.append(
            f"response latency (end of caller speech -> first audible reply): "
            f"n={len(a)} median {np.median(a):.0f} ms, max {a.max():.0f} ms"
        )
    return "\n".join(lines)


async def run_calls(opts: CallOptions, calls: int, stagger_s: float = 0.0) -> list[CallResult]:
    """`calls` simultaneous calls with the same audio (each with its own impairment seed).

    `stagger_s` spreads the call starts over that many seconds, as real calls are: identical
    calls in lock-step would all reach their turn ends in the same 20 ms.
    """
    from dataclasses import replace

    async def one(i: int) -> CallResult:
        if stagger_s > 0:
            await asyncio.sleep(stagger_s * i / calls)
        return await run_call(replace(opts, seed=opts.seed + i))

    return list(await asyncio.gather(*(one(i) for i in range(calls))))


def call_main(
    url: str,
    wav: str,
    *,
    out: str | None,
    jitter_ms: float,
    loss: float,
    reorder: float,
    dtmf: str,
    calls: int,
    tail_s: float,
    auth_token: str | None,
    params: Mapping[str, str],
    seed: int,
) -> int:
    """`voxrelay call`: returns 0 when every call ended with a normal close."""
    for name, p in (("loss", loss), ("reorder", reorder)):
        if not 0 <= p <= 1:
            raise ValueError(f"--{name} must be a probability in 0..1, got {p}")
    if calls < 1 or jitter_ms < 0 or tail_s < 0:
        raise ValueError("--calls must be >= 1, --jitter-ms and --tail >= 0")
    opts = CallOptions(
        url,
        read_wav(wav),
        tail_s=tail_s,
        jitter_ms=jitter_ms,
        loss=loss,
        reorder=reorder,
        seed=seed,
        dtmf=dtmf,
        custom_parameters=dict(params),
        auth_token=auth_token,
    )
    try:
        import uvloop

        results = uvloop.run(run_calls(opts, calls))
    except ImportError:  # pragma: no cover
        results = asyncio.run(run_calls(opts, calls))
    if out:
        write_wav(out, results[0].heard)
    print(summary(results))
    if out:
        print(f"wrote {out} (what caller 1 heard, {len(results[0].heard) / 16000:.1f} s at 8 kHz)")
    return 0 if all(r.close_code in (1000, 1001) for r in results) else 1
