"""`facefuse fuse` and `facefuse batch`: one template, or a folder of them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import FaceFuseError
from .options import add_fusion_options, params_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuse", help="fuse one source face into one template photo")
    p.add_argument("source", help="photo with the face to put in")
    p.add_argument("template", help="photo whose pose, expression and light are kept")
    p.add_argument("-o", "--output", required=True, help="result file (.jpg .png .webp ...)")
    p.add_argument("--timings", action="store_true", help="print per-stage milliseconds")
    add_fusion_options(p)
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("batch", help="fuse one source face into every photo of a folder")
    p.add_argument("source", help="photo with the face to put in")
    p.add_argument("template_dir", help="folder of template photos")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=0,
                   help="worker threads (default: one per core)")
    p.add_argument("--ext", default=None, help="output extension, e.g. .png (default: the "
                   "template's own)")
    p.add_argument("--report", default=None, help="write a JSON report of every photo")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_fusion_options(p)
    p.set_defaults(func=cmd_batch)


def cmd_fuse(args: argparse.Namespace) -> int:
    from ..imageio import save_format, save_image
    from ..pipeline import fuse

    params = params_from_args(args)
    save_format(args.output)  # a bad extension fails before any work
    started = time.perf_counter()
    result = fuse(args.source, args.template, params)
    with result.timings.stage("save"):
        save_image(args.output, result.image, note=f"ratio={params.ratio}")
    total = (time.perf_counter() - started) * 1000
    faces = len(result.template_faces)
    print(f"saved {args.output} ({result.image.shape[1]}x{result.image.shape[0]}, "
          f"{faces} face{'s' if faces > 1 else ''} fused)")
    if args.timings:
        for name, ms in result.timings.items():
            print(f"  {name:<9}{ms:8.1f} ms")
        print(f"  {'total':<9}{total:8.1f} ms (including start-up: model loading)")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..imageio import save_format
    from ..pipeline import FaceFuser
    from ..runners.batch import list_templates, run_batch

    params = params_from_args(args)
    if args.ext:
        save_format("x" + args.ext)
    templates, ignored = list_templates(Path(args.template_dir))
    if not templates:
        raise FaceFuseError(f"no images (jpg, png, webp, bmp, tiff) in {args.template_dir}")
    with FaceFuser() as engine:
        prepared = engine.prepare_source(args.source, params)
    started = time.perf_counter()
    failures = []
    with tqdm(total=len(templates), unit="photo", desc="fusing", file=sys.stderr,
              disable=args.quiet) as bar:
        def report(item):
            if not item.ok:
                failures.append(item)
                bar.write(f"skipped {item.template.name}: {item.message}", file=sys.stderr)
            bar.update(1)

        results = run_batch(prepared, templates, Path(args.output), params,
                            workers=args.workers, ext=args.ext, on_item=report)
    elapsed = time.perf_counter() - started
    done = sum(r.ok for r in results)
    print(f"{done} of {len(results)} fused into {args.output} in {elapsed:.1f} s "
          f"({elapsed / max(1, len(results)):.2f} s per photo)"
          + (f"; {len(failures)} failed" if failures else "")
          + (f"; {len(ignored)} non-image file(s) ignored" if ignored else ""))
    for item in failures:
        print(f"  failed: {item.template.name}: {item.message}")
    if args.report:
        Path(args.report).write_text(json.dumps(
            [{"template": str(r.template), "output": str(r.output) if r.output else None,
              "ok": r.ok, "message": r.message, "ms": round(r.ms, 1)} for r in results],
            indent=2))
    return 0 if not failures else 1
