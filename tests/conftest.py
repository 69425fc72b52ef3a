"""Shared fixtures: real photos only (../shared/faces when present, the astronaut always)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from facefuse import FaceFuser

REPO = Path(__file__).resolve().parents[1]
SHARED_FACES = Path(os.environ.get("FACEFUSE_FACES", REPO.parent / "shared" / "faces"))
LONDON = SHARED_FACES / "london"
# .tem point index (Face Research Lab template) for MediaPipe mesh indices, found by
# matching both on the London photos: pupils, eye corners, mouth corners, chin.
TEM_FOR_MESH = {468: 0, 473: 1, 33: 18, 133: 22, 263: 27, 362: 23, 61: 87, 291: 93, 152: 129}


@pytest.fixture(scope="session")
def london() -> Path:
    if not (LONDON / "neutral").is_dir():
        pytest.skip(f"the London face set is not at {LONDON} (it sits in ../shared/faces "
                    "beside the checkout in CI; set FACEFUSE_FACES to use another copy)")
    return LONDON


def read_tem(path: Path) -> np.ndarray:
    """The hand-placed points of a WebMorph .tem file as (N, 2)."""
    lines = path.read_text().splitlines()
    n = int(lines[0])
    return np.array([[float(v) for v in line.split()[:2]] for line in lines[1:n + 1]])


@pytest.fixture(scope="session")
def engine():
    with FaceFuser() as fuser:
        yield fuser


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def astronaut_template(astronaut) -> np.ndarray:
    """A second, different-looking photo of a face from the astronaut: mirrored, turned a
    little, enlarged and recoloured (warmer and darker), so fusion has something to move."""
    import cv2

    img = astronaut[:, ::-1].astype(np.float32)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 3), 8, 1.15)
    img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    img = img * np.array([1.05, 0.85, 0.7]) * 0.85
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def photo_files(tmp_path_factory, astronaut, astronaut_template) -> dict[str, Path]:
    """The astronaut as source and (turned) template, and a photo with no face, as files."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    paths = {"source": folder / "source.png", "template": folder / "template.png",
             "noface": folder / "coffee.png"}
    Image.fromarray(astronaut).save(paths["source"])
    Image.fromarray(astronaut_template).save(paths["template"])
    Image.fromarray(data.coffee()).save(paths["noface"])
    return paths


@pytest.fixture(scope="session")
def bomb_png():
    """Makes a real decompression bomb: a greyscale PNG of zeros, under a megabyte for 30000
    x 30000, that unpacks to 900 MB (3.6 GB as the RGBA a browser decodes it to)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    def make(width: int, height: int) -> bytes:
        packer, row = zlib.compressobj(9), bytes(width + 1)
        idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
        header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
                + chunk(b"IEND", b""))

    return make


@pytest.fixture(scope="module")
def webui_server(tmp_path_factory, engine):
    """A real WebUI on a free 127.0.0.1 port, one per test module, sharing the engine."""
    import socket

    from facefuse.webui import create_app, launch_kwargs

    outputs = tmp_path_factory.mktemp("webui-outputs")
    app, demo = create_app(outputs, engine)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kwargs = launch_kwargs("127.0.0.1", port)
    kwargs["quiet"] = True
    demo.launch(prevent_thread_lock=True, **kwargs)
    yield {"url": f"http://127.0.0.1:{port}/", "outputs": outputs, "app": app}
    demo.close()
