/**
 * @file checkpoint.h
 * @brief A store's checkpoint on the wire: its manifest, the stream a
 *        projector serves, and the clone a new replica installs from it.
 *
 * The stream is a POSIX tar (ustar) archive, so `curl ... | tar x` reads it
 * too: first `escqrs-checkpoint.json` (the manifest below), then every file
 * of the RocksDB checkpoint, then the two zero blocks that end a tar.  Its
 * length is known before the first byte (Content-Length), so a cut transfer
 * is an error, never a short store.
 *
 * The manifest says what the checkpoint is: the projection, the store's
 * format record, the offsets stored in it (the next offset of every
 * partition it reflects), the digest of its contents (es_store_digest(): the
 * same numbers as GET /admin/projections/{name}/digest) and its files with
 * their sizes and checksums.  A clone checks it twice: before any file is
 * written (another projection, another format, other topics: refused at
 * once) and after the last one (every file there with its size and
 * checksum, the copy opens with the expected format, its offsets and its
 * digest equal the manifest's).  Only then is
 * it installed as the live generation.
 *
 * Layering: uses store.h, fs.h and http_client.h; the projector (serving,
 * `bootstrap.from`) and the CLI (`escqrs clone`) use it.
 */
#ifndef ESCQRS_CHECKPOINT_H
#define ESCQRS_CHECKPOINT_H

#include "escqrs/err.h"
#include "escqrs/http_client.h"
#include "escqrs/store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/** The layout of escqrs-projector's stores (their format record): the
 *  projector writes it, a clone of a projector's checkpoint expects it. */
#define ES_PROJECTOR_STORE_FORMAT "escqrs-projector/1"

#define ES_CKPT_MANIFEST_NAME "escqrs-checkpoint.json" /**< the stream's first entry */
#define ES_CKPT_VERSION       2 /**< the manifest's layout (2: files carry their checksums) */
#define ES_CKPT_STAGING       "clone.tmp" /**< a clone being downloaded, in the runner's dir */
#define ES_CKPT_NAME_MAX      100         /**< a file name in the stream (ustar's field) */
#define ES_CKPT_TOPIC_MAX     250         /**< a topic name and its NUL */
#define ES_CKPT_FIELD_MAX     128         /**< a projection name, a format */
#define ES_CKPT_MAX_FILES     100000      /**< files in one checkpoint */
#define ES_CKPT_MAX_OFFSETS   (64 * 1024) /**< partitions in one manifest */
#define ES_CKPT_MANIFEST_MAX  (16u << 20) /**< bytes of a manifest */
#define ES_CKPT_CONTENT_TYPE  "application/x-tar"

/** The next offset of one partition, as stored in the checkpoint. */
typedef struct es_ckpt_offset_s {
    char topic[ES_CKPT_TOPIC_MAX];
    int32_t partition;
    int64_t next; /**< -1: the store holds no offset for it (nothing applied) */
} es_ckpt_offset_t;

/** One file of the checkpoint. */
typedef struct es_ckpt_file_s {
    char name[ES_CKPT_NAME_MAX];
    uint64_t size;
    uint64_t fnv1a64; /**< es_fnv1a64() of its bytes: the digest sees only what RocksDB reads */
} es_ckpt_file_t;

typedef struct es_ckpt_manifest_s {
    char projection[ES_CKPT_FIELD_MAX];
    char format[ES_CKPT_FIELD_MAX]; /**< the store's format record ("escqrs-projector/1") */
    int generation;                 /**< of the peer's live store it was taken from */
    int64_t created_ms;
    es_store_digest_t digest;
    es_ckpt_offset_t *offsets;
    size_t noffsets;
    es_ckpt_file_t *files;
    size_t nfiles;
} es_ckpt_manifest_t;

