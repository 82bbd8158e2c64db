"""``make reproduce PAPER=<folder>`` dispatcher: runs ``<folder>.reproduce.main(argv)``.

An unknown name lists the ten valid ones (exit 2); a paper without ``reproduce.py`` says it is not
implemented yet (exit 2). Any failure ends as one line on stderr (``shared.errors``; ``--debug`` or
``VISIONREPRO_DEBUG=1`` for the traceback).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

from .errors import cli_errors
from .papers import PAPERS


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in PAPERS:
        name = argv[0] if argv else ""
        print(f"unknown paper '{name}'; choose one of: {', '.join(PAPERS)}", file=sys.stderr)
        return 2
    paper, rest = argv[0], argv[1:]
    if importlib.util.find_spec(f"{paper}.reproduce") is None:
        print(f"{paper}: not implemented yet (no {paper}/reproduce.py)", file=sys.stderr)
        return 2
    if "--debug" in rest:
        import os
        os.environ["VISIONREPRO_DEBUG"] = "1"
    with cli_errors(f"make reproduce PAPER={paper}", rest):
        module = importlib.import_module(f"{paper}.reproduce")
        return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
