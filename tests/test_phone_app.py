"""The phone app around the engine: the HTTPS server and its local CA, the QR code, the bind
address, the --build bundle, and the album page in Chromium with a Pixel 7 profile (touch,
layout, every parameter, the AI tag on saved files, offline after the first visit, no request
to another origin).

A browser here trusts our CA the way a phone that installed it does: Chromium is told to
accept certificates chaining to the CA's public key (--ignore-certificate-errors-spki-list),
so the service worker registers exactly as it would on the phone. Steps that fuse need the
engine (facefuse/phone/app/engine/index.js, from the phone-engine branch); they skip with a
reason while it is absent, never with a stand-in.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefuse.errors import ParameterError
from facefuse.imageio import has_provenance_tag, provenance_xmp
from facefuse.params import PRESETS, param_specs
from facefuse.phone import certs, server

REPO = Path(__file__).resolve().parents[1]
APP = server.APP_DIR
ENGINE = APP / "engine" / "index.js"
CONTRACT = APP / "contract.json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# WebGL on SwiftShader: Face Mesh draws its input through WebGL (as the engine's tests run).
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions"]
PHONE_VIEWPORT = {"width": 390, "height": 844}
NEEDS_ENGINE = pytest.mark.skipif(
    not ENGINE.exists(), reason="the engine (facefuse/phone/app/engine/index.js) arrives with "
    "the phone-engine branch; this step fuses and has no stand-in")
NEEDS_CONTRACT = pytest.mark.skipif(
    not CONTRACT.exists(), reason="contract.json is written by facefuse/phone/contract.py on "
    "the phone-engine branch; the controls are generated from it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def labels() -> dict[str, str]:
    import facefuse.params

    if hasattr(facefuse.params, "LABELS"):
        return facefuse.params.LABELS
    from facefuse.webui.app import LABELS

    return LABELS


@pytest.fixture(scope="module")
def authority(tmp_path_factory) -> certs.Authority:
    return certs.ensure_authority(tmp_path_factory.mktemp("phone-config"))


@pytest.fixture(scope="module")
def site(authority):
    srv = server.make_server("127.0.0.1", 0, authority)
    srv.start_background()
    yield {"url": f"https://localhost:{srv.port}/", "server": srv}
    srv.shutdown()
    srv.server_close()


def fetch(url: str, authority: certs.Authority, method: str = "GET", data: bytes | None = None):
    """An HTTPS request that trusts only our CA; returns (status, headers, body)."""
    ctx = ssl.create_default_context(cafile=str(authority.cert_path))
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


# ------------------------------------------------------------------ certificates and server

def test_ca_is_made_once_private_and_name_constrained(tmp_path):
    from cryptography import x509

    first = certs.ensure_authority(tmp_path)
    again = certs.ensure_authority(tmp_path)
    assert first.fingerprint == again.fingerprint
    assert first.key_path.stat().st_mode & 0o777 == 0o600
    ca = first.certificate
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    permitted = {str(getattr(n, "value", n)) for n in constraints.value.permitted_subtrees}
    assert {"localhost", "127.0.0.0/8", "192.168.0.0/16", "10.0.0.0/8"} <= permitted


def test_ca_can_vouch_for_local_addresses_only(tmp_path):
    """A leaked CA key could not impersonate a web site: verification refuses it."""
    import ipaddress

    from cryptography import x509
    from cryptography.x509 import verification as v

    authority = certs.ensure_authority(tmp_path)
    store = v.Store([authority.certificate])

    def verifies(host: str) -> bool:
        chain, _ = certs.issue_server_certificate(authority, [host])
        leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
        try:
            name = v.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = v.DNSName(host)
        try:
            v.PolicyBuilder().store(store).build_server_verifier(name).verify(leaf, [])
        except v.VerificationError:
            return False
        return True

    assert verifies("localhost") and verifies("127.0.0.1") and verifies("192.168.1.23")
    assert not verifies("example.com")
    assert not verifies("8.8.8.8")


def test_https_verifies_against_our_ca_only(site, authority):
    status, _, body = fetch(site["url"], authority)
    assert status == 200 and b"<title>facefuse" in body
    port = site["server"].port
    assert fetch(f"https://127.0.0.1:{port}/", authority)[0] == 200
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(site["url"], context=ssl.create_default_context(), timeout=10)


def test_static_files_only_with_a_strict_policy(site, authority):
    url = site["url"]
    status, headers, _ = fetch(url, authority)
    assert headers["Content-Security-Policy"].startswith(server.CSP)
    assert "connect-src 'self';" in headers["Content-Security-Policy"]
    assert "http" not in server.CSP.replace("https:", "")  # no other origin named at all
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["X-Content-Type-Options"] == "nosniff"
    for method in ("POST", "PUT", "DELETE"):
        status, headers, body = fetch(url + "upload", authority, method, b"x" * 1000)
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    for path in ("../pyproject.toml", "%2e%2e/server.py", "..%2fcerts.py", "certs.py",
                 "facefuse-ca.key", "server.key"):
        assert fetch(url + path, authority)[0] == 404, path
    status, headers, body = fetch(url + "facefuse-ca.crt", authority)
    assert body == authority.cert_path.read_bytes()
    assert headers["Content-Type"] == "application/x-x509-ca-cert"
    status, headers, body = fetch(url + "sw.js", authority)
    assert status == 200 and headers["Content-Type"] == "text/javascript"


def test_a_client_that_refuses_the_certificate_leaves_the_server_serving(site, authority,
                                                                        capsys):
    for _ in range(3):  # what every phone does before it trusts the CA
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(site["url"], context=ssl.create_default_context(), timeout=5)
    with socket.create_connection(("127.0.0.1", site["server"].port)) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")  # plain HTTP on the TLS port
    assert fetch(site["url"], authority)[0] == 200
    assert "Traceback" not in capsys.readouterr().err


def test_precache_list_names_every_file(site, authority):
    _, _, body = fetch(site["url"] + server.PRECACHE_URL, authority)
    listing = json.loads(body.decode().split("=", 1)[1].strip().rstrip(";"))
    listed = set(listing["files"])
    expected = set(server.app_files()) | {"./"}
    assert expected <= listed
    for url in listed:
        assert fetch(site["url"] + url.removeprefix("./"), authority)[0] == 200, url


def test_binds_loopback_by_default_and_elsewhere_only_when_told(authority):
    from facefuse.cli import build_parser

    assert build_parser().parse_args(["phone"]).host == "127.0.0.1"
    srv = server.make_server("127.0.0.1", 0, authority)
    assert srv.server_address[0] == "127.0.0.1"
    srv.server_close()
    other = server.make_server("127.0.0.2", 0, authority)  # another loopback address
    try:
        assert other.server_address[0] == "127.0.0.2"
        other.start_background()
        assert fetch(f"https://127.0.0.2:{other.port}/", authority)[0] == 200
    finally:
        other.shutdown()
        other.server_close()
    assert certs.certificate_hosts("0.0.0.0")[:3] == ["localhost", "127.0.0.1", "::1"]
    assert all(certs.is_local(h) for h in certs.certificate_hosts("0.0.0.0"))


def qr_from_terminal(text: str) -> str:
    """Decode the half-block QR code the CLI printed (light on dark) with OpenCV."""
    import cv2

    rows = [line for line in text.splitlines() if line and set(line) <= set("█▀▄ ")]
    width = max(len(r) for r in rows)
    light = np.zeros((2 * len(rows), width), bool)
    for y, row in enumerate(rows):
        for x, ch in enumerate(row.ljust(width)):
            light[2 * y, x] = ch in "█▀"
            light[2 * y + 1, x] = ch in "█▄"
    img = np.where(light, 255, 0).astype(np.uint8)
    img = cv2.copyMakeBorder(img, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=255)
    img = cv2.resize(img, None, fx=10, fy=10, interpolation=cv2.INTER_NEAREST)
    # OpenCV's classic detector misses ~0.5% of valid codes (it depends on the port in the
    # URL); its ArUco-based one reads those.
    for detector in (cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()):
        decoded = detector.detectAndDecode(img)[0]
        if decoded:
            return decoded
    return ""


def test_cli_prints_the_url_and_a_qr_code_of_it(tmp_path):
    port = free_port()
    env = {**os.environ, "FACEFUSE_CONFIG_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    # Ctrl-C as a terminal sends it. A job started in the background of a script (as CI may
    # be) inherits SIGINT *ignored*, and Python then installs no KeyboardInterrupt for it:
    # the child gets the default disposition back, as a terminal's foreground job has.
    proc = subprocess.Popen([sys.executable, "-m", "facefuse.cli", "phone", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        out = "".join(lines)
        url = f"https://localhost:{port}/"
        assert out.startswith(f"facefuse phone app: {url}")
        assert qr_from_terminal(out) == url
        authority = certs.ensure_authority(tmp_path / "phone")
        assert authority.fingerprint in out
        assert fetch(url, authority)[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_build_writes_a_complete_bundle(tmp_path):
    dest = tmp_path / "site"
    written = server.build_bundle(dest)
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert set(written) <= files and server.PRECACHE_URL in files and "index.html" in files
    listing = (dest / server.PRECACHE_URL).read_text()
    assert all(f'"{url}"' in listing for url in server.app_files())
    assert not [f for f in files if f.endswith((".key", ".crt", ".pem"))]  # no CA material
    assert sum(written.values()) < 25e6
    assert server.CSP in (dest / "_headers").read_text()
    server.build_bundle(dest)  # an earlier build is replaced
    foreign = tmp_path / "not-empty"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(ParameterError, match="not an empty folder"):
        server.build_bundle(foreign)
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"]


def test_build_installs_offline_from_a_plain_static_host(tmp_path, phone):
    """The --build bundle served by a generic static server (no facefuse, no CA: loopback
    HTTP is a secure context) registers its service worker and reloads offline."""
    import functools
    import http.server
    import threading

    server.build_bundle(tmp_path / "site")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / "site"))
    handler.log_message = lambda *a: None
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{host.server_address[1]}/"
    try:
        ctx = phone["new_context"]()
        page = ctx.new_page()
        page.goto(url)
        state = wait_ready(page, offline=True)
        ctx.set_offline(True)
        page.reload()
        assert wait_ready(page) == state
        assert page.locator("#params details").count() > 0 or not CONTRACT.exists()
        assert same_origin(ctx.seen, url) == []
        ctx.close()
    finally:
        host.shutdown()
        host.server_close()


def test_cli_build(tmp_path):
    from facefuse.cli import main

    assert main(["phone", "--build", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "sw.js").exists()
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    assert main(["phone", "--build", str(tmp_path / "x")]) == 2


def test_a_taken_port_is_a_parameter_error(tmp_path, monkeypatch, capsys):
    from facefuse.cli import main

    monkeypatch.setenv("FACEFUSE_CONFIG_DIR", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["phone", "--port", str(taken.getsockname()[1])]) == 2
    assert "pick another --port" in capsys.readouterr().err


def test_page_policy_matches_the_server():
    html = (APP / "index.html").read_text()
    meta = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert meta == server.CSP
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from another origin


# ------------------------------------------------------------------ the page in Chromium

@pytest.fixture(scope="module")
def phone(site, authority):
    """A Pixel 7 (touch, mobile) at 390x844 that trusts our CA like a phone that installed it."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (CI installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    flags = [*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={authority.spki_sha256}"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=flags)
        profile = {**pw.devices["Pixel 7"], "viewport": PHONE_VIEWPORT}
        profile.pop("default_browser_type", None)

        def new_context(**extra):
            ctx = browser.new_context(**profile, **extra)
            ctx.seen, ctx.violations = [], []
            ctx.on("request", lambda r: ctx.seen.append(r.url))
            ctx.on("console", lambda m: "Content Security Policy" in m.text
                   and ctx.violations.append(m.text))
            return ctx

        yield {"new_context": new_context, "url": site["url"]}
        browser.close()


