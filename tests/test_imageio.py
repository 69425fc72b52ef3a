"""Loading every awkward file a user may hand us, and saving safely with provenance."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefuse import ImageError, ParameterError, load_image, save_image
from facefuse.imageio import DIGITAL_SOURCE_TYPE, ImageLimits, has_provenance_tag


@pytest.fixture()
def photo(astronaut) -> Image.Image:
    return Image.fromarray(astronaut)


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "bmp", "tiff"])
def test_common_formats_load_as_rgb_uint8(tmp_path, photo, astronaut, ext):
    path = tmp_path / f"a.{ext}"
    photo.save(path)
    rgb = load_image(path)
    assert rgb.shape == astronaut.shape and rgb.dtype == np.uint8
    tolerance = 12 if ext in ("jpg", "webp") else 0
    assert np.abs(rgb.astype(int) - astronaut).mean() <= tolerance


def test_exif_orientation_is_applied(tmp_path, photo, astronaut):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: a viewer turns it 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    photo.rotate(90, expand=True).save(path, exif=exif, quality=95)
    rgb = load_image(path)
    assert rgb.shape == astronaut.shape  # back upright: 512x512 either way, so check pixels
    assert np.abs(rgb.astype(int) - astronaut).mean() < 12


def test_exif_orientation_non_square(tmp_path, astronaut):
    wide = Image.fromarray(astronaut[:300])  # 512 wide, 300 high
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "tall.jpg"
    wide.rotate(-90, expand=True).save(path, exif=exif)
    assert load_image(path).shape == (300, 512, 3)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_colour_modes_become_rgb(tmp_path, photo, mode):
    ext = "tiff" if mode == "CMYK" else "png"
    im = photo.convert("L").convert(mode) if mode in ("I;16", "1") else photo.convert(mode)
    if mode == "I;16":
        im = Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257)
    path = tmp_path / f"m.{ext}"
    im.save(path)
    rgb = load_image(path)
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
    assert rgb.shape[:2] == (512, 512)
    assert 20 < rgb.mean() < 235  # real content, not a blank or overflowed image


def test_sixteen_bit_keeps_its_range(tmp_path, photo):
    gray = np.asarray(photo.convert("L"), np.uint16) * 257
    Image.fromarray(gray).save(tmp_path / "g16.png")
    rgb = load_image(tmp_path / "g16.png")
    assert np.abs(rgb[..., 0].astype(int) - (gray >> 8)).max() <= 1


def test_rgba_transparency_goes_onto_white(tmp_path, astronaut):
    rgba = np.dstack([astronaut, np.zeros(astronaut.shape[:2], np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").min() == 255


def test_arrays_and_bytes_are_accepted(photo, astronaut):
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    assert np.array_equal(load_image(buf.getvalue()), astronaut)
    assert np.array_equal(load_image(astronaut), astronaut)
    assert load_image(astronaut[..., 0]).shape == astronaut.shape


def test_truncated_file_is_an_image_error(tmp_path, photo):
    path = tmp_path / "cut.jpg"
    photo.save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(path, name="template")


def test_corrupt_and_non_images(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are not pixels")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "notes.jpg")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(ImageError):
        load_image(tmp_path / "garbage.png")
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.jpg", name="source")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(ImageError):
        load_image(12345)  # type: ignore[arg-type]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: what a decompression bomb looks like."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body +
                zlib.crc32(kind + body).to_bytes(4, "big"))
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + \
        chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(30000, 30000))  # 900 MP claimed in a few KB
    with pytest.raises(ImageError, match="too large: 900 MP, the limit is 50 MP"):
        load_image(path)  # facefuse's limit named, not Pillow's own guard's (179 MP)


def test_pixel_limit_and_minimum_size(tmp_path, astronaut):
    with pytest.raises(ImageError, match="too large"):
        load_image(astronaut, limits=ImageLimits(max_pixels=100_000))
    Image.fromarray(astronaut[:40, :200]).save(tmp_path / "tiny.png")
    with pytest.raises(ImageError, match="too small.*64"):
        load_image(tmp_path / "tiny.png")


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tiff", ".bmp"])
def test_saved_results_carry_the_ai_generated_tag(tmp_path, astronaut, ext):
    path = save_image(tmp_path / "out" / f"result{ext}", astronaut)
    assert path.exists() and has_provenance_tag(path)
    assert np.asarray(Image.open(path)).shape == astronaut.shape
    if ext == ".png":
        assert Image.open(path).text["AI-generated"] == "true"
    if ext == ".jpg":
        assert DIGITAL_SOURCE_TYPE.encode() in Image.open(path).info["xmp"]
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".part")]
    assert leftovers == []


def test_save_is_atomic_and_checks_the_extension(tmp_path, astronaut):
    target = tmp_path / "keep.png"
    save_image(target, astronaut)
    before = target.read_bytes()
    with pytest.raises(ImageError):  # typed, as load_image's
        save_image(target, np.zeros((10, 10, 7), np.uint8))  # cannot encode
    assert target.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]  # no temp file left
    with pytest.raises(ParameterError, match="extensions"):
        save_image(tmp_path / "x.gif", astronaut)
    assert not (tmp_path / "x.gif").exists()


def test_a_killed_writer_s_temporary_is_cleared_by_the_next_save(tmp_path, astronaut):
    """SIGKILL leaves `.<name>.<random>.part` behind (nothing can clean up then); the next
    save to that name removes it once it is an hour old, and never a live writer's."""
    import os
    import time

    target = tmp_path / "out.png"
    killed = tmp_path / ".out.png.k1ll3d.part"
    live = tmp_path / ".out.png.l1v3.part"
    other = tmp_path / ".other.png.k1ll3d.part"
    for p in (killed, live, other):
        p.write_bytes(b"half a PNG")
    hours_ago = time.time() - 2 * 3600
    for p in (killed, other):
        os.utime(p, (hours_ago, hours_ago))
    save_image(target, astronaut)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".other.png.k1ll3d.part", ".out.png.l1v3.part", "out.png"])


