"""Train the trust network: `facefuse train-trust --data DIR --out DIR [--steps N] ...`.

Training identities only (the refiner's split, data.split_ids; the held-out people are not
even aligned until the end). Fixed seed, one batch made ahead on a helper thread, the last
weights kept (no model selection on held-out people), then: the held-out figures
(`metrics.json`, per occluder kind, on fixed samples of the held-out identities) and the
ONNX export (`trust_fp32.onnx`, dynamic side) of those weights.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .data import find_photos, person_id, split_ids
from .train import seed_everything
from .trust_data import (
    NET_SIDE,
    TrustFaces,
    build_trust_faces,
    fixed_samples,
    load_trust_faces,
    make_trust_sample,
    save_trust_faces,
)
from .trust_net import TRUST_WIDTHS, TrustUNet

SKIN_WEIGHT = 2.0  # the loss counts skin pixels this much more ...
OFF_SKIN_WEIGHT = 0.3  # ... than the rest of the crop (the people's own hair, the background)


@dataclass
class TrustConfig:
    data: str
    out: str
    steps: int = 2500
    batch: int = 16
    lr: float = 4e-3
    seed: int = 7
    threads: int = 0
    side: int = NET_SIDE
    widths: tuple[int, ...] = TRUST_WIDTHS
    held_out_samples: int = 400  # fixed held-out samples scored at the end


def _faces(data: Path, ids: set[str], cache: Path) -> TrustFaces:
    if cache.exists():
        return load_trust_faces(cache)
    faces = build_trust_faces(data, ids)
    save_trust_faces(faces, cache)
    return faces


def _batch(faces: TrustFaces, cfg: TrustConfig, rng: np.random.Generator):
    idx = rng.integers(0, len(faces.ids), cfg.batch)
    items = [make_trust_sample(faces, int(i), rng, cfg.side) for i in idx]
    image, skin, label = (np.stack(parts) for parts in zip(*items, strict=True))
    return (torch.from_numpy(image).permute(0, 3, 1, 2), torch.from_numpy(skin)[:, None],
            torch.from_numpy(label)[:, None])


def held_out_figures(model: TrustUNet, faces: TrustFaces, count: int = 400, seed: int = 99
                     ) -> dict[str, float]:
    """On fixed held-out samples: mean predicted trust (1 - untrusted) inside what is
    covered (label > 0.5) and over uncovered skin, and the per-pixel IoU of the covered
    area (prediction > 0.5)."""
    model.eval()
    inside, outside, inter, union = [], [], 0.0, 0.0
    with torch.no_grad():
        for image, skin, label in fixed_samples(faces, count, seed, NET_SIDE):
            x = torch.from_numpy(image).permute(2, 0, 1)[None]
            s = torch.from_numpy(skin)[None, None]
            pred = model(x, s)[0, 0].numpy()
            covered = label > 0.5
            bare = (skin > 0.5) & (label < 0.05)
            if covered.sum() >= 30:
                inside.append(float(1 - pred[covered].mean()))
            if bare.sum() >= 30:
                outside.append(float(1 - pred[bare].mean()))
            inter += float((covered & (pred > 0.5)).sum())
            union += float((covered | (pred > 0.5)).sum())
    model.train()
    return {"trust_inside_covered": float(np.mean(inside)),
            "trust_on_bare_skin": float(np.mean(outside)), "iou_covered": inter / max(union, 1)}


def train_trust(cfg: TrustConfig, progress: bool = True) -> dict:
    from tqdm import tqdm

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    all_ids = [person_id(p) for p in find_photos(Path(cfg.data))]
    train_ids, held_ids = split_ids(all_ids)
    faces = _faces(Path(cfg.data), train_ids, out / "trust_train_cache.npz")
    if set(faces.ids) & held_ids:
        raise RuntimeError("the training cache holds held-out identities; delete it")
    model = TrustUNet(tuple(cfg.widths))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps,
                                                pct_start=min(0.5, max(0.05, 3 / cfg.steps)))
    rng = np.random.default_rng(cfg.seed)
    producer = ThreadPoolExecutor(1)  # one producer: the batches stay deterministic
    upcoming = producer.submit(_batch, faces, cfg, rng)
    started = time.time()
    loss_avg = 0.0
    history = []
    bar = tqdm(total=cfg.steps, desc="training trust", unit="step", disable=not progress)
    for step in range(1, cfg.steps + 1):
        image, skin, label = upcoming.result()
        upcoming = producer.submit(_batch, faces, cfg, rng) if step < cfg.steps else None
        logits = model.logits(image, skin)
        weight = OFF_SKIN_WEIGHT + SKIN_WEIGHT * skin
        loss = (F.binary_cross_entropy_with_logits(logits, label, reduction="none")
                * weight).sum() / weight.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_avg = 0.98 * loss_avg + 0.02 * loss.item() if step > 1 else loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}")
        if step % 250 == 0:
            history.append({"step": step, "loss": loss_avg,
                            "minutes": (time.time() - started) / 60})
    bar.close()
    producer.shutdown()
    model.eval()
    tmp = out / "trust.tmp"
    torch.save({"model": model.state_dict(), "widths": list(cfg.widths), "step": cfg.steps,
                "config": asdict(cfg)}, tmp)
    os.replace(tmp, out / "trust.pt")
    from .onnx_export import export_trust_onnx

    export_trust_onnx(model, out / "trust_fp32.onnx")
    held = _faces(Path(cfg.data), held_ids, out / "trust_heldout_cache.npz")
    summary = {"config": asdict(cfg), "minutes": (time.time() - started) / 60,
               "parameters": sum(p.numel() for p in model.parameters()),
               "train_images": len(faces.ids), "train_identities": len(set(faces.ids)),
               "held_out_images": len(held.ids), "held_out_identities": sorted(set(held.ids)),
               "held_out": held_out_figures(model, held, cfg.held_out_samples), "history": history}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_trust_model(path: Path) -> TrustUNet:
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    model = TrustUNet(tuple(ckpt.get("widths") or TRUST_WIDTHS))
    model.load_state_dict(ckpt["model"])
    return model.eval()
