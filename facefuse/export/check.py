"""Operator consistency: does every backend compute what torch computes?

For each operator type the refiner uses, a probe model built from the trained network's own
layers (so the weights and activations are real), plus the whole network, run in torch,
ONNX Runtime and LiteRT on the same real face crops. Reported per backend: max abs error
and PSNR against torch, flagged where beyond the threshold stated for that precision.
Softmax and sigmoid are not used by the network, so they have no probe (the report says so).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..nn.unet import RefineUNet, apply_colour_transform
from ..stages.refine import Refiner, resized_feeds
from . import litert as litert_export

# Agreement thresholds (outputs and activations in the network's own units).
FP32_MAX_ABS = 1e-4  # float backends: the same arithmetic in another order
FP32_MIN_PSNR = 80.0
INT8_MIN_FACE_PSNR = 38.0  # INT8 files: face-region PSNR of the whole network vs FP32
NOT_USED = ("Softmax", "Sigmoid")


@dataclass
class Row:
    probe: str
    op: str
    backend: str
    max_abs: float
    psnr_db: float
    threshold: str
    ok: bool


class Probe(nn.Module):
    """One input `x` (N,7,H,W: image, mask, template): the network's stem input."""

    in_channels = 7

    def __init__(self, net: RefineUNet, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.net = net  # registered, so exporters see its weights as the probe's own
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def probes(net: RefineUNet) -> dict[str, tuple[str, nn.Module]]:
    """name -> (operator type, probe module), each from the trained layers of `net`."""
    net = net.eval().requires_grad_(False)
    stem_conv, stem_bn, stem_act, sep = net.stem

    def conv(x):
        return stem_bn(stem_conv(x))

    def act(x):
        return stem_act(conv(x))

    def depthwise(x):
        return sep.depthwise(act(x))

    def pointwise(x):
        return sep.pointwise(depthwise(x))

    def resize(x):
        return F.interpolate(net.stem(x), scale_factor=2.0, mode="bilinear",
                             align_corners=False)

    def concat(x):
        y = net.stem(x)
        return torch.cat([y, sep.depthwise(y)], dim=1)

    def add_mul(x):
        params = F.interpolate(net.head(net.stem(x)), scale_factor=2.0, mode="bilinear",
                               align_corners=False)
        return apply_colour_transform(x[:, 0:3], x[:, 3:4], params)

    table = {"conv 3x3 + batch norm": ("Conv", conv), "ReLU6": ("Clip", act),
             "depthwise conv 3x3": ("Conv (group)", depthwise),
             "pointwise conv 1x1": ("Conv 1x1", pointwise),
             "bilinear resize x2": ("Resize", resize), "concat": ("Concat", concat),
             "colour transform": ("Mul/Add/Clip", add_mul)}
    return {name: (op, Probe(net, fn).eval()) for name, (op, fn) in table.items()}


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 99.0 if mse <= 1e-20 else 10 * math.log10(peak * peak / mse)


def _onnx_probe(module: nn.Module, side: int, path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.rand(1, 7, side, side),), str(path),
                          input_names=["x"], output_names=["y"], opset_version=17,
                          dynamo=False)
    return path


def _ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _compare(probe: str, op: str, backend: str, ref: np.ndarray, got: np.ndarray) -> Row:
    peak = max(1.0, float(np.abs(ref).max()))
    max_abs = float(np.abs(ref - got).max())
    p = psnr(ref, got, peak)
    ok = max_abs <= FP32_MAX_ABS * peak and p >= FP32_MIN_PSNR
    return Row(probe, op, backend, max_abs, p, f"max abs <= {FP32_MAX_ABS:g} x peak, "
               f"PSNR >= {FP32_MIN_PSNR:g} dB", ok)


