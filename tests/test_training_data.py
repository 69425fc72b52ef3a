"""The refiner's training composites (nn/data.py, torch-free): the regimes the network is
trained in are the ones it runs in."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from facefuse.nn.data import cast_shadow_gain, make_composite
from facefuse.stages.texture import lab_transfer

SIZE = 128


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut at 256 px and an oval face-like mask (uint8, as a FaceSet holds them)."""
    crop = cv2.resize(data.astronaut()[:300, 100:400], (256, 256), interpolation=cv2.INTER_AREA)
    mask = np.zeros((256, 256), np.uint8)
    cv2.ellipse(mask, (128, 110), (60, 80), 0, 0, 360, 255, -1)
    return crop, cv2.GaussianBlur(mask, (0, 0), 6)


def test_without_a_template_the_composite_is_matched_to_its_surroundings(photo):
    """`--prematch runtime` trains the no-template mode on what `facefuse harmonize` feeds
    the network: the region's LAB mean/std matched to its surroundings first."""
    crop, mask = photo
    for seed in range(4):
        raw = make_composite(crop, mask, crop, SIZE, np.random.default_rng(seed),
                             template_dropout=1.0, strength=1.0)
        run = make_composite(crop, mask, crop, SIZE, np.random.default_rng(seed),
                             template_dropout=1.0, strength=1.0, prematch="runtime")
        assert not run[2].any()  # no template
        np.testing.assert_allclose(run[0], lab_transfer(raw[0], raw[1]), atol=1e-5)
        np.testing.assert_array_equal(run[3], raw[3])  # the same target


def test_template_shadows_are_on_the_target_and_template_not_on_the_pasted_face(photo):
    crop, mask = photo
    gaps = []
    for seed in range(6):
        comp, m, template, target = make_composite(
            crop, mask, crop, SIZE, np.random.default_rng(seed), template_dropout=0.0,
            strength=0.0, shadows=1.0)
        assert template.any()
        inside = m > 0.5
        gaps.append(float((comp - target)[inside].mean()))
    # The pasted face is the unshadowed photo: brighter than the target where it is shaded.
    assert np.mean(gaps) > 0.01 and min(gaps) > -0.005


def test_cast_shadow_darkens_part_of_the_crop_with_a_bluer_cast():
    gain = cast_shadow_gain(SIZE, np.random.default_rng(3))
    assert gain.shape == (SIZE, SIZE, 3) and gain.max() <= 1.0 + 1e-6
    shaded = gain.mean(axis=2) < 0.8
    assert 0.05 < shaded.mean() < 0.95
    assert gain[shaded][:, 2].mean() > gain[shaded][:, 0].mean()  # a little bluer
