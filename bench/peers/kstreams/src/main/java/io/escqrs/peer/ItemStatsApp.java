/*
 * ItemStatsApp — the Kafka Streams peer of escqrs-projector's item_stats rebuild
 * (ARCHITECTURE.md section 9, issue #7): fold a whole cart events topic from offset 0
 * into per-sku statistics in RocksDB state stores, time it, stop by itself.
 *
 *   java -jar escqrs-peer-kstreams.jar --bootstrap HOST:PORT --registry URL --topic T
 *        [--guarantee at_least_once|exactly_once_v2] [--threads N] [--dump FILE]
 *        [--reader-schema FILE.avsc] [--no-changelog] [--state-dir DIR]
 *        [--app-id ID] [--keep] [--timeout-s S]
 *
 * How a run goes:
 * 1. An Admin client captures every partition's end offset (read_committed), the
 *    snapshot to consume, and a consumer finds the last record below it (see
 *    EndTracker); this happens before the clock starts.
 * 2. A fresh application.id (unless --app-id) means no committed offsets and
 *    auto.offset.reset=earliest: the app reads from the beginning, like a rebuild.
 * 3. The clock starts just before KafkaStreams.start(), so start-up (group join, store
 *    creation) counts, as it does in escqrs-bench-rebuild's "initial build";
 *    first_record_s says how much of it was start-up. folded_s is when the processor
 *    has folded the last record of the snapshot; close_s is KafkaStreams.close(),
 *    which flushes the record cache into RocksDB and the changelogs and commits the
 *    offsets. seconds = folded_s + close_s: the fold is durable only then, as an
 *    escqrs view is when its write batch (state and offsets together) is written.
 *    (Under at_least_once the commit interval is 30 s, so on a short run most state
 *    reaches RocksDB only at close.) The dump, between the two, is not timed.
 * 4. --dump writes the summed per-sku stats as JSON lines sorted by sku, in the shape
 *    of escqrs's GET /v1/stats/items items, read through interactive queries before
 *    the app is closed.
 * 5. Unless --keep: the app's internal topics (changelogs), its consumer group and
 *    its local state are deleted, so runs do not pile up on the broker.
 *
 * Settings are Kafka Streams' defaults (what a user gets) except: isolation.level
 * read_committed under at_least_once too (escqrs's projector reads read_committed;
 * exactly_once_v2 sets it anyway), and caching enabled on the stores (the DSL default;
 * the Processor API's store builders leave it off). Changelogs are on by default, as
 * every Kafka Streams user has them; --no-changelog measures without.
 *
 * Prints one line on stdout:
 *   events=N poison=P seconds=S events_per_s=R guarantee=G threads=T changelog=B
 *   first_record_s=F folded_s=D folded_events_per_s=R2 close_s=C topic=T
 * Exit status: 0 done, 1 the app failed or timed out, 2 bad arguments.
 */
package io.escqrs.peer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedWriter;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import org.apache.avro.Schema;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyConfig;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

public final class ItemStatsApp {
    private static final String USAGE =
            "usage: escqrs-peer-kstreams --bootstrap HOST:PORT --registry URL --topic TOPIC\n"
            + "         [--guarantee at_least_once|exactly_once_v2] [--threads N] [--dump FILE]\n"
            + "         [--reader-schema FILE.avsc] [--no-changelog] [--state-dir DIR]\n"
            + "         [--app-id ID] [--keep] [--timeout-s S]\n";

    private String bootstrap, registry, topic, dump, readerSchemaFile, stateDir, appId;
    private String guarantee = "at_least_once";
    private int threads = 1;
    private boolean changelog = true, keep = false;
    private long timeoutS = 3600;

    private static void usage(String why) {
        System.err.print("escqrs-peer-kstreams: " + why + "\n" + USAGE);
        System.exit(2);
    }

