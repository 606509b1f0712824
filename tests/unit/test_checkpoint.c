/*
 * test_checkpoint.c — a store's checkpoint on the wire without a broker or
 * a server: a store's checkpoint streamed (es_ckpt_stream_read) and cloned
 * back from a file:// URL equals the store (digest, offsets, format); the
 * stream is a tar the usual tools read; hostile or damaged streams install
 * nothing (a path in a name, a file the manifest does not list, a cut
 * stream, another store format, another topic, another manifest version, a
 * byte flipped in any file).
 */
#include "escqrs/checkpoint.h"
#include "escqrs/fs.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORMAT "unit/1"

static char dir[256], src[300], tarpath[300], errstr[1024];
static es_store_digest_t digest;
static es_buf_t stream;

static es_ckpt_expect_t expect(const char *const *topics, size_t n)
{
    return (es_ckpt_expect_t){.projection = "v", .format = FORMAT, .topics = topics, .ntopics = n};
}

/* A store of @p format at @p path with views and offsets, its checkpoint's stream into @p out
 * and its digest into @p d. */
static void stream_of_store(const char *format, const char *path, es_buf_t *out,
                            es_store_digest_t *d)
{
    es_store_opts_t so = {.block_cache_mb = 8, .write_buffer_mb = 4, .format = format};
    char key[32], cdir[400];
    es_store_t *st = es_store_open(path, &so, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_batch_t *b = es_batch_new();
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%05d", i);
        es_batch_put(b, key, strlen(key), "value", 5);
    }
    es_batch_put_offset(b, "t.events", 0, 4000);
    es_batch_put_offset(b, "t.events", 1, 1000);
    CU_ASSERT_EQUAL_FATAL(es_store_write(st, b, errstr, sizeof(errstr)), ES_ERR_OK);
    es_batch_destroy(b);
    snprintf(cdir, sizeof(cdir), "%s/copy", dir);
    CU_ASSERT_EQUAL_FATAL(es_store_checkpoint(st, cdir, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_store_digest(st, d, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(d->view_keys, 5000);
    CU_ASSERT_EQUAL(d->offset_keys, 3); /* two offsets and the format record */
    es_store_close(st);

    es_ckpt_manifest_t m = {.generation = 3, .digest = *d, .noffsets = 2};
    snprintf(m.projection, sizeof(m.projection), "v");
    snprintf(m.format, sizeof(m.format), "%s", format);
    m.offsets = calloc(2, sizeof(*m.offsets));
    snprintf(m.offsets[0].topic, sizeof(m.offsets[0].topic), "t.events");
    snprintf(m.offsets[1].topic, sizeof(m.offsets[1].topic), "t.events");
    m.offsets[0].next = 4000;
    m.offsets[1].partition = 1;
    m.offsets[1].next = 1000;
    CU_ASSERT_EQUAL_FATAL(es_ckpt_manifest_list_files(&m, cdir, errstr, sizeof(errstr)), ES_ERR_OK);
    es_ckpt_stream_t *s = es_ckpt_stream_new(cdir, &m, true);
    uint64_t size = es_ckpt_stream_size(s);
    char buf[777]; /* an odd block size: reads cross every boundary */
    for (uint64_t pos = 0; pos < size;) {
        ssize_t n = es_ckpt_stream_read(s, pos, buf, sizeof(buf));
        CU_ASSERT_FATAL(n > 0);
        es_buf_append(out, buf, (size_t)n);
        pos += (uint64_t)n;
    }
    CU_ASSERT_EQUAL(out->len, size);
    CU_ASSERT_EQUAL(size % 512, 0);
    es_ckpt_stream_destroy(s);
    struct stat sb;
    CU_ASSERT_NOT_EQUAL(stat(cdir, &sb), 0); /* removed with the stream */
    es_ckpt_manifest_clear(&m);
}

/* ------------------------------------------------ faults at the clone's calls */

/*
 * write(2), fsync(2) and close(2) of a file in a clone's staging directory fail when a
 * test arms them: this program's definitions come before libc's, the rest of
 * the program's calls go through to libc untouched.  staging_room is the
 * bytes such files may still take (-1: no limit), as a filling disk does: a
 * write past it takes what fits, the next one fails with ENOSPC.
 */
static long long staging_room = -1;
static long long staging_fsync_errno, staging_close_errno;

static bool in_staging(int fd)
{
    char link[64], path[1024];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0)
        return false;
    path[n] = '\0';
    return strstr(path, "/" ES_CKPT_STAGING "/") != NULL;
}

ssize_t write(int fd, const void *data, size_t len)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "write");
    if (staging_room >= 0 && in_staging(fd)) {
        if (staging_room == 0) {
            errno = ENOSPC;
            return -1;
        }
        if ((long long)len > staging_room)
            len = (size_t)staging_room;
        ssize_t n = real(fd, data, len);
        if (n > 0)
            staging_room -= n;
        return n;
    }
    return real(fd, data, len);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "fsync");
    if (staging_fsync_errno && in_staging(fd)) {
        errno = (int)staging_fsync_errno;
        return -1;
    }
    return real(fd);
}

/* Linux closes the descriptor even when close(2) reports an error (NFS's EIO). */
int close(int fd)
{
    static int (*real)(int);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "close");
    if (staging_close_errno && in_staging(fd)) {
        real(fd);
        errno = (int)staging_close_errno;
        return -1;
    }
    return real(fd);
}

/* The stream of the tests, from a store of FORMAT at <dir>/src. */
static void make_stream(void)
{
    stream_of_store(FORMAT, src, &stream, &digest);
}

static void save(const char *path, const es_buf_t *b)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(b->len ? fwrite(b->data, 1, b->len, f) : 0, b->len);
    fclose(f);
}

/* Clone @p b (saved as a file) into <dir>/<name>; the result. */
static es_err_t clone_buf(const es_buf_t *b, const char *name, const es_ckpt_expect_t *x)
{
    char url[400], target[400];
    es_ckpt_manifest_t m;
    save(tarpath, b);
    snprintf(url, sizeof(url), "file://%s", tarpath);
    snprintf(target, sizeof(target), "%s/%s", dir, name);
    es_err_t err = es_ckpt_clone(url, x, NULL, 10000, target, &m, errstr, sizeof(errstr));
    es_ckpt_manifest_clear(&m);
    return err;
}

