"""Refine: our U-Net, run by ONNX Runtime (no torch at inference).

The network takes the coarse composite and the face mask and returns the harmonised crop
(light, tone and seam fixed); it predicts a correction of the composite, so the source's
features pass through by construction. One session is created per Refiner and reused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import BackendError, ParameterError

MODELS_DIR = Path(__file__).resolve().parent / "models"
MODEL_FILES = {"ort-fp32": "unet_fp32.onnx", "ort-int8": "unet_int8.onnx"}
SIZE_MULTIPLE = 32  # five stride-2 levels: inputs are padded to a multiple of this
INPUT_IMAGE, INPUT_MASK, OUTPUT = "image", "mask", "refined"


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


class Refiner:
    """A loaded U-Net; call it with a float crop (0..255) and a 0..1 mask."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        path = Path(path)
        if not path.exists():
            raise BackendError(f"U-Net model file not found: {path}; reinstall facefuse, "
                               "or run without the refiner (--no-refine)")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BackendError(f"could not load the U-Net model {path}: {exc}") from None
        self.path = path

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        ph = (-h) % SIZE_MULTIPLE
        pw = (-w) % SIZE_MULTIPLE
        x = np.clip(image, 0, 255).astype(np.float32) / 255.0
        m = np.clip(mask, 0, 1).astype(np.float32)
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")
            m = np.pad(m, ((0, ph), (0, pw)), mode="constant")
        feeds = {INPUT_IMAGE: x.transpose(2, 0, 1)[None], INPUT_MASK: m[None, None]}
        (y,) = self.session.run([OUTPUT], feeds)
        out = y[0].transpose(1, 2, 0)[:h, :w]
        return np.clip(out * 255.0, 0, 255)


def load_refiner(backend: str = "ort-fp32", models_dir: Path | None = None,
                 threads: int | None = None) -> Refiner:
    """The shipped model for `backend`, ready to run."""
    return Refiner(model_path(backend, models_dir), threads=threads)
