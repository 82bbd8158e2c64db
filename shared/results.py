"""Results registry: every ``reproduce`` writes ``results/<paper>/summary.{json,md,png}``.

Schema of ``summary.json`` (read by other tooling, keep it stable)::

    {"paper", "benchmark", "metric", "higher_is_better", "unit", "seeds": [..],
     "rows": [{"method", "mean", "std", "per_seed": [..]}], "wall_seconds", "config", "git_sha"}

Extra keys (``extra``) may be added beside these. ``python -m shared.results`` aggregates every
summary into ``results/README.md`` with one overview plot.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .engine.envinfo import git_info

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"


def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def summarise(per_seed: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0 for one seed)."""
    a = np.asarray(per_seed, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def write_summary(
    paper: str,
    benchmark: str,
    metric: str,
    rows: Mapping[str, Sequence[float]],
    seeds: Sequence[int],
    wall_seconds: float,
    config: Mapping | str,
    higher_is_better: bool = True,
    unit: str = "%",
    out_dir: str | Path | None = None,
    extra: Mapping | None = None,
    curves: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    notes: str = "",
    curves_x: Mapping[str, Sequence[float]] | None = None,
    curves_xlabel: str = "evaluation",
) -> dict:
    """Write summary.json / summary.md / summary.png; return the JSON dict.

    ``rows`` maps method name -> per-seed values (in ``seeds`` order). ``curves`` optionally maps a
    curve title -> {method: values over steps}; they are drawn beside the bars, against ``curves_x[title]``
    (e.g. the epochs or steps evaluated) when given, else against the evaluation index.
    """
    out = Path(out_dir) if out_dir else RESULTS / paper
    out.mkdir(parents=True, exist_ok=True)
    table = []
    for method, vals in rows.items():
        vals = [float(v) for v in vals]
        if len(vals) != len(seeds):
            raise ValueError(f"row '{method}': {len(vals)} values for {len(seeds)} seeds")
        m, s = summarise(vals)
        table.append({"method": method, "mean": round(m, 4), "std": round(s, 4),
                      "per_seed": [round(v, 4) for v in vals]})
    summary = {
        "paper": paper, "benchmark": benchmark, "metric": metric, "higher_is_better": higher_is_better,
        "unit": unit, "seeds": list(seeds), "rows": table, "wall_seconds": round(float(wall_seconds), 1),
        "config": config, "git_sha": git_info()["git_sha"],
    }
    if extra:
        summary.update(extra)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(_markdown(summary, notes))
    _plot(summary, out / "summary.png", curves, curves_x, curves_xlabel)
    return summary


def _markdown(s: dict, notes: str = "") -> str:
    arrow = "higher is better" if s["higher_is_better"] else "lower is better"
    lines = [f"# {s['paper']}: {s['benchmark']}", "",
             f"{s['metric']} ({s['unit']}, {arrow}); seeds {s['seeds']}; {s['wall_seconds']} s wall; "
             f"git {str(s['git_sha'])[:10]}", "",
             "| method | mean | std | per seed |", "| --- | --- | --- | --- |"]
    for r in s["rows"]:
        lines.append(f"| {r['method']} | {r['mean']:.2f} | {r['std']:.2f} | "
                     + ", ".join(f"{v:.2f}" for v in r["per_seed"]) + " |")
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def _plot(s: dict, path: Path, curves=None, curves_x=None, xlabel: str = "evaluation") -> None:
    plt = _mpl()
    ncol = 1 + (len(curves) if curves else 0)
    fig, axes = plt.subplots(1, ncol, figsize=(4.5 * ncol, 3.6), squeeze=False)
    ax = axes[0, 0]
    names = [r["method"] for r in s["rows"]]
    x = np.arange(len(names))
    ax.bar(x, [r["mean"] for r in s["rows"]], yerr=[r["std"] for r in s["rows"]], capsize=4,
           color="#9ecae1", edgecolor="#3182bd")
    for i, r in enumerate(s["rows"]):
        ax.scatter(np.full(len(r["per_seed"]), i), r["per_seed"], color="k", s=12, zorder=3)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel(f"{s['metric']} ({s['unit']})")
    ax.set_title(f"{s['paper']}: {s['benchmark']}", fontsize=9)
    for j, (title, series) in enumerate((curves or {}).items(), start=1):
        a = axes[0, j]
        for method, ys in series.items():
            xs = (curves_x or {}).get(title)
            a.plot(np.arange(1, len(ys) + 1) if xs is None else xs[:len(ys)], ys, marker=".", label=method)
        a.set_title(title, fontsize=9)
        a.set_xlabel(xlabel if curves_x and title in curves_x else "evaluation", fontsize=8)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def aggregate(results_dir: str | Path = RESULTS) -> Path:
    """Collect every ``results/*/summary.json`` into ``results/README.md`` and ``overview.png``."""
    results_dir = Path(results_dir)
    summaries = []
    for f in sorted(results_dir.glob("*/summary.json")):
        try:
            summaries.append(json.loads(f.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON ({e})") from None
    lines = ["# Results (embedded defaults)", "",
             "Made by `make results` from every `results/<paper>/summary.json`.", "",
             "| paper | benchmark | metric | method | mean ± std | seeds |", "| --- | --- | --- | --- | --- | --- |"]
    for s in summaries:
        for r in s["rows"]:
            lines.append(f"| {s['paper']} | {s['benchmark']} | {s['metric']} ({s['unit']}) | {r['method']} | "
                         f"{r['mean']:.2f} ± {r['std']:.2f} | {len(r['per_seed'])} |")
    lines += ["", "![overview](overview.png)"]
    (results_dir / "README.md").write_text("\n".join(lines) + "\n")
    plt = _mpl()
    n = max(1, len(summaries))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    for ax, s in zip(axes[0], summaries):
        names = [r["method"] for r in s["rows"]]
        ax.bar(range(len(names)), [r["mean"] for r in s["rows"]], yerr=[r["std"] for r in s["rows"]],
               capsize=3, color="#a1d99b", edgecolor="#31a354")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{s['paper']}\n{s['metric']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(results_dir / "overview.png", dpi=100)
    plt.close(fig)
    return results_dir / "README.md"


if __name__ == "__main__":
    print(aggregate())
