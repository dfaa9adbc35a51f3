"""In a revision's tree: the job over the benchmark stream, stopped with a savepoint part way
(``old``) or resumed from it (``new``); both write to one exactly-once file sink
(``tools/upgrade_check.py``).

    upgrade_run.py old|new WORK EVENTS STOP_AT ENTITIES
"""

import sys
import time
from pathlib import Path

from pyflink.common.serialization import Encoder
from pyflink.common.typeinfo import Types
from pyflink.datastream import MapFunction
from pyflink.datastream.connectors.file_system import FileSink
from pyflink.java_gateway import get_gateway

from job.pipeline import _tagged, build_pipeline, file_source

try:
    from tools.bench import bench_config, bench_environment, generate_events, write_lines
except ImportError:  # a revision from before the tools package
    from job.bench import _bench_config as bench_config  # type: ignore[no-redef]
    from job.bench import _environment as bench_environment  # type: ignore[no-redef]
    from job.bench import generate_events, write_lines  # type: ignore[no-redef]

mode, work = sys.argv[1], Path(sys.argv[2])
events, stop_at, entities = (int(x) for x in sys.argv[3:6])


class Gate(MapFunction):
    # Lets the first ``after`` lines through at full speed, then one every ``pace_s``;
    # touches ``marker`` at line ``after`` and writes how many lines it saw on close.
    def __init__(self, marker, after, pace_s):
        self.marker, self.after, self.pace_s, self.seen = marker, after, pace_s, 0

    def map(self, value):
        self.seen += 1
        if self.seen > self.after:
            time.sleep(self.pace_s)
        if self.seen == self.after:
            Path(self.marker).touch()
        return value

    def close(self):
        Path(self.marker + ".seen").write_text(str(self.seen))


inp = work / "input.jsonl"
if mode == "old":
    write_lines(inp, generate_events(events, metrics=4, entities=entities))
conf = {
    "execution.checkpointing.storage": "filesystem",
    "execution.checkpointing.dir": (work / f"checkpoints-{mode}").resolve().as_uri(),
}
if mode == "new":
    conf["execution.state-recovery.path"] = (work / "savepoint").read_text().strip()
cfg = bench_config(["sink.emit_scores=true"])
env = bench_environment(cfg, ship_job=True, conf=conf)
marker = str(work / f"gate-{mode}")
gate = Gate(marker, stop_at if mode == "old" else 1 << 62, 0.05)
src = file_source(env, str(inp)).map(gate, output_type=Types.STRING()).name("gate").uid("gate")
outputs = build_pipeline(env, cfg, src)
tagged = [_tagged(stream, name) for name, stream in outputs.items()]
sink = FileSink.for_row_format(str(work / "sink"), Encoder.simple_string_encoder()).build()
tagged[0].union(*tagged[1:]).sink_to(sink).name("files").uid("files")
client = env.execute_async(f"upgrade-check-{mode}")
if mode == "old":
    deadline = time.monotonic() + 600
    while not Path(marker).exists():  # the gate's own signal, polled
        if time.monotonic() > deadline:
            raise SystemExit("the old job never reached the stop line")
        time.sleep(0.2)
    # (PyFlink 2.3's JobClient.stop_with_savepoint calls a Java method that no longer exists.)
    fmt = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    target = (work / "savepoints").resolve().as_uri()
    path = client._j_job_client.stopWithSavepoint(False, target, fmt).get()
    (work / "savepoint").write_text(path)
else:
    client.get_job_execution_result().result()
