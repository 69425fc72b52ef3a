"""fuse(): the chain load -> analyse -> align -> geometry -> texture -> refine -> paste -> finish.

`FaceFuser` holds what is costly to create (the MediaPipe graphs, the ONNX session) so that
batch runs, the WebUI and the camera reuse it; `facefuse.fuse()` is the one-shot form.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .errors import ParameterError
from .imageio import ImageSource, load_image
from .params import FusionParams
from .stages import finish, geometry, occlusion, texture
from .stages.align import AlignedFace, align_face
from .stages.analysis import Face, FaceAnalyzer, pick_face
from .stages.paste import REGION_EPS, paste_back
from .stages.refine import Refiner, load_refiner, refine_side

STAGES = ("load", "analyse", "align", "geometry", "texture", "refine", "paste", "finish")


class Timings(dict):
    """Milliseconds per stage; `with timings.stage("x"):` adds to stage x."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + (time.perf_counter() - start) * 1000.0

    @property
    def total(self) -> float:
        return float(sum(self.values()))


@dataclass(frozen=True)
class PreparedSource:
    """A source photo analysed and aligned once, reused for many templates or frames."""

    image: np.ndarray
    face: Face
    aligned: AlignedFace

    @cached_property
    def trust(self) -> np.ndarray:
        """The occlusion trust map of the aligned source crop, in its own frame (warped to
        each fused shape by the source's field). It depends on the source alone, so a video
        or the camera computes it once, not once a frame."""
        shape = self.aligned.landmarks[:, :2]
        bare_face = texture.face_mask(shape, self.aligned.size)
        return occlusion.trust_map(self.aligned.crop, shape,
                                   texture.skin_mask(shape, self.aligned.size, bare_face))


@dataclass
class FusionResult:
    image: np.ndarray  # HxWx3 uint8 RGB
    source_face: Face
    template_faces: list[Face]  # the faces that were replaced
    timings: Timings = field(default_factory=Timings)
    params: FusionParams = field(default_factory=FusionParams)


