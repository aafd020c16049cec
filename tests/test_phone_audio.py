"""TTS audio converted to the phone's mu-law 8 kHz where it is synthesised (`phone_audio`)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from voxrelay import media
from voxrelay.conversation.phone_audio import PhoneEncoder, check_output


def tone(rate: int, seconds: float, hz: float = 1000.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16).tobytes()


def payloads(messages: list[str]) -> bytes:
    return b"".join(base64.b64decode(json.loads(m)["media"]["payload"]) for m in messages)


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize("quality", [None, "voice"])
def test_codes_are_what_the_outbound_path_would_have_sent(rate: int, quality: str | None) -> None:
    """Same resampler, same encoder: moving the conversion off the loop changes no sample.
    (The outbound path then pads the last frame with mu-law silence.) Both default to the
    phone quality."""
    pcm = tone(rate, 0.73)
    enc = PhoneEncoder(rate) if quality is None else PhoneEncoder(rate, quality)
    codes = b"".join(enc.encode(pcm[i : i + 3000]) for i in range(0, len(pcm), 3000))
    codes += enc.finish()
    if quality is None:
        out = media.TwilioOutbound("MZ1", rate)
    else:
        out = media.TwilioOutbound("MZ1", rate, quality=quality)
    sent = payloads(out.process(pcm) + out.flush())
    assert len(codes) > 0.73 * 8000
    assert sent[: len(codes)] == codes
    assert set(sent[len(codes) :]) <= {0xFF} and len(sent) - len(codes) < 160
    assert enc.latency_ms == out.latency_ms > 0


def test_finish_readies_the_encoder_for_a_new_stream() -> None:
    pcm = tone(22050, 0.2)
    enc = PhoneEncoder(22050)
    first = enc.encode(pcm) + enc.finish()
    assert enc.encode(pcm) + enc.finish() == first


def test_phone_rate_audio_is_only_encoded() -> None:
    pcm = tone(8000, 0.1)
    enc = PhoneEncoder(8000)
    assert enc.encode(pcm) == media.ulaw_encode(pcm)
    assert enc.finish() == b"" and enc.latency_ms == 0.0


def test_output_names_are_checked() -> None:
    assert check_output("native") == "native" and check_output("ulaw8k") == "ulaw8k"
    with pytest.raises(ValueError, match="output 'pcm8k' is not supported; valid: 'native' or"):
        check_output("pcm8k")
