"""BP-Triplet model shapes and checkpoint layout, pseudo-labels, A-distance, configs, and a smoke run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bp_triplet.evaluate import proxy_a_distance
from bp_triplet.model import DTN, BPTripletNet, EmbeddedDigitNet, LeNet, resnet_backbone
from bp_triplet.pseudo_labels import PseudoLabelState, pseudo_label_stats, select_confident
from bp_triplet.train import BPTripletConfig
from shared.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "bp_triplet" / "configs").glob("*.yaml"))


def test_net_outputs_and_state_dict_layout():
    net = BPTripletNet(EmbeddedDigitNet(), num_classes=10, bottleneck_dim=64, disc_hidden=128)
    out = net(torch.randn(5, 1, 8, 8), grl_coeff=0.5)
    assert out["logits"].shape == (5, 10) and out["features"].shape == (5, 64)
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(5), atol=1e-5)
    assert out["domain"].shape == (5,) and bool(((out["domain"] > 0) & (out["domain"] < 1)).all())
    assert "domain" not in net(torch.randn(2, 1, 8, 8))
    keys = set(net.state_dict())
    for k in ("bottleneck.weight", "classifier.bias", "discriminator.ad_layer1.weight",
              "discriminator.ad_layer3.bias"):
        assert k in keys


def test_cdan_conditioning_shapes():
    small = BPTripletNet(EmbeddedDigitNet(), 10, bottleneck_dim=16, adv_variant="cdan")  # 160 <= 4096
    assert small.multilinear is None and small.discriminator.ad_layer1.in_features == 160
    big = BPTripletNet(EmbeddedDigitNet(), 10, bottleneck_dim=512, adv_variant="cdan")  # random map
    assert big.discriminator.ad_layer1.in_features == 1024
    assert big(torch.randn(3, 1, 8, 8), grl_coeff=1.0)["domain"].shape == (3,)


def test_digit_backbones_shapes():
    assert LeNet()(torch.randn(2, 1, 28, 28)).shape == (2, 500)
    assert DTN()(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_resnet_loads_torchvision_state_dict(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")  # torchvision layout, fc included
    net = resnet_backbone(18, tmp_path / "resnet18.pth")
    ref.fc = torch.nn.Identity()
    ref.eval(), net.eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(net(x), ref(x)) and net.out_features == 512
    model = BPTripletNet(net, num_classes=31, bottleneck_dim=256)
    assert "backbone.layer4.1.conv2.weight" in model.state_dict() and "backbone.fc.weight" not in model.state_dict()


def test_select_confident_and_stats():
    probs = torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.02, 0.98], [0.99, 0.01], [0.97, 0.03]])
    labels, conf = select_confident(probs, 0.9)
    assert labels.tolist() == [0, -1, 1, 0, 0]
    capped, _ = select_confident(probs, 0.9, max_per_class=2)
    assert capped.tolist() == [-1, -1, 1, 0, 0]  # keeps the two most confident of class 0
    stats = pseudo_label_stats(labels, np.array([0, 0, 1, 1, 0]))
    assert stats["pl_coverage"] == pytest.approx(80.0) and stats["pl_precision"] == pytest.approx(75.0)
    assert np.isnan(pseudo_label_stats(torch.full((3,), -1), np.zeros(3))["pl_precision"])


def test_pseudo_state_roundtrip():
    s = PseudoLabelState(4)
    s.update(torch.tensor([[0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.0, 1.0]]), 0.9, 0, np.array([0, 1, 1, 0]), 7)
    t = PseudoLabelState(4)
    t.load_state_dict(s.state_dict())
    assert torch.equal(t.labels, s.labels) and torch.allclose(t.confidence, s.confidence)
    assert t.history == s.history and t.history[0]["step"] == 7.0


def test_proxy_a_distance_extremes():
    rng = np.random.default_rng(0)
    same = proxy_a_distance(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)))
    apart = proxy_a_distance(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + 5.0)
    assert abs(same) < 0.5 and apart > 1.9


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_load(path):
    cfg = load_config(path, BPTripletConfig)
    assert cfg.triplet.kind == "bp" and cfg.adv.enabled


@pytest.mark.slow
def test_reproduce_quick_smoke(tmp_path):
    from bp_triplet import reproduce

    rc = reproduce.main(["--quick", "--out", str(tmp_path), "--seeds", "0",
                         "--methods", "source_only,bp_triplet"])
    assert rc == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == ["source_only", "bp_triplet"]
    assert all(0.0 <= r["mean"] <= 100.0 for r in s["rows"])
    assert set(s["a_distance"]) == {"source_only", "bp_triplet"}
    assert set(s["tuning_trials"]) == {"source_only", "bp_triplet"}  # read from the committed search logs
    assert "1500 of the 1,797" in s["protocol"]  # the committed config's per-seed target draw
    hist = s["pseudo_labels"]["bp_triplet"][0]
    assert hist and all(0.0 <= h["pl_coverage"] <= 100.0 for h in hist)
    assert (tmp_path / "summary.png").is_file()


@pytest.mark.slow
def test_resume_keeps_pseudo_labels(tmp_path):
    from bp_triplet.reproduce import CONFIG as cfg
    from bp_triplet.train import main
    common = ["--config", str(cfg), "--run-dir", str(tmp_path / "run"), "engine.batch_size=16",
              "data.pairs_per_epoch=64", "data.n_source=300", "pseudo.warmup_steps=2", "pseudo.every_steps=4",
              "pseudo.threshold=0.0", "adv.max_iters=8"]
    main(common + ["engine.epochs=1"])
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["task"]["pseudo"]["history"].shape[0] == 1  # refreshed at step 2
    main(common + ["engine.epochs=2", "--resume", "auto"])
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    steps = state["task"]["pseudo"]["history"][:, 0].tolist()
    assert steps == [2.0, 6.0] and state["global_step"] == 8


@pytest.mark.slow
def test_pk_sampling_trains(tmp_path):
    from bp_triplet.reproduce import CONFIG
    from bp_triplet.train import main

    main(["--config", str(CONFIG), "--run-dir", str(tmp_path / "pk"), "engine.epochs=1", "engine.batch_size=4",
          "data.sampling=pk", "data.num_instances=4", "data.pairs_per_epoch=48", "data.n_source=300",
          "pseudo.warmup_steps=1", "pseudo.every_steps=1", "pseudo.threshold=0.0"])
    state = torch.load(tmp_path / "pk" / "last.pt", weights_only=True)
    assert state["global_step"] == 3 and state["task"]["pseudo"]["history"].shape[0] == 3


def test_no_discriminator_without_adversarial_loss():
    net = BPTripletNet(EmbeddedDigitNet(), 10, bottleneck_dim=8, with_discriminator=False)
    assert not any(k.startswith("discriminator.") for k in net.state_dict())
    assert "domain" not in net(torch.randn(2, 1, 8, 8), grl_coeff=1.0)


def test_evaluate_cli_wrong_checkpoint_is_one_line(tmp_path, capsys):
    """A checkpoint of another model ends as one line naming the file, not a load_state_dict traceback."""
    from bp_triplet import evaluate

    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    cfg = (Path(__file__).resolve().parents[1] / "bp_triplet/configs"
           / "bp-triplet_embeddednet_1xb32-25e_digits-embedded.yaml")
    assert evaluate.main(["--config", str(cfg), "--checkpoint", str(tmp_path / "other.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other.pt" in err[0] and "missing" in err[0]
