"""The validation-draw search behind the committed embedded config (issue 17): every setting of a grid is
tried for every row (``source_only``, ``dann``, ``plain_triplet``, ``bp_triplet``) with the same effort, on
seeds 100+ (each its own data draw and init, never a reported seed), scored at the last iteration. One JSON
line per run goes to ``--log`` (a sweep cut short keeps what ran); at the end a table of seed means per row
and setting and the choice: the one setting, shared by all rows, with the best mean over the rows of each
row's seed mean (no row is tuned alone). The choice is written by hand into the embedded config; the README
logs the grid, the trials per row and the table.

    python -m bp_triplet.tune --grid main --seeds 100,101,102 --jobs 2 --log runs/bp_triplet/tune_main.jsonl

An axis in a grid's ``probe_only`` does not enter the training of a row that trains on no pseudo label
(``source_only``, ``dann``: there it only changes the label probe); such a row runs once per value of the
other axes and that result stands for each value of the probe-only axis (logged with ``"shared_run": true``).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from shared.cli import tune_parser, validation_seeds
from shared.jobs import append_jsonl, run_jobs
from shared.results import choose_setting

from .reproduce import DEFAULT_METHODS, METHODS, run_one

GRIDS = {
    # round 1: the lr (every row) x the pseudo-label threshold (the triplet rows' label set; confirmation bias)
    "main": {"axes": {"optim.lr": [0.01, 0.02], "pseudo.threshold": [0.9, 0.97]},
             "probe_only": ["pseudo.threshold"]},
    # round 2, at round 1's lr 0.01: the adversarial weight (every adapted row) x a low threshold, where the
    # kept labels are noisy and BP's confidence weights have something to discount
    "adv_threshold": {"axes": {"optim.lr": [0.01], "adv.weight": [0.5, 1.0], "pseudo.threshold": [0.5, 0.97]},
                      "probe_only": ["pseudo.threshold"]},
}
PSEUDO_FREE = ("source_only", "dann")  # rows that train on no pseudo label


def settings(grid: dict) -> list[dict]:
    axes = grid["axes"]
    return [dict(zip(axes, vals)) for vals in itertools.product(*axes.values())]


def trained_setting(method: str, setting: dict, grid: dict) -> dict:
    """What of ``setting`` enters ``method``'s training: probe-only axes are dropped for pseudo-label-free rows,
    ``adv.*`` axes for rows without the adversarial loss."""
    drop = set(grid.get("probe_only", [])) if method in PSEUDO_FREE else set()
    if "adv.enabled=false" in METHODS[method]:
        drop |= {k for k in setting if k.startswith("adv.")}
    return {k: v for k, v in setting.items() if k not in drop}


def _key(setting: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in setting.items())


def _tuned_run(method: str, seed: int, run_root: Path, quick: bool, extra: list[str], log: str, meta: dict) -> dict:
    r = run_one(method, seed, run_root, quick, extra)
    rec = {**meta, "target_top1": round(r["target_top1"], 2), "a_distance": round(r["a_distance"], 3),
           "lambda_star": round(r["lambda_star"], 2)}
    return append_jsonl(log, rec)


def search(grid_name: str, seeds: list[int], methods: list[str], jobs: int = 2, log: str = "runs/bp_triplet/tune.jsonl",
           quick: bool = False) -> tuple[dict[str, dict[str, float]], str]:
    """Every setting of ``GRIDS[grid_name]`` for every row and seed; ``({setting: {row: seed mean}}, choice)``."""
    grid = GRIDS[grid_name]
    grid_settings = settings(grid)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    run_root = Path("runs") / "bp_triplet" / f"tune_{grid_name}{'_quick' if quick else ''}"
    runs, seen = [], set()
    for m in methods:
        for st in grid_settings:
            trained = trained_setting(m, st, grid)
            for s in seeds:
                if (m, _key(trained), s) in seen:
                    continue
                seen.add((m, _key(trained), s))
                extra = [f"{k}={v}" for k, v in trained.items()]
                meta = {"grid": grid_name, "method": m, **trained, "seed": s}
                runs.append(((m, _key(trained), s),
                             (m, s, run_root / _key(trained).replace("=", "").replace(",", "_"), quick, extra, log,
                              meta)))
    print(f"{len(runs)} runs ({len(grid_settings)} settings per row, seeds {seeds})", flush=True)
    done = run_jobs(_tuned_run, runs, workers=max(1, jobs))
    table = {}  # setting -> method -> seed mean
    for st in grid_settings:
        for m in methods:
            key = _key(trained_setting(m, st, grid))
            table.setdefault(_key(st), {})[m] = float(np.mean([done[(m, key, s)]["target_top1"] for s in seeds]))
    best = choose_setting(table, higher_is_better=True,
                          trials=f"{len(grid_settings)} settings x {len(seeds)} seeds")
    return table, best


def main(argv: list[str] | None = None) -> int:
    p = tune_parser("bp_triplet", __doc__, GRIDS, "main", seeds="100,101,102", log="runs/bp_triplet/tune.jsonl",
                    quick=True)
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"from: {', '.join(METHODS)}")
    args = p.parse_args(argv)
    seeds = validation_seeds(args.seeds)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    search(args.grid, seeds, methods, args.jobs, args.log, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