def open_app(phone):
    """A fresh phone context with the app loaded and ready: (context, page)."""
    ctx = phone["new_context"]()
    page = ctx.new_page()
    page.goto(phone["url"])
    wait_ready(page)
    return ctx, page


def wait_ready(page, offline: bool = False) -> str:
    """Wait for the shell (and the engine, when present); returns the page's ready state."""
    page.wait_for_function("() => ['engine', 'no-engine'].includes("
                           "document.documentElement.dataset.ready)"
                           " || document.getElementById('error').textContent",
                           timeout=60_000)
    if offline:
        page.wait_for_function("() => document.documentElement.dataset.offline === 'ready'",
                               timeout=60_000)
    return page.evaluate("document.documentElement.dataset.ready")


def same_origin(urls: list[str], base: str) -> list[str]:
    origin = base.rstrip("/")
    return [u for u in urls if not (u.startswith(origin + "/") or u == origin
                                    or u.startswith(("data:", "blob:")))]


@NEEDS_CONTRACT
def test_a_preset_keeps_the_region_and_faces_chosen_for_these_photos(phone):
    """Switching preset resets the style, not the pinch, turn or face picked on the photo."""
    ctx, page = open_app(phone)
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    chosen = {"region_scale": "1.2", "region_rotation": "-12", "region_offset_y": "0.05",
              "source_face": "1"}
    for name, value in chosen.items():
        page.eval_on_selector(f"#param-{name}", """(e, v) => { e.value = v;
            e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change')); }""",
                              value)
    page.eval_on_selector("#param-smoothing", """e => { e.value = '0.9';
        e.dispatchEvent(new Event('change')); }""")
    page.select_option("#preset", "desktop")
    value = lambda name: page.eval_on_selector(f"#param-{name}", "e => e.value")  # noqa: E731
    assert {name: float(value(name)) for name in chosen} == {
        name: float(v) for name, v in chosen.items()}
    assert float(value("smoothing")) == PRESETS["desktop"]["smoothing"]  # the style is reset
    assert float(value("ratio")) == PRESETS["desktop"]["ratio"]
    ctx.close()


