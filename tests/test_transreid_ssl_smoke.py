"""TransReID-SSL smoke: the embedded reproduction in --quick mode, and evaluate.py on its checkpoint."""
import json

from transreid_ssl import evaluate, reproduce


def test_reproduce_quick(tmp_path):
    assert reproduce.main(["--quick", "--out", str(tmp_path), "--seeds", "0", "--jobs", "1"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in summary["rows"]] == reproduce.ROWS
    assert 0.0 <= summary["cfs_person_precision_top50"]["mean"] <= 100.0
    assert (tmp_path / "summary.png").exists() and (tmp_path / "runs" / "seed0" / "cfs_ranking.txt").exists()
    m = evaluate.main(["--config", str(reproduce.REID_CFG), "--weights", str(tmp_path / "runs/seed0/ft_full/last.pt"),
                       "--out", str(tmp_path / "eval.json")] + reproduce.QUICK)
    ft = next(r for r in summary["rows"] if r["method"] == "dino_full")
    assert abs(m["mAP"] - ft["per_seed"][0]) < 1e-3
