"""Data checks (ImageNet tree, repeated augmentation), attention statistics, config loading, smoke run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from knn_attention import reproduce
from knn_attention.data import epoch_chunk, imagenet_datasets, verify_imagenet
from knn_attention.evaluate import attention_stats, top1
from knn_attention.train import KNNConfig
from shared.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "knn_attention" / "configs"


def _imagenet_tree(root: Path, classes=("n01440764", "n01443537"), val_per_class=2) -> None:
    for split, n in (("train", 3), ("val", val_per_class)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40, 30), (i * 40, 10, 200)).save(d / f"{c}_{i}.JPEG")


def test_verify_imagenet_ok_and_reports_problems(tmp_path):
    _imagenet_tree(tmp_path / "ok")
    assert verify_imagenet(tmp_path / "ok", n_classes=2, val_per_class=2) == []
    bad = tmp_path / "bad"
    _imagenet_tree(bad)
    (bad / "val" / "n01440764" / "n01440764_0.JPEG").unlink()
    (bad / "val" / "n01443537").rename(bad / "val" / "n99999999")
    problems = verify_imagenet(bad, n_classes=2, val_per_class=2)
    assert any("expected 2 images, found 1" in p for p in problems)
    assert any("train and val class folders differ" in p for p in problems)
    assert any("missing" in p for p in verify_imagenet(tmp_path / "nothing", n_classes=2))
    assert any("expected 1000 class folders, found 2" in p for p in verify_imagenet(tmp_path / "ok"))


def test_imagenet_loader_gives_deit_sized_tensors(tmp_path):
    _imagenet_tree(tmp_path)
    train, val = imagenet_datasets(tmp_path, img_size=32)
    x, y = train[0]
    assert x.shape == (3, 32, 32) and y == 0
    xv, yv = val[3]
    assert xv.shape == (3, 32, 32) and yv == 1
    with pytest.raises(FileNotFoundError, match="ImageNet split not found"):
        imagenet_datasets(tmp_path / "train")


def test_repeated_augmentation_sends_each_chosen_image_to_every_rank(tmp_path):
    from knn_attention.train import KNNConfig, KNNTask

    _imagenet_tree(tmp_path / "in1k")
    cfg = KNNConfig()
    cfg.data.root = str(tmp_path / "in1k")
    task = KNNTask(cfg)
    ds = task.train_dataset(0)
    per_rank = [list(task.train_sampler(ds, 0, 3, r)) for r in range(3)]
    # DeiT's RASampler: with 3 repeats over 3 ranks, every rank sees the same images (different augmentations).
    assert per_rank[0] == per_rank[1] == per_rank[2] and len(set(per_rank[0])) == len(per_rank[0])
    single = list(task.train_sampler(ds, 0, 1, 0))  # one rank: the 3 copies come one after another
    assert len(single) == len(ds) and all(single[i] == single[i + 1] == single[i + 2] for i in range(0, 6, 3))
    cfg.data.repeated_aug = 1
    assert KNNTask(cfg).train_sampler(ds, 0, 1, 0) is None


def test_epoch_chunks_walk_the_data_without_overlap():
    ds = TensorDataset(torch.arange(10))
    seen = [i for e in range(5) for i in epoch_chunk(ds, e, 4, seed=3).indices]
    assert sorted(seen[:10]) == list(range(10))  # first 10 draws: one full pass
    assert epoch_chunk(ds, 2, 0, 0) is ds


def test_top1_and_cls_share_on_a_hand_built_case():
    assert top1(torch.tensor([[0.1, 0.9], [2.0, 1.0], [0.0, 1.0]]), torch.tensor([1, 0, 0])) == pytest.approx(200 / 3)
    torch.manual_seed(0)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=8, patch_size=4, in_chans=1,
                          embed_dim=12, depth=2, num_heads=2, num_classes=3).eval()
    for blk in m.blocks:  # zero q/k weights: uniform attention, so the CLS share = digit patch fraction
        blk.attn.qkv.weight.data[:24] = 0
        blk.attn.qkv.bias.data[:24] = 0
    digit = torch.tensor([[1.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 1.0]])  # 4 patches per image
    s = attention_stats(m, torch.randn(2, 1, 8, 8), digit)
    assert s["cls_digit_share"] == pytest.approx([0.375, 0.375])  # (2/4 + 1/4) / 2
    assert s["entropy"][0] == pytest.approx(torch.log(torch.tensor(5.0)).item(), rel=1e-5)


def test_configs_load_and_unknown_keys_are_named():
    for f in sorted(CONFIGS.glob("*.yaml")):
        if not f.name.startswith("_"):
            cfg = load_config(f, KNNConfig)
            assert cfg.model.attention in ("dense", "knn")
    cfg = load_config(CONFIGS / "knn_deit-small_4xb256-300e_in1k.yaml", KNNConfig)
    assert (cfg.model.topk, cfg.engine.batch_size, cfg.optim.lr, cfg.engine.epochs) == (100, 1024, 1e-3, 300)
    with pytest.raises(ConfigError, match="topkk"):
        load_config(CONFIGS / "knn_deit-small_4xb256-300e_in1k.yaml", KNNConfig, ["model.topkk=3"])


@pytest.mark.slow
def test_reproduce_quick_smoke(tmp_path):
    assert reproduce.main(["--quick", "--out", str(tmp_path), "--seeds", "0",
                           "--methods", "dense,knn,knn_k0.25", "--jobs", "1"]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == ["dense", "knn", "knn_k0.25"]
    assert all(0 <= r["mean"] <= 100 for r in s["rows"])
    assert set(s["per_method"]["knn"]) >= {"auc", "cls_digit_share", "s_per_step", "key_distance"}
    assert set(s["claims"]) == {"final_top1", "curve_area"}
    assert set(s["tuning_trials"]) == {"dense", "knn", "knn_k0.25"}  # tuning effort recorded per row
    for i, m in enumerate(("dense", "knn", "knn_k0.25")):  # the convergence area: mean top-1 over evaluations
        curve = s["curves"][m][0]
        assert len(curve) == len(s["steps"]) >= 2
        assert s["per_method"][m]["auc"][0] == pytest.approx(sum(curve) / len(curve))
        assert s["rows"][i]["per_seed"][0] == pytest.approx(curve[-1], abs=1e-4)  # scored at the last step
    assert (tmp_path / "summary.png").is_file() and (tmp_path / "summary.md").is_file()
    assert "Tuning trials per row" in (tmp_path / "summary.md").read_text()
    # k-NN attention is sparser than dense: lower mean attention entropy, and sparser still at smaller k.
    assert s["per_method"]["knn_k0.25"]["attn_entropy"][0] < s["per_method"]["knn"]["attn_entropy"][0]
    assert s["per_method"]["knn"]["attn_entropy"][0] < s["per_method"]["dense"]["attn_entropy"][0]


@pytest.mark.slow
def test_reproduce_same_seeds_same_numbers_and_suite_folder(tmp_path):
    """Issue 22: two runs with the same seeds give identical numbers (single-thread runs, in parallel
    processes or not); ``--suite k_sweep`` runs its own rows."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert reproduce.main(["--quick", "--out", str(a), "--seeds", "0,1", "--jobs", "2"]) == 0
    assert reproduce.main(["--quick", "--out", str(b), "--seeds", "0,1", "--jobs", "1"]) == 0
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert [r["per_seed"] for r in sa["rows"]] == [r["per_seed"] for r in sb["rows"]]
    assert sa["curves"] == sb["curves"]
    for m in ("dense", "knn"):
        for k in ("auc", "attn_entropy", "cls_digit_share"):
            assert sa["per_method"][m][k] == sb["per_method"][m][k]
    c = tmp_path / "c"
    assert reproduce.main(["--quick", "--out", str(c), "--seeds", "0", "--suite", "k_sweep", "--jobs", "1"]) == 0
    sc = json.loads((c / "summary.json").read_text())
    assert [r["method"] for r in sc["rows"]] == ["knn_k0.25", "knn_k0.5", "knn_k0.75"] and sc["suite"] == "k_sweep"


