"""The training engine: resume across processes, DDP equivalence, non-finite stop, checkpoints, schedule."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.config import load_config
from shared.engine import NonFiniteLossError, Trainer, atomic_save

sys.path.insert(0, str(Path(__file__).parent))
from toy_task import ToyConfig, ToyTask  # noqa: E402

TOY = Path(__file__).parent / "toy_task.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(args: list[str], run_dir: Path, kill_at: int = 0, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(TOY), "--config", os.devnull, "--run-dir", str(run_dir),
           "logger.progress=false", *args]
    env = {**ENV, "VISIONREPRO_FAULT_KILL_AT_STEP": str(kill_at)}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, **kw)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_killed_mid_epoch_and_resumed_matches_uninterrupted(tmp_path):
    common = ["engine.ckpt_every_steps=1", "engine.epochs=3"]
    full = _run(common, tmp_path / "full")
    assert full.returncode == 0, full.stderr
    # 96 samples / batch 8 = 12 steps per epoch; step 17 is in the middle of epoch 2.
    killed = _run(common, tmp_path / "resumed", kill_at=17)
    assert killed.returncode == -9, killed.stderr
    ck = torch.load(tmp_path / "resumed" / "last.pt", map_location="cpu", weights_only=True)
    assert (ck["epoch"], ck["step_in_epoch"], ck["global_step"]) == (1, 4, 16)
    resumed = _run(common + ["--resume", "auto"], tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "resumed" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # Task state survived the resume: the epoch-start hook ran once per epoch, as uninterrupted.
    refreshes = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["task"]["refreshes"]
    assert refreshes.tolist() == [0, 1, 1, 2]  # epoch 1 re-entered once after the kill
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["epoch"] == 3


@pytest.mark.parametrize("kill_at, at", [(13, (1, 0, 12)), (5, (0, 4, 4))])
def test_killed_then_resumed_from_an_epoch_boundary_or_mid_epoch_with_a_sampling_hook(tmp_path, kill_at, at):
    # Step 13 dies before its own checkpoint: last.pt is the end-of-epoch-1 one (a boundary); the epoch-start
    # hook draws from the global RNG, which the resumed run must replay from the checkpoint's state.
    common = ["engine.ckpt_every_steps=1", "engine.epochs=2"]
    assert _run(common, tmp_path / "full").returncode == 0
    assert _run(common, tmp_path / "resumed", kill_at=kill_at).returncode == -9
    ck = torch.load(tmp_path / "resumed" / "last.pt", map_location="cpu", weights_only=True)
    assert (ck["epoch"], ck["step_in_epoch"], ck["global_step"]) == at
    assert _run(common + ["--resume", "auto"], tmp_path / "resumed").returncode == 0
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(tmp_path / "resumed" / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_process_gloo_matches_one_process(tmp_path):
    args = ["dropout=0.0", "engine.epochs=2"]
    one = _run(args, tmp_path / "one")
    assert one.returncode == 0, one.stderr
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(TOY), "--config", os.devnull, "--run-dir", str(tmp_path / "two"), "logger.progress=false", *args]
    two = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert two.returncode == 0, two.stderr[-3000:]
    env = json.loads((tmp_path / "two" / "env.json").read_text())
    assert env["world_size"] == 2
    a, b = _weights(tmp_path / "one" / "last.pt"), _weights(tmp_path / "two" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("extra, fails", [([], False), (["nan_at_step=3"], True)])
def test_train_main_tears_the_process_group_down_on_success_and_on_error(tmp_path, extra, fails):
    # A gloo group left alive at interpreter exit can abort a rank in teardown; the entry point destroys it.
    import torch.distributed as dist
    from toy_task import main as toy_main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    argv = ["--config", os.devnull, "--run-dir", str(tmp_path / "run"), "logger.progress=false",
            "engine.epochs=1", *extra]
    try:
        if fails:
            with pytest.raises(SystemExit):
                toy_main(argv)
        else:
            assert "val_mse" in toy_main(argv)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = load_config(None, ToyConfig, ["engine.epochs=3", "nan_at_step=15", "logger.progress=false"])
    trainer = Trainer(ToyTask(cfg), cfg, tmp_path)
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* step 15"):
        trainer.fit()
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["epoch"] == 1 and ck["global_step"] == 12  # the end-of-epoch-1 checkpoint, untouched
    for v in ck["model"].values():
        assert torch.isfinite(v).all()


def test_checkpoint_contents_best_and_every_n(tmp_path):
    cfg = load_config(None, ToyConfig, ["engine.epochs=4", "engine.ckpt_every=2", "engine.monitor=val_mse",
                                        "engine.monitor_mode=min", "logger.progress=false", "engine.ema=true"])
    Trainer(ToyTask(cfg), cfg, tmp_path).fit()
    names = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert names == ["best.pt", "epoch_2.pt", "epoch_4.pt", "last.prev.pt", "last.pt"]
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "scaler", "ema", "rng", "epoch", "global_step", "task"):
        assert key in ck
    hist = [r["val_mse"] for r in ck["history"]]
    assert ck["best"] == pytest.approx(min(hist))
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("epoch,")
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "env.json").is_file()


def test_atomic_save_leaves_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "last.pt"
    atomic_save({"a": torch.ones(2)}, target)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"a": Boom()}, target)
    assert torch.load(target, weights_only=True)["a"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_resume_path_missing_is_a_clear_error(tmp_path):
    r = _run(["--resume", str(tmp_path / "nope.pt")], tmp_path / "run")
    assert r.returncode == 1
    assert "nope.pt: --resume checkpoint not found" in r.stderr


def test_cdtrans_style_warmup_quirk_schedule(tmp_path):
    """timm cosine stepped with 1-based epochs (t_offset=1): warmup from 0.01*lr, never reaching lr in a
    10-epoch run, lr_min at the last epoch (spec: cdtrans section 5)."""
    lr = 0.008
    cfg = load_config(None, ToyConfig, [
        "engine.epochs=10", f"optim.lr={lr}", "sched.warmup_epochs=10", "sched.warmup_lr_factor=0.01",
        "sched.min_lr_factor=0.002", "sched.t_offset=1", "logger.progress=false", "optim.bias_lr_factor=2"])
    Trainer(ToyTask(cfg), cfg, tmp_path).fit()
    hist = torch.load(tmp_path / "last.pt", weights_only=True)["history"]
    lrs = [r["lr"] for r in hist]
    expected = [lr * (0.01 + 0.099 * e) for e in range(1, 10)] + [lr * 0.002]
    assert lrs == pytest.approx(expected, rel=1e-6)
    assert max(lrs) < lr


def test_cosine_cooldown_epochs_run_at_lr_min(tmp_path):
    """timm train.py semantics: the cosine cycle spans epochs - cooldown, then lr_min for the cooldown."""
    cfg = load_config(None, ToyConfig, ["engine.epochs=6", "sched.cooldown_epochs=2", "optim.lr=0.1",
                                        "sched.min_lr_factor=0.01", "logger.progress=false"])
    Trainer(ToyTask(cfg), cfg, tmp_path).fit()
    lrs = [r["lr"] for r in torch.load(tmp_path / "last.pt", weights_only=True)["history"]]
    assert lrs[0] == pytest.approx(0.1) and lrs[1] > lrs[2] > lrs[3] > 0.001
    assert lrs[4:] == pytest.approx([0.001, 0.001])


def test_timm_saver_checkpoint_with_args_loads(tmp_path):
    import argparse

    from shared.backbones import load_state_dict_file

    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1), "epoch": 3},
               tmp_path / "timm_ckpt.pth.tar")
    assert load_state_dict_file(tmp_path / "timm_ckpt.pth.tar")["w"].tolist() == [1.0, 1.0]


def test_task_can_supply_its_own_sampler(tmp_path):
    from timm.data.distributed_sampler import RepeatAugSampler

    class RepeatTask(ToyTask):
        def train_sampler(self, dataset, epoch, world_size, rank):
            return RepeatAugSampler(dataset, num_replicas=world_size, rank=rank, num_repeats=3)

    cfg = load_config(None, ToyConfig, ["engine.epochs=1", "logger.progress=false", "engine.batch_size=12"])
    task = RepeatTask(cfg)
    trainer = Trainer(task, cfg, tmp_path)
    loader = trainer.build_loader(task.train_dataset(0), 0)
    assert isinstance(loader.sampler, RepeatAugSampler)
    trainer.fit()


def test_eval_ema_switch_chooses_the_evaluated_model(tmp_path):
    seen = []

    class Probe(ToyTask):
        def evaluate(self, model, trainer):
            seen.append(model)
            return {}

    for flag in ("true", "false"):
        cfg = load_config(None, ToyConfig, ["engine.epochs=1", "engine.ema=true", f"engine.eval_ema={flag}",
                                            "logger.progress=false"])
        t = Trainer(Probe(cfg), cfg, tmp_path / flag)
        t.fit()
        assert seen[-1] is (t.ema.module if flag == "true" else t.model)


def test_plateau_decays_when_the_monitored_metric_stalls(tmp_path):
    """ReduceLROnPlateau semantics (MotionRGBD IsoGD): mode max, patience 1, cooldown 0, x0.1; the metric
    improves at the first two evaluations and then stalls, so the lr drops once patience runs out."""
    values = iter([1.0, 2.0, 2.0, 2.0, 2.0, 2.0])

    class Stalling(ToyTask):
        def evaluate(self, model, trainer):
            return {"acc": next(values)}

    cfg = load_config(None, ToyConfig, ["engine.epochs=6", "engine.eval_every=1", "engine.monitor=acc",
                                        "sched.name=plateau", "sched.patience_epochs=1", "sched.decay_rate=0.1",
                                        "optim.lr=0.1", "logger.progress=false"])
    Trainer(Stalling(cfg), cfg, tmp_path).fit()
    lrs = [r["lr"] for r in torch.load(tmp_path / "last.pt", weights_only=True)["history"]]
    # epoch e's lr is set at its start from the evaluation of epoch e-1: 1, 2 (better), 2 (1 bad), 2 (2 bad > 1)
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_plateau_warmup_then_decay_and_resume_keeps_its_state(tmp_path):
    """Warm-up (timm's linear form) for 2 epochs, then plateau; the scheduler state is in the checkpoint."""
    from shared.engine.optim import PlateauScheduler

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    opt.param_groups[0]["initial_lr"] = 1.0
    s = PlateauScheduler(opt, 0.5, patience=0, cooldown=0, mode="max", warmup_t=2, warmup_lr_init=0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    s.step(1, None)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.55)
    s.step(2, 3.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)
    s.step(3, 2.0)  # worse, patience 0: halve
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    state = s.state_dict()
    s2 = PlateauScheduler(opt, 0.5, patience=0, cooldown=0, mode="max")
    s2.load_state_dict(state)
    s2.step(4, 2.5)  # still below the best 3.0 kept in the state: halve again
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)


