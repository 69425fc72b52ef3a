"""`facefuse eval video` and the video benchmark: a test video made from real photos, and
what a fused video must keep (container checks) and how steady it is (jitter, flicker).

The test video: one person's neutral and smiling photos morphed back and forth (the mouth
opens and closes), seen by a virtual camera that pans, zooms and rolls, with a cut to a
view without a face and back, sensor noise, a stereo audio track, a 90° display matrix (as
phones write) and a variable frame rate.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..imageio import load_image
from ..params import FusionParams
from ..stages import geometry
from ..stages.align import umeyama
from ..stages.analysis import (
    FOREHEAD,
    LEFT_EYE_INNER,
    LEFT_EYE_OUTER,
    NOSE_TIP,
    RIGHT_EYE_INNER,
    RIGHT_EYE_OUTER,
    FaceAnalyzer,
)
from ..stages.mesh_topology import FACE_OVAL_LOOP

TIME_BASE = Fraction(1, 90000)
# Frame durations of the variable-frame-rate clip (90 kHz ticks: 30, 29.97, 25, 24 fps).
VFR_TICKS = (3000, 3003, 3600, 3750)
STABLE = [RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_OUTER, LEFT_EYE_INNER, NOSE_TIP, FOREHEAD]


@dataclass(frozen=True)
class TestClip:
    """A generated clip and what is known about each frame."""

    path: Path
    pts: list[int]  # in TIME_BASE
    mouth: np.ndarray  # (T,) morph weight: 0 neutral, 1 smiling
    has_face: np.ndarray  # (T,) False in the cut
    rotation: int


def _morph_levels(neutral: np.ndarray, smiling: np.ndarray, levels: int
                  ) -> list[np.ndarray]:
    """Images of the face from neutral (0) to smiling (1): both warped to the in-between
    Face Mesh shape and cross-faded. The smiling photo is first aligned on eyes, nose and
    forehead, so only the expression moves."""
    with FaceAnalyzer() as analyzer:
        a = analyzer.detect(neutral)[0].landmarks[:, :2].astype(np.float64)
        b = analyzer.detect(smiling)[0].landmarks[:, :2].astype(np.float64)
    m = umeyama(b[STABLE], a[STABLE])
    size = neutral.shape[0]
    smiling = cv2.warpAffine(smiling, m, (size, size), borderMode=cv2.BORDER_REFLECT)
    b = b @ m[:, :2].T + m[:, 2]
    out = []
    for w in np.linspace(0, 1, levels):
        shape = (1 - w) * a + w * b
        anchors = geometry.anchor_points(shape, size)
        plan = geometry.MeshPlan.build(shape, anchors, size)
        wa = plan.field(a, anchors).apply(neutral).astype(np.float32)
        wb = plan.field(b, anchors).apply(smiling).astype(np.float32)
        out.append(np.clip((1 - w) * wa + w * wb, 0, 255).astype(np.uint8))
    return out


def _square(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    sq = image[y:y + s, x:x + s]
    return cv2.resize(sq, (side, side), interpolation=cv2.INTER_AREA) if s != side else sq


def make_test_video(path: str | Path, neutral: np.ndarray, smiling: np.ndarray | None = None,
                    *, size: tuple[int, int] = (640, 360), frames: int = 90,
                    rotation: int = 90, vfr: bool = True, audio: bool = True,
                    cut: tuple[float, float] | None = (0.45, 0.55), noise: float = 2.0,
                    mouth_cycles: float = 2.0, seed: int = 0, audio_codec: str = "aac"
                    ) -> TestClip:
    """Write the test clip (H.264 with B-frames; AAC audio, or `audio_codec` pcm_s16le in
    .mkv/.mov). `size` is the display size; with a 90° `rotation` the file stores frames
    turned, as phones do."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = max(size) * 2 if max(size) * 2 < neutral.shape[0] else neutral.shape[0]
    neutral = _square(neutral, side)
    levels = ([neutral] if smiling is None
              else _morph_levels(neutral, _square(smiling, side), 9))
    rng = np.random.default_rng(seed)
    w, h = size
    t = np.arange(frames) / max(frames - 1, 1)
    mouth = 0.5 - 0.5 * np.cos(2 * np.pi * mouth_cycles * t)
    has_face = np.ones(frames, bool)
    if cut:
        has_face[int(cut[0] * frames):int(cut[1] * frames)] = False
    ticks = [VFR_TICKS[i % len(VFR_TICKS)] if vfr else 3000
             for i in rng.permutation(frames)]
    pts = np.concatenate([[0], np.cumsum(ticks[:-1])]).astype(int).tolist()
    k = round(rotation / 90) % 4
    stored = (w, h) if k % 2 == 0 else (h, w)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", options={"crf": "16", "preset": "veryfast"})
        vs.width, vs.height, vs.pix_fmt = stored[0], stored[1], "yuv420p"
        vs.time_base = vs.codec_context.time_base = TIME_BASE
        if rotation:
            vs.set_display_rotation(rotation)
        aus = None
        if audio:
            aus = out.add_stream(audio_codec, rate=48000, layout="stereo")
        for i in range(frames):
            photo = levels[round(mouth[i] * (len(levels) - 1))]
            frame = _camera(photo, i / max(frames - 1, 1), (w, h), has_face[i])
            noisy = frame.astype(np.float32) + rng.normal(0, noise, frame.shape)
            frame = np.clip(noisy, 0, 255).astype(np.uint8)
            if k:
                frame = np.ascontiguousarray(np.rot90(frame, -k))
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = pts[i], TIME_BASE
            for packet in vs.encode(vf):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if aus is not None:
            seconds = float((pts[-1] + ticks[-1]) * TIME_BASE)
            n = int(seconds * 48000)
            tt = np.arange(n) / 48000
            tone = 0.2 * np.sin(2 * np.pi * (220 + 220 * tt / max(seconds, 1e-3)) * tt)
            stereo = np.stack([tone, 0.5 * tone]).astype(np.float32)
            for s in range(0, n, 1024):
                part = stereo[:, s:s + 1024]
                if audio_codec == "aac":
                    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="fltp",
                                                    layout="stereo")
                else:
                    packed = (part.T.reshape(1, -1) * 32767).astype(np.int16)
                    af = av.AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
                af.sample_rate, af.pts = 48000, s
                for packet in aus.encode(af):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    return TestClip(path, pts, mouth, has_face, rotation)


