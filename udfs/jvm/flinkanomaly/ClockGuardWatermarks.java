package flinkanomaly;

import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;

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
 * "newest" only moves by steps the stream agrees on:
 *
 * <ul>
 *   <li>a timestamp at most {@code maxJumpMs} ahead of the newest accepted one is accepted;
 *   <li>one further ahead is only a candidate, remembered per entity (its latest such
 *       timestamp); an entity whose next timestamp is back within reach is no candidate any
 *       more;
 *   <li>when {@code min(confirmEntities, entities among the last 64 events)} distinct
 *       entities are candidates, the stream has jumped (a gap in the data, a backlog): the
 *       smallest of their timestamps is accepted.
 * </ul>
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
    private static final int RECENT = 64;
    private static final int MAX_CANDIDATES = 4096;

    private final long boundMs;
    private final long maxJumpMs;
    private final int confirmEntities;

    public ClockGuardWatermarks(long boundMs, long maxJumpMs, int confirmEntities) {
        if (boundMs < 0 || maxJumpMs < 0 || confirmEntities < 1) {
            throw new IllegalArgumentException(
                    "bound and jump must be >= 0 and confirmEntities >= 1, got "
                            + boundMs + ", " + maxJumpMs + ", " + confirmEntities);
        }
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
        private final long boundMs;
        private final long maxJumpMs;
        private final int confirmEntities;

        private boolean started;
        private int warmup;
        private long newest = Long.MAX_VALUE;
        // The entities of the last RECENT events (a ring) and how often each occurs in it.
        private final String[] ring = new String[RECENT];
        private int ringPos;
        private final HashMap<String, Integer> recent = new HashMap<>();
        // Candidates: entity -> its latest timestamp beyond the jump.
        private final LinkedHashMap<String, Long> ahead = new LinkedHashMap<>();

        Generator(long boundMs, long maxJumpMs, int confirmEntities) {
            this.boundMs = boundMs;
            this.maxJumpMs = maxJumpMs;
            this.confirmEntities = confirmEntities;
        }

        @Override
        public void onEvent(Tuple2<Row, Long> event, long timestamp, WatermarkOutput output) {
            long ts = event.f1;
            if (ts <= 0) {
                return;
            }
            Object key = event.f0.getField(0);
            String entity = key == null ? "" : key.toString();
            note(entity);
            if (!started) {
                newest = Math.min(newest, ts);
                started = ++warmup >= confirmEntities;
                return;
            }
            if (ts <= newest + maxJumpMs) {
                if (ts > newest) {
                    newest = ts;
                }
                if (!ahead.isEmpty()) {
                    ahead.remove(entity);
                }
                return;
            }
            ahead.remove(entity);
            ahead.put(entity, ts);
            if (ahead.size() > MAX_CANDIDATES) {
                Iterator<String> eldest = ahead.keySet().iterator();
                eldest.next();
                eldest.remove();
            }
            if (ahead.size() >= Math.min(confirmEntities, recent.size())) {
                long least = Long.MAX_VALUE;
                for (long t : ahead.values()) {
                    least = Math.min(least, t);
                }
                newest = least;
                ahead.clear();
            }
        }

        private void note(String entity) {
            String old = ring[ringPos];
            if (old != null) {
                int n = recent.get(old) - 1;
                if (n == 0) {
                    recent.remove(old);
                } else {
                    recent.put(old, n);
                }
            }
            ring[ringPos] = entity;
            ringPos = (ringPos + 1) % RECENT;
            recent.merge(entity, 1, Integer::sum);
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput output) {
            if (started) {
                output.emitWatermark(
                        new org.apache.flink.api.common.eventtime.Watermark(
                                newest - boundMs - 1));
            }
        }
    }
}
