"""`voxrelay demo`: the README's main job runs end to end and writes what the relay heard."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import pytest
from voxrelay.cli import main


def test_demo_runs_the_media_path_and_writes_the_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "heard.wav"
    assert main(["demo", "--media", "--out", str(out), "--loss", "0.05", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    caller_s = float(re.search(r"caller audio: ([\d.]+) s", text).group(1))  # type: ignore[union-attr]
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        heard_s = w.getnframes() / 16000
    stats = re.search(r"received (\d+), concealed (\d+), silence (\d+)", text)
    assert stats is not None
    played = sum(int(g) for g in stats.groups())
    # Every frame the buffer played is in the file; lost frames were filled, not skipped (only
    # a loss at the very end of the call, which nothing follows, goes unplayed).
    assert heard_s == pytest.approx(played * 0.02)
    assert played > int(stats.group(1))
    assert caller_s - 0.5 <= heard_s <= caller_s + 0.05
    segments = re.search(r"speech segments \(s\): (.*)", text).group(1)  # type: ignore[union-attr]
    assert len(segments.split(", ")) >= 2  # two spoken sentences, separated by a pause
    assert "inbound hot path" in text and "outbound hot path" in text
