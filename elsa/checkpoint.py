"""Released ELSA-Swin checkpoints (official ``ELSASwin`` layout) <-> our timm-based model.

The official files were written by timm 0.4.9's ``CheckpointSaver``: a dict with ``state_dict`` (and
``state_dict_ema`` for ELSA-Swin-B, evaluated with ``--use-ema``), ``epoch``, ``arch``, ``args``
(an ``argparse.Namespace``), ... Official ``validate.py`` loads with ``strict=False`` (mismatches pass
silently); we load strictly.

Official layout -> ours (:func:`official_to_timm`):

* ``layers.{i}.downsample.*`` sits at the **end** of stage i officially, at the start of stage i+1 in
  timm; ``head.*`` -> ``head.fc.*``.
* ELSA blocks (stages 0-2) keep their names (``attn.pre_proj``, ``attn.attn.{0,2}``,
  ``attn.ghost_head``, ``attn.post_proj``, ``mlp.fc1/fc2``, ``norm1/2``).
* Window-attention blocks (stage 3):
  ``attn.pre_proj`` -> ``attn.qkv`` with row blocks reordered: the official code reads its output as
  (v, q, k), timm as (q, k, v), so ``qkv = [rows C:2C; 2C:3C; 0:C]`` (bias too);
  ``attn.post_proj`` -> ``attn.proj``;
  ``attn.rb`` (heads, L) -> ``attn.relative_position_bias_table`` (L, heads), **transposed and
  reversed along L**: the official index is built from c_j - c_i, timm's from c_i - c_j, so
  ``relative_id == L - 1 - timm_index``; the ``relative_id`` / ``attn_mask`` buffers are dropped.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from shared.backbones import LoadReport, load_local_file, load_weights, strip_prefix


def _window_blocks(sd: Mapping[str, torch.Tensor], marker: str) -> set[str]:
    """Prefixes ``layers.i.blocks.j.attn`` of the window-attention blocks (those holding ``marker``)."""
    return {k[: -len(marker) - 1] for k in sd if k.endswith("." + marker)}


def official_to_timm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official ``ELSASwin`` state dict -> our ``elsa_swin`` (timm ``SwinTransformer``) state dict."""
    sd = strip_prefix(dict(sd))
    window = _window_blocks(sd, "rb")
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.endswith(".relative_id") or k.endswith(".attn_mask"):
            continue  # buffers, rebuilt by the model
        prefix, _, leaf = k.rpartition(".")
        parent = prefix.rpartition(".")[0]
        if parent in window and prefix.endswith("attn.pre_proj"):
            c = v.shape[0] // 3
            v = torch.cat([v[c:2 * c], v[2 * c:], v[:c]])  # (v, q, k) -> (q, k, v)
            k = f"{parent}.qkv.{leaf}"
        elif parent in window and prefix.endswith("attn.post_proj"):
            k = f"{parent}.proj.{leaf}"
        elif prefix in window and leaf == "rb":
            v = v.flip(1).t().contiguous()  # (heads, L), index c_j - c_i -> (L, heads), c_i - c_j
            k = f"{prefix}.relative_position_bias_table"
        k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", k)
        k = re.sub(r"^head\.", "head.fc.", k)
        out[k] = v
    return out


def timm_to_official(sd: Mapping[str, torch.Tensor], window_size: int = 7) -> dict[str, torch.Tensor]:
    """Inverse of :func:`official_to_timm` (``relative_id`` rebuilt the official way); for exports
    and tests. ``window_size``: the window of the window-attention stage."""
    window = _window_blocks(sd, "relative_position_bias_table")
    rel_id = official_relative_id(window_size)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        prefix, _, leaf = k.rpartition(".")
        parent = prefix.rpartition(".")[0]
        if parent in window and prefix.endswith("attn.qkv"):
            c = v.shape[0] // 3
            v = torch.cat([v[2 * c:], v[:c], v[c:2 * c]])  # (q, k, v) -> (v, q, k)
            k = f"{parent}.pre_proj.{leaf}"
        elif parent in window and prefix.endswith("attn.proj"):
            k = f"{parent}.post_proj.{leaf}"
        elif prefix in window and leaf == "relative_position_bias_table":
            v = v.t().flip(1).contiguous()
            k = f"{prefix}.rb"
            out[f"{prefix}.relative_id"] = rel_id.clone()
        k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", k)
        k = re.sub(r"^head\.fc\.", "head.", k)
        out[k] = v
    return out


def official_relative_id(window_size: int) -> torch.Tensor:
    """The official ``relative_id`` buffer, (w^2 * w^2,): index of c_j - c_i (c = window coords)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, None, :] - coords[:, :, None]).permute(1, 2, 0) + (window_size - 1)
    return (rel[..., 0] * (2 * window_size - 1) + rel[..., 1]).reshape(-1)


def read_official_checkpoint(path: str | Path, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The raw official state dict of a released file: its ``state_dict`` (or, with ``use_ema``,
    ``state_dict_ema``), or the file itself when it is a plain state dict. timm's saver stores ``args``
    as an ``argparse.Namespace``, which is allowed here (the shared loader's ``weights_only`` refuses it)."""
    path = Path(path)
    raw = load_local_file(path)
    key = "state_dict_ema" if use_ema else "state_dict"
    if not isinstance(raw, Mapping):
        raise RuntimeError(f"{path}: expected a dict, got {type(raw).__name__}")
    if key in raw:
        return dict(raw[key])
    if use_ema:
        raise KeyError(f"{path}: no 'state_dict_ema' entry (only ELSA-Swin-B was released with EMA weights)")
    if all(torch.is_tensor(v) for v in raw.values()):
        return dict(raw)
    raise KeyError(f"{path}: no 'state_dict' entry and not a plain state dict (keys: {list(raw)[:8]})")


def load_official_checkpoint(model: nn.Module, path: str | Path, use_ema: bool = False,
                             strict: bool = True) -> LoadReport:
    """Load a released ELSA-Swin checkpoint into an ``elsa_swin_*`` model, strictly by default."""
    sd = official_to_timm(read_official_checkpoint(path, use_ema))
    return load_weights(model, path, strict=strict, sd=sd)


def engine_state(path: str | Path) -> dict | None:
    """Our engine checkpoint (``{'model', 'optimizer', ...}``) as loaded, or ``None`` for anything else
    (a released file holds an ``argparse.Namespace`` that ``weights_only`` refuses). A missing file raises
    the shared one-line ``FileNotFoundError`` naming it (``shared.backbones.load_local_file``)."""
    if not Path(path).is_file():
        load_local_file(path)  # raises "<path>: checkpoint not found ..."
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not loadable as an engine checkpoint: the official loader decides
        return None
    return state if isinstance(state, dict) and "model" in state and "optimizer" in state else None
