"""Re-identification retrieval metrics: CMC, mAP and mINP under the Market-1501 protocol.

Protocol (torchreid/fast-reid ``eval_market1501``):
- rank the whole gallery by distance to each query (squared Euclidean, or cosine distance 1 - cos);
- drop, for that query, gallery items with the query's pid AND camera (same-camera shots of the same
  person are junk, not matches), and gallery items whose pid is ``junk_pid`` (-1: Market's junk images;
  torchreid drops them when loading, so keeping the default changes nothing there). pid 0 (distractors)
  stays in the gallery as a negative;
- a query with no remaining match is skipped and counted in ``num_skipped_queries``;
- CMC@k = share of queries whose first match is within the top k; AP = sum_k P@k rel_k / #rel
  (non-interpolated; ``ap_mode="trapezoid"`` gives the MARS/Market MATLAB code's interpolation);
  INP = #rel / rank of the last match (Ye et al., TPAMI 2021); mAP, mINP = means over evaluated queries.
- Ties in distance are broken by gallery index (a stable sort), in both implementations.

Two implementations, kept side by side and tested against each other:
- :func:`reid_evaluate` (fast): query chunks on torch, one GEMM per chunk and no per-row sort of the
  gallery. The rank of a query's k-th match (matches ordered by distance, then gallery index) is
  k + 1 + #valid non-matches before it, so only those P counts (P = the query's few matches) are needed,
  not the gallery's order. On CPU they come from a ~15-line C loop (compiled with the system C compiler
  on first use, called through ctypes): P vectorised compare-and-count passes over the row, O(G P) but
  at SIMD speed, ~50x cheaper than the torch ops. Without a compiler (or on GPU) the torch fallback
  ``searchsorted``-s every distance into the query's sorted match distances and ``bincount``-s the bins
  (O(G log P), no sort either). A query's same-pid items come from the gallery grouped by pid, not from
  a (Q, G) comparison. Memory is O(chunk x G): MSMT17 (11,659 x 82,161, 768-d) fits well under 2 GiB.
- :func:`reid_evaluate_reference`: the straightforward per-query numpy loop (argsort, filter, cumsum).

All returned numbers are percentages (0-100), including the ``cmc`` array.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import torch

from ..native import load_c, parallel_rows
from ._common import to_numpy


def _check_inputs(qf: Any, gf: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any):
    q_pids, g_pids = to_numpy(q_pids).reshape(-1), to_numpy(g_pids).reshape(-1)
    q_camids, g_camids = to_numpy(q_camids).reshape(-1), to_numpy(g_camids).reshape(-1)
    nq, ng = qf.shape[0], gf.shape[0]
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f"features must be (Q, D) and (G, D), got {tuple(qf.shape)} and {tuple(gf.shape)}")
    if len(q_pids) != nq or len(q_camids) != nq:
        raise ValueError(f"{nq} query features but {len(q_pids)} pids / {len(q_camids)} camids")
    if len(g_pids) != ng or len(g_camids) != ng:
        raise ValueError(f"{ng} gallery features but {len(g_pids)} pids / {len(g_camids)} camids")
    return (q_pids.astype(np.int64), g_pids.astype(np.int64), q_camids.astype(np.int64),
            g_camids.astype(np.int64))


def _summary(first_rank: np.ndarray, ap: np.ndarray, inp: np.ndarray, num_query: int, max_rank: int,
             query_index: np.ndarray) -> dict[str, Any]:
    """Assemble the result dict from per-valid-query first-match ranks (1-based), AP and INP (fractions)."""
    if first_rank.size == 0:
        raise ValueError("no query has a valid match in the gallery (after removing same pid + camera)")
    counts = np.bincount(np.minimum(first_rank, max_rank + 1) - 1, minlength=max_rank + 1)
    cmc = 100.0 * np.cumsum(counts[:max_rank]) / first_rank.size
    return {
        "cmc": cmc,
        "rank1": float(100.0 * np.mean(first_rank <= 1)),
        "rank5": float(100.0 * np.mean(first_rank <= 5)),
        "rank10": float(100.0 * np.mean(first_rank <= 10)),
        "mAP": float(100.0 * ap.mean()),
        "mINP": float(100.0 * inp.mean()),
        "per_query_AP": 100.0 * ap,
        "query_index": query_index,
        "num_valid_queries": int(first_rank.size),
        "num_skipped_queries": int(num_query - first_rank.size),
    }


# counts[r, k] = #{g: dist[r, g] before match k of row r}, "before" = smaller distance, or the same
# distance and a smaller gallery index (the stable-sort tie rule): <= left of the match, < right of it.
# Excluded items (the match itself, same-camera junk) are +inf and never count. Rows are read from L2.
_COUNT_SRC = r"""
#include <stdint.h>
void count_before(const float *dist, int64_t G, const float *match_d, const int64_t *match_idx,
                  const int64_t *num_rel, int64_t P, int64_t r0, int64_t r1, int64_t *counts) {
  for (int64_t r = r0; r < r1; ++r) {
    const float *row = dist + r * G;
    for (int64_t k = 0; k < num_rel[r]; ++k) {
      const float t = match_d[r * P + k];
      const int64_t m = match_idx[r * P + k];
      int32_t c = 0; /* int32 vectorises 16-wide; the caller keeps G < 2^31 */
      for (int64_t g = 0; g < m; ++g) c += row[g] <= t;
      for (int64_t g = m; g < G; ++g) c += row[g] < t;
      counts[r * P + k] = c;
    }
  }
}
"""
_COUNT_ARGS = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
               ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]


def _native_count_before():
    """The compiled counting loop (ctypes), or None without a C compiler / with VISIONREPRO_REID_NATIVE=0."""
    lib = load_c("reid_count", _COUNT_SRC, {"count_before": _COUNT_ARGS}, env="VISIONREPRO_REID_NATIVE")
    return None if lib is None else lib.count_before


def _count_before_native(fn, dist: torch.Tensor, match_d: torch.Tensor, match_idx: torch.Tensor,
                         num_rel: torch.Tensor) -> torch.Tensor:
    """(B, P) non-matches before each match, rows split over torch's thread count (ctypes drops the GIL)."""
    b, g = dist.shape
    p = match_d.shape[1]
    dist, match_d = dist.contiguous(), match_d.contiguous()
    match_idx, num_rel = match_idx.contiguous(), num_rel.contiguous()
    counts = torch.zeros(b, p, dtype=torch.int64)
    ptrs = [t.data_ptr() for t in (dist, match_d, match_idx, num_rel, counts)]
    parallel_rows(lambda r0, r1: fn(ptrs[0], g, ptrs[1], ptrs[2], ptrs[3], p, r0, r1, ptrs[4]), b)
    return counts


