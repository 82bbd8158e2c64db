"""Catastrophic Forgetting Score (CFS) data selection -- a reconstruction (no official code; issue #3 script).

The authors' uncleaned script (TransReID-SSL issue #3) builds two ``make_model`` ViT-S networks with
``NECK_FEAT 'before'``: theta_0 = the short DINO run on the *full* LUPerson (``vit_small_cfs_lup_20ep``),
theta_1 = theta_0 fine-tuned with the supervised recipe on Market + MSMT (``transformer_120.pth``); every
LUPerson image is resized to 256x128 (test transform, no augmentation) and passed through both. The
part of the script that turns the two features into a score is not in what we could read, so::

    s(x) = cos(f_0(x), f_1(x))        [reconstruction, ``score='cosine'``]

High s = the image's representation was barely changed ("forgotten") by ReID fine-tuning = close to
the ReID domain. Images are ranked by s descending and the first ``keep_num`` kept (the released
``CFS_list.pkl`` is that ranking). ``score='neg_l2'`` (-||f_0 - f_1||, unnormalised) is the alternative.
Sanity check for the sign: top-ranked images should be person-like (``person_precision``).

    python -m transreid_ssl.cfs --config transreid_ssl/configs/transreid_vit-small_1xb64-120e_market1501.yaml \\
        --dino runs/dino_full20/last.pt --reid runs/mm_finetune/last.pt --lup /data/LUP --out CFS_list.txt
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import ReIDSplit


def catastrophic_forgetting_score(f0: torch.Tensor, f1: torch.Tensor, score: str = "cosine") -> torch.Tensor:
    """Per-image score (N,) from theta_0 features ``f0`` (N, D) and theta_1 features ``f1`` (N, D), pre-BN."""
    if score == "cosine":
        return F.cosine_similarity(f0.float(), f1.float(), dim=1)
    if score == "neg_l2":
        return -(f0.float() - f1.float()).norm(dim=1)
    raise ValueError(f"cfs score must be 'cosine' or 'neg_l2', got {score!r}")


def cfs_order(scores: torch.Tensor) -> np.ndarray:
    """Indices sorted by score, highest (least forgetting) first; ties by index (stable)."""
    return np.argsort(-scores.numpy(), kind="stable")


def person_precision(order: np.ndarray, is_person: np.ndarray, keep: float = 0.5) -> float:
    """Share (%) of person-like images among the first ``keep`` fraction of a ranking (random = base rate)."""
    top = order[: int(round(keep * len(order)))]
    return float(100.0 * is_person[top].mean())


def score_split(theta0: torch.nn.Module, theta1: torch.nn.Module, split: ReIDSplit, size, batch_size: int = 256,
                device: str | torch.device = "cpu", score: str = "cosine") -> torch.Tensor:
    """CFS of every image of ``split``: both backbones in eval mode, the fine-tuning test transform."""
    from .train import extract_features

    f0 = extract_features(theta0, split, size, batch_size, device)
    f1 = extract_features(theta1, split, size, batch_size, device)
    return catastrophic_forgetting_score(f0, f1, score)


def write_ranking(names: list[str], order: np.ndarray, path: str | Path) -> Path:
    """One name a line, best first (``data.filter_list`` reads it; so does the official pickle form)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{names[i]}\n" for i in order))
    return path


def main(argv: list[str] | None = None) -> int:
    from shared.config import load_config

    from .checkpoints import load_backbone, load_reid_checkpoint, read_checkpoint
    from .data import luperson_images
    from .model import ReIDModel
    from .train import TransReIDSSLConfig, build_backbone

    p = argparse.ArgumentParser(prog="python -m transreid_ssl.cfs", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="a fine-tuning config (gives the architecture and input size)")
    p.add_argument("--dino", required=True, help="theta_0: DINO checkpoint of the short full-data run")
    p.add_argument("--reid", required=True, help="theta_1: the supervised checkpoint fine-tuned from theta_0")
    p.add_argument("--lup", required=True, help="LUPerson root (LUP/images/*.jpg)")
    p.add_argument("--out", required=True, help="ranking file to write (one name a line, best first)")
    p.add_argument("--score", default="cosine", choices=["cosine", "neg_l2"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides (e.g. model.stem=ics)")
    args = p.parse_intermixed_args(argv)
    cfg = load_config(args.config, TransReIDSSLConfig, args.overrides)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    theta0 = build_backbone(cfg.model, 0.0)
    load_backbone(theta0, args.dino, cfg.model.pretrain_hw_ratio)
    obj = read_checkpoint(args.reid)
    sd = obj.get("model", obj)
    n_cls = next((v.shape[0] for k, v in sd.items() if k.endswith("classifier.weight")), None)
    if n_cls is None:
        raise SystemExit(f"{args.reid}: no classifier.weight: not a supervised ReID checkpoint")
    theta1 = ReIDModel(build_backbone(cfg.model, 0.0), n_cls)
    load_reid_checkpoint(theta1, args.reid)
    split = luperson_images(args.lup)
    scores = score_split(theta0.to(dev), theta1.base.to(dev), split, cfg.model.img_size, args.batch_size, dev,
                         args.score)
    write_ranking([Path(s).name for s in split.sources], cfs_order(scores.cpu()), args.out)
    print(f"{len(split)} images ranked -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
