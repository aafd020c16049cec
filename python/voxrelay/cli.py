"""`voxrelay` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="voxrelay", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "demo",
        help="a phone conversation with the local engines: server + simulated caller "
        "(no network, no keys)",
    )
    d.add_argument(
        "--out", default="voxrelay-demo.wav", help="stereo WAV of the call (caller left)"
    )
    d.add_argument(
        "--media",
        action="store_true",
        help="only the media path: a call through jitter buffer, VAD and codecs, no engines",
    )
    d.add_argument("--loss", type=float, default=None, help="packet loss rate (bursty)")
    d.add_argument("--reorder", type=float, default=None, help="share of packets swapped")
    d.add_argument("--seed", type=int, default=7)
    _engine_flags(d)
    sv = sub.add_parser(
        "serve",
        help="run the relay server (Twilio Media Streams on /twilio, webhook on /twilio/voice)",
        description="Settings come from defaults < --config TOML < VOXRELAY_* environment "
        "variables (e.g. VOXRELAY_TWILIO_AUTH_TOKEN) < these flags.",
    )
    sv.add_argument("--host", default=None)
    sv.add_argument("--port", type=int, default=None, help="0 picks a free port")
    sv.add_argument("--agent", default=None, help="echo, or package.module:factory")
    sv.add_argument("--config", default=None, help="TOML file (top level or [voxrelay] table)")
    sv.add_argument(
        "--public-url", default=None, help="https://host[/base] as the platform sees us"
    )
    sv.add_argument("--drain-timeout", type=float, default=None, dest="drain_timeout_s")
    _engine_flags(sv)
    sv.add_argument("--log-level", default=None)
    c = sub.add_parser(
        "call",
        help="phone simulator: call a relay as Twilio would, with real-time audio from a WAV",
    )
    c.add_argument("url", help="ws(s)://host:port/twilio")
    c.add_argument("--wav", required=True, help="caller audio (any common rate/width)")
    c.add_argument("--out", default=None, help="WAV of what the caller heard")
    c.add_argument("--jitter-ms", type=float, default=0.0)
    c.add_argument("--loss", type=float, default=0.0, help="packet loss probability")
    c.add_argument("--reorder", type=float, default=0.0, help="probability of a swap")
    c.add_argument("--dtmf", default="", help="digits pressed after the audio")
    c.add_argument("--calls", type=int, default=1, help="simultaneous calls")
    c.add_argument(
        "--tail",
        type=float,
        default=3.0,
        help="seconds of silence after the audio (with --converse: after the last reply)",
    )
    c.add_argument("--auth-token", default=None, help="sign the upgrade as Twilio does")
    c.add_argument("--param", action="append", default=[], help="customParameters k=v")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument(
        "--converse",
        action="store_true",
        help="take turns: say each utterance of the WAV after the agent's reply to the last",
    )
    c.add_argument(
        "--barge-in",
        action="append",
        default=[],
        metavar="I:MS",
        help="with --converse: start utterance I+1 MS ms into the reply to utterance I "
        "(0-based; repeatable)",
    )
    c.add_argument("--out-both", default=None, help="stereo WAV: caller said (left), heard (right)")
    c.add_argument(
        "--token",
        default=None,
        help="the relay's stream secret: sent as customParameter voxrelay_token and used "
        "to read the call's turn records",
    )
    args = ap.parse_args(argv)
    if args.command == "call":
        from voxrelay.simulator import call_main

        try:
            params = dict(p.split("=", 1) for p in args.param)
        except ValueError:
            print("voxrelay call: --param takes k=v", file=sys.stderr)
            return 2
        try:
            barge_in = {int(i): int(ms) for i, ms in (b.split(":", 1) for b in args.barge_in)}
        except ValueError:
            print("voxrelay call: --barge-in takes UTTERANCE:MS (integers)", file=sys.stderr)
            return 2
        try:
            return call_main(
                args.url,
                args.wav,
                out=args.out,
                jitter_ms=args.jitter_ms,
                loss=args.loss,
                reorder=args.reorder,
                dtmf=args.dtmf,
                calls=args.calls,
                tail_s=args.tail,
                auth_token=args.auth_token,
                params=params,
                seed=args.seed,
                converse=args.converse,
                barge_in=barge_in,
                out_both=args.out_both,
                token=args.token,
            )
        except (OSError, ValueError) as e:
            print(f"voxrelay call: {e}", file=sys.stderr)
            return 2
    if args.command == "serve":
        import os

        from voxrelay.server import run
        from voxrelay.settings import load_settings

        try:
            settings = load_settings(
                config=args.config or os.environ.get("VOXRELAY_CONFIG"),
                overrides={
                    "host": args.host,
                    "port": args.port,
                    "agent": args.agent,
                    "public_url": args.public_url,
                    "drain_timeout_s": args.drain_timeout_s,
                    "log_level": args.log_level,
                    "stt": args.stt,
                    "llm": args.llm,
                    "tts": args.tts,
                    "llm_script": args.script,
                },
            )
        except (OSError, ValueError) as e:
            print(f"voxrelay serve: {e}", file=sys.stderr)
            return 2

        def ready(server: object) -> None:
            port = getattr(server, "port", 0)
            print(f"voxrelay: listening on {settings.host}:{port}", flush=True)

        try:
            return run(settings, ready, progress=lambda msg: print(f"voxrelay: {msg}", flush=True))
        except (ValueError, ImportError, OSError) as e:
            # Unknown engine, missing extra, bad script; the port taken or not ours to bind.
            print(f"voxrelay serve: {e}", file=sys.stderr)
            return 2
    if args.command == "demo":
        if args.media:
            from voxrelay.demo import run_media_demo

            return run_media_demo(
                out=args.out,
                loss=0.05 if args.loss is None else args.loss,
                reorder=0.02 if args.reorder is None else args.reorder,
                seed=args.seed,
            )
        from voxrelay.conversation_demo import run_conversation_demo

        return run_conversation_demo(
            out=args.out,
            stt=args.stt,
            llm=args.llm,
            tts=args.tts,
            script=args.script,
            loss=args.loss or 0.0,
            seed=args.seed,
        )
    return 2


def _engine_flags(p: argparse.ArgumentParser) -> None:
    from voxrelay.conversation.providers import available_llms, available_stts, available_ttss

    p.add_argument("--stt", default=None, help=f"speech-to-text: {', '.join(available_stts())}")
    p.add_argument("--llm", default=None, help=f"language model: {', '.join(available_llms())}")
    p.add_argument("--tts", default=None, help=f"text-to-speech: {', '.join(available_ttss())}")
    p.add_argument("--script", default=None, help="TOML script for --llm scripted")


if __name__ == "__main__":
    sys.exit(main())
