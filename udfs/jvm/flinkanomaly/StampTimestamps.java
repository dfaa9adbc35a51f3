package flinkanomaly;

import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Takes what the front emits, {@code (Row(entity, (entity, line)), timestamp)}, and emits the
 * row with that Flink timestamp, forwarding the watermarks it is given (job/pipeline.py
 * {@code stamp_event_time}): for a source that generates the watermarks itself, per split
 * ({@link LineWatermarks}), where Flink's timestamp assigner would replace them.
 */
public final class StampTimestamps extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Tuple2<Row, Long>, Row> {

    private static final long serialVersionUID = 1L;

    @Override
    public void processElement(StreamRecord<Tuple2<Row, Long>> element) {
        Tuple2<Row, Long> value = element.getValue();
        output.collect(element.replace(value.f0, value.f1));
    }
}
