"""Evaluate a trained stem ViT: top-1 on the config's test/val split and the patch-token cosine similarity
after the stem and after every block.

    python -m scaled_relu_stem.evaluate \\
        --config scaled_relu_stem/configs/scaled_relu_stem_deit-s_8xb128-300e_in1k.yaml \\
        --checkpoint runs/scaled_relu_stem/in1k/scaled_relu_stem_deit-s/best.pt data.root=/data/imagenet

``--checkpoint`` is an engine checkpoint (``best.pt`` / ``last.pt``) or a plain state dict of the same
model; keys must match exactly.
"""
from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

import torch

from shared.backbones import load_weights
from shared.config import ConfigError, load_config

from .train import SRStemConfig, SRStemTask


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m scaled_relu_stem.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, SRStemConfig, args.overrides)
        cfg.model.pretrained = ""
        task = SRStemTask(cfg)
        model = task.build_model()
        load_weights(model, args.checkpoint, strict=True)
    except (ConfigError, FileNotFoundError, KeyError, RuntimeError, ValueError) as e:
        print(f"python -m scaled_relu_stem.evaluate: error: {str(e).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(1) from None
    device = torch.device(args.device)
    model.to(device).eval()
    metrics = task.evaluate(model, SimpleNamespace(device=device))
    metrics.pop("max_grad_norm", None)  # a training statistic, meaningless here
    metrics["token_similarity_per_layer"] = [round(v, 4) for v in task.token_similarity]
    metrics["token_similarity_centred_per_layer"] = [round(v, 4) for v in task.token_similarity_centred]
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
