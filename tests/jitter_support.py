"""Test speech, concealment baselines and network simulation shared by tests/test_jitter.py and
benches/plc_quality.py, benches/jitter_sim.py.

Speech comes from espeak-ng (resampled to 8 kHz by sox) because PESQ needs real speech
structure (voicing, pitch, pauses) that synthetic tones do not have. Network traces are
generated from fixed seeds so every run sees the same packets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call me back tomorrow morning about the delivery of my order.",
    "Thank you for calling, your estimated wait time is about three minutes.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "I would like to change my flight to Friday afternoon if there is a seat available.",
    "Our office hours are nine to five, Monday through Friday, except public holidays.",
]
VOICES = ["en-us", "en-gb+f3", "en-gb-scotland", "en-us+f4"]
FRAME = 160  # 20 ms at 8 kHz


def have_tools() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def speech(voice: str, texts: list[str], speed: int = 150) -> np.ndarray:
    """espeak-ng speech for `texts` at 8 kHz int16, trimmed to whole 20 ms frames."""
    with tempfile.TemporaryDirectory() as d:
        wav, raw = os.path.join(d, "s.wav"), os.path.join(d, "s.raw")
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-g", "6", "-w", wav, " ".join(texts)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["sox", wav, "-r", "8000", "-b", "16", "-c", "1", "-e", "signed-integer", raw],
            check=True,
            capture_output=True,
        )
        x = np.fromfile(raw, dtype="<i2")
    n = len(x) // FRAME * FRAME
    return x[:n].astype(np.int16)


def level(x: np.ndarray, dbov: float = -26.0) -> np.ndarray:
    """Scale so the active (non-pause) samples sit at `dbov`, the P.830 listening level."""
    xf = x.astype(np.float64)
    frames = xf[: len(xf) // FRAME * FRAME].reshape(-1, FRAME)
    e = np.sqrt(np.mean(frames**2, axis=1))
    active = e > 0.05 * e.max()
    rms = np.sqrt(np.mean(frames[active] ** 2))
    y = xf * (32768.0 * 10 ** (dbov / 20) / rms)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def corpus() -> list[np.ndarray]:
    """One clip per voice, in the P.830 layout PESQ is designed for: two sentences separated by
    silence (0.5 s lead, 0.8 s gap, 0.5 s tail), about 8-10 s, active speech at -26 dBov."""
    clips = []
    for i, v in enumerate(VOICES):
        a, b = SENTENCES[(2 * i) % len(SENTENCES)], SENTENCES[(2 * i + 1) % len(SENTENCES)]
        z = lambda s: np.zeros(int(s * 8000), dtype=np.int16)  # noqa: E731
        clips.append(
            level(np.concatenate([z(0.5), speech(v, [a]), z(0.8), speech(v, [b]), z(0.5)]))
        )
    return clips


def loss_mask(n_frames: int, rate: float, seed: int) -> np.ndarray:
    """Independent random frame loss; the first frame is kept so every method has history."""
    m = np.random.default_rng(seed).random(n_frames) < rate
    m[0] = False
    return m


def zero_fill(x: np.ndarray, lost: np.ndarray) -> np.ndarray:
    y = x.copy().reshape(-1, FRAME)
    y[lost] = 0
    return y.reshape(-1)


def repeat_previous(x: np.ndarray, lost: np.ndarray) -> np.ndarray:
    y = x.copy().reshape(-1, FRAME)
    for k in range(1, len(y)):
        if lost[k]:
            y[k] = y[k - 1]
    return y.reshape(-1)


def conceal(x: np.ndarray, lost: np.ndarray, concealer_cls: type) -> np.ndarray:
    """Run voxrelay's Concealer and undo its fixed delay so PESQ compares aligned signals."""
    c = concealer_cls(8000, FRAME)
    frames = x.reshape(-1, FRAME)
    out = b"".join(c.lost() if lost[k] else c.good(frames[k].tobytes()) for k in range(len(frames)))
    y = np.frombuffer(out, dtype="<i2")
    d = c.latency_samples
    return np.concatenate([y[d:], np.zeros(d, dtype=np.int16)])


def conceal_lookahead(x: np.ndarray, lost: np.ndarray, concealer_cls: type) -> np.ndarray:
    """Like `conceal`, but a lost frame followed by received ones gets up to 40 ms of them as
    look-ahead, as the jitter buffer does."""
    c = concealer_cls(8000, FRAME)
    frames = x.reshape(-1, FRAME)
    out = []
    for k in range(len(frames)):
        if not lost[k]:
            out.append(c.good(frames[k].tobytes()))
            continue
        ahead = []
        for j in (k + 1, k + 2):
            if j >= len(frames) or lost[j]:
                break
            ahead.append(frames[j].tobytes())
        out.append(c.lost(lookahead=b"".join(ahead)) if ahead else c.lost())
    y = np.frombuffer(b"".join(out), dtype="<i2")
    d = c.latency_samples
    return np.concatenate([y[d:], np.zeros(d, dtype=np.int16)])


def jitter_relay_path(x: np.ndarray, lost: np.ndarray, jb_cls: type) -> np.ndarray:
    """The relay's arrival-driven path: push received frames, drain `pop_ready`."""
    jb = jb_cls(codec="pcm16")
    frames = x.reshape(-1, FRAME)
    out = []
    for k in range(len(frames)):
        if not lost[k]:
            jb.push(k, 20 * k, frames[k].tobytes(), now_ms=20.0 * k)
        while (r := jb.pop_ready()) is not None:
            out.append(r[0])
    y = np.frombuffer(b"".join(out), dtype="<i2")
    y = np.concatenate([y, np.zeros(len(x) - len(y), dtype=np.int16)])
    d = 30
    return np.concatenate([y[d:], np.zeros(d, dtype=np.int16)])