def _camera(photo: np.ndarray, t: float, size: tuple[int, int], face: bool) -> np.ndarray:
    """The virtual camera: pan, zoom and roll over the photo; in the cut it looks at the
    clothes below the face."""
    side = photo.shape[0]
    w, h = size
    if not face:
        cx, cy, scale, angle = side * 0.5, side * 0.92, h / (0.25 * side), 0.0
    else:
        phase = 2 * np.pi * t
        scale = h / (0.62 * side) * (1 + 0.12 * np.sin(phase))
        angle = 6 * np.sin(1.5 * phase)
        cx = side * (0.5 + 0.05 * np.sin(phase))
        cy = side * (0.45 + 0.03 * np.cos(phase))
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += np.array([w / 2, h / 2]) - np.array([cx, cy])
    return cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def london_clip(data: Path, path: Path, person: str = "002", **kwargs: Any) -> TestClip:
    """The test clip from one London person's neutral and smiling photos."""
    neutral = load_image(data / "neutral" / f"{person}_03.jpg")
    smiling = load_image(data / "smiling" / f"{person}_08.jpg")
    return make_test_video(path, neutral, smiling, **kwargs)


# ------------------------------------------------------------------ container checks


def container_facts(path: str | Path) -> dict[str, Any]:
    """What must survive a fused run: frame times, rotation, audio packet bytes."""
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        times, rotation = [], None
        for frame in c.decode(vs):
            times.append(Fraction(frame.pts) * vs.time_base)
            if rotation is None:
                rotation = int(frame.rotation or 0)
    audio = []
    with av.open(str(path)) as c:
        for a in c.streams.audio:
            digest = hashlib.sha256()
            count = 0
            for packet in c.demux(a):
                if packet.size:
                    digest.update(bytes(packet))
                    count += 1
            audio.append({"codec": a.codec_context.name, "packets": count,
                          "sha256": digest.hexdigest()})
    return {"frames": len(times), "times": times, "rotation": rotation or 0, "audio": audio}


def compare_containers(original: dict[str, Any], fused: dict[str, Any]) -> dict[str, bool]:
    return {"frame_count": original["frames"] == fused["frames"],
            "timestamps": original["times"] == fused["times"],
            "rotation": original["rotation"] == fused["rotation"],
            "audio": original["audio"] == fused["audio"]}


# ------------------------------------------------------------------ steadiness


