"""Load test of the real WebUI: many simulated users against `facefuse webui` on 127.0.0.1.

Why this shape: the server runs as its own process, as users run it, so its memory (RSS)
and its disk (Gradio's cache, uploads, result files) are measured from outside. The users
are a bounded asyncio client speaking Gradio's own HTTP protocol, like the browser does
(upload, queue/join, the event stream, then the result file), so one process on a small
machine can play hundreds of them. Every run stops by itself: a fixed duration and a
request budget, 127.0.0.1 only.

Mix per user, drawn at random: full fusions (`/fuse`), slider previews (the private preview
event the page fires), uploads of 10-20 MB phone-size photos fused at full size, and bad
files (random bytes named .jpg). A result counts as *broken* when its download is short of
its Content-Length or does not decode; a *server error* is a 5xx other than "queue full",
or a failed event whose message is not one of ours; *busy* is the queue's clear 503 answer.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..params import param_specs

API = "/gradio_api"
KINDS = ("fuse", "preview", "big", "bad")
MIX = {"fuse": 0.35, "preview": 0.4, "big": 0.1, "bad": 0.15}
# Messages a bad file must produce (ours, from ImageError / NoFaceError), never a traceback.
CLEAR_ERRORS = ("not an image", "could not be read", "corrupt", "too large", "too small",
                "no face")


@dataclass
class LoadConfig:
    clients: int = 200
    duration_s: float = 120.0
    max_requests: int = 5000
    warmup_requests: int = 100
    rss_at_requests: int = 1000
    grace_s: float = 120.0  # how long requests in flight at the end may still finish
    big_mb: tuple[float, float] = (10.0, 20.0)
    seed: int = 14


@dataclass
class LoadReport:
    clients: int
    duration_s: float
    requests: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    ok: int = 0
    broken: int = 0
    server_errors: int = 0
    busy: int = 0
    clear_errors: int = 0
    unfinished: int = 0  # still waiting in the queue when the grace period ran out
    examples: list[str] = field(default_factory=list)
    rss_mb: dict[str, float] = field(default_factory=dict)
    disk: dict[str, Any] = field(default_factory=dict)
    solo_ms: dict[str, float] = field(default_factory=dict)  # the same-run baseline

    def summary(self) -> dict[str, Any]:
        every = [v for vals in self.latencies_ms.values() for v in vals]

        def pct(vals: list[float], q: float) -> int | None:
            return round(float(np.percentile(vals, q))) if vals else None

        return {
            "clients": self.clients, "duration_s": round(self.duration_s, 1),
            "requests": self.requests,
            "requests_per_s": round(self.requests / max(self.duration_s, 1e-9), 2),
            "completed_per_s": round((self.ok + self.clear_errors)
                                     / max(self.duration_s, 1e-9), 2),
            "by_kind": self.by_kind, "ok": self.ok, "busy": self.busy,
            "clear_errors": self.clear_errors, "broken": self.broken,
            "server_errors": self.server_errors, "unfinished": self.unfinished,
            "p50_ms": pct(every, 50), "p95_ms": pct(every, 95), "p99_ms": pct(every, 99),
            "per_kind_ms": {k: {"p50": pct(v, 50), "p95": pct(v, 95), "p99": pct(v, 99)}
                            for k, v in self.latencies_ms.items()},
            "rss_mb": self.rss_mb, "disk": self.disk, "examples": self.examples[:5],
            "solo_ms": self.solo_ms,
        }


# ------------------------------------------------------------------ the server, outside


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def folder_usage(folder: Path) -> tuple[int, float]:
    """(files, MB) under a folder: what Gradio's cache and uploads hold right now."""
    files, size = 0, 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
                files += 1
            except FileNotFoundError:
                continue
    return files, size / 1e6


class Server:
    """`facefuse webui` in a child process on a free 127.0.0.1 port; stopped on exit."""

    def __init__(self, outputs: Path) -> None:
        self.outputs = outputs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        self.log = open(self.outputs / "server.log", "w")  # closed in __exit__
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "facefuse.cli", "webui", "--host", "127.0.0.1",
             "--port", str(self.port), "--outputs", str(self.outputs)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the WebUI exited (see {self.outputs / 'server.log'})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the WebUI did not start within 180 s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


# ------------------------------------------------------------------ the photos


def photo_bytes(rgb: np.ndarray, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **kwargs)
    return buf.getvalue()


