"""Evaluate a CDTrans checkpoint (ours or a released one) on a target domain, target branch only.

    python -m cdtrans.evaluate --config cdtrans/configs/cdtrans_deit-base_2xb32-40e_office31.yaml \\
        --weights /w/cdtrans_a2w.pth data.root=/data/office31 data.source=amazon data.target=webcam

Released checkpoints are plain state dicts (``module.`` prefixed for DataParallel runs); both load.
Prints overall top-1 and mean per-class accuracy (VisDA's metric) and the per-class accuracies.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from shared.config import ConfigError, load_config
from shared.metrics import mean_class_accuracy, top1_accuracy

from .data import build_domains
from .model import load_official_checkpoint
from .train import CDTransConfig, build_model, extract


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m cdtrans.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights", required=True, help="checkpoint file (ours or released)")
    ap.add_argument("--out", default=None, help="also write the result as JSON to this file")
    ap.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = ap.parse_intermixed_args(argv)
    try:
        cfg = load_config(args.config, CDTransConfig, args.overrides)
        d = cfg.data
        domains = build_domains(d.name, d.root, d.source, d.target, d.seed, d.n_source, 0, cfg.model.img_size)
        model = build_model(cfg, domains.num_classes)
        load_official_checkpoint(model, args.weights)
    except (ConfigError, FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        print(f"cdtrans.evaluate: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _, logits = extract(model.to(device), domains.target_eval, d.eval_batch_size, device)
    y = domains.target_labels
    mca, per_class = mean_class_accuracy(logits, y, domains.num_classes)
    result = {"acc": top1_accuracy(logits, y), "mean_class_acc": mca,
              "per_class_acc": [round(float(v), 2) for v in per_class]}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
