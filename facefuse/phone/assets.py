"""Files the phone app loads that live elsewhere in the package: the Python server serves
them at these URL paths, and `facefuse phone --build` copies them into the bundle.

The refiner is our own U-Net exactly as `facefuse export` wrote it into facefuse/models, so
the app and the desktop run one model file and nothing is committed twice.
"""

from __future__ import annotations

from pathlib import Path

from ..stages.refine import MODELS_DIR

APP_DIR = Path(__file__).resolve().parent / "app"
# The engine runs the FP32 LiteRT file: LiteRT.js refuses full-integer INT8 tensors, and
# FP32 at 256 px is the album path's refine side exactly.
REFINER_FILE = "unet_fp32_256.tflite"
REFINER_URL = f"models/{REFINER_FILE}"


def model_files() -> dict[str, Path]:
    """URL path (relative to the app's root) -> file on disk, for files outside app/."""
    return {REFINER_URL: MODELS_DIR / REFINER_FILE,
            "models/manifest.json": MODELS_DIR / "manifest.json"}
