"""Standard command line for every paper's ``train.py``.

    python -m <paper>.train --config <paper>/configs/<name>.yaml [--run-dir DIR] [--resume auto|PATH]
                            [--deterministic] [--debug] [key.sub=value ...]
    torchrun --nproc_per_node=N -m <paper>.train --config ...       # multi-GPU (DDP)

Any failure ends as one line ``<prog>: error: ...`` (exit 1); ``--debug`` or ``VISIONREPRO_DEBUG=1``
shows the traceback (``shared.errors``). A run directory that already holds a run is refused unless
``--resume`` is given (nothing is overwritten).
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import load_config
from .engine import Trainer
from .engine.dist import barrier, cleanup
from .engine.trainer import check_wandb
from .errors import UserError, cli_errors


def train_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML config (may name a _base_)")
    p.add_argument("--run-dir", default=None,
                   help="output folder (default: runs/<config name>)")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="'auto' resumes from RUN_DIR/last.pt when present; or a checkpoint path")
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower)")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="dotted config overrides, e.g. optim.lr=0.01 data.root=/data/office31")
    return p


def train_main(prog: str, description: str, schema: type, build_task: Callable[[Any, Path], Any],
               argv: list[str] | None = None) -> dict:
    """Parse args, load the config, build the task and run the engine; exit 1 with one line on error."""
    args = train_parser(prog, description).parse_intermixed_args(argv)
    if args.debug:
        os.environ["VISIONREPRO_DEBUG"] = "1"
    with cli_errors(prog):
        cfg = load_config(args.config, schema, args.overrides)
        check_wandb(cfg)  # before anything is built
        if args.deterministic:
            cfg.engine.deterministic = True
        run_dir = Path(args.run_dir or Path("runs") / Path(args.config).stem)
        check_fresh_run_dir(run_dir, args.resume)
        task = build_task(cfg, run_dir)
        try:
            metrics = Trainer(task, cfg, run_dir, resume=args.resume).fit()
            barrier()  # every rank is done with the group before it goes
            return metrics
        finally:
            # An undestroyed gloo group can abort a rank at interpreter exit ("terminate called without
            # an active exception"); tear it down here, on success and on error alike.
            cleanup()


RUN_FILES = ("last.pt", "last.prev.pt", "best.pt", "metrics.jsonl")


def check_fresh_run_dir(run_dir: Path, resume: str | None) -> None:
    """Refuse to start a new run in a folder that holds one (it would overwrite ``last.pt``/``best.pt``
    and append a second run to ``metrics.jsonl``) unless ``--resume`` is given."""
    if resume:
        return
    found = [n for n in RUN_FILES if (run_dir / n).exists()]
    if found:
        raise UserError(f"{run_dir}: already holds a run ({', '.join(found)}); continue it with "
                        f"--resume auto, or start a new one with --run-dir <new folder>")


def launch_script(script: str | Path, data_root: str | None, gpus: int | None = None,
                  extra_env: dict[str, str] | None = None, overrides: list[str] | None = None) -> int:
    """Run a paper's ``scripts/*.sh`` on a real dataset (``make reproduce DATA=... GPUS=... ARGS="--set k=v"``):
    ``overrides`` are passed to the script as its arguments, which every script hands on as config overrides."""
    import os
    import subprocess

    env = dict(os.environ, **(extra_env or {}))
    if data_root:
        env["DATA_ROOT"] = str(data_root)
    if gpus:
        env["GPUS"] = str(gpus)
    print(f"launching {script} (DATA_ROOT={env.get('DATA_ROOT')}, GPUS={env.get('GPUS', 1)})")
    return subprocess.call(["bash", str(script), *(overrides or [])], env=env)


def reproduce_parser(paper: str, description: str, jobs: bool = False) -> argparse.ArgumentParser:
    """The common ``reproduce`` arguments: --seeds, --data, --gpus, --out, --quick (and --jobs if ``jobs``)."""
    p = argparse.ArgumentParser(prog=f"make reproduce PAPER={paper}", description=description)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--data", default=None, help="real dataset root: run the paper's benchmark scripts instead")
    p.add_argument("--gpus", type=int, default=None, help="GPUs for the real runs (torchrun when > 1)")
    p.add_argument("--out", default=None, help=f"results folder (default results/{paper})")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test (seconds)")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    p.add_argument("--set", nargs="*", default=[], metavar="key.sub=value", dest="overrides",
                   help="dotted config overrides: with --data handed to the benchmark script; on embedded data "
                        "applied to every row alike (knn_attention, scaled_relu_stem and transfgu refuse them there)")
    if jobs:
        p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                       help="parallel single-thread runs (default: 2, one per core)")
    return p


def refuse_embedded_overrides(paper: str, args: argparse.Namespace) -> None:
    """For a paper whose embedded reproduction takes no ``--set``: exit with one line rather than ignore them."""
    if getattr(args, "overrides", None) and not getattr(args, "data", None):
        raise SystemExit(f"--set {' '.join(args.overrides)}: {paper}'s embedded reproduction takes no overrides "
                         f"(they apply with --data; edit {paper}/configs/ instead)")


def reproduce_dirs(paper: str, args: argparse.Namespace) -> tuple[Path, Path]:
    """``(out_dir, run_root)`` of an embedded reproduction: ``--out`` or ``results/<paper>``, and the run
    directories: ``--run-root`` where the paper's parser offers it, else ``runs/reproduce/<paper>`` (under
    ``out_dir/runs`` with ``--quick``, for the smoke tests)."""
    from .results import RESULTS

    out_dir = Path(args.out) if args.out else RESULTS / paper
    if getattr(args, "run_root", None):
        return out_dir, Path(args.run_root)
    return out_dir, (out_dir / "runs" if args.quick else Path("runs") / "reproduce" / paper)


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds: expected comma-separated integers, got {text!r}") from None


REPORTED_SEEDS = frozenset(range(9))  # the default seeds and the held-out 3-5 and 6-8: never used to choose a setting


def tune_parser(paper: str, description: str, grids, default_grid: str, seeds: str = "100,101",
                log: str = "", quick: bool = False) -> argparse.ArgumentParser:
    """The common ``python -m <paper>.tune`` arguments: --grid, --seeds (validation draws), --jobs, --log
    (and --quick if ``quick``); each paper adds its own."""
    p = argparse.ArgumentParser(prog=f"python -m {paper}.tune", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default=default_grid, choices=sorted(grids))
    p.add_argument("--seeds", default=seeds,
                   help="validation seeds (each its own data draw); the reported seeds 0-8 are refused")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="single-thread runs at a time")
    p.add_argument("--log", default=log, help="one JSON line per run is appended here as soon as it ends")
    if quick:
        p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, not a search)")
    return p


def validation_seeds(text: str) -> list[int]:
    """``--seeds`` of a tuning run: comma-separated integers, none of them a reported seed (0-8)."""
    seeds = parse_seeds(text)
    if set(seeds) & REPORTED_SEEDS:
        raise SystemExit(f"--seeds {text}: seeds 0-8 are reported seeds; tune on others (100+)")
    return seeds


# --- evaluate: one convention for every paper's ``python -m <paper>.evaluate`` ---------------------------

def evaluate_parser(prog: str, description: str, checkpoint_help: str = "checkpoint: a run's last.pt/best.pt "
                    "or the paper's released file", aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """``--config``, ``--checkpoint`` (``--weights`` and ``aliases`` are accepted for it), ``--out`` (strict
    JSON), ``--debug`` and dotted overrides: the flags every paper's ``evaluate`` takes."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML config (a run's config.yaml works)")
    p.add_argument("--checkpoint", "--weights", *aliases, dest="checkpoint", required=True, help=checkpoint_help)
    p.add_argument("--out", default=None, help="also write the metrics to this file as strict JSON (NaN -> null)")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="dotted config overrides, e.g. data.root=/data/office31")
    return p


