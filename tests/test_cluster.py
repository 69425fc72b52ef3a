"""The batch on a real local Ray cluster (2 CPUs, no dashboard, usage statistics off): the same
outputs as the local batch, a worker killed with SIGKILL mid-run, the driver killed and
rerun, bad files reported. The cluster is shut down at the end and no Ray process is left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefuse.params import FusionParams
from facefuse.runners.batch import BatchSettings, folder_tasks, read_mark, run_tasks

ray = pytest.importorskip("ray", reason="the Ray tests need the cluster extra (ray[data])")
REPO = Path(__file__).resolve().parents[1]
PARAMS = FusionParams(refine=False)


def ray_processes(marker: str) -> list[int]:
    """Processes of this test's Ray session (their command lines name its temp folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in \
        Path(f"/proc/{pid}/status").read_text().lower()


@pytest.fixture(scope="module")
def cluster():
    """A private two-CPU Ray on this machine; yields its address; then shuts it down and
    checks that every process it started (workers included) is gone."""
    saved = {k: os.environ.get(k) for k in ("RAY_USAGE_STATS_ENABLED", "PYTHONPATH")}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Workers import this checkout's facefuse (in CI the editable install is this checkout).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    temp = tempfile.mkdtemp(prefix="ffray", dir="/tmp")  # short: Ray's socket paths
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", _temp_dir=temp)
    workers: set[int] = set()
    try:
        yield ray.get_runtime_context().gcs_address, workers
    finally:
        ray.shutdown()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
                ray_processes(temp) or any(alive(p) for p in workers)):
            time.sleep(0.5)
        left = ray_processes(temp) + [p for p in workers if alive(p)]
        for pid in left:  # only this session's own processes, by id
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        assert not left, f"Ray processes left after shutdown: {left}"


@pytest.fixture(scope="module")
def templates(london, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("templates")
    for p in sorted((london / "smiling").glob("*.jpg"))[:10]:
        shutil.copy(p, folder / p.name)
    return folder


def outputs(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()
            if not p.name.startswith(".")}


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def worker_pid(worker: str) -> int:
    return int(worker.rpartition(":")[2])


def test_ray_matches_the_local_batch_and_reports_bad_files(cluster, london, templates,
                                                           tmp_path):
    from skimage import data

    from facefuse.runners.cluster import run_on_ray

    _, seen = cluster
    folder = tmp_path / "t"
    shutil.copytree(templates, folder)
    for p in sorted(folder.iterdir())[3:]:
        p.unlink()
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg")  # no face
    (folder / "notes.jpg").write_text("not a photo")
    source = london / "neutral" / "010_03.jpg"
    names = sorted(p.name for p in folder.iterdir())
    local = run_tasks(folder_tasks(source, sorted(folder.iterdir()), tmp_path / "local",
                                   ".png"), BatchSettings(PARAMS))
    rows = []
    remote = run_on_ray(folder_tasks(source, sorted(folder.iterdir()), tmp_path / "ray",
                                     ".png"), BatchSettings(PARAMS), workers=2,
                        on_item=rows.append)
    seen.update(worker_pid(r.worker) for r in rows)
    assert len(rows) == len(names)  # streamed one by one to the caller
    assert [Path(r.template).name for r in remote] == names
    assert [r.ok for r in remote] == [r.ok for r in local] == [
        n not in ("coffee.jpg", "notes.jpg") for n in names]
    bad = {r.template.name: r.message for r in remote if not r.ok}
    assert "no face found in the template" in bad["coffee.jpg"]
    assert "not an image" in bad["notes.jpg"]
    assert [r.item_id for r in remote] == [r.item_id for r in local]  # same items, same ids
    assert sorted(outputs(tmp_path / "ray")) == sorted(outputs(tmp_path / "local"))
    for name in outputs(tmp_path / "local"):
        a = np.asarray(Image.open(tmp_path / "local" / name))
        b = np.asarray(Image.open(tmp_path / "ray" / name))
        assert np.array_equal(a, b), name


def test_a_worker_killed_mid_run_is_retried_and_writes_each_output_once(cluster, london,
                                                                        templates, tmp_path):
    from facefuse.runners.cluster import run_on_ray

    _, seen = cluster
    out = tmp_path / "out"
    settings = BatchSettings(PARAMS)
    killed: list[int] = []
    at_kill: dict[str, tuple[int, int]] = {}

    def kill_first_worker(item):
        seen.add(worker_pid(item.worker))
        if not killed:
            killed.append(worker_pid(item.worker))
            at_kill.update(outputs(out))
            os.kill(killed[0], signal.SIGKILL)

    chosen = sorted(templates.iterdir())[:6]
    items = run_on_ray(folder_tasks(london / "neutral" / "010_03.jpg", chosen, out), settings,
                       workers=2, items_per_block=1, on_item=kill_first_worker)
    assert killed and not alive(killed[0])
    assert len(at_kill) < len(items), "the kill must land mid-run"
    assert all(i.ok for i in items), [i.message for i in items if not i.ok]
    after = outputs(out)
    assert sorted(after) == sorted(p.name for p in chosen)  # each exactly once
    assert temp_files(out) == []
    assert {n: after[n] for n in at_kill} == at_kill  # written before the kill: not again
    for item in items:
        assert read_mark(item.output) == (item.item_id, settings.run_id)


def test_driver_killed_then_rerun_redoes_nothing(cluster, london, templates, tmp_path):
    address, _ = cluster
    out = tmp_path / "out"
    args = [sys.executable, "-m", "facefuse.cli", "batch", str(london / "neutral" /
            "010_03.jpg"), str(templates), "-o", str(out), "--engine", "ray", "--address",
            address, "--workers", "2", "--no-refine", "--quiet"]
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        if out.is_dir() and len(outputs(out)) >= 2:
            break
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(3)  # Ray ends the dead driver's workers; a photo they had begun may land
    before = outputs(out)
    names = sorted(p.name for p in templates.iterdir())
    assert 2 <= len(before) < len(names), "the kill must land mid-run"

    report = tmp_path / "report.json"
    rerun = subprocess.run([*args, "--resume", "--report", str(report)], capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = outputs(out)
    assert sorted(after) == names
    assert temp_files(out) == []
    assert {n: after[n] for n in before} == before  # nothing redone
    rows = json.loads(report.read_text())
    assert {Path(r["output"]).name for r in rows if r["status"] == "kept"} == set(before)
    assert sum(r["status"] == "fused" for r in rows) == len(names) - len(before)
    assert f"{len(before)} already done, kept" in rerun.stdout
