"""Many users at once against a real `facefuse webui` on 127.0.0.1 (issue #14).

Every response must be complete, decode, and be the fusion of *its own* inputs: each one is
compared with the same fusion computed alone, in-process. Before the fix, identical requests
shared Gradio's content-hash cache path and one or two of 20-50 downloads broke.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facefuse import FusionParams, load_image

SIDE = 480  # downscaled London photos: the same code path, a quicker run


@pytest.fixture(scope="module")
def server(webui_server):
    return webui_server


@pytest.fixture(scope="module")
def pairs(london, tmp_path_factory) -> list[tuple[Path, Path]]:
    """Five people's neutral photos as sources, five others' smiling ones as templates."""
    folder = tmp_path_factory.mktemp("concurrency-photos")
    neutral = sorted((london / "neutral").glob("*_03.jpg"))[:5]
    smiling = sorted((london / "smiling").glob("*_08.jpg"))[5:10]
    paths = []
    for photo in neutral + smiling:
        rgb = load_image(photo)
        f = SIDE / max(rgb.shape[:2])
        small = cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        out = folder / f"{photo.stem}.png"
        Image.fromarray(small).save(out)
        paths.append(out)
    return [(s, t) for s in paths[:5] for t in paths[5:]]


def call_all(url: str, jobs: list[tuple[Path, Path, float]]) -> list[np.ndarray | str]:
    """All jobs at once, one gradio_client per thread (as separate users would).

    The clients connect first, one by one, with a generous timeout: on a shared 2-core
    machine 50 handshakes at once can outlast httpx's 5 s default, which says nothing about
    the responses under test."""
    from gradio_client import Client, handle_file

    clients = [Client(url, verbose=False, httpx_kwargs={"timeout": 300}) for _ in jobs]

    def call(client_and_job):
        client, (source, template, ratio) = client_and_job
        try:
            out = client.predict(source=handle_file(str(source)),
                                 template=handle_file(str(template)), ratio=ratio,
                                 api_name="/fuse")
            return np.asarray(Image.open(out).convert("RGB"))
        except Exception as exc:  # reported below, per call
            return f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(call, zip(clients, jobs, strict=True)))


def alone(engine, job) -> np.ndarray:
    source, template, ratio = job
    return engine.fuse(source, template, FusionParams(ratio=ratio)).image


def changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a.astype(np.int16) - b).max(axis=2) > 2).sum())


def assert_own_results(results, references) -> None:
    broken = [r for r in results if isinstance(r, str)]
    assert not broken, f"{len(broken)} broken responses, e.g. {broken[0]}"
    for i, (got, want) in enumerate(zip(results, references, strict=True)):
        assert got.shape == want.shape, i
        own = changed_pixels(got, want)
        assert own <= got.shape[0] * got.shape[1] // 1000, (
            f"call {i}: {own} pixels differ from its own fusion computed alone")
        others = [changed_pixels(got, ref) for ref in references
                  if ref.shape == got.shape and changed_pixels(ref, want) > 0]
        if others:  # and it is nobody else's result
            assert min(others) > own + 200, (i, own, min(others))


def test_fifty_identical_concurrent_calls_are_all_complete(server, pairs, engine):
    source, template = pairs[0]
    jobs = [(source, template, 0.6)] * 50
    results = call_all(server["url"], jobs)
    assert_own_results(results, [alone(engine, jobs[0])] * 50)


def test_fifty_different_concurrent_calls_each_get_their_own_result(server, pairs, engine):
    jobs = [(s, t, ratio) for s, t in pairs for ratio in (0.4, 0.9)]
    assert len(jobs) == 50
    results = call_all(server["url"], jobs)
    assert_own_results(results, [alone(engine, job) for job in jobs])


def test_result_files_are_written_once_and_never_shared(server):
    store = server["app"].results
    names = sorted(p.name for p in store.folder.iterdir())
    assert len(names) == len(set(names)) and not any(n.endswith(".part") for n in names)
    assert 0 < len(store) <= store.max_files


def test_result_store_names_once_keeps_the_newest_and_tags_results(tmp_path, astronaut):
    pytest.importorskip("gradio")
    from facefuse.imageio import has_provenance_tag
    from facefuse.webui.files import ResultStore

    store = ResultStore(tmp_path, max_files=5)
    paths = [store.write(astronaut, "png", provenance=True) for _ in range(8)]
    assert len(set(paths)) == 8  # the same image twice still gets two files
    kept = sorted(p.name for p in store.folder.iterdir())
    assert kept == sorted(p.name for p in paths[-5:]) and len(store) == 5
    assert np.array_equal(np.asarray(Image.open(paths[-1]).convert("RGB")), astronaut)
    assert has_provenance_tag(paths[-1])
    plain = store.write(astronaut, "webp", provenance=False)
    assert not has_provenance_tag(plain)  # a template with numbered boxes is not AI-made
    by_size = ResultStore(tmp_path / "small", max_bytes=3 * plain.stat().st_size)
    for _ in range(6):
        by_size.write(astronaut, "webp", provenance=False)
    assert sum(p.stat().st_size for p in by_size.folder.iterdir()) <= by_size.max_bytes
