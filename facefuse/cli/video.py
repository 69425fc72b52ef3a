"""`facefuse video`: one source face into every frame of a video."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ParameterError
from .options import add_fusion_options, params_from_args

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def seconds(text: str) -> float:
    """12.5, 1:02.5 or 0:01:02.5 -> seconds."""
    try:
        value = 0.0
        for part in text.split(":"):
            value = value * 60 + float(part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or [h:]m:s, got {text!r}"
                                         ) from None
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from ..runners.video import CHUNK_FRAMES, CODECS, PRESETS

    p = sub.add_parser("video", help="fuse one source face into every frame of a video")
    p.add_argument("source", help="photo with the face to put in")
    p.add_argument("template_video", help="video whose faces, motion, sound and timing are "
                   "kept (.mp4 .mov .mkv .webm ...)")
    p.add_argument("-o", "--output", required=True,
                   help="result video (.mp4 .mov .m4v .mkv .webm); with --preview-frame an "
                   "image (.png .jpg .webp) or a video name (then NAME.frameN.png)")
    p.add_argument("--start", type=seconds, default=None, metavar="T",
                   help="start at T (seconds or [h:]m:s)")
    p.add_argument("--end", type=seconds, default=None, metavar="T", help="stop before T")
    p.add_argument("--crf", type=int, default=18, metavar="N",
                   help="encoder quality, lower is better (0..51, default 18)")
    p.add_argument("--encoder-preset", choices=PRESETS, default="veryfast",
                   help="encoder speed (default veryfast; --preset is the fusion preset)")
    p.add_argument("--codec", choices=CODECS, default="libx264",
                   help="video encoder (default libx264); audio is copied as it is")
    p.add_argument("--preview-frame", type=int, default=None, metavar="N",
                   help="write only frame N (from 0) fused, to check the settings first")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run with the same inputs and settings")
    p.add_argument("--no-smooth", dest="smooth", action="store_false",
                   help="no temporal smoothing of the face tracks (for comparison)")
    p.add_argument("--workers", type=int, default=0,
                   help="fusion threads (default: one per core, at most 4)")
    p.add_argument("--chunk-frames", type=int, default=CHUNK_FRAMES, metavar="N",
                   help=f"frames per resumable chunk (default {CHUNK_FRAMES})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_fusion_options(p)
    p.set_defaults(func=cmd_video)


def cmd_video(args: argparse.Namespace) -> int:
    from ..imageio import check_writable_folder, save_image
    from ..runners.video import EncodeOptions, VideoOptions, fuse_video, preview_frame

    camera_path = (("--smoothing", "smoothing"), ("--poisson", "poisson"),
                   ("--crop-size", "crop_size"))
    fixed = [flag for flag, name in camera_path if getattr(args, name) is not None]
    if fixed:
        raise ParameterError(f"{', '.join(fixed)}: not available for video, which runs the "
                             "camera path (320 crop, no skin smoothing or Poisson) to keep "
                             "its speed")
    params = params_from_args(args)
    options = VideoOptions(start=args.start, end=args.end, smooth=args.smooth,
                           workers=args.workers, chunk_frames=args.chunk_frames,
                           encode=EncodeOptions(args.codec, args.crf, args.encoder_preset))
    output = Path(args.output)
    if args.preview_frame is not None:
        target = (output if output.suffix.lower() in IMAGE_EXTENSIONS
                  else output.with_name(f"{output.stem}.frame{args.preview_frame}.png"))
        check_writable_folder(target.parent, str(target))
        image = preview_frame(args.source, args.template_video, args.preview_frame, params,
                              options=options)
        save_image(target, image, note=f"ratio={params.ratio}; video frame "
                   f"{args.preview_frame}")
        print(f"saved {target} (frame {args.preview_frame}, {image.shape[1]}x"
              f"{image.shape[0]})")
        return 0
    if output.suffix.lower() in IMAGE_EXTENSIONS:
        raise ParameterError(f"{output.name} is an image name: give a video name (.mp4 "
                             ".mkv ...), or add --preview-frame N for one frame")
    bars: dict = {}

    def progress(phase: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if phase not in bars:
            for bar in bars.values():
                bar.close()
            desc = {"track": "tracking", "fuse": "fusing"}[phase]
            bars[phase] = tqdm(total=total or None, unit="frame", desc=desc, file=sys.stderr,
                               disable=args.quiet, initial=done - 1)
        bar = bars[phase]
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        report = fuse_video(args.source, args.template_video, output, params, options,
                            resume=args.resume, progress=progress)
    except KeyboardInterrupt:
        print(f"stopped: run the same command with --resume to continue "
              f"(finished chunks are kept beside {output.name})", file=sys.stderr)
        raise
    finally:
        for bar in bars.values():
            bar.close()
    audio = ", ".join(f"audio {note}" for note in report.audio) or "no audio"
    audio += "".join(f", subtitles {note}" for note in report.subtitles)
    print(f"saved {report.output} ({report.frames} frames, {report.fused} with the face fused, "
          f"{audio}, rotation {report.rotation}°, {report.fps:.1f} fps"
          + (f", resumed after {report.resumed_chunks} finished chunks"
             if report.resumed_chunks else "") + ")")
    if report.cut_short:
        print(f"note: {report.cut_short}", file=sys.stderr)
    return 0
