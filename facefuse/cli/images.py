"""`facefuse fuse` and `facefuse batch`: one template, or a folder of them."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from ..errors import FaceFuseError, ParameterError
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
    p.add_argument("source", help="photo with the face to put in, or a CSV of "
                   "source,template[,output] pairs (then no TEMPLATE_DIR)")
    p.add_argument("template_dir", nargs="?", help="folder of template photos")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=0,
                   help="worker threads (default: one per core); with --engine ray, Ray "
                   "workers (default: as many as the cluster's CPUs allow)")
    p.add_argument("--ext", default=None, help="output extension, e.g. .png (default: the "
                   "template's own)")
    p.add_argument("--report", default=None, help="write a JSON report of every photo")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="keep outputs that an earlier run "
                   "with the same inputs and settings finished; do only the rest")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: threads on this machine; ray: a Ray cluster (needs the "
                   "cluster extra, see docs/scale.md)")
    p.add_argument("--address", default=None, help="with --engine ray: the cluster to join "
                   "(host:port); default: a private Ray on this machine")
    p.add_argument("--cpus-per-worker", type=int, default=1,
                   help="with --engine ray: CPUs (and ONNX Runtime threads) per worker")
    add_fusion_options(p)
    p.set_defaults(func=cmd_batch)


def cmd_fuse(args: argparse.Namespace) -> int:
    from ..imageio import check_writable_folder, save_format, save_image
    from ..pipeline import fuse

    params = params_from_args(args)
    save_format(args.output)  # a bad extension or folder fails before any work
    check_writable_folder(Path(args.output).parent, args.output)
    started = time.perf_counter()
    result = fuse(args.source, args.template, params)
    with result.timings.stage("save"):
        try:
            save_image(args.output, result.image, note=f"ratio={params.ratio}")
        except OSError as exc:  # a full disk, a folder gone meanwhile: nothing partial left
            raise FaceFuseError(f"cannot write {args.output}: {exc.strerror or exc}") from None
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

    from ..imageio import atomic_write, check_writable_folder, save_format
    from ..pipeline import FaceFuser
    from ..runners.batch import (
        STATUS_KEPT,
        BatchSettings,
        OutputFullError,
        folder_tasks,
        list_templates,
        read_pairs_csv,
        run_tasks,
    )

    params = params_from_args(args)
    if args.ext:
        save_format("x" + args.ext)
    if args.address and args.engine != "ray":
        raise ParameterError("--address is for --engine ray")
    if args.cpus_per_worker < 1:
        raise ParameterError("--cpus-per-worker must be 1 or more")
    out_dir = Path(args.output)
    check_writable_folder(out_dir, f"into {out_dir}")
    if args.report:  # found out before the batch, not after it
        check_writable_folder(Path(args.report).parent, f"the report {args.report}")
    ignored: list[Path] = []
    prepared = {}
    pairs = Path(args.source).suffix.lower() == ".csv"  # many sources, named per row
    if pairs:
        if args.template_dir:
            raise ParameterError("a pairs CSV names its templates: drop TEMPLATE_DIR")
        tasks = read_pairs_csv(Path(args.source), out_dir, args.ext)
    else:
        if not args.template_dir:
            raise ParameterError("batch needs TEMPLATE_DIR (or a CSV of source,template "
                                 "pairs as SOURCE)")
        templates, ignored = list_templates(Path(args.template_dir))
        if not templates:
            raise FaceFuseError(f"no images (jpg, png, webp, bmp, tiff) in "
                                f"{args.template_dir}")
        tasks = folder_tasks(Path(args.source), templates, out_dir, args.ext)
        with FaceFuser() as engine:  # a source without a face stops here, before any work
            prepared = {Path(args.source): engine.prepare_source(args.source, params)}
    settings = BatchSettings(params, resume=args.resume)

    def named(item) -> str:
        """A failed item as the user can find it: a pairs CSV has many sources."""
        return f"{item.source.name} -> {item.template.name}" if pairs else item.template.name

    started = time.perf_counter()
    finished = []
    with tqdm(total=len(tasks), unit="photo", desc="fusing", file=sys.stderr,
              disable=args.quiet) as bar:
        def report(item):
            finished.append(item)
            if not item.ok and not item.fatal:  # a full disk is the one error line
                bar.write(f"skipped {named(item)}: {item.message}", file=sys.stderr)
            bar.update(1)

        try:
            if args.engine == "ray":
                from ..runners.cluster import run_on_ray

                results = run_on_ray(tasks, settings, address=args.address,
                                     workers=args.workers,
                                     cpus_per_worker=args.cpus_per_worker, on_item=report)
            else:
                results = run_tasks(tasks, settings, workers=args.workers,
                                    prepared=prepared, on_item=report)
        except OutputFullError:
            if args.report:  # what was finished, if the report's own disk has room
                with contextlib.suppress(OSError):
                    atomic_write(args.report, _report_json(finished))
            raise
    elapsed = time.perf_counter() - started
    failures = [r for r in results if not r.ok]
    kept = sum(r.status == STATUS_KEPT for r in results)
    done = sum(r.ok for r in results)
    fused_now = max(1, len(results) - kept)
    print(f"{done} of {len(results)} fused into {args.output} in {elapsed:.1f} s "
          f"({elapsed / fused_now:.2f} s per photo)"
          + (f"; {kept} already done, kept" if kept else "")
          + (f"; {len(failures)} failed" if failures else "")
          + (f"; {len(ignored)} non-image file(s) ignored" if ignored else ""))
    for item in failures:
        print(f"  failed: {named(item)}: {item.message}")
    if args.report:
        atomic_write(args.report, _report_json(results))
    return 0 if not failures else 1


def _report_json(items) -> bytes:
    """One row per photo: the original keys (template, output, ok, message, ms) first."""
    rows = []
    for item in items:
        row = item.to_row()
        row.pop("fatal")
        rows.append(row)
    return json.dumps(rows, indent=2).encode()
