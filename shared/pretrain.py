"""``make pretrain PAPER=<paper>``: regenerate a paper's shipped encoders on embedded data, on the CPU.

    python -m shared.pretrain transreid_ssl [--seeds 0,1,2] [--arms dino_full,dino_random50] [--resume auto]
    python -m shared.pretrain transfgu --seeds 0

Two papers start from an encoder pre-trained for days (DINO ViT-S/16 on LUPerson, DINO ViT-S/8 on ImageNet)
that users download. The embedded reproductions work the same way: ``<paper>.pretrain`` pre-trains tiny
encoders once, writes each teacher backbone in the *released file layout* (so it goes through the loader a
user's real file goes through), and ``make reproduce`` starts from the committed files, never pre-training.

This module holds what both papers share: the dispatcher, the export of the teacher backbone from an engine
checkpoint, hashing, and the manifest ``<paper>/encoders/manifest.json``::

    {"encoders": {"<arm>_seed<k>.pth": {"arm", "seed", "recipe", "data", "wall_seconds", "git_sha",
                                        "sha256", "bytes", "command"}},
     "attempts": [{"when", "what", "settings", "outcome", "kept"}]}

``attempts`` lists every pre-training attempt made while developing the recipe, kept or not, with its outcome.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import torch

PAPERS = ("transreid_ssl", "transfgu", "cdtrans")
MAX_BYTES = 10 * 2 ** 20  # the repo rule for a committed encoder
ROOT = Path(__file__).resolve().parent.parent


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def teacher_backbone(ckpt: str | Path, prefix: str = "teacher.backbone.") -> OrderedDict:
    """The DINO teacher backbone of an engine checkpoint (``model`` = a :class:`shared.dino.DINOModel` state),
    as flat backbone keys: the layout of the released files (``dino_deitsmall8_pretrain.pth``, TransReID-SSL's
    converted LUPerson ViTs)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    sd = state.get("model", state)
    out = OrderedDict((k[len(prefix):], v.clone()) for k, v in sd.items() if k.startswith(prefix))
    if not out:
        raise KeyError(f"{ckpt}: no '{prefix}*' keys (not a DINO engine checkpoint)")
    return out


def save_encoder(sd: dict, path: str | Path) -> dict:
    """``torch.save`` a flat state dict (fp32, contiguous copies); returns ``{"sha256", "bytes"}``.
    Refuses a file over the repo's 10 MB limit for committed encoders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(OrderedDict((k, v.detach().float().contiguous().clone() if v.is_floating_point() else v.clone())
                           for k, v in sd.items()), path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        path.unlink()
        raise ValueError(f"{path}: {size / 2 ** 20:.1f} MB is over the 10 MB limit for a committed encoder")
    return {"sha256": file_sha256(path), "bytes": size}


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        return {"encoders": {}, "attempts": []}
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    m.setdefault("encoders", {})
    m.setdefault("attempts", [])
    return m


def write_manifest(path: str | Path, manifest: dict) -> None:
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


def record_encoder(manifest_path: str | Path, name: str, entry: dict) -> None:
    m = read_manifest(manifest_path)
    m["encoders"][name] = entry
    write_manifest(manifest_path, m)


def record_attempt(manifest_path: str | Path, what: str, settings: dict, outcome: dict | str, kept: bool) -> None:
    """Append one development attempt (kept or not) to the manifest's ``attempts``."""
    m = read_manifest(manifest_path)
    m["attempts"].append({"when": time.strftime("%Y-%m-%d %H:%M"), "what": what, "settings": settings,
                          "outcome": outcome, "kept": kept})
    write_manifest(manifest_path, m)


def check_encoder(folder: str | Path, name: str) -> Path:
    """The path of shipped encoder ``name`` after checking its sha256 against the manifest (a one-line error
    names the file and says how to regenerate it)."""
    folder = Path(folder)
    path, m = folder / name, read_manifest(folder / "manifest.json")
    if name not in m["encoders"]:
        raise FileNotFoundError(f"{folder / 'manifest.json'}: no entry for {name} (make pretrain PAPER=... "
                                "regenerates the shipped encoders)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shipped encoder missing (git checkout it, or make pretrain)")
    digest = file_sha256(path)
    if digest != m["encoders"][name]["sha256"]:
        raise ValueError(f"{path}: sha256 {digest[:12]}... differs from the manifest's "
                         f"{m['encoders'][name]['sha256'][:12]}... (modified or regenerated without the manifest)")
    return path


