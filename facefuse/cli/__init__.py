"""The `facefuse` command. Options are generated from FusionParams, so they match the API.

Exit codes: 0 ok; 1 a batch had failures (or an unexpected error); 2 bad arguments or
parameters; 3 unreadable or unsupported image; 4 no face found; 5 model or runtime missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from .errors import BackendError, FaceFuseError, ParameterError
from .params import BACKENDS, PRESETS, FusionParams, param_specs, preset
from .quiet import NativeLogFilter


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _face_index(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a face number or 'all', got {text!r}"
                                         ) from None


def add_fusion_options(parser: argparse.ArgumentParser) -> None:
    """One option per FusionParams field (defaults None: unset options keep the preset's)."""
    group = parser.add_argument_group("fusion options (see FusionParams)")
    group.add_argument("--preset", choices=sorted(PRESETS),
                       help="start from a preset; explicit options override it")
    for f in param_specs():
        meta, flag = f.metadata, _flag(f.name)
        help_text = meta["help"]
        if meta["kind"] == "float":
            group.add_argument(flag, type=float, default=None, metavar="F",
                               help=f"{help_text} [{meta['min']}..{meta['max']}, "
                                    f"default {f.default}]")
        elif meta["kind"] == "int":
            group.add_argument(flag, type=int, default=None, metavar="K",
                               help=f"{help_text} [default {f.default}]")
        elif meta["kind"] == "face":
            group.add_argument(flag, type=_face_index, default=None, metavar="K|all",
                               help=f"{help_text} [default {f.default}]")
        elif meta["kind"] == "choice":
            group.add_argument(flag, choices=meta["choices"], default=None,
                               help=f"{help_text} [default {f.default}]")
        elif meta["kind"] == "int_choice":
            group.add_argument(flag, type=int, choices=meta["choices"], default=None,
                               help=f"{help_text} [default {f.default}]")
        elif meta["kind"] == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=f"{help_text} [default {f.default}]")


def params_from_args(args: argparse.Namespace) -> FusionParams:
    given = {f.name: getattr(args, f.name) for f in param_specs()
             if getattr(args, f.name, None) is not None}
    if args.preset:
        return preset(args.preset, **given)
    return FusionParams().with_overrides(**given)


def cmd_fuse(args: argparse.Namespace) -> int:
    from .imageio import save_format, save_image
    from .pipeline import fuse

    params = params_from_args(args)
    save_format(args.output)  # a bad extension fails before any work
    started = time.perf_counter()
    result = fuse(args.source, args.template, params)
    with result.timings.stage("save"):
        save_image(args.output, result.image, note=f"ratio={params.ratio}")
    total = (time.perf_counter() - started) * 1000
    faces = len(result.template_faces)
    print(f"saved {args.output} ({result.image.shape[1]}x{result.image.shape[0]}, "
          f"{faces} face{'s' if faces > 1 else ''} fused)")
    if args.timings:
        for name, ms in result.timings.items():
            print(f"  {name:<9}{ms:8.1f} ms")
        print(f"  {'total':<9}{total:8.1f} ms (including start-up: model loading)")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .batch import list_templates, run_batch
    from .imageio import save_format
    from .pipeline import FaceFuser

    params = params_from_args(args)
    if args.ext:
        save_format("x" + args.ext)
    templates, ignored = list_templates(Path(args.template_dir))
    if not templates:
        raise FaceFuseError(f"no images (jpg, png, webp, bmp, tiff) in {args.template_dir}")
    with FaceFuser() as engine:
        prepared = engine.prepare_source(args.source, params)
    started = time.perf_counter()
    failures = []
    with tqdm(total=len(templates), unit="photo", desc="fusing", file=sys.stderr,
              disable=args.quiet) as bar:
        def report(item):
            if not item.ok:
                failures.append(item)
                bar.write(f"skipped {item.template.name}: {item.message}", file=sys.stderr)
            bar.update(1)

        results = run_batch(prepared, templates, Path(args.output), params,
                            workers=args.workers, ext=args.ext, on_item=report)
    elapsed = time.perf_counter() - started
    done = sum(r.ok for r in results)
    print(f"{done} of {len(results)} fused into {args.output} in {elapsed:.1f} s "
          f"({elapsed / max(1, len(results)):.2f} s per photo)"
          + (f"; {len(failures)} failed" if failures else "")
          + (f"; {len(ignored)} non-image file(s) ignored" if ignored else ""))
    for item in failures:
        print(f"  failed: {item.template.name}: {item.message}")
    if args.report:
        Path(args.report).write_text(json.dumps(
            [{"template": str(r.template), "output": str(r.output) if r.output else None,
              "ok": r.ok, "message": r.message, "ms": round(r.ms, 1)} for r in results],
            indent=2))
    return 0 if not failures else 1


