"""The `facefuse` command. Options are generated from FusionParams, so they match the API.

Each command family registers its own subparser from its own module (`COMMAND_FAMILIES`,
in the order `facefuse --help` lists them), so a new family is one new file and one line.

Exit codes: 0 ok; 1 a batch had failures (or an unexpected error); 2 bad arguments or
parameters; 3 unreadable or unsupported image; 4 no face found; 5 model or runtime missing.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Iterator, Sequence

from ..errors import FaceFuseError
from . import bench, evaluation, export, images, phone, refiner, video, webui
from .options import add_fusion_options, params_from_args
from .quiet import NativeLogFilter

__all__ = ["add_fusion_options", "build_parser", "main", "params_from_args"]

COMMAND_FAMILIES = (images, webui, bench, export, refiner, evaluation, video, phone)


def _leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser that a command line can end in, nested ones (`eval harmonize`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from _leaf_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="facefuse", description="Offline face fusion: blend a source face into a "
        "template photo, on your own machine.")
    parser.add_argument("--version", action="version", version=f"facefuse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for family in COMMAND_FAMILIES:
        family.register(sub)
    for sp in _leaf_parsers(parser):  # --debug after the command too
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "workers", 0) and args.workers < 0:
        parser.error("--workers must be 0 or more")
    try:
        with NativeLogFilter():
            return int(args.func(args) or 0)
    except FaceFuseError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 1

