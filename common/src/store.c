/*
 * store.c — RocksDB behind the es_store_* API.
 *
 * Memory bounds: one process-wide LRU cache holds data, index and filter
 * blocks for every store, so two stores (a live view and its rebuilding
 * shadow) do not double the memory; memtables are capped per store.  WAL is
 * on (atomic batches survive kill -9); fsync per batch is optional because
 * Kafka, not RocksDB, is the durable record — a lost tail is re-applied from
 * the stored offsets.  A store nothing reads yet (a rebuild's shadow) may
 * write without the WAL until es_store_persist(): a batch is one write into
 * one memtable and memtables flush in order, so a kill -9 loses a tail of
 * whole batches, offsets included, and a clean close flushes.  Free space
 * is checked before every open and write (store.h says why): a statvfs()
 * per batch is about a microsecond.
 */
#include "escqrs/store.h"
#include "escqrs/util.h"
#include "store_tuning.h"

#include <errno.h>
#include <rocksdb/c.h>
#include <sys/statvfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct es_store_s {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_block_based_table_options_t *topts;
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wopts;
    char *path;
    size_t min_free_mb;
    bool read_only;
    bool wal_off;         /* writes skip the WAL until es_store_persist() */
    bool blind_writes;    /* a vector memtable until es_store_persist() */
    es_store_opts_t conf; /* what it was opened with (format: NULL), to reopen */
};

struct es_batch_s {
    rocksdb_writebatch_t *wb;
};

struct es_store_iter_s {
    rocksdb_iterator_t *it;
    rocksdb_readoptions_t *ropts;
    const rocksdb_snapshot_t *snap;
    rocksdb_t *db;
    char *prefix;
    size_t prefixlen;
    char *start; /* where the first es_store_iter_next() seeks: the prefix, or later */
    size_t startlen;
    bool started;
};

const es_conf_def_t es_store_conf_defs[] = {
    /* 96, not 256: a store that outgrows the cache (cart_history's index at 10 M
     * events) fills it, and 256 alone put the projector's peak RSS at 374-415 MiB;
     * at 96 it was 231 MiB with the same rates (cart_view, item_stats and
     * cart_history at 10 M events, same run; docs/projector.md, "Benchmark"). */
    {.name = "store.block.cache.mb",
     .type = ES_CONF_INT,
     .defval = "96",
     .min = 1,
     .max = 1048576,
     .desc = "RocksDB block cache shared by every store of the process, in MiB (a cap: it "
             "fills only with blocks read)"},
    {.name = "store.write.buffer.mb",
     .type = ES_CONF_INT,
     .defval = "16",
     .min = 1,
     .max = 4096,
     .desc = "RocksDB memtable size per store (at most 2 per store), in MiB"},
    {.name = "store.sync",
     .type = ES_CONF_BOOL,
     .defval = "false",
     .desc = "fsync every write batch (Kafka is the durable record, so off by default)"},
    {.name = "store.min.free.mb",
     .type = ES_CONF_INT,
     .defval = "256",
     .min = 0,
     .max = 1048576,
     .desc = "Free space a store keeps on its filesystem: below it nothing is written (the "
             "program waits, says why on /readyz and goes on when space returns); room for "
             "RocksDB's memtable flushes and compactions.  0 turns the check off"},
    {.name = NULL},
};

void es_store_opts_from_conf(const es_conf_t *conf, es_store_opts_t *opts)
{
    *opts = (es_store_opts_t){0}; /* every field: those added later too */
    opts->block_cache_mb = (size_t)es_conf_get_int(conf, "store.block.cache.mb");
    opts->write_buffer_mb = (size_t)es_conf_get_int(conf, "store.write.buffer.mb");
    opts->sync = es_conf_get_bool(conf, "store.sync");
    opts->min_free_mb = (size_t)es_conf_get_int(conf, "store.min.free.mb");
}

