"""`voxrelay call`: the platform side of a Twilio Media Stream, as a developer's phone.

It behaves as Twilio does: `connected`, `start` (mediaFormat, customParameters), 20 ms mu-law
frames with string counters paced in real time, then `stop`. What the server sends is played
through a playout buffer at 1x; each mark is echoed when playback reaches it; `clear` drops
the buffer and returns pending marks at once. One clock tick every 20 ms drives both sending
and playout, so "what the caller heard" is aligned sample for sample with what it said, and a
reply's latency is read off the same timeline.

By default the caller's WAV plays on its own fixed timeline, whatever the agent does. With
`converse`, the caller behaves like a person: the WAV is cut into utterances at its silences,
the first is said once the agent's greeting is over, and each next one once the reply to the
previous one has finished (or, for barge-in tests, a set time into that reply). Silence fills
every wait, as Twilio streams continuously. After the call the simulator reads the relay's
per-turn latency records back from `GET /calls/{call_sid}/turns`.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import json
import secrets
import urllib.request
import wave
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

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
    "Turn",
    "fetch_turn_records",
    "read_wav",
    "run_call",
    "speech_segments",
    "turns_url",
    "write_wav",
    "write_wav_stereo",
]

RATE: Final = 8000
FRAME: Final = 160  # samples (and mu-law bytes) per 20 ms
FRAME_MS: Final = 20
_SILENCE_CODE: Final = b"\xff"  # mu-law of 0
_LOUD: Final = 300.0
"""RMS above which a 20 ms frame counts as speech, for the caller's turns and what it hears."""
_LEAD_MS: Final = 100
_TRAIL_MS: Final = 100
"""Audio kept around each utterance's loud part in converse mode: soft onsets and decays
are below the energy gate but still part of the word."""


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


def write_wav_stereo(path: str | Path, left: bytes, right: bytes, rate: int = RATE) -> None:
    """Two PCM16 mono tracks as one stereo WAV (the shorter padded with silence): the caller
    left, the agent as heard right, so an editor shows who talked over whom."""
    a = np.frombuffer(left[: len(left) & ~1], "<i2")
    b = np.frombuffer(right[: len(right) & ~1], "<i2")
    n = max(len(a), len(b))
    both = np.zeros((n, 2), "<i2")
    both[: len(a), 0] = a
    both[: len(b), 1] = b
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(both.tobytes())


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
    converse: bool = False
    """Say the utterances of `audio` one by one, each after the agent's reply to the previous
    one (see the module doc), instead of on the WAV's timeline. `tail_s` follows the last
    reply; `stop_when_idle` is implied."""
    barge_in: Mapping[int, int] = field(default_factory=dict)
    """Converse mode: utterance index -> ms; start the next utterance that long after the
    reply to this one began to be heard, talking over it."""
    utterance_gap_ms: int = 700
    """Converse mode: a silence this long in `audio` separates two utterances; shorter ones
    are pauses within one (people pause 300-500 ms between sentences of one turn)."""
    greeting_wait_s: float = 3.0
    """Converse mode: how long to wait for a greeting before speaking first."""
    reply_silence_ms: int = 800
    """Converse mode: quiet after agent audio that means it has finished its turn."""
    reply_timeout_s: float = 15.0
    """Converse mode: the longest wait for a reply (or a greeting) to start and finish."""
    token: str | None = None
    """The relay's stream secret, for its turn-records endpoint (`?token=`)."""
    fetch_turns: bool = True
    """Read the relay's per-turn records after the call (never fails the call)."""


@dataclass
class Turn:
    """A caller utterance as sent (ms on the call's tick timeline) and when its reply came."""

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
    said: bytes = b""
    """What the caller said (before impairments), PCM16 8 kHz, on the same ticks as `heard`."""
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
    call_sid: str = ""
    turn_records: list[dict[str, Any]] = field(default_factory=list)
    """The relay's per-turn latency records (`TurnLatency.as_dict`), if it offers them."""

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


