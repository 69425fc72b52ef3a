"""Load and save images at the edge of the library.

Inside facefuse every image is an HxWx3 uint8 RGB array. Loading applies EXIF orientation,
converts every colour mode (grayscale, palette, RGBA, CMYK, 16-bit) and refuses what would
hurt (decompression bombs, huge or tiny images) *before* decoding pixels. Whatever a decoder
raises on hostile bytes comes out as ImageError (fuzzed in tests/test_fuzz.py). Phone photos
read too: HEIC/HEIF through pillow-heif (libheif applies the file's rotation and resets the
EXIF orientation, so nothing turns twice) and AVIF through Pillow's own plugin. Saving is
atomic (temp file + rename) and tags the result as AI-generated.
"""

from __future__ import annotations

import glob
import io
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import FaceFuseError, ImageError, ParameterError

# Registers the HEIF/HEIC opener with Pillow (idempotent); AVIF is Pillow's own (>= 11.3).
pillow_heif.register_heif_opener()

ImageSource = str | os.PathLike | bytes | np.ndarray | Image.Image

DEFAULT_MAX_PIXELS = 50_000_000
MIN_SIDE = 64
DIGITAL_SOURCE_TYPE = ("http://cv.iptc.org/newscodes/digitalsourcetype/"
                       "compositeWithTrainedAlgorithmicMedia")
PROVENANCE_TEXT = "AI-generated: face fused by facefuse (compositeWithTrainedAlgorithmicMedia)"
SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP",
                ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
XMP_SIDECAR_FORMATS = {"BMP"}  # no metadata slot in the file itself
READ_FORMATS = "jpg, png, webp, bmp, tiff, gif, heic, heif, avif"
READ_EXTENSIONS = frozenset({*SAVE_FORMATS, ".gif", ".heic", ".heif", ".avif"})
# What a decoder may raise on hostile bytes, besides Pillow's own errors: struct unpacking,
# out-of-range tables and libheif's failures. Every one means "this file cannot be read".
DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, RuntimeError, IndexError,
                  KeyError, TypeError, ZeroDivisionError, OverflowError, MemoryError)


@dataclass(frozen=True)
class ImageLimits:
    """Size limits applied on load; the defaults suit photos from phones and cameras."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = MIN_SIDE


def load_image(source: ImageSource, *, name: str = "image",
               limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Any common image (path, bytes, array or PIL image) -> HxWx3 uint8 RGB.

    `name` ("source", "template") goes into error messages so the user knows which file.
    """
    if isinstance(source, np.ndarray):
        rgb = _array_to_rgb(source, name)
    elif isinstance(source, Image.Image):
        rgb = _pil_to_rgb(source, name, limits)
    elif isinstance(source, (bytes, bytearray)):
        rgb = _open_and_convert(io.BytesIO(source), name, limits)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name} file not found: {path}")
        if path.is_dir():
            raise ImageError(f"{name} is a folder, not an image: {path}")
        with open(path, "rb") as fh:
            rgb = _open_and_convert(fh, f"{name} ({path.name})", limits)
    else:
        raise ImageError(f"{name}: cannot read an image from {type(source).__name__}")
    _check_size(rgb.shape[1], rgb.shape[0], name, limits)
    return rgb


def _check_size(width: int, height: int, name: str, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels:
        raise ImageError(f"{name} is too large: {width}x{height} = "
                         f"{width * height / 1e6:.1f} MP, the limit is "
                         f"{limits.max_pixels / 1e6:.0f} MP; resize it first")
    if min(width, height) < limits.min_side:
        raise ImageError(f"{name} is too small: {width}x{height}, each side must be at "
                         f"least {limits.min_side} px")


def _bomb_error(name: str, exc: BaseException, limits: ImageLimits) -> ImageError:
    """Pillow's own guard fired (at twice its limit, before our header check could run): the
    message states facefuse's limit, as _check_size's does, not Pillow's."""
    stated = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(stated.group(1)) / 1e6:.0f} MP" if stated else "too many pixels"
    return ImageError(f"{name} is too large: {size}, the limit is "
                      f"{limits.max_pixels / 1e6:.0f} MP (a possible decompression bomb); "
                      "resize it first")


def _open_and_convert(fh, name: str, limits: ImageLimits) -> np.ndarray:
    with warnings.catch_warnings():
        # The header tells the size before any pixel is decoded: check it ourselves,
        # so Pillow's own bomb guard (a process-wide setting) is only a second line.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(fh)
        except UnidentifiedImageError:
            raise ImageError(f"{name} is not an image (or not a format facefuse reads: "
                             f"{READ_FORMATS})") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(name, exc, limits) from None
        except DECODER_ERRORS as exc:
            raise ImageError(f"{name} could not be read: {_reason(exc)}") from None
        _check_size(im.width, im.height, name, limits)
        return _pil_to_rgb(im, name, limits)


