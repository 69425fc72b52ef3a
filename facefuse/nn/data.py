"""Training data for the refiner: self-supervised composites from real face photos.

From a real aligned face X (itself first recoloured and relit as a whole, most of the time,
so targets are not all studio photos) we perturb the colour and light of the face region (LAB
shifts,
gamma, white balance, contrast, saturation, directional shading, and a phone-ISP simulation:
gamma + Gaussian blur + noise + JPEG), misalign it by a pixel or two and jitter and feather
the mask. The composite puts that face back onto X's own surroundings; the target is X. The
network learns to make a face region belong to the photo around it.

This module uses NumPy and OpenCV only (no torch), so evaluation can build the same
composites without the training extra.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import FaceFuseError
from ..imageio import load_image
from ..stages.align import AlignedFace, align_face
from ..stages.analysis import FaceAnalyzer
from ..stages.texture import face_mask, lab_transfer, match_colour

CACHE_SIZE = 512
VALIDATION_EVERY = 7  # every 7th identity (sorted) is held out: 10 of the 68 London people


@dataclass(frozen=True)
class FaceSet:
    """Aligned face crops with their soft face masks and person ids."""

    crops: np.ndarray  # (N, S, S, 3) uint8 RGB
    masks: np.ndarray  # (N, S, S) uint8 0..255
    ids: list[str]

    def subset(self, keep: list[int]) -> FaceSet:
        return FaceSet(self.crops[keep], self.masks[keep], [self.ids[i] for i in keep])

    def partner(self, index: int) -> int:
        """Another photo of the same person (same light, other expression), else itself."""
        same = [i for i, p in enumerate(self.ids) if p == self.ids[index] and i != index]
        return same[0] if same else index


def person_id(path: Path) -> str:
    """'001' for London's 001_03.jpg; the file stem for other data."""
    return path.stem.split("_")[0]


def find_photos(data_dir: Path) -> list[Path]:
    photos = sorted(p for p in Path(data_dir).rglob("*")
                    if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file())
    if not photos:
        raise FaceFuseError(f"no photos (jpg, png) found under {data_dir}")
    return photos


def split_ids(ids: list[str]) -> tuple[set[str], set[str]]:
    """Deterministic identity split: (train ids, validation ids)."""
    unique = sorted(set(ids))
    val = set(unique[::VALIDATION_EVERY])
    return set(unique) - val, val


def aligned_photos(paths: list[Path], size: int, progress: bool = True
                   ) -> Iterator[tuple[Path, np.ndarray, AlignedFace]]:
    """(path, photo, its largest face aligned at `size`) for each photo with a face: what
    both training sets (the refiner's, nn/trust_data.py's) are cut from."""
    from tqdm import tqdm

    with FaceAnalyzer() as analyzer:
        for path in tqdm(paths, desc="aligning faces", disable=not progress):
            image = load_image(path)
            faces = analyzer.detect(image, 0.5)
            if faces:
                yield path, image, align_face(image, faces[0], size)


def build_faceset(data_dir: Path, size: int = CACHE_SIZE, progress: bool = True) -> FaceSet:
    """Analyse and align every photo under `data_dir` (photos without a face are skipped)."""
    crops, masks, ids = [], [], []
    for path, _, aligned in aligned_photos(find_photos(data_dir), size, progress):
        crops.append(aligned.crop)
        masks.append((face_mask(aligned.landmarks, size) * 255).astype(np.uint8))
        ids.append(person_id(path))
    return FaceSet(np.stack(crops), np.stack(masks), ids)


def load_or_build(data_dir: Path, cache: Path, size: int = CACHE_SIZE) -> FaceSet:
    """The aligned face set, cached as .npz next to the run (rebuilt if absent)."""
    if cache.exists():
        z = np.load(cache)
        return FaceSet(z["crops"], z["masks"], [str(i) for i in z["ids"]])
    faces = build_faceset(data_dir, size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, crops=faces.crops, masks=faces.masks, ids=np.array(faces.ids))
    return faces


def read_info(data_dir: Path) -> dict[str, dict[str, str]]:
    """london_info.csv rows by face id, when present (for the model card's data summary)."""
    info = next(Path(data_dir).rglob("*_info.csv"), None)
    if info is None:
        return {}
    with open(info, newline="") as fh:
        return {row["face_id"]: row for row in csv.DictReader(fh)}


# ---------------------------------------------------------------- perturbations


