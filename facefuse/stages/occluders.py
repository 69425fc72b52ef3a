"""Synthetic occluders made from real photos: hair fringes, glasses, hands, cast shadows.

Not a stage of the fusion chain: this is the material that *measures* the occlusion stage
(`facefuse eval occlusion`, the tests) and can train a network on it. It lives beside the
stages, torch-free, so the quality tools and `nn/` can both use it.

Every occluder is drawn in the aligned crop of the face it covers (so its size follows the
face: eye distance = a quarter of the crop) from that face's landmarks, and is made of real
material where a photo can give it: the hair of a fringe is cut from another person's hair,
a hand is filled with another person's skin. Glasses frames and shadows are drawn (frames
with real-looking rims, bridge, temples, tinted lenses and reflections; shadows as a soft
dark region with a slightly blue cast). `Occluder.to_image` carries one into the full photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .align import AlignedFace
from .mesh_topology import (
    FACE_OVAL_LOOP,
    LEFT_BROW_POINTS,
    LEFT_EYE_LOOP,
    RIGHT_BROW_POINTS,
    RIGHT_EYE_LOOP,
)

KINDS: tuple[str, ...] = ("hair", "glasses", "hand", "shadow")
COVERED_ALPHA = 0.5  # an occluder covers a pixel where its alpha is above this ...
COVERED_GAIN = 0.8  # ... or where its shadow leaves less light than this


@dataclass(frozen=True)
class Occluder:
    """A layer over a photo: `out = (photo * gain) * (1 - alpha) + colour * alpha`."""

    kind: str
    colour: np.ndarray  # (H, W, 3) float32 0..255: the layer's own colour
    alpha: np.ndarray  # (H, W) float32 0..1: how much the layer hides
    gain: np.ndarray  # (H, W, 3) float32: light left by its shadow (1 = none)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """`image` (uint8 or float RGB) with the occluder on it, uint8."""
        img = image.astype(np.float32) * self.gain
        a = self.alpha[..., None]
        return np.clip(img * (1 - a) + self.colour * a + 0.5, 0, 255).astype(np.uint8)

    @property
    def area(self) -> np.ndarray:
        """Where the occluder covers the face (bool): its opaque part or its hard shadow."""
        return (self.alpha > COVERED_ALPHA) | (self.gain.mean(axis=2) < COVERED_GAIN)

    def to_image(self, aligned: AlignedFace, shape: tuple[int, ...]) -> Occluder:
        """The same occluder in the full photo `aligned` was cut from (of `shape`)."""
        h, w = shape[:2]

        def warp(a: np.ndarray, fill: float) -> np.ndarray:
            return cv2.warpAffine(a, aligned.to_image, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * 3)

        return Occluder(self.kind, warp(self.colour, 0.0), warp(self.alpha, 0.0),
                        warp(self.gain, 1.0))


@dataclass(frozen=True)
class Donor:
    """Another person's material: hair (a patch, None when the photo shows too little) and
    skin (a patch of cheek), both float32 RGB 0..255."""

    hair: np.ndarray | None
    skin: np.ndarray


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _eye_centres(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image-left and image-right eye centres (crop pixels)."""
    a = lm[list(RIGHT_EYE_LOOP), :2].mean(axis=0)
    b = lm[list(LEFT_EYE_LOOP), :2].mean(axis=0)
    return (a, b) if a[0] < b[0] else (b, a)


def _cheek_box(lm: np.ndarray, size: int) -> tuple[slice, slice]:
    """A square of cheek skin below the image-left eye, beside the nose."""
    left, right = _eye_centres(lm)
    iod = float(np.linalg.norm(right - left))
    cx, cy = left[0] - 0.1 * iod, left[1] + 0.7 * iod
    half = int(0.15 * iod)
    y0, x0 = int(np.clip(cy - half, 0, size - 2)), int(np.clip(cx - half, 0, size - 2))
    return slice(y0, y0 + 2 * half), slice(x0, x0 + 2 * half)