def test_portrait_layout_fits_and_touch_targets_are_big(phone):
    ctx, page = open_app(phone)
    assert page.evaluate("matchMedia('(pointer: coarse)').matches")  # a touch screen
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1] == 390
    small = page.evaluate("""() => [...document.querySelectorAll(
        'button, select, summary, a, label.button, input:not([type=file])')]
      .filter(e => e.offsetParent !== null)
      .map(e => [e.id || e.textContent.trim().slice(0, 20), e.getBoundingClientRect()])
      .filter(([, r]) => r.width < 44 || r.height < 44)
      .map(([n, r]) => `${n} ${r.width.toFixed(0)}x${r.height.toFixed(0)}`)""")
    assert small == []
    ARTIFACTS = REPO / "test-artifacts"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "phone-app-390x844.png"), full_page=True)
    assert same_origin(ctx.seen, phone["url"]) == []
    ctx.close()


@NEEDS_CONTRACT
def test_every_parameter_with_its_range_label_and_the_mobile_default(phone):
    ctx, page = open_app(phone)
    mobile = {f.name: f.default for f in param_specs()} | PRESETS["mobile"]
    names = labels()
    assert page.eval_on_selector("#preset", "e => e.value") == "mobile"
    page.select_option("#preset", "desktop")
    kinds = {f.name: f.metadata["kind"] for f in param_specs()}
    for name, value in PRESETS["desktop"].items():
        if kinds[name] == "float":
            assert float(page.eval_on_selector(f"#param-{name}", "e => e.value")) == value
    page.select_option("#preset", "mobile")
    for f in param_specs():
        meta, sel = f.metadata, f"#param-{f.name}"
        # not mirrored in the browser engine yet, or a desktop runtime choice: not offered
        if meta.get("desktop_only") or meta.get("runtime_only"):
            assert page.locator(sel).count() == 0, f.name
            continue
        assert page.locator(sel).count() == 1, f.name
        got = page.eval_on_selector(sel, """e => ({type: e.type, min: e.min, max: e.max,
            step: e.step, value: e.value, checked: e.checked,
            options: e.options ? [...e.options].map(o => o.value) : null,
            label: document.querySelector(`label[for="${e.id}"]`)?.textContent})""")
        assert got["label"] == names[f.name]
        if meta["kind"] == "float":
            assert got["type"] == "range"
            assert (float(got["min"]), float(got["max"]), float(got["step"])) == (
                meta["min"], meta["max"], meta["step"]), f.name
            assert float(got["value"]) == pytest.approx(mobile[f.name]), f.name
        elif meta["kind"] in ("choice", "int_choice"):
            assert got["options"] == [str(c) for c in meta["choices"]]
            assert got["value"] == str(mobile[f.name])
        elif meta["kind"] == "bool":
            assert got["checked"] is mobile[f.name]
        else:
            assert (int(got["min"]), int(got["max"])) == (meta["min"], meta["max"])
    ctx.close()


