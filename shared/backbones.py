"""Common backbones: ViTs from timm, ResNets from torchvision; weights only from local files.

* :func:`create_vit` -- ``timm.create_model`` with ``pretrained=False`` (nothing downloads); timm's
  ``attn_layer=`` / ``embed_layer=`` hooks pass through for the papers that swap those parts.
* :func:`vit_tokens` -- patch tokens (and, on request, every block's attention maps) of a timm ViT.
* :func:`load_state_dict_file` / :func:`load_weights` -- strip ``module.``, apply a per-paper key map,
  adapt DeiT distilled checkpoints (drop the distillation token and heads, resize pos-embed), load
  strictly by default and report missing / unexpected keys plainly.
* :func:`create_resnet` -- torchvision ResNet-50/101 with an optional local weights file.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from torch import nn

from .errors import CheckpointError


def create_vit(name: str = "vit_small_patch16_224", **kwargs) -> nn.Module:
    """A timm ViT built from scratch (``pretrained`` is forced off: load weights with ``load_weights``)."""
    kwargs.pop("pretrained", None)
    return timm.create_model(name, pretrained=False, **kwargs)


def create_resnet(depth: int = 50, weights: str | Path | None = None, num_classes: int = 1000) -> nn.Module:
    """torchvision ResNet-``depth``; ``weights`` is a local ImageNet state-dict file (never downloaded)."""
    import torchvision

    fn = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50,
          101: torchvision.models.resnet101, 152: torchvision.models.resnet152}.get(depth)
    if fn is None:
        raise ValueError(f"resnet depth {depth} not one of 18/34/50/101/152")
    model = fn(weights=None, num_classes=num_classes)
    if weights:
        report = load_weights(model, weights, strict=num_classes == 1000, skip=() if num_classes == 1000
                              else ("fc.",))
        report.raise_or_print(strict=num_classes == 1000)
    return model


class _AttnRecorder:
    """Forward hook that recomputes softmax(q k^T / sqrt(d)) of a timm ``Attention`` block."""

    def __init__(self):
        self.maps: list[torch.Tensor] = []

    def __call__(self, module, inputs, output):
        x = inputs[0]
        b, n, c = x.shape
        qkv = module.qkv(x).reshape(b, n, 3, module.num_heads, c // module.num_heads).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        q, k = module.q_norm(q), module.k_norm(k)
        self.maps.append(((q * module.scale) @ k.transpose(-2, -1)).softmax(-1).detach())


def vit_tokens(model: nn.Module, x: torch.Tensor, return_attn: bool = False):
    """Run a timm ``VisionTransformer``; return the final-normed tokens ``(B, N_prefix + N, D)``.

    With ``return_attn`` also return a list (one per block) of attention maps ``(B, H, N, N)`` of the
    standard scaled-dot-product form (blocks with replaced attention are skipped).
    """
    if not return_attn:
        return model.forward_features(x)
    rec = _AttnRecorder()
    handles = [blk.attn.register_forward_hook(rec) for blk in model.blocks
               if all(hasattr(blk.attn, a) for a in ("qkv", "num_heads", "scale", "q_norm", "k_norm"))]
    try:
        tokens = model.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    return tokens, rec.maps


# ----------------------------------------------------------------------------- weights
@dataclass
class LoadReport:
    """What a load did: keys missing from the file, keys the model did not take, keys skipped."""

    path: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.path}:"]
        for title, keys in (("missing (model keys not in file)", self.missing),
                            ("unexpected (file keys the model lacks)", self.unexpected),
                            ("skipped by the key map", self.skipped)):
            if keys:
                lines.append(f"  {title}: {len(keys)}: " + ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else ""))
        if len(lines) == 1:
            lines.append("  all keys matched")
        return "\n".join(lines)

    def one_line(self) -> str:
        """``<file>: checkpoint does not match the model: missing N (a, b, ...); unexpected M (...)``."""
        parts = [f"{title} {len(keys)} ({', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''})"
                 for title, keys in (("missing", self.missing), ("unexpected", self.unexpected)) if keys]
        return f"{self.path}: checkpoint does not match the model: " + "; ".join(parts)

    def raise_or_print(self, strict: bool = True) -> None:
        if strict and (self.missing or self.unexpected):
            raise CheckpointMismatchError(self.one_line())
        if self.missing or self.unexpected or self.skipped:
            print(self)


class CheckpointMismatchError(KeyError, ValueError):
    """A checkpoint's keys do not match the model. One line naming the file and the keys; a ``ValueError``
    (so every entry point reports it as ``<prog>: error: ...``) and a ``KeyError`` (as before)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def load_local_file(path: str | Path, what: str = "checkpoint"):
    """``torch.load`` of a local file (CPU, ``weights_only``; nothing is ever downloaded), with one-line errors that
    name the file: ``FileNotFoundError`` when it is missing, :class:`~shared.errors.CheckpointError` (a user error)
    when it does not load, e.g. truncated, corrupt or not a torch file; torch's reason is cut to its first sentence.
    timm's ``CheckpointSaver`` and DINO store their argparse ``args`` beside the weights: that one class is allowed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found (pass a local file; nothing is downloaded)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reason = reason.split(". ")[0].rstrip(".")  # torch's weights_only text runs on for a paragraph
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(e).__name__}: {reason})") from None


def load_state_dict_file(path: str | Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat state dict.

    Accepts a plain state dict or one wrapped under ``key`` / ``model`` / ``state_dict`` /
    ``model_state``; ``.safetensors`` files too. Never downloads.
    """
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = load_local_file(path, "weights file")
    for k in ([key] if key else []) + ["model", "state_dict", "model_state", "net"]:
        if isinstance(obj, Mapping) and k in obj and isinstance(obj[k], Mapping):
            obj = obj[k]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return dict(obj)


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove a DataParallel/DDP ``module.`` (or any) prefix where present."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}