def make_donor(image: np.ndarray, aligned: AlignedFace) -> Donor:
    """Hair and skin of one photo (`aligned` is its face in the canonical crop).

    The hair is read above the forehead, in a box the crop does not reach, classified
    per pixel (not skin-like, not a plain light background) and kept as the largest band of
    rows that are mostly hair; photos with little hair there give `hair=None`."""
    size = aligned.size
    lm = aligned.landmarks
    skin = aligned.crop[_cheek_box(lm, size)].astype(np.float32)
    left, right = _eye_centres(lm)
    iod = float(np.linalg.norm(right - left))
    top = float(lm[10, 1])
    # Patch pixel (u, v) -> crop point (x0 + u s, y0 + v s) -> photo: the box above the brow.
    pw, ph = 192, 96
    x0, x1 = (left[0] + right[0]) / 2 - 1.1 * iod, (left[0] + right[0]) / 2 + 1.1 * iod
    y0, y1 = top - 1.1 * iod, top - 0.05 * iod
    to_crop = np.array([[(x1 - x0) / pw, 0, x0], [0, (y1 - y0) / ph, y0], [0, 0, 1]])
    to_photo = np.vstack([aligned.to_image, [0, 0, 1]]) @ to_crop
    patch = cv2.warpAffine(image, cv2.invertAffineTransform(to_photo[:2]), (pw, ph),
                           flags=cv2.INTER_AREA | cv2.WARP_FILL_OUTLIERS,
                           borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    lab = _lab(patch)
    skin_lab = np.median(_lab(skin).reshape(-1, 3), axis=0)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    background = (chroma < 8) & (lab[..., 0] > 55)
    skin_like = np.linalg.norm((lab - skin_lab) * (0.5, 1, 1), axis=2) < 10
    hair = ~background & ~skin_like
    rows = hair.mean(axis=1) > 0.8
    best, start = (0, 0), None
    for i, ok in enumerate(np.append(rows, False)):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    if best[1] - best[0] < 12:
        return Donor(hair=None, skin=skin)
    band = patch[best[0]:best[1]]
    holes = (~hair[best[0]:best[1]]).astype(np.uint8) * 255
    band = cv2.inpaint(np.clip(band, 0, 255).astype(np.uint8), holes, 3, cv2.INPAINT_TELEA)
    return Donor(hair=band.astype(np.float32), skin=skin)


def _blank(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.zeros((size, size, 3), np.float32), np.zeros((size, size), np.float32),
            np.ones((size, size, 3), np.float32))


def _soft_shadow(alpha: np.ndarray, shift: tuple[float, float], blur: float, strength: float
                 ) -> np.ndarray:
    """The light a layer leaves on the face just beside itself (a contact shadow)."""
    size = alpha.shape[0]
    moved = cv2.warpAffine(alpha, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]),
                           (size, size))
    dark = cv2.GaussianBlur(moved, (0, 0), blur) * strength
    return np.repeat((1.0 - dark)[..., None], 3, axis=2)


