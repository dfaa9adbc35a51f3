package flinkanomaly;

import java.nio.charset.StandardCharsets;

import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/**
 * The Kafka record key of one output record of the job: its top-level {@code entity} field,
 * UTF-8, so that one entity's records go to one partition, in the order the job wrote them,
 * whatever the topic's partition count. A record without a string {@code entity} (a dead
 * letter of a line that named none, a job-wide record) gets no key ({@code null}): Kafka
 * spreads those.
 */
public final class EntityKey implements SerializationSchema<String> {

    private static final long serialVersionUID = 1L;

    private transient ObjectMapper mapper;

    @Override
    public byte[] serialize(String record) {
        if (mapper == null) {
            mapper = new ObjectMapper();
        }
        try {
            JsonNode entity = mapper.readTree(record).get("entity");
            if (entity == null || !entity.isTextual()) {
                return null;
            }
            return entity.asText().getBytes(StandardCharsets.UTF_8);
        } catch (Exception e) { // not JSON: no key (the value is written as it is)
            return null;
        }
    }
}
