/*
 * checkpoint.c — a store's checkpoint on the wire (checkpoint.h): the
 * manifest and the tar stream a projector serves.
 *
 * Why tar: the stream must carry several files (a RocksDB checkpoint is a
 * directory) with their names and sizes, be produced while it is sent (a
 * store of many GiB never fits in memory) and be readable by standard tools
 * for an operator who wants to look inside.  ustar does all three with a
 * 512-byte header per file; only its plain-file subset is written and read.
 * File sizes are fixed when the checkpoint is taken (its files are never
 * written again), so the whole stream's length is known up front.
 *
 * The stream is read sequentially (libmicrohttpd asks for the next block
 * from where the last one ended): a cursor over the entries — the manifest
 * from memory, each file through pread() on a descriptor opened when its
 * entry begins and closed when it ends, so at most one file is open.
 */
#include "escqrs/checkpoint.h"
#include "escqrs/fs.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAR_BLOCK    512
#define TAR_SIZE_MAX 077777777777ULL /* 11 octal digits: 8 GiB - 1 per file */

/* ------------------------------------------------------------ manifest */

static void hex64(uint64_t v, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)v);
}

json_t *es_ckpt_digest_json(const es_store_digest_t *d)
{
    char views[17], offsets[17];
    hex64(d->views, views);
    hex64(d->offsets, offsets);
    return json_pack("{s:I, s:s, s:I, s:s}", "view_keys", (json_int_t)d->view_keys, "views_fnv1a64",
                     views, "offset_keys", (json_int_t)d->offset_keys, "offsets_fnv1a64", offsets);
}

json_t *es_ckpt_manifest_json(const es_ckpt_manifest_t *m)
{
    json_t *offsets = json_array(), *files = json_array();
    for (size_t i = 0; i < m->noffsets; i++)
        json_array_append_new(offsets, json_pack("{s:s, s:i, s:I}", "topic", m->offsets[i].topic,
                                                 "partition", (int)m->offsets[i].partition, "next",
                                                 (json_int_t)m->offsets[i].next));
    for (size_t i = 0; i < m->nfiles; i++) {
        char sum[17];
        hex64(m->files[i].fnv1a64, sum);
        json_array_append_new(files, json_pack("{s:s, s:I, s:s}", "name", m->files[i].name, "size",
                                               (json_int_t)m->files[i].size, "fnv1a64", sum));
    }
    return json_pack("{s:i, s:s, s:s, s:i, s:I, s:o, s:o, s:o}", "version", ES_CKPT_VERSION,
                     "projection", m->projection, "format", m->format, "generation", m->generation,
                     "created_ms", (json_int_t)m->created_ms, "digest",
                     es_ckpt_digest_json(&m->digest), "offsets", offsets, "files", files);
}

/* Exactly 16 hex digits, as hex64() writes them (strtoull alone also took a sign, spaces
 * and "0x"). */
static bool parse_hex64(json_t *o, const char *key, uint64_t *out)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || strlen(s) != 16 || strspn(s, "0123456789abcdefABCDEF") != 16)
        return false;
    *out = strtoull(s, NULL, 16);
    return true;
}

static bool copy_str(json_t *o, const char *key, char *out, size_t outsz)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || strlen(s) >= outsz)
        return false;
    memcpy(out, s, strlen(s) + 1);
    return true;
}

static bool parse_offsets(json_t *arr, es_ckpt_manifest_t *m)
{
    if (!json_is_array(arr) || json_array_size(arr) > ES_CKPT_MAX_OFFSETS)
        return false;
    m->noffsets = json_array_size(arr);
    m->offsets = es_calloc(m->noffsets + 1, sizeof(*m->offsets));
    for (size_t i = 0; i < m->noffsets; i++) {
        json_t *o = json_array_get(arr, i);
        json_t *p = json_object_get(o, "partition"), *n = json_object_get(o, "next");
        if (!copy_str(o, "topic", m->offsets[i].topic, sizeof(m->offsets[i].topic)) ||
            !json_is_integer(p) || json_integer_value(p) < 0 || json_integer_value(p) > INT32_MAX ||
            !json_is_integer(n))
            return false;
        m->offsets[i].partition = (int32_t)json_integer_value(p);
        m->offsets[i].next = json_integer_value(n);
    }
    return true;
}

static bool parse_files(json_t *arr, es_ckpt_manifest_t *m)
{
    if (!json_is_array(arr) || json_array_size(arr) > ES_CKPT_MAX_FILES)
        return false;
    m->nfiles = json_array_size(arr);
    m->files = es_calloc(m->nfiles + 1, sizeof(*m->files));
    for (size_t i = 0; i < m->nfiles; i++) {
        json_t *o = json_array_get(arr, i), *sz = json_object_get(o, "size");
        if (!copy_str(o, "name", m->files[i].name, sizeof(m->files[i].name)) ||
            !json_is_integer(sz) || json_integer_value(sz) < 0 ||
            !parse_hex64(o, "fnv1a64", &m->files[i].fnv1a64))
            return false;
        m->files[i].size = (uint64_t)json_integer_value(sz);
    }
    return true;
}

