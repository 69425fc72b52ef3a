"""`facefuse export`: the refiner for apps, and the backends' consistency check."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ParameterError


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--trust", action="store_true",
                   help="only the learned trust map's LiteRT file for the phone app "
                        "(from facefuse/models/trust.pt, checked against its ONNX file)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import FORMATS, export_all

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"--sizes takes a comma list of pixel sizes, not {args.sizes!r}"
                             ) from None
    out = Path(args.output)
    if args.trust:
        from ..export import export_trust

        made = export_trust(out)
        print(f"trust map: {out / made['file']} ({made['side']} px; max abs difference "
              f"from the ONNX file on the astronaut: {made['max_abs_vs_onnx']:.2e})")
        return 0
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
    return Path(__file__).resolve().parents[3] / "shared" / "faces" / "london"


def _check_only(out: Path, sizes: list[int], data: Path | None) -> int:
    """`export --check`: the consistency report for the files already in `out`."""
    from ..export import check as consistency
    from ..export import load_trained_network, real_samples

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
