"""The paper's re-ID experiment (DINO-S/16 with and without the stem, fine-tuned on Market-1501 / MSMT17) runs
through ``python -m transreid_ssl.train`` (configs in ``configs/reid/``, ``scripts/reid_dino-s.sh``).

transreid_ssl's stem ``ics_bn`` is this folder's scaled-ReLU stem, layer for layer (conv 7x7/2 p3 -> BN ->
ReLU, conv 3x3 -> BN -> ReLU, conv 3x3 -> BN -> ReLU, all bias-free and 64 wide, then a k = s = 8 projection
with bias); only the key prefix differs: ``patch_embed.conv.{0..8}`` there, ``patch_embed.backbone.{0..8}``
here (same indices: the ReLUs hold no keys). :func:`to_transreid_ssl` renames a state dict of this folder's
ViT (``ConvStemEmbed``, layout ``volo``, BN + ReLU, 64 wide) so that transreid_ssl's ``load_backbone`` takes it:

    python -m scaled_relu_stem.reid runs/dino_srstem/checkpoint.pth /w/dino_s16_srstem_transreid.pth
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from shared.errors import UserError, cli_errors

STEM_PREFIX, TRANSREID_STEM_PREFIX = "patch_embed.backbone.", "patch_embed.conv."
# first conv of transreid_ssl's ics_bn at the configs' stem_hidden 64, stem_kernel 7 (RGB input)
FIRST_CONV = (64, 3, 7, 7)


def to_transreid_ssl(sd: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Rename ``patch_embed.backbone.*`` -> ``patch_embed.conv.*``; every other key (timm ViT flat keys,
    ``patch_embed.proj.*``, a classification ``head.*`` that ``load_backbone`` skips) is kept as it is.

    Only the scaled-ReLU stem maps onto ``ics_bn``: a stem with another first conv (``xiao`` layout, another
    width) or without BN (``norm: none`` has conv biases) is refused with a one-line error naming ``source``.
    """
    w = sd.get(STEM_PREFIX + "0.weight")
    if w is None:
        raise UserError(f"{source}: no '{STEM_PREFIX}0.weight': not a conv-stem ViT of scaled_relu_stem")
    if tuple(w.shape) != FIRST_CONV or STEM_PREFIX + "1.running_mean" not in sd or STEM_PREFIX + "0.bias" in sd:
        raise UserError(f"{source}: the stem is not the scaled-ReLU stem (first conv {tuple(w.shape)}, expected "
                        f"{FIRST_CONV} then BN): transreid_ssl's ics_bn cannot hold it")
    return {(TRANSREID_STEM_PREFIX + k[len(STEM_PREFIX):] if k.startswith(STEM_PREFIX) else k): v
            for k, v in sd.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scaled_relu_stem.reid", description=__doc__.split("\n")[0])
    p.add_argument("src", help="checkpoint of a scaled-ReLU-stem ViT (state dict, or a dict with 'model')")
    p.add_argument("dst", help="where to write the state dict with transreid_ssl's stem keys")
    args = p.parse_args(argv)
    with cli_errors(p.prog):
        obj = torch.load(args.src, map_location="cpu", weights_only=True)
        sd = obj["model"] if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else obj
        out = to_transreid_ssl({k.removeprefix("module."): v for k, v in sd.items()}, args.src)
        Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, args.dst)
        print(f"wrote {args.dst}: {len(out)} keys, stem under {TRANSREID_STEM_PREFIX}*")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