def pesq_nb(ref: np.ndarray, deg: np.ndarray) -> float:
    from pesq import pesq

    return float(pesq(8000, ref.astype(np.float32), deg.astype(np.float32), "nb"))


def plc_table(
    clips: list[np.ndarray], rate: float, seeds: list[int], concealer_cls: type
) -> dict[str, float]:
    """Mean PESQ-NB of each method over clips x seeds, same loss patterns for all methods."""
    scores: dict[str, list[float]] = {
        "zero-fill": [],
        "repeat-previous": [],
        "voxrelay": [],
        "voxrelay+lookahead": [],
    }
    for i, x in enumerate(clips):
        for s in seeds:
            lost = loss_mask(len(x) // FRAME, rate, 1000 * i + s)
            scores["zero-fill"].append(pesq_nb(x, zero_fill(x, lost)))
            scores["repeat-previous"].append(pesq_nb(x, repeat_previous(x, lost)))
            scores["voxrelay"].append(pesq_nb(x, conceal(x, lost, concealer_cls)))
            scores["voxrelay+lookahead"].append(
                pesq_nb(x, conceal_lookahead(x, lost, concealer_cls))
            )
    return {k: float(np.mean(v)) for k, v in scores.items()}


def gilbert_elliott(n: int, loss: float, burst: float, rng: np.random.Generator) -> np.ndarray:
    """Bursty loss: a two-state chain, every packet lost in the bad state, mean burst length
    `burst` packets and stationary loss rate `loss`."""
    lost = np.zeros(n, dtype=bool)
    if loss <= 0:
        return lost
    p_bg = 1.0 / burst
    p_gb = loss * p_bg / (1.0 - loss)
    bad = False
    u = rng.random(n)
    for i in range(n):
        bad = u[i] >= p_bg if bad else u[i] < p_gb
        lost[i] = bad
    return lost


def delays(sd: np.ndarray, rng: np.random.Generator, base: float = 40.0) -> np.ndarray:
    """One-way delay in ms per packet: a base plus a shifted gamma (shape 2) whose standard
    deviation is `sd`, and 1% spikes (exponential, mean 3 sd) on top: the long tail real paths
    show."""
    sd = np.maximum(sd, 1e-6)
    g = rng.gamma(2.0, sd / np.sqrt(2.0))
    spikes = (rng.random(len(sd)) < 0.01) * rng.exponential(3.0 * sd)
    return base + g + spikes


def simulate(
    jb_factory, segments: list[tuple[float, float, float]], seed: int, frame_ms: int = 20
) -> dict:
    """Drive a clock-driven JitterBuffer with a trace made of `segments`
    (duration_s, jitter_sd_ms, loss_rate). Returns per-tick depths and the final stats.

    Added delay is `current_depth_ms`: how long after the earliest-possible arrival each frame
    is played, i.e. the delay the buffer adds on top of the network's minimum."""
    rng = np.random.default_rng(seed)
    sds, losses = [], []
    for dur, sd, loss in segments:
        n = int(dur * 1000 / frame_ms)
        sds.append(np.full(n, sd))
        losses.append(gilbert_elliott(n, loss, 2.0, rng))
    sd = np.concatenate(sds)
    net_lost = np.concatenate(losses)
    n = len(sd)
    send = np.arange(n) * frame_ms
    arrive = send + delays(sd, rng)
    order = np.argsort(arrive, kind="stable")
    order = order[~net_lost[order]]
    jb = jb_factory()
    # Talk spurts: 1.2 s of a loud tone, 0.8 s of mu-law silence, so the buffer has quiet frames
    # to drop as conversation does.
    from voxrelay.media import ulaw_encode

    tone = (6000 * np.sin(2 * np.pi * 210 * np.arange(FRAME) / 8000)).astype("<i2")
    loud, quiet = ulaw_encode(tone.tobytes()), b"\xff" * FRAME
    depth, target, status = [], [], []
    k = 0
    tick = 7.0  # playout clock phase is unrelated to the sender's
    end = send[-1] + 40.0  # stop with the stream, not in the starvation after it
    while tick < end:
        while k < len(order) and arrive[order[k]] <= tick:
            s = int(order[k])
            jb.push(s, s * frame_ms, loud if s % 100 < 60 else quiet, now_ms=float(arrive[s]))
            k += 1
        _, st = jb.pop(now_ms=tick)
        stats = jb.stats()
        status.append(st)
        depth.append(stats["current_depth_ms"])
        target.append(stats["target_depth_ms"])
        tick += frame_ms
    st = jb.stats()
    started = next(i for i, s in enumerate(status) if s != "silence")
    playing = status[started:]
    d = np.array(depth[started:])
    sent_ok = int((~net_lost).sum())
    return {
        "stats": st,
        "depth": np.array(depth),
        "target": np.array(target),
        "status": status,
        "mean_delay": float(d.mean()),
        "p95_delay": float(np.percentile(d, 95)),
        "late_rate": st["late"] / max(sent_ok, 1),
        "net_loss": float(net_lost.mean()),
        "conceal_ratio": sum(s != "normal" for s in playing) / len(playing),
    }
