"""Every command in every README runs as written, where that can be checked without data (issue 23).

From the code blocks and inline code of ``README.md`` and ``<folder>/README.md``:

- every repository path (first component a top-level folder: a paper, ``shared``, ``tests``, ...; or
  ``configs/``/``scripts/`` inside the README's folder) exists, ``{a,b}`` braces expanded;
- every config named by file name (``*_<g>xb<b>-*.yaml``) exists in some ``<paper>/configs/``;
- every ``python -m <module>`` / ``torchrun ... -m <module>`` of this repository imports and answers
  ``--help`` (all modules in one interpreter, so torch is imported once: seconds in total);
- every ``scripts/*.sh`` answers ``--help``; every ``make <target>`` is a Makefile target and every
  ``PAPER=<name>`` a paper folder.
"""
from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READMES = [REPO / "README.md", *sorted(REPO.glob("*/README.md"))]
# top-level folders of the repository; runs/ (outputs, git-ignored) names what a command will write
TOP = {p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".")
       and p.name not in ("runs", "visionrepro.egg-info")}
PAPERS = sorted(p.parent.name for p in REPO.glob("*/reproduce.py"))
PATH_RE = re.compile(r"(?<![\w/.$<{-])((?:[\w{},-]+/)+[\w{},.-]+\.(?:py|sh|yaml|md|json|txt|png))(?![\w/])")
CONFIG_RE = re.compile(r"(?<![\w/.{},-])([\w.{},-]+_\d+xb\d+-[\w.-]+\.yaml)")
MODULE_RE = re.compile(r"(?:python3?|\.venv/bin/python|\$PYTHON|torchrun(?:\s+--[\w-]+(?:=\S+)?)*)"
                       r"\s+-m\s+([A-Za-z_][\w.]*)")


def code_of(readme: Path) -> list[str]:
    """Fenced blocks, indented (4-space) code lines and inline code spans of a README."""
    text = readme.read_text()
    fenced = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    indented = "\n".join(ln for ln in re.sub(r"```.*?```", "", text, flags=re.S).splitlines()
                         if ln.startswith(("    ", "\t")))
    return [*fenced, indented, *re.findall(r"`([^`\n]+)`", text)]


def expand_braces(path: str) -> list[str]:
    """``a_{1,2}.yaml`` -> both names; a placeholder without a comma (``{stem}_...``) -> nothing to check."""
    parts = re.split(r"\{([^{}]*)\}", path)
    if any("," not in p for p in parts[1::2]):
        return []
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def repo_paths(readme: Path) -> list[str]:
    found = []
    for code in code_of(readme):
        for m in PATH_RE.finditer(code):
            first = m.group(1).split("/")[0]
            local = readme.parent != REPO and first in ("configs", "scripts")
            if first in TOP or local:
                found += [str((readme.parent if local else REPO) / p) for p in expand_braces(m.group(1))]
    return sorted(set(found))


def modules() -> dict[str, list[str]]:
    """``{module: [readmes naming it]}`` for this repository's modules."""
    out: dict[str, list[str]] = {}
    for readme in READMES:
        for code in code_of(readme):
            for m in MODULE_RE.finditer(code):
                if m.group(1).split(".")[0] in TOP:
                    out.setdefault(m.group(1), []).append(readme.relative_to(REPO).as_posix())
    return out


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_named_files_exist(readme):
    missing = [p for p in repo_paths(readme) if not Path(p).exists()]
    configs = {c.name for c in REPO.glob("*/configs/*.yaml")}
    for code in code_of(readme):
        for m in CONFIG_RE.finditer(code):
            missing += [name for name in expand_braces(m.group(1)) if name not in configs]
    assert not missing, f"{readme.relative_to(REPO)} names files that do not exist: {sorted(set(missing))}"


def test_make_targets_and_papers_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    bad = []
    for readme in READMES:
        for code in code_of(readme):
            for m in re.finditer(r"\bmake[ \t]+([a-z][\w-]*)((?:[ \t]+[A-Z]+=\S+)*)", code):
                if m.group(1) not in targets:
                    bad.append(f"{readme.name}: make {m.group(1)}")
                for paper in re.findall(r"PAPER=([\w<>|-]+)", m.group(2)):
                    if paper.isidentifier() and paper not in PAPERS:
                        bad.append(f"{readme.name}: PAPER={paper}")
    assert not bad


def test_scripts_answer_help():
    scripts = sorted({p for r in READMES for p in repo_paths(r) if p.endswith(".sh") and Path(p).is_file()})
    assert scripts
    for s in scripts:
        r = subprocess.run(["bash", s, "--help"], capture_output=True, text=True, timeout=30, cwd=REPO)
        assert r.returncode == 0 and r.stdout.strip(), f"bash {s} --help: {r.stderr.strip()[:300]}"


HELP_RUNNER = r"""
import io, json, runpy, sys, contextlib, warnings
warnings.simplefilter("ignore")
for mod in sys.argv[1:]:
    out, err, code = io.StringIO(), io.StringIO(), None
    sys.argv = [mod, "--help"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module(mod, run_name="__main__", alter_sys=True)
            code = "no SystemExit"
        except SystemExit as e:
            code = e.code or 0
        except BaseException as e:  # noqa: BLE001
            code = f"{type(e).__name__}: {e}"
    print(json.dumps({"module": mod, "code": code, "out": out.getvalue()[:200], "err": err.getvalue()[-300:]}),
          file=sys.__stdout__, flush=True)
"""


@pytest.mark.slow
def test_modules_answer_help():
    mods = modules()
    assert "cdtrans.train" in mods and "shared.data.verify" in mods
    r = subprocess.run([sys.executable, "-c", HELP_RUNNER, *sorted(mods)], capture_output=True, text=True,
                       timeout=300, cwd=REPO, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                                   "PYTHONPATH": str(REPO)})
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [x["module"] for x in results] == sorted(mods), r.stderr[-2000:]
    bad = {x["module"]: (x["code"], x["err"]) for x in results
           if x["code"] != 0 or "usage" not in x["out"].lower()}
    assert not bad, f"these README modules do not answer --help: {bad} (named in {[mods[m] for m in bad]})"
