package flinkanomaly;

import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;

/**
 * The clock-guarded "newest timestamp" behind the job's watermarks ({@link ClockGuardWatermarks}
 * after the front, {@link LineWatermarks} per source split): {@code newest - bound - 1}, where
 * "newest" only moves by steps the stream agrees on.
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
 * <p>The newest timestamp starts as the smallest of the first {@code confirmEntities} events'
 * (no watermark before). Timestamps {@code <= 0} (lines without a readable event time:
 * verdicts, bad lines) are ignored. Not thread-safe; one per generator.
 */
final class ClockGuard {
    private static final int RECENT = 64;
    private static final int MAX_CANDIDATES = 4096;

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

    ClockGuard(long boundMs, long maxJumpMs, int confirmEntities) {
        if (boundMs < 0 || maxJumpMs < 0 || confirmEntities < 1) {
            throw new IllegalArgumentException(
                    "bound and jump must be >= 0 and confirmEntities >= 1, got "
                            + boundMs + ", " + maxJumpMs + ", " + confirmEntities);
        }
        this.boundMs = boundMs;
        this.maxJumpMs = maxJumpMs;
        this.confirmEntities = confirmEntities;
    }

    /** Whether a watermark can be emitted (the first {@code confirmEntities} events seen). */
    boolean started() {
        return started;
    }

    /** The watermark now: {@code newest - bound - 1} (only meaningful once started). */
    long watermark() {
        return newest - boundMs - 1;
    }

    /** One line's entity and event time (ignored when {@code ts <= 0}). */
    void onEvent(String entity, long ts) {
        if (ts <= 0) {
            return;
        }
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
}
