"""The embedded schedule switch (official per-epoch decay vs the engine's per-update cosine) and the tuning table."""
from __future__ import annotations

import json
import math

import pytest

from mhformer import reproduce, tune


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONREPRO_CACHE", str(tmp_path / "cache"))


def _epoch_end_lrs(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["lr"] for r in rows if "epoch_seconds" in r]


def test_cosine_replaces_the_official_decay_and_reaches_zero(tmp_path, cache):
    root = str(reproduce.data_for(7, quick=True))
    common = ["engine.epochs=3", "optim.lr=0.001", "model.frames=9", "model.channel=8", "model.d_hid=16"]
    reproduce.run_method("mhformer", 7, root, str(tmp_path / "official"), True, common + ["sched.name=const"])
    official = _epoch_end_lrs(tmp_path / "official")
    # logged at the last update of each epoch: the lr of that epoch, 1e-3 x 0.95 per finished epoch
    assert official == pytest.approx([1e-3, 9.5e-4, 9.025e-4])
    reproduce.run_method("mhformer", 7, root, str(tmp_path / "cosine"), True,
                         common + tune.COSINE)
    cosine = _epoch_end_lrs(tmp_path / "cosine")
    # per-update cosine over all 3 epochs: after 1/3 and 2/3 of the updates 0.5 (1 + cos(pi t)) x 1e-3, then 0
    assert cosine == pytest.approx([0.5e-3 * (1 + math.cos(math.pi / 3)), 0.5e-3 * (1 + math.cos(2 * math.pi / 3)),
                                    0.0], abs=1e-9)


def test_summarize_picks_the_lowest_mean_over_rows_on_common_seeds(tmp_path, monkeypatch):
    monkeypatch.setitem(tune.GRIDS, "toy", {"a": [], "b": [], "c": []})
    log = tmp_path / "tune.jsonl"
    recs = []
    for setting, base in (("a", 50.0), ("b", 40.0)):
        for i, m in enumerate(reproduce.METHODS):
            for s in (100, 101):
                recs.append({"grid": "toy", "setting": setting, "method": m, "seed": s, "mpjpe": base + i + s - 100})
    # "c" is better but has only one row: incomplete, left out; a record of another grid is ignored
    recs += [{"grid": "toy", "setting": "c", "method": "mhformer", "seed": 100, "mpjpe": 1.0},
             {"grid": "other", "setting": "a", "method": "mhformer", "seed": 100, "mpjpe": 0.0}]
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    table, best = tune.summarize("toy", str(log))
    assert best == "b" and set(table) == {"a", "b"}
    assert table["a"]["single_hypothesis"] == [51.0, 52.0]  # row index 1, seeds 100 and 101


def test_tune_refuses_reported_seeds(tmp_path):
    with pytest.raises(SystemExit, match="reported seeds"):
        tune.main(["--seeds", "100,2", "--log", str(tmp_path / "t.jsonl")])
