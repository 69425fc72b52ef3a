"""`facefuse webui`: the local Gradio app."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BackendError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("webui", help="start the local WebUI (http://127.0.0.1:7860)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--outputs", default="outputs", help="folder for saved results")
    p.set_defaults(func=cmd_webui)


def cmd_webui(args: argparse.Namespace) -> int:
    try:
        from ..webui import launch
    except ImportError as exc:
        raise BackendError(f"the WebUI needs gradio: pip install -e . ({exc})") from None
    launch(args.host, args.port, Path(args.outputs))
    return 0
