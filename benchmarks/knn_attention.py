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

``--layer``: one attention layer alone (q, k, v of DeiT-S shape, forward + backward), interleaved:
SDPA, the default ``fast`` form, the same with the compiled selection switched off (``torch.topk``),
and ``fast`` at k = N (no selection: the unfused attention's own cost). Milliseconds, median.
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

from knn_attention.convert import dense_to_knn  # noqa: E402


def build(variant: str, base: torch.nn.Module) -> torch.nn.Module:
    model = copy.deepcopy(base)
    if variant == "knn":
        dense_to_knn(model, 100, impl="fast")
    elif variant == "knn_threshold":
        dense_to_knn(model, 100, impl="threshold")
    elif variant == "knn_official":
        dense_to_knn(model, 100, impl="scatter")
    return model


def layer_times(batch: int, heads: int, tokens: int, head_dim: int, k: int, reps: int) -> dict[str, list[float]]:
    """Forward + backward of one attention layer, every variant interleaved round-robin (seconds)."""
    import os
    import time

    from knn_attention.model import knn_attention_fast

    g = torch.Generator().manual_seed(0)
    q, kk, v = (torch.randn(batch, heads, tokens, head_dim, generator=g).requires_grad_() for _ in range(3))
    grad = torch.randn(batch, heads, tokens, head_dim, generator=g)
    scale = head_dim ** -0.5

    def torch_topk():
        os.environ["VISIONREPRO_KNN_NATIVE"] = "0"
        try:
            knn_attention_fast(q, kk, v, k, scale).backward(grad)
        finally:
            del os.environ["VISIONREPRO_KNN_NATIVE"]

    variants = {
        "sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(q, kk, v, scale=scale).backward(grad),
        "fast": lambda: knn_attention_fast(q, kk, v, k, scale).backward(grad),
        "fast_torch_topk": torch_topk,
        "fast_k=N": lambda: knn_attention_fast(q, kk, v, tokens, scale).backward(grad),
    }
    times: dict[str, list[float]] = {n: [] for n in variants}
    for f in variants.values():
        f()
    for _ in range(reps):
        for n, f in variants.items():
            t0 = time.perf_counter()
            f()
            times[n].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="deit_small_patch16_224")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--variants", default="dense,knn,knn_threshold,knn_official")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--layer", action="store_true", help="time one attention layer instead of a training step")
    args = ap.parse_args(argv)
    if args.layer:
        times = layer_times(args.batch, 6, (args.img // 16) ** 2 + 1, 64, 100, max(args.reps, 20))
        med = {v: statistics.median(ts) for v, ts in times.items()}
        print(f"one attention layer, B={args.batch}, h=6, N={(args.img // 16) ** 2 + 1}, d=64, k=100, forward + "
              f"backward, {torch.get_num_threads()} threads, median of {max(args.reps, 20)} interleaved runs")
        for v, m in med.items():
            print(f"{v:16s} {m * 1e3:7.2f} ms  {m / med['sdpa']:6.3f}x sdpa")
        out = {"layer": True, "median_s": med, "steps_s": times}
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
        return out
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
