"""ELSA wiring: configs load and build what their names say, the optimiser groups follow timm's
rule, bad settings fail with one line, the ImageNet layout check, and a smoke reproduce."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from elsa import reproduce
from elsa.checkpoint import engine_state
from elsa.data import DataConfig, build_datasets, folder_problems
from elsa.evaluate import main as evaluate_main
from elsa.model import ELSABlock
from elsa.train import ElsaConfig, build_model, param_groups_timm
from shared.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "elsa" / "configs"
RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.parametrize("size,params", [("tiny", 29.14), ("small", 52.87), ("base", 92.68)])
def test_imagenet_configs_build_the_released_sizes(size, params):
    cfg = load_config(CONFIGS / f"elsa_swin-{size}_8xb128-310e_in1k.yaml", ElsaConfig)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.engine.batch_size) == ("adamw", 1e-3, 0.05, 1024)
    assert (cfg.engine.epochs, cfg.engine.clip_grad, cfg.sched.warmup_epochs) == (310, 5.0, 20)
    assert cfg.engine.ema == (size == "base")
    with torch.device("meta"):
        m = build_model(cfg.model, cfg.data.num_classes)
    assert round(sum(p.numel() for p in m.parameters()) / 1e6, 2) == params


def test_embedded_configs_differ_only_in_the_mixer():
    cfgs = {m: load_config(reproduce.config_path("default", m), ElsaConfig) for m in ("swin", "elsa", "lsa")}
    for m, cfg in cfgs.items():
        assert cfg.model.mixer == m
        model = build_model(cfg.model, 10)
        assert isinstance(model.layers[0].blocks[0], ELSABlock) == (m != "swin")
        assert not isinstance(model.layers[1].blocks[0], ELSABlock)  # the last stage keeps windows
        cfg.model.mixer = "swin"
    assert len({str(c) for c in cfgs.values()}) == 1


def test_weight_decay_groups_follow_timm():
    cfg = load_config(CONFIGS / reproduce.CONFIGS["elsa"], ElsaConfig)
    model = build_model(cfg.model, 10)
    decay, no_decay = param_groups_timm(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    d = {names[id(p)] for p in decay["params"]}
    assert "layers.0.blocks.0.attn.ghost_head" in d and "layers.0.blocks.0.attn.pre_proj.weight" in d
    assert "layers.0.blocks.0.attn.pre_proj.bias" in nd and "layers.0.blocks.0.norm1.weight" in nd
    assert "layers.1.blocks.0.attn.relative_position_bias_table" in nd
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)


def test_bad_settings_fail_with_one_line(tmp_path):
    cfg = load_config(CONFIGS / reproduce.CONFIGS["elsa"], ElsaConfig, ["model.mixer=halo"])
    with pytest.raises(ValueError, match="model.mixer must be one of"):
        build_model(cfg.model, 10)
    with pytest.raises(ConfigError, match="kernel"):
        load_config(CONFIGS / reproduce.CONFIGS["elsa"], ElsaConfig, ["model.kernel=5"])
    with pytest.raises(ValueError, match="data.root"):
        build_datasets(DataConfig(dataset="imagenet1k"), 224)
    with pytest.raises(ValueError, match="img_size=32"):
        build_datasets(DataConfig(dataset="cluttered_digits", num_classes=10), 224)
    with pytest.raises(SystemExit):
        evaluate_main(["--config", str(CONFIGS / reproduce.CONFIGS["elsa"]), "--official",
                       str(tmp_path / "missing.pth")])
    with pytest.raises(FileNotFoundError, match=r"missing\.pth: checkpoint not found"):
        engine_state(tmp_path / "missing.pth")  # evaluate --checkpoint and the fine-tuning init read it first


def test_shifted_digits_draw_follows_the_seed():
    cfg = DataConfig(dataset="shifted_digits", num_classes=10)
    a, b = build_datasets(cfg, 32, seed=0)[0].tensors[0], build_datasets(cfg, 32, seed=1)[0].tensors[0]
    assert not torch.equal(a, b)
    assert torch.equal(a, build_datasets(cfg, 32, seed=0)[0].tensors[0])
    cfg.seed = 1  # a fixed draw wins over the run's seed
    assert torch.equal(build_datasets(cfg, 32, seed=0)[0].tensors[0], b)


def test_shifted_digits_split_and_offsets():
    train, test = build_datasets(DataConfig(dataset="shifted_digits", num_classes=10, noise=0.0), 32)
    assert (len(train), len(test)) == (1500, 297)
    x, y = train.tensors
    assert x.shape == (1500, 1, 32, 32) and set(y.tolist()) == set(range(10))
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3  # train-normalised
    fg = (x[:, 0] > x.min() + 1e-3).float()  # without noise: the 24x24 digit box, offset 0..8 px
    rows = fg.amax(2).argmax(1)
    assert int(rows.min()) >= 0 and int(rows.max()) <= 8 + 24 and len(set(rows.tolist())) > 3
    with pytest.raises(ValueError, match="max_shift"):
        build_datasets(DataConfig(dataset="shifted_digits", num_classes=10, max_shift=6), 32)


def test_imagenet_layout_check(tmp_path):
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            (tmp_path / split / wnid).mkdir(parents=True)
            (tmp_path / split / wnid / f"{split}_{wnid}.JPEG").write_bytes(b"")
    assert folder_problems(tmp_path, classes=2) == []
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")  # flat val, not regrouped
    problems = folder_problems(tmp_path, classes=1000)
    assert any("regroup" in p for p in problems) and any("expected 1000 class folders" in p for p in problems)


def test_reproduce_quick_writes_a_summary(tmp_path):
    assert reproduce.main(["--quick", "--out", str(tmp_path), "--seeds", "0", "--jobs", "1"]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == ["swin", "elsa", "lsa", "volo", "elsa_volo"]
    assert set(s["claims"]) == {"elsa > swin", "elsa > lsa", "elsa_volo > volo"}
    assert all(0.0 <= r["mean"] <= 100.0 for r in s["rows"])
    assert s["params"]["elsa"] > s["params"]["swin"]  # ghost matrices + attention generator
    assert (tmp_path / "summary.png").is_file() and (tmp_path / "summary.md").is_file()
    assert set(s["tuning_trials"]) == set(reproduce.SUITES["default"]["rows"])
    assert "Tuning trials per row" in (tmp_path / "summary.md").read_text()


def test_reproduce_quick_ablations_suite(tmp_path):
    assert reproduce.main(["--quick", "--suite", "ablations", "--out", str(tmp_path), "--seeds", "0",
                           "--jobs", "1"]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == ["lsa", "lsa_dwconv", "elsa_no_hadamard", "elsa_no_ghost", "elsa"]
    assert set(s["claims"]) == {"elsa > lsa_dwconv"} and s["suite"] == "ablations"
    assert set(s["tuning_trials"]) == set(reproduce.SUITES["ablations"]["rows"])


def test_reproduce_data_launches_every_imagenet_size(tmp_path, monkeypatch):
    """make reproduce PAPER=elsa DATA=... ARGS="--size S": every SIZE of scripts/imagenet.sh (ELSA-VOLO-D5 at
    512 px included) reaches the script and names an existing config (a stand-in python records the call)."""
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "argv.txt"}\n')
    fake.chmod(0o755)
    for key, value in {"PYTHON": str(fake), "GPUS": "1", "WEIGHTS": "/w/best.pt", "OUT": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    configs = set()
    for size in reproduce.IMAGENET_SIZES:
        assert reproduce.main(["--data", str(tmp_path / "imnet"), "--size", size]) == 0, size
        argv = (tmp_path / "argv.txt").read_text().split("\n")
        cfg = Path(argv[argv.index("--config") + 1])
        assert (CONFIGS.parents[1] / cfg).is_file(), (size, cfg)
        configs.add(cfg.name)
    assert "elsa_volo-d5-512px-ft_8xb30-40e_in1k.yaml" in configs and len(configs) == len(reproduce.IMAGENET_SIZES)


@pytest.mark.parametrize("folder", sorted(p.parent.relative_to(RESULTS).as_posix()
                                          for p in RESULTS.glob("elsa*/**/summary.json")))
def test_committed_summaries_record_what_a_reader_needs(folder):
    """Every committed elsa summary (each suite and seed set): the suite's rows by name, per-seed values for
    its seeds, the wall time within the 600 s budget, each claim, and each row's tuning trials."""
    s = json.loads((RESULTS / folder / "summary.json").read_text())
    suite = reproduce.SUITES[s["suite"]]
    assert [r["method"] for r in s["rows"]] == suite["rows"]
    assert len(s["seeds"]) >= 3 and all(len(r["per_seed"]) == len(s["seeds"]) for r in s["rows"])
    assert 0 < s["wall_seconds"] <= 600
    assert set(s["claims"]) == {f"{a} > {b}" for a, b in suite["claims"]}
    assert s["tuning_trials"] == {m: reproduce.TUNING_TRIALS[s["suite"]][m] for m in suite["rows"]}
    assert (RESULTS / folder / "summary.md").is_file() and (RESULTS / folder / "summary.png").is_file()
