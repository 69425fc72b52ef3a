"""The WebUI's video tab: one source face into every frame of an uploaded video, with a
progress bar, a one-frame preview, and the result saved under outputs/.

It uses the album tab's parameter controls (one FusionParams for every front end) and the
app's engine; a video job runs one at a time in its own queue, so photo fusion stays
responsive while a video is being made.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import __version__
from ..errors import FaceFuseError
from ..params import FusionParams
from ..pipeline import FaceFuser
from ..runners.video import VideoOptions, fuse_video, preview_frame


class Host(Protocol):
    """What the tab needs from the WebApp (its engine, outputs folder and controls)."""

    engine: FaceFuser
    outputs: Path

    def params_from(self, values: tuple[Any, ...]) -> FusionParams: ...

    def _load(self, image: Any, name: str) -> np.ndarray: ...


class VideoTab:
    """Layout and handlers of the video tab (state lives in the WebApp)."""

    def __init__(self, app: Host) -> None:
        self.app = app

    def preview(self, source, video, frame_index, *values):
        """One frame fused with the current settings, to check them before a long run."""
        if source is None or not video:
            return None, "⚠️ 请添加源人脸和视频 / add a source face and a video"
        try:
            params = self.app.params_from(values)
            image = preview_frame(self.app._load(source, "source"), video,
                                  int(frame_index or 0), params, engine=self.app.engine)
        except FaceFuseError as exc:
            return None, f"⚠️ {exc}"
        return image, f"第 {int(frame_index or 0)} 帧 / frame {int(frame_index or 0)}"

    def fuse(self, source, video, smooth, *values, progress=None):
        """The whole video: saved as outputs/facefuse-video-<time>.mp4 with a JSON sidecar."""
        import gradio as gr

        if source is None or not video:
            return None, "⚠️ 请添加源人脸和视频 / add a source face and a video"
        track = progress or gr.Progress()
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        out = self.app.outputs / f"facefuse-video-{stamp}.mp4"
        names = {"track": "跟踪 / tracking", "fuse": "融合 / fusing"}

        def report(phase: str, done: int, total: int) -> None:
            track((done, total or None), desc=names[phase], unit="frames")

        try:
            params = self.app.params_from(values)
            result = fuse_video(self.app._load(source, "source"), video, out, params,
                                VideoOptions(smooth=bool(smooth)), engine=self.app.engine,
                                progress=report)
        except FaceFuseError as exc:
            return None, f"⚠️ {exc}"
        sidecar: dict[str, Any] = {
            "file": out.name, "created": stamp, "facefuse": __version__,
            "params": params.to_dict(), "video": Path(video).name, "frames": result.frames,
            "fused_frames": result.fused, "audio": result.audio, "subtitles": result.subtitles,
            "rotation": result.rotation,
            "smoothing": bool(smooth), "seconds": round(result.seconds, 1)}
        out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
        audio = ", ".join(result.audio) or "—"
        note = f"; ⚠️ {result.cut_short}" if result.cut_short else ""
        return str(out), (f"✅ 已保存 / saved {out.name}: {result.frames} 帧 frames, "
                          f"{result.fused} 融合 fused, 音频 / audio {audio}, "
                          f"{result.fps:.1f} fps{note}")

    def layout(self) -> None:
        """The tab's components (call inside the app's gr.Tabs)."""
        import gradio as gr

        from .files import read_with_facefuse

        with gr.Tab("视频 / Video", id="video"):
            gr.Markdown("把源人脸融合进视频的每一帧：保留声音、时间戳和旋转，人脸随时间平滑 / "
                        "Fuses the source face into every frame; sound, timing and rotation "
                        "are kept, the face is smoothed over time. Uses the Album tab's "
                        "parameters.")
            with gr.Row():
                # read by load_image (HEIC, limits, facefuse's messages), as the Album's
                self.source = read_with_facefuse(gr.Image(
                    label="源人脸 / Source face", type="numpy", elem_id="video-source",
                    height=280))
                self.video = gr.Video(label="模板视频 / Template video", sources=["upload"],
                                      elem_id="video-in", format=None, height=280)
            with gr.Row():
                self.frame = gr.Number(value=0, precision=0, minimum=0,
                                       label="预览帧 / Preview frame", elem_id="video-frame")
                self.smooth = gr.Checkbox(value=True, label="时间平滑 / Temporal smoothing",
                                          elem_id="video-smooth")
                self.preview_btn = gr.Button("预览一帧 / Preview frame",
                                             elem_id="video-preview-btn")
                self.fuse_btn = gr.Button("融合视频 / Fuse video", variant="primary",
                                          elem_id="video-btn")
            with gr.Row():
                self.preview_out = gr.Image(label="预览 / Preview", interactive=False,
                                            elem_id="video-preview", height=320)
                self.result = gr.Video(label="结果 / Result", interactive=False,
                                       elem_id="video-out", height=320)
            self.msg = gr.Markdown(elem_id="video-msg")

    def wire(self, inputs: list) -> None:
        """Events, once the parameter controls exist."""
        import gradio as gr

        # Own names: Gradio names endpoints after the function, and "fuse" is the API's.
        def video_fuse(source, video, smooth, *values, progress=gr.Progress()):  # noqa: B008
            return self.fuse(source, video, smooth, *values, progress=progress)

        def video_preview(source, video, frame_index, *values):
            return self.preview(source, video, frame_index, *values)

        self.preview_btn.click(video_preview, [self.source, self.video, self.frame, *inputs],
                               [self.preview_out, self.msg], api_visibility="private",
                               concurrency_id="fuse")
        self.fuse_btn.click(video_fuse, [self.source, self.video, self.smooth, *inputs],
                            [self.result, self.msg], api_visibility="private",
                            concurrency_id="video", concurrency_limit=1)
