"""`facefuse bench --only phone-gpu`: would the live view's pixel stages run faster as WebGL2
passes here? The same work, one frame's worth, done by the engine's own JavaScript and as
fragment-shader passes in one page, at CPU throttling 1x and 4x, on each software GPU this
machine's Chromium can use.

Why: at 4x (the stand-in for a mid-range phone, throttling the page's thread only) the live
view's frame is the two models plus the warps, masks and colour work on the CPU; on a phone
those pixel stages would be GPU work. In headless Chromium the "GPU" is software on the same
CPU cores (SwiftShader, or Mesa's llvmpipe through ANGLE's EGL back end), so what the move
would buy here has to be measured, not assumed. One frame's worth (the live path's sizes):
the camera frame (640x480) warped into the 320 crop through an 81 x 81 node field, the source
crop warped through its own, both halved to 160, `BLUR_PASSES` 13-tap Gaussian passes at 160
(the masks' and the colour match's blurs), the mix at 320; the WebGL side then reads back the
two 160 images the U-Net takes and uploads its change, as a GPU path must. Both sides warp
the same real photo through the same field; their crops are compared (max |difference|) so
the two sides are known to do the same work.
"""

from __future__ import annotations

import base64
import statistics
from pathlib import Path
from typing import Any

# Chromium switches per software GPU; the first is the harness's own (phone_browser.py).
RENDERERS: dict[str, tuple[str, ...]] = {
    "SwiftShader": (),
    "Mesa llvmpipe": ("--use-angle=gl-egl", "--use-gl=angle", "--ignore-gpu-blocklist"),
}
BLUR_PASSES = 8
RATES = (1, 4)

# The page function (a JavaScript function expression beside this file).
PROBE_JS = (Path(__file__).with_name("webgl_probe.js")).read_text()


def bench_webgl_probe(photo: Path, runs: int = 30, passes: int = BLUR_PASSES) -> dict[str, Any]:
    """Per software GPU and throttling rate: ms per frame's worth of the pixel stages in
    JavaScript and as WebGL2 passes (medians of `runs`, the JS side first), and the
    largest difference between the two sides' template crops (0..255)."""
    from .phone_browser import chromium_path, engine_page, serve_app

    if chromium_path() is None:
        return {"note": "chromium is not installed"}
    blob = base64.b64encode(photo.read_bytes()).decode()
    rows = []
    with serve_app() as base:
        for name, flags in RENDERERS.items():
            with engine_page(base, flags=flags) as page:
                cdp = page.context.new_cdp_session(page)
                for rate in RATES:
                    cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})
                    r = page.evaluate(PROBE_JS, [blob, passes, runs])
                    if "error" in r:
                        rows.append({"gpu": name, "throttle": rate, "note": r["error"]})
                        continue
                    js, webgl = statistics.median(r["js"]), statistics.median(r["webgl"])
                    rows.append({"gpu": name, "renderer": r["renderer"], "throttle": rate,
                                 "js_ms": js, "webgl_ms": webgl, "webgl_over_js": webgl / js,
                                 "crop_max_diff": r["maxDiff"]})
                cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
    return {"blur_passes": passes, "runs": runs, "rows": rows}


def webgl_probe_markdown(r: dict[str, Any]) -> list[str]:
    """The phone-gpu table."""
    if "note" in r:
        return ["### Phone live view: its pixel stages as WebGL2 passes", "", r["note"], ""]
    lines = ["### Phone live view: its pixel stages as WebGL2 passes (software GPUs here)", "",
             f"One frame's worth of the live path's warps, halvings, {r['blur_passes']} "
             "Gaussian passes at 160 and the mix, in the engine's JavaScript and as WebGL2 "
             "passes (with the U-Net's readback), same page, median of "
             f"{r['runs']}. Crop diff: the two sides' template crops, max |difference| "
             "(0..255).", "",
             "| GPU (renderer) | CPU throttling | JavaScript ms | WebGL2 ms | WebGL2 / JS "
             "| crop diff |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        if "note" in row:
            lines.append(f"| {row['gpu']} | {row['throttle']}x | {row['note']} | | | |")
            continue
        lines.append(f"| {row['gpu']} ({row['renderer']}) | {row['throttle']}x | "
                     f"{row['js_ms']:.1f} | {row['webgl_ms']:.1f} | "
                     f"{row['webgl_over_js']:.2f}x | {row['crop_max_diff']:.2f} |")
    return [*lines, ""]
