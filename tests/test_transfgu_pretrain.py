"""Issue 14 build items for TransFGU: the one DINO of ``shared/dino.py``, ``make pretrain`` (progress, ``--resume
auto``, one-line errors, ``--quick`` never over the shipped files), fine-tuning seed k <- pre-training seed k,
and ``make reproduce`` refusing a bad encoder folder / file in one line before any work."""
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from shared import dino as shared_dino
from shared import pretrain as shared_pretrain
from shared import reproduce as dispatcher
from shared.pretrain import file_sha256, read_manifest
from transfgu import pretrain, reproduce
from transfgu.model import create_encoder, load_dino_encoder

PKG = Path(pretrain.__file__).resolve().parent


def test_transfgu_pretrains_with_the_one_shared_dino():
    assert pretrain.DINOConfig is shared_dino.DINOConfig and pretrain.DINOMultiCrop is shared_dino.DINOMultiCrop
    task = pretrain.build_task(pretrain.pretrain_cfg(0, quick=True))
    assert type(task) is shared_dino.DINOTask  # the DINO maths (model, loss, schedules, clipping, EMA) are shared's
    # no paper-local DINO copy left (dino_lite.py and the like)
    assert not list(PKG.glob("*dino*.py"))
    copy = re.compile(r"^(class \w*(DINOLoss|DINOHead|MultiCrop|DINOModel)\w*\b|def (dino_loss|cosine_schedule|"
                      r"update_teacher|teacher_temp\w*)\b)", re.M)
    for f in PKG.rglob("*.py"):
        assert not copy.search(f.read_text()), f"{f}: a DINO component defined outside shared/dino.py"


def test_pretrain_quick_default_folders_resume_auto_and_progress(tmp_path, monkeypatch, capsys):
    shipped = file_sha256(pretrain.ENCODERS / "manifest.json")
    assert pretrain.QUICK_ROOT != pretrain.ENCODERS.parent and pretrain.QUICK_ROOT.name == "transfgu-quick"
    quick = tmp_path / "transfgu-quick"
    monkeypatch.setattr(pretrain, "QUICK_ROOT", quick)  # default folders of a --quick run: never encoders/
    two = ["--set", "engine.epochs=2"]
    assert pretrain.main(["--quick", "--seeds", "0", "--jobs", "1", *two]) == 0
    first = file_sha256(quick / "encoders" / "dino_vit8_seed0.pth")
    assert file_sha256(pretrain.ENCODERS / "manifest.json") == shipped
    out = capsys.readouterr().out
    assert "epoch 1/2: " in out and "epoch 2/2: " in out  # the engine's line per epoch (its bar with --jobs 1)

    # an interruption after epoch 1: --resume auto (the default) continues from it, bit for bit
    run = quick / "seed0"
    shutil.copy(run / "epoch_1.pt", run / "last.pt")
    (run / "epoch_2.pt").unlink()
    assert pretrain.main(["--quick", "--seeds", "0", "--jobs", "1", "--out", str(tmp_path / "b"), *two]) == 0
    assert "epoch 1/2" not in capsys.readouterr().out  # epoch 1 was not trained again
    assert file_sha256(tmp_path / "b" / "dino_vit8_seed0.pth") == first
    entry = read_manifest(tmp_path / "b" / "manifest.json")["encoders"]["dino_vit8_seed0.pth"]
    assert entry["sha256"] == first and entry["seed"] == 0 and entry["git_sha"]
    assert {"recipe", "data", "wall_seconds", "bytes", "file_layout", "command"} <= set(entry)


