"""Geometry: the fused face shape, and a fast piecewise-affine warp onto it.

Both faces are turned frontal and the source is fitted to the template (Procrustes), so
only the difference of shape remains; that difference is turned back into the template's
pose, so the result keeps the template's pose.
Identity-bearing points (outline, eyes, brows, nose) then move toward the source by
`shape_ratio`; the lips only follow the face as a whole, so the template's expression stays.

The warp is a piecewise-affine map over a Delaunay triangulation of the target shape,
evaluated on a coarse grid with vectorised barycentric look-ups and upsampled to a dense
remap field: a few milliseconds at 512 px, with no Python loop over triangles.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from .align import umeyama
from .analysis import CHIN, FOREHEAD, LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from .mesh_topology import FACE_OVAL_LOOP, LIPS_POINTS, OUTER_LIPS_LOOP

N_LANDMARKS = 478
_LIPS = np.array(LIPS_POINTS)
_NOT_LIPS = np.setdiff1d(np.arange(N_LANDMARKS), _LIPS)
_OVAL = np.array(FACE_OVAL_LOOP)
_OUTER_LIPS = np.array(OUTER_LIPS_LOOP)

GRID_STEP = 4  # the warp is exact at grid nodes and bilinear in between
ANCHOR_RING = 1.45  # warp anchors sit on the face oval scaled by this about its centre


def head_rotation(landmarks: np.ndarray) -> np.ndarray:
    """3x3 rotation whose columns are the head's right, down and forward axes (from the eye
    corners, forehead and chin), the same axes `analysis.head_pose` reports."""
    x_axis = landmarks[LEFT_EYE_OUTER] - landmarks[RIGHT_EYE_OUTER]
    y_axis = landmarks[CHIN] - landmarks[FOREHEAD]
    x_axis = x_axis / (np.linalg.norm(x_axis) + 1e-9)
    y_axis = y_axis - x_axis * np.dot(y_axis, x_axis)
    y_axis = y_axis / (np.linalg.norm(y_axis) + 1e-9)
    return np.column_stack([x_axis, y_axis, np.cross(x_axis, y_axis)])


def frontal(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks turned to face the camera (head rotation removed), centred."""
    centred = landmarks - landmarks[_NOT_LIPS].mean(axis=0)
    return centred @ head_rotation(landmarks)


def shape_difference(source_lm: np.ndarray, template_lm: np.ndarray) -> np.ndarray:
    """(N, 2) image-plane move that turns the template's face shape into the source's,
    in the template's pose.

    Both faces are turned frontal first, so a source photographed turned or tilted does
    not carry its pose into the template; the frontal difference (after a similarity fit
    that leaves the lips out, so an open mouth does not skew it) is turned back into the
    template's pose and projected.
    """
    src_f, tpl_f = frontal(source_lm), frontal(template_lm)
    m = umeyama(src_f[_NOT_LIPS, :2], tpl_f[_NOT_LIPS, :2])
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    aligned = np.column_stack([src_f[:, :2] @ m[:, :2].T + m[:, 2], src_f[:, 2] * scale])
    diff = aligned - tpl_f
    diff[:, 2] = 0.0  # depth is the least certain output: the move stays in the face plane
    return (diff @ head_rotation(template_lm).T)[:, :2]


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of the points (N, 2) inside a closed polygon (M, 2), by ray casting."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / (y1 - y0 + 1e-12) + x0)
    return crosses.sum(axis=1) % 2 == 1


def mouth_points(landmarks: np.ndarray) -> np.ndarray:
    """Indices of the lip contours and every mesh point on the lips between them."""
    inside = inside_polygon(landmarks[:, :2], landmarks[_OUTER_LIPS, :2])
    return np.union1d(_LIPS, np.nonzero(inside)[0])


