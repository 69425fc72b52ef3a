"""`facefuse harmonize`, `facefuse train` and `facefuse train-trust`: the networks on their
own."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BackendError, ParameterError
from ..params import BACKENDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("harmonize", help="harmonise a masked region with the U-Net")
    p.add_argument("image", help="the photo")
    p.add_argument("mask", help="grayscale mask of the same size, white = region")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--backend", choices=BACKENDS, default="ort-fp32",
                   help="ort-fp32 (default) runs the harmonize weights (models/"
                        "unet_harmonize.onnx); the others run the pipeline's weights in "
                        "that runtime (the harmonize weights ship as ONNX FP32 only)")
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
                   choices=["lab", "texture", "mixed", "runtime", "runtime-mixed"],
                   help="colour-match composites first, as the pipeline does before the "
                        "refiner: lab (mean/std to the template; the default when given "
                        "alone), texture (the texture stage's own match), mixed (either), "
                        "runtime (lab with a template, and without one matched to the "
                        "surroundings as `facefuse harmonize` does), runtime-mixed (the "
                        "same with mixed where there is a template)")
    p.add_argument("--template-dropout", type=float, default=0.25,
                   help="share of composites trained without a template (default 0.25)")
    p.add_argument("--shadows", type=float, default=0.0,
                   help="share of composites with a cast shadow on the template to carry "
                        "onto the face (half as many get one on the face to lift; default 0)")
    p.add_argument("--edge-weight", type=float, default=0.0,
                   help="extra loss weight on the mask's feathered edge (default 0)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-trust", help="train the learned occlusion trust map (needs the "
                       "train extra)")
    p.add_argument("--data", required=True, help="folder of face photos (e.g. ../shared/"
                   "faces/london); only the training identities are used")
    p.add_argument("--out", required=True, help="run folder: weights, ONNX, metrics")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--held-out-samples", type=int, default=400,
                   help="fixed samples of the held-out people scored at the end")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the batches are made on a second thread, "
                        "and on a shared 2-core machine more threads spin against each other)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train_trust)


def cmd_harmonize(args: argparse.Namespace) -> int:
    import numpy as np

    from ..imageio import load_image, save_format, save_image
    from ..stages.refine import harmonize, load_harmonizer, load_refiner

    save_format(args.output)
    image = load_image(args.image, name="image")
    mask = load_image(args.mask, name="mask").mean(axis=2).astype(np.float32) / 255.0
    refiner = load_harmonizer() if args.backend == "ort-fp32" else load_refiner(args.backend)
    result = harmonize(refiner, image, mask)
    save_image(args.output, result, note="harmonized")
    print(f"saved {args.output} ({result.shape[1]}x{result.shape[0]})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    try:
        from ..nn.train import TrainConfig, train
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
                      edge_weight=args.edge_weight, stop_after=args.stop_after,
                      template_dropout=args.template_dropout, shadows=args.shadows)
    summary = train(cfg, progress=not args.quiet)
    best = summary["best"]
    print(f"best validation PSNR {best['psnr_refined']:.2f} dB (composites "
          f"{best['psnr_composite']:.2f} dB) at step {best['step']}; model: "
          f"{Path(args.out) / 'unet_fp32.onnx'}")
    return 0


def cmd_train_trust(args: argparse.Namespace) -> int:
    try:
        from ..nn.train_trust import TrustConfig, train_trust
    except ImportError as exc:
        raise BackendError("training needs the train extra: pip install -e '.[train]' "
                           f"({exc})") from None
    if args.steps < 1 or args.batch < 1:
        raise ParameterError("--steps and --batch must be at least 1")
    cfg = TrustConfig(data=args.data, out=args.out, steps=args.steps, batch=args.batch,
                      lr=args.lr, seed=args.seed, threads=args.threads,
                      held_out_samples=args.held_out_samples)
    summary = train_trust(cfg, progress=not args.quiet)
    held = summary["held_out"]
    print(f"held-out: trust inside occluders {held['trust_inside_covered']:.3f}, on bare "
          f"skin {held['trust_on_bare_skin']:.3f}, IoU {held['iou_covered']:.3f}; model: "
          f"{Path(args.out) / 'trust_fp32.onnx'}")
    return 0
