"""The WebUI's in-browser live view: the phone app's engine (facefuse/phone/app/engine, the
same ES modules, MediaPipe landmark models and U-Net file) runs the camera path in the page
itself (its Worker), with the source face chosen in the Album tab. No frame goes to the
server: Gradio only hands out the engine's static files, so the frame rate is the browser's,
not a per-frame round trip's (upload, decode, fuse, encode, download).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..phone.assets import (
    APP_DIR,
    LIVE_REFINER_FILE,
    MEDIAPIPE_MODELS,
    REFINER_FILE,
    TRUST_FILE,
    mediapipe_modules,
)
from ..stages.refine import MODELS_DIR

FILE_ROUTE = "/gradio_api/file="


def file_url(path: Path) -> str:
    """Gradio's address of a file under a static path (set_static_paths)."""
    return FILE_ROUTE + Path(path).resolve().as_posix()


def face_model_files() -> dict[str, Path]:
    """The engine's MediaPipe models in the installed wheel: {detector, mesh, iris: file}."""
    modules = mediapipe_modules()
    if modules is None:
        return {}
    names = dict(zip(("detector", "mesh", "iris"), MEDIAPIPE_MODELS.values(), strict=True))
    return {role: modules / rel for role, rel in names.items()}


def static_paths() -> list[Path]:
    """What the page may load: the app's folder (engine, vendor runtimes, contract), the
    U-Net files, the occlusion trust map (for the Album tab's occlusion switch) and the
    MediaPipe models the engine runs (as the phone server serves them)."""
    return [APP_DIR, MODELS_DIR / REFINER_FILE, MODELS_DIR / LIVE_REFINER_FILE,
            MODELS_DIR / TRUST_FILE, *face_model_files().values()]


HTML = """
<div class="ff-live">
  <p>在浏览器中实时融合：图片融合页的源人脸，本机摄像头，画面不离开本页 /
     Live in this browser: the Album tab's source face on your camera; no frame leaves
     the page.</p>
  <button type="button" class="ff-live-toggle lg secondary">开始实时 / Start live</button>
  <p class="ff-live-stats" aria-live="off"></p>
  <canvas class="ff-live-view" width="1" height="1" aria-label="实时画面 / Live view"
          style="max-width:100%;display:block"></canvas>
</div>
"""

# Runs once when the tab's HTML is mounted (gr.HTML's js_on_load, `element` is its root).
JS = """
const ENGINE = %(engine)s, REFINER = %(refiner)s, LIVE_REFINER = %(live)s,
  TRUST = %(trust)s, FACE_MODELS = %(faces)s;
const START = '开始实时 / Start live', STOP = '停止实时 / Stop live';
const toggle = element.querySelector('.ff-live-toggle');
const info = element.querySelector('.ff-live-stats');
const canvas = element.querySelector('.ff-live-view');
let api = null, timer = 0, running = false;
// The tab's figures, each second's stats() (stats() restarts its counters when read).
const figures = {get running() { return running; }, tracked: 0, history: []};
window.facefuseLive = figures;

// The Album tab's controls (elem_id param-NAME): sliders and checkboxes as set there.
function albumParams() {
  const params = {};
  for (const box of document.querySelectorAll('[id^="param-"]')) {
    const name = box.id.slice(6);
    const number = box.querySelector('input[type=number]');
    const check = box.querySelector('input[type=checkbox]');
    if (number && number.value !== '') params[name] = Number(number.value);
    else if (check) params[name] = check.checked;
  }
  return params;
}

async function albumSource() {
  const img = document.querySelector('#source img');
  if (!img || !img.src) return null;
  const response = await fetch(img.src);
  return response.ok ? response.blob() : null;
}

function show() {
  const s = api.stats();
  if (!s) return;
  figures.tracked += s.faces_tracked;
  figures.history.push(s);
  if (figures.history.length > 600) figures.history.shift();
  info.textContent = `${s.fps.toFixed(1)} fps · ${s.frame_ms_p50.toFixed(0)} ms ` +
    `(p95 ${s.frame_ms_p95.toFixed(0)}) · faces ${s.faces_tracked} · dropped ${s.frames_dropped}`;
}

toggle.addEventListener('click', async () => {
  if (running) {
    clearInterval(timer); running = false; toggle.textContent = START;
    await api.stopLive();
    return;
  }
  try {
    info.textContent = '正在加载引擎… / loading the engine…';
    api = api || await import(ENGINE);
    window.facefuse = api;
    await api.loadEngine({refinerUrl: REFINER, liveRefinerUrl: LIVE_REFINER,
                          trustUrl: TRUST, faceModels: FACE_MODELS});
    const source = await albumSource();
    if (!source) {
      info.textContent = '⚠️ 请先在图片融合页添加源人脸 / add a source face in the Album tab';
      return;
    }
    await api.startLive(source, albumParams(), {canvas});
    running = true; toggle.textContent = STOP;
    timer = setInterval(show, 1000);
  } catch (err) {
    info.textContent = `⚠️ ${err.message || err}`;
  }
});
"""


def build() -> None:
    """The tab's in-browser live view (call inside the Live tab's block)."""
    import gradio as gr

    gr.set_static_paths(static_paths())
    script = JS % {"engine": json.dumps(file_url(APP_DIR / "engine" / "index.js")),
                   "refiner": json.dumps(file_url(MODELS_DIR / REFINER_FILE)),
                   "live": json.dumps(file_url(MODELS_DIR / LIVE_REFINER_FILE)),
                   "trust": json.dumps(file_url(MODELS_DIR / TRUST_FILE)),
                   "faces": json.dumps({k: file_url(v) for k, v in face_model_files().items()})}
    gr.HTML(HTML, js_on_load=script, elem_id="live-browser")
