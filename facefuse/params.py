"""FusionParams: the one validated parameter object shared by the CLI, the WebUI and the API.

Every field carries its range, choices and help text in its metadata, so a parameter added
here appears everywhere with the same name and range (the CLI and the WebUI are generated
from `param_specs()`). Out-of-range values raise ParameterError; nothing is silently clamped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ParameterError

Mode = Literal["normal", "blend", "overlay"]
MODES: tuple[str, ...] = ("normal", "blend", "overlay")
RESOLUTIONS: tuple[str, ...] = ("original", "512", "1024", "2048")
CROP_SIZES: tuple[int, ...] = (320, 512)
BACKENDS: tuple[str, ...] = ("ort-fp32", "ort-int8", "litert-fp32", "litert-int8")


def _num(default: float, lo: float, hi: float, help_text: str, step: float = 0.01,
         group: str = "fusion", per_photo: bool = False) -> Any:
    meta = {"kind": "float", "min": lo, "max": hi, "step": step, "help": help_text,
            "group": group}
    if per_photo:
        meta["per_photo"] = True
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FusionParams:
    """All knobs of one fusion; build with keywords, presets or `with_overrides`."""

    ratio: float = _num(0.5, 0.0, 1.0, "How much of the source face goes in: 0 keeps the "
                        "template unchanged (only the finishing settings, skin smoothing and "
                        "tone, still apply), 1 moves the source face fully in.")
    shape_ratio: float = _num(0.5, 0.0, 1.0, "How far the face shape (outline, eyes, brows, "
                              "nose) moves toward the source; the mouth keeps the template's "
                              "expression.")
    mode: str = field(default="normal", metadata={
        "kind": "choice", "choices": MODES, "group": "fusion",
        "help": "normal: fused face as is; blend: keep the template's fine skin texture "
                "under the fused face; overlay: overlay blend of the fused face on the "
                "template (keeps more of the template's light and contrast)."})
    resolution: str = field(default="original", metadata={
        "kind": "choice", "choices": RESOLUTIONS, "group": "finish",
        "help": "Output size: the template's own, or the long side in pixels."})
    smoothing: float = _num(0.3, 0.0, 1.0, "Skin smoothing (edge-preserving, skin only).",
                            group="finish")
    brightness: float = _num(0.0, -0.5, 0.5, "Brightness of the fused face region.",
                             group="finish")
    contrast: float = _num(0.0, -0.5, 0.5, "Contrast of the fused face region.", group="finish")
    saturation: float = _num(0.0, -0.5, 0.5, "Colour saturation of the fused face region.",
                             group="finish")
    det_threshold: float = _num(0.5, 0.05, 0.95, "Face detection confidence threshold: lower "
                                "it if a face is missed, raise it if false faces appear.",
                                group="detection")
    # per_photo: chosen for the photos at hand (which face, where the region sits), not a
    # style: switching preset in the WebUI or the phone app keeps them.
    source_face: int = field(default=0, metadata={
        "kind": "int", "min": 0, "max": 99, "group": "detection", "per_photo": True,
        "help": "Which face of the source photo to use (0 = largest)."})
    template_face: int | str = field(default=0, metadata={
        "kind": "face", "min": 0, "max": 99, "group": "detection", "per_photo": True,
        "help": "Which face of the template to replace (0 = largest), or 'all'."})
    region_scale: float = _num(1.0, 0.7, 1.3, "Size of the fusion region relative to the "
                               "detected face.", group="region", per_photo=True)
    region_rotation: float = _num(0.0, -30.0, 30.0, "Rotation of the fusion region in "
                                  "degrees.", step=1.0, group="region", per_photo=True)
    region_offset_x: float = _num(0.0, -0.2, 0.2, "Horizontal shift of the fusion region, in "
                                  "face widths.", group="region", per_photo=True)
    region_offset_y: float = _num(0.0, -0.2, 0.2, "Vertical shift of the fusion region, in "
                                  "face heights.", group="region", per_photo=True)
    refine: bool = field(default=True, metadata={
        "kind": "bool", "group": "model",
        "help": "Run the U-Net refiner (harmonises light, tone and the seam)."})
    # runtime_only: how the desktop runs the U-Net, not what the result is. The browser has
    # one runtime (LiteRT.js, the FP32 files), so the phone app does not offer the choice; its
    # engine still takes the field, so presets and saved parameter files load unchanged.
    backend: str = field(default="ort-fp32", metadata={
        "kind": "choice", "choices": BACKENDS, "group": "model", "runtime_only": True,
        "help": "Runtime and precision of the U-Net."})
    # Occlusion is on by default: its trust maps cost identity only +0.004 (the judge's noise)
    # and spare hair streaks and glasses ghosts. Feature registration stays off: it costs
    # identity +0.014 (docs/quality.md).
    occlusion: bool = field(default=True, metadata={
        "kind": "bool", "group": "model",
        "help": "Keep what covers the source's face (a fringe, glasses) out of the result "
                "and what covers the template's (hair, glasses, a hand) on top of it."})
    feature_registration: bool = field(default=False, metadata={
        "kind": "bool", "group": "model",
        "help": "After the warp, line the source's eyes and nose up with the template's by "
                "their look (head pose closer to the template's; a little less of the "
                "source's identity)."})
    # desktop_only: the phone's engine has no seamless-clone solver (cv2.seamlessClone), so
    # its app does not offer the switch and its engine refuses it rather than ignore it.
    poisson: bool = field(default=False, metadata={
        "kind": "bool", "group": "model", "desktop_only": True,
        "help": "Poisson (seamless) blending at paste-back; slower."})
    crop_size: int = field(default=512, metadata={
        "kind": "int_choice", "choices": CROP_SIZES, "group": "model",
        "help": "Side of the aligned face crop: 512 for photos, 320 for live preview."})

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _validate(f, getattr(self, f.name))

    def with_overrides(self, **overrides: Any) -> FusionParams:
        """A copy with some fields changed (validated); unknown names are a ParameterError."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ParameterError(f"unknown parameter(s): {', '.join(unknown)}; "
                                 f"known: {', '.join(param_names())}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON sidecars and reports."""
        return dataclasses.asdict(self)


