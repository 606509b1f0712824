/*
 * StoreSerdes — byte layouts of the two state-store values, written by hand (a few
 * putInt/putLong) because that is the cheapest honest choice: the escqrs fold also
 * keeps fixed-layout big-endian values (item_stats.c), so neither side pays for a
 * general-purpose format in its store.
 *
 *   sku  -> stats   3 × i64: added, removed, checked_out
 *   cart -> copy    i32 n, n × (i32 len, UTF-8 sku, i64 quantity) in first-added order,
 *                   i64 version, i32 status (0 open, 1 checked out)
 */
package io.escqrs.peer;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

final class StoreSerdes {
    private StoreSerdes() {}

    /** added, removed, checked_out of one sku. */
    static Serde<long[]> stats() {
        Serializer<long[]> ser = (topic, c) -> {
            if (c == null)
                return null;
            return ByteBuffer.allocate(24).putLong(c[0]).putLong(c[1]).putLong(c[2]).array();
        };
        Deserializer<long[]> de = (topic, b) -> {
            if (b == null)
                return null;
            ByteBuffer bb = ByteBuffer.wrap(b);
            return new long[] {bb.getLong(), bb.getLong(), bb.getLong()};
        };
        return Serdes.serdeFrom(ser, de);
    }

    /** A cart as the fold keeps it: open lines (sku -> quantity), last version, status. */
    static final class CartCopy {
        final LinkedHashMap<String, Long> lines;
        long version;
        boolean checkedOut;

        CartCopy() {
            this(new LinkedHashMap<>());
        }

        CartCopy(LinkedHashMap<String, Long> lines) {
            this.lines = lines;
        }
    }

    static Serde<CartCopy> cart() {
        Serializer<CartCopy> ser = (topic, c) -> {
            if (c == null)
                return null;
            byte[][] skus = new byte[c.lines.size()][];
            int size = 4 + 12, i = 0;
            for (String s : c.lines.keySet()) {
                skus[i] = s.getBytes(StandardCharsets.UTF_8);
                size += 4 + skus[i].length + 8;
                i++;
            }
            ByteBuffer bb = ByteBuffer.allocate(size).putInt(c.lines.size());
            i = 0;
            for (Map.Entry<String, Long> e : c.lines.entrySet()) {
                bb.putInt(skus[i].length).put(skus[i]).putLong(e.getValue());
                i++;
            }
            return bb.putLong(c.version).putInt(c.checkedOut ? 1 : 0).array();
        };
        Deserializer<CartCopy> de = (topic, b) -> {
            if (b == null)
                return null;
            ByteBuffer bb = ByteBuffer.wrap(b);
            int n = bb.getInt();
            CartCopy c = new CartCopy(new LinkedHashMap<>(Math.max(4, n * 2)));
            for (int i = 0; i < n; i++) {
                byte[] s = new byte[bb.getInt()];
                bb.get(s);
                c.lines.put(new String(s, StandardCharsets.UTF_8), bb.getLong());
            }
            c.version = bb.getLong();
            c.checkedOut = bb.getInt() == 1;
            return c;
        };
        return Serdes.serdeFrom(ser, de);
    }
}