def cmd_harmonize(args: argparse.Namespace) -> int:
    import numpy as np

    from .imageio import load_image, save_format, save_image
    from .refine import harmonize, load_refiner

    save_format(args.output)
    image = load_image(args.image, name="image")
    mask = load_image(args.mask, name="mask").mean(axis=2).astype(np.float32) / 255.0
    refiner = load_refiner(args.backend)
    result = harmonize(refiner, image, mask)
    save_image(args.output, result, note="harmonized")
    print(f"saved {args.output} ({result.shape[1]}x{result.shape[0]})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    try:
        from .nn.train import TrainConfig, train
    except ImportError as exc:
        raise BackendError("training needs the train extra: pip install -e '.[train]' "
                           f"({exc})") from None
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ParameterError("--device cuda: no CUDA device is available here")
    cfg = TrainConfig(data=args.data, out=args.out, steps=args.steps, size=args.size,
                      batch=args.batch, lr=args.lr, seed=args.seed, device=args.device,
                      val_every=args.val_every, init=args.init, prematch=args.prematch,
                      edge_weight=args.edge_weight, stop_after=args.stop_after)
    summary = train(cfg, progress=not args.quiet)
    best = summary["best"]
    print(f"best validation PSNR {best['psnr_refined']:.2f} dB (composites "
          f"{best['psnr_composite']:.2f} dB) at step {best['step']}; model: "
          f"{Path(args.out) / 'unet_fp32.onnx'}")
    return 0


def cmd_eval_harmonize(args: argparse.Namespace) -> int:
    from .evaluate import harmonize_report, markdown_table, write_report

    report = harmonize_report(Path(args.data), size=args.size, backend=args.backend,
                              model=Path(args.model) if args.model else None)
    print(markdown_table(report))
    write_report(report, Path(args.json) if args.json else None)
    return 0


def cmd_eval_refine(args: argparse.Namespace) -> int:
    from .evaluate import refine_on_off_report, refine_on_off_table, write_report

    report = refine_on_off_report(Path(args.data), pairs=args.pairs, backend=args.backend,
                                  relight=args.relight,
                                  model=Path(args.model) if args.model else None)
    print(refine_on_off_table(report))
    write_report(report, Path(args.json) if args.json else None)
    return 0


def cmd_eval_fusion(args: argparse.Namespace) -> int:
    from . import eval_fusion as ef
    from .evaluate import write_report

    if args.pairs:
        pairs = ef.csv_pairs(Path(args.pairs))
        gallery = {p.person: p.reference for p in pairs if p.reference}
    else:
        data = Path(args.data)
        pairs = ef.london_pairs(data, args.count)
        gallery = {p.stem.split("_")[0]: p for p in sorted((data / "smiling").glob("*.jpg"))}
    ratios = [float(r) for r in args.ratios.split(",")]
    for r in ratios:
        FusionParams(ratio=r)  # validates
    configs = {"default": {}}
    if args.compare:
        specs = args.compare
        configs = ({"default": {}, specs[0]: ef.parse_config(specs[0])} if len(specs) == 1
                   else {s: ef.parse_config(s) for s in specs})
    report = ef.fusion_report(pairs, ratios, configs, gallery_photos=gallery,
                              progress=not args.quiet)
    print(ef.summary_table(report))
    if len(configs) == 2:
        a, b = list(configs)
        print()
        print(ef.compare_table(report, a, b))
    if args.sheet:
        ef.contact_sheet(report, Path(args.sheet))
        sheet = Path(args.sheet)
        ef.identity_plot(report, sheet.with_name(sheet.stem + "-identity.png"))
    report.pop("_images")
    write_report(report, Path(args.json) if args.json else None)
    return 0


def cmd_eval_landmarks(args: argparse.Namespace) -> int:
    from .eval_fusion import landmark_report, landmark_table
    from .evaluate import write_report

    report = landmark_report(Path(args.data), args.limit)
    print(landmark_table(report))
    write_report(report, Path(args.json) if args.json else None)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json as _json

    from . import bench
    from .imageio import load_image
    from .refine import MODELS_DIR, model_path

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
                                                     "phone"]
    if "phone" in parts:
        from .export import real_samples

        sizes = [int(v) for v in args.sizes.split(",")]
        models = Path(args.models) if args.models else MODELS_DIR
        held_out = real_samples(data, 12, 512, seed=11, held_out=True)
        report["phone"] = bench.bench_phone(models, sizes, held_out) + \
            bench.coreml_rows(models, sizes)
    if "refiner" in parts:
        report["refiner"] = bench.bench_refiner(["ort-fp32", "ort-int8"], [320, 512])
    if "preview" in parts:
        report["preview"] = bench.bench_preview(source, template)
    if "live" in parts:
        report["live"] = [bench.bench_live(template, source, refine=False)]
        for backend in ("ort-int8", "litert-int8"):  # what the camera path runs
            if model_path(backend).exists() and _runtime_available(backend):
                report["live"].append(bench.bench_live(template, source, backend=backend))
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


