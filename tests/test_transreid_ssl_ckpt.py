"""TransReID-SSL: official checkpoint layouts (raw DINO, converted flat, supervised), CFS, DINO task hooks."""
import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.config import load_config
from shared.dino import DINOHead
from shared.engine import Trainer
from transreid_ssl.cfs import catastrophic_forgetting_score, cfs_order, person_precision
from transreid_ssl.checkpoints import load_backbone, load_reid_checkpoint, resize_pos_embed_hw
from transreid_ssl.model import ReIDModel, ReIDViT
from transreid_ssl.train import TransReIDSSLConfig, build_task


def tiny(stem="patchify", size=(32, 16)):
    return ReIDViT(size, 8, 32, 2, 2, 2.0, 0.0, stem=stem, stem_hidden=8, stem_kernel=3)


def raw_dino_file(path, backbone, ddp_prefix=False):
    """A ``main_dino`` checkpoint: teacher ``backbone.*`` + ``head.*``, student under ``module.``, args."""
    head = DINOHead(32, 16, 8, 4)
    pre = "module." if ddp_prefix else ""
    teacher = {f"{pre}backbone.{k}": v for k, v in backbone.state_dict().items()}
    teacher |= {f"{pre}head.{k}": v for k, v in head.state_dict().items()}
    student = {f"module.{k.removeprefix(pre)}": torch.zeros_like(v) for k, v in teacher.items()}
    torch.save({"student": student, "teacher": teacher, "optimizer": {}, "epoch": 100,
                "args": argparse.Namespace(arch="vit_small"), "dino_loss": {"center": torch.zeros(1, 16)}}, path)


@pytest.mark.parametrize("stem,ddp", [("patchify", False), ("ics", True)])
def test_raw_dino_teacher_loads(tmp_path, stem, ddp):
    torch.manual_seed(0)
    src = tiny(stem)
    raw_dino_file(tmp_path / "ckpt.pth", src, ddp_prefix=ddp)
    dst = tiny(stem)
    load_backbone(dst, tmp_path / "ckpt.pth")
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_flat_converted_file_and_pos_embed_resize(tmp_path):
    torch.manual_seed(0)
    src = tiny()
    torch.save(src.state_dict(), tmp_path / "flat.pth")
    tall = tiny(size=(48, 16))  # 6x2 grid from the 4x2 pre-training grid (PRETRAIN_HW_RATIO 2)
    load_backbone(tall, tmp_path / "flat.pth")
    assert torch.allclose(tall.pos_embed, resize_pos_embed_hw(src.pos_embed, (4, 2), (6, 2)))
    assert torch.equal(tall.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)


def test_plain_vit_into_ics_needs_the_explicit_switch(tmp_path):
    torch.save(tiny().state_dict(), tmp_path / "flat.pth")
    with pytest.raises((KeyError, ValueError)):
        load_backbone(tiny("ics"), tmp_path / "flat.pth")
    report = load_backbone(tiny("ics"), tmp_path / "flat.pth", allow_random_stem=True)
    assert all(k.startswith("patch_embed.") for k in report.missing)


def test_supervised_checkpoint_layout(tmp_path):
    torch.manual_seed(0)
    src = ReIDModel(tiny(), 5)
    sd = {f"module.{k}": v for k, v in src.state_dict().items()}
    sd["module.base.fc.weight"] = torch.zeros(1000, 32)  # the unused head of the official file
    torch.save(sd, tmp_path / "transformer_120.pth")
    dst = ReIDModel(tiny(), 5)
    load_reid_checkpoint(dst, tmp_path / "transformer_120.pth")
    x = torch.randn(2, 3, 32, 16)
    assert torch.allclose(src.eval()(x), dst.eval()(x))


