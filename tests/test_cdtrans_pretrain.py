"""CDTrans's shipped supervised encoders: the generic shape set, the timm-file export, the DeiT-style loading
through ``model.imagenet_init``, and the pair-noise ablation of the ``pair_noise`` suite."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cdtrans.model import CDTransModel, load_imagenet_init
from cdtrans.pretrain import SHAPES, shape_images
from cdtrans.pretrain import main as pretrain_main
from cdtrans.pseudo_labels import PairSet
from cdtrans.train import repair_wrong_class

TINY = dict(img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0)


def test_shape_images_are_deterministic_standardised_and_cover_every_class():
    x, y = shape_images(600, seed=3)
    x2, y2 = shape_images(600, seed=3)
    assert x.shape == (600, 1, 8, 8) and x.dtype == np.float32
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert set(y.tolist()) == set(range(len(SHAPES)))
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-3
    assert not np.array_equal(shape_images(600, seed=4)[0], x)
    # a horizontal bar carries more ink along a row than along a column, a vertical bar the other way
    raw = {k: x[y == SHAPES.index(k), 0] - x.min() for k in ("hbar", "vbar")}
    row_peak = lambda a: a.sum(2).max(1).mean() / a.sum(1).max(1).mean()  # noqa: E731
    assert row_peak(raw["hbar"]) > 1.3 and row_peak(raw["vbar"]) < 1 / 1.3


def test_quick_pretrain_writes_a_timm_file_that_loads_like_a_deit_release(tmp_path):
    out = tmp_path / "enc"
    assert pretrain_main(["--quick", "--seeds", "0", "--jobs", "1", "--out", str(out),
                          "--run-root", str(tmp_path / "runs")]) == 0
    path = out / "supervised_shapes_seed0.pth"
    sd = torch.load(path, weights_only=True)
    assert "head.weight" in sd and sd["head.weight"].shape == (len(SHAPES), 64)
    assert "blocks.3.attn.qkv.weight" in sd and not any(k.startswith("base.") for k in sd)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["encoders"]["supervised_shapes_seed0.pth"]
    assert entry["bytes"] == path.stat().st_size and len(entry["sha256"]) == 64
    model = CDTransModel(10, "vit_small_patch16_224", 0.0, **TINY)
    report = load_imagenet_init(model, path)
    assert not report.missing  # every backbone key came from the file; only head.* was skipped
    for k in ("pos_embed", "blocks.0.attn.qkv.weight", "patch_embed.proj.weight", "norm.weight"):
        assert torch.equal(model.base.state_dict()[k], sd[k])
    assert model.classifier.weight.abs().max() < 0.01  # the paper's head stays freshly initialised


def test_imagenet_init_names_a_file_without_backbone_keys(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"head.weight": torch.zeros(12, 64)}, bad)
    with pytest.raises(KeyError, match="bad.pth"):
        load_imagenet_init(CDTransModel(10, "vit_small_patch16_224", 0.0, **TINY), bad)


def test_pair_noise_repairs_exactly_the_share_with_wrong_class_sources_and_consistent_labels():
    source_labels = torch.arange(300) % 10
    target_labels = torch.arange(100) % 10
    n = 100  # correct pairs: target i with a source of its class
    pairs = PairSet(torch.arange(n), torch.arange(n), source_labels[:n].clone(), target_labels.clone())
    noisy = repair_wrong_class(pairs, 0.4, source_labels, target_labels, seed=1)
    changed = noisy.source_idx != pairs.source_idx
    assert int(changed.sum()) == 40
    assert torch.equal(noisy.target_idx, pairs.target_idx)  # the targets stay, their partners change
    assert torch.equal(noisy.source_label, source_labels[noisy.source_idx])  # the label is the new source's
    assert torch.equal(noisy.pseudo_label, noisy.source_label)  # label-consistent, as a filtered pair
    assert bool((noisy.source_label[changed] != target_labels[noisy.target_idx[changed]]).all())
    assert noisy.precision(target_labels) == pytest.approx(60.0)
    assert torch.equal(repair_wrong_class(pairs, 0.4, source_labels, target_labels, seed=1).source_idx,
                       noisy.source_idx)  # the same seed re-pairs the same way (both arms get the same pairs)
    assert torch.equal(repair_wrong_class(pairs, 0.0, source_labels, target_labels, seed=1).source_idx,
                       pairs.source_idx)


def test_each_shipped_encoder_matches_its_hash_and_loads_through_imagenet_init(tmp_path):
    """The three committed encoders (issue 17): listed with their sha256, at most 10 MB, and read by Stage A the way
    ``make reproduce`` reads them (seed k -> encoder k mod 3, ``model.imagenet_init``, ``PretrainTask.build_model``):
    every backbone tensor comes from the file, the shape head is skipped, the digit classifier stays fresh."""
    from types import SimpleNamespace

    from cdtrans import reproduce
    from cdtrans.train import CDTransConfig, PretrainTask
    from shared.config import load_config
    from shared.pretrain import MAX_BYTES, check_encoder, file_sha256, read_manifest

    shipped = read_manifest(reproduce.ENCODERS / "manifest.json")["encoders"]
    assert sorted(shipped) == [f"supervised_shapes_seed{k}.pth" for k in range(3)]
    for seed in (0, 1, 2, 4):  # seed 4 starts from encoder 1
        (override,) = reproduce.stage_a_overrides(seed, "shipped")
        path = reproduce.ENCODERS / f"supervised_shapes_seed{seed % 3}.pth"
        assert override == f"model.imagenet_init={path}"
        assert file_sha256(path) == shipped[path.name]["sha256"] and path.stat().st_size <= MAX_BYTES
        cfg = load_config(reproduce.PRETRAIN_CFG, CDTransConfig, [override])
        model = PretrainTask(cfg, domains=SimpleNamespace(num_classes=10)).build_model()
        sd = torch.load(path, weights_only=True)
        base = model.base.state_dict()
        backbone = [k for k in sd if not k.startswith("head.")]
        assert set(backbone) <= set(base) and len(backbone) > 40
        assert all(torch.equal(base[k], sd[k]) for k in backbone)
        assert model.classifier.weight.shape == (10, 64) and model.classifier.weight.abs().max() < 0.01
    # a modified copy is refused by the hash check, naming the file
    copy = tmp_path / "enc"
    copy.mkdir()
    (copy / "manifest.json").write_text((reproduce.ENCODERS / "manifest.json").read_text())
    blob = bytearray((reproduce.ENCODERS / "supervised_shapes_seed0.pth").read_bytes())
    blob[-100] ^= 0xFF
    (copy / "supervised_shapes_seed0.pth").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="supervised_shapes_seed0.pth: sha256"):
        check_encoder(copy, "supervised_shapes_seed0.pth")


def test_make_pretrain_refuses_a_bad_resume_value_and_a_corrupt_run_is_one_line(tmp_path, capsys, monkeypatch):
    """``make pretrain`` (``shared.pretrain.main``) for cdtrans, as for the two DINO papers: ``--resume`` takes
    auto|none only, and a failure inside the paper's pre-training is one line naming the file, not a traceback."""
    from shared import pretrain as shared_pretrain

    monkeypatch.delenv("VISIONREPRO_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        shared_pretrain.main(["cdtrans", "--resume", "yes"])
    assert e.value.code == 2 and "invalid choice: 'yes'" in capsys.readouterr().err
    (tmp_path / "runs" / "seed0").mkdir(parents=True)
    (tmp_path / "runs" / "seed0" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:
        shared_pretrain.main(["cdtrans", "--quick", "--seeds", "0", "--jobs", "1", "--out", str(tmp_path / "enc"),
                              "--run-root", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(err) == 1 and err[0].startswith("make pretrain PAPER=cdtrans: error: ")
    assert str(tmp_path / "runs" / "seed0" / "last.pt") in err[0] and "unexpected" not in err[0]
