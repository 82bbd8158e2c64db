"""Real-benchmark runs beside the papers' numbers: ``make results RUNS=<dir>`` (``python -m shared.results --runs``).

The rule, in full:

1. **A run** is any folder under ``<dir>`` (searched recursively) that holds ``config.yaml`` and
   ``metrics.jsonl`` (what the engine writes; ``runs/`` by default).
2. **Real** when its ``data.root`` is set and its dataset (``data.dataset``, else ``data.name``, else
   ``data.benchmark``) is not one of the embedded generators (:data:`EMBEDDED`). Embedded runs are left to
   ``reproduce``'s summaries.
3. **Paper**: the package of the command in ``env.json`` (``python -m cdtrans.train`` -> ``cdtrans``), else
   the first path component under ``<dir>`` that is a paper folder. **Config**: the stem of ``--config`` in
   that command, else the folder name. **Task**: ``<source>2<target>`` when the config has ``data.source``
   and ``data.target`` (UDA), else ``-``.
4. **Metric**: the ``metric`` of the matching ``paper_numbers`` entry in ``results/papers.yaml``, else the
   run's ``engine.monitor``. ``last`` is its value at the last evaluation, ``best`` the best over the run
   (``engine.monitor_mode``); ``epochs`` the last epoch logged.
5. **Average**: the runs of one config with more than one task are averaged (the mean of each task's
   ``last``; a task run twice counts its newest run), e.g. Office-31's six tasks, and shown beside the
   paper's ``average``; the paper's per-task numbers (``tasks``) sit beside each task's row, and a config
   without tasks shows the paper's ``average`` on its own row.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import yaml

PAPERS = ("bp_triplet", "cdtrans", "elsa", "knn_attention", "mhformer", "motion_rgbd", "scaled_relu_stem",
          "tcl_i2v", "transfgu", "transreid_ssl")
# dataset names of the embedded generators (no real benchmark behind them)
EMBEDDED = {"digits-embedded", "embedded", "shifted_digits", "cluttered_digits", "distractor_digits", "h36m_synth",
            "synvideo", "synperson", "synrgbd", "textured_scenes"}


def load_papers(path: str | Path) -> dict:
    """``results/papers.yaml`` as a dict (``{}`` when the file is missing)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e.msg})") from None
    return rows


def _command(run: Path) -> list[str]:
    env = run / "env.json"
    try:
        return [str(c) for c in json.loads(env.read_text()).get("command", [])] if env.is_file() else []
    except json.JSONDecodeError:
        return []


def _paper_of(run: Path, root: Path, command: list[str]) -> str | None:
    for arg in command[:1] + [c for c in command if c.endswith((".train", ".evaluate"))]:
        parts = Path(arg.replace(".", "/") if "/" not in arg else arg).parts
        for p in parts:
            if p in PAPERS:
                return p
    for p in run.relative_to(root).parts if run != root else ():
        if p in PAPERS:
            return p
    return None


def _config_name(run: Path, command: list[str]) -> str:
    if "--config" in command[:-1]:
        return Path(command[command.index("--config") + 1]).stem
    for c in command:
        if c.startswith("--config="):
            return Path(c.split("=", 1)[1]).stem
    return run.name