static bool installed(const char *name)
{
    char path[400];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/%s/CURRENT", dir, name);
    return stat(path, &sb) == 0;
}

static void test_round_trip(void)
{
    const char *topics[] = {"t.events"};
    es_ckpt_expect_t x = expect(topics, 1);
    char path[400];
    make_stream(); /* for this test and the next */
    CU_ASSERT_EQUAL_FATAL(clone_buf(&stream, "ok", &x), ES_ERR_OK);
    CU_ASSERT_TRUE(installed("ok"));
    snprintf(path, sizeof(path), "%s/ok/g1", dir);
    es_store_opts_t so = {.block_cache_mb = 8, .write_buffer_mb = 4, .format = FORMAT};
    es_store_t *st = es_store_open(path, &so, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_store_digest_t d;
    int64_t next = 0;
    CU_ASSERT_EQUAL(es_store_digest(st, &d, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(memcmp(&d, &digest, sizeof(d)), 0);
    CU_ASSERT_EQUAL(es_store_get_offset(st, "t.events", 0, &next, errstr, sizeof(errstr)), 0);
    CU_ASSERT_EQUAL(next, 4000);
    es_store_close(st);
    /* a second clone into a directory with a live store */
    CU_ASSERT_EQUAL(clone_buf(&stream, "ok", &x), ES_ERR_STATE);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "already has a live store (generation 1)"));
    /* no live store: CURRENT naming a generation that is not there, or no number at all,
     * and a REBUILD left behind (nothing to resume in a cloned directory) */
    static const char *const currents[] = {"7\n", "none\n"};
    for (size_t i = 0; i < ES_ARRAY_SIZE(currents); i++) {
        char name[32], file[500];
        snprintf(name, sizeof(name), "stale-%zu", i);
        snprintf(file, sizeof(file), "%s/%s", dir, name);
        CU_ASSERT_EQUAL_FATAL(es_fs_mkdirs(file, errstr, sizeof(errstr)), ES_ERR_OK);
        snprintf(file, sizeof(file), "%s/%s/CURRENT", dir, name);
        CU_ASSERT_EQUAL(
            es_fs_write_atomic(file, currents[i], strlen(currents[i]), errstr, sizeof(errstr)),
            ES_ERR_OK);
        snprintf(file, sizeof(file), "%s/%s/REBUILD", dir, name);
        CU_ASSERT_EQUAL(es_fs_write_atomic(file, "2\n", 2, errstr, sizeof(errstr)), ES_ERR_OK);
        CU_ASSERT_EQUAL(clone_buf(&stream, name, &x), ES_ERR_OK);
        CU_ASSERT_TRUE(installed(name));
        CU_ASSERT_FALSE(es_test_exists(file)); /* REBUILD gone */
        snprintf(file, sizeof(file), "%s/%s/CURRENT", dir, name);
        char *cur = es_read_file(file);
        ES_ASSERT_STR_EQ(cur, "1\n");
        free(cur);
    }
    /* tar reads it: the manifest comes first */
    char cmd[700], line[256] = "";
    snprintf(cmd, sizeof(cmd), "tar tf %s | head -1", tarpath);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof(line), p));
    pclose(p);
    CU_ASSERT_STRING_EQUAL(line, ES_CKPT_MANIFEST_NAME "\n");
}

static void test_refusals(void)
{
    const char *topics[] = {"t.events"}, *other[] = {"u.events"};
    es_ckpt_expect_t x = expect(topics, 1), y = expect(other, 1);
    es_ckpt_expect_t z = {.projection = "v", .format = "unit/2", .topics = topics, .ntopics = 1};
    es_buf_t b = {0};

    CU_ASSERT_FATAL(stream.len > 1536);
    CU_ASSERT_EQUAL(clone_buf(&stream, "topic", &y), ES_ERR_CONF);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "u.events"));
    CU_ASSERT_EQUAL(clone_buf(&stream, "format", &z), ES_ERR_CONF);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "\"unit/1\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "\"unit/2\""));

    es_buf_set(&b, stream.data, stream.len - 1536); /* cut */
    CU_ASSERT_EQUAL(clone_buf(&b, "cut", &x), ES_ERR_STORE);

    /* the second entry renamed "../evil" (checksum fixed): never written */
    es_buf_set(&b, stream.data, stream.len);
    size_t msize = (size_t)strtoull(b.data + 124, NULL, 8);
    char *h = b.data + 512 + (msize + 511) / 512 * 512;
    memset(h, 0, 100);
    memcpy(h, "../evil", 7);
    unsigned sum = 0;
    memset(h + 148, ' ', 8);
    for (int i = 0; i < 512; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    CU_ASSERT_EQUAL(clone_buf(&b, "evil", &x), ES_ERR_STORE);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "../evil"));
    char path[400];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/evil/evil", dir); /* clone.tmp/../evil */
    CU_ASSERT_NOT_EQUAL(stat(path, &sb), 0);
    /* a manifest of another version (the digit rewritten in place) */
    es_buf_set(&b, stream.data, stream.len);
    char *v = strstr(b.data + 512, "\"version\":");
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    v[strlen("\"version\":")] = '1';
    CU_ASSERT_EQUAL(clone_buf(&b, "version", &x), ES_ERR_CONF);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "version 1, this program reads 2"));
    /* a store whose own format record is not the manifest's (the manifest rewritten to
     * claim ours): the copy's open refuses it, naming both */
    char other_src[400];
    es_store_digest_t od;
    snprintf(other_src, sizeof(other_src), "%s/src-other", dir);
    es_buf_clear(&b);
    stream_of_store("unit/9", other_src, &b, &od);
    char *fmt = strstr(b.data + 512, "\"unit/9\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fmt);
    fmt[6] = '1';
    CU_ASSERT_EQUAL(clone_buf(&b, "record", &x), ES_ERR_STORE);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(errstr, "holds format \"unit/9\" but this program reads \"unit/1\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "the checkpoint does not match its manifest"));
    /* a header byte flipped: the checksum catches it */
    es_buf_set(&b, stream.data, stream.len);
    b.data[10] ^= 1;
    CU_ASSERT_EQUAL(clone_buf(&b, "header", &x), ES_ERR_STORE);
    es_buf_free(&b);
    const char *names[] = {"topic", "format", "cut", "evil", "version", "record", "header"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        CU_ASSERT_FALSE(installed(names[i]));
        snprintf(path, sizeof(path), "%s/%s/%s", dir, names[i], ES_CKPT_STAGING);
        CU_ASSERT_NOT_EQUAL(stat(path, &sb), 0); /* staging removed */
    }
}

/* ------------------------------------------------------ the manifest's fields */

/* A sample manifest with one offset and one file, as JSON (a new reference). */
static json_t *sample_manifest(void)
{
    es_ckpt_offset_t off = {.partition = 2, .next = 40};
    es_ckpt_file_t file = {.size = 10, .fnv1a64 = 0xabcdef0123456789ULL};
    snprintf(off.topic, sizeof(off.topic), "t.events");
    snprintf(file.name, sizeof(file.name), "000009.sst");
    es_ckpt_manifest_t m = {.generation = 3, .noffsets = 1, .nfiles = 1};
    m.offsets = &off;
    m.files = &file;
    snprintf(m.projection, sizeof(m.projection), "v");
    snprintf(m.format, sizeof(m.format), FORMAT);
    return es_ckpt_manifest_json(&m);
}

/* Parse @p doc (decref'd here); its result. */
static es_err_t parse_doc(json_t *doc, es_ckpt_manifest_t *m)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    es_err_t err = es_ckpt_manifest_parse(text, strlen(text), m, errstr, sizeof(errstr));
    free(text);
    return err;
}