def test_saved_files_carry_the_ai_tag_like_the_desktop(phone, tmp_path, astronaut):
    """provenance.js's packet is Python's, byte for byte, and JPEG/PNG stay valid images."""
    ctx, page = open_app(phone)
    assert page.evaluate("import('./provenance.js').then(m => m.XMP_PACKET)") == \
        provenance_xmp().decode()
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    h, w = astronaut.shape[:2]
    for kind in ("jpeg", "png"):
        data = page.evaluate(f"""async () => {{
            const m = await import('./provenance.js');
            const c = document.createElement('canvas'); c.width = {w}; c.height = {h};
            const g = c.getContext('2d'); g.fillStyle = '#7a4'; g.fillRect(0, 0, {w}, {h});
            g.fillStyle = '#fff'; g.fillRect(10, 10, 100, 50);
            const blob = await m.taggedBlob(c, 'image/{kind}');
            return [...new Uint8Array(await blob.arrayBuffer())]; }}""")
        path = tmp_path / f"out.{'jpg' if kind == 'jpeg' else 'png'}"
        path.write_bytes(bytes(data))
        assert has_provenance_tag(path)
        with Image.open(path) as im:
            im.load()
            assert im.size == (w, h)
            pixels = np.asarray(im.convert("RGB")).astype(int)
            xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
            assert "compositeWithTrainedAlgorithmicMedia" in (
                xmp.decode() if isinstance(xmp, bytes) else xmp)
            if kind == "png":
                assert im.info["AI-generated"] == "true"
        assert np.abs(pixels[30, 50] - [255, 255, 255]).max() <= 3
        assert np.abs(pixels[200, 300] - [0x77, 0xaa, 0x44]).max() <= 6
    ctx.close()


