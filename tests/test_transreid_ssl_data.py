"""TransReID-SSL data: Market / MSMT17 / LUPerson loaders on fixture trees, verify, transforms, SynPerson."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from shared.data.listfile import ListFileError
from shared.data.verify import REGISTRY
from shared.dino import DINOMultiCrop
from transreid_ssl.data import (
    ReIDDataset,
    luperson_images,
    market1501,
    msmt17,
    reid_test_transform,
    reid_train_transform,
)
from transreid_ssl.synperson import make_synperson, write_market_tree


@pytest.fixture(scope="module")
def syn():
    return make_synperson(0, n_train_ids=6, n_test_ids=5, n_distractors=3, pool_size=12, per_cam=(2, 3))


def test_synperson_structure(syn):
    assert syn.train.num_pids == 6 and min(syn.train.pids) == 0
    assert set(syn.query.pids) <= set(range(1, 6)) and syn.gallery.pids.count(0) == 3
    assert syn.pool_is_person.mean() == 0.5 and syn.train.sources[0].shape == (64, 32, 3)
    again = make_synperson(0, n_train_ids=6, n_test_ids=5, n_distractors=3, pool_size=12, per_cam=(2, 3))
    assert np.array_equal(again.train.sources[3], syn.train.sources[3])


def test_heldout_camera_is_one_no_training_or_test_image_comes_from(syn):
    """The ICS claim's held-out camera: every test id twice, under a camera id of its own (issue 14)."""
    n_cams = 1 + max(syn.train.camids + syn.query.camids + syn.gallery.camids)
    h = syn.heldout_query
    test_ids = (set(syn.query.pids) | set(syn.gallery.pids)) - {0}  # pid 0: gallery distractors
    assert set(h.camids) == {n_cams} and set(h.pids) == test_ids
    assert all(h.pids.count(p) == 2 for p in set(h.pids))


def test_market_loader_on_written_tree(syn, tmp_path):
    write_market_tree(syn, tmp_path, n_junk=2)
    train, query, gallery = market1501(tmp_path)
    assert len(train) == len(syn.train) and sorted(set(train.pids)) == list(range(6))  # relabelled
    assert len(query) == len(syn.query) and len(gallery) == len(syn.gallery)  # -1 junk skipped
    assert 0 in gallery.pids and max(train.camids) <= 5 and min(train.camids) >= 0
    assert sorted(query.camids) == sorted(syn.query.camids)
    problems = REGISTRY["market1501"].fn(tmp_path)
    assert problems and all("expected" in p for p in problems)  # counts differ from the real set, no crash
    x, pid, cam, i = ReIDDataset(query, reid_test_transform((64, 32)))[0]
    assert x.shape == (3, 64, 32) and pid == query.pids[0]


def test_market_malformed_name_names_the_file(syn, tmp_path):
    write_market_tree(syn, tmp_path, n_junk=0)
    bad = tmp_path / "market1501" / "query" / "person_7.jpg"
    Image.new("RGB", (32, 64)).save(bad)
    with pytest.raises(ValueError, match="person_7.jpg"):
        market1501(tmp_path)
    assert "person_7.jpg" in REGISTRY["market1501"].fn(tmp_path)[0]


def _write_msmt(root, syn, bad_line=False):
    base = root / "MSMT17"
    for split, folder, lst in ((syn.train, "train", "list_train.txt"), (syn.query, "test", "list_query.txt"),
                               (syn.gallery, "test", "list_gallery.txt")):
        lines = []
        for i, (img, pid, cam) in enumerate(zip(split.sources, split.pids, split.camids)):
            rel = f"{pid:04d}/{pid:04d}_{i:03d}_{cam + 1:02d}_0303morning_{i:04d}_0.jpg"
            (base / folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(base / folder / rel)
            lines.append(f"{rel} {pid}")
        if bad_line and lst == "list_query.txt":
            lines.append("0001/broken.jpg")
        (base / lst).write_text("\n".join(lines) + "\n")
    (base / "list_val.txt").write_text("")


def test_msmt17_lists(syn, tmp_path):
    _write_msmt(tmp_path, syn)
    train, query, gallery = msmt17(tmp_path)
    assert len(train) == len(syn.train) and train.camids == syn.train.camids
    assert len(query) == len(syn.query) and query.pids == syn.query.pids
    assert any("expected" in p for p in REGISTRY["msmt17"].fn(tmp_path))


def test_msmt17_malformed_line(syn, tmp_path):
    _write_msmt(tmp_path, syn, bad_line=True)
    with pytest.raises(ListFileError, match=r"list_query.txt:\d+"):
        msmt17(tmp_path)


def test_luperson_folder_and_cfs_filter(syn, tmp_path):
    write_market_tree(syn, tmp_path)
    lup = tmp_path / "LUP"
    assert len(luperson_images(lup)) == 12 and REGISTRY["luperson"].fn(lup) == []
    names = sorted(p.name for p in (lup / "images").glob("*.jpg"))[::-1]
    (tmp_path / "rank.txt").write_text("\n".join(names))
    with open(tmp_path / "CFS_list.pkl", "wb") as f:
        pickle.dump(names, f)
    for rank in ("rank.txt", "CFS_list.pkl"):
        sub = luperson_images(lup, tmp_path / rank, keep_num=5)
        assert [p.name for p in sub.sources] == names[:5]
    with pytest.raises(FileNotFoundError, match="LUP/images"):
        luperson_images(tmp_path / "nowhere")


def test_transforms_shapes(syn):
    img = Image.fromarray(syn.train.sources[0])
    crops = DINOMultiCrop((64, 32), (32, 16), n_local=3, blur_radius_max=1.0)(img)
    assert [tuple(c.shape) for c in crops] == [(3, 64, 32)] * 2 + [(3, 32, 16)] * 3
    x = reid_train_transform((64, 32), pad=3)(img)
    assert x.shape == (3, 64, 32) and torch.isfinite(x).all()


def test_mm_combines_msmt_train_and_market(syn, tmp_path):
    _write_msmt(tmp_path, syn)
    write_market_tree(syn, tmp_path, n_junk=1)
    from transreid_ssl.data import mm

    train, query, gallery = mm(tmp_path)
    n_ms = len(syn.train)  # list_train only (list_val is not used by datasets/mm.py)
    assert len(train) == 2 * n_ms and train.pids[:n_ms] == syn.train.pids
    assert sorted(zip(train.pids[n_ms:], train.camids[n_ms:])) == sorted(
        (p + 1041, c + 15) for p, c in zip(syn.train.pids, syn.train.camids))
    assert len(query) == len(syn.query) and len(gallery) == len(syn.gallery)  # Market's test split


def test_synperson_clutter_switch_off_is_the_plain_draw_and_on_is_another_draw_of_the_same_design():
    import numpy as np

    kw = dict(n_train_ids=3, n_test_ids=3, n_distractors=1, pool_size=4, per_cam=(2, 2))
    plain, off, on = make_synperson(5, **kw), make_synperson(5, clutter=0, **kw), make_synperson(5, clutter=3, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(plain.train.sources, off.train.sources))
    assert set(on.train.pids) == set(plain.train.pids) and len(on.pool) == len(plain.pool)
    assert any(not np.array_equal(a, b) for a, b in zip(plain.train.sources, on.train.sources))
