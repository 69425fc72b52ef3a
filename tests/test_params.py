"""FusionParams: one validated definition, never silently clamped."""

from __future__ import annotations

import dataclasses

import pytest

from facefuse import FusionParams, ParameterError, preset
from facefuse.params import PRESETS, param_specs


def test_defaults_are_valid_and_documented():
    params = FusionParams()
    assert params.ratio == 0.5 and params.mode == "normal" and params.refine is True
    for f in param_specs():
        assert f.metadata["help"], f"{f.name} has no help text"


@pytest.mark.parametrize("name,value", [
    ("ratio", 1.01), ("ratio", -0.01), ("shape_ratio", 2), ("brightness", 0.6),
    ("contrast", -0.51), ("saturation", 0.9), ("smoothing", 1.5), ("det_threshold", 0.0),
    ("ratio", float("nan")), ("mode", "screen"), ("resolution", "4096"),
    ("template_face", -1), ("template_face", "some"), ("source_face", 1.5),
    ("ratio", "0.5"), ("ratio", True), ("refine", "yes"), ("crop_size", 256),
    ("region_rotation", 45.0),
])
def test_out_of_range_is_an_error_not_a_clamp(name, value):
    with pytest.raises(ParameterError) as info:
        FusionParams().with_overrides(**{name: value})
    assert name in str(info.value)


def test_unknown_parameter_names_the_known_ones():
    with pytest.raises(ParameterError, match="unknown parameter.*ratio"):
        FusionParams().with_overrides(ratioo=0.3)


def test_presets_from_the_phone_study():
    desktop, mobile = preset("desktop"), preset("mobile")
    assert (desktop.ratio, desktop.shape_ratio, desktop.smoothing, desktop.brightness) == (
        0.5, 0.5, 0.3, 0.0)
    assert (mobile.ratio, mobile.shape_ratio, mobile.smoothing, mobile.brightness) == (
        0.45, 0.45, 0.25, 0.08)
    assert mobile.crop_size == 512 and mobile.backend == "ort-int8"
    assert preset("mobile", ratio=0.9).ratio == 0.9
    with pytest.raises(ParameterError, match="desktop"):
        preset("tablet")
    assert set(PRESETS) == {"desktop", "mobile"}


def test_template_face_accepts_all_and_params_are_frozen():
    params = FusionParams(template_face="all")
    assert params.template_face == "all"
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.ratio = 0.1  # type: ignore[misc]
    assert params.to_dict()["template_face"] == "all"
