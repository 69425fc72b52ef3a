"""`facefuse bench`: speed, as ratios against baselines measured in the same run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ParameterError
from ..params import FusionParams


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure speed (ratios against baselines, same run)")
    p.add_argument("--data", required=True, help="the London set (1350 px photos)")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--batch", type=int, default=40, help="templates in the batch run")
    p.add_argument("--only", default=None,
                   help="comma list of album,live,preview,refiner,phone,video (default: "
                   "all), or webui-load (the WebUI under many users), cluster (the batch on "
                   "Ray, 1 and 2 workers, vs local), phone-album, phone-app-start, phone-app "
                   "(the phone app in Chromium; phone-app: its live view), phone-gpu (the live "
                   "view's pixel stages in JS vs as WebGL2 passes), webui-live, trust (the "
                   "occlusion trust map, classical vs classical + learned)")
    p.add_argument("--models", default=None, help="an export folder (facefuse export -o) for "
                   "the phone table; default: the shipped models")
    p.add_argument("--sizes", default="512,320", help="sizes of the phone table")
    p.add_argument("--clients", type=int, default=200, help="webui-load: simulated users")
    p.add_argument("--seconds", type=float, default=120.0, help="webui-load: duration")
    p.add_argument("--live-seconds", type=float, default=30.0,
                   help="phone-app, webui-live: seconds measured per configuration")
    p.add_argument("--heap-seconds", type=float, default=300.0,
                   help="phone-app: the long run's seconds, for the JS heaps before and "
                   "after it (0: none)")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None, help="write a PNG chart here")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    import json as _json

    from ..imageio import load_image
    from ..quality import bench
    from ..stages.refine import MODELS_DIR, model_path

    data = Path(args.data) if args.data else None
    if data is not None and (data / "neutral").is_dir():
        ids = sorted(p.stem.split("_")[0] for p in (data / "smiling").glob("*.jpg"))[:args.pairs]
        pairs = [(data / "neutral" / f"{ids[(i + 1) % len(ids)]}_03.jpg",
                  data / "smiling" / f"{ids[i]}_08.jpg") for i in range(len(ids))]
    else:
        raise ParameterError("--data must be the London set layout (neutral/, smiling/)")
    source, template = load_image(pairs[0][0]), load_image(pairs[0][1])
    report: dict = {"machine": bench.machine()}
    parts = args.only.split(",") if args.only else ["album", "live", "preview", "refiner",
                                                     "phone", "video"]
    if "phone" in parts:
        from ..export import real_samples

        sizes = [int(v) for v in args.sizes.split(",")]
        models = Path(args.models) if args.models else MODELS_DIR
        held_out = real_samples(data, 12, 512, seed=11, held_out=True)
        report["phone"] = bench.bench_phone(models, sizes, held_out) + \
            bench.coreml_rows(models, sizes)
    if "phone-app-start" in parts:
        report["phone_app_start"] = bench.bench_phone_app_start()
    if "trust" in parts:  # not in the default set
        from ..pipeline import FaceFuser

        with FaceFuser() as engine:
            aligned = engine.prepare_source(pairs[0][0], FusionParams()).aligned
        report["trust"] = bench.bench_trust(aligned.crop, aligned.landmarks[:, :2],
                                            [512, 320])
    if "refiner" in parts:
        report["refiner"] = bench.bench_refiner(["ort-fp32", "ort-int8"], [320, 512])
    if "preview" in parts:
        report["preview"] = bench.bench_preview(source, template)
    if "live" in parts:
        report["live"] = [bench.bench_live(template, source, refine=False)]
        for backend in ("ort-int8", "litert-int8"):  # what the camera path runs
            if model_path(backend).exists() and _runtime_available(backend):
                report["live"].append(bench.bench_live(template, source, backend=backend))
    if "cluster" in parts:  # not in the default set: it starts Ray (the cluster extra)
        report["cluster"] = bench.bench_cluster(pairs[0][0], sorted(
            (data / "smiling").glob("*.jpg"))[:args.batch])
    if "webui-load" in parts:
        from ..quality.webload import LoadConfig, run_load

        photos = [source] + [load_image(t) for _, t in pairs[1:5]]
        report["webui_load"] = run_load(photos, LoadConfig(clients=args.clients,
                                                           duration_s=args.seconds))
    if "phone-app" in parts:  # the phone app's live view in Chromium, a fake camera
        report["phone_app_live"] = bench.bench_phone_app_live(
            pairs[0][0], pairs[0][1], seconds=args.live_seconds,
            heap_seconds=args.heap_seconds)
    if "webui-live" in parts:  # the WebUI's Live tab: server round trip vs in the page
        report["webui_live"] = bench.bench_webui_live(pairs[0][0], pairs[0][1],
                                                      seconds=args.live_seconds)
    if "phone-gpu" in parts:  # would the live view's pixel stages gain as WebGL2 passes?
        from ..quality.webgl_probe import bench_webgl_probe

        report["phone_gpu"] = bench_webgl_probe(pairs[0][1])
    if "phone-album" in parts:  # the phone app's engine in Chromium
        report["phone_album"] = bench.bench_phone_album(pairs)
    if "video" in parts:
        report["video"] = bench.bench_video(data)
    if "album" in parts:
        report["album"] = bench.bench_album(pairs, sorted((data / "smiling").glob("*.jpg"))[
            :args.batch])
    print(bench.markdown(report))
    if args.json:
        Path(args.json).write_text(_json.dumps(report, indent=2))
    if args.plot:
        print(f"chart: {bench.plot(report, Path(args.plot))}")
    return 0


def _runtime_available(backend: str) -> bool:
    if not backend.startswith("litert"):
        return True
    import importlib.util

    return importlib.util.find_spec("ai_edge_litert") is not None