def test_evaluation_load_is_strict_except_the_classifier(tmp_path):
    """Evaluation skips only ``classifier.*``: a file without it loads; a raw DINO file (or any other model)
    is a one-line error naming the file and the keys, never a silently random model."""
    from shared.backbones import CheckpointMismatchError

    src = ReIDModel(tiny(), 5)
    no_cls = {k: v for k, v in src.state_dict().items() if not k.startswith("classifier.")}
    torch.save(no_cls, tmp_path / "no_classifier.pth")
    dst = ReIDModel(tiny(), 7)  # another identity count: the classifier differs, nothing else
    load_reid_checkpoint(dst, tmp_path / "no_classifier.pth", with_classifier=False)
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in no_cls.items())
    with pytest.raises(CheckpointMismatchError):
        load_reid_checkpoint(ReIDModel(tiny(), 5), tmp_path / "no_classifier.pth")  # training resume needs it
    torch.save({"teacher": {f"backbone.{k}": v for k, v in tiny().state_dict().items()}}, tmp_path / "dino.pth")
    with pytest.raises(ValueError) as e:
        load_reid_checkpoint(ReIDModel(tiny(), 5), tmp_path / "dino.pth", with_classifier=False)
    msg = str(e.value)
    assert "\n" not in msg and "dino.pth" in msg and "missing" in msg and "unexpected" in msg


