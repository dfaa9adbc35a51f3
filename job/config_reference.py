"""The configuration's reference, written from the code: every key with its type, default
and description, and a JSON Schema of the configuration file for editors.

The descriptions are the ``Parameters`` sections of the configuration classes' docstrings
(numpydoc), so they live with the code: ``tests/adapters/test_config_reference.py`` fails when a
key has none, and when ``docs/configuration.md`` or ``job/schemas/config.schema.json`` are
not what this module writes (``python -m job config --reference`` / ``--schema``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from pathlib import Path
from typing import Any

from job.config import JobConfig, to_plain

__all__ = ["describe", "json_schema", "reference_markdown", "reference_rows"]

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "config.schema.json"


def describe(cls: Any) -> dict[str, str]:
    """``{field: description}`` from the ``Parameters`` section of ``cls.__doc__`` (a line
    ``a, b`` documents both fields)."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    out: dict[str, str] = {}
    try:
        i = lines.index("Parameters") + 2
    except ValueError:
        return out
    names: list[str] = []
    text: list[str] = []
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line and not line.startswith(" ") and nxt and set(nxt) == {"-"}:
            break  # the next section
        if line and not line.startswith(" "):
            out.update({n: " ".join(text) for n in names})
            names = [n.strip() for n in line.split(":")[0].split(",")]
            text = []
        elif line.strip():
            text.append(line.strip())
        i += 1
    out.update({n: " ".join(text) for n in names})
    return out


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp):
        return re.sub(r"\b[a-z_]+(?:\.[a-z_]+)+\.", "", str(tp).replace("typing.", ""))
    return str(getattr(tp, "__name__", tp))


def reference_rows(cls: Any = JobConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(key, type, default, description)`` for every leaf of the configuration tree."""
    rows: list[tuple[str, str, str, str]] = []
    hints = typing.get_type_hints(cls)
    default = cls()
    docs = describe(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(reference_rows(tp, key + "."))
            continue
        value = getattr(default, f.name)
        rows.append((key, _type_name(tp), json.dumps(to_plain(value)), docs.get(f.name, "")))
    return rows


def reference_markdown() -> str:
    """The reference table (``python -m job config --reference``)."""
    out = ["| key | type | default | what it does |", "|---|---|---|---|"]
    for key, tp, default, text in reference_rows():
        out.append(f"| `{key}` | {tp} | `{default}` | {' '.join(text.split())} |")
    return "\n".join(out)


def _schema_of(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _object_schema(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        inner = [a for a in args if a is not type(None)]
        schema = _schema_of(inner[0])
        return {"anyOf": [schema, {"type": "null"}]} if type(None) in args else schema
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_of(args[0])}
        return {"type": "array", "prefixItems": [_schema_of(a) for a in args], "minItems": len(args), "maxItems": len(args)}
    return {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
            str: {"type": "string"}}.get(tp, {})


def _object_schema(cls: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    docs = describe(cls)
    try:
        default = cls()
    except (TypeError, ValueError):  # fields without defaults (a window, a rule, a model)
        default = None
    props: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        schema = _schema_of(hints[f.name])
        given = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if not given:
            required.append(f.name)
        if not dataclasses.is_dataclass(hints[f.name]):
            if default is not None:
                schema["default"] = to_plain(getattr(default, f.name))
            elif f.default is not dataclasses.MISSING:
                schema["default"] = to_plain(f.default)
        if docs.get(f.name):
            schema["description"] = " ".join(docs[f.name].split())
        props[f.name] = schema
    summary = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    out = {"type": "object", "description": summary, "properties": props, "additionalProperties": False}
    if default is None:
        out["required"] = required
    return out


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the configuration file (``--config``)."""
    schema = _object_schema(JobConfig)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/flink-anomaly/config.schema.json",
        "title": "flink-anomaly configuration",
        **schema,
    }


def write_docs() -> None:
    """Rewrite ``docs/configuration.md``'s table and the schema file."""
    text = DOC.read_text()
    start, end = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(f"{head}{start}\n{reference_markdown()}\n{end}{tail}")
    SCHEMA.write_text(json.dumps(json_schema(), indent=2) + "\n")
