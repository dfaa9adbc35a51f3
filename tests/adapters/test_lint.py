"""The project's own checks run with the suite: ruff on everything, strict mypy on the job,
import-linter's contracts on the layering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import ROOT


def test_ruff_finds_nothing() -> None:
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_strict_mypy_passes_on_the_job_the_adapters_and_the_core() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_import_contracts_hold() -> None:
    """The layering of pyproject.toml's [tool.importlinter]: a pure core, pure state codec,
    no offline tool on a TaskManager, the core's stages in their order."""
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 kept, 0 broken" in out.stdout


def test_no_test_folder_shadows_a_top_level_package() -> None:
    """``tests/`` is shipped to the Python workers by MiniCluster tests, where it is on the
    import path: a ``tests/job`` there would hide the job's own ``job`` package."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir()}
    assert packages >= {"job", "udfs", "state", "tools"}
    assert not packages & folders
