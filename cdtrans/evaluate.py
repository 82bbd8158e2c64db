"""Evaluate a CDTrans checkpoint (ours or a released one) on a target domain, target branch only.

    python -m cdtrans.evaluate --config cdtrans/configs/cdtrans_deit-base_2xb32-40e_office31.yaml \\
        --checkpoint /w/cdtrans_a2w.pth data.root=/data/office31 data.source=amazon data.target=webcam \\
        --out runs/eval_a2w.json

Released checkpoints are plain state dicts (``module.`` prefixed for DataParallel runs) and our engine's
``last.pt``/``best.pt``; all load (``--weights`` is accepted for ``--checkpoint``). Prints overall top-1
(Office-31 / Office-Home) and mean per-class accuracy (VisDA's metric), then the per-class accuracies; a
class with no target image has accuracy ``null`` in ``--out`` (strict JSON).
"""
from __future__ import annotations

import torch

from shared.cli import evaluate_parser, finish_evaluation, parse_evaluate_args
from shared.config import load_config
from shared.errors import cli_errors
from shared.metrics import mean_class_accuracy, top1_accuracy

from .data import build_domains
from .model import load_official_checkpoint
from .train import CDTransConfig, build_model, extract


def main(argv: list[str] | None = None) -> dict:
    prog = "python -m cdtrans.evaluate"
    args = parse_evaluate_args(evaluate_parser(prog, __doc__), argv)
    with cli_errors(prog):
        cfg = load_config(args.config, CDTransConfig, args.overrides)
        d = cfg.data
        domains = build_domains(d.name, d.root, d.source, d.target, d.seed, d.n_source, 0, cfg.model.img_size,
                                d.n_target)
        model = build_model(cfg, domains.num_classes)
        load_official_checkpoint(model, args.checkpoint)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        _, logits = extract(model.to(device), domains.target_eval, d.eval_batch_size, device)
        y = domains.target_labels
        mca, per_class = mean_class_accuracy(logits, y, domains.num_classes)
        result = {"acc": top1_accuracy(logits, y), "mean_class_acc": mca,
                  "per_class_acc": [round(float(v), 2) for v in per_class]}
        text = (f"{d.source} -> {d.target} ({len(y)} target images): top-1 {result['acc']:.2f}  "
                f"mean-class {mca:.2f}\nper class: " + " ".join(f"{v:.1f}" for v in result["per_class_acc"]))
        return finish_evaluation(result, args.out, text)


if __name__ == "__main__":
    main()
