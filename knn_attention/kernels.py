"""CPU kernel for k-NN attention's selection step: mask every score below its row's k-th largest.

``torch.topk`` (even ``sorted=False``) writes k values *and* int64 indices per row, and the threshold
form then needs a compare, a bool tensor and a ``masked_fill``: about 30 ms per DeiT-S layer at batch
16 on 2 cores, more than the attention's two matmuls. Here one C pass per row does all of it while the
row sits in L1: copy the row, quickselect the k-th largest (branch-free Lomuto partition, median of
three pivots), then overwrite the scores below it with -inf in place. Same values as
``s.masked_fill_(s < s.topk(k).values.amin(-1, keepdim=True), -inf)``, ties at the k-th place included
(every tied key is kept); a NaN row stays unmasked there as it does in the torch form.

Compiled at first use through :mod:`shared.native` (float32 and float64, contiguous CPU rows);
:func:`mask_below_kth_` returns False when it cannot run (no compiler, ``VISIONREPRO_NATIVE=0`` or
``VISIONREPRO_KNN_NATIVE=0``, another dtype or device) and the caller uses the torch form.
"""
from __future__ import annotations

import ctypes

import torch

from shared.native import load_c

_SRC = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* k-th largest (t = k - 1, 0-based in descending order) of a[0..n), reordering a. */
#define SELECT(T, NAME)                                                                     \
static T NAME(T *a, int64_t n, int64_t t) {                                                 \
    int64_t lo = 0, hi = n - 1;                                                             \
    while (lo < hi) {                                                                       \
        int64_t mid = lo + (hi - lo) / 2, m;                                                \
        T x = a[lo], y = a[mid], z = a[hi];                                                 \
        if (x > y) m = (y > z) ? mid : ((x > z) ? hi : lo);                                 \
        else m = (x > z) ? lo : ((y > z) ? hi : mid);                                       \
        T p = a[m]; a[m] = a[hi]; a[hi] = p;                                                \
        int64_t st = lo;                                                                    \
        for (int64_t i = lo; i < hi; ++i) {  /* a[lo..st) > p, a[st..i) <= p */             \
            T v = a[i]; int64_t c = v > p; a[i] = a[st]; a[st] = v; st += c;                \
        }                                                                                   \
        a[hi] = a[st]; a[st] = p;                                                           \
        if (st == t) return p;                                                              \
        if (t < st) hi = st - 1; else lo = st + 1;                                          \
    }                                                                                       \
    return a[lo];                                                                           \
}

/* k-th largest of the row x[0..n) without reordering it (buf: n scratch entries).
   Bisection on the value keeps cnt(x >= lo) = c_lo >= k > c_hi = cnt(x >= hi), one vectorised counting
   pass per step, until at most 8 entries lie in [lo, hi). Then the answer is the smallest t >= lo
   with cnt(x > t) < k, found by stepping through the distinct values from lo upwards (one pass each).
   Rows with inf or NaN, or whose interval cannot be split further, gather [lo, hi) and quickselect. */
