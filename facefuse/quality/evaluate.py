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

from ..errors import FaceFuseError
from ..stages.refine import HARMONIZER_FILE, MODELS_DIR, REFINE_SIDE, Refiner, model_path
from ..stages.texture import lab_transfer

# (composite, mask, template or None) -> result, all float 0..1
Method = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]


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


def poisson_clone(comp: np.ndarray, mask: np.ndarray, template: np.ndarray | None = None
                  ) -> np.ndarray:
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


def unet_method(refiner: Refiner, work_side: int | None = None) -> Method:
    def run(comp: np.ndarray, mask: np.ndarray, template: np.ndarray | None) -> np.ndarray:
        tpl = None if template is None else template * 255.0
        return refiner(comp * 255.0, mask, tpl, work_side=work_side) / 255.0
    return run


@dataclass
class Score:
    method: str
    psnr: float
    fmse: float
    psnr_face: float


def score_methods(composites: list, methods: dict[str, tuple[Method, bool]]) -> list[Score]:
    """Mean PSNR (whole crop), fMSE and face-region PSNR of each method over the composites;
    each method is (function, whether it is given the template)."""
    scores = []
    for name, (method, with_template) in methods.items():
        p, f, pf = [], [], []
        for comp, mask, template, target in composites:
            out = method(comp, mask, template if with_template else None)
            p.append(psnr(out, target))
            f.append(foreground_mse(out, target, mask))
            sel = mask > 0.5
            pf.append(psnr(out[sel], target[sel]))
        scores.append(Score(name, float(np.mean(p)), float(np.mean(f)), float(np.mean(pf))))
    return scores


def harmonize_report(data_dir: Path, *, size: int = 512, per_face: int = 3,
                     backend: str = "ort-fp32", model: Path | None = None,
                     cache: Path | None = None, harmonizer: Path | None = None) -> dict:
    """Scores of the classical methods and the U-Net's two modes on composites of the
    held-out identities only: with a template (the pipeline's refiner, `model` or the
    shipped `backend` file) and without one (`facefuse harmonize`'s own weights,
    `harmonizer` or the shipped file)."""
    from ..nn.data import build_faceset, load_or_build, split_ids, validation_composites

    faces = load_or_build(data_dir, cache) if cache is not None else build_faceset(data_dir)
    _, val_ids = split_ids(faces.ids)
    held_out = faces.subset([i for i, p in enumerate(faces.ids) if p in val_ids])
    composites = validation_composites(held_out, size, per_face=per_face, seed=2024)
    refiner = Refiner(model or model_path(backend))
    unet = unet_method(refiner, work_side=REFINE_SIDE)
    harmonizer_net = Refiner(harmonizer or MODELS_DIR / HARMONIZER_FILE)
    alone = unet_method(harmonizer_net, work_side=REFINE_SIDE)

    def pipeline_refine(c: np.ndarray, m: np.ndarray, t: np.ndarray | None) -> np.ndarray:
        """As in facefuse: colour matched to the template first, then the U-Net."""
        return unet(lab_transfer(c, m, t), m, t)

    def harmonize_refine(c: np.ndarray, m: np.ndarray, t: np.ndarray | None) -> np.ndarray:
        """As `facefuse harmonize`: matched to the surroundings first, then the U-Net."""
        return alone(lab_transfer(c, m, None), m, None)

    methods: dict[str, tuple[Method, bool]] = {
        "composite (no harmonisation)": (lambda c, m, t: c, False),
        "LAB mean/std transfer to the surroundings": (lab_transfer, False),
        "Poisson (OpenCV seamlessClone)": (poisson_clone, False),
        "LAB mean/std transfer to the template face": (lab_transfer, True),
        "LAB transfer to the surroundings + U-Net (ort-fp32, harmonize weights) "
        "(facefuse harmonize)": (harmonize_refine, False),
        f"LAB transfer to the template face + U-Net ({backend}) (facefuse)":
            (pipeline_refine, True),
    }
    scores = score_methods(composites, methods)
    by_name = {s.method: s for s in scores}
    names = list(methods)
    best_classical = max(by_name[n].psnr for n in names[1:4])
    best_classical_alone = max(by_name[n].psnr for n in names[1:3])
    best_classical_face = max(by_name[n].psnr_face for n in names[1:4])
    best_classical_alone_face = max(by_name[n].psnr_face for n in names[1:3])
    return {
        "data": str(data_dir), "size": size, "composites": len(composites),
        "held_out_identities": sorted(val_ids), "model": str(refiner.path),
        "harmonizer": str(harmonizer_net.path),
        "template": "the same person's other photo (same light, other expression)",
        "scores": [s.__dict__ for s in scores],
        "unet_gain_over_best_classical_db": by_name[names[5]].psnr - best_classical,
        "unet_no_template_gain_over_best_classical_without_template_db":
            by_name[names[4]].psnr - best_classical_alone,
        "unet_face_gain_over_best_classical_db":
            by_name[names[5]].psnr_face - best_classical_face,
        "unet_no_template_face_gain_over_best_classical_without_template_db":
            by_name[names[4]].psnr_face - best_classical_alone_face,
    }