def read_run(run: Path, root: Path, papers: dict) -> dict | None:
    """One row for a real-benchmark run folder, or ``None`` when it is embedded or not a paper's run."""
    cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
    data, engine = cfg.get("data") or {}, cfg.get("engine") or {}
    dataset = data.get("dataset") or data.get("name") or data.get("benchmark") or ""
    if not data.get("root") or str(dataset) in EMBEDDED:
        return None
    command = _command(run)
    paper = _paper_of(run, root, command)
    if paper is None:
        return None
    config = _config_name(run, command)
    entry = next((e for e in (papers.get(paper) or {}).get("paper_numbers", []) if e.get("config") == config), {})
    metric = entry.get("metric") or engine.get("monitor") or ""
    evals = [r for r in _read_jsonl(run / "metrics.jsonl") if isinstance(r.get(metric), (int, float))]
    values = [float(r[metric]) for r in evals]
    higher = engine.get("monitor_mode", "max") != "min"
    task = f"{data['source']}2{data['target']}" if data.get("source") and data.get("target") else "-"
    return {"paper": paper, "dataset": str(dataset), "config": config, "task": task, "metric": metric,
            "last": values[-1] if values else None,
            "best": (max(values) if higher else min(values)) if values else None,
            "epochs": max((r.get("epoch", 0) for r in evals), default=None), "run": str(run),
            "mtime": (run / "metrics.jsonl").stat().st_mtime,
            # the paper's number for this row: its per-task value, or its one number for a single-task config
            "paper_task": (entry.get("tasks") or {}).get(task) if task != "-" else entry.get("average"),
            "paper_average": entry.get("average"), "source": entry.get("source", "")}


def gather_runs(roots: list[str | Path], papers: dict) -> list[dict]:
    """Every real-benchmark run under ``roots`` (see the module docstring), sorted by paper, config, task."""
    rows = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise ValueError(f"{root}: no such folder (RUNS= must name the folder holding the run folders)")
        for cfg in sorted(root.rglob("config.yaml")):
            if (cfg.parent / "metrics.jsonl").is_file():
                row = read_run(cfg.parent, root, papers)
                if row is not None:
                    rows.append(row)
    return sorted(rows, key=lambda r: (r["paper"], r["dataset"], r["config"], r["task"], r["mtime"]))


def averages(rows: list[dict]) -> list[dict]:
    """Per (paper, config) with more than one task: the mean of each task's newest ``last`` value."""
    newest: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if r["last"] is not None:
            newest[(r["paper"], r["dataset"], r["config"], r["metric"])][r["task"]] = r  # sorted by mtime
    out = []
    for (paper, dataset, config, metric), tasks in newest.items():
        if len(tasks) > 1:
            vals = [r["last"] for r in tasks.values()]
            any_row = next(iter(tasks.values()))
            out.append({"paper": paper, "dataset": dataset, "config": config, "metric": metric,
                        "tasks": sorted(tasks), "mean": sum(vals) / len(vals),
                        "paper_average": any_row["paper_average"], "source": any_row["source"]})
    return out


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.2f}"


def markdown(rows: list[dict]) -> list[str]:
    """The ``## Real-benchmark runs`` section of ``results/README.md``: one table per paper."""
    lines = ["## Real-benchmark runs", "",
             "Gathered by `make results RUNS=<dir>` (rule: `shared/real_runs.py`; the papers' numbers: "
             "`results/papers.yaml`). `last` is the metric at the run's last evaluation, `best` the best over "
             "the run; the paper column is the paper's number for that task or, on the average row, its "
             "average.", ""]
    if not rows:
        return lines + ["No real-benchmark run found.", ""]
    avg = averages(rows)
    for paper in sorted({r["paper"] for r in rows}):
        lines += [f"### {paper}", "", "| dataset | config | task | metric | last | best | epochs | paper | run |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in (r for r in rows if r["paper"] == paper):
            lines.append(f"| {r['dataset']} | {r['config']} | {r['task']} | {r['metric']} | {_fmt(r['last'])} | "
                         f"{_fmt(r['best'])} | {r['epochs'] if r['epochs'] is not None else '-'} | "
                         f"{_fmt(r['paper_task'])} | `{r['run']}` |")
        for a in (a for a in avg if a["paper"] == paper):
            lines.append(f"| {a['dataset']} | {a['config']} | **average of {len(a['tasks'])} tasks** | "
                         f"{a['metric']} | **{_fmt(a['mean'])}** | | | **{_fmt(a['paper_average'])}** | "
                         f"{a['source']} |")
        lines.append("")
    return lines
