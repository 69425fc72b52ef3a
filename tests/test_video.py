"""`facefuse video` on short generated clips: container kept (timestamps with a variable
frame rate, rotation, audio bytes), steady faces, untouched no-face frames, resume after a
kill, typed errors with no partial output. Clips come from the astronaut (always) and the
London photos (when present)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from facefuse import FusionParams
from facefuse.errors import ImageError, NoFaceError, ParameterError
from facefuse.imageio import FILE_MODE, has_provenance_tag, load_image
from facefuse.quality.video import (
    compare_containers,
    container_facts,
    display_frames,
    make_test_video,
)
from facefuse.runners.video import (
    EncodeOptions,
    Track,
    VideoOptions,
    fuse_video,
    smooth_track,
    work_dir,
)

REPO = Path(__file__).resolve().parents[1]
SIZE = (320, 240)


@pytest.fixture(scope="session")
def source(astronaut) -> np.ndarray:
    return np.ascontiguousarray(astronaut[:, ::-1])


@pytest.fixture(scope="session")
def clip(tmp_path_factory, astronaut):
    """36 frames, 90° display matrix, variable frame rate, AAC audio, a cut to no face."""
    return make_test_video(tmp_path_factory.mktemp("clip") / "astro.mp4", astronaut,
                           size=SIZE, frames=36, cut=(0.5, 0.65))


@pytest.fixture(scope="session")
def fused(tmp_path_factory, clip, source, engine):
    """The clip fused losslessly (crf 0), with the progress reports it gave."""
    out = tmp_path_factory.mktemp("fused") / "out.mp4"
    calls = []
    report = fuse_video(source, clip.path, out, FusionParams(ratio=0.8),
                        VideoOptions(encode=EncodeOptions(crf=0)), engine=engine,
                        progress=lambda *a: calls.append(a))
    return report, calls


def test_container_kept_exactly(clip, fused):
    report, _ = fused
    original, result = container_facts(clip.path), container_facts(report.output)
    assert len(set(np.diff([float(t) for t in original["times"]]).round(5))) > 1  # VFR
    assert original["rotation"] == 90 and original["audio"]
    assert compare_containers(original, result) == {
        "frame_count": True, "timestamps": True, "rotation": True, "audio": True}
    assert report.audio == ["copied"]
    assert not work_dir(report.output).exists()  # the work folder is gone
    assert has_provenance_tag(report.output)
    # readable as any saved photo is (the temporary file it was renamed from was 0600)
    assert report.output.stat().st_mode & 0o777 == FILE_MODE


def test_faces_fused_and_no_face_frames_untouched(clip, fused):
    report, _ = fused
    before, after = display_frames(clip.path), display_frames(report.output)
    assert before[0].shape == (SIZE[1], SIZE[0], 3)  # display orientation
    assert report.cuts >= 2 and report.fused < len(before)
    no_face = np.flatnonzero(~clip.has_face)
    face = np.flatnonzero(clip.has_face)
    # lossless output: frames without a face are the decoded input, bit for bit ...
    for i in no_face:
        assert np.array_equal(before[i], after[i]), i
    # ... and the frames next to the cut are fused (no flash of the unfused face) or
    # untouched, never a face pasted into the cut
    changed = [float((np.abs(before[i].astype(int) - after[i]).max(axis=2) > 10).mean())
               for i in face]
    assert np.median(changed) > 0.01
    assert sum(c > 0.002 for c in changed) >= len(face) - 4


def test_progress_reports_both_passes(fused, clip):
    _, calls = fused
    phases = [c[0] for c in calls]
    assert phases.index("fuse") > phases.index("track")
    fuse_done = [c[1] for c in calls if c[0] == "fuse"]
    assert fuse_done == sorted(fuse_done) and fuse_done[-1] == len(clip.pts)


def test_smoothing_steadies_tracks_and_stops_at_cuts():
    rng = np.random.default_rng(1)
    t = np.arange(60)
    truth = np.zeros((60, 478, 3), np.float32)
    truth[..., 0] = (100 + 2 * t)[:, None]  # steady motion
    noisy = truth + rng.normal(0, 1.5, truth.shape).astype(np.float32)
    noisy[40:] += 300  # a cut: the face is somewhere else
    scene = (t >= 40).astype(np.int32)
    noisy[20:22] = np.nan  # tracking lost for 2 frames: bridged
    noisy[30:36] = np.nan  # lost for 6 frames: passes through
    track = Track(t.astype(np.int64), np.ones(60, np.int64), noisy, scene, 0, Fraction(1, 30))
    marks, bridged = smooth_track(track)
    assert bridged[20:22].all() and not bridged[30:36].any()
    assert np.isnan(marks[30:36]).all()

    def jitter(x):
        return np.abs(x[2:] - 2 * x[1:-1] + x[:-2]).mean()

    seg = slice(0, 20)
    assert jitter(marks[seg, :, 0]) < 0.5 * jitter(noisy[seg, :, 0])
    # nothing leaks across the cut: the first frames after it stay at the new place
    assert abs(marks[40, :, 0].mean() - noisy[40, :, 0].mean()) < 2
    assert abs(marks[39, :, 0].mean() - noisy[39, :, 0].mean()) < 2


def test_trim_reencoded_audio_and_cli(tmp_path, astronaut, source, capsys):
    """PCM audio cannot go into WebM: re-encoded (and said so); --start/--end keep the
    frames in range with their spacing, starting at 0."""
    from facefuse.cli import main

    clip = make_test_video(tmp_path / "in.mkv", astronaut, size=SIZE, frames=24, cut=None,
                           audio_codec="pcm_s16le")
    out = tmp_path / "out.webm"
    code = main(["video", _save(tmp_path, source),
                 str(clip.path), "-o", str(out), "--start", "0.2", "--end", "0.6",
                 "--codec", "libvpx-vp9", "--quiet", "--ratio", "0.7"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "re-encoded" in printed and "saved" in printed
    times = [Fraction(p) * Fraction(1, 90000) for p in clip.pts]
    kept = [t for t in times if Fraction(1, 5) <= t < Fraction(3, 5)]
    result = container_facts(out)
    assert result["frames"] == len(kept)
    assert [float(t) for t in result["times"]] == pytest.approx(
        [float(t - kept[0]) for t in kept], abs=1e-3)  # WebM keeps milliseconds
    assert result["audio"][0]["codec"] == "opus" and result["rotation"] == 90


SUBTITLES = """1
00:00:00,100 --> 00:00:00,400
Hello there