def big_photo(rgb: np.ndarray, target_mb: float, rng: np.random.Generator) -> bytes:
    """A phone-size (about 12 MP) JPEG of `rgb`, grain added until it weighs `target_mb`."""
    import cv2

    h, w = rgb.shape[:2]
    f = 4032 / max(h, w)
    up = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
    data = b""
    for sigma in (2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 32):
        noisy = np.clip(up + rng.normal(0, sigma, up.shape), 0, 255).astype(np.uint8)
        data = photo_bytes(noisy, quality=98, subsampling=0)
        if len(data) >= target_mb * 1e6:
            break
    return data


# ------------------------------------------------------------------ one simulated user


class User:
    """One browser session: its own session hash, its uploads, one event at a time."""

    def __init__(self, client, url: str, deps: dict[str, int], photos: dict[str, Any],
                 rng: random.Random) -> None:
        self.client, self.url, self.deps, self.photos, self.rng = client, url, deps, photos, rng
        self.session = uuid.uuid4().hex[:11]
        self.uploaded: dict[str, dict] = {}

    async def upload(self, key: str, data: bytes, name: str) -> dict:
        if key in self.uploaded:
            return self.uploaded[key]
        r = await self.client.post(f"{self.url}{API}/upload",
                                   files={"files": (name, data, "application/octet-stream")})
        r.raise_for_status()
        path = r.json()[0]
        value = {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
        self.uploaded[key] = value
        return value

    def values(self) -> list[Any]:
        """Every parameter at its default, ratio drawn: what the page's controls send."""
        out = []
        for spec in param_specs():
            if spec.name == "crop_size":
                continue
            value = spec.default
            if spec.name == "ratio":
                value = round(self.rng.uniform(0.2, 1.0), 2)
            elif spec.name in ("template_face", "source_face"):
                value = "0" if spec.name == "template_face" else 0
            out.append(value)
        return out

    async def event(self, fn: str, data: list[Any]) -> tuple[str, Any]:
        """queue/join, then the event stream until this event completes.

        Returns ("ok", output) | ("busy", msg) | ("error", msg) | ("server", msg)."""
        body = {"data": data, "fn_index": self.deps[fn], "session_hash": self.session,
                "event_data": None, "trigger_id": None}
        r = await self.client.post(f"{self.url}{API}/queue/join", json=body)
        if r.status_code == 503:
            return "busy", r.json().get("detail", "busy")
        if r.status_code >= 500:
            return "server", f"join {r.status_code}: {r.text[:200]}"
        r.raise_for_status()
        event_id = r.json()["event_id"]
        async with self.client.stream("GET", f"{self.url}{API}/queue/data",
                                      params={"session_hash": self.session}) as stream:
            if stream.status_code >= 500:
                return "server", f"stream {stream.status_code}"
            async for line in stream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") not in (None, event_id):
                    continue
                if msg.get("msg") == "process_completed":
                    if msg.get("success"):
                        return "ok", msg["output"]["data"]
                    text = str(msg.get("output", {}).get("error") or msg.get("title") or "")
                    clear = any(k in text.lower() for k in CLEAR_ERRORS)
                    return ("error" if clear else "server"), text[:200]
                if msg.get("msg") == "close_stream":
                    break
        return "server", "the event stream closed before the result"

    async def download(self, file: dict | None) -> str | None:
        """None when the result file arrives whole and decodes, else what went wrong."""
        if not file or not file.get("url"):
            return "no result file in the response"
        url = file["url"] if file["url"].startswith("http") else self.url + file["url"]
        r = await self.client.get(url)
        if r.status_code != 200:
            return f"download {r.status_code}"
        declared = int(r.headers.get("content-length", len(r.content)))
        if len(r.content) != declared:
            return f"short body: {len(r.content)} of {declared} bytes"
        try:
            Image.open(io.BytesIO(r.content)).load()
        except Exception as exc:
            return f"does not decode: {exc}"
        return None

    async def act(self, kind: str) -> tuple[str, str]:
        src = await self.upload("source", self.photos["source"], "source.jpg")
        if kind == "bad":
            junk = self.rng.randbytes(self.rng.randint(100, 200_000))
            tpl = await self.upload(f"bad{self.rng.random()}", junk, "holiday.jpg")
            outcome, value = await self.event("fuse", [src, tpl, *self.values()])
            if outcome == "ok":
                return "server", "a bad file was fused"
            return outcome, str(value)
        if kind == "big":
            index = self.rng.randrange(len(self.photos["big"]))
            tpl = await self.upload(f"big{index}", self.photos["big"][index], "phone.jpg")
        else:
            index = self.rng.randrange(len(self.photos["templates"]))
            tpl = await self.upload(f"t{index}", self.photos["templates"][index], "t.jpg")
        fn = "preview" if kind == "preview" else "fuse"
        outcome, value = await self.event(fn, [src, tpl, *self.values()])
        if outcome != "ok":
            return outcome, str(value)
        problem = await self.download(value[0])
        return ("broken", problem) if problem else ("ok", "")


# ------------------------------------------------------------------ the run


def dependency_ids(config: dict) -> dict[str, int]:
    """fn_index of the API's `/fuse` and of the page's slider preview."""
    ids = {}
    for dep in config["dependencies"]:
        name = dep.get("api_name")
        if name == "fuse":
            ids["fuse"] = dep["id"]
        elif name and name.startswith("preview") and "preview" not in ids:
            ids["preview"] = dep["id"]
    missing = {"fuse", "preview"} - set(ids)
    if missing:
        raise RuntimeError(f"the WebUI has no {', '.join(sorted(missing))} event")
    return ids


async def _run(url: str, pid: int, cache: Path, photos: dict, cfg: LoadConfig) -> LoadReport:
    import httpx

    report = LoadReport(cfg.clients, 0.0)
    rng = random.Random(cfg.seed)
    limits = httpx.Limits(max_connections=cfg.clients * 2, max_keepalive_connections=64)
    timeout = httpx.Timeout(cfg.duration_s + cfg.grace_s + 60, connect=30.0)
    disk_max = [0, 0.0]
    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
        config = (await client.get(f"{url}/config")).json()
        deps = dependency_ids(config)
        # Baseline, same run: each kind alone on the idle server (after one warm call).
        solo = User(client, url, deps, photos, random.Random(cfg.seed))
        for kind in ("fuse", "preview"):
            times = []
            for _ in range(3):  # the first call warms the caches; the median of two
                t0 = time.perf_counter()
                await solo.act(kind)
                times.append((time.perf_counter() - t0) * 1000)
            report.solo_ms[kind] = round(float(np.median(times[1:])))
        started = time.monotonic()
        deadline = started + cfg.duration_s
        report.rss_mb["start"] = round(rss_mb(pid), 1)

        def count(kind: str, outcome: str, detail: str, ms: float) -> None:
            report.requests += 1
            report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
            if outcome == "ok" or (kind == "bad" and outcome == "error"):
                report.latencies_ms.setdefault(kind, []).append(ms)
            field_name = {"ok": "ok", "busy": "busy", "error": "clear_errors",
                          "broken": "broken", "server": "server_errors",
                          "unfinished": "unfinished"}[outcome]
            setattr(report, field_name, getattr(report, field_name) + 1)
            if outcome in ("broken", "server"):
                report.examples.append(f"{kind}: {detail}")
            # Warm once every kind has run (a 12 MP photo sizes the allocator's arenas).
            if ("after_warmup" not in report.rss_mb and report.requests >= cfg.warmup_requests
                    and set(report.latencies_ms) >= set(KINDS)):
                report.rss_mb["after_warmup"] = round(rss_mb(pid), 1)
                report.rss_mb["warmup_at_request"] = report.requests
            if report.requests == cfg.rss_at_requests:
                report.rss_mb[f"after_{cfg.rss_at_requests}"] = round(rss_mb(pid), 1)

        async def user(n: int) -> None:
            me = User(client, url, deps, photos, random.Random(rng.random()))
            await asyncio.sleep(n * cfg.duration_s / cfg.clients / 4)  # ramp up
            while time.monotonic() < deadline and report.requests < cfg.max_requests:
                kind = me.rng.choices(KINDS, weights=[MIX[k] for k in KINDS])[0]
                t0 = time.perf_counter()
                try:
                    outcome, detail = await asyncio.wait_for(
                        me.act(kind), timeout=max(1.0, deadline - time.monotonic()
                                                  + cfg.grace_s))
                except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
                    outcome, detail = "unfinished", type(exc).__name__
                except httpx.HTTPError as exc:
                    outcome, detail = "server", f"{type(exc).__name__}: {exc}"
                count(kind, outcome, detail, (time.perf_counter() - t0) * 1000)
                if outcome == "busy":  # what the message asks: try again a little later
                    await asyncio.sleep(me.rng.uniform(1.0, 3.0))

        async def watch_disk() -> None:
            while time.monotonic() < deadline + cfg.grace_s:
                files, mb = folder_usage(cache)
                disk_max[0], disk_max[1] = max(disk_max[0], files), max(disk_max[1], mb)
                await asyncio.sleep(2.0)

        watcher = asyncio.create_task(watch_disk())
        await asyncio.gather(*(user(n) for n in range(cfg.clients)))
        report.duration_s = time.monotonic() - started
        watcher.cancel()
    report.rss_mb["end"] = round(rss_mb(pid), 1)
    files, mb = folder_usage(cache)
    report.disk = {"cache_files_end": files, "cache_mb_end": round(mb, 1),
                   "cache_files_max": max(disk_max[0], files),
                   "cache_mb_max": round(max(disk_max[1], mb), 1)}
    return report


def run_load(photos_rgb: list[np.ndarray], cfg: LoadConfig | None = None,
             workdir: Path | None = None) -> dict[str, Any]:
    """Start the WebUI, run the bounded load, stop it; the summary as a dict.

    `photos_rgb`: real face photos, the first is every user's source, the others templates.
    """
    cfg = cfg or LoadConfig()
    rng = np.random.default_rng(cfg.seed)
    photos = {"source": photo_bytes(photos_rgb[0], quality=92),
              "templates": [photo_bytes(p, quality=92) for p in photos_rgb[1:]],
              "big": [big_photo(p, rng.uniform(*cfg.big_mb), rng) for p in photos_rgb[1:3]]}
    big_sizes = [round(len(b) / 1e6, 1) for b in photos["big"]]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, Server(Path(tmp)) as server:
        report = asyncio.run(_run(server.url, server.proc.pid, Path(tmp) / ".cache", photos,
                                  cfg))
        summary = report.summary()
        summary["big_photo_mb"] = big_sizes
        summary["load_s"] = cfg.duration_s
        summary["server_alive"] = server.proc.poll() is None
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """The docs/benchmarks.md table for one run."""
    rss = summary["rss_mb"]
    growth = (round(rss["end"] - rss["after_warmup"], 1)
              if "after_warmup" in rss and "end" in rss else None)
    disk = summary["disk"]
    rows = [
        ("clients x load time (wall, until the queue drained)",
         f"{summary['clients']} x {summary.get('load_s', '-')} s ({summary['duration_s']} s)"),
        ("requests (fuse / preview / 10-20 MB / bad)",
         f"{summary['requests']} ({' / '.join(str(summary['by_kind'].get(k, 0)) for k in KINDS)})"),
        ("requests/s (all answers) / completed/s",
         f"{summary['requests_per_s']} / {summary['completed_per_s']}"),
        ("latency p50 / p95 / p99 (completed)",
         f"{summary['p50_ms']} / {summary['p95_ms']} / {summary['p99_ms']} ms"),
        ("same run, one request alone: fuse / preview",
         f"{summary['solo_ms'].get('fuse')} / {summary['solo_ms'].get('preview')} ms"),
        ("p50 under load / alone: fuse, preview", " , ".join(
            f"{summary['per_kind_ms'][k]['p50'] / summary['solo_ms'][k]:.1f}x"
            if summary["per_kind_ms"].get(k, {}).get("p50") and summary["solo_ms"].get(k)
            else "-" for k in ("fuse", "preview"))),
        ("completed ok / busy (503, try again) / clear errors for bad files",
         f"{summary['ok']} / {summary['busy']} / {summary['clear_errors']}"),
        ("broken responses", summary["broken"]),
        ("server errors", summary["server_errors"]),
        ("still queued when the run stopped (no answer yet)", summary["unfinished"]),
        ("server RSS, MB: start; after 1,000 requests; warm (every kind done once, at "
         "request N); end",
         f"{rss.get('start')}; {rss.get('after_1000', '-')}; {rss.get('after_warmup', '-')} "
         f"(N = {rss.get('warmup_at_request', '-')}); {rss.get('end')}"),
        ("RSS end minus warm (MB)", growth),
        ("Gradio cache: max files / MB during the run; at the end",
         f"{disk['cache_files_max']} / {disk['cache_mb_max']}; {disk['cache_files_end']} / "
         f"{disk['cache_mb_end']}"),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)