#define KTH(T, NAME, SEL)                                                                   \
static T NAME(const T *x, T *buf, int64_t n, int64_t k) {                                   \
    T mn = x[0], mx = x[0];                                                                 \
    _Pragma("omp simd reduction(min:mn) reduction(max:mx)")                                 \
    for (int64_t j = 0; j < n; ++j) { mn = x[j] < mn ? x[j] : mn; mx = x[j] > mx ? x[j] : mx; } \
    int64_t c_lo = 0, c_hi = 0, m = 0;                                                      \
    _Pragma("omp simd reduction(+:c_lo, c_hi)")                                             \
    for (int64_t j = 0; j < n; ++j) { c_lo += x[j] >= mn; c_hi += x[j] >= mx; }             \
    T lo = mn, hi = mx;                                                                     \
    if (!(mx - mn < (T)INFINITY) || c_lo != n) goto full;  /* inf, NaN */                   \
    if (c_hi >= k) return mx;                                                               \
    for (int it = 0; it < 64 && c_lo - c_hi > 8; ++it) {                                    \
        T mid = lo + (hi - lo) * (T)0.5;                                                    \
        if (!(mid > lo && mid < hi)) break;                                                 \
        int64_t c = 0;                                                                      \
        _Pragma("omp simd reduction(+:c)")                                                  \
        for (int64_t j = 0; j < n; ++j) c += x[j] >= mid;                                   \
        if (c >= k) { lo = mid; c_lo = c; } else { hi = mid; c_hi = c; }                    \
    }                                                                                       \
    if (c_lo - c_hi <= 8) {                                                                 \
        T t = (T)INFINITY;                                                                  \
        _Pragma("omp simd reduction(min:t)")                                                \
        for (int64_t j = 0; j < n; ++j) t = (x[j] >= lo && x[j] < t) ? x[j] : t;             \
        for (int64_t step = 0; step <= c_lo - c_hi; ++step) {  /* cnt(x >= t) >= k holds */ \
            int64_t g = 0;                                                                  \
            T nxt = (T)INFINITY;                                                            \
            _Pragma("omp simd reduction(+:g) reduction(min:nxt)")                           \
            for (int64_t j = 0; j < n; ++j) {                                               \
                g += x[j] > t;                                                              \
                nxt = (x[j] > t && x[j] < nxt) ? x[j] : nxt;                                \
            }                                                                               \
            if (g < k) return t;                                                            \
            t = nxt;                                                                        \
        }                                                                                   \
    }                                                                                       \
    for (int64_t j = 0; j < n; ++j) { T v = x[j]; buf[m] = v; m += (v >= lo) & (v < hi); }  \
    if (k - c_hi >= 1 && k - c_hi <= m) return SEL(buf, m, k - c_hi - 1);                   \
full:                                                                                       \
    for (int64_t j = 0; j < n; ++j) buf[j] = x[j];                                          \
    return SEL(buf, n, k - 1);                                                              \
}

/* s (rows x n, contiguous): s[r, j] = -inf where s[r, j] < k-th largest of row r. Rows are split
   over `threads` OpenMP threads (torch's own pool, see shared/native.py). */
#define MASK(T, NAME, KTHF)                                                                 \
void NAME(T *s, int64_t n, int64_t k, int64_t rows, int64_t threads) {                      \
    _Pragma("omp parallel num_threads(threads)")                                            \
    {                                                                                       \
        T *buf = (T *)malloc(sizeof(T) * (size_t)n);                                        \
        _Pragma("omp for schedule(static)")                                                 \
        for (int64_t r = 0; r < rows; ++r) {                                                \
            if (!buf) continue;                                                             \
            T *row = s + r * n;                                                             \
            T kth = KTHF(row, buf, n, k);                                                   \
            for (int64_t j = 0; j < n; ++j) row[j] = row[j] < kth ? (T)(-INFINITY) : row[j];\
        }                                                                                   \
        free(buf);                                                                          \
    }                                                                                       \
}

SELECT(float, select_f32)
SELECT(double, select_f64)
KTH(float, kth_f32, select_f32)
KTH(double, kth_f64, select_f64)
MASK(float, mask_below_kth_f32, kth_f32)
MASK(double, mask_below_kth_f64, kth_f64)
"""
_ARGS = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
_SYMBOLS = {torch.float32: "mask_below_kth_f32", torch.float64: "mask_below_kth_f64"}


def _lib():
    return load_c("knn_select", _SRC, {s: _ARGS for s in _SYMBOLS.values()}, env="VISIONREPRO_KNN_NATIVE",
                  openmp=True)


def native_available() -> bool:
    """True when the compiled kernel can run in this process."""
    return _lib() is not None


@torch.no_grad()
def mask_below_kth_(scores: torch.Tensor, k: int) -> bool:
    """In place: ``scores[..., j] = -inf`` where below the k-th largest of its row (last dim).

    Returns True when done, False (``scores`` untouched) when the kernel cannot run for this tensor:
    not a contiguous float32/float64 CPU tensor, or no compiled kernel.
    """
    if scores.device.type != "cpu" or scores.dtype not in _SYMBOLS or not scores.is_contiguous():
        return False
    n = scores.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, {n}]")
    lib = _lib()
    if lib is None:
        return False
    if k == n or scores.numel() == 0:
        return True
    getattr(lib, _SYMBOLS[scores.dtype])(scores.data_ptr(), n, k, scores.numel() // n, torch.get_num_threads())
    return True


__all__ = ["mask_below_kth_", "native_available"]
