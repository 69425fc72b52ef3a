"""Files the phone app loads that live elsewhere in the package: the Python server serves
them at these URL paths, and `facefuse phone --build` copies them into the bundle.

The refiner is our own U-Net exactly as `facefuse export` wrote it into facefuse/models, so
the app and the desktop run one model file and nothing is committed twice. The landmark
models are MediaPipe's own .tflite files (Apache-2.0) from the installed mediapipe wheel, the
same files the Python analyser's graphs run: served from where pip put them, never copied
into the repository and never downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..stages.refine import MODELS_DIR

APP_DIR = Path(__file__).resolve().parent / "app"
# The engine runs the FP32 LiteRT file: LiteRT.js refuses full-integer INT8 tensors, and
# FP32 at 256 px is the album path's refine side exactly.
REFINER_FILE = "unet_fp32_256.tflite"
REFINER_URL = f"models/{REFINER_FILE}"
# The live path refines at half the 320 crop: a file made for 160 runs 2.6x fewer pixels
# than the 256 one padded up (the same weights: `facefuse export --sizes 160`).
LIVE_REFINER_FILE = "unet_fp32_160.tflite"
LIVE_REFINER_URL = f"models/{LIVE_REFINER_FILE}"
# The learned occlusion trust map (stages/occlusion.py), for `occlusion: true`: the LiteRT
# copy of the ONNX file the desktop runs (`facefuse export --trust`).
TRUST_FILE = "trust_fp32_128.tflite"
TRUST_URL = f"models/{TRUST_FILE}"
# URL name -> path inside the mediapipe wheel's modules/ folder (engine/facemodels.js).
MEDIAPIPE_MODELS = {
    "face_detection_short_range.tflite": "face_detection/face_detection_short_range.tflite",
    "face_landmark.tflite": "face_landmark/face_landmark.tflite",
    "iris_landmark.tflite": "iris_landmark/iris_landmark.tflite",
}
MEDIAPIPE_URL = "models/mediapipe/"


def mediapipe_modules() -> Path | None:
    """The installed mediapipe wheel's modules/ folder (found without importing mediapipe,
    which takes a second), or None when mediapipe is not installed."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "modules"


def model_files() -> dict[str, Path]:
    """URL path (relative to the app's root) -> file on disk, for files outside app/."""
    files = {REFINER_URL: MODELS_DIR / REFINER_FILE,
             LIVE_REFINER_URL: MODELS_DIR / LIVE_REFINER_FILE,
             TRUST_URL: MODELS_DIR / TRUST_FILE,
             "models/manifest.json": MODELS_DIR / "manifest.json"}
    modules = mediapipe_modules()
    if modules is not None:
        for name, rel in MEDIAPIPE_MODELS.items():
            if (modules / rel).exists():
                files[MEDIAPIPE_URL + name] = modules / rel
    return files