def cmd_export(args: argparse.Namespace) -> int:
    from .export import FORMATS, export_all

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"--sizes takes a comma list of pixel sizes, not {args.sizes!r}"
                             ) from None
    out = Path(args.output)
    data = Path(args.data) if args.data else None
    if args.check_only:
        return _check_only(out, sizes, data)
    if data is None and _default_data().exists():
        data = _default_data()
    result = export_all(out, formats or list(FORMATS), sizes, data, args.calibration,
                        check=not args.no_check, log=lambda m: print(m, file=sys.stderr))
    for kind, name in result["files"].items():
        print(f"{kind}: {out / name}")
    for kind, m in result["metrics"].items():
        if "face_psnr_db_mean" in m:
            print(f"{kind} vs {m['vs']} on held-out faces: face-region PSNR "
                  f"{m['face_psnr_db_mean']:.1f} dB (worst {m['face_psnr_db_min']:.1f} dB)")
    print(f"manifest: {out / 'manifest.json'}")
    if "consistency_ok" in result:
        print(f"consistency: {out / 'consistency.md'} "
              f"({'all within thresholds' if result['consistency_ok'] else 'DISAGREEMENT'})")
        return 0 if result["consistency_ok"] else 1
    return 0


def _default_data() -> Path:
    """The shared London set beside the checkout, used when --data is not given."""
    return Path(__file__).resolve().parent.parent.parent / "shared" / "faces" / "london"


def _check_only(out: Path, sizes: list[int], data: Path | None) -> int:
    """`export --check`: the consistency report for the files already in `out`."""
    from .export import check as consistency
    from .export import load_trained_network, real_samples

    manifest_path = out / "manifest.json"
    files = {}
    if manifest_path.exists():
        files = {k: out / v for k, v in json.loads(manifest_path.read_text())["files"].items()
                 if (out / v).suffix in (".onnx", ".tflite", ".mlpackage")}
    samples = real_samples(data, 6, 512, seed=11, held_out=True)
    report = consistency.check(load_trained_network(), samples, side=min(sizes), files=files)
    md, _ = consistency.write(report, out)
    print(consistency.markdown(report))
    print(f"report: {md}")
    return 0 if report["ok"] else 1


