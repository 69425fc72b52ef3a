"""The bench's chart: one panel per table the run measured (a `--only` run has no empty
axes), the phone app's live rows with their goals."""

from __future__ import annotations

from PIL import Image

from facefuse.quality.bench import plot

LIVE = {"rows": [{"throttle": t, "workers": w, "refine": True, "occlusion": o, "fps": f}
                 for t, w, o, f in ((1, 2, False, 28.6), (4, 0, False, 6.1), (1, 2, True, 18.2))],
        "goal": {"fps_1x": 25, "fps_4x": 12, "p95_ms_4x": 100}}
ALBUM = {"stages_ms": {"analyse": 40.0, "geometry": 20.0, "texture": 30.0, "refine": 25.0}}


def test_the_chart_has_a_panel_per_measured_table(tmp_path):
    one = Image.open(plot({"phone_app_live": LIVE}, tmp_path / "one.png"))
    two = Image.open(plot({"phone_app_live": LIVE, "album": ALBUM}, tmp_path / "two.png"))
    assert one.height == two.height
    assert 1.9 < two.width / one.width < 2.1  # 6 inches a panel
