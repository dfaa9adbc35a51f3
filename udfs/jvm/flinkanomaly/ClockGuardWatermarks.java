package flinkanomaly;

import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.types.Row;

/**
 * Bounded out-of-orderness watermarks that a few entities with wrong clocks cannot drag
 * forward (job/pipeline.py {@code with_event_time}).
 *
 * <p>Takes what the front emits, {@code (Row(entity, (entity, line)), timestamp)}. Like
 * Flink's {@code BoundedOutOfOrdernessWatermarks} it emits {@code newest - bound - 1}, but
 * "newest" only moves by steps the stream agrees on ({@link ClockGuard}).
 *
 * <p>So one host dated in 2099 among several never moves event time, while a stream of one
 * entity follows its own timestamps. The newest timestamp starts as the smallest of the first
 * {@code confirmEntities} events' (no watermark before), so a wrong clock among the very first
 * events does not set it either. Timestamps {@code <= 0} (the front's mark for lines without
 * a readable event time: verdicts, bad lines) are ignored. A generator holds no state across a
 * restore; it starts again from the events that follow.
 */
public final class ClockGuardWatermarks implements WatermarkStrategy<Tuple2<Row, Long>> {

    private static final long serialVersionUID = 1L;

    private final long boundMs;
    private final long maxJumpMs;
    private final int confirmEntities;

    public ClockGuardWatermarks(long boundMs, long maxJumpMs, int confirmEntities) {
        new ClockGuard(boundMs, maxJumpMs, confirmEntities); // checks the arguments
        this.boundMs = boundMs;
        this.maxJumpMs = maxJumpMs;
        this.confirmEntities = confirmEntities;
    }

    @Override
    public WatermarkGenerator<Tuple2<Row, Long>> createWatermarkGenerator(
            WatermarkGeneratorSupplier.Context context) {
        return new Generator(boundMs, maxJumpMs, confirmEntities);
    }

    /** The generator of one source subtask. */
    static final class Generator implements WatermarkGenerator<Tuple2<Row, Long>> {
        private final ClockGuard guard;

        Generator(long boundMs, long maxJumpMs, int confirmEntities) {
            this.guard = new ClockGuard(boundMs, maxJumpMs, confirmEntities);
        }

        @Override
        public void onEvent(Tuple2<Row, Long> event, long timestamp, WatermarkOutput output) {
            Object key = event.f0.getField(0);
            guard.onEvent(key == null ? "" : key.toString(), event.f1);
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput output) {
            if (guard.started()) {
                output.emitWatermark(
                        new org.apache.flink.api.common.eventtime.Watermark(guard.watermark()));
            }
        }
    }
}
