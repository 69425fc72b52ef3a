"""The local WebUI: album fusion, live camera preview and batch, all offline.

Controls are generated from FusionParams (same names and ranges as the CLI and the API).
Every handler turns a FaceFuseError into a message for the user; nothing reaches the
browser as a stack trace, and the server keeps serving.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import __version__
from ..errors import FaceFuseError
from ..imageio import DIR_MODE, ImageLimits, load_image, save_image
from ..params import LABELS, PRESETS, FusionParams, param_specs, per_photo_names
from ..params import preset as preset_params
from ..pipeline import FaceFuser, PreparedSource
from ..runners.live import LiveFuser
from ..stages.analysis import Face
from . import photo_types
from .video_tab import VideoTab

PREVIEW_SIDE = 640  # the preview fuses downscaled copies on the 320 crop path
PREVIEW_CROP = 320
CACHE_ENTRIES = 8
UPLOAD_LIMIT = "50mb"
MAX_LIVE_SESSIONS = 4
BROWSER_CANNOT_SHOW = (".heic", ".heif")


def _digest(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()


def _downscale(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    f = side / max(h, w)
    if f >= 1:
        return image
    return cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)


def annotate_faces(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """The template with each face boxed and numbered (0 = largest), for choosing."""
    out = image.copy()
    thick = max(2, round(max(image.shape[:2]) / 400))
    for i, face in enumerate(faces):
        x0, y0, x1, y1 = (round(v) for v in face.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (40, 220, 120), thick)
        scale = max(0.8, (x1 - x0) / 120)
        cv2.putText(out, str(i), (x0 + thick, max(0, y0) + round(32 * scale)),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (40, 220, 120), thick * 2)
    return out


class WebApp:
    """State and handlers of one running WebUI (no module-level mutable state)."""

    def __init__(self, outputs: Path, engine: FaceFuser | None = None) -> None:
        self.outputs = Path(outputs).resolve()
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.engine = engine or FaceFuser()
        self.limits = ImageLimits()
        self._lock = threading.Lock()
        self._sources: OrderedDict[tuple, PreparedSource] = OrderedDict()
        self._faces: OrderedDict[tuple, list[Face]] = OrderedDict()
        self._live: OrderedDict[str, tuple[str, LiveFuser]] = OrderedDict()
        self.specs = [f for f in param_specs() if f.name != "crop_size"]
        self.names = [f.name for f in self.specs]

    # ----------------------------------------------------------- helpers

    def params_from(self, values: tuple[Any, ...]) -> FusionParams:
        """FusionParams from control values in `self.names` order (strings converted)."""
        raw = dict(zip(self.names, values, strict=True))
        face = raw["template_face"]
        raw["template_face"] = face if face == "all" else int(face or 0)
        raw["source_face"] = int(raw["source_face"] or 0)
        return FusionParams(**raw)

    def _cached(self, store: OrderedDict, key: tuple, make):
        with self._lock:
            if key in store:
                store.move_to_end(key)
                return store[key]
        value = make()
        with self._lock:
            store[key] = value
            while len(store) > CACHE_ENTRIES:
                store.popitem(last=False)
        return value

    def prepared_source(self, image: np.ndarray, params: FusionParams) -> PreparedSource:
        key = (_digest(image), params.det_threshold, params.source_face, params.crop_size)
        return self._cached(self._sources, key,
                            lambda: self.engine.prepare_source(image, params))

    def template_faces(self, image: np.ndarray, threshold: float) -> list[Face]:
        key = (_digest(image), threshold)
        return self._cached(self._faces, key, lambda: self.engine.analyzer.detect(
            image, threshold, thorough=True))

    def displayable(self, image: Any):
        """An uploaded HEIC/HEIF shown as PNG: only Safari draws HEIC, so in other browsers
        the photo would look empty although it fuses. Other uploads stay as they are."""
        import gradio as gr

        if not isinstance(image, str) or Path(image).suffix.lower() not in BROWSER_CANNOT_SHOW:
            return gr.skip()
        try:
            return load_image(image, name="photo", limits=self.limits)
        except FaceFuseError:
            return gr.skip()  # the fusion handlers will say what is wrong with it

    def _load(self, image: Any, name: str) -> np.ndarray:
        if image is None:
            raise FaceFuseError(f"please add a {name} photo first")
        return load_image(image, name=name, limits=self.limits)

    def save_result(self, image: np.ndarray, params: FusionParams, extra: dict) -> Path:
        """`outputs/facefuse-<timestamp>.jpg` with a JSON sidecar of everything used."""
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        path = self.outputs / f"facefuse-{stamp}.jpg"
        save_image(path, image, note=f"ratio={params.ratio}")
        sidecar = {"file": path.name, "created": stamp, "facefuse": __version__,
                   "params": params.to_dict(), **extra}
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
        return path

    # ----------------------------------------------------------- handlers

    def on_template(self, template, det_threshold):
        """Number the template's faces; offer them (and 'all') in the face picker."""
        import gradio as gr

        if template is None:
            return None, gr.update(choices=["0"], value="0"), ""
        try:
            image = self._load(template, "template")
            faces = self.template_faces(image, det_threshold)
        except FaceFuseError as exc:
            return None, gr.update(choices=["0"], value="0"), f"⚠️ {exc}"
        choices = [str(i) for i in range(len(faces))] + (["all"] if len(faces) > 1 else [])
        msg = (f"模板中找到 {len(faces)} 张人脸 / {len(faces)} face(s) found"
               if faces else "⚠️ 模板中没有人脸 / no face found in the template: lower the "
               "detection threshold or use another photo")
        return annotate_faces(image, faces), gr.update(choices=choices or ["0"],
                                                       value="0"), msg

    def preview(self, source, template, *values):
        """Fast preview on downscaled copies and the 320 crop (no save)."""
        if source is None or template is None:
            return None, ""
        try:
            params = self.params_from(values).with_overrides(crop_size=PREVIEW_CROP,
                                                             resolution="original",
                                                             poisson=False)
            src = _downscale(self._load(source, "source"), PREVIEW_SIDE)
            tpl = _downscale(self._load(template, "template"), PREVIEW_SIDE)
            prepared = self.prepared_source(src, params)
            faces = self.template_faces(tpl, params.det_threshold)
            result = self.engine.fuse(prepared, tpl, params, template_faces=faces)
        except FaceFuseError as exc:
            return None, f"⚠️ {exc}"
        return result.image, f"预览 / preview: {result.timings.total:.0f} ms"

    def fuse_full(self, source, template, history, *values):
        """The full-quality result: saved under outputs/ with its JSON sidecar."""
        import gradio as gr

        try:
            params = self.params_from(values)
            src = self._load(source, "source")
            tpl = self._load(template, "template")
            prepared = self.prepared_source(src, params)
            faces = self.template_faces(tpl, params.det_threshold)
            result = self.engine.fuse(prepared, tpl, params, template_faces=faces)
            path = self.save_result(result.image, params, {
                "template_faces_used": len(result.template_faces),
                "timings_ms": {k: round(v, 1) for k, v in result.timings.items()}})
        except FaceFuseError as exc:
            gr.Warning(str(exc))
            return (None, None, None, history, history,
                    f"⚠️ {exc}")
        history = [*history, (str(path), path.name)][-24:]
        before = _downscale(tpl, 1024)
        after = _downscale(result.image, 1024)
        if before.shape != after.shape:
            before = cv2.resize(before, after.shape[1::-1], interpolation=cv2.INTER_AREA)
        msg = (f"✅ 已保存 / saved {path.name} ({result.image.shape[1]}x"
               f"{result.image.shape[0]}, {result.timings.total:.0f} ms)")
        return result.image, (before, after), str(path), history, history, msg

    def fuse_api(self, source, template, *values):
        """API endpoint `/fuse`: the fused image only (errors as a clear gr.Error)."""
        import gradio as gr

        try:
            params = self.params_from(values)
            return self.engine.fuse(self._load(source, "source"),
                                    self._load(template, "template"), params).image
        except FaceFuseError as exc:
            raise gr.Error(str(exc)) from None

    def batch(self, source, files, *values, progress=None):
        """One source into many templates: results + a zip under outputs/batch-<time>-<random>/.

        The folder is made fresh for this call (two users who start in the same second must
        not share it, or one downloads the other's zip), and two uploads with the same name
        (phones call many photos `image.jpg`) get `image.jpg`, `image-2.jpg`: none replaces
        another."""
        import gradio as gr

        if not files:
            return None, [], "⚠️ 请添加模板照片 / add some template photos"
        try:
            params = self.params_from(values)
            prepared = self.prepared_source(self._load(source, "source"), params)
        except FaceFuseError as exc:
            return None, [], f"⚠️ {exc}"
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = Path(tempfile.mkdtemp(prefix=f"batch-{stamp}-", dir=self.outputs))
        folder.chmod(DIR_MODE)  # mkdtemp's folder is private; saved results are not
        done, failed = [], []
        names: set[str] = set()
        track = progress or gr.Progress()
        for file in track.tqdm(files, desc="fusing / 融合中"):
            path = Path(file if isinstance(file, str) else file.name)
            name, n = f"{path.stem}.jpg", 1
            while name in names:
                n += 1
                name = f"{path.stem}-{n}.jpg"
            names.add(name)
            try:
                result = self.engine.fuse(prepared, path, params)
                out = save_image(folder / name, result.image)
                done.append(out)
            except FaceFuseError as exc:
                failed.append(f"{path.name}: {exc}")
        zip_path = folder.with_suffix(".zip")
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
            for out in done:
                zf.write(out, out.name)
        msg = f"✅ {len(done)} / {len(files)} 完成 / done"
        if failed:
            msg += "\n\n⚠️ " + "\n\n⚠️ ".join(failed)
        return str(zip_path), [str(p) for p in done], msg

    def camera_frame(self, frame, source, *values, request=None):
        """One webcam frame: fused on the 320 path with tracking; fps shown."""
        if frame is None:
            return None, ""
        if source is None:
            return frame, "⚠️ 请先在图片融合页添加源人脸 / add a source face in the Album tab"
        try:
            params = self.params_from(values)
            src = self._load(source, "source")
            frame = load_image(frame, name="camera frame")
            session = getattr(request, "session_hash", None) or "local"
            live = self._live_fuser(session, src, params)
            result = live.process(frame)
        except FaceFuseError as exc:
            return frame, f"⚠️ {exc}"
        status = (f"{result.ms:.0f} ms / 帧 frame · {result.fps:.1f} fps"
                  + ("" if result.face_found else " · 未检测到人脸 / no face"))
        return result.image, status

    def _live_fuser(self, session: str, source: np.ndarray, params: FusionParams) -> LiveFuser:
        key = _digest(source) + repr(params)
        with self._lock:
            entry = self._live.get(session)
            if entry is not None and entry[0] == key:
                return entry[1]
        prepared = self.prepared_source(source, params.with_overrides(crop_size=PREVIEW_CROP))
        live = LiveFuser(self.engine, prepared, params)
        with self._lock:
            old = self._live.pop(session, None)
            self._live[session] = (key, live)
            while len(self._live) > MAX_LIVE_SESSIONS:
                self._live.popitem(last=False)[1][1].close()
        if old is not None:
            old[1].close()
        return live

    # ----------------------------------------------------------- layout

    def controls(self) -> list:
        """One Gradio control per FusionParams field, from its metadata."""
        import gradio as gr

        made = []
        for f in self.specs:
            meta, label = f.metadata, LABELS.get(f.name, f.name)
            common = {"label": label, "info": meta["help"], "elem_id": f"param-{f.name}"}
            if meta["kind"] == "float":
                made.append(gr.Slider(meta["min"], meta["max"], value=f.default,
                                      step=meta["step"], **common))
            elif meta["kind"] == "choice":
                made.append(gr.Dropdown(list(meta["choices"]), value=f.default, **common))
            elif meta["kind"] == "bool":
                made.append(gr.Checkbox(value=f.default, **common))
            elif meta["kind"] == "face":
                made.append(gr.Dropdown(["0"], value="0", allow_custom_value=False, **common))
            elif meta["kind"] == "int":
                made.append(gr.Number(value=f.default, precision=0, minimum=0,
                                      maximum=meta["max"], **common))
        return made

    def build(self):
        import gradio as gr
        from gradio.utils import get_upload_folder

        from . import live_tab
        from .files import ResultStore, read_with_facefuse, serve_privately

        # Every image the server computes is served from a file of its own (files.py).
        self.results = store = ResultStore(get_upload_folder())

        def upload_image(**kwargs):
            """An upload gr.Image read by load_image; a HEIC is shown as PNG once uploaded."""
            image = serve_privately(read_with_facefuse(gr.Image(**kwargs)), store)
            image.upload(self.displayable, image, image, api_visibility="private",
                         show_progress="hidden", queue=False)
            return image
        groups = {"fusion": "融合 / Fusion", "finish": "修饰 / Finish",
                  "detection": "检测 / Detection", "region": "区域 / Region (zoom, rotate)",
                  "model": "模型 / Model"}
        with gr.Blocks(title="facefuse", analytics_enabled=False,
                       delete_cache=(3600, 3600)) as demo:
            gr.Markdown("# facefuse · 离线人脸融合 / offline face fusion\n"
                        "所有处理都在本机完成，不上传 / everything runs on this machine, "
                        "nothing is uploaded.")
            history = gr.State([])
            with gr.Tabs():
                with gr.Tab("图片融合 / Album", id="album"):
                    with gr.Row():
                        source = upload_image(
                            label="源人脸 / Source face", type="numpy", format="png",
                            sources=["upload", "clipboard"], elem_id="source", height=320)
                        template = upload_image(
                            label="模板 / Template", type="numpy", format="png",
                            sources=["upload", "clipboard"], elem_id="template", height=320)
                        faces_view = serve_privately(gr.Image(
                            label="模板人脸编号 / Template faces", interactive=False,
                            elem_id="faces", height=320), store)
                    face_msg = gr.Markdown(elem_id="face-msg")
                    with gr.Row():
                        with gr.Column(scale=2):
                            preset = gr.Dropdown(["—", *PRESETS], value="—",
                                                 label="预设 / Preset", elem_id="preset")
                            controls = {}
                            made = iter(self.controls())
                            for group, title in groups.items():
                                names = [f.name for f in self.specs
                                         if f.metadata["group"] == group]
                                with gr.Accordion(title, open=group in ("fusion", "finish")):
                                    for name in names:
                                        controls[name] = next(made)
                            fuse_btn = gr.Button("开始融合 / Fuse", variant="primary",
                                                 elem_id="fuse-btn")
                        with gr.Column(scale=3):
                            preview = serve_privately(gr.Image(
                                label="实时预览 / Preview", interactive=False,
                                elem_id="preview", height=420), store, provenance=True)
                            preview_msg = gr.Markdown(elem_id="preview-msg")
                            compare = serve_privately(gr.ImageSlider(
                                label="前后对比 / Before · after", elem_id="compare",
                                interactive=False), store, provenance=True)
                            result = serve_privately(gr.Image(
                                label="结果 / Result", interactive=False, elem_id="result",
                                buttons=["download", "fullscreen"]), store, provenance=True)
                            download = gr.File(label="下载 / Download", elem_id="download")
                            result_msg = gr.Markdown(elem_id="result-msg")
                    gallery = gr.Gallery(label="本次历史 / History", columns=6, height=200,
                                         elem_id="history")
                with gr.Tab("实时预览 / Live", id="live"):
                    live_tab.build()  # in this browser: the phone app's engine
                    with gr.Accordion("服务器往返模式 / Server round trip (each frame "
                                      "through the server)", open=False, elem_id="live-server"):
                        gr.Markdown("用图片融合页的源人脸，对摄像头画面实时融合"
                                    "（320 裁剪，跟踪模式）/ "
                                    "Uses the Album tab's source face on your camera, live "
                                    "(320 crop, tracking).")
                        with gr.Row():
                            webcam = gr.Image(sources=["webcam"], streaming=True,
                                              type="numpy", label="摄像头 / Camera",
                                              elem_id="webcam")
                            live_out = serve_privately(gr.Image(
                                label="融合 / Fused", interactive=False, elem_id="live-out"),
                                store, provenance=True)
                        live_msg = gr.Markdown(elem_id="live-msg")
                with gr.Tab("批量 / Batch", id="batch"):
                    with gr.Row():
                        batch_source = upload_image(
                            label="源人脸 / Source face", type="numpy", format="png",
                            elem_id="batch-source", height=280)
                        batch_files = gr.File(label="模板照片 / Template photos",
                                              file_count="multiple",
                                              file_types=["image", ".heic", ".heif", ".avif"],
                                              elem_id="batch-files")
                    batch_btn = gr.Button("批量融合 / Fuse all", variant="primary",
                                          elem_id="batch-btn")
                    batch_msg = gr.Markdown(elem_id="batch-msg")
                    batch_zip = gr.File(label="下载全部 / Download all (zip)",
                                        elem_id="batch-zip")
                    batch_gallery = gr.Gallery(label="结果 / Results", columns=6, height=240)
                video_tab = VideoTab(self)
                video_tab.layout()
            inputs = [controls[n] for n in self.names]
            video_tab.wire(inputs)

            template.change(self.on_template, [template, controls["det_threshold"]],
                            [faces_view, controls["template_face"], face_msg],
                            api_visibility="private")
            controls["det_threshold"].release(
                self.on_template, [template, controls["det_threshold"]],
                [faces_view, controls["template_face"], face_msg], api_visibility="private")
            preview_io = ([source, template, *inputs], [preview, preview_msg])
            for trigger in (source.change, template.change):
                trigger(self.preview, *preview_io, trigger_mode="always_last",
                        api_visibility="private")
            for control in controls.values():
                # Sliders fire on release, the rest on change; "always_last" drops the
                # events queued behind a running preview: a debounce.
                event = control.release if isinstance(control, gr.Slider) else control.change
                event(self.preview, *preview_io, trigger_mode="always_last",
                      api_visibility="private", show_progress="hidden")

            def apply_preset(name):
                # A preset is a whole setting, the defaults with its values (as `preset()`
                # and the phone app make it): what another preset changed does not linger.
                # The faces and the region chosen for these photos stay as they are.
                values = preset_params(name).to_dict() if name in PRESETS else {}
                keep = set(per_photo_names())
                return [gr.update(value=values[n]) if n in values and n not in keep
                        else gr.update() for n in self.names]

            preset.change(apply_preset, preset, inputs, api_visibility="private").then(
                self.preview, *preview_io, api_visibility="private")
            fuse_btn.click(self.fuse_full, [source, template, history, *inputs],
                           [result, compare, download, gallery, history, result_msg],
                           api_visibility="private", concurrency_id="fuse")
            # The API: /fuse takes source and template (images) and every parameter with
            # its default, and returns the fused image.
            api_out = serve_privately(gr.Image(visible=False, format="png"), store,
                                      provenance=True)
            api_btn = gr.Button(visible=False)
            api_btn.click(_named_api(self), [source, template, *inputs], api_out,
                          api_name="fuse", concurrency_id="fuse")
            webcam.stream(self.camera_frame, [webcam, source, *inputs], [live_out, live_msg],
                          stream_every=0.04, time_limit=600, concurrency_limit=4,
                          api_visibility="private", show_progress="hidden")
            batch_btn.click(self.batch, [batch_source, batch_files, *inputs],
                            [batch_zip, batch_gallery, batch_msg], api_visibility="private",
                            concurrency_id="fuse")
            photo_types.build()  # last: the empty block adds no space above the tabs
        return demo


def _named_api(app: WebApp):
    """`app.fuse_api` with a signature naming every input, so API clients can pass
    `source=`, `template=`, `ratio=` ... by name (Gradio reads the parameter names)."""
    import inspect

    names = ["source", "template", *app.names]

    def fuse(*args, **kwargs):
        bound = dict(zip(names, args, strict=False))
        bound.update(kwargs)
        return app.fuse_api(*(bound[n] for n in names))

    fuse.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    fuse.__doc__ = "Fuse the source face into the template; returns the fused image."
    return fuse


def theme():
    """Gradio's default look with system fonts: nothing is fetched from a font CDN."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "monospace"])

