/*
 * checkpoint_clone.c — a new replica's store from a peer's checkpoint
 * (es_ckpt_clone(), checkpoint.h): download, verify, install.
 *
 * Why a clone is safe to start from: the peer took a RocksDB checkpoint,
 * which holds exactly the batches written before it, and every batch
 * carries the views and the offsets they reflect (store.h), so the
 * offsets inside the copy describe the copy.  The replica then consumes
 * from those offsets like after a restart (loop.c); nothing in the copy is
 * trusted beyond what is checked here:
 *
 *  1. the manifest, the stream's first entry, before any file is written:
 *     the projection, the store format and the topics must be this
 *     replica's, and so must the manifest's own version (another version's
 *     values would be misread; another prefix's offsets would skip or
 *     replay events) — refused as ES_ERR_CONF, naming both sides;
 *  2. the stream: plain files with plain names (no path, no link), each
 *     listed in the manifest with its size and checksum, each once, then the
 *     end of the archive — a hostile or cut stream writes nothing outside
 *     the staging directory and installs nothing; the checksum catches what
 *     step 3 cannot: a byte RocksDB does not read at open or in a scan (an
 *     OPTIONS file, a table's padding) would otherwise install unnoticed;
 *  3. the copy: it opens with the expected format record, its offsets are
 *     the manifest's, and es_store_digest() over it equals the manifest's
 *     digest (RocksDB's block checksums are verified by the same scan) — a
 *     flipped byte anywhere is ES_ERR_STORE.
 *
 * Install: the staging directory (<dir>/clone.tmp, on the store's
 * filesystem) is renamed to <dir>/g1 and CURRENT written last (fs.h's
 * atomic write).  A crash before CURRENT leaves no live store: the next
 * start tidies the leftovers (gen.c) and a new clone or a replay begins.
 */
#include "escqrs/checkpoint.h"
#include "escqrs/fs.h"
#include "escqrs/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAR_BLOCK     512
#define ERR_BODY_MAX  2048 /* what a refusing peer said, kept for the message */
#define CLONE_PATH    4096
#define GEN_MAX_CHARS 32

typedef enum { UN_HEADER, UN_DATA, UN_END, UN_FAILED } un_state_t;

/* The receiving end of the stream (step 2 of the top comment). */
typedef struct unpack_s {
    const es_ckpt_expect_t *expect;
    const char *staging;
    bool is_file_url; /* file:// has no HTTP status */
    long status;
    es_buf_t err_body;
    un_state_t state;
    unsigned char hdr[TAR_BLOCK];
    size_t hdr_len;
    int zero_blocks;
    char name[ES_CKPT_NAME_MAX];
    uint64_t left, pad; /* data and padding bytes of the entry still to come */
    int fd;             /* the file being written, -1 for the manifest */
    size_t file;        /* its index in the manifest */
    uint64_t sum;       /* es_fnv1a64() of its bytes so far */
    size_t nentries;
    es_buf_t manifest_text;
    es_ckpt_manifest_t m;
    bool have_manifest;
    bool *seen; /* per manifest file */
    es_err_t err;
    char errstr[1024];
} unpack_t;

static size_t un_fail(unpack_t *u, es_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The download fails with @p err and this message; 0, what the sink then returns. */
static size_t un_fail(unpack_t *u, es_err_t err, const char *fmt, ...)
{
    va_list ap;
    u->state = UN_FAILED;
    u->err = err;
    va_start(ap, fmt);
    vsnprintf(u->errstr, sizeof(u->errstr), fmt, ap);
    va_end(ap);
    return 0;
}

/* A name the stream may carry: [A-Za-z0-9._-], not starting with '.'. */
static bool plain_name(const char *s)
{
    if (!*s || *s == '.')
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    }
    return true;
}

static bool has_topic(const es_ckpt_manifest_t *m, const char *topic)
{
    for (size_t i = 0; i < m->noffsets; i++) {
        if (!strcmp(m->offsets[i].topic, topic))
            return true;
    }
    return false;
}

