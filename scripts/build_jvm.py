"""Compile the job's JVM code (``udfs/jvm``) into a jar, for the sources as they are now.

    .venv/bin/python scripts/build_jvm.py

``udfs/jvm/flinkanomaly/`` holds the line batcher ahead of the keyed Python operator
(job/pipeline.py ``batch_lines``) and the clock-guarded watermarks (``with_event_time``).
When ``udfs/jvm/build`` holds no jar built from the sources' current bytes (:func:`job.jvm.operators_jar`), compile them with ``javac`` against
the Flink jars of the installed ``apache-flink`` wheel and write
``udfs/jvm/build/flinkanomaly-<digest>.jar``; delete jars of earlier sources. Nothing to do
when the jar is current. ``make demo``, ``make test`` and ``make bench`` run it first
(``make native``).

Without ``javac`` (a JRE only) it says so and exits 0: the job then runs without the batcher,
one Python call per line, slower, with the same results, and with Flink's plain watermarks
(job/jvm.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from job.jvm import BUILD, JAR_STEM, SOURCES, operators_jar, sources_digest  # noqa: E402


def build() -> str:
    """Build the jar unless it is current; say what happened."""
    current = operators_jar()
    if current is not None:
        return f"jar {current.name} is current"
    javac = shutil.which("javac")
    if javac is None:
        return "javac not found (a JDK is needed): the job runs without its JVM operators"
    import pyflink

    lib = Path(pyflink.__file__).parent / "lib"
    BUILD.mkdir(parents=True, exist_ok=True)
    for old in BUILD.glob(f"{JAR_STEM}-*.jar"):
        old.unlink()
    jar = BUILD / f"{JAR_STEM}-{sources_digest()}.jar"
    with tempfile.TemporaryDirectory() as classes:
        out = subprocess.run(
            [javac, "--release", "11", "-nowarn", "-cp", f"{lib}/*", "-d", classes,
             *(str(s) for s in SOURCES)],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
            return f"javac failed, the job runs without its JVM operators ({' / '.join(tail)})"
        part = jar.with_suffix(".part")
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(Path(classes).rglob("*.class")):
                z.write(f, f.relative_to(classes).as_posix())
        part.rename(jar)
    return f"built {jar.relative_to(ROOT)}"


def main() -> int:
    print(f"build_jvm: {build()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
