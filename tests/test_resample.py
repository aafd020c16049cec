"""Streaming resampler: tones, rejection, latency, chunking and argument errors, via Python."""

from __future__ import annotations

import array
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from voxrelay import media

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]
HOT = [(8000, 16000), (16000, 8000), (24000, 8000), (8000, 24000), (48000, 16000), (44100, 16000)]


def tone(f: float, rate: int, n: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(n) / rate
    return np.round(amp * 32767 * np.sin(2 * np.pi * f * t)).astype(np.int16)


def stream(r: media.Resampler, x: np.ndarray, chunk: int) -> np.ndarray:
    out = [r.process(x[i : i + chunk].tobytes()) for i in range(0, len(x), chunk)]
    return np.frombuffer(b"".join(out), np.int16).astype(np.float64) / 32768


def fit(y: np.ndarray, rate: int, freqs: list[float]) -> tuple[np.ndarray, float]:
    """Amplitudes of sinusoids at `freqs` (least squares, steady part) and the residual RMS."""
    y = y[len(y) // 4 : -len(y) // 8]
    t = np.arange(len(y)) / rate
    cols = [g(2 * np.pi * f * t) for f in freqs for g in (np.sin, np.cos)]
    m = np.stack([*cols, np.ones_like(t)], 1)
    c, *_ = np.linalg.lstsq(m, y, rcond=None)
    amps = np.hypot(c[0:-1:2], c[1:-1:2])
    return amps, float(np.sqrt(np.mean((y - m @ c) ** 2)))


def db(x: float) -> float:
    return float(20 * np.log10(max(x, 1e-30)))


@pytest.mark.parametrize(("a", "b"), HOT)
def test_tone_passes_at_level_with_high_snr(a: int, b: int) -> None:
    ny = min(a, b) / 2
    for f in (1000.0, 0.85 * ny):
        y = stream(media.Resampler(a, b), tone(f, a, a), a // 50)
        (amp,), res = fit(y, b, [f])
        assert abs(db(amp / 0.5)) < 0.08, (f, db(amp / 0.5))
        assert db(res / (amp / np.sqrt(2))) < -85, (f, db(res / amp))


@pytest.mark.parametrize(("a", "b"), [p for p in HOT if p[1] < p[0]])
def test_aliases_are_rejected(a: int, b: int) -> None:
    ny = b / 2
    for f in np.linspace(1.05 * ny, 0.97 * a / 2, 5):
        y = stream(media.Resampler(a, b), tone(f, a, a // 2), a // 50)
        y = y[len(y) // 4 : -len(y) // 8]
        level = db(np.sqrt(np.mean(y**2)) / (0.5 / np.sqrt(2)))
        assert level < -85, (f, level)


@pytest.mark.parametrize(("a", "b"), [p for p in HOT if p[1] > p[0]])
def test_images_are_rejected(a: int, b: int) -> None:
    ny = a / 2
    for f in np.linspace(0.1 * ny, 0.9 * ny, 4):
        y = stream(media.Resampler(a, b), tone(f, a, a // 2), a // 50)
        amps, _ = fit(y, b, [f, a - f])
        assert db(amps[1] / amps[0]) < -85, (f, db(amps[1] / amps[0]))


PHONE = [16000, 22050, 24000, 44100, 48000]  # TTS rates, to the 8 kHz phone leg


@pytest.mark.parametrize("a", PHONE)
def test_phone_quality_is_flat_to_3400_hz_and_80_db_down_from_4600(a: int) -> None:
    for f in (300.0, 1000.0, 3400.0):
        y = stream(media.Resampler(a, 8000, quality="phone"), tone(f, a, a), a // 50)
        (amp,), res = fit(y, 8000, [f])
        assert abs(db(amp / 0.5)) < 0.08, (f, db(amp / 0.5))
        assert db(res / (amp / np.sqrt(2))) < -80, (f, db(res / amp))
    # Densely near the edge, where the stopband's first peaks are, then across the band.
    edge = np.linspace(4600, 4800, 21)
    for f in [*edge, *np.linspace(4800, 0.97 * a / 2, 8)]:
        y = stream(media.Resampler(a, 8000, quality="phone"), tone(f, a, a // 2), a // 50)
        y = y[len(y) // 4 : -len(y) // 8]
        level = db(np.sqrt(np.mean(y**2)) / (0.5 / np.sqrt(2)))
        assert level < -80, (f, level)


@pytest.mark.parametrize("a", PHONE)
def test_phone_quality_is_sooner_than_voice(a: int) -> None:
    phone = media.Resampler(a, 8000, quality="phone")
    assert phone.quality == "phone"
    assert phone.latency_ms < media.Resampler(a, 8000).latency_ms - 0.7


@pytest.mark.parametrize(("a", "b"), HOT)
def test_latency_is_the_impulse_delay_and_nothing_is_withheld(a: int, b: int) -> None:
    r = media.Resampler(a, b)
    x = np.zeros(a // 5, np.int16)
    p = a // 10 + 3
    x[p] = 20000
    n = a // 50
    outs = [r.process(x[i : i + n].tobytes()) for i in range(0, len(x), n)]
    # Every 20 ms chunk yields 20 ms (+-1 sample): output as soon as its input is in.
    assert all(abs(len(o) // 2 - b // 50) <= 1 for o in outs)
    y = np.frombuffer(b"".join(outs), np.int16)
    measured = (np.argmax(np.abs(y)) / b - p / a) * 1000
    assert abs(measured - r.latency_ms) <= 1000 / b
    assert 0 < r.latency_ms <= 6


def test_properties_and_repr() -> None:
    r = media.Resampler(8000, 16000, quality="high")
    assert (r.in_rate, r.out_rate, r.quality) == (8000, 16000, "high")
    assert media.Resampler(16000, 8000).quality == "voice"
    assert repr(r) == "Resampler(8000, 16000, quality='high')"
    assert r.latency_ms > media.Resampler(8000, 16000).latency_ms
    with pytest.raises(AttributeError):
        r.latency_ms = 1.0  # type: ignore[misc]


def test_same_rate_is_a_copy() -> None:
    x = tone(440, 16000, 1000).tobytes()
    r = media.Resampler(16000, 16000)
    assert r.process(x) == x
    assert r.latency_ms == 0
    assert r.flush() == b""


def test_numpy_and_other_buffers_accepted() -> None:
    x = tone(700, 8000, 480)
    ref = media.Resampler(8000, 16000).process(x.tobytes())
    assert media.Resampler(8000, 16000).process(x) == ref
    assert media.Resampler(8000, 16000).process(memoryview(x.tobytes())) == ref
    assert media.Resampler(8000, 16000).process(bytearray(x.tobytes())) == ref
    assert media.Resampler(8000, 16000).process(array.array("h", x.tolist())) == ref
    # A misaligned view (odd start inside a larger buffer) gives the same result.
    raw = bytearray(b"\x00" + x.tobytes())
    assert media.Resampler(8000, 16000).process(memoryview(raw)[1:]) == ref


def test_flush_returns_the_tail_then_resets() -> None:
    r = media.Resampler(16000, 8000)
    x = np.zeros(320, np.int16)
    x[-1] = 20000
    head = np.frombuffer(r.process(x), np.int16)
    tail = np.frombuffer(r.flush(), np.int16)
    assert np.sum(tail.astype(np.float64) ** 2) > 100 * np.sum(head.astype(np.float64) ** 2)
    total_ms = (len(head) + len(tail)) / 8
    assert abs(total_ms - (20 + r.latency_ms)) <= 0.5
    # Fresh after a flush.
    assert r.process(x) == media.Resampler(16000, 8000).process(x)


def test_reset_equals_fresh() -> None:
    x = tone(300, 24000, 2400)
    r = media.Resampler(24000, 8000)
    r.process(x[:1000])
    r.reset()
    assert r.process(x) == media.Resampler(24000, 8000).process(x)


@settings(max_examples=40, deadline=None)
@given(
    pair=st.tuples(st.sampled_from(RATES), st.sampled_from(RATES)),
    quality=st.sampled_from(["voice", "high", "phone"]),
    data=st.binary(min_size=0, max_size=4000).map(lambda b: b[: len(b) // 2 * 2]),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_chunking_never_changes_the_output(
    pair: tuple[int, int], quality: str, data: bytes, cuts: list[int]
) -> None:
    a, b = pair
    whole = media.Resampler(a, b, quality=quality)
    ref = whole.process(data) + whole.flush()
    r = media.Resampler(a, b, quality=quality)
    bounds = sorted({min(2 * c, len(data)) for c in cuts} | {0, len(data)})
    got = b"".join(r.process(data[i:j]) for i, j in itertools.pairwise(bounds))
    assert got + r.flush() == ref


@settings(max_examples=20, deadline=None)
@given(
    x=st.lists(st.floats(-1, 1, width=32), max_size=1500),
    cuts=st.lists(st.integers(0, 1500), max_size=6),
)
def test_float_chunking_and_shared_state(x: list[float], cuts: list[int]) -> None:
    data = np.asarray(x, np.float32)
    ref_r = media.Resampler(8000, 16000, quality="high")
    ref = ref_r.process_float(data) + ref_r.flush_float()
    r = media.Resampler(8000, 16000, quality="high")
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    got = b"".join(r.process_float(data[i:j]) for i, j in itertools.pairwise(bounds))
    assert got + r.flush_float() == ref


def test_high_quality_float_rejection() -> None:
    a, b = 16000, 8000
    for f in (4200.0, 6000.0, 7700.0):
        t = np.arange(a // 2) / a
        x = (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)
        y = np.frombuffer(media.Resampler(a, b, quality="high").process_float(x), np.float32)
        y = y[len(y) // 4 : -len(y) // 8].astype(np.float64)
        assert db(np.sqrt(np.mean(y**2)) / (0.5 / np.sqrt(2))) < -120


@pytest.mark.parametrize("bad", [0, 12345, 96000, -8000, 2**40])
def test_bad_rate_names_value_and_valid_set(bad: int) -> None:
    for args in ((bad, 8000), (8000, bad)):
        with pytest.raises(ValueError, match=rf"{bad} Hz.*8000, 11025, 16000, 22050, 24000"):
            media.Resampler(*args)
    with pytest.raises(media.MediaError):
        media.Resampler(bad, 8000)


def test_bad_quality_names_value_and_valid_set() -> None:
    with pytest.raises(ValueError, match=r"'best'.*'voice', 'high', 'phone'"):
        media.Resampler(8000, 16000, quality="best")
    with pytest.raises(TypeError):
        media.Resampler(8000, 16000, "voice")  # type: ignore[misc]


def test_odd_lengths_raise_media_error_naming_the_length() -> None:
    r = media.Resampler(8000, 16000)
    with pytest.raises(media.MediaError, match=r"length of 321 bytes.*multiple of 2"):
        r.process(b"\x00" * 321)
    with pytest.raises(media.MediaError, match=r"length of 6 bytes.*multiple of 4"):
        r.process_float(b"\x00" * 6)
    with pytest.raises(TypeError, match="pcm must be a bytes-like object"):
        r.process("abcd")  # type: ignore[arg-type]
    # The failed calls left the state alone.
    x = tone(500, 8000, 160).tobytes()
    assert r.process(x) == media.Resampler(8000, 16000).process(x)
