/*
 * checkpoint.c — replicas from checkpoints: a projection's checkpoint,
 * served to a new replica (GET /admin/projections/{name}/checkpoint), and
 * a new replica's start from a peer's (`bootstrap.from`).
 *
 * Why the checkpoint is consistent: RocksDB's checkpoint holds exactly the
 * batches written before it began, and a loop writes a projection's views
 * and the offsets they reflect in one batch (loop.c), so the offsets read
 * back from the copy describe the copy, whatever the live loop does
 * meanwhile.  It is taken under the runner's read lock, so no rebuild swaps
 * (and closes) the live store while RocksDB links its files; the lock is
 * not held while the copy is read and sent.  The copy lives in
 * <dir>/checkpoint-<n>/ (hard links to the live table files: no space but
 * the memtable's flush) until the answer is sent, abandoned or the server
 * stops; a crash leaves it to the next start (gen.c removes it).
 *
 * The manifest (escqrs/checkpoint.h) is computed from the copy itself: its
 * offsets per partition of every topic of the runner and its digest, the
 * same FNV-1a numbers as GET .../digest; a peer's answer is one block of
 * JSON then the files, streamed as the socket drains.
 *
 * A new replica (`bootstrap.from`, or `escqrs clone` before the start):
 * used only when the runner's directory has no live store yet; the clone is
 * verified before it is installed (checkpoint_clone.c), and the live loop
 * then starts from the copy's offsets as after a restart.  A refused or
 * failed clone is logged and the replica builds from offset 0: a replica is
 * never stuck on an unreachable or incompatible peer.
 */
#include "projector.h"

#include "escqrs/checkpoint.h"
#include "escqrs/fs.h"
#include "escqrs/log.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <string.h>

#define LOG "projector"

/* Checkpoint directories of one process are numbered apart. */
static atomic_uint checkpoint_seq;

/* The manifest of the copy in @p cdir: offsets of every partition, digest, files. */
static es_err_t describe_copy(pj_runner_t *r, const char *cdir, int generation,
                              es_ckpt_manifest_t *m, char *errstr, size_t errstr_size)
{
    es_store_opts_t so = r->store_opts;
    es_store_t *st = NULL;
    so.read_only = true;
    es_err_t err = es_store_open_err(cdir, &so, &st, errstr, errstr_size);
    if (err)
        return err;
    snprintf(m->projection, sizeof(m->projection), "%s", r->def->name);
    snprintf(m->format, sizeof(m->format), "%s", PJ_STORE_FORMAT);
    m->generation = generation;
    m->created_ms = es_now_ms();
    for (size_t t = 0; t < r->ntopics; t++)
        m->noffsets += (size_t)r->nparts[t];
    m->offsets = es_calloc(m->noffsets + 1, sizeof(*m->offsets));
    size_t i = 0;
    for (size_t t = 0; t < r->ntopics && !err; t++) {
        for (int p = 0; p < r->nparts[t] && !err; p++, i++) {
            es_ckpt_offset_t *o = &m->offsets[i];
            snprintf(o->topic, sizeof(o->topic), "%s", r->topic[t]);
            o->partition = p;
            err = es_store_get_offset(st, r->topic[t], p, &o->next, errstr, errstr_size);
            if (err == ES_ERR_NOT_FOUND) {
                o->next = -1;
                err = ES_ERR_OK;
            }
        }
    }
    if (!err)
        err = es_store_digest(st, &m->digest, errstr, errstr_size);
    es_store_close(st);
    if (!err)
        err = es_ckpt_manifest_list_files(m, cdir, errstr, errstr_size);
    return err;
}

/* A RocksDB checkpoint of the live store into @p cdir; *generation is the live one's. */
static es_err_t take_copy(pj_runner_t *r, const char *cdir, int *generation, char *errstr,
                          size_t errstr_size)
{
    es_err_t err;
    pj_rwlock_rdlock(&r->lock); /* no swap while RocksDB links the files */
    *generation = r->generation;
    if (r->live_read_only) {
        snprintf(errstr, errstr_size, "%s is open read-only (waiting for disk space)",
                 r->def->name);
        err = ES_ERR_NO_SPACE;
    } else {
        err = es_store_checkpoint(pj_runner_live(r), cdir, errstr, errstr_size);
    }
    pj_rwlock_unlock(&r->lock);
    return err;
}