def test_poly_schedule_values_by_hand():
    """mmcv's PolyLrUpdaterHook with its linear warm-up (the warm-up scales the poly value, from base x ratio)."""
    from shared.engine.optim import PolyScheduler

    ps = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    opt = torch.optim.SGD([{"params": [ps[0]], "initial_lr": 1.0}, {"params": [ps[1]], "initial_lr": 2.0}], lr=1.0)
    s = PolyScheduler(opt, t_initial=100, power=1.0, lr_min=0.0, warmup_t=10, warmup_ratio=1e-6, t_in_epochs=False)
    lrs = lambda: [g["lr"] for g in opt.param_groups]  # noqa: E731
    assert lrs() == pytest.approx([1e-6, 2e-6])  # set at construction: the first update's lr
    s.step_update(5)  # poly 0.95, warm-up factor 1 - 0.5 (1 - 1e-6)
    assert lrs() == pytest.approx([0.95 * (0.5 + 0.5e-6), 1.9 * (0.5 + 0.5e-6)])
    s.step_update(10)  # warm-up over: the poly curve itself
    assert lrs() == pytest.approx([0.9, 1.8])
    s.step(3)  # an updates schedule ignores epoch steps
    assert lrs() == pytest.approx([0.9, 1.8])
    s.step_update(100)
    assert lrs() == [0.0, 0.0]
    s.step_update(130)  # past the end: stays at lr_min
    assert lrs() == [0.0, 0.0]
    s2 = PolyScheduler(opt, t_initial=100, power=2.0, lr_min=0.1)
    s2.step(50)  # (2 - 0.1) x 0.5 ** 2 + 0.1 for the base-2 group
    assert lrs() == pytest.approx([0.9 * 0.25 + 0.1, 1.9 * 0.25 + 0.1])


