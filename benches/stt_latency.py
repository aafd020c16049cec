"""Whisper decode latency and accuracy: the 30 s `transcribe` path vs the short-window fast path.

Run: `python benches/stt_latency.py [--repeats N] [--windows 10 15]` (needs the `local` extra).

Restaurant-booking utterances are synthesised with piper, sent through the phone path (8 kHz
mu-law and back to 16 kHz) and decoded by `WhisperSTT.finalize()` with each window; a decode's
time is the median over the repeats (the machine is shared, so single runs are noisy). Word
error rate is against the text piper was given, after normalising case, punctuation and
numbers (Whisper writes "four" or "4", "7:30" or "730" as it likes). Piper's synthesis is
stochastic, so figures move a little between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from call_support import phone_leg  # the phone leg the test suite uses
from voxrelay.conversation.providers import make_tts
from voxrelay.conversation.stt_whisper import WhisperSTT

RATE = 16000
FRAME = 640

UTTERANCES = [
    "Hi, I'd like to book a table for 4 people on Friday at 7:30.",
    "Do you have anything for 2 at 8 pm tonight?",
    "Yes, that works.",
    "My name is Sarah Johnson and my number is 555 2368.",
    "Could we sit outside on the terrace?",
    "Actually, make it 6 people instead of 4.",
    "Is there parking near the restaurant?",
    "We're celebrating a birthday, can you bring a cake?",
    "No, thank you, that's all.",
    "Can I move my booking to the 12th of March at 6:45?",
    "How much is the set menu, is it 35 dollars?",
    "We will be about 15 minutes late.",
]

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = (
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth"
).split()
NUMBERS = {w: str(i) for i, w in enumerate(_UNITS)}
NUMBERS |= {w: str(20 + 10 * i) for i, w in enumerate(_TENS)}
NUMBERS |= {w: f"{i + 1} th" for i, w in enumerate(_ORDINALS)}


def normalise(text: str) -> list[str]:
    """Words to compare: lower case, no punctuation, numbers as digit strings.

    Digit groups are joined ("555 2368" = "555-2368" = "5552368", "7:30" = "730" = "seven
    thirty") because how Whisper groups digits is formatting, not recognition; likewise
    "p.m." = "pm" and "$35" = "35 dollars".
    """
    text = re.sub(r"\b([ap])\.m\.?", r"\1m", text.lower())
    text = re.sub(r"\$(\d+)", r"\1 dollars", text)
    text = re.sub(r"(\d)[:\-.,](\d)", r"\1\2", text)
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1 th", text)
    text = re.sub(r"(\d)([a-z])", r"\1 \2", text)
    words = re.sub(r"[^a-z0-9' ]+", " ", text.replace("-", " ")).split()
    words = " ".join(NUMBERS.get(w, w) for w in words).split()
    out: list[str] = []
    for w in words:
        if w.isdigit() and out and out[-1].isdigit():
            out[-1] += w
        else:
            out.append(w)
    return out


def wer(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    """(edits, reference words): Levenshtein distance over words."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1], len(ref)


async def synthesise() -> list[bytes]:
    tts = make_tts("piper-local")
    out = [phone_leg(b"".join([c.pcm async for c in tts.synthesize(t)])) for t in UTTERANCES]
    await tts.close()
    return out


async def decode(stt: WhisperSTT, pcm: bytes) -> tuple[str, float]:
    await stt.start()
    events = stt.events()
    for i in range(0, len(pcm), FRAME):
        stt.send_audio(pcm[i : i + FRAME])
    t0 = time.perf_counter()
    await stt.finalize()
    elapsed = time.perf_counter() - t0
    return (await anext(events)).text, elapsed


async def timed_warmup(stt: WhisperSTT) -> float:
    t0 = time.perf_counter()
    await stt.warmup()
    return time.perf_counter() - t0


async def main(repeats: int, windows: list[float]) -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores, shared)")
    pcms = await synthesise()
    names = ["30 s transcribe", *(f"fast {w:g} s" for w in windows)]
    engines = [WhisperSTT(fast_window_s=None), *(WhisperSTT(fast_window_s=w) for w in windows)]

    # One-time costs: the first decode in the process vs the next ones (what warmup() hides).
    fast, full = engines[1] if windows else engines[0], engines[0]
    cold = [await timed_warmup(fast), await timed_warmup(fast)]
    cold += [await timed_warmup(full), await timed_warmup(full)]
    print(
        f"warmup (1 s silence): first decode in process {cold[0]:.3f} s, next {cold[1]:.3f} s"
        f" (fast path); first 30 s-window decode {cold[2]:.3f} s, next {cold[3]:.3f} s"
    )

    times: list[list[list[float]]] = [[[] for _ in pcms] for _ in engines]
    texts: list[list[str]] = [["" for _ in pcms] for _ in engines]
    for _ in range(repeats):
        for u, pcm in enumerate(pcms):
            for e, stt in enumerate(engines):  # interleaved: load changes hit every path alike
                texts[e][u], t = await decode(stt, pcm)
                times[e][u].append(t)

    print()
    header = f"{'dur s':>6} " + " ".join(f"{n:>16}" for n in names) + "  text (30 s / differing)"
    print(header)
    for u, pcm in enumerate(pcms):
        cells = " ".join(f"{statistics.median(times[e][u]):16.3f}" for e in range(len(engines)))
        line = f"{len(pcm) / 2 / RATE:6.2f} {cells}  {texts[0][u]}"
        for e in range(1, len(engines)):
            if texts[e][u] != texts[0][u]:
                line += f"\n{'':>6} {'':>{17 * len(engines)}}  {names[e]}: {texts[e][u]}"
        print(line)

    print()
    print(f"{'path':<16} {'median s':>9} {'max s':>7} {'WER %':>6} {'same text as 30 s':>18}")
    refs = [normalise(t) for t in UTTERANCES]
    for e, name in enumerate(names):
        med = [statistics.median(t) for t in times[e]]
        edits = sum(wer(r, normalise(h))[0] for r, h in zip(refs, texts[e], strict=True))
        words = sum(len(r) for r in refs)
        same = sum(a == b for a, b in zip(texts[e], texts[0], strict=True))
        print(
            f"{name:<16} {statistics.median(med):9.3f} {max(med):7.3f}"
            f" {100 * edits / words:6.1f} {same:>11}/{len(pcms)}"
        )
    paths = {n: dict(s.decode_paths) for n, s in zip(names, engines, strict=True)}
    print(f"decode paths (incl. warmups): {paths}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", type=float, nargs="*", default=[10.0, 15.0])
    args = parser.parse_args()
    asyncio.run(main(args.repeats, args.windows))
