"""Occlusion (issue #13): the trust map, the synthetic occluders it is measured with, the
feature registration that keeps the template's head pose, and `eval occlusion` on real
photos for every occluder type."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefuse import FusionParams
from facefuse.stages import geometry, mesh_topology, occluders, occlusion, texture
from facefuse.stages.align import align_face


@pytest.fixture(scope="module")
def astro_face(engine, astronaut):
    face = engine.analyzer.detect(astronaut, 0.5)[0]
    aligned = align_face(astronaut, face, 512)
    shape = aligned.landmarks[:, :2]
    return aligned, shape, texture.skin_mask(shape, 512)


def test_trust_map_trusts_a_bare_face(astro_face):
    """Nothing covers the astronaut's face: its skin, eyes, brows and lips stay trusted."""
    aligned, shape, skin = astro_face
    trust = occlusion.trust_map(aligned.crop, shape, skin)
    assert trust.shape == skin.shape and trust.dtype == np.float32
    inside = skin > 0.5
    # Side-lit and warm: its shading stays skin (a global lightness test trusted 79%).
    assert float(trust[inside].mean()) > 0.85
    features = texture.feature_mask(shape, 512) > 0
    assert float(trust[features & (texture.face_mask(shape, 512) > 0.5)].mean()) > 0.9


@pytest.mark.parametrize("kind", ["glasses"])
def test_trust_map_finds_drawn_occluders(astro_face, kind):
    """Glasses frames over the astronaut's face are not trusted; the skin they leave bare
    still is. (Cast shadows and hands: tests/test_trust.py, the learned map.)"""
    aligned, shape, skin = astro_face
    occ = occluders.make_occluder(kind, aligned.crop, aligned.landmarks, None,
                                  np.random.default_rng(3))
    covered = occ.apply(aligned.crop)
    trust = occlusion.trust_map(covered, shape, skin)
    face = texture.face_mask(shape, 512) > 0.5
    features = texture.feature_mask(shape, 512) > 0
    hidden = occ.area & face & ~features
    bare = (skin > 0.5) & ~cv2.dilate(occ.area.astype(np.uint8), np.ones((15, 15))).astype(bool)
    assert hidden.sum() > 500 and bare.sum() > 5000
    print(f"{kind}: trust under it {trust[hidden].mean():.2f}, on bare skin "
          f"{trust[bare].mean():.2f}")
    assert float(trust[hidden].mean()) < 0.35
    assert float(trust[bare].mean()) > 0.85


def test_template_keeps_what_reaches_in_and_clears_interior_patches(astro_face):
    """On the template, glasses (their temples reach the face's edge) stay untrusted, while
    a small dark patch inside the cheek (a smile line, a lip's shadow) is its own face and
    is cleared, so the fused face is not stamped with the template's features."""
    aligned, shape, skin = astro_face
    occ = occluders.make_occluder("glasses", aligned.crop, aligned.landmarks, None,
                                  np.random.default_rng(3))
    covered = occ.apply(aligned.crop).astype(np.float32)
    face_soft = texture.face_mask(shape, 512)
    # A dark 24 x 10 px patch in the lit (left) cheek: below the eye, level with the nose tip.
    eye = shape[list(mesh_topology.LEFT_EYE_LOOP)].mean(axis=0)
    cx, cy = int(eye[0]), int(shape[4, 1])
    patch = np.zeros((512, 512), bool)
    cv2.ellipse(patch.view(np.uint8), (cx, cy), (12, 5), 0, 0, 360, 1, -1)
    covered[patch] *= 0.45
    raw = occlusion.trust_map(covered, shape, skin)
    kept = occlusion.reaching_in(raw, face_soft)
    face = face_soft > 0.5
    features = texture.feature_mask(shape, 512) > 0
    hidden = occ.area & face & ~features
    assert float(raw[patch].mean()) < 0.5  # the colour model does not trust the patch ...
    print(f"patch trust {raw[patch].mean():.2f} -> {kept[patch].mean():.2f}; glasses "
          f"{raw[hidden].mean():.2f} -> {kept[hidden].mean():.2f}")
    assert float(kept[patch].mean()) > 0.9  # ... but it is inside the face: cleared
    assert float(kept[hidden].mean()) < 0.4  # the frames reach in: they stay
    assert np.all(kept >= raw)


def test_occluders_are_made_of_the_donor_and_follow_the_face(astro_face):
    """A hand is filled with the donor's skin; every kind lands on the face and carries
    into the full photo where it was drawn."""
    aligned, _, _ = astro_face
    donor = occluders.Donor(hair=np.full((40, 192, 3), 30, np.float32),
                            skin=np.full((38, 38, 3), (200, 150, 120), np.float32))
    face = texture.face_mask(aligned.landmarks[:, :2], 512) > 0.5
    for k, kind in enumerate(occluders.KINDS):
        occ = occluders.make_occluder(kind, aligned.crop, aligned.landmarks, donor,
                                      np.random.default_rng(k))
        assert (occ.area & face).sum() > 800, kind
        photo_shape = (512, 512, 3)
        back = occ.to_image(aligned, photo_shape)
        assert back.alpha.shape == photo_shape[:2]
    hand = occluders.make_occluder("hand", aligned.crop, aligned.landmarks, donor,
                                   np.random.default_rng(0))
    core = hand.alpha > 0.99
    assert np.allclose(np.median(hand.colour[core], axis=0), (200, 150, 120), atol=30)
    with pytest.raises(ValueError):
        occluders.make_occluder("hair", aligned.crop, aligned.landmarks, None,
                                np.random.default_rng(0))