def fuse_shape(source_lm: np.ndarray, template_lm: np.ndarray, shape_ratio: float
               ) -> np.ndarray:
    """Target 2D shape (N, 2): template + shape_ratio x shape difference, with the mouth
    moved only by its mean shift, so the template keeps its expression."""
    shift = shape_difference(source_lm.astype(np.float64), template_lm.astype(np.float64))
    mouth = mouth_points(template_lm)
    mean_shift = shift[mouth].mean(axis=0)
    # Around the mouth the move eases into the mouth's own, so skin next to the lips is
    # not sheared against them (that left a ragged lip line).
    pts = template_lm[:, :2]
    width = np.linalg.norm(pts[_OUTER_LIPS].max(axis=0) - pts[_OUTER_LIPS].min(axis=0))
    dist = np.min(np.linalg.norm(pts[:, None] - pts[mouth][None], axis=2), axis=1)
    ease = np.exp(-((dist / (0.3 * width + 1e-6)) ** 2))[:, None]
    shift = shift + ease * (mean_shift - shift)
    shift[mouth] = mean_shift
    return (template_lm[:, :2] + shape_ratio * shift).astype(np.float32)


def anchor_points(shape: np.ndarray, size: int) -> np.ndarray:
    """Fixed points the warp leaves in place: a ring around the face and the crop border,
    so that only the face and its close surroundings move."""
    oval = shape[_OVAL]
    centre = oval.mean(axis=0)
    ring = centre + ANCHOR_RING * (oval - centre)
    edge = np.linspace(0, size - 1, 5)
    border = np.array([(x, y) for x in edge for y in edge
                       if x in (0, size - 1) or y in (0, size - 1)])
    return np.vstack([ring, border]).astype(np.float64)


@functools.lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y) of a size x size crop (read-only; shared by every call)."""
    gx, gy = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    gx.flags.writeable = False
    gy.flags.writeable = False
    return gx, gy


@functools.lru_cache(maxsize=8)
def _node_lookup(size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel, its position in grid-node units (for bilinear upsampling)."""
    gx, gy = _pixel_grid(size)
    px, py = gx / GRID_STEP, gy / GRID_STEP
    px.flags.writeable = False
    py.flags.writeable = False
    return px, py


@dataclass(frozen=True)
class WarpField:
    """Backward map for cv2.remap: output pixel (y, x) samples input (map_y, map_x)."""

    map_x: np.ndarray  # (size, size) float32
    map_y: np.ndarray

    def apply(self, image: np.ndarray, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=border)

    def displacement(self) -> np.ndarray:
        """Per-pixel length of the move, to find where the warp changed anything."""
        gx, gy = _pixel_grid(self.map_x.shape[0])
        return np.hypot(self.map_x - gx, self.map_y - gy)


