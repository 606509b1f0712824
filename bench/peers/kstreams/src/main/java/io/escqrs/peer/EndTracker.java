/*
 * EndTracker — knows when the application has consumed the topic as it was at start.
 *
 * Before starting the streams app, main captures each partition's end offset
 * (read_committed: the last stable offset) and the offset of the last record below it
 * that a read_committed consumer returns. They differ on topics written with
 * transactions, as escqrs's command service writes them: a commit marker takes an
 * offset and is never delivered, and records of aborted transactions are skipped, so
 * "offset end - 1 was processed" may never happen.
 *
 * The processor reports every record's partition and offset
 * (context().recordMetadata()); a partition is done once its last record has been
 * folded, and when the last partition is done the latch opens and main closes the app.
 * Records at or past the captured end are not folded, so the result is the fold of
 * exactly that snapshot, comparable with escqrs's view of the same topic.
 *
 * Thread-safe: stream threads call seen(), main reads the rest.
 */
package io.escqrs.peer;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

final class EndTracker {
    private final long[] end;
    private final long[] last;
    private final AtomicIntegerArray done;
    private final AtomicInteger remaining;
    private final CountDownLatch latch = new CountDownLatch(1);
    final LongAdder events = new LongAdder();
    final LongAdder poison = new LongAdder();
    final AtomicLong firstNanos = new AtomicLong(0);
    private volatile long doneNanos;
    private volatile Throwable failure;

    /**
     * @param end captured end offset of each partition, index = partition number
     * @param last offset of the last record to consume in each partition, -1 for none
     */
    EndTracker(long[] end, long[] last) {
        this.end = end.clone();
        this.last = last.clone();
        this.done = new AtomicIntegerArray(end.length);
        int left = 0;
        for (int p = 0; p < end.length; p++) {
            if (last[p] < 0)
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
        if (offset >= last[partition])
            markDone(partition);
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
