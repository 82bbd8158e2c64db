"""The registry of real-dataset layout checks that ``python -m shared.data.verify`` runs.

A paper's ``data.py`` (and :mod:`shared.data.imagenet`) registers each dataset::

    from shared.data.registry import register

    @register("office31", paper="cdtrans", doc="data/office31/{amazon,dslr,webcam}/images/... + lists")
    def verify_office31(root: Path) -> list[str]:
        return problems  # human-readable, empty when everything is in place

Its own module (not ``verify``): ``verify`` imports the modules that register, and they import this.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class VerifySpec:
    name: str
    paper: str
    doc: str
    fn: Callable[[Path], list[str]]


REGISTRY: dict[str, VerifySpec] = {}


def register(name: str, paper: str, doc: str = ""):
    """Register ``fn(root) -> problems`` under ``name``; a name taken by another paper is an error."""

    def deco(fn: Callable[[Path], list[str]]):
        old = REGISTRY.get(name)
        if old is not None and old.paper != paper:
            raise ValueError(f"verify: dataset name '{name}' is already registered by {old.paper}; "
                             f"{paper} must use another name (e.g. '{paper}.{name}')")
        REGISTRY[name] = VerifySpec(name, paper, doc, fn)
        return fn

    return deco


def check_counts(found: dict[str, int], expected: dict[str, int]) -> list[str]:
    """Problems for every ``found[k] != expected[k]``."""
    return [f"{k}: expected {v} entries, found {found.get(k, 0)}" for k, v in expected.items()
            if found.get(k, 0) != v]


__all__ = ["REGISTRY", "VerifySpec", "check_counts", "register"]