def check(net: RefineUNet, samples: list[tuple[np.ndarray, ...]], side: int,
          files: dict[str, Path] | None = None, probe_side: int = 64) -> dict:
    """Run the probes and the whole network on `samples` (real crops: composite, mask,
    template at any size; resized here) in every backend; `files` are exported whole-network
    files to check too (backend kind -> path, e.g. onnx-int8, litert-int8-320)."""
    rows: list[Row] = []
    probe_inputs = [_stack(s, probe_side) for s in samples]
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        for name, (op, module) in probes(net).items():
            onnx_path = _onnx_probe(module, probe_side, tmpdir / f"{len(rows)}.onnx")
            tfl_path = litert_export.convert_fp32(module, probe_side,
                                                  tmpdir / f"{len(rows)}.tflite", named=False)
            for x in probe_inputs:
                with torch.no_grad():
                    ref = module(torch.from_numpy(x)).numpy()
                rows.append(_compare(name, op, "onnxruntime", ref, _ort_run(onnx_path, x)))
                rows.append(_compare(name, op, "litert", ref,
                                     litert_export.run_probe(tfl_path, x)))
        whole = _whole_network(net, samples, side, files or {}, tmpdir)
    rows = _worst_per_probe(rows)
    report = {"thresholds": {"fp32_max_abs_x_peak": FP32_MAX_ABS,
                             "fp32_min_psnr_db": FP32_MIN_PSNR,
                             "int8_min_face_psnr_db": INT8_MIN_FACE_PSNR},
              "probe_side": probe_side, "network_side": side, "inputs": len(samples),
              "not_used_by_the_network": list(NOT_USED),
              "probes": [asdict(r) for r in rows], "network": whole}
    report["coreml"] = _coreml_specs(files or {}, net)
    report["ok"] = (all(r.ok for r in rows) and all(r["ok"] for r in whole)
                    and all(c["ok"] for c in report["coreml"]))
    return report


def _coreml_specs(files: dict[str, Path], net: RefineUNet) -> list[dict]:
    """Core ML packages cannot run on Linux: their spec is checked instead (the refiner's
    input and output names, the size in the file name, float32 I/O, weight precision)."""
    from ..stages.refine import INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE, OUTPUT
    from . import coreml

    rows = []
    for kind, path in sorted(files.items()):
        if Path(path).suffix != ".mlpackage":
            continue
        spec = coreml.describe(Path(path))
        side = int(kind.rsplit("-", 1)[1])
        channels = {INPUT_IMAGE: 3, INPUT_MASK: 1, INPUT_TEMPLATE: 3}
        inputs_ok = {f["name"]: f["shape"] for f in spec["inputs"]} == {
            name: [1, c, side, side] for name, c in channels.items()}
        outputs_ok = [(f["name"], f["shape"]) for f in spec["outputs"]] == [
            (OUTPUT, [1, 3, side, side])]
        weights = spec["weight_tensors"]
        precision_ok = ("INT8" in weights) == ("int8" in kind) and "FLOAT16" in weights
        rows.append({"file": Path(path).name, "kind": kind, "inputs": spec["inputs"],
                     "outputs": spec["outputs"], "weight_tensors": weights,
                     "ok": bool(inputs_ok and outputs_ok and precision_ok),
                     "note": spec["note"]})
    return rows


def _stack(sample: tuple[np.ndarray, ...], side: int) -> np.ndarray:
    """A probe's one input: image, mask and template stacked as the stem sees them."""
    return np.concatenate(resized_feeds(sample, side), axis=1)


def _worst_per_probe(rows: list[Row]) -> list[Row]:
    """One row per (probe, backend): the worst input."""
    worst: dict[tuple[str, str], Row] = {}
    for r in rows:
        key = (r.probe, r.backend)
        if key not in worst or r.psnr_db < worst[key].psnr_db:
            worst[key] = r
    return list(worst.values())


