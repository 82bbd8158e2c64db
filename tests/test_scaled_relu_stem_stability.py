"""scaled_relu_stem (issue 25): centred vs. raw token similarity on hand-made tokens, the divergence
detector (NaN and blown-up loss), determinism of a run, the per-seed data draw, the stability suite."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from scaled_relu_stem import grids, reproduce
from scaled_relu_stem.diversity import (
    layer_tokens,
    layerwise_token_similarity,
    layerwise_token_similarity_both,
    mean_pairwise_cosine,
    mean_pairwise_cosine_reference,
)
from scaled_relu_stem.model import StemConfig, create_stem_vit
from scaled_relu_stem.stability import LossBlowupError, detect_divergence
from scaled_relu_stem.train import SRStemConfig, SRStemTask
from shared.config import load_config

LN10 = math.log(10)


# ----------------------------------------------------------------------------- centred vs raw similarity
def test_shared_offset_inflates_raw_not_centred():
    # two tokens e1 + 5*e3, e2 + 5*e3: raw cos = 25 / 26; centred they are +-(e1 - e2)/2: cos = -1
    t = torch.tensor([[[1.0, 0.0, 5.0], [0.0, 1.0, 5.0]]])
    assert float(mean_pairwise_cosine(t)) == pytest.approx(25 / 26)
    assert float(mean_pairwise_cosine(t, centred=True)) == pytest.approx(-1.0)


def test_centred_equal_norm_tokens_give_minus_one_over_n_minus_one():
    # e1, e2, e3 (+ any common offset c*1): centred e_i - 1/3, |.|^2 = 2/3, <.,.> = -1/3 -> cos -1/2
    eye = torch.eye(3).unsqueeze(0)
    assert float(mean_pairwise_cosine(eye)) == pytest.approx(0.0, abs=1e-7)
    for c in (0.0, 1.0, 100.0):
        assert float(mean_pairwise_cosine(eye + c, centred=True)) == pytest.approx(-0.5, abs=1e-5)
    # raw similarity of e_i + c*1: (2c + 3c^2... ) = (c^2*3 + 2c) / (1 + 2c + 3c^2) -> 1 as c grows
    c = 10.0
    assert float(mean_pairwise_cosine(eye + c)) == pytest.approx((3 * c * c + 2 * c) / (1 + 2 * c + 3 * c * c))


def test_centred_is_offset_invariant_and_matches_reference():
    torch.manual_seed(0)
    x = torch.randn(4, 9, 6)
    off = torch.randn(4, 1, 6) * 10  # one offset per image, shared by its tokens
    torch.testing.assert_close(mean_pairwise_cosine(x + off, centred=True), mean_pairwise_cosine(x, centred=True),
                               atol=1e-4, rtol=1e-4)
    for centred in (False, True):
        torch.testing.assert_close(mean_pairwise_cosine(x, centred=centred),
                                   mean_pairwise_cosine_reference(x, centred=centred), atol=1e-5, rtol=1e-5)
    # identical tokens: raw 1; centred all-zero tokens count as orthogonal (0)
    same = torch.ones(1, 4, 3)
    assert float(mean_pairwise_cosine(same)) == pytest.approx(1.0)
    assert float(mean_pairwise_cosine(same, centred=True)) == pytest.approx(0.0)


def test_layerwise_both_equals_single_measures():
    torch.manual_seed(0)
    m = create_stem_vit(StemConfig(), img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2,
                        num_classes=3).eval()
    x = torch.randn(3, 3, 32, 32)
    both = layerwise_token_similarity_both(m, x)
    assert both["raw"] == pytest.approx(layerwise_token_similarity(m, x), abs=1e-6)
    assert both["centred"] == pytest.approx(layerwise_token_similarity(m, x, centred=True), abs=1e-6)
    toks = layer_tokens(m, x)
    assert len(toks) == 3 and all(t.shape == (3, 16, 16) for t in toks)
    direct = float(mean_pairwise_cosine(toks[1] - toks[1].mean(1, keepdim=True)).mean())
    assert both["centred"][1] == pytest.approx(direct, abs=1e-6)


# ----------------------------------------------------------------------------- divergence detector
def test_detector_non_finite():
    assert detect_divergence([2.3, 2.2, float("nan"), 2.0], 10) == (True, 2, "non-finite")
    assert detect_divergence([2.3, float("inf")], 10) == (True, 1, "non-finite")
    assert detect_divergence([2.3, 2.2, 2.1], 10) == (False, None, "")


def test_detector_blow_up_and_single_spike():
    # limit 2 ln 10 = 4.605; a run at 2.3 then at 5.0: the 10-step mean passes 4.605 once
    # k of the last 10 are 5.0: (k*5 + (10-k)*2.3)/10 > 4.605 <=> k > 8.54 -> k = 9, i.e. step 20 + 8
    losses = [2.3] * 20 + [5.0] * 10
    assert detect_divergence(losses, 10) == (True, 28, "blow-up")
    # one spike of 20 that recovers at once: window mean (9*2.3 + 20)/10 = 4.07 < 4.605 -> not diverged
    assert detect_divergence([2.3] * 20 + [20.0] + [2.3] * 20, 10) == (False, None, "")
    # the same spike with window 1 counts
    assert detect_divergence([2.3] * 20 + [20.0] + [2.3] * 20, 10, window=1) == (True, 20, "blow-up")
    # factor scales the limit: 3 ln 10 = 6.9 > 5.0
    assert not detect_divergence(losses, 10, factor=3.0)[0]
    with pytest.raises(ValueError):
        detect_divergence(losses, 1)


class _WrongModel(nn.Module):
    """Confidently wrong logits: class 0 gets +30 whatever the label (labels here are 1)."""

    def forward(self, x):
        z = torch.zeros(x.shape[0], 10)
        z[:, 0] = 30.0
        return z


def _small_cfg(*extra):
    return load_config(reproduce.HERE / "configs" / reproduce.METHODS["scaled_relu_stem"], SRStemConfig,
                       ["data.n_train=32", "data.n_test=16", *extra])


def test_task_stops_on_blown_up_loss():
    task = SRStemTask(_small_cfg("stability.blowup_factor=2.0", "stability.window=3"))
    batch = (torch.zeros(4, 1, 16, 16), torch.ones(4, dtype=torch.long))
    task.training_step(_WrongModel(), batch, None)  # loss 30 but fewer than 3 steps: no decision yet
    task.training_step(_WrongModel(), batch, None)
    with pytest.raises(LossBlowupError, match="blew up at step 3"):
        task.training_step(_WrongModel(), batch, None)
    off = SRStemTask(_small_cfg())  # blowup_factor 0: only NaN/inf stop (the engine)
    for _ in range(12):
        off.training_step(_WrongModel(), batch, None)


# ----------------------------------------------------------------------------- determinism, data draw
def test_data_draw_follows_the_seed():
    a, b = SRStemTask(_small_cfg("engine.seed=0")), SRStemTask(_small_cfg("engine.seed=1"))
    assert not torch.equal(a.train_set.tensors[0], b.train_set.tensors[0])
    pinned = SRStemTask(_small_cfg("engine.seed=1", "data.draw_seed=0"))
    assert torch.equal(a.train_set.tensors[0], pinned.train_set.tensors[0])


def test_same_seed_same_numbers(tmp_path):
    ov = reproduce.QUICK
    cfg = reproduce.METHODS["conv_stem_no_relu"]
    r1 = reproduce.run_one("conv_stem_no_relu", cfg, 3, ov, str(tmp_path / "a"))
    r2 = reproduce.run_one("conv_stem_no_relu", cfg, 3, ov, str(tmp_path / "b"))
    assert r1["losses"] == r2["losses"] and r1["top1"] == r2["top1"]
    assert r1["token_similarity_centred"] == r2["token_similarity_centred"]
    assert torch.get_num_threads() >= 1  # run_one restores the caller's thread count


def test_stability_suite_quick(tmp_path):
    assert reproduce.main(["--quick", "--suite", "stability", "--out", str(tmp_path), "--seeds", "0",
                           "--jobs", "1"]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == list(reproduce.STABILITY_METHODS)
    assert {c["method"] for c in s["cells"]} == set(reproduce.STABILITY_METHODS)
    assert all(0 <= c["diverged"] <= c["runs"] == 1 for c in s["cells"])
    assert set(s["claim"]) >= {"fewer_divergent_cells_than_patchify", "higher_grid_mean_top1_than_patchify"}
    assert (tmp_path / "heatmap.png").stat().st_size > 0
    assert {m: p["tuning_trials"] for m, p in s["per_method"].items()} == s["tuning_trials"]["per_row"]


def test_sgd_momentum_overrides_take_hand_computed_heavy_ball_steps(tmp_path):
    """The stability probe's SGD (``grids.SGD_MOMENTUM``): two real engine steps equal the hand-written
    heavy-ball update ``b = 0.9 b + g + wd w; w -= lr b`` (no Nesterov), with weight decay 5e-5 on the decayed
    group and none on 1-D params, pos_embed and cls_token (timm's rule)."""
    import copy

    from shared.engine import Trainer

    cfg = _small_cfg(*grids.SGD_MOMENTUM, "optim.lr=0.1", "sched.warmup_epochs=0")
    task = SRStemTask(cfg)
    trainer = Trainer(task, cfg, tmp_path / "run")
    task.on_train_start(trainer)
    opt = trainer.optimizer
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["momentum"] == 0.9 and not g["nesterov"] and g["dampening"] == 0 for g in opt.param_groups)
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 5e-5]
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd[id(trainer.model.pos_embed)] == wd[id(trainer.model.cls_token)] == 0.0

    ref = copy.deepcopy(trainer.model)
    params = list(trainer.model.parameters())
    decay = [wd[id(p)] for p in params]
    buf = [None] * len(params)
    x, y = torch.randn(8, 1, 16, 16), torch.arange(8) % 10
    trainer.model.train()
    ref.train()
    for _ in range(2):
        lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
        trainer._train_step((x, y))
        ref.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        with torch.no_grad():
            for i, (p, q) in enumerate(zip(ref.parameters(), params)):
                d = p.grad + decay[i] * p
                buf[i] = d if buf[i] is None else 0.9 * buf[i] + d
                p.sub_(lrs[id(q)] * buf[i])
    for (name, a), b in zip(trainer.model.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


# ----------------------------------------------------------------------------- micro digits (vectorised)
def test_place_glyphs_identity_and_shift():
    from scaled_relu_stem.data import place_glyphs

    torch.manual_seed(0)
    g = torch.rand(2, 8, 8)
    one = torch.ones(2)
    # size = canvas, corner (0, 0), no rotation: the identity map
    torch.testing.assert_close(place_glyphs(g, 8, 8 * one, 0 * one, 0 * one, 0 * one), g, atol=1e-6, rtol=0)
    # 8 px at (4, 4) on a 16-px canvas: the glyph lands exactly there, zeros elsewhere
    out = place_glyphs(g, 16, 8 * one, 4 * one, 4 * one, 0 * one)
    torch.testing.assert_close(out[:, 4:12, 4:12], g, atol=1e-6, rtol=0)
    out[:, 4:12, 4:12] = 0
    assert float(out.abs().max()) < 1e-5  # (bilinear weights of ~1e-7 at the border)
    # a quarter turn at the identity placement: out[i, j] = g[7 - j, i], i.e. rot90 with k = -1
    rot = place_glyphs(g, 8, 8 * one, 0 * one, 0 * one, torch.full((2,), math.pi / 2))
    torch.testing.assert_close(rot, torch.rot90(g, -1, dims=(1, 2)), atol=1e-5, rtol=0)


def test_micro_digits_draw():
    from scaled_relu_stem.data import micro_digits

    (tr, te), (tr2, _) = micro_digits(300, 100, seed=0), micro_digits(300, 100, seed=0)
    assert tr.tensors[0].shape == (300, 1, 16, 16) and te.tensors[0].shape == (100, 1, 16, 16)
    assert torch.equal(tr.tensors[0], tr2.tensors[0])  # same seed, same draw
    assert not torch.equal(tr.tensors[0], micro_digits(300, 100, seed=1)[0].tensors[0])
    x = tr.tensors[0]
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3  # normalised by the train split
    assert set(tr.tensors[1].tolist()) == set(range(10))
    clean, _ = micro_digits(50, 10, seed=0, clutter=0, noise=0.0)  # a digit only: raw range [0, 1]
    raw = clean.tensors[0] * 1  # normalised; its minimum is the empty background
    assert float((raw == raw.min()).float().mean()) > 0.3  # most pixels are background
    with pytest.raises(ValueError, match="digit_size"):
        micro_digits(10, 10, seed=0, digit_size=(4, 20))
