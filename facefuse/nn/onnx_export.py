"""Export the refiner to ONNX: one FP32 file, dynamic height and width, opset 17."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..stages.refine import INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE, OUTPUT

OPSET = 17


def export_onnx(model: torch.nn.Module, path: Path, sample_size: int = 64) -> Path:
    """Write `model` (eval mode) to `path`; batch 1, H and W dynamic (multiples of 32)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    image = torch.rand(1, 3, sample_size, sample_size)
    mask = torch.rand(1, 1, sample_size, sample_size)
    template = torch.rand(1, 3, sample_size, sample_size)
    names = (INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE, OUTPUT)
    dynamic = {name: {2: "height", 3: "width"} for name in names}
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (image, mask, template), str(tmp),
                          input_names=[INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE],
                          output_names=[OUTPUT], dynamic_axes=dynamic, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    tmp.replace(path)
    return path


def export_trust_onnx(model: torch.nn.Module, path: Path, sample_size: int = 64) -> Path:
    """The trust network (eval mode) to `path`: inputs image and skin, output untrusted;
    batch 1, H and W dynamic (multiples of 32)."""
    from ..stages.occlusion import TRUST_IMAGE, TRUST_OUTPUT, TRUST_SKIN

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    image = torch.rand(1, 3, sample_size, sample_size)
    skin = torch.rand(1, 1, sample_size, sample_size)
    dynamic = {name: {2: "height", 3: "width"} for name in (TRUST_IMAGE, TRUST_SKIN,
                                                            TRUST_OUTPUT)}
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (image, skin), str(tmp), input_names=[TRUST_IMAGE, TRUST_SKIN],
                          output_names=[TRUST_OUTPUT], dynamic_axes=dynamic,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    tmp.replace(path)
    return path
