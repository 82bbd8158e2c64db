"""MARS loader on a fixture tree in the official layout (and a malformed one), clip sampling, SynVideo."""
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from shared.data.verify import main as verify_main
from tcl_i2v.data import ClipDataset, augment_gallery, chunk_indices, load_mars, synvideo, verify_mars


def _write_mars(root, bad_row=False):
    """2 train tracklets (pid 1, 2), 4 test tracklets (pid 3 x2 cams, pid 0 distractor, pid -1 junk)."""
    (root / "info").mkdir(parents=True)
    def names(split, spec):
        out = []
        for pid, cam, trk, n in spec:
            for f in range(1, n + 1):
                name = f"{pid:04d}C{cam}T{trk:04d}F{f:03d}.jpg" if pid >= 0 else f"00-1C{cam}T{trk:04d}F{f:03d}.jpg"
                d = root / split / name[:4]
                d.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 16), (pid * 40 % 255, 0, 0)).save(d / name)
                out.append(name)
        return out
    tr = names("bbox_train", [(1, 1, 1, 3), (2, 2, 1, 2)])
    te = names("bbox_test", [(3, 1, 1, 2), (3, 2, 1, 3), (0, 1, 1, 2), (-1, 3, 1, 1)])
    (root / "info/train_name.txt").write_text("\n".join(tr) + "\n")
    (root / "info/test_name.txt").write_text("\n".join(te) + "\n")
    savemat(root / "info/tracks_train_info.mat", {"track_train_info": np.array([[1, 3, 1, 1], [4, 5, 2, 2]])})
    end = 99 if bad_row else 2
    savemat(root / "info/tracks_test_info.mat",
            {"track_test_info": np.array([[1, end, 3, 1], [3, 5, 3, 2], [6, 7, 0, 1], [8, 8, -1, 3]])})
    savemat(root / "info/query_IDX.mat", {"query_IDX": np.array([[1]])})


def test_load_mars_fixture(tmp_path):
    _write_mars(tmp_path)
    d = load_mars(tmp_path)
    assert [t.pid for t in d["train"]] == [1, 2] and len(d["train"][0].frames) == 3
    assert [(t.pid, t.cam) for t in d["query"]] == [(3, 1)]
    assert [(t.pid, t.cam) for t in d["gallery"]] == [(3, 2), (0, 1)]  # the pid -1 row is dropped
    assert all(p.is_file() for t in d["train"] + d["gallery"] for p in t.frames)
    assert len(augment_gallery(d["query"], d["gallery"])) == 3
    problems = verify_mars(tmp_path)
    assert problems and all("expected" in p or "train" in p or "query" in p for p in problems)  # counts only
    assert verify_main(["mars", str(tmp_path)]) != 0


def test_load_mars_malformed_names_file_and_row(tmp_path):
    _write_mars(tmp_path, bad_row=True)
    with pytest.raises(ValueError, match=r"tracks_test_info\.mat: row 1"):
        load_mars(tmp_path)
    (tmp_path / "info/train_name.txt").unlink()
    assert "train_name.txt" in verify_mars(tmp_path)[0]


def test_chunk_indices_and_clip_dataset():
    assert chunk_indices(16, 8, None) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert chunk_indices(3, 8, None) == [0, 1, 2, 0, 1, 2, 0, 1]
    rng = np.random.default_rng(0)
    idx = chunk_indices(16, 4, rng)
    assert all(4 * i <= j < 4 * (i + 1) for i, j in enumerate(idx))
    s = synvideo(4, 2, frames=8, size=(32, 16), seed=0)
    ds = ClipDataset(s["train"], n_frames=8, student_frames=1)
    clip, img, y, cam = ds[0]
    assert clip.shape == (8, 3, 32, 16) and img.shape == (1, 3, 32, 16)
    assert any(torch.equal(img[0], c) for c in clip)  # the student frame is one of the teacher's frames


def test_synvideo_layout_and_occlusion_gap():
    s = synvideo(10, 6, frames=8, size=(32, 16), seed=1)
    assert {t.pid for t in s["train"]} == set(range(1, 11))
    q_ids = [t.pid for t in s["query"]]
    assert sorted(q_ids) == list(range(11, 17))  # one query tracklet per test id
    assert all(2 <= sum(t.pid == p for t in s["query"] + s["gallery"]) <= 3 for p in q_ids)
    clip = s["train"][0].frames.float()
    top, bottom = clip[:, :, :8].std((1, 2, 3)), clip[:, :, 24:].std((1, 2, 3))
    # consecutive frames hide alternate halves: where the top is occluded (flat band) the bottom is not
    assert ((top[0::2] < bottom[0::2]).all() and (top[1::2] > bottom[1::2]).all()) or \
           ((top[0::2] > bottom[0::2]).all() and (top[1::2] < bottom[1::2]).all())
    assert torch.equal(synvideo(10, 6, seed=1)["train"][3].frames, s["train"][3].frames)
