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
    # the pair_noise suite reads such a run back only when every recorded config value matches
    from shared.config import load_config

    same = load_config(UDA, train.CDTransConfig, [*SMALL, f"model.init_checkpoint={a / 'last.pt'}"])
    back = reproduce.finished_run(b, same)
    assert back["history"] == st["history"] and back["pairs"][0]["pairs"] == refresh[0]["pair_refresh"]["pairs"]
    other = load_config(UDA, train.CDTransConfig, [*SMALL, f"model.init_checkpoint={a / 'last.pt'}",
                                                   "uda.pair_noise=0.2"])
    assert reproduce.finished_run(b, other) is None
    longer = load_config(UDA, train.CDTransConfig, [*SMALL, f"model.init_checkpoint={a / 'last.pt'}",
                                                    "engine.epochs=2"])
    assert reproduce.finished_run(b, longer) is None  # recorded 1 epoch: not the run asked for
    # a key its config.yaml lacks (added to the schema since) matches only at its default
    import yaml

    saved = yaml.safe_load((b / "config.yaml").read_text())
    del saved["data"]["n_target"]
    (b / "config.yaml").write_text(yaml.safe_dump(saved))
    assert reproduce.finished_run(b, same) is None  # the committed recipe draws 1,500 targets, not the default 0
    at_default = load_config(UDA, train.CDTransConfig, [*SMALL, f"model.init_checkpoint={a / 'last.pt'}",
                                                        "data.n_target=0"])
    assert reproduce.finished_run(b, at_default)["history"] == st["history"]


def test_reproduce_quick_writes_summary(tmp_path):
    assert reproduce.main(["--quick", "--seeds", "0", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == ["source_only", "self_training", "cdtrans"]
    assert s["paper"] == "cdtrans" and s["seeds"] == [0] and s["higher_is_better"]
    assert set(s["pair_precision_first_refresh"]) == {"precision_one_way", "precision_two_way",
                                                      "precision_two_way_center_aware"}
    assert (tmp_path / "summary.png").stat().st_size > 0 and (tmp_path / "summary.md").is_file()
    assert set(s["claims"]) == {"cdtrans >= source_only + 5", "cdtrans > self_training", "self_training > source_only"}
    assert s["config"]["init"] == "shipped" and s["suite"] == "default"
    trials = s["tuning_trials"]  # the validation search per row (issue 17), on validation draws only
    assert set(trials) == {"source_only", "self_training", "cdtrans"}
    assert all(t["settings"] >= 1 and min(t["validation_seeds"]) >= 100 for t in trials.values())
    assert reproduce.tuning_trials(["cdtrans_noise0.4"]) == {"cdtrans_noise0.4": {"settings": 0,
                                                                                  "validation_seeds": []}}


def test_a_run_trained_again_in_its_folder_starts_a_fresh_log(tmp_path):
    # the default suite re-run where an earlier run finished: the log holds one run's pair refreshes, not two
    reproduce.run_job(0, "source_only", tmp_path, quick=True)
    once = reproduce.run_job(0, "self_training", tmp_path, quick=True)
    again = reproduce.run_job(0, "self_training", tmp_path, quick=True)
    assert not again["reused"] and len(again["pairs"]) == len(once["pairs"]) > 0
    log = (tmp_path / "self_training" / "metrics.jsonl").read_text().splitlines()
    assert sum('"pair_refresh"' in x for x in log) == len(again["pairs"])


def test_claims_compare_the_margin_and_the_pooled_seed_std():
    a, b = [60.0, 62.0, 64.0], [54.0, 55.0, 56.0]  # diff 7, stds 2 and 1: pooled sqrt((4 + 1) / 2) = 1.58
    c = reproduce.claim(a, b, 5.0)
    assert c["diff"] == 7.0 and abs(c["pooled_std"] - 1.581) < 1e-3 and c["holds"]
    assert not reproduce.claim(a, b, 8.0)["holds"]  # below the margin
    assert not reproduce.claim([50.0, 60.0, 70.0], b, 5.0)["holds"]  # diff 5 meets the margin, < pooled std 7.1
    drops = reproduce.suite_claims("pair_noise", {"self_training": [70, 72, 74], "self_training_noise0.4": [50, 51, 55],
                                                  "cdtrans": [70, 71, 74], "cdtrans_noise0.4": [60, 62, 63]})
    c = drops["cdtrans loses less than self_training at 0.4"]
    assert c["drops"] == {"self_training": [20, 21, 19], "cdtrans": [10, 9, 11]} and c["diff"] == 10.0 and c["holds"]
