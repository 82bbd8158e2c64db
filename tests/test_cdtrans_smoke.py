"""CDTrans end to end in seconds: both stages through the engine and the CLI, and the reproduce script."""
from __future__ import annotations

import json

import torch

from cdtrans import reproduce, train

DIGITS = "cdtrans/configs/pretrain_vit-tiny-d64_1xb64-30e_digits.yaml"
UDA = "cdtrans/configs/cdtrans_vit-tiny-d64_1xb64-12e_digits.yaml"
SMALL = ["engine.epochs=1", "data.n_source=200", "logger.progress=false", "uda.update_every=1"]


def test_train_cli_both_stages_and_resume(tmp_path):
    a = tmp_path / "a"
    train.main(["--config", DIGITS, "--run-dir", str(a), *SMALL])
    ck = torch.load(a / "last.pt", weights_only=True)
    assert ck["epoch"] == 1 and "acc" in ck["history"][-1]
    b = tmp_path / "b"
    metrics = train.main(["--config", UDA, "--run-dir", str(b), *SMALL, f"model.init_checkpoint={a / 'last.pt'}"])
    assert 0 <= metrics["acc"] <= 100
    st = torch.load(b / "last.pt", weights_only=True)
    assert len(st["task"]["pairs"]["source_idx"]) > 0  # the pairs travel with the checkpoint
    refresh = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines() if "pair_refresh" in line]
    assert refresh and refresh[0]["pair_refresh"]["pairs"] > 0
    # resuming a finished run is a no-op that keeps the weights
    train.main(["--config", UDA, "--run-dir", str(b), *SMALL, f"model.init_checkpoint={a / 'last.pt'}",
                "--resume", "auto"])


def test_reproduce_quick_writes_summary(tmp_path):
    assert reproduce.main(["--quick", "--seeds", "0", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == ["source_only", "self_training", "cdtrans"]
    assert s["paper"] == "cdtrans" and s["seeds"] == [0] and s["higher_is_better"]
    assert set(s["pair_precision_first_refresh"]) == {"precision_one_way", "precision_two_way",
                                                      "precision_two_way_center_aware"}
    assert (tmp_path / "summary.png").stat().st_size > 0 and (tmp_path / "summary.md").is_file()
