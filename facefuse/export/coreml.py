"""Core ML files of the refiner: ML Program `.mlpackage`, FP16 and INT8 weights.

Converted by coremltools from `torch.export`. Core ML runs only on Apple platforms, so on
Linux the files are verified by their spec (input and output names, shapes, types, the
precision of the weights), not by running them; the report says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import BackendError
from ..stages.refine import INPUT_IMAGE, INPUT_MASK, INPUT_TEMPLATE, OUTPUT

MINIMUM_TARGET = "iOS16"  # ML Program with FP16 compute: iPhone 8 and later on iOS 16


def require_coremltools():
    try:
        import coremltools
    except ImportError:
        raise BackendError("Core ML export needs coremltools: pip install 'facefuse[export]'"
                           ) from None
    return coremltools


def convert(model: torch.nn.Module, side: int, out_dir: Path) -> dict[str, Path]:
    """Write unet_fp16_{side}.mlpackage and unet_int8w_{side}.mlpackage into `out_dir`."""
    ct = require_coremltools()
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OptimizationConfig,
        linear_quantize_weights,
    )

    args = (torch.rand(1, 3, side, side), torch.rand(1, 1, side, side),
            torch.rand(1, 3, side, side))
    program = torch.export.export(model.eval(), args).run_decompositions({})
    inputs = [ct.TensorType(name=INPUT_IMAGE, shape=(1, 3, side, side), dtype=np.float32),
              ct.TensorType(name=INPUT_MASK, shape=(1, 1, side, side), dtype=np.float32),
              ct.TensorType(name=INPUT_TEMPLATE, shape=(1, 3, side, side), dtype=np.float32)]
    fp16 = ct.convert(program, convert_to="mlprogram", inputs=inputs,
                      outputs=[ct.TensorType(name=OUTPUT, dtype=np.float32)],
                      compute_precision=ct.precision.FLOAT16,
                      minimum_deployment_target=getattr(ct.target, MINIMUM_TARGET))
    fp16.short_description = "facefuse refiner U-Net (FP16)"
    int8 = linear_quantize_weights(fp16, OptimizationConfig(
        global_config=OpLinearQuantizerConfig(mode="linear_symmetric", weight_threshold=0)))
    int8.short_description = "facefuse refiner U-Net (INT8 weights, FP16 compute)"
    paths = {"coreml-fp16": out_dir / f"unet_fp16_{side}.mlpackage",
             "coreml-int8": out_dir / f"unet_int8w_{side}.mlpackage"}
    for kind, mlmodel in (("coreml-fp16", fp16), ("coreml-int8", int8)):
        if paths[kind].exists():
            shutil.rmtree(paths[kind])
        mlmodel.save(str(paths[kind]))
    return paths


def describe(path: Path) -> dict:
    """The spec of a saved .mlpackage (read without loading it into Core ML)."""
    ct = require_coremltools()
    mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    spec = mlmodel.get_spec()
    types = {v: k for k, v in ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.items()}

    def feature(f) -> dict:
        arr = f.type.multiArrayType
        return {"name": f.name, "shape": list(arr.shape), "dtype": types.get(arr.dataType)}

    return {"spec_version": spec.specificationVersion,
            "type": spec.WhichOneof("Type"),
            "inputs": [feature(f) for f in spec.description.input],
            "outputs": [feature(f) for f in spec.description.output],
            "weight_tensors": _weight_tensors(ct, spec),
            "runs_here": False,
            "note": "Core ML runs on Apple platforms only: verified by spec, not executed"}


def _weight_tensors(ct, spec) -> dict[str, int]:
    """How many weight tensors of each element type the program holds (FLOAT16 consts;
    INT8 for the linear-quantised ones, dequantised at load)."""
    counts: dict[str, int] = {}
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                for name in ("val", "quantized_data"):
                    value = op.attributes.get(name)
                    if not op.type.startswith("const") or value is None or \
                            value.type.WhichOneof("type") != "tensorType":
                        continue
                    t = value.type.tensorType
                    if t.rank < 1 or (name == "val" and t.dataType in (
                            ct.proto.MIL_pb2.INT32, ct.proto.MIL_pb2.STRING,
                            ct.proto.MIL_pb2.BOOL)):
                        continue
                    key = ct.proto.MIL_pb2.DataType.Name(t.dataType)
                    counts[key] = counts.get(key, 0) + 1
    return counts