def test_poly_per_update_in_the_trainer_and_its_config_errors(tmp_path):
    """``sched.name=poly, per_iter=true, warmup_updates=N``: the lr of every update is mmcv's poly of the number
    of updates done, over epochs x loader length; a resumed run continues the same sequence."""
    from shared.engine.optim import build_scheduler

    seen: list[float] = []

    class Recording(ToyTask):
        def training_step(self, model, batch, trainer):
            seen.append(trainer.optimizer.param_groups[0]["lr"])
            return super().training_step(model, batch, trainer)

    over = ["engine.epochs=3", "optim.lr=0.5", "sched.name=poly", "sched.per_iter=true", "sched.warmup_updates=5",
            "sched.warmup_lr_factor=0.1", "sched.poly_power=0.9", "logger.progress=false"]
    cfg = load_config(None, ToyConfig, over)
    Trainer(Recording(cfg), cfg, tmp_path / "a").fit()
    total = 3 * (96 // 8)
    want = [0.5 * (1 - n / total) ** 0.9 * (1 - (1 - n / 5) * 0.9 if n < 5 else 1.0) for n in range(total)]
    assert seen == pytest.approx(want, rel=1e-12)
    seen.clear()
    cfg2 = load_config(None, ToyConfig, [*over, "engine.epochs=1"])
    Trainer(Recording(cfg2), cfg2, tmp_path / "b").fit()
    cfg3 = load_config(None, ToyConfig, over)
    Trainer(Recording(cfg3), cfg3, tmp_path / "b", resume=tmp_path / "b" / "last.pt").fit()
    assert seen[12:] == pytest.approx(want[12:], rel=1e-12)
    bad = load_config(None, ToyConfig, ["sched.name=poly", "sched.warmup_updates=5"])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="warmup_updates=5 counts updates"):
        build_scheduler(opt, bad.sched, 0.1, 3)


def test_resume_accepts_a_setting_added_since_at_its_default_only():
    """A checkpoint written before a config key existed resumes while the key keeps its default (the old
    behaviour); any other value is a change, as is a changed existing key."""
    from shared.config import to_dict
    from shared.engine.trainer import config_changes

    saved = to_dict(ToyConfig())
    del saved["sched"]["poly_power"], saved["sched"]["warmup_updates"]
    defaults = to_dict(ToyConfig())
    now = to_dict(load_config(None, ToyConfig, []))
    assert config_changes(saved, now, defaults) == []
    assert config_changes(saved, now) != []  # without the defaults every added key counts
    other = to_dict(load_config(None, ToyConfig, ["sched.poly_power=2", "optim.lr=0.5"]))
    assert sorted(config_changes(saved, other, defaults)) == ["optim.lr: 0.01 -> 0.5",
                                                            "sched.poly_power: '<absent>' -> 2.0"]
