"""ELSA-Swin-T vs timm Swin-T: seconds per training step (forward, backward, AdamW) on this machine.

    flock /tmp/visionrepro-heavy.lock .venv/bin/python benchmarks/elsa.py [--batch 8] [--steps 3]
        [--impls tiled,shift,unfold] [--threads N]

Both models are timed in the same process, interleaved step by step, so load on the machine hits both
alike; the median over steps is reported. The issue's goal: ELSA-Swin-T <= 1.6x Swin-T on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import interleaved_step_times  # noqa: E402
from timm.models import swin_tiny_patch4_window7_224  # noqa: E402

from elsa.model import elsa_swin_tiny  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--steps", type=int, default=3, help="timed steps per model (after one warm-up step)")
    p.add_argument("--impls", default="tiled", help="ELSA aggregation forms to time: tiled,shift,unfold")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"swin_tiny (timm)": swin_tiny_patch4_window7_224(img_size=args.img)}
    for impl in [s for s in args.impls.split(",") if s]:
        models[f"elsa_swin_tiny ({impl})"] = elsa_swin_tiny(img_size=args.img, impl=impl)
    x = torch.randn(args.batch, 3, args.img, args.img)
    y = torch.randint(0, 1000, (args.batch,))
    times = interleaved_step_times(models, x, y, args.steps, lr=1e-3)
    base = statistics.median(times["swin_tiny (timm)"])
    print(f"training step, batch {args.batch}, {args.img}px, {torch.get_num_threads()} threads, "
          f"median of {args.steps} (s/step):")
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        params = sum(p.numel() for p in models[name].parameters()) / 1e6
        out[name] = med
        print(f"  {name:<26} {med:7.3f} s   x{med / base:5.2f}   {params:6.2f}M params")
    return out


if __name__ == "__main__":
    main()
