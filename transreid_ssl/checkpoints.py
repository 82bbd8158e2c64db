"""Official checkpoint layouts -> our modules (spec section 5).

* DINO: raw ``main_dino`` file ``{student, teacher, optimizer, epoch, args, dino_loss, fp16_scaler}``
  (teacher keys ``backbone.*`` / ``head.*``, ``module.`` under DDP or ICS+SyncBN), the converted flat
  backbone (``convert_model_dino.py``, what ``vit_*_cfs_lup.pth`` hold), or our DINO run's ``last.pt``
  (``model`` -> ``teacher.backbone.*``). The teacher backbone is what fine-tuning starts from.
* Supervised: ``transformer_120.pth`` = ``base.*`` (+ unused ``base.fc``), ``bottleneck.*``,
  ``classifier.weight`` (+ ``module.``), or our ReID run's ``last.pt``.

Unlike the official loaders (which print and continue on a shape mismatch), loading here is strict and
names what did not match; ``allow_random_stem`` loads a plain-ViT file into an ICS model on purpose.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from shared.backbones import LoadReport, load_local_file, load_weights, strip_prefix
from shared.errors import CheckpointError

SKIP_SUBSTRINGS = ("head", "dist", "pre_logits")  # official ViT load_param skips these


def read_checkpoint(path: str | Path) -> dict:
    """Load any of the layouts above as a dict (raw DINO files hold an ``argparse.Namespace``). A file that is
    missing, not a torch file, truncated or not a dict is a one-line :class:`~shared.errors.CheckpointError` (a
    user error naming the file, not an "unexpected" one)."""
    path = Path(path)
    obj = load_local_file(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def dino_teacher_backbone(obj: dict, path: str | Path = "") -> dict[str, torch.Tensor]:
    """Flat teacher-backbone state dict from a raw DINO file, our DINO ``last.pt``, or a flat file."""
    if "teacher" in obj:
        sd, prefix = strip_prefix(obj["teacher"]), "backbone."
    elif "model" in obj and any(k.startswith("teacher.") for k in obj["model"]):
        sd, prefix = obj["model"], "teacher.backbone."
    else:
        sd = strip_prefix(obj.get("state_dict", obj.get("model", obj)))
        prefix = "backbone." if any(k.startswith("backbone.") for k in sd) else ""
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not out:
        raise KeyError(f"{path}: no '{prefix}*' keys: not a DINO checkpoint or backbone state dict")
    return out


def resize_pos_embed_hw(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """TransReID ``resize_pos_embed``: bilinear resize of the (1, 1 + gh*gw, D) grid, CLS row kept."""
    cls_pos, grid = pos[:, :1], pos[:, 1:]
    grid = grid.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bilinear")
    return torch.cat([cls_pos, grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], -1)], dim=1)


def load_backbone(backbone: nn.Module, path: str | Path, pretrain_hw_ratio: int = 2,
                  allow_random_stem: bool = False) -> LoadReport:
    """Load a DINO (or flat ViT) file into a :class:`~transreid_ssl.model.ReIDViT`.

    ``pos_embed`` of another length is resized bilinearly from the grid with aspect ``pretrain_hw_ratio``
    (official ``PRETRAIN_HW_RATIO 2``: 129 tokens -> 16x8). Strict; with ``allow_random_stem`` the ICS
    stem may stay at its initialisation (a plain-ViT file into an ICS model) and the patchify ``proj`` is
    dropped.
    """
    sd = {k: v for k, v in dino_teacher_backbone(read_checkpoint(path), path).items()
          if not any(s in k for s in SKIP_SUBSTRINGS)}
    pos, own = sd.get("pos_embed"), backbone.pos_embed
    if pos is not None and pos.shape != own.shape:
        n = pos.shape[1] - 1
        gw = int(round((n / pretrain_hw_ratio) ** 0.5))
        if gw * gw * pretrain_hw_ratio != n:
            raise ValueError(f"{path}: pos_embed has {n} patches, not a {pretrain_hw_ratio}:1 grid")
        sd["pos_embed"] = resize_pos_embed_hw(pos, (gw * pretrain_hw_ratio, gw), backbone.grid)
    if allow_random_stem:
        sd = {k: v for k, v in sd.items() if not k.startswith("patch_embed.")}
        report = load_weights(backbone, path, strict=False, sd=sd)
        bad = [k for k in report.missing if not k.startswith("patch_embed.")] + report.unexpected
        if bad:
            raise KeyError(f"{path}: keys outside the stem did not match: {bad[:8]}")
        return report
    return load_weights(backbone, path, strict=True, sd=sd)


def load_reid_checkpoint(model: nn.Module, path: str | Path, with_classifier: bool = True) -> LoadReport:
    """A supervised checkpoint (official ``transformer_120.pth`` or our ``last.pt``) into a ReIDModel.

    Strict on every key; ``with_classifier=False`` (evaluation: the identity classifier is not used) skips
    and allows only ``classifier.*``. Any other mismatch (a raw DINO file, another model) is a one-line
    :class:`~shared.backbones.CheckpointMismatchError` naming the file and the keys.
    """
    obj = read_checkpoint(path)
    sd = strip_prefix(obj["model"] if "model" in obj and isinstance(obj["model"], dict) else obj)
    skip = ("base.fc.",) + (() if with_classifier else ("classifier.",))
    return load_weights(model, path, strict=True, skip=skip, sd=sd,
                        allow_missing=() if with_classifier else ("classifier.",))