def locate_in_triangles(corners: np.ndarray, grid: np.ndarray, searched: np.ndarray,
                        n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each node of an n x n grid (spacing GRID_STEP), the triangle holding it and its
    barycentric weights; -1 where no triangle does or the node is not `searched`.

    Why not scipy's `Delaunay.find_simplex`: it first builds a barycentric transform per
    triangle with one tiny LAPACK call each, and on a busy machine OpenBLAS wakes its threads
    for every one of them (measured: 500 ms instead of 1 ms for ~1000 triangles). Here the
    2 x 2 inverses are closed-form and every triangle tests only the nodes in its bounding
    box, all in a few vectorised passes.
    """
    p0, p1, p2 = corners[:, 0], corners[:, 1], corners[:, 2]
    a, b = p0 - p2, p1 - p2
    det = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    usable = np.abs(det) > 1e-12  # qhull can emit flat slivers: they hold no node
    lo = np.clip(np.ceil(corners.min(axis=1) / GRID_STEP), 0, n - 1).astype(np.int64)
    hi = np.clip(np.floor(corners.max(axis=1) / GRID_STEP), -1, n - 1).astype(np.int64)
    cols = np.where(usable, np.maximum(hi[:, 0] - lo[:, 0] + 1, 0), 0)
    rows = np.where(usable, np.maximum(hi[:, 1] - lo[:, 1] + 1, 0), 0)
    counts = cols * rows
    owner = np.repeat(np.arange(len(corners)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    gx = lo[owner, 0] + offset % cols[owner]
    gy = lo[owner, 1] + offset // cols[owner]
    node = gy * n + gx
    keep = searched[node]
    owner, node = owner[keep], node[keep]
    d = grid[node] - p2[owner]
    inv = 1.0 / det[owner]
    w0 = (b[owner, 1] * d[:, 0] - b[owner, 0] * d[:, 1]) * inv
    w1 = (a[owner, 0] * d[:, 1] - a[owner, 1] * d[:, 0]) * inv
    w2 = 1.0 - w0 - w1
    eps = 1e-9
    inside = (w0 >= -eps) & (w1 >= -eps) & (w2 >= -eps)
    simplex = np.full(len(grid), -1, dtype=np.int64)
    weights = np.zeros((len(grid), 3))
    hit = node[inside]
    simplex[hit] = owner[inside]  # a node on a shared edge takes either side: same weights
    weights[hit] = np.column_stack([w0[inside], w1[inside], w2[inside]])
    return simplex, weights


@dataclass(frozen=True)
class MeshPlan:
    """Where each grid node of the crop falls in the triangulated target shape.

    Built once per target shape; every image warped onto that shape (source and template)
    reuses it, so the triangle search is paid once."""

    size: int
    vertices: np.ndarray  # (nodes, 3) vertex indices of the enclosing triangle
    weights: np.ndarray  # (nodes, 3) barycentric weights
    outside: np.ndarray  # (nodes,) nodes outside the triangulation: identity
    grid: np.ndarray  # (nodes, 2) node coordinates

    @classmethod
    def build(cls, to_pts: np.ndarray, anchors: np.ndarray, size: int) -> MeshPlan:
        dst = np.vstack([to_pts[:, :2], anchors])
        tri = Delaunay(dst)
        n = size // GRID_STEP + 1
        coords = np.arange(n, dtype=np.float64) * GRID_STEP
        gx, gy = np.meshgrid(coords, coords)
        grid = np.column_stack([gx.ravel(), gy.ravel()])
        # (Nodes past the last pixel lie outside the triangulation: they are never searched.)
        # Only nodes near the face can move: beyond the anchor ring every triangle is made
        # of anchors, which stay put, so the search is limited to the ring's box (+10%).
        ring = anchors[:len(_OVAL)]
        lo, hi = ring.min(axis=0), ring.max(axis=0)
        margin = 0.1 * (hi - lo)
        within = ((grid <= size - 1).all(axis=1) & (grid >= lo - margin).all(axis=1)
                  & (grid <= hi + margin).all(axis=1))
        simplex, weights = locate_in_triangles(dst[tri.simplices], grid, within, n)
        outside = simplex < 0
        simplex[outside] = 0
        weights[outside] = (1.0, 0.0, 0.0)
        return cls(size, tri.simplices[simplex], weights, outside, grid)

    def field(self, from_pts: np.ndarray, anchors: np.ndarray) -> WarpField:
        """The field that moves `from_pts` onto this plan's target shape."""
        src = np.vstack([from_pts[:, :2], anchors])
        mapped = np.einsum("ni,nij->nj", self.weights, src[self.vertices])
        mapped[self.outside] = self.grid[self.outside]
        n = self.size // GRID_STEP + 1
        px, py = _node_lookup(self.size)
        maps = [cv2.remap(mapped[:, k].reshape(n, n).astype(np.float32), px, py,
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                for k in (0, 1)]
        return WarpField(maps[0], maps[1])


def piecewise_affine(from_pts: np.ndarray, to_pts: np.ndarray, size: int,
                     anchors: np.ndarray) -> WarpField:
    """The field that moves `from_pts` onto `to_pts` (anchors stay put) over a size x size crop."""
    return MeshPlan.build(to_pts, anchors, size).field(from_pts, anchors)


# Appearance registration of the source's features. The landmark model places its mesh
# on each face with a person-specific bias of a few pixels (a nose tip read 3% of the eye
# distance off to one side); warped mesh-to-mesh, the source's real nose then lands beside
# the template's, and a head-pose reader sees a turned head. The features are therefore
# registered by their look too: the warped source and the warped template are compared by
# phase correlation of their fine detail around each feature, and the source's mesh points
# there are moved by the shift found (with a smooth falloff), before the final warp.
REGISTER_FEATURES: dict[str, tuple[tuple[int, ...], float]] = {
    # name: (mesh points whose mean is the feature's centre, window half-side in eye dists)
    "nose": ((1, 4, 5, 195, 197, 98, 327), 0.34),
    "right_eye": ((33, 133, 159, 145), 0.3),
    "left_eye": ((263, 362, 386, 374), 0.3),
}
REGISTER_MAX = 0.06  # eye distances: a larger shift is a mismatch, not a landmark bias
REGISTER_MIN_RESPONSE = 0.04  # phase-correlation peak below this: no shift
REGISTER_FALLOFF = 0.3  # eye distances: how far around a feature its mesh points follow
REGISTER_PASSES = 2  # the warp is not a pure shift: a second look takes the rest


def _detail(patch: np.ndarray) -> np.ndarray:
    """Grey fine detail (skin tone and light removed): what two different faces share."""
    grey = cv2.cvtColor(np.clip(patch, 0, 255).astype(np.float32), cv2.COLOR_RGB2GRAY)
    return grey - cv2.GaussianBlur(grey, (0, 0), 3.0)


def feature_shifts(source_warped: np.ndarray, template_warped: np.ndarray,
                   shape: np.ndarray) -> dict[str, np.ndarray]:
    """Per feature, the (dx, dy) in crop pixels by which the warped source's feature sits
    off the warped template's (both on the fused `shape`); zero where unsure."""
    size = source_warped.shape[0]
    iod = float(np.linalg.norm(shape[468, :2] - shape[473, :2]))
    shifts: dict[str, np.ndarray] = {}
    for name, (points, half) in REGISTER_FEATURES.items():
        cx, cy = shape[list(points), :2].mean(axis=0)
        h = round(float(half * iod))
        x0, y0 = round(float(cx)) - h, round(float(cy)) - h
        if x0 < 0 or y0 < 0 or x0 + 2 * h > size or y0 + 2 * h > size or h < 8:
            shifts[name] = np.zeros(2)
            continue
        box = (slice(y0, y0 + 2 * h), slice(x0, x0 + 2 * h))
        window = cv2.createHanningWindow((2 * h, 2 * h), cv2.CV_32F)
        (dx, dy), response = cv2.phaseCorrelate(_detail(template_warped[box]),
                                                _detail(source_warped[box]), window)
        shift = np.array([dx, dy])
        if response < REGISTER_MIN_RESPONSE or np.linalg.norm(shift) > REGISTER_MAX * iod:
            shift = np.zeros(2)
        shifts[name] = shift
    return shifts


def register_landmarks(landmarks: np.ndarray, shape: np.ndarray,
                       shifts: dict[str, np.ndarray]) -> np.ndarray:
    """The source's landmarks moved so that warping onto `shape` puts each feature where
    the template's is (`shifts` from `feature_shifts`); (N, 2+) like the input."""
    out = landmarks.astype(np.float64).copy()
    iod = float(np.linalg.norm(shape[468, :2] - shape[473, :2]))
    for name, shift in shifts.items():
        if not shift.any():
            continue
        centre = shape[list(REGISTER_FEATURES[name][0]), :2].mean(axis=0)
        dist = np.linalg.norm(shape[:, :2] - centre, axis=1)
        weight = np.exp(-((dist / (REGISTER_FALLOFF * iod)) ** 2))
        out[:, :2] += weight[:, None] * shift
    return out.astype(landmarks.dtype)
