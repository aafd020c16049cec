"""G.711 against expectations derived from the G.711 definition (not from a reference file)."""

from __future__ import annotations

import array
import os
from pathlib import Path

import numpy as np
import pytest
from voxrelay import media

ALL = np.arange(-32768, 32768, dtype=np.int16)


def ulaw_by_definition(x: np.ndarray) -> np.ndarray:
    """G.711 mu-law: 14-bit magnitude (one's complement for negatives, as G.191), bias 33,
    segment = leading one of the biased magnitude, 4 step bits, all bits inverted, sign set for
    x >= 0."""
    x = x.astype(np.int32)
    neg = x < 0
    mag = np.where(neg, (~x) >> 2, x >> 2)
    biased = np.minimum(mag + 33, 8191)
    seg = np.floor(np.log2(biased)).astype(np.int32) - 5
    seg = np.clip(seg, 0, 7)
    step = (biased >> (seg + 1)) & 0xF
    code = ((seg << 4) | step) ^ 0x7F
    return np.where(neg, code, code | 0x80).astype(np.uint8)


def alaw_by_definition(x: np.ndarray) -> np.ndarray:
    """G.711 A-law: 12-bit magnitude (one's complement for negatives), segment 0 and 1 share a
    step of 1, segment s >= 1 holds magnitudes [16 << (s-1), 32 << (s-1)), even bits inverted."""
    x = x.astype(np.int32)
    neg = x < 0
    mag = np.where(neg, (~x) >> 4, x >> 4)  # 0..2047
    seg = np.where(mag < 16, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 3)
    step = np.where(seg == 0, mag, (mag >> np.maximum(seg - 1, 0)) - 16)
    code = (seg << 4) | step
    code = np.where(neg, code, code | 0x80)
    return (code ^ 0x55).astype(np.uint8)


def ulaw_decode_by_definition(codes: np.ndarray) -> np.ndarray:
    c = (~codes.astype(np.int32)) & 0xFF
    seg = (c >> 4) & 7
    step = c & 0xF
    mag = (((step << 3) + 0x84) << seg) - 0x84
    return np.where(c & 0x80, -mag, mag).astype(np.int16)


def alaw_decode_by_definition(codes: np.ndarray) -> np.ndarray:
    c = codes.astype(np.int32) ^ 0x55
    seg = (c >> 4) & 7
    step = c & 0xF
    mag = np.where(seg == 0, (step << 4) + 8, ((step << 4) + 0x108) << np.maximum(seg - 1, 0))
    return np.where(c & 0x80, mag, -mag).astype(np.int16)


CODES = np.arange(256, dtype=np.uint8)


def test_ulaw_encode_all_65536_inputs() -> None:
    got = np.frombuffer(media.ulaw_encode(ALL.tobytes()), np.uint8)
    np.testing.assert_array_equal(got, ulaw_by_definition(ALL))


def test_alaw_encode_all_65536_inputs() -> None:
    got = np.frombuffer(media.alaw_encode(ALL.tobytes()), np.uint8)
    np.testing.assert_array_equal(got, alaw_by_definition(ALL))


def test_decode_all_256_codes() -> None:
    np.testing.assert_array_equal(
        np.frombuffer(media.ulaw_decode(CODES.tobytes()), np.int16),
        ulaw_decode_by_definition(CODES),
    )
    np.testing.assert_array_equal(
        np.frombuffer(media.alaw_decode(CODES.tobytes()), np.int16),
        alaw_decode_by_definition(CODES),
    )


@pytest.mark.parametrize(
    "make",
    [
        bytes,
        bytearray,
        memoryview,
        lambda b: np.frombuffer(b, np.int16),
        lambda b: array.array("h", b),
    ],
)
def test_accepts_any_bytes_like(make: object) -> None:
    pcm = np.array([0, 1000, -1000, 32767, -32768], np.int16).tobytes()
    want = media.ulaw_encode(pcm)
    assert media.ulaw_encode(make(pcm)) == want  # type: ignore[operator]
    codes = media.alaw_encode(pcm) + b"\x00"  # six codes: any bytes-like of even length
    assert media.alaw_decode(make(codes)) == media.alaw_decode(codes)  # type: ignore[operator]


def test_empty_input_gives_empty_output() -> None:
    for f in (media.ulaw_encode, media.alaw_encode, media.ulaw_decode, media.alaw_decode):
        assert f(b"") == b""


@pytest.mark.parametrize("fn", [media.ulaw_encode, media.alaw_encode])
def test_odd_length_pcm_raises_value_error_naming_length(fn: object) -> None:
    with pytest.raises(ValueError, match="odd length of 321 bytes"):
        fn(b"\x00" * 321)  # type: ignore[operator]
    with pytest.raises(media.MediaError):
        fn(b"\x00")  # type: ignore[operator]


def test_non_buffer_raises_type_error() -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        media.ulaw_decode("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes-like"):
        media.ulaw_encode([1, 2])  # type: ignore[arg-type]


def test_large_input_released_gil_path_matches_small() -> None:
    rng = np.random.default_rng(3)
    pcm = rng.integers(-32768, 32768, 200_000, dtype=np.int16)
    big = media.ulaw_encode(pcm.tobytes())
    small = b"".join(media.ulaw_encode(pcm[i : i + 160].tobytes()) for i in range(0, len(pcm), 160))
    assert big == small


def test_itu_g191_sweep() -> None:
    """The ITU-T G.191 conformance files, read from ../shared (never copied into the repo)."""
    d = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "g711"
    if not d.exists():
        assert not os.environ.get("CI"), f"CI run without {d}"
        pytest.skip(f"{d} not present outside CI")
    src = np.fromfile(d / "sweep.src", "<i2")
    for enc, dec, rt, e_name, d_name, r_name in [
        (media.ulaw_encode, media.ulaw_decode, None, "sweep-r.u", "sweep-r.u-u", "sweep-r.reu"),
        (media.alaw_encode, media.alaw_decode, None, "sweep-r.a", "sweep-r.a-a", "sweep-r.rea"),
    ]:
        del rt
        codes = np.frombuffer(enc(src.tobytes()), np.uint8)
        np.testing.assert_array_equal(codes, np.fromfile(d / e_name, "<i2").astype(np.uint8))
        ref_codes = np.fromfile(d / e_name, "<i2").astype(np.uint8)
        np.testing.assert_array_equal(
            np.frombuffer(dec(ref_codes.tobytes()), np.int16), np.fromfile(d / d_name, "<i2")
        )
        np.testing.assert_array_equal(
            np.frombuffer(dec(codes.tobytes()), np.int16), np.fromfile(d / r_name, "<i2")
        )
