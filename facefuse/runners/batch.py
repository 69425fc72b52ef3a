"""Batch: one source face into every template of a folder, on all cores, with progress.

The source is analysed once and shared by the worker threads; a bad template is reported and
skipped, the others go on, and every output is written atomically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from ..errors import FaceFuseError
from ..imageio import READ_EXTENSIONS, SAVE_FORMATS, save_image
from ..params import FusionParams
from ..pipeline import FaceFuser, PreparedSource

IMAGE_EXTENSIONS = READ_EXTENSIONS  # phone photos (HEIC, AVIF) too


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
    own = template.suffix.lower()  # HEIC/AVIF/GIF templates are read but saved as JPEG
    return out_dir / (template.stem + (ext or (own if own in SAVE_FORMATS else ".jpg")))


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
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: dict[Path, BatchItem] = {}
    # Threads over one engine, not processes: OpenCV, NumPy and ONNX Runtime release the GIL,
    # the models load once, and nothing is pickled. Measured on 40 London photos with 2
    # cores: 0.15 s per photo with 2 threads, 0.17 with 1, 0.33 with 2 spawned processes
    # (their start-up and competing native thread pools cost more than they won).
    with FaceFuser() as engine, ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(fuse_one, engine, prepared, params, t, o): t for t, o in jobs}
        for fut in as_completed(futures):
            item = fut.result()
            results[futures[fut]] = item
            if on_item:
                on_item(item)
    return [results[t] for t in templates]
