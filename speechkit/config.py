"""Typed configuration: dataclass schemas, OmegaConf YAML files and ``key=value`` overrides.

A schema is a plain dataclass (fields of primitives, enums, lists and nested dataclasses). YAML files give
values only, never class paths; the code that turns a config into objects lives in recipes
(``build_model(cfg)``). Merging goes schema <- YAML <- command-line overrides, and every mistake is an error
that names the key and where it came from:

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Optim:
    ...     lr: float = 1e-3
    >>> @dataclass
    ... class Train:
    ...     optim: Optim = field(default_factory=Optim)
    ...     max_steps: int = 100
    >>> cfg = load_config(Train, overrides=["optim.lr=0.01"])
    >>> cfg.optim.lr
    0.01
    >>> load_config(Train, overrides=["optim.lrr=0.01"])
    Traceback (most recent call last):
    ...
    speechkit.config.ConfigError: command line: unknown key 'optim.lrr' (known keys under 'optim': lr)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["ConfigError", "load_config", "to_yaml", "save_config", "config_keys"]


class ConfigError(ValueError):
    """A configuration key is unknown, mistyped, missing or malformed; the message names it and its source."""


def config_keys(schema: type) -> list[str]:
    """Dotted names of every leaf field of a dataclass schema, in declaration order."""
    keys: list[str] = []
    for f in dataclasses.fields(schema):
        sub = _nested_dataclass(schema, f)
        if sub is not None:
            keys.extend(f"{f.name}.{k}" for k in config_keys(sub))
        else:
            keys.append(f.name)
    return keys


def _nested_dataclass(schema: type, f: dataclasses.Field) -> type | None:
    import typing

    hints = typing.get_type_hints(schema)
    tp = hints.get(f.name, f.type)
    return tp if dataclasses.is_dataclass(tp) and isinstance(tp, type) else None


def _known_under(schema: type, parent: str) -> list[str]:
    node: type | None = schema
    for part in [p for p in parent.split(".") if p]:
        match = [f for f in dataclasses.fields(node) if f.name == part] if node else []
        node = _nested_dataclass(node, match[0]) if match else None
        if node is None:
            return []
    return [f.name for f in dataclasses.fields(node)]


def _explain(err: Exception, source: str, schema: type) -> ConfigError:
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

    key = getattr(err, "full_key", None) or ""
    if isinstance(err, ConfigKeyError) or "Key '" in str(err) and "not in" in str(err):
        parent, _, _ = key.rpartition(".")
        known = _known_under(schema, parent)
        where = f" (known keys under '{parent}': {', '.join(known)})" if parent else (
            f" (known top-level keys: {', '.join(known)})" if known else "")
        return ConfigError(f"{source}: unknown key '{key}'{where}")
    if isinstance(err, ValidationError):
        msg = str(err).splitlines()[0]
        return ConfigError(f"{source}: bad value for key '{key}': {msg}")
    if isinstance(err, OmegaConfBaseException):
        return ConfigError(f"{source}: {str(err).splitlines()[0]}" + (f" (key '{key}')" if key else ""))
    return ConfigError(f"{source}: {err}")


def _parse_overrides(overrides: Sequence[str]) -> Any:
    from omegaconf import OmegaConf

    for item in overrides:
        name, eq, _ = item.partition("=")
        if not eq or not name.strip() or " " in name.strip():
            raise ConfigError(f"command line: malformed override '{item}' (expected key=value, e.g. trainer.max_steps=100)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except Exception as err:  # omegaconf's grammar errors
        raise ConfigError(f"command line: cannot parse overrides {list(overrides)}: {err}") from err


def load_config(
    schema: type[T],
    yaml_path: str | Path | Sequence[str | Path] | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
    values_source: str = "command line",
) -> T:
    """Build a typed config object from a schema, YAML file(s) and ``key=value`` overrides.

    Args:
        schema: a dataclass type; its defaults are the base layer.
        yaml_path: YAML file, or several merged left to right, or None.
        overrides: ``dotted.key=value`` strings applied last (OmegaConf dotlist syntax; lists as ``[1,2]``).
        values: a (nested) mapping of already-typed values merged after the YAML files and before
            ``overrides``; the CLI passes the flags a user set this way.
        values_source: how errors in ``values`` name their origin.

    Returns:
        An instance of ``schema`` (nested dataclasses are instantiated).

    Raises:
        ConfigError: unknown key, value of the wrong type, required value missing, malformed override or
            unreadable YAML; the message names the key and the file (or "command line").
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    base = OmegaConf.structured(schema)
    paths: list[str | Path] = []
    if yaml_path is not None:
        paths = [yaml_path] if isinstance(yaml_path, (str, Path)) else list(yaml_path)
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            layer = OmegaConf.load(path)
        except Exception as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if layer is None or not OmegaConf.is_dict(layer):
            if layer is None or (hasattr(layer, "__len__") and len(layer) == 0):
                continue
            raise ConfigError(f"{path}: top level must be a mapping of keys to values")
        try:
            base = OmegaConf.merge(base, layer)
        except OmegaConfBaseException as err:
            raise _explain(err, str(path), schema) from err
    if values:
        try:
            base = OmegaConf.merge(base, OmegaConf.create(dict(values)))
        except OmegaConfBaseException as err:
            raise _explain(err, values_source, schema) from err
    if overrides:
        try:
            base = OmegaConf.merge(base, _parse_overrides(overrides))
        except OmegaConfBaseException as err:
            raise _explain(err, "command line", schema) from err
    missing = sorted(OmegaConf.missing_keys(base))
    if missing:
        src = ", ".join(str(p) for p in paths) or "defaults"
        raise ConfigError(f"required key(s) not set: {', '.join(missing)} (config: {src}; set them with key=value)")
    try:
        return OmegaConf.to_object(base)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise _explain(err, "config", schema) from err


def to_yaml(cfg: Any) -> str:
    """The resolved YAML text of a config dataclass instance (what recipes save next to checkpoints)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write ``to_yaml(cfg)`` to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(cfg))
    return path
