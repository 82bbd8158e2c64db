"""Shared data: embedded generators, list files, samplers, verify."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shared.data import (
    IdentitySampler,
    ListFileDataset,
    ListFileError,
    RandomPairDataset,
    cluttered_digits,
    digit_domains,
    parse_list_file,
    target_subset,
)
from shared.data.verify import check_counts


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONREPRO_CACHE", str(tmp_path / "cache"))


def test_digit_domains_deterministic_normalised_and_cached(tmp_path):
    a = digit_domains(seed=3, n_source=200)
    assert a.source_x.shape == (200, 1, 8, 8) and a.target_x.shape == (1797, 1, 8, 8)
    assert set(np.unique(a.source_y)) <= set(range(10)) and len(np.unique(a.target_y)) == 10
    both = np.concatenate([a.source_x.ravel(), a.target_x.ravel()])
    assert abs(both.mean()) < 1e-4 and abs(both.std() - 1) < 1e-3  # one global normalisation
    assert len(list((tmp_path / "cache").glob("digit_domains_*.npz"))) == 1
    b = digit_domains(seed=3, n_source=200)  # from the cache
    np.testing.assert_array_equal(a.source_x, b.source_x)
    c = digit_domains(seed=4, n_source=200)
    assert not np.array_equal(a.source_x, c.source_x)


def test_digit_domains_target_draw_follows_the_seed():
    """n_target: the seed's subset of the handwritten pool, rows equal to the full pool's, sorted, no repeats."""
    full = digit_domains(seed=3, n_source=100)
    a, b = digit_domains(seed=3, n_source=100, n_target=1500), digit_domains(seed=3, n_source=100, n_target=1500)
    c = digit_domains(seed=4, n_source=100, n_target=1500)
    keep = target_subset(3, 1797, 1500)
    assert len(keep) == 1500 and len(np.unique(keep)) == 1500 and np.all(np.diff(keep) > 0)
    np.testing.assert_array_equal(a.target_x, full.target_x[keep])  # same values: normalised on the full pools
    np.testing.assert_array_equal(a.target_y, full.target_y[keep])
    np.testing.assert_array_equal(a.target_x, b.target_x)
    assert not np.array_equal(keep, target_subset(4, 1797, 1500)) and c.target_x.shape == a.target_x.shape
    np.testing.assert_array_equal(target_subset(3, 1797, 0), np.arange(1797))
    np.testing.assert_array_equal(target_subset(3, 1797, 5000), np.arange(1797))
    with pytest.raises(ValueError, match="n_target"):
        target_subset(3, 1797, -1)


def test_digit_domains_have_a_domain_gap():
    """Rendered -> handwritten keeps room for adaptation (issue: ~50 %, in-domain much higher)."""
    from sklearn.linear_model import LogisticRegression

    d = digit_domains(seed=0, n_source=1500)
    xs, xt = d.source_x.reshape(len(d.source_x), -1), d.target_x.reshape(len(d.target_x), -1)
    cross = LogisticRegression(max_iter=500).fit(xs, d.source_y).score(xt, d.target_y)
    half = len(xt) // 2
    within = LogisticRegression(max_iter=500).fit(xt[:half], d.target_y[:half]).score(xt[half:], d.target_y[half:])
    assert 0.25 < cross < 0.75 and within > cross + 0.2


def test_cluttered_digits_shapes_masks_and_split():
    c = cluttered_digits(n_train=64, n_test=32, seed=1)
    assert c.train_x.shape == (64, 1, 32, 32) and c.test_x.shape == (32, 1, 32, 32)
    assert c.train_mask.shape == (64, 32, 32) and c.train_mask.dtype == bool
    assert (c.train_mask.reshape(64, -1).sum(1) > 10).all()  # every image has its digit
    assert not np.array_equal(c.train_x[:32], c.test_x)


def _sha256(arrays) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# sha256 (dtype, shape, bytes of train_x, train_y, train_mask, test_x, test_y, test_mask, in that order) of two
# small draws, computed on 2026-12-04 with the code from before paste_digit/split_draw were shared (commit
# 7fbe990: cluttered_digits, and knn_attention.data.distractor_digits with its own paste, cache and normalisation
# lines), in this repository's venv (the glyphs come from matplotlib's fonts through Pillow and OpenCV: another
# Pillow/FreeType/OpenCV may draw other bytes).
PINNED = {
    "cluttered": "f62d11d5dfb928c10459a5106c17b74400f063368fd7aa5e8cf654979145abbc",
    "distractor": "2ec4d6c3fa1158494ff2bef6be944d7b337da556ad1154add4828e9b63d02a5f",
}
SPLIT_KEYS = ("train_x", "train_y", "train_mask", "test_x", "test_y", "test_mask")


def test_digit_generators_draw_the_bytes_they_drew_before_sharing_their_pieces():
    from knn_attention.data import distractor_digits

    c = cluttered_digits(n_train=24, n_test=8, seed=3, clutter=2, noise=0.1)
    assert _sha256([getattr(c, k) for k in SPLIT_KEYS]) == PINNED["cluttered"]
    d = distractor_digits(n_train=24, n_test=8, seed=3, digit_px=12, distractors=3, occluders=2)
    assert _sha256([d[k] for k in SPLIT_KEYS]) == PINNED["distractor"]
    again = cluttered_digits(n_train=24, n_test=8, seed=3, clutter=2, noise=0.1)  # read back from the cache
    assert _sha256([getattr(again, k) for k in SPLIT_KEYS]) == PINNED["cluttered"]


def test_paste_digit_and_split_draw_by_hand():
    from shared.data.digits import fit_glyph, paste_digit, split_draw

    glyph = np.zeros((8, 8), np.float32)
    glyph[:, 4:] = 0.5  # right half lit: resized to 4 px, columns 2-3 at peak 1 after the rescale
    assert fit_glyph(glyph, 4).tolist() == [[0, 0, 1, 1]] * 4
    canvas, mask = np.full((6, 6), 0.3, np.float32), np.zeros((6, 6), bool)
    rng = np.random.default_rng(0)
    top, left = np.random.default_rng(0).integers(0, 3, size=2)  # the one draw paste_digit makes
    paste_digit(canvas, mask, glyph, 4, rng)
    want = np.full((6, 6), 0.3, np.float32)
    want[top:top + 4, left + 2:left + 4] = 1.0  # pixel-wise max: the dark half leaves the 0.3 below it
    assert canvas.tolist() == want.tolist() and mask.tolist() == (want == 1.0).tolist()
    with pytest.raises(ValueError, match="square"):
        paste_digit(np.zeros((6, 7), np.float32), np.zeros((6, 7), bool), glyph, 4, rng)

    calls = []

    def make(n, s):
        calls.append((n, s))
        x = np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2) + s
        return {"x": x, "y": np.arange(n), "mask": x > 2}

    a = split_draw("toy", {"n": 3}, make, 3, 2, 5)
    assert calls == [(3, 5), (2, 5 + 100_003)]  # test draw from its own stream
    train = np.arange(12, dtype=np.float32) + 5
    assert a["train_x"].shape == (3, 1, 2, 2) and a["train_x"].dtype == np.float32
    np.testing.assert_allclose(a["train_x"].ravel(), (train - train.mean()) / train.std(), rtol=1e-6)
    np.testing.assert_allclose(a["test_x"].ravel(), (np.arange(8) + 100_008 - train.mean()) / train.std(),
                               rtol=1e-6)  # normalised with the training split's statistics
    b = split_draw("toy", {"n": 3}, make, 3, 2, 5)
    assert len(calls) == 2 and all(np.array_equal(a[k], b[k]) for k in a)  # the second draw is the cache's


def _tree(tmp_path, lines):
    (tmp_path / "images" / "cls").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "images" / "cls" / f"frame_{i:04d}.jpg")
    lst = tmp_path / "amazon_list.txt"
    lst.write_text("\n".join(lines) + "\n")
    return lst


def test_list_file_dataset_reads_relative_paths(tmp_path):
    lst = _tree(tmp_path, [f"images/cls/frame_{i:04d}.jpg {i}" for i in range(3)])
    ds = ListFileDataset(lst, num_classes=3)
    img, y, idx = ds[2]
    assert img.size == (8, 8) and y == 2 and idx == 2 and ds.labels == [0, 1, 2]


@pytest.mark.parametrize("line, message", [
    ("images/cls/frame_0000.jpg", r"amazon_list\.txt:2: expected"),
    ("images/cls/frame_0000.jpg x", r"amazon_list\.txt:2: label 'x' is not an integer"),
    ("images/cls/frame_0000.jpg 7", r"amazon_list\.txt:2: label 7 outside \[0, 3\)"),
])
def test_malformed_list_line_names_file_and_line(tmp_path, line, message):
    lst = _tree(tmp_path, ["images/cls/frame_0001.jpg 1", line])
    with pytest.raises(ListFileError, match=message):
        parse_list_file(lst, num_classes=3)


def test_missing_image_names_its_path(tmp_path):
    lst = _tree(tmp_path, ["images/cls/frame_0009.jpg 0"])
    # Checked when the dataset is built (before a run directory is written) ...
    with pytest.raises(FileNotFoundError, match=r"amazon_list\.txt: listed image .*frame_0009\.jpg is missing"):
        ListFileDataset(lst)
    # ... and, unchecked, when the image is read.
    ds = ListFileDataset(lst, check_files=False)
    with pytest.raises(FileNotFoundError, match=r"frame_0009\.jpg: image listed but missing"):
        ds[0]


def test_random_pair_dataset_covers_both_domains():
    a, b = list(range(10)), list(range(100, 125))
    ds = RandomPairDataset(a, b, seed=0, epoch=0)
    assert len(ds) == 25
    firsts = [ds[i][0] for i in range(25)]
    assert sorted(set(firsts)) == a and sorted(ds[i][1] for i in range(25)) == b
    again = RandomPairDataset(a, b, seed=0, epoch=0)
    assert [again[i] for i in range(25)] == [ds[i] for i in range(25)]
    assert [RandomPairDataset(a, b, seed=0, epoch=1)[i] for i in range(25)] != [ds[i] for i in range(25)]


def test_identity_sampler_ddp_shards_whole_identities():
    labels = np.repeat(np.arange(12), 5)
    per_rank = [list(IdentitySampler(labels, 8, 4, seed=1, num_replicas=2, rank=r)) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    assert not set(per_rank[0]) & set(per_rank[1])  # the ranks see different items
    for idx in per_rank:
        for s in range(0, len(idx), 4):
            assert len(set(labels[idx[s:s + 4]])) == 1  # K instances of one identity
        for s in range(0, len(idx), 8):
            assert len(set(labels[idx[s:s + 8]])) == 2  # P identities per batch


def test_identity_sampler_distinct_ids_like_random_identity_sampler():
    # Identity 0 has 40 images (10 chunks of K=4), the others 4 to 9: with distinct_ids no batch repeats an
    # identity, and the epoch stops once fewer than P identities have chunks left.
    labels = np.concatenate([np.zeros(40, int)] + [np.full(4 + i % 6, i) for i in range(1, 12)])
    for ranks in (1, 2):
        per_rank = [IdentitySampler(labels, 16, 4, seed=3, num_replicas=ranks, rank=r, distinct_ids=True)
                    for r in range(ranks)]
        seen = []
        for s in per_rank:
            idx = list(s)
            assert len(idx) == len(s) > 0
            for b in range(0, len(idx), 16):
                ids = labels[idx[b:b + 16]]
                assert len(set(ids)) == 4 and all(len(set(ids[c:c + 4])) == 1 for c in range(0, 16, 4))
            seen += idx
        assert len(seen) == len(set(seen))  # no image twice in an epoch, across ranks
    s = IdentitySampler(labels, 16, 4, seed=3, distinct_ids=True)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    # without distinct_ids the big identity fills two places of a batch somewhere in the epoch
    loose = list(IdentitySampler(labels, 16, 4, seed=3))
    assert any(len(set(labels[loose[b:b + 16]])) < 4 for b in range(0, len(loose), 16))


def test_check_counts():
    assert check_counts({"a": 3}, {"a": 3}) == []
    assert check_counts({"a": 2}, {"a": 3, "b": 1}) == ["a: expected 3 entries, found 2",
                                                         "b: expected 1 entries, found 0"]


def test_verify_command_lists_every_paper_registration():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "shared.data.verify"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    assert "office31" in r.stdout and "(cdtrans)" in r.stdout


def test_register_refuses_a_name_taken_by_another_paper():
    from shared.data.verify import register

    register("_test_set", paper="a")(lambda root: [])
    with pytest.raises(ValueError, match="already registered by a"):
        register("_test_set", paper="b")(lambda root: [])