def test_evaluate_cli_refuses_a_dino_file_in_one_line(tmp_path, capsys):
    from transreid_ssl import evaluate

    torch.save({"teacher": {f"backbone.{k}": v for k, v in tiny().state_dict().items()}}, tmp_path / "dino.pth")
    cfg = Path(__file__).resolve().parents[1] / "transreid_ssl/configs/transreid_vit-tiny-d64_1xb32-12e_synperson.yaml"
    with pytest.raises(SystemExit):
        evaluate.main(["--config", str(cfg), "--weights", str(tmp_path / "dino.pth")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dino.pth" in err[0]


def _bad_files(tmp_path):
    """A file that is not a torch file, a truncated one, a non-dict one, and a path with no file."""
    (tmp_path / "garbage.pth").write_text("not a checkpoint")
    torch.save({"base.norm.weight": torch.ones(64)}, tmp_path / "whole.pth")
    raw = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(raw[: len(raw) // 2])
    torch.save([1, 2], tmp_path / "list.pth")
    return ["garbage.pth", "truncated.pth", "list.pth", "missing.pth"]


def test_every_loader_names_a_bad_checkpoint_file_in_one_user_error(tmp_path):
    """Missing, corrupt, truncated or non-dict files: a one-line user error naming the file (never a RuntimeError
    the CLI would call unexpected), from each entry point's loader."""
    from shared.errors import USER_ERRORS
    from transreid_ssl.usl import USLModel, load_uda_init, load_usl_checkpoint

    loaders = [lambda p: load_backbone(tiny(), p), lambda p: load_reid_checkpoint(ReIDModel(tiny(), 5), p),
               lambda p: load_uda_init(tiny(), p), lambda p: load_usl_checkpoint(USLModel(tiny()), p)]
    for name in _bad_files(tmp_path):
        for load in loaders:
            with pytest.raises(Exception) as e:
                load(tmp_path / name)
            msg = str(e.value)
            assert isinstance(e.value, USER_ERRORS) and "\n" not in msg and str(tmp_path / name) in msg, (name, msg)
            assert len(msg) < 300, msg


def test_evaluate_cli_names_a_corrupt_checkpoint_in_one_line_not_as_a_bug(tmp_path, capsys):
    from transreid_ssl import evaluate

    cfg = Path(__file__).resolve().parents[1] / "transreid_ssl/configs/transreid_vit-tiny-d64_1xb32-12e_synperson.yaml"
    _bad_files(tmp_path)
    with pytest.raises(SystemExit):
        evaluate.main(["--config", str(cfg), "--checkpoint", str(tmp_path / "truncated.pth"), "data.n_train_ids=4",
                       "data.n_test_ids=4", "data.pool_size=8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated.pth" in err[0] and "unexpected" not in err[0], err


def test_cfs_score_order_and_precision():
    f0 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    f1 = torch.tensor([[1.0, 0.1], [0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]])
    s = catastrophic_forgetting_score(f0, f1)
    assert torch.allclose(s, torch.tensor([1 / np.sqrt(1.01), 0.0, 1.0, -1.0], dtype=torch.float32), atol=1e-6)
    order = cfs_order(s)
    assert order.tolist() == [2, 0, 1, 3]  # least forgetting first
    assert person_precision(order, np.array([True, False, True, False]), 0.5) == 100.0
    assert catastrophic_forgetting_score(f0, f1, "neg_l2")[2] == -1.0


def tiny_dino_run(run_dir, extra):
    """A 1-epoch, 1-block DINO run on a tiny SynPerson pool (not started: call ``fit``)."""
    torch.manual_seed(0)
    cfg = load_config("transreid_ssl/configs/dino_vit-tiny-d64_1xb64-pretrain_synperson.yaml", TransReIDSSLConfig,
                      ["logger.progress=false", "engine.epochs=1", "data.n_train_ids=4", "data.n_test_ids=4",
                       "model.depth=1", "engine.batch_size=16"] + extra)
    task = build_task(cfg)
    return task, Trainer(task, cfg, run_dir)


def test_dino_task_freezes_last_layer_clips_and_moves_teacher(tmp_path):
    task, tr = tiny_dino_run(tmp_path / "dino", ["data.pool_size=64", "dino.clip_grad=1e-4"])
    cfg = task.cfg
    v0 = tr.model.student.head.last_layer.weight_v.clone()
    s0 = {k: v.clone() for k, v in tr.model.student.state_dict().items()}
    tr.fit()
    m = tr.model
    assert tr.global_step == 4
    assert torch.equal(m.student.head.last_layer.weight_v, v0)  # frozen during epoch 0 (grad cancelled)
    moved = m.student.backbone.blocks[0].mlp.fc1.weight - s0["backbone.blocks.0.mlp.fc1.weight"]
    lr_peak = cfg.dino.base_lr * 16 / 256
    assert 0 < moved.abs().max() <= 4 * lr_peak * 1.5  # Adam steps of at most ~lr each
    t = m.teacher.backbone.blocks[0].mlp.fc1.weight
    assert not torch.equal(t, s0["backbone.blocks.0.mlp.fc1.weight"])
    assert not torch.equal(t, m.student.backbone.blocks[0].mlp.fc1.weight)
    assert tr.optimizer.param_groups[1]["weight_decay"] == 0.0 and tr.optimizer.param_groups[0]["weight_decay"] > 0.04


def test_cfs_cli_ranks_a_luperson_folder(tmp_path):
    from transreid_ssl import cfs
    from transreid_ssl.synperson import make_synperson, write_market_tree

    write_market_tree(make_synperson(0, n_train_ids=2, n_test_ids=2, n_distractors=1, pool_size=6,
                                     per_cam=(2, 2)), tmp_path)
    torch.manual_seed(0)
    shape = ["model.img_size=[64,32]", "model.patch_size=8", "model.embed_dim=32", "model.depth=2",
             "model.num_heads=2", "model.mlp_ratio=2.0"]
    theta0 = ReIDViT((64, 32), 8, 32, 2, 2, 2.0, 0.0)
    raw_dino_file(tmp_path / "theta0.pth", theta0)
    theta1 = ReIDModel(ReIDViT((64, 32), 8, 32, 2, 2, 2.0, 0.0), 3)
    torch.save(theta1.state_dict(), tmp_path / "theta1.pth")
    cfg = "transreid_ssl/configs/transreid_vit-small_1xb64-120e_mm.yaml"
    assert cfs.main(["--config", cfg, "--dino", str(tmp_path / "theta0.pth"), "--reid", str(tmp_path / "theta1.pth"),
                     "--lup", str(tmp_path / "LUP"), "--out", str(tmp_path / "rank.txt")] + shape) == 0
    names = (tmp_path / "rank.txt").read_text().split()
    assert sorted(names) == sorted(p.name for p in (tmp_path / "LUP" / "images").glob("*.jpg"))


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="fp16 AMP runs on CUDA only: the engine never autocasts to fp16 on CPU (issue 23)")
def test_dino_pre_step_hook_sees_unscaled_fp16_gradients(tmp_path):
    task, tr = tiny_dino_run(tmp_path / "amp", ["data.pool_size=192", "engine.amp=fp16"])
    seen, orig = [], task._pre_step

    def spy(trainer):
        seen.append(max(p.grad.norm().item() for p in trainer.model.student.parameters() if p.grad is not None))
        orig(trainer)

    task._pre_step = spy
    tr.fit()
    # scaled gradients would be ~1e4-1e5 times larger: clipping runs after unscaling, as the official loop
    assert tr.scaler.is_enabled() and seen and max(seen) < 1000
