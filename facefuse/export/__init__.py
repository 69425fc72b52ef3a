"""`facefuse export`: the refiner as files an app can ship, with a manifest saying how to
feed them: ONNX FP32 (dynamic size), ONNX INT8 (static QDQ, calibrated on real faces), LiteRT
FP32 and INT8 and Core ML FP16 and INT8-weight packages (one per fixed size), then the
operator consistency check on the files just written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..stages.align import CANONICAL_KEYPOINTS
from ..stages.refine import (
    INPUT_IMAGE,
    INPUT_MASK,
    INPUT_TEMPLATE,
    MODELS_DIR,
    OUTPUT,
    SIZE_MULTIPLE,
    model_path,
)

FORMATS = ("onnx", "int8", "litert", "coreml")
DEFAULT_SIZES = (512, 320)
SHIPPED_WEIGHTS = "unet.pt"  # the trained torch weights the ONNX file was exported from


def manifest(files: dict[str, str], metrics: dict | None = None,
             quantized_io: dict | None = None) -> dict:
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
        "fixed_size_files": "LiteRT and Core ML files take exactly the size in their name "
                            "(resize the crop to it); ONNX files take any multiple of 32",
        "quantized_io": quantized_io or {},
        "metrics": metrics or {},
    }


def load_trained_network():
    """The shipped refiner as a torch module (eval), from the committed weights."""
    try:
        import torch  # noqa: F401
    except ImportError:
        from ..errors import BackendError

        raise BackendError("exporting needs torch: pip install 'facefuse[export]'") from None
    from ..nn.train import load_checkpoint_model

    return load_checkpoint_model(MODELS_DIR / SHIPPED_WEIGHTS)


def real_samples(data: Path | None, count: int, size: int, seed: int, held_out: bool
                 ) -> list[tuple[np.ndarray, ...]]:
    """What the refiner really sees, captured from the pipeline: training identities for
    calibration, held-out identities for measuring (from `data`); without `data`, fusions of
    the astronaut photo with its mirror image (enough for a float agreement check)."""
    if data is None:
        return astronaut_samples(count, size)
    from ..nn.data import find_photos, person_id, split_ids
    from .int8 import capture_refiner_inputs

    train_ids, val_ids = split_ids([person_id(p) for p in find_photos(data)])
    return capture_refiner_inputs(data, val_ids if held_out else train_ids, count, size,
                                  seed=seed)


def astronaut_samples(count: int, size: int) -> list[tuple[np.ndarray, ...]]:
    from skimage import data as skdata

    from ..params import FusionParams
    from ..pipeline import FaceFuser
    from .int8 import RecordingRefiner

    photo = skdata.astronaut()
    recorder = RecordingRefiner([])
    with FaceFuser() as engine:
        engine.set_refiner("ort-fp32", recorder)
        for i in range(count):
            engine.fuse(photo[:, ::-1].copy(), photo,
                        FusionParams(ratio=0.4 + 0.6 * i / max(1, count - 1), crop_size=size))
    return recorder.inputs


def export_all(out: Path, formats: list[str] | tuple[str, ...] = FORMATS,
               sizes: list[int] | tuple[int, ...] = DEFAULT_SIZES, data: Path | None = None,
               calibration: int = 200, check: bool = True, log=print) -> dict:
    """Write the requested formats into `out` with manifest.json (and consistency.md/json
    when `check`); returns the manifest."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ParameterError(f"unknown format(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(FORMATS)}")
    bad = [s for s in sizes if s < SIZE_MULTIPLE or s % SIZE_MULTIPLE]
    if bad:
        raise ParameterError(f"sizes must be multiples of {SIZE_MULTIPLE} (got {bad})")
    needs_int8 = "int8" in formats or "litert" in formats
    if needs_int8 and data is None:
        raise ParameterError("INT8 calibration needs real faces: pass --data "
                             "(e.g. ../shared/faces/london)")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    metrics: dict = {}
    io: dict = {}
    fp32 = out / "unet_fp32.onnx"
    if "onnx" in formats or "int8" in formats:
        if fp32.resolve() != model_path("ort-fp32").resolve():
            shutil.copyfile(model_path("ort-fp32"), fp32)
        files["onnx-fp32"] = fp32.name
    calib, held = [], []
    if needs_int8:
        log(f"capturing {calibration} calibration crops and 40 held-out crops from {data}")
        calib = real_samples(data, calibration, 320, seed=0, held_out=False)
        held = real_samples(data, 40, 512, seed=11, held_out=True)
    if "int8" in formats:
        from .int8 import face_psnr_vs_fp32, quantize

        int8 = quantize(fp32, out / "unet_int8.onnx", calib, method="entropy")
        files["onnx-int8"] = int8.name
        metrics["onnx-int8"] = {"vs": "onnx-fp32", **face_psnr_vs_fp32(fp32, int8, held)}
        metrics["onnx_int8_calibration"] = {"method": "entropy", "samples": len(calib),
                                            "crop": 320, "isp_simulation": True,
                                            "excluded_nodes": ["stem conv", "head conv"]}
    net = None
    if "litert" in formats or "coreml" in formats or check:
        net = load_trained_network()
    if "litert" in formats:
        from . import litert
        from .int8 import face_psnr_vs_fp32

        for side in sizes:
            log(f"LiteRT {side}: converting")
            tfl = litert.convert_fp32(net, side, out / f"unet_fp32_{side}.tflite")
            log(f"LiteRT {side}: quantising (static INT8, {len(calib)} calibration crops)")
            tfl8 = litert.quantize_int8(tfl, out / f"unet_int8_{side}.tflite", calib)
            files[f"litert-fp32-{side}"], files[f"litert-int8-{side}"] = tfl.name, tfl8.name
            metrics[f"litert-int8-{side}"] = {"vs": f"litert-fp32-{side}",
                                              **face_psnr_vs_fp32(tfl, tfl8, held)}
            io[tfl8.name] = litert.io_quantization(tfl8)
    if "coreml" in formats:
        from . import coreml

        for side in sizes:
            log(f"Core ML {side}: converting (FP16, INT8 weights)")
            for kind, path in coreml.convert(net, side, out).items():
                files[f"{kind}-{side}"] = path.name
                metrics[f"{kind}-{side}"] = {"spec": coreml.describe(path)}
    result = manifest(files, metrics, io)
    (out / "manifest.json").write_text(json.dumps(result, indent=2))
    if check:
        from . import check as consistency

        log("checking operator consistency (torch vs ONNX Runtime vs LiteRT)")
        samples = held[:6] if held else real_samples(None, 3, 512, seed=0, held_out=True)
        report = consistency.check(net, samples, side=min(sizes),
                                   files={k: out / v for k, v in files.items()})
        consistency.write(report, out)
        result["consistency_ok"] = report["ok"]
    return result