FACE_GAIN_ALONE = "unet_no_template_face_gain_over_best_classical_without_template_db"


def markdown_table(report: dict) -> str:
    lines = ["| method | PSNR (dB) | face-region PSNR (dB) | fMSE |", "|---|---:|---:|---:|"]
    for s in report["scores"]:
        lines.append(f"| {s['method']} | {s['psnr']:.2f} | {s['psnr_face']:.2f} | "
                     f"{s['fmse']:.1f} |")
    lines.append("")
    lines.append(f"{report['composites']} composites of {len(report['held_out_identities'])} "
                 f"held-out identities at {report['size']} px; template = {report['template']}. "
                 f"facefuse's refine (the U-Net on the colour-matched face) over the best "
                 f"classical baseline: {report['unet_gain_over_best_classical_db']:+.2f} dB "
                 f"(face region {report.get('unet_face_gain_over_best_classical_db', 0):+.2f}"
                 f" dB); without a template (harmonize), over the best classical method "
                 f"without one: "
                 f"{report['unet_no_template_gain_over_best_classical_without_template_db']:+.2f}"
                 f" dB (face region "
                 f"{report.get(FACE_GAIN_ALONE, 0):+.2f} dB)")
    return "\n".join(lines)


def write_report(report: dict, json_path: Path | None) -> None:
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2))


# ------------------------------------------------------------ the face edge in a result


def changed_region(result: np.ndarray, template: np.ndarray, threshold: float = 6.0
                   ) -> np.ndarray:
    """The largest connected area where the result differs from the template (bool)."""
    diff = np.abs(result.astype(np.int16) - template.astype(np.int16)).max(axis=2)
    changed = (diff > threshold).astype(np.uint8)
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(changed)
    if count <= 1:
        return np.zeros(changed.shape, bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    filled = (labels == biggest).astype(np.uint8)
    contours, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def edge_colour_step(image: np.ndarray, region: np.ndarray, sectors: int = 24) -> float:
    """Mean colour difference (CIE76 delta E) between thin bands just inside and just
    outside the region's edge, compared sector by sector around the region's centre.

    A visible seam is a step in colour across the edge; a natural photo has some step
    there too (skin to hair, jaw to neck), so compare a result with its template."""
    if region.sum() < 100:
        return 0.0
    ys, xs = np.nonzero(region)
    size = max(xs.ptp(), ys.ptp())
    width = max(2, int(size * 0.02))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    hard = region.astype(np.uint8)
    inner = (hard - cv2.erode(hard, kernel)).astype(bool)
    outer = (cv2.dilate(hard, kernel) - hard).astype(bool)
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    steps = _sector_steps(lab, inner, outer, _sector_map(region.shape, ys, xs, sectors))
    return float(np.mean(list(steps.values()))) if steps else 0.0


def _sector_map(shape: tuple[int, ...], ys: np.ndarray, xs: np.ndarray, sectors: int
                ) -> list[np.ndarray]:
    """Boolean masks of `sectors` equal angles around the centre of the points (ys, xs)."""
    cy, cx = ys.mean(), xs.mean()
    gy, gx = np.mgrid[0:shape[0], 0:shape[1]]
    sector = ((np.arctan2(gy - cy, gx - cx) + np.pi) / (2 * np.pi) * sectors).astype(int)
    sector = np.minimum(sector, sectors - 1)
    return [sector == k for k in range(sectors)]


def _sector_steps(lab: np.ndarray, inner: np.ndarray, outer: np.ndarray,
                  sector_masks: list[np.ndarray]) -> dict[int, float]:
    """Per sector with enough of both bands: the colour distance (delta E) between the
    mean colour of the inner band and that of the outer band."""
    steps = {}
    for k, in_sector in enumerate(sector_masks):
        a, b = inner & in_sector, outer & in_sector
        if a.sum() > 5 and b.sum() > 5:
            steps[k] = float(np.linalg.norm(lab[a].mean(axis=0) - lab[b].mean(axis=0)))
    return steps


def edge_gradient(image: np.ndarray, region: np.ndarray) -> float:
    """Mean colour-gradient magnitude on a thin ring along the region's edge."""
    hard = region.astype(np.uint8)
    k = np.ones((9, 9), np.uint8)
    ring = (cv2.dilate(hard, k) - cv2.erode(hard, k)).astype(bool)
    if not ring.any():
        return 0.0
    f = image.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.sqrt(gx ** 2 + gy ** 2).sum(axis=2)[ring].mean())