def _pil_to_rgb(im: Image.Image, name: str, limits: ImageLimits) -> np.ndarray:
    _check_size(im.width, im.height, name, limits)
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
        return _decoded_to_rgb(im)
    except FaceFuseError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(name, exc, limits) from None
    except DECODER_ERRORS as exc:
        raise ImageError(f"{name} is corrupt or truncated: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _decoded_to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I") and arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        gray = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(f"{name}: expected an HxW, HxWx3 or HxWx4 array, got shape "
                         f"{arr.shape}")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype in (np.float32, np.float64):
        arr = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0) + 0.5, 0, 255)
        arr = arr.astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ImageError(f"{name}: unsupported array type {arr.dtype}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        arr = (arr[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


def provenance_xmp(extra: str = "") -> bytes:
    """An XMP packet with IPTC DigitalSourceType = composite with trained algorithmic media."""
    desc = f"{PROVENANCE_TEXT}{'; ' + extra if extra else ''}"
    desc = desc.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        f'Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}" '
        'xmp:CreatorTool="facefuse">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{desc}</rdf:li></rdf:Alt>'
        '</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>'
        '<?xpacket end="w"?>'
    ).encode()


def save_format(path: str | os.PathLike) -> str:
    """The Pillow format for a path's extension, or a ParameterError naming the choices."""
    ext = Path(path).suffix.lower()
    if ext not in SAVE_FORMATS:
        raise ParameterError(f"cannot save {Path(path).name!r}: use one of the extensions "
                             f"{', '.join(SAVE_FORMATS)}")
    return SAVE_FORMATS[ext]


def encode_image(rgb: np.ndarray, fmt: str, *, note: str = "", quality: int = 95) -> bytes:
    """Encode an RGB array with provenance metadata in the file itself where the format has room.

    The array is taken as `load_image` takes one (HxW grey, HxWx3, HxWx4; uint8, uint16, or
    float 0..1 or 0..255): a float result in 0..1 saved as is would come out black."""
    im = Image.fromarray(_array_to_rgb(np.asarray(rgb), "the image to save"), "RGB")
    xmp = provenance_xmp(note)
    buf = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
        info.add_text("AI-generated", "true")
        info.add_text("Description", PROVENANCE_TEXT)
        im.save(buf, "PNG", pnginfo=info, compress_level=6)
    elif fmt == "JPEG":
        exif = Image.Exif()
        exif[0x010E] = PROVENANCE_TEXT  # ImageDescription
        exif[0x0131] = "facefuse"  # Software
        im.save(buf, "JPEG", quality=quality, subsampling=0, xmp=xmp, exif=exif)
    elif fmt == "WEBP":
        im.save(buf, "WEBP", quality=quality, xmp=xmp)
    elif fmt == "TIFF":
        im.save(buf, "TIFF", tiffinfo={700: xmp, 270: PROVENANCE_TEXT, 305: "facefuse"},
                compression="tiff_lzw")
    else:
        im.save(buf, fmt)
    return buf.getvalue()


def _read_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back; done once, at
    import, so that no thread's file is ever created under the temporary mask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
FILE_MODE = 0o666 & ~_UMASK  # what open(path, 'w') gives; mkstemp's files are 0600
DIR_MODE = 0o777 & ~_UMASK  # what mkdir gives; mkdtemp's folders are 0700


def check_writable_folder(folder: str | os.PathLike, what: str) -> None:
    """A ParameterError, before any work, when files could not be made in `folder` (or in the
    folders that saving would create there): its nearest existing part is a file, or is
    read-only. Creates nothing, so a run that fails later for another reason leaves no
    empty folder behind."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ParameterError(f"cannot write {what}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ParameterError(f"cannot write {what}: the folder {existing} is read-only "
                             "(or not yours to write)")


STALE_TEMPORARY_SECONDS = 3600  # a writer this long silent was killed (SIGKILL, power cut)


def remove_stale_temporaries(path: Path, suffix: str = ".part") -> int:
    """Delete `.<name>.<random><suffix>` files beside `path` that a killed writer left, once
    they are an hour old (a live writer's is newer); returns how many. An interrupted save
    then leaves nothing behind after the next save to the same name."""
    removed = 0
    cutoff = time.time() - STALE_TEMPORARY_SECONDS
    for p in path.parent.glob(f".{glob.escape(path.name)}.*{suffix}"):
        try:
            if p.is_file() and p.stat().st_mtime < cutoff:
                p.unlink()
                removed += 1
        except OSError:  # gone already, or not ours to delete: leave it
            continue
    return removed


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes so that `path` either holds all of them or does not change at all.

    The file gets the permissions a plain `open(path, "w")` would give (mkstemp's temporary
    file is private, 0600, which a saved photo should not stay)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_image(path: str | os.PathLike, rgb: np.ndarray, *, note: str = "",
               quality: int = 95) -> Path:
    """Save atomically, format from the extension, tagged as AI-generated.

    BMP has no metadata slot, so its tag goes into an XMP sidecar (`name.bmp.xmp`).
    """
    fmt = save_format(path)
    data = encode_image(rgb, fmt, note=note, quality=quality)
    path = Path(path)
    if fmt in XMP_SIDECAR_FORMATS:
        atomic_write(path.with_name(path.name + ".xmp"), provenance_xmp(note))
    atomic_write(path, data)
    return path


def has_provenance_tag(path: str | os.PathLike) -> bool:
    """True when a saved file (or its XMP sidecar) carries the AI-generated tag."""
    path = Path(path)
    sidecar = path.with_name(path.name + ".xmp")
    blobs = [path.read_bytes()]
    if sidecar.exists():
        blobs.append(sidecar.read_bytes())
    return any(b"compositeWithTrainedAlgorithmicMedia" in blob for blob in blobs)
