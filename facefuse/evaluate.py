"""Quality measurements: `facefuse eval harmonize` (the refiner against classical baselines)
and `facefuse eval refine` (the full pipeline with the refiner on and off).

Everything here runs without torch: composites come from `nn.data` (NumPy/OpenCV) and the
U-Net runs in ONNX Runtime, exactly as it ships.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .refine import Refiner, model_path

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two float images in 0..1."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def foreground_mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """MSE inside the region (mask > 0.5), on the 0..255 scale (the iHarmony4 'fMSE')."""
    sel = mask > 0.5
    if not sel.any():
        return 0.0
    return float(np.mean(((a[sel] - b[sel]) * 255.0) ** 2))


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels just outside the region's half-way edge. (Measured: a ring outside the whole
    feather lands on hair and background and scores ~2.6 dB worse; the baselines get
    their best variant.)"""
    hard = (mask > 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return (cv2.dilate(hard, kernel) > 0) & (hard == 0)


def lab_transfer(comp: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Classical baseline: the region's LAB mean/std matched to a ring around it."""
    lab = cv2.cvtColor(comp.astype(np.float32), cv2.COLOR_RGB2LAB)
    fg = mask > 0.5
    ring = _ring(mask, max(4, comp.shape[0] // 20))
    if fg.sum() < 10 or ring.sum() < 10:
        return comp
    f_mean, f_std = lab[fg].mean(axis=0), lab[fg].std(axis=0) + 1e-3
    r_mean, r_std = lab[ring].mean(axis=0), lab[ring].std(axis=0) + 1e-3
    moved = (lab - f_mean) * (r_std / f_std) + r_mean
    moved[..., 0] = np.clip(moved[..., 0], 0, 100)
    out = cv2.cvtColor(moved.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(comp + mask[..., None] * (out - comp), 0, 1)


def poisson_clone(comp: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Classical baseline: OpenCV seamlessClone of the region into its own surroundings."""
    img = (np.clip(comp, 0, 1) * 255).astype(np.uint8)
    # The clone boundary sits at the feather's half-way line: cloned from the composite
    # into itself, Poisson can only act where the boundary differs from the inside.
    hard = ((mask > 0.5).astype(np.uint8)) * 255
    hard[:2], hard[-2:], hard[:, :2], hard[:, -2:] = 0, 0, 0, 0
    ys, xs = np.nonzero(hard)
    if len(xs) < 16:
        return comp
    center = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    cloned = cv2.seamlessClone(img, img, hard, center, cv2.NORMAL_CLONE)
    out = cloned.astype(np.float32) / 255.0
    return np.clip(comp + mask[..., None] * (out - comp), 0, 1)


def unet_method(refiner: Refiner) -> Method:
    def run(comp: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return refiner(comp * 255.0, mask) / 255.0
    return run


@dataclass
class Score:
    method: str
    psnr: float
    fmse: float
    psnr_face: float


def score_methods(composites: list, methods: dict[str, Method]) -> list[Score]:
    """Mean PSNR (whole crop), fMSE and face-region PSNR of each method over the composites."""
    scores = []
    for name, method in methods.items():
        p, f, pf = [], [], []
        for comp, mask, target in composites:
            out = method(comp, mask)
            p.append(psnr(out, target))
            f.append(foreground_mse(out, target, mask))
            sel = mask > 0.5
            pf.append(psnr(out[sel], target[sel]))
        scores.append(Score(name, float(np.mean(p)), float(np.mean(f)), float(np.mean(pf))))
    return scores


def harmonize_report(data_dir: Path, *, size: int = 512, per_face: int = 3,
                     backend: str = "ort-fp32", model: Path | None = None,
                     cache: Path | None = None) -> dict:
    """Scores of the four methods on composites of the held-out identities only."""
    from .nn.data import build_faceset, split_ids, validation_composites

    faces = None
    if cache is not None and cache.exists():
        from .nn.data import load_or_build

        faces = load_or_build(data_dir, cache)
    if faces is None:
        faces = build_faceset(data_dir)
    _, val_ids = split_ids(faces.ids)
    held_out = faces.subset([i for i, p in enumerate(faces.ids) if p in val_ids])
    composites = validation_composites(held_out, size, per_face=per_face, seed=2024)
    refiner = Refiner(model or model_path(backend))
    methods: dict[str, Method] = {
        "composite (no harmonisation)": lambda c, m: c,
        "LAB mean/std transfer": lab_transfer,
        "Poisson (OpenCV seamlessClone)": poisson_clone,
        f"U-Net ({backend})": unet_method(refiner),
    }
    scores = score_methods(composites, methods)
    best_classical = max(s.psnr for s in scores[1:3])
    return {
        "data": str(data_dir), "size": size, "composites": len(composites),
        "held_out_identities": sorted(val_ids), "model": str(refiner.path),
        "scores": [s.__dict__ for s in scores],
        "unet_gain_over_best_classical_db": scores[3].psnr - best_classical,
    }


def markdown_table(report: dict) -> str:
    lines = ["| method | PSNR (dB) | face-region PSNR (dB) | fMSE |", "|---|---:|---:|---:|"]
    for s in report["scores"]:
        lines.append(f"| {s['method']} | {s['psnr']:.2f} | {s['psnr_face']:.2f} | "
                     f"{s['fmse']:.1f} |")
    lines.append("")
    lines.append(f"{report['composites']} composites of {len(report['held_out_identities'])} "
                 f"held-out identities at {report['size']} px; U-Net gain over the best "
                 f"classical baseline: {report['unet_gain_over_best_classical_db']:+.2f} dB")
    return "\n".join(lines)


def write_report(report: dict, json_path: Path | None) -> None:
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2))
