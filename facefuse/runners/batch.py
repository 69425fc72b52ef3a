"""Batch: many (source, template) pairs, on all cores, exactly once and resumable.

One source into every template of a folder, or a CSV of source,template pairs. A bad photo is
reported and skipped, the others go on, and every output is written atomically.

Exactly once, without a journal: each item's id is a digest of its inputs (the bytes of its
source and template) and its settings (FusionParams, output format, facefuse version), and
its output name comes from the input names. The output file carries the id (and the run's
id) in its provenance note, and it only ever appears by an atomic rename, so the file itself
is the record that the item is finished. A rerun with `resume` skips every output that holds
its item's id; within one run an item already written (a Ray worker killed after writing,
its block retried) is never written again. The same `BatchWorker` runs in the local thread
pool and in each Ray worker (`runners.cluster`), so both engines share this logic.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FaceFuseError, ParameterError
from ..imageio import READ_EXTENSIONS, SAVE_FORMATS, save_image
from ..params import FusionParams
from ..pipeline import FaceFuser, PreparedSource

IMAGE_EXTENSIONS = READ_EXTENSIONS  # phone photos (HEIC, AVIF) too
SOURCE_CACHE = 16  # prepared source faces a worker keeps
MARK_WINDOW = 16 * 1024  # bytes read at each end of an output to find its mark
MARK_PATTERN = re.compile(rb"item=([0-9a-f]{32}); run=([0-9a-f]{32})")
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

STATUS_FUSED = "fused"
STATUS_KEPT = "kept"      # finished by an earlier run (resume): left as it was
STATUS_FAILED = "failed"


class OutputFullError(FaceFuseError):
    """The output folder cannot take more (disk full or quota): the batch stops, since every
    next photo would fail the same way; what is finished stays, a rerun with resume goes on."""

    exit_code = 1


@dataclass(frozen=True)
class BatchTask:
    """One fusion to do: which face into which photo, and where its result goes."""

    source: Path
    template: Path
    output: Path


@dataclass(frozen=True)
class BatchItem:
    """What became of one task; a failure is a row like any other, never an exception."""

    template: Path
    output: Path | None
    ok: bool
    message: str = ""
    ms: float = 0.0
    source: Path | None = None
    item_id: str = ""
    status: str = ""
    worker: str = ""
    fatal: bool = False  # the output folder is full: stop the batch
    finished: float = 0.0  # when the worker was done with it (Unix time)

    def to_row(self) -> dict[str, Any]:
        """Plain values: a JSON report row, and what a Ray worker sends back to the driver."""
        return {"template": str(self.template), "output": str(self.output) if self.output
                else None, "ok": self.ok, "message": self.message, "ms": round(self.ms, 1),
                "source": str(self.source) if self.source else None, "id": self.item_id,
                "status": self.status, "worker": self.worker, "fatal": self.fatal,
                "finished": round(self.finished, 3)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BatchItem:
        return cls(template=Path(row["template"]),
                   output=Path(row["output"]) if row.get("output") else None,
                   ok=bool(row["ok"]), message=str(row.get("message") or ""),
                   ms=float(row.get("ms") or 0.0),
                   source=Path(row["source"]) if row.get("source") else None,
                   item_id=str(row.get("id") or ""), status=str(row.get("status") or ""),
                   worker=str(row.get("worker") or ""), fatal=bool(row.get("fatal")),
                   finished=float(row.get("finished") or 0.0))


@dataclass(frozen=True)
class BatchSettings:
    """What every worker of one run needs: the parameters, the run's id, resume or not."""

    params: FusionParams = field(default_factory=FusionParams)
    resume: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def digest(self) -> str:
        """The settings part of every item id."""
        from .. import __version__

        text = json.dumps({"params": self.params.to_dict(), "facefuse": __version__},
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------ planning


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


def folder_tasks(source: Path, templates: Iterable[Path], out_dir: Path,
                 ext: str | None = None) -> list[BatchTask]:
    """One source into each template; outputs named after the templates."""
    tasks = [BatchTask(Path(source), t, output_path(t, out_dir, ext)) for t in templates]
    check_unique_outputs(tasks)
    return tasks


def read_pairs_csv(path: Path, out_dir: Path, ext: str | None = None) -> list[BatchTask]:
    """Tasks from a CSV of `source,template[,output]` rows (a header row is optional; relative
    paths are relative to the CSV's folder; an output is a name inside `out_dir`). The default
    output name is `<source stem>_<template stem><ext>`; a repeated row is one task."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"pairs file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = [[c.strip() for c in row] for row in csv.reader(fh)
                if row and any(c.strip() for c in row)]
    if rows and [c.lower() for c in rows[0][:2]] == ["source", "template"]:
        rows = rows[1:]
    tasks: list[BatchTask] = []
    seen: set[BatchTask] = set()
    for line, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0] or not row[1]:
            raise ParameterError(f"{path.name} row {line}: expected source,template[,output], "
                                 f"got {','.join(row)!r}")
        source, template = (path.parent / row[0]), (path.parent / row[1])
        if len(row) > 2 and row[2]:
            named = Path(row[2])
            if named.is_absolute() or ".." in named.parts:  # a CSV from elsewhere must not
                raise ParameterError(                        # write over files elsewhere
                    f"{path.name} row {line}: the output {row[2]!r} must be a name inside "
                    f"the output folder (no absolute path, no '..')")
            output = out_dir / named
        else:
            output = out_dir / (f"{source.stem}_" + output_path(template, out_dir, ext).name)
        task = BatchTask(source, template, output)
        if task not in seen:
            seen.add(task)
            tasks.append(task)
    if not tasks:
        raise ParameterError(f"no source,template pairs in {path}")
    check_unique_outputs(tasks)
    return tasks


def check_unique_outputs(tasks: Sequence[BatchTask]) -> None:
    """Two different tasks must never write the same file (one would silently replace the
    other): refuse the batch before any work, naming the clash."""
    owner: dict[Path, BatchTask] = {}
    for task in tasks:
        first = owner.setdefault(task.output, task)
        if first != task:
            raise ParameterError(
                f"{first.template.name} and {task.template.name} would both be saved as "
                f"{task.output.name}; rename one or set the output names in a pairs CSV")


def remove_stale_parts(tasks: Iterable[BatchTask]) -> int:
    """Delete temporary files that a killed process left beside planned outputs (atomic
    writes go to `.<name>.<random>.part` first); returns how many."""
    removed = 0
    by_dir: dict[Path, set[str]] = {}
    for task in tasks:
        by_dir.setdefault(task.output.parent, set()).add(task.output.name)
    for folder, names in by_dir.items():
        if not folder.is_dir():
            continue
        for p in folder.glob(".*.part"):
            if any(p.name.startswith(f".{n}.") for n in names):
                p.unlink(missing_ok=True)
                removed += 1
    return removed


# ------------------------------------------------------------ identity and marks


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def item_id(settings_digest: str, source_digest: str, template_digest: str,
            output_suffix: str) -> str:
    """The item's identity: same inputs and settings, same id (32 hex digits)."""
    text = "|".join((settings_digest, source_digest, template_digest, output_suffix.lower()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def read_mark(output: Path) -> tuple[str, str] | None:
    """(item id, run id) from a finished output's provenance note, or None when there is no
    such file or it carries no mark. Reads 16 KiB at each end of the file (the note sits
    within the first KiB of a JPEG or PNG, the last of a WebP or TIFF, in a BMP's sidecar),
    never its pixels."""
    try:
        if not output.is_file():
            return None
        sidecar = output.with_name(output.name + ".xmp")
        for path in (sidecar, output) if sidecar.is_file() else (output,):
            size = path.stat().st_size
            with open(path, "rb") as fh:
                blob = fh.read(MARK_WINDOW)
                if size > MARK_WINDOW:
                    fh.seek(max(MARK_WINDOW, size - MARK_WINDOW))
                    blob += fh.read()
            found = MARK_PATTERN.search(blob)
            if found:
                return found.group(1).decode(), found.group(2).decode()
    except OSError:
        return None
    return None


# ------------------------------------------------------------ the worker


class BatchWorker:
    """Fuses tasks with one engine (thread-safe): prepares each source once, computes each
    item's id, skips finished items, reports every outcome as a BatchItem."""

    def __init__(self, engine: FaceFuser, settings: BatchSettings,
                 prepared: dict[Path, PreparedSource] | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self._settings_digest = settings.digest
        # Recent sources only: a CSV of many sources must not hold every photo in memory.
        self._sources: OrderedDict[Path, tuple[str, PreparedSource | FaceFuseError]] = \
            OrderedDict()
        self._seeded = dict(prepared or {})
        self._lock = threading.Lock()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def source(self, path: Path) -> tuple[str, PreparedSource | FaceFuseError]:
        """(digest, prepared face or the error that prevents it), once per source file while
        it is among the last SOURCE_CACHE used (rows grouped by source: once per source)."""
        with self._lock:
            if path in self._sources:
                self._sources.move_to_end(path)
            else:
                seeded = self._seeded.get(path)
                try:
                    digest = file_digest(path)
                except OSError:  # a face prepared in memory: its pixels are its identity
                    digest = hashlib.sha256(seeded.image.tobytes()).hexdigest() if seeded \
                        else "unreadable"
                try:
                    prepared: PreparedSource | FaceFuseError = seeded or \
                        self.engine.prepare_source(path, self.settings.params)
                except FaceFuseError as exc:
                    prepared = exc
                self._sources[path] = (digest, prepared)
                while len(self._sources) > SOURCE_CACHE:
                    self._sources.popitem(last=False)
            return self._sources[path]

    def __call__(self, task: BatchTask) -> BatchItem:
        item = self._run(task)
        return dataclasses.replace(item, finished=time.time())

    def _run(self, task: BatchTask) -> BatchItem:
        start = time.perf_counter()
        base = {"template": task.template, "source": task.source, "worker": self.name}
        try:
            source_digest, prepared = self.source(task.source)
            try:
                template_digest = file_digest(task.template)
            except OSError:
                template_digest = "unreadable"  # the engine says why, with the usual message
            ident = item_id(self._settings_digest, source_digest, template_digest,
                            task.output.suffix)
            mark = read_mark(task.output)
            if mark and mark[0] == ident and (self.settings.resume or
                                              mark[1] == self.settings.run_id):
                same_run = mark[1] == self.settings.run_id
                return BatchItem(output=task.output, ok=True, item_id=ident,
                                 status=STATUS_FUSED if same_run else STATUS_KEPT,
                                 message="" if same_run else "already done", **base)
            if isinstance(prepared, FaceFuseError):
                raise prepared
            result = self.engine.fuse(prepared, task.template, self.settings.params)
            save_image(task.output, result.image,
                       note=f"template={task.template.name}; item={ident}; "
                            f"run={self.settings.run_id}")
        except FaceFuseError as exc:
            return BatchItem(output=None, ok=False, message=str(exc), status=STATUS_FAILED,
                             **base)
        except OSError as exc:
            full = exc.errno in DISK_FULL_ERRNOS
            what = "no space left for" if full else "cannot write"
            return BatchItem(output=None, ok=False, status=STATUS_FAILED, fatal=full,
                             message=f"{what} {task.output}: {exc.strerror or exc}", **base)
        except Exception as exc:  # a worker must report, never die: the batch goes on
            return BatchItem(output=None, ok=False, message=f"unexpected error: {exc!r}",
                             status=STATUS_FAILED, **base)
        return BatchItem(output=task.output, ok=True, ms=(time.perf_counter() - start) * 1000,
                         item_id=ident, status=STATUS_FUSED, **base)


# ------------------------------------------------------------ the local engine


def run_tasks(tasks: Sequence[BatchTask], settings: BatchSettings, *, workers: int = 0,
              prepared: dict[Path, PreparedSource] | None = None,
              on_item: Callable[[BatchItem], None] | None = None) -> list[BatchItem]:
    """Every task on this machine; `workers` 0 = one thread per core. Results in task order.

    Raises OutputFullError (after `on_item` saw every finished item) when the output folder
    fills up; nothing partial is left behind."""
    tasks = list(tasks)
    for folder in {t.output.parent for t in tasks}:
        folder.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(tasks)
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    results: dict[BatchTask, BatchItem] = {}
    full: BatchItem | None = None
    # Threads over one engine, not processes: OpenCV, NumPy and ONNX Runtime release the GIL,
    # the models load once, and nothing is pickled. Measured on 40 London photos with 2
    # cores: 0.15 s per photo with 2 threads, 0.17 with 1, 0.33 with 2 spawned processes
    # (their start-up and competing native thread pools cost more than they won).
    with FaceFuser() as engine, ThreadPoolExecutor(workers) as pool:
        worker = BatchWorker(engine, settings, prepared)
        futures = {pool.submit(worker, t): t for t in tasks}
        for fut in as_completed(futures):
            if fut.cancelled():  # not started: the output folder filled up first
                continue
            item = fut.result()
            results[futures[fut]] = item
            if item.fatal and full is None:
                full = item
                for other in futures:
                    other.cancel()
            if on_item:
                on_item(item)
    remove_stale_parts(tasks)
    if full is not None:
        raise disk_full(full, [results[t] for t in tasks if t in results])
    return [results[t] for t in tasks]


def disk_full(item: BatchItem, finished: Sequence[BatchItem]) -> OutputFullError:
    done = sum(i.ok for i in finished)
    return OutputFullError(f"{item.message}; batch stopped with {done} photo(s) saved, "
                           "nothing partial left: free some space and rerun with --resume")


def run_batch(prepared: PreparedSource, templates: Iterable[Path], out_dir: Path,
              params: FusionParams, *, workers: int = 0, ext: str | None = None,
              on_item: Callable[[BatchItem], None] | None = None,
              source: Path | None = None, resume: bool = False) -> list[BatchItem]:
    """Fuse `prepared` into each template (outputs named after them); `workers` 0 = one per
    core. Results in input order. `source`, the prepared photo's file, makes item ids
    depend on its bytes (without it, on the prepared image's pixels)."""
    key = Path(source) if source else Path("<prepared source>")
    tasks = folder_tasks(key, templates, out_dir, ext)
    return run_tasks(tasks, BatchSettings(params, resume=resume), workers=workers,
                     prepared={key: prepared}, on_item=on_item)
