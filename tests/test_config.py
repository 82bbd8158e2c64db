"""Config loading: _base_ inheritance, dotted overrides, typed validation with errors naming key and file."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shared.config import ConfigError, load_config
from shared.engine import RunConfig


@dataclass
class DataCfg:
    root: str = ""
    num_classes: int = 31


@dataclass
class PaperCfg(RunConfig):
    data: DataCfg = field(default_factory=DataCfg)
    tasks: list[str] = field(default_factory=list)


def _write(path, text):
    path.write_text(text)
    return path


def test_base_chain_and_overrides(tmp_path):
    (tmp_path / "base").mkdir()
    _write(tmp_path / "base" / "root.yaml", "optim:\n  lr: 0.1\n  momentum: 0.5\ndata:\n  num_classes: 65\n")
    _write(tmp_path / "child.yaml", "_base_: base/root.yaml\noptim:\n  lr: 0.008\ntasks: [a, b]\n")
    cfg = load_config(tmp_path / "child.yaml", PaperCfg, ["data.root=/data/office_home", "engine.epochs=3"])
    assert cfg.optim.lr == 0.008 and cfg.optim.momentum == 0.5  # child wins, base fills in
    assert cfg.data.num_classes == 65 and cfg.data.root == "/data/office_home"
    assert cfg.engine.epochs == 3 and cfg.tasks == ["a", "b"]
    assert isinstance(cfg, PaperCfg)


def test_unknown_key_names_key_and_file(tmp_path):
    f = _write(tmp_path / "bad.yaml", "optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optim\.lrr"):
        load_config(f, PaperCfg)


def test_wrong_type_names_key_and_file(tmp_path):
    f = _write(tmp_path / "bad.yaml", "engine:\n  epochs: ten\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*engine\.epochs"):
        load_config(f, PaperCfg)


def test_bad_override_is_named():
    with pytest.raises(ConfigError, match=r"command line.*engine\.epochs"):
        load_config(None, PaperCfg, ["engine.epochs=abc"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, PaperCfg, ["engine.epochs"])


def test_missing_base_and_cycle(tmp_path):
    f = _write(tmp_path / "a.yaml", "_base_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml: config file not found"):
        load_config(f, PaperCfg)
    _write(tmp_path / "x.yaml", "_base_: y.yaml\n")
    _write(tmp_path / "y.yaml", "_base_: x.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "x.yaml", PaperCfg)


def test_multiple_parents_rejected(tmp_path):
    f = _write(tmp_path / "a.yaml", "_base_: [b.yaml, c.yaml]\n")
    with pytest.raises(ConfigError, match="single parent"):
        load_config(f, PaperCfg)


def test_yaml_off_and_on_stay_strings(tmp_path):
    f = _write(tmp_path / "a.yaml", "engine:\n  amp: off\n  ema: true\n")
    cfg = load_config(f, PaperCfg, ["logger.wandb=false"])
    assert cfg.engine.amp == "off" and cfg.engine.ema is True and cfg.logger.wandb is False
    assert load_config(None, PaperCfg, ["engine.amp=off"]).engine.amp == "off"