def _exact_bins(dist: torch.Tensor, bins: torch.Tensor, match_d: torch.Tensor, match_idx: torch.Tensor) -> None:
    """Fix ``bins`` in place where a distance ties with a match: order ties by gallery index.

    ``bins[r, g] = #{k: match_d[r, k] < dist[r, g]}`` from ``searchsorted``; the stable-sort rank needs
    ``#{k: (match_d, match_idx)[r, k] < (dist[r, g], g)}``. Exact ties are rare with real features, so
    the flagged elements are few; they are fixed in pieces to bound memory when they are not.
    """
    padded = torch.cat([match_d, torch.full_like(match_d[:, :1], float("inf"))], dim=1)
    tied = (padded.gather(1, bins) == dist).nonzero(as_tuple=False)
    if tied.numel() == 0:
        return
    piece = max(1, (1 << 22) // max(match_d.shape[1], 1))
    for i in range(0, tied.shape[0], piece):
        r, g = tied[i : i + piece, 0], tied[i : i + piece, 1]
        d = dist[r, g][:, None]
        md, mi = match_d[r], match_idx[r]
        before = (md < d) | ((md == d) & (mi < g[:, None]))
        bins[r, g] = before.sum(dim=1)


def reid_evaluate(
    query_feats: Any,
    gallery_feats: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    metric: str = "euclidean",
    chunk_size: int | None = None,
    ap_mode: str = "standard",
    junk_pid: int | None = -1,
    device: str | torch.device | None = None,
    counter: str = "auto",
) -> dict[str, Any]:
    """Market-1501 protocol CMC / mAP / mINP, computed in query chunks with torch.

    Args:
        query_feats: ``(Q, D)`` features (torch or numpy; computed in float32).
        gallery_feats: ``(G, D)`` features.
        q_pids, g_pids: ``(Q,)``, ``(G,)`` integer identities.
        q_camids, g_camids: ``(Q,)``, ``(G,)`` integer camera ids.
        max_rank: length of the returned CMC curve (it may exceed G: a curve past the gallery is flat).
        metric: ``"euclidean"`` (squared; same ranking as Euclidean) or ``"cosine"`` (1 - cosine
            similarity). Normalise the features yourself if the paper does (TransReID-SSL: L2 then
            squared Euclidean).
        chunk_size: queries per chunk; default keeps the working set near 512 MiB
            (about 20 bytes x chunk x G).
        ap_mode: ``"standard"`` (non-interpolated AP, torchreid/fast-reid) or ``"trapezoid"`` (MARS/Market
            MATLAB: each hit adds (P@prev + P@hit) / 2 / #rel).
        junk_pid: gallery pid dropped for every query (Market's -1 junk); ``None`` keeps all.
        device: where to compute; default the query tensor's device (CPU for numpy input).
        counter: how each match's rank is counted: ``"native"`` (the compiled C loop, CPU only),
            ``"torch"`` (``searchsorted`` + ``bincount``) or ``"auto"`` (native where it is available).

    Returns:
        dict with ``cmc`` ``(max_rank,)``, ``rank1``, ``rank5``, ``rank10``, ``mAP``, ``mINP`` (all percent),
        ``per_query_AP`` ``(V,)`` and ``query_index`` ``(V,)`` for the V evaluated queries,
        ``num_valid_queries``, ``num_skipped_queries``.
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    if ap_mode not in ("standard", "trapezoid"):
        raise ValueError(f"ap_mode must be 'standard' or 'trapezoid', got {ap_mode!r}")
    if counter not in ("auto", "native", "torch"):
        raise ValueError(f"counter must be 'auto', 'native' or 'torch', got {counter!r}")
    if device is None:
        device = query_feats.device if isinstance(query_feats, torch.Tensor) else torch.device("cpu")
    qf = torch.as_tensor(query_feats).to(device=device, dtype=torch.float32)
    gf = torch.as_tensor(gallery_feats).to(device=device, dtype=torch.float32)
    q_pids, g_pids, q_camids, g_camids = _check_inputs(qf, gf, q_pids, g_pids, q_camids, g_camids)
    if not (bool(torch.isfinite(qf).all()) and bool(torch.isfinite(gf).all())):
        raise ValueError("features contain NaN or Inf")
    nq = qf.shape[0]
    if junk_pid is not None and np.any(g_pids == junk_pid):  # junk is dropped for every query
        keep = np.flatnonzero(g_pids != junk_pid)
        gf, g_pids, g_camids = gf[torch.as_tensor(keep, device=device)], g_pids[keep], g_camids[keep]
    ng = gf.shape[0]
    if ng == 0 or nq == 0:  # the documented error, before any indexing into an empty gallery
        _summary(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), nq, max_rank, np.zeros(0, np.int64))
    native = None
    if counter != "torch" and torch.device(device).type == "cpu" and ng < 2**31:
        native = _native_count_before()
    if counter == "native" and native is None:
        raise RuntimeError("counter='native' needs a CPU device and a working C compiler (cc / $CC)")
    if chunk_size is None:  # ~512 MiB: the distances (4 bytes each, x2 for slack; torch: +bins, ~20 bytes)
        chunk_size = max(1, (512 << 20) // ((8 if native else 20) * max(ng, 1)))

    if metric == "cosine":
        qf = torch.nn.functional.normalize(qf, dim=1)
        gf = torch.nn.functional.normalize(gf, dim=1)
    else:
        g_sq = (gf * gf).sum(dim=1)
    gf_t = gf.t()
    # Gallery grouped by pid (stable, so gallery indices ascend within a pid): a query's same-pid items
    # are one slice of `by_pid`, found without comparing the query's pid against the whole gallery.
    by_pid = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[by_pid]
    by_pid_t = torch.as_tensor(by_pid, device=device)
    g_cam_t = torch.as_tensor(g_camids, device=device)
    inf = float("inf")

    first_ranks, aps, inps, kept = [], [], [], []
    for start in range(0, nq, chunk_size):
        stop = min(start + chunk_size, nq)
        b = stop - start
        q = qf[start:stop]
        dist = q @ gf_t  # (B, G)
        if metric == "cosine":
            dist.neg_().add_(1.0)
        else:  # |q|^2 + |g|^2 - 2 q.g, the same formula (and rounding) as the reference
            dist.mul_(-2.0).add_(g_sq).add_((q * q).sum(dim=1, keepdim=True))
        # Same-pid gallery items of each query, padded: (B, S) gallery indices.
        lo = np.searchsorted(sorted_pids, q_pids[start:stop], side="left")
        hi = np.searchsorted(sorted_pids, q_pids[start:stop], side="right")
        count = torch.as_tensor(hi - lo, device=device)
        smax = max(int(count.max()), 1)
        slot = torch.arange(smax, device=device)
        in_row = slot[None, :] < count[:, None]
        last_slot = (count - 1).clamp_min(0)[:, None]
        pos = torch.as_tensor(lo, device=device)[:, None] + torch.minimum(slot[None, :], last_slot)
        same_idx = by_pid_t[pos.clamp(max=max(ng - 1, 0))]
        qc = torch.as_tensor(q_camids[start:stop], device=device)[:, None]
        is_match = in_row & (g_cam_t[same_idx] != qc)  # same pid, other camera
        num_rel = is_match.sum(dim=1)
        valid = num_rel > 0
        if not bool(valid.any()):
            continue
        # Each query's match distances, sorted by (distance, gallery index): (B, P), +inf padded.
        match_d = dist.gather(1, same_idx).masked_fill_(~is_match, inf)
        match_d, order = match_d.sort(dim=1, stable=True)
        pmax = int(num_rel.max())
        match_d, match_idx = match_d[:, :pmax].contiguous(), same_idx.gather(1, order)[:, :pmax]
        # Matches and same-camera junk leave the count: at +inf they fall past the last match.
        dist.scatter_(1, same_idx, inf)
        if native is not None:  # before[r, k] = #valid non-matches ranked before match k
            before = _count_before_native(native, dist, match_d, match_idx, num_rel)
        else:  # bins[r, g] = number of matches ranked before valid non-match g
            bins = torch.searchsorted(match_d, dist)
            _exact_bins(dist, bins, match_d, match_idx)
            bins += (torch.arange(b, device=device) * (pmax + 1))[:, None]
            hist = torch.bincount(bins.view(-1), minlength=b * (pmax + 1)).view(b, pmax + 1)[:, :pmax]
            before = torch.cumsum(hist, dim=1)
            del bins, hist
        del dist
        # Rank (1-based, junk removed) of the k-th match = k + 1 + #non-matches before it.
        k = torch.arange(pmax, device=device, dtype=torch.float64)
        rank = k + 1 + before.to(torch.float64)  # (B, P)
        is_hit = k[None, :] < num_rel[:, None]
        precision = (k + 1) / rank
        if ap_mode == "trapezoid":
            prev = torch.where(rank > 1, k / (rank - 1).clamp_min(1), torch.ones_like(rank))
            precision = (precision + prev) / 2
        rel = num_rel.clamp_min(1).to(torch.float64)
        ap = (precision * is_hit).sum(dim=1) / rel
        last = rank.gather(1, (num_rel.clamp_min(1) - 1)[:, None])[:, 0]
        inp = rel / last
        first_ranks.append(rank[valid, 0].round().to(torch.int64).cpu().numpy())
        aps.append(ap[valid].cpu().numpy())
        inps.append(inp[valid].cpu().numpy())
        kept.append(start + valid.nonzero()[:, 0].cpu().numpy())

    cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dtype=dt)  # noqa: E731
    return _summary(cat(first_ranks, np.int64), cat(aps, np.float64), cat(inps, np.float64), nq, max_rank,
                    cat(kept, np.int64))


def reid_evaluate_reference(
    query_feats: Any,
    gallery_feats: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    metric: str = "euclidean",
    ap_mode: str = "standard",
    junk_pid: int | None = -1,
) -> dict[str, Any]:
    """Per-query numpy reference of :func:`reid_evaluate` (torchreid's ``eval_market1501`` loop).

    For each query: distances to the whole gallery (float32, same formula), stable argsort, drop same
    pid + camera (and ``junk_pid``), then CMC / AP / INP from the cumulative hit vector. Slow (one pass
    over the gallery per query) and plain on purpose. Arguments and returned keys as :func:`reid_evaluate`.
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    if ap_mode not in ("standard", "trapezoid"):
        raise ValueError(f"ap_mode must be 'standard' or 'trapezoid', got {ap_mode!r}")
    qf = to_numpy(query_feats, np.float32)
    gf = to_numpy(gallery_feats, np.float32)
    q_pids, g_pids, q_camids, g_camids = _check_inputs(qf, gf, q_pids, g_pids, q_camids, g_camids)
    if metric == "cosine":
        qf = qf / np.maximum(np.linalg.norm(qf, axis=1, keepdims=True), 1e-12)
        gf = gf / np.maximum(np.linalg.norm(gf, axis=1, keepdims=True), 1e-12)
    g_sq = (gf * gf).sum(axis=1)

    first_ranks, aps, inps, kept = [], [], [], []
    for i in range(qf.shape[0]):
        if metric == "cosine":
            dist = 1.0 - gf @ qf[i]
        else:
            dist = -2.0 * (gf @ qf[i]) + g_sq + (qf[i] * qf[i]).sum()
        order = np.argsort(dist, kind="stable")
        same_pid = g_pids[order] == q_pids[i]
        remove = same_pid & (g_camids[order] == q_camids[i])
        if junk_pid is not None:
            remove |= g_pids[order] == junk_pid
        hits = same_pid[~remove].astype(np.float64)  # 1 where the ranked (junk-free) item is a match
        if not hits.any():
            continue  # this query has no valid match: skipped, as in torchreid
        num_rel = hits.sum()
        positions = np.arange(1, hits.size + 1)
        hit_ranks = positions[hits == 1]
        precision = np.cumsum(hits) / positions
        if ap_mode == "trapezoid":
            prev = np.ones_like(precision)
            prev[1:] = precision[:-1]
            precision = (precision + prev) / 2
        aps.append((precision * hits).sum() / num_rel)
        inps.append(num_rel / hit_ranks[-1])
        first_ranks.append(hit_ranks[0])
        kept.append(i)
    return _summary(np.asarray(first_ranks, dtype=np.int64), np.asarray(aps), np.asarray(inps),
                    qf.shape[0], max_rank, np.asarray(kept, dtype=np.int64))