def feather_seam(result: np.ndarray, template: np.ndarray, region: np.ndarray,
                 sectors: int = 24) -> tuple[float, float]:
    """How much a blend changed the colour step across its feathered edge, in CIE76 delta E:
    (mean over sectors, worst sector).

    Two bands, each 4% of the region's size wide: just inside where the region is full
    (>= 0.95 of its peak) and just outside where it is nothing (<= 0.02). Sector by sector
    around the centre, the step between the bands' mean colours in the result is compared
    with the same step in the template. The template's own step (skin to jaw shadow, cheek
    to ear) is natural; a seam or a halo, even spread over the whole feather, is the result
    departing from it. 0 = the face meets its surroundings exactly as the template's did."""
    peak = float(region.max())
    if peak <= 0:
        return 0.0, 0.0
    norm = region / peak
    full = (norm >= 0.95).astype(np.uint8)
    some = (norm > 0.02).astype(np.uint8)
    ys, xs = np.nonzero(some)
    width = max(2, int(max(np.ptp(xs), np.ptp(ys)) * 0.04))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    inner = full.astype(bool) & ~cv2.erode(full, kernel).astype(bool)
    outer = ~some.astype(bool) & cv2.dilate(some, kernel).astype(bool)
    to_lab = lambda im: cv2.cvtColor(np.clip(im, 0, 255).astype(np.float32) / 255.0,  # noqa: E731
                                     cv2.COLOR_RGB2LAB)
    masks = _sector_map(region.shape, ys, xs, sectors)
    steps_r = _sector_steps(to_lab(result), inner, outer, masks)
    steps_t = _sector_steps(to_lab(template), inner, outer, masks)
    departures = [abs(steps_r[k] - steps_t[k]) for k in steps_r]
    if not departures:
        return 0.0, 0.0
    return float(np.mean(departures)), float(np.max(departures))


