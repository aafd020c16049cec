"""WhisperSTT's short-window fast path, interims and reuse, with the real model and speech.

Speech is synthesised with piper at test time and sent through the phone path (8 kHz mu-law
and back) so Whisper hears what it hears on a call. Piper's synthesis is stochastic, so the
assertions are about words and bookkeeping, never about exact audio.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import faster_whisper  # noqa: F401  (the [local] extra the test command installs)
import piper  # noqa: F401  (the [local] extra the test command installs)
import pytest
from call_support import phone_leg
from voxrelay.conversation.providers import Transcript, make_tts
from voxrelay.conversation.stt_whisper import WhisperSTT

RATE = 16000
FRAME = 640  # 20 ms of PCM16 at 16 kHz, as the session sends it

QUESTION = "What time do you open on Sunday?"
SIMPLE = [QUESTION, "Could we sit outside on the terrace?", "One of us is allergic to peanuts."]
LONG = [
    "Hello, I would like to book a table for dinner on Saturday evening.",
    "We are a group of six people and one of us uses a wheelchair.",
    "Could you also tell me whether you have a children's menu?",
]


@pytest.fixture(scope="module")
def speech() -> dict[str, bytes]:
    async def run() -> dict[str, bytes]:
        # Piper's noise off: the same audio every run. With it on, one synthesis in a few
        # hundred of "terrace" came out as "tears" to Whisper, and a test failed by chance.
        tts = make_tts("piper-local", noise_scale=0.0, noise_w_scale=0.0)
        out = {}
        for text in {*SIMPLE, *LONG}:
            out[text] = phone_leg(b"".join([c.pcm async for c in tts.synthesize(text)]))
        await tts.close()
        return out

    return asyncio.run(run())


@pytest.fixture
def stt() -> WhisperSTT:
    """A fresh engine per test (closing one is final); the model itself is loaded once."""
    return WhisperSTT()


def silence(ms: int) -> bytes:
    return bytes(ms * RATE // 1000 * 2)


def ms(pcm: bytes) -> float:
    return len(pcm) / 2 * 1000 / RATE


def send(stt: WhisperSTT, pcm: bytes) -> None:
    for i in range(0, len(pcm), FRAME):
        stt.send_audio(pcm[i : i + FRAME])


def decodes(stt: WhisperSTT) -> int:
    return stt.decode_paths["fast"] + stt.decode_paths["full"]


async def drain(events: AsyncIterator[Transcript], stt: WhisperSTT) -> list[Transcript]:
    await stt.close()
    return [t async for t in events]


def test_fast_path_hears_a_question(stt: WhisperSTT, speech: dict[str, bytes]) -> None:
    pcm = speech[QUESTION]

    async def run() -> tuple[list[Transcript], int, int]:
        await stt.start()
        events = stt.events()
        await stt.warmup()  # decodes but emits nothing
        warm = decodes(stt)
        fast = stt.decode_paths["fast"]
        send(stt, pcm)
        await stt.finalize()
        return await drain(events, stt), warm, stt.decode_paths["fast"] - fast

    (final,), warm, fast = asyncio.run(run())
    assert (warm, fast) == (1, 1)
    words = final.text.lower()
    assert "time" in words and "open" in words and "sunday" in words
    assert (final.is_final, final.start_ms, final.end_ms) == (True, 0.0, ms(pcm))
    assert final.confidence is not None and 0.5 < final.confidence <= 1.0
    assert final.text == final.text.strip()


def test_fast_path_gives_the_same_text_as_transcribe(speech: dict[str, bytes]) -> None:
    fast, full = WhisperSTT(), WhisperSTT(fast_window_s=None)

    async def text(s: WhisperSTT, pcm: bytes) -> str:
        await s.start()
        events = s.events()
        send(s, pcm)
        await s.finalize()
        return (await anext(events)).text

    for sentence in SIMPLE:
        assert asyncio.run(text(fast, speech[sentence])) == asyncio.run(
            text(full, speech[sentence])
        ), sentence
    assert (fast.decode_paths["fast"], full.decode_paths["fast"]) == (3, 0)
    assert full.decode_paths["full"] == 3


def test_final_reuses_the_interim(stt: WhisperSTT, speech: dict[str, bytes]) -> None:
    pcm = speech[QUESTION]
    tail = silence(300)  # the caller said nothing more after the interim

    async def run() -> tuple[list[Transcript], int]:
        await stt.start()
        events = stt.events()
        send(stt, silence(200))
        await stt.finalize()  # an earlier utterance: the next one starts 200 ms in
        send(stt, pcm)
        before = decodes(stt)
        await stt.interim()
        send(stt, tail)
        await stt.finalize(reuse_interim=True)
        return await drain(events, stt), decodes(stt) - before

    (_, interim, final), n = asyncio.run(run())
    assert n == 1  # the final did not decode again
    assert "sunday" in interim.text.lower()
    end = ms(silence(200) + pcm)
    assert (interim.is_final, interim.start_ms, interim.end_ms) == (False, 200.0, end)
    assert (final.text, final.confidence) == (interim.text, interim.confidence)
    assert (final.is_final, final.start_ms) == (True, 200.0)
    assert final.end_ms == ms(silence(200) + pcm + tail)  # the final spans all buffered audio


def test_final_decodes_without_a_usable_interim(speech: dict[str, bytes]) -> None:
    question, other = speech[QUESTION], speech[SIMPLE[2]]

    async def run() -> tuple[list[Transcript], list[int]]:
        stt = WhisperSTT()
        await stt.start()
        events = stt.events()
        counts = [decodes(stt)]
        send(stt, question)
        await stt.finalize(reuse_interim=True)  # no interim: decodes
        counts.append(decodes(stt))
        send(stt, other)
        await stt.interim()
        await stt.finalize()  # an interim exists but reuse was not asked: decodes again
        counts.append(decodes(stt))
        send(stt, question)
        await stt.finalize(reuse_interim=True)  # the interim was the previous utterance's
        counts.append(decodes(stt))
        return await drain(events, stt), counts

    (first, interim, second, third), counts = asyncio.run(run())
    assert counts == [0, 1, 3, 4]
    assert [t.is_final for t in (first, interim, second, third)] == [True, False, True, True]
    assert "sunday" in first.text.lower() and "sunday" in third.text.lower()
    assert "peanut" in second.text.lower() and second.text == interim.text
    assert (first.start_ms, third.start_ms) == (0.0, ms(question + other))


def test_long_utterance_takes_the_full_window(stt: WhisperSTT, speech: dict[str, bytes]) -> None:
    gap = silence(700)
    pcm = gap.join(speech[s] for s in LONG)
    assert ms(pcm) > 10_000

    async def run() -> tuple[list[Transcript], int, int]:
        await stt.start()
        events = stt.events()
        fast, full = stt.decode_paths["fast"], stt.decode_paths["full"]
        send(stt, pcm)
        await stt.finalize()
        return (
            await drain(events, stt),
            stt.decode_paths["fast"] - fast,
            stt.decode_paths["full"] - full,
        )

    (final,), fast, full = asyncio.run(run())
    assert (fast, full) == (0, 1)
    words = final.text.lower()
    assert "saturday" in words and "menu" in words
    assert (final.start_ms, final.end_ms) == (0.0, ms(pcm))


def test_finalize_waits_for_a_running_interim(stt: WhisperSTT, speech: dict[str, bytes]) -> None:
    pcm = speech[SIMPLE[1]]

    async def run() -> tuple[list[Transcript], int]:
        await stt.start()
        events = stt.events()
        send(stt, pcm)
        before = decodes(stt)
        # Tasks start in order: the interim is decoding when finalize looks for it.
        await asyncio.gather(stt.interim(), stt.finalize(reuse_interim=True))
        return await drain(events, stt), decodes(stt) - before

    (interim, final), n = asyncio.run(run())
    assert n == 1
    assert "terrace" in final.text.lower()
    assert (interim.is_final, final.is_final) == (False, True)
    assert (final.text, final.confidence, final.end_ms) == (
        interim.text,
        interim.confidence,
        interim.end_ms,
    )


def test_cancelled_interim_is_still_reused(stt: WhisperSTT, speech: dict[str, bytes]) -> None:
    pcm = speech[SIMPLE[1]]

    async def run() -> tuple[list[Transcript], int, BaseException | None]:
        await stt.start()
        events = stt.events()
        send(stt, pcm)
        before = decodes(stt)
        interim = asyncio.ensure_future(stt.interim())

        async def cancel() -> None:
            interim.cancel()

        results = await asyncio.gather(
            interim, stt.finalize(reuse_interim=True), cancel(), return_exceptions=True
        )
        error = results[0] if isinstance(results[0], BaseException) else None
        return await drain(events, stt), decodes(stt) - before, error

    (final,), n, error = asyncio.run(run())
    assert isinstance(error, asyncio.CancelledError)  # the interim emitted nothing
    assert n == 1
    assert final.is_final and "terrace" in final.text.lower()


def test_overlapping_interim_and_plain_finalize_both_decode(
    stt: WhisperSTT, speech: dict[str, bytes]
) -> None:
    pcm = speech[SIMPLE[2]]

    async def run() -> tuple[list[Transcript], int]:
        await stt.start()
        events = stt.events()
        send(stt, pcm)
        before = decodes(stt)
        await asyncio.gather(stt.interim(), stt.finalize())
        return await drain(events, stt), decodes(stt) - before

    (interim, final), n = asyncio.run(run())
    assert n == 2
    assert (interim.is_final, final.is_final) == (False, True)  # never an interim after final
    assert final.text == interim.text and "peanut" in final.text.lower()


def test_interim_of_nothing_and_after_close(stt: WhisperSTT) -> None:
    async def run() -> tuple[list[Transcript], int]:
        await stt.start()
        events = stt.events()
        before = decodes(stt)
        await stt.interim()
        await stt.finalize(reuse_interim=True)
        out = await drain(events, stt)
        await stt.interim()  # closed: no event, no decode
        return out, decodes(stt) - before

    out, n = asyncio.run(run())
    assert out == [Transcript("", False, 0.0, 0.0, None), Transcript("", True, 0.0, 0.0, None)]
    assert n == 0


@pytest.mark.parametrize("window", [9.9, 30.5, float("nan")])
def test_fast_window_out_of_range(window: float) -> None:
    with pytest.raises(ValueError, match=r"fast_window_s .* out of range \[10, 30\]"):
        WhisperSTT(fast_window_s=window)


@pytest.mark.parametrize(
    ("tokens", "loop"),
    [
        ([7, 1, 2, 3, 1, 2, 3, 9], True),  # a three-token phrase said twice in a row
        ([1, 2, 3, 4, 5, 1, 2, 3, 4, 5], True),
        ([1, 2, 3, 4, 1, 2, 3], False),  # not immediately repeated
        ([1, 1, 1, 1], False),  # "no, no, no": short repeats are speech
        ([1, 2, 1, 2, 1, 2], False),
        ([], False),
    ],
)
def test_decoding_loop_detector(tokens: list[int], loop: bool) -> None:
    """A fast-path result that repeats itself is redone with the full window."""
    from voxrelay.conversation.stt_whisper import _repeats

    assert _repeats(tokens) is loop


@pytest.mark.parametrize(
    ("text", "loop"),
    [
        ("Okay. Okay.", True),
        ("Thank you. thank you!", True),
        ("Yes, that works. Yes, that works", True),
        ("No, no, no.", False),  # one sentence
        ("Yes. No. Yes.", False),
        ("It is 10.10. 10.10 is fine.", False),  # decimal points do not end sentences
        ("", False),
    ],
)
def test_repeated_sentence_detector(text: str, loop: bool) -> None:
    """Whisper tiny.en on a short window sometimes says a short answer twice."""
    from voxrelay.conversation.stt_whisper import _repeats_sentence

    assert _repeats_sentence(text) is loop