@pytest.fixture(scope="module")
def offline_page(phone):
    """Load once, wait for the service worker's cache, cut the network, reload."""
    ctx = phone["new_context"]()
    page = ctx.new_page()
    page.goto(phone["url"])
    state = wait_ready(page, offline=True)
    cached = page.evaluate("""async () => { const keys = await caches.keys();
        const c = await caches.open(keys.find(k => k.startsWith('facefuse-')));
        return (await c.keys()).map(r => new URL(r.url).pathname); }""")
    ctx.set_offline(True)
    page.reload()
    yield {"page": page, "online_state": state, "cached": cached, "context": ctx}
    assert same_origin(ctx.seen, phone["url"]) == []
    assert ctx.violations == []
    ctx.close()


def test_offline_after_the_first_visit(offline_page):
    """The app comes back whole from the service worker with the network cut."""
    page, cached = offline_page["page"], set(offline_page["cached"])
    assert {"/", "/index.html", "/app.js", "/sw.js", "/manifest.webmanifest"} <= cached
    assert {"/" + u for u in server.app_files()} <= cached
    assert wait_ready(page) == offline_page["online_state"]
    assert page.evaluate("navigator.onLine") is False
    assert page.locator("#fuse").count() == 1
    if CONTRACT.exists():
        assert page.locator("#params details").count() > 0


def pick_photos(page, source: Path, template: Path) -> None:
    page.set_input_files("#source-file", str(source))
    page.set_input_files("#template-file", str(template))
    page.wait_for_selector("#faces button", timeout=60_000)
    page.wait_for_function("() => !document.getElementById('fuse').disabled", timeout=60_000)


def canvas_pixels(page, canvas_id: str) -> np.ndarray:
    import base64

    url = page.evaluate(f"document.getElementById('{canvas_id}').toDataURL('image/png')")
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def fuse_in_page(page) -> np.ndarray:
    page.tap("#fuse")
    page.wait_for_selector("#result-box:not([hidden])", timeout=120_000)
    return canvas_pixels(page, "result")


@pytest.fixture(scope="module")
def engine_page(phone):
    """One page with the engine loaded, shared by the album tests (loading it is seconds)."""
    if not ENGINE.exists():
        pytest.skip("the engine (facefuse/phone/app/engine/index.js) is absent")
    ctx = phone["new_context"](accept_downloads=True)
    page = ctx.new_page()
    page.goto(phone["url"])
    assert wait_ready(page) == "engine"
    yield page
    assert same_origin(ctx.seen, phone["url"]) == []
    assert ctx.violations == []  # the engine runs within the page's policy
    ctx.close()


