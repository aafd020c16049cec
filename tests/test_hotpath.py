"""The per-message hot path: Twilio media JSON in -> 16 kHz PCM + VAD; agent PCM -> media JSON."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from voxrelay import media
from voxrelay.protocols.twilio import media_message
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def voiced(rate: int, seconds: float, f0: float = 140.0, amp: float = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return (x / np.max(np.abs(x)) * amp).astype(np.int16)


def media_msg(chunk: int, codes: bytes, *, payload: str | None = None) -> str:
    b64 = base64.b64encode(codes).decode() if payload is None else payload
    return media_message(SID, chunk + 2, chunk, (chunk - 1) * 20, b64)


def call(pcm8: np.ndarray) -> list[str]:
    codes = media.ulaw_encode(pcm8.tobytes())
    return [media_msg(i + 1, codes[i * 160 : (i + 1) * 160]) for i in range(len(codes) // 160)]


def run(msgs: list[str], **kw: int) -> tuple[bytes, list[bool | None]]:
    inb = media.TwilioInbound(**kw)  # type: ignore[arg-type]
    out, flags = [], []
    for m in msgs:
        event, pcm, speech = inb.process(m)
        assert event == "media"
        out.append(pcm)
        flags.append(speech)
    return b"".join(out), flags


SPEECH = np.concatenate([np.zeros(8000, np.int16), voiced(8000, 1.0), np.zeros(8000, np.int16)])
MSGS = call(SPEECH)


def test_in_order_call_equals_decode_then_resample() -> None:
    inb = media.TwilioInbound(out_rate=16000)
    outs = [inb.process(m)[1] for m in MSGS]
    assert all(len(o) == 640 for o in outs)  # every 20 ms message releases 20 ms at 16 kHz
    rs = media.Resampler(8000, 16000, quality="phone")  # the inbound's default
    delay = round((inb.latency_ms - rs.latency_ms) * 8)  # jitter buffer / concealment delay
    assert 0 <= delay <= 80
    decoded = np.frombuffer(media.ulaw_decode(media.ulaw_encode(SPEECH.tobytes())), np.int16)
    delayed = np.concatenate([np.zeros(delay, np.int16), decoded])[: len(decoded)]
    want = b"".join(rs.process(delayed[i : i + 160].tobytes()) for i in range(0, len(delayed), 160))
    assert b"".join(outs) == want


def test_inbound_quality_is_chosen_and_reported() -> None:
    phone = media.TwilioInbound()
    voice = media.TwilioInbound(quality="voice")
    assert (phone.quality, voice.quality) == ("phone", "voice")
    # The phone design to 16 kHz is 1.25 ms sooner (69 taps instead of 109).
    assert phone.latency_ms < voice.latency_ms - 1.2
    assert media.TwilioInbound(out_rate=8000).quality is None  # nothing to resample
    with pytest.raises(media.MediaError, match=r"'best'.*'voice', 'high', 'phone'"):
        media.TwilioInbound(quality="best")
    with pytest.raises(TypeError, match="quality"):
        media.TwilioInbound(quality=None)  # type: ignore[arg-type]
    # Same audio, each through its own resampler.
    rs = media.Resampler(8000, 16000, quality="voice")
    decoded = media.ulaw_decode(media.ulaw_encode(SPEECH.tobytes()))
    got = b"".join(voice.process(m)[1] for m in MSGS)
    want = rs.process(decoded)
    skip = round((voice.latency_ms - rs.latency_ms) * 16) * 2  # the jitter buffer's delay
    assert got[skip:] == want[: len(got) - skip]


def test_out_rate_8000_is_the_decoded_audio() -> None:
    inb = media.TwilioInbound(out_rate=8000)
    got = b"".join(inb.process(m)[1] for m in MSGS)
    delay = round(inb.latency_ms * 8)
    decoded = np.frombuffer(media.ulaw_decode(media.ulaw_encode(SPEECH.tobytes())), np.int16)
    want = np.concatenate([np.zeros(delay, np.int16), decoded])[: len(decoded)]
    assert got == want.tobytes()


def test_vad_flags_the_voiced_second_only() -> None:
    _, flags = run(MSGS)
    f = np.array([bool(x) for x in flags])
    assert f[:45].mean() < 0.1  # leading silence
    assert f[55:95].mean() > 0.9  # inside the voiced second (frames 50..100)
    assert f[115:].mean() < 0.1  # trailing silence after hangover


def test_reordered_and_duplicated_frames_lose_nothing() -> None:
    base, _ = run(MSGS)
    swapped = list(MSGS)
    swapped[60], swapped[61] = swapped[61], swapped[60]
    dup = [*MSGS[:70], MSGS[69], *MSGS[70:]]
    for msgs in (swapped, dup):
        got, _ = run(msgs)
        assert got == base


def test_lost_frame_is_concealed_and_time_is_kept() -> None:
    lossy = [m for i, m in enumerate(MSGS) if i != 60]
    inb = media.TwilioInbound()
    total = sum(len(inb.process(m)[1]) for m in lossy)
    assert total == 640 * len(MSGS)  # the missing 20 ms was filled, not skipped
    stats = inb.stats()
    assert stats["concealed"] >= 1
    assert stats["received"] == len(lossy)


def test_control_events_are_classified_not_decoded() -> None:
    inb = media.TwilioInbound()
    for text, name in [
        ('{"event":"connected","protocol":"Call","version":"1.0.0"}', "connected"),
        (
            '{"event":"start","sequenceNumber":"1","start":{"streamSid":"MZ"},"streamSid":"MZ"}',
            "start",
        ),
        ('{"event":"dtmf","dtmf":{"digit":"1"}}', "dtmf"),
        ('{"event":"mark","mark":{"name":"utt-1"}}', "mark"),
        ('{"event":"stop","stop":{"callSid":"CA"}}', "stop"),
        ('{"event":"bogus"}', "other"),
    ]:
        assert inb.process(text) == (name, b"", None)
    assert inb.process(MSGS[0].encode())[0] == "media"  # bytes work too


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "malformed JSON"),
        ('{"event":"media"', "malformed JSON"),
        ("[]", "malformed JSON"),
        ('{"event":"media","media":{}}', "media.payload"),
        ('{"event":"media","media":{"payload":12}}', "payload"),
        (media_msg(1, b"", payload="AAA*" * 54), "base64"),
        (media_msg(1, b"\xff" * 159), "159 bytes; expected 160"),
        (media_msg(1, b"\xff" * 161), "expected 160"),
        (media_msg(1, b"\xff" * 4000), "4000 bytes; expected 160"),
    ],
)
def test_malformed_messages_raise_frame_error_and_the_call_goes_on(text: str, match: str) -> None:
    inb = media.TwilioInbound()
    assert len(inb.process(MSGS[0])[1]) == 640
    with pytest.raises(media.FrameError, match=match):
        inb.process(text)
    assert len(inb.process(MSGS[1])[1]) == 640  # nothing lost, state intact


def test_oversized_message_is_refused_before_parsing() -> None:
    inb = media.TwilioInbound(max_message_bytes=1024)
    with pytest.raises(media.FrameError, match="exceeds the limit of 1024 bytes"):
        inb.process('{"event":"media","junk":"' + "x" * 2000 + '"}')
    assert isinstance(media.FrameError("x"), ValueError)


def test_non_utf8_bytes_are_a_frame_error() -> None:
    with pytest.raises(media.FrameError):
        media.TwilioInbound().process(b"\xff\xfe{")


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(ValueError, match="12345"):
        media.TwilioInbound(out_rate=12345)
    with pytest.raises(ValueError, match="g722"):
        media.TwilioInbound(codec="g722")
    with pytest.raises(ValueError, match="frame_ms = 25"):
        media.TwilioInbound(frame_ms=25)
    with pytest.raises(ValueError, match="12345"):
        media.TwilioOutbound(SID, 12345)
    with pytest.raises(TypeError):
        media.TwilioInbound().process(42)  # type: ignore[arg-type]


# --- outbound ---


def payloads(msgs: list[str]) -> bytes:
    out = b""
    for m in msgs:
        d = json.loads(m)
        assert list(d) == ["event", "streamSid", "media"]
        assert d["event"] == "media" and d["streamSid"] == SID
        codes = base64.b64decode(d["media"]["payload"])
        assert len(codes) == 160
        out += codes
    return out


def test_outbound_at_8000_is_exact_ulaw_frames() -> None:
    out = media.TwilioOutbound(SID, 8000)
    pcm = voiced(8000, 0.5).tobytes()
    msgs = [m for i in range(0, len(pcm), 320) for m in out.process(pcm[i : i + 320])]
    assert len(msgs) == 25
    assert payloads(msgs) == media.ulaw_encode(pcm)
    assert out.flush() == []


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100, 48000])
def test_outbound_one_message_per_20ms_and_flush_pads(rate: int) -> None:
    out = media.TwilioOutbound(SID, rate)
    pcm = voiced(rate, 1.0).tobytes()
    step = rate // 50 * 2
    batches = [out.process(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    counts = [len(b) for b in batches]
    assert counts.count(1) >= 48 and set(counts) <= {0, 1, 2}  # steady 1x, no bursts
    tail = out.flush()
    assert out.pending_ms == 0
    codes = payloads([m for b in batches for m in b] + tail)
    # Everything that went in comes out: 1 s of audio plus at most the filter tail and padding.
    assert 8000 <= len(codes) <= 8000 + 160 + round(out.latency_ms * 8) + 160


def test_outbound_tone_survives_resampling_and_ulaw() -> None:
    rate = 24000
    t = np.arange(rate) / rate
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    out = media.TwilioOutbound(SID, rate)
    msgs = out.process(tone.tobytes()) + out.flush()
    pcm8 = np.frombuffer(media.ulaw_decode(payloads(msgs)), np.int16).astype(float)
    spec = np.abs(np.fft.rfft(pcm8[800:7200] * np.hanning(6400)))
    assert abs(np.argmax(spec) * 8000 / 6400 - 440) < 2


def _band_db(x: np.ndarray) -> float:
    """Power of 8 kHz `x` in the telephone band, 300-3400 Hz, in dB."""
    spec = np.abs(np.fft.rfft(x)) ** 2
    band = spec[round(300 * len(x) / 8000) : round(3400 * len(x) / 8000)]
    return float(10 * np.log10(np.sum(band)))


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize("quality", ["phone", "voice"])
def test_outbound_aliases_are_far_under_the_codec_noise(rate: int, quality: str) -> None:
    # What a caller hears of the resampler's aliases, against what mu-law adds anyway: a ~1 kHz
    # tone with six loud tones above 4.6 kHz (each would alias to its own in-band frequency:
    # 4.7k -> 3.3k, 5.3k -> 2.7k, 6.1k -> 1.9k, 7.3k -> 700 Hz, 9.7k -> 1.7k, 10.9k -> 2.9k).
    # The aliases are the output with the loud tones minus the output without them (same
    # filter, same delay; PCM16 rounding of the two sets a floor ~47 dB under the codec's
    # noise). The phone quality's 80 dB keeps them 45-47 dB under it, the voice quality's ~91 dB
    # 47-49 dB; by the same arithmetic a 60 dB design would leave them only ~25 dB under.
    # `TwilioOutbound` uses this resampler (`test_outbound_resamples_at_the_phone_quality`).
    t = np.arange(rate * 2) / rate
    inband = 0.3 * np.sin(2 * np.pi * 1013.7 * t)
    loud = sum(
        0.1 * np.sin(2 * np.pi * f * t + f)
        for f in (4701.3, 5303.9, 6107.1, 7309.3, 9711.7, 10913.1)
        if f < 0.48 * rate
    )

    def to_phone_rate(x: np.ndarray) -> np.ndarray:
        pcm = np.round(x * 32767).astype(np.int16).tobytes()
        y = media.Resampler(rate, 8000, quality=quality).process(pcm)
        return np.frombuffer(y, np.int16)[800:15200].astype(float)

    both, clean = to_phone_rate(inband + loud), to_phone_rate(inband)
    coded = np.frombuffer(media.ulaw_decode(media.ulaw_encode(both.astype(np.int16))), np.int16)
    codec_noise = _band_db(coded - both)
    aliases = _band_db(both - clean)
    assert _band_db(both) - codec_noise > 33.0  # mu-law's SNR, nothing worse
    assert codec_noise - aliases > 35.0, (codec_noise, aliases)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_outbound_resamples_at_the_phone_quality(rate: int) -> None:
    # TwilioOutbound's codes are mu-law of the phone-quality resampler's output, chunk by chunk.
    pcm = voiced(rate, 0.6).tobytes()
    out = media.TwilioOutbound(SID, rate)
    step = rate // 50 * 2
    msgs = [m for i in range(0, len(pcm), step) for m in out.process(pcm[i : i + step])]
    rs = media.Resampler(rate, 8000, quality="phone")
    expected = media.ulaw_encode(rs.process(pcm) + rs.flush())
    sent = payloads(msgs + out.flush())
    assert sent[: len(expected)] == expected and set(sent[len(expected) :]) <= {0xFF}


def test_outbound_quality_is_chosen_and_reported() -> None:
    assert media.TwilioOutbound(SID, 24000).quality == "phone"
    voice = media.TwilioOutbound(SID, 24000, quality="voice")
    assert voice.quality == "voice"
    assert media.TwilioOutbound(SID, 24000).latency_ms < voice.latency_ms - 0.7
    assert media.TwilioOutbound(SID, 8000).quality is None  # nothing to resample
    with pytest.raises(media.MediaError, match=r"'best'.*'voice', 'high', 'phone'"):
        media.TwilioOutbound(SID, 24000, quality="best")
    with pytest.raises(TypeError, match="quality"):
        media.TwilioOutbound(SID, 24000, quality=5)  # type: ignore[arg-type]


def test_outbound_partial_frame_waits_and_reset_drops_it() -> None:
    out = media.TwilioOutbound(SID, 8000)
    assert out.process(b"\x00\x00" * 80) == []
    assert out.pending_ms == 10.0
    out.reset()
    assert out.pending_ms == 0.0
    assert out.flush() == []


def test_outbound_stream_sid_is_json_escaped() -> None:
    out = media.TwilioOutbound('MZ"\\\n', 8000)
    (m,) = out.process(b"\x00\x00" * 160)
    assert json.loads(m)["streamSid"] == 'MZ"\\\n'


def _unframe(frames: list[bytes]) -> list[str]:
    """The texts of server WebSocket frames, each parsed by `websockets` as a client would."""
    texts = []
    for f in frames:
        reader = StreamReader()
        reader.feed_data(f)
        parser = Frame.parse(reader.read_exact, mask=False)
        with pytest.raises(StopIteration) as done:
            next(parser)
        frame = done.value.value
        assert frame.opcode is Opcode.TEXT and frame.fin
        assert not reader.buffer  # exactly one frame
        texts.append(frame.data.decode())
    return texts


@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_outbound_frames_are_the_messages_as_websocket_text_frames(rate: int) -> None:
    as_text = media.TwilioOutbound(SID, rate)
    as_frames = media.TwilioOutbound(SID, rate)
    pcm = voiced(rate, 0.5).tobytes()
    step = rate // 50 * 2
    for i in range(0, len(pcm), step):
        frames = as_frames.process_frames(pcm[i : i + step])
        assert all(isinstance(f, bytes) for f in frames)
        assert _unframe(frames) == as_text.process(pcm[i : i + step])
    assert _unframe(as_frames.flush_frames()) == as_text.flush()


@pytest.mark.parametrize(("codec", "silence"), [("ulaw", 0xFF), ("alaw", 0xD5)])
def test_outbound_codes_go_out_as_given_and_last_pads_with_silence(
    codec: str, silence: int
) -> None:
    out = media.TwilioOutbound(SID, 16000, codec=codec)
    codes = bytes(range(256)) * 2  # 512 codes: 3 whole frames and 32 left
    first = out.process_codes(codes[:100], last=False)
    assert first == [] and out.pending_ms == 12.5
    rest = out.process_codes_frames(memoryview(codes)[100:], last=True)
    assert out.pending_ms == 0
    assert payloads(_unframe(rest)) == codes + bytes([silence]) * 128


def test_outbound_flush_with_nothing_fed_sends_nothing() -> None:
    """A resampler flushed empty would give a frame of silence; nothing went in, so none."""
    out = media.TwilioOutbound(SID, 16000)
    assert out.flush() == []
    out.process(voiced(16000, 0.1).tobytes())
    assert len(out.flush()) == 1  # the filter tail, padded
    assert out.flush() == [] and out.flush_frames() == []


def test_outbound_reset_drops_waiting_codes() -> None:
    out = media.TwilioOutbound(SID, 8000)
    assert out.process_codes(b"\x11" * 100, last=False) == []
    out.reset()
    assert payloads(out.process_codes(b"\x22" * 160, last=True)) == b"\x22" * 160


def test_outbound_switching_between_codes_and_pcm_keeps_the_order() -> None:
    out = media.TwilioOutbound(SID, 8000)
    pcm = voiced(8000, 0.1).tobytes()  # 800 samples: 5 frames
    assert out.process(pcm[:300]) == []  # 150 samples wait
    # Codes now: the waiting PCM goes first, padded to a frame.
    msgs = out.process_codes(b"\x12" * 160)
    assert payloads(msgs) == media.ulaw_encode(pcm[:300]) + b"\xff" * 10 + b"\x12" * 160
    # Codes waiting, then PCM: the codes go first.
    assert out.process_codes(b"\x34" * 100, last=False) == []
    msgs = out.process(pcm[300:])
    assert payloads(msgs[:1]) == b"\x34" * 100 + b"\xff" * 60
    pad = -(len(pcm[300:]) // 2) % 160
    assert payloads(msgs[1:] + out.flush()) == media.ulaw_encode(pcm[300:]) + b"\xff" * pad


def test_outbound_odd_length_raises() -> None:
    with pytest.raises(media.MediaError, match="odd length of 3 bytes"):
        media.TwilioOutbound(SID, 16000).process(b"abc")


def test_outbound_frames_refuse_bad_input_and_lose_nothing() -> None:
    out = media.TwilioOutbound(SID, 8000)
    assert out.process_codes_frames(b"\x11" * 100, last=False) == []
    with pytest.raises(media.MediaError, match="odd length of 3 bytes"):
        out.process_frames(b"abc")
    with pytest.raises(TypeError, match="codes must be a bytes-like object"):
        out.process_codes_frames("not codes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pcm must be a bytes-like object"):
        out.process(12)  # type: ignore[arg-type]
    # The codes waiting before the refused calls are still there.
    assert out.pending_ms == 12.5
    assert payloads(_unframe(out.process_codes_frames(b"\x22" * 60))) == (
        b"\x11" * 100 + b"\x22" * 60
    )


# --- fuzz: any input gives a result or FrameError, and the call goes on ---

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text()
)
_near_miss = st.fixed_dictionaries(
    {"event": st.sampled_from(["media", "start", "mark", "stop", "", "MEDIA"]) | st.text()},
    optional={
        "media": st.one_of(
            _json_scalars,
            st.fixed_dictionaries(
                {},
                optional={
                    "payload": st.one_of(
                        _json_scalars,
                        st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode()),
                    ),
                    "chunk": st.one_of(_json_scalars, st.integers(0, 2**64).map(str)),
                    "timestamp": _json_scalars,
                    "track": _json_scalars,
                },
            ),
        ),
        "streamSid": _json_scalars,
    },
).map(json.dumps)


def _assert_survives(inb: media.TwilioInbound, message: str | bytes) -> None:
    try:
        event, pcm, speech = inb.process(message)
    except media.FrameError:
        pass
    else:
        assert event in {"connected", "start", "media", "dtmf", "mark", "stop", "clear", "other"}
        assert isinstance(pcm, bytes) and len(pcm) % 640 == 0
        assert speech is None or isinstance(speech, bool)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.one_of(_near_miss, st.text(max_size=300), st.binary(max_size=300)), max_size=8))
def test_fuzzed_messages_only_ever_raise_frame_error(messages: list[str | bytes]) -> None:
    inb = media.TwilioInbound()
    for m in messages:
        _assert_survives(inb, m)
    # A fresh, well-formed stream is still served after whatever came before.
    inb.reset()
    assert len(inb.process(MSGS[0])[1]) == 640
