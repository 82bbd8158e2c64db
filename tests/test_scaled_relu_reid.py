"""scaled_relu_stem's re-ID rows run through transreid_ssl: every config loads with transreid_ssl's loader, its
``ics_bn`` stem is this folder's scaled-ReLU stem (same outputs after the key rename), the launch script."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from scaled_relu_stem.model import StemConfig, create_stem_vit
from scaled_relu_stem.reid import main as convert_main
from scaled_relu_stem.reid import to_transreid_ssl
from shared.config import load_config
from shared.errors import UserError
from transreid_ssl.train import TransReIDSSLConfig

ROOT = Path(__file__).resolve().parents[1]
REID = ROOT / "scaled_relu_stem" / "configs" / "reid"
SCRIPT = ROOT / "scaled_relu_stem" / "scripts" / "reid_dino-s.sh"


@pytest.mark.parametrize("dataset", ["market1501", "msmt17"])
def test_reid_configs_load_through_transreid_ssl_and_differ_only_in_the_stem(dataset):
    plain = load_config(REID / f"reid-dino_vit-small_1xb64-120e_{dataset}.yaml", TransReIDSSLConfig)
    stem = load_config(REID / f"reid-dino_vit-small-srstem_1xb64-120e_{dataset}.yaml", TransReIDSSLConfig)
    official = load_config(ROOT / "transreid_ssl" / "configs" / f"transreid_vit-small_1xb64-120e_{dataset}.yaml",
                           TransReIDSSLConfig)
    assert (plain.stage, plain.data.name, plain.model.stem, plain.model.embed_dim, plain.model.depth) == \
        ("reid", dataset, "patchify", 384, 12)
    assert (stem.model.stem, stem.model.stem_hidden, stem.model.stem_kernel) == ("ics_bn", 64, 7)
    stem.model.stem = "patchify"
    assert stem == plain  # nothing but the stem differs between the two rows
    plain.model.pretrain_hw_ratio = official.model.pretrain_hw_ratio
    assert plain == official  # TransReID-SSL's recipe, untouched but the DINO grid


def test_dino_pretraining_config_with_the_stem_loads():
    cfg = load_config(REID / "dino_vit-small-srstem_8xb64-100e_luperson.yaml", TransReIDSSLConfig)
    assert (cfg.stage, cfg.model.stem, cfg.data.name) == ("dino", "ics_bn", "luperson")
    assert sorted(p.name for p in REID.glob("*.yaml")) == sorted(
        [f"reid-dino_vit-small{s}_1xb64-120e_{d}.yaml" for s in ("", "-srstem") for d in ("market1501", "msmt17")]
        + ["dino_vit-small-srstem_8xb64-100e_luperson.yaml"])


def test_ics_bn_is_the_scaled_relu_stem(tmp_path):
    """Weights of this folder's ViT, renamed, load strictly into transreid_ssl's ``ics_bn`` ReIDViT and give the
    same CLS feature (train-mode BN too), so the re-ID srstem rows fine-tune exactly this folder's stem."""
    from transreid_ssl.checkpoints import load_backbone
    from transreid_ssl.model import ReIDViT

    torch.manual_seed(0)
    ours = create_stem_vit(StemConfig(layout="volo", norm="bn", act="relu", hidden_dim=64), img_size=(64, 32),
                           patch_size=16, embed_dim=32, depth=1, num_heads=2, num_classes=5)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for m in ours.patch_embed.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    torch.save({"model": ours.state_dict()}, tmp_path / "ours.pth")
    assert convert_main([str(tmp_path / "ours.pth"), str(tmp_path / "reid.pth")]) == 0
    theirs = ReIDViT(img_size=(64, 32), patch_size=16, embed_dim=32, depth=1, num_heads=2, stem="ics_bn",
                     stem_hidden=64, stem_kernel=7)
    load_backbone(theirs, tmp_path / "reid.pth")  # strict (head.* is skipped by transreid_ssl)
    x = torch.randn(3, 3, 64, 32)
    for train in (False, True):
        ours.train(train), theirs.train(train)
        ours.blocks[0].drop_path1 = theirs.blocks[0].drop_path1 = torch.nn.Identity()
        ours.blocks[0].drop_path2 = theirs.blocks[0].drop_path2 = torch.nn.Identity()
        torch.testing.assert_close(theirs(x), ours.forward_features(x)[:, 0], atol=1e-5, rtol=1e-5)


def test_converter_refuses_a_stem_that_is_not_the_scaled_relu_one():
    for stem in (StemConfig(layout="volo", norm="none"), StemConfig(layout="xiao"), StemConfig(layout="patchify")):
        m = create_stem_vit(stem, img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, num_classes=0)
        with pytest.raises(UserError, match="scaled|not a conv-stem"):
            to_transreid_ssl(m.state_dict(), "x.pth")


def test_launch_script_help_and_missing_weights_are_one_line(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "WEIGHTS_STEM" in out.stdout and "transreid_ssl.train" in out.stdout
    env = {"PATH": "/usr/bin:/bin", "DATA_ROOT": str(tmp_path)}
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "WEIGHTS=" in out.stderr
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env={**env, "WEIGHTS": "/w/a.pth"})
    assert out.returncode == 2 and "WEIGHTS_STEM=" in out.stderr