def hair_fringe(crop: np.ndarray, lm: np.ndarray, donor: Donor, rng: np.random.Generator
                ) -> Occluder:
    """A fringe of `donor`'s hair over the forehead, its ragged ends at or above the brows."""
    if donor.hair is None:
        raise ValueError("the donor photo shows too little hair above the forehead")
    size = crop.shape[0]
    colour, alpha, _ = _blank(size)
    left, right = _eye_centres(lm)
    iod = float(np.linalg.norm(right - left))
    brow_y = float(lm[list(LEFT_BROW_POINTS) + list(RIGHT_BROW_POINTS), 1].mean())
    oval = lm[list(FACE_OVAL_LOOP), :2]
    xa = int(max(0, oval[:, 0].min() - 0.1 * iod))
    xb = int(min(size, oval[:, 0].max() + 0.1 * iod))
    cx = (left[0] + right[0]) / 2
    xs = np.arange(xa, xb, dtype=np.float64)
    end = brow_y - rng.uniform(-0.05, 0.3) * iod + rng.uniform(-0.25, 0.25) * (xs - cx)
    for _ in range(int(rng.integers(4, 9))):  # locks: longer strands here and there
        xk, wk = rng.uniform(xa, xb), rng.uniform(0.08, 0.22) * iod
        end += rng.uniform(0.0, 0.25) * iod * np.clip(1 - np.abs(xs - xk) / wk, 0, None)
    tips = cv2.GaussianBlur(rng.normal(0, 1, (1, len(xs))), (0, 0), 1.5).ravel()
    end += 0.05 * iod * tips / (np.abs(tips).max() + 1e-6)
    # Sides come up: a fringe hangs from the head, it does not cover the temples' skin.
    edge = np.clip(np.minimum(xs - xa, xb - xs) / (0.4 * iod), 0, 1)
    end = brow_y - 1.2 * iod + (end - (brow_y - 1.2 * iod)) * np.sqrt(edge)
    yy = np.arange(size, dtype=np.float64)[:, None]
    cover = np.clip((end[None, :] - yy) / 3.0 + 0.5, 0, 1)
    strands = 0.8 + 0.2 * cv2.GaussianBlur(rng.uniform(0, 1, (1, len(xs))), (0, 0), 0.8)
    near_tip = np.clip((end[None, :] - yy) / (0.12 * iod), 0, 1)
    cover *= strands + (1 - strands) * near_tip
    alpha[:, xa:xb] = cover.astype(np.float32)
    hair = donor.hair[:, ::-1] if rng.random() < 0.5 else donor.hair
    hair = np.rot90(hair, k=1) if rng.random() < 0.5 else hair  # strands vertical or not
    y_top = max(0, int(brow_y - 1.6 * iod))
    y_bot = int(min(size, end.max() + 2))
    resized = cv2.resize(np.ascontiguousarray(hair), (xb - xa, max(1, y_bot - y_top)),
                         interpolation=cv2.INTER_LINEAR)
    colour[y_top:y_bot, xa:xb] = resized
    alpha[:y_top] = 0
    alpha[y_bot:] = 0
    # The fringe grows out of the hair above: it fades in from the top of its box.
    fade = np.clip((np.arange(size, dtype=np.float32) - y_top) / (0.35 * iod), 0, 1)
    alpha *= fade[:, None]
    gain = _soft_shadow(alpha, (0, 0.06 * iod), 0.05 * iod, rng.uniform(0.15, 0.3))
    return Occluder("hair", colour, alpha, gain)


FRAME_COLOURS = {  # RGB of a rim seen straight on
    "black": (22, 22, 24), "brown": (62, 40, 28), "tortoise": (95, 60, 30),
    "metal": (150, 150, 158), "gold": (178, 148, 82),
}


