"""ReID metrics: a hand-computed Market-protocol case, and the chunked torch version against the
per-query numpy reference (ties, queries without matches, junk pid, cosine, trapezoid AP)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from shared.metrics import reid_evaluate, reid_evaluate_reference

# 1-D features: every query sits at 0, gallery item g_i at i + 1, so the ranking is g0, g1, ..., g6.
GALLERY_X = np.arange(1.0, 8.0)[:, None]
G_PIDS = np.array([1, 1, 1, 3, 1, 1 - 2, 2])  # g5 has pid -1 (Market junk)
G_CAMS = np.array([2, 0, 1, 0, 2, 1, 0])
Q_PIDS = np.array([1, 2, 4, 3])  # pid 4 is not in the gallery
Q_CAMS = np.array([0, 1, 0, 1])
QUERY_X = np.zeros((4, 1))


def hand_case(fn, **kw):
    return fn(QUERY_X, GALLERY_X, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=10, **kw)


@pytest.mark.parametrize("fn", [reid_evaluate, reid_evaluate_reference])
def test_hand_built_case(fn):
    # q0 (pid 1, cam 0): g1 is junk (same pid+cam), g5 junk pid -> ranked list M M N M N: hits at 1, 2, 4.
    #   AP = (1/1 + 2/2 + 3/4) / 3 = 11/12, INP = 3/4.
    # q1 (pid 2, cam 1): only g6 matches; 5 valid items before it -> rank 6, AP = INP = 1/6.
    # q2 (pid 4): no match -> skipped.
    # q3 (pid 3, cam 1): g3 matches (other camera) at rank 4 -> AP = INP = 1/4.
    res = hand_case(fn)
    assert res["num_valid_queries"] == 3 and res["num_skipped_queries"] == 1
    np.testing.assert_array_equal(res["query_index"], [0, 1, 3])
    np.testing.assert_allclose(res["per_query_AP"], [100 * 11 / 12, 100 / 6, 100 / 4])
    assert res["mAP"] == pytest.approx(100 * 4 / 9)
    assert res["mINP"] == pytest.approx(100 * 7 / 18)
    assert (res["rank1"], res["rank5"], res["rank10"]) == pytest.approx((100 / 3, 200 / 3, 100.0))
    # gallery (7) shorter than max_rank (10): the curve is still defined and flat at the end.
    np.testing.assert_allclose(res["cmc"], 100 * np.array([1, 1, 1, 2, 2, 3, 3, 3, 3, 3]) / 3)


@pytest.mark.parametrize("fn", [reid_evaluate, reid_evaluate_reference])
def test_hand_built_case_trapezoid_ap_and_no_junk_pid(fn):
    # MATLAB-style AP: each hit adds (P@previous position + P@hit) / 2 / #rel, P@0 := 1.
    # q0: hits at 1, 2, 4 -> (1 + 1 + (2/3 + 3/4)/2) / 3 = 65/72; q1: (0 + 1/6)/2; q3: (0 + 1/4)/2.
    res = hand_case(fn, ap_mode="trapezoid")
    assert res["mAP"] == pytest.approx(100 * 10 / 27)
    # Keeping pid -1 (g5) as an ordinary negative pushes q1's match to rank 7; q0 and q3 rank it last.
    res = hand_case(fn, junk_pid=None)
    np.testing.assert_allclose(res["per_query_AP"], [100 * 11 / 12, 100 / 7, 100 / 4])


def random_case(seed, nq=40, ng=250, dim=4, discrete=True):
    rng = np.random.default_rng(seed)
    if discrete:  # small integers: many exact distance ties, computed exactly by both implementations
        qf = rng.integers(0, 3, (nq, dim)).astype(np.float32)
        gf = rng.integers(0, 3, (ng, dim)).astype(np.float32)
    else:
        qf = rng.normal(size=(nq, dim)).astype(np.float32)
        gf = rng.normal(size=(ng, dim)).astype(np.float32)
    g_pids = rng.integers(-1, 15, ng)  # includes junk pid -1
    q_pids = rng.integers(0, 18, nq)  # pids 15..17 have no gallery match at all
    q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    q_cams[:3], q_pids[:3] = 0, 0  # a query whose only matches share its camera -> skipped
    g_cams[g_pids == 0] = 0
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def assert_same(fast, ref):
    assert fast["num_skipped_queries"] == ref["num_skipped_queries"]
    np.testing.assert_array_equal(fast["query_index"], ref["query_index"])
    np.testing.assert_allclose(fast["per_query_AP"], ref["per_query_AP"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fast["cmc"], ref["cmc"], rtol=1e-12)
    for key in ("mAP", "mINP", "rank1", "rank5", "rank10"):
        assert fast[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-9), key


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ap_mode", ["standard", "trapezoid"])
def test_chunked_matches_reference_with_ties(seed, ap_mode):
    data = random_case(seed)
    ref = reid_evaluate_reference(*data, max_rank=20, ap_mode=ap_mode)
    assert ref["num_skipped_queries"] >= 1
    for chunk in (1, 7, 1000):
        assert_same(reid_evaluate(*data, max_rank=20, chunk_size=chunk, ap_mode=ap_mode), ref)


def test_chunked_matches_reference_cosine_and_torch_inputs():
    qf, gf, *ids = random_case(3, dim=16, discrete=False)
    ref = reid_evaluate_reference(qf, gf, *ids, metric="cosine")
    fast = reid_evaluate(torch.from_numpy(qf), torch.from_numpy(gf), *map(torch.as_tensor, ids),
                         metric="cosine", chunk_size=9)
    assert_same(fast, ref)


def test_standard_ap_equals_sklearn_average_precision():
    qf, gf, q_pids, g_pids, q_cams, g_cams = random_case(4, dim=8, discrete=False)
    res = reid_evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, chunk_size=16)
    for i, ap in zip(res["query_index"], res["per_query_AP"]):
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i])) & (g_pids != -1)
        scores = -((gf[keep] - qf[i]) ** 2).sum(axis=1)
        assert ap == pytest.approx(100 * average_precision_score(g_pids[keep] == q_pids[i], scores))


def test_no_valid_query_is_an_error():
    with pytest.raises(ValueError, match="no query has a valid match"):
        reid_evaluate(np.zeros((2, 3)), np.ones((4, 3)), [0, 1], [5, 5, 6, 6], [0, 0], [1, 1, 1, 1])


def native_available():
    from shared.metrics import reid

    return reid._native_count_before() is not None


@pytest.mark.parametrize("counter", ["native", "torch"])
@pytest.mark.parametrize("ap_mode", ["standard", "trapezoid"])
def test_both_counters_match_reference(counter, ap_mode):
    # The compiled counting loop and the searchsorted/bincount fallback, each against the reference:
    # 3-d features of small integers tie often, also with a match (left of it: before; right: after).
    if counter == "native" and not native_available():
        pytest.skip("no C compiler: reid_evaluate uses the torch counter")
    for seed in (5, 6):
        data = random_case(seed, nq=30, ng=300, dim=3)
        ref = reid_evaluate_reference(*data, max_rank=20, ap_mode=ap_mode)
        for chunk in (1, 8):
            assert_same(reid_evaluate(*data, max_rank=20, chunk_size=chunk, ap_mode=ap_mode, counter=counter), ref)
    res = hand_case(reid_evaluate, counter=counter)
    np.testing.assert_allclose(res["per_query_AP"], [100 * 11 / 12, 100 / 6, 100 / 4])


def test_unknown_counter_is_an_error():
    with pytest.raises(ValueError, match="counter"):
        hand_case(reid_evaluate, counter="sorted")
