"""Arguments and input at the edge of what the media engine takes: each is either handled or
refused with a ValueError naming the value and the valid range, never an abort, a panic, an
OverflowError or lost audio."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from voxrelay import media

RATES = "8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000"


def media_json(codes: bytes, sid: str = "MZ1") -> str:
    payload = base64.b64encode(codes).decode()
    return (
        '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1",'
        f'"timestamp":"0","payload":"{payload}"}},"streamSid":"{sid}"}}'
    )


# -- TurnDetector: every timing bounded before a buffer is sized from it -----------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"start_ms": 2**31}, "start_ms must be 1..=60000, got 2147483648"),
        ({"start_ms": 2**32 - 1}, "start_ms must be 1..=60000, got 4294967295"),
        ({"end_ms": 60_001}, "end_ms must be 1..=60000, got 60001"),
        ({"barge_in_ms": 2**31}, "barge_in_ms must be 1..=60000, got 2147483648"),
        ({"max_utterance_ms": 600_001}, "max_utterance_ms must be 1..=600000, got 600001"),
        ({"rate": 2**31}, f"rate must be one of {RATES} Hz, got 2147483648"),
        ({"rate": 12345}, f"rate must be one of {RATES} Hz, got 12345"),
    ],
)
def test_turn_detector_refuses_huge_timings_naming_the_range(
    bad: dict[str, int], message: str
) -> None:
    """`start_ms=2**31` used to size a 64 GB pre-roll: the interpreter aborted."""
    with pytest.raises(ValueError) as e:
        media.TurnDetector(**bad)
    assert str(e.value) == message


def test_turn_detector_configure_is_bounded_too() -> None:
    det = media.TurnDetector()
    with pytest.raises(ValueError, match=r"^end_ms must be 1\.\.=60000, got 60001$"):
        det.configure(end_ms=60_001)
    assert det.end_ms == 500


def test_turn_detector_at_its_largest_settings_detects_a_turn() -> None:
    det = media.TurnDetector(
        rate=48000, start_ms=60_000, end_ms=60_000, preroll_ms=2000, max_utterance_ms=600_000
    )
    frame = np.full(960, 1000, np.int16).tobytes()  # 20 ms at 48 kHz
    flags = 0
    for _ in range(3000):
        flags |= det.feed(frame, True)
    assert flags & 1  # STARTED after a minute of speech
    assert len(det.audio_so_far()) == 3000 * len(frame)


# -- WsReader: declared lengths past what any buffer holds -----------------------------------


@pytest.mark.parametrize("length", [2**64 - 1, 2**64 - 10, 2**64 - 14])
def test_ws_reader_hands_over_a_frame_longer_than_memory(length: int) -> None:
    """With a limit near 2**64 the header arithmetic overflowed (a PanicException)."""
    r = media.WsReader(2**64 - 1)
    frame = bytes([0x82, 0xFF]) + length.to_bytes(8, "big") + b"\0" * 4
    r.feed(frame)
    assert r.next() == (-1, frame, False)
    assert r.stopped


def test_ws_reader_limit_past_2_64_is_no_limit() -> None:
    r = media.WsReader(2**70)
    r.feed(bytes([0x82, 0x82, 0, 0, 0, 0]) + b"hi")
    assert r.next() == (2, b"hi", True)


# -- TwilioOutbound: any stream id -----------------------------------------------------------


@pytest.mark.parametrize("sid", ["MZé", "MZ😀x", 'MZ"\\\n\x7f', "名前"])
def test_non_ascii_stream_sid_comes_back_from_json(sid: str) -> None:
    """A non-ASCII id went out as raw UTF-8, which the ASCII codec refused on every call: every
    message of the call was lost."""
    pcm = np.full(320, 500, np.int16).tobytes()
    out = media.TwilioOutbound(sid, 16000)
    msgs = out.process(pcm) + out.flush()
    assert msgs
    for m in msgs:
        assert m.isascii()
        assert json.loads(m)["streamSid"] == sid
    out = media.TwilioOutbound(sid, 8000)
    (frame,) = out.process_frames(pcm[:320])  # one 20 ms frame at 8 kHz
    assert frame[:2] == b"\x81\x7e"  # a text frame of 126..65535 bytes
    assert int.from_bytes(frame[2:4], "big") == len(frame) - 4
    assert json.loads(frame[4:])["streamSid"] == sid


# -- TwilioInbound: the jitter ring follows the reorder window ----------------------------------


@pytest.mark.parametrize(("frame_ms", "window"), [(10, 20), (10, 50), (20, 50), (30, 50)])
def test_inbound_takes_any_reorder_window_at_any_frame_length(frame_ms: int, window: int) -> None:
    """`frame_ms=10, reorder_window=20` was refused naming `max_packets`, not a parameter of
    TwilioInbound."""
    inbound = media.TwilioInbound(frame_ms=frame_ms, reorder_window=window, out_rate=8000)
    event, pcm, _ = inbound.process(media_json(b"\xff" * (8 * frame_ms)))
    assert event == "media" and len(pcm) == 16 * frame_ms


@pytest.mark.parametrize("window", [0, 51, -1, 2**40])
def test_inbound_refuses_a_reorder_window_naming_it(window: int) -> None:
    with pytest.raises(ValueError, match=rf"^reorder_window = {window} .*1\.\.=50"):
        media.TwilioInbound(frame_ms=10, reorder_window=window)


# -- writable buffers read with the GIL released ---------------------------------------------


def big_pcm() -> bytes:
    """Over 32 KB (the size from which the work runs with the GIL released)."""
    t = np.arange(48_000)
    return bytes((np.sin(t * 0.05) * 9000 + (t * 7919 % 2000) - 1000).astype(np.int16))


def writable_forms(data: bytes) -> list[Any]:
    """`data` in buffers other than `bytes`, most of them writable (Any: numpy's stubs do not
    declare Buffer)."""
    return [
        bytearray(data),
        memoryview(bytearray(data)),
        memoryview(bytearray(data)).toreadonly(),
        np.frombuffer(bytearray(data), np.uint8),
        memoryview(data),
    ]


def test_large_writable_buffers_are_copied_with_the_same_results() -> None:
    """Buffers other than `bytes` are copied before the GIL is released (another thread could
    write them while Rust reads). The race itself cannot be tested here; this checks that the
    copying path (inputs over 32 KB in every writable form) gives the bytes' results."""
    pcm = big_pcm()
    floats = (np.frombuffer(pcm, np.int16) / 32768).astype(np.float32).tobytes()
    codes = media.ulaw_encode(pcm)
    assert len(codes) >= 32 * 1024
    want = {
        "resample": media.Resampler(8000, 16000).process(pcm),
        "float": media.Resampler(16000, 8000).process_float(floats),
        "vad": media.Vad(8000).process(pcm),
        "ulaw": codes,
        "alaw": media.alaw_encode(pcm),
        "ulaw_decode": media.ulaw_decode(codes),
        "alaw_decode": media.alaw_decode(codes),
    }
    for x in writable_forms(pcm):
        assert media.Resampler(8000, 16000).process(x) == want["resample"]
        assert media.Vad(8000).process(x) == want["vad"]
        assert media.ulaw_encode(x) == want["ulaw"]
        assert media.alaw_encode(x) == want["alaw"]
    for x in writable_forms(floats):
        assert media.Resampler(16000, 8000).process_float(x) == want["float"]
    for x in writable_forms(codes):
        assert media.ulaw_decode(x) == want["ulaw_decode"]
        assert media.alaw_decode(x) == want["alaw_decode"]


