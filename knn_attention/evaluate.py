"""Evaluate a checkpoint: top-1 and the attention statistics of :mod:`knn_attention.scoring` (re-exported here).

    python -m knn_attention.evaluate --config ... --checkpoint runs/x/best.pt
"""
from __future__ import annotations

from .scoring import attention_stats, top1


def main(argv: list[str] | None = None) -> dict:
    from shared.backbones import load_weights
    from shared.cli import evaluate_parser, finish_evaluation, parse_evaluate_args
    from shared.config import load_config
    from shared.errors import cli_errors

    from .train import KNNConfig, KNNTask

    prog = "python -m knn_attention.evaluate"
    args = parse_evaluate_args(evaluate_parser(prog, __doc__.split("\n")[0], "engine checkpoint (last.pt/best.pt) "
                                               "or a state dict"), argv)
    with cli_errors(prog, argv):
        cfg = load_config(args.config, KNNConfig, args.overrides)
        task = KNNTask(cfg)
        model = task.build_model()
        load_weights(model, args.checkpoint)
        model.eval()
        return finish_evaluation(task.evaluate(model, None), args.out)


__all__ = ["attention_stats", "main", "top1"]

if __name__ == "__main__":
    main()
