"""The offline engines of the `voxrelay[local]` extra, with the real models.

The extra is optional (GPL) for users, but the test command installs it, so a missing or broken
install fails here instead of skipping. These run the real piper, espeak-ng and Whisper models
(a few seconds in all).
"""

from __future__ import annotations

import asyncio

import espeakng_loader  # noqa: F401  (the [local] extra the test command installs)
import faster_whisper  # noqa: F401  (the [local] extra the test command installs)
import piper  # noqa: F401  (the [local] extra the test command installs)
import pytest
from voxrelay import media
from voxrelay.conversation.phone_audio import PhoneEncoder
from voxrelay.conversation.providers import (
    PCM16_16K,
    PCM16_22K,
    ULAW_8K,
    AudioChunk,
    CancelToken,
    StreamingSTT,
    StreamingTTS,
    Transcript,
    make_stt,
    make_tts,
)

QUESTION = "What time do you open on Sunday?"


async def speak(tts: StreamingTTS, text: str) -> bytes:
    chunks = [c async for c in tts.synthesize(text)]
    assert chunks
    assert {(c.sample_rate, c.encoding) for c in chunks} == {(22050, "pcm16")}
    return b"".join(c.pcm for c in chunks)


def to_16k(pcm_22k: bytes) -> bytes:
    rs = media.Resampler(22050, 16000)
    return rs.process(pcm_22k) + rs.flush()


async def transcribe(stt: StreamingSTT, pcm_16k: bytes) -> Transcript:
    events = stt.events()
    for i in range(0, len(pcm_16k), 640):  # 20 ms frames, as the session sends them
        stt.send_audio(pcm_16k[i : i + 640])
    await stt.finalize()
    return await anext(events)


@pytest.fixture(scope="module")
def stt() -> StreamingSTT:
    return make_stt("whisper-local")


@pytest.mark.parametrize("name", ["piper-local", "espeak-local"])
def test_spoken_question_round_trips_through_whisper(stt: StreamingSTT, name: str) -> None:
    async def run() -> tuple[Transcript, float]:
        tts = make_tts(name)
        assert tts.output_format == PCM16_22K
        pcm = await speak(tts, QUESTION)
        await tts.close()
        await stt.start()
        return await transcribe(stt, to_16k(pcm)), len(pcm) / 2 / 22.05

    result, ms = asyncio.run(run())
    assert result.is_final
    assert "sunday" in result.text.lower()
    assert 500 < ms < 6000  # a short sentence, not silence or garbage
    assert result.start_ms == 0.0
    assert abs(result.end_ms - ms) < 20  # the resampler's tail rounding only
    assert result.confidence is not None and 0.0 < result.confidence <= 1.0


def test_piper_without_noise_says_the_same_thing_the_same_way() -> None:
    # What the Whisper tests rely on for audio that does not change between runs.
    async def run() -> list[bytes]:
        tts = make_tts("piper-local", noise_scale=0.0, noise_w_scale=0.0)
        out = [await speak(tts, QUESTION) for _ in range(2)]
        await tts.close()
        return out

    first, second = asyncio.run(run())
    assert first == second and len(first) > 22050  # over half a second of speech
    with pytest.raises(ValueError, match=r"noise_scale 3.0 out of range \[0.0, 2.0\]"):
        make_tts("piper-local", noise_scale=3.0)
    with pytest.raises(ValueError, match=r"noise_w_scale -0.5 out of range"):
        make_tts("piper-local", noise_w_scale=-0.5)


