"""scaled_relu_stem: configs, the ImageNet layout check, the train CLI's errors, a reproduce smoke run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaled_relu_stem import reproduce
from scaled_relu_stem.data import verify_imagenet
from scaled_relu_stem.train import SRStemConfig
from shared.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "scaled_relu_stem" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_validates_and_names_its_stem(path):
    cfg = load_config(path, SRStemConfig)
    stem = cfg.model.stem
    if path.stem.startswith("patchify"):
        assert stem.layout == "patchify"
    elif path.stem.startswith("scaled_relu_stem"):
        assert (stem.layout, stem.norm, stem.act) == ("volo", "bn", "relu")
    elif path.stem.startswith("conv_stem_no_relu"):
        assert (stem.norm, stem.act) == ("bn", "none")
    elif path.stem.startswith("conv_stem_no_bn"):
        assert (stem.norm, stem.act) == ("none", "relu")
    if "in1k" in path.stem and not path.stem.startswith("_"):
        assert cfg.engine.batch_size == 8 * 128 and cfg.optim.lr == pytest.approx(5e-4 * 1024 / 512)


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("_base_: " + str(CONFIGS[0]) + "\nmodel:\n  stem:\n    bogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(bad, SRStemConfig)
    with pytest.raises(ConfigError, match="hidden_dim"):
        load_config(CONFIGS[0], SRStemConfig, ["model.stem.hidden_dim=wide"])


def test_train_cli_bad_switch_is_one_line(tmp_path, capsys):
    from scaled_relu_stem.train import main

    cfg = [p for p in CONFIGS if p.stem.startswith("scaled_relu_stem_vit-micro")][0]
    with pytest.raises(SystemExit) as e:
        main(["--config", str(cfg), "--run-dir", str(tmp_path / "run"), "model.stem.act=gelu",
              "data.n_train=64", "data.n_test=32"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stem.act" in err[0]
    assert not (tmp_path / "run").exists()  # rejected before anything was written


def _imagenet_tree(root: Path, n_val_classes: int = 1000) -> None:
    for split, n in (("train", 1000), ("val", n_val_classes)):
        for i in range(n):
            (root / split / f"n{i:08d}").mkdir(parents=True)
    (root / "train" / "n00000000" / "a.JPEG").write_bytes(b"")


def test_imagenet_layout_check(tmp_path):
    good = tmp_path / "good"
    _imagenet_tree(good)
    assert verify_imagenet(good, count_images=False) == []
    problems = verify_imagenet(good)  # image counts are checked by default
    assert any("expected 1281167 images, found 1" in p for p in problems)
    bad = tmp_path / "bad"
    _imagenet_tree(bad, n_val_classes=3)
    (bad / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    problems = verify_imagenet(bad, count_images=False)
    assert any("expected 1000 class folders, found 3" in p for p in problems)
    assert any("regroup them into class folders" in p for p in problems)
    assert verify_imagenet(tmp_path / "missing", count_images=False)[0].endswith(
        "missing folder (expected train/<wnid>/*.JPEG)")


def test_reproduce_quick_smoke(tmp_path):
    assert reproduce.main(["--quick", "--out", str(tmp_path), "--seeds", "0", "--jobs", "1"]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == ["patchify", "conv_stem_no_relu", "scaled_relu_stem"]
    for r in s["rows"]:
        assert 0.0 <= r["mean"] <= 100.0 and len(r["per_seed"]) == 1
    pm = s["per_method"]
    assert pm["patchify"]["stem_params"] < pm["conv_stem_no_relu"]["stem_params"] \
        == pm["scaled_relu_stem"]["stem_params"]
    depth = load_config(reproduce.HERE / "configs" / reproduce.METHODS["patchify"], SRStemConfig).model.depth
    assert all(len(v["token_similarity_per_layer"]) == depth + 1 for v in pm.values())
    assert all(len(v["token_similarity_centred_per_layer"]) == depth + 1 for v in pm.values())
    assert set(s["claim"]) == {"scaled_relu_stem_vs_patchify", "scaled_relu_stem_vs_conv_stem_no_relu",
                               "scaled_relu_stem_at_least_50", "token_diversity"}
    assert set(s["claim"]["token_diversity"]) == {f"centred_{w}_below_{o}" for w in ("stem", "last_block")
                                                  for o in ("patchify", "conv_stem_no_relu")}
    # the diversity margins come from the per-seed centred values stored beside them
    sr, pf = pm["scaled_relu_stem"], pm["patchify"]
    margin = pf["token_similarity_centred_per_seed"][0][0] - sr["token_similarity_centred_per_seed"][0][0]
    assert s["claim"]["token_diversity"]["centred_stem_below_patchify"]["margin"] == pytest.approx(margin, abs=2e-4)
    assert (tmp_path / "summary.png").stat().st_size > 0 and "scaled_relu_stem" in (tmp_path / "summary.md").read_text()
    # every row records the settings it tried on validation draws, and they are the same for every row
    assert s["tuning_trials"]["per_row"] == {m: v["tuning_trials"] for m, v in pm.items()}
    assert len({v["tuning_trials"] for v in pm.values()}) == 1


def test_tuning_trials_count_every_grid_setting_per_row():
    # main rows: main (lr 2 x warmup 1 x epochs 2) + main8 (1 x 1 x clutter 2) + recipe32 (2 x 2 x 2)
    # + micro_main (3 x 2) = 4 + 2 + 8 + 6
    main = reproduce.tuning_trials("main", reproduce.METHODS)
    assert main["per_row"] == {m: 20 for m in reproduce.METHODS}
    # stability grid, every stem: stability (5 x 2 x 2) + stability_micro (2 x 5 x 2) + stability_micro8 (the
    # same) + stability_sgd8 (5 x 2) + stability_sgd8_mid (1 x 2) = 20 + 20 + 20 + 10 + 2
    stab = reproduce.tuning_trials("stability", reproduce.STABILITY_METHODS)
    assert stab["grids"] == {"stability": 20, "stability_micro": 20, "stability_micro8": 20, "stability_sgd8": 10,
                             "stability_sgd8_mid": 2}
    assert stab["per_row"] == {m: 72 for m in reproduce.STABILITY_METHODS}


def test_evaluate_checkpoint_round_trip(tmp_path, capsys):
    import torch

    from scaled_relu_stem import evaluate
    from scaled_relu_stem.train import SRStemTask

    cfg_path = reproduce.HERE / "configs" / reproduce.METHODS["scaled_relu_stem"]
    small = ["data.n_train=64", "data.n_test=32", "data.probe_images=8"]
    model = SRStemTask(load_config(cfg_path, SRStemConfig, small)).build_model()
    torch.save({"model": model.state_dict()}, tmp_path / "last.pt")
    m = evaluate.main(["--config", str(cfg_path), "--checkpoint", str(tmp_path / "last.pt"), "--device", "cpu",
                       "--out", str(tmp_path / "eval.json"), *small])
    assert 0.0 <= m["top1"] <= 100.0 and len(m["token_similarity_per_layer"]) == len(model.blocks) + 1
    import json

    saved = json.loads((tmp_path / "eval.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert saved["top1"] == pytest.approx(m["top1"])
    # a checkpoint of another stem is rejected with one line naming the mismatching key
    other = reproduce.HERE / "configs" / reproduce.METHODS["patchify"]
    with pytest.raises(SystemExit):
        evaluate.main(["--config", str(other), "--checkpoint", str(tmp_path / "last.pt"), *small])
    assert "patch_embed.proj.weight" in capsys.readouterr().err


@pytest.mark.parametrize("suite", ["main", "stability"])
def test_reproduce_with_data_checks_the_layout_first(tmp_path, capfd, suite):
    (tmp_path / "train").mkdir()
    # the benchmark script stops at the layout check, once (not once per run of the stability grid)
    assert reproduce.main(["--data", str(tmp_path), "--suite", suite]) == 1
    assert "val: missing folder" in capfd.readouterr().out


def test_imagenet_config_uses_repeated_aug_and_cooldown():
    from timm.data.distributed_sampler import RepeatAugSampler

    from scaled_relu_stem.train import SRStemConfig, SRStemTask
    from shared.config import load_config

    cfg = load_config("scaled_relu_stem/configs/scaled_relu_stem_deit-s_8xb128-300e_in1k.yaml", SRStemConfig)
    assert cfg.data.repeated_aug and cfg.sched.cooldown_epochs == 10 and cfg.engine.epochs == 310
    task = SRStemTask.__new__(SRStemTask)  # the sampler hook needs only the config
    task.cfg = cfg
    s = task.train_sampler(list(range(24)), epoch=0, world_size=2, rank=1)
    assert isinstance(s, RepeatAugSampler)
