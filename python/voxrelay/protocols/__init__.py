"""Sans-I/O protocol layer: platform messages in, typed events and message text out.

Nothing in this package opens a socket or reads a clock; the server's I/O layer feeds it
messages and times, so the same code drives the real server, the call simulator and the tests.
"""

from voxrelay.protocols.badinput import BadInputCounter, Verdict
from voxrelay.protocols.errors import (
    CLOSE_CODES,
    KINDS,
    ErrorKind,
    ProtocolError,
    classify_frame_error,
    close_code,
)
from voxrelay.protocols.marks import Cleared, PlayoutTracker
from voxrelay.protocols.signature import compute_signature, validate
from voxrelay.protocols.twilio import StreamState
from voxrelay.protocols.twiml import connect_stream_twiml, public_ws_url

__all__ = [
    "CLOSE_CODES",
    "KINDS",
    "BadInputCounter",
    "Cleared",
    "ErrorKind",
    "PlayoutTracker",
    "ProtocolError",
    "StreamState",
    "Verdict",
    "classify_frame_error",
    "close_code",
    "compute_signature",
    "connect_stream_twiml",
    "public_ws_url",
    "validate",
]
