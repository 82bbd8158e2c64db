"""Smoke test: ``make pretrain`` and the whole embedded TransFGU reproduction at --quick sizes; shipped encoders."""
import json

import pytest
import torch

from shared.pretrain import check_encoder, file_sha256, read_manifest
from transfgu import pretrain, reproduce
from transfgu.model import create_encoder, load_dino_encoder


def test_pretrain_then_reproduce_quick(tmp_path):
    enc = tmp_path / "enc"
    assert pretrain.main(["--quick", "--seeds", "0", "--jobs", "1", "--out", str(enc),
                          "--run-root", str(tmp_path / "pre")]) == 0
    entry = read_manifest(enc / "manifest.json")["encoders"]["dino_vit8_seed0.pth"]
    assert entry["sha256"] == file_sha256(enc / "dino_vit8_seed0.pth")
    sd = torch.load(enc / "dino_vit8_seed0.pth", weights_only=True)
    assert "pos_embed" in sd and not any(k.startswith(("backbone.", "head.", "teacher.")) for k in sd)
    # the released layout: a flat backbone; a raw DINO checkpoint dict (``teacher``) loads the same way
    torch.save({"teacher": {f"backbone.{k}": v for k, v in sd.items()}}, tmp_path / "full.pth")
    a, b = create_encoder(**reproduce.ENCODER), create_encoder(**reproduce.ENCODER)
    load_dino_encoder(a, enc / "dino_vit8_seed0.pth")
    load_dino_encoder(b, tmp_path / "full.pth")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    out = tmp_path / "rep"
    assert reproduce.main(["--quick", "--out", str(out), "--seeds", "0", "--jobs", "1", "--encoders", str(enc)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == list(reproduce.METHODS)
    # issue 14: the three rows by these exact names, each scored at its last epoch, tuning effort per row logged
    assert {"kmeans_patch_tokens", "cam_pseudo_labels", "transfgu"} <= set(reproduce.METHODS)
    (seed0,) = s["per_seed"]
    assert s["rows"][0]["method"] == "transfgu" and len(seed0["history"]) == reproduce.QUICK["epochs"]
    assert s["rows"][0]["per_seed"] == [round(seed0["history"][-1]["mIoU"], 4)]
    assert s["tuning_trials"] == reproduce.TUNING_TRIALS and set(s["tuning_trials"]) == set(reproduce.METHODS)
    assert "Tuning trials per row" in (out / "summary.md").read_text()
    assert s["encoders_per_seed"] == {"0": {"file": "dino_vit8_seed0.pth", "sha256": entry["sha256"]}}
    assert all(0 <= r["mean"] <= 100 for r in s["rows"])
    assert (out / "summary.png").is_file()


def test_shipped_encoders_match_their_hash_and_load_strictly():
    if not (reproduce.ENCODERS / "manifest.json").is_file():
        pytest.skip("no shipped encoders yet")
    for seed in range(reproduce.N_SHIPPED):
        path = check_encoder(reproduce.ENCODERS, f"dino_vit8_seed{seed}.pth")
        assert path.stat().st_size <= 10 * 2 ** 20
        vit = create_encoder(**reproduce.ENCODER)
        report = load_dino_encoder(vit, path)
        assert not report.missing and not report.unexpected