def test_k_of_each_row_is_fixed_by_its_config():
    """k = floor(N / 2) for ``knn`` and int(r * N) for the sweep, N = 64 patches + CLS = 65 keys."""
    from knn_attention.model import resolve_topk

    ks = {}
    for m, path in reproduce.CONFIGS.items():
        cfg = load_config(path, KNNConfig)
        n = (cfg.model.img_size // cfg.model.patch_size) ** 2 + 1
        assert n == 65 and cfg.data.dataset == "distractor_digits"
        if cfg.model.attention == "knn":
            ks[m] = resolve_topk(cfg.model.topk if cfg.model.topk > 0 else float(cfg.model.topk_ratio), n)
    assert ks == {"knn": 32, "knn_k0.25": 16, "knn_k0.5": 32, "knn_k0.75": 48}


def test_every_row_records_its_tuning_effort():
    assert set(reproduce.TUNING_TRIALS) == set(reproduce.CONFIGS)
    for t in reproduce.TUNING_TRIALS.values():
        assert t["settings"] >= 1 and t["validation_runs"] >= 0 and t["how"]


def test_claim_needs_margin_and_pooled_std():
    c = reproduce.claim([50.0, 52.0, 54.0], [47.0, 48.0, 49.0], 2.0)
    assert c["diff"] == pytest.approx(4.0) and c["pooled_std"] == pytest.approx(2.5 ** 0.5, abs=1e-3)  # (4 + 1) / 2
    assert c["holds"]
    assert not reproduce.claim([50.0, 50.5, 51.0], [49.0, 49.0, 49.0], 2.0)["holds"]  # +1.5 > std, < 2 points
    assert not reproduce.claim([50.0, 60.0, 40.0], [45.0, 46.0, 47.0], 2.0)["holds"]  # +3 within the pooled std


def test_distractor_digits_follow_the_seed_and_leave_most_patches_irrelevant():
    from knn_attention.data import distractor_digits

    a = distractor_digits(n_train=40, n_test=10, seed=3)
    b = distractor_digits(n_train=40, n_test=10, seed=3)
    c = distractor_digits(n_train=40, n_test=10, seed=4)
    assert np.array_equal(a["train_x"], b["train_x"]) and not np.array_equal(a["train_x"], c["train_x"])
    assert a["train_x"].shape == (40, 1, 32, 32) and a["test_x"].shape == (10, 1, 32, 32)
    m = a["train_mask"].reshape(40, 8, 4, 8, 4).any(axis=(2, 4)).reshape(40, 64)
    assert 1 <= m.sum(1).min() and m.sum(1).max() <= 25 and m.sum(1).mean() < 16  # the digit: a minority of 64


def test_imagenet_deit_recipe_runs_a_few_engine_steps(tmp_path):
    from knn_attention import train

    _imagenet_tree(tmp_path / "in1k")
    cfg = CONFIGS / "knn_deit-tiny_4xb256-300e_in1k.yaml"
    metrics = train.main(["--config", str(cfg), "--run-dir", str(tmp_path / "run"), f"data.root={tmp_path / 'in1k'}",
                          "engine.epochs=1", "engine.batch_size=4", "engine.num_workers=0", "engine.amp=off",
                          "model.img_size=32", "data.img_size=32", "model.topk=3", "model.num_classes=2",
                          "model.depth=2", "logger.progress=false"])
    assert 0.0 <= metrics["top1"] <= 100.0 and metrics["train/loss"] > 0
    saved = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert "blocks.0.attn.qkv.weight" in saved["model"]  # DeiT key layout
    # the evaluate convention: --config, --checkpoint, --out (strict JSON), the same numbers as the run
    from knn_attention import evaluate

    over = [f"data.root={tmp_path / 'in1k'}", "engine.batch_size=4", "engine.num_workers=0", "engine.amp=off",
            "model.img_size=32", "data.img_size=32", "model.topk=3", "model.num_classes=2", "model.depth=2"]
    m = evaluate.main(["--config", str(cfg), "--checkpoint", str(tmp_path / "run" / "last.pt"),
                       "--out", str(tmp_path / "eval.json"), *over])
    assert m["top1"] == pytest.approx(metrics["top1"])
    assert json.loads((tmp_path / "eval.json").read_text())["top1"] == pytest.approx(metrics["top1"])


def test_committed_miniature_digit_is_still_a_minority_of_the_tokens():
    """The frozen config (20 px digit): the digit's patches stay fewer than half of the 64 on average, and
    the config's digit size and distractor gain reach the generator (a 20 px digit covers more than a 14 px)."""
    from knn_attention.data import distractor_digits

    cfg = load_config(reproduce.CONFIGS["knn"], KNNConfig)
    d = cfg.data
    kw = dict(n_train=60, n_test=4, seed=5, distractors=d.clutter, noise=d.noise, frag_gain=tuple(d.distractor_gain))
    big = distractor_digits(digit_px=d.digit_px, **kw)["train_mask"].reshape(60, 8, 4, 8, 4).any(axis=(2, 4))
    small = distractor_digits(digit_px=14, **kw)["train_mask"].reshape(60, 8, 4, 8, 4).any(axis=(2, 4))
    per_image = big.reshape(60, 64).sum(1)
    assert d.digit_px == 20 and per_image.mean() < 32 and per_image.mean() > small.reshape(60, 64).sum(1).mean()
