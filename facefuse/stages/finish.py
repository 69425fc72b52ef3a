"""Finish: fusion mode, skin smoothing, tone of the face region, output resolution.

Modes, skin smoothing and tone all work in the crop (float, before paste carries the change
to full resolution), inside the feathered face region; resolution resizes the whole photo
last.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ParameterError
from .texture import mask_box


def apply_mode(fused: np.ndarray, template: np.ndarray, weight: np.ndarray, face: np.ndarray,
               mode: str) -> np.ndarray:
    """normal: fused as is; blend: fused colour and shape with the template's fine skin
    texture; overlay: overlay blend of the fused face on the template, by `weight`."""
    if mode == "normal":
        return fused
    if mode == "blend":
        sigma = max(1.0, fused.shape[0] / 256.0)
        detail_t = template - cv2.GaussianBlur(template, (0, 0), sigma)
        detail_f = fused - cv2.GaussianBlur(fused, (0, 0), sigma)
        return fused + face[..., None] * (detail_t - detail_f)
    if mode == "overlay":
        base = template / 255.0
        top = fused / 255.0
        over = np.where(base < 0.5, 2 * base * top, 1 - 2 * (1 - base) * (1 - top)) * 255.0
        return template + weight[..., None] * (over - template)
    raise ParameterError(f"unknown mode {mode!r}")


def smooth_skin(face: np.ndarray, skin: np.ndarray, amount: float) -> np.ndarray:
    """Edge-preserving smoothing (bilateral) of the float crop, blended in by `amount` x
    skin mask.

    It runs in crop space, before paste, so the filter size follows the face size and only
    the skin's bounding box is filtered; paste then carries the change to full resolution
    with the rest of the face.
    """
    if amount <= 0:
        return face
    box = mask_box(skin > 0.01, pad=8)
    if box is None:
        return face
    ys, xs = box
    patch = face[ys, xs]
    # Filtered at half the crop's resolution: skin smoothing removes the fine scale anyway,
    # and the filter reaches twice as far for a quarter of the work.
    h, w = patch.shape[:2]
    small = cv2.resize(patch, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    half = face.shape[0] / 1024  # 0.5 at the 512 crop
    filtered = cv2.bilateralFilter(small, d=max(3, round(18 * half) | 1), sigmaColor=35.0,
                                   sigmaSpace=10.0 * half)
    filtered = cv2.resize(filtered, (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = np.ascontiguousarray(amount * skin[ys, xs], dtype=np.float32)
    out = face.copy()
    out[ys, xs] = patch + alpha[..., None] * (filtered - patch)
    return out


def adjust_tone(face: np.ndarray, region: np.ndarray, brightness: float, contrast: float,
                saturation: float) -> np.ndarray:
    """Brightness, contrast (about the region's mean) and saturation in LAB, inside the
    feathered `region` (0..1) only. Float crop in, float crop out."""
    if brightness == 0 and contrast == 0 and saturation == 0:
        return face
    box = mask_box(region > 0.002, pad=1)
    if box is None:
        return face
    ys, xs = box
    patch = face[ys, xs]
    weights = region[ys, xs].astype(np.float32)
    lab = cv2.cvtColor(np.clip(patch, 0, 255) / 255.0, cv2.COLOR_RGB2LAB)
    mean_l = float((lab[..., 0] * weights).sum() / max(weights.sum(), 1e-6))
    lab[..., 0] = mean_l + (lab[..., 0] - mean_l) * (1.0 + contrast) + 50.0 * brightness
    lab[..., 1:] *= 1.0 + saturation
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0
    out = face.copy()
    out[ys, xs] = patch + weights[..., None] * (rgb - patch)
    return out


def resize_output(image: np.ndarray, resolution: str) -> np.ndarray:
    """'original', or the long side in pixels (area averaging down, Lanczos up)."""
    if resolution == "original":
        return image
    target = int(resolution)
    h, w = image.shape[:2]
    long_side = max(h, w)
    if long_side == target:
        return image
    f = target / long_side
    size = (max(1, round(w * f)), max(1, round(h * f)))
    if max(size) != target:  # rounding must not cost the promised long side
        size = (target, size[1]) if w >= h else (size[0], target)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LANCZOS4
    return cv2.resize(image, size, interpolation=interp)
