"""``make reproduce PAPER=mhformer``: MHFormer vs its single-hypothesis ablation vs a per-frame lifter.

Without ``--data``: the embedded skeleton motion (``shared.data.skeleton``: H36M-17 layout, 4 H36M-like
cameras, detector-like 2D noise) is written as VideoPose3D ``.npz`` files and read back through the real
Human3.6M loader; each method is trained per seed with the official recipe shrunk to 2 CPU cores and
scored with the official protocol (flip TTA, centre frame, action-wise MPJPE in mm). Rows:
``per_frame_mlp``, ``single_hypothesis``, ``mhformer``; P-MPJPE, N-MPJPE and the flip-TTA gain go into
``summary.json`` (``extra``) and ``summary.md``.

With ``--data ROOT``: runs ``mhformer/scripts/train_h36m.sh`` on the real Human3.6M files.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from shared.cli import launch_script, parse_seeds, reproduce_parser
from shared.config import load_config, to_dict
from shared.data.skeleton import skeleton_motion
from shared.engine import Trainer
from shared.results import write_summary

from .model import count_parameters
from .train import MHFormerConfig, MHFormerTask

HERE = Path(__file__).resolve().parent
METHODS = {  # row name -> config
    "per_frame_mlp": "per-frame-mlp_1f_1xb32-3e_synth.yaml",
    "single_hypothesis": "single-hypothesis-lite_9f_1xb32-3e_synth.yaml",
    "mhformer": "mhformer-lite_9f_1xb32-3e_synth.yaml",
}
QUICK = {  # --quick: seconds, for the smoke test
    "per_frame_mlp": ["engine.epochs=1", "data.train_stride=40", "data.test_stride=40"],
    "single_hypothesis": ["engine.epochs=1", "model.frames=9", "model.channel=16", "model.d_hid=32",
                          "data.train_stride=40", "data.test_stride=40"],
    "mhformer": ["engine.epochs=1", "model.frames=9", "model.channel=16", "model.d_hid=32",
                 "data.train_stride=40", "data.test_stride=40"],
}


def run_method(method: str, seed: int, data_root: Path, run_dir: Path, quick: bool) -> tuple[dict, list[float], int]:
    """Train one method for one seed; returns (final metrics, train-loss curve in mm, parameter count)."""
    overrides = [f"data.root={data_root}", f"engine.seed={seed}", "logger.progress=false", "engine.device=cpu"]
    cfg = load_config(HERE / "configs" / METHODS[method], MHFormerConfig,
                      overrides + (QUICK[method] if quick else []))
    trainer = Trainer(MHFormerTask(cfg), cfg, run_dir)
    metrics = trainer.fit()
    curve = [1000.0 * row["train/loss"] for row in trainer.history]
    return metrics, curve, count_parameters(trainer.model)


def main(argv: list[str] | None = None) -> int:
    args = reproduce_parser("mhformer", __doc__.split("\n")[0]).parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / "train_h36m.sh", args.data, args.gpus)
    seeds = parse_seeds(args.seeds)
    # The machine is shared: one intra-op thread avoids spin-waiting threads (override: MHFORMER_THREADS).
    torch.set_num_threads(int(os.environ.get("MHFORMER_THREADS", "1")))
    t0 = time.time()
    data_root = skeleton_motion(seed=0, frames=120 if args.quick else 600)
    out = Path(args.out) if args.out else None
    runs = out / "runs" if (args.quick and out) else Path("runs") / "mhformer-reproduce"
    rows: dict[str, list[float]] = {m: [] for m in METHODS}
    extra: dict[str, dict] = {k: {m: [] for m in METHODS} for k in ("p_mpjpe", "n_mpjpe", "flip_gain_mm",
                                                                    "seconds")}
    curves: dict[str, list[float]] = {}
    params: dict[str, int] = {}
    for seed in seeds:
        for method in METHODS:
            t = time.time()
            m, curve, params[method] = run_method(method, seed, data_root, runs / f"{method}_s{seed}", args.quick)
            rows[method].append(m["mpjpe"])
            extra["p_mpjpe"][method].append(round(m["p_mpjpe"], 2))
            extra["n_mpjpe"][method].append(round(m["n_mpjpe"], 2))
            extra["flip_gain_mm"][method].append(round(m["mpjpe_noflip"] - m["mpjpe"], 2))
            extra["seconds"][method].append(round(time.time() - t, 1))
            if seed == seeds[0]:
                curves[method] = curve
            print(f"seed {seed} {method:18s} MPJPE {m['mpjpe']:.2f}  P-MPJPE {m['p_mpjpe']:.2f}  "
                  f"N-MPJPE {m['n_mpjpe']:.2f}  no-flip {m['mpjpe_noflip']:.2f} mm  ({time.time() - t:.0f} s)",
                  flush=True)
    wall = time.time() - t0
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    notes = ["| method | params | P-MPJPE (mm) | N-MPJPE (mm) | flip-TTA gain (mm) | train+eval s/seed |",
             "| --- | --- | --- | --- | --- | --- |"]
    for m in METHODS:
        notes.append(f"| {m} | {params[m]:,} | {mean(extra['p_mpjpe'][m]):.2f} | {mean(extra['n_mpjpe'][m]):.2f} | "
                     f"{mean(extra['flip_gain_mm'][m]):.2f} | {mean(extra['seconds'][m]):.0f} |")
    ratio = mean(rows["mhformer"]) / mean(rows["per_frame_mlp"])
    notes += ["", f"mhformer / per_frame_mlp MPJPE ratio: {ratio:.3f} (issue expects <= 0.9). "
              "Data: shared.data.skeleton(seed=0), read by mhformer.data.load_h36m; numbers are the last "
              "epoch's (no selection on the test subjects). Configs: "
              + ", ".join(f"[{m}](../../mhformer/configs/{c})" for m, c in METHODS.items())]
    write_summary(
        paper="mhformer", benchmark="skeleton motion (H36M-17, 4 cams, noisy 2D), S9/S11",
        metric="MPJPE (P1, flip TTA, action-wise)", rows=rows, seeds=seeds, wall_seconds=wall,
        config={m: to_dict(load_config(HERE / "configs" / c, MHFormerConfig)) for m, c in METHODS.items()},
        higher_is_better=False, unit="mm", out_dir=out,
        extra={"extra_metrics": extra, "params": params, "mhformer_over_mlp": round(ratio, 4)},
        curves={f"train loss (mm), seed {seeds[0]}": curves}, notes="\n".join(notes))
    print(f"wrote {(out or Path('results/mhformer'))}/summary.* in {wall:.0f} s; mhformer/mlp = {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
