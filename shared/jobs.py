"""Run a small graph of independent training jobs, a few processes at a time (embedded reproductions).

Tiny models gain nothing from intra-op threads, so a reproduction runs its (seed, arm) jobs as
single-thread processes, one per core, each job starting as soon as the jobs it depends on (e.g. its
seed's source-only checkpoint) are done. Jobs are started in the order given, so list the ones that
unblock others first.

    results = run_jobs(run_job, [((s, "stage_a"), (s, "stage_a", root)) for s in seeds]
                                + [((s, "stage_b"), (s, "stage_b", root)) for s in seeds],
                       deps={(s, "stage_b"): [(s, "stage_a")] for s in seeds}, workers=2)
    results[(0, "stage_b")]   # what run_job(0, "stage_b", root) returned

``fn`` must be picklable (a module-level function): with ``workers > 1`` each call runs in a fresh
``spawn`` process (no fork after torch has started its threads).

Same seeds, same numbers: every job runs with exactly ``threads`` intra-op threads (default 1), whether it
runs in a worker process or, with ``workers <= 1``, in this one. A CPU kernel's reduction order can
depend on its thread count, so a job's numbers must not depend on ``--jobs``, on the machine's core
count, or on which process ran it; OpenMP/MKL dynamic thread adjustment is switched off as well.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pin_threads(threads: int) -> int:
    """Set torch's intra-op threads (and the BLAS/OpenMP variables a fresh process reads) to ``threads``,
    with dynamic thread adjustment off; returns the previous torch thread count."""
    import torch

    for k in _THREAD_ENV:
        os.environ[k] = str(threads)
    os.environ["OMP_DYNAMIC"] = "FALSE"
    os.environ["MKL_DYNAMIC"] = "FALSE"
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    return prev


def _call_pinned(threads: int, fn: Callable[..., Any], *args: Any) -> Any:
    import torch

    saved = {k: os.environ.get(k) for k in (*_THREAD_ENV, "OMP_DYNAMIC", "MKL_DYNAMIC")}
    prev = pin_threads(threads)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(prev)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_jobs(fn: Callable[..., Any], jobs: Sequence[tuple[Hashable, tuple]],
             deps: Mapping[Hashable, Iterable[Hashable]] | None = None, workers: int = 1,
             threads: int = 1) -> dict[Hashable, Any]:
    """``{key: fn(*args)}`` for every ``(key, args)`` in ``jobs``; a job waits for the keys in ``deps[key]``.

    ``workers <= 1`` runs everything in this process, in the same order. A dependency on a key that is
    not a job, or a cycle, is an error before anything runs.
    """
    deps = {k: list(v) for k, v in (deps or {}).items()}
    keys = [k for k, _ in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("run_jobs: duplicate job keys")
    missing = sorted({repr(d) for v in deps.values() for d in v if d not in set(keys)})
    if missing:
        raise ValueError(f"run_jobs: dependencies on unknown jobs: {', '.join(missing)}")
    args = dict(jobs)
    todo, results = list(keys), {}

    def ready(done: Mapping) -> list:
        return [k for k in todo if all(d in done for d in deps.get(k, ()))]

    if not _acyclic(keys, deps):
        raise ValueError("run_jobs: the dependencies form a cycle")
    if workers <= 1:
        while todo:
            k = ready(results)[0]
            todo.remove(k)
            results[k] = _call_pinned(threads, fn, *args[k])
        return results
    ctx = multiprocessing.get_context("spawn")
    saved = {k: os.environ.get(k) for k in (*_THREAD_ENV, "OMP_DYNAMIC", "MKL_DYNAMIC")}
    for k in _THREAD_ENV:  # read by the spawned workers before torch starts its thread pools
        os.environ[k] = str(threads)
    os.environ["OMP_DYNAMIC"] = os.environ["MKL_DYNAMIC"] = "FALSE"
    try:
        return _run_pool(fn, args, todo, results, ready, ctx, workers, threads)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_pool(fn, args, todo, results, ready, ctx, workers: int, threads: int) -> dict:
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        running: dict = {}
        while todo or running:
            for k in ready(results):
                if len(running) >= workers:
                    break
                todo.remove(k)
                running[pool.submit(_call_pinned, threads, fn, *args[k])] = k
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                results[running.pop(f)] = f.result()
    return results


def _acyclic(keys: list, deps: Mapping[Hashable, list]) -> bool:
    done: set = set()
    left = list(keys)
    while left:
        nxt = [k for k in left if all(d in done for d in deps.get(k, ()))]
        if not nxt:
            return False
        done.update(nxt)
        left = [k for k in left if k not in done]
    return True


__all__ = ["pin_threads", "run_jobs"]


def append_jsonl(log: str | os.PathLike | None, record: Mapping[str, Any], echo: bool = False) -> Mapping[str, Any]:
    """Append ``record`` as one JSON line to ``log`` (parent folders made; nothing when ``log`` is empty),
    printing it first with ``echo``: a tuning sweep logs each run as soon as it ends, so one cut short
    keeps what ran. Returns ``record``."""
    import json
    from pathlib import Path

    line = json.dumps(record)
    if echo:
        print(line, flush=True)
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(line + "\n")
    return record
