"""The hand-written stubs must describe the compiled module exactly (names and signatures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import voxrelay.media
from voxrelay import _media

ROOT = Path(__file__).resolve().parents[1]


def test_stubtest_finds_no_drift() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "voxrelay._media",
            "--allowlist",
            str(ROOT / "stubtest-allowlist.txt"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_media_reexports_every_public_name_of_the_engine() -> None:
    public = {n for n in dir(_media) if not n.startswith("_")}
    assert public == set(voxrelay.media.__all__)
    for name in voxrelay.media.__all__:
        assert getattr(voxrelay.media, name) is getattr(_media, name)
