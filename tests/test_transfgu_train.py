"""TransFGU decoder training on the engine: config recipe, a few steps on a VOC fixture, bootstrapping reset."""
import sys
from pathlib import Path

import torch

from shared.config import load_config
from shared.engine import Trainer
from transfgu.train import TransFGUConfig, build_task

sys.path.insert(0, str(Path(__file__).parent))
from test_transfgu_data import write_voc  # noqa: E402

CFG = Path(__file__).resolve().parents[1] / "transfgu" / "configs" / "transfgu_vit-s8_1xb512-100e_voc.yaml"


def test_voc_config_carries_the_official_recipe():
    cfg = load_config(CFG, TransFGUConfig)
    assert (cfg.optim.name, cfg.optim.lr, cfg.engine.batch_size, cfg.engine.epochs) == ("adam", 1e-4, 512, 100)
    assert cfg.fgu.start == 5 and cfg.fgu.intervals[-1] == 3 and cfg.data.repeat == 20 and cfg.engine.seed == 2021


def test_engine_steps_with_bootstrapping(tmp_path):
    ids = [f"2007_{i:06d}" for i in range(4)]
    write_voc(tmp_path / "voc", ids)
    (tmp_path / "pl").mkdir()
    for i in ids:
        torch.save(torch.rand(20, 4, 4).half(), tmp_path / "pl" / f"{i}.pt")
    cfg = load_config(CFG, TransFGUConfig, [
        f"data.root={tmp_path / 'voc'}", f"data.pseudo_labels={tmp_path / 'pl'}", "data.size=32", "data.repeat=1",
        "model.embed_dim=16", "model.depth=1", "model.num_heads=2", "model.dec_layers=1", "model.dec_heads=2",
        "model.dec_mlp=32", "engine.batch_size=2", "engine.epochs=3", "engine.num_workers=0", "fgu.start=1",
        "fgu.intervals=[2]", "logger.progress=false", "engine.device=cpu"])
    task = build_task(cfg)
    Trainer(task, cfg, tmp_path / "run").fit()
    assert task.teacher is not None  # refreshed at epoch 2 (e >= 1, e % 2 == 0)
    last = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    assert "mIoU" in last["history"][-1]


def test_colour_augment_is_decided_once_per_batch():
    """Official colour augmentation: the same jitter / grayscale / blur for every image of a batch."""
    from transfgu.pipeline import colour_augment

    torch.manual_seed(0)
    img = torch.randn(1, 3, 16, 16)
    x = img.repeat(4, 1, 1, 1)  # four identical images
    seen_change = False
    for _ in range(30):
        y = colour_augment(x)
        assert torch.allclose(y, y[:1].expand_as(y), atol=1e-5)  # one decision for the whole batch
        seen_change |= not torch.allclose(y, x, atol=1e-4)
    assert seen_change
