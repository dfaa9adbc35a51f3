"""Other git revisions of this project, checked out beside it, and programs run in them.

``tree(rev)`` checks a revision out into ``bench/tmp/ab-<sha>`` (a git worktree sharing this
checkout's ``.venv`` and ``deps``; ``.`` is this working tree). ``run_in(path, script, ...)``
runs one of this checkout's scripts (``tools/in_tree/*.py``) with that tree's packages on
the path, so the revision's own ``job``, ``udfs`` and ``state`` do the work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["ROOT", "run_in", "tree"]

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "in_tree"


def tree(rev: str) -> Path:
    """The worktree of ``rev`` (``.``: this one), created when missing."""
    if rev == ".":
        return ROOT
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    path = ROOT / "bench" / "tmp" / f"ab-{sha}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), sha], check=True)
        for link in (".venv", "deps"):
            if (ROOT / link).exists() and not (path / link).exists():
                (path / link).symlink_to(ROOT / link)
    return path


def _child_env(path: Path) -> dict[str, str]:
    """This environment for a run in ``path``'s tree, without what a PyFlink worker sets:
    run from a process that ran Flink jobs (the test suite), ``PYFLINK_GATEWAY_DISABLED``
    would stop the child from starting its own gateway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK_GATEWAY")}
    env["PYTHONPATH"] = str(path)
    return env


def run_in(path: Path, script: str, *args: str) -> str:
    """Run ``tools/in_tree/<script>.py`` in the tree at ``path``; its standard output."""
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(SCRIPTS / f"{script}.py"), *args],
        cwd=path, env=_child_env(path), capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
        raise SystemExit(f"{path.name}: {script} exit status {out.returncode}")
    return out.stdout