@NEEDS_ENGINE
def test_album_flow_by_touch_then_save(engine_page, photo_files, astronaut_template):
    page = engine_page
    assert page.evaluate("['fuse', 'preview', 'detectFaces', 'validateParams', 'loadEngine']"
                         ".every(n => typeof window.facefuse[n] === 'function')")
    pick_photos(page, photo_files["source"], photo_files["template"])
    page.wait_for_function("() => document.getElementById('preview').width > 1", timeout=60_000)
    # the preview follows a slider while it moves (input events, before any release)
    page.wait_for_function("() => !window.facefuseApp.state.preview.busy", timeout=60_000)
    before = page.evaluate("document.getElementById('preview').toDataURL()")
    page.eval_on_selector("#param-ratio", """e => { e.value = 1;
        e.dispatchEvent(new Event('input', {bubbles: true})); }""")
    page.wait_for_function("""before => document.getElementById('preview').toDataURL() !== before
        && !window.facefuseApp.state.preview.busy""", arg=before, timeout=60_000)
    assert page.evaluate("window.facefuseApp.state.params.ratio") == 1
    image = fuse_in_page(page)
    assert image.shape == astronaut_template.shape
    changed = np.abs(image.astype(int) - astronaut_template).max(axis=2) > 8
    assert 1000 < changed.sum() < 0.5 * changed.size  # the face changed, not the photo
    page.dispatch_event("#result", "pointerdown")  # hold: the template as it was
    held = canvas_pixels(page, "result")
    assert np.abs(held.astype(int) - astronaut_template).mean() < 1
    page.dispatch_event("#result", "pointerup")
    assert np.array_equal(canvas_pixels(page, "result"), image)
    with page.expect_download() as info:
        page.tap("#save")
    saved = Path(info.value.path())
    assert has_provenance_tag(saved)
    with Image.open(saved) as im:
        assert im.format == "JPEG" and im.size == image.shape[1::-1]


@NEEDS_ENGINE
def test_no_face_is_a_clear_message_in_the_page(engine_page, photo_files):
    page = engine_page
    page.set_input_files("#template-file", str(photo_files["noface"]))
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "no face found in the template" in page.text_content("#error")
    assert page.locator("#faces button").count() == 0


@NEEDS_ENGINE
def test_a_decompression_bomb_picked_is_refused_undecoded_and_the_app_goes_on(
        engine_page, photo_files, astronaut_template, tmp_path, bomb_png):
    """A 30000 x 30000 PNG of 0.9 MB, picked as either photo: the size limit's message, the
    page never hands it to a decoder (it used to decode it twice, page then engine: several
    GB of memory for a 16000 x 16000 one, a vague "could not be decoded" for this one), no
    stale picture in its slot, and the next pair fuses."""
    page = engine_page
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(30000, 30000))
    page.evaluate("""() => {
        const real = globalThis.createImageBitmap;
        window.decodedSizes = [];
        globalThis.createImageBitmap = (src, ...rest) => {
            window.decodedSizes.push(src.size ?? -1);
            return real(src, ...rest);
        };
    }""")
    for role in ("template", "source"):
        pick_photos(page, photo_files["source"], photo_files["template"])
        page.set_input_files(f"#{role}-file", str(bomb))
        page.wait_for_function("() => /too large/.test(document.getElementById('error')"
                               ".textContent)", timeout=60_000)
        assert f"{role} is too large: 30000x30000 = 900.0 MP" in page.text_content("#error")
        assert page.evaluate(f"document.getElementById('{role}-view').width") == 1
        assert page.is_disabled("#fuse")
    assert bomb.stat().st_size not in page.evaluate("window.decodedSizes")
    pick_photos(page, photo_files["source"], photo_files["template"])
    assert fuse_in_page(page).shape == astronaut_template.shape


@NEEDS_ENGINE
def test_offline_fusion_on_a_london_pair(offline_page, london):
    """Airplane mode after one visit: a real 1350 px pair still fuses in the page."""
    page = offline_page["page"]
    assert wait_ready(page) == "engine"
    source, template = london / "neutral" / "001_03.jpg", london / "smiling" / "002_08.jpg"
    pick_photos(page, source, template)
    image = fuse_in_page(page)
    with Image.open(template) as im:
        original = np.asarray(im.convert("RGB")).astype(int)
    assert image.shape == original.shape
    changed = np.abs(image.astype(int) - original).max(axis=2) > 8
    assert 2000 < changed.sum() < 0.5 * changed.size  # the face changed, not the photo