/* Step 1: the manifest is this replica's, or ES_ERR_CONF naming both sides. */
static size_t check_manifest(unpack_t *u)
{
    const es_ckpt_expect_t *x = u->expect;
    es_err_t err = es_ckpt_manifest_parse(u->manifest_text.data, u->manifest_text.len, &u->m,
                                          u->errstr, sizeof(u->errstr));
    if (err) { /* another version is a peer to refuse like another format; garbage is damage */
        u->state = UN_FAILED;
        u->err = err == ES_ERR_CONF ? ES_ERR_CONF : ES_ERR_STORE;
        return 0;
    }
    u->have_manifest = true;
    u->seen = es_calloc(u->m.nfiles + 1, sizeof(bool));
    if (x->projection && strcmp(x->projection, u->m.projection))
        return un_fail(u, ES_ERR_CONF, "the checkpoint is of projection %s, not of %s",
                       u->m.projection, x->projection);
    if (x->format && strcmp(x->format, u->m.format))
        return un_fail(u, ES_ERR_CONF,
                       "the checkpoint's store format is \"%s\" but this program reads \"%s\": "
                       "clone from a peer of the same version, or start from offset 0",
                       u->m.format, x->format);
    for (size_t i = 0; i < x->ntopics; i++) {
        if (!has_topic(&u->m, x->topics[i]))
            return un_fail(u, ES_ERR_CONF,
                           "the checkpoint has no offsets of topic %s (another aggregate.prefix?); "
                           "it reads %s",
                           x->topics[i], u->m.noffsets ? u->m.offsets[0].topic : "nothing");
    }
    for (size_t i = 0; i < u->m.noffsets; i++) {
        bool ours = false;
        for (size_t k = 0; k < x->ntopics && !ours; k++)
            ours = !strcmp(x->topics[k], u->m.offsets[i].topic);
        if (x->ntopics && !ours)
            return un_fail(u, ES_ERR_CONF,
                           "the checkpoint reads topic %s, which this replica does not (%s)",
                           u->m.offsets[i].topic, x->topics[0]);
    }
    return 1;
}

