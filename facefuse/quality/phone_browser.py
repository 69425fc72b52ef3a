"""Drive the phone app's engine in Chromium: a loopback static server for the app's files
and a Playwright page with a phone profile, shared by the phone tests and `facefuse bench`.

This is a measuring harness, not the product's server (that is `facefuse phone`): plain
HTTP on 127.0.0.1 (a secure context, so every browser API the app needs is there), the same
files at the same URL paths.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from ..phone.assets import APP_DIR, model_files
from ..phone.server import HEADERS

BLANK_PAGE = "/__engine__.html"
# Headless Chromium with WebGL on SwiftShader (the live view's compositor draws with it);
# memory measurements (js_heap_mb) taken at once, not at the next garbage collection.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-default-apps", "--disable-extensions",
                  "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                  "--enable-blink-features=ForceEagerMeasureMemory"]
# As `facefuse phone` serves it: cross-origin isolated, which is also what lets
# performance.measureUserAgentSpecificMemory() see the live Workers' heaps.
ISOLATION_HEADERS = {k: v for k, v in HEADERS.items() if k.startswith("Cross-Origin")}


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _AppFiles(http.server.SimpleHTTPRequestHandler):
    """The app's folder, the model files at their URL paths, and a blank page to start on."""

    extra: ClassVar[dict[str, Path]] = {}

    def translate_path(self, path: str) -> str:
        rel = path.split("?", 1)[0].split("#", 1)[0].lstrip("/")
        if rel in self.extra:
            return str(self.extra[rel])
        return super().translate_path(path)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == BLANK_PAGE:
            body = b"<!doctype html><meta charset=utf-8><title>engine</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, *args: Any) -> None:  # quiet: tests read results, not logs
        pass


_AppFiles.extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                            ".wasm": "application/wasm", ".js": "text/javascript",
                            ".mjs": "text/javascript", ".json": "application/json",
                            ".data": "application/octet-stream"}