def pick_encoder(folder: str | Path, arm: str, seed: int, n_shipped: int = 3) -> Path:
    """The encoder a fine-tuning seed starts from: ``<arm>_seed<seed>.pth`` when the manifest has it, else
    pre-training seed ``seed mod n_shipped`` (the shipped seeds 0..n-1); sha256-checked."""
    folder = Path(folder)
    exact = f"{arm}_seed{seed}.pth"
    shipped = read_manifest(folder / "manifest.json")["encoders"]
    name = exact if exact in shipped else f"{arm}_seed{seed % n_shipped}.pth"
    return check_encoder(folder, name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\npapers: {', '.join(PAPERS)}; `python -m shared.pretrain <paper> --help` lists its options")
        return 0 if argv else 2
    paper, rest = argv[0], argv[1:]
    if paper not in PAPERS:
        print(f"shared.pretrain: PAPER must be one of {', '.join(PAPERS)}, got {paper!r}", file=sys.stderr)
        return 2
    from .errors import DEBUG_ENV, cli_errors

    if "--debug" in rest:  # the traceback instead of the one line, as make reproduce
        rest.remove("--debug")
        os.environ[DEBUG_ENV] = "1"
    # any failure (a corrupt run checkpoint under --resume auto, a bad --set, a full disk) is one line on stderr
    with cli_errors(f"make pretrain PAPER={paper}", rest):
        return importlib.import_module(f"{paper}.pretrain").main(rest)


def epochs_done(run_dir: Path) -> int:
    """Finished epochs of one engine run folder: the distinct epochs with an end-of-epoch row in
    ``metrics.jsonl`` (a resumed run appends to it, so an epoch may appear twice)."""
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    done = set()
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:  # a line being written
            continue
        if "epoch_seconds" in row:
            done.add(row["epoch"])
    return len(done)


@contextmanager
def overall_progress(runs: dict[Path, int], enabled: bool = True, every: float = 2.0):
    """A progress bar over the epochs of every pre-training job (``{run folder: its epochs}``), read from the run
    folders while the jobs train in other processes. For ``--jobs`` > 1, where no job process owns the terminal
    (with ``--jobs 1`` the job's own engine bar runs instead: ``enabled=False``); yields the bar."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    stop = threading.Event()
    bar = tqdm(total=sum(runs.values()), desc="pre-training", unit="epoch", dynamic_ncols=True)

    def update():
        bar.n = sum(min(epochs_done(d), n) for d, n in runs.items())
        bar.refresh()

    def poll():
        while not stop.wait(every):
            update()

    update()
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        yield bar
    finally:
        stop.set()
        t.join()
        update()  # the last jobs' epochs, finished since the last poll
        bar.close()


def engine_bars(jobs: int) -> list[str]:
    """The config override that turns the engine's own per-epoch bar on: only with one job process, which then
    owns the terminal (several would overwrite each other's bars; :func:`overall_progress` draws one instead)."""
    return ["logger.progress=true"] if jobs <= 1 else []


def pretrain_parser(paper: str, arms: list[str], description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m shared.pretrain {paper}", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="pre-training seeds (default 0,1,2: one file per arm and seed)")
    p.add_argument("--arms", default=",".join(arms), help=f"comma list of {', '.join(arms)} (default: all)")
    p.add_argument("--resume", default="auto", choices=("auto", "none"),
                   help="'auto' (default) resumes an interrupted run from runs/pretrain/<paper>/...; 'none' restarts")
    p.add_argument("--jobs", type=int, default=2, help="single-thread processes at a time (default 2 = 2 cores)")
    p.add_argument("--out", default=None, help="where the .pth files and manifest go (default <paper>/encoders)")
    p.add_argument("--run-root", default=None, help="engine run folders (default runs/pretrain/<paper>)")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run (tests); never ship its files")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors (make pretrain)")
    p.add_argument("--set", nargs="*", default=[], metavar="key.sub=value", dest="overrides",
                   help="config overrides for a development attempt (the manifest records them)")
    return p


if __name__ == "__main__":
    raise SystemExit(main())
