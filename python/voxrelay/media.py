"""The media engine's public API.

Everything here is implemented in Rust (`voxrelay._media`) and re-exported by name, so the
compiled module stays private and this list is the contract. PCM is 16-bit signed
little-endian mono unless a docstring says otherwise; inputs accept any bytes-like object.
"""

from voxrelay._media import (
    FrameError,
    MediaError,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

# --- resample ---
from voxrelay._media import Resampler

# --- vad ---
from voxrelay._media import Vad

# --- jitter ---
from voxrelay._media import Concealer, JitterBuffer

# --- hotpath ---
from voxrelay._media import TwilioInbound, TwilioOutbound

__all__ = [
    "FrameError",
    "MediaError",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
    # --- resample ---
    "Resampler",
    # --- vad ---
    "Vad",
    # --- jitter ---
    "Concealer",
    "JitterBuffer",
    # --- hotpath ---
    "TwilioInbound",
    "TwilioOutbound",
]
