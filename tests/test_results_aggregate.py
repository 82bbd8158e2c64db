"""`make results`: the overview grid, integer epoch axes, and real-benchmark runs gathered from fake run
folders beside the papers' numbers (rule in shared/real_runs.py)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest
import yaml

from shared import results
from shared.real_runs import averages, gather_runs

matplotlib.use("Agg")

PAPERS = {"cdtrans": {"method": "cdtrans", "baseline": "source_only", "paper_numbers": [
    {"config": "cdtrans_deit-base_2xb32-40e_office31", "metric": "acc", "average": 92.6,
     "tasks": {"amazon2webcam": 96.7}, "source": "paper"}]},
    "elsa": {"paper_numbers": [{"config": "elsa_swin-tiny_8xb128-310e_in1k", "average": 82.7, "source": "p"}]}}


def fake_run(folder: Path, module: str, config: str, data: dict, evals: list[float], metric: str = "acc",
             mode: str = "max") -> Path:
    """A run folder as the engine writes it: config.yaml, metrics.jsonl (train rows + eval rows), env.json."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"engine": {"monitor": metric, "monitor_mode": mode},
                                                        "data": data}))
    rows = []
    for e, v in enumerate(evals, start=1):
        rows += [{"epoch": e, "train/loss": 1.0 / e}, {"epoch": e, metric: v}]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "env.json").write_text(json.dumps({"command": [f"/repo/{module.replace('.', '/')}.py", "--config",
                                                             f"{module.split('.')[0]}/configs/{config}.yaml"]}))
    return folder


def summary(paper: str, rows: dict[str, list[float]]) -> dict:
    return {"paper": paper, "benchmark": "b", "metric": "acc", "higher_is_better": True, "unit": "%",
            "seeds": [0, 1], "rows": [{"method": m, "mean": sum(v) / 2, "std": 0.5, "per_seed": v}
                                      for m, v in rows.items()]}


@pytest.fixture()
def runs(tmp_path):
    root = tmp_path / "runs"
    cfg = "cdtrans_deit-base_2xb32-40e_office31"
    for (s, t), evals in {("amazon", "webcam"): [80.0, 90.0, 88.0], ("dslr", "amazon"): [70.0, 72.0]}.items():
        fake_run(root / "cdtrans/office31" / f"{s}2{t}", "cdtrans.train", cfg,
                 {"name": "office31", "root": "/data/office31", "source": s, "target": t}, evals)
    # an embedded run and a folder without metrics are not gathered
    fake_run(root / "cdtrans/digits", "cdtrans.train", "cdtrans_vit-tiny-d64_1xb64-12e_digits",
             {"name": "digits", "root": ""}, [50.0])
    (root / "half").mkdir()
    (root / "half" / "config.yaml").write_text("data: {root: /x}\n")
    # a single-task run of another paper; the paper is found from the path when env.json is missing
    elsa = fake_run(root / "elsa" / "in1k", "elsa.train", "elsa_swin-tiny_8xb128-310e_in1k",
                    {"dataset": "imagenet1k", "root": "/data/imagenet"}, [60.0, 70.0], metric="top1")
    (elsa / "env.json").unlink()
    return root


def test_gather_runs_applies_the_rule(runs):
    rows = gather_runs([runs], PAPERS)
    assert [(r["paper"], r["task"]) for r in rows] == [("cdtrans", "amazon2webcam"), ("cdtrans", "dslr2amazon"),
                                                       ("elsa", "-")]
    a2w = rows[0]
    assert (a2w["last"], a2w["best"], a2w["epochs"], a2w["metric"], a2w["paper_task"]) == (88.0, 90.0, 3, "acc", 96.7)
    assert rows[2]["config"] == "in1k" and rows[2]["last"] == 70.0  # no env.json: folder name as config
    avg = averages(rows)
    assert len(avg) == 1 and avg[0]["mean"] == pytest.approx((88.0 + 72.0) / 2) and avg[0]["paper_average"] == 92.6


def test_make_results_with_runs_writes_the_tables_and_the_grid(tmp_path, runs):
    res = tmp_path / "results"
    for paper, rows in {"cdtrans": {"source_only": [40, 41], "cdtrans": [50, 52]},
                        "tcl_i2v": {f"a long method name number {i} (with details)": [i, i + 1] for i in range(10)},
                        "elsa": {"swin": [1, 2], "elsa": [3, 4]}, "mhformer": {"mlp": [90, 91]}}.items():
        (res / paper).mkdir(parents=True)
        (res / paper / "summary.json").write_text(json.dumps(summary(paper, rows)))
    (res / "papers.yaml").write_text(yaml.safe_dump(PAPERS))
    assert results.main(["--results", str(res), "--runs", str(runs)]) == 0
    text = (res / "README.md").read_text()
    assert "| cdtrans | b | acc (%) | cdtrans (method) | 51.00 ± 0.50 | 2 |" in text
    assert "## Real-benchmark runs" in text and "### cdtrans" in text and "### elsa" in text
    assert "**average of 2 tasks** | acc | **80.00** | | | **92.60** |" in text
    assert "| imagenet1k | in1k | - | top1 | 70.00 | 70.00 | 2 | - |" in text
    from PIL import Image

    w, h = Image.open(res / "overview.png").size
    assert w <= 1700 and h / w > 0.4  # a grid (3 columns x 2 rows here), not a 1-row strip (h / w = 0.25)


def test_bad_runs_folder_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        results.main(["--results", str(tmp_path), "--runs", str(tmp_path / "nope")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]


def test_curve_axes_use_whole_epochs(tmp_path):
    plt = results._mpl()
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3.0, 2.0, 1.0])
    results._integer_ticks_if_integral(ax, None)
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    plt.close(fig)
    s = results.write_summary("p", "b", "m", {"a": [1.0]}, [0], 1.0, {}, out_dir=tmp_path,
                              curves={"loss": {"a": [3.0, 2.0, 1.0]}})
    assert s["rows"][0]["mean"] == 1.0 and (tmp_path / "summary.png").is_file()
