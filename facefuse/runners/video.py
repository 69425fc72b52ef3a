"""Video files: the source face fused into every frame, steady, with the container kept.

Two passes over the frames, both decoded with PyAV (FFmpeg in its wheel):

1. **track**: Face Mesh in tracking mode (the camera path's `LiveFuser` tracker) gives each
   frame's landmarks; scene cuts are found from frame thumbnails. The landmark tracks are
   then smoothed forward and backward in time (a zero-phase Gaussian, so nothing lags the
   mouth), reset at cuts; gaps of a few frames between two sightings in one scene are
   bridged, anything longer passes through untouched (no face flashes in or out).
2. **fuse**: decoding, fusing (`FaceFuser.fuse_face` with the smoothed face, worker
   threads) and encoding overlap. Frames are encoded in chunks, each its own file in a
   work folder renamed into place when complete, so an interrupted run resumes from the
   last whole chunk (`resume=True`). Chunks are then muxed into the output with the audio
   packets copied bit-exact, every frame's timestamp and the rotation (display matrix)
   kept; the output appears only when complete (temp file + rename).

Rotated phone videos are fused in their display orientation and stored as they came.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import FaceFuseError, ImageError, NoFaceError, ParameterError
from ..imageio import (
    FILE_MODE,
    PROVENANCE_TEXT,
    ImageSource,
    check_writable_folder,
    load_image,
    remove_stale_temporaries,
)
from ..params import FusionParams
from ..pipeline import FaceFuser, PreparedSource, Timings
from ..stages.analysis import Face, head_pose
from .live import LiveFuser

# Output containers by extension, and the encoders offered (all inside PyAV's wheel).
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".m4v": "mp4", ".mkv": "matroska",
              ".webm": "webm"}
CODECS = ("libx264", "libx265", "libvpx-vp9", "libsvtav1")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
           "slower", "veryslow")
CHUNK_FRAMES = 96  # frames per resumable chunk (about 3-4 s)
BRIDGE_FRAMES = 3  # a face lost for at most this many frames in one scene is bridged
SMOOTH_SIGMA = 1.2  # frames; the landmark tracks' temporal Gaussian
CUT_DIFF = 28.0  # mean abs difference of 64x36 grey thumbnails (0-255) ...
CUT_HIST = 0.6  # ... and histogram intersection below this: a scene cut
WORK_VERSION = 1

Progress = Callable[[str, int, int], None]  # (phase, done, total)
T = TypeVar("T")


@dataclass(frozen=True)
class EncodeOptions:
    """How the fused frames are encoded (the audio is copied, not encoded)."""

    codec: str = "libx264"
    crf: int = 18
    preset: str = "veryfast"

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ParameterError(f"codec must be one of {', '.join(CODECS)}; got {self.codec!r}")
        if not 0 <= self.crf <= 51:
            raise ParameterError(f"crf must be between 0 and 51, got {self.crf}")
        if self.preset not in PRESETS:
            raise ParameterError(f"encoder preset must be one of {', '.join(PRESETS)}; "
                                 f"got {self.preset!r}")

    def codec_options(self) -> dict[str, str]:
        """FFmpeg encoder options: constant quality, no B-frames (so chunks join with
        decode order = display order, and every timestamp stays exact)."""
        if self.codec in ("libx264", "libx265"):
            opts = {"crf": str(self.crf), "preset": self.preset, "bf": "0"}
            if self.codec == "libx265":
                opts["x265-params"] = "bframes=0:log-level=error"
            return opts
        if self.codec == "libvpx-vp9":
            speed = {"ultrafast": 8, "superfast": 7, "veryfast": 6, "faster": 5, "fast": 4,
                     "medium": 3, "slow": 2, "slower": 1, "veryslow": 0}[self.preset]
            return {"crf": str(min(self.crf * 63 // 51, 63)), "b": "0",
                    "deadline": "realtime" if speed >= 6 else "good",
                    "cpu-used": str(speed), "lag-in-frames": "0"}
        speed = {"ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9, "fast": 8,
                 "medium": 6, "slow": 4, "slower": 2, "veryslow": 1}[self.preset]
        return {"crf": str(min(self.crf * 63 // 51, 63)), "preset": str(speed),
                "svtav1-params": "pred-struct=1"}


@dataclass(frozen=True)
class VideoOptions:
    """Everything about a video run that is not a fusion parameter."""

    start: float | None = None  # seconds; frames before it are left out
    end: float | None = None  # seconds; frames from it on are left out
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    smooth: bool = True  # temporal smoothing of the landmark tracks
    workers: int = 0  # fusion threads (0: one per core)
    chunk_frames: int = CHUNK_FRAMES  # frames per resumable chunk

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and (value != value or value < 0):
                raise ParameterError(f"--{name} must be 0 seconds or more, got {value}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ParameterError(f"--end ({self.end}) must be after --start ({self.start})")
        if self.workers < 0:
            raise ParameterError("workers must be 0 or more")
        if self.chunk_frames < 1:
            raise ParameterError("chunk_frames must be 1 or more")


@dataclass
class VideoReport:
    """What a run did, for the CLI, the WebUI and the measurements."""

    output: Path
    frames: int
    fused: int  # frames with a face fused in
    bridged: int  # frames whose face was bridged over a short tracking gap
    cuts: int
    audio: list[str]  # per audio stream: "copied" or "re-encoded (<why>)"
    rotation: int
    seconds: float
    resumed_chunks: int = 0
    subtitles: list[str] = field(default_factory=list)  # per subtitle stream, as audio
    stage_ms: dict[str, float] = field(default_factory=dict)
    stated_frames: int = 0  # the container's own count for the whole video (0: unknown)

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    @property
    def cut_short(self) -> str:
        """A note when the file ended before the frames its header states (a recording cut
        off, a copy interrupted): the output has only what could be read. Empty otherwise."""
        if self.frames >= self.stated_frames:
            return ""
        return (f"the video's header states {self.stated_frames} frames but only "
                f"{self.frames} could be read: the file may be cut short")


# ------------------------------------------------------------------ reading


def open_video(path: str | os.PathLike, name: str = "template video"):
    """An input container with one decodable video stream, or an ImageError that says why."""
    import av

    path = Path(path)
    if not path.exists():
        raise ImageError(f"{name} file not found: {path}")
    if path.is_dir():
        raise ImageError(f"{name} is a folder, not a video: {path}")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        # FFmpeg's reason without the path it appends (a server's upload folder, say)
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ImageError(f"{name} ({path.name}) is not a readable video: {reason}") from None
    if not container.streams.video:
        container.close()
        raise ImageError(f"{name} ({path.name}) has no video stream")
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        container.close()
        raise ImageError(f"{name} ({path.name}) is a still image, not a video: use "
                         "`facefuse fuse` for photos")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.is_decoder:
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        container.close()
        raise ImageError(f"{name} ({path.name}): its video codec ({codec}) is not supported")
    if not stream.codec_context.width or not stream.codec_context.height:
        container.close()
        raise ImageError(f"{name} ({path.name}): the video stream has no picture size "
                         "(unsupported or damaged codec)")
    stream.thread_type = "AUTO"
    return container


def _in_range(t: Fraction, options: VideoOptions) -> int:
    """-1 before the range, 0 inside, 1 after."""
    if options.start is not None and t < Fraction(options.start):
        return -1
    if options.end is not None and t >= Fraction(options.end):
        return 1
    return 0


def decode_frames(path: str | os.PathLike, options: VideoOptions, *,
                  from_pts: int | None = None) -> Iterator[tuple[int, object]]:
    """(pts, av.VideoFrame) of the frames in the run's time range, in display order.

    Decoding is threaded; iterating the container to its end flushes the decoder, which
    is what keeps the last frames. `from_pts` seeks to the keyframe before it (resume)."""
    import av

    container = open_video(path)
    stream = container.streams.video[0]
    tb = stream.time_base
    try:
        if from_pts is not None:
            with contextlib.suppress(av.FFmpegError):
                container.seek(from_pts, stream=stream, backward=True)
        last = None
        for frame in container.decode(stream):
            if frame.pts is None:  # some raw streams: count in frame durations
                frame.pts = 0 if last is None else last + 1
            if last is not None and frame.pts <= last:
                continue  # a duplicate after a seek
            last = frame.pts
            if from_pts is not None and frame.pts < from_pts:
                continue
            where = _in_range(frame.pts * tb, options)
            if where < 0:
                continue
            if where > 0:
                break
            yield frame.pts, frame
    except av.FFmpegError as exc:
        raise ImageError(f"the template video could not be decoded: {exc}") from None
    finally:
        container.close()


def _exact():
    """swscale with accurate rounding: without it YUV -> RGB -> YUV drifts by ~1 %."""
    from av.video.reformatter import Interpolation

    return Interpolation.BILINEAR | Interpolation.ACCURATE_RND


def display_rgb(frame, rotation: int) -> np.ndarray:
    """The frame as the viewer sees it: RGB, turned by the display matrix's rotation."""
    rgb = frame.to_ndarray(format="rgb24", interpolation=_exact())
    k = round(rotation / 90) % 4
    # cv2.rotate equals np.rot90(rgb, k) made contiguous, about 15x faster at 720p
    return cv2.rotate(rgb, _CV2_TURNS[k]) if k else rgb


