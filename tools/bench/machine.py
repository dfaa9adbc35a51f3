"""The machine the benchmark ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

# -- machine ---------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30
        ).stderr.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        java = None
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "flink": _version("apache-flink"),
        "river": _version("river"),
        "numpy": _version("numpy"),
        "pyinstrument": _version("pyinstrument"),
        "java": java,
        "os": platform.platform(),
        "openblas_env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO"))
        },
        "loadavg_start": list(os.getloadavg()),
        "compiled_core": compiled_modules(),
        "line_batcher": _batcher_name(),
    }


def _batcher_name() -> str | None:
    """The line batcher's jar the job runs with (job/pipeline.py batch_lines), or None."""
    from job.jvm import operators_jar

    jar = operators_jar()
    return jar.name if jar is not None else None


def compiled_modules() -> list[str]:
    """The core modules running as compiled copies (scripts/build_native.py): their time
    shows under their callers in the profile (no Python frames)."""
    import importlib

    from udfs.core.native import HOT

    return [
        name
        for name, classes in HOT.items()
        if getattr(importlib.import_module(f"udfs.core.{name}"), classes[0]).__module__.startswith(
            "udfs.core._native."
        )
    ]


