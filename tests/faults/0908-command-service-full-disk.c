/*
 * 0908-command-service-full-disk.c — the command service's store on a
 * filesystem that fills up under clients that never retry: the service never
 * exits, says why on /readyz, carries on by itself when space returns,
 * starts on a full disk without crash-looping, and every command written
 * meanwhile is decided exactly once.
 *
 * The store lives on a tmpfs mounted for the test (root, as CI runs; without
 * the privilege the test fails, it does not skip), with store.min.free.mb=6.
 * Phase 1: 5 accounts opened, 20 deposits, each answered 200.  Phase 2: the
 * filesystem is shrunk below the reserve, a file takes every byte left (so
 * that without the reserve RocksDB itself would meet ENOSPC), and 30
 * deposits are sent at once:
 * the first transaction commits in Kafka before its store write is refused,
 * so some may be answered 200, the rest 503 or 504 (nothing else); the
 * service must stay alive, /healthz 200, /readyz 503 naming the missing
 * space, for 20 s (its back-off between attempts grows to 16 s meanwhile).
 * Phase 3: the file goes and the filesystem grows; the service must be ready
 * again by itself and 5 more deposits answered 200; the seconds it took are
 * printed (a wait that began on a full disk ends when the space is back: a
 * second or two, not the back-off).  Phase 4: shrunk again, SIGTERM
 * (exit 0), started on the full filesystem: it must stay up and say why;
 * grown: ready, 5 deposits answered 200.  Then the history check of
 * tests/deposits.c: every deposit sent (answered or not) decided exactly
 * once, its event at gapless versions, every balance the sum of what was
 * sent.  Prints the answers while full and the seconds each recovery took.
 */
#include "deposits.h"
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ACCOUNTS    5
#define BEFORE      20
#define WHILE_FULL  30
#define AFTER       5
#define RESERVE_MIB 6
#define DISK_MIB    256
/* the longest back-off between attempts (command service) and slack */
#define RECOVER_S 60
/* long enough for the back-off to reach 16 s: the space's return, not it, must end the wait */
#define HOLD_S 20

static wt_stack_t st;
static dp_load_t load;

/* Alive, /healthz 200 and /readyz 503 naming the missing space, for @p hold_s. */
static bool holds_not_ready_for_space(int hold_s)
{
    if (!wt_wait_not_ready_because(&st.cs, "No space left", 60)) {
        fprintf(stderr, "the command service never said the disk was full; see %s\n", st.cs.log);
        return false;
    }
    for (int i = 0; i < hold_s * 2; i++) {
        if (!wt_proc_alive(&st.cs)) {
            fprintf(stderr, "the command service exited on a full disk; see %s\n", st.cs.log);
            return false;
        }
        if (wt_get(&st.cs, "/healthz", NULL) != 200 || wt_get(&st.cs, "/readyz", NULL) != 503) {
            fprintf(stderr, "full disk: /healthz or /readyz answered wrong; see %s\n", st.cs.log);
            return false;
        }
        usleep(500 * 1000);
    }
    return true;
}

/* Take every byte left on the filesystem of @p dir (file "filler"): full means full. */
static void fill_up(const char *dir)
{
    char path[700], chunk[65536];
    snprintf(path, sizeof(path), "%s/filler", dir);
    memset(chunk, 'f', sizeof(chunk));
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    CU_ASSERT_FATAL(fd >= 0);
    for (size_t len = sizeof(chunk); len; len /= 2)
        while (write(fd, chunk, len) == (ssize_t)len)
            ;
    close(fd);
}

/* Give the space back: no filler, and the filesystem's size again. */
static bool free_space(const char *dir)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/filler", dir);
    unlink(path);
    return es_test_tmpfs_resize(dir, DISK_MIB);
}

static size_t count_status(const dp_sent_t *d, size_t n, int status)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += d[i].status == status;
    return k;
}

static void test_full_disk(void)
{
    char disk[600], store_set[700];
    wt_stack_init(&st, "account");
    snprintf(disk, sizeof(disk), "%s/disk", st.dir); /* the store; the logs stay outside */
    mkdir(disk, 0755);
    es_test_tmpfs_mount(disk, DISK_MIB);
    snprintf(store_set, sizeof(store_set), "store.path=%s/store", disk);
    const char *cs_sets[] = {store_set, "store.min.free.mb=6"};
    dp_start(&load, &st, cs_sets, 2, ACCOUNTS, BEFORE + WHILE_FULL + 2 * AFTER);

    dp_sent_t *before = dp_burst(&load, "before", BEFORE);
    CU_ASSERT_EQUAL(count_status(before, BEFORE, 200), BEFORE);

    /* Phase 2: full under load */
    CU_ASSERT_TRUE_FATAL(es_test_tmpfs_shrink(disk, RESERVE_MIB / 3));
    fill_up(disk);
    dp_sent_t *full = dp_burst(&load, "full", WHILE_FULL);
    size_t ok = count_status(full, WHILE_FULL, 200),
           unavailable = count_status(full, WHILE_FULL, 503),
           timeout = count_status(full, WHILE_FULL, 504);
    printf("\n  deposits sent while full: %d: %zu answered 200, %zu 503, %zu 504\n", WHILE_FULL, ok,
           unavailable, timeout);
    CU_ASSERT_EQUAL(ok + unavailable + timeout, WHILE_FULL);
    CU_ASSERT_TRUE(holds_not_ready_for_space(HOLD_S));

    /* Phase 3: space returns */
    double t0 = es_mono_s();
    CU_ASSERT_TRUE_FATAL(free_space(disk));
    wt_wait_ready(&st.cs, RECOVER_S);
    double resume_s = es_mono_s() - t0;
    wt_wait_ready(&st.gw, RECOVER_S);
    dp_sent_t *after = dp_burst(&load, "after", AFTER);
    CU_ASSERT_EQUAL(count_status(after, AFTER, 200), AFTER);

    /* Phase 4: a start on a full disk */
    CU_ASSERT_EQUAL(wt_stop(&st.cs), 0); /* a clean stop frees RocksDB's logs: shrink after */
    CU_ASSERT_TRUE_FATAL(es_test_tmpfs_shrink(disk, RESERVE_MIB / 3));
    fill_up(disk);
    wt_start_service(&st, cs_sets, 2);
    CU_ASSERT_TRUE(holds_not_ready_for_space(10));
    t0 = es_mono_s();
    CU_ASSERT_TRUE_FATAL(free_space(disk));
    wt_wait_ready(&st.cs, RECOVER_S);
    double start_s = es_mono_s() - t0;
    wt_wait_ready(&st.gw, RECOVER_S);
    after = dp_burst(&load, "restart", AFTER);
    CU_ASSERT_EQUAL(count_status(after, AFTER, 200), AFTER);

    dp_check_t c;
    dp_check(&load, &c);
    wt_stack_stop(&st);
    printf("  RESULT commands=%zu dropped=%zu doubled=%zu not_accepted=%zu "
           "events_missing_or_extra=%zu wrong_events=%zu ready_after_space_s=%.1f "
           "ready_after_start_on_full_disk_s=%.1f\n",
           c.commands, c.dropped, c.doubled, c.not_accepted, c.event_count_off, c.wrong_event,
           resume_s, start_s);
    dp_free(&load);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a full store disk under clients that never retry: no exit, every command decided once",
         test_full_disk},
        {NULL, NULL},
    };
    return es_test_run("fault-command-service-full-disk", cases);
}
