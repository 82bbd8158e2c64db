"""Image-to-video evaluation (spec 4): first-frame queries, N-frame tracklet gallery, cosine, trapezoidal AP.

Protocols reported (TCL's own choice is unknown [REC: report both]):
- ``i2v``: the student encodes queries and gallery (VKD, issue #8);
- ``i2v_tkp``: student queries against a teacher-encoded gallery (TKP);
- ``v2v``: the teacher on whole query and gallery tracklets; ``i2v_teacher``: the teacher on I2V.
Junk = same pid and same camera; the MARS gallery is augmented with the queries (``augment=True``).
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
    return {f"{prefix}/mAP": float(r["mAP"]), f"{prefix}/rank1": float(r["rank1"]),
            f"{prefix}/rank5": float(r["rank5"])}


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
