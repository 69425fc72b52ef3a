"""The same batch on a Ray cluster: Ray Data over a pool of long-lived workers.

Each worker (a Ray actor) loads the engine once, from the facefuse installed on its node (no
weights travel through Ray), with ONNX Runtime and OpenCV limited to the CPUs it reserved.
It runs the local batch's own `BatchWorker`, so item ids, skips, atomic writes and error
rows are the same; each item comes back as a status row, never an exception, and the driver
streams the rows into the caller's progress bar and report. Ray restarts a killed worker and
retries its block; items it had already written carry this run's id and are not written
again. Files are read and written by path: on several machines, the inputs and the output
folder must be on storage every node sees at the same path (docs/scale.md).

Needs the `cluster` extra (`ray[data]`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendError, FaceFuseError
from .batch import (
    BatchItem,
    BatchSettings,
    BatchTask,
    BatchWorker,
    disk_full,
    remove_stale_parts,
)

ITEMS_PER_BLOCK = 16  # the most photos one Ray task carries: small retries, few objects


class RayFuseWorker:
    """One Ray actor: an engine loaded once, then batches of tasks -> batches of status rows."""

    def __init__(self, settings: BatchSettings, threads: int) -> None:
        import cv2

        from ..pipeline import FaceFuser

        cv2.setNumThreads(threads)
        self.engine = FaceFuser(threads=threads)
        self.worker = BatchWorker(self.engine, settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = [{**self.worker(BatchTask(Path(s), Path(t), Path(o))).to_row(), "task": o}
                for s, t, o in zip(batch["source"], batch["template"], batch["output"],
                                   strict=True)]
        return {key: [r[key] for r in rows] for key in rows[0]} if rows else {}


def ray_environment() -> None:
    """Ray's usage statistics off, before Ray starts (a cluster's own nodes: docs/scale.md)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address`, or start a private one on this machine (no dashboard,
    workers' logs kept out of the terminal). True when this call started Ray."""
    ray_environment()
    try:
        import ray
    except ImportError as exc:
        raise BackendError('--engine ray needs Ray: pip install -e ".[cluster]"') from exc
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, _node_ip_address="127.0.0.1")
    return True


def run_on_ray(tasks: Sequence[BatchTask], settings: BatchSettings, *,
               address: str | None = None, workers: int = 0, cpus_per_worker: int = 1,
               on_item: Callable[[BatchItem], None] | None = None,
               items_per_block: int = ITEMS_PER_BLOCK) -> list[BatchItem]:
    """Every task on Ray (`workers` 0 = as many as the cluster's CPUs allow); results in task
    order. Raises OutputFullError, like the local batch, when the output folder fills up."""
    started = connect(address)  # first: a missing Ray is a BackendError before any work
    import ray

    tasks = list(tasks)
    try:
        for folder in {t.output.parent for t in tasks}:
            folder.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(tasks)
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the caller's bar shows progress
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # one bar, one summary
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(workers or cpus // max(1, cpus_per_worker), len(tasks) or 1))
        blocks = min(len(tasks), max(workers * 4, math.ceil(len(tasks) / items_per_block)))
        rows = [{"source": str(t.source), "template": str(t.template), "output": str(t.output)}
                for t in tasks]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, blocks)).map_batches(
            RayFuseWorker, fn_constructor_args=(settings, cpus_per_worker),
            batch_size=None, batch_format="numpy", num_cpus=cpus_per_worker,
            compute=ray.data.ActorPoolStrategy(size=workers))
        by_output: dict[str, BatchItem] = {}
        full: BatchItem | None = None
        for row in ds.iter_rows():
            item = BatchItem.from_row(row)
            by_output[row["task"]] = item
            if on_item:
                on_item(item)
            if item.fatal:
                full = item
                break
    except FaceFuseError:
        raise
    except Exception as exc:
        raise BackendError(f"the Ray run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if started:
            ray.shutdown()
    remove_stale_parts(tasks)
    ordered = [by_output.get(str(t.output)) for t in tasks]
    if full is not None:
        raise disk_full(full, [i for i in ordered if i is not None])
    missing = [t for t, i in zip(tasks, ordered, strict=True) if i is None]
    if missing:
        raise BackendError(f"Ray returned no row for {len(missing)} photo(s), e.g. "
                           f"{missing[0].template}")
    return [i for i in ordered if i is not None]

