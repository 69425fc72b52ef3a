"""facefuse: offline face fusion. Blend a source face into a template photo on your own machine.

    >>> import facefuse
    >>> result = facefuse.fuse("me.jpg", "template.jpg", ratio=0.6)
    >>> facefuse.save_image("out.jpg", result.image)
"""

import os

# ONNX Runtime (1.32 on Linux) ships Microsoft's 1DS telemetry: on first use it writes a device
# id and an event queue under ~/.cache/Microsoft/DeveloperTools and a long-running process
# (the WebUI, a batch, a video) looks up its collector's address to send them. An offline
# tool sends nothing: switched off before any module of ours can import onnxruntime.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from .errors import BackendError, FaceFuseError, ImageError, NoFaceError, ParameterError
from .imageio import load_image, save_image
from .params import PRESETS, FusionParams, preset

__version__ = "0.1.0"

# The engine (and with it MediaPipe) loads on first use, so that light entry points (the
# refiner alone, a benchmark worker measuring its own memory) do not pay for it.
_ENGINE = ("FaceFuser", "FusionResult", "PreparedSource", "fuse")


def __getattr__(name: str):
    if name in _ENGINE:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'facefuse' has no attribute {name!r}")

__all__ = [
    "PRESETS",
    "BackendError",
    "FaceFuseError",
    "FaceFuser",
    "FusionParams",
    "FusionResult",
    "ImageError",
    "NoFaceError",
    "ParameterError",
    "PreparedSource",
    "__version__",
    "fuse",
    "load_image",
    "preset",
    "save_image",
]