def _validate(f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    kind = meta["kind"]
    name = f.name
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f"{name} must be a number, got {value!r}")
        if not (meta["min"] <= float(value) <= meta["max"]) or value != value:
            raise ParameterError(f"{name} must be between {meta['min']} and {meta['max']}, "
                                 f"got {value}")
    elif kind in ("int", "face"):
        if kind == "face" and value == "all":
            return
        if isinstance(value, bool) or not isinstance(value, int):
            extra = " or 'all'" if kind == "face" else ""
            raise ParameterError(f"{name} must be a whole number{extra}, got {value!r}")
        if not meta["min"] <= value <= meta["max"]:
            raise ParameterError(f"{name} must be between {meta['min']} and {meta['max']}, "
                                 f"got {value}")
    elif kind in ("choice", "int_choice"):
        if value not in meta["choices"]:
            choices = ", ".join(str(c) for c in meta["choices"])
            raise ParameterError(f"{name} must be one of {choices}; got {value!r}")
    elif kind == "bool" and not isinstance(value, bool):
        raise ParameterError(f"{name} must be true or false, got {value!r}")


# Bilingual labels (中文 / English) for every parameter, shared by the WebUI and the phone app
# (contract.json); help text comes from the fields themselves.
LABELS: dict[str, str] = {
    "ratio": "融合比例 / Fusion ratio",
    "shape_ratio": "脸型比例 / Shape ratio",
    "mode": "融合模式 / Mode",
    "resolution": "输出分辨率 / Output resolution",
    "smoothing": "磨皮 / Skin smoothing",
    "brightness": "亮度 / Brightness",
    "contrast": "对比度 / Contrast",
    "saturation": "饱和度 / Saturation",
    "det_threshold": "检测阈值 / Detection threshold",
    "source_face": "源人脸序号 / Source face",
    "template_face": "模板人脸 / Template face",
    "region_scale": "区域缩放 / Region scale",
    "region_rotation": "区域旋转 / Region rotation (°)",
    "region_offset_x": "区域水平偏移 / Region offset X",
    "region_offset_y": "区域垂直偏移 / Region offset Y",
    "refine": "U-Net 精修 / U-Net refine",
    "backend": "推理后端 / Backend",
    "occlusion": "遮挡处理 / Occlusion handling",
    "feature_registration": "五官对位 / Feature registration",
    "poisson": "泊松融合 / Poisson blending",
    "crop_size": "对齐尺寸 / Crop size",
}


def param_specs() -> list[dataclasses.Field]:
    """The field definitions (name, default, metadata) the CLI and WebUI build controls from."""
    return list(dataclasses.fields(FusionParams))


def param_names() -> list[str]:
    return [f.name for f in dataclasses.fields(FusionParams)]


def per_photo_names() -> list[str]:
    """Fields chosen for the photos at hand (faces, region): a preset leaves them alone."""
    return [f.name for f in dataclasses.fields(FusionParams) if f.metadata.get("per_photo")]


PRESETS: dict[str, dict[str, Any]] = {
    # Values from the phone study behind the product.
    "desktop": {"ratio": 0.5, "shape_ratio": 0.5, "smoothing": 0.3, "brightness": 0.0,
                "crop_size": 512},
    # Occlusion off on the phone: its trust maps take the live camera view from 26-27 to
    # about 17 fps with two Workers on the reference machine (docs/phone.md); the app's
    # switch turns it on.
    "mobile": {"ratio": 0.45, "shape_ratio": 0.45, "smoothing": 0.25, "brightness": 0.08,
               "crop_size": 512, "backend": "ort-int8", "occlusion": False},
}


def preset(name: str, **overrides: Any) -> FusionParams:
    """FusionParams from a named preset, optionally with some fields overridden."""
    if name not in PRESETS:
        raise ParameterError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return FusionParams().with_overrides(**{**PRESETS[name], **overrides})
