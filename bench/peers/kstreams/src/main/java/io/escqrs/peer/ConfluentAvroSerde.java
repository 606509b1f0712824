/*
 * ConfluentAvroSerde — reads escqrs event values (Confluent wire format: byte 0x00,
 * 4-byte big-endian schema id, Avro binary body; docs/wire-format.md) as Avro
 * GenericRecords, fetching writer schemas by id from the registry's Confluent API
 * (GET <registry>/schemas/ids/{id}) with java.net.http and caching them forever
 * (an id never changes its schema).
 *
 * Reader schema: by default the writer schema itself, which is what Confluent's
 * KafkaAvroDeserializer does for GenericRecord (specific.avro.reader=false,
 * use.latest.version=false) and so what a typical Kafka Streams user gets; fields are
 * then read by name, which survives the BACKWARD_TRANSITIVE evolutions escqrs allows.
 * With a reader schema (--reader-schema schemas/cart.events.avsc) every writer schema
 * is resolved against it, as escqrs's Avro C resolved reader does; that costs a
 * ResolvingDecoder per record and is there to measure, not the default.
 *
 * Poison values (no magic byte, unknown schema id, truncated or garbage body) come
 * back as null so the processor can count and skip them like escqrs's DLQ path
 * (offset advances, nothing applied) and still see the record's offset; a registry
 * that cannot be reached is not poison and throws, stopping the application.
 *
 * One instance is shared by all stream threads: schema and reader caches are
 * concurrent maps, the reused BinaryDecoder is per thread.
 */
package io.escqrs.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

public final class ConfluentAvroSerde implements Serde<GenericRecord> {
    /** Thrown for a value that is not a decodable record of a known schema. */
    static final class PoisonException extends Exception {
        PoisonException(String msg, Throwable cause) {
            super(msg, cause);
        }
    }

    private static final ObjectMapper JSON = new ObjectMapper();

    private final String registry;
    private final Schema readerSchema; /* null: read with the writer schema */
    private final HttpClient http =
            HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final ConcurrentHashMap<Integer, Schema> schemas = new ConcurrentHashMap<>();
    /* A schema id that the registry does not know: remembered, so poison stays cheap. */
    private final ConcurrentHashMap<Integer, Boolean> unknown = new ConcurrentHashMap<>();
    private final ConcurrentHashMap<Integer, GenericDatumReader<GenericRecord>> readers =
            new ConcurrentHashMap<>();
    private final ThreadLocal<BinaryDecoder> decoder = new ThreadLocal<>();

    /**
     * @param registry base URL of the Confluent-compatible API, e.g.
     *     http://127.0.0.1:8081/apis/ccompat/v7 (no trailing slash needed)
     * @param readerSchema the schema to resolve writer schemas to, or null for none
     */
    public ConfluentAvroSerde(String registry, Schema readerSchema) {
        this.registry = registry.endsWith("/") ? registry.substring(0, registry.length() - 1)
                                               : registry;
        this.readerSchema = readerSchema;
    }

    /** The writer schema of @p id, from the cache or the registry. */
    Schema schema(int id) throws PoisonException {
        Schema s = schemas.get(id);
        if (s != null)
            return s;
        if (unknown.containsKey(id))
            throw new PoisonException("unknown schema id " + id, null);
        HttpRequest req = HttpRequest.newBuilder(URI.create(registry + "/schemas/ids/" + id))
                                  .timeout(Duration.ofSeconds(10))
                                  .header("Accept", "application/json")
                                  .GET()
                                  .build();
        HttpResponse<String> resp;
        try {
            resp = http.send(req, HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new SerializationException("registry " + registry + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new SerializationException("interrupted fetching schema " + id, e);
        }
        if (resp.statusCode() == 404) {
            unknown.put(id, Boolean.TRUE);
            throw new PoisonException("unknown schema id " + id, null);
        }
        if (resp.statusCode() != 200)
            throw new SerializationException("registry answered " + resp.statusCode()
                                             + " for schema id " + id + ": " + resp.body());
        try {
            JsonNode body = JSON.readTree(resp.body());
            s = new Schema.Parser().parse(body.get("schema").asText());
        } catch (IOException | RuntimeException e) {
            throw new SerializationException("schema id " + id + " is not an Avro schema", e);
        }
        Schema prev = schemas.putIfAbsent(id, s);
        return prev != null ? prev : s;
    }

    private GenericDatumReader<GenericRecord> reader(int id) throws PoisonException {
        GenericDatumReader<GenericRecord> r = readers.get(id);
        if (r != null)
            return r;
        Schema w = schema(id);
        /* GenericDatumReader keeps its resolver in a thread-local cache: safe to share. */
        r = new GenericDatumReader<>(w, readerSchema != null ? readerSchema : w);
        GenericDatumReader<GenericRecord> prev = readers.putIfAbsent(id, r);
        return prev != null ? prev : r;
    }

    /** Decodes one value; throws PoisonException for anything but a good record. */
    GenericRecord decode(byte[] data) throws PoisonException {
        if (data == null || data.length < 5 || data[0] != 0)
            throw new PoisonException("no Confluent wire-format header", null);
        int id = ((data[1] & 0xff) << 24) | ((data[2] & 0xff) << 16) | ((data[3] & 0xff) << 8)
                 | (data[4] & 0xff);
        GenericDatumReader<GenericRecord> r = reader(id);
        BinaryDecoder d = DecoderFactory.get().binaryDecoder(data, 5, data.length - 5,
                                                             decoder.get());
        decoder.set(d);
        try {
            GenericRecord rec = r.read(null, d);
            if (!d.isEnd())
                throw new PoisonException("trailing bytes after the record", null);
            return rec;
        } catch (IOException | RuntimeException e) {
            throw new PoisonException("undecodable body (schema id " + id + "): " + e, e);
        }
    }

    @Override
    public Deserializer<GenericRecord> deserializer() {
        return (topic, data) -> {
            try {
                return decode(data);
            } catch (PoisonException e) {
                return null; /* the processor counts it; see the design comment */
            }
        };
    }

    @Override
    public Serializer<GenericRecord> serializer() {
        return (topic, rec) -> {
            throw new UnsupportedOperationException("the peer only reads events");
        };
    }
}
