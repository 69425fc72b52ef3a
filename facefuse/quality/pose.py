"""`facefuse eval pose`: how far the judge reads a result's head pose from the template's,
and how much of that it reads into the face's proportions alone.

The judge (judge.py) takes pose from six dlib points fitted to a generic 3D face, so a face
whose proportions differ from the generic one reads as turned or tilted. A fusion moves the
template's proportions toward the source's (that is part of the identity it carries), so
the report also judges the template with *only* its shape moved to the fused shape: its own
pixels, light and expression, no turn of the head. What the judge reads there is pose it
reads into proportions, and it bounds what any shape-fusing method can score.

Pairs: each held-out neutral photo into the smiling photos of the next `hops` held-out
people (hops 9 = all cross pairs of the ten held-out people); identity is the descriptor
distance to the source person's smiling photo.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..imageio import load_image
from ..params import FusionParams
from .occlusion import HeldOutPair, held_out_pairs

if TYPE_CHECKING:
    from ..pipeline import FaceFuser

PASS_DEGREES = 2.5  # the target of #13: within this of the template's pose
HELD_OUT_PEOPLE = 10

# name: (how the result is made, FusionParams overrides at ratio 1)
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "ratio 0 (the judge's own noise)": ("fuse", {"ratio": 0.0}),
    "proportions only, shape ratio 0.5": ("reshape", {"shape_ratio": 0.5}),
    "proportions only, shape ratio 1": ("reshape", {"shape_ratio": 1.0}),
    "fusion, defaults": ("fuse", {}),
    "fusion, registration on": ("fuse", {"feature_registration": True}),
    "fusion, registration on, shape ratio 0": ("fuse", {"feature_registration": True,
                                                        "shape_ratio": 0.0}),
    "textbook swap (dlib + Delaunay + seamlessClone)": ("classical", {}),
}


def cross_pairs(data_dir: Path, hops: int, count: int | None = None) -> list[HeldOutPair]:
    """Each held-out neutral photo into the smiling photos of the next `hops` people."""
    first, _ = held_out_pairs(data_dir, HELD_OUT_PEOPLE)
    sources = [p.source for p in first]
    templates = [p.template for p in first]
    n = len(first)
    pairs = [HeldOutPair(sources[k], templates[(k + h) % n])
             for h in range(min(hops, n - 1)) for k in range(n)]
    return pairs[:count] if count else pairs


def reshaped_template(engine: FaceFuser, source: np.ndarray, template: np.ndarray,
                      params: FusionParams) -> np.ndarray:
    """The template with only its face shape moved to the fused shape (`shape_ratio` of the
    way to the source's), through the pipeline's own geometry and paste stages: no source
    pixel, no colour, no refiner."""
    from ..stages import geometry
    from ..stages.align import align_face
    from ..stages.analysis import pick_face
    from ..stages.paste import paste_back

    size = params.crop_size
    prepared = engine.prepare_source(source, params)
    faces = engine.analyzer.detect(template, params.det_threshold)
    face = pick_face(faces, params.template_face, "template", params.det_threshold)
    tpl = align_face(template, face, size)
    shape = geometry.fuse_shape(prepared.aligned.landmarks, tpl.landmarks, params.shape_ratio)
    anchors = geometry.anchor_points(shape, size)
    field = geometry.MeshPlan.build(shape, anchors, size).field(tpl.landmarks, anchors)
    nothing = np.zeros((size, size), np.float32)
    out, _ = paste_back(template, tpl, field, np.zeros((size, size, 3), np.float32), nothing)
    return out


def pose_report(data_dir: Path, *, hops: int = 9, count: int | None = None,
                rows: dict[str, tuple[str, dict[str, Any]]] | None = None,
                progress: bool = True) -> dict:
    """Every pair under every row, judged: pose difference to the template, identity to the
    source person and to the template."""
    from tqdm import tqdm

    from ..nn.data import person_id
    from ..pipeline import FaceFuser
    from .bench import classical_swap
    from .judge import Judge, descriptor_distance, pose_difference

    rows = ROWS if rows is None else rows
    pairs = cross_pairs(data_dir, hops, count)
    judge = Judge()
    judged: dict[Path, Any] = {}

    def judged_photo(path: Path):
        if path not in judged:
            judged[path] = judge.face(load_image(path))
        return judged[path]

    results: list[dict[str, Any]] = []
    with FaceFuser() as engine, tqdm(total=len(pairs) * len(rows), desc="judging pose",
                                     disable=not progress) as bar:
        for pair in pairs:
            src, tpl = load_image(pair.source), load_image(pair.template)
            reference = next((data_dir / "smiling").glob(person_id(pair.source) + "_*"))
            tpl_face, ref_face = judged_photo(pair.template), judged_photo(reference)
            for name, (how, overrides) in rows.items():
                params = FusionParams().with_overrides(**({"ratio": 1.0} | overrides))
                if how == "reshape":
                    out = reshaped_template(engine, src, tpl, params)
                elif how == "classical":
                    out = classical_swap(judge, src, tpl)
                else:
                    out = engine.fuse(src, tpl, params).image
                face = judge.face(out)
                row: dict[str, Any] = {"row": name, "source": pair.source.name,
                                       "template": pair.template.name,
                                       "found": face is not None}
                if face is not None and tpl_face is not None and ref_face is not None:
                    row["pose_diff"] = pose_difference(face, tpl_face, out.shape)
                    row["id_to_source"] = descriptor_distance(face, ref_face)
                    row["id_to_template"] = descriptor_distance(face, tpl_face)
                results.append(row)
                bar.update(1)
    return {"data": str(data_dir), "hops": hops, "pairs": len(pairs),
            "rows": results, "summary": summarise(results, list(rows))}


def summarise(results: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, float]]:
    """Per row: pose median, mean and share within PASS_DEGREES; mean identities."""
    summary: dict[str, dict[str, float]] = {}
    for name in names:
        judged = [r for r in results if r["row"] == name and "pose_diff" in r]
        if not judged:
            continue
        pose = np.array([r["pose_diff"] for r in judged])
        summary[name] = {
            "pose_median": float(np.median(pose)), "pose_mean": float(pose.mean()),
            "within_target": float((pose <= PASS_DEGREES).mean()),
            "id_to_source": float(np.mean([r["id_to_source"] for r in judged])),
            "id_to_template": float(np.mean([r["id_to_template"] for r in judged])),
            "judged": len(judged)}
    return summary


def pose_table(report: dict) -> str:
    """Markdown table of the summary."""
    lines = [f"{report['pairs']} held-out pairs, ratio 1 unless named; pose = the judge's "
             "largest per-axis difference to the template's, degrees",
             "",
             "| result | pose median ° | pose mean ° | within 2.5° | id to source ↓ "
             "| id to template ↑ | judged |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in report["summary"].items():
        lines.append(f"| {name} | {s['pose_median']:.2f} | {s['pose_mean']:.2f} | "
                     f"{s['within_target']:.0%} | {s['id_to_source']:.4f} | "
                     f"{s['id_to_template']:.4f} | {s['judged']}/{report['pairs']} |")
    return "\n".join(lines)
