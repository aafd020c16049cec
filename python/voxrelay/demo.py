"""The media-path demo: a phone call's audio through the relay's hot path, end to end.

Caller speech (espeak-ng when installed, else a synthetic voiced signal) becomes Twilio media
messages over a simulated network with bursty loss and reordering; the inbound hot path turns
them into 16 kHz PCM with VAD decisions and concealed losses; the outbound path turns that audio
back into Twilio messages, as the echo agent will. It prints what happened and what it cost.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from voxrelay import media
from voxrelay.protocols.twilio import media_message

SENTENCES = [
    "Hello, I would like to check the status of my order.",
    "It was placed last Tuesday, and the number is four five two one.",
]


def caller_speech(rate: int = 8000) -> tuple[np.ndarray, str]:
    """Caller audio at `rate` with pauses between sentences, and where it came from."""
    espeak = shutil.which("espeak-ng")
    parts: list[np.ndarray] = [np.zeros(rate // 2, np.int16)]
    if espeak:
        with tempfile.TemporaryDirectory() as tmp:
            for i, text in enumerate(SENTENCES):
                path = Path(tmp) / f"{i}.wav"
                subprocess.run([espeak, "-v", "en-us", "-w", str(path), text], check=True)
                with wave.open(str(path)) as w:
                    src_rate = w.getframerate()
                    pcm = w.readframes(w.getnframes())
                rs = media.Resampler(src_rate, rate)
                parts += [
                    np.frombuffer(rs.process(pcm) + rs.flush(), np.int16),
                    np.zeros(rate, np.int16),
                ]
        return np.concatenate(parts), "espeak-ng"
    t = np.arange(int(rate * 1.6)) / rate
    phase = 2 * np.pi * np.cumsum(130 + 25 * np.sin(2 * np.pi * 0.8 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 16)) * (
        0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    )
    speech = (voiced / np.max(np.abs(voiced)) * 9000).astype(np.int16)
    for _ in SENTENCES:
        parts += [speech, np.zeros(rate, np.int16)]
    return np.concatenate(parts), "synthetic (install espeak-ng for real speech)"


def network(n: int, loss: float, reorder: float, rng: np.random.Generator) -> list[int]:
    """Delivery order of frame indices: Gilbert-Elliott bursty loss, occasional swaps."""
    p_bad = loss / (1 - loss) * 0.3 if loss < 1 else 1.0  # good->bad; bad->good 0.3
    bad, order = False, []
    for i in range(n):
        bad = rng.random() < (0.7 if bad else p_bad)
        if not bad:
            order.append(i)
    for j in range(len(order) - 1):
        if rng.random() < reorder:
            order[j], order[j + 1] = order[j + 1], order[j]
    return order


def run_media_demo(out: str, loss: float, reorder: float, seed: int) -> int:
    rng = np.random.default_rng(seed)
    pcm8, source = caller_speech()
    codes = media.ulaw_encode(pcm8.tobytes())
    n = len(codes) // 160
    sid = "MZdemo00000000000000000000000000"
    messages = [
        media_message(
            sid, i + 2, i + 1, i * 20, base64.b64encode(codes[i * 160 : (i + 1) * 160]).decode()
        )
        for i in range(n)
    ]
    order = network(n, loss, reorder, rng)
    inbound = media.TwilioInbound(out_rate=16000)
    outbound = media.TwilioOutbound(sid, 16000)
    heard: list[bytes] = []
    speech_flags: list[bool] = []
    sent = 0
    t_in: list[int] = []
    t_out: list[int] = []
    for i in order:
        t0 = time.perf_counter_ns()
        _, pcm16, speech = inbound.process(messages[i])
        t1 = time.perf_counter_ns()
        sent += len(outbound.process(pcm16))  # the echo agent's path, frame by frame
        t2 = time.perf_counter_ns()
        t_in.append(t1 - t0)
        t_out.append(t2 - t1)
        heard.append(pcm16)
        if speech is not None:
            speech_flags.append(speech)
    sent += len(outbound.flush())
    audio = b"".join(heard)
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(audio)
    stats = inbound.stats()
    segments = []
    start = None
    for k, s in enumerate([*speech_flags, False]):
        if s and start is None:
            start = k
        elif not s and start is not None:
            segments.append((start * 0.02, k * 0.02))
            start = None
    print(f"caller audio: {n * 0.02:.1f} s from {source}")
    print(
        f"network: {n - len(order)} of {n} frames lost ({(n - len(order)) / n:.1%}), "
        f"reordering {reorder:.0%}"
    )
    print(
        f"jitter buffer: received {stats['received']}, concealed {stats['concealed']}, "
        f"silence {stats['silence']}, late {stats['late']}, duplicate {stats['duplicate']}"
    )
    print("speech segments (s): " + ", ".join(f"{a:.2f}-{b:.2f}" for a, b in segments))
    print(
        f"inbound hot path: {_us(t_in, 50)} us median, {_us(t_in, 99)} us p99 per message "
        "(JSON, base64, G.711, jitter buffer, VAD, 8->16 kHz)"
    )
    print(
        f"outbound hot path: {_us(t_out, 50)} us median, {_us(t_out, 99)} us p99 per 20 ms "
        f"(16->8 kHz, G.711, base64, JSON); {sent} messages"
    )
    print(
        f"latency added: inbound {inbound.latency_ms:.1f} ms, outbound {outbound.latency_ms:.1f} ms"
    )
    print(f"wrote {out} ({len(audio) / 32000:.1f} s at 16 kHz)")
    return 0


def _us(ns: list[int], pct: float) -> str:
    return f"{np.percentile(ns, pct) / 1000:.2f}" if ns else "-"
