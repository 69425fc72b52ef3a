"""facefuse: offline face fusion. Blend a source face into a template photo on your own machine.

    >>> import facefuse
    >>> result = facefuse.fuse("me.jpg", "template.jpg", ratio=0.6)
    >>> facefuse.save_image("out.jpg", result.image)
"""

from .errors import BackendError, FaceFuseError, ImageError, NoFaceError, ParameterError
from .imageio import load_image, save_image
from .params import PRESETS, FusionParams, preset
from .pipeline import FaceFuser, FusionResult, PreparedSource, fuse

__version__ = "0.1.0"

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
