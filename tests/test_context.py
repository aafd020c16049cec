"""Conversation context: turns, and keeping only what the caller heard of an interrupted reply."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from voxrelay.conversation.context import Conversation, Reply, heard_prefix
from voxrelay.conversation.providers import Message


def test_messages_start_with_the_system_prompt() -> None:
    conv = Conversation("You are a restaurant host.")
    conv.add_user("  hi ")
    conv.add_assistant("Hello!")
    assert conv.messages() == [
        Message("system", "You are a restaurant host."),
        Message("user", "hi"),
        Message("assistant", "Hello!"),
    ]
    assert Conversation().messages() == []


def test_empty_assistant_reply_is_not_a_turn() -> None:
    conv = Conversation()
    assert conv.add_assistant("   ") is None
    assert conv.turns == ()


def test_max_turns_drops_oldest_keeps_system() -> None:
    conv = Conversation("sys", max_turns=2)
    for i in range(3):
        conv.add_user(f"u{i}")
    assert [m.content for m in conv.messages()] == ["sys", "u1", "u2"]
    with pytest.raises(ValueError, match="max_turns 0 out of range"):
        Conversation(max_turns=0)


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (0.0, ""),
        (-1.0, ""),
        (0.1, "We"),  # "We" ends at char 2; 0.1 * 21 chars = 2.1
        (0.09, ""),  # 1.89: the first word is not finished
        (0.5, "We open at"),  # "noon" ends at 15 > 10
        (0.75, "We open at noon"),
        (0.99, "We open at noon"),
        (1.0, "We open at noon today"),
        (2.0, "We open at noon today"),
    ],
)
def test_heard_prefix_keeps_whole_heard_words(fraction: float, expected: str) -> None:
    text = "We open at noon today"  # 21 chars
    assert heard_prefix(text, fraction) == expected or (
        fraction == 0.1 and heard_prefix(text, fraction) == "We"
    )


def test_heard_prefix_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        heard_prefix("x", float("nan"))


@given(st.text(), st.floats(0, 1), st.floats(0, 1))
def test_heard_prefix_is_a_monotonic_word_prefix(text: str, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    short, long = heard_prefix(text, lo), heard_prefix(text, hi)
    assert text.strip().startswith(long)
    assert long.startswith(short)
    assert short.split() == text.split()[: len(short.split())]


def test_truncate_last_assistant_by_proportion() -> None:
    conv = Conversation()
    conv.add_user("hours?")
    conv.add_assistant("We open at noon today")
    msg = conv.truncate_last_assistant(heard_ms=1500, total_ms=2000)
    assert msg == Message("assistant", "We open at noon", interrupted=True)
    assert conv.turns[-1] is msg
    assert len(conv.turns) == 2
    # Nothing heard: the reply disappears from the context.
    conv.add_user("again?")
    conv.add_assistant("We open at noon today")
    assert conv.truncate_last_assistant(heard_ms=0, total_ms=2000) is None
    assert [m.content for m in conv.turns] == ["hours?", "We open at noon", "again?"]


def test_truncate_needs_an_assistant_turn_and_sane_times() -> None:
    conv = Conversation()
    conv.add_user("hi")
    with pytest.raises(ValueError, match="no assistant turn"):
        conv.truncate_last_assistant(1, 2)
    conv.add_assistant("hello")
    with pytest.raises(ValueError, match=r"heard_ms -1 out of range \[0, inf\)"):
        conv.truncate_last_assistant(-1, 2)
    with pytest.raises(ValueError, match="total_ms nan"):
        conv.truncate_last_assistant(1, float("nan"))
    assert conv.truncate_last_assistant(5, 0) == Message("assistant", "hello", True)


def test_record_interrupted_replaces_or_appends() -> None:
    conv = Conversation()
    conv.add_user("q")
    assert conv.record_interrupted("Sure, we") == Message("assistant", "Sure, we", True)
    assert len(conv.turns) == 2
    assert conv.record_interrupted("Sure") == Message("assistant", "Sure", True)
    assert len(conv.turns) == 2


def _reply_with_three_clauses(conv: Conversation, start_ms: float = 0.0) -> Reply:
    reply = conv.begin_reply(start_ms)
    reply.add_clause("Sure.", 500)
    reply.add_clause("We open at noon today,")
    reply.add_audio(600)
    reply.add_audio(400)  # 1000 ms in two chunks
    reply.add_clause("and close at ten.", 1000)
    return reply


def test_reply_complete_records_everything() -> None:
    conv = Conversation()
    conv.add_user("hours?")
    reply = _reply_with_three_clauses(conv)
    assert reply.audio_ms == 2500
    msg = reply.complete()
    assert msg == Message("assistant", "Sure. We open at noon today, and close at ten.")
    assert reply.complete() is msg
    assert len(conv.turns) == 2


@pytest.mark.parametrize(
    ("heard_ms", "expected"),
    [
        (10_000, None),  # nothing left: start_ms offset puts it before the reply
        (10_000 + 400, None),  # inside the first clause: "Sure." not finished
        (10_000 + 500, "Sure."),
        (10_000 + 500 + 750, "Sure. We open at noon"),
        (10_000 + 1500, "Sure. We open at noon today,"),
        (10_000 + 2499, "Sure. We open at noon today, and close at"),
        (10_000 + 2500, "Sure. We open at noon today, and close at ten."),
    ],
)
def test_reply_interrupted_keeps_played_clauses(heard_ms: float, expected: str | None) -> None:
    conv = Conversation("sys")
    conv.add_user("hours?")
    reply = _reply_with_three_clauses(conv, start_ms=10_000)
    msg = reply.interrupt(heard_ms)
    assert reply.interrupted
    if expected is None:
        assert msg is None
        assert [m.role for m in conv.turns] == ["user"]
    else:
        assert msg == Message("assistant", expected, interrupted=True)
        assert conv.turns[-1] is msg
    assert reply.interrupt(0) is msg  # idempotent
    with pytest.raises(RuntimeError, match="interrupted"):
        reply.add_clause("more")


def test_interrupt_after_complete_truncates_in_place() -> None:
    """Generation ends before playout does: the barge-in comes after `complete()`, and the
    caller's next words may already be in the context."""
    conv = Conversation()
    conv.add_user("hours?")
    reply = _reply_with_three_clauses(conv)
    reply.complete()
    conv.add_user("wait")
    msg = reply.interrupt(1500)
    assert [(m.role, m.content, m.interrupted) for m in conv.turns] == [
        ("user", "hours?", False),
        ("assistant", "Sure. We open at noon today,", True),
        ("user", "wait", False),
    ]
    assert reply.complete() is msg


def test_reply_bad_input() -> None:
    reply = Conversation().begin_reply()
    with pytest.raises(RuntimeError, match="add_audio before any add_clause"):
        reply.add_audio(10)
    with pytest.raises(ValueError, match="audio_ms -5"):
        reply.add_clause("x", -5)
    with pytest.raises(ValueError, match="start_ms inf"):
        Conversation().begin_reply(float("inf"))
    reply.add_clause("   ")
    assert reply.text == ""
