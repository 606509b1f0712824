/*
 * test_projector_scan.c — a projection's prefix scan over its store
 * (pj_store_scan, consumers/projector/fold.c) never passes a partial read
 * for a complete one.
 *
 * RocksDB's iterator stops at a data block whose checksum does not match,
 * just as it stops at the end of the keys; only its status tells them
 * apart.  The test writes a store of a few hundred data blocks, flushes it
 * to one table file, overwrites bytes in the middle of that file, and scans:
 * the scan must fail with the store's error, not answer the keys before the
 * damage as if they were all.
 */
#include "projector.h"
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NKEYS 4000

static char path[256];
static char errstr[512];
static const es_store_opts_t opts = {.block_cache_mb = 8, .write_buffer_mb = 64, .wal_off = true};

static bool count_cb(void *opaque, const char *k, size_t kl, const char *v, size_t vl)
{
    (void)k, (void)kl, (void)v, (void)vl;
    (*(size_t *)opaque)++;
    return true;
}

/* Write NKEYS keys "k/<n>" of 200 bytes each into one table file. */
static void write_table(void)
{
    es_store_t *st = es_store_open(path, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_batch_t *b = es_batch_new();
    char key[32], val[200];
    uint32_t x = 2463534242u; /* xorshift: values that do not compress away */
    for (int i = 0; i < NKEYS; i++) {
        int kl = snprintf(key, sizeof(key), "k/%06d", i);
        for (size_t j = 0; j < sizeof(val); j++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            val[j] = (char)(x & 0xff);
        }
        es_batch_put(b, key, (size_t)kl, val, sizeof(val));
    }
    CU_ASSERT_EQUAL_FATAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_store_persist(st, errstr, sizeof(errstr)), ES_ERR_OK);
    es_batch_destroy(b);
    es_store_close(st);
}

/* Overwrite 256 bytes at a third of the store's one table file. */
static void damage_table(void)
{
    DIR *d = opendir(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    char file[512] = "";
    size_t ntables = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n > 4 && !strcmp(e->d_name + n - 4, ".sst")) {
            snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
            ntables++;
        }
    }
    closedir(d);
    CU_ASSERT_EQUAL_FATAL(ntables, 1);
    struct stat sb;
    CU_ASSERT_EQUAL_FATAL(stat(file, &sb), 0);
    CU_ASSERT_FATAL(sb.st_size > 400000);
    int fd = open(file, O_WRONLY);
    CU_ASSERT_FATAL(fd >= 0);
    char junk[256];
    memset(junk, 0x5a, sizeof(junk));
    CU_ASSERT_EQUAL(pwrite(fd, junk, sizeof(junk), sb.st_size / 3), (ssize_t)sizeof(junk));
    close(fd);
}

static void test_whole_scan_counts_every_key(void)
{
    write_table();
    es_store_t *st = es_store_open(path, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    size_t n = 0;
    CU_ASSERT_EQUAL(pj_store_scan(st, "k/", 2, NULL, 0, 2, count_cb, &n, errstr, sizeof(errstr)),
                    ES_ERR_OK);
    CU_ASSERT_EQUAL(n, NKEYS);
    es_store_close(st);
}

static void test_damaged_block_fails_the_scan(void)
{
    damage_table();
    es_store_t *st = es_store_open(path, &opts, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    size_t n = 0;
    errstr[0] = '\0';
    es_err_t err = pj_store_scan(st, "k/", 2, NULL, 0, 2, count_cb, &n, errstr, sizeof(errstr));
    printf("\n    scanned %zu of %d keys before the damage: %s\n", n, NKEYS, errstr);
    CU_ASSERT_EQUAL(err, ES_ERR_STORE);
    CU_ASSERT(n > 0 && n < NKEYS); /* it did stop in the middle */
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "reading the store"));
    /* the store's own reader, over the same damage, says the same */
    es_proj_backend_t be = pj_store_backend(st);
    n = 0;
    CU_ASSERT_EQUAL(be.scan(be.opaque, "k/", 2, NULL, 0, count_cb, &n, errstr, sizeof(errstr)),
                    ES_ERR_STORE);
    es_store_close(st);
}

/* The store is a flat directory of files. */
static void remove_store(void)
{
    DIR *d = opendir(path);
    char file[512];
    for (struct dirent *e; d && (e = readdir(d));) {
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        if (e->d_name[0] != '.')
            unlink(file);
    }
    if (d)
        closedir(d);
    rmdir(path);
}

int main(void)
{
    es_test_unique("/tmp/escqrs-test-projector-scan", path, sizeof(path));
    static const es_test_case_t cases[] = {
        {"a scan of an intact store reads every key", test_whole_scan_counts_every_key},
        {"a data block that does not read fails the scan, not ends it",
         test_damaged_block_fails_the_scan},
        {NULL, NULL},
    };
    int rc = es_test_run("projector-scan", cases);
    remove_store();
    return rc;
}