def parse_evaluate_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse an :func:`evaluate_parser` command line; ``--debug`` also turns on full tracebacks in the helpers
    that read ``VISIONREPRO_DEBUG``."""
    import os

    args = parser.parse_intermixed_args(argv)
    if args.debug:
        os.environ["VISIONREPRO_DEBUG"] = "1"
    return args


def strict_json_value(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, inf) replaced by ``None`` and numpy/torch scalars made
    Python numbers, so ``json.dumps(..., allow_nan=False)`` writes standard JSON (``NaN`` is not JSON)."""
    import math

    if isinstance(obj, dict):
        return {str(k): strict_json_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json_value(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy / torch scalars and arrays
        return strict_json_value(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_metrics_json(metrics: dict, path: str | Path) -> Path:
    """Write ``metrics`` to ``path`` as strict JSON (see :func:`strict_json_value`), creating the folder."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strict_json_value(metrics), indent=2, allow_nan=False) + "\n")
    return path


def format_metrics(metrics: dict, digits: int = 2) -> str:
    """One ``name value`` line per scalar metric (nested dicts and lists are left to ``--out``)."""
    lines = []
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        lines.append(f"{k:<24} {v:.{digits}f}" if isinstance(v, float) else f"{k:<24} {v}")
    return "\n".join(lines)


def finish_evaluation(metrics: dict, out: str | Path | None, text: str | None = None) -> dict:
    """Print ``text`` (default: :func:`format_metrics`) and write ``--out``; return ``metrics``."""
    print(text if text is not None else format_metrics(metrics), flush=True)
    if out:
        print(f"wrote {write_metrics_json(metrics, out)}")
    return metrics
