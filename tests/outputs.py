"""Detector outputs made comparable with ``==`` when they hold NaN.

A NaN equals only itself, so two lists of records compare equal only when their NaN feature
values are the same float object. The pure window features hand out one NaN object; the
compiled copy (udfs/core/native.py) a new one each time. :func:`one_nan` puts the one
``math.nan`` in place of every NaN, so equal outputs compare equal whichever ran.
"""

from __future__ import annotations

import math
from typing import Any


def one_nan(obj: Any) -> Any:
    """``obj`` (records: tuples, lists and dicts of values) with every NaN as ``math.nan``."""
    if isinstance(obj, float):
        return obj if obj == obj else math.nan
    if isinstance(obj, dict):
        return {k: one_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [one_nan(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(one_nan(v) for v in obj)
    return obj
