"""The WebUI as people and programs use it: a real server on 127.0.0.1, the gradio_client
API, and Debian's Chromium driven by Playwright (skipped with a reason where absent)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions"]


@pytest.fixture(scope="module")
def photos(photo_files) -> dict[str, Path]:
    return photo_files


@pytest.fixture(scope="module")
def server(webui_server):
    return webui_server


def test_binds_to_loopback_with_analytics_off(server):
    import os

    assert server["url"].startswith("http://127.0.0.1:")
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_api_fuse_by_name_with_defaults(server, photos, astronaut_template):
    from gradio_client import Client, handle_file

    client = Client(server["url"], verbose=False)
    out = client.predict(source=handle_file(str(photos["source"])),
                         template=handle_file(str(photos["template"])), api_name="/fuse")
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == astronaut_template.shape
    changed = np.abs(image.astype(int) - astronaut_template).max(axis=2) > 4
    assert changed.sum() > 1000  # the face changed (same woman, so not by much)
    lowered = client.predict(source=handle_file(str(photos["source"])),
                             template=handle_file(str(photos["template"])), ratio=0.0,
                             smoothing=0.0, api_name="/fuse")
    unchanged = np.asarray(Image.open(lowered).convert("RGB"))
    assert np.array_equal(unchanged, astronaut_template)


def test_api_error_is_a_clear_message(server, photos):
    from gradio_client import Client, handle_file

    client = Client(server["url"], verbose=False)
    with pytest.raises(Exception, match="no face found in the template"):
        client.predict(source=handle_file(str(photos["source"])),
                       template=handle_file(str(photos["noface"])), api_name="/fuse")


def test_twenty_concurrent_requests_all_complete(server, photos):
    from gradio_client import Client, handle_file

    def call(i: int) -> tuple[int, str]:
        client = Client(server["url"], verbose=False)
        return i, client.predict(source=handle_file(str(photos["source"])),
                                 template=handle_file(str(photos["template"])),
                                 ratio=0.3 + 0.02 * i, refine=False, api_name="/fuse")

    started = time.perf_counter()
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(call, range(20)))
    assert sorted(i for i, _ in results) == list(range(20))
    assert all(Path(path).exists() for _, path in results)
    print(f"20 concurrent /fuse calls in {time.perf_counter() - started:.1f} s")


def test_full_fuse_saves_under_outputs_with_a_sidecar(server, photos, astronaut,
                                                      astronaut_template):
    app = server["app"]
    values = [f.default for f in app.specs]
    values[app.names.index("template_face")] = "0"
    out = app.fuse_full(astronaut, astronaut_template, [], *values)
    image, _, path, history, _, msg = out
    assert image.shape == astronaut_template.shape and "saved" in msg
    saved = Path(path)
    assert saved.parent == server["outputs"].resolve()
    sidecar = json.loads(saved.with_suffix(".json").read_text())
    assert sidecar["params"]["ratio"] == 0.5 and sidecar["facefuse"]
    assert len(history) == 1


def test_bad_upload_gives_a_message_and_the_server_keeps_serving(server, photos, astronaut):
    app = server["app"]
    values = [f.default for f in app.specs]
    values[app.names.index("template_face")] = "0"
    _, _, _, _, _, msg = app.fuse_full(astronaut, np.zeros((20, 20, 3), np.uint8), [],
                                       *values)
    assert "too small" in msg
    import urllib.request

    assert urllib.request.urlopen(server["url"], timeout=10).status == 200


needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not "
                                   "installed (.ci/run installs it with apt-get)")


def _watch_requests(page, base: str, seen: list[str]) -> None:
    """Record every request the page makes to anywhere but this server."""
    page.on("request", lambda r: seen.append(r.url)
            if not r.url.startswith((base, "data:", "blob:")) else None)


@needs_browser
def test_album_tab_in_a_real_browser(server, photos):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    base = server["url"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        external: list[str] = []
        _watch_requests(page, base.rstrip("/"), external)
        page.goto(base, wait_until="load")
        page.locator("#source input[type=file]").set_input_files(str(photos["source"]))
        page.locator("#template input[type=file]").set_input_files(str(photos["template"]))
        expect(page.locator("#face-msg")).to_contain_text("1 face", timeout=60_000)
        preview = page.locator("#preview img")
        expect(preview).to_be_visible(timeout=60_000)
        first = preview.get_attribute("src")
        # Move the ratio slider: the preview must change.
        slider = page.locator("#param-ratio input[type=range]")
        slider.fill("1")
        slider.dispatch_event("pointerup")
        slider.dispatch_event("change")
        expect(preview).not_to_have_attribute("src", first, timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "album-preview.png"), full_page=True)
        page.locator("#fuse-btn").click()
        expect(page.locator("#result-msg")).to_contain_text("saved", timeout=120_000)
        expect(page.locator("#result img")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "album-result.png"), full_page=True)
        # A photo without a face, in a fresh page: a message, no crash.
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        _watch_requests(page, base.rstrip("/"), external)
        page.goto(base, wait_until="load")
        page.locator("#source input[type=file]").set_input_files(str(photos["source"]))
        page.locator("#template input[type=file]").set_input_files(str(photos["noface"]))
        expect(page.locator("#face-msg")).to_contain_text("no face", timeout=60_000)
        page.locator("#fuse-btn").click()
        expect(page.locator("#result-msg")).to_contain_text("no face found", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "album-noface.png"), full_page=False)
        browser.close()
    saved = sorted(server["outputs"].glob("facefuse-*.jpg"))
    assert saved and saved[-1].with_suffix(".json").exists()
    assert external == [], f"the page fetched from outside the machine: {external}"


@needs_browser
def test_phone_photos_upload_show_and_fuse(server, tmp_path, astronaut, astronaut_template):
    """An iPhone HEIC (stored turned, with its rotation) and an Android AVIF through the
    page's own file inputs: both fuse, and the HEIC, which only Safari draws, is shown
    (capital extensions: the test below)."""
    from playwright.sync_api import expect, sync_playwright

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, 1))).save(
        tmp_path / "IMG_0001.heic", "HEIF", exif=exif.tobytes(), quality=85)
    Image.fromarray(astronaut_template).save(tmp_path / "android.avif", "AVIF", quality=85)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(server["url"], wait_until="load")
        page.locator("#source input[type=file]").set_input_files(str(tmp_path / "IMG_0001.heic"))
        page.locator("#template input[type=file]").set_input_files(str(tmp_path / "android.avif"))
        expect(page.locator("#face-msg")).to_contain_text("1 face", timeout=60_000)
        expect(page.locator("#preview img")).to_be_visible(timeout=60_000)
        shown = page.locator("#source img")
        expect(shown).to_have_attribute("src", re.compile(r"\.png$"), timeout=60_000)
        size = shown.evaluate("e => [e.naturalWidth, e.naturalHeight]")
        assert size == [astronaut.shape[1], astronaut.shape[0]]
        browser.close()


# A file as Chromium's picker on Linux hands over one named in capitals: no type. Picked
# (the input's change) or dropped on the box.
UNTYPED_FILE_JS = """async ([selector, b64, name, how]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name));
  if (data.files[0].type !== '') throw new Error('the file has a type: ' + data.files[0].type);
  const input = document.querySelector(selector + ' input[type=file]');
  if (how === 'pick') {
    input.files = data.files;
    input.dispatchEvent(new Event('change', {bubbles: true}));
  } else {
    input.parentElement.dispatchEvent(new DragEvent('drop', {bubbles: true, cancelable: true,
                                                              dataTransfer: data}));
  }
}"""


@needs_browser
def test_phone_photos_named_in_capitals_are_taken(server, tmp_path, astronaut,
                                                  astronaut_template):
    """iPhones name photos `IMG_0001.HEIC`; Chromium on Linux gives such a file no type, and
    Gradio's image box refused it in the page ("Invalid file type"). Picked (source) and
    dropped (template), untyped capital-named HEIC and AVIF files are taken and fuse."""
    from playwright.sync_api import expect, sync_playwright

    heic, avif = io.BytesIO(), io.BytesIO()
    Image.fromarray(astronaut).save(heic, "HEIF", quality=85)
    Image.fromarray(astronaut_template).save(avif, "AVIF", quality=85)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(server["url"], wait_until="load")
        page.wait_for_selector("#source input[type=file]", state="attached")
        page.evaluate(UNTYPED_FILE_JS, ["#source", base64.b64encode(heic.getvalue()).decode(),
                                        "IMG_0001.HEIC", "pick"])
        page.evaluate(UNTYPED_FILE_JS, ["#template", base64.b64encode(avif.getvalue()).decode(),
                                        "PXL_0001.AVIF", "drop"])
        expect(page.locator("#face-msg")).to_contain_text("1 face", timeout=60_000)
        expect(page.locator("#preview img")).to_be_visible(timeout=60_000)
        expect(page.locator("#source img")).to_have_attribute("src", re.compile(r"\.png$"),
                                                              timeout=60_000)
        assert "Invalid file type" not in page.content()
        browser.close()


@needs_browser
def test_camera_tab_with_a_fake_camera(server, photos, tmp_path, astronaut):
    """Chromium's fake camera plays a face video made from a real photo; fused frames come
    back from the server with their timing."""
    from playwright.sync_api import expect, sync_playwright

    from facefuse.runners.live import make_face_video, video_to_y4m

    video = make_face_video(astronaut, tmp_path / "face.mp4", frames=30)
    y4m = video_to_y4m(video, tmp_path / "face.y4m")
    flags = [*CHROMIUM_FLAGS, "--use-fake-device-for-media-stream",
             "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={y4m}"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=flags)
        context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                      permissions=["camera"])
        page = context.new_page()
        page.goto(server["url"], wait_until="load")
        page.locator("#source input[type=file]").set_input_files(str(photos["source"]))
        page.get_by_role("tab", name="Live").click()
        page.locator("#live-server").get_by_text("Server round trip").click()
        page.locator("#webcam [title='grant webcam access'] button").click()
        page.locator("#webcam button[aria-label='capture photo']").click()
        expect(page.locator("#live-out img")).to_be_visible(timeout=60_000)
        expect(page.locator("#live-msg")).to_contain_text("ms", timeout=60_000)
        first = page.locator("#live-out img").get_attribute("src")
        expect(page.locator("#live-out img")).not_to_have_attribute("src", first,
                                                                  timeout=60_000)
        # The fake camera's first frames can be blank; fused frames with a face must follow.
        expect(page.locator("#live-msg")).not_to_contain_text("no face", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "live.png"))
        context.close()
        browser.close()


@needs_browser
def test_live_tab_runs_the_engine_in_the_browser(server, photos, tmp_path, astronaut):
    """The Live tab runs the phone app's engine in the page (issue #16): the Album tab's
    source on Chromium's fake camera gives fused frames, and no frame goes to the server."""
    from playwright.sync_api import expect, sync_playwright

    from facefuse.quality.phone_browser import CHROMIUM_FLAGS as WEBGL_FLAGS
    from facefuse.quality.phone_browser import first_live_frame
    from facefuse.runners.live import make_face_video, video_to_y4m

    y4m = video_to_y4m(make_face_video(astronaut, tmp_path / "face.mp4", frames=30),
                       tmp_path / "face.y4m")
    flags = [*WEBGL_FLAGS, "--use-fake-device-for-media-stream",
             "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={y4m}"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=flags)
        context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                      permissions=["camera"])
        page = context.new_page()
        outside: list[str] = []
        _watch_requests(page, server["url"].rstrip("/"), outside)
        page.goto(server["url"], wait_until="load")
        page.locator("#source input[type=file]").set_input_files(str(photos["template"]))
        expect(page.locator("#source img")).to_be_visible(timeout=60_000)
        page.get_by_role("tab", name="Live").click()
        sent: list[str] = []
        page.on("request", lambda r: r.method != "GET" and sent.append(r.url))
        page.locator("#live-browser .ff-live-toggle").click()
        frame = first_live_frame(page, 240)
        assert frame is not None, "no live frame with a tracked face within 240 s"
        expect(page.locator("#live-browser .ff-live-stats")).to_contain_text("fps",
                                                                            timeout=30_000)
        page.locator("#live-browser .ff-live-toggle").click()
        context.close()
        browser.close()
    shape = (frame["h"], frame["w"], 3)
    before = np.asarray(frame["input"], np.uint8).reshape(shape).astype(int)
    after = np.asarray(frame["output"], np.uint8).reshape(shape).astype(int)
    x0, y0, x1, y1 = (max(0, int(v)) for v in frame["box"])
    assert np.abs(after - before)[y0:y1, x0:x1].mean() > 3  # the face moved toward the source
    assert sent == []  # nothing was posted: the frames stayed in the page
    assert outside == []