int64_t es_store_free_bytes(const char *path)
{
    struct statvfs sv;
    if (statvfs(path, &sv))
        return -1;
    return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

/* Enough room to write?  The directory of a store not yet created is asked
 * through its nearest existing parent. */
static es_err_t check_space(const char *path, size_t min_free_mb, char *errstr, size_t errstr_size)
{
    char dir[1024];
    if (!min_free_mb)
        return ES_ERR_OK;
    snprintf(dir, sizeof(dir), "%s", path);
    int64_t free_bytes = es_store_free_bytes(dir);
    while (free_bytes < 0 && errno == ENOENT) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
            break;
        *slash = '\0';
        free_bytes = es_store_free_bytes(dir);
    }
    if (free_bytes < 0 || free_bytes >= (int64_t)min_free_mb * 1024 * 1024)
        return ES_ERR_OK; /* unknown: let RocksDB say */
    snprintf(errstr, errstr_size,
             "No space left on device for the store %s: %lld MiB free, store.min.free.mb=%zu; "
             "waiting for space",
             path, (long long)(free_bytes / (1024 * 1024)), min_free_mb);
    return ES_ERR_NO_SPACE;
}

bool es_store_has_room(const char *path, size_t min_free_mb)
{
    char errstr[64];
    return check_space(path, min_free_mb, errstr, sizeof(errstr)) == ES_ERR_OK;
}

/* 0x00 "meta" 0x00 "format": the layout name and version of the values */
static const char format_key[] = "\0meta\0format";
#define FORMAT_KEY_LEN (sizeof(format_key) - 1)

/* The format record must equal o->format; a store without one gets it. */
static es_err_t check_format(es_store_t *st, const es_store_opts_t *o, char *errstr,
                             size_t errstr_size)
{
    es_buf_t have = {0};
    es_err_t err = es_store_get(st, format_key, FORMAT_KEY_LEN, &have, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND) {
        err = ES_ERR_OK;
        if (!st->read_only) {
            es_batch_t *b = es_batch_new();
            es_batch_put(b, format_key, FORMAT_KEY_LEN, o->format, strlen(o->format));
            err = es_store_write(st, b, errstr, errstr_size);
            es_batch_destroy(b);
        }
    } else if (!err && (have.len != strlen(o->format) || memcmp(have.data, o->format, have.len))) {
        snprintf(errstr, errstr_size,
                 "store %s holds format \"%.*s\" but this program reads \"%s\": %s", st->path,
                 (int)(have.len > 64 ? 64 : have.len), have.data, o->format,
                 o->format_remedy ? o->format_remedy
                                  : "rebuild it from the log (move the directory away first)");
        err = ES_ERR_STORE;
    }
    es_buf_free(&have);
    return err;
}

es_store_t *es_store_open(const char *path, const es_store_opts_t *o, char *errstr,
                          size_t errstr_size)
{
    es_store_t *st = NULL;
    es_store_open_err(path, o, &st, errstr, errstr_size);
    return st;
}

static void drop_options(es_store_t *st)
{
    rocksdb_options_destroy(st->opts);
    rocksdb_block_based_options_destroy(st->topts);
    st->opts = NULL;
    st->topts = NULL;
}

static es_err_t open_db(es_store_t *st, char *errstr, size_t errstr_size)
{
    char *rerr = NULL;
    st->db = st->read_only ? rocksdb_open_for_read_only(st->opts, st->path, 0, &rerr)
                           : rocksdb_open(st->opts, st->path, &rerr);
    if (!rerr)
        return ES_ERR_OK;
    snprintf(errstr, errstr_size, "rocksdb open %s%s: %s", st->path,
             st->read_only ? " (read-only)" : "", rerr);
    rocksdb_free(rerr);
    st->db = NULL;
    return ES_ERR_STORE;
}

