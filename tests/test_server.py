"""The relay server on real loopback sockets, driven by a `websockets` client playing Twilio.

Caller speech is spoken by espeak-ng at test time. Nothing here sleeps to synchronise: every
wait is on a message, a close or an event, bounded by a timeout. How fast the relay answers and
clears is for benches (`benches/bench_server.py`); here only the order of events is asserted.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from call_support import media_frames, run, silence, speak
from relay_support import ACCOUNT, CALL, SID, closed, start_call, ws_url
from relay_support import serving as relay_serving
from twilio.request_validator import RequestValidator
from voxrelay import media
from voxrelay.agent import AgentEvent, BargeIn, CallControl, EchoAgent, SpeechEnded, SpeechStarted
from voxrelay.protocols import twilio as tw
from voxrelay.server import RelayServer
from voxrelay.session import Session
from voxrelay.settings import Settings
from voxrelay.simulator import CallOptions, read_wav, run_call, speech_segments
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

TOKEN = "12345678901234567890123456789012"


@pytest.fixture(scope="module")
def hello() -> bytes:
    return speak("Hello, I would like to check the status of my order.")


@pytest.fixture(scope="module")
def interrupt() -> bytes:
    return speak("Wait, wait, stop there please, I have another question.")


class Recorder:
    """Echo agent that also records every event it got."""

    instances: list[Recorder]

    def __init__(self, call: CallControl) -> None:
        self.echo = EchoAgent(call)
        self.events: list[AgentEvent] = []
        self._seen: dict[str, asyncio.Event] = {}
        self.instances.append(self)

    async def on_event(self, event: AgentEvent) -> None:
        self.events.append(event)
        self._seen.setdefault(type(event).__name__, asyncio.Event()).set()
        await self.echo.on_event(event)

    async def seen(self, kind: str, timeout: float = 5.0) -> None:
        """Return once an event of type `kind` has reached the agent."""
        await asyncio.wait_for(self._seen.setdefault(kind, asyncio.Event()).wait(), timeout)


def serving(
    settings: Settings | None = None, *, record: list[Recorder] | None = None
) -> AbstractAsyncContextManager[RelayServer]:
    """A server whose calls' agents are `Recorder`s appending themselves to `record`."""
    factory: Any = None
    if record is not None:
        factory = type("Rec", (Recorder,), {"instances": record})
    return relay_serving(settings, factory)


async def first(ws: ClientConnection, pred: Callable[[tw.TwilioEvent], bool]) -> tw.TwilioEvent:
    """The first server message matching `pred` (raises ConnectionClosed if none comes)."""
    while True:
        ev = tw.parse_message(await ws.recv())
        if pred(ev):
            return ev


# ----------------------------------------------------------------------------------------------
# Real-time calls through the simulator


def test_echo_round_trip_with_real_speech(hello: bytes) -> None:
    rec: list[Recorder] = []

    async def main() -> None:
        async with serving(record=rec) as server:
            audio = silence(0.3) + hello
            r = await run_call(CallOptions(ws_url(server), audio, tail_s=4.0, stop_when_idle=True))
            assert r.close_code == 1000
            assert len(r.turns) == 1
            turn = r.turns[0]
            # The echo came back after the utterance ended (how soon is for benches:
            # `benches/bench_server.py` reports the reply latency).
            assert turn.latency_ms is not None and turn.latency_ms > 0, r.turns
            # What came back is the utterance: same length (+-0.3 s) and the same envelope.
            said = turn.end_ms - turn.start_ms
            replies = speech_segments(r.heard[int(turn.end_ms * 16) :])
            back = replies[-1][1] - replies[0][0]
            assert abs(back - said) <= 300, (said, back)
            env_said = _envelope(audio[turn.start_ms * 16 : turn.end_ms * 16])
            start = int((turn.reply_ms or 0) * 16)
            env_back = _envelope(r.heard[start : start + len(env_said) * 320])
            assert _best_corr(env_said, env_back) > 0.8
            # Every mark the server sent was echoed, and the lead stayed bounded.
            assert r.marks_received == r.marks_echoed > 0
            # Paced, not sent ahead: a server that wrote the echo as fast as it could would
            # have the caller's side hold most of it (`bench_server.py` reports the lead).
            assert r.max_buffered_ms < back / 2, (r.max_buffered_ms, back)
            assert not r.clears_ms
        (agent,) = rec
        kinds = [type(e).__name__ for e in agent.events]
        assert kinds[0] == "CallStarted"
        assert kinds.count("SpeechStarted") == 1 and kinds.count("SpeechEnded") == 1
        assert "MarkPlayed" in kinds and kinds[-1] == "CallEnded"
        ended = next(e for e in agent.events if isinstance(e, SpeechEnded))
        # The utterance as heard by the server: the speech plus pre-roll, VAD hang-over and a
        # short tail of silence.
        assert ended.rate == 16000 and said - 100 <= ended.duration_ms <= said + 700

    run(main())


