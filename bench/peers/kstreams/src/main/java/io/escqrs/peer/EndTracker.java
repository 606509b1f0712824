/*
 * EndTracker — knows when the application has consumed the topic as it was at start.
 *
 * Main captures each partition's end offset (read_committed: the last stable offset)
 * before starting the streams app. The processor reports every record's partition and
 * offset (context().recordMetadata()); a partition is done once the record at end - 1
 * has been folded, and when the last partition is done the latch opens and main closes
 * the app. Records at or past the captured end are not folded, so the result is the
 * fold of exactly that snapshot, comparable with escqrs's view of the same topic.
 *
 * When a partition ends in a transaction marker (a transactional producer wrote it) no
 * record ever sits at end - 1; main then falls back to the group's committed offsets
 * (markDoneUpTo), which move past markers. That path waits for a commit, so it is slow
 * under at_least_once (commit.interval.ms 30 s) and only for such topics.
 *
 * Thread-safe: stream threads call seen(), main reads the rest.
 */
package io.escqrs.peer;

import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

final class EndTracker {
    private final long[] end;
    private final AtomicIntegerArray done;
    private final AtomicInteger remaining;
    private final CountDownLatch latch = new CountDownLatch(1);
    final LongAdder events = new LongAdder();
    final LongAdder poison = new LongAdder();
    final AtomicLong firstNanos = new AtomicLong(0);
    private volatile long doneNanos;
    private volatile Throwable failure;

    /** @param end captured end offset of each partition, index = partition number */
    EndTracker(long[] end) {
        this.end = end.clone();
        this.done = new AtomicIntegerArray(end.length);
        int left = 0;
        for (int p = 0; p < end.length; p++) {
            if (end[p] <= 0)
                done.set(p, 1);
            else
                left++;
        }
        remaining = new AtomicInteger(left);
        if (left == 0)
            finish();
    }

    /** Is @p offset of @p partition inside the snapshot (to be folded)? */
    boolean inSnapshot(int partition, long offset) {
        return partition < end.length && offset < end[partition];
    }

    /** A record of the snapshot was folded. */
    void seen(int partition, long offset) {
        if (firstNanos.get() == 0)
            firstNanos.compareAndSet(0, System.nanoTime());
        if (offset >= end[partition] - 1)
            markDone(partition);
    }

    /** Fallback: the group's committed offsets (positions) of some partitions. */
    void markDoneUpTo(Map<Integer, Long> committed) {
        committed.forEach((p, off) -> {
            if (p < end.length && off >= end[p])
                markDone(p);
        });
    }

    private void markDone(int partition) {
        if (done.compareAndSet(partition, 0, 1) && remaining.decrementAndGet() == 0)
            finish();
    }

    private void finish() {
        doneNanos = System.nanoTime();
        latch.countDown();
    }

    /** The application failed: wake main. */
    void fail(Throwable t) {
        failure = t;
        latch.countDown();
    }

    boolean await(long ms) throws InterruptedException {
        return latch.await(ms, TimeUnit.MILLISECONDS);
    }

    Throwable failure() {
        return failure;
    }

    long doneNanos() {
        return doneNanos;
    }
}
