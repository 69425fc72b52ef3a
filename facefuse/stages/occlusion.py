"""Occlusion: how much each pixel of a face crop shows that person's own face.

A fringe, a glasses frame, a hand or a hard shadow over the *source* would otherwise be
recoloured as skin and mixed into the result (streaks over the brows, a grey ghost frame);
the same things over the *template* would be painted over by the fused face. The texture
stage multiplies its mix weight by both faces' trust maps: where the source is not trusted
the template's own pixels stay, where the template is not trusted its occluder stays on top.

Two maps, the lower wins. The classical one is cheap: per pixel, the colour's distance from
the face's own skin (robust statistics over the skin mask, so a fringe over a fifth of it does
not move them), one-sided in lightness so highlights and soft shading stay skin; eyes, brows,
lips and nostrils, which are not skin-coloured but are the face, are trusted by the
landmarks. It cannot see a hand (another person's skin is skin-coloured) or a cast shadow
(darker skin is also shading). The learned one (models/trust_fp32.onnx, nn/trust_net.py,
trained on synthetic occluders over the training identities: MODEL_CARD.md) sees shapes:
a small U-Net at 128 px on the crop and the skin mask, run with ONNX Runtime. On the
template only what reaches in from beyond the face's outline counts (`reaching_in`). Every
constant is named here; the phone app mirrors both maps (phone/app/engine/occlusion.js).

Input: an RGB crop (float or uint8, 0..255), the landmarks in crop pixels, the skin mask
(0..1, the face minus eyes, brows, lips: texture.skin_mask). Output: float32 0..1, same side.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import BackendError
from .mesh_topology import (
    LEFT_BROW_POINTS,
    LEFT_EYE_LOOP,
    NOSE_POINTS,
    OUTER_LIPS_LOOP,
    RIGHT_BROW_POINTS,
    RIGHT_EYE_LOOP,
)

WORK_FACTOR = 2  # the map is computed at half the crop's side and upsampled (it is smooth)
FLOOR_SPREAD = np.array([4.0, 3.0, 3.0])  # LAB spread: L's always, a's and b's at least
LIT_PERCENTILE = 75.0  # the lit skin's lightness: this percentile of the skin's L
LIT_RANGE = 30.0  # L units below it where skin may still be (shading) for the local mean
LOCAL_SIGMA = 1 / 12  # of the side: how local the lit-skin reference is
DARKER_SLACK = 6.0  # L units darker than the lit skin that still count as skin shading
TRUSTED_BELOW = 2.5  # normalised colour distance: fully trusted below ...
DISTRUSTED_ABOVE = 4.5  # ... and not at all above
SPECK = 3  # px at the working side: untrusted specks smaller than this are pores or moles
GROW = 2  # px at the working side: an occluder's edge bleeds colour into its neighbours
EYE_GROW = 0.1  # eye distances: lids, lashes and eye make-up around the eye's mesh outline

TRUST_MODEL = Path(__file__).resolve().parents[1] / "models" / "trust_fp32.onnx"
TRUST_IMAGE, TRUST_SKIN, TRUST_OUTPUT = "image", "skin", "untrusted"  # the ONNX file's names
TRUST_SIDE = 128  # the learned map's side (it was trained at this side; a multiple of 32)
TRUST_THREADS = 1  # one thread: at 128 px more cost more in start-up than they save
# The network's probability that a pixel is covered, to trust: fully trusted below the first,
# not at all above the second. Its soft doubts (smile folds, side shading: 0.1-0.3) are not
# occluders; what it was trained to find sits at 0.8-1.0 (MODEL_CARD.md).
LEARNED_TRUSTED_BELOW = 0.25
LEARNED_DISTRUSTED_ABOVE = 0.75


def _grown(mask: np.ndarray, radius: float) -> np.ndarray:
    r = max(1, round(radius))
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))


def _features(shape: np.ndarray, side: int, scale: float) -> np.ndarray:
    """Eyes with their lids and lashes, brows, lips and the nostrils (uint8 0/255) at the
    working side: not skin-coloured, but the face."""
    pts = shape[:, :2] * scale
    eyes_at = [pts[list(loop)].mean(axis=0) for loop in (LEFT_EYE_LOOP, RIGHT_EYE_LOOP)]
    iod = float(np.linalg.norm(eyes_at[0] - eyes_at[1]))
    eyes = np.zeros((side, side), np.uint8)
    for loop in (LEFT_EYE_LOOP, RIGHT_EYE_LOOP):
        cv2.fillPoly(eyes, [np.round(pts[list(loop)]).astype(np.int32)], 255)
    mask = _grown(eyes, EYE_GROW * iod)
    for group in (LEFT_BROW_POINTS, RIGHT_BROW_POINTS):
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts[list(group)]).astype(np.int32)),
                           255)
    cv2.fillPoly(mask, [np.round(pts[list(OUTER_LIPS_LOOP)]).astype(np.int32)], 255)
    nose = pts[list(NOSE_POINTS)]
    eyes = pts[list(LEFT_EYE_LOOP) + list(RIGHT_EYE_LOOP)].mean(axis=0)
    tip = pts[4]
    lower = nose[nose[:, 1] > (eyes[1] + tip[1]) / 2]  # the nose's lower half: nostrils
    if len(lower) >= 3:
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(lower).astype(np.int32)), 255)
    return _grown(mask, side / 128)


def _local_mean(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian mean of `values` over the weighted pixels only (normalised convolution),
    at a quarter of the side: only low frequencies survive a blur this wide."""
    h, w = values.shape
    small = (max(1, w // 4), max(1, h // 4))
    num = cv2.resize(values * weight, small, interpolation=cv2.INTER_AREA)
    den = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    num = cv2.GaussianBlur(num, (0, 0), sigma / 4)
    den = cv2.GaussianBlur(den, (0, 0), sigma / 4)
    return cv2.resize(num / np.maximum(den, 1e-3), (w, h), interpolation=cv2.INTER_LINEAR)


def colour_trust(lab: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """0..1 per pixel: how skin-like the colour is against the robust skin statistics.

    Chroma (a, b) is compared with the skin's median; lightness one-sided (lighter than
    skin is a highlight, still skin) against the *local* lit skin, so the soft shading of
    a side-lit face stays skin while a fringe, a frame or a hard shadow's edge does not."""
    sel = lab[skin > 0.5]
    if len(sel) < 50:
        return np.ones(lab.shape[:2], np.float32)
    # The skin's own colour is the lit half's: a shadow over half the face is bluer, and
    # must not pull the reference toward itself.
    lit_half = sel[sel[:, 0] >= np.median(sel[:, 0])]
    median = np.median(lit_half, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(lit_half - median), axis=0), FLOOR_SPREAD)
    spread[0] = FLOOR_SPREAD[0]  # a shadow over half the skin would widen a measured one
    diff = lab - median
    chroma = np.sqrt((diff[..., 1] / spread[1]) ** 2 + (diff[..., 2] / spread[2]) ** 2)
    # The lit skin around each pixel: skin-coloured pixels of the skin mask, not far below
    # the skin's bright part, averaged locally (a hair band does not pull it down).
    lit = np.percentile(sel[:, 0], LIT_PERCENTILE)
    likely = ((skin > 0.5) & (chroma < TRUSTED_BELOW)
              & (lab[..., 0] > lit - LIT_RANGE)).astype(np.float32)
    if likely.sum() < 50:
        likely = (skin > 0.5).astype(np.float32)
    local = _local_mean(lab[..., 0], likely, LOCAL_SIGMA * lab.shape[0])
    darker = np.maximum(np.minimum(local, lit) - lab[..., 0] - DARKER_SLACK, 0.0)
    dist = np.sqrt((darker / spread[0]) ** 2 + chroma ** 2)
    return np.clip((DISTRUSTED_ABOVE - dist) / (DISTRUSTED_ABOVE - TRUSTED_BELOW), 0, 1
                   ).astype(np.float32)


@lru_cache(maxsize=2)
def _trust_session(path: Path):
    """The learned map's ONNX Runtime session, loaded once per process (read-only after)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = TRUST_THREADS
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise BackendError(f"could not load the trust model {path}: {exc}") from None


def learned_trust(crop: np.ndarray, skin: np.ndarray, model: Path = TRUST_MODEL
                  ) -> np.ndarray:
    """The learned map (float32 0..1, the crop's side): from the network's probability that
    a pixel is something over the face (hair, glasses, a hand, a hard shadow), 1 where it
    is below LEARNED_TRUSTED_BELOW, 0 above LEARNED_DISTRUSTED_ABOVE, linear between."""
    size = crop.shape[0]
    small = cv2.resize(np.clip(crop, 0, 255).astype(np.float32), (TRUST_SIDE, TRUST_SIDE),
                       interpolation=cv2.INTER_AREA) / 255.0
    skin_small = cv2.resize(skin.astype(np.float32), (TRUST_SIDE, TRUST_SIDE),
                            interpolation=cv2.INTER_AREA)
    feeds = {TRUST_IMAGE: np.ascontiguousarray(small.transpose(2, 0, 1)[None]),
             TRUST_SKIN: np.ascontiguousarray(skin_small[None, None])}
    untrusted = _trust_session(model).run([TRUST_OUTPUT], feeds)[0][0, 0]
    trust = np.clip((LEARNED_DISTRUSTED_ABOVE - untrusted)
                    / (LEARNED_DISTRUSTED_ABOVE - LEARNED_TRUSTED_BELOW), 0, 1)
    return cv2.resize(trust, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def trust_map(crop: np.ndarray, shape: np.ndarray, skin: np.ndarray, *,
              learned: bool = True, outline: np.ndarray | None = None) -> np.ndarray:
    """How much each pixel of `crop` shows its own face (float32 0..1, the crop's side):
    the lower of the classical and (with `learned`) the learned map. `outline` (the face
    mask; for the template) keeps only the colour map's patches that reach in from beyond
    it (`reaching_in`): its smile lines and lip shadows are the template's own face. The
    learned map needs no such filter (it trusts clean skin) and keeps an occluder inside
    the face, a glasses bridge or a shadow, that the filter would drop."""
    classical = classical_trust(crop, shape, skin)
    if outline is not None:
        classical = reaching_in(classical, outline)
    if not learned:
        return classical
    return np.minimum(classical, learned_trust(crop, skin))


def classical_trust(crop: np.ndarray, shape: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """The colour map alone (float32 0..1, the crop's side)."""
    size = crop.shape[0]
    side = size // WORK_FACTOR
    scale = side / size
    small = cv2.resize(np.clip(crop, 0, 255).astype(np.uint8), (side, side),
                       interpolation=cv2.INTER_AREA)
    # 8-bit LAB (a table look-up, 10x cheaper than float) back to L 0..100, a and b signed.
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    skin_small = cv2.resize(skin.astype(np.float32), (side, side),
                            interpolation=cv2.INTER_AREA)
    trust = colour_trust(lab, skin_small)
    untrusted = ((trust < 0.5) * 255).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (SPECK, SPECK))
    untrusted = cv2.morphologyEx(untrusted, cv2.MORPH_OPEN, kernel)
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GROW + 1, 2 * GROW + 1))
    untrusted = cv2.dilate(untrusted, grow)
    untrusted[_features(shape, side, scale) > 0] = 0
    soft = cv2.GaussianBlur(untrusted.astype(np.float32) / 255.0, (0, 0), 1.2)
    trust = 1.0 - soft
    return cv2.resize(trust, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)


INTERIOR_KEEP = 0.02  # of the face's area: an untrusted patch inside the face this large stays


def reaching_in(trust: np.ndarray, face: np.ndarray) -> np.ndarray:
    """`trust` with only what reaches in from beyond the face left untrusted.

    For the template this is what must stay on top: hair, a hand, glasses' temples all
    come from outside the face's outline; small patches inside it (a smile line, a lip's
    shadow, stubble) are the template's own face, and keeping them would carry the
    template's features into the result. An interior patch larger than INTERIOR_KEEP of
    the face (a hand held within it) still stays."""
    size = trust.shape[0]
    side = size // WORK_FACTOR
    small = cv2.resize(trust, (side, side), interpolation=cv2.INTER_AREA)
    inside = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA) >= 0.5
    untrusted = (small < 0.5).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(untrusted, connectivity=8)
    if count <= 1:
        return trust
    outside = np.bincount(labels[~inside], minlength=count) > 0
    big = stats[:, cv2.CC_STAT_AREA] >= INTERIOR_KEEP * max(int(inside.sum()), 1)
    dropped = ~(outside | big)
    dropped[0] = False  # label 0: the trusted pixels
    if not dropped.any():
        return trust
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GROW + 3, 2 * GROW + 3))
    cleared = cv2.dilate(dropped[labels].astype(np.uint8), grow).astype(np.float32)
    cleared = cv2.resize(cv2.GaussianBlur(cleared, (0, 0), 1.2), (size, size),
                         interpolation=cv2.INTER_LINEAR)
    return np.maximum(trust, np.clip(cleared * 1.5, 0, 1)).astype(np.float32)
