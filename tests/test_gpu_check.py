"""``make gpu-check``: the path without CUDA exits 0 and says so; the cases run (on the CPU, batch 1)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
# loaded from its file: putting benchmarks/ on sys.path would shadow the paper packages (benchmarks/elsa.py, ...)
_spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = sys.modules["gpu_check"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def test_without_cuda_says_so_and_exits_0():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "no CUDA device visible" in r.stdout


def test_per_gpu_batch_from_config_name():
    assert gpu_check.per_gpu_batch("knn_deit-small_4xb256-300e_in1k.yaml") == 256
    assert gpu_check.per_gpu_batch("capf_i3d-dsn_8xb6-100e_thu-read.yaml") == 6
    with pytest.raises(ValueError, match="xb"):
        gpu_check.per_gpu_batch("base_reid.yaml")


def test_every_case_names_an_existing_config_with_a_batch():
    for c in gpu_check.CASES:
        assert (REPO / c.paper / "configs" / c.config).is_file(), c.config
        assert gpu_check.per_gpu_batch(c.config) > 0
        assert c.paper in gpu_check.SCHEMAS


def test_unknown_case_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        gpu_check.parse_args(["--only", "no_such_case"])
    assert e.value.code == 2
    assert "no_such_case" in capsys.readouterr().err


def test_cpu_run_of_a_case_writes_the_table_and_counts_flops(tmp_path):
    """DeiT-S forward+backward FLOPs at batch 1: 3 x 2 x 4.6 GMAC ~= 27 GFLOP (the DeiT paper's 4.6 GFLOPs
    are multiply-adds of the forward); the count must land near that."""
    rc = gpu_check.main(["--device", "cpu", "--only", "deit_s_dense", "--batch", "1", "--steps", "1",
                         "--warmup", "0", "--amp", "off", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    (row,) = data["rows"]
    assert row["case"] == "deit_s_dense" and row["loss_finite"]
    assert 22.0 < row["params_M"] < 22.2  # DeiT-S: 22.05 M
    assert 0.024 < row["step_TFLOP"] < 0.030
    assert "| deit_s_dense |" in (tmp_path / "gpu_check.md").read_text()