def display_frames(path: str | Path) -> list[np.ndarray]:
    """Every frame in display orientation (RGB)."""
    import av

    from ..runners.video import display_rgb

    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.video[0]))
        rotation = int(frames[0].rotation or 0) if frames else 0
        return [display_rgb(f, rotation) for f in frames]


def measure_landmarks(frames: list[np.ndarray]) -> np.ndarray:
    """(T, 478, 2) landmarks found independently in each frame (static mode: no tracking,
    so the measure does not smooth what it measures); NaN where no face."""
    out = np.full((len(frames), 478, 2), np.nan)
    with FaceAnalyzer() as analyzer:
        for i, f in enumerate(frames):
            faces = analyzer.detect(f)
            if faces:
                out[i] = faces[0].landmarks[:, :2]
    return out


def jitter(landmarks: np.ndarray) -> float:
    """Median over frames of the RMS second difference of the landmarks, in interocular
    distances: what is left of the motion after taking out its smooth part."""
    from ..stages.analysis import LEFT_IRIS, RIGHT_IRIS

    acc = landmarks[2:] - 2 * landmarks[1:-1] + landmarks[:-2]
    iod = np.linalg.norm(landmarks[1:-1, LEFT_IRIS] - landmarks[1:-1, RIGHT_IRIS], axis=-1)
    ok = ~np.isnan(acc[:, 0, 0]) & ~np.isnan(iod)
    per_frame = np.sqrt((acc[ok] ** 2).sum(-1).mean(axis=1)) / iod[ok]
    return float(np.median(per_frame)) if len(per_frame) else float("nan")


