"""`facefuse eval ...`: the quality reports."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..params import BACKENDS, FusionParams


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="quality reports")
    ev = p.add_subparsers(dest="report", metavar="REPORT", required=True)
    q = ev.add_parser("harmonize", help="U-Net vs classical harmonisation on held-out faces")
    q.add_argument("--data", required=True)
    q.add_argument("--size", type=int, default=512)
    q.add_argument("--backend", choices=BACKENDS, default="ort-fp32")
    q.add_argument("--model", default=None, help="an .onnx file instead of the shipped one")
    q.add_argument("--harmonizer", default=None,
                   help="an .onnx file instead of the shipped harmonize weights")
    q.add_argument("--cache", default=None,
                   help="aligned-face cache (.npz; built there if absent, e.g. a training "
                        "run's faces_cache.npz)")
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
    q = ev.add_parser("occlusion", help="occluders on the source stay out, on the template "
                      "stay on top (held-out faces, occlusion and U-Net on vs off)")
    q.add_argument("--data", required=True, help="the London set layout (neutral/, smiling/)")
    q.add_argument("--pairs", type=int, default=10)
    q.add_argument("--ratio", type=float, default=1.0)
    q.add_argument("--model", default=None, help="an .onnx file instead of the shipped one")
    q.add_argument("--json", default=None)
    q.add_argument("--sheet", default=None,
                   help="contact sheet PNG (shows people: write it outside the repository)")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_eval_occlusion)
    q = ev.add_parser("pose", help="head pose against the template, and how much of it the "
                      "judge reads into the face's proportions alone (held-out cross pairs)")
    q.add_argument("--data", required=True, help="the London set layout (neutral/, smiling/)")
    q.add_argument("--hops", type=int, default=9,
                   help="each held-out source into the next N people's photos (9: all 90)")
    q.add_argument("--count", type=int, default=None, help="at most this many pairs")
    q.add_argument("--json", default=None)
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_eval_pose)
    q = ev.add_parser("landmarks", help="our landmarks vs hand-placed .tem points")
    q.add_argument("--data", required=True)
    q.add_argument("--limit", type=int, default=None)
    q.add_argument("--json", default=None)
    q.set_defaults(func=cmd_eval_landmarks)
    q = ev.add_parser("video", help="a London test video fused, smoothing on vs off")
    q.add_argument("--data", required=True, help="the London set layout (neutral/, smiling/)")
    q.add_argument("--size", default="1280x720", help="display size WxH of the test video")
    q.add_argument("--frames", type=int, default=90)
    q.add_argument("--work", default=None, help="keep the clip and the results here")
    q.add_argument("--no-judge", dest="judge", action="store_false",
                   help="skip the identity check (needs the eval extra)")
    q.add_argument("--json", default=None)
    q.set_defaults(func=cmd_eval_video)


def cmd_eval_harmonize(args: argparse.Namespace) -> int:
    from ..quality.evaluate import harmonize_report, markdown_table, write_report

    report = harmonize_report(Path(args.data), size=args.size, backend=args.backend,
                              model=Path(args.model) if args.model else None,
                              cache=Path(args.cache) if args.cache else None,
                              harmonizer=Path(args.harmonizer) if args.harmonizer else None)
    print(markdown_table(report))
    write_report(report, Path(args.json) if args.json else None)
    return 0


def cmd_eval_refine(args: argparse.Namespace) -> int:
    from ..quality.evaluate import refine_on_off_report, refine_on_off_table, write_report

    report = refine_on_off_report(Path(args.data), pairs=args.pairs, backend=args.backend,
                                  relight=args.relight,
                                  model=Path(args.model) if args.model else None)
    print(refine_on_off_table(report))
    write_report(report, Path(args.json) if args.json else None)
    return 0


def cmd_eval_fusion(args: argparse.Namespace) -> int:
    from ..quality import fusion as ef
    from ..quality.evaluate import write_report

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


def cmd_eval_occlusion(args: argparse.Namespace) -> int:
    from ..quality.evaluate import write_report
    from ..quality.occlusion import occlusion_report, occlusion_sheet, occlusion_table

    FusionParams(ratio=args.ratio)  # validates
    report = occlusion_report(Path(args.data), pairs=args.pairs, ratio=args.ratio,
                              progress=not args.quiet,
                              model=Path(args.model) if args.model else None)
    print(occlusion_table(report))
    if args.sheet:
        occlusion_sheet(report, Path(args.sheet))
    report.pop("_sheet")
    write_report(report, Path(args.json) if args.json else None)
    return 0


def cmd_eval_pose(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..quality.evaluate import write_report
    from ..quality.pose import pose_report, pose_table

    if args.hops < 1 or (args.count is not None and args.count < 1):
        raise ParameterError("--hops and --count must be at least 1")
    report = pose_report(Path(args.data), hops=args.hops, count=args.count,
                         progress=not args.quiet)
    print(pose_table(report))
    write_report(report, Path(args.json) if args.json else None)
    return 0


def cmd_eval_landmarks(args: argparse.Namespace) -> int:
    from ..quality.evaluate import write_report
    from ..quality.fusion import landmark_report, landmark_table

    report = landmark_report(Path(args.data), args.limit)
    print(landmark_table(report))
    write_report(report, Path(args.json) if args.json else None)
    return 0


def cmd_eval_video(args: argparse.Namespace) -> int:
    import tempfile

    from ..errors import ParameterError
    from ..quality.evaluate import write_report
    from ..quality.video import video_report, video_table

    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ParameterError(f"--size must be WxH, e.g. 1280x720; got {args.size!r}") from None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = video_report(Path(args.data), work, size=size, frames=args.frames,
                              judge=args.judge)
    print(video_table(report))
    write_report(report, Path(args.json) if args.json else None)
    return 0
