"""DukeMTMC-VideoReID and VeRi-776 loaders on fixture trees in the official layouts, malformed input included."""
import pytest
from PIL import Image

from shared.data.verify import main as verify_main
from tcl_i2v.data import load_duke, load_tracklets, load_veri, verify_duke_video, verify_veri


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 16), (90, 0, 0)).save(path)


def _write_duke(root, old_names=False):
    """train: pid 1 with two tracklets on camera 2 (kept apart, unlike VKD's hashing), pid 7 on camera 5;
    query: pid 3 on camera 1; gallery: pid 3 on camera 4 and a distractor."""
    spec = {"train": [(1, 1, 2, 3), (1, 2, 2, 2), (7, 1, 5, 2)], "query": [(3, 1, 1, 3)],
            "gallery": [(3, 2, 4, 2), (9, 1, 8, 1)]}
    for split, rows in spec.items():
        for pid, trk, cam, n in rows:
            for f in range(n, 0, -1):  # written out of order: frames come back sorted
                name = (f"{pid:04d}C{cam}F{f:04d}X{trk:05d}.jpg" if old_names
                        else f"{pid:04d}_C{cam}_F{f:04d}_X{trk:05d}.jpg")
                _img(root / split / f"{pid:04d}" / f"{trk:04d}" / name)


@pytest.mark.parametrize("old_names", [False, True])
def test_duke_folders_are_tracklets(tmp_path, old_names):
    _write_duke(tmp_path, old_names)
    d = load_duke(tmp_path)
    assert [(t.pid, t.cam, len(t.frames)) for t in d["train"]] == [(1, 1, 3), (1, 1, 2), (7, 4, 2)]
    assert [p.name[:4] for p in d["train"][0].frames] == ["0001"] * 3
    assert d["train"][0].frames == sorted(d["train"][0].frames)  # frame order
    assert [(t.pid, t.cam) for t in d["query"]] == [(3, 0)]
    assert [(t.pid, t.cam) for t in d["gallery"]] == [(3, 3), (9, 7)]
    assert load_tracklets("duke", tmp_path)["query"][0].frames == d["query"][0].frames
    assert all("expected" in p for p in verify_duke_video(tmp_path))  # a fixture: only the counts differ


def test_duke_malformed_trees_name_the_file(tmp_path):
    _write_duke(tmp_path)
    _img(tmp_path / "train" / "0001" / "0001" / "0001_C3_F0009_X00001.jpg")  # a second camera in one tracklet
    with pytest.raises(ValueError, match=r"0001/0001: tracklet spans cameras \[2, 3\]"):
        load_duke(tmp_path)
    (tmp_path / "train" / "0001" / "0001" / "0001_C3_F0009_X00001.jpg").unlink()
    _img(tmp_path / "query" / "0003" / "0001" / "0004_C1_F0001_X00001.jpg")  # another identity's frame
    with pytest.raises(ValueError, match="0004_C1_F0001_X00001.jpg"):
        load_duke(tmp_path)
    for f in (tmp_path / "query").rglob("*.jpg"):
        f.unlink()
    with pytest.raises(ValueError, match="empty tracklet folder"):
        load_duke(tmp_path)
    assert "nowhere/train: missing" in verify_duke_video(tmp_path / "nowhere")[0]


def _write_veri(root, track_line=None):
    train = ["0002_c002_00030600_0.jpg", "0002_c002_00030605_1.jpg", "0002_c003_00040000_0.jpg",
             "0005_c001_00010000_0.jpg"]
    query = ["0006_c004_00020000_0.jpg"]
    tracks = [["0006_c005_00050000_0.jpg", "0006_c005_00050005_1.jpg"], ["0006_c004_00020010_1.jpg"],
              ["0007_c001_00000000_0.jpg"]]
    for n in train:
        _img(root / "image_train" / n)
    for n in query:
        _img(root / "image_query" / n)
    for t in tracks:
        for n in t:
            _img(root / "image_test" / n)
    (root / "name_train.txt").write_text("\n".join(reversed(train)) + "\n")
    (root / "name_query.txt").write_text("\ufeff" + "\n".join(query) + "\n")  # a BOM is accepted
    lines = [f"{t[0]} " + " ".join(t) + " " for t in tracks]  # VeRi lines end with a space
    if track_line is not None:
        lines.append(track_line)
    (root / "test_track.txt").write_text("\n".join(lines) + "\n")


def test_veri_layout_as_vkd(tmp_path):
    _write_veri(tmp_path)
    d = load_veri(tmp_path)
    # train names sorted and grouped on vehicle + camera (VKD): 3 tracklets
    assert [(t.pid, t.cam, len(t.frames)) for t in d["train"]] == [(2, 1, 2), (2, 2, 1), (5, 0, 1)]
    assert [(t.pid, t.cam, len(t.frames)) for t in d["query"]] == [(6, 3, 1)]
    assert [(t.pid, t.cam, len(t.frames)) for t in d["gallery"]] == [(6, 4, 2), (6, 3, 1), (7, 0, 1)]
    assert all(p.is_file() for t in d["train"] + d["query"] + d["gallery"] for p in t.frames)
    assert all("expected" in p for p in verify_veri(tmp_path))
    assert verify_main(["veri", str(tmp_path)]) != 0


def test_veri_malformed_lists_name_file_and_line(tmp_path):
    _write_veri(tmp_path, track_line="truck_07.jpg a.jpg")
    with pytest.raises(ValueError, match=r"test_track\.txt:4: 'truck_07\.jpg'"):
        load_veri(tmp_path)
    _write_veri(tmp_path, track_line="0007_c001_00000000_0.jpg")
    with pytest.raises(ValueError, match=r"test_track\.txt:4: a track line needs"):
        load_veri(tmp_path)
    (tmp_path / "name_query.txt").write_bytes(b"\xff\xfe0006")
    with pytest.raises(ValueError, match=r"name_query\.txt:1: not UTF-8"):
        load_veri(tmp_path)
    (tmp_path / "name_train.txt").unlink()
    with pytest.raises(FileNotFoundError, match="name_train.txt"):
        load_veri(tmp_path)
    with pytest.raises(ValueError, match="data.dataset must be"):
        load_tracklets("ilids", tmp_path)
