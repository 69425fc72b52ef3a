"""Texture: masks, colour/light matching and the ratio mix, all in the aligned crop.

The source face (already warped onto the fused shape) takes the template's skin colour and
its low-frequency light (shading, colour cast), measured on skin only so eyes, brows and
lips do not bleed into it. It is then mixed into the template by `ratio` inside a soft face
mask that leaves the hairline, ears and (when the template's mouth is open) the mouth to the
template.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .mesh_topology import (
    FACE_OVAL_LOOP,
    LEFT_BROW_POINTS,
    LEFT_EYE_LOOP,
    OUTER_LIPS_LOOP,
    RIGHT_BROW_POINTS,
    RIGHT_EYE_LOOP,
)

MOUTH_OPEN_THRESHOLD = 0.08  # inner-lip gap / mouth width above which teeth show


@dataclass(frozen=True)
class Region:
    """Where the fusion applies, relative to the detected face (the WebUI's zoom/rotate tier)."""

    scale: float = 1.0
    rotation: float = 0.0  # degrees
    offset_x: float = 0.0  # in face widths
    offset_y: float = 0.0  # in face heights


def _poly_mask(size: int, points: np.ndarray) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255, lineType=cv2.LINE_AA)
    return mask


def face_mask(shape: np.ndarray, size: int, region: Region = Region()) -> np.ndarray:
    """Soft (0..1 float32) mask of the face: the oval pulled in at the forehead so the
    hairline stays the template's, feathered inward so nothing outside the oval changes."""
    oval = shape[list(FACE_OVAL_LOOP), :2].astype(np.float64)
    brow_y = shape[list(LEFT_BROW_POINTS) + list(RIGHT_BROW_POINTS), 1].mean()
    centre = oval.mean(axis=0)
    pulled = centre + 0.94 * (oval - centre)
    # Forehead points come down toward the brows: the hairline belongs to the template.
    above = pulled[:, 1] < brow_y
    pulled[above, 1] = brow_y + 0.8 * (pulled[above, 1] - brow_y)
    width = np.ptp(oval[:, 0])
    height = np.ptp(oval[:, 1])
    if region != Region():
        rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])),
                                      -region.rotation, region.scale)
        rot[:, 2] += (region.offset_x * width, region.offset_y * height)
        pulled = pulled @ rot[:, :2].T + rot[:, 2]
    # Drawn and feathered at half size (the feather is wide and smooth), then enlarged.
    half = size // 2
    hard = _poly_mask(half, pulled / 2)
    feather = max(2, round(0.03 * width))
    hard = cv2.erode(hard, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (feather, feather)))
    soft = cv2.GaussianBlur(hard, (0, 0), feather / 2.0)
    return cv2.resize(soft, (size, size), interpolation=cv2.INTER_LINEAR
                      ).astype(np.float32) / 255.0