def cmd_webui(args: argparse.Namespace) -> int:
    try:
        from .webui import launch
    except ImportError as exc:
        raise BackendError(f"the WebUI needs gradio: pip install -e . ({exc})") from None
    launch(args.host, args.port, Path(args.outputs))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="facefuse", description="Offline face fusion: blend a source face into a "
        "template photo, on your own machine.")
    parser.add_argument("--version", action="version", version=f"facefuse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("fuse", help="fuse one source face into one template photo")
    p.add_argument("source", help="photo with the face to put in")
    p.add_argument("template", help="photo whose pose, expression and light are kept")
    p.add_argument("-o", "--output", required=True, help="result file (.jpg .png .webp ...)")
    p.add_argument("--timings", action="store_true", help="print per-stage milliseconds")
    add_fusion_options(p)
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("batch", help="fuse one source face into every photo of a folder")
    p.add_argument("source", help="photo with the face to put in")
    p.add_argument("template_dir", help="folder of template photos")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=0,
                   help="worker threads (default: one per core)")
    p.add_argument("--ext", default=None, help="output extension, e.g. .png (default: the "
                   "template's own)")
    p.add_argument("--report", default=None, help="write a JSON report of every photo")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_fusion_options(p)
    p.set_defaults(func=cmd_batch)
    p = sub.add_parser("webui", help="start the local WebUI (http://127.0.0.1:7860)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--outputs", default="outputs", help="folder for saved results")
    p.set_defaults(func=cmd_webui)

    p = sub.add_parser("bench", help="measure speed (ratios against baselines, same run)")
    p.add_argument("--data", required=True, help="the London set (1350 px photos)")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--batch", type=int, default=40, help="templates in the batch run")
    p.add_argument("--only", default=None,
                   help="comma list of album,live,preview,refiner,phone (default: all)")
    p.add_argument("--models", default=None, help="an export folder (facefuse export -o) for "
                   "the phone table; default: the shipped models")
    p.add_argument("--sizes", default="512,320", help="sizes of the phone table")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None, help="write a PNG chart here")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("export", help="export the refiner for apps (ONNX, INT8, LiteRT, "
                                      "Core ML) and check the backends agree")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--formats", default="onnx,int8,litert,coreml",
                   help="comma list of onnx,int8,litert,coreml (default: all)")
    p.add_argument("--sizes", default="512,320",
                   help="input sizes of the fixed-size LiteRT and Core ML files")
    p.add_argument("--data", default=None, help="real faces for INT8 calibration (default: "
                   "../shared/faces/london when it is there)")
    p.add_argument("--calibration", type=int, default=200, help="calibration crops")
    p.add_argument("--no-check", action="store_true",
                   help="skip the operator consistency check after exporting")
    p.add_argument("--check", dest="check_only", action="store_true",
                   help="only check: torch vs ONNX Runtime vs LiteRT on the files in -o")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("harmonize", help="harmonise a masked region with the U-Net")
    p.add_argument("image", help="the photo")
    p.add_argument("mask", help="grayscale mask of the same size, white = region")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--backend", choices=BACKENDS, default="ort-fp32")
    p.set_defaults(func=cmd_harmonize)

    p = sub.add_parser("train", help="train the refiner U-Net (needs the train extra)")
    p.add_argument("--data", required=True, help="folder of face photos (e.g. ../shared/"
                   "faces/london)")
    p.add_argument("--out", required=True, help="run folder: checkpoint, best weights, ONNX")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--size", type=int, default=256, help="training crop side")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--init", default=None, help="start from a checkpoint (fine-tuning)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many steps (the schedule still spans --steps)")
    p.add_argument("--prematch", nargs="?", const="lab", default=None,
                   choices=["lab", "texture", "mixed"],
                   help="colour-match composites first, as the pipeline does before the "
                        "refiner: lab (mean/std to the template; the default when given "
                        "alone), texture (the texture stage's own match), mixed (either)")
    p.add_argument("--edge-weight", type=float, default=0.0,
                   help="extra loss weight on the mask's feathered edge (default 0)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="quality reports")
    ev = p.add_subparsers(dest="report", metavar="REPORT", required=True)
    q = ev.add_parser("harmonize", help="U-Net vs classical harmonisation on held-out faces")
    q.add_argument("--data", required=True)
    q.add_argument("--size", type=int, default=512)
    q.add_argument("--backend", choices=BACKENDS, default="ort-fp32")
    q.add_argument("--model", default=None, help="an .onnx file instead of the shipped one")
    q.add_argument("--json", default=None)
    q.set_defaults(func=cmd_eval_harmonize)
    q = ev.add_parser("refine", help="full pipeline with the refiner on vs off")
    q.add_argument("--data", required=True)
    q.add_argument("--pairs", type=int, default=10)
    q.add_argument("--backend", choices=BACKENDS, default="ort-fp32")
    q.add_argument("--relight", action="store_true",
                   help="give each template other light and camera than the source")
    q.add_argument("--model", default=None, help="an .onnx file instead of the shipped one")
    q.add_argument("--json", default=None)
    q.set_defaults(func=cmd_eval_refine)

    q = ev.add_parser("fusion", help="judge fusion results with an independent face model")
    source = q.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="the London set layout (neutral/, smiling/)")
    source.add_argument("--pairs", help="CSV with source,template[,reference,person]")
    q.add_argument("--count", type=int, default=12, help="pairs taken from --data")
    q.add_argument("--ratios", default="0,0.25,0.5,0.75,1")
    q.add_argument("--compare", nargs="+", metavar="CONFIG",
                   help="one config (vs default) or two, e.g. refine=false, mobile, "
                   "backend=ort-int8")
    q.add_argument("--json", default=None)
    q.add_argument("--sheet", default=None, help="contact sheet PNG (and an identity plot)")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_eval_fusion)
    q = ev.add_parser("landmarks", help="our landmarks vs hand-placed .tem points")
    q.add_argument("--data", required=True)
    q.add_argument("--limit", type=int, default=None)
    q.add_argument("--json", default=None)
    q.set_defaults(func=cmd_eval_landmarks)

    for sp in [*sub.choices.values(), *ev.choices.values()]:  # --debug after the command
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "workers", 0) and args.workers < 0:
        parser.error("--workers must be 0 or more")
    try:
        with NativeLogFilter():
            return int(args.func(args) or 0)
    except FaceFuseError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

