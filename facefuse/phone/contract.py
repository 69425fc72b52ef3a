"""The one source of truth the phone app loads: contract.json, written from Python.

FusionParams (names, kinds, ranges, defaults, choices, presets, bilingual labels, help), the
Face Mesh index sets, the canonical key points and every tuning constant the stages use, and
the refiner's manifest. The JS engine reads nothing of these from its own code, so a change
here reaches the phone by running `python -m facefuse.phone.contract` (tests/test_phone_engine
fails while the committed JSON and Python disagree).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .. import errors, imageio
from ..params import LABELS, PRESETS, param_specs
from ..stages import align, analysis, geometry, mesh_topology, occlusion, paste, refine, texture
from .assets import APP_DIR, LIVE_REFINER_URL, REFINER_URL, TRUST_URL

CONTRACT_PATH = APP_DIR / "contract.json"


def _param(spec: Any) -> dict[str, Any]:
    meta = dict(spec.metadata)
    entry: dict[str, Any] = {"name": spec.name, "default": spec.default,
                             "label": LABELS.get(spec.name, spec.name)}
    for key in ("kind", "min", "max", "step", "group", "help", "desktop_only",
                "runtime_only", "per_photo"):
        if key in meta:
            entry[key] = meta[key]
    if "choices" in meta:
        entry["choices"] = list(meta["choices"])
    return entry


def _mesh_sets() -> dict[str, list[int]]:
    return {name: list(value) for name, value in vars(mesh_topology).items()
            if name.isupper() and isinstance(value, tuple)}


def build_contract() -> dict[str, Any]:
    """Everything the JS engine shares with the Python pipeline, as plain JSON values."""
    manifest = json.loads((refine.MODELS_DIR / "manifest.json").read_text())
    return {
        "params": [_param(f) for f in param_specs()],
        "presets": PRESETS,
        "errors": {cls.__name__: cls.exit_code for cls in (
            errors.FaceFuseError, errors.ParameterError, errors.ImageError,
            errors.NoFaceError, errors.BackendError)},
        "image": {"min_side": imageio.MIN_SIDE, "max_pixels": imageio.DEFAULT_MAX_PIXELS,
                  "read_formats": imageio.READ_FORMATS,
                  "digital_source_type": imageio.DIGITAL_SOURCE_TYPE,
                  "provenance_text": imageio.PROVENANCE_TEXT},
        "landmarks": {
            "count": geometry.N_LANDMARKS,
            "right_iris": analysis.RIGHT_IRIS, "left_iris": analysis.LEFT_IRIS,
            "nose_tip": analysis.NOSE_TIP, "mouth_right": analysis.MOUTH_RIGHT,
            "mouth_left": analysis.MOUTH_LEFT,
            "right_eye_outer": analysis.RIGHT_EYE_OUTER,
            "left_eye_outer": analysis.LEFT_EYE_OUTER,
            "chin": analysis.CHIN, "forehead": analysis.FOREHEAD,
            "upper_lip_inner": analysis.UPPER_LIP_INNER,
            "lower_lip_inner": analysis.LOWER_LIP_INNER,
        },
        "mesh": _mesh_sets(),
        "canonical_keypoints": align.CANONICAL_KEYPOINTS.tolist(),
        "constants": {
            "detect_max_side": analysis.DETECT_MAX_SIDE,
            "mesh_crop_side": analysis.MESH_CROP_SIDE,
            "min_tile": analysis.MIN_TILE, "tile_overlap": analysis.TILE_OVERLAP,
            "grid_step": geometry.GRID_STEP, "anchor_ring": geometry.ANCHOR_RING,
            "mouth_open_threshold": texture.MOUTH_OPEN_THRESHOLD,
            "refine_side": refine.REFINE_SIDE, "size_multiple": refine.SIZE_MULTIPLE,
            "change_eps": paste.CHANGE_EPS, "region_eps": paste.REGION_EPS,
        },
        "trust": {"url": TRUST_URL, "side": occlusion.TRUST_SIDE,
                  "trusted_below": occlusion.LEARNED_TRUSTED_BELOW,
                  "distrusted_above": occlusion.LEARNED_DISTRUSTED_ABOVE},
        "register": {
            "features": {name: [list(points), half] for name, (points, half)
                         in geometry.REGISTER_FEATURES.items()},
            "max": geometry.REGISTER_MAX, "min_response": geometry.REGISTER_MIN_RESPONSE,
            "falloff": geometry.REGISTER_FALLOFF, "passes": geometry.REGISTER_PASSES,
        },
        "refiner": {"url": REFINER_URL, "live_url": LIVE_REFINER_URL,
                    "manifest": manifest},
    }


def render() -> str:
    """contract.json's exact text (sorted keys, so a diff shows only real changes)."""
    return json.dumps(build_contract(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write(path: Path = CONTRACT_PATH) -> Path:
    path.write_text(render(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else CONTRACT_PATH))
