"""The whole fusion pipeline, judged on measured properties of real photos."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from facefuse import FusionParams, NoFaceError, fuse
from facefuse.imageio import load_image
from facefuse.stages.align import umeyama
from facefuse.stages.analysis import LEFT_IRIS, RIGHT_IRIS

PLAIN = {"smoothing": 0.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0,
         "refine": False}


def shape_distance(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> float:
    """Difference of two landmark sets over `points` after removing position, scale and
    rotation, per inter-ocular distance."""
    m = umeyama(a[points], b[points])
    moved = a[points] @ m[:, :2].T + m[:, 2]
    iod = np.linalg.norm(b[LEFT_IRIS] - b[RIGHT_IRIS])
    return float(np.linalg.norm(moved - b[points], axis=1).mean() / iod)


def outside_box_mask(shape, box, grow: float) -> np.ndarray:
    """True far from the face: outside its box grown by `grow` box sizes on each side."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    mask = np.ones(shape[:2], bool)
    mask[max(0, int(y0 - grow * h)):int(y1 + grow * h),
         max(0, int(x0 - grow * w)):int(x1 + grow * w)] = False
    return mask


def test_ratio_zero_returns_the_template_unchanged(engine, astronaut, astronaut_template):
    result = engine.fuse(astronaut, astronaut_template, ratio=0.0, **PLAIN)
    assert np.array_equal(result.image, astronaut_template)


def test_outside_the_face_nothing_changes(engine, astronaut, astronaut_template):
    result = engine.fuse(astronaut, astronaut_template, ratio=1.0, shape_ratio=1.0)
    face = result.template_faces[0]
    far = outside_box_mask(astronaut_template.shape, face.box, grow=0.6)
    assert far.mean() > 0.4
    assert np.array_equal(result.image[far], astronaut_template[far])
    changed = np.abs(result.image.astype(int) - astronaut_template).max(axis=2) > 8
    assert changed.sum() > 2000  # and the face itself did change


def test_fused_face_moves_with_the_ratio(engine, astronaut, astronaut_template):
    """The face region departs from the template steadily as the ratio grows."""
    tpl_face = engine.analyzer.detect(astronaut_template)[0]
    x0, y0, x1, y1 = (int(v) for v in tpl_face.box)
    diffs = []
    for ratio in (0.0, 0.25, 0.5, 0.75, 1.0):
        out = engine.fuse(astronaut, astronaut_template, ratio=ratio, **PLAIN).image
        diffs.append(np.abs(out[y0:y1, x0:x1].astype(float) -
                            astronaut_template[y0:y1, x0:x1]).mean())
    assert diffs[0] == 0
    assert all(b > a for a, b in itertools.pairwise(diffs)), diffs


def test_output_size_follows_resolution(engine, astronaut, astronaut_template):
    wide = np.ascontiguousarray(np.hstack([astronaut_template, astronaut_template[:, :256]]))
    for resolution, expected in [("original", (512, 768)), ("512", (341, 512)),
                                 ("1024", (683, 1024)), ("2048", (1365, 2048))]:
        out = engine.fuse(astronaut, wide, ratio=0.5, resolution=resolution, refine=False)
        assert out.image.shape[:2] == expected, resolution


def test_every_face_of_a_group_photo(engine, astronaut, astronaut_template):
    group = np.ascontiguousarray(np.hstack([astronaut_template, astronaut_template[:, ::-1]]))
    one = engine.fuse(astronaut, group, ratio=1.0, template_face=1, **PLAIN)
    both = engine.fuse(astronaut, group, ratio=1.0, template_face="all", **PLAIN)
    assert len(one.template_faces) == 1 and len(both.template_faces) == 2
    left, right = slice(0, 512), slice(512, 1024)
    diff_one = np.abs(one.image.astype(int) - group)
    diff_both = np.abs(both.image.astype(int) - group)
    changed_one = [(diff_one[:, s].max(axis=2) > 4).sum() for s in (left, right)]
    changed_both = [(diff_both[:, s].max(axis=2) > 4).sum() for s in (left, right)]
    print("pixels changed (left, right): face 1 only", changed_one, "all", changed_both)
    assert min(changed_both) > 1000
    assert min(changed_one) == 0 and max(changed_one) > 1000  # only face 1 changed


