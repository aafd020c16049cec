"""A scripted responder: the LLM of the offline demo, configured in a TOML file.

No model, no keys: a greeting, keyword rules and a fallback line are enough for a demo call
to converse. It implements `ChatLLM` exactly as a real model would (streamed, cancellable), so
the rest of the engine (clause splitting, TTS, barge-in) is exercised the same way.

Script format::

    greeting = "Hello, ..."          # said when the conversation has no user turn yet
    fallback = "Sorry, ..."          # said when no rule matches
    goodbye = "Goodbye!"             # optional: said on a goodbye keyword; ends the call
    goodbye_keywords = ["bye"]       # optional, default ["bye", "goodbye"]

    [[rule]]
    keywords = ["hours", "open"]     # whole words or phrases, case-insensitive
    answer = "We are open ..."

Rules are tried in file order and the first whose keyword occurs in the caller's last message
wins, so a script author orders specific rules before general ones.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any, Final

from voxrelay.conversation.providers import CancelToken, Message

__all__ = ["DEFAULT_SCRIPT", "Rule", "Script", "ScriptError", "ScriptedLLM"]

DEFAULT_SCRIPT: Final = "default_script.toml"
_TOP_KEYS: Final = frozenset({"greeting", "fallback", "goodbye", "goodbye_keywords", "rule"})
_RULE_KEYS: Final = frozenset({"keywords", "answer"})
_DEFAULT_GOODBYE_KEYWORDS: Final = ("bye", "goodbye")
# Word pieces keep their leading whitespace so that joining the stream gives the answer back.
_PIECE: Final = re.compile(r"\s*\S+")


class ScriptError(ValueError):
    """The script file is not valid; the message names the file and the bad key."""


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive, any whitespace between the words of a phrase."""
    words = [re.escape(w) for w in keyword.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Rule:
    keywords: tuple[str, ...]
    answer: str
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_patterns", tuple(_keyword_pattern(k) for k in self.keywords))

    def matches(self, text: str) -> bool:
        return any(p.search(text) for p in self._patterns)


@dataclass(frozen=True, slots=True)
class Script:
    greeting: str
    fallback: str
    rules: tuple[Rule, ...] = ()
    goodbye: str | None = None
    goodbye_keywords: tuple[str, ...] = _DEFAULT_GOODBYE_KEYWORDS

    @classmethod
    def parse(cls, data: dict[str, Any], source: str) -> Script:
        """Validate a decoded TOML table; `source` names the file in every error."""
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ScriptError(
                f"{source}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(_TOP_KEYS))}"
            )
        greeting = _text(data, "greeting", source, required=True)
        fallback = _text(data, "fallback", source, required=True)
        goodbye = _text(data, "goodbye", source, required=False)
        goodbye_keywords = (
            _keywords(data["goodbye_keywords"], "goodbye_keywords", source)
            if "goodbye_keywords" in data
            else _DEFAULT_GOODBYE_KEYWORDS
        )
        raw_rules = data.get("rule", [])
        if not isinstance(raw_rules, list):
            raise ScriptError(f"{source}: 'rule' must be an array of tables ([[rule]])")
        rules = []
        for i, raw in enumerate(raw_rules):
            where = f"rule[{i}]"
            if not isinstance(raw, dict):
                raise ScriptError(f"{source}: {where} must be a table ([[rule]])")
            bad = sorted(set(raw) - _RULE_KEYS)
            if bad:
                raise ScriptError(
                    f"{source}: unknown key '{where}.{bad[0]}'; valid: keywords, answer"
                )
            if "keywords" not in raw:
                raise ScriptError(f"{source}: '{where}.keywords' is missing")
            keywords = _keywords(raw["keywords"], f"{where}.keywords", source)
            answer = _text(raw, "answer", source, required=True, where=f"{where}.answer")
            assert answer is not None
            rules.append(Rule(keywords, answer))
        assert greeting is not None and fallback is not None
        return cls(greeting, fallback, tuple(rules), goodbye, goodbye_keywords)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> Script:
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise ScriptError(f"{p}: cannot read script: {exc.strerror or exc}") from exc
        return cls.loads(raw.decode("utf-8", errors="replace"), str(p))

    @classmethod
    def loads(cls, text: str, source: str = "<script>") -> Script:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScriptError(f"{source}: not valid TOML: {exc}") from exc
        return cls.parse(data, source)

    @classmethod
    def default(cls) -> Script:
        """The bundled demo script (a restaurant), read from the installed package."""
        res = resources.files("voxrelay.conversation").joinpath(DEFAULT_SCRIPT)
        return cls.loads(res.read_text(encoding="utf-8"), f"voxrelay/conversation/{DEFAULT_SCRIPT}")

    def is_goodbye(self, text: str) -> bool:
        return self.goodbye is not None and Rule(self.goodbye_keywords, self.goodbye).matches(text)

    def reply(self, messages: Sequence[Message]) -> str:
        """The answer to the last user message (the greeting when there is none)."""
        last = next((m.content for m in reversed(messages) if m.role == "user"), None)
        if last is None:
            return self.greeting
        if self.goodbye is not None and self.is_goodbye(last):
            return self.goodbye
        for rule in self.rules:
            if rule.matches(last):
                return rule.answer
        return self.fallback


def _text(
    data: dict[str, Any], key: str, source: str, *, required: bool, where: str | None = None
) -> str | None:
    name = where or key
    if key not in data:
        if required:
            raise ScriptError(f"{source}: {name!r} is missing")
        return None
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise ScriptError(f"{source}: {name!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _keywords(value: object, name: str, source: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(k, str) and k.strip() for k in value)
    ):
        raise ScriptError(
            f"{source}: {name!r} must be a non-empty list of non-empty strings, got {value!r}"
        )
    return tuple(k.strip() for k in value)


class ScriptedLLM:
    """`ChatLLM` over a `Script`: streams the chosen line word by word."""

    __slots__ = ("script",)

    def __init__(self, script: Script) -> None:
        self.script = script

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> ScriptedLLM:
        return cls(Script.load(path))

    @classmethod
    def default(cls) -> ScriptedLLM:
        return cls(Script.default())

    @classmethod
    def from_options(cls, script: str | PathLike[str] | None = None) -> ScriptedLLM:
        """Registry factory: `make_llm("scripted", script="my.toml")`, default script if None."""
        return cls.default() if script is None else cls.from_file(script)

    def ends_call(self, messages: Sequence[Message]) -> bool:
        """Whether the reply to `messages` is the goodbye (the engine hangs up after it)."""
        last = next((m.content for m in reversed(messages) if m.role == "user"), None)
        return last is not None and self.script.is_goodbye(last)

    async def stream(
        self, messages: Sequence[Message], *, cancel: CancelToken | None = None
    ) -> AsyncIterator[str]:
        # Yield to the loop between words, as a network stream would: a barge-in handled on
        # another task gets to set `cancel`, and the next piece is not produced.
        for m in _PIECE.finditer(self.script.reply(messages)):
            if cancel is not None and cancel.cancelled:
                return
            yield m.group()
            await asyncio.sleep(0)
