"""The demo caller's lines: bundled as 8 kHz WAVs, and the recipe that made them.

`voxrelay demo` must run with no network and start fast, so the caller's speech ships with
the package (about 150 KB) instead of being synthesised each run. It was made with the same
piper voice as the agent, slowed a little and band-limited to the phone's 8 kHz; rerun
`python -m voxrelay.demo_audio` (needs the `local` extra) after editing `CALLER_LINES`.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path
from typing import Final

__all__ = ["CALLER_LINES", "caller_audio"]

CALLER_LINES: Final = (
    ("01-hours", "Hello. What time are you open on Sunday?"),
    ("02-where", "Sorry, where are you located?"),
    ("03-book", "Great. I would like to book a table for four people at seven tonight."),
    ("04-bye", "That's all, thank you. Goodbye!"),
)
"""(file stem, text). Line 2 is meant to interrupt the long answer to line 1."""

_DIR: Final = "data"


def caller_audio() -> list[tuple[str, bytes]]:
    """(text, PCM16 8 kHz) for each bundled line, in order."""
    from voxrelay.simulator import read_wav

    base = resources.files("voxrelay").joinpath(_DIR)
    out = []
    for stem, text in CALLER_LINES:
        with resources.as_file(base.joinpath(f"caller-{stem}.wav")) as path:
            out.append((text, read_wav(path, 8000)))
    return out


async def _synthesise(directory: Path) -> None:
    from voxrelay import media
    from voxrelay.conversation.tts_piper import PiperTTS
    from voxrelay.simulator import write_wav

    tts = PiperTTS(length_scale=1.1)
    for stem, text in CALLER_LINES:
        pcm = b"".join([c.pcm async for c in tts.synthesize(text)])
        rs = media.Resampler(22050, 8000)
        write_wav(directory / f"caller-{stem}.wav", rs.process(pcm) + rs.flush(), 8000)
    await tts.close()


if __name__ == "__main__":
    asyncio.run(_synthesise(Path(__file__).parent / _DIR))