def test_feature_registration_finds_and_undoes_a_shift(astro_face):
    """The warped source drawn 3 px right and 2 px up of the template: every feature's
    shift is found, and the landmarks move by it so the next warp puts it back."""
    aligned, shape, _ = astro_face
    template = aligned.crop.astype(np.float32)
    moved = cv2.warpAffine(template, np.float32([[1, 0, 3], [0, 1, -2]]), (512, 512),
                           borderMode=cv2.BORDER_REPLICATE)
    shifts = geometry.feature_shifts(moved, template, shape)
    for name, shift in shifts.items():
        assert np.allclose(shift, (3, -2), atol=0.5), (name, shift)
    lm = geometry.register_landmarks(aligned.landmarks, shape, shifts)
    assert np.allclose(lm[4, :2] - aligned.landmarks[4, :2], (3, -2), atol=0.6)
    assert np.allclose(lm[152, :2], aligned.landmarks[152, :2], atol=0.3)  # the chin stays
    same = geometry.feature_shifts(template, template, shape)
    assert all(np.allclose(s, 0, atol=0.2) for s in same.values())


def test_occlusion_switch_changes_only_the_mix(engine, astronaut, astronaut_template):
    """Off, the pipeline computes no trust map; on, what both faces' maps trust fuses as
    before (only the skin statistics of the colour match move a little)."""
    on, off = {}, {}
    engine.fuse(astronaut, astronaut_template, FusionParams(ratio=1.0, occlusion=True), trace=on)
    engine.fuse(astronaut, astronaut_template, FusionParams(ratio=1.0, occlusion=False),
                trace=off)
    assert "source_trust" in on and "source_trust" not in off
    trusted = (on["face"] > 0.5) & (np.minimum(on["source_trust"], on["template_trust"]) > 0.95)
    untrusted = (on["face"] > 0.5) & (on["source_trust"] < 0.05)
    diff = np.abs(on["finished"] - off["finished"]).mean(axis=2)
    print(f"trusted {trusted.mean():.2f} of the crop: mean change {diff[trusted].mean():.2f}; "
          f"untrusted source {untrusted.mean():.3f}: {diff[untrusted].mean():.2f}")
    assert float(diff[trusted].mean()) < 3.0
    if untrusted.sum() > 100:  # there the template's own pixels came back
        tpl_diff = np.abs(on["finished"] - on["template"]).mean(axis=2)
        assert float(tpl_diff[untrusted].mean()) < float(diff[untrusted].mean())


def test_the_source_trust_map_is_computed_once_per_prepared_source(engine, astronaut,
                                                                   astronaut_template,
                                                                   monkeypatch):
    """A video or the camera fuses one prepared source into every frame: the source's map
    (in its own crop, warped by its field each frame) is computed once, the template's
    once a frame."""
    from facefuse.pipeline import Timings

    calls: list[bool] = []
    real = occlusion.trust_map

    def counted(*args, **kwargs):
        calls.append(kwargs.get("outline") is None)  # the template's map has an outline
        return real(*args, **kwargs)

    monkeypatch.setattr(occlusion, "trust_map", counted)
    params = FusionParams(ratio=1.0, occlusion=True, crop_size=320)
    prepared = engine.prepare_source(astronaut, params)
    face = engine.analyzer.detect(astronaut_template)[0]
    for _ in range(3):
        engine.fuse_face(prepared, astronaut_template, face, params, Timings())
    assert calls.count(True) == 1 and calls.count(False) == 3


# --- real photos: every occluder type, on the source and on the template ----------------

@pytest.fixture(scope="module")
def occlusion_one_pair(london):
    from facefuse.quality.occlusion import occlusion_report

    return occlusion_report(london, pairs=1, progress=False,
                            configs={"off": {"occlusion": False}, "on": {"occlusion": True}})


def _score(report: dict, side: str, kind: str, config: str) -> float:
    row = next(r for r in report["rows"] if r["side"] == side and r["kind"] == kind
               and r["config"] == config)
    assert "delta_e" in row, f"the {kind} on the {side} missed the fused face"
    return row["delta_e"]


# Measured on the first held-out pair (001 neutral into 011 smiling), ΔE, U-Net on; all ten
# pairs are in docs/quality.md. Every kind must drop clearly. With the learned map (trained
# on other people) a hand on the source leaks 5.43 -> 2.61 and on the template is kept
# 9.77 -> 0.73, a cast shadow on the template 9.05 -> 0.06; a cast shadow on the source
# 5.19 -> 4.41 (the template's own pixels there are another person's skin in other light:
# the floor of that row is about where it lands).
SOURCE_GAIN = {"hair": 4.0, "glasses": 4.0, "hand": 1.5, "shadow": 0.3}
TEMPLATE_GAIN = {"hair": 4.0, "glasses": 6.0, "hand": 4.0, "shadow": 4.0}


@pytest.mark.parametrize("kind", occluders.KINDS)
def test_source_occluder_stays_out(occlusion_one_pair, kind):
    off = _score(occlusion_one_pair, "source", kind, "off")
    on = _score(occlusion_one_pair, "source", kind, "on")
    print(f"source {kind}: leak ΔE off {off:.2f}, on {on:.2f}")
    assert on <= off - SOURCE_GAIN[kind]


@pytest.mark.parametrize("kind", occluders.KINDS)
def test_template_occluder_stays_on_top(occlusion_one_pair, kind):
    off = _score(occlusion_one_pair, "template", kind, "off")
    on = _score(occlusion_one_pair, "template", kind, "on")
    print(f"template {kind}: keep ΔE off {off:.2f}, on {on:.2f}")
    assert on <= off - TEMPLATE_GAIN[kind]