def isp_simulation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone camera pipeline, roughly: gamma, a soft lens/denoise blur, sensor noise, JPEG."""
    out = np.power(np.clip(img, 0, 1), rng.uniform(0.8, 1.25))
    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out = out + rng.normal(0, rng.uniform(0, 0.015), out.shape).astype(np.float32)
    quality = int(rng.integers(60, 96))
    _, enc = cv2.imencode(".jpg", (np.clip(out, 0, 1) * 255).astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(enc, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0


def perturb_colour(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Change colour and light the way two photos of different people differ (float 0..1)."""
    lab = cv2.cvtColor(np.clip(img, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)
    lab[..., 0] = lab[..., 0] * rng.uniform(0.8, 1.2) + rng.uniform(-14, 14)  # exposure
    lab[..., 1:] = lab[..., 1:] * rng.uniform(0.7, 1.3)  # saturation
    lab[..., 1] += rng.uniform(-8, 8)  # green-magenta cast
    lab[..., 2] += rng.uniform(-10, 10)  # blue-yellow cast
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    out = out * rng.uniform(0.88, 1.12, size=3).astype(np.float32)  # white balance
    out = np.power(np.clip(out, 0, 1), rng.uniform(0.75, 1.33))  # gamma
    if rng.random() < 0.6:  # directional light: a ramp across the face
        h, w = out.shape[:2]
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = ((xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle))
        out = out * (1.0 + rng.uniform(0.1, 0.5) * ramp)[..., None]
    if rng.random() < 0.5:
        out = isp_simulation(out, rng)
    return np.clip(out, 0, 1).astype(np.float32)


def cast_shadow_gain(size: int, rng: np.random.Generator) -> np.ndarray:
    """The light a hard cast shadow (a hat brim, a window frame) leaves on an aligned crop
    view of `size`: (size, size, 3) gain, 1 in the light, 0.35-0.6 (a little bluer) beyond
    a wavy line across the face, with a soft edge. The same shape as
    `stages.occluders.cast_shadow`, drawn from the crop's geometry (the face is centred
    and its eye distance about a quarter of the crop) since these views have no landmarks."""
    iod = size / 4.0
    centre = size / 2.0 + rng.uniform(-0.1, 0.1, size=2) * size
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    along = (xx - centre[0]) * -np.sin(theta) + (yy - centre[1]) * np.cos(theta)
    depth = (xx - centre[0]) * np.cos(theta) + (yy - centre[1]) * np.sin(theta)
    wave = (rng.uniform(0.03, 0.12) * iod
            * np.sin(along / (rng.uniform(0.25, 0.6) * iod) + rng.uniform(0, 6.3)))
    edge = rng.uniform(1.5, 5.0) * size / 512.0 + 0.5
    inside = np.clip((depth - rng.uniform(-0.4, 0.3) * iod - wave) / edge + 0.5, 0, 1)
    inside = cv2.GaussianBlur(inside, (0, 0), edge / 2)
    dark = rng.uniform(0.35, 0.6)
    cast = np.array([dark, dark * 1.04, dark * 1.15], np.float32)
    return (1.0 - inside[..., None] * (1.0 - np.clip(cast, 0, 1))).astype(np.float32)


def jitter_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grow or shrink, move a little and re-feather a 0..1 mask."""
    h, _ = mask.shape
    hard = (mask > 0.5).astype(np.uint8)
    k = int(rng.integers(1, max(2, h // 24)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    hard = cv2.dilate(hard, kernel) if rng.random() < 0.5 else cv2.erode(hard, kernel)
    shift = rng.uniform(-0.02, 0.02, size=2) * h
    hard = cv2.warpAffine(hard, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (h, h))
    sigma = rng.uniform(0.5, 0.03 * h)
    return cv2.GaussianBlur(hard.astype(np.float32), (0, 0), sigma)


def random_view(arrays: list[np.ndarray], size: int, rng: np.random.Generator
                ) -> list[np.ndarray]:
    """The same random scale, crop window and flip of aligned crops (and masks), at `size`."""
    s = arrays[0].shape[0]
    window = int(s * rng.uniform(0.7, 1.0))
    x0 = int(rng.integers(0, s - window + 1))
    y0 = int(rng.integers(0, s - window + 1))
    flip = rng.random() < 0.5
    out = []
    for a in arrays:
        v = cv2.resize(a[y0:y0 + window, x0:x0 + window], (size, size),
                       interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(v[:, ::-1] if flip else v))
    return out


def texture_match(fg: np.ndarray, photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`fg` recoloured and relit to `photo` under `mask` exactly as the texture stage does
    it (skin LAB mean/std, then the low frequencies at 1/24 of the crop), all float 0..1.

    In the pipeline the source is matched to the template photo it is pasted into; here
    that photo is the target's own, so what is left for the network is what the texture
    stage leaves: mid and high frequencies, the feathered edge, the camera's noise."""
    matched = match_colour(fg * 255.0, photo * 255.0, mask, sigma=fg.shape[0] / 24.0)
    return (matched / 255.0).astype(np.float32)


def make_composite(crop: np.ndarray, mask: np.ndarray, partner: np.ndarray, size: int,
                   rng: np.random.Generator, template_dropout: float = 0.25,
                   strength: float | None = None, prematch: str | bool | None = None,
                   shadows: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(composite, mask, template, target): float32 HxWx3 / HxW / HxWx3 / HxWx3 in 0..1.

    The template is `partner` (the same person in the same light, another expression),
    seen through the same view and the same whole-photo light as the target, so it tells
    the light but not the features; with `template_dropout` it is all zeros (no template:
    the network must then go by the surroundings alone). `strength` fixes how strongly the
    face region is perturbed (1.0 for evaluation); None draws it as in training.

    `prematch` puts the composite in the pipeline's regime, where colour was matched before
    the refiner: "lab" matches the region's LAB mean/std to the template's (True means
    "lab"); "texture" matches the perturbed face to its photo with the texture stage's own
    `match_colour` (global tone and low-frequency light); "mixed" draws one of the two (or,
    a fifth of the time, neither) per composite. "runtime" is every place the refiner
    runs: with a template as "lab" (measured: "mixed" there left a larger seam in the
    pipeline, 2.17-2.20 against 2.09 ΔE), without one the region's LAB mean/std matched to
    its surroundings, exactly as `facefuse harmonize` does before the network (so the
    network only learns what a classical match leaves, in both modes). "runtime-mixed" is
    the same with "mixed" where there is a template.

    `shadows` is the share of composites with a hard cast shadow that only the template
    shows (on the target and the template, not on the pasted face: the network must carry
    the template's shadow onto the face, which no global colour match can); half as many
    get one on the pasted face only (the source's shadow: the network must lift it).
    """
    if prematch is True:
        prematch = "lab"
    runtime = prematch in ("runtime", "runtime-mixed")
    if runtime:
        prematch = "lab" if prematch == "runtime" else "mixed"
    if prematch == "mixed":
        prematch = str(rng.choice(["lab", "texture", "none"], p=[0.4, 0.4, 0.2]))
    img, msk, other = random_view([crop, mask, partner], size, rng)
    target = img.astype(np.float32) / 255.0
    template = other.astype(np.float32) / 255.0
    if rng.random() < 0.85:
        # The whole photo first gets other light and another camera, so the target is not
        # always a studio photo: the network must match the face to *its* photo, not to
        # the look of the training set. The template shares that light.
        seed = int(rng.integers(1 << 31))
        target = perturb_colour(target, np.random.default_rng(seed))
        template = perturb_colour(template, np.random.default_rng(seed))
    if rng.random() < template_dropout:
        template = np.zeros_like(template)
    clean = target
    source_shadow = None
    if shadows > 0:
        draw = rng.random()
        if draw < shadows and template.any():  # the template's shadow, to carry over
            gain = cast_shadow_gain(size, rng)
            target, template = target * gain, template * gain
        elif shadows <= draw < 1.5 * shadows:  # the source's shadow, to lift
            source_shadow = cast_shadow_gain(size, rng)
    m = jitter_mask(msk.astype(np.float32) / 255.0, rng)
    # The face region is perturbed with a random strength, and a quarter of the time not at
    # all: in the pipeline the texture stage has already matched the colour, so what the
    # refiner mostly sees is a mild mismatch, and a face that already belongs must be left
    # alone (trained only on strong mismatches, a network regresses every face toward an
    # average, greyer skin).
    if strength is None:
        strength = 0.0 if rng.random() < 0.25 else rng.uniform(0.15, 1.0)
    fg = clean + strength * (perturb_colour(clean, rng) - clean)
    if source_shadow is not None:
        fg = fg * source_shadow
    if rng.random() < 0.5:  # misalignment of a pixel or two, as a warp would leave
        dx, dy = rng.uniform(-2, 2, size=2)
        fg = cv2.warpAffine(fg, np.float32([[1, 0, dx], [0, 1, dy]]), (size, size),
                            borderMode=cv2.BORDER_REFLECT)
    with_template = bool(template.any())
    if prematch == "texture" and (with_template or not runtime):
        fg = texture_match(fg, target, m)
    comp = target * (1 - m[..., None]) + fg * m[..., None]
    if runtime and not with_template:
        comp = lab_transfer(comp.astype(np.float32), m, None)
    elif prematch == "lab" and with_template:
        comp = lab_transfer(comp.astype(np.float32), m, template)
    return comp.astype(np.float32), m.astype(np.float32), template.astype(np.float32), target


def validation_composites(faces: FaceSet, size: int, per_face: int = 2, seed: int = 1234,
                          template_dropout: float = 0.0, strength: float | None = 1.0,
                          prematch: str | bool | None = None) -> list[tuple[np.ndarray, ...]]:
    """A fixed set of composites (same seed, same result) for validation and evaluation:
    (composite, mask, template, target) each, the face region fully perturbed."""
    rng = np.random.default_rng(seed)
    return [make_composite(faces.crops[i], faces.masks[i], faces.crops[faces.partner(i)],
                           size, rng, template_dropout, strength, prematch)
            for i in range(len(faces.ids)) for _ in range(per_face)]
