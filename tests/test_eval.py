"""Quality reports: the independent judge and the numbers it gives on real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facefuse import FusionParams, ParameterError
from facefuse.cli import main


@pytest.fixture(scope="module")
def judge():
    from facefuse.quality.judge import Judge

    return Judge()


def test_judge_on_the_astronaut(judge, astronaut, astronaut_template):
    from facefuse.quality.judge import descriptor_distance, expression_difference, head_pose

    face = judge.face(astronaut)
    assert face is not None and face.landmarks.shape == (68, 2)
    other = judge.face(astronaut_template)
    assert descriptor_distance(face, other) < 0.6  # the same woman, recoloured and turned
    mirrored = judge.face(np.ascontiguousarray(astronaut[:, ::-1]))
    yaw, _, _ = head_pose(face, astronaut.shape)
    yaw_m, _, _ = head_pose(mirrored, astronaut.shape)
    assert np.sign(yaw) != np.sign(yaw_m)  # mirroring flips the turn
    assert expression_difference(face, mirrored) < 0.05
    from skimage import data

    assert judge.face(np.ascontiguousarray(data.coffee())) is None


def test_config_specs_parse_and_validate():
    from facefuse.quality.fusion import parse_config

    assert parse_config("refine=false") == {"refine": False}
    assert parse_config("mobile")["brightness"] == 0.08
    assert parse_config("preset=desktop,backend=ort-fp32,ratio=0.3")["ratio"] == 0.3
    with pytest.raises(ParameterError):
        parse_config("colour=blue")


def test_identity_moves_to_the_source_with_the_ratio(london):
    """Neutral A into smiling B: at ratio 1 the judge sees A (closer to another photo of A
    than at ratio 0) and farther from B, with B's pose kept and a face still found."""
    from facefuse.quality.fusion import fusion_report, london_pairs

    pairs = london_pairs(london, count=12)[:2]
    report = fusion_report(pairs, [0.0, 1.0], {"default": {"refine": False}}, progress=False)
    s = report["summary"]["default"]
    print(json.dumps({r: {k: v["mean"] for k, v in m.items()} for r, m in s.items()},
                     indent=1))
    assert s["1.0"]["id_to_source"]["mean"] < s["0.0"]["id_to_source"]["mean"] - 0.15
    assert s["1.0"]["id_to_template"]["mean"] > s["0.0"]["id_to_template"]["mean"] + 0.3
    assert s["1.0"]["found"]["mean"] == 1.0
    assert s["1.0"]["pose_diff"]["worst"] < 10
    assert s["1.0"]["seam"]["worst"] < 3.0


def test_eval_cli_writes_json_sheet_and_plot(london, tmp_path, capsys):
    csv_path = tmp_path / "pairs.csv"
    neutral, smiling = london / "neutral", london / "smiling"
    csv_path.write_text("source,template,reference,person\n"
                        f"{neutral / '001_03.jpg'},{smiling / '004_08.jpg'},"
                        f"{smiling / '001_08.jpg'},001\n")
    code = main(["eval", "fusion", "--pairs", str(csv_path), "--ratios", "0,1",
                 "--json", str(tmp_path / "r.json"), "--sheet", str(tmp_path / "s.png"),
                 "--compare", "refine=false", "smoothing=0,refine=false", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "id dist to source" in out and "Δ id to source" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["rows"]) == 4  # 1 pair x 2 ratios x 2 configs
    assert (tmp_path / "s.png").stat().st_size > 10_000
    assert (tmp_path / "s-identity.png").exists()


def test_landmark_report_against_tem_points(london, capsys):
    code = main(["eval", "landmarks", "--data", str(london / "neutral"), "--limit", "6"])
    out = capsys.readouterr().out
    assert code == 0 and "eye corners" in out and "chin" in out
    from facefuse.quality.fusion import landmark_report

    report = landmark_report(london / "neutral", limit=6)
    assert report["faces"] == 6
    assert report["regions"]["pupils"]["mean"] < 0.03


def test_feather_seam_sees_a_halo_and_nothing_where_there_is_none(astronaut):
    """The seam measure on a real photo: a face-sized region brightened through a wide
    feather (a soft halo, invisible to a step detector on a thin edge) scores about the
    size of the change; the untouched photo scores 0, and a change with no edge at all (a
    slight blur of the whole photo) next to 0."""
    import cv2

    from facefuse.quality.evaluate import feather_seam

    img = astronaut.astype(np.float32)
    region = np.zeros(img.shape[:2], np.float32)
    cv2.ellipse(region, (240, 130), (70, 90), 0, 0, 360, 1.0, -1)
    region = cv2.GaussianBlur(region, (0, 0), 12)
    assert feather_seam(img, img, region) == (0.0, 0.0)
    lab = cv2.cvtColor(img / 255, cv2.COLOR_RGB2LAB)
    lab[..., 0] += 10 * region  # +10 L inside, fading out through the feather
    halo = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255
    mean, worst = feather_seam(halo, img, region)
    print(f"halo: mean {mean:.2f}, worst {worst:.2f} delta E")
    assert 5 < mean < 12 and worst >= mean
    blurred = cv2.GaussianBlur(img, (0, 0), 1.0)  # a change everywhere, of no seam at all
    assert feather_seam(blurred, img, region)[0] < 1.0


def test_pose_report_reads_proportions_alone_as_pose(london, tmp_path, capsys):
    """The template with only its shape moved toward the source's keeps every pixel outside
    the face, carries identity away from the template as the shape ratio grows, and the
    judge reads it as turned: pose read into proportions, not a turn of the head."""
    from facefuse.imageio import load_image
    from facefuse.pipeline import FaceFuser
    from facefuse.quality.pose import ROWS, cross_pairs, pose_report, reshaped_template

    pairs = cross_pairs(london, hops=1, count=3)
    assert len({(p.source, p.template) for p in pairs}) == 3
    src, tpl = load_image(pairs[0].source), load_image(pairs[0].template)
    with FaceFuser() as engine:
        out = reshaped_template(engine, src, tpl, FusionParams(ratio=1.0, shape_ratio=1.0))
    changed = np.argwhere(np.abs(out.astype(int) - tpl.astype(int)).max(axis=2) > 0)
    h, w = tpl.shape[:2]
    assert 0.01 * h * w < len(changed) < 0.25 * h * w  # the face moved, nothing else
    names = ["ratio 0 (the judge's own noise)", "proportions only, shape ratio 0.5",
             "proportions only, shape ratio 1"]
    report = pose_report(london, hops=1, count=3, rows={n: ROWS[n] for n in names},
                         progress=False)
    s = report["summary"]
    assert all(s[n]["judged"] == 3 for n in names)
    to_template = [s[n]["id_to_template"] for n in names]
    assert to_template[0] < 0.1 < to_template[1] < to_template[2]
    assert s[names[2]]["pose_mean"] > s[names[0]]["pose_mean"] + 1.0

    assert main(["eval", "pose", "--data", str(london), "--hops", "1", "--count", "1",
                 "--quiet", "--json", str(tmp_path / "pose.json")]) == 0
    assert "proportions only, shape ratio 0.5" in capsys.readouterr().out
    saved = json.loads((tmp_path / "pose.json").read_text())
    assert saved["pairs"] == 1 and len(saved["rows"]) == len(ROWS)
