"""``python -m motion_rgbd.learnability``: can the decoupling suite's ``rgb`` row learn each class? (diagnosis)

Trains the ``rgb`` row of the ``decoupling`` suite on **validation draws only** (seeds >= 100: train data
9000 + s, test 9500 + s) under named variants of the generator / schedule (``--variant "NAME=key=value;..."``)
and prints the per-class accuracy on the training clips (test geometry) and on the test clips, so a pair that
is not learnt can be told apart as not fitted (low train accuracy) or not generalised (high train, low test).
Never looks at another row or at a claim. Output: ``<out>`` (JSON, one entry per variant and seed).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from shared.cli import parse_seeds
from shared.config import load_config
from shared.jobs import run_jobs

from .reproduce import CONFIG, EmbeddedConfig, _call, _load, make_data
from .synthetic import CLASSES
from .train import evaluate_unimodal, train_unimodal

MIN_SEED = 100


def learn_arm(config: str, overrides: list[str], name: str, seed: int, root: Path) -> dict:
    torch.set_num_threads(1)
    t0 = time.time()
    cfg = load_config(config, EmbeddedConfig, overrides)
    path = root / f"{name}_s{seed}.pt"
    make_data(cfg, "decoupling", seed, True, path)
    train, test = _load(path)
    tc = cfg.decoupling.train
    torch.manual_seed(seed)
    model, curve = train_unimodal(train, "rgb", tc.epochs, seed, asdict(cfg.model), tc.lr, tc.batch, tc.distill_warm,
                                  augment=cfg.augment if cfg.augment.enabled else None)
    out = {"loss_last": curve[-1]}
    for split, data in (("train", cfg.augment.test(train)), ("test", test)):
        pred = evaluate_unimodal(model, data, "rgb").argmax(-1)
        out[split] = [100 * float((pred[data.y == c] == c).float().mean()) for c in range(len(CLASSES))]
    out["seconds"] = time.time() - t0
    print(f"  {name} seed {seed}: train {[round(v) for v in out['train']]} test {[round(v) for v in out['test']]} "
          f"({out['seconds']:.0f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m motion_rgbd.learnability", description=__doc__.split("\n")[0])
    p.add_argument("--variant", action="append", default=[], metavar="NAME=key=value;...",
                   help="a named list of config overrides (repeatable); 'NAME=' is the frozen config")
    p.add_argument("--seeds", default="100,101", help="validation seeds (>= 100)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--out", default="runs/motion_rgbd-learnability/learnability.json")
    p.add_argument("--run-root", default="runs/motion_rgbd-learnability")
    args = p.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    if min(seeds) < MIN_SEED:
        p.error(f"validation seeds only (>= {MIN_SEED}); the reported seeds are never used for diagnosis")
    variants = {}
    for v in args.variant or ["frozen="]:
        name, _, rest = v.partition("=")
        variants[name] = [o for o in rest.split(";") if o]
    root = Path(args.run_root)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [((n, s), (learn_arm, args.config, o, n, s, root)) for n, o in variants.items() for s in seeds]
    done = run_jobs(_call, jobs, workers=max(1, args.jobs))
    res = {n: {"overrides": o, "seeds": {s: done[(n, s)] for s in seeds}} for n, o in variants.items()}
    for n, r in res.items():
        pair = [v for s in seeds for v in r["seeds"][s]["test"][:2]]
        print(f"{n}: expand/contract test per-class mean {sum(pair) / len(pair):.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
