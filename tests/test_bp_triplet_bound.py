"""BP-Triplet's reported quantities beyond accuracy: the ideal joint error lambda* of Ben-David's bound, and the
pseudo-label probe that gives rows without pseudo labels (source-only, DANN) the same precision curve."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bp_triplet.evaluate import ideal_joint_error


def _blobs(rng, n, centres, shift=0.0):
    y = rng.integers(0, len(centres), size=n)
    return centres[y] + shift + 0.1 * rng.normal(size=(n, centres.shape[1])), y


def test_lambda_star_is_zero_when_one_classifier_separates_both_domains():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 6)) * 5
    fs, ys = _blobs(rng, 400, centres)
    ft, yt = _blobs(rng, 400, centres, shift=0.5)  # shifted, but the classes stay where they are
    r = ideal_joint_error(fs, ys, ft, yt)
    assert r["lambda_star"] == pytest.approx(0.0) and r["eps_source"] == r["eps_target"] == 0.0


def test_lambda_star_is_high_when_the_target_classes_sit_on_other_source_classes():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 6)) * 5
    fs, ys = _blobs(rng, 400, centres)
    ft, yt = _blobs(rng, 400, centres)
    yt = (yt + 1) % 4  # target class k lies where source class k-1 lies: no h fits both domains
    r = ideal_joint_error(fs, ys, ft, yt)
    # one classifier can get at most one domain right in each region: eps_S + eps_T >= about 100 %
    assert r["lambda_star"] > 90.0
    assert r["lambda_star"] == pytest.approx(r["eps_source"] + r["eps_target"])


def test_lambda_star_uses_held_out_halves_of_balanced_domains():
    rng = np.random.default_rng(2)
    fs, ys = rng.normal(size=(1000, 5)), rng.integers(0, 3, size=1000)  # pure noise: nothing to learn
    ft, yt = rng.normal(size=(300, 5)), rng.integers(0, 3, size=300)
    r = ideal_joint_error(fs, ys, ft, yt, seed=0)
    assert 40.0 < r["eps_source"] < 90.0 and 40.0 < r["eps_target"] < 90.0  # about chance (66.7) each
    assert ideal_joint_error(fs, ys, ft, yt, seed=0) == r  # deterministic in the seed


@pytest.mark.slow
def test_dann_logs_the_pseudo_label_probe_without_keeping_labels(tmp_path):
    from bp_triplet.reproduce import CONFIG, METHODS
    from bp_triplet.train import BPTripletConfig, BPTripletTask
    from shared.config import load_config
    from shared.engine import Trainer

    cfg = load_config(CONFIG, BPTripletConfig, METHODS["dann"] + [
        "engine.epochs=1", "engine.batch_size=16", "data.pairs_per_epoch=64", "data.n_source=300",
        "pseudo.warmup_steps=1", "pseudo.every_steps=2", "pseudo.threshold=0.0", "adv.max_iters=8"])
    task = BPTripletTask(cfg)
    Trainer(task, cfg, tmp_path / "run").fit()
    assert not task.uses_pseudo
    assert [h["step"] for h in task.pseudo_probe] == [1.0, 3.0]
    assert all(h["pl_coverage"] == 100.0 for h in task.pseudo_probe)  # threshold 0 keeps every target
    assert task.pseudo_history is task.pseudo_probe and not task.pseudo.history
    assert bool((task.pseudo.labels == -1).all())  # nothing was kept for training
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert [h["step"] for h in state["task"]["pseudo_probe"]] == [1.0, 3.0]