def _envelope(pcm: bytes) -> np.ndarray:
    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % 320], "<i2").astype(np.float64)
    return np.sqrt(np.mean(x.reshape(-1, 160) ** 2, axis=1))


def _best_corr(a: np.ndarray, b: np.ndarray) -> float:
    best = -1.0
    for lag in range(0, 10):
        n = min(len(a), len(b) - lag)
        if n > 10:
            best = max(best, float(np.corrcoef(a[:n], b[lag : lag + n])[0, 1]))
    return best


def test_barge_in_clears_the_reply_the_caller_talks_over(hello: bytes, interrupt: bytes) -> None:
    rec: list[Recorder] = []

    async def main() -> None:
        async with serving(record=rec) as server:
            # The caller speaks, and once the echo has played for 300 ms talks over it (the
            # simulator starts the second utterance on what it hears, not after a fixed wait).
            audio = silence(0.2) + hello + silence(1.0) + interrupt
            opts = CallOptions(
                ws_url(server),
                audio,
                tail_s=0.5,
                converse=True,
                barge_in={0: 300},
                greeting_wait_s=0.3,
            )
            r = await run_call(opts)
            assert len(r.turns) == 2
            onset = r.turns[1].start_ms
            # The echo of the first turn was playing when the caller spoke again.
            assert r.first_media_ms and r.first_media_ms[0] < onset
            # The relay cleared it after the onset, before the caller had finished speaking
            # (how soon is for benches).
            after = [c for c in r.clears_ms if c >= onset]
            assert after and after[0] <= r.turns[1].end_ms, (onset, r.clears_ms, r.turns[1])
            # Pending marks came back after the clear and were not counted as played.
            assert r.marks_received == r.marks_echoed
        (agent,) = rec
        barge = [e for e in agent.events if isinstance(e, BargeIn)]
        assert len(barge) == 1
        # Some, not all, of the echo had been heard when the caller cut in.
        assert 0 < barge[0].heard_ms < barge[0].sent_ms
        starts = [e for e in agent.events if isinstance(e, SpeechStarted)]
        assert len(starts) == 2

    run(main())


@pytest.mark.slow
def test_fifty_concurrent_calls_keep_pace_without_dropped_frames(hello: bytes) -> None:
    async def main() -> None:
        async with serving() as server:
            audio = silence(0.2) + hello[: 16000 * 2]
            opts = [
                CallOptions(ws_url(server), audio, tail_s=3.0, seed=i, stop_when_idle=True)
                for i in range(50)
            ]
            results = await asyncio.gather(*(run_call(o) for o in opts))
            await server.wait_until(lambda: len(server.finished) == 50)
            for r in results:
                assert r.close_code == 1000
                assert r.turns and r.turns[0].latency_ms is not None
            # No frame was dropped by the server: each call's media count matches what was sent.
            sent = sorted(r.frames_sent for r in results)
            assert sorted(s["media_in"] for s in server.finished) == sent

    run(main(), timeout=45)


# ----------------------------------------------------------------------------------------------
# Protocol handling on a live socket (no real-time pacing needed)


BAD_MESSAGES: list[str | bytes] = [
    "not json at all",
    '{"event": "media", ',
    "[1, 2, 3]",
    '{"event": "hangup", "streamSid": "' + SID + '"}',
    '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1",'
    '"timestamp":"0","payload":"%%%not base64%%%"},"streamSid":"' + SID + '"}',
    '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1",'
    '"timestamp":"0","payload":"' + base64.b64encode(b"\xff" * 100).decode() + '"},'
    '"streamSid":"' + SID + '"}',
    '{"event":"media","sequenceNumber":"3","media":{"track":"inbound"},"streamSid":"' + SID + '"}',
    '{"event":"dtmf","streamSid":"' + SID + '","dtmf":{"digit":"X"}}',
    "x" * 70000,
    b"\x00\x01binary",
]


