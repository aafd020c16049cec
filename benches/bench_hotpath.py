"""The per-frame hot path, one 20 ms Twilio media message each way, voxrelay vs the same work
done with the best Python libraries (json + base64 + audioop + soxr + webrtcvad).

Inbound: Twilio media JSON -> 16 kHz PCM + VAD decision. Outbound: 20 ms of TTS PCM at the
TTS rate -> one ready-to-send Twilio media JSON text; or 20 ms of TTS that is already mu-law
8 kHz (what the local voices and a cloud TTS asked for it deliver on phone calls) -> the same.
Goal: <= 2 us per frame each way.

The voxrelay rows resample at the default, the phone quality (flat to 3.4 kHz, 80 dB from
4.6 kHz: G.711's noise hides the rest); `voxrelay-voice` and `voxrelay-ws-frames-voice` are the
same calls at the voice quality (~91 dB from 4.2 kHz), the default before session 6.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import soxr
import webrtcvad
from voxrelay import media
from voxrelay.conversation.phone_audio import PhoneEncoder
from voxrelay.protocols.twilio import media_message
from voxrelay.session import _text_header

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def speechlike(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced, amplitude-modulated harmonic signal with noise: cheap stand-in for speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    x = 0.25 * x * env / np.max(np.abs(x)) + 0.01 * rng.standard_normal(len(t))
    return np.clip(x * 32767, -32768, 32767).astype(np.int16)


def twilio_messages(n: int) -> list[str]:
    pcm = speechlike(8000, n * 0.02)
    codes = media.ulaw_encode(pcm.tobytes())
    return [
        media_message(
            SID, i + 3, i + 1, i * 20, base64.b64encode(codes[i * 160 : (i + 1) * 160]).decode()
        )
        for i in range(n)
    ]


N = 3000  # 60 s of call audio, cycled through so each timed call sees a fresh message
MESSAGES = twilio_messages(N)
ROUNDS, ITERATIONS = 100, 25
assert ROUNDS * ITERATIONS < N


def python_inbound() -> Callable[[str], tuple[bytes, bool]]:
    vad = webrtcvad.Vad(3)
    rs = soxr.ResampleStream(8000, 16000, 1, dtype="int16", quality="HQ")

    def step(msg: str) -> tuple[bytes, bool]:
        m = json.loads(msg)
        pcm8 = audioop.ulaw2lin(base64.b64decode(m["media"]["payload"]), 2)
        speech = vad.is_speech(pcm8, 8000)
        return rs.resample_chunk(np.frombuffer(pcm8, np.int16)).tobytes(), speech

    return step


def voxrelay_inbound(quality: str = "phone") -> Callable[[str], tuple[str, bytes, bool | None]]:
    return media.TwilioInbound(out_rate=16000, quality=quality).process


@pytest.mark.parametrize("impl", ["voxrelay", "voxrelay-voice", "python-best-libs", "harness-only"])
def test_inbound_frame(benchmark, impl: str) -> None:  # type: ignore[no-untyped-def]
    """`harness-only` times the scaffolding every row pays (the closure, taking the next
    message, and calling a C function on it: `len`), so a step's own cost is its row minus
    that one."""
    step: Callable[[str], object]
    if impl == "harness-only":
        step = len
    else:
        step = {
            "voxrelay": voxrelay_inbound,
            "voxrelay-voice": lambda: voxrelay_inbound("voice"),
            "python-best-libs": python_inbound,
        }[impl]()
    msgs = iter(MESSAGES)

    def one() -> object:
        return step(next(msgs))

    benchmark.group = "hot path inbound, per 20 ms frame"
    # 100 rounds x 25 calls stay within one pass over the messages: chunk counters never go
    # back, so the jitter buffer sees a real call (replayed counters would be dropped as late).
    benchmark.pedantic(one, rounds=ROUNDS, iterations=ITERATIONS, warmup_rounds=0)


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize(
    "impl",
    [
        "voxrelay",
        "voxrelay-ws-frames",
        "voxrelay-ws-frames-voice",
        "voxrelay-python-framed",
        "python-best-libs",
        "harness-only",
    ],
)
def test_outbound_frame(benchmark, impl: str, rate: int) -> None:  # type: ignore[no-untyped-def]
    pcm = speechlike(rate, 60.0, seed=2).tobytes()
    step_bytes = rate // 50 * 2
    chunks = [pcm[i : i + step_bytes] for i in range(0, len(pcm) - step_bytes + 1, step_bytes)]
    assert len(chunks) > ROUNDS * ITERATIONS
    it = iter(chunks)
    if impl == "harness-only":

        def one() -> object:
            return len(next(it))
    elif impl == "voxrelay":
        out = media.TwilioOutbound(SID, rate)
        process = out.process

        def one() -> object:
            return process(next(it))
    elif impl.startswith("voxrelay-ws-frames"):
        # What the server sends: the same messages as whole WebSocket frames (bytes).
        quality = "voice" if impl.endswith("-voice") else "phone"
        process_frames = media.TwilioOutbound(SID, rate, quality=quality).process_frames

        def one() -> object:
            return process_frames(next(it))
    elif impl == "voxrelay-python-framed":
        # How the server framed them before the frames came from Rust (sessions 1-4).
        process_str = media.TwilioOutbound(SID, rate).process

        def one() -> object:
            out = []
            for text in process_str(next(it)):
                data = text.encode()
                out.append(_text_header(len(data)))
                out.append(data)
            return out
    else:
        rs = soxr.ResampleStream(rate, 8000, 1, dtype="int16", quality="HQ")
        pending = bytearray()

        def one() -> object:
            nonlocal pending
            pending += rs.resample_chunk(np.frombuffer(next(it), np.int16)).tobytes()
            msgs = []
            while len(pending) >= 320:
                frame, pending = pending[:320], pending[320:]
                payload = base64.b64encode(audioop.lin2ulaw(bytes(frame), 2)).decode()
                msgs.append(
                    json.dumps(
                        {"event": "media", "streamSid": SID, "media": {"payload": payload}},
                        separators=(",", ":"),
                    )
                )
            return msgs

    benchmark.group = f"hot path outbound from {rate} Hz, per 20 ms frame"
    benchmark.pedantic(one, rounds=ROUNDS, iterations=ITERATIONS, warmup_rounds=0)


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100, 48000])
def test_outbound_tts_chunks(benchmark, rate: int) -> None:  # type: ignore[no-untyped-def]
    """The server's call as a streaming TTS feeds it: 100 ms of PCM per call, five frames out.
    Divide the row by five for the cost per frame (the call's fixed cost is shared by five)."""
    pcm = speechlike(rate, 60.0, seed=2).tobytes()
    step = rate // 10 * 2
    chunks = [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]
    assert len(chunks) >= 100 * 5
    it = iter(chunks)
    process_frames = media.TwilioOutbound(SID, rate).process_frames

    def one() -> object:
        frames = process_frames(next(it))
        assert len(frames) >= 4
        return frames

    benchmark.group = "hot path outbound, TTS in 100 ms chunks, per call of 5 frames"
    benchmark.pedantic(one, rounds=100, iterations=5, warmup_rounds=0)


@pytest.mark.parametrize("impl", ["voxrelay", "voxrelay-ws-frames", "python-best-libs"])
def test_outbound_frame_from_phone_format_tts(benchmark, impl: str) -> None:  # type: ignore[no-untyped-def]
    codes = media.ulaw_encode(speechlike(8000, 60.0, seed=3).tobytes())
    chunks = [codes[i : i + 160] for i in range(0, len(codes), 160)]
    assert len(chunks) > ROUNDS * ITERATIONS
    it = iter(chunks)
    if impl == "voxrelay":
        process = media.TwilioOutbound(SID, 8000).process_codes

        def one() -> object:
            return process(next(it), last=False)
    elif impl == "voxrelay-ws-frames":
        frames = media.TwilioOutbound(SID, 8000).process_codes_frames

        def one() -> object:
            return frames(next(it), last=False)
    else:
        head = '{"event":"media","streamSid":' + json.dumps(SID) + ',"media":{"payload":"'

        def one() -> object:
            return [head + base64.b64encode(next(it)).decode("ascii") + '"}}']

    benchmark.group = "hot path outbound from mu-law 8 kHz TTS, per 20 ms frame"
    benchmark.pedantic(one, rounds=ROUNDS, iterations=ITERATIONS, warmup_rounds=0)


@pytest.mark.parametrize("impl", ["loop-pcm-22050", "loop-ulaw-codes", "worker-phone-encoder"])
def test_tts_sentence(benchmark, impl: str) -> None:  # type: ignore[no-untyped-def]
    """A 2 s sentence of piper's 22.05 kHz voice: what the event loop pays to send it as PCM,
    or as the mu-law 8 kHz codes the voice now delivers on phone calls, and what the voice's
    worker thread pays to convert it."""
    pcm = speechlike(22050, 2.0, seed=4).tobytes()
    enc = PhoneEncoder(22050)
    codes = enc.encode(pcm) + enc.finish()
    if impl == "loop-pcm-22050":
        out = media.TwilioOutbound(SID, 22050)

        def one() -> object:
            return out.process_frames(pcm) + out.flush_frames()
    elif impl == "loop-ulaw-codes":
        out = media.TwilioOutbound(SID, 8000)

        def one() -> object:
            return out.process_codes_frames(codes, last=True)
    else:

        def one() -> object:
            return enc.encode(pcm) + enc.finish()

    benchmark.group = "a 2 s TTS sentence at 22.05 kHz, whole"
    benchmark.pedantic(one, rounds=50, iterations=5, warmup_rounds=1)
