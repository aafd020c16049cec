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

from typing import final  # noqa: E402  (kept in this section so domain branches merge cleanly)

@final
class Vad:
    def __new__(
        cls,
        sample_rate: int,
        *,
        frame_ms: int = 20,
        threshold: float | None = None,
        release: float | None = None,
        band_margin_db: float | None = None,
        band_cap_db: float | None = None,
        spread_factor: float | None = None,
        min_level_dbfs: float | None = None,
        min_band_dbfs: float | None = None,
        quant_snr_db: float | None = None,
        onset_ms: int | None = None,
        strong_factor: float | None = None,
        hangover_ms: int | None = None,
        noise_adapt_ms: float | None = None,
        noise_rise_ms: float | None = None,
        noise_fall_ms: float | None = None,
        band_weights: tuple[float, float, float, float, float] | None = None,
    ) -> Vad: ...
    def is_speech(self, frame: Buffer) -> bool: ...
    def process(self, pcm: Buffer) -> list[bool]: ...
    def reset(self) -> None: ...
    @property
    def level_dbfs(self) -> float: ...
    @property
    def noise_floor_dbfs(self) -> float: ...
    @property
    def frame_len(self) -> int: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def frame_ms(self) -> int: ...
    @property
    def latency_ms(self) -> int: ...

# --- jitter ---
from typing import final as _final

@_final
class JitterBuffer:
    def __new__(
        cls,
        *,
        sample_rate: int = 8000,
        frame_ms: int = 20,
        codec: str = "ulaw",
        min_delay_ms: int = 20,
        max_delay_ms: int = 500,
        max_packets: int | None = None,
        quantile: float = 0.97,
        forget_factor: float = 0.997,
        reorder_window: int = 2,
        initial_delay_ms: int = 60,
    ) -> JitterBuffer: ...
    def push(
        self, seq: int, timestamp_ms: int, payload: Buffer, *, now_ms: float | None = None
    ) -> str: ...
    def pop(self, *, now_ms: float | None = None) -> tuple[bytes, str]: ...
    def pop_ready(self) -> tuple[bytes, str] | None: ...
    def stats(self) -> dict[str, int | float]: ...
    def reset(self) -> None: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def frame_len(self) -> int: ...
    @property
    def payload_len(self) -> int: ...

@_final
class Concealer:
    def __new__(cls, sample_rate: int, frame_len: int) -> Concealer: ...
    def good(self, frame: Buffer) -> bytes: ...
    def lost(self, *, lookahead: Buffer | None = None) -> bytes: ...
    def reset(self) -> None: ...
    @property
    def latency_samples(self) -> int: ...
    @property
    def frame_len(self) -> int: ...

# --- hotpath ---
