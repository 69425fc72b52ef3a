"""Interrupted and failing batches: killed half-way and resumed, settings changed, a CSV of
pairs, a full disk. Run as a user runs them (a real process, real photos, real signals)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefuse.cli import main
from facefuse.runners.batch import read_mark

REPO = Path(__file__).resolve().parents[1]


def cli_process(args: list, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "facefuse.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, **kwargs)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every finished output (not temp files) with its inode and change time: a file that is
    rewritten, even with the same bytes, gets a new inode (temp file + rename)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()
            if not p.name.startswith(".")}


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


@pytest.fixture(scope="module")
def templates(london, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("templates")
    for p in sorted((london / "smiling").glob("*.jpg"))[:12]:
        shutil.copy(p, folder / p.name)
    return folder


def test_killed_batch_resumes_without_redoing_or_duplicating(london, templates, tmp_path):
    source = london / "neutral" / "010_03.jpg"
    out = tmp_path / "out"
    names = sorted(p.name for p in templates.iterdir())
    proc = cli_process(["batch", source, templates, "-o", out, "--workers", "1",
                        "--no-refine", "--quiet"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and len(snapshot(out)) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = snapshot(out)
    assert 3 <= len(before) < len(names), "the kill must land half-way"

    report = tmp_path / "report.json"
    proc = cli_process(["batch", source, templates, "-o", out, "--workers", "2",
                        "--no-refine", "--quiet", "--resume", "--report", report])
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    after = snapshot(out)
    assert sorted(after) == names  # every photo once, nothing else
    assert temp_files(out) == []
    assert {n: after[n] for n in before} == before  # finished outputs kept, not redone
    assert f"{len(names)} of {len(names)} fused" in stdout
    assert f"{len(before)} already done, kept" in stdout
    rows = json.loads(report.read_text())
    assert [Path(r["template"]).name for r in rows] == names  # complete, in order
    assert all(r["ok"] for r in rows)
    assert {Path(r["output"]).name for r in rows if r["status"] == "kept"} == set(before)
    assert sum(r["status"] == "fused" for r in rows) == len(names) - len(before)
    assert len({r["id"] for r in rows}) == len(names)
    for r in rows:  # each file carries the id of the item it is the result of
        assert read_mark(Path(r["output"]))[0] == r["id"]


def test_resume_keeps_same_settings_and_redoes_changed_ones(london, templates, tmp_path,
                                                           capsys):
    source = london / "neutral" / "010_03.jpg"
    folder = tmp_path / "t"
    folder.mkdir()
    for p in sorted(templates.iterdir())[:2]:
        shutil.copy(p, folder / p.name)
    out = tmp_path / "out"
    args = ["batch", source, folder, "-o", out, "--no-refine", "--quiet", "--workers", "2"]
    assert main([str(a) for a in args]) == 0
    first = snapshot(out)
    assert main([str(a) for a in [*args, "--resume"]]) == 0
    assert snapshot(out) == first
    assert "2 already done, kept" in capsys.readouterr().out
    # Other settings are other items: the same names are fused again, with the new ratio.
    assert main([str(a) for a in [*args, "--resume", "--ratio", "0.9"]]) == 0
    again = snapshot(out)
    assert sorted(again) == sorted(first)
    assert all(again[n][0] != first[n][0] for n in first)
    assert "kept" not in capsys.readouterr().out


def test_pairs_csv_matches_the_folder_form_and_reports_a_bad_source(london, templates,
                                                                     tmp_path, capsys):
    from skimage import data

    t1, t2 = sorted(templates.iterdir())[:2]
    s1, s2 = london / "neutral" / "010_03.jpg", london / "neutral" / "005_03.jpg"
    coffee = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(coffee)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"source,template\n{s1},{t1}\n{s1},{t2}\n{s2},{t1}\n{s1},{t1}\n"
                     f"coffee.jpg,{t2}\n")
    out = tmp_path / "out"
    report = tmp_path / "r.json"
    code = main([str(a) for a in ["batch", pairs, "-o", out, "--no-refine", "--quiet",
                                  "--ext", ".png", "--report", report]])
    stdout = capsys.readouterr().out
    assert code == 1
    assert "3 of 4 fused" in stdout and "1 failed" in stdout  # the repeated row is one item
    assert "no face found in the source" in stdout
    assert f"failed: coffee.jpg -> {t2.name}:" in stdout  # the pair, not the template alone
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"010_03_{t1.stem}.png", f"010_03_{t2.stem}.png", f"005_03_{t1.stem}.png"])
    rows = json.loads(report.read_text())
    assert [r["ok"] for r in rows] == [True, True, True, False]
    # The same pair gives the same pixels whichever form of batch fused it.
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(t1, folder / t1.name)
    assert main([str(a) for a in ["batch", s2, folder, "-o", tmp_path / "o2", "--no-refine",
                                  "--quiet", "--ext", ".png"]]) == 0
    a = np.asarray(Image.open(out / f"005_03_{t1.stem}.png"))
    b = np.asarray(Image.open(tmp_path / "o2" / f"{t1.stem}.png"))
    assert np.array_equal(a, b)


def test_pairs_csv_refuses_two_pairs_with_one_output_name(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a/me.jpg,a/t.jpg\nb/me.jpg,b/t.jpg\n")
    assert main(["batch", str(pairs), "-o", str(tmp_path / "out")]) == 2
    assert "would both be saved as me_t.jpg" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("named", ["../escaped.jpg", "{tmp}/elsewhere.jpg"])
def test_pairs_csv_keeps_named_outputs_inside_the_output_folder(tmp_path, capsys, named):
    """A CSV's third column names a file in -o, never one elsewhere (a CSV from someone else
    could otherwise replace any photo on the machine): refused before any work."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"me.jpg,t.jpg,{named.format(tmp=tmp_path)}\n")
    assert main(["batch", str(pairs), "-o", str(tmp_path / "out")]) == 2
    assert "row 1: the output" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs: room for two fused London photos, not three."""
    mount = tmp_path / "full"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a tiny tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tiny tmpfs here (needs root and mount rights): "
                    f"{proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_stops_with_one_error_line_and_no_partial_file(london, templates,
                                                                 tiny_disk, tmp_path):
    report = tmp_path / "report.json"
    proc = cli_process(["batch", london / "neutral" / "010_03.jpg", templates, "-o",
                        tiny_disk, "--workers", "1", "--no-refine", "--quiet", "--report",
                        report])
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: no space left for ")
    assert "rerun with --resume" in lines[0]
    assert temp_files(tiny_disk) == []
    saved = sorted(snapshot(tiny_disk))
    assert 1 <= len(saved) < len(list(templates.iterdir()))
    for name in saved:  # whatever is there is whole
        assert Image.open(tiny_disk / name).convert("RGB").size == (1350, 1350)
    rows = json.loads(report.read_text())
    assert sum(r["ok"] for r in rows) == len(saved)
    assert any("No space left on device" in r["message"] for r in rows)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif", ".bmp"])
def test_every_output_format_carries_its_item_mark(tmp_path, astronaut, ext):
    """Resume reads an output's item id from the ends of the file, whatever its format."""
    from facefuse.imageio import has_provenance_tag, save_image

    item, run = "0123456789abcdef" * 2, "fedcba9876543210" * 2
    path = save_image(tmp_path / f"out{ext}", astronaut,
                      note=f"template=t.jpg; item={item}; run={run}")
    assert read_mark(path) == (item, run)
    assert has_provenance_tag(path)
    assert read_mark(tmp_path / f"missing{ext}") is None
