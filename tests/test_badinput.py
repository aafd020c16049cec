"""BadInputCounter: log once per kind, close on a flood with the kind's close code."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from voxrelay.protocols.badinput import BadInputCounter, Verdict
from voxrelay.protocols.errors import CLOSE_CODES, KINDS


def test_each_kind_is_logged_once_per_call() -> None:
    c = BadInputCounter(100, 1.0)
    first = c.record("not_json", 0.0)
    assert first == Verdict("not_json", True, False, None, "", 1)
    assert c.record("not_json", 0.1).log is False
    assert c.record("unknown_event", 0.2).log is True
    assert c.record("not_json", 50.0).log is False  # once per call, not per window
    assert c.counts() == {"not_json": 3, "unknown_event": 1}
    assert c.record("not_json", 50.1).count == 4
    # A fresh call logs again.
    assert BadInputCounter(100, 1.0).record("not_json", 0.0).log is True


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("not_json", 1007),
        ("bad_field", 1007),
        ("bad_media", 1007),
        ("unknown_event", 1008),
        ("media_before_start", 1008),
        ("after_stop", 1008),
        ("too_large", 1008),
        ("binary_frame", 1008),
    ],
)
def test_a_flood_closes_with_the_kinds_code(kind: str, code: int) -> None:
    c = BadInputCounter(3, 1.0)
    for i in range(3):
        v = c.record(kind, i * 0.1)
        assert not v.close and v.close_code is None and v.reason == ""
    v = c.record(kind, 0.3)
    assert v.close
    assert v.close_code == code
    assert kind in v.reason and "3" in v.reason
    assert len(v.reason.encode()) <= 123
    assert c.closed


def test_the_kind_that_tips_the_flood_decides_the_code() -> None:
    c = BadInputCounter(2, 10.0)
    c.record("not_json", 0)
    c.record("not_json", 1)
    assert c.record("unknown_event", 2).close_code == 1008


def test_window_expiry() -> None:
    c = BadInputCounter(3, 1.0)
    for t in (0.0, 0.5, 0.9):
        assert not c.record("not_json", t).close
    # The event at 0.0 is exactly one window old at 1.0: it no longer counts.
    assert not c.record("not_json", 1.0).close
    # (0.2, 1.2] holds 0.5, 0.9, 1.0, 1.2: four, over the limit of three.
    assert c.record("not_json", 1.2).close


def test_a_slow_trickle_never_closes() -> None:
    c = BadInputCounter(2, 1.0)
    for i in range(1000):
        assert not c.record("bad_field", i * 0.5).close
    assert c.counts() == {"bad_field": 1000}


def test_close_is_sticky() -> None:
    c = BadInputCounter(1, 1.0)
    c.record("not_json", 0)
    closing = c.record("not_json", 0)
    later = c.record("after_stop", 100.0)
    assert later.close and later.close_code == closing.close_code == 1007
    assert later.reason == closing.reason
    assert later.log is True  # first after_stop is still worth a log line


def test_a_clock_stepping_back_does_not_reopen_the_window() -> None:
    c = BadInputCounter(2, 1.0)
    c.record("not_json", 10.0)
    c.record("not_json", 10.5)
    assert c.record("not_json", 3.0).close


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((0, 1.0), "0"),
        ((True, 1.0), "True"),
        ((1.5, 1.0), "1.5"),
        ((3, 0), "0"),
        ((3, -1.0), "-1.0"),
        ((3, float("inf")), "inf"),
        ((3, float("nan")), "nan"),
    ],
)
def test_bad_settings_are_rejected(args: tuple[Any, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        BadInputCounter(*args)


def test_bad_records_are_rejected() -> None:
    c = BadInputCounter(3, 1.0)
    with pytest.raises(ValueError, match="'weird'"):
        c.record("weird", 0)
    with pytest.raises(ValueError, match="nan"):
        c.record("not_json", float("nan"))
    assert c.counts() == {}


events = st.lists(
    st.tuples(st.sampled_from(sorted(KINDS)), st.floats(0, 0.5)),
    max_size=80,
)


@given(st.integers(1, 6), st.floats(0.1, 2.0), events)
def test_matches_a_brute_force_model(
    limit: int, window: float, seq: list[tuple[str, float]]
) -> None:
    c = BadInputCounter(limit, window)
    now = 0.0
    times: list[float] = []
    closed_code: int | None = None
    seen: set[str] = set()
    for kind, dt in seq:
        now += dt
        times.append(now)
        in_window = sum(1 for t in times if t > now - window)
        if closed_code is None and in_window > limit:
            closed_code = CLOSE_CODES[kind]
        v = c.record(kind, now)
        assert v.close == (closed_code is not None)
        assert v.close_code == closed_code
        assert v.log == (kind not in seen)
        seen.add(kind)
    assert sum(c.counts().values()) == len(seq)
