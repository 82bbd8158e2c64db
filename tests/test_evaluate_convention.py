"""One evaluate convention (issue 23): every paper's ``python -m <paper>.evaluate`` takes ``--config``,
``--checkpoint`` and ``--out`` (strict JSON: no NaN), and prints the paper's metric set. Tiny data, seconds."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from shared.cli import evaluate_parser, strict_json_value, write_metrics_json

REPO = Path(__file__).resolve().parents[1]


def read_strict(path: Path) -> dict:
    """Parse ``path`` refusing the non-standard constants ``NaN``/``Infinity`` that ``json.dumps`` allows."""
    def refuse(c):
        raise AssertionError(f"{path}: non-standard JSON constant {c}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_strict_json_replaces_non_finite_values(tmp_path):
    import numpy as np

    m = {"acc": float("nan"), "per_class": [1.0, float("inf"), np.float32(2.5)], "n": np.int64(3),
         "nested": {"x": torch.tensor(float("nan"))}}
    assert strict_json_value(m) == {"acc": None, "per_class": [1.0, None, 2.5], "n": 3, "nested": {"x": None}}
    assert read_strict(write_metrics_json(m, tmp_path / "a" / "m.json"))["acc"] is None


def test_parser_flags_and_aliases():
    p = evaluate_parser("x", "d", aliases=("--official",))
    a = p.parse_intermixed_args(["--config", "c.yaml", "--weights", "w.pt", "data.root=/d", "--out", "o.json"])
    assert (a.config, a.checkpoint, a.out, a.overrides) == ("c.yaml", "w.pt", "o.json", ["data.root=/d"])
    assert p.parse_intermixed_args(["--config", "c", "--official", "w"]).checkpoint == "w"


def test_cdtrans_evaluate_writes_strict_json(tmp_path, capsys):
    from cdtrans import evaluate
    from cdtrans.data import build_domains
    from cdtrans.train import CDTransConfig, build_model
    from shared.config import load_config

    cfg_path = REPO / "cdtrans/configs/pretrain_vit-tiny-d64_1xb64-30e_digits.yaml"
    over = ["data.n_source=100", "model.depth=1"]
    cfg = load_config(cfg_path, CDTransConfig, over)
    model = build_model(cfg, build_domains("digits", n_source=100).num_classes)
    torch.save({"model": model.state_dict()}, tmp_path / "last.pt")
    out = tmp_path / "eval" / "result.json"
    res = evaluate.main(["--config", str(cfg_path), "--checkpoint", str(tmp_path / "last.pt"), "--out", str(out),
                         *over])
    got = read_strict(out)
    assert set(got) == {"acc", "mean_class_acc", "per_class_acc"} and len(got["per_class_acc"]) == 10
    assert got["acc"] == pytest.approx(res["acc"])
    text = capsys.readouterr().out
    assert "top-1" in text and "mean-class" in text
    with pytest.raises(SystemExit):  # a missing checkpoint is one line
        evaluate.main(["--config", str(cfg_path), "--checkpoint", str(tmp_path / "missing.pt"), *over])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.pt" in err[0]


def test_tcl_i2v_evaluate_prints_the_reid_metric_set(tmp_path, capsys):
    from shared.config import load_config
    from tcl_i2v import evaluate
    from tcl_i2v.train import KDTask, TCLConfig

    cfg_path = REPO / "tcl_i2v/configs/tcl-ml_tiny_1xb32-30e_synvideo.yaml"
    tiny = ["data.train_ids=6", "data.test_ids=5", "model.tiny_widths=[8,8,8,8]"]
    model = KDTask(load_config(cfg_path, TCLConfig, tiny)).build_model()
    torch.save({"model": model.state_dict(), "optimizer": {}}, tmp_path / "last.pt")
    out = tmp_path / "eval.json"
    metrics = evaluate.main(["--config", str(cfg_path), "--checkpoint", str(tmp_path / "last.pt"),
                             "--out", str(out), *tiny])
    for protocol in ("i2v", "i2v_tkp", "v2v", "i2v_teacher"):
        for k in ("mAP", "rank1", "rank5", "rank10", "mINP"):
            assert 0.0 <= metrics[f"{protocol}/{k}"] <= 100.0
    assert read_strict(out) == pytest.approx(metrics)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["protocol", "mAP", "R1", "R5", "R10", "mINP"]
    assert [ln.split()[0] for ln in lines[1:5]] == ["i2v", "i2v_tkp", "v2v", "i2v_teacher"]


def test_bp_triplet_evaluate_out(tmp_path, capsys):
    from bp_triplet import evaluate
    from bp_triplet.train import BPTripletConfig, BPTripletTask
    from shared.config import load_config

    cfg_path = REPO / "bp_triplet/configs/bp-triplet_embeddednet_1xb32-25e_digits-embedded.yaml"
    over = ["data.n_source=200"]
    model = BPTripletTask(load_config(cfg_path, BPTripletConfig, over)).build_model()
    torch.save({"model": model.state_dict()}, tmp_path / "last.pt")
    out = tmp_path / "eval.json"
    assert evaluate.main(["--config", str(cfg_path), "--checkpoint", str(tmp_path / "last.pt"), "--out", str(out),
                          *over]) == 0
    got = read_strict(out)
    assert set(got) == {"target_top1", "target_mean_class", "a_distance", "lambda_star", "eps_source", "eps_target"}
    assert "target_top1" in capsys.readouterr().out


def test_elsa_evaluate_engine_checkpoint_and_out(tmp_path, capsys):
    from elsa import evaluate
    from elsa.train import ElsaConfig, build_model
    from shared.config import load_config

    cfg_path = REPO / "elsa/configs/elsa_swin-micro-p4_1xb64-12e_shifted-digits.yaml"
    cfg = load_config(cfg_path, ElsaConfig)
    model = build_model(cfg.model, cfg.data.num_classes)
    torch.save({"model": model.state_dict(), "optimizer": {}}, tmp_path / "best.pt")
    out = tmp_path / "eval.json"
    m = evaluate.main(["--config", str(cfg_path), "--checkpoint", str(tmp_path / "best.pt"), "--out", str(out)])
    assert read_strict(out) == {"top1": pytest.approx(m["top1"]), "images": m["images"]}
    assert "top-1" in capsys.readouterr().out


def test_mhformer_evaluate_out_has_no_nan(tmp_path, monkeypatch):
    from mhformer import evaluate
    from mhformer.model import MHFormer
    from shared.data.skeleton import skeleton_motion

    monkeypatch.setenv("VISIONREPRO_CACHE", str(tmp_path / "cache"))
    root = skeleton_motion(seed=0, frames=40, subseqs=1)
    torch.save(MHFormer(frames=9, channel=16, d_hid=32).state_dict(), tmp_path / "model_1.pth")
    out = tmp_path / "eval.json"
    args = ["--config", str(REPO / "mhformer/configs/mhformer-lite_27f_1xb32-5e_synth.yaml"),
            "--checkpoint", str(tmp_path / "model_1.pth"), "--out", str(out), f"data.root={root}",
            "model.frames=9", "model.channel=16", "model.d_hid=32", "data.test_stride=5"]
    assert evaluate.main(args) == 0
    got = read_strict(out)
    assert {"mpjpe", "p_mpjpe", "n_mpjpe"} <= set(got) and "per_action" in got
    assert all(v is None or math.isfinite(v) for v in got.values() if not isinstance(v, dict))
