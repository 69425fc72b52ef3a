"""Phone export and the LiteRT backends: the files agree with FP32 within the stated
thresholds, the manifest matches the models, and a missing extra gives the clear error."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from facefuse import BackendError
from facefuse.export.check import FP32_MAX_ABS, INT8_MIN_FACE_PSNR
from facefuse.stages.refine import INPUT_IMAGE, MODELS_DIR, OUTPUT, load_refiner

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def refiner_inputs(engine, astronaut, astronaut_template):
    """What the refiner really gets in a fusion of two real photos (256 px, as run)."""
    from facefuse.export.int8 import RecordingRefiner

    recorder = RecordingRefiner([])
    engine.set_refiner("ort-fp32", recorder)
    try:
        engine.fuse(astronaut, astronaut_template, ratio=0.8)
    finally:
        engine.set_refiner("ort-fp32", load_refiner("ort-fp32"))
    import cv2

    return tuple(cv2.resize(a, (256, 256), interpolation=cv2.INTER_AREA)
                 for a in recorder.inputs[0])


def face_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    sel = mask > 0.5
    mse = float(np.mean((a[sel].astype(np.float64) - b[sel]) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_litert_fp32_computes_what_onnx_fp32_computes(refiner_inputs):
    image, mask, template = refiner_inputs
    ort_out = load_refiner("ort-fp32")(image, mask, template)
    tfl_out = load_refiner("litert-fp32")(image, mask, template)
    assert np.abs(ort_out - tfl_out).max() / 255.0 <= FP32_MAX_ABS


@pytest.mark.parametrize("backend", ["litert-int8", "ort-int8"])
def test_int8_files_agree_with_fp32_on_a_real_face(refiner_inputs, backend):
    image, mask, template = refiner_inputs
    fp32 = load_refiner("ort-fp32")(image, mask, template)
    int8 = load_refiner(backend)(image, mask, template)
    assert face_psnr(fp32, int8, mask) >= INT8_MIN_FACE_PSNR
    assert not np.array_equal(fp32, int8)  # it is the quantised file that ran


def test_the_pipeline_runs_on_litert(engine, astronaut, astronaut_template):
    a = engine.fuse(astronaut, astronaut_template, ratio=0.8, backend="ort-fp32").image
    b = engine.fuse(astronaut, astronaut_template, ratio=0.8, backend="litert-int8").image
    diff = np.abs(a.astype(int) - b)
    assert diff.max() <= 12 and diff.mean() < 0.2  # INT8 rounding, nothing else


def test_shipped_litert_files_match_the_manifest():
    from ai_edge_litert.interpreter import Interpreter

    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    for kind in ("litert-fp32-256", "litert-int8-256"):
        name = manifest["files"][kind]
        runner = Interpreter(model_path=str(MODELS_DIR / name)).get_signature_runner()
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        assert set(inputs) == set(manifest["inputs"])
        assert set(outputs) == set(manifest["outputs"])
        assert list(inputs[INPUT_IMAGE]["shape"]) == [1, 3, 256, 256]
        if "int8" in kind:
            declared = manifest["quantized_io"][name]
            for tensor, detail in {**inputs, **outputs}.items():
                assert declared[tensor]["dtype"] == np.dtype(detail["dtype"]).name == "int8"
                assert declared[tensor]["scale"] == pytest.approx(detail["quantization"][0])


def test_a_fixed_size_file_takes_any_crop(refiner_inputs):
    """LiteRT files have one size: larger crops are refined at it, smaller ones padded."""
    image, mask, template = refiner_inputs
    refiner = load_refiner("litert-fp32")
    import cv2

    big = [cv2.resize(a, (512, 512)) for a in (image, mask, template)]
    assert refiner(*big).shape == (512, 512, 3)
    small = refiner(image[:200, :180], mask[:200, :180], template[:200, :180])
    assert small.shape == (200, 180, 3)
    outside = mask[:200, :180] == 0
    assert np.allclose(small[outside], np.clip(image[:200, :180], 0, 255)[outside], atol=1.0)


def test_missing_litert_runtime_names_the_extra(monkeypatch, capsys, tmp_path, astronaut):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(BackendError, match=r"pip install 'facefuse\[litert\]'"):
        load_refiner("litert-int8")
    from PIL import Image

    from facefuse.cli import main

    src = tmp_path / "a.png"
    Image.fromarray(astronaut).save(src)
    code = main(["fuse", str(src), str(src), "-o", str(tmp_path / "o.jpg"),
                 "--backend", "litert-int8"])
    err = capsys.readouterr().err
    assert code == 5 and "facefuse[litert]" in err
    assert not (tmp_path / "o.jpg").exists()


def test_missing_export_tools_name_the_extra(monkeypatch, tmp_path, london):
    from facefuse.export import export_all

    monkeypatch.setitem(sys.modules, "litert_torch", None)
    with pytest.raises(BackendError, match=r"facefuse\[export\]"):
        export_all(tmp_path, ["litert"], sizes=[64], data=london, calibration=2, check=False)


@pytest.mark.slow
def test_small_export_is_complete_consistent_and_described(tmp_path, london):
    """Every format at a small size, calibrated on a few real faces, then the check."""
    from facefuse.export import export_all
    from facefuse.export.coreml import describe

    result = export_all(tmp_path, sizes=[64], data=london, calibration=8, log=lambda m: None)
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert written["files"] == result["files"]
    for kind in ("onnx-fp32", "onnx-int8", "litert-fp32-64", "litert-int8-64",
                 "coreml-fp16-64", "coreml-int8-64"):
        assert (tmp_path / result["files"][kind]).exists(), kind
    for kind in ("onnx-int8", "litert-int8-64"):
        assert result["metrics"][kind]["face_psnr_db_min"] >= INT8_MIN_FACE_PSNR
    for kind in ("coreml-fp16-64", "coreml-int8-64"):
        spec = describe(tmp_path / result["files"][kind])
        assert [f["name"] for f in spec["inputs"]] == list(written["inputs"])
        assert [f["name"] for f in spec["outputs"]] == [OUTPUT]
        assert all(f["shape"][-2:] == [64, 64] for f in spec["inputs"] + spec["outputs"])
        assert ("INT8" in spec["weight_tensors"]) == (kind == "coreml-int8-64")
    report = json.loads((tmp_path / "consistency.json").read_text())
    assert report["ok"] and result["consistency_ok"]
    ops = {r["op"] for r in report["probes"]}
    assert {"Conv", "Conv (group)", "Conv 1x1", "Resize", "Concat", "Clip",
            "Mul/Add/Clip"} <= ops
    assert {r["backend"] for r in report["probes"]} == {"onnxruntime", "litert"}
    assert (tmp_path / "consistency.md").read_text().count("| yes |") >= 14
    assert [c["ok"] for c in report["coreml"]] == [True, True]
    assert "not executed" in (tmp_path / "consistency.md").read_text()


def test_calibration_capture_stops_with_a_clear_error_where_no_pair_fuses(tmp_path):
    """The INT8 calibration takes another pair when a photo shows no face, but a folder
    where no pair fuses ends with a typed error instead of trying forever (and an error that
    is not about the photos is not swallowed)."""
    from skimage import data as skdata

    from facefuse.export.int8 import capture_refiner_inputs
    from facefuse.imageio import save_image

    scene = skdata.coffee()[::4, ::4]  # a real photo, no face
    for person in ("001", "002", "003"):
        save_image(tmp_path / f"{person}_03.jpg", scene)
    with pytest.raises(BackendError, match="gave no fusion"):
        capture_refiner_inputs(tmp_path, {"001", "002", "003"}, count=1, size=320)