# -- the JSON walker follows the grammar -----------------------------------------------------


MALFORMED_FIELDS = [
    '"x":+',
    '"x":.',
    '"x":-',
    '"x":1.2.3',
    '"x":01',
    '"x":1.',
    '"x":1e',
    '"x":.5',
    '"x":"\\q"',
    '"x":"\\u+02F"',
    '"x":"\\u00G0"',
    '"x":"\\u12"',
    '"\\q":1',
]


@pytest.mark.parametrize("field", MALFORMED_FIELDS)
def test_malformed_json_is_refused(field: str) -> None:
    inbound = media.TwilioInbound(out_rate=8000)
    msg = media_json(b"\xff" * 160)
    bad = msg[:-1] + "," + field + "}"
    with pytest.raises(media.FrameError, match="malformed JSON"):
        inbound.process(bad)
    # The same field, well-formed, is skipped: the message goes through.
    good = msg[:-1] + ',"x":-0.5e+3,"y":"\\u00e9\\n\\/"}'
    assert inbound.process(good)[0] == "media"


def test_well_formed_twilio_messages_still_parse() -> None:
    """Every layout gives what Twilio's own compact one gives (a fresh detector each time)."""
    codes = bytes(range(160))
    compact = media_json(codes)
    _, want, _ = media.TwilioInbound(out_rate=8000).process(compact)
    assert len(want) == 320 and len(set(want)) > 100
    spaced = json.dumps(json.loads(compact), indent=1)
    numbers = compact.replace('"chunk":"1"', '"chunk":1').replace('"timestamp":"0"', '"x":0.0')
    escaped = compact.replace('"track":"inbound"', '"track":"in\\u0062ound\\/"')
    for i, msg in enumerate([spaced, numbers, escaped]):
        event, pcm, _ = media.TwilioInbound(out_rate=8000).process(msg)
        assert (event, pcm) == ("media", want), i


# -- integers out of the engine's types: ValueError, not OverflowError ------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: media.TwilioInbound(out_rate=-1),
            f"sample rate -1 Hz; supported rates are {RATES}",
        ),
        (lambda: media.TwilioInbound(out_rate=2**33), "sample rate 8589934592 Hz"),
        (
            lambda: media.TwilioInbound(frame_ms=-20),
            "frame_ms = -20 is not supported; valid: 10, 20",
        ),
        (lambda: media.TwilioInbound(frame_ms=2**40), f"frame_ms = {2**40} is not supported"),
        (
            lambda: media.TwilioInbound(max_message_bytes=-1),
            "max_message_bytes = -1 is not supported; valid: >= 256",
        ),
        (lambda: media.TwilioOutbound("MZ1", -8000), "sample rate -8000 Hz; supported rates"),
        (lambda: media.TwilioOutbound("MZ1", 2**64), f"sample rate {2**64} Hz"),
        (
            lambda: media.TwilioOutbound("MZ1", 8000, frame_ms=-1),
            "frame_ms = -1 is not supported; valid: 10, 20, 30, 40, 60 or 100",
        ),
        (lambda: media.WsReader(-1), "max_message_bytes = -1 is not supported; valid: >= 0"),
        (lambda: media.Resampler(2**63, 8000), f"sample rate {2**63} Hz; supported rates are"),
        (lambda: media.Resampler(8000, -(2**64)), f"sample rate {-(2**64)} Hz"),
        (lambda: media.Vad(2**63), f"sample rate {2**63} Hz; valid rates are 8000"),
        (lambda: media.Vad(8000, frame_ms=2**63), f"frame duration {2**63} ms; valid durations"),
    ],
)
def test_integers_out_of_range_raise_value_error_naming_them(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
