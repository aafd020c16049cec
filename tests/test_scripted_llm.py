"""ScriptedLLM: keyword matching, greeting/fallback/goodbye, streaming, cancellation, validation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from voxrelay.conversation.providers import CancelToken, ChatLLM, Message
from voxrelay.conversation.scripted_llm import Script, ScriptedLLM, ScriptError

SCRIPT = """
greeting = "Welcome to the shop."
fallback = "I did not catch that."
goodbye = "Bye now."

[[rule]]
keywords = ["open", "opening hours"]
answer = "We open at nine and close at five."

[[rule]]
keywords = ["price", "open"]
answer = "Everything costs ten dollars."
"""


def llm(text: str = SCRIPT) -> ScriptedLLM:
    return ScriptedLLM(Script.loads(text, "test.toml"))


def user(text: str) -> list[Message]:
    return [Message("system", "be nice"), Message("user", text)]


async def collect(
    model: ChatLLM, messages: Sequence[Message], cancel: CancelToken | None = None
) -> list[str]:
    return [p async for p in model.stream(messages, cancel=cancel)]


def reply(model: ScriptedLLM, messages: Sequence[Message]) -> str:
    return "".join(asyncio.run(collect(model, messages)))


def test_is_a_chat_llm() -> None:
    assert isinstance(llm(), ChatLLM)


def test_greeting_without_user_message() -> None:
    assert reply(llm(), []) == "Welcome to the shop."
    assert reply(llm(), [Message("system", "be nice")]) == "Welcome to the shop."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("When do you OPEN?", "We open at nine and close at five."),
        ("what are your opening   hours", "We open at nine and close at five."),
        ("Is it open, and what's the price?", "We open at nine and close at five."),  # order
        ("what's the PRICE", "Everything costs ten dollars."),
        ("can I use the opener", "I did not catch that."),  # whole words only
        ("reopen the file", "I did not catch that."),
        ("opening", "I did not catch that."),  # "opening hours" is a phrase
        ("", "I did not catch that."),
        ("ok goodbye then", "Bye now."),
        ("Bye!", "Bye now."),
    ],
)
def test_matching(text: str, expected: str) -> None:
    assert reply(llm(), user(text)) == expected


def test_answers_the_last_user_message_only() -> None:
    msgs = [
        Message("user", "price?"),
        Message("assistant", "Everything costs ten dollars."),
        Message("user", "hmm"),
    ]
    assert reply(llm(), msgs) == "I did not catch that."
    # An assistant turn after the user's does not hide it.
    assert reply(llm(), [*msgs[:1], msgs[1]]) == "Everything costs ten dollars."


def test_ends_call_only_with_goodbye() -> None:
    model = llm()
    assert model.ends_call(user("goodbye"))
    assert not model.ends_call(user("price"))
    assert not model.ends_call([])
    no_goodbye = llm(SCRIPT.replace('goodbye = "Bye now."', ""))
    assert not no_goodbye.ends_call(user("goodbye"))
    assert reply(no_goodbye, user("goodbye")) == "I did not catch that."


def test_streams_word_by_word() -> None:
    pieces = asyncio.run(collect(llm(), user("open")))
    assert pieces == ["We", " open", " at", " nine", " and", " close", " at", " five."]


def test_pre_cancelled_token_yields_nothing() -> None:
    token = CancelToken()
    token.cancel("barge-in")
    assert asyncio.run(collect(llm(), user("open"), token)) == []


def test_cancel_mid_stream_from_the_consumer() -> None:
    async def run() -> list[str]:
        token = CancelToken()
        got: list[str] = []
        async for piece in llm().stream(user("open"), cancel=token):
            got.append(piece)
            if len(got) == 3:
                token.cancel()
        return got

    assert asyncio.run(run()) == ["We", " open", " at"]


def test_cancel_mid_stream_from_another_task() -> None:
    """The barge-in handler runs on another task: the stream stops at the next piece."""

    async def run() -> list[str]:
        token = CancelToken()
        first = asyncio.Event()
        got: list[str] = []

        async def consume() -> None:
            async for piece in llm().stream(user("open"), cancel=token):
                got.append(piece)
                first.set()

        async def barge_in() -> None:
            await first.wait()
            token.cancel("barge-in")

        await asyncio.gather(consume(), barge_in())
        assert token.reason == "barge-in"
        return got

    assert asyncio.run(run()) == ["We"]


def test_closing_the_stream_early_is_clean() -> None:
    async def run() -> str:
        agen = llm().stream(user("open"))
        first = await agen.__anext__()
        await agen.aclose()  # type: ignore[attr-defined]
        return first

    assert asyncio.run(run()) == "We"


def test_default_script_converses() -> None:
    model = ScriptedLLM.default()
    assert "Luigi" in reply(model, [])
    assert "open" in reply(model, user("What time do you open on Sunday?")).lower()
    assert "book" in reply(model, user("I'd like to reserve a table")).lower()
    assert "Harbour Street" in reply(model, user("Where are you located?"))
    assert "pizza" in reply(model, user("What's on the menu?"))
    assert model.ends_call(user("No, that's all, bye."))
    assert reply(model, user("Tell me a joke")) == model.script.fallback


def test_from_file_and_options(tmp_path: Path) -> None:
    path = tmp_path / "shop.toml"
    path.write_text(SCRIPT, encoding="utf-8")
    assert reply(ScriptedLLM.from_file(path), user("price")) == "Everything costs ten dollars."
    assert reply(ScriptedLLM.from_options(script=str(path)), []) == "Welcome to the shop."
    assert ScriptedLLM.from_options().script == Script.default()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('fallback = "x"', r"bad\.toml: 'greeting' is missing"),
        ('greeting = "x"', r"bad\.toml: 'fallback' is missing"),
        ('greeting = ""\nfallback = "x"', r"bad\.toml: 'greeting' must be a non-empty string"),
        (
            'greeting = 3\nfallback = "x"',
            r"bad\.toml: 'greeting' must be a non-empty string, got 3",
        ),
        ('greeting = "x"\nfallback = "x"\ngreting = "x"', r"bad\.toml: unknown key 'greting'"),
        ('greeting = "x"\nfallback = "x"\nrule = 5', r"bad\.toml: 'rule' must be an array"),
        (
            'greeting = "x"\nfallback = "x"\n[[rule]]\nkeywords = ["a"]\nanswer = "b"\n'
            '[[rule]]\nkeywords = "a"\nanswer = "b"',
            r"bad\.toml: 'rule\[1\]\.keywords' must be a non-empty list",
        ),
        (
            'greeting = "x"\nfallback = "x"\n[[rule]]\nkeywords = []\nanswer = "b"',
            r"'rule\[0\]\.keywords' must be a non-empty list",
        ),
        (
            'greeting = "x"\nfallback = "x"\n[[rule]]\nkeywords = ["a", " "]\nanswer = "b"',
            r"'rule\[0\]\.keywords' must be a non-empty list of non-empty strings",
        ),
        (
            'greeting = "x"\nfallback = "x"\n[[rule]]\nanswer = "b"',
            r"'rule\[0\]\.keywords' is missing",
        ),
        (
            'greeting = "x"\nfallback = "x"\n[[rule]]\nkeywords = ["a"]',
            r"'rule\[0\]\.answer' is missing",
        ),
        (
            'greeting = "x"\nfallback = "x"\n[[rule]]\nkeywords = ["a"]\nanswer = "b"\nanswr = "c"',
            r"unknown key 'rule\[0\]\.answr'",
        ),
        ('greeting = "x"\nfallback = "x"\ngoodbye_keywords = []', r"'goodbye_keywords' must be"),
        ('greeting = "x"\nfallback = ', r"bad\.toml: not valid TOML"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScriptError, match=match) as info:
        ScriptedLLM.from_file(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ScriptError, match=r"nope\.toml: cannot read script"):
        Script.load(path)
