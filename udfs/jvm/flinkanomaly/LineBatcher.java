package flinkanomaly;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Groups an entity's lines so that the keyed Python operator behind it is called once per
 * group, not once per line (job/pipeline.py {@code batch_lines}).
 *
 * <p>Takes {@code Row(entity, (entity, line))} (what the front emits, with its Flink timestamp)
 * and emits {@code Row(entity, (entity, [line, ...]))}: the lines of one entity in the order they
 * came, stamped with the greatest timestamp among them. Nothing is held across the points
 * where order between lines and event time is observable, so the operator behind sees the
 * same lines and watermarks in the same order as without it, only grouped:
 *
 * <ul>
 *   <li>a watermark: everything held leaves first, then the watermark (a line before a
 *       watermark stays before it);
 *   <li>a checkpoint barrier ({@code prepareSnapshotPreBarrier}): everything held leaves, so
 *       this operator has no state and a checkpoint holds no line that was not processed;
 *   <li>the end of the input and {@code finish}: everything held leaves;
 *   <li>{@code maxLines} lines held: everything held leaves (bounds memory and batch size);
 *   <li>{@code flushMs} after the first line held (processing time): everything held leaves
 *       (bounds the delay a quiet stream adds).
 * </ul>
 *
 * <p>Lines of different entities may leave in another order than they came; an entity's own
 * lines never do, and each entity's detector sees only its own.
 */
public final class LineBatcher extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, BoundedOneInput {

    private static final long serialVersionUID = 1L;

    private final int maxLines;
    private final long flushMs;

    private transient LinkedHashMap<String, Group> held;
    private transient int count;
    private transient boolean timerSet;

    private static final class Group {
        final ArrayList<String> lines = new ArrayList<>(4);
        long maxTs = Long.MIN_VALUE;
        boolean timed;
    }

    public LineBatcher(int maxLines, long flushMs) {
        if (maxLines < 1) {
            throw new IllegalArgumentException("maxLines must be >= 1, got " + maxLines);
        }
        if (flushMs < 1) {
            throw new IllegalArgumentException("flushMs must be >= 1, got " + flushMs);
        }
        this.maxLines = maxLines;
        this.flushMs = flushMs;
    }

    @Override
    public void open() throws Exception {
        super.open();
        held = new LinkedHashMap<>();
        count = 0;
        timerSet = false;
    }

    @Override
    @SuppressWarnings("unchecked")
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row row = element.getValue();
        String entity = (String) row.getField(0);
        Tuple2<String, String> pair = (Tuple2<String, String>) row.getField(1);
        Group group = held.get(entity);
        if (group == null) {
            group = new Group();
            held.put(entity, group);
        }
        group.lines.add(pair.f1);
        if (element.hasTimestamp()) {
            group.timed = true;
            group.maxTs = Math.max(group.maxTs, element.getTimestamp());
        }
        count++;
        if (count >= maxLines) {
            flush();
        } else if (!timerSet) {
            timerSet = true;
            long now = getProcessingTimeService().getCurrentProcessingTime();
            getProcessingTimeService().registerTimer(now + flushMs, time -> onFlushTimer());
        }
    }

    private void onFlushTimer() {
        timerSet = false;
        flush();
    }

    private void flush() {
        if (count == 0) {
            return;
        }
        for (Map.Entry<String, Group> e : held.entrySet()) {
            Group g = e.getValue();
            String entity = e.getKey();
            Row out = Row.of(entity, Tuple2.of(entity, g.lines.toArray(new String[0])));
            if (g.timed) {
                output.collect(new StreamRecord<>(out, g.maxTs));
            } else {
                output.collect(new StreamRecord<>(out));
            }
        }
        held.clear();
        count = 0;
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        flush();
        super.processWatermark(mark);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flush();
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void endInput() throws Exception {
        flush();
    }

    @Override
    public void finish() throws Exception {
        flush();
        super.finish();
    }
}
