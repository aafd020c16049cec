"""The server's own per-message cost, in-process: a call's connection and session driven with
WebSocket bytes (no sockets, no event-loop wake-ups), so what is timed is exactly the Python and
Rust work per message that `bench_server.py` spreads over real calls.

    python benches/server_frame_cost.py

Prints the best of ten blocks of 300 media messages (speech, then silence) through
`RelayConnection.data_received`, and the cost of a mark echo.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_hotpath import speechlike
from call_support import media_frames
from test_relay_connection import _open
from voxrelay.agent import load_agent
from voxrelay.protocols.twilio import (
    connected_message,
    mark_echo_message,
    start_message,
)
from voxrelay.session import Session
from voxrelay.settings import Settings

N = 3000


def best_us(feed: object, frames: list[bytes], block: int = 300) -> float:
    best = float("inf")
    for r in range(len(frames) // block):
        chunk = frames[r * block : (r + 1) * block]
        t = time.perf_counter()
        for f in chunk:
            feed(f)  # type: ignore[operator]
        best = min(best, (time.perf_counter() - t) / block)
    return best * 1e6


async def main() -> None:
    conn, client, transport, _ = await _open(attach=False)
    settings = Settings()
    session = Session(conn, settings, load_agent("echo", settings))
    task = asyncio.get_running_loop().create_task(session.run())
    await asyncio.sleep(0)  # let the session attach itself

    def wire(text: str) -> bytes:
        client.send_text(text.encode())
        return b"".join(client.data_to_send())

    conn.data_received(wire(connected_message()))
    conn.data_received(wire(start_message("MZ1", "CA1", "AC1")))
    speech = speechlike(8000, N * 0.02).tobytes()
    for name, pcm in (("speech", speech), ("silence", bytes(2 * 160 * N))):
        frames = [wire(m) for m in media_frames(pcm, "MZ1")]
        print(f"media message, {name}: {best_us(conn.data_received, frames):.2f} us")
        transport.take()
    marks = [wire(mark_echo_message("MZ1", 10 + i, f"m{i}")) for i in range(N)]
    print(f"mark echo: {best_us(conn.data_received, marks):.2f} us")
    task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
