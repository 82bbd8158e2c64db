"""MHFormer inference speed on CPU: scored frames per second and peak memory for N = 27, 81, 243.

    flock /tmp/visionrepro-heavy.lock .venv/bin/python benchmarks/mhformer.py [--frames 27,81,243]
        [--batch 8] [--iters 3] [--threads 2] [--no-flip]

Full-size models (C = 512, d_hid = 1024), random weights, eval mode, ``torch.inference_mode``. One
window yields one scored (centre) frame, so frames/s = windows/s; with flip TTA (the evaluation
protocol, on by default) every window costs two forward passes. Each N runs in its own process so
that the peak resident memory (``ru_maxrss``) belongs to that N alone.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mhformer.data import flip_pose  # noqa: E402
from mhformer.model import MHFormer, count_parameters  # noqa: E402
from shared.data.skeleton import JOINTS_LEFT, JOINTS_RIGHT  # noqa: E402


def child(frames: int, batch: int, iters: int, threads: int, flip: bool) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MHFormer(frames=frames).eval()
    x = torch.randn(batch, frames, 17, 2)
    left, right = list(JOINTS_LEFT), list(JOINTS_RIGHT)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def run() -> float:
        t0 = time.perf_counter()
        out = model(x)
        if flip:
            out = (out + flip_pose(model(flip_pose(x, left, right)), left, right)) / 2
        return time.perf_counter() - t0

    with torch.inference_mode():
        run()  # warm-up
        times = [run() for _ in range(iters)]
    sec = statistics.median(times)
    return {"frames": frames, "params_M": round(count_parameters(model) / 1e6, 2), "batch": batch,
            "frames_per_s": round(batch / sec, 1), "ms_per_batch": round(1000 * sec, 1),
            "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "model_rss_MB": round(rss_model, 1), "threads": threads, "flip_tta": flip}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", default="27,81,243")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-flip", action="store_true", help="one forward pass per window (no flip TTA)")
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.iters, args.threads, not args.no_flip)))
        return []
    rows = []
    for n in (int(s) for s in args.frames.split(",")):
        cmd = [sys.executable, __file__, "--child", str(n), "--batch", str(args.batch), "--iters", str(args.iters),
               "--threads", str(args.threads)] + (["--no-flip"] if args.no_flip else [])
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    print(f"MHFormer inference, batch {args.batch}, {args.threads} threads, flip TTA {'off' if args.no_flip else 'on'}")
    print(f"{'N':>5} {'params':>8} {'frames/s':>9} {'ms/batch':>9} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['frames']:>5} {r['params_M']:>7}M {r['frames_per_s']:>9} {r['ms_per_batch']:>9} "
              f"{r['peak_rss_MB']:>12}")
    return rows


if __name__ == "__main__":
    main()