void pj_checkpoint_serve(pj_runner_t *r, es_http_resp_t *resp)
{
    char cdir[PJ_PATH_MAX], errstr[PJ_ERRSTR_MAX], why[PJ_ERRSTR_MAX];
    es_ckpt_manifest_t m = {0};
    int generation = 0;
    pj_assert_unlocked(&r->mu);
    snprintf(cdir, sizeof(cdir), "%s/%s%u", r->dir, PJ_CHECKPOINT_PREFIX,
             atomic_fetch_add(&checkpoint_seq, 1));
    es_fs_remove_flat_dir(cdir, why, sizeof(why)); /* a leftover of an earlier process */
    es_err_t err = take_copy(r, cdir, &generation, errstr, sizeof(errstr));
    if (!err)
        err = describe_copy(r, cdir, generation, &m, errstr, sizeof(errstr));
    if (err) {
        es_fs_remove_flat_dir(cdir, why, sizeof(why));
        es_ckpt_manifest_clear(&m);
        es_http_resp_error(resp, err == ES_ERR_NO_SPACE ? 503 : 500,
                           err == ES_ERR_NO_SPACE ? "unavailable" : "internal",
                           "checkpoint of %s: %s", r->def->name, errstr);
        return;
    }
    es_ckpt_stream_t *s = es_ckpt_stream_new(cdir, &m, true);
    es_log_info(LOG,
                "%s: serving a checkpoint of generation %d (%lld view keys, %zu files, %llu "
                "bytes)",
                r->def->name, generation, (long long)m.digest.view_keys, m.nfiles,
                (unsigned long long)es_ckpt_stream_size(s));
    es_http_resp_stream(resp, 200, ES_CKPT_CONTENT_TYPE, es_ckpt_stream_size(s),
                        es_ckpt_stream_read, es_ckpt_stream_destroy, s);
    es_ckpt_manifest_clear(&m);
}

json_t *pj_digest_json(const char *name, int generation, const es_store_digest_t *d)
{
    json_t *o = es_ckpt_digest_json(d);
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "generation", json_integer(generation));
    return o;
}

/* Sum of the next offsets in @p m (-1: none), for the log line. */
static long long offsets_total(const es_ckpt_manifest_t *m)
{
    long long n = 0;
    for (size_t i = 0; i < m->noffsets; i++)
        n += m->offsets[i].next > 0 ? m->offsets[i].next : 0;
    return n;
}

void pj_checkpoint_bootstrap(pj_runner_t *r)
{
    es_conf_t *conf = r->pj->conf;
    const char *from = es_conf_get(conf, "bootstrap.from");
    const char *topics[ES_PROJ_MAX_AGGREGATES];
    char url[PJ_PATH_MAX], errstr[PJ_REASON_MAX];
    es_ckpt_manifest_t m;
    if (!from || !*from)
        return;
    size_t n = strlen(from);
    snprintf(url, sizeof(url), "%.*s/admin/projections/%s/checkpoint",
             (int)(n && from[n - 1] == '/' ? n - 1 : n), from, r->def->name);
    for (size_t t = 0; t < r->ntopics; t++)
        topics[t] = r->topic[t];
    es_ckpt_expect_t x = {.projection = r->def->name,
                          .format = PJ_STORE_FORMAT,
                          .topics = topics,
                          .ntopics = r->ntopics};
    es_http_client_opts_t opts = {.bearer_token = es_conf_get(conf, "bootstrap.token"),
                                  .ca_file = es_conf_get(conf, "bootstrap.tls.ca.file")};
    int64_t t0 = es_mono_ms();
    pj_runner_set_state(r, PJ_STARTING, "cloning a checkpoint from %s", url);
    es_err_t err = es_ckpt_clone(url, &x, &opts, (int)es_conf_get_int(conf, "bootstrap.stall.ms"),
                                 r->dir, &m, errstr, sizeof(errstr));
    if (err == ES_ERR_STATE) {
        es_log_debug(LOG, "%s: not cloned: %s", r->def->name, errstr);
        return;
    }
    if (err) {
        es_log_warn(LOG,
                    "%s: cannot start from the checkpoint at %s (%s: %s): building from "
                    "offset 0 instead",
                    r->def->name, url, es_err2name(err), errstr);
        return;
    }
    es_log_info(LOG,
                "%s: cloned from %s in %lld ms: generation %d of the peer, %lld view keys, "
                "%lld events below its offsets; catching up from there",
                r->def->name, url, (long long)(es_mono_ms() - t0), m.generation,
                (long long)m.digest.view_keys, offsets_total(&m));
    es_ckpt_manifest_clear(&m);
}
