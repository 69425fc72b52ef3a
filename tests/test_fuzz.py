"""Hostile bytes into every decoder path (issue #14): mutated JPEG, PNG, WebP, TIFF, BMP, GIF,
HEIC and AVIF files, also under a `.heic` name, into `load_image` and `facefuse fuse`.

Only ImageError may escape, no input may take more than 5 s (of CPU), memory stays bounded.
The seeds are made here from the astronaut (public domain); every input the fuzzer ever
broke the loader with is kept in tests/data/fuzz/ and replayed below.

CI runs a bounded number of examples; a longer run (docs/benchmarks.md gives its count):
    FACEFUSE_FUZZ_EXAMPLES=20000 python -m pytest -q tests/test_fuzz.py -k load_image
"""

from __future__ import annotations

import io
import os
import resource
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facefuse import ImageError, load_image
from facefuse.cli import main

EXAMPLES = int(os.environ.get("FACEFUSE_FUZZ_EXAMPLES", "300"))
SECONDS_PER_INPUT = 5.0
RSS_GROWTH_MB = 512
REGRESSIONS = Path(__file__).parent / "data" / "fuzz"
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@cache
def seeds() -> dict[str, bytes]:
    """One small real photo per format, with the metadata each usually carries."""
    import pillow_heif  # noqa: F401  (facefuse.imageio registered its Pillow plugin)
    from skimage import data

    small = Image.fromarray(data.astronaut()).resize((128, 96), Image.Resampling.LANCZOS)
    exif = Image.Exif()
    exif[0x0112] = 6
    made = {}
    for ext, fmt, kwargs in [
        ("jpg", "JPEG", {"quality": 90, "exif": exif.tobytes()}),
        ("png", "PNG", {}),
        ("webp", "WEBP", {"quality": 80, "exif": exif.tobytes()}),
        ("tiff", "TIFF", {"compression": "tiff_lzw", "exif": exif.tobytes()}),
        ("bmp", "BMP", {}),
        ("gif", "GIF", {}),
        ("heic", "HEIF", {"quality": 60, "exif": exif.tobytes()}),
        ("avif", "AVIF", {"quality": 60, "exif": exif.tobytes()}),
    ]:
        image = small.convert("RGBA") if ext == "png" else small
        image = image.convert("P") if ext == "gif" else image
        buf = io.BytesIO()
        image.save(buf, fmt, **kwargs)
        made[ext] = buf.getvalue()
    return made


INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF]


@st.composite
def mutated_files(draw) -> tuple[str, bytes]:
    """(file name, bytes): a seed with a few flips, overwrites, cuts, inserts and repeats,
    half of them in the first 512 bytes where headers and sizes live."""
    ext = draw(st.sampled_from(sorted(seeds())))
    data = bytearray(seeds()[ext])
    for _ in range(draw(st.integers(1, 6))):
        n = len(data)
        if n == 0:
            break
        pos = draw(st.one_of(st.integers(0, min(511, n - 1)), st.integers(0, n - 1)))
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "repeat"]))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            width = draw(st.integers(1, 4))
            data[pos:pos + width] = bytes([draw(st.sampled_from(INTERESTING))] * width)
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        else:
            chunk = data[pos:pos + draw(st.integers(1, 256))]
            data[pos:pos] = chunk * draw(st.integers(1, 8))
    name = draw(st.sampled_from([f"photo.{ext}", "photo.heic"]))
    return name, bytes(data)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_load(name: str, data: bytes, folder: Path) -> None:
    path = folder / name
    path.write_bytes(data)
    for source in (path, data):
        # CPU seconds, not wall time: on a shared machine another job can stall the clock.
        started = time.process_time()
        try:
            rgb = load_image(source, name="template")
        except ImageError as exc:
            assert str(exc).startswith("template"), exc  # it says which file
        else:
            assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
        took = time.process_time() - started
        assert took < SECONDS_PER_INPUT, f"{name}: {took:.1f} CPU s"


def test_seeds_are_real_images_of_every_format():
    for ext, data in seeds().items():
        assert load_image(data).shape == (128, 96, 3) if ext in (
            "jpg", "webp", "tiff", "heic", "avif") else load_image(data).shape == (96, 128, 3)


def test_fuzz_load_image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    before = peak_rss_mb()

    @FUZZ
    @given(mutated_files())
    def run(case):
        check_load(*case, folder)

    run()
    assert peak_rss_mb() - before < RSS_GROWTH_MB


@settings(max_examples=max(8, EXAMPLES // 25), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=mutated_files())
def test_fuzz_the_fuse_command(tmp_path, astronaut_file, case, capsys):
    """`facefuse fuse` with a mutated template: exit 0, 3 (ImageError) or 4 (no face), never
    an unexpected error, and no partial output on failure."""
    name, data = case
    template = tmp_path / name
    template.write_bytes(data)
    output = tmp_path / "out.png"
    output.unlink(missing_ok=True)
    code = main(["fuse", str(astronaut_file), str(template), "-o", str(output)])
    err = capsys.readouterr().err
    assert code in (0, 3, 4), err
    assert "unexpected" not in err
    assert output.exists() == (code == 0)
    assert not list(tmp_path.glob(".out.png.*"))  # no temp file left behind


@pytest.fixture(scope="module")
def astronaut_file(tmp_path_factory, astronaut) -> Path:
    path = tmp_path_factory.mktemp("fuzz-source") / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    return path


@pytest.mark.parametrize("path", sorted(p for p in REGRESSIONS.iterdir() if p.suffix != ".md"),
                         ids=lambda p: p.name)
def test_regression_inputs_are_image_errors(path):
    """Inputs that once escaped as something other than ImageError (see the README there)."""
    with pytest.raises(ImageError):
        load_image(path, name="template")