@needs_browser
def test_batch_tab_screenshot(server, photos):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server["url"], wait_until="load")
        page.get_by_role("tab", name="Batch").click()
        page.locator("#batch-source input[type=file]").set_input_files(str(photos["source"]))
        page.locator("#batch-files input[type=file]").set_input_files(
            [str(photos["template"]), str(photos["noface"])])
        # Gradio's progress bar names the batch step: watch every change of the page for it
        page.evaluate("""() => { window.sawProgress = false;
            new MutationObserver(() => { if (document.body.innerText.includes('fusing'))
                window.sawProgress = true; }).observe(document.body,
                {subtree: true, childList: true, characterData: true}); }""")
        page.locator("#batch-btn").click()
        expect(page.locator("#batch-msg")).to_contain_text("1 / 2", timeout=120_000)
        expect(page.locator("#batch-msg")).to_contain_text("no face")
        assert page.evaluate("window.sawProgress"), "the batch showed no progress"
        page.screenshot(path=str(ARTIFACTS / "batch.png"))
        browser.close()


class _NoProgress:
    def tqdm(self, items, desc=None):
        return items


def test_batch_tab_users_get_their_own_zip_and_same_names_both_kept(server, photos, tmp_path):
    """Two users start a batch in the same second, one with two photos that are both called
    `photo.jpg` (phones name many photos alike): each zip holds that user's results only,
    one per photo, none replaced by another."""
    import zipfile

    app = server["app"]
    values = [f.default for f in app.specs]
    values[app.names.index("template_face")] = "0"
    values[app.names.index("refine")] = False
    for sub, name in (("a", "template"), ("b", "source")):
        (tmp_path / sub).mkdir()
        shutil.copy(photos[name], tmp_path / sub / "photo.jpg")
    (tmp_path / "c").mkdir()
    shutil.copy(photos["template"], tmp_path / "c" / "other.jpg")
    jobs = {"A": [str(tmp_path / "a" / "photo.jpg"), str(tmp_path / "b" / "photo.jpg")],
            "B": [str(tmp_path / "c" / "other.jpg")]}
    source = np.asarray(Image.open(photos["source"]).convert("RGB"))
    app.prepared_source(source, app.params_from(values))  # both start at once, not after it
    with ThreadPoolExecutor(2) as pool:
        futures = {u: pool.submit(app.batch, source, files, *values, progress=_NoProgress())
                   for u, files in jobs.items()}
        answers = {u: f.result() for u, f in futures.items()}
    zips = {u: Path(answer[0]) for u, answer in answers.items()}
    assert zips["A"] != zips["B"] and zips["A"].parent == zips["B"].parent
    entries = {u: zipfile.ZipFile(z).namelist() for u, z in zips.items()}
    assert sorted(entries["A"]) == ["photo-2.jpg", "photo.jpg"]
    assert entries["B"] == ["other.jpg"]
    with zipfile.ZipFile(zips["A"]) as zf:
        a1, a2 = (np.asarray(Image.open(io.BytesIO(zf.read(n)))) for n in entries["A"])
    assert a1.shape == a2.shape and np.abs(a1.astype(int) - a2).mean() > 5  # two results


