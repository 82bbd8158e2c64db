"""k-NN vs dense ViT-S/16 training-step time, measured side by side in one process.

    flock /tmp/visionrepro-heavy.lock .venv/bin/python benchmarks/knn_attention.py [--reps 5]

One training step = forward, cross-entropy, backward, AdamW update, batch of 224x224 images.
``dense``: timm's DeiT-S (``Attention``, SDPA). ``knn``: the same weights with :class:`KNNAttention`
(``impl="fast"``: threshold form with a hand-written backward, k = 100 of 197 as in the official
code). ``knn_threshold``: the same math through plain autograd (``masked_fill`` + softmax).
``knn_official``: the official form (topk + zero mask + scatter + where). Variants run interleaved
(round robin) so that load from other processes hits all of them alike; the median step time of
each is reported with its ratio to dense.
Goal (issue 5): knn <= 1.15x dense on CPU.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm  # noqa: E402
from _timing import interleaved_step_times  # noqa: E402

from knn_attention.model import dense_to_knn  # noqa: E402


def build(variant: str, base: torch.nn.Module) -> torch.nn.Module:
    model = copy.deepcopy(base)
    if variant == "knn":
        dense_to_knn(model, 100, impl="fast")
    elif variant == "knn_threshold":
        dense_to_knn(model, 100, impl="threshold")
    elif variant == "knn_official":
        dense_to_knn(model, 100, impl="scatter")
    return model


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="deit_small_patch16_224")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--variants", default="dense,knn,knn_threshold,knn_official")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    base = timm.create_model(args.model, pretrained=False, img_size=args.img)
    x = torch.randn(args.batch, 3, args.img, args.img)
    y = torch.randint(0, 1000, (args.batch,))
    variants = [v for v in args.variants.split(",") if v]
    times = interleaved_step_times({v: build(v, base).train() for v in variants}, x, y, args.reps)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    ref = med.get("dense")
    print(f"{args.model}, batch {args.batch}, {args.img}px, {torch.get_num_threads()} threads, "
          f"median of {args.reps} interleaved steps")
    print(f"{'variant':14s} {'s/step':>8s} {'x dense':>8s}  all steps (s)")
    for v in variants:
        ratio = f"{med[v] / ref:8.3f}" if ref else "       -"
        print(f"{v:14s} {med[v]:8.3f} {ratio}  " + " ".join(f"{t:.3f}" for t in times[v]))
    out = {"model": args.model, "batch": args.batch, "img": args.img, "threads": torch.get_num_threads(),
           "median_s": med, "ratio_to_dense": {v: med[v] / ref for v in variants} if ref else {},
           "steps_s": times}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
