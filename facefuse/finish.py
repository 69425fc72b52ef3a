"""Finish: fusion mode, skin smoothing, tone of the face region, output resolution.

Modes work in the crop (they compare the fused face with the template face); smoothing and
tone work on the full image inside the feathered face region; resolution resizes last.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import ParameterError


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


def smooth_skin(image: np.ndarray, skin: np.ndarray, amount: float, scale: float
                ) -> np.ndarray:
    """Edge-preserving smoothing (bilateral) blended in by `amount` x skin mask.

    Filtering runs at crop scale (`scale` = crop px per image px), which is both faster and
    what makes the filter size follow the face size.
    """
    if amount <= 0:
        return image
    h, w = image.shape[:2]
    s = min(1.0, scale)
    small = cv2.resize(image, (max(8, round(w * s)), max(8, round(h * s))),
                       interpolation=cv2.INTER_AREA) if s < 1 else image
    filtered = cv2.bilateralFilter(small, d=9, sigmaColor=30, sigmaSpace=6)
    if s < 1:
        filtered = cv2.resize(filtered, (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = np.ascontiguousarray(amount * skin, dtype=np.float32)
    return cv2.blendLinear(image, filtered, 1.0 - alpha, alpha)  # one pass, in C


def adjust_tone(image: np.ndarray, region: np.ndarray, brightness: float, contrast: float,
                saturation: float) -> np.ndarray:
    """Brightness, contrast (about the region's mean) and saturation in LAB, inside the
    feathered `region` (0..1) only."""
    if brightness == 0 and contrast == 0 and saturation == 0:
        return image
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    adjusted = lab.copy()
    weights = region.astype(np.float32)
    mean_l = float((lab[..., 0] * weights).sum() / max(weights.sum(), 1e-6))
    adjusted[..., 0] = mean_l + (lab[..., 0] - mean_l) * (1.0 + contrast) + 50.0 * brightness
    adjusted[..., 1:] *= 1.0 + saturation
    adjusted[..., 0] = np.clip(adjusted[..., 0], 0, 100)
    rgb = cv2.cvtColor(adjusted, cv2.COLOR_LAB2RGB) * 255.0
    out = image + weights[..., None] * (rgb - image)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


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
