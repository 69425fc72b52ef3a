"""Batch: one source face into every template of a folder, on all cores, with progress.

The source is analysed once in the parent and handed to each worker process; a bad template
is reported and skipped, the others go on, and every output is written atomically.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .errors import FaceFuseError
from .imageio import SAVE_FORMATS, save_image
from .params import FusionParams
from .pipeline import FaceFuser, PreparedSource

IMAGE_EXTENSIONS = frozenset(SAVE_FORMATS)


@dataclass(frozen=True)
class BatchItem:
    template: Path
    output: Path | None
    ok: bool
    message: str = ""
    ms: float = 0.0


def list_templates(folder: Path) -> tuple[list[Path], list[Path]]:
    """Image files of `folder` (sorted) and the other files that will be ignored."""
    if not folder.is_dir():
        raise FaceFuseError(f"template folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    others = [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
    return images, others


def output_path(template: Path, out_dir: Path, ext: str | None) -> Path:
    return out_dir / (template.stem + (ext or template.suffix.lower()))


# Per-process state of a worker: set once by the initializer, read by each task.
_worker: dict = {}


def _init_worker(prepared: PreparedSource, params: FusionParams, threads: int) -> None:
    import cv2

    cv2.setNumThreads(threads)  # one process per core: no thread oversubscription
    _worker["engine"] = FaceFuser(threads=threads)
    _worker["prepared"] = prepared
    _worker["params"] = params


def _run_one(template: Path, output: Path) -> BatchItem:
    return fuse_one(_worker["engine"], _worker["prepared"], _worker["params"], template, output)


def fuse_one(engine: FaceFuser, prepared: PreparedSource, params: FusionParams,
             template: Path, output: Path) -> BatchItem:
    """Fuse into one template and save; any failure becomes a BatchItem, never an exception."""
    start = time.perf_counter()
    try:
        result = engine.fuse(prepared, template, params)
        save_image(output, result.image, note=f"template={template.name}")
    except FaceFuseError as exc:
        return BatchItem(template, None, False, str(exc))
    except Exception as exc:  # a worker must report, never die: the batch goes on
        return BatchItem(template, None, False, f"unexpected error: {exc!r}")
    return BatchItem(template, output, True, "", (time.perf_counter() - start) * 1000)


def run_batch(prepared: PreparedSource, templates: Iterable[Path], out_dir: Path,
              params: FusionParams, *, workers: int = 0, ext: str | None = None,
              on_item: Callable[[BatchItem], None] | None = None) -> list[BatchItem]:
    """Fuse `prepared` into each template; `workers` 0 = one per core. Results in input order."""
    templates = list(templates)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(t, output_path(t, out_dir, ext)) for t in templates]
    workers = workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(jobs)))
    results: dict[Path, BatchItem] = {}
    if workers == 1:
        with FaceFuser() as engine:
            for t, o in jobs:
                item = fuse_one(engine, prepared, params, t, o)
                results[t] = item
                if on_item:
                    on_item(item)
    else:
        # spawn, not fork: MediaPipe's graph threads do not survive a fork.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(prepared, params, 1)) as pool:
            futures = {pool.submit(_run_one, t, o): t for t, o in jobs}
            for fut in as_completed(futures):
                item = fut.result()
                results[futures[fut]] = item
                if on_item:
                    on_item(item)
    return [results[t] for t in templates]
