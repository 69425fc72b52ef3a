"""Train the refiner U-Net: `facefuse train --data DIR --out DIR [--steps N] ...`.

Fixed seed, periodic validation on held-out identities, a resumable checkpoint
(`checkpoint.pt`, written atomically), the best weights kept (`best.pt`), and an ONNX export
of the best weights at the end (`unet_fp32.onnx`) with the metrics (`metrics.json`).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .data import FaceSet, load_or_build, make_composite, split_ids, validation_composites
from .unet import DEFAULT_WIDTHS, RefineUNet, count_macs, count_parameters


@dataclass
class TrainConfig:
    data: str
    out: str
    steps: int = 6000
    size: int = 256
    batch: int = 12
    lr: float = 3e-3
    seed: int = 7
    device: str = "cpu"
    val_every: int = 500
    threads: int = 0
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    init: str | None = None  # start from these weights (fine-tuning)
    stop_after: int | None = None  # stop early, keeping the schedule of `steps`
    prematch: str | None = None  # "lab", "texture", "mixed", "runtime", "runtime-mixed"
    template_dropout: float = 0.25  # share of composites without a template (harmonize)
    shadows: float = 0.0  # share of composites with the template's cast shadow (data.py)
    edge_weight: float = 0.0  # extra loss weight on the mask's feathered edge (the seam)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_of(faces: FaceSet, cfg: TrainConfig, rng: np.random.Generator, device: str):
    idx = rng.integers(0, len(faces.ids), cfg.batch)
    items = [make_composite(faces.crops[i], faces.masks[i], faces.crops[faces.partner(i)],
                            cfg.size, rng, template_dropout=cfg.template_dropout,
                            prematch=cfg.prematch, shadows=cfg.shadows) for i in idx]
    comp, mask, template, target = (np.stack(parts) for parts in zip(*items, strict=True))
    nchw = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).to(device)  # noqa: E731
    return nchw(comp), torch.from_numpy(mask)[:, None].to(device), nchw(template), nchw(target)


def evaluate(model: RefineUNet, val: list, device: str) -> dict[str, float]:
    """Mean PSNR of the composites and of the refined outputs against the targets, over
    all, and the refined PSNR with a template and without one (the harmonize case)."""
    model.eval()
    before, after, alone = [], [], []
    with torch.no_grad():
        for comp, mask, template, target in val:
            x = torch.from_numpy(comp).permute(2, 0, 1)[None].to(device)
            m = torch.from_numpy(mask)[None, None].to(device)
            t = torch.from_numpy(template).permute(2, 0, 1)[None].to(device)
            y = model(x, m, t)[0].permute(1, 2, 0).cpu().numpy()
            before.append(psnr(comp, target))
            after.append(psnr(y, target))
            alone.append(not template.any())
    model.train()
    sel = np.array(alone, bool)
    gain = np.array(after) - np.array(before)
    return {"psnr_composite": float(np.mean(before)), "psnr_refined": float(np.mean(after)),
            "gain_template": float(gain[~sel].mean()) if (~sel).any() else 0.0,
            "gain_alone": float(gain[sel].mean()) if sel.any() else 0.0}


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    from tqdm import tqdm

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = cfg.device
    faces = load_or_build(Path(cfg.data), out / "faces_cache.npz")
    train_ids, val_ids = split_ids(faces.ids)
    train_set = faces.subset([i for i, p in enumerate(faces.ids) if p in train_ids])
    val_set = faces.subset([i for i, p in enumerate(faces.ids) if p in val_ids])
    # Validation: half with the template, half without (the harmonize case).
    val = (validation_composites(val_set, cfg.size, per_face=1, seed=1234,
                                 prematch=cfg.prematch) +
           validation_composites(val_set, cfg.size, per_face=1, seed=4321,
                                 template_dropout=1.0, prematch=cfg.prematch))

    model = RefineUNet(tuple(cfg.widths)).to(device)
    if cfg.init:
        model.load_state_dict(load_checkpoint_model(Path(cfg.init)).state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps,
                                                pct_start=0.05)
    rng = np.random.default_rng(cfg.seed)
    step, best, history = 0, -1.0, []
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():  # resume exactly where the last run stopped
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        rng.bit_generator.state = ckpt["rng"]
        step, best, history = ckpt["step"], ckpt["best"], ckpt["history"]

    bar = tqdm(total=cfg.steps, initial=step, desc="training", unit="step",
               disable=not progress)
    started = time.time()
    loss_avg = 0.0
    # Batches are made one ahead on a helper thread (OpenCV and NumPy release the GIL), so
    # composite synthesis overlaps the network's step; one producer keeps it deterministic.
    from concurrent.futures import ThreadPoolExecutor

    producer = ThreadPoolExecutor(1)

    def submit_next():
        # The generator's state is read before the helper draws from it (it is idle here):
        # a checkpoint stores this state, so a resumed run draws the very batch this one
        # would have used next.
        state = rng.bit_generator.state
        return state, producer.submit(batch_of, train_set, cfg, rng, device)

    next_state, upcoming = submit_next()
    last = min(cfg.steps, cfg.stop_after or cfg.steps)
    while step < last:
        comp, mask, template, target = upcoming.result()
        next_state, upcoming = submit_next()
        pred = model(comp, mask, template)
        # The error counts inside the (feathered) face region, where the change is, and
        # with `edge_weight` more on the feather itself, where a seam would show.
        weight = mask.clamp_min(0.02) + cfg.edge_weight * 4 * mask * (1 - mask)
        loss = (weight * (pred - target).abs()).sum() / weight.sum() / 3 + \
            F.mse_loss(pred, target) * 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        loss_value = loss.item()
        loss_avg = 0.98 * loss_avg + 0.02 * loss_value if step > 1 else loss_value
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}")
        if step % cfg.val_every == 0 or step == last:
            metrics = evaluate(model, val, device)
            metrics.update(step=step, minutes=(time.time() - started) / 60)
            history.append(metrics)
            bar.write(f"step {step}: validation PSNR composite "
                      f"{metrics['psnr_composite']:.2f} dB -> refined "
                      f"{metrics['psnr_refined']:.2f} dB (gain with a template "
                      f"{metrics['gain_template']:+.2f}, without {metrics['gain_alone']:+.2f})",
                      file=sys.stdout)
            if metrics["psnr_refined"] > best:
                best = metrics["psnr_refined"]
                _save_atomic({"model": model.state_dict(), "widths": list(cfg.widths),
                              "step": step, "metrics": metrics}, out / "best.pt")
            _save_atomic({"model": model.state_dict(), "opt": opt.state_dict(),
                          "sched": sched.state_dict(), "rng": next_state,
                          "step": step, "best": best, "history": history,
                          "config": asdict(cfg)}, ckpt_path)
    bar.close()
    producer.shutdown(cancel_futures=True)

    best_ckpt = torch.load(out / "best.pt", weights_only=False)
    model.load_state_dict(best_ckpt["model"])
    model.eval()
    from .onnx_export import export_onnx

    export_onnx(model, out / "unet_fp32.onnx")
    summary = {
        "config": asdict(cfg),
        "parameters": count_parameters(model),
        "gmac_512": count_macs(model, 512, 512) / 1e9,
        "gmac_320": count_macs(model, 320, 320) / 1e9,
        "train_images": len(train_set.ids), "train_identities": len(train_ids),
        "val_images": len(val_set.ids), "val_identities": len(val_ids),
        "val_identity_list": sorted(val_ids),
        "best": best_ckpt["metrics"], "history": history,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_checkpoint_model(path: Path) -> RefineUNet:
    """The network of a best.pt / checkpoint.pt, in eval mode."""
    ckpt = torch.load(path, weights_only=False, map_location="cpu")
    widths = ckpt.get("widths") or ckpt.get("config", {}).get("widths") or DEFAULT_WIDTHS
    model = RefineUNet(tuple(widths))
    model.load_state_dict(ckpt["model"])
    return model.eval()
