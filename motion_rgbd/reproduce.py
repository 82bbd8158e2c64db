"""``make reproduce PAPER=motion_rgbd``: RGB-only, depth-only, late fusion and CAPF on the embedded SynRGBD set.

Per seed: render the synthetic RGB-D motion set (6 classes: two visible in both modalities, two only in
depth, two only in RGB), train the decoupled/recoupled net (DSN + FRP + RCM + DTN, tiny widths) on RGB
and on depth, then (a) late fusion = mean of the two nets' softmax, (b) CAPF initialised from the two
nets (heads dropped) and trained with the full CAPF loss. Test accuracy of the fixed head z (unimodal)
and y + r + d (CAPF) at the last epoch; no head or epoch is chosen on the test set.

With ``--data ROOT`` it launches ``motion_rgbd/scripts/<benchmark>.sh`` instead.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from shared.cli import launch_script, parse_seeds, reproduce_dirs, reproduce_parser
from shared.jobs import run_jobs
from shared.results import write_summary

from .data import CLASSES, make_synthetic
from .train import MINI_NET, evaluate_capf, evaluate_unimodal, train_capf, train_unimodal

HERE = Path(__file__).resolve().parent
FULL = {"n_train": 60, "n_test": 40, "epochs": 15, "capf_epochs": 4}
QUICK = {"n_train": 3, "n_test": 2, "epochs": 1, "capf_epochs": 1}


def confusion(pred: torch.Tensor, y: torch.Tensor, k: int) -> list[list[int]]:
    m = torch.zeros(k, k, dtype=torch.long)
    m.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    return m.tolist()


def run_seed(seed: int, sizes: dict, run_root: Path) -> dict:
    """All arms of one seed in one single-thread process."""
    torch.set_num_threads(1)
    t0 = time.time()
    train = make_synthetic(sizes["n_train"], seed=1000 + seed)
    test = make_synthetic(sizes["n_test"], seed=2000 + seed)
    out, logits = {"seed": seed}, {}
    nets = {}
    for mod in ("rgb", "depth"):
        torch.manual_seed(seed)
        nets[mod], curve = train_unimodal(train, mod, sizes["epochs"], seed, MINI_NET)
        logits[mod] = evaluate_unimodal(nets[mod], test, mod)
        out[f"{mod}_curve"] = curve
    late = logits["rgb"].softmax(-1) + logits["depth"].softmax(-1)
    torch.manual_seed(seed)
    capf, _ = train_capf(train, nets["rgb"], nets["depth"], sizes["capf_epochs"], seed, MINI_NET)
    y_, r_, d_ = evaluate_capf(capf, test)
    preds = {"rgb": logits["rgb"].argmax(-1), "depth": logits["depth"].argmax(-1), "late_fusion": late.argmax(-1),
             "capf": (y_ + r_ + d_).argmax(-1), "capf_y_only": y_.argmax(-1)}
    for k, p in preds.items():
        out[k] = 100.0 * (p == test.y).float().mean().item()
        out[f"{k}_confusion"] = confusion(p, test.y, len(CLASSES))
    out["seconds"] = time.time() - t0
    print(f"  seed {seed}: " + ", ".join(f"{k} {out[k]:.1f}" for k in preds) + f" ({out['seconds']:.0f} s)",
          flush=True)
    torch.save(capf.state_dict(), run_root / f"capf_seed{seed}.pt")
    return out


def main(argv: list[str] | None = None) -> int:
    p = reproduce_parser("motion_rgbd", __doc__.split("\n")[0], jobs=True)
    p.add_argument("--benchmark", default="nvgesture", choices=["nvgesture", "isogd", "thu_read", "ntu"],
                   help="with --data: which benchmark script to launch")
    args = p.parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / f"{args.benchmark}.sh", args.data, args.gpus, overrides=args.overrides)
    seeds = parse_seeds(args.seeds)
    out_dir, run_root = reproduce_dirs("motion_rgbd", args)
    run_root.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if args.quick else FULL
    start = time.time()
    print(f"motion_rgbd embedded reproduction: seeds {seeds}, {sizes} -> {out_dir}", flush=True)
    done = run_jobs(run_seed, [(s, (s, sizes, run_root)) for s in seeds], workers=max(1, args.jobs))
    res = [done[s] for s in seeds]
    methods = ["rgb", "depth", "late_fusion", "capf", "capf_y_only"]
    rows = {m: [r[m] for r in res] for m in methods}
    conf = {m: np.sum([r[f"{m}_confusion"] for r in res], 0).tolist() for m in methods}

    def pair_acc(m, cls):  # accuracy on a pair of classes (chance 50 % when the modality cannot see them)
        c = np.array(conf[m])
        return float(100 * sum(c[i, i] for i in cls) / c[list(cls)].sum())

    notes = ("Classes: " + ", ".join(f"c{i} {n}" for i, n in enumerate(CLASSES)) + ". c2/c3 are visible only in "
             "depth, c4/c5 only in RGB.\n\nAccuracy on approach/recede (c2, c3): "
             + ", ".join(f"{m} {pair_acc(m, (2, 3)):.1f}" for m in methods) + ".\n\nAccuracy on the rotations "
             "(c4, c5): " + ", ".join(f"{m} {pair_acc(m, (4, 5)):.1f}" for m in methods)
             + ".\n\ncapf = argmax(y + r + d), fixed in advance; capf_y_only = the posterior-fusion head alone.")
    curves = {"train loss (seed 0)": {m: res[0][f"{m}_curve"] for m in ("rgb", "depth")}}
    write_summary("motion_rgbd", "SynRGBD: 6 synthetic RGB-D motion classes, 16x32x32", "test top-1 accuracy",
                  rows, seeds, time.time() - start, {"sizes": sizes, "net": MINI_NET, "quick": args.quick},
                  out_dir=out_dir, notes=notes, curves=curves, curves_xlabel="epoch",
                  extra={"confusion": conf, "seconds_per_seed": [r["seconds"] for r in res]})
    print((out_dir / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
