"""SAM (Foret et al.) for scaled_relu_stem: one step on a quadratic equals the hand-computed perturbed-gradient
step; ASAM; the base step sees the restored weights; BN statistics are not counted twice; engine wiring."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from scaled_relu_stem.sam import SAM, frozen_bn_stats

# L(w) = 1/2 w^T A w - b^T w, gradient A w - b
A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
B = torch.tensor([1.0, -1.0], dtype=torch.float64)
W0 = torch.tensor([0.5, -2.0], dtype=torch.float64)


def _loss(w: torch.Tensor) -> torch.Tensor:
    return 0.5 * w @ A @ w - B @ w


def _sam_step(w: nn.Parameter, opt: SAM) -> None:
    opt.zero_grad()
    _loss(w).backward()
    opt.step(lambda: _loss(w).backward())


def test_sam_step_on_a_quadratic_equals_the_hand_computed_step():
    lr, rho, wd = 0.1, 0.3, 0.01
    w = nn.Parameter(W0.clone())
    _sam_step(w, SAM(torch.optim.SGD([w], lr=lr, weight_decay=wd), rho=rho))
    g = A @ W0 - B                                   # (-1.5, -2.5)
    e = rho * g / (g.norm() + 1e-12)                 # the 1e-12 guard of davda54/sam, as in SAM.first_step
    g_sam = A @ (W0 + e) - B
    expected = W0 - lr * (g_sam + wd * W0)           # decay on w, not on w + e: w was restored first
    torch.testing.assert_close(w.detach(), expected, atol=1e-14, rtol=0)
    # and the numbers themselves: g = (3*0.5 - 2 - 1, 0.5 - 4 + 1) = (-1.5, -2.5), ||g|| = sqrt(8.5)
    n = 8.5 ** 0.5
    e_hand = torch.tensor([-0.45 / n, -0.75 / n], dtype=torch.float64)
    g_hand = torch.tensor([3 * (0.5 + e_hand[0]) + (-2 + e_hand[1]) - 1,
                           (0.5 + e_hand[0]) + 2 * (-2 + e_hand[1]) + 1], dtype=torch.float64)
    torch.testing.assert_close(expected, W0 - 0.1 * (g_hand + 0.01 * W0), atol=1e-12, rtol=0)
    assert not torch.allclose(w.detach(), W0 - lr * (g + wd * W0))  # not the plain SGD step


def test_adaptive_sam_perturbs_by_w_squared_times_g_over_the_norm_of_w_times_g():
    lr, rho = 0.1, 0.5
    w = nn.Parameter(W0.clone())
    _sam_step(w, SAM(torch.optim.SGD([w], lr=lr), rho=rho, adaptive=True))
    g = A @ W0 - B
    e = rho * W0 ** 2 * g / ((W0.abs() * g).norm() + 1e-12)
    torch.testing.assert_close(w.detach(), W0 - lr * (A @ (W0 + e) - B), atol=1e-14, rtol=0)


def test_adamw_base_gets_the_sam_gradient_at_the_restored_weights():
    w = nn.Parameter(W0.clone())
    sam = SAM(torch.optim.AdamW([w], lr=0.05, weight_decay=0.1), rho=0.2)
    ref = nn.Parameter(W0.clone())
    adamw = torch.optim.AdamW([ref], lr=0.05, weight_decay=0.1)
    for _ in range(3):
        g = A @ ref.detach() - B
        ref.grad = A @ (ref.detach() + 0.2 * g / (g.norm() + 1e-12)) - B
        adamw.step()
        _sam_step(w, sam)
    torch.testing.assert_close(w.detach(), ref.detach(), atol=1e-14, rtol=0)
    assert sam.state_dict()["state"][0]["step"] == 3  # the base's state; param_groups are the base's
    assert sam.param_groups is sam.base.param_groups and "rho" not in sam.base.param_groups[0]


def test_registered_closure_and_errors():
    w = nn.Parameter(W0.clone())
    opt = SAM(torch.optim.SGD([w], lr=0.1), rho=0.1)
    _loss(w).backward()
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()
    torch.testing.assert_close(w.detach(), W0)  # nothing moved
    opt.set_closure(lambda: _loss(w).backward())
    opt.step()
    assert opt._closure is None and not torch.equal(w.detach(), W0)

    def failing():
        raise FloatingPointError("boom")

    before = w.detach().clone()
    _loss(w).backward()
    with pytest.raises(FloatingPointError):
        opt.step(failing)
    assert torch.equal(w.detach(), before)  # restored, not left at w + e
    with pytest.raises(ValueError, match="rho"):
        SAM(torch.optim.SGD([w], lr=0.1), rho=0.0)


def test_frozen_bn_stats_keeps_running_statistics():
    bn = nn.BatchNorm2d(3).train()
    bn(torch.randn(4, 3, 2, 2))
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    with frozen_bn_stats(nn.Sequential(bn)):
        bn(torch.randn(4, 3, 2, 2) + 5)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var) and bn.momentum == 0.1


# ----------------------------------------------------------------------------- wiring into the engine
def _tiny_cfg(tmp_path, *overrides):
    from pathlib import Path

    from scaled_relu_stem.train import SRStemConfig
    from shared.config import load_config

    cfg = Path(__file__).resolve().parents[1] / "scaled_relu_stem" / "configs" / \
        "scaled_relu_stem_vit-tiny_1xb64_cluttered-digits.yaml"
    over = ["data.n_train=16", "data.n_test=16", "data.probe_images=8", "engine.batch_size=8", "engine.epochs=1",
            "model.depth=1", "model.embed_dim=16", "model.stem.hidden_dim=8", "optim.sam_rho=0.05", *overrides]
    return cfg, over, load_config(cfg, SRStemConfig, over)


def test_engine_step_with_sam_equals_a_hand_made_sam_step(tmp_path):
    """One ``Trainer`` step with ``optim.sam_rho`` = the base step (SGD with momentum and weight decay) on the
    gradient at w + rho g/||g||, taken from w; the stem's BN running statistics are updated once (first pass),
    not twice. (SGD, not AdamW: Adam's normalisation turns the rounding noise of gradients that are zero in
    exact arithmetic, e.g. the key bias, into full-size steps, so two correct runs would not agree.)"""
    import copy

    from scaled_relu_stem.train import SRStemTask
    from shared.engine import Trainer

    _, _, cfg = _tiny_cfg(tmp_path, "optim.name=sgd", "optim.lr=0.1")
    task = SRStemTask(cfg)
    trainer = Trainer(task, cfg, tmp_path / "run")
    task.on_train_start(trainer)
    assert isinstance(trainer.optimizer, SAM) and trainer.optimizer.rho == 0.05
    ref = copy.deepcopy(trainer.model)
    saved_pos = ref.pos_embed.detach().clone()
    ref_opt = torch.optim.SGD(task.param_groups(ref), lr=0.1, momentum=cfg.optim.momentum)
    for g, g0 in zip(ref_opt.param_groups, trainer.optimizer.param_groups):
        g["lr"] = g0["lr"]
    x = torch.randn(8, 1, 32, 32)
    y = torch.arange(8) % 10
    trainer.model.train()
    trainer._train_step((x, y))

    ref.train()
    nn.functional.cross_entropy(ref(x), y).backward()
    grads = [p.grad for p in ref.parameters() if p.grad is not None]
    norm = torch.stack([g.norm() for g in grads]).norm()
    saved = {p: p.detach().clone() for p in ref.parameters()}
    with torch.no_grad():
        for p in ref.parameters():
            if p.grad is not None:
                p.add_(0.05 * p.grad / (norm + 1e-12))
    ref_opt.zero_grad()
    with frozen_bn_stats(ref):
        nn.functional.cross_entropy(ref(x), y).backward()
    with torch.no_grad():
        for p, w in saved.items():
            p.copy_(w)
    ref_opt.step()
    for (name, a), b in zip(trainer.model.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.equal(trainer.model.pos_embed, saved_pos)  # it moved
    bn = [m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d)][0]
    assert int(bn.num_batches_tracked) == 2 and bn.momentum == 0.1  # two forwards, one of them frozen


def test_train_cli_runs_with_sam_and_optim_name_sam_selects_it(tmp_path, capsys):
    from scaled_relu_stem.train import main

    cfg, over, _ = _tiny_cfg(tmp_path)
    metrics = main(["--config", str(cfg), "--run-dir", str(tmp_path / "run"), *over])
    assert 0 <= metrics["top1"] <= 100 and (tmp_path / "run" / "last.pt").is_file()
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["optimizer"]["state"] and "exp_avg" in next(iter(state["optimizer"]["state"].values()))  # AdamW's
    resumed = main(["--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--resume", "auto", *over,
                    "engine.epochs=2"])  # the base's state loads back through the wrapper
    assert 0 <= resumed["top1"] <= 100
    # optim.name=sam: SAM around optim.sam_base (adamw) at rho 0.05; the run's config records the base + rho
    main(["--config", str(cfg), "--run-dir", str(tmp_path / "byname"), *[o for o in over if "sam_rho" not in o],
          "optim.name=sam"])
    saved = (tmp_path / "byname" / "config.yaml").read_text()
    assert "name: adamw" in saved and "sam_rho: 0.05" in saved
    with pytest.raises(SystemExit):
        main(["--config", str(cfg), "--run-dir", str(tmp_path / "bad"), *over, "optim.name=sam", "optim.sam_base=sam"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.sam_base" in err[-1]


def test_sam_imagenet_configs_are_the_adamw_recipe_plus_rho():
    from pathlib import Path

    from scaled_relu_stem.train import SRStemConfig
    from shared.config import load_config

    d = Path(__file__).resolve().parents[1] / "scaled_relu_stem" / "configs"
    for stem in ("patchify", "scaled_relu_stem"):
        sam = load_config(d / f"{stem}-sam_deit-s_8xb128-300e_in1k.yaml", SRStemConfig)
        adamw = load_config(d / f"{stem}_deit-s_8xb128-300e_in1k.yaml", SRStemConfig)
        assert (sam.optim.name, sam.optim.sam_base, sam.optim.sam_rho, sam.optim.sam_adaptive,
                adamw.optim.sam_rho) == ("sam", "adamw", 0.05, False, 0.0)
        sam.optim.name, sam.optim.sam_rho = "adamw", 0.0
        assert sam == adamw  # nothing else differs
