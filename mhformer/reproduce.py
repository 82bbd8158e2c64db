"""``make reproduce PAPER=mhformer``: MHFormer vs its single-hypothesis ablation, VideoPose3D and a per-frame lifter.

Without ``--data``: for every seed, the embedded skeleton motion (``shared.data.skeleton`` with that seed:
H36M-17 layout, 4 H36M-like cameras, detector-like 2D with occlusion bursts and left/right swaps) is
written as VideoPose3D ``.npz`` files and read back through the real Human3.6M loader; each row is trained
with the official recipe shrunk to 2 CPU cores (one single-thread process per core, ``--jobs``) and scored
with the official protocol (flip TTA, centre frame, action-wise MPJPE in mm). Rows: ``per_frame_mlp``,
``single_hypothesis``, ``mhformer``, ``videopose3d``; P-MPJPE, N-MPJPE, the MPJPE on the frames whose 2D is
corrupted (``mpjpe_hard``) and on the rest, the flip-TTA gain and the paired per-seed differences go into
``summary.json`` (``extra``) and ``summary.md``. ``--set key.sub=value ...`` applies to every embedded row alike
(the committed config is what ``mhformer.tune`` chose on the validation draws; see the README).

With ``--data ROOT``: runs ``mhformer/scripts/train_h36m.sh`` on the real Human3.6M files.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from shared.cli import launch_script, parse_seeds, reproduce_parser
from shared.data.skeleton import skeleton_motion
from shared.jobs import run_jobs
from shared.results import tuning_line, write_summary

HERE = Path(__file__).resolve().parent
METHODS = {  # row name -> config
    "per_frame_mlp": "per-frame-mlp_1f_1xb32-5e_synth.yaml",
    "single_hypothesis": "single-hypothesis-lite_27f_1xb32-5e_synth.yaml",
    "mhformer": "mhformer-lite_27f_1xb32-5e_synth.yaml",
    "videopose3d": "videopose3d_27f_1xb32-5e_synth.yaml",
}
QUICK_COMMON = ["engine.epochs=1", "data.train_stride=60", "data.test_stride=60"]
QUICK = {  # --quick: seconds, for the smoke test
    "per_frame_mlp": ["model.channel=32"],
    "single_hypothesis": ["model.frames=9", "model.channel=16", "model.d_hid=32"],
    "mhformer": ["model.frames=9", "model.channel=16", "model.d_hid=32"],
    "videopose3d": ["model.frames=9", "model.channel=16"],
}
COMPARE = ("per_frame_mlp", "single_hypothesis", "videopose3d")  # paired differences: mhformer - these
KEYS = ("p_mpjpe", "n_mpjpe", "mpjpe_hard", "mpjpe_clean", "flip_gain_mm", "seconds")
# How each row's settings were chosen (validation draws 100 and 101 only, never a reported seed; README,
# "What changed for issue 15"): distinct settings tried, the committed one included, and the training runs
# spent on the choice. The same search for every row. Written into summary.json as ``tuning_trials``;
# change it when the rows are re-tuned.
_HOW = ("mhformer.tune --grid schedule on validation draws 100/101, every row alike: round 1, 6 schedules "
        "at 3 epochs (12 runs); round 2, the chosen cosine/lr 3e-3 at 5 epochs (2 runs, committed); widths "
        "set only to match the parameter counts")
TUNING_TRIALS = {m: {"settings": 7, "validation_runs": 14, "how": _HOW} for m in METHODS}


def data_for(seed: int, quick: bool) -> Path:
    """The embedded data draw of ``seed`` (the data follows the seed)."""
    return skeleton_motion(seed=seed, frames=120 if quick else 600)


def run_method(method: str, seed: int, data_root: str, run_dir: str, quick: bool,
               extra: list[str] | tuple[str, ...] = ()) -> dict:
    """Train one row for one seed in this process (single thread); final metrics, loss curve, parameters.
    ``extra``: dotted overrides on top of the row's config (``--set``, ``mhformer.tune``: every row alike)."""
    import torch

    from shared.config import load_config
    from shared.engine import Trainer

    from .model import count_parameters
    from .train import MHFormerConfig, MHFormerTask

    torch.set_num_threads(int(os.environ.get("MHFORMER_THREADS", "1")))
    t = time.time()
    overrides = [f"data.root={data_root}", f"engine.seed={seed}", "logger.progress=false", "engine.device=cpu"]
    cfg = load_config(HERE / "configs" / METHODS[method], MHFormerConfig,
                      overrides + ((QUICK_COMMON + QUICK[method]) if quick else []) + list(extra))
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run dir every time (metrics.jsonl would append)
    trainer = Trainer(MHFormerTask(cfg), cfg, Path(run_dir))
    m = trainer.fit()
    out = {k: float(m[k]) for k in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjpe_noflip", "mpjpe_hard", "mpjpe_clean",
                                    "hard_fraction")}
    out["curve"] = [1000.0 * row["train/loss"] for row in trainer.history]
    out["params"] = count_parameters(trainer.model)
    out["seconds"] = time.time() - t
    print(f"seed {seed} {method:18s} MPJPE {out['mpjpe']:.2f}  hard {out['mpjpe_hard']:.2f}  "
          f"P-MPJPE {out['p_mpjpe']:.2f}  N-MPJPE {out['n_mpjpe']:.2f}  ({out['seconds']:.0f} s)", flush=True)
    return out