es_err_t es_ckpt_manifest_parse(const char *text, size_t len, es_ckpt_manifest_t *m, char *errstr,
                                size_t errstr_size)
{
    json_error_t jerr;
    json_int_t version;
    char why[192];
    const char *bad = NULL;
    es_err_t err = ES_ERR_DECODE;
    *m = (es_ckpt_manifest_t){0};
    json_t *o = json_loadb(text, len, 0, &jerr);
    json_t *dg = json_object_get(o, "digest");
    json_t *vk = json_object_get(dg, "view_keys"), *ok = json_object_get(dg, "offset_keys");
    if (!o)
        bad = jerr.text;
    else if ((version = json_integer_value(json_object_get(o, "version"))) != ES_CKPT_VERSION) {
        snprintf(why, sizeof(why),
                 "version %lld, this program reads %d (a peer of another escqrs version: clone "
                 "from one of this version, or start from offset 0)",
                 (long long)version, ES_CKPT_VERSION);
        bad = why;
        err = ES_ERR_CONF;
    } else if (!copy_str(o, "projection", m->projection, sizeof(m->projection)))
        bad = "projection";
    else if (!copy_str(o, "format", m->format, sizeof(m->format)))
        bad = "format";
    else if (!parse_hex64(dg, "views_fnv1a64", &m->digest.views) ||
             !parse_hex64(dg, "offsets_fnv1a64", &m->digest.offsets) || !json_is_integer(vk) ||
             !json_is_integer(ok))
        bad = "digest";
    else if (!parse_offsets(json_object_get(o, "offsets"), m))
        bad = "offsets";
    else if (!parse_files(json_object_get(o, "files"), m))
        bad = "files";
    if (!bad) {
        m->digest.view_keys = json_integer_value(vk);
        m->digest.offset_keys = json_integer_value(ok);
        m->generation = (int)json_integer_value(json_object_get(o, "generation"));
        m->created_ms = json_integer_value(json_object_get(o, "created_ms"));
    }
    json_decref(o);
    if (bad) {
        snprintf(errstr, errstr_size, "checkpoint manifest: %s", bad);
        es_ckpt_manifest_clear(m);
        return err;
    }
    return ES_ERR_OK;
}

void es_ckpt_manifest_clear(es_ckpt_manifest_t *m)
{
    free(m->offsets);
    free(m->files);
    *m = (es_ckpt_manifest_t){0};
}

/* es_fnv1a64() of the @p size bytes of @p path (never written again: a checkpoint's file). */
static bool file_fnv1a64(const char *path, uint64_t size, uint64_t *out)
{
    enum { CHUNK = 1 << 16 };
    char *buf = es_malloc(CHUNK);
    uint64_t h = ES_FNV1A64_INIT, done = 0;
    errno = 0; /* a file shorter than its size sets none */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && done < size) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n <= 0)
            break;
        h = es_fnv1a64(h, buf, (size_t)n);
        done += (uint64_t)n;
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    *out = h;
    return fd >= 0 && done == size;
}

es_err_t es_ckpt_manifest_list_files(es_ckpt_manifest_t *m, const char *dir, char *errstr,
                                     size_t errstr_size)
{
    char path[4096];
    struct dirent *e;
    struct stat sb;
    size_t cap = 16;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(errstr, errstr_size, "opendir %s: %s", dir, strerror(errno));
        return ES_ERR_IO;
    }
    free(m->files);
    m->files = es_calloc(cap, sizeof(*m->files));
    m->nfiles = 0;
    while ((e = readdir(d))) {
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || !strncmp(e->d_name, "LOG", 3))
            continue; /* RocksDB's info logs (LOG, LOG.old.*) are not the store */
        if (strlen(e->d_name) >= ES_CKPT_NAME_MAX || (uint64_t)sb.st_size > TAR_SIZE_MAX ||
            m->nfiles == ES_CKPT_MAX_FILES) {
            snprintf(errstr, errstr_size, "%s: name, size or count beyond the stream's limits",
                     path);
            closedir(d);
            return ES_ERR_IO;
        }
        if (m->nfiles == cap)
            m->files = es_realloc(m->files, (cap *= 2) * sizeof(*m->files));
        es_ckpt_file_t *f = &m->files[m->nfiles++];
        memcpy(f->name, e->d_name, strlen(e->d_name) + 1); /* fits: checked */
        f->size = (uint64_t)sb.st_size;
        if (!file_fnv1a64(path, f->size, &f->fnv1a64)) {
            snprintf(errstr, errstr_size, "read %s: %s", path, errno ? strerror(errno) : "short");
            closedir(d);
            return ES_ERR_IO;
        }
    }
    closedir(d);
    return ES_ERR_OK;
}

/* -------------------------------------------------------------- stream */

/* One entry of the stream: a header, its data, zeros up to a block. */
typedef struct entry_s {
    char name[ES_CKPT_NAME_MAX];
    uint64_t size;
    uint64_t start; /* offset of its header in the stream */
} entry_t;

