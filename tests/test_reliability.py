"""Issue 22: every bad input or fault ends in one clear line, nothing is half-written, faults are recovered.

Each class is tested at its root in ``shared/`` (through the toy task's real ``train_main`` entry point
where the class is about the command line).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from shared.config import ConfigError, load_config
from shared.data.listfile import ListFileError, parse_list_file
from shared.engine import NonFiniteLossError, Trainer, atomic_save
from shared.engine.checkpoint import load_resume, prev_path
from shared.errors import cli_errors, one_line

sys.path.insert(0, str(Path(__file__).parent))
from toy_task import ToyConfig, ToyTask  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOY = Path(__file__).parent / "toy_task.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "VISIONREPRO_DEBUG": "0"}


def _toy(args: list[str], run_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(TOY), "--config", os.devnull, "--run-dir", str(run_dir), "logger.progress=false",
           "engine.epochs=1", *args]
    return subprocess.run(cmd, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=120)


def _one_error_line(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _trainer(tmp_path, over=(), resume=None):
    cfg = load_config(None, ToyConfig, ["logger.progress=false", *over])
    return Trainer(ToyTask(cfg), cfg, tmp_path, resume=resume)


# ---------------------------------------------------------------- one line, not a traceback
def test_oserror_in_training_is_one_line_and_debug_shows_traceback(tmp_path):
    r = _toy(["fail_at_step=3"], tmp_path / "run")
    _one_error_line(r, "toy_task: error: /data/img_0007.jpg: unreadable image")
    r = _toy(["fail_at_step=3"], tmp_path / "run2", env={"VISIONREPRO_DEBUG": "1"})
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_unexpected_exception_is_one_line_that_says_so(tmp_path):
    r = _toy(["fail_at_step=1", "fail_with=TypeError"], tmp_path / "run")
    _one_error_line(r, "TypeError", "VISIONREPRO_DEBUG=1")


def test_cuda_requested_without_cuda_is_one_line_and_leaves_no_run_dir(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = _toy(["engine.device=cuda"], tmp_path / "run")
    _one_error_line(r, "engine.device=cuda but CUDA is not available")
    assert not (tmp_path / "run").exists()


def test_plain_state_dict_to_resume_is_named(tmp_path):
    sd = tmp_path / "weights.pth"
    torch.save(ToyTask(ToyConfig()).build_model().state_dict(), sd)
    r = _toy(["--resume", str(sd)], tmp_path / "run")
    _one_error_line(r, "weights.pth: not a training checkpoint", "plain state dict")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, reason", [(b"not a torch file", "UnpicklingError"),
                                             (None, "truncated"), (b"", "EOFError")])
def test_unloadable_weights_file_is_a_one_line_user_error(tmp_path, capsys, content, reason):
    """Every paper's weights loader goes through ``load_local_file``: a corrupt file is a CheckpointError (a user
    error, not "unexpected") that names the file, with torch's reason cut to one short sentence."""
    from shared.backbones import load_local_file, load_state_dict_file
    from shared.errors import CheckpointError

    bad = tmp_path / "bad.pth"
    if content is None:  # a real checkpoint cut in half
        atomic_save({"w": torch.zeros(1000)}, bad)
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    else:
        bad.write_bytes(content)
    for load in (load_local_file, load_state_dict_file):
        with pytest.raises(CheckpointError, match=r"bad.pth: not a loadable checkpoint \(") as e:
            load(bad)
        msg = one_line(e.value)
        assert msg == str(e.value) and len(msg) < 200 and "weights_only" not in msg, msg
        if reason != "truncated":
            assert reason in msg, msg
    with pytest.raises(SystemExit) as ex, cli_errors("prog"):
        load_local_file(bad)
    err = capsys.readouterr().err.strip()
    assert ex.value.code == 1 and err.startswith("prog: error: ") and "bad.pth" in err and "unexpected" not in err
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="list.pth: expected a state dict, got list"):
        load_state_dict_file(tmp_path / "list.pth")


