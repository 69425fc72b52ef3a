"""Paste: bring the crop-space result back into the full-resolution template.

Only what changed is resampled: the template's own pixels are moved by the geometry field
(mapped to image coordinates, one resampling at full resolution, so they stay sharp) and the
face change computed in the crop (`delta`) is added on top. Outside the affected region the
photo is bit-for-bit untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .align import AlignedFace
from .geometry import WarpField

CHANGE_EPS = 0.02  # px: a smaller move of the geometry counts as none
REGION_EPS = 0.002  # the face region's feather ends here: no change beyond it


@dataclass(frozen=True)
class Roi:
    """A rectangle of the full image: rows y0:y1, columns x0:x1."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def size(self) -> tuple[int, int]:
        return self.x1 - self.x0, self.y1 - self.y0


def changed_roi(aligned: AlignedFace, changed: np.ndarray, image_shape: tuple[int, ...]
                ) -> Roi | None:
    """Bounding box in the image of the crop pixels flagged in `changed` (bool crop)."""
    ys, xs = np.nonzero(changed)
    if len(xs) == 0:
        return None
    corners = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.min()],
                        [xs.min(), ys.max() + 1], [xs.max() + 1, ys.max() + 1]], np.float64)
    pts = corners @ aligned.to_image[:, :2].T + aligned.to_image[:, 2]
    h, w = image_shape[:2]
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return None
    return Roi(int(x0), int(y0), int(x1), int(y1))


def crop_to_roi(array: np.ndarray, aligned: AlignedFace, roi: Roi,
                border_value: float = 0.0) -> np.ndarray:
    """Resample a crop-space array onto the ROI's pixel grid (bilinear)."""
    m = aligned.to_crop @ np.array([[1, 0, roi.x0], [0, 1, roi.y0], [0, 0, 1]], np.float64)
    return cv2.warpAffine(array, m, roi.size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)


def paste_back(template: np.ndarray, aligned: AlignedFace, field: WarpField,
               delta: np.ndarray, region: np.ndarray, *, poisson: bool = False
               ) -> tuple[np.ndarray, Roi | None]:
    """Template with the geometry applied and `delta` (crop space, float) added.

    `region` (crop space, 0..1) is where the face may have changed (`delta` is zero outside
    it); with the geometry's moves it bounds the work, and with `poisson` it is the clone
    mask. Returns the new image and the ROI that changed.
    """
    changed = (field.displacement() > CHANGE_EPS) | (region > REGION_EPS)
    roi = changed_roi(aligned, changed, template.shape)
    out = template.copy()
    if roi is None:
        return out, None
    # Geometry: the crop-space backward map, read at each ROI pixel and expressed in image
    # coordinates; where the crop does not reach, the identity. (Map and a "valid" plane go
    # through one resampling; pixels whose footprint leaves the crop are not valid.) Where
    # the map is the identity, remap reproduces the template's pixels exactly: its
    # fixed-point weights round the float error of the round trip to zero.
    # Outside the crop the resampled map is NaN (the border value), and so is any pixel
    # whose bilinear footprint reaches outside: those get the identity.
    planes = crop_to_roi(cv2.merge([field.map_x, field.map_y]), aligned, roi,
                         border_value=float("nan"))
    image_xy = cv2.transform(planes, aligned.to_image.astype(np.float32))
    valid = ~np.isnan(image_xy[..., 0])
    if not valid.all():
        iy, ix = np.nonzero(~valid)
        image_xy[iy, ix, 0] = ix + roi.x0
        image_xy[iy, ix, 1] = iy + roi.y0
    warped = cv2.remap(template, image_xy, None, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    change = crop_to_roi(delta.astype(np.float32, copy=False), aligned, roi)
    # uint8 + float change, rounded and saturated to uint8 in one OpenCV pass.
    result = cv2.add(warped.astype(np.float32), change, dtype=cv2.CV_8U)
    if poisson:
        result = _poisson(result, warped, crop_to_roi(region.astype(np.float32), aligned, roi))
    out[roi.slices] = result
    return out, roi


def _poisson(face: np.ndarray, background: np.ndarray, region: np.ndarray) -> np.ndarray:
    """OpenCV seamless cloning of `face` into `background` inside `region`."""
    mask = (region > 0.5).astype(np.uint8) * 255
    mask[:2, :] = 0
    mask[-2:, :] = 0
    mask[:, :2] = 0
    mask[:, -2:] = 0
    ys, xs = np.nonzero(mask)
    if len(xs) < 16:
        return face
    # seamlessClone centres the mask's bounding box at `center`: put it back where it was.
    center = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    cloned = cv2.seamlessClone(face, background, mask, center, cv2.NORMAL_CLONE)
    # Keep the soft edge of the original mask outside the clone area.
    alpha = np.clip(region, 0, 1)[..., None]
    return (cloned * alpha + face * (1 - alpha) + 0.5).astype(np.uint8)
