"""Smoke test: the whole embedded TransFGU reproduction at --quick sizes."""
import json

from transfgu import reproduce


def test_reproduce_quick(tmp_path):
    assert reproduce.main(["--quick", "--out", str(tmp_path), "--seeds", "0", "--jobs", "1"]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in s["rows"]] == list(reproduce.METHODS)
    assert all(0 <= r["mean"] <= 100 for r in s["rows"])
    assert (tmp_path / "summary.png").is_file()