def feature_mask(shape: np.ndarray, size: int) -> np.ndarray:
    """Eyes, brows and lips (uint8 0/255), slightly grown: excluded from skin statistics."""
    mask = np.zeros((size, size), np.uint8)
    for loop in (LEFT_EYE_LOOP, RIGHT_EYE_LOOP, OUTER_LIPS_LOOP):
        cv2.fillPoly(mask, [np.round(shape[list(loop), :2]).astype(np.int32)], 255)
    grow = max(3, size // 64)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    # Brows are grown more: a thick brow reaches well past the mesh's brow points, and any
    # of it left in the skin statistics comes back as a dark halo after relighting.
    brows = np.zeros((size, size), np.uint8)
    for brow in (LEFT_BROW_POINTS, RIGHT_BROW_POINTS):
        hull = cv2.convexHull(np.round(shape[list(brow), :2]).astype(np.int32))
        cv2.fillConvexPoly(brows, hull, 255)
    grow = max(5, size // 20)
    brows = cv2.dilate(brows, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    return np.maximum(mask, brows)


def mouth_mask(shape: np.ndarray, size: int) -> np.ndarray:
    """Soft mask (0..1) of the whole mouth (lips and opening), grown a little.

    When the template's mouth is open, all of it stays the template's: a closed source
    mouth stretched open would smear lips over the teeth."""
    hard = _poly_mask(size, shape[list(OUTER_LIPS_LOOP), :2])
    grow = max(3, size // 40)
    hard = cv2.dilate(hard, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    return cv2.GaussianBlur(hard, (0, 0), grow / 2).astype(np.float32) / 255.0


def skin_mask(shape: np.ndarray, size: int, face: np.ndarray | None = None) -> np.ndarray:
    """Skin only (0..1): the face mask (given, or drawn from `shape`) minus eyes, brows, lips."""
    face = face_mask(shape, size) if face is None else face
    return face * (1.0 - feature_mask(shape, size).astype(np.float32) / 255.0)


def mask_box(mask: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    """Row and column slices around the True pixels of `mask`, grown by `pad`."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(0, rows[0] - pad), min(h, rows[-1] + 1 + pad)),
            slice(max(0, cols[0] - pad), min(w, cols[-1] + 1 + pad)))


def _masked_blur(image: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur that only averages where `weight` > 0 (normalised convolution).

    Only low frequencies survive a blur this wide, so it runs at 1/8 scale and is
    upsampled: the same result for a fraction of the cost.
    """
    h, w = weight.shape
    f = 8
    small = (max(1, w // f), max(1, h // f))
    wt = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    num = cv2.resize(image * weight[..., None], small, interpolation=cv2.INTER_AREA)
    wt = cv2.GaussianBlur(wt, (0, 0), sigma / f)
    num = cv2.GaussianBlur(num, (0, 0), sigma / f)
    low = num / np.maximum(wt, 1e-4)[..., None]
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)


def _weighted_stats(lab: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per channel over the weighted pixels, on a 1/4-size copy
    (skin statistics do not need every pixel; this is 10x cheaper)."""
    h, w = weight.shape
    small = (max(1, w // 4), max(1, h // 4))
    lab_s = cv2.resize(lab, small, interpolation=cv2.INTER_AREA).reshape(-1, 3)
    wt = cv2.resize(weight, small, interpolation=cv2.INTER_AREA).reshape(-1)
    total = max(float(wt.sum()), 1e-6)
    mean = (lab_s * wt[:, None]).sum(axis=0) / total
    var = (((lab_s - mean) ** 2) * wt[:, None]).sum(axis=0) / total
    return mean, np.sqrt(var) + 1e-3


def match_colour(source: np.ndarray, template: np.ndarray, skin: np.ndarray,
                 sigma: float | None = None) -> np.ndarray:
    """Source crop (float32 0..255 RGB) recoloured and relit to the template's skin.

    Two steps: a LAB mean/std transfer on skin (overall tone), then the difference of the
    two skins' low frequencies (Gaussian `sigma`, default 1/24 of the crop: directional
    light, colour casts) added back.
    """
    weight = (skin > 0.5).astype(np.float32)
    if weight.sum() < 50:
        return source
    src_lab = cv2.cvtColor(np.clip(source, 0, 255).astype(np.float32) / 255.0,
                           cv2.COLOR_RGB2LAB)
    tpl_lab = cv2.cvtColor(np.clip(template, 0, 255).astype(np.float32) / 255.0,
                           cv2.COLOR_RGB2LAB)
    s_mean, s_std = _weighted_stats(src_lab, weight)
    t_mean, t_std = _weighted_stats(tpl_lab, weight)
    gain = np.clip(t_std / s_std, 0.5, 2.0)
    out_lab = (src_lab - s_mean) * gain + t_mean
    sigma = source.shape[0] / 24.0 if sigma is None else sigma
    out_lab += _masked_blur(tpl_lab, weight, sigma) - _masked_blur(out_lab, weight, sigma)
    out_lab[..., 0] = np.clip(out_lab[..., 0], 0, 100)
    rgb = cv2.cvtColor(out_lab.astype(np.float32), cv2.COLOR_LAB2RGB) * 255.0
    return np.clip(rgb, 0, 255)


@dataclass(frozen=True)
class Composite:
    """Result of the texture stage, in crop space."""

    image: np.ndarray  # (size, size, 3) float32 0..255: the coarse fused crop
    weight: np.ndarray  # (size, size) float32 0..1: how much of the source went in
    face: np.ndarray  # (size, size) float32 0..1: the face region (for finish and refine)
    skin: np.ndarray  # (size, size) float32 0..1: the face region minus eyes, brows, lips


def mix(source_warped: np.ndarray, template_warped: np.ndarray, shape: np.ndarray,
        ratio: float, *, mouth_open: bool, region: Region = Region(),
        source_trust: np.ndarray | None = None, template_trust: np.ndarray | None = None
        ) -> Composite:
    """Recolour the source and mix it into the template by `ratio` inside the face mask.

    `source_trust` / `template_trust` (0..1, stages/occlusion.py), when given, scale the mix
    weight: what covers the source stays out, what covers the template stays on top; both
    also keep occluders out of the skin statistics the colour match uses."""
    size = template_warped.shape[0]
    src = source_warped.astype(np.float32)
    tpl = template_warped.astype(np.float32)
    face = face_mask(shape, size, region)
    skin = skin_mask(shape, size, face)
    weight = ratio * face
    stats_skin = skin
    for trust in (source_trust, template_trust):
        if trust is not None:
            weight = weight * trust
            stats_skin = stats_skin * trust
    if mouth_open:
        weight = weight * (1.0 - mouth_mask(shape, size))
    image = tpl.copy()
    box = mask_box(weight > 0, pad=2)
    if box is not None:  # only the face's box is recoloured and mixed: ~half the crop
        matched = match_colour(src[box], tpl[box], stats_skin[box], sigma=size / 24.0)
        image[box] += weight[box][..., None] * (matched - tpl[box])
    return Composite(image=image, weight=weight, face=face, skin=skin)


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels just outside the region's half-way edge. (Measured: a ring outside the whole
    feather lands on hair and background and scores ~2.6 dB worse; the baselines get
    their best variant.)"""
    hard = (mask > 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return (cv2.dilate(hard, kernel) > 0) & (hard == 0)


def lab_transfer(comp: np.ndarray, mask: np.ndarray, template: np.ndarray | None = None
                 ) -> np.ndarray:
    """Classical baseline: the region's LAB mean/std matched to a reference: the template's
    face under the same mask when there is one (what facefuse's texture stage does), else a
    ring of surroundings."""
    lab = cv2.cvtColor(comp.astype(np.float32), cv2.COLOR_RGB2LAB)
    fg = mask > 0.5
    if template is not None:
        ref_lab, ref = cv2.cvtColor(template.astype(np.float32), cv2.COLOR_RGB2LAB), fg
    else:
        ref_lab, ref = lab, _ring(mask, max(4, comp.shape[0] // 20))
    if fg.sum() < 10 or ref.sum() < 10:
        return comp
    f_mean, f_std = lab[fg].mean(axis=0), lab[fg].std(axis=0) + 1e-3
    r_mean, r_std = ref_lab[ref].mean(axis=0), ref_lab[ref].std(axis=0) + 1e-3
    moved = (lab - f_mean) * (r_std / f_std) + r_mean
    moved[..., 0] = np.clip(moved[..., 0], 0, 100)
    out = cv2.cvtColor(moved.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(comp + mask[..., None] * (out - comp), 0, 1)
