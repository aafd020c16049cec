"""A minimal plain-Python Twilio echo server: the baseline `bench_server.py --server parrot`
measures beside voxrelay in the same run.

It is what a developer writes first with the usual libraries, and as lean as that gets:
`websockets`' standard `async for message in ws` loop on uvloop, `json`, `base64`, `audioop`
for G.711 and webrtcvad for voice activity, on the phone's own 8 kHz (no resampling, no
jitter buffer, no concealment, no marks, no barge-in). After each utterance (80 ms of speech
to start, `--speech-end-ms` of silence to end) it plays the utterance back as 20 ms mu-law
media messages paced by `asyncio.sleep` on the loop clock.

    python benches/parrot_server.py --port 0     # prints "listening on 127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import warnings

import webrtcvad
from websockets.asyncio.server import ServerConnection, serve

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FRAME_S = 0.02


async def _play(ws: ServerConnection, sid: str, pcm: bytes) -> None:
    codes = audioop.lin2ulaw(pcm, 2)
    loop = asyncio.get_running_loop()
    t = loop.time()
    for i in range(0, len(codes) - 159, 160):
        payload = base64.b64encode(codes[i : i + 160]).decode()
        await ws.send(
            json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}})
        )
        t += FRAME_S
        await asyncio.sleep(max(0.0, t - loop.time()))


async def handler(ws: ServerConnection, speech_end_ms: int) -> None:
    vad = webrtcvad.Vad(3)
    sid = ""
    parts: list[bytes] = []
    speech_ms = silence_ms = 0
    talking = False
    replies: set[asyncio.Task[None]] = set()
    async for message in ws:
        m = json.loads(message)
        event = m.get("event")
        if event == "media":
            pcm = audioop.ulaw2lin(base64.b64decode(m["media"]["payload"]), 2)
            if vad.is_speech(pcm, 8000):
                speech_ms, silence_ms = speech_ms + 20, 0
            else:
                speech_ms, silence_ms = 0, silence_ms + 20
            if talking or speech_ms:
                parts.append(pcm)
            if not talking and speech_ms >= 80:
                talking = True
            elif not talking and not speech_ms:
                parts.clear()
            elif talking and silence_ms >= speech_end_ms:
                talking = False
                task = asyncio.create_task(_play(ws, sid, b"".join(parts)))
                replies.add(task)
                task.add_done_callback(replies.discard)
                parts = []
        elif event == "start":
            sid = m["start"]["streamSid"]
        elif event == "stop":
            break
    for task in replies:
        task.cancel()


async def main(port: int, speech_end_ms: int) -> None:
    async with serve(
        lambda ws: handler(ws, speech_end_ms), "127.0.0.1", port, compression=None
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{bound}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--speech-end-ms", type=int, default=500)
    a = ap.parse_args()
    import uvloop

    uvloop.run(main(a.port, a.speech_end_ms))