def test_errors_are_typed_and_say_which_image(engine, astronaut):
    from skimage import data

    coffee = np.ascontiguousarray(data.coffee())
    with pytest.raises(NoFaceError, match="source"):
        engine.fuse(coffee, astronaut)
    with pytest.raises(NoFaceError, match="template"):
        engine.fuse(astronaut, coffee)
    with pytest.raises(NoFaceError, match="face 3 does not exist"):
        engine.fuse(astronaut, astronaut, template_face=3)


def test_one_shot_api_accepts_paths_and_reports_stage_timings(tmp_path, astronaut,
                                                              astronaut_template):
    cv2.imwrite(str(tmp_path / "s.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    result = fuse(tmp_path / "s.png", astronaut_template, FusionParams(refine=False),
                  ratio=0.7)
    assert result.image.shape == astronaut_template.shape
    assert result.params.ratio == 0.7
    for stage in ("load", "analyse", "align", "geometry", "texture", "paste", "finish"):
        assert result.timings[stage] >= 0
    assert result.timings.total > 0


def boundary_step(image: np.ndarray, ring: np.ndarray) -> float:
    """Mean colour-gradient magnitude on a ring of pixels."""
    f = image.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.sqrt(gx ** 2 + gy ** 2).sum(axis=2)[ring].mean())


def test_no_seam_at_the_edge_of_the_fused_region(engine, london):
    """Across the edge of what changed, the result is no sharper than the template was
    there: the fused face has no visible outline."""
    src = load_image(london / "neutral" / "005_03.jpg")
    tpl = load_image(london / "smiling" / "001_08.jpg")
    out = engine.fuse(src, tpl, ratio=1.0, shape_ratio=1.0, refine=False).image
    changed = (np.abs(out.astype(int) - tpl).max(axis=2) > 6).astype(np.uint8)
    changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    k = np.ones((9, 9), np.uint8)
    ring = (cv2.dilate(changed, k) - cv2.erode(changed, k)).astype(bool)
    assert ring.sum() > 500
    step_out, step_tpl = boundary_step(out, ring), boundary_step(tpl, ring)
    print(f"gradient on the edge ring: result {step_out:.1f}, template {step_tpl:.1f}")
    assert step_out < 1.15 * step_tpl + 2.0


@pytest.mark.parametrize("source,template", [("005_03", "001_08"), ("001_03", "004_08"),
                                             ("013_03", "010_08")])
def test_identity_pose_and_expression_on_real_pairs(engine, london, source, template):
    """At ratio 1 the face shape is the source's, while pose and mouth stay the template's;
    in between, the shape moves steadily from template to source."""
    src = load_image(london / "neutral" / f"{source}.jpg")
    tpl = load_image(london / "smiling" / f"{template}.jpg")
    src_face = engine.analyzer.detect(src)[0]
    tpl_face = engine.analyzer.detect(tpl)[0]
    identity = _identity_points()
    dist_to_src = []
    for ratio in (0.0, 0.5, 1.0):
        out = engine.fuse(src, tpl, ratio=ratio, shape_ratio=ratio, refine=False).image
        face = engine.analyzer.detect(out)[0]
        dist_to_src.append(shape_distance(face.points, src_face.points, identity))
        if ratio == 1.0:
            assert abs(face.pose[0] - tpl_face.pose[0]) < 4  # yaw
            assert abs(face.pose[2] - tpl_face.pose[2]) < 3  # roll
            assert _mouth_shape_change(face, tpl_face) < 0.08
    print(f"{source}->{template} shape distance to source by ratio: {dist_to_src}")
    assert dist_to_src[0] > dist_to_src[1] > dist_to_src[2]
    assert dist_to_src[2] < 0.8 * dist_to_src[0]


def _identity_points() -> np.ndarray:
    """Eyes, brows, nose and face outline: the shape that says who someone is."""
    from facefuse.stages import mesh_topology as t

    groups = (t.LEFT_EYE_LOOP, t.RIGHT_EYE_LOOP, t.LEFT_BROW_POINTS, t.RIGHT_BROW_POINTS,
              t.NOSE_POINTS, t.FACE_OVAL_LOOP)
    return np.unique(np.concatenate([np.array(g) for g in groups]))


def _mouth_shape_change(a, b) -> float:
    """Expression of the mouth, scale-free: opening per width, and how far the corners rise
    above the lips' centre per width (the smile)."""
    def measures(face):
        lm = face.points
        width = np.linalg.norm(lm[291] - lm[61])
        opening = np.linalg.norm(lm[14] - lm[13]) / width
        smile = ((lm[13, 1] + lm[14, 1]) / 2 - (lm[61, 1] + lm[291, 1]) / 2) / width
        return np.array([opening, smile])
    return float(np.abs(measures(a) - measures(b)).max())


