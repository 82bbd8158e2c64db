"""Evaluate a fine-tuned checkpoint (ours, the official ``transformer_120.pth``, or with a ``usl_*``/``uda_*``
config a USL/UDA ``model_best.pth.tar``) with the Market protocol.

    python -m transreid_ssl.evaluate --config transreid_ssl/configs/transreid_vit-small_1xb64-120e_market1501.yaml \\
        --weights /w/transformer_120.pth data.root=/data [--out eval.json]

Test feature = pre-BN CLS (``model.neck_feat``), L2-normalised, squared Euclidean, same pid + camera
removed, no re-ranking (as every reported number). The classifier is not needed and not loaded.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from shared.config import ConfigError, load_config

from .checkpoints import load_reid_checkpoint
from .model import ReIDModel
from .train import ReIDTask, TransReIDSSLConfig, USLTask, build_backbone, reid_metrics
from .usl import USLModel, load_usl_checkpoint


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m transreid_ssl.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--weights", required=True, help="fine-tuned checkpoint (official or our last.pt)")
    p.add_argument("--out", default=None, help="write the metrics as JSON here")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = p.parse_intermixed_args(argv)
    try:
        cfg = load_config(args.config, TransReIDSSLConfig, args.overrides + ["model.pretrained="])
        if cfg.stage == "usl":  # USL / UDA: L2norm(BN(CLS)), the released {'state_dict': module.*} or our last.pt
            task = USLTask(cfg)
            model = USLModel(build_backbone(cfg.model, 0.0))
            load_usl_checkpoint(model, args.weights)
        else:
            task = ReIDTask(cfg)
            model = ReIDModel(build_backbone(cfg.model, 0.0), task.train_split.num_pids, cfg.model.neck_feat)
            load_reid_checkpoint(model, args.weights, with_classifier=False)
    except (ConfigError, FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print(f"transreid_ssl.evaluate: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    metrics = reid_metrics(model.to(dev), task.query, task.gallery, cfg.model.img_size, cfg.data.eval_batch_size, dev,
                           getattr(task, "test_tf", None))
    print(" ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
