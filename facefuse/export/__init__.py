"""`facefuse export`: the refiner as files an app can ship, with a manifest saying how to
feed them. ONNX FP32 (dynamic size) and ONNX INT8 (static QDQ, calibrated on real faces)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..align import CANONICAL_KEYPOINTS
from ..refine import INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE, OUTPUT, SIZE_MULTIPLE, model_path


def manifest(files: dict[str, str], metrics: dict | None = None) -> dict:
    """What an app needs to know to run the exported refiner."""
    return {
        "model": "facefuse refiner U-Net",
        "files": files,
        "inputs": {
            INPUT_IMAGE: {"shape": [1, 3, "H", "W"], "layout": "NCHW", "dtype": "float32",
                          "range": [0.0, 1.0], "colour": "RGB",
                          "meaning": "the coarse fused face crop"},
            INPUT_MASK: {"shape": [1, 1, "H", "W"], "layout": "NCHW", "dtype": "float32",
                         "range": [0.0, 1.0], "meaning": "soft face mask (1 = face region)"},
            INPUT_TEMPLATE: {"shape": [1, 3, "H", "W"], "layout": "NCHW", "dtype": "float32",
                             "range": [0.0, 1.0], "colour": "RGB",
                             "meaning": "the template's own face crop warped to the fused "
                                        "shape (it carries the photo's light); all zeros "
                                        "when there is none"},
        },
        "outputs": {OUTPUT: {"shape": [1, 3, "H", "W"], "layout": "NCHW", "dtype": "float32",
                             "range": [0.0, 1.0], "colour": "RGB",
                             "meaning": "the harmonised crop; identical to the input where "
                                        "the mask is 0"}},
        "size": {"multiple_of": SIZE_MULTIPLE, "trained_at": 256,
                 "recommended": {"album": 512, "camera": 320}},
        "preprocessing": [
            "detect the face and its 478 landmarks (MediaPipe Face Mesh, refined)",
            "similarity-align 5 key points (iris centres 468/473, nose tip 1, mouth corners "
            "61/291) to canonical points x crop size: "
            + json.dumps(CANONICAL_KEYPOINTS.round(4).tolist()),
            "fuse shape and texture in that crop (see docs/architecture.md)",
            "image = crop RGB / 255, mask = feathered face oval (0..1)",
        ],
        "postprocessing": ["refined x 255 -> uint8", "inverse similarity back into the photo, "
                                                     "feathered by the mask"],
        "metrics": metrics or {},
    }


def export_onnx_files(out: Path, formats: list[str], data: Path | None,
                      calibration: int = 200) -> dict:
    """Write the requested formats into `out` with manifest.json; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    files, metrics = {}, {}
    fp32 = out / "unet_fp32.onnx"
    if fp32.resolve() != model_path("ort-fp32").resolve():
        shutil.copyfile(model_path("ort-fp32"), fp32)
    files["onnx-fp32"] = fp32.name
    if "int8" in formats:
        if data is None:
            from ..errors import ParameterError

            raise ParameterError("INT8 calibration needs real faces: pass --data "
                                 "(e.g. ../shared/faces/london)")
        from ..nn.data import find_photos, person_id, split_ids
        from .int8 import capture_refiner_inputs, face_psnr_vs_fp32, quantize

        train_ids, val_ids = split_ids([person_id(p) for p in find_photos(data)])
        samples = capture_refiner_inputs(data, train_ids, calibration, 320)
        held_out = capture_refiner_inputs(data, val_ids, 40, 512, seed=11)
        int8 = quantize(fp32, out / "unet_int8.onnx", samples, method="entropy")
        files["onnx-int8"] = int8.name
        metrics["int8_vs_fp32_held_out"] = face_psnr_vs_fp32(fp32, int8, held_out)
        metrics["int8_calibration"] = {"method": "entropy", "samples": len(samples),
                                       "crop": 320, "isp_simulation": True,
                                       "excluded_nodes": ["stem conv", "head conv"]}
    result = manifest(files, metrics)
    (out / "manifest.json").write_text(json.dumps(result, indent=2))
    return result
