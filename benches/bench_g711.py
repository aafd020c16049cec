"""G.711 encode/decode: voxrelay vs CPython's audioop (audioop-lts on 3.13+) vs a numpy LUT.

`extra_info["exact"]` records whether each implementation matches the G.711 definition on
all 65,536 inputs (see tests/test_g711.py), orjson-style: speed next to correctness.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from voxrelay import media

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL = np.arange(-32768, 32768, dtype=np.int16).tobytes()
REF_ULAW = media.ulaw_encode(ALL)  # exact per tests/test_g711.py
REF_ALAW = media.alaw_encode(ALL)

LUT_ULAW = np.frombuffer(REF_ULAW, np.uint8)  # indexed by sample + 32768
LUT_ALAW = np.frombuffer(REF_ALAW, np.uint8)
DEC_ULAW = np.frombuffer(media.ulaw_decode(bytes(range(256))), np.int16)


def numpy_ulaw_encode(pcm: bytes) -> bytes:
    return LUT_ULAW[np.frombuffer(pcm, np.int16).astype(np.int32) + 32768].tobytes()


def numpy_alaw_encode(pcm: bytes) -> bytes:
    return LUT_ALAW[np.frombuffer(pcm, np.int16).astype(np.int32) + 32768].tobytes()


def numpy_ulaw_decode(codes: bytes) -> bytes:
    return DEC_ULAW[np.frombuffer(codes, np.uint8)].tobytes()


ENCODERS: dict[str, dict[str, Callable[[bytes], bytes]]] = {
    "ulaw": {
        "voxrelay": media.ulaw_encode,
        "audioop": lambda b: audioop.lin2ulaw(b, 2),
        "numpy-lut": numpy_ulaw_encode,
    },
    "alaw": {
        "voxrelay": media.alaw_encode,
        "audioop": lambda b: audioop.lin2alaw(b, 2),
        "numpy-lut": numpy_alaw_encode,
    },
}
DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "voxrelay": media.ulaw_decode,
    "audioop": lambda b: audioop.ulaw2lin(b, 2),
    "numpy-lut": numpy_ulaw_decode,
}

rng = np.random.default_rng(1)
FRAME = rng.integers(-8000, 8000, 160, dtype=np.int16).tobytes()  # 20 ms at 8 kHz
BULK = rng.integers(-8000, 8000, 8000 * 10, dtype=np.int16).tobytes()  # 10 s


@pytest.mark.parametrize("impl", ["voxrelay", "audioop", "numpy-lut"])
@pytest.mark.parametrize("law", ["ulaw", "alaw"])
@pytest.mark.parametrize("size", ["frame", "10s"])
def test_encode(benchmark, law: str, impl: str, size: str) -> None:  # type: ignore[no-untyped-def]
    fn = ENCODERS[law][impl]
    ref = REF_ULAW if law == "ulaw" else REF_ALAW
    mismatches = int(
        np.count_nonzero(np.frombuffer(fn(ALL), np.uint8) != np.frombuffer(ref, np.uint8))
    )
    benchmark.group = f"g711 {law} encode {size}"
    benchmark.extra_info["mismatches_of_65536"] = mismatches
    benchmark.extra_info["exact"] = mismatches == 0
    benchmark(fn, FRAME if size == "frame" else BULK)


@pytest.mark.parametrize("impl", ["voxrelay", "audioop", "numpy-lut"])
@pytest.mark.parametrize("size", ["frame", "10s"])
def test_ulaw_decode(benchmark, impl: str, size: str) -> None:  # type: ignore[no-untyped-def]
    fn = DECODERS[impl]
    codes = media.ulaw_encode(FRAME if size == "frame" else BULK)
    benchmark.group = f"g711 ulaw decode {size}"
    benchmark.extra_info["exact"] = fn(bytes(range(256))) == media.ulaw_decode(bytes(range(256)))
    benchmark(fn, codes)