def test_open_mouth_keeps_the_template_teeth(engine, london):
    """With the shape held (shape_ratio 0) the mouth stays in place, so its pixels can be
    compared directly: at full ratio the teeth are still the template's."""
    tpl_path = next(p for p in sorted((london / "smiling").glob("*.jpg"))
                    if engine.analyzer.detect(load_image(p))[0].mouth_open_ratio() > 0.15)
    tpl = load_image(tpl_path)
    src = load_image(london / "neutral" / "005_03.jpg")
    out = engine.fuse(src, tpl, ratio=1.0, shape_ratio=0.0, refine=False).image
    face = engine.analyzer.detect(tpl)[0]
    from facefuse.stages.mesh_topology import INNER_LIPS_LOOP

    inner = np.zeros(tpl.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.round(face.points[list(INNER_LIPS_LOOP)]).astype(np.int32)], 1)
    inner = cv2.erode(inner, np.ones((7, 7), np.uint8)).astype(bool)
    assert inner.sum() > 300
    teeth_change = np.abs(out[inner].astype(float) - tpl[inner]).mean()
    assert teeth_change < 12, f"{tpl_path.name}: mouth interior changed by {teeth_change:.1f}"


def test_region_controls_scale_and_move_the_fused_area(engine, astronaut, astronaut_template):
    def changed(**region):
        out = engine.fuse(astronaut, astronaut_template, ratio=1.0, shape_ratio=0.0,
                          **PLAIN, **region).image
        diff = np.abs(out.astype(int) - astronaut_template).max(axis=2) > 4
        _, xs = np.nonzero(diff)
        return diff.sum(), xs.mean()

    small, _ = changed(region_scale=0.8)
    normal, centre = changed()
    large, _ = changed(region_scale=1.2)
    assert small < normal < large
    _, moved = changed(region_offset_x=0.15)
    assert moved > centre + 5  # shifted right (in crop terms; the face is upright here)


def test_face_cut_by_the_border_fuses_without_touching_outside(engine, astronaut):
    """The left third of her face is outside the template: the visible part is fused, the
    size is kept, and nothing far from the face changes."""
    cut = np.ascontiguousarray(astronaut[:, 205:])
    out = engine.fuse(astronaut[:, ::-1].copy(), cut, ratio=1.0, **PLAIN)
    assert out.image.shape == cut.shape
    changed = np.abs(out.image.astype(int) - cut).max(axis=2) > 8
    assert changed[:200, :100].sum() > 500  # the visible part of the face changed
    assert not changed[300:, :].any()  # the suit did not


def test_modes_and_poisson_change_the_face_only(engine, astronaut, astronaut_template):
    """blend keeps the template's fine texture (closer to the template in detail), overlay
    differs from both, Poisson stays inside the face; outside, all equal the template."""
    import cv2

    outs = {mode: engine.fuse(astronaut, astronaut_template, ratio=1.0, mode=mode,
                              **PLAIN).image for mode in ("normal", "blend", "overlay")}
    outs["poisson"] = engine.fuse(astronaut, astronaut_template, ratio=1.0, poisson=True,
                                  **PLAIN).image
    face = engine.analyzer.detect(astronaut_template)[0]
    far = outside_box_mask(astronaut_template.shape, face.box, grow=0.6)
    for name, out in outs.items():
        assert np.array_equal(out[far], astronaut_template[far]), name
    x0, y0, x1, y1 = (int(v) for v in face.box)
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff = np.abs(outs[a][y0:y1, x0:x1].astype(int) - outs[b][y0:y1, x0:x1]).mean()
            assert diff > 0.3, (a, b, diff)

    def detail(img):
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return g - cv2.GaussianBlur(g, (0, 0), 2)

    t = detail(astronaut_template)[y0:y1, x0:x1]
    err = {m: np.abs(detail(outs[m])[y0:y1, x0:x1] - t).mean() for m in ("normal", "blend")}
    assert err["blend"] < err["normal"]


def _face_box(face, image_shape, shrink: float = 0.2) -> tuple[slice, slice]:
    """The inner part of a detected face box (cheeks, nose, eyes): skin, no background."""
    x0, y0, x1, y1 = face.box
    w, h = x1 - x0, y1 - y0
    return (slice(int(y0 + shrink * h), int(y1 - shrink * h)),
            slice(int(x0 + shrink * w), int(x1 - shrink * w)))