def export_trust(out: Path, weights: Path = MODELS_DIR / "trust.pt") -> dict:
    """The learned trust map as a LiteRT FP32 file for the phone app (`trust_fp32_128.tflite`)
    from its torch weights, checked against the shipped ONNX file on the astronaut's crop:
    {"file", "side", "max_abs_vs_onnx"}."""
    import cv2
    from skimage import data as skdata

    from ..nn.train_trust import load_trust_model
    from ..stages import occlusion, texture
    from ..stages.align import align_face
    from ..stages.analysis import FaceAnalyzer
    from . import litert

    side = occlusion.TRUST_SIDE
    path = litert.convert_trust_fp32(load_trust_model(weights), side,
                                     Path(out) / f"trust_fp32_{side}.tflite")
    photo = skdata.astronaut()
    with FaceAnalyzer() as analyzer:
        aligned = align_face(photo, analyzer.detect(photo)[0], 512)
    skin = texture.skin_mask(aligned.landmarks[:, :2], 512)
    image = cv2.resize(aligned.crop.astype(np.float32), (side, side),
                       interpolation=cv2.INTER_AREA) / 255.0
    feeds = {occlusion.TRUST_IMAGE: np.ascontiguousarray(image.transpose(2, 0, 1)[None]),
             occlusion.TRUST_SKIN: cv2.resize(skin, (side, side),
                                              interpolation=cv2.INTER_AREA)[None, None]}
    reference = occlusion._trust_session(occlusion.TRUST_MODEL).run(
        [occlusion.TRUST_OUTPUT], feeds)[0]
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    got = runner(**feeds)[occlusion.TRUST_OUTPUT]
    return {"file": path.name, "side": side,
            "max_abs_vs_onnx": float(np.abs(got - reference).max())}
