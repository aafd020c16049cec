"""Streamed LLM text in, speakable clauses out, each as soon as it is complete.

TTS cannot start a sentence before it has one, and the first audio of a reply waits for the
first clause: splitting at the earliest safe boundary is the biggest latency lever after the
models themselves. A boundary is safe when the punctuation is followed by whitespace (so
"3.5", "$1,200" and "9:30" never split: the character after the mark is a digit) and is not
an abbreviation ("Dr.", "e.g.") or an initial ("J. Smith"). Commas, semicolons and colons split
only once the clause has `min_clause_words` words: a two-word clause would sound choppy and
costs a TTS round trip for almost no audio. A run without punctuation is cut at a word
boundary after `max_clause_words`, so a rambling model cannot hold the first audio back.

A clause is therefore released when the character after its mark arrives: with streamed
LLM tokens that is the next token (they carry their leading space), a few ms later, and the
last clause comes out on `flush()` at the end of the stream.

Text is never rewritten: joining the clauses with spaces gives the input back, modulo
whitespace. Splitting happens only at whitespace, so no word is ever cut in two.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Final

from voxrelay.conversation.providers import CancelToken

__all__ = ["ABBREVIATIONS", "ClauseSplitter", "stream_clauses"]

ABBREVIATIONS: Final = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc", "e.g",
        "i.e", "eg", "ie", "approx", "appt", "apt", "dept", "est", "fig", "inc", "ltd", "co",
        "corp", "no", "nos", "vol", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
        "sept", "oct", "nov", "dec", "mon", "tue", "tues", "wed", "thu", "thurs", "fri", "sat",
        "sun", "a.m", "p.m", "u.s", "u.k", "ave", "blvd", "rd", "hr", "hrs", "min", "mins",
        "sec", "secs", "cf", "al", "gen", "gov", "sgt", "capt", "lt", "col", "rev", "hon",
    }
)  # fmt: skip
"""Words that end in a period without ending the sentence (lower case, final dot removed)."""

_SENTENCE_END: Final = frozenset(".!?…")
_CLAUSE_END: Final = frozenset(",;:")
_CLOSERS: Final = frozenset("\"')]}\u201d\u2019\u00bb")
_MARKS: Final = _SENTENCE_END | _CLAUSE_END
# Opening quotes/brackets before a word: "(Dr." is still the abbreviation "dr".
_OPENERS: Final = "\"'([{\u201c\u2018\u00ab"
_WORD_END: Final = re.compile(r"\S+\s+")


class ClauseSplitter:
    """Incremental: `feed` each streamed piece, `flush` at the end of the reply.

    Work per piece is proportional to the new text (the scan resumes where it stopped), so
    a long reply streamed a token at a time stays linear.
    """

    __slots__ = ("_buf", "_max_words", "_min_words", "_scan")

    def __init__(self, *, min_clause_words: int = 4, max_clause_words: int = 40) -> None:
        if not 1 <= min_clause_words <= 100:
            raise ValueError(f"min_clause_words {min_clause_words} out of range [1, 100]")
        if not min_clause_words <= max_clause_words <= 1000:
            raise ValueError(
                f"max_clause_words {max_clause_words} out of range [{min_clause_words}, 1000]"
            )
        self._min_words = min_clause_words
        self._max_words = max_clause_words
        self._buf = ""
        self._scan = 0

    @property
    def pending(self) -> str:
        """Text fed but not yet released as a clause."""
        return self._buf

    def reset(self) -> None:
        """Drop pending text (the reply was cancelled)."""
        self._buf = ""
        self._scan = 0

    def feed(self, piece: str) -> list[str]:
        """Add streamed text; returns the clauses it completed (often none)."""
        if not isinstance(piece, str):
            raise TypeError(f"piece must be str, got {type(piece).__name__}")
        if not piece:
            return []
        buf = self._buf + piece
        out: list[str] = []
        start = 0
        i = self._scan
        n = len(buf)
        while i < n:
            if buf[i] not in _MARKS:
                i += 1
                continue
            j = i + 1
            while j < n and (buf[j] in _MARKS or buf[j] in _CLOSERS):
                j += 1
            if j == n:
                break  # cannot tell yet: "3." may become "3.5"
            if buf[j].isspace():
                # Cap first, so the result does not depend on how the text was chunked.
                start = self._cap_length(buf, start, i, out)
                if self._is_boundary(buf, start, i, j):
                    clause = buf[start:j].strip()
                    if clause:
                        out.append(clause)
                    start = j
            i = j
        start = self._cap_length(buf, start, i, out)
        self._buf = buf[start:]
        self._scan = max(i - start, 0)
        return out

    def flush(self) -> list[str]:
        """The end of the reply: whatever is pending is the last clause."""
        rest = self._buf.strip()
        self.reset()
        return [rest] if rest else []

    def _is_boundary(self, buf: str, start: int, i: int, j: int) -> bool:
        run = buf[i:j]
        if any(c in _SENTENCE_END for c in run):
            if "!" in run or "?" in run or "…" in run or run.count(".") > 1:
                return True
            return not self._abbreviation_before(buf, start, i)
        return len(buf[start:j].split()) >= self._min_words

    @staticmethod
    def _abbreviation_before(buf: str, start: int, i: int) -> bool:
        k = i
        while k > start and not buf[k - 1].isspace():
            k -= 1
        word = buf[k:i].lstrip(_OPENERS).lower()
        if not word:
            return False
        if len(word) == 1 and word.isalpha():
            return True  # an initial: "J. Smith"
        return word in ABBREVIATIONS

    def _cap_length(self, buf: str, start: int, scanned: int, out: list[str]) -> int:
        """Cut runs longer than `max_clause_words` at a word boundary."""
        while True:
            words = 0
            pos = start
            for m in _WORD_END.finditer(buf, start, scanned):
                words += 1
                pos = m.end()
                if words == self._max_words:
                    break
            if words < self._max_words:
                return start
            out.append(buf[start:pos].strip())
            start = pos


async def stream_clauses(
    pieces: AsyncIterable[str],
    splitter: ClauseSplitter | None = None,
    *,
    cancel: CancelToken | None = None,
) -> AsyncIterator[str]:
    """LLM stream in, clauses out: each clause is yielded the moment it completes, while the
    LLM keeps generating, so the first TTS request does not wait for the whole reply.

    Once `cancel` is set nothing more is yielded and the unfinished tail is dropped, not
    flushed: a cancelled reply must not speak its half sentence.
    """
    s = splitter if splitter is not None else ClauseSplitter()
    async for piece in pieces:
        for clause in s.feed(piece):
            if cancel is not None and cancel.cancelled:
                s.reset()
                return
            yield clause
    if cancel is not None and cancel.cancelled:
        s.reset()
        return
    for clause in s.flush():
        yield clause
