/*
 * test_store.c — RocksDB wrapper: batches are atomic, offsets round-trip,
 * prefix iteration stays inside its prefix, reopen keeps data, a store
 * written with one compaction style opens with the other, a store tells
 * whether it holds any view key, a store written without the WAL keeps what
 * it persisted and loses only whole batches when its process dies.
 */
#include "escqrs/store.h"
#include "testutil.h"

#include <dirent.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ; /* posix_spawn passes it on */

static char path[256];
static char errstr[512];
static const es_store_opts_t opts = {.block_cache_mb = 8, .write_buffer_mb = 4};

static void test_batch_and_offsets(void)
{
    es_store_t *st = es_store_open(path, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_buf_t v = {0};
    int64_t off = 0;
    CU_ASSERT_EQUAL(es_store_get(st, "cart/1", 6, &v, errstr, sizeof(errstr)), ES_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(es_store_get_offset(st, "cart.events", 0, &off, errstr, sizeof(errstr)),
                    ES_ERR_NOT_FOUND);

    es_batch_t *b = es_batch_new();
    es_batch_put(b, "cart/1", 6, "a", 1);
    es_batch_put(b, "cart/2", 6, "b", 1);
    es_batch_put(b, "dart/1", 6, "x", 1);
    es_batch_put_offset(b, "cart.events", 0, 42);
    es_batch_put_offset(b, "cart.events", 2, 7000000000LL);
    CU_ASSERT_EQUAL(es_batch_count(b), 5);
    /* nothing visible before the write */
    CU_ASSERT_EQUAL(es_store_get(st, "cart/1", 6, &v, errstr, sizeof(errstr)), ES_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    es_batch_clear(b);
    CU_ASSERT_EQUAL(es_batch_count(b), 0);
    CU_ASSERT_EQUAL(es_store_get(st, "cart/1", 6, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(v.len, 1);
    CU_ASSERT_EQUAL(v.data[0], 'a');
    CU_ASSERT_EQUAL(es_store_get_offset(st, "cart.events", 0, &off, errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(off, 42);
    CU_ASSERT_EQUAL(es_store_get_offset(st, "cart.events", 2, &off, errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(off, 7000000000LL);
    CU_ASSERT_EQUAL(es_store_get_offset(st, "cart.events", 1, &off, errstr, sizeof(errstr)),
                    ES_ERR_NOT_FOUND);

    es_batch_delete(b, "cart/2", 6);
    CU_ASSERT_EQUAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_store_get(st, "cart/2", 6, &v, errstr, sizeof(errstr)), ES_ERR_NOT_FOUND);
    es_batch_destroy(b);
    es_buf_free(&v);
    es_store_close(st);
}

static void test_prefix_iteration_and_reopen(void)
{
    es_store_t *st = es_store_open(path, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_store_iter_t *it = es_store_iter_prefix(st, "cart/", 5);
    const char *k, *val;
    size_t kl, vl;
    int n = 0;
    while (es_store_iter_next(it, &k, &kl, &val, &vl)) {
        CU_ASSERT_EQUAL(kl, 6);
        CU_ASSERT_EQUAL(memcmp(k, "cart/", 5), 0);
        n++;
    }
    CU_ASSERT_EQUAL(n, 1); /* cart/1 survived the reopen; cart/2 was deleted; dart/ excluded */
    es_store_iter_destroy(it);
    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_destroy_path(path, errstr, sizeof(errstr)), ES_ERR_OK);
    st = es_store_open(path, &opts, errstr, sizeof(errstr));
    es_buf_t v = {0};
    CU_ASSERT_EQUAL(es_store_get(st, "cart/1", 6, &v, errstr, sizeof(errstr)), ES_ERR_NOT_FOUND);
    es_store_close(st);
    es_store_destroy_path(path, errstr, sizeof(errstr));
}

static void test_open_error_names_path(void)
{
    es_store_t *st = es_store_open("/proc/escqrs-no-such/db", &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "/proc/escqrs-no-such/db"));
}

/*
 * Too little free space refuses the open with ES_ERR_NO_SPACE, also for a
 * store that does not exist yet (a first start, a new rebuild generation):
 * the check looks at the nearest existing parent, and nothing is created.
 */
static void test_open_refused_without_space(void)
{
    es_store_opts_t tight = opts;
    tight.min_free_mb = (size_t)1 << 40; /* an exabyte: never free */
    char sub[512], deep[512];
    snprintf(sub, sizeof(sub), "%s-missing", path);
    snprintf(deep, sizeof(deep), "%s-missing-a/b/c", path);
    const char *paths[] = {path, sub, deep};
    for (size_t i = 0; i < 3; i++) {
        es_store_t *st = NULL;
        errstr[0] = 0;
        CU_ASSERT_EQUAL(es_store_open_err(paths[i], &tight, &st, errstr, sizeof(errstr)),
                        ES_ERR_NO_SPACE);
        CU_ASSERT_PTR_NULL(st);
        CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "No space left"));
        if (st)
            es_store_close(st);
    }
    CU_ASSERT_NOT_EQUAL(access(sub, F_OK), 0);
    CU_ASSERT_NOT_EQUAL(access(deep, F_OK), 0);
}

/*
 * A store records the format of its values: the same format opens, another
 * is refused naming both and the remedy, and a store from before formats
 * were recorded is taken as the first version.
 */
static void test_format_version(void)
{
    char fpath[512], legacy[512];
    es_store_t *st = NULL;
    es_store_opts_t v1 = opts, v2 = opts;
    v1.format = "view/1";
    v2.format = "view/2";
    v2.format_remedy = "rebuild it: escqrs rebuild view";
    snprintf(fpath, sizeof(fpath), "%s-format", path);
    CU_ASSERT_EQUAL_FATAL(es_store_open_err(fpath, &v1, &st, errstr, sizeof(errstr)), ES_ERR_OK);
    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_open_err(fpath, &v1, &st, errstr, sizeof(errstr)), ES_ERR_OK);
    es_store_close(st);
    st = NULL;
    CU_ASSERT_EQUAL(es_store_open_err(fpath, &v2, &st, errstr, sizeof(errstr)), ES_ERR_STORE);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "\"view/1\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "\"view/2\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "escqrs rebuild view"));
    es_store_opts_t ro = v2;
    ro.read_only = true;
    CU_ASSERT_EQUAL(es_store_open_err(fpath, &ro, &st, errstr, sizeof(errstr)), ES_ERR_STORE);

    /* written without a format: read-only opens it and writes nothing, then
     * the first writer records its format, which then binds */
    snprintf(legacy, sizeof(legacy), "%s-legacy", path);
    st = es_store_open(legacy, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_batch_t *b = es_batch_new();
    es_batch_put(b, "k", 1, "v", 1);
    CU_ASSERT_EQUAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    es_batch_destroy(b);
    es_store_close(st);
    es_store_opts_t ro1 = v1;
    ro1.read_only = true;
    CU_ASSERT_EQUAL_FATAL(es_store_open_err(legacy, &ro1, &st, errstr, sizeof(errstr)), ES_ERR_OK);
    es_store_close(st);
    CU_ASSERT_EQUAL_FATAL(es_store_open_err(legacy, &v2, &st, errstr, sizeof(errstr)), ES_ERR_OK);
    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_open_err(legacy, &v1, &st, errstr, sizeof(errstr)), ES_ERR_STORE);
    CU_ASSERT_EQUAL(es_store_destroy_path(fpath, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(es_store_destroy_path(legacy, errstr, sizeof(errstr)), ES_ERR_OK);
}

/* Whether the newest OPTIONS file RocksDB wrote for the store at @p dir has line @p line. */
static bool options_say(const char *dir, const char *line)
{
    char newest[256] = "", file[1024], text[65536];
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    for (struct dirent *e; (e = readdir(d));)
        if (!strncmp(e->d_name, "OPTIONS-", 8) && strcmp(e->d_name, newest) > 0)
            snprintf(newest, sizeof(newest), "%s", e->d_name);
    closedir(d);
    snprintf(file, sizeof(file), "%s/%s", dir, newest);
    FILE *f = fopen(file, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    for (char *at = text; (at = strstr(at, line)); at++)
        if ((at == text || at[-1] == ' ') && (at[strlen(line)] == '\n'))
            return true;
    return false;
}

/* The compaction style RocksDB recorded for the store at @p dir. */
static bool written_universal(const char *dir)
{
    CU_ASSERT_TRUE(options_say(dir, "compaction_style=kCompactionStyleUniversal") ||
                   options_say(dir, "compaction_style=kCompactionStyleLevel"));
    return options_say(dir, "compaction_style=kCompactionStyleUniversal");
}

/* Whether the store at @p dir was written for scans: no Bloom filter (tables'
 * or memtables'), 16 KiB blocks. */
static bool written_for_scans(const char *dir)
{
    bool table_filter = options_say(dir, "filter_policy=bloomfilter");
    bool memtable_filter = !options_say(dir, "memtable_prefix_bloom_size_ratio=0.000000");
    bool big_blocks = options_say(dir, "block_size=16384");
    CU_ASSERT_EQUAL(table_filter, memtable_filter);
    CU_ASSERT_TRUE(table_filter || options_say(dir, "filter_policy=nullptr"));
    CU_ASSERT_TRUE(big_blocks || options_say(dir, "block_size=4096"));
    CU_ASSERT_NOT_EQUAL(table_filter, big_blocks);
    return !table_filter && big_blocks;
}

/* @p n keys "w<i>" from @p from (200-byte values, batches of 1000), scattered over the keys. */
static void put_scattered(es_store_t *st, int from, int n)
{
    char key[32], val[200];
    memset(val, 'v', sizeof(val));
    es_batch_t *b = es_batch_new();
    for (int i = from; i < from + n; i++) {
        int kl = snprintf(key, sizeof(key), "w%d", (int)(((unsigned)i * 2654435761u) % 1000003u));
        es_batch_put(b, key, (size_t)kl, val, sizeof(val));
        if (es_batch_count(b) == 1000) {
            CU_ASSERT_EQUAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
            es_batch_clear(b);
        }
    }
    CU_ASSERT_EQUAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    es_batch_destroy(b);
}

static int count_scattered(es_store_t *st, int n)
{
    char key[32];
    int found = 0;
    es_buf_t v = {0};
    for (int i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof(key), "w%d", (int)(((unsigned)i * 2654435761u) % 1000003u));
        found += es_store_get(st, key, (size_t)kl, &v, errstr, sizeof(errstr)) == ES_ERR_OK;
    }
    es_buf_free(&v);
    return found;
}

/*
 * A store written with the default options opens with @p other, keeps
 * every key and takes more, then opens with the default options again and
 * still holds them all; @p other_written says, from the store's OPTIONS
 * file, whether it was last opened with @p other.  60 000 keys of 200
 * bytes in 4 MiB memtables: several flushes, and compactions.
 */
static void check_either_way(const char *suffix, const es_store_opts_t *other,
                             bool (*other_written)(const char *dir))
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s-%s", path, suffix);

    es_store_t *st = es_store_open(dir, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    put_scattered(st, 0, 30000);
    es_store_close(st);
    CU_ASSERT_FALSE(other_written(dir));

    st = es_store_open(dir, other, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_TRUE(other_written(dir));
    CU_ASSERT_EQUAL(count_scattered(st, 30000), 30000);
    put_scattered(st, 30000, 30000);
    CU_ASSERT_EQUAL(count_scattered(st, 60000), 60000);
    es_store_close(st);

    st = es_store_open(dir, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_FALSE(other_written(dir));
    CU_ASSERT_EQUAL(count_scattered(st, 60000), 60000);
    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_destroy_path(dir, errstr, sizeof(errstr)), ES_ERR_OK);
}

/*
 * A history's store compacts by merging sorted runs, a view's level by
 * level; a store written one way opens and keeps every key the other way
 * (an upgrade opens histories built before write_once existed).
 */
static void test_write_once_switches_compaction(void)
{
    es_store_opts_t once = opts;
    once.write_once = true;
    check_either_way("once", &once, written_universal);
}

/*
 * A store read by ranges only builds no Bloom filter and writes 16 KiB
 * blocks, and a point read still finds every key in it; a store written
 * one way reads every key the other way (an upgrade opens histories built
 * with filters).  A value far past a block (an event at the broker's
 * largest record, 1 MiB by default; 2 MiB here) is written and read whole,
 * by a point read and by a scan, after a flush into a table.
 */
static void test_scans_only_has_no_filters(void)
{
    es_store_opts_t scans = opts;
    scans.scans_only = true;
    check_either_way("scans", &scans, written_for_scans);

    char dir[512];
    size_t big = 2u << 20;
    char *val = malloc(big);
    CU_ASSERT_PTR_NOT_NULL_FATAL(val);
    for (size_t i = 0; i < big; i++)
        val[i] = (char)(i * 2654435761u >> 24);
    snprintf(dir, sizeof(dir), "%s-scans-big", path);
    es_store_t *st = es_store_open(dir, &scans, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_batch_t *b = es_batch_new();
    es_batch_put(b, "h\0a", 3, "small", 5);
    es_batch_put(b, "h\0b", 3, val, big);
    es_batch_put(b, "h\0c", 3, "after", 5);
    CU_ASSERT_EQUAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    es_batch_destroy(b);
    es_store_close(st); /* a clean close flushes the memtable into a table */
    st = es_store_open(dir, &scans, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_buf_t v = {0};
    CU_ASSERT_EQUAL(es_store_get(st, "h\0b", 3, &v, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_TRUE(v.len == big && !memcmp(v.data, val, big));
    const char *key, *got;
    size_t keylen, gotlen, n = 0, whole = 0;
    es_store_iter_t *it = es_store_iter_prefix(st, "h\0", 2);
    while (es_store_iter_next(it, &key, &keylen, &got, &gotlen)) {
        n++;
        whole += gotlen == big && !memcmp(got, val, big);
    }
    es_store_iter_destroy(it);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(whole, 1);
    es_buf_free(&v);
    free(val);
    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_destroy_path(dir, errstr, sizeof(errstr)), ES_ERR_OK);
}

/* A store holds view keys once one is written, and none again once it is deleted;
 * offsets and metadata (0x00 first) are not view keys. */
static void test_holds_view_keys(void)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s-views", path);
    es_store_t *st = es_store_open(dir, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_FALSE(es_store_holds_view_keys(st));
    es_batch_t *b = es_batch_new();
    es_batch_put_offset(b, "cart.events", 3, 42);
    CU_ASSERT_EQUAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_FALSE(es_store_holds_view_keys(st));
    es_batch_clear(b);
    es_batch_put(b, "\x01", 1, "v", 1); /* the smallest view key there is */
    CU_ASSERT_EQUAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_TRUE(es_store_holds_view_keys(st));
    es_batch_clear(b);
    es_batch_delete(b, "\x01", 1);
    es_batch_put(b, "\xff\xff", 2, "v", 1);
    CU_ASSERT_EQUAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_TRUE(es_store_holds_view_keys(st));
    es_batch_clear(b);
    es_batch_delete(b, "\xff\xff", 2);
    CU_ASSERT_EQUAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_FALSE(es_store_holds_view_keys(st));
    es_batch_destroy(b);
    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_destroy_path(dir, errstr, sizeof(errstr)), ES_ERR_OK);
}

/* One key and one offset in one batch. */
static es_err_t put_with_offset(es_store_t *st, const char *key, int64_t offset)
{
    es_batch_t *b = es_batch_new();
    es_batch_put(b, key, strlen(key), "v", 1);
    es_batch_put_offset(b, "t", 0, offset);
    es_err_t err = es_store_write(st, b, errstr, sizeof(errstr));
    es_batch_destroy(b);
    return err;
}

/*
 * The child of test_wal_off: writes into a store opened with wal_off, then
 * dies without closing it (as kill -9 would: RocksDB's memtables are lost).
 * "unpersisted": one batch.  "persisted": one batch, es_store_persist, one more.
 * With "-blind" after either, the store is opened with blind_writes (a vector
 * memtable; the persist opens it again).
 */
static int wal_off_child(const char *dir, const char *mode)
{
    es_store_opts_t o = opts;
    o.wal_off = true;
    o.blind_writes = strstr(mode, "-blind") != NULL;
    es_store_t *st = es_store_open(dir, &o, errstr, sizeof(errstr));
    if (!st || put_with_offset(st, "first", 1))
        _exit(3);
    if (!strncmp(mode, "persisted", 9) &&
        (es_store_persist(st, errstr, sizeof(errstr)) || put_with_offset(st, "second", 2)))
        _exit(4);
    _exit(0);
}

/* What a store holds after its writer died: which keys, and its offset (-1: none). */
static void after_death(const char *dir, const char *mode, bool *first, bool *second,
                        int64_t *offset)
{
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    CU_ASSERT_FATAL(n > 0);
    exe[n] = '\0';
    char *argv[] = {exe, "--wal-off-child", (char *)dir, (char *)mode, NULL};
    pid_t pid;
    int status = 0;
    CU_ASSERT_EQUAL_FATAL(posix_spawn(&pid, exe, NULL, NULL, argv, environ), 0);
    CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    es_store_t *st = es_store_open(dir, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_buf_t v = {0};
    *first = es_store_get(st, "first", 5, &v, errstr, sizeof(errstr)) == ES_ERR_OK;
    *second = es_store_get(st, "second", 6, &v, errstr, sizeof(errstr)) == ES_ERR_OK;
    if (es_store_get_offset(st, "t", 0, offset, errstr, sizeof(errstr)))
        *offset = -1;
    es_buf_free(&v);
    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_destroy_path(dir, errstr, sizeof(errstr)), ES_ERR_OK);
}

/*
 * A store written without the WAL: a clean close keeps everything; a death
 * loses a tail of whole batches (a key and its offset together); once
 * persisted, what was written is in its files and later writes are logged.
 */
static void test_wal_off(void)
{
    char dir[300];
    bool first, second;
    int64_t offset;
    snprintf(dir, sizeof(dir), "%s-wal-off", path);
    es_store_opts_t o = opts;
    o.wal_off = true;
    es_store_t *st = es_store_open(dir, &o, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(put_with_offset(st, "first", 1), ES_ERR_OK);
    es_store_close(st);
    st = es_store_open(dir, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(es_store_get_offset(st, "t", 0, &offset, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(offset, 1);
    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_destroy_path(dir, errstr, sizeof(errstr)), ES_ERR_OK);

    after_death(dir, "unpersisted", &first, &second, &offset);
    CU_ASSERT_FALSE(first); /* the batch is lost whole: its offset with it */
    CU_ASSERT_EQUAL(offset, -1);
    after_death(dir, "persisted", &first, &second, &offset);
    CU_ASSERT_TRUE(first);  /* flushed by es_store_persist */
    CU_ASSERT_TRUE(second); /* written with the log after it */
    CU_ASSERT_EQUAL(offset, 2);
    after_death(dir, "unpersisted-blind", &first, &second, &offset);
    CU_ASSERT_FALSE(first); /* lost whole from the vector memtable too */
    CU_ASSERT_EQUAL(offset, -1);
    after_death(dir, "persisted-blind", &first, &second, &offset);
    CU_ASSERT_TRUE(first);  /* flushed, then opened again */
    CU_ASSERT_TRUE(second); /* the store opened again still logs */
    CU_ASSERT_EQUAL(offset, 2);
}

/* Which memtable RocksDB recorded for the store at @p dir: the vector or the skip list. */
static bool written_to_vector(const char *dir)
{
    bool vector = options_say(dir, "memtable_factory={id=VectorRepFactory;count=0;}");
    CU_ASSERT_TRUE(vector || options_say(dir, "memtable_factory=SkipListFactory"));
    return vector;
}

/* Keys "w..." in the store, counted by one scan (one sort of a vector memtable). */
static int scan_count(es_store_t *st)
{
    const char *key, *val;
    size_t keylen, vallen;
    int n = 0;
    es_store_iter_t *it = es_store_iter_prefix(st, "w", 1);
    while (es_store_iter_next(it, &key, &keylen, &val, &vallen))
        n++;
    es_store_iter_destroy(it);
    return n;
}

/*
 * A store written blind (a history's rebuild) writes into a vector memtable
 * until it is persisted: tables flushed from it hold every key, a scan
 * before the persist sees them all, and the persist opens the store again
 * with the skip list (for the reads that follow), keeping every key and
 * taking more.  Without wal_off the option changes nothing.
 */
static void test_blind_writes(void)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s-blind", path);
    es_store_opts_t o = opts;
    o.wal_off = true;
    o.blind_writes = true;
    es_store_t *st = es_store_open(dir, &o, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_TRUE(written_to_vector(dir));
    put_scattered(st, 0, 30000); /* 4 MiB memtables: several flushes */
    CU_ASSERT_EQUAL(scan_count(st), 30000);
    CU_ASSERT_EQUAL(es_store_persist(st, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_FALSE(written_to_vector(dir));
    CU_ASSERT_EQUAL(count_scattered(st, 30000), 30000);
    put_scattered(st, 30000, 30000);
    CU_ASSERT_EQUAL(count_scattered(st, 60000), 60000);
    CU_ASSERT_EQUAL(scan_count(st), 60000);
    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_destroy_path(dir, errstr, sizeof(errstr)), ES_ERR_OK);

    o.wal_off = false;
    st = es_store_open(dir, &o, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_FALSE(written_to_vector(dir));
    es_store_close(st);
    CU_ASSERT_EQUAL(es_store_destroy_path(dir, errstr, sizeof(errstr)), ES_ERR_OK);
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--wal-off-child"))
        return wal_off_child(argv[2], argv[3]);
    es_test_unique("/tmp/escqrs-test-store", path, sizeof(path));
    static const es_test_case_t cases[] = {
        {"atomic batch and offsets", test_batch_and_offsets},
        {"prefix iteration and reopen", test_prefix_iteration_and_reopen},
        {"open error names the path", test_open_error_names_path},
        {"no space: open refused, nothing created", test_open_refused_without_space},
        {"the format of a store is checked at open", test_format_version},
        {"write_once: merged runs, and either style opens the other's store",
         test_write_once_switches_compaction},
        {"scans_only: no Bloom filters, big blocks, either way reads the other's store",
         test_scans_only_has_no_filters},
        {"view keys: any key but the store's own", test_holds_view_keys},
        {"without the WAL: a death loses whole batches, persist keeps them", test_wal_off},
        {"written blind: a vector memtable until persisted, every key kept", test_blind_writes},
        {NULL, NULL},
    };
    return es_test_run("store", cases);
}