class FaceFuser:
    """Reusable fusion engine. Thread-safe: analysis is serialised, the rest is per call."""

    def __init__(self, analyzer: FaceAnalyzer | None = None, threads: int | None = None
                 ) -> None:
        self.analyzer = analyzer or FaceAnalyzer()
        self._threads = threads
        self._refiners: dict[str, Refiner] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.analyzer.close()

    def __enter__(self) -> FaceFuser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refiner(self, backend: str) -> Refiner:
        """The U-Net session for `backend`, created on first use and kept."""
        with self._lock:
            if backend not in self._refiners:
                self._refiners[backend] = load_refiner(backend, threads=self._threads)
            return self._refiners[backend]

    def set_refiner(self, backend: str, refiner: Refiner) -> None:
        """Use `refiner` for `backend` (calibration capture, a model being evaluated)."""
        with self._lock:
            self._refiners[backend] = refiner

    def prepare_source(self, source: ImageSource | np.ndarray, params: FusionParams,
                       timings: Timings | None = None) -> PreparedSource:
        """Load, analyse and align the source face once."""
        timings = timings if timings is not None else Timings()
        with timings.stage("load"):
            image = load_image(source, name="source")
        with timings.stage("analyse"):
            faces = self.analyzer.detect(image, params.det_threshold,
                                         thorough=params.source_face != 0)
            face = pick_face(faces, params.source_face, "source", params.det_threshold)
        with timings.stage("align"):
            aligned = align_face(image, face, params.crop_size)
        return PreparedSource(image=image, face=face, aligned=aligned)

    def fuse(self, source: ImageSource | PreparedSource, template: ImageSource,
             params: FusionParams | None = None, *, template_faces: list[Face] | None = None,
             trace: dict[str, np.ndarray] | None = None, **overrides: Any) -> FusionResult:
        """Fuse the source face into the template (see FusionParams for every knob).

        `template_faces`, when the caller already analysed this template (the WebUI does,
        to number the faces), skips analysing it again. `trace`, a dict, receives the last
        face's crop-space stages (see `fuse_face`) for evaluation and debugging."""
        params = (params or FusionParams()).with_overrides(**overrides)
        timings = Timings()
        if isinstance(source, PreparedSource):
            prepared = source
            if prepared.aligned.size != params.crop_size:
                with timings.stage("align"):
                    prepared = PreparedSource(prepared.image, prepared.face, align_face(
                        prepared.image, prepared.face, params.crop_size))
        else:
            prepared = self.prepare_source(source, params, timings)
        with timings.stage("load"):
            image = load_image(template, name="template")
        with timings.stage("analyse"):
            faces = template_faces if template_faces is not None else self.analyzer.detect(
                image, params.det_threshold, thorough=params.template_face != 0)
            if params.template_face == "all":
                pick_face(faces, 0, "template", params.det_threshold)
                targets = faces
            else:
                targets = [pick_face(faces, params.template_face, "template",
                                     params.det_threshold)]
        out = image
        for face in targets:
            out = self.fuse_face(prepared, out, face, params, timings, trace)
        with timings.stage("finish"):
            out = finish.resize_output(out, params.resolution)
        return FusionResult(image=out, source_face=prepared.face, template_faces=targets,
                            timings=timings, params=params)

    def fuse_face(self, src: PreparedSource, image: np.ndarray, face: Face,
                  params: FusionParams, timings: Timings,
                  trace: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Fuse into one already-analysed face of `image`: every stage from align to finish
        (the camera path calls this per frame with a tracked face).

        `trace`, when given, receives the aligned crops the stages pass along: "template"
        (the template warped to the fused shape), "texture" (the texture stage's output),
        "refined", "finished", and the masks "weight" and "face"; with occlusion on, also
        "source" (the source warped to the fused shape) and both trust maps."""
        size = params.crop_size
        with timings.stage("align"):
            tpl = align_face(image, face, size)
        with timings.stage("geometry"):
            if params.ratio == 0:  # the template stays exactly as it was
                shape = tpl.landmarks[:, :2]
            else:
                shape = geometry.fuse_shape(src.aligned.landmarks, tpl.landmarks,
                                            params.shape_ratio)
            anchors = geometry.anchor_points(shape, size)
            plan = geometry.MeshPlan.build(shape, anchors, size)
            tpl_field = plan.field(tpl.landmarks, anchors)
            tpl_warped = tpl_field.apply(tpl.crop).astype(np.float32)
            if params.ratio > 0:
                src_field = plan.field(src.aligned.landmarks, anchors)
                src_warped = src_field.apply(src.aligned.crop)
                # The features registered by their look, not only by the mesh.
                src_lm = src.aligned.landmarks
                passes = geometry.REGISTER_PASSES if params.feature_registration else 0
                for _ in range(passes):
                    shifts = geometry.feature_shifts(src_warped, tpl_warped, shape)
                    if not any(s.any() for s in shifts.values()):
                        break
                    src_lm = geometry.register_landmarks(src_lm, shape, shifts)
                    src_field = plan.field(src_lm, anchors)
                    src_warped = src_field.apply(src.aligned.crop)
        with timings.stage("texture"):
            region = texture.Region(params.region_scale, params.region_rotation,
                                    params.region_offset_x, params.region_offset_y)
            src_trust = tpl_trust = None
            if params.ratio > 0:
                mouth_open = face.mouth_open_ratio() > texture.MOUTH_OPEN_THRESHOLD
                if params.occlusion:
                    bare_face = texture.face_mask(shape, size)
                    bare_skin = texture.skin_mask(shape, size, bare_face)
                    src_trust = src_field.apply(src.trust)
                    tpl_trust = occlusion.trust_map(tpl_warped, shape, bare_skin,
                                                    outline=bare_face)
                comp = texture.mix(src_warped, tpl_warped, shape, params.ratio,
                                   mouth_open=mouth_open, region=region,
                                   source_trust=src_trust, template_trust=tpl_trust)
                fused, weight, face_region, skin = comp.image, comp.weight, comp.face, comp.skin
            else:
                fused = tpl_warped
                weight = np.zeros((size, size), np.float32)
                face_region = texture.face_mask(shape, size, region)
                skin = texture.skin_mask(shape, size, face_region)
            # Later stages change only what is the template's face: its occluders stay.
            touch = face_region if tpl_trust is None else face_region * tpl_trust
            skin = skin if tpl_trust is None else skin * tpl_trust
        texture_out = fused
        with timings.stage("refine"):
            if params.refine and params.ratio > 0:
                fused = self.refiner(params.backend)(fused, touch, tpl_warped,
                                                     work_side=refine_side(size),
                                                     gate=tpl_trust)
        refined = fused
        with timings.stage("finish"):
            if params.ratio == 0:  # only the finishing touches may change the template
                fused = tpl_warped
            fused = finish.apply_mode(fused, tpl_warped, weight, touch, params.mode)
            fused = finish.smooth_skin(fused, skin, params.smoothing)
            fused = finish.adjust_tone(fused, touch, params.brightness,
                                       params.contrast, params.saturation)
        if trace is not None:
            trace.update(template=tpl_warped, texture=texture_out, refined=refined,
                         finished=fused, weight=weight, face=face_region)
            if src_trust is not None:
                trace.update(source=src_warped.astype(np.float32), source_trust=src_trust,
                             template_trust=tpl_trust)
        with timings.stage("paste"):
            delta = (fused - tpl_warped) * (face_region > REGION_EPS)[..., None]
            out, _ = paste_back(image, tpl, tpl_field, delta, face_region,
                                poisson=params.poisson and params.ratio > 0)
        return out


def fuse(source: ImageSource | PreparedSource, template: ImageSource,
         params: FusionParams | None = None, *, engine: FaceFuser | None = None,
         **overrides: Any) -> FusionResult:
    """One-shot fusion. For many calls, make one `FaceFuser` and pass it as `engine`."""
    if params is not None and not isinstance(params, FusionParams):
        raise ParameterError("params must be a FusionParams (or use keyword overrides)")
    if engine is not None:
        return engine.fuse(source, template, params, **overrides)
    with FaceFuser() as own:
        return own.fuse(source, template, params, **overrides)
