"""Evaluate a trained stem ViT: top-1 on the config's test/val split and the patch-token cosine similarity
after the stem and after every block.

    python -m scaled_relu_stem.evaluate \\
        --config scaled_relu_stem/configs/scaled_relu_stem_deit-s_8xb128-300e_in1k.yaml \\
        --checkpoint runs/scaled_relu_stem/in1k/scaled_relu_stem_deit-s/best.pt data.root=/data/imagenet

``--checkpoint`` is an engine checkpoint (``best.pt`` / ``last.pt``) or a plain state dict of the same
model; keys must match exactly.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from shared.backbones import load_weights
from shared.cli import evaluate_parser, finish_evaluation, parse_evaluate_args
from shared.config import load_config
from shared.errors import cli_errors

from .train import SRStemConfig, SRStemTask


def main(argv: list[str] | None = None) -> dict:
    prog = "python -m scaled_relu_stem.evaluate"
    parser = evaluate_parser(prog, __doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parse_evaluate_args(parser, argv)
    with cli_errors(prog, argv):
        cfg = load_config(args.config, SRStemConfig, args.overrides)
        cfg.model.pretrained = ""
        task = SRStemTask(cfg)
        model = task.build_model()
        load_weights(model, args.checkpoint, strict=True)
        device = torch.device(args.device)
        model.to(device).eval()
        metrics = task.evaluate(model, SimpleNamespace(device=device))
        metrics.pop("max_grad_norm", None)  # a training statistic, meaningless here
        metrics["token_similarity_per_layer"] = [round(v, 4) for v in task.token_similarity]
        metrics["token_similarity_centred_per_layer"] = [round(v, 4) for v in task.token_similarity_centred]
        return finish_evaluation(metrics, args.out)


if __name__ == "__main__":
    main()
