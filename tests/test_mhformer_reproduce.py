"""Smoke runs: the embedded reproduce (quick) and evaluating a released-format checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mhformer import evaluate, reproduce
from mhformer.model import MHFormer
from shared.data.skeleton import skeleton_motion


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONREPRO_CACHE", str(tmp_path / "cache"))


def test_reproduce_quick_writes_the_four_rows(tmp_path, cache):
    out = tmp_path / "results"
    assert reproduce.main(["--quick", "--out", str(out), "--seeds", "0,1", "--jobs", "1"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == ["per_frame_mlp", "single_hypothesis", "mhformer", "videopose3d"]
    assert s["unit"] == "mm" and s["higher_is_better"] is False
    for r in s["rows"]:
        assert 0 < r["mean"] < 5000
    assert set(s["extra_metrics"]) == {"p_mpjpe", "n_mpjpe", "mpjpe_hard", "mpjpe_clean", "flip_gain_mm",
                                       "seconds"}
    rows = {r["method"]: r["per_seed"] for r in s["rows"]}
    for pair, diffs in s["paired_differences_mm"].items():  # mhformer - baseline, per seed
        base = pair.split(" - ")[1]
        assert diffs == pytest.approx([a - b for a, b in zip(rows["mhformer"], rows[base])], abs=0.006)
    assert set(s["claims"]) == {"mhformer <= 0.9 x per_frame_mlp", "mhformer < single_hypothesis",
                                "mhformer < videopose3d"}
    assert set(s["tuning_trials"]) == set(rows)  # tuning effort recorded per row
    assert (out / "summary.png").is_file() and "P-MPJPE" in (out / "summary.md").read_text()
    assert "Tuning trials per row" in (out / "summary.md").read_text()


def test_claims_by_hand():
    """margin = 0.9 x MLP mean (or the baseline's mean) minus mhformer's mean, against sqrt((s_a^2 + s_b^2) / 2);
    a margin equal to the pooled std does not hold."""
    rows = {"per_frame_mlp": [50.0, 52.0, 54.0],  # mean 52, std 2
            "single_hypothesis": [47.0, 48.0, 49.0],  # mean 48, std 1
            "mhformer": [44.0, 45.0, 46.0],  # mean 45, std 1
            "videopose3d": [45.0, 46.0, 47.0]}  # mean 46, std 1
    c = reproduce.claims_of(rows)
    mlp = c["mhformer <= 0.9 x per_frame_mlp"]
    assert mlp["margin"] == pytest.approx(1.8) and mlp["pooled_std"] == pytest.approx(2.5 ** 0.5, abs=0.005)
    assert mlp["holds"]
    assert c["mhformer < single_hypothesis"] == {"margin": 3.0, "pooled_std": 1.0, "holds": True}
    assert c["mhformer < videopose3d"] == {"margin": 1.0, "pooled_std": 1.0, "holds": False}
    rows["mhformer"] = [40.0, 45.0, 50.0]  # same mean, std 5: no claim holds
    assert not any(v["holds"] for v in reproduce.claims_of(rows).values())


def test_same_seed_same_numbers(tmp_path, cache):
    root = reproduce.data_for(3, quick=True)
    a = reproduce.run_method("videopose3d", 3, str(root), str(tmp_path / "a"), True)
    b = reproduce.run_method("videopose3d", 3, str(root), str(tmp_path / "b"), True)
    c = reproduce.run_method("videopose3d", 4, str(reproduce.data_for(4, quick=True)), str(tmp_path / "c"), True)
    for k in ("mpjpe", "mpjpe_hard", "p_mpjpe", "curve"):
        assert a[k] == b[k], k
    assert a["mpjpe"] != c["mpjpe"]  # another seed: another data draw and initialisation


def test_evaluate_cli_on_a_released_format_checkpoint(tmp_path, cache, capsys):
    root = skeleton_motion(seed=0, frames=40, subseqs=1)
    ckpt = tmp_path / "model_1234.pth"
    torch.save(MHFormer(frames=9, channel=16, d_hid=32).state_dict(), ckpt)
    config = Path(reproduce.__file__).parent / "configs" / "mhformer-lite_27f_1xb32-5e_synth.yaml"
    args = ["--config", str(config), "--checkpoint", str(ckpt),
            f"data.root={root}", "model.frames=9", "model.channel=16", "model.d_hid=32", "data.test_stride=5"]
    assert evaluate.main(args) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["Action", "P1", "mm", "P2", "mm", "N", "mm"]
    assert len(table.splitlines()) == 1 + 4 + 1  # header, 4 synthetic actions, average
    assert evaluate.main(args[:3] + [str(tmp_path / "missing.pth")] + args[4:]) == 1


def test_demo_lifts_a_json_sequence(tmp_path):
    from mhformer import demo

    ckpt = tmp_path / "model.pth"
    torch.save(MHFormer(frames=9, channel=16, d_hid=32).state_dict(), ckpt)
    kps = (torch.rand(12, 17, 2) * 500).tolist()
    (tmp_path / "clip.json").write_text(json.dumps({"keypoints": kps}))
    out = tmp_path / "lifted.png"
    args = ["--keypoints", str(tmp_path / "clip.json"), "--checkpoint", str(ckpt), "--frames", "9",
            "--channel", "16", "--d-hid", "32", "--width", "500", "--height", "500", "--out", str(out)]
    assert demo.main(args) == 0
    import numpy as np

    poses = np.load(tmp_path / "lifted.npz")["poses_3d"]
    assert poses.shape == (12, 17, 3) and (poses[:, 0] == 0).all() and out.is_file()
    (tmp_path / "bad.json").write_text(json.dumps([[[1, 2]] * 16]))
    assert demo.main(["--keypoints", str(tmp_path / "bad.json")] + args[2:]) == 1
