"""TransReID-SSL smoke: ``make pretrain`` and the embedded reproduction in --quick mode, evaluate.py on a checkpoint."""
import json

import pytest
import torch

from shared.pretrain import check_encoder, file_sha256, read_manifest
from transreid_ssl import evaluate, pretrain, reproduce
from transreid_ssl.checkpoints import load_backbone
from transreid_ssl.train import build_backbone


def test_pretrain_then_reproduce_quick(tmp_path):
    enc = tmp_path / "enc"
    assert pretrain.main(["--quick", "--seeds", "0", "--jobs", "1", "--out", str(enc),
                          "--run-root", str(tmp_path / "pre")]) == 0
    manifest = read_manifest(enc / "manifest.json")
    assert sorted(manifest["encoders"]) == sorted(f"{a}_seed0.pth" for a in pretrain.ARMS)
    for name, entry in manifest["encoders"].items():
        assert entry["sha256"] == file_sha256(enc / name)
        assert {"recipe", "data", "wall_seconds", "git_sha", "command"} <= set(entry)
    assert 0.0 <= manifest["encoders"]["dino_cfs50_seed0.pth"]["cfs"]["person_precision_top50"] <= 100.0
    # a re-run resumes (nothing retrained) and rewrites the same files
    sha = manifest["encoders"]["dino_full_seed0.pth"]["sha256"]
    assert pretrain.main(["--quick", "--seeds", "0", "--jobs", "1", "--out", str(enc), "--arms", "dino_full",
                          "--run-root", str(tmp_path / "pre")]) == 0
    assert read_manifest(enc / "manifest.json")["encoders"]["dino_full_seed0.pth"]["sha256"] == sha

    out = tmp_path / "rep"
    assert reproduce.main(["--quick", "--out", str(out), "--seeds", "0", "--jobs", "1", "--encoders", str(enc)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["method"] for r in summary["rows"]] == reproduce.ROWS
    assert set(summary["heldout_mAP"]) == set(reproduce.ROWS)
    assert list(summary["tuning_trials"]) == reproduce.ROWS  # issue 14: tuning effort logged per row
    assert {"scratch_ics - scratch_conv_bn", "scratch_ics - scratch_conv_bn (held-out camera)"} <= set(
        summary["paired_differences"])
    assert (out / "summary.png").exists()
    m = evaluate.main(["--config", str(reproduce.REID_CFG), "--checkpoint", str(out / "runs/seed0/dino_full/last.pt"),
                       "--out", str(tmp_path / "eval.json")] + reproduce.QUICK)
    ft = next(r for r in summary["rows"] if r["method"] == "dino_full")
    assert abs(m["mAP"] - ft["per_seed"][0]) < 1e-3


def test_reproduce_refuses_a_modified_encoder(tmp_path):
    enc = tmp_path / "enc"
    pretrain.main(["--quick", "--seeds", "0", "--jobs", "1", "--out", str(enc), "--arms", "dino_full",
                   "--run-root", str(tmp_path / "pre")])
    with open(enc / "dino_full_seed0.pth", "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="sha256"):
        check_encoder(enc, "dino_full_seed0.pth")
    with pytest.raises(FileNotFoundError, match="no entry"):
        reproduce.encoder_for("dino_cfs50", 0, enc)


@pytest.mark.parametrize("arm", pretrain.ARMS)
def test_shipped_encoders_match_their_hash_and_load_strictly(arm):
    """Every shipped file: sha256 as in the manifest, loaded through the real loader into the fine-tuning ViT."""
    if not (reproduce.ENCODERS / "manifest.json").is_file():
        pytest.skip("no shipped encoders yet")
    from shared.config import load_config
    from transreid_ssl.train import TransReIDSSLConfig

    cfg = load_config(reproduce.REID_CFG, TransReIDSSLConfig, [])
    for seed in range(reproduce.N_SHIPPED):
        path = check_encoder(reproduce.ENCODERS, f"{arm}_seed{seed}.pth")
        assert path.stat().st_size <= 10 * 2 ** 20
        net = build_backbone(cfg.model, 0.0)
        report = load_backbone(net, path)
        assert not report.missing and not report.unexpected
        assert all(torch.isfinite(v).all() for v in net.state_dict().values())


def test_claims_follow_the_one_rule_and_the_no_degradation_reading():
    from transreid_ssl.reproduce import claims_of

    rows = {"scratch": [30.0, 32.0, 34.0], "supervised_generic": [10.0, 12.0, 14.0], "dino_full": [40.0, 42.0, 44.0],
            "dino_cfs50": [39.0, 41.0, 43.0], "dino_random50": [38.0, 41.0, 44.0],
            "scratch_conv_bn": [1.0, 2.0, 3.0], "scratch_ics": [1.5, 2.5, 3.5]}
    c = claims_of({"mAP": rows, "heldout_mAP": rows})
    assert c["dino_full >= scratch + 5"]["holds"]  # +10 >= 5 and > std 2
    assert c["dino_full > supervised_generic"]["holds"]
    assert not c["dino_cfs50 > dino_random50"]["holds"]  # +0 inside the std
    nodeg = c["dino_cfs50 >= dino_full - pooled std"]
    assert nodeg["diff"] == -1.0 and nodeg["pooled_std"] == 2.0 and nodeg["holds"]  # 1 below, inside std 2
    assert not c["scratch_ics > scratch_conv_bn (held-out camera)"]["holds"]  # +0.5 inside std 1
    worse = dict(rows, dino_cfs50=[35.0, 37.0, 39.0])  # 5 below, std 2
    assert not claims_of({"mAP": worse, "heldout_mAP": worse})["dino_cfs50 >= dino_full - pooled std"]["holds"]