def resize_pos_embed(pos: torch.Tensor, new_grid: tuple[int, int], num_prefix: int) -> torch.Tensor:
    """Resize a ``(1, prefix + H*W, D)`` pos-embed to ``new_grid`` (prefix rows kept): timm's
    ``resample_abs_pos_embed``, bicubic with antialiasing (a target size, not DINO's scale factor)."""
    from timm.layers import resample_abs_pos_embed

    return resample_abs_pos_embed(pos, new_size=list(new_grid), num_prefix_tokens=num_prefix)


def adapt_deit_distilled(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """DeiT *distilled* checkpoint -> plain ViT: drop ``dist_token`` and ``head``/``head_dist``, delete
    pos-embed row 1 (the distillation token's slot), resize the patch grid to the model's."""
    out = {k: v for k, v in sd.items() if "dist" not in k and not k.startswith("head")}
    pos = sd.get("pos_embed")
    if pos is not None:
        if "dist_token" in sd:
            pos = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
        out["pos_embed"] = fit_pos_embed(pos, model)
    return out


def fit_pos_embed(pos: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Resize a pos-embed to ``model.pos_embed`` when their token grids differ (bicubic, antialiased: see
    :func:`resize_pos_embed`). Models that resample at forward time from the stored grid (DINO, TransFGU) must
    be built for the stored grid so that this is a no-op."""
    target = getattr(model, "pos_embed", None)
    if target is None or target.shape == pos.shape:
        return pos
    n_prefix = getattr(model, "num_prefix_tokens", 1)
    grid = model.patch_embed.grid_size
    return resize_pos_embed(pos, tuple(grid), n_prefix)


def load_weights(model: nn.Module, path: str | Path, key_map: Callable[[str], str | None] | None = None,
                 strict: bool = True, skip: tuple[str, ...] = (), deit_distilled: bool | None = None,
                 sd: dict[str, torch.Tensor] | None = None, allow_missing: tuple[str, ...] = ()) -> LoadReport:
    """Load a local checkpoint into ``model``.

    ``key_map(name)`` returns the model's name for a file key, or ``None`` to skip it (a paper's
    official layout -> our module tree). ``skip`` drops keys starting with any of these prefixes.
    ``deit_distilled`` (auto-detected from a ``dist_token`` key) adapts DeiT distilled checkpoints.
    Strict by default: a mismatch raises :class:`CheckpointMismatchError` naming the file and the keys;
    otherwise they are printed. ``allow_missing``: model keys starting with these prefixes may be absent from
    the file (they keep their initialisation, e.g. a classifier not needed for evaluation); every other key
    stays strict.
    """
    sd = strip_prefix(sd if sd is not None else load_state_dict_file(path))
    report = LoadReport(str(path))
    if deit_distilled or (deit_distilled is None and "dist_token" in sd):
        sd = adapt_deit_distilled(sd, model)
    mapped: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        new = key_map(k) if key_map else k
        if new is None or any(k.startswith(s) for s in skip):
            report.skipped.append(k)
            continue
        mapped[new] = v
    if "pos_embed" in mapped:
        mapped["pos_embed"] = fit_pos_embed(mapped["pos_embed"], model)
    own = model.state_dict()
    shape_bad = [k for k, v in mapped.items() if k in own and own[k].shape != v.shape]
    if shape_bad:
        raise ValueError(f"{path}: shape mismatch for " + ", ".join(
            f"{k} file {tuple(mapped[k].shape)} vs model {tuple(own[k].shape)}" for k in shape_bad[:8]))
    result = model.load_state_dict(mapped, strict=False)
    report.missing = [k for k in result.missing_keys if not k.startswith(allow_missing)]
    report.unexpected = list(result.unexpected_keys)
    report.raise_or_print(strict)
    return report
