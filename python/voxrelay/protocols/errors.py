"""Protocol errors shared by every dialect, and the WebSocket close code each kind deserves.

Every bad message maps to one of a small fixed set of kinds so that per-call counters, logs and
close decisions do not depend on free-form messages.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

ErrorKind = Literal[
    "not_json",
    "not_object",
    "unknown_event",
    "missing_field",
    "bad_field",
    "binary_frame",
    "too_large",
    "bad_media",
    "media_before_start",
    "out_of_order",
    "after_stop",
]

KINDS: Final[frozenset[str]] = frozenset(get_args(ErrorKind))

# A flood of bad input closes the call with 1007 (data we cannot interpret) or 1008 (data the
# protocol does not allow). Binary and oversized frames are policy here: Twilio sends neither,
# and one of them alone is counted, not fatal (the socket-level max_size still answers 1009).
CLOSE_INVALID_DATA: Final = 1007
CLOSE_POLICY: Final = 1008

CLOSE_CODES: Final[dict[str, int]] = {
    # The peer sent data we cannot interpret.
    "not_json": CLOSE_INVALID_DATA,
    "not_object": CLOSE_INVALID_DATA,
    "missing_field": CLOSE_INVALID_DATA,
    "bad_field": CLOSE_INVALID_DATA,
    "bad_media": CLOSE_INVALID_DATA,
    # Well-formed data that the protocol does not allow here.
    "unknown_event": CLOSE_POLICY,
    "media_before_start": CLOSE_POLICY,
    "out_of_order": CLOSE_POLICY,
    "after_stop": CLOSE_POLICY,
    "binary_frame": CLOSE_POLICY,
    "too_large": CLOSE_POLICY,
}


def close_code(kind: str) -> int:
    """The close code for a connection ended because of `kind`."""
    try:
        return CLOSE_CODES[kind]
    except KeyError:
        raise ValueError(
            f"unknown protocol error kind {kind!r}; valid: {', '.join(sorted(KINDS))}"
        ) from None


class ProtocolError(ValueError):
    """A message the platform should not have sent; `kind` is one of `KINDS`.

    Subclasses ValueError so callers that only care about "bad input" can catch the familiar type.
    """

    kind: ErrorKind

    def __init__(self, kind: ErrorKind, message: str) -> None:
        if kind not in KINDS:
            raise ValueError(
                f"unknown protocol error kind {kind!r}; valid: {', '.join(sorted(KINDS))}"
            )
        super().__init__(message)
        self.kind = kind

    @property
    def close_code(self) -> int:
        return CLOSE_CODES[self.kind]

    def __repr__(self) -> str:
        return f"ProtocolError({self.kind!r}, {str(self)!r})"


def classify_frame_error(message: str) -> ErrorKind:
    """Kind of a `voxrelay.media.FrameError` raised by the Rust media hot path.

    The hot path reports one exception class; its message text (see `FrameError`'s Display in
    `rust/voxmedia/src/wire/mod.rs`) tells the cases apart. Anything unrecognised is a bad media
    frame, because only media messages take that path.
    """
    if message.startswith("message of ") and "exceeds the limit" in message:
        return "too_large"
    if message.startswith("malformed JSON"):
        return "not_object" if message.endswith("expected an object") else "not_json"
    if message.startswith("media message has no "):
        return "missing_field"
    if message.startswith('field "media"'):
        return "bad_field"
    return "bad_media"
