"""Helpers shared by the tests (and benches) that place real calls: bounded runs, spoken audio,
and the phone leg it crosses."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
from voxrelay import media
from voxrelay.protocols.twilio import media_message
from voxrelay.simulator import read_wav

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    """`asyncio.run` with a bound, so a hung call fails the test instead of the CI job."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def speak(text: str) -> bytes:
    """PCM16 8 kHz of `text` spoken by espeak-ng, converted by the media engine.

    Only the tests that need speech skip without the espeak-ng program (a Debian package, not
    a Python one), and never in CI, which installs it."""
    if shutil.which("espeak-ng") is None:
        assert "CI" not in os.environ, "CI needs espeak-ng (.ci/run installs it)"
        pytest.skip("needs the espeak-ng program")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True)
        return read_wav(path)


def silence(seconds: float, rate: int = 8000) -> bytes:
    return b"\0\0" * int(rate * seconds)


def phone_leg(pcm_22k: bytes, rate: int = 16000) -> bytes:
    """Piper's 22.05 kHz -> 8 kHz mu-law -> `rate`, like a call's inbound leg (at the phone
    quality, as `TwilioOutbound` and `TwilioInbound` resample)."""
    down = media.Resampler(22050, 8000, quality="phone")
    law = media.ulaw_encode(down.process(pcm_22k) + down.flush())
    up = media.Resampler(8000, rate, quality="phone")
    pcm = media.ulaw_decode(law)
    return up.process(pcm) + up.flush()


def media_frames(pcm8: bytes, sid: str, first_seq: int = 2) -> list[str]:
    """PCM16 8 kHz as the Twilio `media` messages of stream `sid`, 20 ms each (the last padded
    with mu-law silence), numbered from `first_seq` as after `connected` and `start`."""
    codes = media.ulaw_encode(pcm8)
    codes += b"\xff" * (-len(codes) % 160)
    return [
        media_message(
            sid,
            first_seq + i,
            i + 1,
            i * 20,
            base64.b64encode(codes[i * 160 : (i + 1) * 160]).decode(),
        )
        for i in range(len(codes) // 160)
    ]