def test_resume_with_renamed_keys_names_the_file(tmp_path):
    _trainer(tmp_path / "a", ["engine.epochs=1"]).fit()
    ck = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    ck["model"] = {f"net.{k}": v for k, v in ck["model"].items()}
    torch.save(ck, tmp_path / "renamed.pt")
    r = _toy(["--resume", str(tmp_path / "renamed.pt")], tmp_path / "run")
    _one_error_line(r, "renamed.pt: model weights do not fit", "missing: 0.weight")


def test_truncated_last_pt_falls_back_to_previous_with_a_warning(tmp_path):
    run = tmp_path / "run"
    assert _toy(["engine.epochs=2"], run).returncode == 0
    assert prev_path(run / "last.pt").is_file()
    good = torch.load(prev_path(run / "last.pt"), weights_only=True)["global_step"]
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    path, state = load_resume(run / "last.pt", fallback=True)
    assert path.name == "last.prev.pt" and state["global_step"] == good
    r = _toy(["engine.epochs=2", "--resume", "auto"], run)
    assert r.returncode == 0, r.stderr
    assert "resuming from the previous checkpoint" in r.stderr and "Traceback" not in r.stderr
    # with no previous one: a clear line, not a traceback
    prev_path(run / "last.pt").unlink()
    (run / "last.pt").write_bytes(data[:100])
    _one_error_line(_toy(["engine.epochs=2", "--resume", "auto"], run), "last.pt: not a loadable checkpoint")


def test_non_utf8_list_file_names_line_and_bom_is_accepted(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    lst = tmp_path / "list.txt"
    lst.write_bytes("\ufeffa.jpg 0\n".encode() + b"caf\xe9.jpg 1\n")
    with pytest.raises(ListFileError, match=r"list\.txt:2: not UTF-8"):
        parse_list_file(lst)
    lst.write_bytes("\ufeffa.jpg 0\n".encode())
    assert parse_list_file(lst) == [(tmp_path / "a.jpg", 0)]


def test_bad_yaml_is_one_short_line_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine:\n  epochs: 3\n  batch_size: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad, ToyConfig)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{bad}:") and "not valid YAML" in msg
    r = subprocess.run([sys.executable, str(TOY), "--config", str(bad), "--run-dir", str(tmp_path / "r")],
                       env=ENV, capture_output=True, text=True, timeout=60)
    _one_error_line(r, "bad.yaml:")


def test_dataloader_worker_error_is_the_workers_message():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise OSError(f"/data/img_{i}.jpg: unreadable image (broken data stream)")

    loader = torch.utils.data.DataLoader(Broken(), batch_size=2, num_workers=1)
    with pytest.raises(OSError) as e:
        next(iter(loader))
    assert "Traceback" in str(e.value)  # what torch gives
    assert one_line(e.value) == "/data/img_0.jpg: unreadable image (broken data stream)"


