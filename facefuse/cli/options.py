"""Fusion options generated from FusionParams, shared by every command that fuses."""

from __future__ import annotations

import argparse

from ..params import PRESETS, FusionParams, param_specs, preset


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _face_index(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a face number or 'all', got {text!r}"
                                         ) from None


def add_fusion_options(parser: argparse.ArgumentParser) -> None:
    """One option per FusionParams field (defaults None: unset options keep the preset's)."""
    group = parser.add_argument_group("fusion options (see FusionParams)")
    group.add_argument("--preset", choices=sorted(PRESETS),
                       help="start from a preset; explicit options override it")
    for f in param_specs():
        meta, flag = f.metadata, _flag(f.name)
        help_text = meta["help"]
        if meta["kind"] == "float":
            group.add_argument(flag, type=float, default=None, metavar="F",
                               help=f"{help_text} [{meta['min']}..{meta['max']}, "
                                    f"default {f.default}]")
        elif meta["kind"] == "int":
            group.add_argument(flag, type=int, default=None, metavar="K",
                               help=f"{help_text} [default {f.default}]")
        elif meta["kind"] == "face":
            group.add_argument(flag, type=_face_index, default=None, metavar="K|all",
                               help=f"{help_text} [default {f.default}]")
        elif meta["kind"] == "choice":
            group.add_argument(flag, choices=meta["choices"], default=None,
                               help=f"{help_text} [default {f.default}]")
        elif meta["kind"] == "int_choice":
            group.add_argument(flag, type=int, choices=meta["choices"], default=None,
                               help=f"{help_text} [default {f.default}]")
        elif meta["kind"] == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=f"{help_text} [default {f.default}]")


def params_from_args(args: argparse.Namespace) -> FusionParams:
    given = {f.name: getattr(args, f.name) for f in param_specs()
             if getattr(args, f.name, None) is not None}
    if args.preset:
        return preset(args.preset, **given)
    return FusionParams().with_overrides(**given)