/*
 * Every field of a manifest (the peer's word on the copy) at its edges: accepted at its
 * largest, refused one past it and in any other type or shape.  The hex digests and
 * checksums take exactly 16 hex digits: strtoull alone also read a sign, spaces and "0x".
 */
static void test_manifest_fields(void)
{
    es_ckpt_manifest_t m;
    char longest[ES_CKPT_TOPIC_MAX + 1];
    CU_ASSERT_EQUAL_FATAL(parse_doc(sample_manifest(), &m), ES_ERR_OK);
    CU_ASSERT(m.noffsets == 1 && m.offsets[0].next == 40 && m.offsets[0].partition == 2);
    CU_ASSERT(m.nfiles == 1 && m.files[0].fnv1a64 == 0xabcdef0123456789ULL);
    es_ckpt_manifest_clear(&m);
    static const struct {
        const char *path; /* "key", "digest.key", "offsets.0.key" or "files.0.key" */
        const char *json; /* the value, as JSON; "LONG:n" a string of n characters */
        bool ok;
    } cases[] = {
        {"digest.views_fnv1a64", "\"FFFFFFFFFFFFFFFF\"", true},
        {"digest.views_fnv1a64", "\"-000000000000001\"", false},
        {"digest.views_fnv1a64", "\" 00000000000001f\"", false},
        {"digest.views_fnv1a64", "\"+00000000000001f\"", false},
        {"digest.views_fnv1a64", "\"0x0000000000001f\"", false},
        {"digest.views_fnv1a64", "\"000000000000001\"", false},
        {"digest.views_fnv1a64", "\"00000000000000001\"", false},
        {"digest.offsets_fnv1a64", "\"000000000000000g\"", false},
        {"digest.view_keys", "\"5\"", false},
        {"digest.offset_keys", "1.5", false},
        {"projection", "LONG:127", true},
        {"projection", "LONG:128", false},
        {"format", "LONG:128", false},
        {"format", "7", false},
        {"offsets.0.topic", "LONG:249", true},
        {"offsets.0.topic", "LONG:250", false},
        {"offsets.0.partition", "2147483647", true},
        {"offsets.0.partition", "2147483648", false},
        {"offsets.0.partition", "-1", false},
        {"offsets.0.partition", "\"2\"", false},
        {"offsets.0.next", "\"40\"", false},
        {"offsets", "{}", false},
        {"files.0.name", "LONG:99", true},
        {"files.0.name", "LONG:100", false},
        {"files.0.size", "0", true},
        {"files.0.size", "-1", false},
        {"files.0.size", "\"10\"", false},
        {"files.0.fnv1a64", "\"-bcdef0123456789\"", false},
        {"files", "null", false},
    };
    for (size_t i = 0; i < ES_ARRAY_SIZE(cases); i++) {
        json_t *doc = sample_manifest(), *at = doc, *v;
        char path[64], *key = path, *dot;
        snprintf(path, sizeof(path), "%s", cases[i].path);
        while ((dot = strchr(key, '.'))) { /* walk to the field's object */
            *dot = '\0';
            at = json_is_array(at) ? json_array_get(at, (size_t)strtol(key, NULL, 10))
                                   : json_object_get(at, key);
            key = dot + 1;
        }
        if (!strncmp(cases[i].json, "LONG:", 5)) {
            int n = (int)strtol(cases[i].json + 5, NULL, 10);
            memset(longest, 'a', (size_t)n);
            longest[n] = '\0';
            v = json_string(longest);
        } else {
            v = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        }
        CU_ASSERT_PTR_NOT_NULL_FATAL(v);
        if (json_is_array(at))
            json_array_set_new(at, (size_t)strtol(key, NULL, 10), v);
        else
            json_object_set_new(at, key, v);
        es_err_t err = parse_doc(doc, &m);
        if ((err == ES_ERR_OK) != cases[i].ok)
            printf("\n    %s = %s: %s", cases[i].path, cases[i].json, err ? errstr : "accepted");
        CU_ASSERT_EQUAL(err == ES_ERR_OK, cases[i].ok);
        es_ckpt_manifest_clear(&m);
    }
    /* one offset more than a manifest may hold */
    json_t *doc = sample_manifest(), *offs = json_object_get(doc, "offsets");
    json_t *one = json_array_get(offs, 0);
    for (size_t i = 1; i <= ES_CKPT_MAX_OFFSETS; i++)
        json_array_append(offs, one);
    CU_ASSERT_EQUAL(parse_doc(doc, &m), ES_ERR_DECODE);
    ES_ASSERT_STR_EQ(errstr, "checkpoint manifest: offsets");
    es_ckpt_manifest_clear(&m);
}

