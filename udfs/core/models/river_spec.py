"""River estimators named in the configuration: a spec is parsed, never evaluated.

A spec is River's own pipeline notation restricted to what a configuration needs::

    preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=0.02)

Each step is ``module.Class(arguments)`` with ``module`` one of :data:`MODULES` (an optional
``river.`` in front is allowed) and arguments that are literals (numbers, strings, booleans,
``None``, lists and tuples of them, negative numbers) or another step (a wrapped estimator).
Anything else (a name, an attribute of something else, an operator other than ``|``, a
lambda, a subscript) is refused with a line saying what and where. :func:`parse_spec` only
reads the text (no import: the configuration checks it anywhere); :func:`build_spec`
imports River and builds a fresh estimator, and refuses a class that is not one of River's
estimators.

Instead of a spec, ``module:function`` names an importable factory of the user's own that
returns a fresh River estimator on each call (the user's code, run by their choice).

>>> parse_spec("preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=0.02)")
(Step(module='preprocessing', name='StandardScaler', args=(), kwargs=()), Step(module='anomaly', name='OneClassSVM', args=(), kwargs=(('nu', 0.02),)))
>>> parse_spec("anomaly.HalfSpaceTrees(seed=__import__('os'))")
Traceback (most recent call last):
...
ValueError: argument 'seed' of anomaly.HalfSpaceTrees: only literals or River estimators, got a Call
"""

from __future__ import annotations

import ast
import importlib
from typing import Any, NamedTuple

__all__ = ["MODULES", "Step", "build_spec", "is_factory", "parse_spec", "river_version"]

#: The River modules a spec may take estimators from.
MODULES = (
    "anomaly",
    "preprocessing",
    "feature_extraction",
    "compose",
    "feature_selection",
    "imblearn",
    "cluster",
)


class Step(NamedTuple):
    """One estimator of a spec: ``river.<module>.<name>(*args, **dict(kwargs))``."""

    module: str
    name: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]


def is_factory(spec: str) -> bool:
    """Whether ``spec`` names a factory (``module:function``) rather than estimators."""
    head, sep, tail = spec.partition(":")
    return bool(sep) and all(p.isidentifier() for p in head.split(".")) and tail.isidentifier()


def parse_spec(spec: str) -> tuple[Step, ...]:
    """The steps of a pipeline spec, in order (see the module docstring); ``ValueError``
    naming the first thing that is not allowed."""
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a River spec ({exc.msg} at column {exc.offset})") from None
    steps: list[Step] = []
    _pipeline(tree.body, steps)
    return tuple(steps)


def _pipeline(node: ast.expr, out: list[Step]) -> None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        _pipeline(node.left, out)
        _pipeline(node.right, out)
        return
    out.append(_step(node))


def _step(node: ast.expr) -> Step:
    if not isinstance(node, ast.Call):
        raise ValueError(f"each step must be module.Class(...), got {ast.unparse(node)!r}")
    func = node.func
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        raise ValueError(f"each step must be module.Class(...), got {ast.unparse(node.func)!r}")
    parts.append(func.id)
    parts.reverse()
    if parts[0] == "river":
        parts = parts[1:]
    if len(parts) != 2 or parts[0] not in MODULES:
        raise ValueError(
            f"{'.'.join(parts)!r} is not a River estimator of {', '.join(MODULES)}"
        )
    module, name = parts
    where = f"{module}.{name}"
    args = tuple(_literal(a, f"a positional argument of {where}") for a in node.args)
    kwargs = []
    for kw in node.keywords:
        if kw.arg is None:
            raise ValueError(f"**arguments are not allowed in {where}")
        kwargs.append((kw.arg, _literal(kw.value, f"argument {kw.arg!r} of {where}")))
    return Step(module, name, args, tuple(kwargs))


def _literal(node: ast.expr, where: str) -> Any:
    if isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, (bool, int, float, str))
    ):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, where) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        try:
            return _step(node)
        except ValueError:
            pass
    raise ValueError(f"{where}: only literals or River estimators, got a {type(node).__name__}")


def river_version() -> str:
    """The installed River's version (part of a River model's state)."""
    from importlib.metadata import version

    return version("river")


def build_spec(spec: str) -> Any:
    """A fresh River estimator from ``spec`` (a pipeline spec or ``module:function``)."""
    from river import base

    if is_factory(spec):
        module, _, func = spec.partition(":")
        try:
            made = getattr(importlib.import_module(module), func)()
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"factory {spec!r} cannot be called: {exc}") from None
        if not isinstance(made, base.Estimator):
            raise ValueError(f"factory {spec!r} returned {type(made).__name__}, not a River estimator")
        return made
    steps = [_build(step) for step in parse_spec(spec)]
    model = steps[0]
    for step in steps[1:]:
        model = model | step
    return model


def _build(step: Step) -> Any:
    from river import base

    module = importlib.import_module(f"river.{step.module}")
    cls = getattr(module, step.name, None)
    if not (isinstance(cls, type) and issubclass(cls, base.Estimator)) or step.name.startswith("_"):
        raise ValueError(f"river.{step.module}.{step.name} is not a River estimator")
    args = [_build(a) if isinstance(a, Step) else a for a in step.args]
    kwargs = {k: _build(v) if isinstance(v, Step) else v for k, v in step.kwargs}
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"river.{step.module}.{step.name}: {exc}") from None
