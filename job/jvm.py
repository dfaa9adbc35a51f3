"""The job's own JVM code: where its jar is, and whether it was built from these sources.

Two pieces are written in Java, in ``udfs/jvm/flinkanomaly/``: the line batcher ahead of the
detect operator (``LineBatcher.java``, job/pipeline.py ``batch_lines``) and the watermarks a
few wrong clocks cannot drag forward (``ClockGuardWatermarks.java``, job/pipeline.py
``with_event_time``). ``scripts/build_jvm.py`` (``make native``) compiles them into
``udfs/jvm/build/flinkanomaly-<digest>.jar``, ``<digest>`` being the first 16 hex digits of
the SHA-256 of the sources, so an edited source never runs a stale jar. The jar is not in
git; without one (no JDK where the job was built) the job runs without the batcher (the same
results) and with Flink's plain bounded out-of-orderness watermarks (a far-future timestamp
then moves event time for every entity).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["BUILD", "JAR_STEM", "SOURCES", "configured_jars", "operators_jar", "sources_digest"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JVM_DIR = PROJECT_ROOT / "udfs" / "jvm"
BUILD = JVM_DIR / "build"
JAR_STEM = "flinkanomaly"
SOURCES = tuple(sorted(JVM_DIR.glob("flinkanomaly/*.java")))


def sources_digest() -> str:
    """The first 16 hex digits of the SHA-256 over the Java sources (names and bytes)."""
    h = hashlib.sha256()
    for path in SOURCES:
        h.update(path.relative_to(JVM_DIR).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def operators_jar() -> Path | None:
    """The jar built from the sources as they are now, or ``None`` when there is none."""
    jar = BUILD / f"{JAR_STEM}-{sources_digest()}.jar"
    return jar if jar.is_file() else None


def configured_jars(env: Any) -> list[str]:
    """The jars in the environment's ``pipeline.jars`` (``env.add_jars``, ``flink run -j``)."""
    from pyflink.common import Configuration
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    conf = jvm.org.apache.flink.python.util.PythonConfigUtil.getEnvironmentConfig(
        env._j_stream_execution_environment
    )
    value = conf.getString(jvm.org.apache.flink.configuration.PipelineOptions.JARS.key(), None)
    return list(Configuration.parse_list_value(value)) if value else []