def _b64(codes: bytes) -> str:
    return base64.b64encode(codes).decode("ascii")


_SILENCE_PCM: Final = b"\0" * (2 * FRAME)
_SILENCE_PAYLOAD: Final = _b64(_SILENCE_CODE * FRAME)


class _Plan(Protocol):
    """What the caller says at each tick and which frames reach the wire when."""

    dtmf_tick: int | None

    @property
    def lost(self) -> int:
        """Frames dropped by the loss impairment."""
        ...

    def step(self, k: int, heard_loud: bool) -> bytes:
        """The caller's 20 ms at tick `k`, given whether tick `k - 1`'s playout was loud."""
        ...

    def due(self, k: int) -> list[tuple[int, str]]:
        """(frame index, payload) to send at tick `k`, after impairments."""
        ...

    def finished(self, k: int, quiet_ticks: int, replies: int, digits: bool) -> bool: ...

    def segments(self) -> list[tuple[int, int]]:
        """The caller's turns (start_ms, end_ms) on the tick timeline."""
        ...


class _Fixed:
    """The WAV on its own timeline: every frame's send tick is known before the call."""

    def __init__(self, opts: CallOptions, rng: np.random.Generator) -> None:
        audio = opts.audio
        self.opts = opts
        tail = int(opts.tail_s * 1000 / FRAME_MS)
        self.n_speech = (len(audio) // 2 + FRAME - 1) // FRAME
        n = self.n_speech + tail
        self.pcm = audio + b"\0" * (2 * FRAME * n - len(audio))
        codes = media.ulaw_encode(self.pcm) if self.pcm else b""
        self.payloads = [_b64(codes[i * FRAME : (i + 1) * FRAME]) for i in range(n)]
        self.ticks, self._lost = _schedule(n, opts, rng)
        self.dtmf_tick: int | None = self.n_speech
        self._segments = speech_segments(audio)

    @property
    def lost(self) -> int:
        return self._lost

    def step(self, k: int, heard_loud: bool) -> bytes:
        return self.pcm[2 * FRAME * k : 2 * FRAME * (k + 1)] or _SILENCE_PCM

    def due(self, k: int) -> list[tuple[int, str]]:
        if k >= len(self.ticks):
            return []
        return [(i, self.payloads[i]) for i in self.ticks[k]]

    def finished(self, k: int, quiet_ticks: int, replies: int, digits: bool) -> bool:
        if k >= len(self.ticks) - 1:
            return True
        return (
            self.opts.stop_when_idle
            and k > self.n_speech
            and quiet_ticks >= 25  # half a second with nothing more to play
            and not digits
            and replies >= len(self._segments)
        )

    def segments(self) -> list[tuple[int, int]]:
        return self._segments


class _Impairer:
    """Loss, reordering and jitter for frames made one tick at a time (converse mode).

    Same model as `_schedule`, online: a reordered frame is held back and sent right after
    the next one (a swap one tick later, since the next frame does not exist yet).
    """

    def __init__(self, opts: CallOptions, rng: np.random.Generator) -> None:
        self.opts = opts
        self.rng = rng
        self.lost = 0
        self._heap: list[tuple[float, int, int]] = []  # (due ms, order, frame index)
        self._order = 0
        self._held: tuple[float, int] | None = None

    def _push(self, t: float, i: int) -> None:
        self._order += 1
        heapq.heappush(self._heap, (t, self._order, i))

    def push(self, k: int, i: int) -> None:
        o, rng = self.opts, self.rng
        if o.loss > 0 and rng.random() < o.loss:
            self.lost += 1
            return
        t = k * FRAME_MS + (rng.uniform(0, o.jitter_ms) if o.jitter_ms > 0 else 0.0)
        held, self._held = self._held, None
        if held is not None:
            self._push(t, i)
            self._push(max(t, held[0]), held[1])
        elif o.reorder > 0 and rng.random() < o.reorder:
            self._held = (t, i)
        else:
            self._push(t, i)

    def due(self, k: int) -> list[int]:
        out = []
        limit = k * FRAME_MS + 1e-6
        while self._heap and self._heap[0][0] <= limit:
            out.append(heapq.heappop(self._heap)[2])
        return out


_GREETING, _SPEAKING, _WAITING, _TAIL = range(4)


class _Conversation:
    """A caller who takes turns: each utterance after the agent's reply to the previous one.

    The state advances once per tick on what the caller heard at the previous tick, like a
    person listening: a reply has started at its first loud frame and is over after
    `reply_silence_ms` of quiet. Every tick sends a frame (speech or silence), because
    Twilio's stream never pauses.
    """

    def __init__(self, opts: CallOptions, rng: np.random.Generator) -> None:
        self.opts = opts
        audio = opts.audio
        self.impair = _Impairer(opts, rng)
        segs = speech_segments(audio, threshold=_LOUD, min_gap_ms=opts.utterance_gap_ms)
        total_ms = len(audio) // 16
        # (pcm, lead ms, speech ms) per utterance.
        self.utts: list[tuple[bytes, int, int]] = []
        for j, (a, b) in enumerate(segs):
            before = a - (segs[j - 1][1] if j else 0)
            after = (segs[j + 1][0] if j + 1 < len(segs) else total_ms) - b
            lead = min(_LEAD_MS, before // 2 // FRAME_MS * FRAME_MS)
            trail = min(_TRAIL_MS, after // 2 // FRAME_MS * FRAME_MS)
            pcm = audio[(a - lead) * 16 : (b + trail) * 16]
            self.utts.append((pcm + b"\0" * (-len(pcm) % (2 * FRAME)), lead, b - a))
        self.timeline: list[tuple[int, int]] = []
        self.payloads: list[str] = []
        self.state = _GREETING
        self.j = -1  # the utterance being said or waited on
        self.pos = 0  # next frame of it
        self.since = 0  # tick the current wait began
        self.reply_at: int | None = None  # tick the awaited reply was first heard
        self.quiet = 0
        self.tail_end = 0
        self.dtmf_tick: int | None = None
        self.done = False

    @property
    def lost(self) -> int:
        return self.impair.lost

    def _listen(self, k: int, loud: bool) -> bool:
        """Track the awaited reply; True when it is over (or never came in time)."""
        o = self.opts
        if loud:
            if self.reply_at is None:
                self.reply_at = k - 1
            self.quiet = 0
        elif self.reply_at is not None:
            self.quiet += 1
        waited_ms = (k - self.since) * FRAME_MS
        if self.state == _GREETING and self.reply_at is None:
            return waited_ms >= o.greeting_wait_s * 1000
        if self.reply_at is not None and self.quiet * FRAME_MS >= o.reply_silence_ms:
            return True
        limit = o.reply_timeout_s + (o.greeting_wait_s if self.state == _GREETING else 0)
        return waited_ms >= limit * 1000

    def _next(self, k: int) -> None:
        self.j += 1
        self.reply_at = None
        self.quiet = 0
        if self.j < len(self.utts):
            _, lead, speech = self.utts[self.j]
            start = k * FRAME_MS + lead
            self.timeline.append((start, start + speech))
            self.state, self.pos = _SPEAKING, 0
        else:
            self.state = _TAIL
            self.dtmf_tick = k
            self.tail_end = k + int(self.opts.tail_s * 1000 / FRAME_MS)

    def step(self, k: int, heard_loud: bool) -> bytes:
        if self.state in (_GREETING, _WAITING):
            over = self._listen(k, heard_loud)
            barge = self.opts.barge_in.get(self.j)
            if (
                self.state == _WAITING
                and barge is not None
                and self.reply_at is not None
                and self.j + 1 < len(self.utts)
                and (k - self.reply_at) * FRAME_MS >= barge
            ):
                over = True
            if over:
                self._next(k)
        elif self.state == _TAIL and k >= self.tail_end:
            self.done = True
        if self.state == _SPEAKING:
            pcm, _, _ = self.utts[self.j]
            frame = pcm[self.pos * 2 * FRAME : (self.pos + 1) * 2 * FRAME]
            self.pos += 1
            if self.pos * 2 * FRAME >= len(pcm):
                self.state, self.since = _WAITING, k + 1
            self.payloads.append(_b64(media.ulaw_encode(frame)))
        else:
            frame = _SILENCE_PCM
            self.payloads.append(_SILENCE_PAYLOAD)
        self.impair.push(k, k)
        return frame

    def due(self, k: int) -> list[tuple[int, str]]:
        return [(i, self.payloads[i]) for i in self.impair.due(k)]

    def finished(self, k: int, quiet_ticks: int, replies: int, digits: bool) -> bool:
        return self.done and not digits

    def segments(self) -> list[tuple[int, int]]:
        return self.timeline


def turns_url(ws_url: str, call_sid: str, *, wait_s: float = 5.0, token: str | None = None) -> str:
    """The relay's `/calls/{call_sid}/turns` next to its stream URL (http for ws, https for
    wss; a base path in front of `/twilio`, as behind a proxy, is kept)."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"{ws_url}: expected a ws:// or wss:// URL")
    base = parts.path.rsplit("/", 1)[0] if parts.path.endswith("/twilio") else ""
    query = {"wait": f"{wait_s:g}"}
    if token:
        query["token"] = token
    return urlunsplit(
        (scheme, parts.netloc, f"{base}/calls/{call_sid}/turns", urlencode(query), "")
    )


def _get_json(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


async def fetch_turn_records(
    ws_url: str, call_sid: str, *, token: str | None = None, wait_s: float = 5.0
) -> list[dict[str, Any]]:
    """The relay's per-turn records of a call; empty when it has none or no such endpoint.

    Best effort by design: the records are a bonus on top of what the simulator measured
    itself, so a missing endpoint, a 404/403/409 or a network error must not fail the call.
    """
    try:
        url = turns_url(ws_url, call_sid, wait_s=wait_s, token=token)
        data = await asyncio.to_thread(_get_json, url, wait_s + 5.0)
    except (OSError, ValueError):  # HTTPError and URLError are OSErrors; bad JSON ValueError
        return []
    turns = data.get("turns") if isinstance(data, dict) else None
    return [t for t in turns if isinstance(t, dict)] if isinstance(turns, list) else []


async def run_call(opts: CallOptions) -> CallResult:
    """Place one call and play it out in real time; returns what happened."""
    phone = _Phone(opts)
    r = phone.result
    rng = np.random.default_rng(opts.seed)
    plan: _Plan = _Conversation(opts, rng) if opts.converse else _Fixed(opts, rng)
    headers = dict(opts.headers)
    if opts.auth_token:
        headers["X-Twilio-Signature"] = compute_signature(
            opts.auth_token, opts.url.split("?")[0], {}
        )
    heard: list[bytes] = []
    said: list[bytes] = []
    loop = asyncio.get_running_loop()
    conn = None
    started = False
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
            started = True
            quiet_ticks = 0
            loud = False
            phone.t0 = t0 = loop.time()
            digits = list(opts.dtmf)
            k = 0
            while True:
                deadline = t0 + k * FRAME_MS / 1000
                delay = deadline - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif -delay > FRAME_MS / 1000:
                    r.late_ticks += 1
                if rx.done():
                    break
                said.append(plan.step(k, loud))
                for i, payload in plan.due(k):
                    await ws.send(
                        media_message(phone.sid, phone.next_seq(), i + 1, i * FRAME_MS, payload)
                    )
                    r.frames_sent += 1
                dtmf_tick = plan.dtmf_tick
                if digits and dtmf_tick is not None and k >= dtmf_tick and (k - dtmf_tick) % 5 == 0:
                    await ws.send(dtmf_message(phone.sid, phone.next_seq(), digits.pop(0)))
                out = phone.play_tick()
                heard.append(out)
                loud = bool(_frame_rms(out)[0] > _LOUD)
                quiet_ticks = quiet_ticks + 1 if phone.quiet else 0
                for name in phone.to_echo:
                    await ws.send(mark_echo_message(phone.sid, phone.next_seq(), name))
                    r.marks_echoed += 1
                phone.to_echo.clear()
                if plan.finished(k, quiet_ticks, len(r.first_media_ms), bool(digits)):
                    break
                k += 1
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
        r.said = b"".join(said)
    r.frames_lost = plan.lost
    r.call_sid = phone.call_sid
    if conn is not None:
        r.close_code = conn.close_code
        r.close_reason = conn.close_reason or ""
    _analyse(r, plan.segments())
    if started and opts.fetch_turns:
        r.turn_records = await fetch_turn_records(opts.url, phone.call_sid, token=opts.token)
    return r


def _analyse(r: CallResult, segments: Sequence[tuple[int, int]]) -> None:
    """Each turn's reply: the first loud frame heard after it ended, before the next ended."""
    turns = [Turn(a, b) for a, b in segments]
    heard_loud = _frame_rms(r.heard) > _LOUD
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


def _print_waterfalls(results: Sequence[CallResult]) -> None:
    from voxrelay.conversation.latency import TurnLatency, format_waterfall

    for idx, r in enumerate(results):
        if not r.turn_records:
            continue
        try:
            recs = [TurnLatency.from_dict(d) for d in r.turn_records]
            # The relay leaves the texts out unless configured to serve them.
            texts = any(t.user_text or t.reply_text for t in recs)
            text = format_waterfall(recs, texts=texts)
        except (TypeError, ValueError) as e:
            print(f"call {idx + 1}: the relay's turn records are not readable: {e}")
            continue
        head = f"call {idx + 1} " if len(results) > 1 else ""
        print(f"{head}turn latency as the relay recorded it (ms after the end of speech):")
        print(text)


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
    converse: bool = False,
    barge_in: Mapping[int, int] | None = None,
    out_both: str | None = None,
    token: str | None = None,
) -> int:
    """`voxrelay call`: returns 0 when every call ended with a normal close."""
    for name, p in (("loss", loss), ("reorder", reorder)):
        if not 0 <= p <= 1:
            raise ValueError(f"--{name} must be a probability in 0..1, got {p}")
    if calls < 1 or jitter_ms < 0 or tail_s < 0:
        raise ValueError("--calls must be >= 1, --jitter-ms and --tail >= 0")
    barge_in = dict(barge_in or {})
    if barge_in and not converse:
        raise ValueError("--barge-in needs --converse (it is timed from the agent's reply)")
    for i, ms in barge_in.items():
        if i < 0 or ms < 0:
            raise ValueError(f"--barge-in takes UTTERANCE:MS with both >= 0, got {i}:{ms}")
    params = dict(params)
    if token:
        # The relay's stream secret travels as this customParameter (the TwiML's <Parameter>).
        params.setdefault("voxrelay_token", token)
    opts = CallOptions(
        url,
        read_wav(wav),
        tail_s=tail_s,
        jitter_ms=jitter_ms,
        loss=loss,
        reorder=reorder,
        seed=seed,
        dtmf=dtmf,
        custom_parameters=params,
        auth_token=auth_token,
        converse=converse,
        barge_in=barge_in,
        token=token,
    )
    try:
        import uvloop

        results = uvloop.run(run_calls(opts, calls))
    except ImportError:  # pragma: no cover
        results = asyncio.run(run_calls(opts, calls))
    first = results[0]
    if out:
        write_wav(out, first.heard)
    if out_both:
        write_wav_stereo(out_both, first.said, first.heard)
    print(summary(results))
    _print_waterfalls(results)
    if out:
        print(f"wrote {out} (what caller 1 heard, {len(first.heard) / 16000:.1f} s at 8 kHz)")
    if out_both:
        print(f"wrote {out_both} (caller 1: said left, heard right, 8 kHz stereo)")
    return 0 if all(r.close_code in (1000, 1001) for r in results) else 1
