"""Compile the core's hottest module with mypyc, for the source as it is now.

    .venv/bin/python scripts/build_native.py

For each module in ``MODULES`` (:data:`udfs.core.native.HOT`): when ``udfs/core/_native`` holds no copy built from the
module's current bytes (see :mod:`udfs.core.native`), copy the source to
``udfs/core/_native/<name>_<digest>.py``, compile it with mypyc (part of mypy, pinned in
requirements.lock), keep the extension modules and delete the copy, and delete the copies
of earlier sources. Nothing to do when the copy is current. ``make demo``, ``make test`` and
``make bench`` run it first.

Without a C compiler (or when mypyc fails) it says so and exits 0: the pure module runs,
slower, with the same results. The copies are for this machine's Python; they are not in git.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from udfs.core.native import HOT, source, stem  # noqa: E402

MODULES = tuple(HOT)
NATIVE = ROOT / "udfs" / "core" / "_native"


def build(name: str) -> str:
    """Build the copy of core module ``name`` unless it is current; say what happened."""
    path = source(name)
    copy_stem = stem(name, path)
    flat = name.replace(".", "_")
    if any(NATIVE.glob(f"{copy_stem}.*.so")):
        return f"{name}: compiled copy {copy_stem} is current"
    for old in NATIVE.glob(f"{flat}_*"):
        if old.name[len(flat) + 1 : len(flat) + 17].isalnum() and len(old.name) > len(flat) + 17:
            old.unlink()
    copy = NATIVE / f"{copy_stem}.py"
    shutil.copyfile(path, copy)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "mypyc", str(copy.relative_to(ROOT))],
            cwd=ROOT, capture_output=True, text=True,
        )
    finally:
        copy.unlink()
    if out.returncode != 0 or not any(NATIVE.glob(f"{copy_stem}.*.so")):
        for part in NATIVE.glob(f"{copy_stem}*"):
            part.unlink()
        tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
        return f"{name}: not compiled, the pure module runs ({' / '.join(tail)})"
    return f"{name}: compiled {copy_stem}"


def main() -> int:
    for name in MODULES:
        print(f"build_native: {build(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
