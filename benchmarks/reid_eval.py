"""ReID evaluation at MSMT17 scale: chunked torch `reid_evaluate` vs the per-query numpy reference.

    flock /tmp/visionrepro-heavy.lock .venv/bin/python benchmarks/reid_eval.py [--ref-queries 1000]
        [--counter auto|native|torch]   (how `reid_evaluate` counts ranks: compiled C loop or torch)

Random 768-d features with identity structure (feature = L2norm(centre[pid] + noise)), 11,659 queries x
82,161 gallery, ~3,000 ids, 15 cameras, so the Market protocol has realistic work to do (same-camera
junk, queries without a valid match). Each implementation runs in its own subprocess so that peak RSS
(VmHWM, reset after the data are generated) is its own; tracemalloc sees numpy but not torch's CPU
allocator. The reference is run on the first --ref-queries queries (0 = all) and its time is
extrapolated linearly to all queries; the two are compared query by query on that subset.
Goal (issue 2): peak <= 2 GiB and >= 10x faster than the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_data(args):
    """Deterministic features, pids and cameras (float32, generated in pieces to keep the peak low)."""
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.ids, args.dim), dtype=np.float32)
    g_pids = rng.integers(0, args.ids, args.gallery)
    q_pids = rng.integers(0, args.ids, args.queries)
    g_cams = rng.integers(0, args.cams, args.gallery)
    q_cams = rng.integers(0, args.cams, args.queries)

    def feats(pids):
        out = np.empty((len(pids), args.dim), dtype=np.float32)
        for i in range(0, len(pids), 8192):
            x = centres[pids[i : i + 8192]] + args.noise * rng.standard_normal((len(pids[i : i + 8192]), args.dim),
                                                                               dtype=np.float32)
            out[i : i + 8192] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return feats(q_pids), feats(g_pids), q_pids, g_pids, q_cams, g_cams


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def worker(args) -> None:
    import torch

    from shared.metrics import reid, reid_evaluate, reid_evaluate_reference

    qf, gf, q_pids, g_pids, q_cams, g_cams = make_data(args)
    n = args.queries if args.impl == "fast" or args.ref_queries <= 0 else min(args.ref_queries, args.queries)
    try:  # reset the high-water mark so that data generation does not count (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    rss_before = status_kib("VmRSS")
    tracemalloc.start()
    t0 = time.perf_counter()
    if args.impl == "fast":
        res = reid_evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, chunk_size=args.chunk_size,
                            counter=args.counter)
    else:
        res = reid_evaluate_reference(qf[:n], gf, q_pids[:n], g_pids, q_cams[:n], g_cams)
    seconds = time.perf_counter() - t0
    counter = args.counter if args.counter != "auto" else (
        "native" if reid._native_count_before() is not None else "torch")
    _, traced_peak = tracemalloc.get_traced_memory()
    out = {
        "impl": args.impl if args.impl == "reference" else f"fast ({counter})", "queries_run": n,
        "seconds": seconds, "hwm_reset": reset,
        "rss_before_mib": rss_before / 1024, "peak_rss_mib": status_kib("VmHWM") / 1024,
        "tracemalloc_peak_mib": traced_peak / 2**20, "torch_threads": torch.get_num_threads(),
        "mAP": res["mAP"], "mINP": res["mINP"], "rank1": res["rank1"], "rank5": res["rank5"],
        "rank10": res["rank10"], "skipped": res["num_skipped_queries"],
        "query_index": res["query_index"].tolist(), "per_query_AP": res["per_query_AP"].tolist(),
    }
    Path(args.out).write_text(json.dumps(out))


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=11659)
    p.add_argument("--gallery", type=int, default=82161)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--ids", type=int, default=3060)
    p.add_argument("--cams", type=int, default=15)
    p.add_argument("--noise", type=float, default=3.0, help="noise std around each identity centre")
    p.add_argument("--ref-queries", type=int, default=1000, help="queries for the reference (0 = all)")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--counter", choices=["auto", "native", "torch"], default="auto",
                   help="reid_evaluate's rank counter (auto: the compiled C loop where a compiler exists)")
    p.add_argument("--impl", choices=["fast", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.impl:
        return worker(args)

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"data: {args.queries} queries x {args.gallery} gallery, {args.dim}-d, {args.ids} ids, {args.cams} cams")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for impl in ("fast", "reference"):
            out = Path(tmp) / f"{impl}.json"
            cmd = [sys.executable, __file__, "--impl", impl, "--out", str(out)]
            for key in ("queries", "gallery", "dim", "ids", "cams", "noise", "ref_queries", "seed", "chunk_size",
                        "counter"):
                if getattr(args, key) is not None:
                    cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
            subprocess.run(cmd, check=True)
            results[impl] = json.loads(out.read_text())

    fast, ref = results["fast"], results["reference"]
    ref_full = ref["seconds"] * args.queries / ref["queries_run"]
    for r, secs in ((fast, fast["seconds"]), (ref, ref_full)):
        note = "" if r["queries_run"] == args.queries else f" (extrapolated from {r['queries_run']} queries)"
        print(f"{r['impl']:14s}: {secs:8.1f} s{note}; peak RSS {r['peak_rss_mib']:7.0f} MiB "
              f"(RSS before {r['rss_before_mib']:.0f} MiB, HWM reset: {r['hwm_reset']}); "
              f"tracemalloc peak {r['tracemalloc_peak_mib']:.0f} MiB; torch threads {r['torch_threads']}")
    print(f"speed-up: {ref_full / fast['seconds']:.1f}x")
    print(f"fast, all queries: mAP {fast['mAP']:.2f}  mINP {fast['mINP']:.2f}  R1 {fast['rank1']:.2f}  "
          f"R5 {fast['rank5']:.2f}  R10 {fast['rank10']:.2f}  skipped {fast['skipped']}")
    f_ap = dict(zip(fast["query_index"], fast["per_query_AP"]))
    common = [i for i in ref["query_index"] if i in f_ap]
    diff = max((abs(f_ap[i] - a) for i, a in zip(ref["query_index"], ref["per_query_AP"])), default=0.0)
    same_set = sorted(i for i in f_ap if i < ref["queries_run"]) == list(ref["query_index"])
    print(f"agreement on the first {ref['queries_run']} queries: same evaluated queries {same_set}, "
          f"max |AP difference| {diff:.2e} points; reference mAP {ref['mAP']:.4f} vs fast "
          f"{np.mean([f_ap[i] for i in common]):.4f}")
    goal = fast["peak_rss_mib"] <= 2048 and ref_full / fast["seconds"] >= 10
    print(f"goal (peak <= 2 GiB, >= 10x): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
