"""Validation sweep behind the frozen embedded recipe: every KD row gets the same number of settings.

    python -m tcl_i2v.tune [--seeds 0,1,2] [--jobs 2]     # -> results/tcl_i2v-tuning/summary.{json,md,png}

Every setting names all the values it sweeps, so re-running it on the frozen recipe gives the same table.
Runs on the validation draw (SynVideo generator seed 1000 + seed, never the reported draws), each
setting of :data:`GRID` on top of the recipe ``configs/tcl-ml_tiny_1xb32-30e_synvideo.yaml``; the winner
of each row (highest seed-mean I2V mAP at the last epoch) is what the committed recipe / rows freeze.
``tcl_ml`` is ``tcl`` plus mutual learning, so it is tried on each TCL setting (it cannot pick its own).
"""
from __future__ import annotations

import time

import numpy as np

from shared.cli import parse_seeds, reproduce_dirs, reproduce_parser
from shared.jobs import run_jobs
from shared.results import write_summary

from .reproduce import QUICK, ROWS, VALIDATION_OFFSET, run_job

TCL_SETTINGS = {"clip_tau0.5_k4": ["kd.tcl_level=clip", "kd.tcl_tau=0.5", "kd.tcl_k=4"],
                "frame_tau0.1_k1": ["kd.tcl_level=frame", "kd.tcl_tau=0.1", "kd.tcl_k=1"],
                "frame_tau0.1_k4": ["kd.tcl_level=frame", "kd.tcl_tau=0.1", "kd.tcl_k=4"]}
GRID = {  # row -> {setting name: overrides}; 3 settings per KD row
    "vkd": {"alpha0.1_beta1e-4": ["kd.vkd_alpha=0.1", "kd.vkd_beta=1e-4"],
            "alpha1_beta1e-4": ["kd.vkd_alpha=1", "kd.vkd_beta=1e-4"],
            "alpha0.1_beta1e-3": ["kd.vkd_alpha=0.1", "kd.vkd_beta=1e-3"]},
    "tkp": {"w1": ["kd.tkp_weight=1"], "w0.1": ["kd.tkp_weight=0.1"], "w0.01": ["kd.tkp_weight=0.01"]},
    "tcl": TCL_SETTINGS,
    "tcl_ml": TCL_SETTINGS,
}


def main(argv=None) -> int:
    parser = reproduce_parser("tcl_i2v-tuning", __doc__.split("\n")[0], jobs=True)
    parser.prog = "python -m tcl_i2v.tune"  # not a make reproduce target (--data / --gpus do not apply)
    parser.add_argument("--rows", default=",".join(GRID), help=f"rows to sweep (from {', '.join(GRID)})")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    rows = [r for r in args.rows.split(",") if r]
    out_dir, run_root = reproduce_dirs("tcl_i2v-tuning", args)
    base = (QUICK if args.quick else []) + list(args.overrides)
    t0 = time.time()
    jobs = [((s, "teacher", ""), (s, "teacher", base, s + VALIDATION_OFFSET, str(run_root))) for s in seeds]
    keys = [(r, name) for r in rows for name in GRID[r]]
    jobs += [((s, r, name), (s, r, base + GRID[r][name], s + VALIDATION_OFFSET, str(run_root))) for r, name in keys
             for s in seeds]
    res = run_jobs(run_job, jobs, deps={(s, r, n): [(s, "teacher", "")] for r, n in keys for s in seeds},
                   workers=args.jobs)
    table = {f"{r} {n}": [res[(s, r, n)]["i2v/mAP"] for s in seeds] for r, n in keys}
    best = {r: max(GRID[r], key=lambda n: np.mean(table[f"{r} {n}"])) for r in rows}
    for k, v in table.items():
        print(f"{k:28s} {np.mean(v):6.2f} +- {np.std(v, ddof=1) if len(v) > 1 else 0:5.2f}  "
              + " ".join(f"{x:6.2f}" for x in v))
    print("best:", best)
    write_summary("tcl_i2v-tuning", "SynVideo I2V (embedded), validation draw", "mAP", table, seeds,
                  time.time() - t0, {"grid": GRID, "rows": {r: ROWS[r] for r in rows}}, out_dir=out_dir,
                  extra={"best": best, "settings_per_row": {r: len(GRID[r]) for r in rows},
                         "data_seeds": [s + VALIDATION_OFFSET for s in seeds]},
                  notes=f"Validation draw (data seeds {[s + VALIDATION_OFFSET for s in seeds]}); best per row: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
