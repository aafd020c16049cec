"""ClauseSplitter: earliest safe boundaries, never splitting numbers or abbreviations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from voxrelay.conversation.clauses import ClauseSplitter, stream_clauses
from voxrelay.conversation.providers import CancelToken


def split(text: str, **kw: int) -> list[str]:
    s = ClauseSplitter(**kw)
    return s.feed(text) + s.flush()


def split_chars(text: str, **kw: int) -> list[str]:
    s = ClauseSplitter(**kw)
    out: list[str] = []
    for ch in text:
        out += s.feed(ch)
    return out + s.flush()


def test_sentences_split_at_end_marks() -> None:
    assert split("Hello there! How are you? I am fine.") == [
        "Hello there!",
        "How are you?",
        "I am fine.",
    ]


def test_first_clause_released_as_soon_as_it_is_complete() -> None:
    s = ClauseSplitter()
    assert s.feed("Sure") == []
    assert s.feed(".") == []  # "." could still become "3.5"-like: wait for the next character
    assert s.feed(" We") == ["Sure."]
    assert s.pending == " We"
    assert s.feed(" open at noon, every day of the week, except Monday") == [
        "We open at noon,",
        "every day of the week,",
    ]
    assert s.flush() == ["except Monday"]
    assert s.pending == ""


@pytest.mark.parametrize(
    "text",
    [
        "It costs $1,200 per night for the whole suite.",
        "We rate it 3.5 out of five stars overall.",
        "The table is booked for 9:30 in the evening.",
        "Version 2.0.1 of the app is out today.",
        "Dr. Smith and Mr. Jones will see you now.",
        "Bring something sweet, e.g. cake or ice cream.",
        "Call J. R. Tolkien at the office.",
        "We open at 9 a.m. and close late.",
        "See the note (Dr. Who fans take note) for more.",
    ],
)
def test_numbers_and_abbreviations_do_not_split(text: str) -> None:
    assert split(text) == [text]
    assert split_chars(text) == [text]


def test_short_comma_clause_waits_long_one_splits() -> None:
    assert split("Yes, we do.") == ["Yes, we do."]
    assert split("Yes of course we do, come by.") == ["Yes of course we do,", "come by."]
    assert split("Yes of course we do, come by.", min_clause_words=6) == [
        "Yes of course we do, come by."
    ]
    assert split("The first part here; second part there: third.") == [
        "The first part here;",
        "second part there: third.",
    ]


def test_runs_of_marks_and_closing_quotes_stay_with_their_clause() -> None:
    assert split('He said "stop." Then he left?! Well... fine.') == [
        'He said "stop."',
        "Then he left?!",
        "Well...",
        "fine.",
    ]
    assert split("(It is open.) Come in.") == ["(It is open.)", "Come in."]


def test_long_run_without_punctuation_is_capped_at_word_boundary() -> None:
    words = [f"w{i}" for i in range(25)]
    out = split(" ".join(words), min_clause_words=2, max_clause_words=10)
    assert out == [" ".join(words[:10]), " ".join(words[10:20]), " ".join(words[20:])]


def test_flush_and_reset() -> None:
    s = ClauseSplitter()
    assert s.flush() == []
    assert s.feed("   ") == []
    assert s.flush() == []
    s.feed("half a thought")
    s.reset()
    assert s.pending == ""
    assert s.flush() == []
    assert s.feed("New. ") == ["New."]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_clause_words 0"):
        ClauseSplitter(min_clause_words=0)
    with pytest.raises(ValueError, match=r"max_clause_words 3 out of range \[4, 1000\]"):
        ClauseSplitter(min_clause_words=4, max_clause_words=3)
    with pytest.raises(TypeError, match="bytes"):
        ClauseSplitter().feed(b"x")  # type: ignore[arg-type]


_ALPHABET = st.sampled_from(
    [*list("abcdeXYZ019 .,;:!?$\"')(\n\t"), "Dr.", "e.g.", "3.5", "1,200", " ", "  "]
)
_TEXT = st.lists(_ALPHABET, max_size=80).map("".join)


def _chunkings(text: str) -> st.SearchStrategy[list[str]]:
    cuts = st.lists(st.integers(0, len(text)), max_size=12).map(sorted)
    return cuts.map(lambda c: [text[a:b] for a, b in zip([0, *c], [*c, len(text)], strict=True)])


@settings(max_examples=300, deadline=None)
@given(st.data(), _TEXT, st.integers(1, 6), st.integers(0, 20))
def test_chunking_invariance_and_no_text_lost(
    data: st.DataObject, text: str, min_words: int, extra: int
) -> None:
    kw = {"min_clause_words": min_words, "max_clause_words": min_words + extra}
    whole = split(text, **kw)
    pieces = data.draw(_chunkings(text))
    s = ClauseSplitter(**kw)
    chunked: list[str] = []
    for p in pieces:
        chunked += s.feed(p)
    chunked += s.flush()
    assert chunked == whole
    assert " ".join(whole).split() == text.split()
    assert all(c and c == c.strip() for c in whole)
    assert len(whole) <= max(1, len(text.split()))


async def _llm(pieces: list[str], produced: list[str]) -> AsyncIterator[str]:
    for p in pieces:
        produced.append(p)
        yield p


def test_stream_clauses_yields_each_clause_before_the_llm_finishes() -> None:
    pieces = ["Sure", ".", " We", " open", " at", " noon", ".", " Bye"]

    async def run() -> list[tuple[str, int]]:
        produced: list[str] = []
        return [(c, len(produced)) async for c in stream_clauses(_llm(pieces, produced))]

    # Each clause comes out one piece after its end mark, long before the stream ends.
    assert asyncio.run(run()) == [("Sure.", 3), ("We open at noon.", 8), ("Bye", 8)]


def test_stream_clauses_drops_the_tail_when_cancelled() -> None:
    async def run(cancel_after: int) -> list[str]:
        token = CancelToken()
        produced: list[str] = []
        out: list[str] = []
        pieces = ["One two three.", " Four five six.", " Seven eight"]
        async for c in stream_clauses(_llm(pieces, produced), cancel=token):
            out.append(c)
            if len(out) == cancel_after:
                token.cancel()
        return out

    assert asyncio.run(run(1)) == ["One two three."]
    assert asyncio.run(run(2)) == ["One two three.", "Four five six."]
    assert asyncio.run(run(99)) == ["One two three.", "Four five six.", "Seven eight"]
