"""Analyse: find faces, their 478 landmarks and head pose, with MediaPipe's trained models.

Detection uses the full-range BlazeFace model on the whole photo (boxes and scores), then Face
Mesh with refined landmarks runs on a crop around each box, so a small face in a big photo
gets as many landmark pixels as a selfie. The models ship inside the mediapipe wheel; nothing
is downloaded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import NoFaceError, ParameterError

# Landmark indices of MediaPipe's 478-point mesh that the other stages name.
RIGHT_IRIS, LEFT_IRIS = 468, 473  # subject's right eye is on the image's left
NOSE_TIP = 1
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
CHIN, FOREHEAD = 152, 10
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14

DETECT_MAX_SIDE = 1920  # the detector runs at 192 px internally; more only costs time
MESH_CROP_SIDE = 384
# The detector sees the photo at 192 px and needs a face of ~20 px there, i.e. a tenth of
# what it looks at. Smaller faces are found by looking at overlapping tiles, down to this.
MIN_TILE = 320
TILE_OVERLAP = 0.25


@dataclass(frozen=True)
class Face:
    """One analysed face, in the pixel coordinates of the image it was found in."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    landmarks: np.ndarray = field(repr=False)  # (478, 3) float32: x, y, z (z in px, + = away)
    pose: tuple[float, float, float]  # yaw, pitch, roll in degrees

    @property
    def points(self) -> np.ndarray:
        """(478, 2) x, y landmarks."""
        return self.landmarks[:, :2]

    @property
    def keypoints(self) -> np.ndarray:
        """Five key points: right eye, left eye, nose tip, right and left mouth corner."""
        idx = [RIGHT_IRIS, LEFT_IRIS, NOSE_TIP, MOUTH_RIGHT, MOUTH_LEFT]
        return self.landmarks[idx, :2]

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def interocular(self) -> float:
        return float(np.linalg.norm(self.landmarks[LEFT_IRIS, :2] -
                                    self.landmarks[RIGHT_IRIS, :2]))

    def mouth_open_ratio(self) -> float:
        """Inner-lip gap over mouth width: above ~0.08 the teeth/mouth interior show."""
        gap = np.linalg.norm(self.landmarks[LOWER_LIP_INNER, :2] -
                             self.landmarks[UPPER_LIP_INNER, :2])
        width = np.linalg.norm(self.landmarks[MOUTH_LEFT, :2] - self.landmarks[MOUTH_RIGHT, :2])
        return float(gap / max(width, 1e-6))


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees from the 3D landmarks (yaw > 0: face turned to image right,
    pitch > 0: looking down, roll > 0: head tilted clockwise in the image)."""
    x_axis = landmarks[LEFT_EYE_OUTER] - landmarks[RIGHT_EYE_OUTER]
    y_axis = landmarks[CHIN] - landmarks[FOREHEAD]
    x_axis = x_axis / (np.linalg.norm(x_axis) + 1e-9)
    y_axis = y_axis - x_axis * np.dot(y_axis, x_axis)
    y_axis = y_axis / (np.linalg.norm(y_axis) + 1e-9)
    yaw = np.degrees(np.arcsin(np.clip(x_axis[2], -1, 1)))
    pitch = np.degrees(np.arcsin(np.clip(y_axis[2], -1, 1)))
    roll = np.degrees(np.arctan2(x_axis[1], x_axis[0]))
    return float(yaw), float(pitch), float(roll)


class FaceAnalyzer:
    """Owns the MediaPipe graphs (not thread-safe, so calls are serialised with a lock).

    `static=False` switches Face Mesh to tracking mode for video: it reuses the last frame's
    landmarks as the next region of interest, which is what makes the camera path fast.
    """

    def __init__(self, static: bool = True) -> None:
        import mediapipe as mp  # imported here: it takes ~1 s and only analysis needs it

        self._static = static
        self._lock = threading.Lock()
        # The detector runs with a low floor; det_threshold filters per call, so one
        # analyzer serves every threshold the user picks.
        self._detector_full = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=0.05)
        self._detector_short = mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=0.05)
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=0.3)
        self._tracker = None
        if not static:
            self._tracker = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=0.5, min_tracking_confidence=0.5)

    def close(self) -> None:
        for graph in (self._detector_full, self._detector_short, self._mesh, self._tracker):
            if graph is not None:
                graph.close()

    def __enter__(self) -> FaceAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detect(self, rgb: np.ndarray, det_threshold: float = 0.5, *, thorough: bool = False
               ) -> list[Face]:
        """Faces scoring at least `det_threshold`, largest first.

        The whole photo is searched first. Overlapping tiles are searched too when that
        finds nothing or when `thorough` (every face wanted: group photos, face numbering),
        so faces down to ~1/10 of a 320 px tile are found in photos of any size.
        """
        h, w = rgb.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = rgb if scale == 1.0 else cv2.resize(
            rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        with self._lock:
            boxes = self._detect_boxes(self._detector_full, small, det_threshold)
            if not boxes:  # close-up selfies can defeat the full-range model
                boxes = self._detect_boxes(self._detector_short, small, det_threshold)
            if thorough or not boxes:
                boxes = _merge_boxes(boxes + self._detect_tiles(small, det_threshold))
            faces = []
            for (x0, y0, x1, y1), score in boxes:
                box = (x0 / scale, y0 / scale, x1 / scale, y1 / scale)
                landmarks = self._mesh_in_box(rgb, box)
                if landmarks is not None:
                    faces.append(Face(box=box, score=score, landmarks=landmarks,
                                      pose=head_pose(landmarks)))
        faces.sort(key=lambda f: f.width * (f.box[3] - f.box[1]), reverse=True)
        return faces

    def track(self, rgb: np.ndarray) -> Face | None:
        """One video frame in tracking mode: landmarks of the main face, or None."""
        if self._tracker is None:
            raise ParameterError("this analyzer was made for photos; use static=False")
        with self._lock:
            result = self._tracker.process(rgb)
        if not result.multi_face_landmarks:
            return None
        h, w = rgb.shape[:2]
        lm = _landmarks_to_array(result.multi_face_landmarks[0], w, h)
        x0, y0 = lm[:, :2].min(axis=0)
        x1, y1 = lm[:, :2].max(axis=0)
        return Face(box=(float(x0), float(y0), float(x1), float(y1)), score=1.0,
                    landmarks=lm, pose=head_pose(lm))

    def _detect_tiles(self, rgb: np.ndarray, threshold: float):
        """Boxes found in overlapping tiles, halving the tile size down to MIN_TILE."""
        h, w = rgb.shape[:2]
        found = []
        tile = max(h, w) / 2
        while tile >= MIN_TILE:
            t = int(tile)
            stride = max(1, int(t * (1 - TILE_OVERLAP)))
            for y in _starts(h, t, stride):
                for x in _starts(w, t, stride):
                    part = np.ascontiguousarray(rgb[y:y + t, x:x + t])
                    for (x0, y0, x1, y1), score in self._detect_boxes(
                            self._detector_full, part, threshold):
                        found.append(((x0 + x, y0 + y, x1 + x, y1 + y), score))
            tile /= 2
        return found

    @staticmethod
    def _detect_boxes(detector, rgb: np.ndarray, threshold: float):
        h, w = rgb.shape[:2]
        result = detector.process(rgb)
        boxes = []
        for det in result.detections or []:
            score = float(det.score[0])
            if score < threshold:
                continue
            rb = det.location_data.relative_bounding_box
            x0, y0 = rb.xmin * w, rb.ymin * h
            boxes.append(((x0, y0, x0 + rb.width * w, y0 + rb.height * h), score))
        return boxes

    def _mesh_in_box(self, rgb: np.ndarray, box) -> np.ndarray | None:
        """Face Mesh on a square crop around `box`, landmarks mapped back to image pixels."""
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        side = 2.0 * max(x1 - x0, y1 - y0)
        s = MESH_CROP_SIDE / side
        # crop = s * (p - (c - side/2)); warpAffine pads what lies outside the photo,
        # so a face cut by the border still gets a centred crop.
        m = np.array([[s, 0, -s * (cx - side / 2)], [0, s, -s * (cy - side / 2)]])
        crop = cv2.warpAffine(rgb, m, (MESH_CROP_SIDE, MESH_CROP_SIDE),
                              flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        lm = _landmarks_to_array(result.multi_face_landmarks[0], MESH_CROP_SIDE,
                                 MESH_CROP_SIDE)
        lm[:, :2] = lm[:, :2] / s + np.array([cx - side / 2, cy - side / 2])
        lm[:, 2] = lm[:, 2] / s
        # The mesh must belong to this box, not to a neighbour that shares the crop.
        mx, my = lm[:, :2].mean(axis=0)
        if not (x0 - 0.25 * (x1 - x0) <= mx <= x1 + 0.25 * (x1 - x0)
                and y0 - 0.25 * (y1 - y0) <= my <= y1 + 0.25 * (y1 - y0)):
            return None
        return lm


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile offsets covering [0, length) with tiles of `tile` px, the last one flush."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-9)


def _merge_boxes(boxes):
    """Non-maximum suppression across the whole photo and the tiles (best score wins).

    A box mostly inside a kept one is the same face seen cut by a tile edge: dropped too."""
    kept = []
    for box, score in sorted(boxes, key=lambda b: -b[1]):
        area = (box[2] - box[0]) * (box[3] - box[1])
        duplicate = False
        for other, _ in kept:
            ix = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
            iy = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
            if _iou(box, other) > 0.3 or ix * iy > 0.6 * area:
                duplicate = True
                break
        if not duplicate:
            kept.append((box, score))
    return kept


def _landmarks_to_array(face_landmarks, width: int, height: int) -> np.ndarray:
    lm = np.array([(p.x, p.y, p.z) for p in face_landmarks.landmark], dtype=np.float32)
    lm[:, 0] *= width
    lm[:, 1] *= height
    lm[:, 2] *= width  # MediaPipe scales z like x
    return lm


def pick_face(faces: list[Face], index: int, name: str, det_threshold: float) -> Face:
    """The face at `index` (0 = largest), or a NoFaceError that says what to try."""
    if not faces:
        raise NoFaceError(
            f"no face found in the {name}: use a photo with a clearly visible face, "
            f"or lower --det-threshold (now {det_threshold})")
    if index >= len(faces):
        raise NoFaceError(
            f"the {name} has {len(faces)} face(s); face {index} does not exist "
            f"(faces are numbered from 0, largest first)")
    return faces[index]