def test_skin_smoothing_removes_fine_texture_from_skin_only(engine, astronaut_template):
    """On a real aligned face: skin loses fine texture; eyes, brows and lips keep theirs."""
    from facefuse.stages import finish, texture
    from facefuse.stages.align import align_face

    face = engine.analyzer.detect(astronaut_template)[0]
    crop = align_face(astronaut_template, face, 512)
    image = crop.crop.astype(np.float32)
    skin = texture.skin_mask(crop.landmarks[:, :2], 512)
    smooth = finish.smooth_skin(image, skin, 1.0)

    def fine_energy(img: np.ndarray, where: np.ndarray) -> float:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return float(np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 2.0))[where].mean())

    on_skin, off_skin = skin > 0.9, skin == 0
    assert fine_energy(smooth, on_skin) < 0.7 * fine_energy(image, on_skin)
    assert np.array_equal(smooth[off_skin], image[off_skin])


def test_skin_smoothing_changes_nothing_far_from_the_face(engine, astronaut,
                                                          astronaut_template):
    plain = engine.fuse(astronaut, astronaut_template, ratio=0.6, **PLAIN)
    smooth = engine.fuse(astronaut, astronaut_template, ratio=0.6,
                         **{**PLAIN, "smoothing": 1.0})
    inner = _face_box(plain.template_faces[0], astronaut_template.shape)
    assert np.abs(smooth.image[inner].astype(int) - plain.image[inner]).mean() > 0.5
    far = outside_box_mask(astronaut_template.shape, plain.template_faces[0].box, grow=0.6)
    assert np.array_equal(smooth.image[far], plain.image[far])


def test_brightness_lifts_the_face_region_only(engine, astronaut, astronaut_template):
    base = engine.fuse(astronaut, astronaut_template, ratio=0.6, **PLAIN)
    bright = engine.fuse(astronaut, astronaut_template, ratio=0.6,
                         **{**PLAIN, "brightness": 0.2})
    inner = _face_box(base.template_faces[0], astronaut_template.shape)
    lift = bright.image[inner].astype(float).mean() - base.image[inner].astype(float).mean()
    assert lift > 15  # 0.2 is +10 L*: roughly +20 to +30 in 8-bit RGB on skin
    far = outside_box_mask(astronaut_template.shape, base.template_faces[0].box, grow=0.6)
    assert np.array_equal(bright.image[far], base.image[far])


def test_finishing_alone_applies_at_ratio_zero(engine, astronaut, astronaut_template):
    """Ratio 0 keeps the face, but the requested brightness still applies to it."""
    out = engine.fuse(astronaut, astronaut_template, ratio=0.0,
                      **{**PLAIN, "brightness": 0.2}).image
    inner = _face_box(engine.analyzer.detect(astronaut_template)[0], out.shape)
    assert out[inner].astype(float).mean() > astronaut_template[inner].astype(float).mean() + 15


def test_triangle_search_matches_scipys(astronaut, engine):
    """geometry.locate_in_triangles (closed-form, no LAPACK) finds the same triangle weights
    as scipy's Delaunay.find_simplex on a real face's fused shape."""
    from scipy.spatial import Delaunay

    from facefuse.stages import geometry
    from facefuse.stages.align import align_face

    face = engine.analyzer.detect(astronaut, 0.5)[0]
    tpl = align_face(astronaut, face, 512)
    shape = tpl.landmarks[:, :2]
    anchors = geometry.anchor_points(shape, 512)
    dst = np.vstack([shape, anchors])
    tri = Delaunay(dst)
    n = 512 // geometry.GRID_STEP + 1
    coords = np.arange(n, dtype=np.float64) * geometry.GRID_STEP
    gx, gy = np.meshgrid(coords, coords)
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    searched = (grid <= 511).all(axis=1)
    simplex, weights = geometry.locate_in_triangles(dst[tri.simplices], grid, searched, n)
    expected = tri.find_simplex(grid[searched])
    assert ((simplex[searched] >= 0) == (expected >= 0)).mean() > 0.999
    found = np.flatnonzero(simplex >= 0)
    assert weights[found].min() > -1e-6 and np.allclose(weights[found].sum(axis=1), 1)
    rebuilt = np.einsum("ni,nij->nj", weights[found], dst[tri.simplices[simplex[found]]])
    assert np.abs(rebuilt - grid[found]).max() < 1e-6  # each node lies in its own triangle
