"""`facefuse eval fusion` and `facefuse eval landmarks`: quality numbers for fusion results.

Fusion results are judged by models facefuse does not use (see judge.py): identity (dlib
face descriptor distance to another photo of the source person, and to the template; top-1
retrieval over every person in the set), pose and expression against the template, the seam
at the face edge, whether a face is still found, and time.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import FaceFuseError, ParameterError
from ..imageio import load_image
from ..params import PRESETS, FusionParams, param_names
from .evaluate import feather_seam

METRICS = ("id_to_source", "id_to_template", "top1", "pose_diff", "expr_diff", "seam",
           "found", "ms")


@dataclass(frozen=True)
class Pair:
    source: Path
    template: Path
    reference: Path | None = None  # another photo of the source person
    person: str = ""  # the source person's id, for retrieval


def london_pairs(data_dir: Path, count: int = 12) -> list[Pair]:
    """Neutral photo of A into the smiling photo of B; reference = smiling photo of A."""
    neutral = {p.stem.split("_")[0]: p for p in sorted((data_dir / "neutral").glob("*.jpg"))}
    smiling = {p.stem.split("_")[0]: p for p in sorted((data_dir / "smiling").glob("*.jpg"))}
    ids = sorted(set(neutral) & set(smiling))
    if len(ids) < 2:
        raise FaceFuseError(f"{data_dir} needs neutral/ and smiling/ photos of at least two "
                            "people (the London set's layout); or pass --pairs FILE.csv")
    step = max(1, len(ids) // count)
    chosen = ids[::step][:count]
    return [Pair(neutral[a], smiling[ids[(ids.index(a) + 7) % len(ids)]], smiling[a], a)
            for a in chosen]


def csv_pairs(path: Path) -> list[Pair]:
    """Columns: source, template, and optionally reference and person."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"source", "template"} <= set(rows[0]):
        raise ParameterError(f"{path} needs a header with source and template columns")
    base = path.parent
    return [Pair(base / r["source"], base / r["template"],
                 base / r["reference"] if r.get("reference") else None,
                 r.get("person") or Path(r["source"]).stem) for r in rows]


