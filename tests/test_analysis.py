"""Analysis: real MediaPipe detection and landmarks, measured against hand-placed points."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TEM_FOR_MESH, read_tem

from facefuse import NoFaceError
from facefuse.imageio import load_image
from facefuse.stages.analysis import LEFT_IRIS, RIGHT_IRIS, pick_face


def test_astronaut_face_is_found_with_a_sane_box_and_pose(engine, astronaut):
    faces = engine.analyzer.detect(astronaut, 0.5)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, _ = face.box
    assert 150 < x0 < 200 and 50 < y0 < 100 and 90 < x1 - x0 < 130  # her face, not the suit
    assert face.landmarks.shape == (478, 3)
    assert face.score > 0.8
    yaw, pitch, roll = face.pose
    assert abs(yaw) < 25 and abs(pitch) < 25 and abs(roll) < 15
    # landmarks lie inside (or just around) the box
    pts = face.points
    assert (pts[:, 0] > x0 - 20).all() and (pts[:, 0] < x1 + 20).all()


def test_landmark_error_against_hand_placed_points(engine, london):
    """Mean distance to the .tem points over eyes, mouth corners and chin, per inter-ocular
    distance: the analysis stage must stay within 5% of the eye distance on every face."""
    errors = []
    photos = sorted((london / "neutral").glob("*.jpg"))[::4]
    assert len(photos) >= 10
    for photo in photos:
        tem = read_tem(photo.with_suffix(".tem"))
        face = engine.analyzer.detect(load_image(photo), 0.5)[0]
        iod = np.linalg.norm(tem[0] - tem[1])
        err = [np.linalg.norm(face.points[m] - tem[t]) for m, t in TEM_FOR_MESH.items()]
        errors.append(np.mean(err) / iod)
    print(f"landmark NME (per IOD) over {len(errors)} faces: mean {np.mean(errors):.4f}, "
          f"worst {np.max(errors):.4f}")
    assert np.mean(errors) < 0.035
    assert np.max(errors) < 0.06


def test_small_face_in_a_big_photo(engine, astronaut):
    """A face of ~50 px in a 2000 px photo: found because the mesh runs on a crop."""
    import cv2

    canvas = np.full((1500, 2000, 3), 200, np.uint8)
    small = cv2.resize(astronaut, (230, 230), interpolation=cv2.INTER_AREA)
    canvas[900:1130, 1400:1630] = small
    faces = engine.analyzer.detect(canvas, 0.5)  # nothing at whole-photo scale: tiles
    assert len(faces) == 1
    eyes = faces[0].points[[RIGHT_IRIS, LEFT_IRIS]]
    assert (eyes[:, 0] > 1400).all() and (eyes[:, 1] > 900).all()


def test_several_faces_are_sorted_largest_first(engine, astronaut):
    import cv2

    small = cv2.resize(astronaut, (300, 300), interpolation=cv2.INTER_AREA)
    group = np.hstack([astronaut, np.full((512, 40, 3), 128, np.uint8),
                       np.vstack([small, np.full((212, 300, 3), 128, np.uint8)])])
    faces = engine.analyzer.detect(group, 0.5, thorough=True)
    assert len(faces) == 2
    assert faces[0].width > faces[1].width
    assert faces[1].box[0] > 512  # the small one is on the right


def test_no_face_is_a_clear_error(engine):
    from skimage import data

    faces = engine.analyzer.detect(np.ascontiguousarray(data.coffee()), 0.5)
    assert faces == []
    with pytest.raises(NoFaceError, match="no face found in the template.*det-threshold"):
        pick_face(faces, 0, "template", 0.5)


def test_face_cut_by_the_border_is_still_analysed(engine, astronaut):
    """The left third of her face is outside the photo: still found, landmarks beyond the
    edge are allowed (they feed a crop that pads the border)."""
    cut = np.ascontiguousarray(astronaut[:, 205:])
    faces = engine.analyzer.detect(cut, 0.5)
    assert len(faces) == 1
    assert faces[0].points[:, 0].min() < 5  # part of the face lies beyond the left edge


def test_missing_face_index_names_the_count(engine, astronaut):
    faces = engine.analyzer.detect(astronaut, 0.5)
    with pytest.raises(NoFaceError, match="has 1 face.*face 2 does not exist"):
        pick_face(faces, 2, "template", 0.5)
