"""voxrelay: a real-time voice-AI relay with a Rust media engine."""

from voxrelay._media import __version__

__all__ = ["__version__"]
