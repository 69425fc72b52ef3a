"""LiteRT (TFLite) files of the refiner: FP32 via litert-torch, INT8 via ai-edge-quantizer.

litert-torch converts one fixed input size (dynamic height/width does not lower), so there is
one file per size. INT8 is full-integer static quantisation (int8 weights per channel, int8
activations, int8 inputs and outputs with their scale and zero point in the file), calibrated
on the same real face crops as the ONNX INT8 file. Measured on held-out faces at 256 px it
agrees with FP32 at ~50 dB face-region PSNR with min/max ranges: the network's output is the
composite plus a smooth colour change, so rounding the activations costs little here.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import BackendError
from ..stages.refine import INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE, OUTPUT, resized_feeds


def require_export_tools() -> None:
    """Raise the clear error when the export extra is not installed."""
    try:
        import ai_edge_quantizer  # noqa: F401
        import litert_torch  # noqa: F401
    except ImportError as exc:
        raise BackendError(f"LiteRT export needs the export tools ({exc.name} is missing): "
                           "pip install 'facefuse[export]'") from None


class NamedOutput(torch.nn.Module):
    """The refiner with its output named as in the ONNX file (LiteRT keeps dict keys)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, mask: torch.Tensor, template: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        return {OUTPUT: self.model(image, mask, template)}


def convert_fp32(model: torch.nn.Module, side: int, path: Path,
                 named: bool = True) -> Path:
    """`model` (eval) as a LiteRT FP32 file for side x side inputs.

    With `named`, the signature uses the refiner's names (image, mask, template -> refined);
    probe models of the consistency check pass named=False and take one input `x`."""
    require_export_tools()
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # its progress goes to stdout
    import litert_torch

    path.parent.mkdir(parents=True, exist_ok=True)
    if named:
        kwargs = {INPUT_IMAGE: torch.rand(1, 3, side, side),
                  INPUT_MASK: torch.rand(1, 1, side, side),
                  INPUT_TEMPLATE: torch.rand(1, 3, side, side)}
        edge = litert_torch.convert(NamedOutput(model.eval()).eval(), sample_kwargs=kwargs)
    else:
        edge = litert_torch.convert(model.eval(), sample_kwargs={"x": torch.rand(
            1, model.in_channels, side, side)})
    tmp = path.with_suffix(".tmp.tflite")
    with contextlib.redirect_stdout(io.StringIO()):
        edge.export(str(tmp))
    tmp.replace(path)
    return path


def calibration_feeds(samples: list[tuple[np.ndarray, ...]], side: int) -> list[dict]:
    """Captured (composite, mask, template) crops resized to `side`, as signature feeds."""
    names = (INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE)
    return [dict(zip(names, resized_feeds(sample, side), strict=True)) for sample in samples]


def quantize_int8(fp32: Path, path: Path, samples: list[tuple[np.ndarray, ...]]) -> Path:
    """Full-integer static INT8 copy of the FP32 file, calibrated on `samples`."""
    require_export_tools()
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    side = int(Interpreter(model_path=str(fp32)).get_signature_runner()
               .get_input_details()[INPUT_IMAGE]["shape"][-1])
    q = quantizer.Quantizer(str(fp32))
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    tmp = path.with_suffix(".tmp.tflite")
    tmp.unlink(missing_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # the quantizer prints a summary
        calibration = q.calibrate({"serving_default": calibration_feeds(samples, side)},
                                  num_threads=2)
        q.quantize(calibration).export_model(str(tmp), overwrite=True)
    tmp.replace(path)
    return path


def run_probe(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a one-input probe file (see check.py) in the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    result = runner(x=x.astype(np.float32))
    return next(iter(result.values()))


def io_quantization(path: Path) -> dict:
    """Scale and zero point of each input and output of a full-integer file: what an app
    uses to convert its float tensors (q = round(x / scale) + zero_point)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    details = {**runner.get_input_details(), **runner.get_output_details()}
    return {name: {"dtype": np.dtype(d["dtype"]).name, "scale": float(d["quantization"][0]),
                   "zero_point": int(d["quantization"][1]),
                   "shape": [int(v) for v in d["shape"]]}
            for name, d in details.items()}


class NamedTrust(torch.nn.Module):
    """The trust network with the ONNX file's input and output names (stages/occlusion.py)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, skin: torch.Tensor) -> dict[str, torch.Tensor]:
        from ..stages.occlusion import TRUST_OUTPUT

        return {TRUST_OUTPUT: self.model(image, skin)}


def convert_trust_fp32(model: torch.nn.Module, side: int, path: Path) -> Path:
    """The learned trust map (eval) as a LiteRT FP32 file for side x side inputs: what the
    phone app's engine runs (engine/occlusion.js) beside the desktop's ONNX file."""
    require_export_tools()
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch

    from ..stages.occlusion import TRUST_IMAGE, TRUST_SKIN

    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {TRUST_IMAGE: torch.rand(1, 3, side, side), TRUST_SKIN: torch.rand(1, 1, side, side)}
    edge = litert_torch.convert(NamedTrust(model.eval()).eval(), sample_kwargs=kwargs)
    tmp = path.with_suffix(".tmp.tflite")
    with contextlib.redirect_stdout(io.StringIO()):
        edge.export(str(tmp))
    tmp.replace(path)
    return path
