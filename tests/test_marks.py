"""PlayoutTracker: heard position from mark echoes, and barge-in accounting."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from voxrelay.protocols.marks import Cleared, PlayoutTracker


def tracker_with(*marks: tuple[str, float]) -> PlayoutTracker:
    t = PlayoutTracker()
    for name, pos in marks:
        t.sent(name, pos)
    return t


def test_normal_echo_sequence_advances_the_heard_position() -> None:
    t = tracker_with(("a", 1000), ("b", 2500), ("c", 3000))
    assert t.pending == ("a", "b", "c")
    assert t.heard_ms == 0
    assert t.echoed("a") == 1000
    assert t.echoed("b") == 2500
    assert t.pending == ("c",)
    assert t.echoed("c") == 3000
    assert t.pending == ()
    assert t.played_ms == t.sent_ms == 3000
    assert t.stats()["unknown_echoes"] == 0


def test_clear_with_pending_marks_does_not_count_them_as_played() -> None:
    t = tracker_with(("a", 1000), ("b", 2000), ("c", 3000))
    t.echoed("a")
    result = t.cleared()
    assert result == Cleared(heard_ms=1000, sent_ms=3000, flushed=("b", "c"))
    assert result.unplayed_ms == 2000
    assert t.pending == ()
    # Twilio now returns the pending marks at once: they mean "discarded", not "played".
    t.echoed("b")
    t.echoed("c")
    assert t.played_ms == 1000
    assert t.flushed_echoes == 2
    assert t.unknown_echoes == 0


def test_clear_before_any_echo_heard_nothing() -> None:
    t = tracker_with(("a", 800))
    r = t.cleared()
    assert r.heard_ms == 0 and r.sent_ms == 800 and r.flushed == ("a",)
    assert t.echoed("a") == t.heard_ms
    assert t.played_ms == 0


def test_clear_with_nothing_pending_heard_everything() -> None:
    t = tracker_with(("a", 800))
    t.echoed("a", now_ms=100)
    r = t.cleared(now_ms=5000)
    assert r.heard_ms == 800 and r.unplayed_ms == 0 and r.flushed == ()


def test_heard_position_interpolates_from_the_last_echo() -> None:
    t = tracker_with(("a", 1000), ("b", 2000))
    t.echoed("a", now_ms=5000)
    assert t.position_ms() == 1000
    assert t.position_ms(5300) == 1300
    # Capped at the next pending mark: it has not come back, so its audio has not all played.
    assert t.position_ms(9000) == 2000
    # A clock value from before the echo does not move the position backwards.
    assert t.position_ms(4000) == 1000
    r = t.cleared(now_ms=5400)
    assert r.heard_ms == 1400
    assert r.unplayed_ms == 600
    assert t.played_ms == 1400


def test_bad_clock_values_are_rejected() -> None:
    t = tracker_with(("a", 1000))
    for bad in (float("nan"), "5"):
        with pytest.raises(ValueError, match="now_ms"):
            t.position_ms(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="now_ms"):
            t.echoed("a", now_ms=bad)  # type: ignore[arg-type]
    assert t.pending == ("a",)


def test_interpolation_needs_an_echo_time() -> None:
    t = tracker_with(("a", 1000), ("b", 2000))
    t.echoed("a")
    assert t.position_ms(123456) == 1000
    assert t.cleared(now_ms=123456).heard_ms == 1000


def test_audio_started_anchors_the_first_chunk() -> None:
    t = PlayoutTracker()
    t.audio_started(10_000)
    t.sent("a", 800)
    assert t.position_ms(10_300) == 300
    assert t.cleared(now_ms=10_300).heard_ms == 300
    assert t.played_ms == 300


def test_audio_started_is_ignored_while_audio_is_pending() -> None:
    t = tracker_with(("a", 1000), ("b", 2000))
    t.echoed("a", now_ms=5000)
    t.audio_started(5200)  # continuous playback: the echo stays the anchor
    assert t.position_ms(5300) == 1300


def test_the_next_utterance_after_a_clear() -> None:
    t = tracker_with(("a", 1000), ("b", 2000), ("c", 3000))
    t.echoed("a", now_ms=1000)
    t.cleared(now_ms=1400)
    # The discarded span never plays: new audio continues from the sent total.
    assert t.heard_ms == 3000
    t.echoed("b")  # flushed echoes arriving late change nothing
    assert t.heard_ms == 3000 and t.played_ms == 1400
    t.audio_started(2000)
    t.sent("d", 4000)
    assert t.position_ms(2250) == 3250
    assert t.echoed("d", now_ms=3000) == 4000
    assert t.played_ms == 1400 + 1000
    t.echoed("c")
    assert t.flushed_echoes == 2 and t.played_ms == 2400


def test_unknown_marks_are_counted_not_fatal() -> None:
    t = tracker_with(("a", 1000))
    assert t.echoed("nope") == 0
    t.echoed("a")
    assert t.echoed("a") == 1000  # a duplicate echo is unknown too
    assert t.unknown_echoes == 2
    assert t.stats()["unknown_echoes"] == 2
    assert t.played_ms == 1000


def test_an_echo_implies_the_marks_before_it_played() -> None:
    t = tracker_with(("a", 1000), ("b", 2000), ("c", 3000))
    assert t.echoed("b") == 2000
    assert t.pending == ("c",)
    assert t.skipped_marks == 1
    assert t.echoed("a") == 2000  # no longer pending: unknown, position unchanged
    assert t.unknown_echoes == 1


def test_a_flushed_name_reused_later_is_live_again() -> None:
    t = tracker_with(("a", 1000))
    t.cleared()
    t.sent("a", 1500)
    assert t.echoed("a") == 1500
    assert t.flushed_echoes == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "10", None, True])
def test_bad_positions_are_rejected(bad: Any) -> None:
    with pytest.raises(ValueError, match="audio_ms_total_at_mark"):
        PlayoutTracker().sent("a", bad)


def test_positions_must_not_go_backwards_and_names_must_be_unique() -> None:
    t = tracker_with(("a", 1000))
    with pytest.raises(ValueError, match="999"):
        t.sent("b", 999)
    with pytest.raises(ValueError, match="'a'"):
        t.sent("a", 1200)
    t.sent("b", 1000)  # an empty chunk is allowed
    assert t.pending == ("a", "b")


def test_pending_marks_are_bounded() -> None:
    t = PlayoutTracker(max_pending=2)
    t.sent("a", 1)
    t.sent("b", 2)
    with pytest.raises(ValueError, match="max_pending=2"):
        t.sent("c", 3)
    with pytest.raises(ValueError, match="0"):
        PlayoutTracker(max_pending=0)


def test_flushed_names_are_bounded() -> None:
    t = PlayoutTracker(max_pending=2)
    for i in range(5):
        t.sent(f"a{i}", i)
        t.cleared()
    t.echoed("a0")  # forgotten long ago
    t.echoed("a4")
    assert (t.unknown_echoes, t.flushed_echoes) == (1, 1)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.floats(0, 2000)),
        st.tuples(st.just("echo"), st.integers(0, 40)),
        st.tuples(st.just("clear"), st.floats(0, 100)),
        st.tuples(st.just("start"), st.floats(0, 100)),
    ),
    max_size=60,
)


@given(ops)
def test_invariants_under_any_sequence(seq: list[tuple[str, float]]) -> None:
    t = PlayoutTracker()
    pos = 0.0
    now = 0.0
    n = 0
    played = 0.0
    for op, x in seq:
        now += 7
        if op == "send":
            pos += x
            t.sent(f"m{n}", pos)
            n += 1
        elif op == "echo":
            before = t.played_ms
            flushed = t.flushed_echoes
            heard = t.echoed(f"m{int(x)}", now_ms=now)
            assert heard == t.heard_ms
            if t.flushed_echoes != flushed:
                assert t.played_ms == before
        elif op == "clear":
            r = t.cleared(now_ms=now + x)
            assert r.heard_ms <= r.sent_ms
            assert r.unplayed_ms >= 0
        else:
            t.audio_started(now)
        assert t.heard_ms <= t.sent_ms == pos
        assert 0 <= t.played_ms <= t.sent_ms
        assert t.played_ms >= played
        played = t.played_ms
        assert t.heard_ms <= t.position_ms(now + 50) <= t.sent_ms
