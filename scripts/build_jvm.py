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

It also builds the cluster's metrics reporter (``flink-conf/reporter``: Flink's Prometheus
reporter bound to one interface, loopback by default) into
``flink-conf/reporter/build/loopback-prometheus-<digest>.jar``, against the wheel's
``plugins/metrics-prometheus`` jar; scripts/cluster.sh puts it in the cluster's plugin folder.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from job.jvm import BUILD, JAR_STEM, SOURCES, operators_jar, sources_digest  # noqa: E402

REPORTER = ROOT / "flink-conf" / "reporter"
REPORTER_STEM = "loopback-prometheus"


def _compile(sources: list[Path], classpath: str, jar: Path, resources: Path | None) -> str | None:
    """javac ``sources`` into ``jar`` (with the files under ``resources``); None or the error."""
    javac = shutil.which("javac")
    if javac is None:
        return "javac not found (a JDK is needed)"
    with tempfile.TemporaryDirectory() as classes:
        out = subprocess.run(
            [javac, "--release", "11", "-nowarn", "-cp", classpath, "-d", classes,
             *(str(s) for s in sources)],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
            return f"javac failed ({' / '.join(tail)})"
        part = jar.with_suffix(".part")
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(Path(classes).rglob("*.class")):
                z.write(f, f.relative_to(classes).as_posix())
            if resources is not None:
                for f in sorted(resources.rglob("*")):
                    if f.is_file():
                        z.write(f, f.relative_to(resources.parent).as_posix())
        part.rename(jar)
    return None


def build() -> str:
    """Build the operators' jar unless it is current; say what happened."""
    current = operators_jar()
    if current is not None:
        return f"jar {current.name} is current"
    import pyflink

    lib = Path(pyflink.__file__).parent / "lib"
    BUILD.mkdir(parents=True, exist_ok=True)
    for old in BUILD.glob(f"{JAR_STEM}-*.jar"):
        old.unlink()
    jar = BUILD / f"{JAR_STEM}-{sources_digest()}.jar"
    error = _compile(list(SOURCES), f"{lib}/*", jar, None)
    if error:
        return f"{error}: the job runs without its JVM operators"
    return f"built {jar.relative_to(ROOT)}"


def reporter_jar() -> Path:
    """Where the reporter jar of the sources as they are now belongs."""
    digest = hashlib.sha256()
    for f in sorted(REPORTER.rglob("*")):
        if f.is_file() and "build" not in f.relative_to(REPORTER).parts:
            digest.update(f.relative_to(REPORTER).as_posix().encode() + b"\0" + f.read_bytes())
    return REPORTER / "build" / f"{REPORTER_STEM}-{digest.hexdigest()[:16]}.jar"


def build_reporter() -> str:
    """Build the loopback Prometheus reporter's jar unless it is current."""
    jar = reporter_jar()
    if jar.exists():
        return f"jar {jar.name} is current"
    import pyflink

    home = Path(pyflink.__file__).parent
    jar.parent.mkdir(parents=True, exist_ok=True)
    for old in jar.parent.glob(f"{REPORTER_STEM}-*.jar"):
        old.unlink()
    sources = sorted(REPORTER.glob("flinkanomaly/**/*.java"))
    classpath = f"{home / 'lib'}/*:{home / 'plugins' / 'metrics-prometheus'}/*"
    error = _compile(sources, classpath, jar, REPORTER / "META-INF")
    if error:
        return f"{error}: the cluster runs without its Prometheus reporter"
    return f"built {jar.relative_to(ROOT)}"


def main() -> int:
    print(f"build_jvm: {build()}")
    print(f"build_jvm: reporter: {build_reporter()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
