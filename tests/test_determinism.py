"""Same seeds, same numbers: each paper's ``--quick`` embedded reproduction, run twice in fresh processes
(one seed, ``--jobs 2`` then ``--jobs 1``, so neither the process layout nor the thread count may change a
number), gives identical per-seed results. Marked slow: ten papers x two quick runs."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import PAPERS

ROOT = Path(__file__).resolve().parents[1]


def _quick(paper: str, out: Path, jobs: int) -> dict:
    cmd = [sys.executable, "-m", "shared.reproduce", paper, "--quick", "--seeds", "0", "--out", str(out)]
    help_text = subprocess.run([*cmd[:4], "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    if "--jobs" in help_text:
        cmd += ["--jobs", str(jobs)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("paper", PAPERS)
def test_quick_reproduction_twice_gives_identical_numbers(paper, tmp_path):
    if importlib.util.find_spec(f"{paper}.reproduce") is None:
        pytest.skip(f"{paper} has no reproduce.py")
    a = _quick(paper, tmp_path / "a", jobs=2)
    b = _quick(paper, tmp_path / "b", jobs=1)
    rows_a = {r["method"]: r["per_seed"] for r in a["rows"]}
    rows_b = {r["method"]: r["per_seed"] for r in b["rows"]}
    assert rows_a == rows_b, f"{paper}: per-seed numbers differ between two runs"
