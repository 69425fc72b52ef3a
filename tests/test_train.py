"""`facefuse train`: a tiny real run on London photos (64 px, a few steps) that validates on
held-out identities, checkpoints, resumes exactly, and exports an ONNX file the product loads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facefuse.cli import main

torch = pytest.importorskip("torch", reason="training needs the train extra "
                                            "(pip install -e '.[train]')")


@pytest.fixture(scope="module")
def photos(london, tmp_path_factory):
    """Eight photos of the first four people with both: the first is held out (every 7th id
    in sorted order is), three train."""
    folder = tmp_path_factory.mktemp("train-photos")
    people = [p.stem.split("_")[0] for p in sorted((london / "neutral").glob("*_03.jpg"))
              if (london / "smiling" / f"{p.stem.split('_')[0]}_08.jpg").exists()][:4]
    for person in people:
        for sub, tag in (("neutral", "03"), ("smiling", "08")):
            (folder / f"{person}_{tag}.jpg").symlink_to(london / sub / f"{person}_{tag}.jpg")
    return folder


def _train(photos, out, *extra: str) -> int:
    return main(["train", "--data", str(photos), "--out", str(out), "--steps", "4",
                 "--size", "64", "--batch", "2", "--val-every", "2", "--quiet", *extra])


# The shipped recipe's last phase: both regimes (harmonize and the pipeline), template
# shadows to carry over and source shadows to lift, plus the seam weight.
RECIPE = ("--prematch", "runtime", "--template-dropout", "0.5", "--shadows", "0.5",
          "--edge-weight", "2")


def test_train_checkpoints_resumes_exactly_and_exports(photos, tmp_path):
    from facefuse.stages.refine import Refiner

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train(photos, straight, *RECIPE) == 0
    # The same run interrupted after step 2 and started again: it must end identical.
    assert _train(photos, resumed, *RECIPE,
                  "--stop-after", "2") == 0
    assert torch.load(resumed / "checkpoint.pt", weights_only=False)["step"] == 2
    assert _train(photos, resumed, *RECIPE) == 0

    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(resumed / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"{name} differs after resuming"

    metrics = json.loads((straight / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [2, 4]
    assert len(metrics["val_identity_list"]) == 1 and metrics["train_identities"] == 3
    assert metrics["val_images"] == 2 and metrics["train_images"] == 6
    assert metrics["parameters"] <= 1_000_000 and metrics["gmac_512"] <= 3.0
    for h in metrics["history"]:
        assert np.isfinite(h["psnr_refined"]) and h["psnr_composite"] > 15

    refiner = Refiner(straight / "unet_fp32.onnx")
    crop = np.full((64, 64, 3), 128.0, np.float32)
    assert refiner(crop, np.ones((64, 64), np.float32)).shape == crop.shape


def test_train_refuses_what_it_cannot_do(photos, tmp_path, capsys):
    with pytest.raises(SystemExit):  # argparse: not one of lab, texture, mixed
        main(["train", "--data", str(photos), "--out", str(tmp_path), "--prematch", "poisson"])
    if not torch.cuda.is_available():
        code = main(["train", "--data", str(photos), "--out", str(tmp_path / "x"),
                     "--device", "cuda"])
        assert code != 0 and "CUDA" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["train", "--data", str(empty), "--out", str(tmp_path / "y"), "--quiet"])
    assert code != 0 and "no photos" in capsys.readouterr().err


def test_train_trust_uses_training_people_only_and_exports(photos, tmp_path):
    """`facefuse train-trust`: a tiny run aligns only the training identities, is
    reproducible (same seed, same weights), scores the held-out one and writes an ONNX file
    the occlusion stage runs."""
    from facefuse.nn.trust_data import load_trust_faces
    from facefuse.stages import occlusion

    def run(out):
        return main(["train-trust", "--data", str(photos), "--out", str(out), "--steps", "3",
                     "--batch", "2", "--held-out-samples", "4", "--quiet"])

    assert run(tmp_path / "a") == 0 and run(tmp_path / "b") == 0
    cached = load_trust_faces(tmp_path / "a" / "trust_train_cache.npz")
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    held = set(metrics["held_out_identities"])
    assert held and not held & set(cached.ids)
    assert 0 <= metrics["held_out"]["trust_on_bare_skin"] <= 1
    a = torch.load(tmp_path / "a" / "trust.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "trust.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    crop = cached.crops[0]
    skin = cached.skins[0].astype(np.float32) / 255
    trust = occlusion.learned_trust(crop, skin, tmp_path / "a" / "trust_fp32.onnx")
    assert trust.shape == skin.shape and 0 <= trust.min() <= trust.max() <= 1