    private void parse(String[] args) {
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            boolean flag = a.equals("--no-changelog") || a.equals("--keep") || a.equals("-h")
                           || a.equals("--help");
            if (!flag && i + 1 >= args.length)
                usage(a + " needs a value");
            switch (a) {
                case "--bootstrap" -> bootstrap = args[++i];
                case "--registry" -> registry = args[++i];
                case "--topic" -> topic = args[++i];
                case "--guarantee" -> guarantee = args[++i];
                case "--threads" -> threads = intArg(a, args[++i], 1, 64);
                case "--dump" -> dump = args[++i];
                case "--reader-schema" -> readerSchemaFile = args[++i];
                case "--state-dir" -> stateDir = args[++i];
                case "--app-id" -> appId = args[++i];
                case "--timeout-s" -> timeoutS = intArg(a, args[++i], 1, 86400);
                case "--no-changelog" -> changelog = false;
                case "--keep" -> keep = true;
                case "-h", "--help" -> {
                    System.out.print(USAGE);
                    System.exit(0);
                }
                default -> usage("unknown argument " + a);
            }
        }
        if (bootstrap == null || registry == null || topic == null)
            usage("--bootstrap, --registry and --topic are required");
        if (!guarantee.equals(StreamsConfig.AT_LEAST_ONCE)
            && !guarantee.equals(StreamsConfig.EXACTLY_ONCE_V2))
            usage("--guarantee must be at_least_once or exactly_once_v2, not " + guarantee);
    }

    private static int intArg(String name, String v, int lo, int hi) {
        try {
            int n = Integer.parseInt(v);
            if (n >= lo && n <= hi)
                return n;
        } catch (NumberFormatException e) {
            /* reported below */
        }
        usage(name + " must be an integer in " + lo + ".." + hi + ", not " + v);
        return 0;
    }

    /** Beginning and end offsets (read_committed) of every partition, index = partition. */
    private long[][] offsets(Admin admin) throws InterruptedException, ExecutionException {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        long[][] out = new long[2][d.partitions().size()];
        OffsetSpec[] specs = {OffsetSpec.earliest(), OffsetSpec.latest()};
        for (int i = 0; i < 2; i++) {
            Map<TopicPartition, OffsetSpec> req = new HashMap<>();
            for (var p : d.partitions())
                req.put(new TopicPartition(topic, p.partition()), specs[i]);
            var res = admin.listOffsets(req, new ListOffsetsOptions(IsolationLevel.READ_COMMITTED))
                              .all()
                              .get();
            final long[] row = out[i];
            res.forEach((tp, info) -> row[tp.partition()] = info.offset());
        }
        return out;
    }

    /**
     * The offset of the last record a read_committed consumer gets below end in each
     * partition (-1: none), found by reading the tail in growing windows: see EndTracker.
     */
    private long[] lastRecords(long[] begin, long[] end) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        long[] last = new long[end.length];
        try (KafkaConsumer<byte[], byte[]> cons = new KafkaConsumer<>(
                     c, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            for (int p = 0; p < end.length; p++) {
                TopicPartition tp = new TopicPartition(topic, p);
                last[p] = -1;
                cons.assign(List.of(tp));
                for (long window = 64; end[p] > begin[p]; window *= 8) {
                    long from = Math.max(begin[p], end[p] - window);
                    cons.seek(tp, from);
                    while (cons.position(tp) < end[p]) {
                        for (ConsumerRecord<byte[], byte[]> r : cons.poll(Duration.ofMillis(500))) {
                            if (r.offset() < end[p])
                                last[p] = Math.max(last[p], r.offset());
                        }
                    }
                    if (last[p] >= 0 || from == begin[p])
                        break;
                }
            }
        }
        return last;
    }

    private Topology topology(EndTracker tracker, ConfluentAvroSerde serde, Properties p) {
        StoreBuilder<KeyValueStore<String, long[]>> skuStore =
                Stores.keyValueStoreBuilder(
                              Stores.persistentKeyValueStore(ItemStatsProcessor.SKU_STORE),
                              Serdes.String(), StoreSerdes.stats())
                        .withCachingEnabled();
        StoreBuilder<KeyValueStore<String, StoreSerdes.CartCopy>> cartStore =
                Stores.keyValueStoreBuilder(
                              Stores.persistentKeyValueStore(ItemStatsProcessor.CART_STORE),
                              Serdes.String(), StoreSerdes.cart())
                        .withCachingEnabled();
        if (!changelog) {
            skuStore = skuStore.withLoggingDisabled();
            cartStore = cartStore.withLoggingDisabled();
        }
        Topology t = new Topology(new TopologyConfig(new StreamsConfig(p)));
        t.addSource("events", Serdes.String().deserializer(), serde.deserializer(), topic);
        t.addProcessor("item-stats", () -> new ItemStatsProcessor(tracker), "events");
        t.addStateStore(skuStore, "item-stats");
        t.addStateStore(cartStore, "item-stats");
        return t;
    }

    /** Sums the per-task partial stats and writes them as JSON lines sorted by sku. */
    private void writeDump(KafkaStreams streams) throws IOException, InterruptedException {
        ReadOnlyKeyValueStore<String, long[]> store = null;
        for (int tries = 0; store == null; tries++) {
            try {
                store = streams.store(StoreQueryParameters.fromNameAndType(
                        ItemStatsProcessor.SKU_STORE, QueryableStoreTypes.keyValueStore()));
            } catch (InvalidStateStoreException e) { /* rebalancing: try again */
                if (tries > 300)
                    throw e;
                Thread.sleep(100);
            }
        }
        /* escqrs ties and sorts skus by strcmp, i.e. UTF-8 byte order */
        Comparator<String> bytewise = (a, b) -> java.util.Arrays.compareUnsigned(
                a.getBytes(StandardCharsets.UTF_8), b.getBytes(StandardCharsets.UTF_8));
        TreeMap<String, long[]> sum = new TreeMap<>(bytewise);
        try (KeyValueIterator<String, long[]> it = store.all()) {
            while (it.hasNext()) {
                KeyValue<String, long[]> kv = it.next();
                long[] c = sum.computeIfAbsent(kv.key, k -> new long[3]);
                for (int i = 0; i < 3; i++)
                    c[i] += kv.value[i];
            }
        }
        ObjectMapper json = new ObjectMapper();
        try (BufferedWriter w = Files.newBufferedWriter(Path.of(dump), StandardCharsets.UTF_8)) {
            for (Map.Entry<String, long[]> e : sum.entrySet()) {
                ObjectNode o = json.createObjectNode();
                o.put("sku", e.getKey());
                o.put("added", e.getValue()[0]);
                o.put("removed", e.getValue()[1]);
                o.put("checked_out", e.getValue()[2]);
                w.write(json.writeValueAsString(o));
                w.write('\n');
            }
        }
    }

    /** Deletes what the run left on the broker: changelog topics and the consumer group. */
    private static void cleanBroker(Admin admin, String appId) {
        try {
            List<String> internal = admin.listTopics().names().get().stream()
                                            .filter(n -> n.startsWith(appId + "-"))
                                            .collect(Collectors.toList());
            if (!internal.isEmpty())
                admin.deleteTopics(internal).all().get();
            admin.deleteConsumerGroups(List.of(appId)).all().get();
        } catch (InterruptedException | ExecutionException e) {
            System.err.println("escqrs-peer-kstreams: cleaning up " + appId + ": " + e);
        }
    }

    private static void deleteTree(Path p) {
        File[] kids = p.toFile().listFiles();
        if (kids != null)
            for (File k : kids)
                deleteTree(k.toPath());
        p.toFile().delete();
    }

    private int run() throws Exception {
        Schema reader = null;
        if (readerSchemaFile != null)
            reader = new Schema.Parser().parse(new File(readerSchemaFile));
        ConfluentAvroSerde serde = new ConfluentAvroSerde(registry, reader);
        if (appId == null)
            appId = "escqrs-peer-kstreams-" + UUID.randomUUID().toString().substring(0, 8);
        Path tmpState = null;
        if (stateDir == null) {
            tmpState = Files.createTempDirectory("escqrs-peer-kstreams-");
            stateDir = tmpState.toString();
        }

        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            long[][] be = offsets(admin);
            EndTracker tracker = new EndTracker(be[1], lastRecords(be[0], be[1]));

            Properties p = new Properties();
            p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
            p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
            p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
            p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
            /* there is no global store; this only silences a start-up warning */
            p.put("processing.exception.handler.global.enabled", "true");
            p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG),
                  "earliest");
            p.put(StreamsConfig.consumerPrefix(ConsumerConfig.ISOLATION_LEVEL_CONFIG),
                  "read_committed");

            KafkaStreams streams = new KafkaStreams(topology(tracker, serde, p), p);
            streams.setUncaughtExceptionHandler(e -> {
                tracker.fail(e);
                return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                        .SHUTDOWN_CLIENT;
            });
            streams.setStateListener((now, before) -> {
                if (now == KafkaStreams.State.ERROR)
                    tracker.fail(new IllegalStateException("Kafka Streams went to ERROR"));
            });

            long t0 = System.nanoTime();
            streams.start();
            long deadline = t0 + timeoutS * 1_000_000_000L;
            while (!tracker.await(200)) {
                if (System.nanoTime() > deadline) {
                    tracker.fail(new IllegalStateException("timed out after " + timeoutS + " s"));
                    break;
                }
            }
            Throwable f = tracker.failure();
            long t1 = Math.max(tracker.doneNanos(), t0); /* an empty topic is done at once */
            if (f == null && dump != null)
                writeDump(streams);
            long c0 = System.nanoTime();
            /* leave the group, so it is empty and can be deleted at once */
            streams.close(CloseOptions.groupMembershipOperation(
                    CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                                  .withTimeout(Duration.ofSeconds(60)));
            double closeS = (System.nanoTime() - c0) / 1e9;
            if (!keep) {
                streams.cleanUp();
                cleanBroker(admin, appId);
                if (tmpState != null)
                    deleteTree(tmpState);
            }
            if (f != null) {
                System.err.println("escqrs-peer-kstreams: failed: " + f);
                return 1;
            }
            long n = tracker.events.sum();
            double foldedS = (t1 - t0) / 1e9;
            double s = foldedS + closeS; /* the dump in between is not timed */
            long first = tracker.firstNanos.get();
            double firstS = first == 0 ? 0 : (first - t0) / 1e9;
            System.out.println(String.format(Locale.ROOT,
                    "events=%d poison=%d seconds=%.3f events_per_s=%.0f guarantee=%s threads=%d"
                            + " changelog=%s first_record_s=%.3f folded_s=%.3f"
                            + " folded_events_per_s=%.0f close_s=%.3f topic=%s",
                    n, tracker.poison.sum(), s, s > 0 ? n / s : 0.0, guarantee, threads,
                    changelog, firstS, foldedS, foldedS > 0 ? n / foldedS : 0.0, closeS,
                    topic));
            return 0;
        }
    }

    public static void main(String[] args) throws Exception {
        ItemStatsApp app = new ItemStatsApp();
        app.parse(args);
        System.exit(app.run());
    }
}
