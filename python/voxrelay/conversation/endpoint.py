"""Semantic end of turn: is the caller done talking, judging by what they have said so far?

VAD silence alone forces a bad trade: a short silence timeout cuts callers off mid-sentence
("my number is 4 5 ... 7 2"), a long one makes every reply feel slow. The transcript breaks the
tie: "I'd like to book a table for two." is finished and deserves a reply after a breath, while
"I'd like to book a table for" is not, whatever the VAD says. `completeness` scores the
transcript; `TurnEndPolicy` turns that score into how much silence ends the turn.

The scorer is a handful of rules over the last few words, not a model, because it runs on
every speculative transcript at every short pause and must cost microseconds, need no download
and give the same answer in a test as on a call. It expects Whisper-style text: punctuation and
capitalisation present, digits as numerals ("4572"). Whisper's terminal punctuation is a strong
hint that the speaker finished, so most rules weigh the last word differently with and without
it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["TurnEndPolicy", "completeness"]

# Only the tail matters, and bounding it keeps the cost flat for long monologues.
_TAIL_CHARS: Final = 160
_WORD_SCAN_CHARS: Final = 80

_NONE, _STOP, _QUESTION, _TRAIL = 0, 1, 2, 3
"""How the transcript ends: no punctuation, '.'/'!', '?', or a mark that promises more."""

# Closing quotes and brackets (typographic ones included) do not change how a sentence ends.
_CLOSERS: Final = "\"')]}\u00bb\u201d\u2019 \t\r\n"
# Comma, semicolon, colon, hyphen, en and em dash, ellipsis: the speaker broke off mid-phrase.
_TRAILING_MARKS: Final = ",;:-\u2013\u2014\u2026"
_STRIP_END: Final = ".?!" + _TRAILING_MARKS + _CLOSERS

_WORD_RE: Final = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER_TAIL_RE: Final = re.compile(r"[0-9][0-9 :./,$-]*$")
_BACKCHANNEL_RE: Final = re.compile(r"\b(?:uh-huh|mm-hmm|mm-hm|uh-uh)\b")

_ARTICLES: Final = frozenset("the a an my your our their its every".split())
_CONJUNCTIONS: Final = frozenset(
    "and but or because cause cos if unless whether although plus than as nor".split()
)
_FILLERS: Final = frozenset("um uh er erm uhm umm uhh hmm mm ah eh".split())
_PREPOSITIONS: Final = frozenset(
    "to for with at of in on from about into onto by without between under after before "
    "during until till towards toward via per near across through over since within "
    "against except including regarding".split()
)
# Words that usually lead into a noun but can close an elliptical answer ("I'd like another.").
_WEAK_DETERMINERS: Final = frozenset(
    "any some same other another extra more few several both maybe either neither next".split()
)
_INTENSIFIERS: Final = frozenset("very quite pretty super extremely incredibly rather".split())
# Nouns that announce a number or name still to come: "apartment", "suite", "extension".
_SLOT_NOUNS: Final = frozenset(
    "apartment apt suite unit room floor number extension flat box ext mr mrs ms dr".split()
)
# After one of these, "in"/"on"/"by"/"over"/"through" is a particle that closes a phrasal verb
# ("hold on", "log in", "put me through") rather than a preposition still waiting for its noun.
_PARTICLE_VERBS: Final = frozenset(
    "hold hang come go turn log logged sign signed check checked carry move plug plugged "
    "switch switched keep fill filled drop stop pop swing call called put send sent get got so "
    "it them me him her us that this everything again way".split()
)
_PARTICLES: Final = frozenset("in on by over through".split())
# Auxiliaries fused to their subject cannot end an English clause: "That's what it's." is not
# a sentence, so "my name's" or "it's" at the end always means more is coming.
_CONTRACTED_AUX: Final = frozenset(
    "i'm it's that's there's here's we're you're they're he's she's what's where's who's "
    "how's when's i've we've you've they've i'll we'll you'll they'll he'll she'll it'll "
    "i'd we'd you'd they'd he'd she'd let's name's number's address's gonna wanna gotta".split()
)
_AUX: Final = frozenset(
    "is was are were am be been being have has had will would can could should shall may "
    "might must do does did".split()
)
_NEGATED_AUX: Final = frozenset(
    "don't doesn't didn't can't couldn't won't wouldn't isn't aren't wasn't weren't "
    "haven't hasn't hadn't shouldn't mustn't".split()
)
_SUBJECT_PRONOUNS: Final = frozenset("i we they he she".split())
_ELLIPSIS_SUBJECTS: Final = frozenset("i you we they he she it that there this not".split())
_COPULAS: Final = frozenset("is are was were am".split())
_QUESTION_SUBJECTS: Final = frozenset("i you we they he she it".split())
_WH: Final = frozenset("what where when who whom whose which why how".split())
# "I don't know why." / "Not sure where." end on a question word yet are complete.
_WH_COMPLETERS: Final = frozenset(
    "know sure idea remember tell wonder see care matter anywhere somewhere".split()
)
_QUESTION_START: Final = frozenset(
    "can could would will do does did is are was were should shall may have has what where "
    "when who which why how any what's where's who's how's when's isn't aren't don't doesn't "
    "didn't can't won't wouldn't couldn't".split()
)
# A verb that still lacks its object or complement: "can I get", "it's called".
_NEEDS_OBJECT: Final = frozenset(
    "need want get give send bring take order book reserve cancel change update pay buy make "
    "tell ask schedule reschedule add remove put".split()
)
_BE_FORMS: Final = frozenset(
    "is was are were be been being it's that's he's she's they're we're you're i'm name's".split()
)
_OBJECT_WANTERS: Final = _SUBJECT_PRONOUNS | _AUX | {"you", "to", "i'd", "we'd"}
_NEEDS_NAME: Final = frozenset("called named spelled spelt".split())
_TO_VERBS: Final = frozenset(
    "like love want need have has got going supposed hoping trying able wanted needed".split()
)
_SO_COMPLETERS: Final = frozenset(
    "think hope guess believe suppose said say says told thought if or even do did does "
    "not just more much".split()
)
_CLOSING_WORDS: Final = frozenset(
    "me it that this them us you please now today tomorrow tonight here there thanks too "
    "yet anymore already again everything anything nothing all".split()
)
# Words a complete short answer is made of ("yes please", "no thank you", "that's all").
_ANSWER_WORDS: Final = frozenset(
    "yes yeah yep yup ya no nope nah okay ok sure thanks thank you please that's it all right "
    "correct great perfect fine good alright bye goodbye sounds cool awesome exactly "
    "absolutely definitely of course nothing else not really mhm hello hi hey got i see "
    "wonderful excellent lovely cheers indeed certainly totally agreed done never mind much "
    "so very oh ah well".split()
)
# Answer words that open rather than close: "Oh", "Well", "So" alone promise more.
_ANSWER_OPENERS: Final = frozenset("oh ah well so very of not i got thank".split())
_NUMBER_CONTEXT: Final = frozenset(
    "number phone zip postcode code card account pin digits order reference confirmation "
    "extension ext routing ssn policy member id".split()
)
_WELL_FORMED_DIGIT_COUNTS: Final = frozenset({4, 5, 7, 10, 11, 16})
_FULL_NUMBER_DIGIT_COUNTS: Final = frozenset({10, 11, 16})


def _ending(tail: str) -> int:
    end = tail.rstrip(_CLOSERS)
    if not end:
        return _NONE
    last = end[-1]
    if last in _TRAILING_MARKS or end.endswith(".."):
        return _TRAIL
    if last == "?":
        return _QUESTION
    if last in ".!":
        return _STOP
    return _NONE


def _last_sentence_start(lowered: str) -> int:
    """Where the last sentence begins: after the last '.', '?' or '!' followed by a space."""
    cut = max(lowered.rfind(". "), lowered.rfind("? "), lowered.rfind("! "), lowered.rfind("\n"))
    return cut + 1 if cut >= 0 else 0


def _pick(end: int, none: float, stop: float, question: float) -> float:
    return none if end == _NONE else stop if end == _STOP else question


def _number_score(body: str, words: list[str], end: int) -> float | None:
    """Digits at the end: whole numbers close a turn, dictation cut short does not."""
    m = _NUMBER_TAIL_RE.search(body)
    if m is None:
        return None
    chunk = m.group()
    groups = chunk.split()
    digits = sum(c.isdigit() for c in chunk)
    if len(groups) >= 2:
        # Spaced digits are dictation ("4 5 7 2"): finished only at a plausible length.
        if end == _NONE:
            return 0.55 if digits in _FULL_NUMBER_DIGIT_COUNTS else 0.15
        return 0.75 if digits in _WELL_FORMED_DIGIT_COUNTS else 0.3
    # A short number where a phone/account/zip number is expected is the first digits of it.
    lead = words[-5:-1]
    if digits < 4 and any(w in _NUMBER_CONTEXT for w in lead):
        return _pick(end, 0.15, 0.3, 0.4)
    if end == _NONE:
        return 0.55 if digits >= 10 else 0.3
    return 0.85


def _last_word_score(
    words: list[str], sentence_words: list[str], end: int, proper: bool
) -> float | None:
    """What the final word (and the one before it) says about whether the phrase is closed.

    `proper`: the last word is capitalised mid-sentence, so "May" or "Will" is a name or a
    month, not an auxiliary.
    """
    last = words[-1]
    prev = words[-2] if len(words) >= 2 else ""
    only = len(sentence_words) == 1

    if last in _FILLERS or (last == "know" and prev == "you" and len(sentence_words) > 2):
        return _pick(end, 0.05, 0.15, 0.3)
    if last == "mean" and prev == "i":
        return _pick(end, 0.1, 0.2, 0.6)
    if last == "well" and only:
        return _pick(end, 0.15, 0.3, 0.5)
    if last == "like":
        if prev in {"would", "you'd", "i'd", "we'd", "they'd", "i", "you", "we", "they"}:
            return None  # the verb: "whatever you'd like."
        return _pick(end, 0.1, 0.2, 0.5)
    if last in _ARTICLES:
        return _pick(end, 0.05, 0.1, 0.2)
    if last in _CONJUNCTIONS:
        if last == "or" and prev == "so":
            return None
        return _pick(end, 0.05, 0.15, 0.3)
    if last == "so":
        if prev in _SO_COMPLETERS:
            return None
        return _pick(end, 0.05, 0.15, 0.6)
    if last in {"then", "also"} and (prev in _CONJUNCTIONS or prev == "so"):
        return _pick(end, 0.05, 0.15, 0.3)
    if last in _CONTRACTED_AUX:
        return _pick(end, 0.05, 0.15, 0.3)
    if _unfinished_question(sentence_words):
        return _pick(end, 0.1, 0.3, 0.75)
    if last in _SUBJECT_PRONOUNS:
        # "Can I?" is a whole question; "Yes, I" is not a whole anything.
        return _pick(end, 0.1, 0.2, 0.75)
    if last in _NEEDS_NAME and prev in _BE_FORMS:
        return _pick(end, 0.1, 0.2, 0.6)
    if last in _PREPOSITIONS:
        if last == "to" and (prev in _TO_VERBS or prev.endswith("'d")):
            return _pick(end, 0.3, 0.7, 0.8)  # "Yes, I'd love to."
        if last in _PARTICLES and prev in _PARTICLE_VERBS:
            return _pick(end, 0.5, 0.8, 0.85)
        return _pick(end, 0.15, 0.3, 0.75)
    if last in _INTENSIFIERS or (last == "really" and (prev in _AUX or prev in _CONTRACTED_AUX)):
        return _pick(end, 0.2, 0.4, 0.8)  # "I'm really", "it's pretty"
    if prev == "let" and last in {"me", "us"}:
        return _pick(end, 0.2, 0.6, 0.8)  # "let me" promises a verb; "Let me." is rare
    if last in _WEAK_DETERMINERS:
        return _pick(end, 0.25, 0.6, 0.8)
    if last in _SLOT_NOUNS and not only:
        return _pick(end, 0.25, 0.6, 0.8)
    if last in _WH:
        if end == _QUESTION:
            return 0.85  # "Sorry, what?"
        if prev in _WH_COMPLETERS or prev == "not" or (last == "why" and prev == "that's"):
            return _pick(end, 0.5, 0.8, 0.85)
        return _pick(end, 0.15, 0.25, 0.85)
    if last in _AUX and not proper:
        if end == _QUESTION:
            return 0.8  # "Do you know what the total is?"
        if sentence_words[0] in _WH and len(sentence_words) <= 3:
            return _pick(end, 0.1, 0.2, 0.8)  # "What is", "Where do I"
        if prev in _ELLIPSIS_SUBJECTS or any(w in _WH for w in sentence_words[:-2]):
            # Elliptical answers and embedded questions: "Yes, it is." / "what the fee was."
            has_answer = any(w in {"yes", "yeah", "no", "nope", "not"} for w in sentence_words)
            return _pick(end, 0.6 if has_answer else 0.35, 0.75, 0.8)
        return _pick(end, 0.1, 0.2, 0.8)
    if last in _NEEDS_OBJECT and prev in _OBJECT_WANTERS:
        return _pick(end, 0.3, 0.7, 0.8)
    if last == "that" and prev in {"so", "think", "said", "mean", "such", "hope", "believe"}:
        return _pick(end, 0.2, 0.35, 0.7)
    return None


def _unfinished_question(sentence_words: list[str]) -> bool:
    """ "Can you", "Is it", "How do I": an auxiliary and its subject, the verb still to come.

    With a form of "be" and a question word the copula is the verb, so "How are you" and
    "What is it" are whole questions.
    """
    n = len(sentence_words)
    if n == 2:
        return sentence_words[0] in _AUX and sentence_words[1] in _QUESTION_SUBJECTS
    return (
        n == 3
        and sentence_words[0] in _WH
        and sentence_words[1] in _AUX - _COPULAS
        and sentence_words[2] in _QUESTION_SUBJECTS
    )


def _question_shaped(sentence_words: list[str]) -> bool:
    return len(sentence_words) >= 3 and sentence_words[0] in _QUESTION_START


def completeness(text: str) -> float:
    """How likely `text` (the transcript so far) is a finished utterance, from 0 to 1.

    Above 0.5 leans complete. The rules look at how the text ends because that is where an
    unfinished utterance shows: a dangling "and", "for", "the", "um", "it's", a number cut
    short, a trailing comma. When nothing dangles, Whisper's terminal punctuation and a few
    shapes (short answers, questions without a question mark) decide. Never raises.
    """
    tail = text[-_TAIL_CHARS:].replace("\u2019", "'").strip()
    if not tail:
        return 0.5
    end = _ending(tail)
    if end == _TRAIL:
        # Whisper writes a trailing comma, dash or ellipsis when the speech stopped mid-phrase.
        return 0.1
    body = tail.rstrip(_STRIP_END)
    if not body:
        return 0.5
    lowered = body.lower()
    if "-" in lowered:
        lowered = _BACKCHANNEL_RE.sub("mhm", lowered)
    sentence = lowered[_last_sentence_start(lowered) :]
    # The rules read at most the last five words; scanning only the end keeps long tails cheap.
    words = _WORD_RE.findall(lowered, max(0, len(lowered) - _WORD_SCAN_CHARS))
    if not words:
        return _pick(end, 0.5, 0.7, 0.7)  # symbols or another script: no evidence either way
    sentence_words = _WORD_RE.findall(sentence) or words[-1:]

    if body[-1].isdigit():
        score = _number_score(body, words, end)
        if score is not None:
            return score
    proper = len(sentence_words) > 1 and body[-len(words[-1]) :][:1].isupper()
    score = _last_word_score(words, sentence_words, end, proper)
    if score is not None:
        return score
    if (
        len(sentence_words) <= 4
        and sentence_words[-1] not in _ANSWER_OPENERS
        and all(w in _ANSWER_WORDS for w in sentence_words)
    ):
        return 0.9  # "yes", "no thanks", "that's all", "okay"
    if end == _QUESTION:
        return 0.9
    if end == _STOP:
        return 0.85
    # No punctuation: Whisper usually punctuates a finished sentence, so lean less hard.
    if _question_shaped(sentence_words):
        return 0.7
    if words[-1] in _CLOSING_WORDS or words[-1] in _NEGATED_AUX:
        return 0.65
    return 0.55


def _check_ms(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
        raise ValueError(f"{name} must be an integer in 0..10000 ms, got {value!r}")
    return value


def _check_score(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(f"{name} must be a number in 0.0..1.0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class TurnEndPolicy:
    """How long a silence ends the caller's turn, given what they have said.

    Three bands rather than a continuous curve: a confident "complete" earns the short wait, a
    confident "incomplete" the long one, and anything the rules are unsure about (or an empty
    transcript, e.g. STT not back yet) the plain VAD default, so a wrong guess costs at most
    the default's latency or patience.
    """

    complete_silence_ms: int = 250
    """Silence that ends a turn whose transcript reads finished: a breath, not a pause."""
    incomplete_silence_ms: int = 1200
    """Silence tolerated mid-phrase: long enough to look up a number or recall a street."""
    default_silence_ms: int = 600
    """For transcripts the rules cannot call either way, and before any transcript exists."""
    complete_threshold: float = 0.7
    """Scores at or above this count as complete."""
    incomplete_threshold: float = 0.3
    """Scores at or below this count as incomplete."""

    def __post_init__(self) -> None:
        short = _check_ms("complete_silence_ms", self.complete_silence_ms)
        long = _check_ms("incomplete_silence_ms", self.incomplete_silence_ms)
        default = _check_ms("default_silence_ms", self.default_silence_ms)
        if not short <= default <= long:
            raise ValueError(
                "default_silence_ms must lie in complete_silence_ms..incomplete_silence_ms "
                f"({short}..{long}), got {default}"
            )
        hi = _check_score("complete_threshold", self.complete_threshold)
        lo = _check_score("incomplete_threshold", self.incomplete_threshold)
        if not lo < hi:
            raise ValueError(
                f"incomplete_threshold must be below complete_threshold ({hi}), got {lo}"
            )

    def silence_needed_ms(self, text: str) -> int:
        """Silence after the last speech that ends the turn, for transcript `text`."""
        if not text.strip():
            return self.default_silence_ms
        score = completeness(text)
        if score >= self.complete_threshold:
            return self.complete_silence_ms
        if score <= self.incomplete_threshold:
            return self.incomplete_silence_ms
        return self.default_silence_ms

    def decide(self, text: str, silence_ms: float) -> bool:
        """Whether `silence_ms` of silence since the last speech ends the turn for `text`."""
        if (
            isinstance(silence_ms, bool)
            or not isinstance(silence_ms, int | float)
            or math.isnan(silence_ms)
            or silence_ms < 0
        ):
            raise ValueError(f"silence_ms must be a number >= 0, got {silence_ms!r}")
        return silence_ms >= self.silence_needed_ms(text)
