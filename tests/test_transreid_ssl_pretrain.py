"""TransReID-SSL shipped encoders (issue 14): the manifest's fields per file, fine-tuning seed i paired with
pre-training seed i, the 50 % arms at the full pool's epochs, the overall progress bar of ``make pretrain``, and the
tuning effort each row's summary logs. Reads the committed files; trains nothing."""
import json
import re

import pytest

from shared import pretrain as shared_pretrain
from shared.pretrain import read_manifest
from transreid_ssl import pretrain, reproduce, suite_usl_uda

MANIFEST = pretrain.ENCODERS / "manifest.json"
pytestmark = pytest.mark.skipif(not MANIFEST.is_file(), reason="no shipped encoders")


def test_every_shipped_file_has_the_manifest_fields_of_issue_14():
    m = read_manifest(MANIFEST)
    names = sorted(m["encoders"])
    assert names == sorted(pretrain.encoder_name(a, s) for a in pretrain.ARMS for s in range(pretrain.N_SHIPPED))
    for name, e in m["encoders"].items():
        arm, seed = re.fullmatch(r"(.+)_seed(\d+)\.pth", name).groups()
        assert e["arm"] == arm and e["seed"] == int(seed)
        assert e["recipe"] and e["command"] and e["git_sha"]
        assert re.fullmatch(r"[0-9a-f]{64}", e["sha256"]) and 0 < e["bytes"] <= 10 * 2 ** 20
        assert e["wall_seconds"] > 0
        data_seed = 10_000 + int(seed) if arm == "supervised_generic" else int(seed)  # generator and its seed
        assert f"seed={data_seed}" in e["data"] and "transreid_ssl.synperson." in e["data"]
    assert m["attempts"], "every development attempt, kept or not, belongs in the manifest"
    for a in m["attempts"]:
        assert {"what", "settings", "outcome", "kept"} <= set(a) and isinstance(a["kept"], bool)


def test_half_pool_arms_train_the_full_pools_epochs():
    """The paper's 50 % subsets: the same number of epochs as the full pool, i.e. half the compute."""
    enc = read_manifest(MANIFEST)["encoders"]
    for s in range(pretrain.N_SHIPPED):
        epochs = {a: enc[pretrain.encoder_name(a, s)]["epochs"] for a in ("dino_full", "dino_cfs50", "dino_random50")}
        assert len(set(epochs.values())) == 1, epochs
        assert "CFS top half" in enc[pretrain.encoder_name("dino_cfs50", s)]["data"]
        assert "random half" in enc[pretrain.encoder_name("dino_random50", s)]["data"]


def test_fine_tuning_seed_i_starts_from_pre_training_seed_i():
    for row in sorted(reproduce.INIT):
        for seed in range(pretrain.N_SHIPPED):
            ov = reproduce.row_overrides(row, seed, False)
            assert f"model.pretrained={pretrain.ENCODERS / f'{row}_seed{seed}.pth'}" in ov
        assert reproduce.row_overrides(row, 4, False)[-1].endswith(f"{row}_seed1.pth")  # not shipped: 4 mod 3
    for seed in range(pretrain.N_SHIPPED):  # the usl_uda suite's usl row as well
        ov = suite_usl_uda._overrides("usl", seed, pretrain.ROOT / "runs", False)
        assert f"model.pretrained={pretrain.ENCODERS / f'dino_full_seed{seed}.pth'}" in ov


def test_overall_progress_counts_finished_epochs_of_every_job(tmp_path):
    """shared.pretrain's bar for --jobs > 1 (used by transreid_ssl, transfgu and cdtrans), on transreid_ssl's jobs."""
    run = tmp_path / "seed0" / "pre_full"
    run.mkdir(parents=True)
    assert shared_pretrain.epochs_done(run) == 0  # no log yet
    rows = [{"epoch": 1, "step": 5, "loss": 1.0}, {"epoch": 1, "step": 9, "epoch_seconds": 1.0},
            {"epoch": 2, "step": 18, "epoch_seconds": 1.0}, {"epoch": 2, "step": 18, "epoch_seconds": 1.0}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"epoch\": 3, \"st")
    assert shared_pretrain.epochs_done(run) == 2  # a resumed epoch counted once, a half-written line skipped
    assert {pretrain.job_epochs(0, j, True) for j in pretrain.JOBS} == {1}
    assert pretrain.job_epochs(0, "pre_full", False) == pretrain.job_epochs(0, "sup_generic", False) == 10
    with shared_pretrain.overall_progress({run: 10}, enabled=True, every=60) as bar:
        assert (bar.n, bar.total) == (2, 10)
        (run / "metrics.jsonl").write_text(json.dumps({"epoch": 3, "epoch_seconds": 1.0}) + "\n")
    assert bar.n == 1  # the final count is read after the jobs end, not left at the last poll


def test_both_suites_log_the_tuning_effort_of_every_row():
    trials = reproduce.tuning_trials(reproduce.ROWS, read_manifest(MANIFEST))
    assert list(trials) == reproduce.ROWS
    n = len(read_manifest(MANIFEST)["attempts"])
    for r, t in trials.items():
        assert {"settings", "validation_runs", "finetune_search", "pretraining_attempts"} <= set(t)
        assert t["pretraining_attempts"] == (n if r in reproduce.DINO_ARMS else int(r == "supervised_generic"))
    assert list(suite_usl_uda.TUNING_TRIALS) == suite_usl_uda.ROWS
    assert all({"settings", "validation_runs"} <= set(t) for t in suite_usl_uda.TUNING_TRIALS.values())


def test_no_paper_local_dino_is_left():
    """Issue 14: one DINO (``shared.dino``) for both papers; TransReID-SSL's pre-training stage subclasses it."""
    import ast

    import shared.dino
    from transreid_ssl import train

    dino_names = {"DINOHead", "DINOLoss", "MultiCropWrapper", "DINOModel", "DINOMultiCrop", "DINOConfig"}
    for path in sorted(pretrain.HERE.glob("*.py")):
        defined = {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)}
        assert not defined & dino_names, (path.name, defined & dino_names)
    assert not list(pretrain.HERE.glob("dino_lite*"))
    assert issubclass(train.DINOTask, shared.dino.DINOTask)