/*
 * The serving side's list of a checkpoint's files: every regular file but RocksDB's info
 * logs, each with its size and FNV-1a 64 read in 64 KiB pieces (sizes around that edge
 * and several pieces long, against the hash of the whole file at once); a name of 100
 * bytes, past ustar's field, refuses the list.
 */
static void test_list_files(void)
{
    static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 200003};
    char d[400], path[600];
    snprintf(d, sizeof(d), "%s/listed", dir);
    CU_ASSERT_EQUAL_FATAL(es_fs_mkdirs(d, errstr, sizeof(errstr)), ES_ERR_OK);
    char *bytes = malloc(200003);
    for (size_t i = 0; i < 200003; i++)
        bytes[i] = (char)(i * 131 + (i >> 9));
    es_buf_t b = {0};
    for (size_t i = 0; i < ES_ARRAY_SIZE(sizes); i++) {
        snprintf(path, sizeof(path), "%s/f%zu", d, sizes[i]);
        es_buf_set(&b, bytes, sizes[i]);
        save(path, &b);
    }
    static const char *const skipped[] = {"LOG", "LOG.old.1700000000"};
    for (size_t i = 0; i < ES_ARRAY_SIZE(skipped); i++) {
        snprintf(path, sizeof(path), "%s/%s", d, skipped[i]);
        save(path, &b);
    }
    snprintf(path, sizeof(path), "%s/subdir", d);
    mkdir(path, 0755);
    es_ckpt_manifest_t m = {0};
    CU_ASSERT_EQUAL_FATAL(es_ckpt_manifest_list_files(&m, d, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(m.nfiles, ES_ARRAY_SIZE(sizes));
    size_t matched = 0;
    for (size_t k = 0; k < m.nfiles; k++) {
        for (size_t i = 0; i < ES_ARRAY_SIZE(sizes); i++) {
            char name[32];
            snprintf(name, sizeof(name), "f%zu", sizes[i]);
            if (strcmp(m.files[k].name, name) != 0)
                continue;
            matched++;
            CU_ASSERT_EQUAL(m.files[k].size, sizes[i]);
            CU_ASSERT_EQUAL(m.files[k].fnv1a64, es_fnv1a64(ES_FNV1A64_INIT, bytes, sizes[i]));
        }
    }
    CU_ASSERT_EQUAL(matched, ES_ARRAY_SIZE(sizes));
    char name[120];
    memset(name, 'n', 100);
    name[100] = '\0';
    snprintf(path, sizeof(path), "%s/%s", d, name);
    save(path, &b);
    CU_ASSERT_EQUAL(es_ckpt_manifest_list_files(&m, d, errstr, sizeof(errstr)), ES_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "beyond the stream's limits"));
    es_ckpt_manifest_clear(&m);
    es_buf_free(&b);
    free(bytes);
}

/*
 * The stream is a tar GNU tar reads as written (tar is the oracle here, not our clone):
 * files of sizes around tar's 512-byte blocks, extracted, equal the originals byte for
 * byte; each entry a regular file, mode 0644, owner 1000/1000, time 0 (the stream does
 * not depend on the clock).
 */
