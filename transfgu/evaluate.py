"""Evaluate a TransFGU decoder (a released ``*_decoder.pt`` or our ``best.pt`` / ``last.pt``) on a val set.

    python -m transfgu.evaluate --config transfgu/configs/transfgu_vit-s8_4xb256-200e_cocostuff27.yaml \\
        --checkpoint /w/trained/cocostuff_27_decoder.pt data.root=/data/MSCOCO \\
        model.dino=/w/dino/dino_deitsmall8_pretrain.pth [--out result.json]

Protocol (spec section 5, ``<ds>_trainval.py`` with ``eval_only=1``): val images squashed, not cropped, to
COCO / VOC 320^2, Cityscapes 320x640, LIP 640x320 (labels nearest); decoder logits (at 1/8) upsampled
bilinearly to that size, argmax; one Hungarian match on the whole-set histogram with #clusters = #classes
(background is a class for VOC, LIP and COCO-80); pixel accuracy and mIoU (nanmean) in percent. No CRF.

The decoder loads **strictly** (released files are decoder-only state dicts; our engine checkpoints hold
``decoder.*`` beside the frozen encoder, which is taken from ``model.dino`` as in the official code): a wrong
class count or a foreign file is one line naming the file. Prints mIoU and pixel accuracy; ``--out`` writes
the same as strict JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from shared.backbones import load_state_dict_file, load_weights
from shared.config import ConfigError, load_config
from shared.errors import one_line

from .pipeline import score_maps
from .train import Segmenter, TransFGUConfig


def decoder_key_map(sd: dict) -> Callable[[str], str | None]:
    """Released files: keys as they are. Our checkpoints: ``decoder.*`` -> ``*``, the frozen encoder skipped."""
    if any(k.startswith("decoder.") for k in sd):
        return lambda k: k[len("decoder."):] if k.startswith("decoder.") else None
    return lambda k: k


def load_decoder(decoder: nn.Module, path: str | Path) -> None:
    """Strict load of a decoder state dict; a mismatch raises one line naming ``path``."""
    from shared.backbones import strip_prefix

    sd = strip_prefix(load_state_dict_file(path))
    load_weights(decoder, path, key_map=decoder_key_map(sd), sd=sd, strict=True)


@torch.no_grad()
def evaluate(model: Segmenter, val, num_classes: int, device: torch.device, batch_size: int = 16,
             num_workers: int = 0) -> dict[str, float]:
    """Whole-set scores of ``model`` on ``val`` (``(image, label)`` pairs already at the eval size)."""
    model.eval().to(device)
    logits, labels = [], []
    for x, y in DataLoader(val, batch_size=batch_size, num_workers=num_workers):
        logits.append(model(x.to(device))[0].float().cpu())
        labels.append(y)
    s = score_maps(torch.cat(logits), torch.cat(labels), num_classes)
    return {"mIoU": s["mIoU"], "acc": s["acc"], "images": len(val)}


def strict_json(result: dict) -> str:
    """JSON without NaN / Infinity (``null`` instead), so every parser reads it."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
    return json.dumps(clean, indent=1, allow_nan=False)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m transfgu.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--checkpoint", required=True, help="released *_decoder.pt or our best.pt / last.pt")
    ap.add_argument("--out", default=None, help="also write the result as strict JSON to this file")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = ap.parse_intermixed_args(argv)
    try:
        cfg = load_config(args.config, TransFGUConfig, args.overrides)
        model = Segmenter(cfg)
        load_decoder(model.decoder, args.checkpoint)
        d = cfg.data
        from .data import build_dataset

        val = build_dataset(d.name, d.root, "val", d.classes, d.eval_size or d.size, d.curated.format(split="val"))
    except (ConfigError, FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        print(f"transfgu.evaluate: error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        result = evaluate(model, val, d.num_classes, torch.device(args.device), args.batch_size)
    except (FileNotFoundError, ValueError) as e:  # a malformed val file met while reading
        print(f"transfgu.evaluate: error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(1) from None
    result = {"config": str(args.config), "checkpoint": str(args.checkpoint), **result}
    print(f"{d.name} ({d.classes} classes, {result['images']} val images): "
          f"mIoU {result['mIoU']:.2f}  pixel acc {result['acc']:.2f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(strict_json(result) + "\n")
    return result


if __name__ == "__main__":
    main()