es_err_t es_store_open_err(const char *path, const es_store_opts_t *o, es_store_t **out,
                           char *errstr, size_t errstr_size)
{
    static const es_store_opts_t defaults;
    bool ro = o && o->read_only;
    es_err_t err;

    *out = NULL;
    if (!o)
        o = &defaults;
    if (!ro && (err = check_space(path, o->min_free_mb, errstr, errstr_size)))
        return err;
    es_store_t *st = es_calloc(1, sizeof(*st));
    st->path = es_strdup(path);
    st->min_free_mb = o->min_free_mb;
    st->read_only = ro;
    st->conf = *o;
    st->conf.format = st->conf.format_remedy = NULL; /* the caller's strings */
    st->wal_off = o->wal_off && !o->sync && !ro;     /* RocksDB syncs only through its WAL */
    st->blind_writes = st->wal_off && o->blind_writes;
    st->opts = es_store_rocksdb_options(o, st->blind_writes, &st->topts);
    st->ropts = rocksdb_readoptions_create();
    st->wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wopts, o->sync);
    rocksdb_writeoptions_disable_WAL(st->wopts, st->wal_off);

    if ((err = open_db(st, errstr, errstr_size)) ||
        (o->format && (err = check_format(st, o, errstr, errstr_size)))) {
        es_store_close(st);
        return err;
    }
    *out = st;
    return ES_ERR_OK;
}

void es_store_close(es_store_t *st)
{
    if (!st)
        return;
    if (st->db)
        rocksdb_close(st->db);
    rocksdb_readoptions_destroy(st->ropts);
    rocksdb_writeoptions_destroy(st->wopts);
    drop_options(st);
    free(st->path);
    free(st);
}

es_err_t es_store_destroy_path(const char *path, char *errstr, size_t errstr_size)
{
    char *rerr = NULL;
    rocksdb_options_t *opts = rocksdb_options_create();
    rocksdb_destroy_db(opts, path, &rerr);
    rocksdb_options_destroy(opts);
    if (rerr) {
        snprintf(errstr, errstr_size, "rocksdb destroy %s: %s", path, rerr);
        rocksdb_free(rerr);
        return ES_ERR_STORE;
    }
    return ES_ERR_OK;
}

const char *es_store_path(const es_store_t *st)
{
    return st->path;
}

es_err_t es_store_get(es_store_t *st, const void *key, size_t keylen, es_buf_t *out, char *errstr,
                      size_t errstr_size)
{
    char *rerr = NULL;
    size_t len = 0;
    char *val = rocksdb_get(st->db, st->ropts, key, keylen, &len, &rerr);

    if (rerr) {
        snprintf(errstr, errstr_size, "rocksdb get: %s", rerr);
        rocksdb_free(rerr);
        return ES_ERR_STORE;
    }
    if (!val)
        return ES_ERR_NOT_FOUND; /* an answer, not a failure */
    es_buf_set(out, val, len);   /* copies; only our allocator crosses our API */
    rocksdb_free(val);
    return ES_ERR_OK;
}

es_err_t es_store_write(es_store_t *st, es_batch_t *batch, char *errstr, size_t errstr_size)
{
    char *rerr = NULL;
    es_err_t err;
    if (st->read_only) {
        snprintf(errstr, errstr_size, "store %s is open read-only", st->path);
        return ES_ERR_STATE;
    }
    if ((err = check_space(st->path, st->min_free_mb, errstr, errstr_size)))
        return err;
    rocksdb_write(st->db, st->wopts, batch->wb, &rerr);
    if (rerr) {
        snprintf(errstr, errstr_size, "rocksdb write: %s", rerr);
        rocksdb_free(rerr);
        return ES_ERR_STORE;
    }
    return ES_ERR_OK;
}

es_err_t es_store_persist(es_store_t *st, char *errstr, size_t errstr_size)
{
    if (!st->wal_off)
        return ES_ERR_OK;
    char *rerr = NULL;
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(st->db, fo, &rerr);
    rocksdb_flushoptions_destroy(fo);
    if (rerr) {
        snprintf(errstr, errstr_size, "rocksdb flush of %s: %s", st->path, rerr);
        rocksdb_free(rerr);
        return ES_ERR_STORE;
    }
    rocksdb_writeoptions_disable_WAL(st->wopts, 0);
    st->wal_off = false;
    if (!st->blind_writes)
        return ES_ERR_OK;
    /* the memtable is empty now: open again with the skip list, for reads */
    rocksdb_close(st->db);
    st->db = NULL;
    drop_options(st);
    st->opts = es_store_rocksdb_options(&st->conf, false, &st->topts);
    st->blind_writes = false;
    return open_db(st, errstr, errstr_size);
}

