package flinkanomaly;

import java.io.IOException;
import java.time.DateTimeException;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;

/**
 * The job's watermarks generated in the source, one generator per split (a Kafka partition),
 * from the raw JSON lines (job/pipeline.py {@code line_watermarks}).
 *
 * <p>Flink combines the splits' watermarks into the smallest, so an event is never behind the
 * watermark because another partition was read faster: a partition that is read late (a
 * backlog, a restore, a slow fetch) holds the watermark back instead of having its events
 * found late. Each split's watermark is {@link ClockGuard}'s over that split's lines, with
 * the event time read as the front reads it (job/pipeline.py {@code front}): {@code ts} an
 * integer, a string of digits or an ISO-8601 time of the front's form, inside
 * {@code [loMs, hiMs]}; a verdict (a {@code verdict} key and no {@code metrics}) and a line
 * without such a time do not move it.
 *
 * <p>A split with no timestamped line for {@code idleMs} (processing time, counted from its
 * start too) is marked idle and holds nothing back until its next one: an empty partition, a
 * partition of verdicts only, or one whose producers went quiet. Events a split brings after
 * it was idle may be behind the others' watermark, and then go to the late output, as any
 * late event. {@code idleMs = 0}: never idle.
 */
public final class LineWatermarks implements WatermarkStrategy<String> {

    private static final long serialVersionUID = 1L;

    private final long boundMs;
    private final long maxJumpMs;
    private final int confirmEntities;
    private final long loMs;
    private final long hiMs;
    private final long idleMs;

    public LineWatermarks(
            long boundMs, long maxJumpMs, int confirmEntities, long loMs, long hiMs, long idleMs) {
        new ClockGuard(boundMs, maxJumpMs, confirmEntities); // checks the arguments
        if (idleMs < 0) {
            throw new IllegalArgumentException("idleMs must be >= 0, got " + idleMs);
        }
        this.boundMs = boundMs;
        this.maxJumpMs = maxJumpMs;
        this.confirmEntities = confirmEntities;
        this.loMs = loMs;
        this.hiMs = hiMs;
        this.idleMs = idleMs;
    }

    @Override
    public WatermarkGenerator<String> createWatermarkGenerator(
            WatermarkGeneratorSupplier.Context context) {
        return new Generator(this);
    }

    /** The generator of one split. */
    static final class Generator implements WatermarkGenerator<String> {
        private final ClockGuard guard;
        private final LineTime read;
        private final long idleNanos;
        private long lastTimed = System.nanoTime();

        Generator(LineWatermarks s) {
            this.guard = new ClockGuard(s.boundMs, s.maxJumpMs, s.confirmEntities);
            this.read = new LineTime(s.loMs, s.hiMs);
            this.idleNanos = s.idleMs * 1_000_000L;
        }

        @Override
        public void onEvent(String line, long timestamp, WatermarkOutput output) {
            if (read.read(line)) {
                guard.onEvent(read.entity(), read.ts());
                lastTimed = System.nanoTime();
            }
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput output) {
            if (idleNanos > 0 && System.nanoTime() - lastTimed >= idleNanos) {
                output.markIdle();
            } else if (guard.started()) {
                output.emitWatermark(new Watermark(guard.watermark()));
            }
        }
    }

    /**
     * A line's entity and event time as the front reads them (one per generator, reused per
     * line; public for the test that holds it to the front, tests/minicluster/test_front.py).
     */
    public static final class LineTime {
        private static final JsonFactory JSON = new JsonFactory();
        private static final Pattern NUMBER = Pattern.compile("^([+-]?[0-9]+)(?:[.][0-9]*)?$");
        private static final Pattern ISO = Pattern.compile(
                "^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?"
                        + "(Z|[+-][0-9]{2}:[0-9]{2})?$");

        private final long loMs;
        private final long hiMs;
        private String entity;
        private long ts;

        public LineTime(long loMs, long hiMs) {
            this.loMs = loMs;
            this.hiMs = hiMs;
        }

