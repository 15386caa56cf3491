"""``audiorep serve``: the local web tool for sampling and the codec round trip.

Parses options, builds :class:`audiorep.serve.App`, serves until Ctrl-C; the work is in
:mod:`audiorep.serve`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from audiorep.cli.common import add_device_option, display, fail

TRANSFORMER_HELP = (
    "model picked when the page opens: 'small' (default, shipped), a registry name "
    "(specvqgan-transformer-..., downloaded when picked), 'random' (seeded tiny model, noise) "
    "or a transformer file / authors' logdir"
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="local web tool: sample SpecVQGAN codes live, codec round trips, A/B listening",
        description="Serve a web page (http://127.0.0.1:8765/ by default) to sample sounds "
        "from a SpecVQGAN transformer (class, features or video condition; temperature, "
        "top-k, top-p, seed, priming, length) while the spectrogram and the attention of each "
        "step stream in, and to run audio through the neural codec (codes, bitrate, A/B "
        "playback). Only this machine can reach it unless --host says otherwise.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--transformer", default="small", help=TRANSFORMER_HELP)
    p.add_argument(
        "--codec", default="small", help="codec of the round trip (as `audiorep codec --codec`)"
    )
    p.add_argument(
        "--vocoder",
        default="small",
        help="vocoder: 'small', 'griffin-lim', a file or 'specvqgan-melgan'",
    )
    p.add_argument(
        "--judge",
        default=None,
        metavar="PATH",
        help="show top-10 class predictions with this judge: a .safetensors written by "
        "`audiorep specvqgan train-judge`, or Melception weights (the authors' .pt, a "
        "converted .safetensors or specvqgan-melception); default: none",
    )
    p.add_argument(
        "--judge-classes",
        default=None,
        metavar="FILE",
        help="class names for the judge, one per line",
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=200.0, help="largest upload in MB (default 200)"
    )
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    add_device_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiorep.serve import App, ServeConfig, make_server
    from audiorep.serve.server import is_loopback

    if not 0 <= args.port <= 65535:
        return fail("serve", f"--port must be 0-65535, got {args.port}")
    if not is_loopback(args.host):
        print(
            f"audiorep serve: warning: binding {args.host}: anyone who can reach this machine "
            "can use the tool, upload files and run the models (no authentication)",
            file=sys.stderr,
        )
    config = ServeConfig(
        transformer=args.transformer,
        codec=args.codec,
        vocoder=args.vocoder,
        judge=args.judge,
        judge_classes=args.judge_classes,
        device=args.device,
        max_upload_mb=args.max_upload_mb,
    )
    app = App(config)
    try:
        server = make_server(app, args.host, args.port)
    except OSError as exc:
        app.close()
        return fail("serve", f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})")
    print(display(f"audiorep serve: {server.url} (Ctrl-C stops)"), flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("audiorep serve: stopped", file=sys.stderr)
    finally:
        app.jobs.closed.set()  # ends the event streams and queued jobs
        server.server_close()
        app.close()
    return 0