/* 0x00 "off" 0x00 <topic> 0x00 <partition as 4 bytes big-endian> */
static size_t offset_key(const char *topic, int32_t partition, char *out, size_t outsz)
{
    size_t tlen = strlen(topic);
    if (tlen + 9 > outsz)
        tlen = outsz - 9;
    out[0] = '\0';
    memcpy(out + 1, "off", 3);
    out[4] = '\0';
    memcpy(out + 5, topic, tlen);
    out[5 + tlen] = '\0';
    es_be32_put(out + 6 + tlen, (uint32_t)partition);
    return 10 + tlen;
}

es_err_t es_store_get_offset(es_store_t *st, const char *topic, int32_t partition,
                             int64_t *next_offset, char *errstr, size_t errstr_size)
{
    char key[300];
    es_buf_t val = {0};
    size_t klen = offset_key(topic, partition, key, sizeof(key));
    es_err_t err = es_store_get(st, key, klen, &val, errstr, errstr_size);
    if (err == ES_ERR_OK) {
        if (val.len != 8) {
            snprintf(errstr, errstr_size, "offset record of %s/%d is corrupt", topic,
                     (int)partition);
            err = ES_ERR_STORE;
        } else {
            *next_offset = (int64_t)es_be64_get(val.data);
        }
    }
    es_buf_free(&val);
    return err;
}

es_store_iter_t *es_store_iter_prefix(es_store_t *st, const void *prefix, size_t prefixlen)
{
    es_store_iter_t *it = es_calloc(1, sizeof(*it));
    it->db = st->db;
    it->snap = rocksdb_create_snapshot(st->db);
    it->ropts = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(it->ropts, it->snap);
    rocksdb_readoptions_set_fill_cache(it->ropts, 0); /* scans must not evict hot blocks */
    it->it = rocksdb_create_iterator(st->db, it->ropts);
    it->prefix = es_strndup(prefix, prefixlen);
    it->prefixlen = prefixlen;
    return it;
}

void es_store_iter_start_at(es_store_iter_t *it, const void *key, size_t keylen)
{
    free(it->start);
    it->start = es_strndup(key, keylen);
    it->startlen = keylen;
}

bool es_store_iter_next(es_store_iter_t *it, const char **key, size_t *keylen, const char **val,
                        size_t *vallen)
{
    if (!it->started) {
        /* a start below the prefix seeks to the prefix: the first key it holds */
        bool later =
            it->start && es_bytes_cmp(it->start, it->startlen, it->prefix, it->prefixlen) > 0;
        rocksdb_iter_seek(it->it, later ? it->start : it->prefix,
                          later ? it->startlen : it->prefixlen);
        it->started = true;
    } else {
        rocksdb_iter_next(it->it);
    }
    if (!rocksdb_iter_valid(it->it))
        return false;
    *key = rocksdb_iter_key(it->it, keylen);
    if (*keylen < it->prefixlen || memcmp(*key, it->prefix, it->prefixlen))
        return false;
    *val = rocksdb_iter_value(it->it, vallen);
    return true;
}

es_err_t es_store_iter_status(es_store_iter_t *it, char *errstr, size_t errstr_size)
{
    char *rerr = NULL;
    rocksdb_iter_get_error(it->it, &rerr);
    if (!rerr)
        return ES_ERR_OK;
    snprintf(errstr, errstr_size, "reading the store: %s", rerr);
    rocksdb_free(rerr);
    return ES_ERR_STORE;
}

void es_store_iter_destroy(es_store_iter_t *it)
{
    if (!it)
        return;
    rocksdb_iter_destroy(it->it);
    rocksdb_readoptions_destroy(it->ropts);
    rocksdb_release_snapshot(it->db, it->snap);
    free(it->prefix);
    free(it->start);
    free(it);
}

