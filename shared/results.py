"""Results registry: every ``reproduce`` writes ``results/<paper>/summary.{json,md,png}``.

Schema of ``summary.json`` (read by other tooling, keep it stable)::

    {"paper", "benchmark", "metric", "higher_is_better", "unit", "seeds": [..],
     "rows": [{"method", "mean", "std", "per_seed": [..]}], "wall_seconds", "config", "git_sha"}

Extra keys (``extra``) may be added beside these; ``"method"`` and ``"baseline"`` (row names) mark the
paper's method and its baseline in the overview (else ``results/papers.yaml`` says which).

``python -m shared.results [--runs DIR ...]`` (``make results [RUNS=DIR]``) aggregates every summary into
``results/README.md`` and ``results/overview.png`` (one panel per summary: mean ± std over seeds, the
method and its baseline marked), and with ``--runs`` adds the real-benchmark runs found under DIR beside
the papers' numbers (the rule: ``shared/real_runs.py``).
"""
from __future__ import annotations

import argparse
import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .engine.envinfo import git_info, machine_info

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


def claim(a: Sequence[float], b: Sequence[float], margin: float = 0.0) -> dict:
    """A claim "row a beats row b" over seeds: ``diff = mean(a) - mean(b)`` against the pooled seed std
    ``sqrt((s_a^2 + s_b^2) / 2)`` (sample stds; 0 with one seed). It holds when ``diff >= margin`` and
    ``diff > pooled_std`` (the project's rule: each margin larger than the pooled seed std), and never on a
    single seed (no spread to compare with). For "lower is better" metrics pass the rows the other way round."""
    diff = float(np.mean(a) - np.mean(b))
    sd = float(np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)) if min(len(a), len(b)) > 1 else 0.0
    return {"diff": round(diff, 3), "pooled_std": round(sd, 3), "margin": margin,
            "holds": bool(diff >= margin and diff > sd and min(len(a), len(b)) > 1)}


def choose_setting(table: Mapping[str, Mapping[str, float | Sequence[float]]], higher_is_better: bool,
                   trials: str) -> str:
    """The validation-search choice shared by every row: print ``table`` (setting -> row -> score, or the
    per-seed scores, shown as their mean with the seeds in brackets) as a markdown table with each setting's
    mean over the rows (a row's score is first averaged over its seeds), and return the setting whose mean
    over the rows is best. ``trials`` ends the choice line (how much each row tried)."""
    def score(v) -> float:
        return float(np.mean(v))

    def cell(v) -> str:
        if isinstance(v, (int, float)):
            return f"{v:.2f}"
        return f"{score(v):.2f} ({', '.join(f'{x:.1f}' for x in v)})"

    if not table:
        raise ValueError("choose_setting: empty table")
    rows = list(next(iter(table.values())))
    means = {k: float(np.mean([score(row[m]) for m in rows])) for k, row in table.items()}
    print("| setting | " + " | ".join(rows) + " | mean over rows |\n|" + " --- |" * (len(rows) + 2))
    for k, row in table.items():
        print(f"| {k} | " + " | ".join(cell(row[m]) for m in rows) + f" | {means[k]:.2f} |")
    best = (max if higher_is_better else min)(means, key=means.get)
    print(f"choice ({'best' if higher_is_better else 'lowest'} mean over rows, shared by all rows): {best}; "
          f"trials per row: {trials}", flush=True)
    return best


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
        "config": config, "git_sha": git_info()["git_sha"], "machine": machine_info(),
    }
    if extra:
        summary.update(extra)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(_markdown(summary, notes))
    _plot(summary, out / "summary.png", curves, curves_x, curves_xlabel)
    return summary


def tuning_line(trials: Mapping[str, Mapping]) -> str:
    """The summary.md line of a ``tuning_trials`` record ``{row: {"settings", "validation_runs", ...}}``: the
    settings each row tried and the validation runs spent on choosing them."""
    return ("Tuning trials per row (settings / validation runs): "
            + ", ".join(f"{m} {t['settings']} / {t['validation_runs']}" for m, t in trials.items()) + ".")