        /** The last line's entity ({@code ""} when it has none). */
        public String entity() {
            return entity;
        }

        /** The last line's event time, 0 when it has none. */
        public long ts() {
            return ts;
        }

        /** Read {@code line}; true when it has an event time (then {@link #ts()} > 0). */
        public boolean read(String line) {
            entity = "";
            ts = 0;
            String text = null;
            boolean verdict = false;
            boolean metrics = false;
            try (JsonParser p = JSON.createParser(line)) {
                if (p.nextToken() != JsonToken.START_OBJECT) {
                    return false;
                }
                while (p.nextToken() == JsonToken.FIELD_NAME) {
                    String name = p.getCurrentName();
                    JsonToken v = p.nextToken();
                    if ("entity".equals(name)) {
                        entity = v.isScalarValue() && v != JsonToken.VALUE_NULL ? p.getText() : "";
                    } else if ("ts".equals(name)) {
                        text = v == JsonToken.VALUE_NUMBER_INT || v == JsonToken.VALUE_STRING
                                ? p.getText()
                                : v == JsonToken.VALUE_NUMBER_FLOAT ? integral(p) : null;
                    } else {
                        verdict |= "verdict".equals(name);
                        metrics |= "metrics".equals(name);
                        p.skipChildren();
                    }
                }
            } catch (IOException | RuntimeException e) {
                return false; // not JSON: a dead letter downstream, no event time
            }
            if (text == null || (verdict && !metrics)) {
                return false;
            }
            long ms = millis(text);
            if (ms < loMs || ms > hiMs || ms <= 0) {
                return false;
            }
            ts = ms;
            return true;
        }

        /** A JSON number with a fraction or exponent: its whole part (as the front casts it). */
        private static String integral(JsonParser p) throws IOException {
            return p.getDecimalValue().toBigInteger().toString();
        }

        private static long millis(String s) {
            // The front's cast: trimmed, a sign, digits, a fraction it drops.
            Matcher m = NUMBER.matcher(s.trim());
            if (m.matches()) {
                try {
                    return Long.parseLong(m.group(1));
                } catch (NumberFormatException e) {
                    return Long.MIN_VALUE; // out of range
                }
            }
            if (!ISO.matcher(s).matches()) {
                return Long.MIN_VALUE;
            }
            try {
                // Out-of-range fields roll over (month 13 is January next year), as the
                // front's UNIX_TIMESTAMP reads them.
                long sec = LocalDateTime.of(Integer.parseInt(s.substring(0, 4)), 1, 1, 0, 0)
                        .plusMonths(Integer.parseInt(s.substring(5, 7)) - 1)
                        .plusDays(Integer.parseInt(s.substring(8, 10)) - 1)
                        .plusHours(Integer.parseInt(s.substring(11, 13)))
                        .plusMinutes(Integer.parseInt(s.substring(14, 16)))
                        .plusSeconds(Integer.parseInt(s.substring(17, 19)))
                        .toEpochSecond(ZoneOffset.UTC);
                long ms = sec * 1000;
                int end = s.length();
                int offset = 0;
                if (s.endsWith("Z")) {
                    end -= 1;
                } else if (end >= 25 && (s.charAt(end - 6) == '+' || s.charAt(end - 6) == '-')) {
                    int minutes = Integer.parseInt(s.substring(end - 5, end - 3)) * 60
                            + Integer.parseInt(s.substring(end - 2, end));
                    offset = (s.charAt(end - 6) == '-' ? -1 : 1) * minutes * 60_000;
                    end -= 6;
                }
                if (end > 19 && s.charAt(19) == '.') {
                    String frac = s.substring(20, Math.min(end, 23));
                    ms += Long.parseLong((frac + "00").substring(0, 3));
                }
                return ms - offset;
            } catch (DateTimeException | NumberFormatException e) {
                return Long.MIN_VALUE;
            }
        }
    }
}