# np.rot90 turns (counter-clockwise) as cv2.rotate codes
_CV2_TURNS = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180,
              3: cv2.ROTATE_90_CLOCKWISE}


# ------------------------------------------------------------------ pass 1: track

READ_AHEAD = 4  # decoded frames waiting for the tracker (each 2.7 MB at 720p)


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items` produced on a background thread, at most `depth` ahead of the consumer;
    an error there is raised here, and stopping early stops the producer."""
    done = object()
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    with contextlib.suppress(queue.Full):
                        ready.put(item, timeout=0.1)
                        break
                if stop.is_set():
                    return
        except BaseException as exc:  # surfaced in the consumer
            failure.append(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    ready.put(done, timeout=0.1)
                    break

    producer = threading.Thread(target=produce, name="read-ahead", daemon=True)
    producer.start()
    try:
        while (item := ready.get()) is not done:
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        producer.join()


@dataclass
class Track:
    """Per frame of the run: its pts, the main face's landmarks (NaN: none) and scene."""

    pts: np.ndarray  # (T,) int64, in the stream's time base
    durations: np.ndarray  # (T,) int64, each frame's duration (0: unknown)
    landmarks: np.ndarray  # (T, 478, 3) float32, NaN where no face
    scene: np.ndarray  # (T,) int32, increments at each cut
    rotation: int
    time_base: Fraction

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.landmarks[:, 0, 0])

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".part.npz")
        np.savez(tmp, pts=self.pts, durations=self.durations, landmarks=self.landmarks,
                 scene=self.scene, rotation=self.rotation,
                 time_base=np.array([self.time_base.numerator, self.time_base.denominator]))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Track:
        with np.load(path) as z:
            tb = z["time_base"]
            return cls(z["pts"], z["durations"], z["landmarks"], z["scene"],
                       int(z["rotation"]), Fraction(int(tb[0]), int(tb[1])))


def _thumb(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (64, 36), interpolation=cv2.INTER_AREA).astype(np.float32)


def is_cut(previous: np.ndarray, current: np.ndarray) -> bool:
    """A scene cut between two thumbnails: a large change of both pixels and histogram."""
    if float(np.abs(current - previous).mean()) < CUT_DIFF:
        return False
    h1 = np.histogram(previous, 32, (0, 256))[0] / previous.size
    h2 = np.histogram(current, 32, (0, 256))[0] / current.size
    return float(np.minimum(h1, h2).sum()) < CUT_HIST or \
        float(np.abs(current - previous).mean()) > 2 * CUT_DIFF


def track_video(live: LiveFuser, path: str | os.PathLike, options: VideoOptions,
                progress: Progress | None = None, total: int = 0) -> Track:
    """Pass 1: landmarks of the main face in every frame (tracking mode), and the cuts."""
    pts, durations, marks, scene = [], [], [], []
    rotation, scene_id, previous = 0, 0, None
    nan = np.full((478, 3), np.nan, np.float32)
    container = open_video(path)
    tb = container.streams.video[0].time_base
    container.close()

    def pictures() -> Iterator[tuple[int, object, np.ndarray, np.ndarray]]:
        for p, frame in decode_frames(path, options):
            rgb = display_rgb(frame, int(frame.rotation or 0))
            yield p, frame, rgb, _thumb(rgb)

    # Face Mesh tracks one frame after the other; decoding and turning the next frames
    # meanwhile keeps the second core busy.
    for i, (p, frame, rgb, thumb) in enumerate(read_ahead(pictures(), READ_AHEAD)):
        if i == 0:
            rotation = int(frame.rotation or 0)
        if previous is not None and is_cut(previous, thumb):
            scene_id += 1
        previous = thumb
        face = live.tracker.track(rgb)
        pts.append(p)
        durations.append(int(frame.duration or 0))
        marks.append(nan if face is None else face.landmarks.astype(np.float32))
        scene.append(scene_id)
        if progress:
            progress("track", i + 1, total)
    if not pts:
        raise ParameterError("no frames in the chosen time range (--start/--end)")
    return Track(np.array(pts, np.int64), np.array(durations, np.int64),
                 np.stack(marks), np.array(scene, np.int32), rotation, Fraction(tb))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _gaussian_along_time(values: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian over axis 0 with the ends held (a forward-backward smoother)."""
    if sigma <= 0 or len(values) < 2:
        return values
    radius = max(1, round(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([np.repeat(values[:1], radius, 0), values,
                             np.repeat(values[-1:], radius, 0)])
    out = np.zeros_like(values, dtype=np.float64)
    for k, w in enumerate(kernel):
        out += w * padded[k:k + len(values)]
    return out.astype(values.dtype)


def smooth_track(track: Track, sigma: float = SMOOTH_SIGMA,
                 bridge: int = BRIDGE_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """The landmarks to fuse with, and which frames were bridged.

    Within each scene: gaps of at most `bridge` frames between two sightings are filled by
    linear interpolation; every run of frames with a face is then smoothed in time. Nothing
    crosses a cut, and nothing is extrapolated past the last sighting."""
    marks = track.landmarks.copy()
    found = track.found
    bridged = np.zeros(len(marks), bool)
    for gap_start, gap_end in _runs(~found):
        if gap_start == 0 or gap_end == len(marks) or gap_end - gap_start > bridge:
            continue
        if track.scene[gap_start - 1] != track.scene[gap_end]:
            continue
        a, b = marks[gap_start - 1], marks[gap_end]
        n = gap_end - gap_start + 1
        for j, i in enumerate(range(gap_start, gap_end), start=1):
            marks[i] = a + (b - a) * (j / n)
        bridged[gap_start:gap_end] = True
    have = found | bridged
    if sigma > 0:
        cuts = np.concatenate([[False], np.diff(track.scene) != 0])
        for start, end in _runs(have):
            # split at cuts inside the run
            bounds = [start, *[i for i in range(start + 1, end) if cuts[i]], end]
            for s, e in itertools.pairwise(bounds):
                marks[s:e] = _gaussian_along_time(marks[s:e], sigma)
    return marks, bridged


def face_from_landmarks(landmarks: np.ndarray) -> Face:
    """A Face for `fuse_face` from (smoothed) landmarks."""
    lm = landmarks.astype(np.float32)
    x0, y0 = lm[:, :2].min(axis=0)
    x1, y1 = lm[:, :2].max(axis=0)
    return Face(box=(float(x0), float(y0), float(x1), float(y1)), score=1.0, landmarks=lm,
                pose=head_pose(lm))


# ------------------------------------------------------------------ pass 2: fuse + encode


def _chunk_path(work: Path, k: int) -> Path:
    return work / f"chunk-{k:05d}.nut"


def _encode_chunks(frames: Iterator[tuple[int, object]], track: Track, encode: EncodeOptions,
                   work: Path, chunk_frames: int, width: int, height: int,
                   progress: Progress | None, done_before: int) -> None:
    """Encode (pts, av.VideoFrame) into chunk files; a chunk is renamed into place whole."""
    import av

    index = {int(p): i for i, p in enumerate(track.pts)}
    container = stream = None
    chunk = -1
    done = done_before
    try:
        for p, frame in frames:
            i = index[int(p)]
            k = i // chunk_frames
            if k != chunk:
                if container is not None:
                    _finish_chunk(container, stream, work, chunk)
                chunk = k
                part = _chunk_path(work, k).with_suffix(".part")
                container = av.open(str(part), "w", format="nut")
                stream = container.add_stream(encode.codec, options=encode.codec_options())
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.time_base = track.time_base
                stream.codec_context.time_base = track.time_base
            frame.pts = int(p)
            frame.time_base = track.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
            done += 1
            if progress:
                progress("fuse", done, len(track.pts))
        if container is not None:
            _finish_chunk(container, stream, work, chunk)
            container = None
    finally:
        if container is not None:
            container.close()


def _finish_chunk(container, stream, work: Path, k: int) -> None:
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    os.replace(_chunk_path(work, k).with_suffix(".part"), _chunk_path(work, k))


def _fused_frames(engine: FaceFuser, source: PreparedSource, params: FusionParams,
                  frames: Iterator[tuple[int, object]], faces: dict[int, np.ndarray],
                  rotation: int, workers: int, timings: Timings
                  ) -> Iterator[tuple[int, object]]:
    """(pts, frame to encode): fused on worker threads, in order; a frame without a face
    is the decoded frame itself, untouched."""

    def fuse_one(p: int, frame) -> tuple[int, object]:
        landmarks = faces.get(int(p))
        if landmarks is None:
            return p, frame
        local = Timings()
        rgb = display_rgb(frame, rotation)
        out = engine.fuse_face(source, rgb, face_from_landmarks(landmarks), params, local)
        with lock:
            for k, v in local.items():
                timings[k] = timings.get(k, 0.0) + v
        return p, changed_frame(frame, rgb, out, rotation)

    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fuse") as pool:
        # Frames are decoded and handed to the pool on a read-ahead thread, a few ahead of
        # the encoder; results come back in order. Stopping early drops what is queued.
        jobs = (pool.submit(fuse_one, p, frame) for p, frame in frames)
        try:
            for job in read_ahead(jobs, workers * 3):
                yield job.result()
        finally:
            pool.shutdown(cancel_futures=True)


def changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int] | None:
    """Rows y0:y1 and columns x0:x1 bounding where two same-shaped contiguous images
    differ, or None. Compares whole rows as bytes first (a full-frame per-pixel `any`
    costs ~15 ms at 720p), then columns only inside the changed rows."""
    h, w = before.shape[:2]
    rows = np.flatnonzero((before.reshape(h, -1) != after.reshape(h, -1)).any(axis=1))
    if not len(rows):
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    band = (before[y0:y1].reshape(y1 - y0, w, -1) != after[y0:y1].reshape(y1 - y0, w, -1))
    cols = np.flatnonzero(band.any(axis=(0, 2)))
    return y0, y1, int(cols[0]), int(cols[-1]) + 1


def stored_box(box: tuple[int, int, int, int], display_shape: tuple[int, ...], k: int
               ) -> tuple[int, int, int, int]:
    """A display-orientation box (y0, y1, x0, x1) in the stored frame, where the display
    image is np.rot90(stored, k)."""
    y0, y1, x0, x1 = box
    hd, wd = display_shape[:2]
    if k == 1:  # display[i, j] = stored[j, W - 1 - i], W = hd
        return x0, x1, hd - y1, hd - y0
    if k == 2:
        return hd - y1, hd - y0, wd - x1, wd - x0
    if k == 3:  # display[i, j] = stored[H - 1 - j, i], H = wd
        return wd - x1, wd - x0, y0, y1
    return box


def changed_frame(frame, before: np.ndarray, after: np.ndarray, rotation: int = 0):
    """The frame to encode: the decoded YUV frame with only the box that fusion changed
    replaced (converted alone), so everything outside the face stays bit for bit as
    decoded. `before` and `after` are contiguous RGB as displayed (turned by `rotation`
    from the stored frame)."""
    import av

    k = round(rotation / 90) % 4
    if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(after, -k)),
                                          format="rgb24")
    box = changed_box(before, after)
    if box is None:
        return frame
    y0, y1, x0, x1 = stored_box(box, after.shape, k)
    y0, y1 = y0 // 2 * 2, (y1 + 1) // 2 * 2
    x0, x1 = x0 // 2 * 2, (x1 + 1) // 2 * 2
    after = np.rot90(after, -k)  # a view: only the box below is copied
    h, w = frame.height, frame.width
    bh, bw = y1 - y0, x1 - x0
    box = av.VideoFrame.from_ndarray(np.ascontiguousarray(after[y0:y1, x0:x1]),
                                     format="rgb24")
    new = box.reformat(format="yuv420p", interpolation=_exact()).to_ndarray()
    merged = frame.to_ndarray()  # I420: the Y, U and V planes one after the other
    flat, box_flat = merged.reshape(-1), new.reshape(-1)
    for start, box_start, side, box_side, step in (
            (0, 0, (h, w), (bh, bw), 1),
            (h * w, bh * bw, (h // 2, w // 2), (bh // 2, bw // 2), 2),
            (h * w * 5 // 4, bh * bw * 5 // 4, (h // 2, w // 2), (bh // 2, bw // 2), 2)):
        plane = flat[start:start + side[0] * side[1]].reshape(side)
        plane[y0 // step:y1 // step, x0 // step:x1 // step] = box_flat[
            box_start:box_start + box_side[0] * box_side[1]].reshape(box_side)
    return av.VideoFrame.from_ndarray(merged, format="yuv420p")


# ------------------------------------------------------------------ mux


def _video_packets(work: Path, chunks: int, track: Track, offset: int) -> Iterator:
    import av

    last_duration = int(track.durations[-1]) if len(track.durations) else 0
    next_pts = dict(zip(track.pts[:-1].tolist(), track.pts[1:].tolist(), strict=True))
    for k in range(chunks):
        with av.open(str(_chunk_path(work, k))) as chunk:
            for packet in chunk.demux(chunk.streams.video[0]):
                if packet.size == 0 or packet.pts is None:
                    continue
                # (NUT may store another time base: back to the input's, exactly)
                p = round(Fraction(packet.pts) * packet.time_base / track.time_base)
                packet.time_base = track.time_base
                packet.duration = next_pts.get(p, p + last_duration) - p
                packet.pts = packet.dts = p - offset
                yield packet


def _template_stream(work: Path):
    """An open chunk container whose stream lends the encoder's parameters (extradata)."""
    import av

    return av.open(str(_chunk_path(work, 0)))


def _mux(template_video: Path, work: Path, track: Track, output: Path, options: VideoOptions
         ) -> tuple[list[str], list[str]]:
    """Chunks + the input's audio and subtitles -> `output` (written to a temp file,
    renamed). Returns what happened to each audio and each subtitle stream."""
    import av

    fmt = CONTAINERS[output.suffix.lower()]
    chunks = (len(track.pts) + options.chunk_frames - 1) // options.chunk_frames
    offset = int(track.pts[0]) if options.start is not None else 0
    offset_time = offset * track.time_base
    remove_stale_temporaries(output, suffix=output.suffix)
    fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.",
                                    suffix=output.suffix)
    os.fchmod(fd, FILE_MODE)  # mkstemp's file is private; the video is a saved result
    os.close(fd)
    tmp = Path(tmp_name)
    audio_notes: list[str] = []
    subtitle_notes: list[str] = []
    try:
        container_options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        with av.open(str(template_video), metadata_errors="ignore") as source, \
                _template_stream(work) as chunk0, \
                av.open(str(tmp), "w", format=fmt, options=container_options) as out:
            # the AI-generated tag, where every container keeps it (MP4 ©cmt/desc, MKV tags)
            out.metadata.update({"comment": PROVENANCE_TEXT, "description": PROVENANCE_TEXT,
                                 "encoder": "facefuse"})
            vout = out.add_stream_from_template(chunk0.streams.video[0])
            vout.time_base = track.time_base
            if track.rotation:
                vout.set_display_rotation(track.rotation)
            streams: list[Iterator] = [_video_packets(work, chunks, track, offset)]
            for ain in source.streams.audio:
                packets, note = _audio_packets(source, ain, out, offset_time, options)
                audio_notes.append(note)
                if packets is not None:
                    streams.append(packets)
            for sin in source.streams.subtitles:
                packets, note = _subtitle_packets(source, sin, out, offset_time, options)
                subtitle_notes.append(note)
                if packets is not None:
                    streams.append(packets)
            for _, _, packet, target in heapq.merge(
                    *[_timed(s, j, vout if j == 0 else None) for j, s in enumerate(streams)]):
                if target is not None:
                    packet.stream = target
                out.mux(packet)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return audio_notes, subtitle_notes


def _timed(packets: Iterator, order: int, target) -> Iterator[tuple]:
    """Packets keyed by time (then stream order) for heapq.merge's interleaving."""
    for n, item in enumerate(packets):
        packet, stream = (item, target) if target is not None else item
        t = (packet.dts if packet.dts is not None else packet.pts) * packet.time_base
        yield (t, order * 10**12 + n), n, packet, stream


def _audio_packets(source, ain, out, offset_time: Fraction, options: VideoOptions):
    """Packets for one audio stream: copied bit-exact when the output container takes the
    codec, otherwise re-encoded to the container's default audio codec (and said so)."""
    codec = ain.codec_context.name if ain.codec_context else "unknown"
    try:
        aout = out.add_stream_from_template(ain)
    except ValueError:
        aout = None
    tb = ain.time_base
    if aout is not None:
        return _copied(source.name, ain, aout, offset_time, options), "copied"
    target = out.default_audio_codec
    if target in ("none", ""):
        return None, f"dropped ({codec}: the container has no audio)"
    aout = out.add_stream(target, rate=ain.codec_context.sample_rate or 48000)
    with contextlib.suppress(AttributeError, ValueError):
        aout.layout = ain.codec_context.layout

    def encoded() -> Iterator:
        import av

        rate = aout.codec_context.sample_rate
        resampler = av.AudioResampler(format=aout.codec_context.format,
                                      layout=aout.codec_context.layout, rate=rate)
        samples = 0

        def stamped(frames) -> Iterator:
            nonlocal samples
            for f in frames:
                f.pts, f.time_base = samples, Fraction(1, rate)
                samples += f.samples
                yield from ((packet, aout) for packet in aout.encode(f))

        with open_stream(source.name, ain.index) as (container, stream):
            for frame in container.decode(stream):
                if frame.pts is None or _in_range(frame.pts * tb, options) != 0:
                    continue
                frame.pts = None
                yield from stamped(resampler.resample(frame))
        yield from stamped(resampler.resample(None))
        for packet in aout.encode(None):
            yield packet, aout
    return encoded(), f"re-encoded to {target} ({codec} cannot go into this container; " \
                      f"use .mkv to copy it)"


def _copied(path: str, sin, sout, offset_time: Fraction, options: VideoOptions) -> Iterator:
    """The packets of input stream `sin` in the time range, as they are, for `sout`, their
    times shifted by the range's start."""
    tb = sin.time_base
    sout.time_base = tb
    shift = round(offset_time / tb) if offset_time else 0
    with open_stream(path, sin.index) as (container, stream):
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None or \
                    _in_range(packet.pts * tb, options) != 0:
                continue
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            yield packet, sout


def _subtitle_packets(source, sin, out, offset_time: Fraction, options: VideoOptions):
    """Packets for one subtitle stream, copied as they are; dropped (and said so) when the
    output container does not take the format (text subtitles are not converted)."""
    codec = sin.codec_context.name if sin.codec_context else "unknown"
    try:
        sout = out.add_stream_from_template(sin)
    except ValueError:
        return None, f"dropped ({codec} cannot go into this container; use .mkv to copy it)"
    return _copied(source.name, sin, sout, offset_time, options), "copied"


@contextlib.contextmanager
def open_stream(path: str, index: int):
    """The input opened again for one of its streams (each copied stream reads on its own,
    so heapq.merge can interleave them by time)."""
    import av

    container = av.open(path, metadata_errors="ignore")
    try:
        yield container, container.streams[index]
    finally:
        container.close()


# ------------------------------------------------------------------ the job


def _digest(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=12).hexdigest()


def work_dir(output: Path) -> Path:
    """Where an unfinished run keeps its chunks (beside the output, hidden)."""
    return output.parent / f".{output.name}.facefuse-video"


def _job_key(template_video: Path, source: np.ndarray, params: FusionParams,
             options: VideoOptions) -> dict:
    st = template_video.stat()
    return {"version": WORK_VERSION, "video": str(template_video.resolve()),
            "size": st.st_size, "mtime": st.st_mtime_ns, "source": _digest(source),
            "params": params.to_dict(), "options": asdict(options) | {"workers": None}}


def check_output(output: str | os.PathLike, encode: EncodeOptions) -> Path:
    """The output path, or a ParameterError before any work (extension, codec)."""
    import av

    output = Path(output)
    fmt = CONTAINERS.get(output.suffix.lower())
    if fmt is None:
        raise ParameterError(f"cannot write {output.name!r}: use one of the extensions "
                             f"{', '.join(CONTAINERS)}")
    if output.is_dir():
        raise ParameterError(f"the output {output} is a folder")
    check_writable_folder(output.parent, str(output))
    probe = av.open(os.devnull, "w", format=fmt)
    try:
        supported = probe.supported_codecs
    finally:
        probe.close()
    codec_name = {"libx264": "h264", "libx265": "hevc", "libvpx-vp9": "vp9",
                  "libsvtav1": "av1"}[encode.codec]
    if encode.codec not in supported and codec_name not in supported:
        raise ParameterError(f"{output.suffix} cannot hold {encode.codec}; use .mkv or "
                             "another --codec")
    return output


def video_params(params: FusionParams) -> FusionParams:
    """Checks what video cannot do. The fusion itself runs the camera path's settings
    (`live_params`: 320 crop, INT8 refiner, no Poisson or skin smoothing), which is what
    keeps 720p video fast."""
    if params.template_face not in (0,):
        raise ParameterError("video fuses the main face only: --template-face must be 0")
    if params.resolution != "original":
        raise ParameterError("video keeps the template video's size: --resolution must be "
                             "original")
    return params


def fuse_video(source: ImageSource | PreparedSource, template_video: str | os.PathLike,
               output: str | os.PathLike, params: FusionParams | None = None,
               options: VideoOptions | None = None, *, engine: FaceFuser | None = None,
               resume: bool = False, progress: Progress | None = None) -> VideoReport:
    """Fuse the source face into every frame of `template_video`, write `output`.

    With `resume`, a run that was interrupted (Ctrl-C, killed, power lost) with the same
    inputs and settings continues from its last finished chunk."""
    started = time.perf_counter()
    params = video_params(params or FusionParams())
    options = options or VideoOptions()
    template_video = Path(template_video)
    output = check_output(output, options.encode)
    container = open_video(template_video)
    output.parent.mkdir(parents=True, exist_ok=True)
    vstream = container.streams.video[0]
    total = vstream.frames or 0
    container.close()
    own_engine = engine is None
    engine = engine or FaceFuser()
    try:
        source_image = (source.image if isinstance(source, PreparedSource)
                        else load_image(source, name="source"))
        prepared = engine.prepare_source(source_image, params.with_overrides(crop_size=320))
        work = work_dir(output)
        key = _job_key(template_video, source_image, params, options)
        job = work / "job.json"
        if work.exists():
            same = job.exists() and json.loads(job.read_text()) == key
            if resume and not same:
                raise ParameterError(
                    "the interrupted run used another source, video or settings; run "
                    f"again without --resume to start over (its work is in {work})")
            if not resume:
                shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        job.write_text(json.dumps(key))
        try:
            # One BLAS thread: the geometry stage's Delaunay makes ~1000 tiny LAPACK calls
            # per frame, and OpenBLAS waking its threads for each cost 50-1000 ms a frame on
            # a busy 2-core machine (1.7 ms with one thread); the frames run in parallel.
            with LiveFuser(engine, prepared, params) as live, \
                    threadpool_limits(limits=1, user_api="blas"):
                report = _run(live, template_video, output, options, work, total, progress)
        except FaceFuseError:
            # a run that cannot succeed leaves nothing behind; an interrupted one (Ctrl-C,
            # a kill) keeps its work folder for --resume
            shutil.rmtree(work, ignore_errors=True)
            raise
        shutil.rmtree(work, ignore_errors=True)
        report.seconds = time.perf_counter() - started
        if options.start is None and options.end is None:  # a time range has fewer, rightly
            report.stated_frames = total
        return report
    finally:
        if own_engine:
            engine.close()


def _run(live: LiveFuser, template_video: Path, output: Path, options: VideoOptions,
         work: Path, total: int, progress: Progress | None) -> VideoReport:
    track_file = work / "track.npz"
    stage_ms: dict[str, float] = {}
    t0 = time.perf_counter()
    if track_file.exists():
        track = Track.load(track_file)
    else:
        track = track_video(live, template_video, options, progress, total)
        track.save(track_file)
    stage_ms["track"] = (time.perf_counter() - t0) * 1000
    if not track.found.any():
        raise NoFaceError("no face found in any frame of the template video")
    if options.smooth:
        marks, bridged = smooth_track(track)
    else:
        marks, bridged = smooth_track(track, sigma=0.0)
    have = track.found | bridged
    faces = {int(p): marks[i] for i, p in enumerate(track.pts) if have[i]}
    chunks = (len(track.pts) + options.chunk_frames - 1) // options.chunk_frames
    finished = 0
    while finished < chunks and _chunk_path(work, finished).exists():
        finished += 1
    t0 = time.perf_counter()
    timings = Timings()
    if finished < chunks:
        first = finished * options.chunk_frames
        container = open_video(template_video)
        width = container.streams.video[0].codec_context.width
        height = container.streams.video[0].codec_context.height
        container.close()
        workers = options.workers or max(1, min(4, os.cpu_count() or 1))
        frames = decode_frames(template_video, options, from_pts=int(track.pts[first]))
        fused = _fused_frames(live.engine, live.source, live.params, frames, faces,
                              track.rotation, workers, timings)
        _encode_chunks(fused, track, options.encode, work, options.chunk_frames, width,
                       height, progress, first)
    stage_ms["fuse_encode"] = (time.perf_counter() - t0) * 1000
    stage_ms.update({f"fuse.{k}": v for k, v in timings.items()})
    t0 = time.perf_counter()
    audio, subtitles = _mux(template_video, work, track, output, options)
    stage_ms["mux"] = (time.perf_counter() - t0) * 1000
    return VideoReport(output=output, frames=len(track.pts), fused=len(faces),
                       bridged=int(bridged.sum()), cuts=int(track.scene[-1]), audio=audio,
                       subtitles=subtitles, rotation=track.rotation, seconds=0.0,
                       resumed_chunks=finished, stage_ms=stage_ms)


def preview_frame(source: ImageSource, template_video: str | os.PathLike, index: int,
                  params: FusionParams | None = None, *, engine: FaceFuser | None = None,
                  options: VideoOptions | None = None) -> np.ndarray:
    """Frame `index` (0-based, in the run's range) fused with these settings, in display
    orientation: to check the settings before a long run."""
    params = video_params(params or FusionParams())
    options = options or VideoOptions()
    if index < 0:
        raise ParameterError(f"--preview-frame must be 0 or more, got {index}")
    own = engine is None
    engine = engine or FaceFuser()
    try:
        prepared = engine.prepare_source(load_image(source, name="source"),
                                         params.with_overrides(crop_size=320))
        with LiveFuser(engine, prepared, params) as live:
            rotation = None
            for i, (_, frame) in enumerate(decode_frames(template_video, options)):
                if rotation is None:
                    rotation = int(frame.rotation or 0)
                rgb = display_rgb(frame, rotation)
                face = live.tracker.track(rgb)  # tracking up to the frame, as the run does
                if i == index:
                    if face is None:
                        raise NoFaceError(f"no face found in frame {index} of the video")
                    return live.engine.fuse_face(live.source, rgb, face, live.params,
                                                 Timings())
            raise ParameterError(f"the video has no frame {index} (in the chosen range)")
    finally:
        if own:
            engine.close()
