"""The learned trust map (issue #13): a hand or a cast shadow over a face is not trusted, the
skin it leaves bare and a clean face are. Real photos: held-out London people (the network
never saw them) and the astronaut; synthetic occluders from stages/occluders.py, as it was
trained, so these tests measure the same kind of occluder it learnt (MODEL_CARD.md)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefuse.imageio import load_image
from facefuse.stages import occluders, occlusion, texture
from facefuse.stages.align import align_face

SIZE = 512


def _regions(aligned, occ: occluders.Occluder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(under the occluder on the face but off its features, bare skin well away from it,
    the skin mask)."""
    shape = aligned.landmarks[:, :2]
    skin = texture.skin_mask(shape, SIZE)
    face = texture.face_mask(shape, SIZE) > 0.5
    features = texture.feature_mask(shape, SIZE) > 0
    hidden = occ.area & face & ~features
    near = cv2.dilate(occ.area.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    return hidden, (skin > 0.5) & ~near, skin


@pytest.fixture(scope="module")
def astro_aligned(engine, astronaut):
    return align_face(astronaut, engine.analyzer.detect(astronaut, 0.5)[0], SIZE)


def test_learned_map_trusts_the_bare_astronaut(astro_aligned):
    """A clean face: the learned map alone trusts its skin (side-lit, warm) and features."""
    shape = astro_aligned.landmarks[:, :2]
    skin = texture.skin_mask(shape, SIZE)
    learned = occlusion.learned_trust(astro_aligned.crop, skin)
    assert learned.shape == (SIZE, SIZE) and learned.dtype == np.float32
    face = texture.face_mask(shape, SIZE) > 0.5
    print(f"astronaut: learned trust on skin {learned[skin > 0.5].mean():.3f}, over the "
          f"face {learned[face].mean():.3f}")
    assert float(learned[skin > 0.5].mean()) > 0.9
    assert float(learned[face].mean()) > 0.9


def test_cast_shadow_on_the_astronaut_is_found(astro_aligned):
    """Ten hard cast shadows (random direction and depth): the combined map does not trust
    what they cover; the lit skin away from their edge stays trusted on average (a shadow
    over most of the face leaves a lit crescent the network is least sure of: seed 5,
    0.61)."""
    shape = astro_aligned.landmarks[:, :2]
    inside, bare_means = [], []
    for seed in range(10):
        occ = occluders.cast_shadow(astro_aligned.crop, astro_aligned.landmarks,
                                    np.random.default_rng(seed))
        covered = occ.apply(astro_aligned.crop)
        hidden, bare, skin = _regions(astro_aligned, occ)
        assert hidden.sum() > 2000 and bare.sum() > 2000
        trust = occlusion.trust_map(covered, shape, skin)
        inside.append(float(trust[hidden].mean()))
        bare_means.append(float(trust[bare].mean()))
    print(f"astronaut shadows: trust under them {np.mean(inside):.3f} (worst "
          f"{max(inside):.2f}), bare skin {np.mean(bare_means):.3f} (worst {min(bare_means):.2f})")
    assert np.mean(inside) < SHADOW_INSIDE and max(inside) < SHADOW_INSIDE
    assert np.mean(bare_means) > BARE_SKIN


# --- held-out London people ------------------------------------------------------------

# Bounds. 0.5 is where the texture mix takes half of each face: a map whose mean under the
# occluder is below it keeps the occluder's side mostly out (source) or on top (template).
# Measured with the shipped weights: under a hand 0.13-0.24 on these three held-out faces
# (the colour map alone 0.95-1.00), under a cast shadow 0.00-0.01 (alone 0.13-1.00), under
# ten shadows on the astronaut 0.01; bare skin 0.98-1.00 here, 0.88 on the astronaut's
# shadows (the lit part next to a big shadow is the least sure). A network that stopped
# seeing hands or shadows fails these, and so does one that distrusts bare skin.
HAND_INSIDE = 0.5
SHADOW_INSIDE = 0.5
BARE_SKIN = 0.8  # uncovered skin (20 px or more from the occluder's edge at 512)
CLEAN_SKIN = 0.9  # a face with nothing on it


@pytest.fixture(scope="module")
def held_out_faces(engine, london):
    """Three held-out people (neutral photos) and, for each, a donor of another person's
    skin from the training identities, as `facefuse eval occlusion` chooses them."""
    from facefuse.quality.occlusion import held_out_pairs

    pairs, donor_paths = held_out_pairs(london, 3)
    out = []
    for k, pair in enumerate(pairs):
        image = load_image(pair.source)
        aligned = align_face(image, engine.analyzer.detect(image, 0.5)[0], SIZE)
        donor_image = load_image(donor_paths[(5 * k) % len(donor_paths)])
        donor_face = engine.analyzer.detect(donor_image, 0.5)[0]
        donor = occluders.make_donor(donor_image, align_face(donor_image, donor_face, SIZE))
        out.append((pair.source.name, aligned, donor))
    return out


@pytest.mark.parametrize("kind", ["hand", "shadow"])
def test_held_out_occluder_is_not_trusted(held_out_faces, kind):
    """A synthetic hand (another person's skin) or cast shadow over a held-out face: the
    combined map's mean trust under it is low, on the skin it leaves bare high."""
    inside, bare_means, classical_inside = [], [], []
    for k, (name, aligned, donor) in enumerate(held_out_faces):
        shape = aligned.landmarks[:, :2]
        occ = occluders.make_occluder(kind, aligned.crop, aligned.landmarks, donor,
                                      np.random.default_rng([21, k]))
        covered = occ.apply(aligned.crop)
        hidden, bare, skin = _regions(aligned, occ)
        assert hidden.sum() > 1000 and bare.sum() > 1000, name
        trust = occlusion.trust_map(covered, shape, skin)
        classical = occlusion.trust_map(covered, shape, skin, learned=False)
        inside.append(float(trust[hidden].mean()))
        classical_inside.append(float(classical[hidden].mean()))
        bare_means.append(float(trust[bare].mean()))
        print(f"{name} {kind}: trust under it {inside[-1]:.2f} (classical "
              f"{classical_inside[-1]:.2f}), bare skin {bare_means[-1]:.2f}")
    bound = HAND_INSIDE if kind == "hand" else SHADOW_INSIDE
    assert np.mean(inside) < bound
    assert np.mean(inside) < np.mean(classical_inside) - 0.2  # the network found it
    assert min(bare_means) > BARE_SKIN


def test_held_out_clean_faces_stay_trusted(held_out_faces):
    """Nothing on the face: the combined map trusts the skin of every held-out face."""
    for name, aligned, _ in held_out_faces:
        shape = aligned.landmarks[:, :2]
        skin = texture.skin_mask(shape, SIZE)
        trust = occlusion.trust_map(aligned.crop, shape, skin)
        learned = occlusion.learned_trust(aligned.crop, skin)
        print(f"{name} clean: trust on skin {trust[skin > 0.5].mean():.3f} (learned alone "
              f"{learned[skin > 0.5].mean():.3f})")
        assert float(trust[skin > 0.5].mean()) > CLEAN_SKIN