def _std(v: list[float]) -> float:
    m = sum(v) / len(v)
    return (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0


def claims_of(rows: dict[str, list[float]]) -> dict[str, dict]:
    """The issue's three claims from per-seed MPJPE (mm, lower is better): ``margin`` = 0.9 x the MLP's mean
    minus mhformer's, or the baseline's mean minus mhformer's; ``pooled_std`` = sqrt((s_a^2 + s_b^2) / 2)
    of the two rows' sample stds; a claim holds when the margin exceeds the pooled std."""
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    pooled = lambda a, b: ((_std(rows[a]) ** 2 + _std(rows[b]) ** 2) / 2) ** 0.5  # noqa: E731
    claims = {
        "mhformer <= 0.9 x per_frame_mlp": {
            "margin": round(0.9 * mean(rows["per_frame_mlp"]) - mean(rows["mhformer"]), 2),
            "pooled_std": round(pooled("mhformer", "per_frame_mlp"), 2)},
        **{f"mhformer < {b}": {"margin": round(mean(rows[b]) - mean(rows["mhformer"]), 2),
                               "pooled_std": round(pooled("mhformer", b), 2)} for b in COMPARE[1:]},
    }
    for c in claims.values():
        c["holds"] = c["margin"] > c["pooled_std"]
    return claims


def main(argv: list[str] | None = None) -> int:
    args = reproduce_parser("mhformer", __doc__.split("\n")[0], jobs=True).parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / "train_h36m.sh", args.data, args.gpus, overrides=args.overrides)
    from shared.config import load_config, to_dict

    from .train import MHFormerConfig

    seeds = parse_seeds(args.seeds)
    t0 = time.time()
    roots = {s: data_for(s, args.quick) for s in seeds}
    out = Path(args.out) if args.out else None
    runs = out / "runs" if (args.quick and out) else Path("runs") / "mhformer-reproduce"
    # Slowest rows first so the two workers finish together.
    order = ("mhformer", "single_hypothesis", "videopose3d", "per_frame_mlp")
    sets = list(args.overrides)  # --set: applied to every row alike
    jobs = [((s, m), (m, s, str(roots[s]), str(runs / f"{m}_s{s}"), args.quick, sets))
            for s in seeds for m in order]
    res = run_jobs(run_method, jobs, workers=args.jobs)
    wall = time.time() - t0
    rows = {m: [res[(s, m)]["mpjpe"] for s in seeds] for m in METHODS}
    extra = {k: {m: [round(res[(s, m)][k] if k != "flip_gain_mm" else
                           res[(s, m)]["mpjpe_noflip"] - res[(s, m)]["mpjpe"], 2) for s in seeds]
                 for m in METHODS} for k in KEYS}
    params = {m: res[(seeds[0], m)]["params"] for m in METHODS}
    paired = {f"mhformer - {b}": [round(res[(s, "mhformer")]["mpjpe"] - res[(s, b)]["mpjpe"], 2) for s in seeds]
              for b in COMPARE}
    paired_hard = {f"mhformer - {b}": [round(res[(s, "mhformer")]["mpjpe_hard"] - res[(s, b)]["mpjpe_hard"], 2)
                                       for s in seeds] for b in COMPARE}
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    ratio = mean(rows["mhformer"]) / mean(rows["per_frame_mlp"])
    claims = claims_of(rows)
    hard_frac = mean([res[(s, "mhformer")]["hard_fraction"] for s in seeds])
    notes = ["| method | params | P-MPJPE (mm) | N-MPJPE (mm) | MPJPE corrupted frames | MPJPE other frames | "
             "flip-TTA gain (mm) | train+eval s/run |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in METHODS:
        e = {k: mean(extra[k][m]) for k in KEYS}
        notes.append(f"| {m} | {params[m]:,} | {e['p_mpjpe']:.2f} | {e['n_mpjpe']:.2f} | {e['mpjpe_hard']:.2f} | "
                     f"{e['mpjpe_clean']:.2f} | {e['flip_gain_mm']:.2f} | {e['seconds']:.0f} |")
    notes += ["", "Paired per-seed differences, MPJPE (mm; negative = mhformer better), seeds "
              + ", ".join(map(str, seeds)) + ":", "", "| pair | all frames | corrupted frames |",
              "| --- | --- | --- |"]
    for k in paired:
        notes.append(f"| {k} | {', '.join(f'{v:+.2f}' for v in paired[k])} | "
                     f"{', '.join(f'{v:+.2f}' for v in paired_hard[k])} |")
    notes += ["", "| claim | margin (mm) | pooled seed std (mm) | holds |", "| --- | --- | --- | --- |"]
    for k, c in claims.items():
        notes.append(f"| {k} | {c['margin']:+.2f} | {c['pooled_std']:.2f} | {'yes' if c['holds'] else 'no'} |")
    notes += ["", f"mhformer / per_frame_mlp MPJPE ratio: {ratio:.3f} (issue: <= 0.9). Corrupted frames "
              f"(an occluded or swapped joint in the scored frame's 2D): {100 * hard_frac:.0f} % of the test "
              "frames. Data: shared.data.skeleton(seed=<seed>), 2D `detector`, read by mhformer.data.load_h36m; "
              "numbers are the last epoch's (no selection on the test subjects). Configs: "
              + ", ".join(f"[{m}](../../mhformer/configs/{c})" for m, c in METHODS.items()),
              "", tuning_line(TUNING_TRIALS)]
    write_summary(
        paper="mhformer", benchmark="skeleton motion (H36M-17, 4 cams, detector-like 2D), S9/S11",
        metric="MPJPE (P1, flip TTA, action-wise)", rows=rows, seeds=seeds, wall_seconds=wall,
        config={m: to_dict(load_config(HERE / "configs" / c, MHFormerConfig, sets)) for m, c in METHODS.items()},
        higher_is_better=False, unit="mm", out_dir=out,
        extra={"extra_metrics": extra, "params": params, "mhformer_over_mlp": round(ratio, 4),
               "paired_differences_mm": paired, "paired_differences_hard_mm": paired_hard, "claims": claims,
               "hard_fraction": round(hard_frac, 4), "tuning_trials": TUNING_TRIALS},
        curves={f"train loss (mm), seed {seeds[0]}": {m: res[(seeds[0], m)]["curve"] for m in METHODS}},
        notes="\n".join(notes))
    print(f"wrote {(out or Path('results/mhformer'))}/summary.* in {wall:.0f} s; mhformer/mlp = {ratio:.3f}")
    for k, c in claims.items():
        print(f"  {k}: margin {c['margin']:+.2f} vs pooled std {c['pooled_std']:.2f} -> "
              f"{'holds' if c['holds'] else 'fails'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
