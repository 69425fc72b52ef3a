"""An independent judge of fusion results: dlib's HOG face detector, 68-point landmarks and
ResNet face descriptor (the `eval` extra: dlib-bin + face-recognition-models).

facefuse itself never uses these models, so they can judge it without sharing its blind
spots: identity is measured by a face-recognition network trained for that, pose and
expression by a different landmark model.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import BackendError

# A generic 3D face (mm) for solvePnP, at dlib's 68-point indices: nose tip, chin, outer eye
# corners (image left, right), mouth corners. Camera axes: x right, y down, z away from the
# camera, so a frontal face has (yaw, pitch, roll) near 0 rather than near 180 degrees.
MODEL_POINTS = np.array([
    (0.0, 0.0, 0.0), (0.0, 63.6, 12.5), (-43.3, -32.7, 26.0), (43.3, -32.7, 26.0),
    (-28.9, 28.9, 24.1), (28.9, 28.9, 24.1)], dtype=np.float64)
PNP_INDICES = [30, 8, 36, 45, 48, 54]
MOUTH = list(range(48, 68))
LEFT_EYE, RIGHT_EYE = list(range(36, 42)), list(range(42, 48))


def _models_dir() -> Path:
    """The face-recognition-models data folder, found without importing the package (its
    __init__ needs pkg_resources, which new setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the judge needs the eval extra: pip install -e '.[eval]'")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True)
class JudgedFace:
    box: tuple[int, int, int, int]
    landmarks: np.ndarray  # (68, 2)
    descriptor: np.ndarray  # (128,)


class Judge:
    """dlib models loaded once."""

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise BackendError("the judge needs the eval extra: pip install -e '.[eval]' "
                               "(dlib-bin, face-recognition-models)") from None
        models = _models_dir()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def _best_rect(self, rgb: np.ndarray, max_side: int | None = 800):
        h, w = rgb.shape[:2]
        f = min(1.0, max_side / max(h, w)) if max_side else 1.0
        small = rgb if f == 1 else cv2.resize(rgb, (round(w * f), round(h * f)),
                                              interpolation=cv2.INTER_AREA)
        rects, scores, _ = self.detector.run(np.ascontiguousarray(small), 1, 0.0)
        if not rects:
            return None
        r = rects[int(np.argmax(scores))]
        return self._dlib.rectangle(int(r.left() / f), int(r.top() / f), int(r.right() / f),
                                    int(r.bottom() / f))

    def face_landmarks(self, rgb: np.ndarray, max_side: int | None = 800
                       ) -> np.ndarray | None:
        """68 landmarks of the most confident face, or None (no descriptor: faster).
        `max_side` None detects at full resolution, as the textbook face swap does."""
        rect = self._best_rect(rgb, max_side)
        if rect is None:
            return None
        shape = self.shape(np.ascontiguousarray(rgb), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def face(self, rgb: np.ndarray) -> JudgedFace | None:
        """The most confident face dlib finds (HOG, on a copy of at most 800 px), or None."""
        rect = self._best_rect(rgb)
        if rect is None:
            return None
        shape = self.shape(np.ascontiguousarray(rgb), rect)
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        desc = np.array(self.encoder.compute_face_descriptor(np.ascontiguousarray(rgb), shape))
        return JudgedFace((rect.left(), rect.top(), rect.right(), rect.bottom()), pts, desc)


def descriptor_distance(a: JudgedFace, b: JudgedFace) -> float:
    """Euclidean distance of dlib descriptors: below ~0.6 dlib calls it the same person."""
    return float(np.linalg.norm(a.descriptor - b.descriptor))


def head_pose(face: JudgedFace, image_shape: tuple[int, ...]) -> np.ndarray:
    """Yaw, pitch, roll (degrees) by solvePnP against a generic 3D face."""
    h, w = image_shape[:2]
    cam = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], dtype=np.float64)
    _, rvec, _ = cv2.solvePnP(MODEL_POINTS, face.landmarks[PNP_INDICES], cam, None,
                              flags=cv2.SOLVEPNP_SQPNP)
    rot, _ = cv2.Rodrigues(rvec)
    sy = np.hypot(rot[0, 0], rot[1, 0])
    pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    yaw = np.degrees(np.arctan2(-rot[2, 0], sy))
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    return np.array([yaw, pitch, roll])


def pose_difference(a: JudgedFace, b: JudgedFace, shape: tuple[int, ...]) -> float:
    """Largest per-axis head-rotation difference in degrees (angles wrapped)."""
    d = head_pose(a, shape) - head_pose(b, shape)
    d = (d + 180) % 360 - 180
    return float(np.abs(d).max())


def mouth_shape(face: JudgedFace) -> np.ndarray:
    """The 20 mouth points in an eye-normalised frame: origin between the eyes, x along the
    eye line, unit = inter-ocular distance."""
    left = face.landmarks[LEFT_EYE].mean(axis=0)
    right = face.landmarks[RIGHT_EYE].mean(axis=0)
    axis = right - left
    iod = np.linalg.norm(axis)
    c, s = axis / iod
    rot = np.array([[c, s], [-s, c]])
    return (face.landmarks[MOUTH] - (left + right) / 2) @ rot.T / iod


def expression_difference(a: JudgedFace, b: JudgedFace) -> float:
    """Mean distance of the eye-normalised mouth points (shape only: centred)."""
    ma, mb = mouth_shape(a), mouth_shape(b)
    return float(np.linalg.norm((ma - ma.mean(0)) - (mb - mb.mean(0)), axis=1).mean())