def test_pretrain_failure_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VISIONREPRO_DEBUG", raising=False)
    (tmp_path / "pre" / "seed0").mkdir(parents=True)
    (tmp_path / "pre" / "seed0" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:  # make pretrain = python -m shared.pretrain <paper>
        shared_pretrain.main(["transfgu", "--quick", "--seeds", "0", "--jobs", "1", "--out", str(tmp_path / "enc"),
                              "--run-root", str(tmp_path / "pre")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("make pretrain PAPER=transfgu: error: ")
    assert str(tmp_path / "pre" / "seed0" / "last.pt") in err[0] and "unexpected" not in err[0]


def test_finetuning_seed_k_starts_from_pretraining_seed_k(tmp_path):
    for k in range(reproduce.N_SHIPPED):
        assert reproduce.encoder_file(k).name == f"dino_vit8_seed{k}.pth"
        vit, ref = reproduce.load_encoder(k), create_encoder(**reproduce.ENCODER)
        load_dino_encoder(ref, reproduce.ENCODERS / f"dino_vit8_seed{k}.pth")
        assert all(torch.equal(a, b) for a, b in zip(vit.state_dict().values(), ref.state_dict().values()))
    assert [reproduce.encoder_file(k).name for k in (3, 4, 5)] == [f"dino_vit8_seed{k}.pth" for k in range(3)]
    # a folder that ships seed 4 gives seed 4 its own encoder
    enc = tmp_path / "enc"
    shutil.copytree(reproduce.ENCODERS, enc)
    m = json.loads((enc / "manifest.json").read_text())
    shutil.copy(enc / "dino_vit8_seed2.pth", enc / "dino_vit8_seed4.pth")
    m["encoders"]["dino_vit8_seed4.pth"] = dict(m["encoders"]["dino_vit8_seed2.pth"], seed=4)
    (enc / "manifest.json").write_text(json.dumps(m))
    assert reproduce.encoder_file(4, enc).name == "dino_vit8_seed4.pth"
    assert reproduce.check_encoders([0, 4, 7], enc) == {0: enc / "dino_vit8_seed0.pth", 4: enc / "dino_vit8_seed4.pth",
                                                        7: enc / "dino_vit8_seed1.pth"}


def _bad_copy(tmp_path: Path, name: str, content, rehash: bool) -> Path:
    enc = tmp_path / name
    shutil.copytree(reproduce.ENCODERS, enc)
    f = enc / "dino_vit8_seed0.pth"
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        torch.save(content, f)
    if rehash:  # as if regenerated with its manifest: only the loader can tell
        m = json.loads((enc / "manifest.json").read_text())
        m["encoders"][f.name]["sha256"] = file_sha256(f)
        (enc / "manifest.json").write_text(json.dumps(m))
    return enc


@pytest.mark.parametrize("case, words", [
    ("missing_folder", "no such encoder folder"),
    ("modified", "differs from the manifest"),
    ("truncated", "not a loadable checkpoint"),
    ("not_a_state_dict", "expected a state dict"),
    ("other_architecture", "shape mismatch"),
])
def test_reproduce_bad_encoder_is_one_line_before_any_work(case, words, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VISIONREPRO_DEBUG", raising=False)
    good = (reproduce.ENCODERS / "dino_vit8_seed0.pth").read_bytes()
    enc = {"missing_folder": lambda: tmp_path / "nowhere",
           "modified": lambda: _bad_copy(tmp_path, case, good[:1000], rehash=False),
           "truncated": lambda: _bad_copy(tmp_path, case, good[:1000], rehash=True),
           "not_a_state_dict": lambda: _bad_copy(tmp_path, case, [1, 2, 3], rehash=True),
           "other_architecture": lambda: _bad_copy(tmp_path, case, create_encoder(
               embed_dim=32, depth=2, num_heads=2, patch_size=8, pretrain_size=64).state_dict(), rehash=True)}[case]()
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        dispatcher.main(["transfgu", "--quick", "--seeds", "0", "--jobs", "1", "--out", str(out),
                         "--encoders", str(enc)])
    assert e.value.code == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("make reproduce PAPER=transfgu: error: ")
    assert words in err[0] and "unexpected" not in err[0] and "Traceback" not in err[0]
    assert str(enc if case == "missing_folder" else enc / "dino_vit8_seed0.pth") in err[0]
    assert "embedded reproduction" not in captured.out  # refused before any work
    assert not (out / "summary.json").exists()


def test_shipped_manifest_records_recipe_data_seed_time_sha_and_attempts():
    m = read_manifest(reproduce.ENCODERS / "manifest.json")
    assert sorted(m["encoders"]) == [f"dino_vit8_seed{k}.pth" for k in range(reproduce.N_SHIPPED)]
    for name, e in m["encoders"].items():
        k = int(name.removesuffix(".pth").rsplit("seed", 1)[1])
        assert e["seed"] == k and e["arm"] == "dino_vit8"
        assert (pretrain.ROOT / e["recipe"]).is_file() and e["recipe"].endswith(pretrain.PRE_CFG.name)
        assert f"scene_pool(n=3000, seed={k}, size=96)" in e["data"] and str(pretrain.POOL_SEED_OFFSET + k) in e["data"]
        assert e["wall_seconds"] > 0 and re.fullmatch(r"[0-9a-f]{40}(-dirty)?", e["git_sha"])
        assert re.fullmatch(r"[0-9a-f]{64}", e["sha256"]) and e["bytes"] <= 10 * 2 ** 20
        assert "dino_deitsmall8_pretrain.pth layout" in e["file_layout"]
    assert m["attempts"] and all({"when", "what", "settings", "outcome", "kept"} <= set(a) for a in m["attempts"])
    assert any(a["kept"] for a in m["attempts"]) and any(not a["kept"] for a in m["attempts"])


def test_scene_draws_follow_the_seed_and_never_meet():
    from transfgu.data import STUFF, THINGS, textured_scenes

    a, b = textured_scenes(8, reproduce.TRAIN_SEED, 48), textured_scenes(8, reproduce.TRAIN_SEED + 1, 48)
    assert not torch.equal(a.images, b.images)
    assert not (pretrain.scene_pool(2, 0, 32) == pretrain.scene_pool(2, 1, 32)).all()
    # several object categories on textured backgrounds: every thing and stuff class occurs, scenes mix classes
    labels = textured_scenes(40, 0, 48).labels
    assert set(labels.unique().tolist()) == set(range(len(STUFF) + len(THINGS)))
    assert all(len(lab.unique()) >= 2 for lab in labels)
    # the reported seeds 0-8 and the validation seed 100: train, val and pre-training draws all distinct
    draws = [d for k in [*range(9), 100] for d in (reproduce.TRAIN_SEED + k, reproduce.VAL_SEED + k,
                                                   pretrain.POOL_SEED_OFFSET + k)]
    assert len(set(draws)) == len(draws)