def parse_config(spec: str) -> dict[str, Any]:
    """'mobile', 'refine=false', 'preset=mobile,backend=ort-int8' -> FusionParams overrides."""
    spec = spec.strip()
    if spec in PRESETS:
        return dict(PRESETS[spec])
    overrides: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "=" not in part:
            raise ParameterError(f"bad configuration {part!r}: use name=value or a preset")
        key, value = (s.strip() for s in part.split("=", 1))
        key = key.replace("-", "_")
        if key == "preset":
            if value not in PRESETS:
                raise ParameterError(f"unknown preset {value!r}")
            overrides.update(PRESETS[value])
            continue
        if key not in param_names():
            raise ParameterError(f"unknown parameter {key!r} in {spec!r}")
        overrides[key] = _parse_value(value)
    return overrides


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "on", "yes"):
        return True
    if low in ("false", "off", "no"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def fusion_report(pairs: list[Pair], ratios: list[float],
                  configs: dict[str, dict[str, Any]], *, progress: bool = True,
                  gallery_photos: dict[str, Path] | None = None) -> dict:
    """Every pair x ratio x configuration, judged; plus summaries."""
    from tqdm import tqdm

    from ..pipeline import FaceFuser
    from .judge import (
        Judge,
        descriptor_distance,
        expression_difference,
        pose_difference,
    )

    judge = Judge()
    gallery = {}
    for person, path in (gallery_photos or {}).items():
        face = judge.face(load_image(path))
        if face is not None:
            gallery[person] = face.descriptor
    rows: list[dict[str, Any]] = []
    images: dict[tuple[int, str, float], np.ndarray] = {}
    total = len(pairs) * len(ratios) * len(configs)
    with FaceFuser() as engine, tqdm(total=total, desc="judging", disable=not progress) as bar:
        for index, pair in enumerate(pairs):
            src, tpl = load_image(pair.source), load_image(pair.template)
            ref_img = load_image(pair.reference) if pair.reference else src
            tpl_face, ref_face = judge.face(tpl), judge.face(ref_img)
            for name, overrides in configs.items():
                base = FusionParams().with_overrides(**overrides)
                for ratio in ratios:
                    params = base.with_overrides(ratio=ratio, shape_ratio=ratio)
                    start = time.perf_counter()
                    trace: dict[str, np.ndarray] = {}
                    out = engine.fuse(src, tpl, params, trace=trace).image
                    ms = (time.perf_counter() - start) * 1000
                    face = judge.face(out)
                    row: dict[str, Any] = {"pair": index, "source": pair.source.name,
                                           "template": pair.template.name, "config": name,
                                           "ratio": ratio, "found": face is not None,
                                           "ms": ms}
                    if face is not None and tpl_face is not None and ref_face is not None:
                        row["id_to_source"] = descriptor_distance(face, ref_face)
                        row["id_to_template"] = descriptor_distance(face, tpl_face)
                        row["pose_diff"] = pose_difference(face, tpl_face, out.shape)
                        row["expr_diff"] = expression_difference(face, tpl_face)
                        if gallery:
                            nearest = min(gallery, key=lambda p: float(
                                np.linalg.norm(gallery[p] - face.descriptor)))
                            row["top1"] = nearest == pair.person
                    row["seam"] = feather_seam(trace["finished"], trace["template"],
                                               trace["face"])[0]
                    rows.append(row)
                    images[(index, name, ratio)] = out
                    bar.update(1)
    return {"pairs": [p.__dict__ | {"source": str(p.source), "template": str(p.template),
                                    "reference": str(p.reference) if p.reference else None}
                      for p in pairs],
            "ratios": ratios, "configs": configs, "rows": rows,
            "summary": summarise(rows), "_images": images}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """config -> ratio -> metric -> {mean, median, worst}."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    worse_is_high = {"id_to_source": True, "id_to_template": False, "pose_diff": True,
                     "expr_diff": True, "seam": True, "ms": True, "top1": False,
                     "found": False}
    for row in rows:
        out.setdefault(row["config"], {}).setdefault(str(row["ratio"]), {})
    for config, by_ratio in out.items():
        for ratio in by_ratio:
            sel = [r for r in rows if r["config"] == config and str(r["ratio"]) == ratio]
            stats = {}
            for metric in METRICS:
                values = [float(r[metric]) for r in sel if metric in r]
                if not values:
                    continue
                worst = max(values) if worse_is_high[metric] else min(values)
                stats[metric] = {"mean": float(np.mean(values)),
                                 "median": float(np.median(values)), "worst": worst}
            by_ratio[ratio] = stats
    return out


def summary_table(report: dict) -> str:
    """Markdown: one row per configuration and ratio, means (worst in brackets)."""
    head = ("| config | ratio | id dist to source ↓ | id dist to template ↑ | top-1 | "
            "pose diff ° | expression diff | seam ΔE | face found | ms |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(stats: dict, metric: str, fmt: str = "{:.3f}", worst: bool = True) -> str:
        if metric not in stats:
            return "–"
        s = stats[metric]
        text = fmt.format(s["mean"])
        if not worst:
            return text
        return f"{text} / {fmt.format(s['median'])} ({fmt.format(s['worst'])})"

    for config, by_ratio in report["summary"].items():
        for ratio, stats in by_ratio.items():
            lines.append(
                f"| {config} | {ratio} | {cell(stats, 'id_to_source')} | "
                f"{cell(stats, 'id_to_template')} | {cell(stats, 'top1', '{:.0%}', False)} | "
                f"{cell(stats, 'pose_diff', '{:.1f}')} | {cell(stats, 'expr_diff')} | "
                f"{cell(stats, 'seam', '{:.2f}')} | {cell(stats, 'found', '{:.0%}', False)} | "
                f"{cell(stats, 'ms', '{:.0f}', False)} |")
    lines.append("")
    lines.append("Mean / median over pairs, the worst pair in brackets. Identity: dlib "
                 "descriptor distance (below ~0.6 = same person for dlib).")
    return "\n".join(lines)


def compare_table(report: dict, a: str, b: str) -> str:
    """Differences of means, b minus a, per ratio."""
    sa, sb = report["summary"][a], report["summary"][b]
    lines = [f"| ratio | Δ id to source ({b} − {a}) | Δ id to template | Δ pose ° | "
             "Δ expression | Δ seam | Δ ms |", "|---:|---:|---:|---:|---:|---:|---:|"]
    def diff(stats_a: dict, stats_b: dict, metric: str) -> str:
        if metric not in stats_a or metric not in stats_b:
            return "–"
        return f"{stats_b[metric]['mean'] - stats_a[metric]['mean']:+.3f}"

    for ratio in sa:
        def d(metric: str, ratio: str = ratio) -> str:
            return diff(sa[ratio], sb.get(ratio, {}), metric)
        lines.append(f"| {ratio} | {d('id_to_source')} | {d('id_to_template')} | "
                     f"{d('pose_diff')} | {d('expr_diff')} | {d('seam')} | {d('ms')} |")
    return "\n".join(lines)


def contact_sheet(report: dict, path: Path, config: str | None = None, thumb: int = 180,
                  max_pairs: int = 8) -> Path:
    """PNG: per pair, source | template | result at each ratio (one configuration)."""
    config = config or next(iter(report["configs"]))
    images = report["_images"]
    rows = []
    for index, pair in enumerate(report["pairs"][:max_pairs]):
        cells = [load_image(pair["source"]), load_image(pair["template"])]
        cells += [images[(index, config, r)] for r in report["ratios"]]
        rows.append(np.hstack([_thumb(c, thumb) for c in cells]))
    header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    labels = ["source", "template"] + [f"ratio {r:g}" for r in report["ratios"]]
    for i, label in enumerate(labels):
        cv2.putText(header, label, (i * thumb + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.vstack([header, *rows])
    from ..imageio import save_image

    return save_image(path, sheet, note="facefuse eval contact sheet")


def _thumb(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    square = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return cv2.resize(square, (side, side), interpolation=cv2.INTER_AREA)


def identity_plot(report: dict, path: Path) -> Path:
    """Identity distance to the source person and to the template vs ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for config, by_ratio in report["summary"].items():
        ratios = [float(r) for r in by_ratio]
        for metric, style in (("id_to_source", "-o"), ("id_to_template", "--s")):
            if all(metric in by_ratio[r] for r in by_ratio):
                ax.plot(ratios, [by_ratio[r][metric]["mean"] for r in by_ratio], style,
                        label=f"{config}: {metric.replace('_', ' ')}")
    ax.axhline(0.6, color="grey", lw=0.8, ls=":", label="dlib same-person threshold")
    ax.set_xlabel("fusion ratio")
    ax.set_ylabel("dlib descriptor distance")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def landmark_report(data_dir: Path, limit: int | None = None) -> dict:
    """Our analysis stage against the hand-placed .tem points, per region (NME per IOD)."""
    from ..pipeline import FaceFuser

    regions = {"pupils": {468: 0, 473: 1}, "eye corners": {33: 18, 133: 22, 263: 27, 362: 23},
               "mouth corners": {61: 87, 291: 93}, "chin": {152: 129}}
    photos = sorted(Path(data_dir).rglob("*.tem"))[:limit]
    if not photos:
        raise FaceFuseError(f"no .tem landmark files under {data_dir}")
    per_region: dict[str, list[float]] = {k: [] for k in regions}
    missed = []
    with FaceFuser() as engine:
        for tem in photos:
            image = next((p for p in (tem.with_suffix(".jpg"), tem.with_suffix(".png"))
                          if p.exists()), None)
            if image is None:
                continue
            lines = tem.read_text().splitlines()
            n = int(lines[0])
            pts = np.array([[float(v) for v in line.split()[:2]] for line in lines[1:n + 1]])
            faces = engine.analyzer.detect(load_image(image))
            if not faces:
                missed.append(image.name)
                continue
            iod = np.linalg.norm(pts[0] - pts[1])
            for region, mapping in regions.items():
                err = [np.linalg.norm(faces[0].points[m] - pts[t]) / iod
                       for m, t in mapping.items()]
                per_region[region].append(float(np.mean(err)))
    summary = {r: {"mean": float(np.mean(v)), "median": float(np.median(v)),
                   "worst": float(np.max(v))} for r, v in per_region.items() if v}
    return {"data": str(data_dir), "faces": len(photos) - len(missed), "missed": missed,
            "regions": summary}


def landmark_table(report: dict) -> str:
    lines = ["| region | mean NME | median | worst |", "|---|---:|---:|---:|"]
    for region, s in report["regions"].items():
        lines.append(f"| {region} | {s['mean']:.4f} | {s['median']:.4f} | {s['worst']:.4f} |")
    lines.append("")
    lines.append(f"{report['faces']} faces; error per inter-ocular distance (pupil to pupil); "
                 f"no face found in {len(report['missed'])}.")
    return "\n".join(lines)
