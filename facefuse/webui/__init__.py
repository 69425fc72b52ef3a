"""`facefuse webui`: the local Gradio app, offline and private by default."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def offline_environment(outputs: Path) -> None:
    """Settings Gradio and the Hugging Face hub read at import time: no analytics or
    telemetry, no hub access, and Gradio's file cache kept inside the outputs folder."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(outputs).resolve() / ".cache"))


def create_app(outputs: Path, engine=None):
    """(WebApp, gr.Blocks) ready to launch; used by the tests as well."""
    offline_environment(outputs)
    from .app import WebApp

    app = WebApp(outputs, engine)
    demo = app.build()
    demo.queue(default_concurrency_limit=2, max_size=64)
    return app, demo


def launch_kwargs(host: str, port: int) -> dict:
    from .app import UPLOAD_LIMIT, theme

    return {"server_name": host, "server_port": port, "max_file_size": UPLOAD_LIMIT,
            "theme": theme(), "show_error": True, "share": False, "inbrowser": False,
            "footer_links": [], "ssr_mode": False, "quiet": False}


def return_large_buffers_to_the_os() -> bool:
    """Make glibc hand every large freed buffer (decoded photos, crops) back to the system.

    Why: glibc raises its mmap threshold each time a large block is freed, so later photo-size
    buffers come from the heap and stay with the process after use. Under many users with
    12 MP uploads the server grew by 100-160 MB over its warmed-up size that way (the load
    bench); with a fixed 128 KiB threshold the same run stays within a few MB. A no-op where
    the C library is not glibc (macOS, Windows, musl)."""
    import ctypes
    import ctypes.util

    m_mmap_threshold = -3  # glibc's mallopt parameter number
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(m_mmap_threshold, 128 * 1024))
    except (OSError, AttributeError):
        return False


def launch(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
           outputs: Path = Path("outputs")) -> None:
    return_large_buffers_to_the_os()
    _, demo = create_app(outputs)
    print(f"facefuse WebUI on http://{host}:{port} (results saved in {Path(outputs).resolve()})")
    demo.launch(**launch_kwargs(host, port))
