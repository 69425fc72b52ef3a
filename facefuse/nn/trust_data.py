"""Training data for the learned trust map: real faces with synthetic occluders on them.

Each sample is one aligned face crop of a *training* identity (the refiner's split: the
held-out people are never drawn) with zero, one or two occluders from
`stages/occluders.py` (a fringe of another person's hair, glasses, a hand of another
person's skin, a hard cast shadow; random kind, size and place), then the same light and
camera changes the refiner is trained with (`data.perturb_colour`: exposure, casts, white
balance, gamma, a directional ramp, the phone-ISP simulation) over the whole photo. The
label is how much each pixel is *not* the person's own face: the occluders' alpha, or the
darkness of their hard shadows (an occluder `covers` where alpha > 0.5 or its shadow leaves
less than 0.8 of the light; the label crosses 0.5 at the same two points).

The input is the crop and the skin mask drawn from its landmarks (texture.skin_mask), as
`stages/occlusion.py` gives them at run time. NumPy and OpenCV only (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..stages.occluders import COVERED_ALPHA, COVERED_GAIN, KINDS, Donor, make_donor, make_occluder
from ..stages.texture import skin_mask
from .data import aligned_photos, find_photos, person_id, perturb_colour

CACHE_SIDE = 144  # crops are cached a little larger than the network's side (views zoom in)
NET_SIDE = 128  # the side the trust network is trained and run at
KIND_WEIGHTS = {"hair": 0.25, "glasses": 0.2, "hand": 0.3, "shadow": 0.25}
NONE_SHARE = 0.15  # share of samples with no occluder (a clean face must stay trusted)
TWO_SHARE = 0.2  # share with two occluders of different kinds
SHADOW_SOFT = 0.1  # gain between COVERED_GAIN + SHADOW_SOFT (label 0) and - SHADOW_SOFT (1)


@dataclass(frozen=True)
class TrustFaces:
    """Aligned crops with their landmarks, skin masks and hair/skin donors."""

    crops: np.ndarray  # (N, S, S, 3) uint8 RGB
    landmarks: np.ndarray  # (N, 478, 3) float32, crop pixels
    skins: np.ndarray  # (N, S, S) uint8 0..255
    ids: list[str]
    donors: list[Donor]

    def subset(self, keep: list[int]) -> TrustFaces:
        return TrustFaces(self.crops[keep], self.landmarks[keep], self.skins[keep],
                          [self.ids[i] for i in keep], [self.donors[i] for i in keep])


def build_trust_faces(data_dir: Path, keep_ids: set[str], size: int = CACHE_SIDE,
                      progress: bool = True) -> TrustFaces:
    """Analyse and align every photo of `keep_ids` under `data_dir` at `size`."""
    crops, lms, skins, ids, donors = [], [], [], [], []
    photos = [p for p in find_photos(data_dir) if person_id(p) in keep_ids]
    for path, image, aligned in aligned_photos(photos, size, progress):
        crops.append(aligned.crop)
        lms.append(aligned.landmarks)
        skins.append((skin_mask(aligned.landmarks, size) * 255).astype(np.uint8))
        ids.append(person_id(path))
        donors.append(make_donor(image, aligned))
    return TrustFaces(np.stack(crops), np.stack(lms), np.stack(skins), ids, donors)


def save_trust_faces(faces: TrustFaces, path: Path) -> None:
    hair = [d.hair if d.hair is not None else np.zeros((0, 0, 3), np.float32)
            for d in faces.donors]
    arrays = {f"hair_{i}": h for i, h in enumerate(hair)}
    arrays.update({f"skin_{i}": d.skin for i, d in enumerate(faces.donors)})
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, crops=faces.crops, landmarks=faces.landmarks, skins=faces.skins,
             ids=np.array(faces.ids), **arrays)


def load_trust_faces(path: Path) -> TrustFaces:
    z = np.load(path)
    n = len(z["ids"])
    donors = [Donor(hair=z[f"hair_{i}"] if z[f"hair_{i}"].size else None, skin=z[f"skin_{i}"])
              for i in range(n)]
    return TrustFaces(z["crops"], z["landmarks"], z["skins"], [str(i) for i in z["ids"]],
                      donors)


def untrusted_label(alpha: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """0..1: the occluder's alpha, or its shadow's darkness (0.5 where `Occluder.area`'s
    thresholds are)."""
    dark = np.clip((COVERED_GAIN + SHADOW_SOFT - gain.mean(axis=2)) / (2 * SHADOW_SOFT), 0, 1)
    cover = np.clip((alpha - COVERED_ALPHA) + 0.5, 0, 1)  # = alpha, as COVERED_ALPHA is 0.5
    return np.maximum(cover, dark).astype(np.float32)


def _view(arrays: list[np.ndarray], lm: np.ndarray, out: int, rng: np.random.Generator
          ) -> tuple[list[np.ndarray], np.ndarray]:
    """A random zoom (1-1.12x), shift and flip of the crop and its masks, at `out` px; the
    framing stays close to the pipeline's (the face centred, a quarter of the side between
    the eyes) since that is all the network sees at run time."""
    s = arrays[0].shape[0]
    window = s * rng.uniform(0.89, 1.0) if rng.random() < 0.7 else float(s)
    x0, y0 = rng.uniform(0, s - window, size=2)
    flip = rng.random() < 0.5
    k = out / window
    m = np.float32([[k, 0, -x0 * k], [0, k, -y0 * k]])
    if flip:
        m = np.float32([[-1, 0, out], [0, 1, 0]]) @ np.vstack([m, [0, 0, 1]])
        m = m.astype(np.float32)
    res = [cv2.warpAffine(a, m, (out, out), flags=cv2.INTER_AREA if k < 1 else
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for a in arrays]
    pts = lm.copy()
    pts[:, :2] = lm[:, :2] @ m[:, :2].T + m[:, 2]
    return res, pts


def make_trust_sample(faces: TrustFaces, index: int, rng: np.random.Generator,
                      side: int = NET_SIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32 HxWx3 0..1, skin float32 HxW 0..1, untrusted float32 HxW 0..1)."""
    crop = faces.crops[index]
    lm = faces.landmarks[index]
    image = crop.astype(np.float32)
    label = np.zeros(crop.shape[:2], np.float32)
    draw = rng.random()
    count = 0 if draw < NONE_SHARE else (2 if draw > 1 - TWO_SHARE else 1)
    kinds = list(rng.choice(KINDS, size=count, replace=False,
                            p=[KIND_WEIGHTS[k] for k in KINDS]))
    for kind in kinds:
        donor = None
        if kind in ("hair", "hand"):
            usable = [i for i in range(len(faces.ids))
                      if kind == "hand" or faces.donors[i].hair is not None]
            others = [i for i in usable if faces.ids[i] != faces.ids[index]]
            if not usable:  # no photo of this set shows hair above the forehead
                continue
            donor = faces.donors[int(rng.choice(others or usable))]  # another person's
        occ = make_occluder(kind, crop, lm, donor, rng)
        image = occ.apply(image).astype(np.float32)
        label = np.maximum(label, untrusted_label(occ.alpha, occ.gain))
    (image, skin, label), _ = _view([image, faces.skins[index].astype(np.float32) / 255.0,
                                     label], lm, side, rng)
    image = image / 255.0
    if rng.random() < 0.85:  # the whole photo: other light, another camera
        image = perturb_colour(image, rng)
    return (np.clip(image, 0, 1).astype(np.float32), skin.astype(np.float32),
            np.clip(label, 0, 1).astype(np.float32))


def fixed_samples(faces: TrustFaces, count: int, seed: int, side: int = NET_SIDE
                  ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The same `count` samples for the same seed (validation, evaluation)."""
    rng = np.random.default_rng(seed)
    return [make_trust_sample(faces, i % len(faces.ids), rng, side) for i in range(count)]
