"""ELSA-Swin-T vs timm Swin-T and ELSA-VOLO-D1 vs timm VOLO-D1: seconds per training step (forward,
backward, AdamW) on this machine.

    flock /tmp/visionrepro-heavy.lock .venv/bin/python benchmarks/elsa.py [--family swin,volo] [--batch 8]
        [--steps 3] [--impls auto,tiled,shift,unfold] [--threads N]

Each ELSA model is timed in the same process as its baseline, interleaved step by step, so load on the
machine hits both alike; the median over steps is reported. Goals (issues 7 and 20, 2 CPU cores):
ELSA-Swin-T <= 1.6x Swin-T; ELSA-VOLO-D1 <= 1.5x VOLO-D1. ELSA-VOLO's default lam = 1 has a
multiplicative ghost term, so ``tiled`` does not apply to it (``auto`` picks ``unfold`` there).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import interleaved_step_times  # noqa: E402
from timm.models import swin_tiny_patch4_window7_224, volo_d1_224  # noqa: E402

from elsa.model import elsa_swin_tiny  # noqa: E402
from elsa.volo import elsa_volo_d1_224  # noqa: E402

FAMILIES = {"swin": ("swin_tiny (timm)", swin_tiny_patch4_window7_224, "elsa_swin_tiny", elsa_swin_tiny, "tiled"),
            "volo": ("volo_d1 (timm)", volo_d1_224, "elsa_volo_d1", elsa_volo_d1_224, "auto")}


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="swin,volo", help="which pairs to time: swin,volo")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--steps", type=int, default=3, help="timed steps per model (after one warm-up step)")
    p.add_argument("--impls", default="", help="ELSA aggregation forms to time (default: tiled for "
                                               "ELSA-Swin, auto for ELSA-VOLO): auto,tiled,shift,unfold")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = p.parse_args(argv)
    families = [f for f in args.family.split(",") if f]
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        p.error(f"--family: unknown {', '.join(bad)} (choose from {', '.join(FAMILIES)})")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {}
    for fam in families:
        base_name, base_fn, name, fn, default_impl = FAMILIES[fam]
        torch.manual_seed(0)
        models = {base_name: base_fn(img_size=args.img)}
        for impl in [s for s in (args.impls or default_impl).split(",") if s]:
            models[f"{name} ({impl})"] = fn(img_size=args.img, impl=impl)
        x = torch.randn(args.batch, 3, args.img, args.img)
        y = torch.randint(0, 1000, (args.batch,))
        times = interleaved_step_times(models, x, y, args.steps, lr=1e-3)
        base = statistics.median(times[base_name])
        print(f"training step, batch {args.batch}, {args.img}px, {torch.get_num_threads()} threads, "
              f"median of {args.steps} (s/step):")
        for n, ts in times.items():
            med = statistics.median(ts)
            params = sum(q.numel() for q in models[n].parameters()) / 1e6
            out[n] = med
            print(f"  {n:<26} {med:7.3f} s   x{med / base:5.2f}   {params:6.2f}M params", flush=True)
    return out


if __name__ == "__main__":
    main()
