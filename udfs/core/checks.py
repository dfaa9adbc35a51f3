"""Checks of the configuration's text values that would otherwise fail at run time: globs
and URL templates. Every configuration class calls them in its ``__post_init__``, so a bad
value is refused when the configuration is built (at start-up, or as a live change:
``bad_control``), never at the first alert.

>>> glob_problem("entities", "db-[z-a]")
"entities: glob 'db-[z-a]' can match nothing (a range such as [z-a] runs backwards)"
>>> template_problem("runbook_url", "https://r/{host}", ("entity", "ts"))
"runbook_url: template 'https://r/{host}' uses {host}, not one of {entity}, {ts}"
>>> template_problem("runbook_url", "https://r/?e={entity}", ("entity", "ts")) is None
True
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Sequence

__all__ = ["glob_problem", "template_problem"]


def glob_problem(field: str, pattern: object) -> str | None:
    """Why ``pattern`` is not a usable glob (:func:`fnmatch.fnmatchcase`), or None."""
    if not isinstance(pattern, str) or not pattern:
        return f"{field} must be a non-empty glob, got {pattern!r}"
    regex = fnmatch.translate(pattern)
    try:
        re.compile(regex)
    except re.error as exc:
        return f"{field}: glob {pattern!r} cannot be read ({exc})"
    if "(?!)" in regex:  # what fnmatch makes of an empty range: a silent never-match
        return f"{field}: glob {pattern!r} can match nothing (a range such as [z-a] runs backwards)"
    return None


def template_problem(field: str, template: object, placeholders: Sequence[str]) -> str | None:
    """Why ``template`` cannot be filled by ``str.format`` with exactly the keyword
    arguments ``placeholders`` (plain ``{name}`` fields, no index, attribute, conversion or
    format spec; ``{{`` and ``}}`` for braces), or None."""
    if not isinstance(template, str):
        return f"{field} must be a string, got {template!r}"
    known = ", ".join("{" + p + "}" for p in placeholders)
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"{field}: template {template!r} cannot be read ({exc}: write {{{{ and }}}} for braces)"
    for _text, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in placeholders or spec or conversion:
            shown = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            return f"{field}: template {template!r} uses {shown}, not one of {known}"
    return None
