"""Multi-node launching: two torchrun agents (two "nodes" on localhost) train what one process trains, and
SLURM's variables map onto torchrun's (shared/scripts/launch.sh, shared/scripts/slurm.sbatch), without SLURM."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "shared" / "scripts" / "launch.sh"
SBATCH = REPO / "shared" / "scripts" / "slurm.sbatch"
TOY = Path(__file__).parent / "toy_task.py"
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "RDZV_"))
       and k not in ("NNODES", "NODE_RANK", "GPUS", "PYTHON")}
ENV.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _job(tmp_path: Path, body: str) -> Path:
    """A paper-style script: source the launcher, then ``body``."""
    script = tmp_path / "job.sh"
    script.write_text(f'#!/usr/bin/env bash\n# a test job\nsource "{LAUNCH}"\n{body}\n')
    return script


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_two_nodes_train_the_same_model_as_one_process(tmp_path):
    # The toy model has no BatchNorm; dropout off. 2 nodes x 1 process x 4 = the one process's batch of 8,
    # the engine's DistributedSampler gives the two ranks the halves of each batch. DDP averages the two
    # gradients instead of summing one batch's: equal up to float32 reassociation (rtol 1e-5, atol 1e-6).
    args = "--config /dev/null logger.progress=false dropout=0.0 engine.epochs=2"
    one = subprocess.run([sys.executable, str(TOY), *args.split(), "--run-dir", str(tmp_path / "one")],
                         env=ENV, capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stderr[-3000:]
    script = _job(tmp_path, f'run_train tests.toy_task {args} --run-dir "{tmp_path / "two"}"')
    env = {**ENV, "DATA_ROOT": str(tmp_path), "NNODES": "2", "GPUS": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "RDZV_TIMEOUT": "120", "PYTHON": sys.executable}
    agents = [subprocess.Popen(["bash", str(script)], env={**env, "NODE_RANK": str(r)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [a.communicate(timeout=240) for a in agents]
    for a, (_, err) in zip(agents, outs):
        assert a.returncode == 0, err[-3000:]
    assert "node 0 of 2" in outs[0][1] and "node 1 of 2" in outs[1][1]
    assert "--node_rank=1" in outs[1][1] and "--master_addr=127.0.0.1" in outs[1][1]
    assert json.loads((tmp_path / "two" / "env.json").read_text())["world_size"] == 2
    a, b = _weights(tmp_path / "one" / "last.pt"), _weights(tmp_path / "two" / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    ck = torch.load(tmp_path / "two" / "last.pt", map_location="cpu", weights_only=True)
    assert ck["global_step"] == 2 * 12  # 96 samples / global batch 8, two epochs


# ----------------------------------------------------------------------------- the variable mapping


def _fake_python(tmp_path: Path) -> Path:
    """A PYTHON that prints its arguments, one a line, and the variables the launcher exported."""
    exe = tmp_path / "python"
    exe.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\necho "GPUS=$GPUS NNODES=${NNODES:-}"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def _launch(tmp_path: Path, extra: dict[str, str], path_dirs: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    script = _job(tmp_path, 'run_train mypaper.train --config c.yaml "$@"\nrun_once echo "ONCE on $NODE_RANK"')
    env = {**ENV, "DATA_ROOT": str(tmp_path), "PYTHON": str(_fake_python(tmp_path)), **extra}
    # No scontrol on PATH unless a test puts a fake one first; bash and coreutils stay reachable.
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"])
    return subprocess.run(["bash", str(script), "k=v"], env=env, capture_output=True, text=True, timeout=60)


SLURM = {"SLURM_JOB_ID": "123456", "SLURM_JOB_NUM_NODES": "4", "SLURM_NNODES": "4", "SLURM_NODEID": "2",
         "SLURM_JOB_NODELIST": "gpu[07-09,12]", "SLURM_GPUS_ON_NODE": "8"}


def test_slurm_variables_map_onto_torchrun(tmp_path):
    r = _launch(tmp_path, SLURM)
    assert r.returncode == 0, r.stderr
    args = r.stdout.splitlines()
    assert args[:2] == ["-m", "torch.distributed.run"]
    for want in ("--nnodes=4", "--nproc_per_node=8", "--node_rank=2", "--master_addr=gpu07",
                 "--master_port=29956", "--rdzv_conf=timeout=1800"):  # 29500 + 123456 % 1000
        assert want in args, (want, args)
    assert args[-6:-1] == ["-m", "mypaper.train", "--config", "c.yaml", "k=v"]
    assert "ONCE" not in r.stdout  # node 2 skips the node-0 step


def test_slurm_mapping_never_overrides_what_the_user_set(tmp_path):
    r = _launch(tmp_path, {**SLURM, "SLURM_NODEID": "0", "MASTER_PORT": "31000", "GPUS": "2",
                           "SLURM_GPUS_ON_NODE": "", "SLURM_GPUS_PER_NODE": "a100:4"})
    assert r.returncode == 0, r.stderr
    args = r.stdout.splitlines()
    assert "--master_port=31000" in args and "--nproc_per_node=2" in args and "--node_rank=0" in args
    assert "ONCE on 0" in r.stdout
    r = _launch(tmp_path, {**SLURM, "SLURM_GPUS_ON_NODE": "", "SLURM_GPUS_PER_NODE": "a100:4"})
    assert "--nproc_per_node=4" in r.stdout.splitlines()  # a100:4 -> 4


def test_slurm_nodelist_through_scontrol_when_installed(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text('#!/usr/bin/env bash\n[ "$1 $2" = "show hostnames" ] || exit 9\necho "head-$3"\necho other\n')
    scontrol.chmod(0o755)
    r = _launch(tmp_path, SLURM, path_dirs=(bin_dir,))
    assert r.returncode == 0, r.stderr
    assert "--master_addr=head-gpu[07-09,12]" in r.stdout.splitlines()


@pytest.mark.parametrize("nodelist, first", [
    ("node01", "node01"), ("node[01-04,07],gpu3", "node01"), ("gpu[3,5-6]", "gpu3"), ("host1,host2", "host1"),
    ("a-b-[001-002]-ib,x[1-2]", "a-b-001-ib"), ("rack[2-3]", "rack2")])
def test_first_host_of_a_slurm_nodelist_without_scontrol(tmp_path, nodelist, first):
    r = _launch(tmp_path, {**SLURM, "SLURM_JOB_NODELIST": nodelist})
    assert f"--master_addr={first}" in r.stdout.splitlines(), r.stdout + r.stderr


def test_one_node_stays_standalone_and_c10d_rendezvous_is_an_option(tmp_path):
    r = _launch(tmp_path, {"GPUS": "1"})
    assert r.stdout.splitlines()[:2] == ["-m", "mypaper.train"]  # one process: plain python -m
    r = _launch(tmp_path, {"GPUS": "2"})
    assert "--standalone" in r.stdout.splitlines()
    r = _launch(tmp_path, {"NNODES": "2", "GPUS": "4", "RDZV_ENDPOINT": "head:29400", "RDZV_ID": "job7"})
    args = r.stdout.splitlines()
    for want in ("--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=head:29400", "--rdzv_id=job7",
                 "--rdzv_conf=join_timeout=1800"):
        assert want in args, (want, args)
    assert not any(a.startswith("--node_rank") for a in args)


@pytest.mark.parametrize("extra, message", [
    ({"NNODES": "2"}, "NNODES=2 needs MASTER_ADDR"),
    ({"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "h"}, "NODE_RANK=2 must be below NNODES=2"),
    ({"GPUS": "two"}, "GPUS=two is not a positive whole number"),
    ({"NNODES": "0"}, "NNODES=0 is not a positive whole number")])
def test_bad_multinode_settings_stop_with_one_line(tmp_path, extra, message):
    r = _launch(tmp_path, extra)
    assert r.returncode == 2 and message in r.stderr and r.stdout == ""


def test_sbatch_template_runs_the_script_once_per_node_through_srun(tmp_path):
    """A fake ``srun`` plays two nodes: each task sees its SLURM_NODEID and the launcher turns it into
    torchrun's node rank; the template itself needs no SLURM to be checked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text('#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do echo "srun-opt $1"; shift; done\n'
                    'for n in 0 1; do SLURM_NODEID=$n "$@" || exit $?; done\n')
    srun.chmod(0o755)
    job = _job(tmp_path, 'run_train mypaper.train "$@"')
    env = {**ENV, "DATA_ROOT": str(tmp_path), "PYTHON": str(_fake_python(tmp_path)),
           "PATH": os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]), "SLURM_SUBMIT_DIR": str(tmp_path),
           **{k: v for k, v in SLURM.items() if k != "SLURM_NODEID"}, "SLURM_JOB_NUM_NODES": "2"}
    r = subprocess.run(["bash", str(SBATCH), job.name, "a=b"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "srun-opt --ntasks-per-node=1" in r.stdout and "srun-opt --ntasks=2" in r.stdout
    lines = r.stdout.splitlines()
    assert [x for x in lines if x.startswith("--node_rank")] == ["--node_rank=0", "--node_rank=1"]
    assert lines.count("--nnodes=2") == 2 and lines.count("a=b") == 2
    bad = subprocess.run(["bash", str(SBATCH), "nope.sh"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "nope.sh: no such script" in bad.stderr