def refine_on_off_report(data_dir: Path, *, pairs: int = 10, backend: str = "ort-fp32",
                         ratio: float = 1.0, relight: bool = False,
                         identity: bool = True, model: Path | None = None) -> dict:
    """Full pipeline with the refiner on and off on held-out pairs (neutral A into smiling B).

    At the face edge: the feathered seam (`feather_seam`, in the aligned crop, on the face
    as it is pasted) and the older measures on the edge of what changed in the whole photo
    (colour step and gradient, minus the template's own). Elsewhere: the change outside the
    face region, and, with the `eval` extra, identity (dlib's descriptor distance from the
    result to the source person's *other* photo, and to the template).

    With `relight`, each template photo first gets other light and another camera (the
    training augmentation: exposure, casts, white balance, gamma, often a directional ramp
    and the phone ISP; seeded per pair), so source and template no longer share the London
    set's studio light. `model` evaluates another ONNX file in place of the shipped one."""
    from ..imageio import load_image
    from ..nn.data import find_photos, person_id, perturb_colour, split_ids
    from ..pipeline import FaceFuser

    judge = None
    if identity:
        try:
            from .judge import Judge, descriptor_distance

            judge = Judge()
        except (ImportError, FaceFuseError):
            judge = None
    photos = find_photos(data_dir)
    _, val_ids = split_ids([person_id(p) for p in photos])
    neutral = sorted(p for p in photos if person_id(p) in val_ids and "neutral" in p.parts)
    smiling = sorted(p for p in photos if person_id(p) in val_ids and "smiling" in p.parts)
    chosen = [(neutral[i], smiling[(i + 1) % len(smiling)],
               next((s for s in smiling if person_id(s) == person_id(neutral[i])), None))
              for i in range(min(pairs, len(neutral)))]
    rows = []
    with FaceFuser() as engine:
        if model is not None:
            engine.set_refiner(backend, Refiner(model))
        for src_path, tpl_path, ref_path in chosen:
            src, tpl = load_image(src_path), load_image(tpl_path)
            if relight:
                rng = np.random.default_rng(1000 + len(rows))
                tpl = (perturb_colour(tpl.astype(np.float32) / 255.0, rng) * 255.0 + 0.5
                       ).astype(np.uint8)
            row: dict = {"source": src_path.name, "template": tpl_path.name}
            outputs, traces = {}, {}
            for label, refine in (("off", False), ("on", True)):
                traces[label] = {}
                outputs[label] = engine.fuse(src, tpl, ratio=ratio, refine=refine,
                                             backend=backend, trace=traces[label]).image
            region = changed_region(outputs["off"], tpl)
            base_step = edge_colour_step(tpl, region)
            base_grad = edge_gradient(tpl, region)
            faces = {}
            if judge is not None and ref_path is not None:
                faces = {"reference": judge.face(load_image(ref_path)), "template": judge.face(tpl)}
            for label, out in outputs.items():
                t = traces[label]
                row[f"seam_{label}"], row[f"seam_worst_{label}"] = feather_seam(
                    t["finished"], t["template"], t["face"])
                row[f"edge_step_{label}"] = edge_colour_step(out, region) - base_step
                row[f"edge_gradient_{label}"] = edge_gradient(out, region) - base_grad
                row[f"outside_changed_{label}"] = float(np.abs(
                    out[~region].astype(int) - tpl[~region]).mean())
                if faces.get("reference") is not None and faces.get("template") is not None:
                    judged = judge.face(out)
                    if judged is not None:
                        row[f"id_to_source_{label}"] = descriptor_distance(
                            judged, faces["reference"])
                        row[f"id_to_template_{label}"] = descriptor_distance(
                            judged, faces["template"])
            if "id_to_source_off" in row:
                # The judge's own noise, for scale: the same result re-saved as JPEG 90.
                _, jpeg = cv2.imencode(".jpg", outputs["off"], [cv2.IMWRITE_JPEG_QUALITY, 90])
                judged = judge.face(cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED))
                if judged is not None:
                    row["id_jpeg_noise"] = abs(descriptor_distance(
                        judged, faces["reference"]) - row["id_to_source_off"])
            rows.append(row)
    keys = sorted({k for r in rows for k in r if k not in ("source", "template")})
    means = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    better = {"seam": sum(r["seam_on"] < r["seam_off"] for r in rows),
              "seam_worst": sum(r["seam_worst_on"] < r["seam_worst_off"] for r in rows)}
    return {"data": str(data_dir), "pairs": rows, "mean": means, "ratio": ratio,
            "backend": backend, "model": str(model or model_path(backend)),
            "relight": relight, "pairs_better": better,
            "held_out_identities": sorted(val_ids)}


def refine_on_off_table(report: dict) -> str:
    m, n = report["mean"], len(report["pairs"])
    better = report.get("pairs_better", {})

    def row(label: str, key: str, fmt: str = "{:.2f}", note: str = "") -> str:
        if f"{key}_off" not in m:
            return ""
        return (f"| {label} | {fmt.format(m[key + '_off'])} | {fmt.format(m[key + '_on'])} "
                f"| {note} |")

    lines = [
        "| measure (mean over pairs) | refine off | refine on | |",
        "|---|---:|---:|---|",
        row("seam: colour step across the blend edge vs the template's own (delta E)", "seam",
            note=f"lower with refine on in {better.get('seam', '?')} of {n} pairs"),
        row("seam, worst sector (delta E)", "seam_worst",
            note=f"lower in {better.get('seam_worst', '?')} of {n}"),
        row("colour step at the edge of what changed, minus the template's (delta E)",
            "edge_step"),
        row("gradient at the edge of what changed, minus the template's", "edge_gradient"),
        row("mean change outside the face region (0..255)", "outside_changed", "{:.3f}"),
        row("identity: distance to the source's other photo (dlib; lower = more the source)",
            "id_to_source", "{:.3f}"),
        row("identity: distance to the template (dlib)", "id_to_template", "{:.3f}"),
    ]
    lines = [line for line in lines if line]
    if "id_jpeg_noise" in m:
        lines.append(f"| for scale: the same identity distance moved by re-saving the result "
                     f"as JPEG 90 | {m['id_jpeg_noise']:.3f} | | the judge's own noise |")
    lines += ["", f"{n} held-out pairs, ratio {report['ratio']}, {report['backend']}"
              + (", templates relit (other light and camera than the source)"
                 if report.get("relight") else
                 ", source and template in the same studio light")]
    return "\n".join(lines)