def test_malformed_messages_do_not_end_the_call(
    hello: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="voxrelay.session")

    async def main() -> None:
        async with serving() as server, connect(ws_url(server), max_size=2**22) as ws:
            # Media before start is bad input too.
            await ws.send(media_frames(silence(0.02), SID)[0])
            await start_call(ws)
            for _ in range(3):
                for m in BAD_MESSAGES:
                    await ws.send(m)
            # The call is still up: speech in, echo out.
            for m in media_frames(hello + silence(0.8), SID):
                await ws.send(m)
            reply = await asyncio.wait_for(first(ws, lambda e: isinstance(e, tw.Media)), 5)
            assert isinstance(reply, tw.Media) and reply.stream_sid == SID
            await ws.send(tw.stop_message(SID, 999, CALL, ACCOUNT))
            assert (await closed(ws))[0] == 1000

    run(main())
    warnings = [r.getMessage() for r in caplog.records if "bad input" in r.getMessage()]
    kinds = [w.split("(")[1].split(")")[0] for w in warnings]
    # Each kind is logged once per call although every bad message was sent three times.
    assert len(kinds) == len(set(kinds))
    assert {
        "not_json",
        "not_object",
        "unknown_event",
        "binary_frame",
        "too_large",
        "media_before_start",
        "bad_field",
    } <= set(kinds)


@pytest.mark.parametrize(
    ("junk", "codes"),
    [("not json", {1007}), (b"\x00" * 8, {1008}), ('{"event":"nope"}', {1008})],
    ids=["text", "binary", "unknown-event"],
)
def test_flood_closes_only_that_call(junk: str | bytes, codes: set[int]) -> None:
    async def main() -> None:
        settings = Settings(bad_input_max=20, bad_input_window_s=5.0)
        async with (
            serving(settings) as server,
            connect(ws_url(server)) as bystander,
            connect(ws_url(server)) as flooder,
        ):
            await start_call(bystander)
            await start_call(flooder)
            for _ in range(25):
                try:
                    await flooder.send(junk)
                except ConnectionClosed:
                    break
            code, reason = await asyncio.wait_for(closed(flooder), 5)
            assert code in codes and "bad input" in reason
            # The other call is untouched.
            await bystander.send(tw.stop_message(SID, 5, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(bystander), 5))[0] == 1000

    run(main())


def test_stop_closes_the_socket_and_frees_the_session() -> None:
    async def main() -> None:
        async with serving() as server, connect(ws_url(server)) as ws:
            await start_call(ws)
            await server.wait_until(lambda: len(server.sessions) == 1)
            await ws.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            code, reason = await asyncio.wait_for(closed(ws), 5)
            assert (code, reason) == (1000, "stream stopped")
            await server.wait_until(lambda: not server.sessions)

    run(main())