def test_no_partial_file_when_the_folder_cannot_be_written(tmp_path, astronaut):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OSError):
        save_image(blocker / "out.png", astronaut)
    assert not Path(blocker / "out.png").exists()


def _phone_photo(path: Path, upright: np.ndarray, orientation: int) -> None:
    """Save `upright` the way a phone stores it: pixels as the sensor saw them (rotated)
    plus the orientation a viewer must apply. pillow-heif turns the EXIF orientation
    into HEIF's own irot/imir boxes (what iPhones write); Pillow's AVIF keeps it as EXIF."""
    import pillow_heif  # noqa: F401  (facefuse.imageio registered the HEIF saver too)

    turns = {6: 1, 8: 3, 3: 2}[orientation]  # rot90 turns (counter-clockwise) to undo
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, turns)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    fmt = "HEIF" if path.suffix.lower() in (".heic", ".heif") else "AVIF"
    stored.save(path, fmt, exif=exif.tobytes(), quality=92)


@pytest.mark.parametrize("ext", ["heic", "heif", "avif"])
@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_phone_formats_load_upright(tmp_path, astronaut, ext, orientation):
    upright = astronaut[:, :384]  # not square, so a missed or doubled turn changes the shape
    path = tmp_path / f"phone.{ext}"
    _phone_photo(path, upright, orientation)
    rgb = load_image(path, name="source")
    assert rgb.shape == upright.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - upright).mean() < 6  # lossy, but the same picture
    assert np.array_equal(load_image(path.read_bytes()), rgb)  # bytes: same result


def test_phone_photo_fuses_like_a_jpeg(tmp_path, london, engine):
    """The issue's "done when": a phone's HEIC or AVIF photo fuses like a JPEG."""
    from facefuse import FusionParams

    source = load_image(london / "neutral" / "004_03.jpg")
    template = london / "smiling" / "011_08.jpg"
    params = FusionParams(ratio=0.7)
    baseline = engine.fuse(source, template, params).image
    for ext in ("heic", "avif"):
        path = tmp_path / f"iphone.{ext}"
        _phone_photo(path, source, 6)
        fused = engine.fuse(path, template, params).image
        assert fused.shape == baseline.shape
        assert np.abs(fused.astype(int) - baseline).mean() < 1.5, ext


def test_unknown_format_names_what_is_read(tmp_path):
    (tmp_path / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    with pytest.raises(ImageError, match="heic") as err:
        load_image(tmp_path / "photo.heic", name="source")
    assert "source (photo.heic)" in str(err.value)


def test_saved_files_get_ordinary_permissions(tmp_path, astronaut):
    """Atomic saves go through a private temporary file; the result must not stay private."""
    import os

    old = os.umask(0o022)
    os.umask(old)
    out = save_image(tmp_path / "r.png", astronaut[:64, :64])
    assert out.stat().st_mode & 0o777 == 0o666 & ~old


def test_save_image_takes_arrays_as_load_image_does(tmp_path, astronaut):
    """A float result in 0..1 (what many libraries give) is not saved black, a grey 2-D
    array is saved as grey, and a shape that is no image is a typed error, no file."""
    as_float = save_image(tmp_path / "f.png", astronaut / 255.0)
    assert np.abs(np.asarray(Image.open(as_float)).astype(int) - astronaut).max() <= 1
    grey = save_image(tmp_path / "g.png", astronaut[..., 0])
    assert np.array_equal(np.asarray(Image.open(grey))[..., 1], astronaut[..., 0])
    with pytest.raises(ImageError, match="expected an HxW"):
        save_image(tmp_path / "bad.png", np.zeros((4, 4, 2), np.uint8))
    assert not (tmp_path / "bad.png").exists()
