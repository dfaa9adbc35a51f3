"""Typed configuration from plain data (pure): frozen dataclasses built from dicts and lists,
every problem collected with its key path, and back to plain data.

Used by the client's configuration loader (:mod:`job.config`: YAML files and ``--set``) and
by the workers for live configuration changes (:mod:`udfs.core.live`).

>>> from udfs.core.alerts import AlertConfig
>>> problems: list[str] = []
>>> build(AlertConfig, {"cooldown_ms": "soon", "colour": 1}, "alerts", problems)
>>> problems
["alerts.cooldown_ms: expected an integer, got 'soon'", 'alerts.colour: unknown key (known: cooldown_ms, dashboard_url, global_max_per_hour, hysteresis_decades, max_alerts_per_hour, quiet_events, quiet_period_ms, runbook_url, top_features)']
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

__all__ = ["build", "merge", "plain"]




def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {value!r}")
            return None
        return build(tp, value, path, problems)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path, problems)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected a list, got {value!r}")
            return None
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(
                _convert(args[0], v, f"{path}[{i}]", problems) for i, v in enumerate(value)
            )
        if len(args) != len(value):
            problems.append(f"{path}: expected {len(args)} items, got {len(value)}")
            return None
        return tuple(
            _convert(a, v, f"{path}[{i}]", problems) for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if tp is bool:
        if isinstance(value, bool):
            return value
        problems.append(f"{path}: expected true or false, got {value!r}")
        return None
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        problems.append(f"{path}: expected an integer, got {value!r}")
        return None
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if math.isfinite(number):
                return number
            problems.append(f"{path}: expected a finite number, got {str(value)[:40]}")
            return None
        problems.append(f"{path}: expected a number, got {value!r}")
        return None
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        problems.append(f"{path}: expected a string, got {value!r}")
        return None
    problems.append(f"{path}: unsupported type {tp!r}")
    return None


def build(cls: Any, data: dict[str, Any], path: str, problems: list[str]) -> Any:
    """``cls`` built from ``data``; None (and ``problems`` extended) when anything is wrong."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    broken = False
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            problems.append(f"{key_path}: unknown key (known: {', '.join(sorted(names))})")
            broken = True
            continue
        before = len(problems)
        converted = _convert(hints[key], value, key_path, problems)
        if len(problems) > before:
            broken = True  # leave the key at its default to still check the others below
        else:
            kwargs[key] = converted
    try:
        built = cls(**kwargs)
    except (ValueError, TypeError) as exc:
        for part in str(exc).split("; "):
            problems.append(f"{path or '<root>'}: {part}")
        return None
    return None if broken else built


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``, mappings key by key (neither is changed)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def plain(value: Any) -> Any:
    """A dataclass tree as dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value