2
00:00:00,500 --> 00:00:00,800
Second line
"""


def _with_subtitles(clip: Path, folder: Path) -> Path:
    """The clip remuxed into .mkv with an .srt subtitle track added (nothing re-encoded)."""
    srt = folder / "subs.srt"
    srt.write_text(SUBTITLES)
    out = folder / "subtitled.mkv"
    with av.open(str(clip)) as video, av.open(str(srt)) as subs, \
            av.open(str(out), "w") as mkv:
        pairs = [(s, mkv.add_stream_from_template(s)) for s in video.streams]
        pairs.append((subs.streams[0], mkv.add_stream_from_template(subs.streams[0])))
        for source, target in pairs:
            target.time_base = source.time_base
        for source, target in pairs:
            for packet in source.container.demux(source):
                if packet.size:
                    packet.stream = target
                    mkv.mux(packet)
    return out


def _subtitles(path: Path) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        return [(float(p.pts * p.time_base), bytes(p))
                for p in container.demux(stream) if p.size]


def test_subtitles_copied_or_said_dropped(tmp_path, astronaut, source, engine):
    """Subtitles go into .mkv as they were (same text, same times); an .mp4 cannot take
    SubRip text, and the report says so instead of failing."""
    clip = make_test_video(tmp_path / "in.mp4", astronaut, size=SIZE, frames=24, cut=None)
    subtitled = _with_subtitles(clip.path, tmp_path)
    original = _subtitles(subtitled)
    assert [text for _, text in original] == [b"Hello there", b"Second line"]
    report = fuse_video(source, subtitled, tmp_path / "out.mkv", FusionParams(ratio=0.8),
                        engine=engine)
    assert report.subtitles == ["copied"] and report.audio == ["copied"]
    assert _subtitles(report.output) == original
    assert container_facts(report.output)["frames"] == len(clip.pts)
    mp4 = fuse_video(source, subtitled, tmp_path / "out.mp4", FusionParams(ratio=0.8),
                     engine=engine)
    assert mp4.subtitles[0].startswith("dropped (srt") and "mkv" in mp4.subtitles[0]
    with av.open(str(mp4.output)) as container:
        assert not container.streams.subtitles


def _save(folder: Path, image: np.ndarray) -> str:
    from facefuse.imageio import save_image

    path = folder / "source.png"
    if not path.exists():
        save_image(path, image)
    return str(path)


def test_preview_frame(tmp_path, clip, source, fused, capsys):
    from facefuse.cli import main

    target = tmp_path / "check.png"
    assert main(["video", _save(tmp_path, source), str(clip.path), "-o", str(target),
                 "--preview-frame", "5", "--ratio", "0.8"]) == 0
    preview = load_image(target)
    assert has_provenance_tag(target)
    raw = display_frames(clip.path)[5]
    full = display_frames(fused[0].output)[5]
    assert preview.shape == raw.shape
    # the preview is the fused frame: where the full run changed the frame, the preview
    # is much closer to it than the raw frame is (the run smooths the face in time)
    face = np.abs(raw.astype(int) - full).max(axis=2) > 10
    assert face.mean() > 0.01
    assert np.abs(preview.astype(int) - full)[face].mean() < 0.5 * np.abs(
        raw.astype(int) - full)[face].mean()
    assert main(["video", _save(tmp_path, source), str(clip.path), "-o", str(target),
                 "--preview-frame", "999"]) == 2


def test_resume_after_kill(tmp_path, astronaut, source):
    """SIGKILL mid-run leaves no output; --resume keeps the finished chunks and the result
    has every frame with its timestamp."""
    clip = make_test_video(tmp_path / "in.mp4", astronaut, size=SIZE, frames=40, cut=None)
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "facefuse.cli", "video", _save(tmp_path, source),
           str(clip.path), "-o", str(out), "--chunk-frames", "6", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    work = work_dir(out)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(work.glob("chunk-*.nut"))) < 2:
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    kept = len(list(work.glob("chunk-*.nut")))
    assert kept >= 2
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resumed after {kept} finished chunks" in done.stdout
    assert compare_containers(container_facts(clip.path), container_facts(out)) == {
        "frame_count": True, "timestamps": True, "rotation": True, "audio": True}
    assert not work.exists()


def test_resume_refuses_other_settings(tmp_path, clip, source, engine):
    out = tmp_path / "out.mp4"
    work = work_dir(out)
    work.mkdir()
    (work / "job.json").write_text("{}")
    with pytest.raises(ParameterError, match="another source"):
        fuse_video(source, clip.path, out, FusionParams(), engine=engine, resume=True)
    assert work.exists() and not out.exists()  # the old work is not thrown away


def test_errors_are_typed_and_leave_nothing(tmp_path, astronaut, source, engine):
    from skimage import data

    from facefuse.cli import main

    out = tmp_path / "out.mp4"
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    photo = Path(_save(tmp_path, source))
    with pytest.raises(ImageError, match="not a readable video") as refused:
        fuse_video(source, text, out, engine=engine)
    # the file's name and FFmpeg's reason, not the folder it sits in (a server's uploads)
    assert "notes.mp4" in str(refused.value) and str(tmp_path) not in str(refused.value)
    with pytest.raises(ImageError, match="not found"):
        fuse_video(source, tmp_path / "missing.mp4", out, engine=engine)
    with pytest.raises(ParameterError, match="notes.mp4 is a file, not a folder"):
        fuse_video(source, text, text / "out.mp4", engine=engine)  # before reading anything
    with pytest.raises(ImageError, match="no video stream"):
        audio_only = tmp_path / "sound.m4a"
        with av.open(str(audio_only), "w") as c:
            s = c.add_stream("aac", rate=48000, layout="mono")
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate = 48000
            for p in [*s.encode(frame), *s.encode()]:
                c.mux(p)
        fuse_video(source, audio_only, out, engine=engine)
    good = make_test_video(tmp_path / "ok.mp4", astronaut, size=SIZE, frames=6, cut=None)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(good.path.read_bytes()[:1500])
    with pytest.raises(ImageError):
        fuse_video(source, truncated, out, engine=engine)
    cat = make_test_video(tmp_path / "cat.mp4", np.ascontiguousarray(data.coffee()),
                          size=SIZE, frames=6, cut=None)
    with pytest.raises(NoFaceError, match="no face found in any frame"):
        fuse_video(source, cat.path, out, engine=engine)
    assert not out.exists() and not work_dir(out).exists()
    # exit codes as for images, no output, no work folder left behind
    assert main(["video", str(photo), str(text), "-o", str(out)]) == 3
    assert main(["video", str(photo), str(photo), "-o", str(out)]) == 3  # an image
    assert main(["video", str(photo), str(cat.path), "-o", str(out), "--quiet"]) == 4
    assert main(["video", str(photo), str(good.path), "-o", str(tmp_path / "x.avi")]) == 2
    assert main(["video", str(photo), str(good.path), "-o", str(tmp_path / "x.webm")]) == 2
    assert main(["video", str(photo), str(good.path), "-o", str(out), "--start", "2",
                 "--end", "1"]) == 2
    assert main(["video", str(photo), str(good.path), "-o", str(out), "--crf", "60"]) == 2
    assert main(["video", str(photo), str(good.path), "-o", str(out), "--poisson"]) == 2
    assert main(["video", str(photo), str(good.path), "-o", str(out),
                 "--template-face", "all"]) == 2
    assert main(["video", str(photo), str(good.path), "-o", str(out), "--start", "9"]) == 2
    assert not out.exists() and not work_dir(out).exists()
    assert not list(tmp_path.glob(".out.mp4*"))


def test_london_clip_steady_and_following(london, tmp_path):
    """On the London test clip (neutral <-> smiling morph, pan, zoom, roll, a cut, noise,
    audio, rotation, VFR): exact container, smoothing steadier than none, the fused mouth
    following the template's, no-face frames unchanged."""
    from facefuse.quality.video import video_report

    report = video_report(london, tmp_path, size=(480, 270), frames=36, judge=False)
    on, off = report["rows"]
    for row in (on, off):
        assert row["frame_count"] and row["timestamps"] and row["audio"] and row["rotation"]
        assert row["mouth_corr"] > 0.7
        assert row["no_face_untouched"] < 3.0  # codec noise only
    # as steady as the input's own (measured 1.01 with smoothing, 1.03 without)
    assert on["jitter_ratio"] < 1.15
    assert on["jitter_ratio"] <= off["jitter_ratio"] + 0.01


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed")
def test_webui_video_tab_in_a_real_browser(tmp_path, clip, source, engine):
    """Upload a face and a video, preview one frame, fuse: the result is saved under
    outputs/ with its sidecar, every container fact kept; the page talks to nobody else.
    A face photo that is not an image gets facefuse's message first."""
    import socket

    from playwright.sync_api import expect, sync_playwright

    from facefuse.webui import create_app, launch_kwargs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outputs = tmp_path / "outputs"
    _, demo = create_app(outputs, engine)
    kwargs = launch_kwargs("127.0.0.1", port)
    kwargs["quiet"] = True
    demo.launch(prevent_thread_lock=True, **kwargs)
    base = f"http://127.0.0.1:{port}"
    external: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.on("request", lambda r: external.append(r.url)
                    if not r.url.startswith((base, "data:", "blob:")) else None)
            page.goto(base + "/", wait_until="load")
            page.get_by_role("tab", name="Video").click()
            # A text file named .jpg as the face: facefuse's message, as in the Album tab
            # (the tab's source went to Gradio's decoder, which answered a bare "Error").
            notes = tmp_path / "notes.jpg"
            notes.write_text("not a photo")
            page.locator("#video-source input[type=file]").set_input_files(str(notes))
            page.locator("#video-in input[type=file]").set_input_files(str(clip.path))
            page.locator("#video-preview-btn").click()
            expect(page.locator("#video-msg")).to_contain_text("notes.jpg) is not an image",
                                                               timeout=120_000)
            page.locator("#video-source input[type=file]").set_input_files(
                _save(tmp_path, source))
            page.locator("#video-frame input").fill("3")
            page.locator("#video-preview-btn").click()
            expect(page.locator("#video-msg")).to_contain_text("frame 3", timeout=120_000)
            expect(page.locator("#video-preview img")).to_be_visible()
            page.locator("#video-btn").click()
            expect(page.locator("#video-msg")).to_contain_text("saved", timeout=240_000)
            expect(page.locator("#video-out video")).to_be_visible()
            browser.close()
    finally:
        demo.close()
    saved = sorted(outputs.glob("facefuse-video-*.mp4"))
    assert saved and saved[-1].with_suffix(".json").exists()
    assert compare_containers(container_facts(clip.path), container_facts(saved[-1])) == {
        "frame_count": True, "timestamps": True, "rotation": True, "audio": True}
    assert external == [], f"the page fetched from outside the machine: {external}"


def test_a_video_cut_short_is_fused_as_far_as_it_goes_and_says_so(tmp_path, astronaut, source,
                                                                   capsys):
    """A phone recording cut off mid-file (its header still states every frame): the frames
    that can be read are fused and saved, and the user is told the file ended early."""
    from facefuse.cli import main

    whole = make_test_video(tmp_path / "whole.mp4", astronaut, size=SIZE, frames=24, cut=None)
    front = tmp_path / "front.mp4"  # the header first (faststart), as phones write them
    with av.open(str(whole.path)) as src, av.open(str(front), "w",
                                                  options={"movflags": "faststart"}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams
                   if s.type in ("video", "audio")}
        for packet in src.demux():
            if packet.stream.index in streams and packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(front.read_bytes()[: int(front.stat().st_size * 0.6)])
    with av.open(str(cut)) as c:
        stated = c.streams.video[0].frames
    out = tmp_path / "out.mp4"
    assert main(["video", _save(tmp_path, source), str(cut), "-o", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    with av.open(str(out)) as c:
        saved = sum(1 for _ in c.decode(video=0))
    assert stated == 24 and 0 < saved < stated
    assert f"header states 24 frames but only {saved} could be read" in err
