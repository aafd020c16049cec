"""The media engine's public API.

Everything here is implemented in Rust (`voxrelay._media`) and re-exported by name, so the
compiled module stays private and this list is the contract. PCM is 16-bit signed
little-endian mono unless a docstring says otherwise; inputs accept any bytes-like object.
"""

from voxrelay._media import (
    Concealer,
    FrameError,
    JitterBuffer,
    MediaError,
    Resampler,
    TurnDetector,
    TwilioInbound,
    TwilioOutbound,
    Vad,
    WsReader,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

__all__ = [
    "Concealer",
    "FrameError",
    "JitterBuffer",
    "MediaError",
    "Resampler",
    "TurnDetector",
    "TwilioInbound",
    "TwilioOutbound",
    "Vad",
    "WsReader",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]