bool es_store_holds_view_keys(es_store_t *st)
{
    es_store_iter_t *it = es_store_iter_prefix(st, "", 0);
    rocksdb_iter_seek(it->it, "\x01", 1); /* the first key past the store's own */
    char *rerr = NULL;
    bool holds = rocksdb_iter_valid(it->it);
    rocksdb_iter_get_error(it->it, &rerr);
    if (rerr) { /* cannot tell: say it may */
        holds = true;
        rocksdb_free(rerr);
    }
    es_store_iter_destroy(it);
    return holds;
}

/* Fold one entry into digest hash @p h: the lengths, then the bytes. */
static uint64_t digest_entry(uint64_t h, const char *key, size_t keylen, const char *val,
                             size_t vallen)
{
    uint64_t lens[2] = {keylen, vallen};
    h = es_fnv1a64(h, lens, sizeof(lens));
    h = es_fnv1a64(h, key, keylen);
    return es_fnv1a64(h, val, vallen);
}

es_err_t es_store_digest(es_store_t *st, es_store_digest_t *d, char *errstr, size_t errstr_size)
{
    const char *key, *val;
    size_t keylen, vallen;
    char *rerr = NULL;
    *d = (es_store_digest_t){.views = ES_FNV1A64_INIT, .offsets = ES_FNV1A64_INIT};
    es_store_iter_t *it = es_store_iter_prefix(st, "", 0);
    while (es_store_iter_next(it, &key, &keylen, &val, &vallen)) {
        if (keylen > 0 && key[0] == '\0') { /* the store's own keys */
            d->offsets = digest_entry(d->offsets, key, keylen, val, vallen);
            d->offset_keys++;
        } else {
            d->views = digest_entry(d->views, key, keylen, val, vallen);
            d->view_keys++;
        }
    }
    rocksdb_iter_get_error(it->it, &rerr); /* the scan ends early on a corrupt block */
    es_store_iter_destroy(it);
    if (rerr) {
        snprintf(errstr, errstr_size, "rocksdb read of %s: %s", st->path, rerr);
        rocksdb_free(rerr);
        return ES_ERR_STORE;
    }
    return ES_ERR_OK;
}

es_err_t es_store_checkpoint(es_store_t *st, const char *dir, char *errstr, size_t errstr_size)
{
    char *rerr = NULL;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(st->db, &rerr);
    if (!rerr)
        rocksdb_checkpoint_create(cp, dir, 0, &rerr); /* 0: always flush, no WAL to replay */
    if (cp)
        rocksdb_checkpoint_object_destroy(cp);
    if (rerr) {
        snprintf(errstr, errstr_size, "rocksdb checkpoint of %s into %s: %s", st->path, dir, rerr);
        rocksdb_free(rerr);
        return ES_ERR_STORE;
    }
    return ES_ERR_OK;
}

es_batch_t *es_batch_new(void)
{
    es_batch_t *b = es_calloc(1, sizeof(*b));
    b->wb = rocksdb_writebatch_create();
    return b;
}

void es_batch_destroy(es_batch_t *batch)
{
    if (!batch)
        return;
    rocksdb_writebatch_destroy(batch->wb);
    free(batch);
}

void es_batch_put(es_batch_t *batch, const void *key, size_t keylen, const void *val, size_t vallen)
{
    rocksdb_writebatch_put(batch->wb, key, keylen, val, vallen);
}

void es_batch_delete(es_batch_t *batch, const void *key, size_t keylen)
{
    rocksdb_writebatch_delete(batch->wb, key, keylen);
}

void es_batch_put_offset(es_batch_t *batch, const char *topic, int32_t partition,
                         int64_t next_offset)
{
    char key[300], val[8];
    size_t klen = offset_key(topic, partition, key, sizeof(key));
    es_be64_put(val, (uint64_t)next_offset);
    rocksdb_writebatch_put(batch->wb, key, klen, val, 8);
}

void es_batch_clear(es_batch_t *batch)
{
    rocksdb_writebatch_clear(batch->wb);
}

size_t es_batch_count(const es_batch_t *batch)
{
    return (size_t)rocksdb_writebatch_count(batch->wb);
}
