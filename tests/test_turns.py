"""Turn detection from VAD decisions, sans-I/O: onset, end of speech, barge-in threshold."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turns_reference import ReferenceTurnDetector
from voxrelay.turns import BARGE_IN, ENDED, PAUSED, STARTED, TurnDetector

FRAME = 640  # 20 ms at 16 kHz


def frame(value: int) -> bytes:
    return value.to_bytes(2, "little", signed=True) * (FRAME // 2)


def feed(det: TurnDetector, pattern: str, value: int = 1000) -> list[int]:
    """`pattern`: one char per 20 ms frame, 's' speech, '.' silence; returns flags per frame."""
    return [det.feed(frame(value if c == "s" else 0), c == "s") for c in pattern]


def test_speech_starts_after_start_ms_not_before() -> None:
    det = TurnDetector(start_ms=80)
    flags = feed(det, "...sss")
    assert not any(f & STARTED for f in flags)
    assert feed(det, "s") == [STARTED]
    assert det.in_speech and det.speech_start_ms == 60.0


def test_short_blips_never_start_an_utterance() -> None:
    det = TurnDetector(start_ms=80)
    flags = feed(det, "sss." * 20)
    assert not any(flags) and not det.in_speech


def test_speech_ends_after_configured_silence() -> None:
    det = TurnDetector(start_ms=80, end_ms=300)
    feed(det, "ssssssssss")
    flags = feed(det, "................")
    ends = [i for i, f in enumerate(flags) if f & ENDED]
    assert ends == [14]  # the 15th silent frame completes 300 ms
    assert not det.in_speech


def test_pause_shorter_than_end_ms_keeps_one_utterance() -> None:
    det = TurnDetector(end_ms=500)
    flags = feed(det, "ssssssssss" + "." * 20 + "ssssssssss" + "." * 25)
    assert sum(1 for f in flags if f & STARTED) == 1
    assert sum(1 for f in flags if f & ENDED) == 1


def test_utterance_has_preroll_and_a_short_tail() -> None:
    det = TurnDetector(start_ms=80, end_ms=500, preroll_ms=200, keep_tail_ms=100)
    feed(det, "." * 30)
    feed(det, "s" * 50, value=1234)
    feed(det, "." * 25)
    audio = det.utterance()
    assert det.onset_offset_ms == 200.0  # the speech starts after the pre-roll
    # 200 ms pre-roll + 1000 ms speech + 100 ms tail.
    assert len(audio) == (10 + 50 + 5) * FRAME
    speech = frame(1234)
    assert audio[10 * FRAME : 60 * FRAME] == speech * 50
    assert audio[: 10 * FRAME] == frame(0) * 10
    assert det.utterance() == b""  # taken once


def test_barge_in_flag_once_per_run_of_speech() -> None:
    det = TurnDetector(barge_in_ms=150)
    flags = feed(det, "s" * 20 + "." + "s" * 20)
    hits = [i for i, f in enumerate(flags) if f & BARGE_IN]
    assert hits == [7, 28]  # 8th frame of each run reaches 160 >= 150 ms


def test_utterance_length_is_capped() -> None:
    det = TurnDetector(max_utterance_ms=1000, preroll_ms=0)
    flags = feed(det, "s" * 60)
    assert sum(1 for f in flags if f & ENDED) >= 1
    assert len(det.utterance()) <= 1000 * 32 + FRAME


def test_irregular_frame_sizes_count_audio_time() -> None:
    det = TurnDetector(start_ms=80)
    # The jitter buffer may release two frames at once after a gap.
    assert det.feed(b"\0" * (2 * FRAME), True) == 0
    assert det.feed(b"\0" * (2 * FRAME), True) == STARTED


@pytest.mark.parametrize("bad", [{"start_ms": 0}, {"rate": -1}, {"preroll_ms": 5000}])
def test_bad_configuration_is_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        TurnDetector(**bad)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"start_ms": True}, "start_ms must be a positive integer, got True"),
        ({"end_ms": "5"}, "end_ms must be a positive integer, got '5'"),
        ({"rate": -1}, "rate must be a positive integer, got -1"),
        (
            {"preroll_ms": -1},
            "preroll_ms must be 0..2000 and keep_tail_ms 0..end_ms (500), got -1 and 100",
        ),
        (
            {"keep_tail_ms": 600},
            "preroll_ms must be 0..2000 and keep_tail_ms 0..end_ms (500), got 200 and 600",
        ),
        ({"pause_ms": -3}, "pause_ms must be 0 (off) .. end_ms (500) - 1, got -3"),
        ({"pause_ms": 2.5}, "pause_ms must be 0 (off) .. end_ms (500) - 1, got 2.5"),
        ({"preroll_ms": True}, "preroll_ms must be an integer 0..2000, got True"),
        ({"keep_tail_ms": "1"}, "keep_tail_ms must be an integer 0..end_ms (500), got '1'"),
        ({"max_utterance_ms": 2**70}, f"max_utterance_ms must be a positive integer, got {2**70}"),
        # Types are checked before ranges.
        ({"end_ms": False, "rate": 0}, "end_ms must be a positive integer, got False"),
    ],
)
def test_bad_configuration_names_the_value_and_the_range(
    bad: dict[str, object], message: str
) -> None:
    """Types are refused by the binding, ranges once by the media engine; each message names
    the argument and its range."""
    with pytest.raises(ValueError) as e:
        TurnDetector(**bad)  # type: ignore[arg-type]
    assert str(e.value) == message


def test_none_means_not_given() -> None:
    """As in `configure`: an argument passed as None takes its default."""
    det = TurnDetector(rate=None, end_ms=None, pause_ms=None)  # type: ignore[arg-type]
    assert det.end_ms == 500 and det.run_token == -1


@given(st.lists(st.booleans(), max_size=400))
def test_every_start_is_followed_by_at_most_one_end(pattern: list[bool]) -> None:
    det = TurnDetector()
    open_ = False
    for s in pattern:
        f = det.feed(frame(1 if s else 0), s)
        if f & STARTED:
            assert not open_
            open_ = True
        if f & ENDED:
            assert open_
            open_ = False
            assert len(det.utterance()) % 2 == 0
    assert open_ == det.in_speech


def test_pause_flag_once_per_silence_run_with_a_fresh_token() -> None:
    det = TurnDetector(start_ms=80, end_ms=1200, pause_ms=160)
    flags = feed(det, "ssssssssss" + "." * 10 + "sssss" + "." * 10)
    paused = [i for i, f in enumerate(flags) if f & PAUSED]
    assert paused == [17, 32]  # the 8th silent frame of each run (160 ms)
    assert det.pause_count == 2 and det.run_token == 2
    assert det.in_speech  # a pause is not the end


def test_end_after_ends_now_when_the_silence_is_already_long_enough() -> None:
    det = TurnDetector(start_ms=80, end_ms=1200, pause_ms=160, keep_tail_ms=100)
    feed(det, "ssssssssss" + "." * 15)  # 300 ms of silence so far
    assert det.silence_ms == 300.0
    assert det.end_after(250, det.run_token) == ENDED
    assert not det.in_speech
    # The utterance keeps the onset frames and 100 ms of the trailing silence.
    assert len(det.utterance()) == (10 + 5) * FRAME


def test_end_after_in_the_future_ends_on_the_audio_clock() -> None:
    det = TurnDetector(start_ms=80, end_ms=1200, pause_ms=160)
    feed(det, "ssssssssss" + "." * 8)
    assert det.end_after(250, det.run_token) == 0
    flags = feed(det, "." * 5)
    assert [bool(f & ENDED) for f in flags] == [False, False, False, False, True]  # at 260 ms


def test_words_after_a_pause_void_its_decision() -> None:
    det = TurnDetector(start_ms=80, end_ms=1200, pause_ms=160)
    feed(det, "ssssssssss" + "." * 8)
    token = det.run_token
    assert det.end_after(250, token) == 0
    feed(det, "ss")  # the caller goes on: the 250 ms decision no longer applies
    assert det.run_token == -1
    assert det.end_after(250, token) == 0  # a stale token changes nothing
    flags = feed(det, "." * 65)
    ends = [i for i, f in enumerate(flags) if f & ENDED]
    assert ends == [59]  # back to end_ms (1200 ms), not 250


def test_configure_checks_like_the_constructor() -> None:
    det = TurnDetector(end_ms=500)
    det.configure(end_ms=1200, pause_ms=160, barge_in_ms=600)
    assert det.end_ms == 1200
    with pytest.raises(ValueError, match="pause_ms must be 0"):
        det.configure(pause_ms=1200)
    with pytest.raises(ValueError, match="barge_in_ms must be a positive integer"):
        det.configure(barge_in_ms=0)
    with pytest.raises(ValueError, match=r"^end_ms must be a positive integer, got True$"):
        det.configure(end_ms=True)
    # The range named is the one the call would set up.
    with pytest.raises(ValueError, match=r"^pause_ms must be 0 \(off\) \.\. end_ms \(900\)"):
        det.configure(end_ms=900, pause_ms="100")
    assert det.end_ms == 1200  # a refused call changes nothing


# Steps: ("f", samples, speech) feeds a frame of that many samples (0 = the jitter buffer
# released nothing, 640 = two frames at once); ("e", silence_ms, token offset) is a turn
# engine's end_after; ("c", end_ms, pause_ms) reconfigures mid-call.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("f"), st.sampled_from([320, 320, 320, 0, 160, 640]), st.booleans()),
        st.tuples(st.just("e"), st.integers(0, 900), st.integers(-1, 0)),
        st.tuples(st.just("c"), st.integers(200, 900), st.integers(0, 199)),
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(
    steps=steps,
    start_ms=st.integers(20, 200),
    end_ms=st.integers(200, 900),
    pause_ms=st.integers(0, 199),
    preroll_ms=st.integers(0, 400),
    max_utterance_ms=st.integers(100, 3000),
)
def test_agrees_with_the_python_reference_on_every_frame(
    steps: list[tuple[str, int, Any]],
    start_ms: int,
    end_ms: int,
    pause_ms: int,
    preroll_ms: int,
    max_utterance_ms: int,
) -> None:
    """The detector moved from Python into the media engine; the old Python class is the model
    (tests/turns_reference.py). Flags, timings and audio must agree exactly."""
    kw = dict(
        start_ms=start_ms,
        end_ms=end_ms,
        pause_ms=pause_ms,
        preroll_ms=preroll_ms,
        max_utterance_ms=max_utterance_ms,
        keep_tail_ms=min(100, end_ms),
    )
    rust, ref = TurnDetector(**kw), ReferenceTurnDetector(**kw)
    props = (
        "in_speech",
        "position_ms",
        "speech_start_ms",
        "onset_offset_ms",
        "silence_ms",
        "speech_run_ms",
        "pause_count",
        "run_token",
        "end_ms",
    )
    for i, (kind, a, b) in enumerate(steps):
        if kind == "f":
            pcm = bytes((i * 7 + j) % 256 for j in range(2 * a))
            got, want = rust.feed(pcm, b), ref.feed(pcm, b)
        elif kind == "e":
            token = ref.run_token + b
            got, want = rust.end_after(a, token), ref.end_after(a, token)
        else:
            pause = min(b, a - 1)
            rust.configure(end_ms=a, pause_ms=pause)
            ref.configure(end_ms=a, pause_ms=pause)
            got = want = 0
        assert got == want, (i, kind)
        assert [getattr(rust, p) for p in props] == [getattr(ref, p) for p in props], i
        if got & ENDED:
            assert rust.utterance() == ref.utterance()
        if rust.in_speech:
            assert rust.audio_so_far() == ref.audio_so_far()


def test_odd_length_pcm_is_refused_naming_the_length() -> None:
    det = TurnDetector()
    with pytest.raises(ValueError, match="odd length of 3 bytes"):
        det.feed(b"\0\0\0", True)
    assert det.position_ms == 0.0  # nothing was fed
