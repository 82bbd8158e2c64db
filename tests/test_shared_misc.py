"""Results registry, the reproduce dispatcher, backbones and weight loading."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared import PAPERS
from shared.backbones import create_resnet, create_vit, load_weights, vit_tokens
from shared.reproduce import main as reproduce_main
from shared.results import aggregate, choose_setting, write_summary

REPO = Path(__file__).resolve().parents[1]


def test_write_summary_schema_and_aggregate(tmp_path):
    s = write_summary("toy", "bench", "acc", {"base": [50.0, 52.0, 54.0], "ours": [60.0, 61.0, 62.0]},
                      seeds=[0, 1, 2], wall_seconds=12.34, config={"a": 1}, out_dir=tmp_path / "toy",
                      curves={"acc over steps": {"ours": [1, 2, 3]}}, extra={"note": "x"})
    on_disk = json.loads((tmp_path / "toy" / "summary.json").read_text())
    assert on_disk == s
    for key in ("paper", "benchmark", "metric", "higher_is_better", "unit", "seeds", "rows", "wall_seconds",
                "config", "git_sha", "machine"):
        assert key in on_disk
    # float32 CPU training reproduces bit for bit on one CPU model only: the summary names the machine
    assert on_disk["machine"]["cpu"] and on_disk["machine"]["torch"] == torch.__version__
    assert on_disk["machine"]["cpu"] in (tmp_path / "toy" / "summary.md").read_text()
    base = on_disk["rows"][0]
    assert base["method"] == "base" and base["mean"] == pytest.approx(52.0) and base["std"] == pytest.approx(2.0)
    assert base["per_seed"] == [50.0, 52.0, 54.0] and on_disk["note"] == "x"
    assert "| ours | 61.00 | 1.00 |" in (tmp_path / "toy" / "summary.md").read_text()
    assert (tmp_path / "toy" / "summary.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="2 values for 3 seeds"):
        write_summary("toy", "b", "m", {"x": [1, 2]}, [0, 1, 2], 1.0, {}, out_dir=tmp_path / "bad")
    readme = aggregate(tmp_path)
    text = readme.read_text()
    assert "| toy | bench | acc (%) | ours | 61.00 ± 1.00 | 3 |" in text
    assert (tmp_path / "overview.png").is_file()


def test_reproduce_dispatcher_unknown_and_unimplemented(capsys, monkeypatch):
    assert reproduce_main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert all(p in err for p in PAPERS)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tcl_i2v.reproduce" else real(name, *a))
    assert reproduce_main(["tcl_i2v"]) == 2
    assert "tcl_i2v: not implemented yet" in capsys.readouterr().err


def test_make_reproduce_unknown_paper_exits_2():
    r = subprocess.run(["make", "-s", "reproduce", "PAPER=nope", f"PY={sys.executable}", "STAMP=pyproject.toml"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "choose one of" in r.stderr


def test_vit_tokens_and_attention_maps():
    m = create_vit("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens, maps = vit_tokens(m, x, return_attn=True)
    torch.testing.assert_close(tokens, m.forward_features(x))
    assert len(maps) == 2 and maps[0].shape == (2, 3, 17, 17)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 3, 17))


def test_load_weights_strips_module_maps_keys_and_is_strict(tmp_path, capsys):
    src = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    sd = {f"module.net.{k}": v + 1 for k, v in src.state_dict().items()}
    torch.save({"state_dict": sd}, tmp_path / "w.pth")
    dst = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    rep = load_weights(dst, tmp_path / "w.pth", key_map=lambda k: k.removeprefix("net."))
    assert not rep.missing and not rep.unexpected
    torch.testing.assert_close(dst[2].bias, src[2].bias + 1)
    del sd["module.net.2.bias"]
    torch.save(sd, tmp_path / "w2.pth")
    with pytest.raises(KeyError, match="missing .*2.bias"):
        load_weights(dst, tmp_path / "w2.pth", key_map=lambda k: k.removeprefix("net."))
    load_weights(dst, tmp_path / "w2.pth", key_map=lambda k: k.removeprefix("net."), strict=False)
    assert "2.bias" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_weights(dst, tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="shape mismatch"):
        load_weights(torch.nn.Sequential(torch.nn.Linear(3, 5)), tmp_path / "w.pth",
                     key_map=lambda k: k.removeprefix("net.") if k.startswith("net.0") else None)


def test_resnet_from_local_weights(tmp_path):
    donor = create_resnet(18)
    torch.save(donor.state_dict(), tmp_path / "r18.pth")
    m = create_resnet(18, weights=tmp_path / "r18.pth", num_classes=7)
    assert m.fc.out_features == 7
    torch.testing.assert_close(m.conv1.weight, donor.conv1.weight)


def test_native_parallel_rows_covers_every_row_once_and_env_switch(monkeypatch):
    import ctypes

    from shared.native import load_c, native_enabled, parallel_rows

    for rows, threads in ((10, 3), (2, 5), (1, 1)):
        seen: list[int] = []
        parallel_rows(lambda r0, r1, out=seen: out.extend(range(r0, r1)), rows, threads)
        assert sorted(seen) == list(range(rows))
    src = "#include <stdint.h>\nvoid twice(int64_t *x, int64_t n) { for (int64_t i = 0; i < n; ++i) x[i] *= 2; }\n"
    lib = load_c("test_twice", src, {"twice": [ctypes.c_void_p, ctypes.c_int64]})
    if lib is not None:  # a C compiler is present
        x = torch.arange(5)
        lib.twice(x.data_ptr(), 5)
        assert x.tolist() == [0, 2, 4, 6, 8]
    monkeypatch.setenv("VISIONREPRO_NATIVE", "0")
    assert not native_enabled() and load_c("test_twice", src, {"twice": []}) is None


def _record(log: list, key):
    log.append(key)
    return key * 10


def test_run_jobs_order_dependencies_and_errors():
    from functools import partial

    from shared.jobs import run_jobs

    log: list = []
    fn = partial(_record, log)
    jobs = [(3, (3,)), (1, (1,)), (2, (2,))]
    assert run_jobs(fn, jobs, deps={3: [2], 2: [1]}) == {1: 10, 2: 20, 3: 30}
    assert log == [1, 2, 3]  # 3 waits for 2, which waits for 1; otherwise list order
    log.clear()
    run_jobs(fn, jobs)
    assert log == [3, 1, 2]
    with pytest.raises(ValueError, match="unknown jobs: 9"):
        run_jobs(fn, jobs, deps={1: [9]})
    with pytest.raises(ValueError, match="cycle"):
        run_jobs(fn, jobs, deps={1: [2], 2: [1]})
    assert log == [3, 1, 2]  # nothing ran for the refused graphs


def test_claim_margin_against_pooled_seed_std():
    from shared.results import claim

    # a: mean 12, sample var 4 (10, 12, 14); b: mean 9, sample var 1 (8, 9, 10) -> pooled std sqrt(2.5) = 1.581
    c = claim([10, 12, 14], [8, 9, 10])
    assert c == {"diff": 3.0, "pooled_std": 1.581, "margin": 0.0, "holds": True}
    assert not claim([10, 12, 14], [8, 9, 10], margin=5.0)["holds"]  # diff 3 < margin 5
    assert not claim([10, 12, 14], [9.5, 10.5, 11.5])["holds"]  # diff 1.5 < pooled std 1.58
    one = claim([3.0], [1.0])  # one seed: no spread to compare with, no claim
    assert one["pooled_std"] == 0.0 and not one["holds"]


def test_choose_setting_mean_over_rows_both_directions_and_table(capsys):
    # per-seed lists and plain seed means; the mean over rows of "a" is (2 + 6) / 2 = 4, of "b" (3 + 4) / 2 = 3.5
    table = {"a": {"x": [1.0, 3.0], "y": 6.0}, "b": {"x": [3.0, 3.0], "y": 4.0}}
    assert choose_setting(table, higher_is_better=True, trials="2 settings") == "a"
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| setting | x | y | mean over rows |" and out[1] == "| --- | --- | --- | --- |"
    assert out[2] == "| a | 2.00 (1.0, 3.0) | 6.00 | 4.00 |"
    assert out[-1] == "choice (best mean over rows, shared by all rows): a; trials per row: 2 settings"
    assert choose_setting(table, higher_is_better=False, trials="2 settings") == "b"
    assert "lowest mean over rows" in capsys.readouterr().out
    with pytest.raises(ValueError, match="empty"):
        choose_setting({}, higher_is_better=True, trials="")


def test_append_jsonl_appends_one_line_per_record_and_skips_an_empty_log(tmp_path, capsys):
    from shared.jobs import append_jsonl

    log = tmp_path / "deep" / "tune.jsonl"
    assert append_jsonl(log, {"a": 1}) == {"a": 1}
    append_jsonl(str(log), {"a": 2, "b": [0.5]}, echo=True)
    assert [json.loads(line) for line in log.read_text().splitlines()] == [{"a": 1}, {"a": 2, "b": [0.5]}]
    assert capsys.readouterr().out.strip() == '{"a": 2, "b": [0.5]}'
    append_jsonl("", {"c": 3})  # no log: nothing written anywhere
    assert not (tmp_path / "c").exists() and len(log.read_text().splitlines()) == 2
