"""Result images served from files that belong to one request each.

Why: Gradio saves an image returned as an array under a cache path derived from its
content hash and writes it in place (`processing_utils.save_pil_to_cache`). Two requests
with the same result share that path, so one response can stream the file while another
request truncates and rewrites it: a broken download (h11 "Too little data for declared
Content-Length"), and, between users, a file written for someone else.

Here each result is encoded once, written atomically under a fresh random name in Gradio's
cache folder and handed to Gradio as a path; Gradio serves a path already inside its cache
as it is, without copying. Nothing else ever writes that name. The store keeps a bounded
number of files (oldest deleted first) so a long session or a busy server cannot fill the
disk; Gradio's own `delete_cache` ages out the rest.

Imports gradio: load this module only after `offline_environment` has set GRADIO_TEMP_DIR.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import uuid
from collections import deque
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from ..imageio import encode_image

RESULTS_FOLDER = "facefuse-results"
MAX_RESULT_FILES = 2000
MAX_RESULT_BYTES = 1 << 30  # 1 GiB
PIL_FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG"}


class ResultStore:
    """Write-once result files under `<gradio cache>/facefuse-results/`, newest kept.

    Eviction is by count and total size; the oldest file is minutes old on a busy server,
    long after its response finished.
    """

    def __init__(self, cache_dir: str | Path, *, max_files: int = MAX_RESULT_FILES,
                 max_bytes: int = MAX_RESULT_BYTES) -> None:
        self.folder = Path(cache_dir).resolve() / RESULTS_FOLDER
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._files: deque[tuple[Path, int]] = deque()
        self._bytes = 0

    def write(self, rgb: np.ndarray, fmt: str, *, provenance: bool) -> Path:
        """Encode `rgb` and write it under a name no other request uses; returns the path."""
        pil_format = PIL_FORMATS.get(fmt.lower(), "PNG")
        if provenance:  # a fused face: tagged as AI-generated like every saved result
            data = encode_image(rgb, pil_format, quality=90)
        else:
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, pil_format)
            data = buf.getvalue()
        path = self.folder / f"{uuid.uuid4().hex}.{pil_format.lower()}"
        self._write_whole(path, data)
        with self._lock:
            self._files.append((path, len(data)))
            self._bytes += len(data)
            while self._files and (len(self._files) > self.max_files
                                   or self._bytes > self.max_bytes):
                old, size = self._files.popleft()
                self._bytes -= size
                old.unlink(missing_ok=True)
        return path

    def _write_whole(self, path: Path, data: bytes) -> None:
        """Temp file + rename, so a reader never sees a part; no fsync (unlike
        imageio.atomic_write): these files are a cache, and the camera writes 25 a second."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return len(self._files)


def serve_privately(component, store: ResultStore, *, provenance: bool = False):
    """Make `component` (gr.Image or gr.ImageSlider) serve its array values from
    per-request files; returns it. For an ImageSlider the "after" image is the result.

    Wraps the instance's `postprocess` rather than subclassing: Gradio writes a `.pyi`
    stub beside the module of every Component subclass when the class is created.
    """
    original = component.postprocess
    fmt = getattr(component, "format", None) or "webp"

    def to_file(value, tagged: bool):
        if isinstance(value, np.ndarray):
            return store.write(value, fmt, provenance=tagged)
        return value

    def postprocess(value):
        if isinstance(component, gr.ImageSlider) and isinstance(value, (tuple, list)):
            value = (to_file(value[0], False), to_file(value[1], provenance))
        else:
            value = to_file(value, provenance)
        return original(value)

    component.postprocess = postprocess
    return component


READ_BY_FACEFUSE = "facefuse-reads-upload"


def read_with_facefuse(component):
    """Make an upload gr.Image hand its handler the uploaded file's path, not Gradio's own
    decode: every upload is then read by `load_image` (HEIC and AVIF, size limits before
    decoding, a clear ImageError for hostile bytes) instead of Gradio's bare PIL call,
    whose failure reaches the user as "cannot identify image file '/tmp/...'".

    The component is marked by a CSS class, and gr.Image's preprocess (wrapped once) reads
    marked ones so. Why not wrap the instance, as `serve_privately` does: an event that
    answers the image with an update (`gr.skip()` for a photo that is not HEIC) makes Gradio
    rebuild the component for that browser session from its constructor arguments, and
    from then on that session's uploads went to Gradio's decoder (a text file named .jpg gave
    a bare "Error"). The mark is a constructor argument, so the rebuilt one keeps it."""
    _wrap_image_preprocess()
    classes = component.elem_classes or []
    classes = [classes] if isinstance(classes, str) else list(classes)
    if READ_BY_FACEFUSE not in classes:
        classes.append(READ_BY_FACEFUSE)
    component.elem_classes = classes
    component.constructor_args["elem_classes"] = classes
    return component


def _wrap_image_preprocess() -> None:
    """gr.Image.preprocess, once: marked components get the upload's path."""
    original = gr.Image.preprocess
    if getattr(original, "reads_marked_uploads", False):
        return

    def preprocess(self, payload):
        classes = self.elem_classes or []
        path = getattr(payload, "path", None)
        if (READ_BY_FACEFUSE in classes and path
                and not str(getattr(payload, "url", None) or "").startswith("data:")):
            return path
        return original(self, payload)

    preprocess.reads_marked_uploads = True
    gr.Image.preprocess = preprocess
