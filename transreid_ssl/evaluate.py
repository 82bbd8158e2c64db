"""Evaluate a fine-tuned checkpoint (ours, the official ``transformer_120.pth``, or with a ``usl_*``/``uda_*``
config a USL/UDA ``model_best.pth.tar``) with the Market protocol.

    python -m transreid_ssl.evaluate --config transreid_ssl/configs/transreid_vit-small_1xb64-120e_market1501.yaml \\
        --checkpoint /w/transformer_120.pth data.root=/data [--out eval.json]

Test feature = pre-BN CLS (``model.neck_feat``), L2-normalised, squared Euclidean, same pid + camera
removed, no re-ranking (as every reported number). The classifier is not needed and not loaded. Prints mAP,
rank-1/5/10 and mINP; ``--out`` writes them as strict JSON (``--weights`` is accepted for ``--checkpoint``).
"""
from __future__ import annotations

import torch

from shared.cli import evaluate_parser, finish_evaluation
from shared.config import load_config
from shared.errors import cli_errors

from .checkpoints import load_reid_checkpoint
from .model import ReIDModel
from .train import ReIDTask, TransReIDSSLConfig, USLTask, build_backbone, reid_metrics
from .usl import USLModel, load_usl_checkpoint

PROG = "python -m transreid_ssl.evaluate"


def main(argv: list[str] | None = None) -> dict:
    args = evaluate_parser(PROG, __doc__.split("\n")[0]).parse_intermixed_args(argv)
    with cli_errors(PROG, argv):
        cfg = load_config(args.config, TransReIDSSLConfig, args.overrides + ["model.pretrained="])
        if cfg.stage == "usl":  # USL / UDA: L2norm(BN(CLS)), the released {'state_dict': module.*} or our last.pt
            task = USLTask(cfg)
            model = USLModel(build_backbone(cfg.model, 0.0))
            load_usl_checkpoint(model, args.checkpoint)
        else:
            task = ReIDTask(cfg)
            model = ReIDModel(build_backbone(cfg.model, 0.0), task.train_split.num_pids, cfg.model.neck_feat)
            load_reid_checkpoint(model, args.checkpoint, with_classifier=False)
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        metrics = reid_metrics(model.to(dev), task.query, task.gallery, cfg.model.img_size, cfg.data.eval_batch_size,
                               dev, getattr(task, "test_tf", None))
        return finish_evaluation(metrics, args.out)


if __name__ == "__main__":
    main()