static void test_stream_is_tar(void)
{
    static const size_t sizes[] = {0, 1, 511, 512, 513, 1024, 70001};
    char src_dir[400], out_dir[400], path[600], cmd[1400];
    snprintf(src_dir, sizeof(src_dir), "%s/tar-src", dir);
    snprintf(out_dir, sizeof(out_dir), "%s/tar-out", dir);
    CU_ASSERT_EQUAL_FATAL(es_fs_mkdirs(src_dir, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL_FATAL(es_fs_mkdirs(out_dir, errstr, sizeof(errstr)), ES_ERR_OK);
    es_buf_t b = {0}, tar = {0};
    for (size_t i = 0; i < ES_ARRAY_SIZE(sizes); i++) {
        es_buf_clear(&b);
        for (size_t k = 0; k < sizes[i]; k++)
            es_buf_append(&b, (const char[]){(char)('a' + (k * 7 + i) % 26)}, 1);
        snprintf(path, sizeof(path), "%s/f%zu", src_dir, sizes[i]);
        save(path, &b);
    }
    es_ckpt_manifest_t m = {.generation = 1};
    snprintf(m.projection, sizeof(m.projection), "v");
    snprintf(m.format, sizeof(m.format), FORMAT);
    CU_ASSERT_EQUAL_FATAL(es_ckpt_manifest_list_files(&m, src_dir, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    es_ckpt_stream_t *s = es_ckpt_stream_new(src_dir, &m, false);
    char buf[333];
    for (uint64_t pos = 0; pos < es_ckpt_stream_size(s);) {
        ssize_t n = es_ckpt_stream_read(s, pos, buf, sizeof(buf));
        CU_ASSERT_FATAL(n > 0);
        es_buf_append(&tar, buf, (size_t)n);
        pos += (uint64_t)n;
    }
    es_ckpt_stream_destroy(s);
    snprintf(path, sizeof(path), "%s/files.tar", dir);
    save(path, &tar);
    snprintf(cmd, sizeof(cmd), "tar -xf '%s' -C '%s'", path, out_dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    for (size_t i = 0; i < ES_ARRAY_SIZE(sizes); i++) {
        snprintf(cmd, sizeof(cmd), "cmp -s '%s/f%zu' '%s/f%zu'", src_dir, sizes[i], out_dir,
                 sizes[i]);
        if (system(cmd) != 0)
            printf("\n    f%zu extracted differs", sizes[i]);
        CU_ASSERT_EQUAL(system(cmd), 0);
    }
    snprintf(cmd, sizeof(cmd),
             "TZ=UTC tar --numeric-owner -tvf '%s' | grep -c '^-rw-r--r-- 1000/1000 .* 1970-01-01 "
             "00:00 '",
             path);
    FILE *p = popen(cmd, "r");
    char line[64] = "";
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof(line), p));
    pclose(p);
    CU_ASSERT_EQUAL(strtol(line, NULL, 10), (long)ES_ARRAY_SIZE(sizes) + 1); /* and the manifest */
    es_ckpt_manifest_clear(&m);
    es_buf_free(&b);
    es_buf_free(&tar);
}

/* ------------------------------------------------- a peer that sends in pieces */

/*
 * One HTTP answer on a socket of its own: @p status and @p body, the body written in the
 * pieces between @p cuts (offsets into it) with a pause after each and TCP_NODELAY, so the
 * client's reads end where the pieces do, as a real peer's may end anywhere.  file://
 * hands the clone 16 KiB at a time, multiples of tar's 512-byte blocks: no read ever ended
 * inside an entry's padding, or right after its data.
 */
typedef struct {
    int fd, port, status;
    const es_buf_t *body;
    size_t cuts[256], ncuts;
    pthread_t thread;
} pieces_t;

static void *pieces_serve(void *arg)
{
    pieces_t *s = arg;
    struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
    /* a clone that never asks (refused before its download) must not hang the test */
    int c = poll(&pfd, 1, 10000) == 1 ? accept(s->fd, NULL, NULL) : -1;
    char req[4096];
    size_t got = 0;
    while (c >= 0 && got < sizeof(req) - 1) { /* the request's head: until the blank line */
        ssize_t n = recv(c, req + got, sizeof(req) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    if (c >= 0) {
        char head[200];
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                         s->status, s->body->len);
        send(c, head, (size_t)n, MSG_NOSIGNAL);
        size_t from = 0;
        for (size_t i = 0; i <= s->ncuts; i++) {
            size_t to = i < s->ncuts ? s->cuts[i] : s->body->len;
            if (to > from)
                send(c, s->body->data + from, to - from, MSG_NOSIGNAL);
            from = to > from ? to : from;
            usleep(3000);
        }
        close(c);
    }
    return NULL;
}

static void pieces_start(pieces_t *s, int status, const es_buf_t *body)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    s->status = status;
    s->body = body;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    CU_ASSERT_FATAL(s->fd >= 0 && bind(s->fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                    listen(s->fd, 1) == 0 && getsockname(s->fd, (struct sockaddr *)&a, &alen) == 0);
    s->port = ntohs(a.sin_port);
    CU_ASSERT_FATAL(pthread_create(&s->thread, NULL, pieces_serve, s) == 0);
}

/* Clone from @p s into <dir>/<name>; the result (the server's thread joined). */
static es_err_t clone_from(pieces_t *s, const char *name, const es_ckpt_expect_t *x)
{
    char url[100], target[400];
    es_ckpt_manifest_t m;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/admin/projections/v/checkpoint", s->port);
    snprintf(target, sizeof(target), "%s/%s", dir, name);
    es_err_t err = es_ckpt_clone(url, x, NULL, 10000, target, &m, errstr, sizeof(errstr));
    es_ckpt_manifest_clear(&m);
    pthread_join(s->thread, NULL);
    close(s->fd);
    return err;
}

/*
 * Over HTTP, with reads that end at every awkward place of every entry: inside its header,
 * right after it, in the middle of its data, right after its data (its padding still to come), one
 * byte into its padding, and one byte before the next header.  The clone installs the
 * store, digest equal.  A peer's refusal (409 and its JSON) is told with the status and
 * the body; nothing is installed.
 */
static void test_pieces_over_http(void)
{
    const char *topics[] = {"t.events"};
    es_ckpt_expect_t x = expect(topics, 1);
    pieces_t s = {.ncuts = 0};
    size_t ends_in_padding = 0;
    for (size_t off = 0; off + 512 <= stream.len && stream.data[off];) {
        size_t size = (size_t)strtoull(stream.data + off + 124, NULL, 8), data = off + 512;
        size_t next = data + (size + 511) / 512 * 512;
        size_t cuts[] = {off + 100, data, data + size / 2, data + size, data + size + 1, next - 1};
        for (size_t i = 0; i < ES_ARRAY_SIZE(cuts) && s.ncuts < ES_ARRAY_SIZE(s.cuts); i++) {
            if (cuts[i] > (s.ncuts ? s.cuts[s.ncuts - 1] : 0) && cuts[i] < next)
                s.cuts[s.ncuts++] = cuts[i];
        }
        ends_in_padding += next > data + size + 1;
        off = next;
    }
    CU_ASSERT_TRUE_FATAL(ends_in_padding >= 2); /* the stream has entries with padding */
    pieces_start(&s, 200, &stream);
    CU_ASSERT_EQUAL_FATAL(clone_from(&s, "pieces", &x), ES_ERR_OK);
    char path[400];
    snprintf(path, sizeof(path), "%s/pieces/g1", dir);
    es_store_opts_t so = {.block_cache_mb = 8, .write_buffer_mb = 4, .format = FORMAT};
    es_store_t *st = es_store_open(path, &so, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    es_store_digest_t d;
    CU_ASSERT_EQUAL(es_store_digest(st, &d, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(memcmp(&d, &digest, sizeof(d)), 0);
    es_store_close(st);

    static const char answer[] = "{\"error\":\"conflict\",\"message\":\"not in partitioned mode\"}";
    es_buf_t refusal = {0};
    es_buf_set(&refusal, answer, strlen(answer));
    pieces_t r = {.ncuts = 1, .cuts = {10}};
    pieces_start(&r, 409, &refusal);
    CU_ASSERT_EQUAL(clone_from(&r, "refused", &x), ES_ERR_HTTP);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, ": 409 {\"error\":\"conflict\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "not in partitioned mode"));
    CU_ASSERT_FALSE(installed("refused"));
    es_buf_free(&refusal);
}

/* The header of entry @p k (0: the manifest) of tar stream @p b, NULL past the last. */
static char *entry_header(const es_buf_t *b, int k)
{
    size_t off = 0;
    for (int i = 0; i < k && off < b->len; i++)
        off += 512 + (strtoull(b->data + off + 124, NULL, 8) + 511) / 512 * 512;
    return off < b->len && b->data[off] ? b->data + off : NULL;
}

/*
 * Every entry's data with one byte flipped, at its start, middle and end: each refused by the
 * manifest's checksum of that file, and nothing installed.  Before the checksums, a flip in
 * the OPTIONS file or in a table's first byte installed: RocksDB opened the copy and the
 * digest's scan read every key and value alike.
 */
static void test_flipped_data_bytes(void)
{
    const char *topics[] = {"t.events"};
    es_ckpt_expect_t x = expect(topics, 1);
    es_buf_t b = {0};
    char *h;
    for (int k = 1; (h = entry_header(&stream, k)); k++) {
        uint64_t size = strtoull(h + 124, NULL, 8);
        size_t data = (size_t)(h - stream.data) + 512;
        uint64_t at[] = {0, size / 2, size - 1};
        for (int i = 0; i < 3 && size; i++) {
            char name[32];
            snprintf(name, sizeof(name), "flip-%d-%d", k, i);
            es_buf_set(&b, stream.data, stream.len);
            b.data[data + at[i]] ^= 0x20;
            CU_ASSERT_EQUAL(clone_buf(&b, name, &x), ES_ERR_STORE);
            CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "damaged in transfer"));
            CU_ASSERT_PTR_NOT_NULL(strstr(errstr, h)); /* the header starts with the name */
            CU_ASSERT_FALSE(installed(name));
        }
    }
    es_buf_free(&b);
}

/*
 * A disk that fills up while the copy arrives, and one whose fsync or close fails:
 * the clone fails naming the file and the reason the system gave, leaves
 * neither its staging directory nor a live store, and the same clone
 * installs once the disk is well again.
 */
/* A clone into <dir>/@p name with *@p fault at @p armed fails with @p reason and leaves
 * nothing; with *@p fault back at @p off, the same clone installs. */
static void clone_under_fault(const char *name, long long *fault, long long armed, long long off,
                              const char *reason)
{
    const char *topics[] = {"t.events"};
    es_ckpt_expect_t x = expect(topics, 1);
    char staging[400];
    snprintf(staging, sizeof(staging), "%s/%s/%s", dir, name, ES_CKPT_STAGING);
    *fault = armed;
    es_err_t err = clone_buf(&stream, name, &x);
    *fault = off;
    CU_ASSERT_EQUAL(err, ES_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "write "));
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, reason));
    CU_ASSERT_FALSE(installed(name));
    CU_ASSERT_FALSE(es_test_exists(staging));
    CU_ASSERT_EQUAL(clone_buf(&stream, name, &x), ES_ERR_OK);
    CU_ASSERT_TRUE(installed(name));
}

static void test_disk_faults(void)
{
    /* no room, a byte, a block, half the copy (the files are most of the stream) */
    const long long rooms[] = {0, 1, 4096, (long long)stream.len / 2};
    for (size_t i = 0; i < ES_ARRAY_SIZE(rooms); i++) {
        char name[32];
        snprintf(name, sizeof(name), "full-%lld", rooms[i]);
        clone_under_fault(name, &staging_room, rooms[i], -1, ": No space left on device");
    }
    clone_under_fault("fsync-eio", &staging_fsync_errno, EIO, 0, ": Input/output error");
    clone_under_fault("close-eio", &staging_close_errno, EIO, 0, ": Input/output error");
}

/* ------------------------------------------------- hand-built hostile streams */

/* One ustar entry: @p name (cut at 100 bytes, no NUL then), type @p type, @p size bytes of
 * @p data, the header's checksum right, the data padded to a block. */
static void tar_entry(es_buf_t *b, const char *name, char type, const char *data, size_t size)
{
    char h[512] = {0};
    unsigned sum = 0;
    memcpy(h, name, strlen(name) < 100 ? strlen(name) : 100);
    snprintf(h + 100, 8, "%07o", 0644);
    snprintf(h + 108, 8, "%07o", 0);
    snprintf(h + 116, 8, "%07o", 0);
    snprintf(h + 124, 12, "%011llo", (unsigned long long)size);
    snprintf(h + 136, 12, "%011o", 0);
    h[156] = type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    for (int i = 0; i < 512; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    es_buf_append(b, h, sizeof(h));
    es_buf_append(b, data, size);
    static const char zeros[512];
    es_buf_append(b, zeros, (512 - size % 512) % 512);
}

static void tar_end(es_buf_t *b)
{
    static const char zeros[1024];
    es_buf_append(b, zeros, sizeof(zeros));
}

/* The real stream's entry @p k: its name and data (pointing into the stream). */
static const char *entry_data(int k, const char **name, size_t *size)
{
    const char *h = entry_header(&stream, k);
    *name = h;
    *size = (size_t)strtoull(h + 124, NULL, 8);
    return h + 512;
}

/* The real manifest, parsed for editing. */
static json_t *real_manifest(void)
{
    const char *name;
    size_t size;
    const char *data = entry_data(0, &name, &size);
    json_t *m = json_loadb(data, size, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    return m;
}

static void put_manifest(es_buf_t *b, json_t *m, char type)
{
    char *text = json_dumps(m, JSON_COMPACT);
    tar_entry(b, ES_CKPT_MANIFEST_NAME, type, text, strlen(text));
    free(text);
}

/* The real files from entry @p from on, as they were (entry 0 is the manifest). */
static void put_files(es_buf_t *b, int from)
{
    const char *name, *data;
    size_t size;
    for (int k = from; entry_header(&stream, k); k++) {
        data = entry_data(k, &name, &size);
        tar_entry(b, name, '0', data, size);
    }
}

/* Manifest @p m, then the first file's data sent as @p name of type @p type, then the rest. */
static void put_first_as(es_buf_t *b, json_t *m, const char *name, char type)
{
    const char *real, *data;
    size_t size;
    data = entry_data(1, &real, &size);
    put_manifest(b, m, '0');
    tar_entry(b, name, type, data, size);
    put_files(b, 2);
    tar_end(b);
}

/* Clone @p b into <dir>/<name>: refused with @p err, its message naming @p what, nothing
 * installed and nothing left in the staging directory or beside the target. */
static void expect_refused(es_buf_t *b, const char *name, es_err_t err, const char *what)
{
    const char *topics[] = {"t.events"};
    es_ckpt_expect_t x = expect(topics, 1);
    char path[400];
    struct stat sb;
    CU_ASSERT_EQUAL(clone_buf(b, name, &x), err);
    if (!strstr(errstr, what))
        printf("\n    %s: \"%s\" does not name \"%s\"", name, errstr, what);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, what));
    CU_ASSERT_FALSE(installed(name));
    snprintf(path, sizeof(path), "%s/%s/%s", dir, name, ES_CKPT_STAGING);
    CU_ASSERT_NOT_EQUAL(stat(path, &sb), 0);
    snprintf(path, sizeof(path), "%s/%s/evil", dir, name);
    CU_ASSERT_NOT_EQUAL(stat(path, &sb), 0);
    es_buf_clear(b);
}

/*
 * Streams a hostile or broken peer could send, each built entry by entry from the real
 * checkpoint's files and manifest: every one refused with its reason, nothing installed.
 * Among them manifests that lie about the copy (an offset, the digest's count or hash),
 * found only once the copy is opened, and one that reads a topic this replica does not.
 */
static void test_hostile_streams(void)
{
    es_buf_t b = {0};
    const char *name, *data;
    size_t size;
    json_t *m;

    /* the well-built copy of the real stream installs: the builder itself is right */
    m = real_manifest();
    put_manifest(&b, m, '0');
    put_files(&b, 1);
    tar_end(&b);
    const char *topics[] = {"t.events"};
    es_ckpt_expect_t x = expect(topics, 1);
    CU_ASSERT_EQUAL(clone_buf(&b, "rebuilt", &x), ES_ERR_OK);
    CU_ASSERT_TRUE(installed("rebuilt"));
    es_buf_clear(&b);

    /* a path the manifest lists too: the name itself is refused */
    data = entry_data(1, &name, &size);
    json_t *files = json_object_get(m, "files");
    json_t *f0 = json_array_get(files, 0);
    CU_ASSERT_STRING_EQUAL_FATAL(json_string_value(json_object_get(f0, "name")), name);
    json_object_set_new(f0, "name", json_string("../evil"));
    put_first_as(&b, m, "../evil", '0');
    expect_refused(&b, "path", ES_ERR_STORE, "carries file ../evil");
    json_object_set_new(f0, "name", json_string(".hidden")); /* a leading dot */
    put_first_as(&b, m, ".hidden", '0');
    expect_refused(&b, "dot", ES_ERR_STORE, "carries file .hidden");
    json_decref(m);

    /* a symbolic link (type 2), and a name of 100 bytes with no NUL, both listed */
    m = real_manifest();
    data = entry_data(1, &name, &size);
    put_first_as(&b, m, name, '2');
    expect_refused(&b, "link", ES_ERR_STORE, "bad tar header");
    char long_name[101]; /* the manifest lists 99 bytes; the header's field holds 100, no NUL */
    memset(long_name, 'a', 100);
    long_name[99] = '\0';
    f0 = json_array_get(json_object_get(m, "files"), 0);
    json_object_set_new(f0, "name", json_string(long_name));
    long_name[99] = 'a';
    long_name[100] = '\0';
    put_first_as(&b, m, long_name, '0');
    expect_refused(&b, "long", ES_ERR_STORE, "bad tar header");
    json_decref(m);

    /* a file twice, a file missing, a file of another size than listed */
    m = real_manifest();
    put_manifest(&b, m, '0');
    put_files(&b, 1);
    tar_entry(&b, name, '0', data, size);
    tar_end(&b);
    expect_refused(&b, "twice", ES_ERR_STORE, "or twice");
    put_manifest(&b, m, '0');
    put_files(&b, 2);
    tar_end(&b);
    expect_refused(&b, "missing", ES_ERR_STORE, "lacks file");
    put_manifest(&b, m, '0');
    tar_entry(&b, name, '0', data, size - 1);
    put_files(&b, 2);
    tar_end(&b);
    expect_refused(&b, "size", ES_ERR_STORE, "not list with that size");

    /* the manifest not first, or a link; an entry after the first zero block */
    put_files(&b, 1);
    put_manifest(&b, m, '0');
    tar_end(&b);
    expect_refused(&b, "order", ES_ERR_STORE, "does not start with " ES_CKPT_MANIFEST_NAME);
    put_manifest(&b, m, '2');
    put_files(&b, 1);
    tar_end(&b);
    expect_refused(&b, "mlink", ES_ERR_STORE, "bad tar header");
    put_manifest(&b, m, '0');
    put_files(&b, 2);
    es_buf_append(&b, (const char[512]){0}, 512);
    tar_entry(&b, name, '0', data, size);
    tar_end(&b);
    expect_refused(&b, "after-end", ES_ERR_STORE, "bad tar header");

    /* the manifest's offsets or digest not the copy's: found after the files, in the copy */
    json_t *off0 = json_array_get(json_object_get(m, "offsets"), 0);
    json_object_set_new(off0, "next", json_integer(4001));
    put_manifest(&b, m, '0');
    put_files(&b, 1);
    tar_end(&b);
    expect_refused(&b, "offset", ES_ERR_STORE,
                   "offset of t.events/0 is 4000, its manifest says 4001");
    json_object_set_new(off0, "next", json_integer(4000));
    json_t *dg = json_object_get(m, "digest");
    json_object_set_new(dg, "view_keys", json_integer(4999));
    put_manifest(&b, m, '0');
    put_files(&b, 1);
    tar_end(&b);
    expect_refused(&b, "digest", ES_ERR_STORE, "damaged in transfer");
    json_object_set_new(dg, "view_keys", json_integer(5000));
    json_object_set_new(dg, "views_fnv1a64", json_string("0123456789abcdef"));
    put_manifest(&b, m, '0');
    put_files(&b, 1);
    tar_end(&b);
    expect_refused(&b, "digest2", ES_ERR_STORE, "damaged in transfer");
    json_decref(m);

    /* the manifest reads a topic besides this replica's (listed first): refused before any
     * file; and a replica of two topics refuses a checkpoint of one */
    m = real_manifest();
    json_array_insert_new(
        json_object_get(m, "offsets"), 0,
        json_pack("{s:s, s:i, s:i}", "topic", "u.events", "partition", 0, "next", 7));
    put_manifest(&b, m, '0');
    put_files(&b, 1);
    tar_end(&b);
    expect_refused(&b, "extra-topic", ES_ERR_CONF,
                   "the checkpoint reads topic u.events, which this replica does not");
    json_decref(m);
    m = real_manifest();
    put_manifest(&b, m, '0');
    put_files(&b, 1);
    tar_end(&b);
    const char *two[] = {"t.events", "u.events"};
    es_ckpt_expect_t x2 = expect(two, 2);
    CU_ASSERT_EQUAL(clone_buf(&b, "fewer-topics", &x2), ES_ERR_CONF);
    CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "has no offsets of topic u.events"));
    CU_ASSERT_FALSE(installed("fewer-topics"));
    es_buf_clear(&b);
    json_decref(m);

    /*
     * File names: letters, digits, '.', '_' and '-' only.  A name of every edge of those
     * ranges installs (RocksDB ignores a file it does not know); a name with the byte just
     * past any edge is refused.
     */
    static const char *const outside[] = {"a/b", "a:b", "a@b", "a[b", "a`b", "a{b", "a b", "a+b"};
    for (size_t i = 0; i <= ES_ARRAY_SIZE(outside); i++) {
        const char *extra = i < ES_ARRAY_SIZE(outside) ? outside[i] : "az_AZ-09.x";
        char target[32];
        m = real_manifest();
        json_array_append_new(
            json_object_get(m, "files"),
            json_pack("{s:s, s:i, s:s}", "name", extra, "size", 2, "fnv1a64", "08ba5f07b55ec3da"));
        put_manifest(&b, m, '0');
        put_files(&b, 1);
        tar_entry(&b, extra, '0', "hi", 2);
        tar_end(&b);
        json_decref(m);
        snprintf(target, sizeof(target), "name-%zu", i);
        if (i < ES_ARRAY_SIZE(outside)) {
            char why[64];
            snprintf(why, sizeof(why), "carries file %s", extra);
            expect_refused(&b, target, ES_ERR_STORE, why);
        } else {
            CU_ASSERT_EQUAL(clone_buf(&b, target, &x), ES_ERR_OK);
            CU_ASSERT_TRUE(installed(target));
            es_buf_clear(&b);
        }
    }

    /* every file, but no end of the archive */
    m = real_manifest();
    put_manifest(&b, m, '0');
    put_files(&b, 1);
    expect_refused(&b, "no-end", ES_ERR_STORE, "ended early");
    json_decref(m);

    /* a manifest of exactly its limit (the real one, then spaces JSON allows) installs */
    m = real_manifest();
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    char *padded = malloc(ES_CKPT_MANIFEST_MAX);
    CU_ASSERT_PTR_NOT_NULL_FATAL(padded);
    memset(padded, ' ', ES_CKPT_MANIFEST_MAX);
    memcpy(padded, text, strlen(text));
    free(text);
    tar_entry(&b, ES_CKPT_MANIFEST_NAME, '0', padded, ES_CKPT_MANIFEST_MAX);
    free(padded);
    put_files(&b, 1);
    tar_end(&b);
    CU_ASSERT_EQUAL(clone_buf(&b, "at-limit", &x), ES_ERR_OK);
    CU_ASSERT_TRUE(installed("at-limit"));
    es_buf_clear(&b);

    /* a manifest past its limit is refused from its header, before it is buffered */
    char *big = calloc(1, ES_CKPT_MANIFEST_MAX + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, ' ', ES_CKPT_MANIFEST_MAX + 1);
    tar_entry(&b, ES_CKPT_MANIFEST_NAME, '0', big, ES_CKPT_MANIFEST_MAX + 1);
    free(big);
    tar_end(&b);
    expect_refused(&b, "big", ES_ERR_STORE, "does not start with " ES_CKPT_MANIFEST_NAME);
    es_buf_free(&b);
}

int main(void)
{
    es_test_unique("/tmp/escqrs-test-checkpoint", dir, sizeof(dir));
    es_fs_mkdirs(dir, errstr, sizeof(errstr));
    snprintf(src, sizeof(src), "%s/src", dir);
    snprintf(tarpath, sizeof(tarpath), "%s/stream.tar", dir);
    static const es_test_case_t cases[] = {
        {"a checkpoint streamed and cloned equals its store", test_round_trip},
        {"hostile, damaged and foreign streams install nothing", test_refusals},
        {"a byte flipped in any file's data installs nothing", test_flipped_data_bytes},
        {"a full disk, a failing fsync or close installs nothing", test_disk_faults},
        {"hand-built hostile streams install nothing", test_hostile_streams},
        {"over HTTP, reads ending anywhere in an entry; a peer's refusal", test_pieces_over_http},
        {"every field of a manifest at its edges", test_manifest_fields},
        {"the serving side lists a checkpoint's files with their checksums", test_list_files},
        {"the stream is a tar GNU tar extracts byte for byte", test_stream_is_tar},
        {NULL, NULL},
    };
    int rc = es_test_run("checkpoint", cases);
    es_buf_free(&stream);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir); /* the clones and a 16 MiB stream */
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
