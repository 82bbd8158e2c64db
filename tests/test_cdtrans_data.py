"""CDTrans loaders and `verify` on fixture trees in the real benchmark layouts."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from cdtrans.data import BENCHMARKS, PairDataset, build_domains, verify_benchmark
from cdtrans.pseudo_labels import PairSet
from shared.data.listfile import ListFileError
from shared.data.verify import main as verify_main


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 16), (120, 30, 200)).save(path)


def office31_tree(root):
    """The real Office-31 layout: <domain>/images/<class>/frame_XXXX.jpg + <domain>_list.txt."""
    for dom in ("amazon", "dslr", "webcam"):
        lines = []
        for y, cls in ((0, "back_pack"), (1, "bike"), (30, "trash_can")):
            rel = f"{dom}/images/{cls}/frame_0001.jpg"
            _img(root / rel)
            lines.append(f"{rel} {y}")
        (root / f"{dom}_list.txt").write_text("\n".join(lines) + "\n")
    return root


def test_office31_domains_load_with_official_transforms(tmp_path):
    root = office31_tree(tmp_path / "office31")
    d = build_domains("office31", str(root), "amazon", "webcam")
    x, y, i = d.source_train[2]
    assert x.shape == (3, 224, 224) and y == 30 and i == 2
    xe, _, _ = d.target_eval[0]
    assert xe.shape == (3, 224, 224)
    assert d.num_classes == 31 and d.metric == "acc" and d.target_labels.tolist() == [0, 1, 30]
    pairs = PairSet(torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([0, 30]), torch.tensor([0, 30]))
    (xs, xt), (ys, yt), (si, ti) = PairDataset(d.source_train, d.target_train, pairs)[1]
    assert xs.shape == xt.shape == (3, 224, 224) and (ys, yt, si, ti) == (30, 30, 2, 0)


def test_verify_reports_counts_order_and_missing_images(tmp_path, capsys):
    root = office31_tree(tmp_path / "office31")
    (root / "webcam/images/bike/frame_0001.jpg").unlink()
    problems = verify_benchmark("office31", root)
    assert any("amazon_list.txt: expected 2817 entries, found 3" in p for p in problems)
    assert any("webcam_list.txt: 1 listed images missing" in p for p in problems)
    assert verify_main(["office31", str(root)]) == 1
    assert "problem(s)" in capsys.readouterr().out


def test_verify_office_home_label_order_and_real_world_rename(tmp_path):
    root = tmp_path / "OfficeHomeDataset"
    for dom in ("Art", "Clipart", "Product"):
        # alphabetical order (wrong: the released lists use CDAN's order, 0 = Drill)
        rel = f"{dom}/Alarm_Clock/00001.jpg"
        _img(root / rel)
        (root / f"{dom}.txt").write_text(f"{rel} 0\n")
    _img(root / "Real World/Drill/00001.jpg")
    problems = verify_benchmark("officehome", root)
    assert any("rename the folder to 'Real_World'" in p for p in problems)
    assert any("label 0 is 'Alarm_Clock', expected 'Drill'" in p for p in problems)
    assert any("Real_World.txt: list file missing" in p for p in problems)


def test_visda_lists_live_in_split_folders(tmp_path):
    root = tmp_path / "visda"
    for split, lst in (("train", "train_image_list.txt"), ("validation", "valid_image_list.txt")):
        _img(root / split / "aeroplane" / "a.png")
        _img(root / split / "truck" / "b.png")
        (root / split / lst).write_text("aeroplane/a.png 0\ntruck/b.png 11\n")
    d = build_domains("visda", str(root), "train", "validation")
    assert len(d.source_eval) == 2 and d.metric == "mean_class_acc" and d.num_classes == 12
    problems = verify_benchmark("visda", root)
    assert problems == ["" + str(root / "train/train_image_list.txt") + ": expected 152397 entries, found 2",
                        str(root / "validation/valid_image_list.txt") + ": expected 55388 entries, found 2"]


def test_malformed_list_line_is_named(tmp_path):
    root = office31_tree(tmp_path / "office31")
    with open(root / "dslr_list.txt", "a") as f:
        f.write("dslr/images/bike/frame_0002.jpg\n")
    with pytest.raises(ListFileError, match=r"dslr_list\.txt:4: expected '<relative/path> <label>'"):
        build_domains("office31", str(root), "dslr", "amazon")
    assert any("dslr_list.txt:4" in p for p in verify_benchmark("office31", root))


def test_domainnet_and_unknown_names():
    assert BENCHMARKS["domainnet"].num_classes == 345
    assert sum(BENCHMARKS["domainnet"].sizes.values()) == 586575  # the full-domain protocol (issue #6)
    with pytest.raises(ValueError, match="unknown benchmark"):
        build_domains("office_31", "/x", "a", "b")
    with pytest.raises(ValueError, match="domain 'Real World' is not in officehome"):
        build_domains("officehome", "/x", "Real World", "Art")
    with pytest.raises(ValueError, match="data.root"):
        build_domains("office31", "", "amazon", "webcam")


def test_office31_launch_script_runs_pretrain_baseline_and_uda(tmp_path):
    """scripts/office31.sh end to end on a fixture tree: Stage A from a DeiT-distilled-format init file,
    the baseline evaluation, Stage B from Stage A's last.pt (tiny model and 1 epoch as extra arguments)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from cdtrans.model import CDTransModel

    root = office31_tree(tmp_path / "office31")
    m = CDTransModel(31, "vit_tiny_patch16_224", img_size=32, depth=2)
    sd = {k[5:]: v for k, v in m.state_dict().items() if k.startswith("base.")}
    sd["dist_token"] = torch.zeros(1, 1, 192)
    sd["pos_embed"] = torch.randn(1, 2 + 196, 192)  # DeiT at 224: 14x14 grid + cls + dist
    sd["head.weight"], sd["head_dist.weight"] = torch.zeros(1000, 192), torch.zeros(1000, 192)
    torch.save({"model": sd}, tmp_path / "deit_tiny_distilled.pth")
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, DATA_ROOT=str(root), WEIGHTS=str(tmp_path / "deit_tiny_distilled.pth"),
               OUT=str(tmp_path / "runs"), TASKS="amazon:webcam", PYTHON=sys.executable, OMP_NUM_THREADS="1")
    extra = ["model.arch=vit_tiny_patch16_224", "model.img_size=32", "model.depth=2", "engine.epochs=1",
             "engine.batch_size=2", "engine.num_workers=0", "engine.amp=off", "logger.progress=false"]
    r = subprocess.run(["bash", str(repo / "cdtrans/scripts/office31.sh"), *extra], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "runs/office31/deit-small"
    assert (out / "pretrain_amazon/last.pt").is_file() and (out / "amazon2webcam/last.pt").is_file()
    assert not (out / "pretrain_dslr").exists()  # TASKS restricted the run
    base = json.loads((out / "baseline_amazon2webcam.json").read_text())
    assert 0 <= base["acc"] <= 100 and len(base["per_class_acc"]) == 31


def test_shift_images_by_hand():
    """Zeros enter from the side the image moves away from: out[y, x] = x[y - dy, x - dx]."""
    from cdtrans.data import shift_images

    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3).repeat(2, 1, 1, 1)
    out = shift_images(x, torch.tensor([[1, 0], [0, -1]]), 1)
    assert out[0, 0].tolist() == [[0, 0, 0], [1, 2, 3], [4, 5, 6]]  # down by one row
    assert out[1, 0].tolist() == [[2, 3, 0], [5, 6, 0], [8, 9, 0]]  # left by one column


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_batched_fetch_equals_item_by_item(shift):
    """The DataLoader's batched fetch (``__getitems__``) returns the same items and leaves the global RNG
    where ``[ds[i] for i in idx]`` leaves it, so training is unchanged to the bit."""
    from cdtrans.data import ArrayDataset

    g = torch.Generator().manual_seed(0)
    xs, xt = torch.rand(40, 1, 6, 5, generator=g).numpy(), torch.rand(30, 1, 6, 5, generator=g).numpy()
    src = ArrayDataset(xs, torch.randint(0, 4, (40,), generator=g).numpy(), shift)
    tgt = ArrayDataset(xt, torch.randint(0, 4, (30,), generator=g).numpy(), shift)
    pairs = PairSet(torch.randint(0, 40, (25,), generator=g), torch.randint(0, 30, (25,), generator=g),
                    torch.zeros(25, dtype=torch.long), torch.randint(0, 4, (25,), generator=g))
    idx = torch.randperm(25, generator=g)[:17].tolist()
    for ds in (src, PairDataset(src, tgt, pairs)):
        torch.manual_seed(7)
        batched, after_b = ds.__getitems__(idx), torch.rand(3)
        torch.manual_seed(7)
        single, after_s = [ds[i] for i in idx], torch.rand(3)
        assert torch.equal(after_b, after_s)
        flat = lambda items: torch.utils._pytree.tree_leaves(items)  # noqa: E731
        assert len(flat(batched)) == len(flat(single))
        for a, b in zip(flat(batched), flat(single)):
            assert type(a) is type(b) and (torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b)
    if shift:  # the shifts are real: some image moved
        torch.manual_seed(7)
        assert any(not torch.equal(item[0], src.x[i]) for item, i in zip(src.__getitems__(idx), idx))



def test_embedded_digits_target_follows_the_seed(tmp_path, monkeypatch):
    """The committed digits recipe draws its target from the run's seed (data.n_target of the 1,797 digits)."""
    monkeypatch.setenv("VISIONREPRO_CACHE", str(tmp_path / "cache"))
    from cdtrans.train import CDTransConfig
    from shared.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "cdtrans/configs/cdtrans_vit-tiny-d64_1xb64-12e_digits.yaml",
                      CDTransConfig)
    assert cfg.data.name == "digits" and cfg.data.n_target == 1500
    a, b, c = (build_domains("digits", seed=s, n_source=50, n_target=cfg.data.n_target) for s in (0, 0, 1))
    assert len(a.target_eval) == len(a.target_train) == 1500 and len(a.source_eval) == 50
    assert torch.equal(a.target_eval.x, b.target_eval.x) and a.target_eval.labels == b.target_eval.labels
    assert not torch.equal(a.target_eval.x, c.target_eval.x)  # another seed, another draw of the target
    assert torch.equal(a.target_eval.x, a.target_train.x)  # one draw for adaptation and evaluation