def _whole_network(net: RefineUNet, samples: list, side: int, files: dict[str, Path],
                   tmpdir: Path) -> list[dict]:
    """The full refiner: torch vs ONNX FP32 / LiteRT FP32 (float thresholds), and the INT8
    files vs torch by face-region PSNR."""
    from ..stages.refine import model_path

    candidates = {"onnxruntime fp32": model_path("ort-fp32")}
    candidates[f"litert fp32 {side}"] = files.get(f"litert-fp32-{side}") or \
        litert_export.convert_fp32(net, side, tmpdir / f"net_{side}.tflite")
    for kind, path in files.items():
        runnable = Path(path).suffix in (".onnx", ".tflite")
        if runnable and "int8" in kind and (kind == "onnx-int8" or kind.endswith(f"-{side}")):
            candidates[kind.replace("-", " ")] = path
    rows = []
    for backend, path in candidates.items():
        refiner = Refiner(path, threads=2)
        worst_abs, psnrs, face = 0.0, [], []
        for sample in samples:
            feeds = resized_feeds(sample, side)
            with torch.no_grad():
                ref = net(*(torch.from_numpy(f) for f in feeds)).numpy()[0].transpose(1, 2, 0)
            got = refiner.session.run(*feeds)[0].transpose(1, 2, 0)
            worst_abs = max(worst_abs, float(np.abs(ref - got).max()))
            psnrs.append(psnr(ref, got, 1.0))
            sel = feeds[1][0, 0] > 0.5
            face.append(psnr(ref[sel], got[sel], 1.0))
        int8 = "int8" in backend
        ok = (min(face) >= INT8_MIN_FACE_PSNR) if int8 else \
            (worst_abs <= FP32_MAX_ABS and min(psnrs) >= FP32_MIN_PSNR)
        rows.append({"backend": backend, "file": Path(path).name, "max_abs": worst_abs,
                     "psnr_db_min": min(psnrs), "face_psnr_db_mean": float(np.mean(face)),
                     "face_psnr_db_min": min(face),
                     "threshold": (f"face PSNR >= {INT8_MIN_FACE_PSNR:g} dB" if int8 else
                                   f"max abs <= {FP32_MAX_ABS:g}, PSNR >= {FP32_MIN_PSNR:g} dB"),
                     "ok": bool(ok)})
    return rows


def markdown(report: dict) -> str:
    t = report["thresholds"]
    lines = [f"# Operator consistency (torch = reference, {report['inputs']} real face crops)",
             "", f"Probes at {report['probe_side']} px, built from the trained network's "
             f"layers; the whole network at {report['network_side']} px. Float backends must "
             f"agree within max abs {t['fp32_max_abs_x_peak']:g} x peak and PSNR >= "
             f"{t['fp32_min_psnr_db']:g} dB; INT8 files within face-region PSNR >= "
             f"{t['int8_min_face_psnr_db']:g} dB. Not used by the network (no probe): "
             f"{', '.join(report['not_used_by_the_network'])}.", "",
             "| probe | op | backend | max abs | PSNR dB | ok |", "|---|---|---|---:|---:|---|"]
    for r in report["probes"]:
        lines.append(f"| {r['probe']} | {r['op']} | {r['backend']} | {r['max_abs']:.2e} | "
                     f"{r['psnr_db']:.1f} | {'yes' if r['ok'] else '**NO**'} |")
    lines += ["", "| whole network | file | max abs | PSNR dB (min) | face PSNR dB (mean / min)"
              " | threshold | ok |", "|---|---|---:|---:|---:|---|---|"]
    for r in report["network"]:
        lines.append(f"| {r['backend']} | {r['file']} | {r['max_abs']:.2e} | "
                     f"{r['psnr_db_min']:.1f} | {r['face_psnr_db_mean']:.1f} / "
                     f"{r['face_psnr_db_min']:.1f} | {r['threshold']} | "
                     f"{'yes' if r['ok'] else '**NO**'} |")
    if report.get("coreml"):
        lines += ["", "Core ML runs on Apple platforms only: these packages were not executed "
                  "here. Their spec was checked instead (input/output names and shapes, "
                  "float32 I/O, weight precision):", "",
                  "| Core ML package | inputs | output | weight tensors | spec ok |",
                  "|---|---|---|---|---|"]
        for c in report["coreml"]:
            ins = ", ".join(f"{f['name']} {'x'.join(map(str, f['shape']))} {f['dtype']}"
                            for f in c["inputs"])
            outs = ", ".join(f"{f['name']} {'x'.join(map(str, f['shape']))} {f['dtype']}"
                             for f in c["outputs"])
            w = ", ".join(f"{k} x{v}" for k, v in c["weight_tensors"].items())
            lines.append(f"| {c['file']} | {ins} | {outs} | {w} | "
                         f"{'yes' if c['ok'] else '**NO**'} |")
    lines += ["", f"All within thresholds: {'yes' if report['ok'] else '**NO**'}"]
    return "\n".join(lines) + "\n"


def write(report: dict, out: Path) -> tuple[Path, Path]:
    md, js = out / "consistency.md", out / "consistency.json"
    md.write_text(markdown(report))
    js.write_text(json.dumps(report, indent=2))
    return md, js
