/*
 * ItemStatsProcessor — the item_stats fold of examples/cart/item_stats.c,
 * event for event, as a Kafka Streams Processor API processor over two RocksDB
 * key-value stores:
 *
 *   item-stats-skus   sku -> (added, removed, checked_out)
 *   item-stats-carts  cart_id -> each cart seen: its open lines (sku -> quantity),
 *                     its last version, whether it is checked out
 *
 * The cart store exists for the same reason as escqrs's "k/<cart_id>" keys: a
 * CartCheckedOut event carries only the total, so the quantities checked out come from
 * the cart's own running contents, whose lines are dropped at checkout.
 *
 * Same rules as item_stats_fold, so both sides compute identical numbers:
 * - An event whose version does not grow past the cart's last, or any event after its
 *   checkout, is refused (an event written to the topic twice is not counted twice).
 * - ItemAdded / ItemRemoved with quantity <= 0, or a removal of more units than the
 *   cart holds (or of a sku it lacks), is refused: nothing changes (escqrs: STATE
 *   error, event to the DLQ). An unknown payload type or an undecodable value is
 *   refused the same way (escqrs: DECODE error). They are counted as poison.
 * - A line whose quantity reaches 0 leaves the cart; an emptied cart stays stored.
 * - CartCheckedOut adds every line's quantity to its sku's checked_out and keeps the
 *   cart's version and status without its lines; a checkout of an unknown cart counts
 *   nothing.
 * - The cart is the value's cart_id (as escqrs reads it), not the record key.
 *
 * Per-sku totals cross partitions while carts do not. Each task (one per partition)
 * keeps partial per-sku totals in its own store and the dump sums the tasks' stores
 * (interactive queries), a two-phase aggregation with no repartition topic. That is
 * the cheapest correct Kafka Streams topology; the DSL way (emit (sku, delta) records,
 * groupByKey().aggregate() behind a repartition topic) would write and read every
 * delta through Kafka once more. We give the peer the fast path on purpose.
 */
package io.escqrs.peer;

import java.util.Map;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;

final class ItemStatsProcessor implements Processor<String, GenericRecord, Void, Void> {
    static final String SKU_STORE = "item-stats-skus";
    static final String CART_STORE = "item-stats-carts";

    private final EndTracker tracker;
    private ProcessorContext<Void, Void> context;
    private KeyValueStore<String, long[]> skus;
    private KeyValueStore<String, StoreSerdes.CartCopy> carts;

    ItemStatsProcessor(EndTracker tracker) {
        this.tracker = tracker;
    }

    @Override
    public void init(ProcessorContext<Void, Void> context) {
        this.context = context;
        this.skus = context.getStateStore(SKU_STORE);
        this.carts = context.getStateStore(CART_STORE);
    }

    @Override
    public void process(Record<String, GenericRecord> record) {
        RecordMetadata md = context.recordMetadata().orElseThrow();
        int partition = md.partition();
        long offset = md.offset();
        if (!tracker.inSnapshot(partition, offset))
            return;
        if (!fold(record.value()))
            tracker.poison.increment();
        tracker.events.increment();
        tracker.seen(partition, offset);
    }

    /** Folds one event; false if it is refused (poison), leaving both stores as they were. */
    private boolean fold(GenericRecord ev) {
        if (ev == null)
            return false; /* undecodable: see ConfluentAvroSerde */
        String cartId;
        GenericRecord payload;
        long version;
        try {
            cartId = ev.get("cart_id").toString();
            payload = (GenericRecord) ev.get("payload");
            version = (Long) ev.get("version");
        } catch (RuntimeException e) { /* missing field or wrong type */
            return false;
        }
        String type = payload.getSchema().getName();
        StoreSerdes.CartCopy cart = carts.get(cartId);
        if (cart != null && (version <= cart.version || cart.checkedOut))
            return false;
        if (cart == null)
            cart = new StoreSerdes.CartCopy();

        if (type.equals("ItemAdded") || type.equals("ItemRemoved")) {
            boolean added = type.equals("ItemAdded");
            String sku;
            int qty;
            try {
                sku = payload.get("sku").toString();
                qty = (Integer) payload.get("quantity");
            } catch (RuntimeException e) {
                return false;
            }
            Long have = cart.lines.get(sku);
            if (qty <= 0 || (!added && (have == null || have < qty)))
                return false;
            long now = (have == null ? 0 : have) + (added ? qty : -qty);
            if (now == 0)
                cart.lines.remove(sku);
            else
                cart.lines.put(sku, now);
            bump(sku, added ? qty : 0, added ? 0 : qty, 0);
            cart.version = version;
            carts.put(cartId, cart);
            return true;
        }
        if (type.equals("CartCheckedOut")) {
            for (Map.Entry<String, Long> line : cart.lines.entrySet())
                bump(line.getKey(), 0, 0, line.getValue());
            cart.lines.clear();
            cart.version = version;
            cart.checkedOut = true;
            carts.put(cartId, cart);
            return true;
        }
        return false; /* unknown event type */
    }

    private void bump(String sku, long added, long removed, long checkedOut) {
        long[] c = skus.get(sku);
        if (c == null)
            c = new long[3];
        c[0] += added;
        c[1] += removed;
        c[2] += checkedOut;
        skus.put(sku, c);
    }
}
