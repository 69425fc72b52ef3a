"""`facefuse eval occlusion`: what covers the source must stay out of the result, what covers
the template must stay on top of it.

On held-out people of the London set (neutral photo of A into the smiling photo of B),
synthetic occluders made from real photos (stages/occluders.py: a fringe of another
person's hair, glasses, a hand of another person's skin, a hard cast shadow) are put

- on the **source**: *leak* = the colour difference (CIE76 ΔE) between the results with and
  without the occluder, inside the occluder's area as it lands in the result (0 = nothing of
  it shows);
- on the **template**: *keep* = the colour difference between the result and the occluded
  template inside the occluder (0 = it stayed on top untouched).

Both are measured in the aligned crop where the face is fused (the crops `FaceFuser.fuse`
traces), only where the face is fused (face region > 0.5), with both photos' landmarks
pinned to the clean photos' so the numbers measure colour, not the landmark model's reaction
to the occluder. Every configuration (occlusion off/on x U-Net off/on) sees the same pairs
and the same occluders (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import FaceFuseError
from ..params import FusionParams
from ..stages import geometry
from ..stages.align import align_face
from ..stages.occluders import KINDS, Donor, Occluder, make_donor, make_occluder

CONFIGS: dict[str, dict[str, Any]] = {
    "before (occlusion off), U-Net off": {"occlusion": False, "refine": False},
    "before (occlusion off), U-Net on": {"occlusion": False, "refine": True},
    "after (occlusion on), U-Net off": {"occlusion": True, "refine": False},
    "after (occlusion on), U-Net on": {"occlusion": True, "refine": True},
}
IN_FACE = 0.5  # measured where the face region is above this
MIN_PIXELS = 30  # an occluder that covers fewer fused pixels than this is not scored


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIE76 ΔE per pixel of two RGB images (0..255)."""
    la = cv2.cvtColor(np.clip(a, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    lb = cv2.cvtColor(np.clip(b, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return np.linalg.norm(la - lb, axis=2)


@dataclass(frozen=True)
class HeldOutPair:
    source: Path
    template: Path


def held_out_pairs(data_dir: Path, count: int) -> tuple[list[HeldOutPair], list[Path]]:
    """Neutral A into smiling B over the held-out identities (the refiner never saw them),
    and every other photo as a donor of hair and skin."""
    from ..nn.data import find_photos, person_id, split_ids

    photos = find_photos(data_dir)
    _, held = split_ids([person_id(p) for p in photos])
    neutral = {person_id(p): p for p in photos if p.parent.name == "neutral"}
    smiling = {person_id(p): p for p in photos if p.parent.name == "smiling"}
    ids = sorted(i for i in held if i in neutral and i in smiling)
    if len(ids) < 2:
        raise FaceFuseError(f"{data_dir} needs neutral/ and smiling/ photos of at least two "
                            "held-out people (the London set's layout)")
    pairs = [HeldOutPair(neutral[a], smiling[ids[(k + 1) % len(ids)]])
             for k, a in enumerate(ids)][:count]
    donors = [p for p in photos if p.parent.name == "neutral" and person_id(p) not in held]
    return pairs, donors


def _area_in_result(occ: Occluder, landmarks: np.ndarray, shape: np.ndarray,
                    size: int) -> np.ndarray:
    """The occluder's area (drawn in a face's crop) carried onto the fused shape by that
    face's own warp, as the pipeline carries its pixels."""
    anchors = geometry.anchor_points(shape, size)
    plan = geometry.MeshPlan.build(shape, anchors, size)
    return plan.field(landmarks, anchors).apply(occ.area.astype(np.float32)) > 0.5


def occlusion_report(data_dir: Path, *, pairs: int = 10, kinds: tuple[str, ...] = KINDS,
                     ratio: float = 1.0, seed: int = 13,
                     configs: dict[str, dict[str, Any]] | None = None,
                     progress: bool = True, model: Path | None = None) -> dict:
    """Leak (source occluders) and keep (template occluders) per kind and configuration;
    `model` evaluates another ONNX refiner in place of the shipped one."""
    from tqdm import tqdm

    from ..imageio import load_image
    from ..pipeline import FaceFuser, PreparedSource

    configs = configs or CONFIGS
    chosen, donor_paths = held_out_pairs(data_dir, pairs)
    rows: list[dict[str, Any]] = []
    sheet: list[dict[str, Any]] = []
    total = len(chosen) * len(kinds) * 2
    with FaceFuser() as engine, tqdm(total=total, desc="occluding", disable=not progress
                                     ) as bar:
        base = FusionParams(ratio=ratio)
        size = base.crop_size
        if model is not None:
            from ..stages.refine import Refiner

            engine.set_refiner(base.backend, Refiner(model))
        donor_cache: dict[Path, Donor] = {}

        def donor(k: int) -> Donor:
            for path in donor_paths[k % len(donor_paths):] + donor_paths:
                if path not in donor_cache:
                    prepared = engine.prepare_source(path, base)
                    donor_cache[path] = make_donor(prepared.image, prepared.aligned)
                if donor_cache[path].hair is not None:
                    return donor_cache[path]
            raise FaceFuseError("no donor photo shows hair above the forehead")

        for index, pair in enumerate(chosen):
            src = engine.prepare_source(pair.source, base)
            tpl_img = load_image(pair.template)
            tpl_face = engine.analyzer.detect(tpl_img, base.det_threshold)[0]
            tpl_aligned = align_face(tpl_img, tpl_face, size)
            clean: dict[str, dict[str, np.ndarray]] = {}
            for name, overrides in configs.items():
                trace: dict[str, np.ndarray] = {}
                engine.fuse(src, tpl_img, base.with_overrides(**overrides),
                            template_faces=[tpl_face], trace=trace)
                clean[name] = trace
            shape = geometry.fuse_shape(src.aligned.landmarks, tpl_aligned.landmarks,
                                        base.shape_ratio)
            for k, kind in enumerate(kinds):
                for side in ("source", "template"):
                    rng = np.random.default_rng([seed, index, k, side == "template"])
                    give = donor(index * len(kinds) + k + (7 if side == "template" else 0))
                    face = src.aligned if side == "source" else tpl_aligned
                    occ = make_occluder(kind, face.crop, face.landmarks, give, rng)
                    photo = src.image if side == "source" else tpl_img
                    covered = occ.to_image(face, photo.shape).apply(photo)
                    area = _area_in_result(occ, face.landmarks, shape, size)
                    cells: dict[str, np.ndarray] = {}
                    for name, overrides in configs.items():
                        params = base.with_overrides(**overrides)
                        trace = {}
                        if side == "source":  # landmarks pinned to the clean photo's
                            pinned = PreparedSource(covered, src.face,
                                                    align_face(covered, src.face, size))
                            engine.fuse(pinned, tpl_img, params, template_faces=[tpl_face],
                                        trace=trace)
                            reference = clean[name]["finished"]
                        else:
                            engine.fuse(src, covered, params, template_faces=[tpl_face],
                                        trace=trace)
                            reference = trace["template"]
                        region = area & (trace["face"] > IN_FACE)
                        row = {"pair": index, "source": pair.source.name,
                               "template": pair.template.name, "kind": kind, "side": side,
                               "config": name, "pixels": int(region.sum())}
                        if region.sum() >= MIN_PIXELS:
                            row["delta_e"] = float(delta_e(trace["finished"], reference)
                                                   [region].mean())
                            if side == "source":  # the floor: template's own pixels there
                                row["floor"] = float(delta_e(
                                    clean[name]["template"], reference)[region].mean())
                        rows.append(row)
                        cells[name] = trace["finished"]
                    if index < 3:
                        sheet.append({"pair": index, "kind": kind, "side": side,
                                      "occluded": align_face(covered, src.face if side ==
                                                             "source" else tpl_face,
                                                             size).crop,
                                      "clean": clean[next(iter(configs))]["template"]
                                      if side == "source" else src.aligned.crop,
                                      "results": cells})
                    bar.update(1)
    return {"data": str(data_dir), "ratio": ratio, "seed": seed, "kinds": list(kinds),
            "configs": configs, "pairs": [[p.source.name, p.template.name] for p in chosen],
            "rows": rows, "summary": summarise(rows), "_sheet": sheet}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """side/kind -> config -> mean, worst ΔE and how many occluders were scored; for source
    occluders also the floor (what filling the area with the template's own pixels scores,
    the source and template skins being different people's)."""
    out: dict[str, dict[str, list]] = {}
    for row in rows:
        if "delta_e" not in row:
            continue
        key = f"{row['side']}/{row['kind']}"
        out.setdefault(key, {}).setdefault(row["config"], []).append(row)
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for key, by_cfg in out.items():
        summary[key] = {}
        for cfg, sel in by_cfg.items():
            values = [r["delta_e"] for r in sel]
            stats = {"mean": float(np.mean(values)), "worst": float(np.max(values)),
                     "n": len(values)}
            if all("floor" in r for r in sel):
                stats["floor"] = float(np.mean([r["floor"] for r in sel]))
            summary[key][cfg] = stats
    return summary


def occlusion_table(report: dict) -> str:
    """Markdown: one row per side and kind, one column per configuration (mean ΔE, worst)."""
    names = list(report["configs"])
    head = ("| occluder | measure | " + " | ".join(names)
            + " | floor: the template's own pixels there |")
    lines = [head, "|---|---|" + "---:|" * (len(names) + 1)]
    order = [f"{side}/{kind}" for side in ("source", "template") for kind in report["kinds"]]
    for key in [k for k in order if k in report["summary"]]:
        by_cfg = report["summary"][key]
        side, kind = key.split("/")
        measure = "leak ΔE ↓" if side == "source" else "keep ΔE ↓"
        cells = [f"{by_cfg[n]['mean']:.2f} ({by_cfg[n]['worst']:.1f})" if n in by_cfg
                 else "–" for n in names]
        floor = by_cfg[names[-1]].get("floor") if names[-1] in by_cfg else None
        cells.append(f"{floor:.2f}" if floor is not None else "0 by definition")
        lines.append(f"| {kind} on the {side} | {measure} | " + " | ".join(cells) + " |")
    n = len(report["pairs"])
    lines.append("")
    lines.append(f"{n} held-out pairs at ratio {report['ratio']:g}, mean ΔE (CIE76) inside "
                 "the occluder where the face is fused (worst pair in brackets). leak: the "
                 "result with vs without the occluder on the source; keep: the result vs "
                 "the occluded template. floor: the leak score of filling the source "
                 "occluder's area with the template's own pixels (another person's skin), "
                 "the best a trust map can reach.")
    return "\n".join(lines)


def occlusion_sheet(report: dict, path: Path, thumb: int = 160) -> Path:
    """PNG: per case, the occluded photo, the other photo, then each configuration's result
    (aligned crops). Shows people: write it where you choose, never into the repository."""
    from ..imageio import save_image

    rows = []
    names = list(report["configs"])
    for case in report["_sheet"]:
        cells = [case["occluded"], case["clean"]] + [case["results"][n] for n in names]
        rows.append(np.hstack([cv2.resize(np.clip(c, 0, 255).astype(np.uint8),
                                           (thumb, thumb), interpolation=cv2.INTER_AREA)
                               for c in cells]))
    if not rows:
        raise FaceFuseError("nothing to show: no case was fused")
    labels = ["occluded", "other photo"] + [n.replace("occlusion ", "").replace(
        "(", "").replace(")", "").replace(", U-Net", " U") for n in names]
    header = np.full((26, rows[0].shape[1], 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(header, label[:22], (i * thumb + 4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return save_image(path, np.vstack([header, *rows]), note="facefuse eval occlusion sheet")
