"""Image-to-video feature extraction and scoring (spec 4), used by the task (``train.py``) and by the
``evaluate.py`` command (which re-exports it; its own module so that those two do not import each other).
The protocols are described in :mod:`tcl_i2v.evaluate`.
"""
from __future__ import annotations

import torch
from torch import nn

from shared.metrics.reid import reid_evaluate

from .data import Tracklet, augment_gallery, chunk_indices, read_frames


@torch.no_grad()
def extract(net: nn.Module, tracks: list[Tracklet], n_frames: int, transform=None, batch: int = 64,
            device: str | torch.device = "cpu") -> torch.Tensor:
    """``(len(tracks), D)`` pre-BN embeddings; ``n_frames = 1`` -> the first frame (I2V query), else the
    first frame of each of ``n_frames`` equal chunks, averaged (VKD gallery)."""
    was = net.training
    net.eval()
    feats = []
    for s in range(0, len(tracks), batch):
        clips = [read_frames(t.frames, chunk_indices(len(t.frames), n_frames, None) if n_frames > 1 else [0],
                             transform) for t in tracks[s:s + batch]]
        feats.append(net(torch.stack(clips).to(device))["emb"].float().cpu())
    net.train(was)
    return torch.cat(feats)


def _metrics(qf, gf, query, gallery, prefix: str) -> dict[str, float]:
    r = reid_evaluate(qf, gf, [t.pid for t in query], [t.pid for t in gallery], [t.cam for t in query],
                      [t.cam for t in gallery], metric="cosine", ap_mode="trapezoid")
    return {f"{prefix}/{k}": float(r[k]) for k in ("mAP", "rank1", "rank5", "rank10", "mINP")}


def evaluate_i2v(student: nn.Module | None, teacher: nn.Module | None, query: list[Tracklet],
                 gallery: list[Tracklet], n_frames: int = 8, augment: bool = True, transform=None,
                 device: str | torch.device = "cpu") -> dict[str, float]:
    """All protocols the available networks allow, as ``{"<protocol>/<metric>": percent}``."""
    gallery = augment_gallery(query, gallery) if augment else gallery
    out: dict[str, float] = {}
    g_t = None
    if teacher is not None:
        g_t = extract(teacher, gallery, n_frames, transform, device=device)
        out |= _metrics(extract(teacher, query, n_frames, transform, device=device), g_t, query, gallery, "v2v")
        out |= _metrics(extract(teacher, query, 1, transform, device=device), g_t, query, gallery, "i2v_teacher")
    if student is not None:
        q_s = extract(student, query, 1, transform, device=device)
        out |= _metrics(q_s, extract(student, gallery, n_frames, transform, device=device), query, gallery, "i2v")
        if g_t is not None and g_t.shape[1] == q_s.shape[1]:
            out |= _metrics(q_s, g_t, query, gallery, "i2v_tkp")
    return out


__all__ = ["evaluate_i2v", "extract"]
