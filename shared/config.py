"""YAML configs with single-parent ``_base_`` inheritance, dotted overrides, typed validation.

A config file is YAML. It may name one parent with ``_base_: relative/path.yaml`` (relative to the
file). The chain is merged root-first with OmegaConf, then dotted command-line overrides
(``optim.lr=0.01 data.root=/data/office_home``) are applied, then the result is validated against a
dataclass schema: an unknown key or a wrong type raises :class:`ConfigError` naming the key and the file.

Example::

    @dataclass
    class MyConfig:
        engine: EngineConfig = field(default_factory=EngineConfig)
        lr: float = 0.1

    cfg = load_config("cdtrans/configs/x.yaml", MyConfig, ["engine.epochs=3"])
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false are booleans, so ``amp: off`` stays the string 'off'."""


_Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


class ConfigError(ValueError):
    """A config file or override is malformed; the message names the file and key."""


def _read_yaml(path: Path) -> dict:
    try:
        data = parse_yaml(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found") from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: is a folder, not a config file") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text") from e
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error_line(path, e)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def yaml_error_line(path: Path | str, e: yaml.YAMLError) -> str:
    """``<file>:<line>: not valid YAML: <problem>`` (PyYAML's own message spans 5-7 lines)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{where}: not valid YAML: {problem}"


def config_chain(path: str | Path) -> list[tuple[Path, dict]]:
    """Return ``[(file, mapping), ...]`` from the root ``_base_`` down to ``path`` itself."""
    chain: list[tuple[Path, dict]] = []
    seen: set[Path] = set()
    cur: Path | None = Path(path).resolve()
    while cur is not None:
        if cur in seen:
            raise ConfigError(f"{cur}: _base_ cycle")
        seen.add(cur)
        data = _read_yaml(cur)
        base = data.pop("_base_", None)
        chain.append((cur, data))
        if base is None:
            cur = None
        elif not isinstance(base, str):
            raise ConfigError(f"{cur}: _base_ must be one relative path (single parent), got {base!r}")
        else:
            cur = (cur.parent / base).resolve()
    return chain[::-1]


def _merge_checked(schema: DictConfig, data: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(schema, data)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        msg = str(e).splitlines()[0]
        raise ConfigError(f"{source}: key '{key}': {msg}") from None


def load_config(
    path: str | Path | None,
    schema: type[T],
    overrides: list[str] | tuple[str, ...] = (),
) -> T:
    """Load ``path`` (with its ``_base_`` chain) and ``overrides`` into an instance of ``schema``."""
    cfg = OmegaConf.structured(schema)
    if path is not None:
        for file, data in config_chain(path):
            cfg = _merge_checked(cfg, data, str(file))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command line: override '{item}' must look like key.sub=value")
        key, value = item.split("=", 1)
        try:
            parsed = parse_yaml(value) if value != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"command line: override '{item}': not a valid value "
                              f"({getattr(e, 'problem', None) or 'YAML error'})") from None
        nested: dict = {}
        cur = nested
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = parsed
        cfg = _merge_checked(cfg, nested, "command line")
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise ConfigError(f"{path or 'command line'}: key '{key}': {str(e).splitlines()[0]}") from None


def to_dict(cfg: Any) -> dict:
    """A plain nested dict of a config dataclass (for saving and logging)."""
    if dataclasses.is_dataclass(cfg):
        return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (every run directory gets one)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