/** @brief The digest as JSON: {"view_keys","views_fnv1a64","offset_keys","offsets_fnv1a64"}. */
json_t *es_ckpt_digest_json(const es_store_digest_t *d);
/** @brief The manifest as JSON (es_ckpt_manifest_parse() reads it back). */
json_t *es_ckpt_manifest_json(const es_ckpt_manifest_t *m);
/**
 * @brief Parse manifest @p text; ES_ERR_DECODE naming the field that is
 *        missing or wrong, ES_ERR_CONF for a manifest of another version
 *        (ES_CKPT_VERSION; both named).  Free with es_ckpt_manifest_clear().
 */
es_err_t es_ckpt_manifest_parse(const char *text, size_t len, es_ckpt_manifest_t *m, char *errstr,
                                size_t errstr_size);
/** @brief Free the arrays of @p m and zero it. */
void es_ckpt_manifest_clear(es_ckpt_manifest_t *m);
/** @brief Fill m->files with the regular files of @p dir, their sizes and checksums (every
 *         file is read once). */
es_err_t es_ckpt_manifest_list_files(es_ckpt_manifest_t *m, const char *dir, char *errstr,
                                     size_t errstr_size);

/* ------------------------------------------------------ serving a stream */

typedef struct es_ckpt_stream_s es_ckpt_stream_t;

/**
 * @brief The tar stream of checkpoint directory @p dir with manifest @p m
 *        (its file list included: es_ckpt_manifest_list_files()).  Files are
 *        read as the stream is, a block at a time: no file is loaded whole.
 * @param remove_dir remove @p dir (a flat directory) when the stream is destroyed.
 */
es_ckpt_stream_t *es_ckpt_stream_new(const char *dir, const es_ckpt_manifest_t *m, bool remove_dir);
/** @brief Bytes of the whole stream. */
uint64_t es_ckpt_stream_size(const es_ckpt_stream_t *s);
/**
 * @brief Up to @p max bytes of the stream from @p pos (consecutive calls go
 *        on where the last ended); the number written, or -1 on a read
 *        error.  The signature of libmicrohttpd's content reader.
 */
ssize_t es_ckpt_stream_read(void *stream, uint64_t pos, char *buf, size_t max);
/** @brief Close the stream (and remove its directory if asked); NULL is a no-op. */
void es_ckpt_stream_destroy(void *stream);

/* -------------------------------------------------------------- cloning */

/** What a clone must find in the manifest; NULL fields are not checked. */
typedef struct es_ckpt_expect_s {
    const char *projection;
    const char *format;        /**< the store format this program reads */
    const char *const *topics; /**< the topics this replica reads, in any order */
    size_t ntopics;
} es_ckpt_expect_t;

/**
 * @brief Download the checkpoint at @p url (the checkpoint endpoint of a
 *        peer's admin listener, or a file:// URL of a saved stream) into
 *        `<dir>/clone.tmp`, verify it (see the top of this file) and install
 *        it as generation 1 of runner directory @p dir (CURRENT written
 *        last, crash-safely).  Nothing is installed unless every check
 *        passed; the staging directory is removed on failure.
 * @param m      set to the manifest on ES_ERR_OK (es_ckpt_manifest_clear()).
 * @param stall_ms the transfer fails when no byte came for this long.
 * @returns ES_ERR_STATE when @p dir already has a live store (CURRENT names
 *          a generation that exists); ES_ERR_CONF when the checkpoint is not
 *          one this replica may use (another projection, store format or
 *          topics: errstr names both sides); ES_ERR_STORE when the copy does
 *          not verify (a digest, an offset or a file that differs: a damaged
 *          transfer); ES_ERR_HTTP when the peer did not answer 200 (errstr
 *          has its status and message) or the transfer failed; ES_ERR_IO.
 */
es_err_t es_ckpt_clone(const char *url, const es_ckpt_expect_t *expect,
                       const es_http_client_opts_t *opts, int stall_ms, const char *dir,
                       es_ckpt_manifest_t *m, char *errstr, size_t errstr_size);

#endif
