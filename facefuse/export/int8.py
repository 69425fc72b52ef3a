"""INT8 ONNX: static QDQ quantisation, per-channel weights, calibrated on real face crops.

Calibration inputs are what the refiner really sees: composites and masks captured from the
fusion pipeline on the London training identities, with the phone ISP simulation (gamma +
Gaussian blur + noise + JPEG) applied to the source photo first. Only the convolutions are
quantised, and the first and last convolution stay in float (the stem reads raw pixels and
the head writes the colour transform: both are the most sensitive to rounding). Agreement
with FP32 is measured on held-out identities (face-region PSNR).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BackendError, ImageError, NoFaceError
from ..stages.refine import INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE, Refiner

SENSITIVE_NODES = ("/stem/stem.0/Conv", "/head/Conv")


@dataclass
class RecordingRefiner:
    """Stands in for the refiner during calibration capture: keeps the inputs it is given
    and returns the composite unchanged (what it would output does not matter here)."""

    inputs: list

    def __call__(self, image: np.ndarray, mask: np.ndarray, template: np.ndarray | None = None,
                 work_side: int | None = None, gate: np.ndarray | None = None) -> np.ndarray:
        tpl = np.zeros(image.shape, np.float32) if template is None else template
        self.inputs.append((np.asarray(image, np.float32).copy(),
                            np.asarray(mask, np.float32).copy(),
                            np.asarray(tpl, np.float32).copy()))
        return image


def capture_refiner_inputs(data_dir: Path, identities: set[str], count: int, size: int,
                           seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """(composite, mask, template) from fusions among `identities`, ISP-simulated sources."""
    from ..imageio import load_image
    from ..nn.data import find_photos, isp_simulation, person_id
    from ..params import FusionParams
    from ..pipeline import FaceFuser

    rng = np.random.default_rng(seed)
    photos = [p for p in find_photos(data_dir) if person_id(p) in identities]
    recorder = RecordingRefiner([])
    skipped = 0
    with FaceFuser() as engine:
        engine.set_refiner("ort-fp32", recorder)
        while len(recorder.inputs) < count:
            src_path, tpl_path = rng.choice(len(photos), 2, replace=False)
            src = load_image(photos[src_path]).astype(np.float32) / 255.0
            src = (isp_simulation(src, rng) * 255).astype(np.uint8)
            params = FusionParams(ratio=float(rng.uniform(0.3, 1.0)),
                                  shape_ratio=float(rng.uniform(0.0, 1.0)), crop_size=size)
            try:
                engine.fuse(src, photos[tpl_path], params)
            except (NoFaceError, ImageError) as err:  # no usable face: take another pair
                skipped += 1
                if skipped > max(100, 4 * count):  # not a few odd photos: say what went wrong
                    raise BackendError(f"calibration capture: {skipped} pairs in {data_dir} "
                                       f"gave no fusion (last: {err})") from err
    return recorder.inputs[:count]


class _Reader:
    """onnxruntime CalibrationDataReader over captured inputs."""

    def __init__(self, samples: list[tuple[np.ndarray, ...]]) -> None:
        self._it = iter([{
            INPUT_IMAGE: (img / 255.0).transpose(2, 0, 1)[None].astype(np.float32),
            INPUT_MASK: mask[None, None].astype(np.float32),
            INPUT_TEMPLATE: (tpl / 255.0).transpose(2, 0, 1)[None].astype(np.float32)}
            for img, mask, tpl in samples])

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - not used by the calibrators we run
        pass


def quantize(fp32: Path, out: Path, samples: list, method: str = "percentile") -> Path:
    """Write a static QDQ INT8 model calibrated on `samples`."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax}
    out.parent.mkdir(parents=True, exist_ok=True)
    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    extra = {"CalibPercentile": 99.99} if method == "percentile" else {}
    with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
        quantize_static(str(prepared), str(out), _Reader(samples),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv"], nodes_to_exclude=list(SENSITIVE_NODES),
                        calibrate_method=methods[method],
                        extra_options={"ActivationSymmetric": False, **extra})
    prepared.unlink(missing_ok=True)
    return out


def face_psnr_vs_fp32(fp32: Path, int8: Path, samples: list) -> dict[str, float]:
    """PSNR of the INT8 output against the FP32 output, inside the face mask and overall."""
    a, b = Refiner(fp32), Refiner(int8)
    face, whole = [], []
    for img, mask, tpl in samples:
        ya, yb = a(img, mask, tpl) / 255.0, b(img, mask, tpl) / 255.0
        sel = mask > 0.5
        face.append(_psnr(ya[sel], yb[sel]))
        whole.append(_psnr(ya, yb))
    return {"face_psnr_db_mean": float(np.mean(face)), "face_psnr_db_min": float(np.min(face)),
            "psnr_db_mean": float(np.mean(whole))}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))
