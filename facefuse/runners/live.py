"""Live preview: camera or video frames fused on the 320 crop path.

The source face is prepared once; each frame's face comes from Face Mesh in tracking mode
(it follows the last frame's landmarks instead of detecting again), and the fusion runs on
a 320 px crop without the photo-only extras (skin smoothing, Poisson).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError
from ..params import FusionParams
from ..pipeline import FaceFuser, PreparedSource, Timings
from ..stages.analysis import FaceAnalyzer
from ..stages.refine import model_path

LIVE_CROP = 320


def live_params(params: FusionParams) -> FusionParams:
    """The camera path's settings: 320 crop, no smoothing or Poisson, one face, and the INT8
    refiner when it is installed (the phone model; the same numbers within 38 dB)."""
    backend = params.backend
    if backend == "ort-fp32" and model_path("ort-int8").exists():
        backend = "ort-int8"
    return params.with_overrides(crop_size=LIVE_CROP, smoothing=0.0, poisson=False,
                                 resolution="original", template_face=0, backend=backend)


@dataclass
class FrameResult:
    image: np.ndarray
    face_found: bool
    ms: float  # processing time of this frame
    fps: float  # frames per second over the last second of frames
    timings: Timings  # ms per stage of this frame (analyse = tracking)


class LiveFuser:
    """Fuses one prepared source face into a stream of frames (not thread-safe: one stream)."""

    def __init__(self, engine: FaceFuser, source: PreparedSource, params: FusionParams
                 ) -> None:
        self.engine = engine
        self.params = live_params(params)
        if source.aligned.size != LIVE_CROP:
            source = engine.prepare_source(source.image, self.params)
        self.source = source
        self.tracker = FaceAnalyzer(static=False)
        self._times: deque[float] = deque(maxlen=60)

    def close(self) -> None:
        self.tracker.close()

    def __enter__(self) -> LiveFuser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def process(self, frame: np.ndarray) -> FrameResult:
        """One RGB frame in, the fused frame out (the frame itself when no face is seen)."""
        start = time.perf_counter()
        timings = Timings()
        with timings.stage("analyse"):
            face = self.tracker.track(frame)
        out = frame
        if face is not None:
            out = self.engine.fuse_face(self.source, frame, face, self.params, timings)
        now = time.perf_counter()
        self._times.append(now)
        recent = [t for t in self._times if now - t <= 1.0]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
        return FrameResult(out, face is not None, (now - start) * 1000, fps, timings)


def read_video(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB frames of a video file."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageError(f"cannot open video {path}")
    try:
        count = 0
        while max_frames is None or count < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            count += 1
    finally:
        cap.release()


def make_face_video(photo: np.ndarray, path: str | Path, frames: int = 120,
                    size: tuple[int, int] = (640, 480), fps: int = 30) -> Path:
    """A camera-like clip from one photo: the face drifts, turns a little and zooms, with
    sensor noise, so the tracker and the fusion see motion."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    h, w = photo.shape[:2]
    rng = np.random.default_rng(0)
    base = min(w / size[0], h / size[1]) * 0.8
    for i in range(frames):
        t = i / frames * 2 * np.pi
        scale = 1 / (base * (1.0 + 0.08 * np.sin(t)))
        angle = 4 * np.sin(2 * t)
        cx = w / 2 + 0.04 * w * np.sin(t)
        cy = h / 2 + 0.03 * h * np.cos(t)
        m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        m[:, 2] += np.array(size) / 2 - np.array([cx, cy])
        frame = cv2.warpAffine(photo, m, size, borderMode=cv2.BORDER_REFLECT)
        noisy = frame.astype(np.float32) + rng.normal(0, 2.0, frame.shape)
        writer.write(cv2.cvtColor(np.clip(noisy, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def video_to_y4m(video: str | Path, path: str | Path, max_frames: int | None = None) -> Path:
    """Write frames as a YUV4MPEG2 (4:2:0) file: Chromium's fake camera reads this format."""
    path = Path(path)
    frames = list(read_video(video, max_frames))
    if not frames:
        raise ImageError(f"no frames in {video}")
    h, w = frames[0].shape[:2]
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            fh.write(b"FRAME\n")
            fh.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path
