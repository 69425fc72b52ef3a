"""The `facefuse` command as a user runs it: exit codes, messages, files (or none)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefuse.cli import main
from facefuse.imageio import has_provenance_tag


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut, astronaut_template) -> dict[str, Path]:
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    paths = {"source": folder / "source.png", "template": folder / "template.jpg",
             "noface": folder / "coffee.jpg", "text": folder / "notes.jpg",
             "truncated": folder / "cut.jpg"}
    Image.fromarray(astronaut).save(paths["source"])
    Image.fromarray(astronaut_template).save(paths["template"], quality=95)
    Image.fromarray(data.coffee()).save(paths["noface"])
    paths["text"].write_text("not a photo")
    data_bytes = paths["template"].read_bytes()
    paths["truncated"].write_bytes(data_bytes[: len(data_bytes) // 3])
    return paths


def run(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fuse_writes_a_tagged_result_and_prints_timings(tmp_path, photos, capsys):
    out = tmp_path / "result.png"
    code, stdout, err = run(["fuse", photos["source"], photos["template"], "-o", out,
                             "--ratio", "0.8", "--no-refine", "--timings"], capsys)
    assert code == 0, err
    assert out.exists() and has_provenance_tag(out)
    assert np.asarray(Image.open(out)).shape == (512, 512, 3)
    for stage in ("load", "analyse", "align", "geometry", "texture", "paste", "finish"):
        assert f"  {stage}" in stdout


@pytest.mark.parametrize("case,code,needle", [
    ("noface", 4, "no face found in the template"),
    ("text", 3, "not an image"),
    ("truncated", 3, "truncated"),
    ("missing", 3, "not found"),
])
def test_bad_templates_give_their_exit_code_and_no_file(tmp_path, photos, capsys, case,
                                                        code, needle):
    template = photos.get(case, tmp_path / "missing.jpg")
    out = tmp_path / "never.jpg"
    got, _, err = run(["fuse", photos["source"], template, "-o", out], capsys)
    assert got == code
    assert err.startswith("error: ") and needle in err
    assert err.count("\n") == 1  # one line, no traceback
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_no_face_in_the_source_says_which_image(tmp_path, photos, capsys):
    got, _, err = run(["fuse", photos["noface"], photos["template"], "-o",
                       tmp_path / "x.jpg"], capsys)
    assert got == 4 and "source" in err and "--det-threshold" in err


@pytest.mark.parametrize("args", [["--mode", "screen"], ["--template-face", "first"],
                                  ["--resolution", "300"], ["--ratio", "half"]])
def test_malformed_options_exit_2(tmp_path, photos, capsys, args):
    with pytest.raises(SystemExit) as info:
        main(["fuse", str(photos["source"]), str(photos["template"]), "-o",
              str(tmp_path / "x.jpg"), *args])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "x.jpg").exists()


def test_out_of_range_value_is_a_parameter_error(tmp_path, photos, capsys):
    got, _, err = run(["fuse", photos["source"], photos["template"], "-o",
                       tmp_path / "x.jpg", "--ratio", "1.5"], capsys)
    assert got == 2 and "ratio must be between 0.0 and 1.0" in err
    got, _, err = run(["fuse", photos["source"], photos["template"], "-o",
                       tmp_path / "x.gif"], capsys)
    assert got == 2 and ".gif" in err


def test_preset_and_explicit_options(tmp_path, photos, capsys):
    from facefuse.cli import build_parser, params_from_args

    args = build_parser().parse_args(["fuse", "a", "b", "-o", "c.jpg", "--preset", "mobile",
                                      "--ratio", "0.7", "--template-face", "all"])
    params = params_from_args(args)
    assert params.ratio == 0.7 and params.brightness == 0.08 and params.template_face == "all"


def test_stderr_is_one_clean_line_in_a_real_process(tmp_path, photos):
    """Run as a user does: no MediaPipe/TFLite log noise, one `error:` line, exit 4."""
    proc = subprocess.run([sys.executable, "-m", "facefuse.cli", "fuse",
                           str(photos["source"]), str(photos["noface"]), "-o",
                           str(tmp_path / "x.jpg")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 4
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: no face found in the template")


def test_a_run_leaves_no_telemetry_behind(tmp_path, photos):
    """ONNX Runtime's own telemetry (a device id and an event queue in the home folder, sent
    on by long-running processes) stays off: the home folder gets nothing of Microsoft's."""
    import os

    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run([sys.executable, "-m", "facefuse.cli", "fuse",
                           str(photos["source"]), str(photos["template"]), "-o",
                           str(tmp_path / "x.jpg")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    assert not (home / ".cache" / "Microsoft").exists()


def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, photos,
                                                                     capsys):
    """-o (or --report) inside something that is not a folder: exit 2 with one clear line
    naming it, before any fusion, and nothing written (no output folder, no report)."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    code, _, err = run(["fuse", photos["source"], photos["template"], "-o",
                        blocker / "x.jpg"], capsys)
    assert code == 2
    assert err.strip() == f"error: cannot write {blocker / 'x.jpg'}: {blocker} is a file, " \
                          "not a folder"
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photos["template"].read_bytes())
    out_dir = tmp_path / "out"
    code, stdout, err = run(["batch", photos["source"], folder, "-o", out_dir, "--report",
                             blocker / "report.json", "--quiet"], capsys)
    assert code == 2 and "cannot write the report" in err and "is a file" in err
    assert not out_dir.exists() and stdout == ""


def test_batch_reports_bad_files_and_continues(tmp_path, photos, capsys):
    folder = tmp_path / "templates"
    folder.mkdir()
    for i in range(3):
        (folder / f"good{i}.jpg").write_bytes(photos["template"].read_bytes())
    (folder / "coffee.jpg").write_bytes(photos["noface"].read_bytes())
    (folder / "broken.jpg").write_bytes(photos["truncated"].read_bytes())
    (folder / "readme.txt").write_text("ignored")
    out_dir = tmp_path / "out"
    report = tmp_path / "report.json"
    code, stdout, _ = run(["batch", photos["source"], folder, "-o", out_dir, "--no-refine",
                             "--workers", "2", "--report", report, "--quiet"], capsys)
    assert code == 1
    assert sorted(p.name for p in out_dir.iterdir()) == ["good0.jpg", "good1.jpg",
                                                         "good2.jpg"]
    assert "3 of 5 fused" in stdout and "2 failed" in stdout and "1 non-image" in stdout
    assert "coffee.jpg" in stdout and "broken.jpg" in stdout
    rows = json.loads(report.read_text())
    assert [r["ok"] for r in rows] == [False, False, True, True, True]  # sorted by name
    assert all(has_provenance_tag(out_dir / f"good{i}.jpg") for i in range(3))


def test_batch_all_good_exits_zero(tmp_path, photos, capsys):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "a.png").write_bytes(photos["source"].read_bytes())
    (folder / "b.jpg").write_bytes(photos["template"].read_bytes())
    code, stdout, _ = run(["batch", photos["source"], folder, "-o", tmp_path / "o",
                           "--no-refine", "--workers", "1", "--quiet"], capsys)
    assert code == 0 and "2 of 2 fused" in stdout


def test_batch_and_harmonize_run_on_the_litert_backend(tmp_path, photos, capsys):
    """The phone runtime behind the same commands: same exit codes, tagged outputs."""
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "b.jpg").write_bytes(photos["template"].read_bytes())
    code, _, err = run(["batch", photos["source"], folder, "-o", tmp_path / "o",
                       "--backend", "litert-int8", "--workers", "1", "--quiet"], capsys)
    assert code == 0, err
    assert has_provenance_tag(tmp_path / "o" / "b.jpg")
    image = np.asarray(Image.open(photos["template"]).convert("RGB"))
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[image.shape[0] // 3:image.shape[0] // 2, image.shape[1] // 3:image.shape[1] // 2] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    out = tmp_path / "h.png"
    code, _, err = run(["harmonize", photos["template"], mask_path, "-o", out,
                        "--backend", "litert-fp32"], capsys)
    assert code == 0, err
    result = np.asarray(Image.open(out))
    assert result.shape == image.shape
    outside = mask == 0
    assert np.array_equal(result[outside], image[outside])
