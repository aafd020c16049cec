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


def test_demo_holds_a_conversation_with_the_local_engines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "call.wav"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "loading speech recogniser" in text and "ready" in text  # progress while loading
    caller = [
        line.split(":", 1)[1].strip().lower()
        for line in text.splitlines()
        if line.startswith("  caller:")
    ]
    agent = [
        line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("  agent :")
    ]
    assert any("sunday" in c for c in caller)  # the bundled question, transcribed
    assert any("located" in c for c in caller)
    assert any("Harbour Street" in a for a in agent)  # the scripted answer, spoken
    assert any("[interrupted" in a for a in agent)  # the barge-in cut a reply
    assert agent[-1].startswith("Thanks for calling")  # goodbye, then the agent hung up
    assert text.count("first frame sent") >= 4  # a waterfall per turn
    assert "closed: 1000 conversation finished" in text
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 2, 2)
        assert w.getnframes() > 8000 * 20  # the whole call, both sides