def glasses(crop: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> Occluder:
    """Glasses: two rims (rounded to square), bridge, temples, tinted lenses, a reflection."""
    size = crop.shape[0]
    colour, alpha, _ = _blank(size)
    left, right = _eye_centres(lm)
    iod = float(np.linalg.norm(right - left))
    axis = (right - left) / iod
    normal = np.array([-axis[1], axis[0]])  # points down the face
    name = list(FRAME_COLOURS)[int(rng.integers(len(FRAME_COLOURS)))]
    thin = name in ("metal", "gold")
    thick = max(2, round((rng.uniform(0.02, 0.035) if thin else rng.uniform(0.04, 0.08))
                         * iod))
    half_w, half_h = rng.uniform(0.36, 0.46) * iod, rng.uniform(0.24, 0.34) * iod
    power = rng.uniform(2.0, 5.0)  # superellipse: 2 round ... 5 nearly rectangular
    lift = rng.uniform(-0.02, 0.08) * iod
    t = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    ux = np.sign(np.cos(t)) * np.abs(np.cos(t)) ** (2 / power)
    uy = np.sign(np.sin(t)) * np.abs(np.sin(t)) ** (2 / power)
    frame = np.zeros((size, size), np.uint8)
    lenses = np.zeros((size, size), np.uint8)
    rims = []
    for centre in (left, right):
        c = centre - lift * normal
        pts = c + np.outer(ux * half_w, axis) + np.outer(uy * half_h, normal)
        rims.append(pts)
        cv2.fillPoly(lenses, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        cv2.polylines(frame, [np.round(pts * 16).astype(np.int32)], True, 255, thick,
                      cv2.LINE_AA, 4)
    # Bridge between the inner rims, a little above centre; temples out to the sides.
    inner_a = left - lift * normal + axis * half_w * 0.98 - normal * 0.25 * half_h
    inner_b = right - lift * normal - axis * half_w * 0.98 - normal * 0.25 * half_h
    mid = (inner_a + inner_b) / 2 - normal * 0.08 * iod
    bridge = np.array([inner_a, mid, inner_b])
    cv2.polylines(frame, [np.round(bridge * 16).astype(np.int32)], False, 255,
                  max(2, int(thick * 0.8)), cv2.LINE_AA, 4)
    for centre, sign in ((left, -1), (right, 1)):
        start = centre - lift * normal + sign * axis * half_w - normal * 0.3 * half_h
        end = start + sign * axis * 0.9 * iod - normal * 0.05 * iod
        cv2.line(frame, tuple(np.round(start * 16).astype(int)),
                 tuple(np.round(end * 16).astype(int)), 255, thick, cv2.LINE_AA, 4)
    frame_a = frame.astype(np.float32) / 255.0
    base = np.array(FRAME_COLOURS[name], np.float32)
    shade = 0.85 + 0.3 * rng.random((size // 16, size // 16)).astype(np.float32)
    shade = cv2.resize(shade, (size, size), interpolation=cv2.INTER_CUBIC)
    if name == "tortoise":  # dark blotches in amber
        blot = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2.5)
        shade *= np.where(blot > np.median(blot), 0.55, 1.15).astype(np.float32)
    frame_rgb = np.clip(base * shade[..., None], 0, 255)
    lens_a = lenses.astype(np.float32) / 255.0 * rng.uniform(0.06, 0.2)
    tint = np.array(rng.choice([(90, 90, 95), (110, 85, 60), (70, 80, 90)]), np.float32)
    # A reflection: a soft diagonal band of light across each lens.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    slope = rng.uniform(-1.5, -0.5)
    band = np.zeros((size, size), np.float32)
    for pts in rims:
        c = pts.mean(axis=0)
        off = rng.uniform(-0.3, 0.3) * half_w
        dist = np.abs((xx - c[0] - off) + slope * (yy - c[1])) / np.hypot(1, slope)
        band = np.maximum(band, np.exp(-(dist / (0.08 * iod)) ** 2))
    glare = band * (lenses > 0) * rng.uniform(0.1, 0.3)
    lens_colour = (tint * lens_a[..., None] + 255.0 * glare[..., None]) / np.maximum(
        lens_a + glare, 1e-6)[..., None]
    lens_alpha = np.clip(lens_a + glare, 0, 1) * (1 - frame_a)
    alpha = np.clip(frame_a + lens_alpha, 0, 1)
    colour = (frame_rgb * frame_a[..., None] + lens_colour * lens_alpha[..., None]) / np.maximum(
        alpha, 1e-6)[..., None]
    gain = _soft_shadow(frame_a, (0.02 * iod, 0.08 * iod), 0.03 * iod, rng.uniform(0.1, 0.25))
    return Occluder("glasses", colour.astype(np.float32), alpha.astype(np.float32), gain)


def hand(crop: np.ndarray, lm: np.ndarray, donor: Donor, rng: np.random.Generator
         ) -> Occluder:
    """A hand (palm, four fingers, thumb) over a cheek, the jaw or the mouth, filled with
    `donor`'s skin and shaded round, casting a soft shadow on the face."""
    size = crop.shape[0]
    left, right = _eye_centres(lm)
    iod = float(np.linalg.norm(right - left))
    place = rng.choice(["left", "right", "chin"])
    mouth = lm[[61, 291], :2].mean(axis=0)
    if place == "chin":
        palm = mouth + np.array([rng.uniform(-0.3, 0.3), rng.uniform(0.6, 0.85)]) * iod
        angle = rng.uniform(-20, 20)  # fingers pointing up
    else:
        sign = -1 if place == "left" else 1
        cheek = (left if sign < 0 else right) + np.array([0, 0.8 * iod])
        palm = cheek + np.array([sign * rng.uniform(0.3, 0.55), rng.uniform(0.0, 0.3)]) * iod
        angle = sign * rng.uniform(25, 70)  # fingers pointing up and inward
    rad = np.radians(angle)
    up = np.array([np.sin(rad), -np.cos(rad)])  # along the fingers
    across = np.array([-up[1], up[0]])
    scale = rng.uniform(0.85, 1.15) * iod
    mask = np.zeros((size, size), np.uint8)
    k = 16
    cv2.ellipse(mask, (tuple(np.round(palm * k).astype(int))),
                (int(0.45 * scale * k), int(0.55 * scale * k)), angle, 0, 360, 255,
                -1, cv2.LINE_AA, 4)
    width = max(3, int(0.19 * scale))
    for i, length in enumerate((0.75, 0.85, 0.8, 0.62)):
        base = palm + up * 0.35 * scale + across * (i - 1.5) * 0.22 * scale
        tip = base + up * length * scale + across * (i - 1.5) * 0.05 * scale
        cv2.line(mask, tuple(np.round(base * k).astype(int)), tuple(np.round(tip * k).astype(int)),
                 255, width, cv2.LINE_AA, 4)
    thumb_side = -1 if rng.random() < 0.5 else 1
    t0 = palm + across * thumb_side * 0.35 * scale
    t1 = t0 + (across * thumb_side * 0.45 + up * 0.35) * scale
    cv2.line(mask, tuple(np.round(t0 * k).astype(int)), tuple(np.round(t1 * k).astype(int)),
             255, int(width * 1.15), cv2.LINE_AA, 4)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 0.8)
    # The donor's cheek skin, mirrored into a seamless tile and spread over the crop.
    tile = np.concatenate([donor.skin, donor.skin[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    reps = (size // tile.shape[0] + 1, size // tile.shape[1] + 1, 1)
    skin = np.tile(tile, reps)[:size, :size]
    inside = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 5)
    roundness = np.clip(inside / (0.12 * scale), 0, 1)
    shade = 0.72 + 0.28 * np.sqrt(roundness)
    colour = np.clip(skin * shade[..., None], 0, 255).astype(np.float32)
    gain = _soft_shadow(alpha, (-0.06 * iod, 0.04 * iod), 0.08 * iod, rng.uniform(0.25, 0.45))
    return Occluder("hand", colour, alpha.astype(np.float32), gain)


def cast_shadow(crop: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> Occluder:
    """A hard cast shadow (a hat brim, a window frame, a branch) over part of the face:
    everything beyond a wavy line darker by 40-65%, a little bluer, with a soft edge."""
    size = crop.shape[0]
    left, right = _eye_centres(lm)
    iod = float(np.linalg.norm(right - left))
    centre = lm[list(FACE_OVAL_LOOP), :2].mean(axis=0)
    theta = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(theta), np.sin(theta)])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    along = (xx - centre[0]) * -direction[1] + (yy - centre[1]) * direction[0]
    depth = (xx - centre[0]) * direction[0] + (yy - centre[1]) * direction[1]
    wave = (rng.uniform(0.03, 0.12) * iod
            * np.sin(along / (rng.uniform(0.25, 0.6) * iod) + rng.uniform(0, 6.3)))
    line = rng.uniform(-0.4, 0.3) * iod
    edge = rng.uniform(1.5, 5.0)
    inside = np.clip((depth - line - wave) / edge + 0.5, 0, 1)
    inside = cv2.GaussianBlur(inside, (0, 0), edge / 2)
    dark = rng.uniform(0.35, 0.6)
    cast = np.array([dark, dark * 1.04, dark * 1.15], np.float32)
    gain = 1.0 - inside[..., None] * (1.0 - np.clip(cast, 0, 1))
    colour, alpha, _ = _blank(size)
    return Occluder("shadow", colour, alpha, gain.astype(np.float32))


def make_occluder(kind: str, crop: np.ndarray, landmarks: np.ndarray, donor: Donor | None,
                  rng: np.random.Generator) -> Occluder:
    """One occluder of `kind` for the face in `crop` (its landmarks in crop pixels)."""
    if kind not in KINDS:
        raise ValueError(f"unknown occluder {kind!r}; one of {', '.join(KINDS)}")
    if kind in ("hair", "hand") and donor is None:
        raise ValueError(f"a {kind} occluder is made of another person's photo: give a donor")
    if kind == "hair":
        return hair_fringe(crop, landmarks, donor, rng)
    if kind == "glasses":
        return glasses(crop, landmarks, rng)
    if kind == "hand":
        return hand(crop, landmarks, donor, rng)
    return cast_shadow(crop, landmarks, rng)

