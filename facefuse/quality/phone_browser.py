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

BLANK_PAGE = "/__engine__.html"
# Headless Chromium with WebGL on SwiftShader (Face Mesh draws its input through WebGL).
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-default-apps", "--disable-extensions",
                  "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


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
