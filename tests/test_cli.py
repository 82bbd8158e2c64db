"""Issue 23 (daily use) through the toy task's real entry point: metric lines, wandb check, launcher."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOY = Path(__file__).parent / "toy_task.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "VISIONREPRO_DEBUG": "0"}


def _toy(args, run_dir):
    cmd = [sys.executable, str(TOY), "--config", os.devnull, "--run-dir", str(run_dir), *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)


def test_one_metric_line_per_evaluation_and_a_final_summary_without_progress_bars(tmp_path):
    r = _toy(["logger.progress=false", "engine.epochs=2"], tmp_path / "run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sum(ln.startswith("epoch ") and "val_mse=" in ln for ln in lines) == 2
    assert lines[-1].startswith("final, epoch 2/2: ") and "val_mse=" in lines[-1]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_requested_but_missing_fails_at_config_load_with_the_install_command(tmp_path):
    r = _toy(["logger.wandb=true"], tmp_path / "run")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "pip install wandb" in r.stderr
    assert not (tmp_path / "run").exists()


def test_every_script_answers_help_and_names_a_missing_data_root():
    scripts = sorted(p for p in ROOT.glob("*/scripts/*.sh") if not p.name.startswith("_") and p.parent.parent.name
                     != "shared")
    assert scripts
    env = {k: v for k, v in ENV.items() if k != "DATA_ROOT"}
    for s in scripts:
        h = subprocess.run(["bash", str(s), "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
        assert h.returncode == 0 and "DATA_ROOT" in h.stdout, (s, h.stdout, h.stderr)
        m = subprocess.run(["bash", str(s)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
        assert m.returncode == 2 and "set DATA_ROOT=" in m.stderr and "unbound" not in m.stderr, (s, m.stderr)


def test_relative_data_root_is_resolved_before_the_launcher_changes_folder(tmp_path):
    probe = (f'source "{ROOT}/shared/scripts/launch.sh"; echo "$DATA_ROOT|$OUT|$TOKEN_LABEL_ROOT|$WEIGHTS|$PWD"')
    r = subprocess.run(["bash", "-c", probe], cwd=tmp_path, env={**ENV, "DATA_ROOT": "data/x", "OUT": "runs",
                                                                 "TOKEN_LABEL_ROOT": "labels", "WEIGHTS": "/w.pth"},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{tmp_path}/data/x|{tmp_path}/runs|{tmp_path}/labels|/w.pth|{ROOT}"


def test_elsa_imagenet_script_hands_a_relative_token_label_root_on_resolved(tmp_path):
    """elsa/scripts/imagenet.sh relies on the launcher for TOKEN_LABEL_ROOT like for DATA_ROOT."""
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "argv.txt"}\n')
    fake.chmod(0o755)
    env = {**ENV, "PYTHON": str(fake), "DATA_ROOT": "imnet", "TOKEN_LABEL_ROOT": "maps", "SIZE": "d1", "GPUS": "1"}
    r = subprocess.run(["bash", str(ROOT / "elsa" / "scripts" / "imagenet.sh"), "engine.epochs=1"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    argv = (tmp_path / "argv.txt").read_text().split("\n")
    assert f"data.root={tmp_path}/imnet" in argv and f"train.token_label_root={tmp_path}/maps" in argv
    assert argv[:2] == ["-m", "elsa.train"] and "engine.epochs=1" in argv


def test_launch_script_hands_overrides_to_the_script(tmp_path):
    """make reproduce DATA=... ARGS="--set k=v": the overrides reach the benchmark script as its arguments."""
    from shared.cli import launch_script, reproduce_parser

    script = tmp_path / "s.sh"
    script.write_text(f'echo "$DATA_ROOT $GPUS $*" > {tmp_path / "got.txt"}\n')
    args = reproduce_parser("mhformer", "x").parse_args(["--data", "/d", "--gpus", "2", "--set", "optim.lr=1", "a.b=c"])
    assert launch_script(script, args.data, args.gpus, overrides=args.overrides) == 0
    assert (tmp_path / "got.txt").read_text().split() == ["/d", "2", "optim.lr=1", "a.b=c"]


def test_tune_parser_refuses_reported_seeds_and_keeps_the_paper_defaults():
    from shared.cli import tune_parser, validation_seeds

    p = tune_parser("demo", "doc", {"main": 1, "other": 2}, "main", seeds="100,101,102", log="runs/x.jsonl")
    a = p.parse_args([])
    assert (a.grid, a.seeds, a.log, p.prog) == ("main", "100,101,102", "runs/x.jsonl", "python -m demo.tune")
    assert not hasattr(a, "quick")
    assert tune_parser("demo", "doc", {"main": 1}, "main", quick=True).parse_args(["--quick"]).quick
    with pytest.raises(SystemExit):
        p.parse_args(["--grid", "missing"])
    assert validation_seeds("100, 9,101") == [100, 9, 101]
    for bad in ("5,100", "0", "100,3", "8"):
        with pytest.raises(SystemExit, match="reported seeds"):
            validation_seeds(bad)
    with pytest.raises(SystemExit, match="integers"):
        validation_seeds("1a")


@pytest.mark.parametrize("paper", ["knn_attention", "scaled_relu_stem", "transfgu"])
def test_embedded_reproduction_without_overrides_refuses_set_in_one_line(paper, tmp_path):
    # these three take no --set on embedded data: the flags must not be dropped silently
    import importlib

    mod = importlib.import_module(f"{paper}.reproduce")
    with pytest.raises(SystemExit, match=rf"--set optim.lr=0.1: {paper}'s embedded reproduction takes no overrides"):
        mod.main(["--quick", "--seeds", "0", "--out", str(tmp_path), "--set", "optim.lr=0.1"])
    assert not any(tmp_path.iterdir())  # refused before any run


def test_reproduce_dirs_defaults_quick_and_a_parsers_run_root(tmp_path):
    from argparse import Namespace

    from shared.cli import reproduce_dirs

    out, runs = reproduce_dirs("toy", Namespace(out=str(tmp_path / "o"), quick=False))
    assert out == tmp_path / "o" and runs == Path("runs") / "reproduce" / "toy"
    assert reproduce_dirs("toy", Namespace(out=str(tmp_path / "o"), quick=True))[1] == tmp_path / "o" / "runs"
    given = Namespace(out=None, quick=True, run_root=str(tmp_path / "r"))  # --run-root wins, --quick too
    assert reproduce_dirs("toy", given)[1] == tmp_path / "r"
