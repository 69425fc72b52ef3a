"""Refine: our U-Net, run by ONNX Runtime, or LiteRT for the phone files (no torch at
inference).

The network takes the coarse composite, the face mask and the template's own face crop (which
carries the photo's light) and returns the harmonised crop (light, tone and seam fixed); it
predicts a colour correction of the composite, so the source's features pass through by
construction. Without a template (`facefuse harmonize`) it goes by the surroundings alone.
One session is created per Refiner and reused. LiteRT files have one fixed input size (the
network converts only that way): inputs are resized to fit and padded up to it.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import BackendError, ParameterError

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
MODEL_FILES = {"ort-fp32": "unet_fp32.onnx", "ort-int8": "unet_int8.onnx",
               "litert-fp32": "unet_fp32_256.tflite", "litert-int8": "unet_int8_256.tflite"}
# `facefuse harmonize` (no template) has its own weights of the same network, trained in
# its regime (the region LAB-matched to its surroundings first): one set of weights could
# not serve both without costing the pipeline identity (model card). ONNX FP32 only.
HARMONIZER_FILE = "unet_harmonize.onnx"
# The network was trained on 256 px views of the aligned 512 crop, and its change is a smooth
# colour transform: the pipeline refines at this side and upsamples the change, which keeps
# the face at the scale the network knows and costs a quarter of a 512 run.
REFINE_SIDE = 256


def refine_side(crop_size: int) -> int:
    """The side the pipeline refines a crop at: half the crop (256 for the 512 album crop,
    160 for the 320 camera crop). Measured on the camera path: 160 instead of 256 changes
    the fused face by 46 dB PSNR on average (worst 44 dB) and takes ~4 ms off each frame."""
    return max(SIZE_MULTIPLE, crop_size * REFINE_SIDE // 512 // SIZE_MULTIPLE * SIZE_MULTIPLE)
SIZE_MULTIPLE = 32  # five stride-2 levels: inputs are padded to a multiple of this
INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE, OUTPUT = "image", "mask", "template", "refined"


def model_path(backend: str = "ort-fp32", models_dir: Path | None = None) -> Path:
    if backend not in MODEL_FILES:
        raise ParameterError(f"unknown backend {backend!r}; choose one of "
                             f"{', '.join(MODEL_FILES)}")
    return (models_dir or MODELS_DIR) / MODEL_FILES[backend]


def default_threads() -> int:
    """Intra-op threads: all cores this process may use (2 on the reference laptop)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def to_feeds(image: np.ndarray, mask: np.ndarray, template: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network's inputs (NCHW float32 0..1) from a crop (0..255), its mask (0..1) and
    the template crop (0..255, or None: zeros)."""
    if template is None:
        template = np.zeros(image.shape, np.float32)
    x = np.clip(image, 0, 255).astype(np.float32) / 255.0
    t = np.clip(template, 0, 255).astype(np.float32) / 255.0
    m = np.clip(mask, 0, 1).astype(np.float32)
    return (np.ascontiguousarray(x.transpose(2, 0, 1)[None]), np.ascontiguousarray(m[None, None]),
            np.ascontiguousarray(t.transpose(2, 0, 1)[None]))


def resized_feeds(sample: tuple[np.ndarray, ...], side: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network's inputs at side x side from a captured (crop, mask, template) of any
    size: what calibration, the consistency check and the benchmark feed a fixed-size file."""
    resized = [cv2.resize(np.asarray(a, np.float32), (side, side), interpolation=cv2.INTER_AREA)
               for a in sample]
    return to_feeds(*resized)


class OrtSession:
    """ONNX Runtime on the CPU, any input size (a multiple of 32)."""

    fixed_side: int | None = None

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # ONNX Runtime's workers spin after each run by default, taking the cores away from
        # the OpenCV stages around the refiner (measured: halved the camera path's fps).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BackendError(f"could not load the U-Net model {path}: {exc}") from None

    def run(self, image: np.ndarray, mask: np.ndarray, template: np.ndarray) -> np.ndarray:
        feeds = {INPUT_IMAGE: image, INPUT_MASK: mask, INPUT_TEMPLATE: template}
        return self.session.run([OUTPUT], feeds)[0]


class LiteRTSession:
    """LiteRT (TFLite) interpreter with XNNPACK: one fixed square size; FP32 or full-integer
    files (INT8 inputs and outputs are quantised and dequantised here, as an app would)."""

    def __init__(self, path: Path, threads: int | None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise BackendError("the LiteRT backends need the LiteRT runtime: "
                               "pip install 'facefuse[litert]'") from None
        try:
            self.interpreter = Interpreter(model_path=str(path),
                                           num_threads=threads or default_threads())
            self.runner = self.interpreter.get_signature_runner()
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError with its own text
            raise BackendError(f"could not load the U-Net model {path}: {exc}") from None
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()
        if set(self.inputs) != {INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE} or \
                OUTPUT not in self.outputs:
            raise BackendError(f"{path} is not a facefuse refiner (inputs "
                               f"{sorted(self.inputs)}, outputs {sorted(self.outputs)})")
        self.fixed_side = int(self.inputs[INPUT_IMAGE]["shape"][-1])

    def run(self, image: np.ndarray, mask: np.ndarray, template: np.ndarray) -> np.ndarray:
        feeds = {INPUT_IMAGE: image, INPUT_MASK: mask, INPUT_TEMPLATE: template}
        result = self.runner(**{k: quantize(v, self.inputs[k]) for k, v in feeds.items()})
        return dequantize(result[OUTPUT], self.outputs[OUTPUT])


def quantize(value: np.ndarray, detail: dict) -> np.ndarray:
    """Float to a LiteRT tensor's integer type, by its scale and zero point."""
    if detail["dtype"] == np.float32:
        return value.astype(np.float32, copy=False)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(value / scale + zero), info.min, info.max).astype(detail["dtype"])


def dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return value
    scale, zero = detail["quantization"]
    return (value.astype(np.float32) - zero) * scale


class Refiner:
    """A loaded U-Net; call it with a float crop (0..255) and a 0..1 mask."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        path = Path(path)
        if not path.exists():
            raise BackendError(f"U-Net model file not found: {path}; reinstall facefuse, "
                               "or run without the refiner (--no-refine)")
        kind = LiteRTSession if path.suffix == ".tflite" else OrtSession
        self.session = kind(path, threads)
        self.fixed_side = self.session.fixed_side
        self.path = path

    def __call__(self, image: np.ndarray, mask: np.ndarray, template: np.ndarray | None = None,
                 work_side: int | None = None, gate: np.ndarray | None = None) -> np.ndarray:
        """Refined image (float 0..255). `template` (0..255, same size) is the face that
        was there before; None when there is none. With `work_side`, larger inputs are
        refined at that long side and the correction is upsampled: the network's change is
        a smooth colour transform, so this keeps every detail at a fraction of the cost.
        `gate` (0..1, full size; None: 1) weights the change pixel by pixel: the pipeline
        passes the template's trust map, since thin occluders kept on top (glasses rims)
        vanish from the mask at the work side and the upsampled change would land on them."""
        h, w = image.shape[:2]
        if template is None:
            template = np.zeros(image.shape, np.float32)
        if self.fixed_side:  # a fixed-size file: nothing larger than it fits
            work_side = min(work_side or self.fixed_side, self.fixed_side)
        if work_side and max(h, w) > work_side:
            f = work_side / max(h, w)
            size = (max(SIZE_MULTIPLE, round(w * f)), max(SIZE_MULTIPLE, round(h * f)))
            small = [cv2.resize(np.asarray(a, np.float32), size, interpolation=cv2.INTER_AREA)
                     for a in (image, mask, template)]
            change = self._run(*small) - small[0]
            change = cv2.resize(change, (w, h), interpolation=cv2.INTER_LINEAR)
            refined = np.clip(image + change, 0, 255)
        else:
            refined = self._run(image, mask, template)
        if gate is None:
            return refined
        weight = np.clip(np.asarray(gate, np.float32), 0, 1)[..., None]
        return image + weight * (refined - image)

    def _run(self, image: np.ndarray, mask: np.ndarray, template: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if self.fixed_side:
            ph, pw = self.fixed_side - h, self.fixed_side - w
        else:
            ph, pw = (-h) % SIZE_MULTIPLE, (-w) % SIZE_MULTIPLE
        if ph or pw:  # reflected context for the network; the mask is 0 there
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
            template = np.pad(template, ((0, ph), (0, pw), (0, 0)), mode="reflect")
            mask = np.pad(mask, ((0, ph), (0, pw)), mode="constant")
        y = self.session.run(*to_feeds(image, mask, template))
        out = y[0].transpose(1, 2, 0)[:h, :w]
        return np.clip(out * 255.0, 0, 255)


def harmonize(refiner: Refiner, image: np.ndarray, mask: np.ndarray, *,
              margin: float = 0.25, work_side: int | None = REFINE_SIDE) -> np.ndarray:
    """Harmonise the region of `image` (uint8 RGB) where `mask` (0..1) is set.

    The network runs on the region's bounding box plus a margin of context (the light
    around the region is what it matches to); the rest of the image is returned untouched.
    """
    if mask.shape != image.shape[:2]:
        raise ParameterError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                              f"{image.shape[1]}x{image.shape[0]}: they must match")
    ys, xs = np.nonzero(mask > 0.02)
    if len(xs) == 0:
        raise ParameterError("the mask is empty: paint the region to harmonise in white")
    h, w = mask.shape
    bw, bh = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    x0 = max(0, int(xs.min() - margin * bw))
    x1 = min(w, int(xs.max() + 1 + margin * bw))
    y0 = max(0, int(ys.min() - margin * bh))
    y1 = min(h, int(ys.max() + 1 + margin * bh))
    region = image[y0:y1, x0:x1].astype(np.float32)
    region_mask = mask[y0:y1, x0:x1].astype(np.float32)
    # As in the pipeline, the network refines a region whose colour statistics were first
    # matched (here to its surroundings: there is no template face).
    from .texture import lab_transfer

    matched = lab_transfer(region / 255.0, region_mask) * 255.0
    refined = refiner(matched, region_mask, None, work_side=work_side)
    out = image.copy()
    out[y0:y1, x0:x1] = np.clip(refined + 0.5, 0, 255).astype(np.uint8)
    return out


def load_harmonizer(models_dir: Path | None = None, threads: int | None = None) -> Refiner:
    """The shipped no-template weights (`facefuse harmonize`), ready to run."""
    return Refiner((models_dir or MODELS_DIR) / HARMONIZER_FILE, threads=threads)


def load_refiner(backend: str = "ort-fp32", models_dir: Path | None = None,
                 threads: int | None = None) -> Refiner:
    """The shipped model for `backend`, ready to run."""
    return Refiner(model_path(backend, models_dir), threads=threads)