def face_colours(frames: list[np.ndarray], landmarks: np.ndarray) -> np.ndarray:
    """(T, 3) mean CIELAB of the face region (the oval of the given landmarks)."""
    out = np.full((len(frames), 3), np.nan)
    for i, f in enumerate(frames):
        if np.isnan(landmarks[i, 0, 0]):
            continue
        mask = np.zeros(f.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(landmarks[i, FACE_OVAL_LOOP]).astype(np.int32)], 1)
        lab = cv2.cvtColor(f.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
        out[i] = lab[mask > 0].mean(axis=0)
    return out


def flicker(colours: np.ndarray) -> float:
    """RMS ΔE between each frame's face colour and the mean of its two neighbours."""
    d = colours[1:-1] - 0.5 * (colours[2:] + colours[:-2])
    e = np.linalg.norm(d, axis=1)
    e = e[~np.isnan(e)]
    return float(np.sqrt(np.mean(e ** 2))) if len(e) else float("nan")


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap over mouth width per frame (NaN where no face)."""
    from ..stages.analysis import LOWER_LIP_INNER, MOUTH_LEFT, MOUTH_RIGHT, UPPER_LIP_INNER

    gap = np.linalg.norm(landmarks[:, LOWER_LIP_INNER] - landmarks[:, UPPER_LIP_INNER], axis=-1)
    width = np.linalg.norm(landmarks[:, MOUTH_LEFT] - landmarks[:, MOUTH_RIGHT], axis=-1)
    return gap / width


def steadiness(input_frames: list[np.ndarray], fused_frames: list[np.ndarray],
               input_landmarks: np.ndarray) -> dict[str, float]:
    """Jitter and flicker of the fused video against the input's own, and how closely the
    fused mouth follows the input's (correlation of the opening, frame by frame)."""
    fused_landmarks = measure_landmarks(fused_frames)
    j_in, j_out = jitter(input_landmarks), jitter(fused_landmarks)
    c_in = face_colours(input_frames, input_landmarks)
    c_out = face_colours(fused_frames, input_landmarks)
    m_in, m_out = mouth_opening(input_landmarks), mouth_opening(fused_landmarks)
    ok = ~np.isnan(m_in) & ~np.isnan(m_out)
    corr = float(np.corrcoef(m_in[ok], m_out[ok])[0, 1]) if ok.sum() > 2 else float("nan")
    no_face = np.isnan(input_landmarks[:, 0, 0])
    return {"jitter_input": j_in, "jitter_fused": j_out, "jitter_ratio": j_out / j_in,
            "flicker_input_dE": flicker(c_in), "flicker_fused_dE": flicker(c_out),
            "mouth_corr": corr,
            "mouth_mae": float(np.mean(np.abs(m_in[ok] - m_out[ok]))) if ok.any() else 0.0,
            "no_face_frames": int(no_face.sum())}


def identity(judge, source: np.ndarray, template_photo: np.ndarray,
             fused_frames: list[np.ndarray], every: int = 8) -> dict[str, float]:
    """dlib descriptor distance of sampled fused frames to the source and to the template
    person (lower = closer): fusion should move the face toward the source."""
    from .judge import descriptor_distance

    src, tpl = judge.face(source), judge.face(template_photo)
    to_src, to_tpl = [], []
    for f in fused_frames[::every]:
        face = judge.face(f)
        if face is None or src is None or tpl is None:
            continue
        to_src.append(descriptor_distance(face, src))
        to_tpl.append(descriptor_distance(face, tpl))
    return {"identity_to_source": float(np.mean(to_src)) if to_src else float("nan"),
            "identity_to_template": float(np.mean(to_tpl)) if to_tpl else float("nan"),
            "identity_frames": len(to_src)}


# ------------------------------------------------------------------ the report


def video_report(data: Path, work: Path, *, size: tuple[int, int] = (640, 360),
                 frames: int = 90, person: str = "002", source_person: str = "001",
                 params: FusionParams | None = None, judge: bool = True) -> dict[str, Any]:
    """The test clip fused with smoothing on and off: container checks, steadiness,
    identity, speed."""
    from ..pipeline import FaceFuser
    from ..runners.video import VideoOptions, fuse_video

    params = params or FusionParams(ratio=0.8)
    clip = london_clip(data, work / "template.mp4", person, size=size, frames=frames)
    source = load_image(data / "neutral" / f"{source_person}_03.jpg")
    original = container_facts(clip.path)
    input_frames = display_frames(clip.path)
    input_landmarks = measure_landmarks(input_frames)
    the_judge = None
    if judge:
        from .judge import Judge

        the_judge = Judge()
    template_photo = load_image(data / "neutral" / f"{person}_03.jpg")
    rows = []
    with FaceFuser() as engine:
        for smooth in (True, False):
            out = work / f"fused-{'on' if smooth else 'off'}.mp4"
            started = time.perf_counter()
            report = fuse_video(source, clip.path, out, params, VideoOptions(smooth=smooth),
                                engine=engine)
            seconds = time.perf_counter() - started
            fused = container_facts(out)
            fused_frames = display_frames(out)
            row = {"smoothing": "on" if smooth else "off", "frames": report.frames,
                   "fused_frames": report.fused, "cuts": report.cuts,
                   "fps": report.frames / seconds,
                   **compare_containers(original, fused),
                   **steadiness(input_frames, fused_frames, input_landmarks)}
            no_face = ~clip.has_face
            row["no_face_untouched"] = _untouched(input_frames, fused_frames, no_face)
            if the_judge is not None:
                row.update(identity(the_judge, source, template_photo, fused_frames))
            rows.append(row)
    return {"clip": {"size": list(size), "frames": frames, "rotation": clip.rotation,
                     "vfr": True, "audio": [a["codec"] for a in original["audio"]],
                     "person": person, "source": source_person},
            "rows": rows}


def _untouched(a: list[np.ndarray], b: list[np.ndarray], mask: np.ndarray) -> float:
    """Largest mean abs difference (0-255) over the no-face frames (codec noise only)."""
    diffs = [float(np.abs(a[i].astype(np.int16) - b[i].astype(np.int16)).mean())
             for i in np.flatnonzero(mask) if i < len(b)]
    return max(diffs) if diffs else 0.0


def video_table(report: dict[str, Any]) -> str:
    cols = [("smoothing", "{}"), ("frame_count", "{}"), ("timestamps", "{}"),
            ("audio", "{}"), ("rotation", "{}"), ("jitter_ratio", "{:.2f}"),
            ("flicker_fused_dE", "{:.2f}"), ("flicker_input_dE", "{:.2f}"),
            ("mouth_corr", "{:.2f}"), ("identity_to_source", "{:.3f}"),
            ("identity_to_template", "{:.3f}"), ("no_face_untouched", "{:.2f}"),
            ("fps", "{:.1f}")]
    head = "| " + " | ".join(c for c, _ in cols) + " |"
    lines = [head, "|" + "---|" * len(cols)]
    for row in report["rows"]:
        cells = []
        for c, fmt in cols:
            v = row.get(c, "")
            cells.append(("exact" if v else "DIFFERS") if isinstance(v, bool)
                         else (fmt.format(v) if v != "" else "—"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
