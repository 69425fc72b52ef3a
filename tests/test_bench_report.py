"""The bench's reports: the chart has one panel per table the run measured (a `--only` run
has no empty axes), the phone app's live rows with their goals; the GPU probe compares the
same work on both sides."""

from __future__ import annotations

import pytest
from PIL import Image

from facefuse.quality.bench import plot
from facefuse.quality.phone_browser import chromium_path
from facefuse.quality.webgl_probe import RENDERERS, bench_webgl_probe, webgl_probe_markdown

LIVE = {"rows": [{"throttle": t, "workers": w, "refine": True, "occlusion": o, "fps": f}
                 for t, w, o, f in ((1, 2, False, 28.6), (4, 0, False, 6.1), (1, 2, True, 18.2))],
        "goal": {"fps_1x": 25, "fps_4x": 12, "p95_ms_4x": 100}}
ALBUM = {"stages_ms": {"analyse": 40.0, "geometry": 20.0, "texture": 30.0, "refine": 25.0}}


def test_the_chart_has_a_panel_per_measured_table(tmp_path):
    one = Image.open(plot({"phone_app_live": LIVE}, tmp_path / "one.png"))
    two = Image.open(plot({"phone_app_live": LIVE, "album": ALBUM}, tmp_path / "two.png"))
    assert one.height == two.height
    assert 1.9 < two.width / one.width < 2.1  # 6 inches a panel


@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed")
def test_the_gpu_probe_does_the_same_work_on_both_sides(photo_files):
    """bench --only phone-gpu: the WebGL2 passes warp the same photo through the same field
    as the engine's JavaScript (so the timings compare the same work), at 1x and 4x, on each
    software GPU this Chromium can use; a GPU it cannot use is a row with its reason."""
    report = bench_webgl_probe(photo_files["source"], runs=2, passes=2)
    measured = [row for row in report["rows"] if "note" not in row]
    assert {row["gpu"] for row in report["rows"]} == set(RENDERERS)
    assert {row["throttle"] for row in measured} == {1, 4}
    assert all(row["crop_max_diff"] < 0.5 for row in measured)  # 0..255
    table = webgl_probe_markdown(report)
    assert sum(line.startswith("| ") and "x |" in line for line in table) == len(report["rows"])