@pytest.mark.parametrize("name", ["piper-local", "espeak-local"])
def test_on_a_phone_leg_the_voices_speak_mulaw_8k(stt: StreamingSTT, name: str) -> None:
    """What the conversation engine asks for: converted on the synthesis thread, and still
    understood after the phone's mu-law and 8 kHz."""

    async def run() -> tuple[Transcript, float]:
        tts = make_tts(name, phone=True)
        assert tts.output_format == ULAW_8K
        chunks = [c async for c in tts.synthesize(QUESTION)]
        await tts.close()
        assert chunks
        assert {(c.sample_rate, c.encoding) for c in chunks} == {(8000, "ulaw")}
        codes = b"".join(c.pcm for c in chunks)
        rs = media.Resampler(8000, 16000, quality="phone")  # as `TwilioInbound` does
        pcm16k = rs.process(media.ulaw_decode(codes)) + rs.flush()
        await stt.start()
        return await transcribe(stt, pcm16k), len(codes) / 8

    result, ms = asyncio.run(run())
    assert "sunday" in result.text.lower()
    assert 500 < ms < 6000


def test_espeak_on_a_phone_leg_is_one_whole_converted_clause() -> None:
    """One chunk per clause, filter tail included: exactly as long as its native audio
    converted. (espeak-ng varies its waveform from run to run, so not sample for sample;
    `test_phone_audio` checks the conversion itself.)"""

    async def run() -> tuple[bytes, list[AudioChunk]]:
        native = make_tts("espeak-local")
        phone = make_tts("espeak-local", output="ulaw8k")
        pcm = b"".join([c.pcm async for c in native.synthesize(QUESTION)])
        return pcm, [c async for c in phone.synthesize(QUESTION)]

    pcm, chunks = asyncio.run(run())
    enc = PhoneEncoder(22050)
    assert len(chunks) == 1
    assert len(chunks[0].pcm) == len(enc.encode(pcm) + enc.finish())


def test_whisper_bookkeeping(stt: StreamingSTT) -> None:
    async def run() -> list[Transcript]:
        assert stt.input_format == PCM16_16K
        await stt.start()
        events = stt.events()
        await stt.finalize()  # nothing buffered: still exactly one (empty) final
        stt.send_audio(b"\x00\x00" * 8000)  # 500 ms of silence
        await stt.finalize()
        await stt.close()
        stt.send_audio(b"\x00\x00" * 160)  # after close: ignored
        return [t async for t in events]

    empty, silent = asyncio.run(run())
    assert empty == Transcript("", True, 0.0, 0.0, None)
    assert (silent.is_final, silent.start_ms, silent.end_ms) == (True, 0.0, 500.0)


def test_piper_cancelled_before_start_yields_nothing() -> None:
    async def run() -> list[AudioChunk]:
        tts = make_tts("piper-local")
        token = CancelToken()
        token.cancel()
        out = [c async for c in tts.synthesize("Hello there.", cancel=token)]
        out += [c async for c in tts.synthesize("   ")]
        await tts.close()
        return out

    assert asyncio.run(run()) == []


def test_local_voices_refuse_an_unknown_output() -> None:
    for name in ("piper-local", "espeak-local"):
        with pytest.raises(ValueError, match="output 'wav' is not supported"):
            make_tts(name, output="wav")


def test_piper_on_a_phone_leg_stops_at_a_cancel_without_its_tail() -> None:
    text = "The first sentence is here. The second one is there."

    async def run() -> tuple[list[AudioChunk], list[AudioChunk]]:
        tts = make_tts("piper-local", phone=True)
        whole = [c async for c in tts.synthesize(text)]
        token = CancelToken()
        cut = []
        async for c in tts.synthesize(text, cancel=token):
            cut.append(c)
            token.cancel()
        await tts.close()
        return whole, cut

    whole, cut = asyncio.run(run())
    # A chunk per sentence, then the filter tail; a cancel after the first ends it there.
    assert len(whole) == 3 and len(whole[2].pcm) < 80
    assert len(cut) == 1 and cut[0].encoding == "ulaw" and len(cut[0].pcm) > 1600


def test_espeak_bad_arguments() -> None:
    with pytest.raises(ValueError, match="espeak-ng voice 'xx-nope' is not available"):
        make_tts("espeak-local", voice="xx-nope")
    with pytest.raises(ValueError, match=r"words_per_minute 10 out of range \[80, 450\]"):
        make_tts("espeak-local", words_per_minute=10)
