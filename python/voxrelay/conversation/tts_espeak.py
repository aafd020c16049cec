"""espeak-ng TTS through the `espeakng-loader` package: the light offline fallback voice.

Far less intelligible than piper after the phone path (24-33 % vs 1.5 % WER measured) but
tiny and fast (milliseconds per sentence). espeak-ng is GPL and comes only with the optional
`voxrelay[local]` extra. The library is a process-wide singleton and not thread-safe, so every
synthesis in the process runs on one dedicated worker thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from voxrelay.conversation.phone_audio import PhoneEncoder, check_output
from voxrelay.conversation.providers import ULAW_8K, AudioChunk, AudioFormat, CancelToken

__all__ = ["EspeakTTS"]

_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_CHARS_UTF8: Final = 1
_POS_CHARACTER: Final = 1
_EE_OK: Final = 0

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_lock = threading.Lock()
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
_engine: _Espeak | None = None


class _Espeak:
    """The initialised library; only ever used from `_pool`'s single thread."""

    def __init__(self) -> None:
        import espeakng_loader  # type: ignore[import-untyped,import-not-found,unused-ignore]

        lib: Any = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise (data path {data.decode()!r})")
        self.rate = int(rate)
        self.lib = lib
        self.voice: str | None = None
        self._out: list[bytes] = []

        def on_audio(wav: Any, n: int, _events: Any) -> int:
            if n > 0 and wav:
                self._out.append(ctypes.string_at(wav, n * 2))
            return 0

        self._cb = _CALLBACK(on_audio)  # kept alive: the library holds the pointer
        lib.espeak_SetSynthCallback(self._cb)

    def synth(self, text: str, voice: str, rate_wpm: int) -> bytes:
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise ValueError(f"espeak-ng voice {voice!r} is not available")
            self.voice = voice
        self.lib.espeak_SetParameter(1, rate_wpm, 0)  # espeakRATE, absolute
        raw = text.encode("utf-8") + b"\0"
        self._out = []
        err = self.lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != _EE_OK:
            raise RuntimeError(f"espeak-ng synthesis failed (error {err})")
        out, self._out = b"".join(self._out), []
        return out


def _get_engine() -> _Espeak:
    global _engine
    with _lock:
        if _engine is None:
            _engine = _pool.submit(_Espeak).result()
        return _engine


class EspeakTTS:
    """`StreamingTTS` over espeak-ng: one chunk per clause (synthesis is near-instant)."""

    def __init__(
        self, *, voice: str = "en-us", words_per_minute: int = 165, output: str = "native"
    ) -> None:
        if not 80 <= words_per_minute <= 450:
            raise ValueError(f"words_per_minute {words_per_minute} out of range [80, 450]")
        self._phone = check_output(output) == "ulaw8k"
        self._engine = _get_engine()
        self._voice = voice
        self._wpm = words_per_minute
        # Check the voice now, not on the first clause of a call.
        _pool.submit(self._engine.synth, "", voice, words_per_minute).result()
        self._rate = self._engine.rate
        # With output="ulaw8k" (the engine's choice on phone calls) each clause is converted
        # to the phone's mu-law 8 kHz on the synthesis thread (see `phone_audio`).
        self._format = ULAW_8K if self._phone else AudioFormat("pcm16", self._rate)

    @property
    def output_format(self) -> AudioFormat:
        return self._format

    async def synthesize(
        self, text: str, *, cancel: CancelToken | None = None
    ) -> AsyncIterator[AudioChunk]:
        text = text.strip()
        if not text or (cancel is not None and cancel.cancelled):
            return
        loop = asyncio.get_running_loop()
        audio = await loop.run_in_executor(_pool, self._synth, text)
        if audio and not (cancel is not None and cancel.cancelled):
            yield AudioChunk(audio, self._format.sample_rate, self._format.encoding)

    def _synth(self, text: str) -> bytes:
        """One clause, whole (tail included), in `output_format`; runs on the engine's thread."""
        pcm = self._engine.synth(text, self._voice, self._wpm)
        if not self._phone or not pcm:
            return pcm
        encoder = PhoneEncoder(self._rate)
        return encoder.encode(pcm) + encoder.finish()

    async def close(self) -> None:
        pass  # the library and its thread are shared by the process