/* A header is in: the next entry, or (a zero block) the end of the archive. */
static size_t on_header(unpack_t *u)
{
    const unsigned char *h = u->hdr;
    unsigned sum = 0, want;
    bool zero = true;
    for (int i = 0; i < TAR_BLOCK; i++) {
        zero &= h[i] == 0;
        sum += (i >= 148 && i < 156) ? ' ' : h[i];
    }
    if (zero) {
        if (++u->zero_blocks == 2)
            u->state = UN_END;
        return 1;
    }
    char field[13] = {0}, *end;
    memcpy(field, h + 148, 8);
    want = (unsigned)strtoul(field, &end, 8);
    if (u->zero_blocks || want != sum || (h[156] != '0' && h[156] != '\0') || h[99] != '\0' ||
        memcmp(h + 257, "ustar", 5))
        return un_fail(u, ES_ERR_STORE, "the checkpoint stream is damaged: bad tar header");
    memcpy(field, h + 124, 12);
    field[12] = '\0';
    u->left = strtoull(field, &end, 8);
    u->pad = (TAR_BLOCK - u->left % TAR_BLOCK) % TAR_BLOCK;
    memcpy(u->name, h, 100);
    u->fd = -1;
    if (u->nentries++ == 0) {
        if (strcmp(u->name, ES_CKPT_MANIFEST_NAME) || u->left > ES_CKPT_MANIFEST_MAX)
            return un_fail(u, ES_ERR_STORE, "the checkpoint stream does not start with %s",
                           ES_CKPT_MANIFEST_NAME);
    } else {
        size_t i = 0;
        while (i < u->m.nfiles && strcmp(u->m.files[i].name, u->name))
            i++;
        if (!plain_name(u->name) || i == u->m.nfiles || u->seen[i] || u->m.files[i].size != u->left)
            return un_fail(u, ES_ERR_STORE,
                           "the checkpoint stream carries file %.100s, which its manifest does "
                           "not list with that size (or twice)",
                           u->name);
        u->seen[i] = true;
        u->file = i;
        u->sum = ES_FNV1A64_INIT;
        char path[CLONE_PATH];
        snprintf(path, sizeof(path), "%s/%s", u->staging, u->name);
        if ((u->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0)
            return un_fail(u, ES_ERR_IO, "create %s: %s", path, strerror(errno));
    }
    u->state = UN_DATA;
    return 1;
}

/* Bytes of the current entry's data and padding; 0 on failure. */
static size_t on_data(unpack_t *u, const char *p, size_t n)
{
    size_t take = u->left < n ? (size_t)u->left : n;
    if (take && u->fd < 0) {
        es_buf_append(&u->manifest_text, p, take);
    } else if (take) {
        int e = es_fs_write_all(u->fd, p, take);
        if (e)
            return un_fail(u, ES_ERR_IO, "write %s: %s", u->name, strerror(e));
        u->sum = es_fnv1a64(u->sum, p, take);
    }
    u->left -= take;
    size_t skip = n - take < u->pad ? n - take : (size_t)u->pad;
    u->pad -= skip;
    if (u->left == 0 && u->pad == 0) {
        u->state = UN_HEADER;
        if (u->fd >= 0) { /* closed here whatever happens: download() must not close it again */
            int fd = u->fd, e = fsync(fd) != 0 ? errno : 0;
            u->fd = -1;
            if (close(fd) != 0 && !e)
                e = errno;
            if (e)
                return un_fail(u, ES_ERR_IO, "write %s: %s", u->name, strerror(e));
            if (u->sum != u->m.files[u->file].fnv1a64)
                return un_fail(u, ES_ERR_STORE,
                               "the checkpoint stream's file %s has checksum %016llx, its "
                               "manifest says %016llx: damaged in transfer",
                               u->name, (unsigned long long)u->sum,
                               (unsigned long long)u->m.files[u->file].fnv1a64);
        } else if (u->nentries == 1 && !check_manifest(u)) {
            return 0;
        }
    }
    return take + skip;
}

static size_t unpack_sink(void *opaque, long status, const char *data, size_t len)
{
    unpack_t *u = opaque;
    u->status = status;
    if (status != 200 && !(status == 0 && u->is_file_url)) {
        if (u->err_body.len < ERR_BODY_MAX)
            es_buf_append(&u->err_body, data, len);
        return len;
    }
    for (size_t off = 0; off < len;) {
        size_t used = 0;
        if (u->state == UN_FAILED)
            return 0;
        if (u->state == UN_END)
            return len; /* tar writers may pad the archive further */
        if (u->state == UN_HEADER) {
            used = TAR_BLOCK - u->hdr_len < len - off ? TAR_BLOCK - u->hdr_len : len - off;
            memcpy(u->hdr + u->hdr_len, data + off, used);
            if ((u->hdr_len += used) == TAR_BLOCK) {
                u->hdr_len = 0;
                if (!on_header(u))
                    return 0;
            }
        } else if (!(used = on_data(u, data + off, len - off)) && u->state == UN_FAILED) {
            return 0;
        }
        off += used;
    }
    return len;
}

/* Step 3: the copy in the staging directory is the manifest's. */
static es_err_t verify_copy(const char *staging, const es_ckpt_expect_t *x,
                            const es_ckpt_manifest_t *m, char *errstr, size_t errstr_size)
{
    es_store_opts_t so = {.block_cache_mb = 8, .write_buffer_mb = 4, .read_only = true};
    es_store_digest_t d;
    es_store_t *st = NULL;
    so.format = x->format ? x->format : m->format;
    so.format_remedy = "the checkpoint does not match its manifest";
    es_err_t err = es_store_open_err(staging, &so, &st, errstr, errstr_size);
    if (err) {
        es_store_close(st);
        return ES_ERR_STORE;
    }
    for (size_t i = 0; i < m->noffsets && !err; i++) {
        const es_ckpt_offset_t *o = &m->offsets[i];
        int64_t next = -1;
        char why[256];
        es_err_t e = es_store_get_offset(st, o->topic, o->partition, &next, why, sizeof(why));
        if ((e && e != ES_ERR_NOT_FOUND) || next != o->next) {
            snprintf(errstr, errstr_size,
                     "the checkpoint's offset of %s/%d is %lld, its manifest says %lld: damaged",
                     o->topic, (int)o->partition, (long long)next, (long long)o->next);
            err = ES_ERR_STORE;
        }
    }
    if (!err && (err = es_store_digest(st, &d, errstr, errstr_size)))
        err = ES_ERR_STORE;
    if (!err && memcmp(&d, &m->digest, sizeof(d)) != 0) {
        snprintf(errstr, errstr_size,
                 "the checkpoint's digest is %016llx/%lld keys, %016llx/%lld own keys; its "
                 "manifest says %016llx/%lld, %016llx/%lld: damaged in transfer",
                 (unsigned long long)d.views, (long long)d.view_keys, (unsigned long long)d.offsets,
                 (long long)d.offset_keys, (unsigned long long)m->digest.views,
                 (long long)m->digest.view_keys, (unsigned long long)m->digest.offsets,
                 (long long)m->digest.offset_keys);
        err = ES_ERR_STORE;
    }
    es_store_close(st);
    return err;
}

/* ES_ERR_STATE when CURRENT in @p dir names a generation that exists. */
static es_err_t check_empty(const char *dir, char *errstr, size_t errstr_size)
{
    char path[CLONE_PATH], buf[GEN_MAX_CHARS] = {0};
    struct stat sb;
    snprintf(path, sizeof(path), "%s/CURRENT", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return ES_ERR_OK;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    long g = strtol(buf, NULL, 10);
    snprintf(path, sizeof(path), "%s/g%ld", dir, g);
    if (g > 0 && stat(path, &sb) == 0) {
        snprintf(errstr, errstr_size,
                 "%s already has a live store (generation %ld): a clone only fills an empty "
                 "store directory (move it away first)",
                 dir, g);
        return ES_ERR_STATE;
    }
    return ES_ERR_OK;
}

/* The download into @p staging: steps 1 and 2. */
static es_err_t download(const char *url, const es_ckpt_expect_t *x,
                         const es_http_client_opts_t *opts, int stall_ms, const char *staging,
                         es_ckpt_manifest_t *m, char *errstr, size_t errstr_size)
{
    unpack_t u = {.expect = x, .staging = staging, .fd = -1, .state = UN_HEADER};
    long status = 0;
    u.is_file_url = !strncmp(url, "file://", 7);
    es_err_t err =
        es_http_fetch_sink(url, opts, stall_ms, unpack_sink, &u, &status, errstr, errstr_size);
    if (u.fd >= 0)
        close(u.fd);
    if (u.state == UN_FAILED) {
        err = u.err;
        snprintf(errstr, errstr_size, "%s", u.errstr);
    } else if (!err && status != 200 && !(status == 0 && u.is_file_url)) {
        snprintf(errstr, errstr_size, "GET %s: %ld %.*s", url, status, (int)u.err_body.len,
                 u.err_body.data ? u.err_body.data : "");
        err = ES_ERR_HTTP;
    } else if (!err && u.state != UN_END) {
        snprintf(errstr, errstr_size, "GET %s: the checkpoint stream ended early", url);
        err = ES_ERR_STORE;
    }
    for (size_t i = 0; !err && i < u.m.nfiles; i++) {
        if (!u.seen[i]) {
            snprintf(errstr, errstr_size, "the checkpoint stream lacks file %s of its manifest",
                     u.m.files[i].name);
            err = ES_ERR_STORE;
        }
    }
    if (!err) {
        *m = u.m;
        u.m = (es_ckpt_manifest_t){0};
    }
    es_ckpt_manifest_clear(&u.m);
    free(u.seen);
    es_buf_free(&u.err_body);
    es_buf_free(&u.manifest_text);
    return err;
}

/* The verified copy becomes generation 1: rename, then CURRENT (last). */
static es_err_t install(const char *dir, const char *staging, char *errstr, size_t errstr_size)
{
    char gen[CLONE_PATH], path[CLONE_PATH];
    es_err_t err;
    snprintf(gen, sizeof(gen), "%s/g1", dir);
    if ((err = es_fs_remove_flat_dir(gen, errstr, errstr_size))) /* a leftover without CURRENT */
        return err;
    snprintf(path, sizeof(path), "%s/REBUILD", dir);
    unlink(path); /* nothing to resume in a cloned directory */
    if (rename(staging, gen) != 0) {
        snprintf(errstr, errstr_size, "rename %s to %s: %s", staging, gen, strerror(errno));
        return ES_ERR_IO;
    }
    if ((err = es_fs_sync_dir(dir, errstr, errstr_size)))
        return err;
    snprintf(path, sizeof(path), "%s/CURRENT", dir);
    return es_fs_write_atomic(path, "1\n", 2, errstr, errstr_size);
}

es_err_t es_ckpt_clone(const char *url, const es_ckpt_expect_t *expect,
                       const es_http_client_opts_t *opts, int stall_ms, const char *dir,
                       es_ckpt_manifest_t *m, char *errstr, size_t errstr_size)
{
    char staging[CLONE_PATH], why[256];
    es_err_t err;
    *m = (es_ckpt_manifest_t){0};
    if ((err = check_empty(dir, errstr, errstr_size)) ||
        (err = es_fs_mkdirs(dir, errstr, errstr_size)))
        return err;
    snprintf(staging, sizeof(staging), "%s/%s", dir, ES_CKPT_STAGING);
    if ((err = es_fs_remove_flat_dir(staging, errstr, errstr_size)) ||
        (err = es_fs_mkdirs(staging, errstr, errstr_size)))
        return err;
    err = download(url, expect, opts, stall_ms, staging, m, errstr, errstr_size);
    if (!err)
        err = verify_copy(staging, expect, m, errstr, errstr_size);
    if (!err)
        err = install(dir, staging, errstr, errstr_size);
    if (err) {
        es_fs_remove_flat_dir(staging, why, sizeof(why));
        es_ckpt_manifest_clear(m);
    }
    return err;
}
