"""Evaluation under DDP (shared/engine/dist.py): sharded on every rank and gathered in dataset order, or on
rank 0 with the other ranks waiting on a gloo group whose timeout fits the evaluation. gloo, 2 processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.engine.dist import ShardSampler, eval_loader, gather_cat, shard_range

TOY = Path(__file__).parent / "toy_task.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("n, world", [(96, 2), (10, 3), (2, 4), (0, 2)])
def test_shards_cover_the_set_once_in_order(n, world):
    shards = [list(ShardSampler(range(n), world, r)) for r in range(world)]
    assert sum(shards, []) == list(range(n))  # rank order = dataset order, nothing repeated or padded
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1 and sizes == [len(shard_range(n, world, r)) for r in range(world)]


def test_one_process_eval_loader_is_the_plain_sequential_loader():
    data = torch.arange(10)
    assert torch.cat(list(eval_loader(data, batch_size=3))).tolist() == list(range(10))
    t = torch.randn(4, 2)
    assert gather_cat(t) is t


def _toy(args: list[str], run_dir: Path, procs: int = 1) -> subprocess.CompletedProcess:
    launch = [sys.executable] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    cmd = [*launch, str(TOY), "--config", os.devnull, "--run-dir", str(run_dir), "logger.progress=false",
           "dropout=0.0", "engine.epochs=1", *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)


def _last_eval(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "val_mse" in r][-1]


def test_sharded_evaluation_on_two_ranks_equals_one_process(tmp_path):
    one = _toy([], tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = _toy(["sharded_eval=true"], tmp_path / "two", procs=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _last_eval(tmp_path / "one"), _last_eval(tmp_path / "two")
    # rank 0 evaluated its 48 of the 96 samples, the gathered outputs are all 96 in dataset order, and the
    # metric over them is the one-process metric (same trained weights: test_engine's DDP equivalence).
    assert (b["eval_shard"], b["eval_n"], b["eval_in_order"]) == (48, 96, 1)
    assert b["val_mse"] == pytest.approx(a["val_mse"], rel=1e-5)


def test_rank0_evaluation_longer_than_the_collective_timeout_waits_on_the_eval_group(tmp_path):
    # Collectives time out after 4.8 s (engine.dist_timeout_min, like NCCL's 10 min on a real job); rank 0's
    # evaluation takes 7 s. The other rank waits for it on the gloo group of engine.eval_timeout_min.
    slow = ["engine.dist_timeout_min=0.08", "eval_sleep=7"]
    ok = _toy([*slow, "engine.eval_timeout_min=1"], tmp_path / "ok", procs=2)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert _last_eval(tmp_path / "ok")["val_mse"] > 0
    # The same wait with a group timeout shorter than the evaluation fails: the timeout is real.
    short = _toy([*slow, "engine.eval_timeout_min=0.08"], tmp_path / "short", procs=2)
    assert short.returncode != 0
    assert "timed out" in short.stderr.lower() or "timeout" in short.stderr.lower(), short.stderr[-3000:]
