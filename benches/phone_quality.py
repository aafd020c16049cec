"""What a caller hears of the outbound resampler: PESQ-NB of TTS speech sent to the phone leg
by `TwilioOutbound` at the phone and the voice qualities, beside mu-law alone.

The speech is piper's local voice (22.05 kHz), converted to each TTS rate by the `high`
resampler. The reference is that speech at 8 kHz by the `high` resampler, not coded; each row
scores the mu-law a phone would receive. "mu-law alone" codes the reference itself: the codec's
own cost, which neither filter can beat. If the phone quality's shorter filters cost anything
audible, its column falls below the other two; if not, all three agree to PESQ's own noise.

Needs the `local` and `test` extras (piper, pesq):

    python benches/phone_quality.py
"""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
from pesq import pesq
from voxrelay import media
from voxrelay.conversation.providers import make_tts

SENTENCES = [
    "Thanks for calling. Our office is open from nine in the morning until six in the evening.",
    "Could you tell me the name on the booking, and the date you would like to change it to?",
    "I have moved your appointment to Thursday at half past three. Is there anything else?",
    "Sorry, I did not catch that. Please say the six digit number on your invoice.",
]


async def piper_speech() -> tuple[bytes, int]:
    tts = make_tts("piper-local")
    await tts.warmup()
    rate = tts.output_format.sample_rate
    pcm = b""
    for text in SENTENCES:
        pcm += b"".join([c.pcm async for c in tts.synthesize(text)])
        pcm += bytes(2 * rate // 2)  # half a second between sentences
    await tts.close()
    return pcm, rate


def convert(pcm: bytes, a: int, b: int) -> bytes:
    if a == b:
        return pcm
    r = media.Resampler(a, b, quality="high")
    return r.process(pcm) + r.flush()


def sent(pcm: bytes, rate: int, quality: str) -> np.ndarray:
    """What the phone receives: the payloads' mu-law, decoded."""
    out = media.TwilioOutbound("MZ1", rate, quality=quality)
    step = rate // 50 * 2
    texts = [m for i in range(0, len(pcm), step) for m in out.process(pcm[i : i + step])]
    texts += out.flush()
    codes = b"".join(base64.b64decode(json.loads(t)["media"]["payload"]) for t in texts)
    return np.frombuffer(media.ulaw_decode(codes), np.int16)


def score(ref: np.ndarray, deg: np.ndarray) -> float:
    n = min(len(ref), len(deg))
    return float(pesq(8000, ref[:n].astype(np.float32), deg[:n].astype(np.float32), "nb"))


def main() -> None:
    speech, native = asyncio.run(piper_speech())
    print(f"{len(speech) / 2 / native:.1f} s of piper speech at {native} Hz\n")
    print("TTS rate   mu-law alone   phone quality   voice quality   latency phone / voice")
    for rate in (16000, 22050, 24000, 44100, 48000):
        pcm = convert(speech, native, rate)
        ref = np.frombuffer(convert(pcm, rate, 8000), np.int16)
        coded = np.frombuffer(media.ulaw_decode(media.ulaw_encode(ref.tobytes())), np.int16)
        phone, voice = sent(pcm, rate, "phone"), sent(pcm, rate, "voice")
        lat = [media.TwilioOutbound("MZ1", rate, quality=q).latency_ms for q in ("phone", "voice")]
        print(
            f"{rate:8d}   {score(ref, coded):12.3f}   {score(ref, phone):13.3f}"
            f"   {score(ref, voice):13.3f}   {lat[0]:.2f} / {lat[1]:.2f} ms"
        )


if __name__ == "__main__":
    main()