def test_cli_errors_and_excepthook_print_one_line(capsys):
    with pytest.raises(SystemExit) as e, cli_errors("prog"):
        raise KeyError("model")
    assert e.value.code == 1
    assert capsys.readouterr().err.strip() == "prog: error: missing key 'model'"
    code = ("import __main__, types; __main__.__spec__ = types.SimpleNamespace(name='shared.fake'); "
            "import shared; raise OSError('x.jpg: broken')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip() == "python -m shared.fake: error: x.jpg: broken", r.stderr


# ---------------------------------------------------------------- nothing half-written
def test_run_failing_before_its_first_update_leaves_no_run_dir(tmp_path):
    r = _toy(["fail_at_step=1"], tmp_path / "run")
    _one_error_line(r, "unreadable image")
    assert not (tmp_path / "run").exists()


def test_existing_run_dir_is_refused_without_resume(tmp_path):
    run = tmp_path / "run"
    assert _toy([], run).returncode == 0
    before = (run / "metrics.jsonl").read_text()
    _one_error_line(_toy([], run), "already holds a run", "--resume auto", "--run-dir")
    assert (run / "metrics.jsonl").read_text() == before


def test_interrupted_atomic_save_leaves_no_stale_temp(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")  # a killed save
    atomic_save({"a": torch.ones(1)}, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_verify_decodes_every_image_and_names_unreadable_ones(tmp_path, monkeypatch, capsys):
    from shared.data import verify

    root = tmp_path / "ds"
    (root / "cls").mkdir(parents=True)
    Image.new("RGB", (32, 32), (10, 200, 30)).save(root / "cls" / "good.jpg")
    data = (root / "cls" / "good.jpg").read_bytes()
    (root / "cls" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    monkeypatch.setitem(verify.REGISTRY, "toyset", verify.VerifySpec("toyset", "tests", "", lambda r: []))
    monkeypatch.setattr(verify, "load_all", lambda: None)
    assert verify.main(["toyset", str(root)]) == 1
    out = capsys.readouterr().out
    assert "truncated.jpg: unreadable image" in out and "good.jpg" not in out.replace("decoded", "")
    assert verify.main(["toyset", str(root), "--fast"]) == 0


# ---------------------------------------------------------------- faults
def test_resume_with_changed_hyper_parameter_is_refused(tmp_path):
    run = tmp_path / "run"
    assert _toy(["engine.epochs=2"], run).returncode == 0
    cfg_before = (run / "config.yaml").read_text()
    _one_error_line(_toy(["engine.epochs=2", "optim.lr=0.5", "--resume", "auto"], run),
                    "optim.lr: 0.01 -> 0.5", "config differs")
    assert (run / "config.yaml").read_text() == cfg_before  # never disagrees with what ran


def test_non_finite_weights_never_reach_a_checkpoint(tmp_path):
    # Step 5's update scales the weights to ~1e30 (finite); step 6's loss is then non-finite. last.pt (saved
    # every step) must be the state before the blow-up, never the blown-up weights.
    t = _trainer(tmp_path, ["engine.ckpt_every_steps=1", "blowup_at_step=5", "engine.epochs=2", "dropout=0.0"])
    with pytest.raises(NonFiniteLossError):
        t.fit()
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["global_step"] == 4
    assert all(bool(v.abs().max() < 1e6) for v in ck["model"].values())


def test_native_build_falls_back_when_library_cannot_load_and_leaves_no_temp(tmp_path, monkeypatch):
    import ctypes
    import tempfile

    from shared import native

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(native, "_libs", {})

    def noexec(path, *a, **k):
        raise OSError(f"{path}: failed to map segment from shared object")  # what a noexec /tmp gives

    monkeypatch.setattr(ctypes, "CDLL", noexec)
    src = "void f(int *x) { x[0] = 1; }"
    assert native.load_c("probe", src, {"f": [ctypes.c_void_p]}) is None
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(native, "_libs", {})
    native.load_c("probe", src, {"f": [ctypes.c_void_p]})  # built and loaded (or None without cc)
    assert list(tmp_path.iterdir()) == []  # the build folder is gone either way


@pytest.mark.parametrize("counter", ["torch", "auto"])
def test_reid_empty_or_all_junk_gallery_is_the_documented_value_error(counter):
    from shared.metrics.reid import reid_evaluate

    q = torch.randn(3, 4)
    with pytest.raises(ValueError, match="no query has a valid match"):
        reid_evaluate(q, torch.zeros(0, 4), [1, 2, 3], [], [0, 0, 0], [], counter=counter)
    with pytest.raises(ValueError, match="no query has a valid match"):
        reid_evaluate(q, torch.randn(5, 4), [1, 2, 3], [-1] * 5, [0, 0, 0], [1] * 5, counter=counter)


def test_run_jobs_pins_threads_whatever_the_worker_count():
    from shared.jobs import run_jobs

    one = run_jobs(torch.get_num_threads, [(0, ()), (1, ())], workers=1)
    two = run_jobs(torch.get_num_threads, [(0, ()), (1, ())], workers=2)
    assert one == two == {0: 1, 1: 1}
