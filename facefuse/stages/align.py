"""Align: a similarity transform from a face's five key points to one canonical crop.

Every later stage works in this crop, so faces of any size, position and roll look alike
there; the transform is kept so paste-back can map results into the full photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .analysis import Face

# Five key points (right iris, left iris, nose tip, right and left mouth corner) in a unit
# crop. The inter-ocular distance is a quarter of the crop, which leaves room around the
# face oval for feathering and for a wider jaw after shape fusion.
CANONICAL_KEYPOINTS = np.array([
    [0.3756, 0.3713],
    [0.6244, 0.3713],
    [0.5000, 0.5155],
    [0.3962, 0.6600],
    [0.6038, 0.6600],
], dtype=np.float64)


def umeyama(src: np.ndarray, dst: np.ndarray, *, scale: bool = True) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking src to dst.

    Works for 2D or 3D point sets; returns a (d, d+1) matrix [sR | t].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    d = src.shape[1]
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(d)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[-1, -1] = -1
    rot = u @ fix @ vt
    c = 1.0
    if scale:
        var = (s0 ** 2).sum() / len(src)
        c = float(np.trace(np.diag(sig) @ fix) / max(var, 1e-12))
    t = mu_d - c * rot @ mu_s
    return np.hstack([c * rot, t[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) matrix to (N, 2) points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix.astype(np.float64))


@dataclass(frozen=True)
class AlignedFace:
    """A face cut out into the canonical crop, with the transforms both ways."""

    crop: np.ndarray  # (size, size, 3) uint8 RGB
    landmarks: np.ndarray  # (478, 3) in crop pixels (z scaled alike)
    to_crop: np.ndarray  # (2, 3) image -> crop
    to_image: np.ndarray  # (2, 3) crop -> image
    size: int

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return float(np.hypot(self.to_crop[0, 0], self.to_crop[0, 1]))


def crop_transform(face: Face, size: int) -> np.ndarray:
    """The (2, 3) image -> crop similarity for `face` at crop side `size`."""
    return umeyama(face.keypoints, CANONICAL_KEYPOINTS * size)


def align_face(rgb: np.ndarray, face: Face, size: int = 512) -> AlignedFace:
    """Cut `face` out of `rgb` into a size x size canonical crop."""
    to_crop = crop_transform(face, size)
    scale = float(np.hypot(to_crop[0, 0], to_crop[0, 1]))
    source, warp = rgb, to_crop
    if scale < 0.8:
        # warpAffine only interpolates; shrink with area averaging first so a big photo
        # does not alias into the crop. Only the part of the photo the crop covers.
        h, w = rgb.shape[:2]
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
        box = apply_affine(invert_affine(to_crop), corners)
        x0, y0 = np.clip(np.floor(box.min(axis=0)).astype(int) - 2, 0, [w, h])
        x1, y1 = np.clip(np.ceil(box.max(axis=0)).astype(int) + 2, 0, [w, h])
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            part = rgb[y0:y1, x0:x1]
            small = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
            source = cv2.resize(part, small, interpolation=cv2.INTER_AREA)
            fx, fy = small[0] / (x1 - x0), small[1] / (y1 - y0)
            # crop <- photo <- part <- small
            warp = to_crop @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]]) @ np.array(
                [[1 / fx, 0, 0], [0, 1 / fy, 0], [0, 0, 1]])
    crop = cv2.warpAffine(source, warp, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    lm = face.landmarks.astype(np.float64).copy()
    lm[:, :2] = apply_affine(to_crop, lm[:, :2])
    lm[:, 2] *= scale
    return AlignedFace(crop=crop, landmarks=lm.astype(np.float32), to_crop=to_crop,
                       to_image=invert_affine(to_crop), size=size)