@needs_browser
def test_a_bad_upload_after_a_good_one_gets_facefuse_s_message(server, photos, tmp_path):
    """A browser session's second upload is read by facefuse too: after a good template, a
    text file named .jpg gets the clear 'not an image' message (from the face numbering and
    from Fuse), not Gradio's bare "Error" from its own decoder."""
    from playwright.sync_api import expect, sync_playwright

    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(server["url"], wait_until="load")
        page.locator("#source input[type=file]").set_input_files(str(photos["source"]))
        page.locator("#template input[type=file]").set_input_files(str(photos["template"]))
        expect(page.locator("#face-msg")).to_contain_text("1 face", timeout=60_000)
        page.locator("#template input[type=file]").set_input_files(str(notes))
        expect(page.locator("#face-msg")).to_contain_text("notes.jpg) is not an image",
                                                          timeout=60_000)
        page.locator("#fuse-btn").click()
        expect(page.locator("#result-msg")).to_contain_text("notes.jpg) is not an image",
                                                            timeout=60_000)
        browser.close()


@needs_browser
def test_a_preset_keeps_the_region_and_faces_chosen_for_these_photos(server):
    """Switching preset resets the style (every other field), not the region or the face
    picked for the photos at hand."""
    from playwright.sync_api import expect, sync_playwright

    from facefuse.params import PRESETS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(server["url"], wait_until="load")
        page.get_by_text("Region (zoom, rotate)").first.click()
        page.get_by_text("Detection", exact=False).first.click()
        chosen = {"region_scale": "1.2", "region_rotation": "-12", "source_face": "1"}
        for name, value in chosen.items():
            box = page.locator(f"#param-{name} input[type=number]")
            box.fill(value)
            box.press("Enter")
        smoothing = page.locator("#param-smoothing input[type=number]")
        smoothing.fill("0.9")
        smoothing.press("Enter")
        page.locator("#preset input").click()
        page.get_by_role("option", name="mobile", exact=True).click()
        expect(smoothing).to_have_value(str(PRESETS["mobile"]["smoothing"]), timeout=30_000)
        ratio = page.locator("#param-ratio input[type=number]")
        expect(ratio).to_have_value(str(PRESETS["mobile"]["ratio"]))
        for name, value in chosen.items():
            assert float(page.locator(f"#param-{name} input[type=number]").input_value()
                         ) == float(value), name
        browser.close()