def _markdown(s: dict, notes: str = "") -> str:
    arrow = "higher is better" if s["higher_is_better"] else "lower is better"
    lines = [f"# {s['paper']}: {s['benchmark']}", "",
             f"{s['metric']} ({s['unit']}, {arrow}); seeds {s['seeds']}; {s['wall_seconds']} s wall; "
             f"git {str(s['git_sha'])[:10]}" + (f"; {s['machine']['cpu']}" if s.get("machine") else ""), "",
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
    n = len(s["rows"])
    fig, axes = plt.subplots(1, ncol, figsize=(4.8 * ncol, max(3.6, 1.2 + 0.36 * n)), squeeze=False)
    ax = axes[0, 0]
    y = np.arange(n)[::-1]  # first row on top; horizontal bars keep long method names readable
    ax.barh(y, [r["mean"] for r in s["rows"]], xerr=[r["std"] for r in s["rows"]], capsize=4,
            color="#9ecae1", edgecolor="#3182bd", height=0.7)
    for yi, r in zip(y, s["rows"]):
        ax.scatter(r["per_seed"], np.full(len(r["per_seed"]), yi), color="k", s=12, zorder=3)
    ax.set_yticks(y, [_wrap(r["method"]) for r in s["rows"]], fontsize=8)
    ax.set_xlabel(f"{s['metric']} ({s['unit']})", fontsize=8)
    ax.set_title(_wrap(f"{s['paper']}: {s['benchmark']}", 60), fontsize=9)
    for j, (title, series) in enumerate((curves or {}).items(), start=1):
        a = axes[0, j]
        for method, ys in series.items():
            xs = (curves_x or {}).get(title)
            a.plot(np.arange(1, len(ys) + 1) if xs is None else xs[:len(ys)], ys, marker=".", label=method)
        a.set_title(title, fontsize=9)
        a.set_xlabel(xlabel if curves_x and title in curves_x else "evaluation", fontsize=8)
        _integer_ticks_if_integral(a, (curves_x or {}).get(title))
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _integer_ticks_if_integral(ax, xs: Sequence[float] | None) -> None:
    """Epochs, steps and evaluation indices are whole numbers: no 1.25, 1.5 ticks between them."""
    from matplotlib.ticker import MaxNLocator

    if xs is None or all(float(x).is_integer() for x in xs):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _marks(s: dict, papers: Mapping) -> tuple[str | None, str | None]:
    """(method, baseline) row names of a summary: its own keys, else ``results/papers.yaml``."""
    entry = papers.get(s.get("paper"), {}) or {}
    names = {r["method"] for r in s["rows"]}
    method = s.get("method") or entry.get("method")
    baseline = s.get("baseline") or entry.get("baseline")
    return (method if method in names else None), (baseline if baseline in names else None)


def _wrap(label: str, width: int = 24) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def plot_overview(summaries: Sequence[dict], path: str | Path, papers: Mapping | None = None,
                  ncols: int = 3) -> Path:
    """One panel per summary in a grid: horizontal bars of the seed mean with ± std error bars and the
    per-seed points, method names on the y axis (long names wrap, never overlap), the paper's method in
    orange and its baseline in grey, a dashed line at the baseline's mean."""
    plt = _mpl()
    papers = papers or {}
    n = max(1, len(summaries))
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    rows_max = max((len(s["rows"]) for s in summaries), default=1)
    panel_h = 0.95 + 0.36 * rows_max
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, panel_h * nrows), squeeze=False)
    for ax in axes.flat[len(summaries):]:
        ax.axis("off")
    for ax, s in zip(axes.flat, summaries):
        method, baseline = _marks(s, papers)
        rows = s["rows"]
        y = np.arange(len(rows))[::-1]  # first row on top
        colours = ["#fd8d3c" if r["method"] == method else "#bdbdbd" if r["method"] == baseline else "#9ecae1"
                   for r in rows]
        ax.barh(y, [r["mean"] for r in rows], xerr=[r["std"] for r in rows], color=colours, edgecolor="#3c3c3c",
                linewidth=0.6, capsize=3, height=0.7, error_kw={"elinewidth": 1})
        for yi, r in zip(y, rows):
            ax.scatter(r["per_seed"], np.full(len(r["per_seed"]), yi), color="k", s=6, zorder=3)
        labels = [_wrap(r["method"]) + (" (method)" if r["method"] == method else
                                        " (baseline)" if r["method"] == baseline else "") for r in rows]
        ax.set_yticks(y, labels, fontsize=7)
        if baseline is not None:
            ax.axvline(next(r["mean"] for r in rows if r["method"] == baseline), color="#636363", ls="--", lw=0.8)
        arrow = "higher is better" if s.get("higher_is_better", True) else "lower is better"
        ax.set_xlabel(f"{s['metric']} ({s['unit']}), {arrow}; {len(s['seeds'])} seeds", fontsize=7)
        ax.set_title(_wrap(f"{s['paper']}: {s['benchmark']}", 70), fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def aggregate(results_dir: str | Path = RESULTS, runs: Sequence[str | Path] = ()) -> Path:
    """Collect every ``results/*/summary.json`` into ``results/README.md`` and ``overview.png``; with
    ``runs``, add the real-benchmark runs under those folders (``shared.real_runs``)."""
    from .real_runs import gather_runs, load_papers, markdown

    results_dir = Path(results_dir)
    papers = load_papers(results_dir / "papers.yaml")
    summaries = []
    for f in sorted(results_dir.glob("*/summary.json")):
        try:
            summaries.append(json.loads(f.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON ({e})") from None
    lines = ["# Results", "",
             "Made by `make results` from every `results/<paper>/summary.json` (embedded defaults) and, with "
             "`make results RUNS=<dir>`, the real-benchmark runs under `<dir>`.", "",
             "## Embedded defaults", "",
             "| paper | benchmark | metric | method | mean ± std | seeds |", "| --- | --- | --- | --- | --- | --- |"]
    for s in summaries:
        method, baseline = _marks(s, papers)
        for r in s["rows"]:
            tag = " (method)" if r["method"] == method else " (baseline)" if r["method"] == baseline else ""
            lines.append(f"| {s['paper']} | {s['benchmark']} | {s['metric']} ({s['unit']}) | {r['method']}{tag} | "
                         f"{r['mean']:.2f} ± {r['std']:.2f} | {len(r['per_seed'])} |")
    lines += ["", "![overview](overview.png)", ""]
    if runs:
        lines += markdown(gather_runs(list(runs), papers))
    (results_dir / "README.md").write_text("\n".join(lines).rstrip() + "\n")
    plot_overview(summaries, results_dir / "overview.png", papers)
    return results_dir / "README.md"


def main(argv: list[str] | None = None) -> int:
    from .errors import cli_errors

    p = argparse.ArgumentParser(prog="make results", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="*", default=[], metavar="DIR",
                   help="folders holding run folders (config.yaml + metrics.jsonl) to gather, e.g. runs")
    p.add_argument("--results", default=str(RESULTS), help="results folder (default: results/)")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    args = p.parse_args(argv)
    with cli_errors("make results", argv):
        print(aggregate(args.results, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
