# Stubs for the compiled media engine; checked against the module by `python -m mypy.stubtest`.
from typing import Final

from typing_extensions import Buffer

__version__: Final[str]

class MediaError(ValueError): ...
class FrameError(MediaError): ...

def ulaw_decode(data: Buffer) -> bytes: ...
def ulaw_encode(pcm: Buffer) -> bytes: ...
def alaw_decode(data: Buffer) -> bytes: ...
def alaw_encode(pcm: Buffer) -> bytes: ...

# --- resample ---

# --- vad ---

# --- jitter ---

# --- hotpath ---