struct es_ckpt_stream_s {
    char *dir;
    bool remove_dir;
    char *manifest; /* entry 0's data */
    entry_t *entries;
    size_t nentries;
    uint64_t size;
    size_t cur; /* the entry being read */
    int fd;     /* its file, -1 when none is open */
};

static uint64_t padded(uint64_t n)
{
    return (n + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
}

/* The ustar header of @p e into @p h (TAR_BLOCK bytes). */
static void tar_header(const entry_t *e, unsigned char *h)
{
    unsigned sum = 0;
    memset(h, 0, TAR_BLOCK);
    memcpy(h, e->name, strlen(e->name));
    memcpy(h + 100, "0000644", 7);
    memcpy(h + 108, "0001750", 7);
    memcpy(h + 116, "0001750", 7);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)e->size);
    memcpy(h + 136, "00000000000", 11); /* mtime: the stream is the same whatever the clock */
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    for (int i = 0; i < TAR_BLOCK; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
}

es_ckpt_stream_t *es_ckpt_stream_new(const char *dir, const es_ckpt_manifest_t *m, bool remove_dir)
{
    es_ckpt_stream_t *s = es_calloc(1, sizeof(*s));
    json_t *mj = es_ckpt_manifest_json(m);
    s->manifest = json_dumps(mj, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(mj);
    s->dir = es_strdup(dir);
    s->remove_dir = remove_dir;
    s->fd = -1;
    s->nentries = m->nfiles + 1;
    s->entries = es_calloc(s->nentries, sizeof(*s->entries));
    snprintf(s->entries[0].name, ES_CKPT_NAME_MAX, "%s", ES_CKPT_MANIFEST_NAME);
    s->entries[0].size = strlen(s->manifest);
    for (size_t i = 0; i < m->nfiles; i++) {
        snprintf(s->entries[i + 1].name, ES_CKPT_NAME_MAX, "%s", m->files[i].name);
        s->entries[i + 1].size = m->files[i].size;
    }
    for (size_t i = 0; i < s->nentries; i++) {
        s->entries[i].start = s->size;
        s->size += TAR_BLOCK + padded(s->entries[i].size);
    }
    s->size += 2 * TAR_BLOCK; /* the end of the archive */
    return s;
}

uint64_t es_ckpt_stream_size(const es_ckpt_stream_t *s)
{
    return s->size;
}

/* Bytes of entry @p e from @p off (within the entry) into @p buf: -1 on a read error. */
static ssize_t entry_read(es_ckpt_stream_t *s, const entry_t *e, uint64_t off, char *buf,
                          size_t max)
{
    if (off < TAR_BLOCK) {
        unsigned char h[TAR_BLOCK];
        size_t n = TAR_BLOCK - off < max ? (size_t)(TAR_BLOCK - off) : max;
        tar_header(e, h);
        memcpy(buf, h + off, n);
        return (ssize_t)n;
    }
    off -= TAR_BLOCK;
    if (off >= e->size) { /* padding */
        uint64_t left = padded(e->size) - off;
        size_t n = left < max ? (size_t)left : max;
        memset(buf, 0, n);
        return (ssize_t)n;
    }
    size_t n = e->size - off < max ? (size_t)(e->size - off) : max;
    if (e == &s->entries[0]) {
        memcpy(buf, s->manifest + off, n);
        return (ssize_t)n;
    }
    if (s->fd < 0) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", s->dir, e->name);
        if ((s->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            return -1;
    }
    ssize_t got = pread(s->fd, buf, n, (off_t)off);
    return got > 0 ? got : -1; /* a file shorter than listed is an error too */
}

ssize_t es_ckpt_stream_read(void *stream, uint64_t pos, char *buf, size_t max)
{
    es_ckpt_stream_t *s = stream;
    size_t done = 0;
    while (done < max && pos < s->size) {
        while (s->cur < s->nentries &&
               pos >= s->entries[s->cur].start + TAR_BLOCK + padded(s->entries[s->cur].size)) {
            if (s->fd >= 0)
                close(s->fd);
            s->fd = -1;
            s->cur++;
        }
        ssize_t n;
        if (s->cur == s->nentries) { /* the two zero blocks */
            n = (ssize_t)(s->size - pos < max - done ? s->size - pos : max - done);
            memset(buf + done, 0, (size_t)n);
        } else {
            const entry_t *e = &s->entries[s->cur];
            n = entry_read(s, e, pos - e->start, buf + done, max - done);
            if (n < 0)
                return done ? (ssize_t)done : -1;
        }
        done += (size_t)n;
        pos += (uint64_t)n;
    }
    return (ssize_t)done;
}

void es_ckpt_stream_destroy(void *stream)
{
    es_ckpt_stream_t *s = stream;
    char errstr[256];
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->remove_dir)
        es_fs_remove_flat_dir(s->dir, errstr, sizeof(errstr));
    free(s->dir);
    free(s->manifest);
    free(s->entries);
    free(s);
}