@contextmanager
def serve_app(root: Path = APP_DIR) -> Iterator[str]:
    """Serve the app on a free loopback port; yields the base URL (no trailing slash)."""
    handler = type("Handler", (_AppFiles,), {"extra": model_files()})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def engine_page(base: str, *, phone: bool = True, flags: tuple[str, ...] = (),
                camera: bool = False) -> Iterator[Any]:
    """A Playwright page (Pixel 7 profile when `phone`) with the engine imported as
    `window.facefuse` and loaded (models compiled). `flags`: more Chromium switches (a fake
    camera); `camera`: grant the page the camera."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(),
                                     args=[*CHROMIUM_FLAGS, *flags])
        try:
            context = browser.new_context(**(pw.devices["Pixel 7"] if phone else {}))
            if camera:
                context.grant_permissions(["camera"], origin=base)
            page = context.new_page()
            page.goto(base + BLANK_PAGE)
            page.evaluate("""async () => {
                window.facefuse = await import('/engine/index.js');
                await window.facefuse.loadEngine();
            }""")
            yield page
        finally:
            browser.close()


def first_live_frame(page: Any, limit_s: float) -> dict[str, Any] | None:
    """The live view's first frame with a tracked face, read in one go (its input and output
    pixels, size, face box, and the engine's stats() at that moment), or None after
    `limit_s` seconds."""
    return page.evaluate("""async (limit) => {
        const end = performance.now() + limit;
        while (performance.now() < end) {
            const f = window.facefuse && window.facefuse.lastLiveFrame()?.box
                && await window.facefuse.lastLiveFramePixels();
            if (f && f.box) {
                return {input: Array.from(f.input), output: Array.from(f.output),
                        w: f.w, h: f.h, box: f.box, stats: window.facefuse.stats()};
            }
            await new Promise((resolve) => setTimeout(resolve, 100));
        }
        return null;
    }""", limit_s * 1000)


LIVE_VS_ALBUM_JS = """async ([source, params, variants]) => {
    const f = await window.facefuse.lastLiveFramePixels();
    if (!f || !f.box) return null;
    const rgba = new Uint8ClampedArray(f.w * f.h * 4);
    for (let i = 0, j = 0; j < rgba.length; i += 3, j += 4) {
        rgba[j] = f.input[i]; rgba[j + 1] = f.input[i + 1]; rgba[j + 2] = f.input[i + 2];
        rgba[j + 3] = 255;
    }
    const blob = new Blob([Uint8Array.from(atob(source), (c) => c.charCodeAt(0))]);
    const b64 = (a) => {
        let s = '';
        for (let i = 0; i < a.length; i += 8192) {
            s += String.fromCharCode(...a.subarray(i, i + 8192));
        }
        return btoa(s);
    };
    // The live view's parameters (index.js liveParams) through the album path, and each
    // variant of them on the same frame and face.
    const albums = [];
    for (const variant of [{}, ...variants]) {
        const r = await window.facefuse.fuse(blob, new ImageData(rgba, f.w, f.h),
            {...params, ...variant, crop_size: 320, smoothing: 0, poisson: false,
             resolution: 'original', template_face: 0},
            {templateFaces: [{box: f.box, score: 1, landmarks: f.landmarks}]});
        const album = new Uint8Array(f.w * f.h * 3);
        for (let i = 0, j = 0; i < album.length; i += 3, j += 4) {
            const d = r.image.data;
            album[i] = d[j]; album[i + 1] = d[j + 1]; album[i + 2] = d[j + 2];
        }
        albums.push(b64(album));
    }
    return {w: f.w, h: f.h, input: b64(f.input), live: b64(f.output), albums,
            landmarks: Array.from(f.landmarks)};
}"""


HEAP_JS = """async () => {
  const r = await performance.measureUserAgentSpecificMemory();
  const sum = (scope) => r.breakdown.filter((b) => b.types.includes('JavaScript')
    && b.attribution.some((a) => a.scope === scope)).reduce((s, b) => s + b.bytes, 0);
  return {page: sum('Window') / 2 ** 20, workers: sum('DedicatedWorkerGlobalScope') / 2 ** 20};
}"""


def js_heap_mb(page: Any) -> dict[str, float]:
    """The JavaScript heaps in use, MB, as performance.measureUserAgentSpecificMemory()
    reports them: the page's and its Workers' (the live view's frames are fused in a
    Worker, whose heap the page's own figure leaves out; a Worker kept in the page's pool
    counts while idle too). Needs the cross-origin isolated page `serve_app` serves."""
    return page.evaluate(HEAP_JS)


def live_vs_album(page: Any, source_b64: str, params: dict[str, Any],
                  variants: tuple[dict[str, Any], ...] = ()) -> dict[str, Any] | None:
    """The live view's last frame (started with `params`) against the album path's fusion of
    the same camera frame with the same tracked face and those parameters (320 crop): PSNR
    (dB) inside the face oval; the album's own change there (PSNR of the album result
    against the camera frame, so the first figure reads against how much fusion changed);
    and for each of `variants` (parameters changed from `params`), the album's result with
    them against the album's with `params` (how far the comparison would move if the live
    view ignored them). None before a tracked frame."""
    import base64

    import cv2
    import numpy as np

    from ..stages.mesh_topology import FACE_OVAL_LOOP

    r = page.evaluate(LIVE_VS_ALBUM_JS, [source_b64, params, list(variants)])
    if r is None:
        return None
    shape = (r["h"], r["w"], 3)

    def pixels(b64: str) -> np.ndarray:
        return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(shape).astype(np.float64)

    live, camera = pixels(r["live"]), pixels(r["input"])
    album, *others = (pixels(a) for a in r["albums"])
    oval = np.asarray(r["landmarks"], np.float64).reshape(-1, 3)[list(FACE_OVAL_LOOP), :2]
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(oval).astype(np.int32)], 1)
    sel = mask.astype(bool)

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        mse = float(np.mean((a[sel] - b[sel]) ** 2))
        return 99.0 if mse <= 1e-12 else 10 * float(np.log10(255.0 ** 2 / mse))

    return {"face_psnr_db": psnr(live, album),
            "album_change_psnr_db": psnr(album, camera),
            "variants_psnr_db": [psnr(other, album) for other in others],
            "face_pixels": int(sel.sum())}
