"""Every shipped encoder listed in a paper's ``encoders/manifest.json`` is committed (not ignored by git) and
matches its sha256; the per-paper smoke tests load them through the real loaders."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.pretrain import MAX_BYTES, check_encoder

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted(ROOT.glob("*/encoders/manifest.json"))


def test_both_papers_ship_encoders():
    assert {m.parent.parent.name for m in MANIFESTS} == {"transreid_ssl", "transfgu", "cdtrans"}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m.parent.parent.name)
def test_shipped_files_are_tracked_and_match_their_hash(manifest):
    names = sorted(json.loads(manifest.read_text())["encoders"])
    assert names
    for name in names:
        path = check_encoder(manifest.parent, name)
        assert path.stat().st_size <= MAX_BYTES
    if shutil.which("git") and (ROOT / ".git").exists():
        rel = [str((manifest.parent / n).relative_to(ROOT)) for n in names]
        tracked = subprocess.run(["git", "ls-files", "--", *rel], cwd=ROOT, capture_output=True, text=True).stdout
        assert sorted(tracked.split()) == sorted(rel), "encoder files not committed (a *.pth ignore rule?)"


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m.parent.parent.name)
def test_readme_lists_every_shipped_sha256(manifest):
    readme = (manifest.parent.parent / "README.md").read_text()
    for name, entry in json.loads(manifest.read_text())["encoders"].items():
        assert entry["sha256"] in readme, f"{name}: sha256 missing from the README's shipped-encoder table"