def test_vanished_client_frees_its_session() -> None:
    async def main() -> None:
        async with serving() as server:
            ws = await connect(ws_url(server))
            await start_call(ws)
            await server.wait_until(lambda: len(server.sessions) == 1)
            ws.transport.abort()  # gone without a close frame
            await server.wait_until(lambda: not server.sessions)
            assert server.finished[-1]["media_in"] == 0

    run(main())


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 48000])
def test_dtmf_and_agent_audio_at_any_rate(rate: int) -> None:
    rec: list[Recorder] = []

    async def main() -> None:
        async with serving(record=rec) as server, connect(ws_url(server)) as ws:
            await start_call(ws)
            await ws.send(tw.dtmf_message(SID, 3, "7"))
            await server.wait_until(lambda: bool(rec))
            await rec[0].seen("Dtmf")
            call: Any = server.sessions.copy().pop()
            t = np.arange(rate // 2) / rate
            tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()
            call.play(tone, rate)  # 0.5 s
            pcm = b""
            marks = 0
            while marks == 0:
                ev = tw.parse_message(await asyncio.wait_for(ws.recv(), 5))
                if isinstance(ev, tw.Media):
                    codes = base64.b64decode(ev.payload)
                    assert len(codes) == 160  # 20 ms of mu-law at 8 kHz
                    pcm += media.ulaw_decode(codes)
                elif isinstance(ev, tw.Mark):
                    marks += 1
            # 500 ms of audio is 25 frames (+1 if the resampler's tail spills over), one mark.
            assert len(pcm) in (25 * 320, 26 * 320)
            x = np.frombuffer(pcm, "<i2").astype(np.float64)[400:3600]
            spectrum = np.abs(np.fft.rfft(x))
            assert abs(np.argmax(spectrum) * 8000 / len(x) - 440) < 10  # still a 440 Hz tone

    run(main())


def test_stream_secret_parameter() -> None:
    async def main() -> None:
        async with serving(Settings(stream_secret="s3cret")) as server:
            async with connect(ws_url(server)) as ws:
                await start_call(ws, {"voxrelay_token": "wrong"})
                assert (await asyncio.wait_for(closed(ws), 5))[0] == 1008
            async with connect(ws_url(server)) as ws:
                await start_call(ws, {"voxrelay_token": "s3cret"})
                await ws.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
                assert (await asyncio.wait_for(closed(ws), 5))[0] == 1000

    run(main())


# ----------------------------------------------------------------------------------------------
# Signatures, webhook, health


def test_upgrade_signature_accepts_valid_and_rejects_others() -> None:
    validator = RequestValidator(TOKEN)

    async def main() -> None:
        async with serving(Settings(twilio_auth_token=TOKEN)) as server:
            host = f"127.0.0.1:{server.port}"
            good = validator.compute_signature(f"wss://{host}/twilio", {})
            for headers in ({}, {"X-Twilio-Signature": "AAAA" + good[4:]}):
                with pytest.raises(InvalidStatus) as err:
                    await connect(ws_url(server), additional_headers=headers)
                assert err.value.response.status_code == 403
            async with connect(
                ws_url(server) + "?q=1", additional_headers={"X-Twilio-Signature": good}
            ) as ws:
                await start_call(ws)
                await ws.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
                assert (await asyncio.wait_for(closed(ws), 5))[0] == 1000

    run(main())


def _http(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


async def _ahttp(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    return await asyncio.to_thread(_http, port, method, path, body, headers)


def test_healthz_and_unknown_paths() -> None:
    async def main() -> None:
        async with serving() as server:
            assert (await _ahttp(server.port, "GET", "/healthz"))[::2] == (200, "ok\n")
            assert (await _ahttp(server.port, "GET", "/nope"))[0] == 404
            assert (await _ahttp(server.port, "DELETE", "/healthz"))[0] == 405
            assert (await _ahttp(server.port, "POST", "/nope", b"a=b"))[0] == 404
            # Twilio can also be configured to call the webhook with GET.
            status, ctype, text = await _ahttp(
                server.port, "GET", "/twilio/voice?CallSid=CA1", headers={"Host": "r.example"}
            )
            assert status == 200 and ctype.startswith("text/xml")
            assert '<Stream url="wss://r.example/twilio">' in text

    run(main())


def test_twiml_webhook_signed_by_twilio_validator() -> None:
    validator = RequestValidator(TOKEN)
    form = {"CallSid": CALL, "AccountSid": ACCOUNT, "From": "+15550001111", "To": "+15550002222"}
    body = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in form.items()).encode()
    ctype = {"Content-Type": "application/x-www-form-urlencoded"}

    async def main() -> None:
        settings = Settings(twilio_auth_token=TOKEN, stream_secret="per-deploy-secret")
        async with serving(settings) as server:
            headers = {**ctype, "Host": "relay.example.com", "X-Forwarded-Proto": "https"}
            sig = validator.compute_signature("https://relay.example.com/twilio/voice", form)
            status, content_type, text = await _ahttp(
                server.port, "POST", "/twilio/voice", body, {**headers, "X-Twilio-Signature": sig}
            )
            assert status == 200 and content_type.startswith("text/xml")
            assert '<Stream url="wss://relay.example.com/twilio">' in text
            assert '<Parameter name="voxrelay_token" value="per-deploy-secret"/>' in text
            bad = validator.compute_signature("https://relay.example.com/twilio/voice", {})
            for h in (headers, {**headers, "X-Twilio-Signature": bad}):
                assert (await _ahttp(server.port, "POST", "/twilio/voice", body, h))[0] == 403

    run(main())


def test_twiml_webhook_uses_configured_public_url() -> None:
    async def main() -> None:
        settings = Settings(public_url="https://calls.example.org/relay")
        async with serving(settings) as server:
            status, _, text = await _ahttp(
                server.port,
                "POST",
                "/twilio/voice",
                b"CallSid=CA1",
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert status == 200
            assert '<Stream url="wss://calls.example.org/relay/twilio">' in text
            # Bodies over the limit are refused before they are read.
            status, _, _ = await _ahttp(
                server.port,
                "POST",
                "/twilio/voice",
                b"a=" + b"x" * 70000,
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert status == 413

    run(main())


# ----------------------------------------------------------------------------------------------
# Graceful shutdown


def test_shutdown_drains_then_closes_with_1001() -> None:
    async def main() -> None:
        async with serving() as server:
            done = await connect(ws_url(server))
            lingering = await connect(ws_url(server))
            await start_call(done)
            await start_call(lingering)
            await server.wait_until(lambda: len(server.sessions) == 2)
            shutdown = asyncio.create_task(server.shutdown(drain_timeout_s=1.0))
            await server.wait_until(lambda: not server.http._is_serving())
            # A call that ends during the drain ends normally.
            await done.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(done), 5))[0] == 1000
            # The one still up at the drain timeout is closed with 1001.
            assert (await asyncio.wait_for(closed(lingering), 5))[0] == 1001
            await asyncio.wait_for(shutdown, 5)
            with pytest.raises(OSError):
                await connect(ws_url(server), open_timeout=2)

    run(main())


def test_sigterm_on_voxrelay_serve_closes_calls_with_1001() -> None:
    env = {**os.environ, "VOXRELAY_DRAIN_TIMEOUT_S": "0.2", "VOXRELAY_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxrelay.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("voxrelay: listening on"), line
        port = int(line.rsplit(":", 1)[1])

        async def main() -> int | None:
            async with connect(f"ws://127.0.0.1:{port}/twilio") as ws:
                await start_call(ws)
                status, _, _ = await _ahttp(port, "GET", "/healthz")
                assert status == 200
                proc.send_signal(signal.SIGTERM)
                code, _ = await asyncio.wait_for(closed(ws), 10)
                return code

        assert run(main()) == 1001
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------------------------
# The phone simulator's own pieces


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_read_wav_any_width_and_channels(tmp_path: Path, width: int, channels: int) -> None:
    t = np.arange(8000) / 8000
    x = (np.sin(2 * np.pi * 440 * t) * 20000).astype(np.int64)
    scaled = {1: (x >> 8) + 128, 2: x, 3: x << 8, 4: x << 16}[width]
    frames = np.repeat(scaled, channels)
    if width == 3:
        raw = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in frames)
    else:
        raw = frames.astype({1: "u1", 2: "<i2", 4: "<i4"}[width]).tobytes()
    path = tmp_path / "x.wav"
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(raw)
    got = np.frombuffer(read_wav(path), "<i2").astype(np.int64)
    tolerance = 256 if width == 1 else 1
    assert len(got) == len(x) and np.max(np.abs(got - x)) <= tolerance


def test_speech_segments_merge_short_pauses() -> None:
    loud = b"\x00\x10" * 160  # 20 ms at 4096
    quiet = b"\0\0" * 160
    pcm = quiet * 10 + loud * 20 + quiet * 10 + loud * 20 + quiet * 30 + loud * 10
    assert speech_segments(pcm, min_gap_ms=400) == [(200, 1200), (1800, 2000)]


def test_voxrelay_call_cli_against_voxrelay_serve(hello: bytes, tmp_path: Path) -> None:
    import wave

    # 16 kHz stereo input: the simulator converts it with the media engine.
    src = tmp_path / "in.wav"
    up = media.Resampler(8000, 16000)
    mono = np.frombuffer(up.process(silence(0.2) + hello) + up.flush(), "<i2")
    with wave.open(str(src), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.repeat(mono, 2).astype("<i2").tobytes())
    env = {**os.environ, "VOXRELAY_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "voxrelay.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        out = tmp_path / "heard.wav"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "voxrelay.cli",
                "call",
                f"ws://127.0.0.1:{port}/twilio",
                "--wav",
                str(src),
                "--out",
                str(out),
                "--tail",
                "3",
                "--dtmf",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert "1 turn(s)" in done.stdout and "response latency" in done.stdout
        assert "closed: 1000" in done.stdout
        with wave.open(str(out)) as w:
            assert (w.getframerate(), w.getnchannels()) == (8000, 1)
            heard = w.readframes(w.getnframes())
        assert speech_segments(heard), "the caller heard no echo"
    finally:
        server.terminate()
        server.wait(timeout=10)


# ----------------------------------------------------------------------------------------------
# Isolation of failures


class Faulty:
    def __init__(self, call: CallControl) -> None:
        self.call = call

    async def on_event(self, event: AgentEvent) -> None:
        raise RuntimeError("agent bug")


def test_agent_exceptions_do_not_end_the_call(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        server = RelayServer(Settings(port=0), Faulty)
        await server.start()
        try:
            async with connect(ws_url(server)) as ws:
                await start_call(ws)
                await ws.send(tw.dtmf_message(SID, 3, "1"))
                await ws.send(tw.stop_message(SID, 4, CALL, ACCOUNT))
                assert (await asyncio.wait_for(closed(ws), 5))[0] == 1000
        finally:
            await server.shutdown(0)

    run(main())
    assert any("agent failed" in r.getMessage() for r in caplog.records)


def test_a_bug_in_one_call_closes_it_with_1011_and_spares_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voxrelay.session import Session

    original = Session.on_event

    def on_event(self: Session, event: str, data: Any) -> None:
        if b"boom" in bytes(data):
            raise RuntimeError("bug")
        original(self, event, data)

    # After `start`, every text message reaches the session through the connection's fused
    # frame reader: media as PCM (`on_media`), anything else through `on_event`.
    monkeypatch.setattr(Session, "on_event", on_event)

    async def main() -> None:
        async with (
            serving() as server,
            connect(ws_url(server)) as victim,
            connect(ws_url(server)) as other,
        ):
            await start_call(victim)
            await start_call(other)
            await victim.send('{"event":"boom"}')
            assert (await asyncio.wait_for(closed(victim), 5))[0] == 1011
            await other.send(tw.stop_message(SID, 3, CALL, ACCOUNT))
            assert (await asyncio.wait_for(closed(other), 5))[0] == 1000

    run(main())


def test_idle_call_is_closed() -> None:
    async def main() -> None:
        async with serving(Settings(idle_timeout_s=0.3)) as server, connect(ws_url(server)) as ws:
            await start_call(ws)
            code, reason = await asyncio.wait_for(closed(ws), 5)
            assert (code, reason) == (1001, "idle timeout")

    run(main())


class UlawSpeaker:
    """An agent whose audio is already mu-law 8 kHz: it says 330 codes when the call starts."""

    CODES = bytes(range(256)) + bytes(range(74))

    def __init__(self, call: CallControl) -> None:
        self.call = call

    async def on_event(self, event: AgentEvent) -> None:
        if type(event).__name__ == "CallStarted":
            self.call.play_ulaw(self.CODES[:200], last=False)
            self.call.play_ulaw(self.CODES[200:], last=True)


def first_payloads(agent: Callable[[CallControl], Any], n: int) -> list[bytes]:
    """The audio of the first `n` media messages a call with `agent` sends, decoded."""

    async def body() -> list[bytes]:
        server = RelayServer(Settings(port=0), agent)
        await server.start()
        try:
            async with connect(ws_url(server)) as ws:
                await start_call(ws)
                payloads: list[bytes] = []
                while len(payloads) < n:
                    ev = await first(ws, lambda e: isinstance(e, tw.Media))
                    assert isinstance(ev, tw.Media)
                    payloads.append(base64.b64decode(ev.payload))
                return payloads
        finally:
            await server.shutdown(drain_timeout_s=0.0)

    return run(body())


def test_mulaw_agent_audio_goes_out_untouched() -> None:
    payloads = first_payloads(UlawSpeaker, 3)
    # No decode/resample/encode on the way: the codes arrive as sent, in 20 ms frames, the
    # last one padded with mu-law silence.
    assert payloads == [
        UlawSpeaker.CODES[:160],
        UlawSpeaker.CODES[160:320],
        UlawSpeaker.CODES[320:] + b"\xff" * 150,
    ]


class MixedSpeaker:
    """An agent that plays 16 kHz PCM, then mu-law codes, without ending the first."""

    PCM = (np.sin(np.arange(1600) * 0.05) * 8000).astype(np.int16).tobytes()  # 100 ms
    CODES = bytes(range(200))

    def __init__(self, call: CallControl) -> None:
        self.call = call

    async def on_event(self, event: AgentEvent) -> None:
        if type(event).__name__ == "CallStarted":
            self.call.play(self.PCM, 16000, last=False)
            self.call.play_ulaw(self.CODES, last=True)


def test_pcm_then_mulaw_agent_audio_keeps_its_order() -> None:
    payloads = first_payloads(MixedSpeaker, 8)
    # 100 ms of PCM is 5 whole frames at once; its filter tail goes out next, padded with
    # silence, before the codes; then the codes, the last frame padded.
    out = media.TwilioOutbound("x", 16000)
    pcm_codes = payloads_of(out.process(MixedSpeaker.PCM) + out.flush())
    assert b"".join(payloads[:6]) == pcm_codes and len(pcm_codes) == 6 * 160
    assert payloads[6:] == [MixedSpeaker.CODES[:160], MixedSpeaker.CODES[160:] + b"\xff" * 120]


def payloads_of(messages: list[str]) -> bytes:
    out = b""
    for m in messages:
        ev = tw.parse_message(m)
        assert isinstance(ev, tw.Media)
        out += base64.b64decode(ev.payload)
    return out


class PhoneRateListener:
    """An agent that takes the phone's own 8 kHz audio (as a mu-law recogniser would)."""

    input_rate = 8000
    instances: ClassVar[list[PhoneRateListener]] = []

    def __init__(self, call: CallControl) -> None:
        self.call = call
        self.heard = bytearray()
        self.ended: list[SpeechEnded] = []
        self.listening = asyncio.Event()
        self.done = asyncio.Event()
        self.instances.append(self)

    async def on_event(self, event: AgentEvent) -> None:
        if type(event).__name__ == "CallStarted":
            self.call.set_audio_sink(self.heard.extend)
            self.listening.set()
        elif isinstance(event, SpeechEnded):
            self.ended.append(event)
            self.done.set()


class EagerPhoneRateAgent:
    """An 8 kHz agent that sets its turn timing in its constructor."""

    input_rate = 8000
    seen: ClassVar[list[tuple[int, int]]] = []
    started: ClassVar[asyncio.Event]

    def __init__(self, call: CallControl) -> None:
        self.call = call
        call.configure_turns(end_ms=900)

    async def on_event(self, event: AgentEvent) -> None:
        if type(event).__name__ == "CallStarted":
            session = self.call
            assert isinstance(session, Session)
            self.seen.append((session.agent_rate, session.turns.end_ms))
            self.started.set()


def test_turn_timing_set_by_an_agent_constructor_survives_its_input_rate() -> None:
    """The session learns the agent's rate only once the agent exists, and then rebuilds
    the turn detector for it: the timing the agent asked for must carry over."""
    EagerPhoneRateAgent.seen = []

    async def main() -> None:
        EagerPhoneRateAgent.started = asyncio.Event()
        server = RelayServer(Settings(port=0), EagerPhoneRateAgent)
        await server.start()
        try:
            async with connect(ws_url(server)) as ws:
                await start_call(ws)
                await asyncio.wait_for(EagerPhoneRateAgent.started.wait(), 10)
        finally:
            await server.shutdown(drain_timeout_s=0.0)

    run(main())
    assert EagerPhoneRateAgent.seen == [(8000, 900)]


def test_agent_at_the_phone_rate_gets_the_wire_audio_untouched(hello: bytes) -> None:
    PhoneRateListener.instances = []
    sent = media.ulaw_encode(hello + silence(0.8))

    async def main() -> None:
        server = RelayServer(Settings(port=0), PhoneRateListener)
        await server.start()
        try:
            async with connect(ws_url(server)) as ws:
                await start_call(ws)
                # The frames go out in one burst, far faster than a phone's 50 a second: were
                # the sink set after the whole utterance had ended, it would hear none of it.
                await server.wait_until(lambda: len(server.sessions) == 1)
                agent = PhoneRateListener.instances[0]
                await asyncio.wait_for(agent.listening.wait(), 10)
                for m in media_frames(hello + silence(0.8), SID):
                    await ws.send(m)
                await asyncio.wait_for(agent.done.wait(), 10)
        finally:
            await server.shutdown(drain_timeout_s=0.0)

    run(main())
    agent = PhoneRateListener.instances[0]
    assert agent.ended[0].rate == 8000
    # No resampling on the way in: the streamed utterance (pre-roll through its end) is
    # exactly the phone's audio, sample for sample, behind the concealer's fixed 3.75 ms
    # (30 samples), so a mu-law recogniser gets the wire's codes back (but for -0 vs +0).
    assert len(agent.heard) >= len(hello) // 2
    assert bytes(agent.heard) in b"\0\0" * 30 + media.ulaw_decode(sent)
