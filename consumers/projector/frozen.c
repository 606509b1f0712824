/*
 * frozen.c — frozen views: the projection as of a timestamp, for audits.
 *
 * A frozen view is built by the ordinary consume loop (loop.c) in the
 * frozen mode below, from offset 0 into <dir>/frozen-<label>/:
 *
 *  - when it starts, it captures every partition's high watermark;
 *  - per partition it applies the records up to the first one stamped after
 *    `until` (es_proj_until_stop: the first later record ends the
 *    partition, which is then paused) or up to the captured high watermark;
 *    when idle, the consumer's position counts too (transaction markers are
 *    never delivered);
 *  - when every partition has stopped, the final offsets are written into
 *    the store, then a FROZEN marker (JSON; temporary file, fsync, rename).
 *    A directory without it is an interrupted build and is deleted at the
 *    next start, like an orphan generation.  A complete view is never
 *    written again and never swapped in; queries reach it with
 *    `view=<label>`.
 *
 * Isolation: a frozen loop has its own store and consumer; it never touches
 * the live store, the applied offsets, the committed Kafka offsets or a
 * rebuild.  An error (or on_error=halt on a poison event) fails only the
 * view: state failed with the reason, its directory deleted, the projection
 * keeps running (the halting rule in projector.h).  Its DLQ sends are
 * deduplicated like the live loop's (dlq.c).
 *
 * Also here, the bookkeeping around the loop: labels, the marker,
 * re-opening views at start-up, deleting them, their JSON for the admin API.
 */
#include "loop.h"

#include "escqrs/util.h"
#include "escqrs/log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG "projector"

void pj_format_time(int64_t ms, char *out, size_t outsz)
{
    es_format_utc_ms(ms, false, out, outsz);
}

bool pj_frozen_label_ok(const char *label)
{
    size_t n = strlen(label);
    if (n == 0 || n >= PJ_LABEL_MAX || label[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = label[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

void pj_frozen_default_label(int64_t until_ms, char *out, size_t outsz)
{
    es_format_utc_ms(until_ms, true, out, outsz);
}

/* New view (state BUILDING, no store), sized for @p r's partitions. */
static pj_frozen_t *frozen_new(pj_runner_t *r, const char *label, int64_t until_ms)
{
    pj_frozen_t *fz = es_calloc(1, sizeof(*fz));
    snprintf(fz->label, sizeof(fz->label), "%s", label);
    snprintf(fz->dir, sizeof(fz->dir), "%s/frozen-%s", r->dir, label);
    fz->until_ms = until_ms;
    fz->state = PJ_FZ_BUILDING;
    fz->lag = -1;
    fz->started_ms = es_now_ms();
    for (size_t t = 0; t < r->ntopics; t++) {
        fz->high[t] = es_calloc((size_t)r->nparts[t], sizeof(int64_t));
        fz->final[t] = es_calloc((size_t)r->nparts[t], sizeof(int64_t));
        for (int p = 0; p < r->nparts[t]; p++)
            fz->high[t][p] = fz->final[t][p] = -1;
    }
    return fz;
}

/* Free @p fz (its store must be closed). */
static void frozen_free(pj_runner_t *r, pj_frozen_t *fz)
{
    if (!fz)
        return;
    for (size_t t = 0; t < r->ntopics; t++) {
        free(fz->high[t]);
        free(fz->final[t]);
    }
    free(fz);
}

pj_frozen_t *pj_frozen_find(pj_runner_t *r, const char *label)
{
    pj_assert_locked(&r->lock);
    for (size_t i = 0; i < r->nfrozen; i++) {
        if (strcmp(r->frozen[i]->label, label) == 0)
            return r->frozen[i];
    }
    return NULL;
}

static json_t *offsets_json(pj_runner_t *r, pj_frozen_t *fz)
{
    json_t *arr = json_array();
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++)
            json_array_append_new(arr,
                                  json_pack("{s:s, s:i, s:I}", "topic", r->topic[t], "partition", p,
                                            "offset", (json_int_t)fz->final[t][p]));
    }
    return arr;
}

/* Write the FROZEN marker of a complete view (temporary file, fsync, rename). */
static es_err_t write_marker(pj_runner_t *r, pj_frozen_t *fz, char *errstr, size_t errstr_size)
{
    char tmp[PJ_FILE_MAX], path[PJ_FILE_MAX], until[PJ_TIME_MAX], fin[PJ_TIME_MAX];
    pj_format_time(fz->until_ms, until, sizeof(until));
    pj_format_time(fz->finished_ms, fin, sizeof(fin));
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:o, s:I, s:I, s:s, s:I}", "projection",
                          r->def->name, "label", fz->label, "until_ms", (json_int_t)fz->until_ms,
                          "until", until, "offsets", offsets_json(r, fz), "events",
                          (json_int_t)fz->events, "started_ms", (json_int_t)fz->started_ms,
                          "finished_at", fin, "finished_ms", (json_int_t)fz->finished_ms);
    snprintf(tmp, sizeof(tmp), "%s/FROZEN.tmp", fz->dir);
    snprintf(path, sizeof(path), "%s/FROZEN", fz->dir);
    FILE *f = fopen(tmp, "w");
    int bad = !f || json_dumpf(j, f, JSON_INDENT(2)) != 0 || fputc('\n', f) == EOF ||
              fflush(f) != 0 || fsync(fileno(f)) != 0;
    json_decref(j);
    if (f && fclose(f) != 0)
        bad = 1;
    if (bad || rename(tmp, path) != 0) {
        /* %.400s: the message is bounded by the caller's buffer anyway */
        snprintf(errstr, errstr_size, "write %.400s: %s", path, strerror(errno));
        return ES_ERR_IO;
    }
    return ES_ERR_OK;
}

/* Remove a view's directory (marker first, then the RocksDB files). */
static void remove_dir(const char *dir)
{
    char path[PJ_FILE_MAX], errstr[256];
    snprintf(path, sizeof(path), "%s/FROZEN", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/FROZEN.tmp", dir);
    unlink(path);
    es_store_destroy_path(dir, errstr, sizeof(errstr));
    rmdir(dir);
}

/* Add @p fz to @p r's views; false when PJ_MAX_FROZEN are there.  Locks: `lock` for writing. */
static bool frozen_add(pj_runner_t *r, pj_frozen_t *fz)
{
    pj_assert_write_locked(&r->lock);
    if (r->nfrozen == PJ_MAX_FROZEN)
        return false;
    r->frozen[r->nfrozen++] = fz;
    return true;
}

/* --------------------------------------------------------- the frozen mode */

/* The high watermarks the build stops at (empty partitions are done). */
static es_err_t frozen_capture(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    pj_frozen_t *fz = l->mode;
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++) {
            int64_t lo = -1, hi = -1;
            rd_kafka_resp_err_t kerr = rd_kafka_query_watermark_offsets(
                es_consumer_rk(l->cons), r->topic[t], p, &lo, &hi, PJ_METADATA_TIMEOUT_MS);
            if (kerr || hi < 0) {
                snprintf(l->errstr, sizeof(l->errstr), "watermarks of %s/%d: %s", r->topic[t], p,
                         rd_kafka_err2str(kerr));
                return ES_ERR_KAFKA;
            }
            pj_mutex_lock(&r->mu);
            fz->high[t][p] = hi;
            fz->final[t][p] = hi == 0 ? 0 : -1;
            pj_mutex_unlock(&r->mu);
        }
    }
    return ES_ERR_OK;
}

static bool frozen_start_failed(pj_loop_t *l, int attempt)
{
    pj_frozen_t *fz = l->mode;
    return pj_loop_give_up(l, attempt, fz->error, sizeof(fz->error));
}

static void frozen_started(pj_loop_t *l)
{
    pj_frozen_t *fz = l->mode;
    es_log_info(LOG, "%s: frozen loop started for view %s (until %lld)", l->r->def->name, fz->label,
                (long long)fz->until_ms);
}

/* Fold @p m unless its partition is complete or it ends the partition (then paused). */
static bool frozen_admit(pj_loop_t *l, size_t t, const rd_kafka_message_t *m)
{
    pj_runner_t *r = l->r;
    pj_frozen_t *fz = l->mode;
    rd_kafka_timestamp_type_t tstype;
    if (fz->final[t][m->partition] >= 0)
        return false; /* this partition of the frozen view is complete */
    int64_t stop = es_proj_until_stop(m->offset, rd_kafka_message_timestamp(m, &tstype),
                                      fz->until_ms, fz->high[t][m->partition]);
    if (stop < 0)
        return true;
    pj_mutex_lock(&r->mu);
    fz->final[t][m->partition] = stop;
    pj_mutex_unlock(&r->mu);
    pj_consumer_pause(l, t, m->partition, true); /* nothing more is read there */
    return false;
}

/*
 * The batch was dropped (a DLQ flush failed): a partition whose stop was
 * found in it is not complete in the store (stored before the stop), so it
 * is read again from the stored offset and its stop found again.  A stop
 * past the stored offset only because transaction markers lie between is
 * found again the same way.
 */
static void frozen_dropped(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    pj_frozen_t *fz = l->mode;
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++) {
            if (fz->final[t][p] < 0 || fz->final[t][p] <= l->stored[t][p])
                continue;
            pj_mutex_lock(&r->mu);
            fz->final[t][p] = -1;
            pj_mutex_unlock(&r->mu);
            pj_consumer_pause(l, t, p, false);
        }
    }
}

/* A frozen build fails only itself. */
static void frozen_halt(pj_loop_t *l, const char *msg)
{
    pj_frozen_t *fz = l->mode;
    pj_mutex_lock(&l->r->mu);
    snprintf(fz->error, sizeof(fz->error), "%s", msg);
    pj_mutex_unlock(&l->r->mu);
    es_log_error(LOG, "%s: frozen view %s failed: %s", l->r->def->name, fz->label, msg);
}

static void frozen_waits(pj_loop_t *l, pj_state_t why, bool first)
{
    if (first)
        es_log_warn(LOG, "%s: %s loop waits: %s", l->r->def->name, l->ops->kind, l->errstr);
}

static void frozen_written(pj_loop_t *l, const pj_batch_t *b)
{
    pj_frozen_t *fz = l->mode;
    pj_mutex_lock(&l->r->mu);
    fz->events += b->applied;
    pj_mutex_unlock(&l->r->mu);
}

/*
 * After a batch: partitions whose next offset (or, when the queue is idle,
 * the consumer's position: transaction markers are never delivered) reached
 * the captured high watermark are done.  Returns true when all are.
 */
static bool frozen_all_stopped(pj_loop_t *l, bool idle)
{
    pj_runner_t *r = l->r;
    pj_frozen_t *fz = l->mode;
    rd_kafka_topic_partition_list_t *pos = idle ? pj_consumer_positions(l) : NULL;
    bool done = true;
    int64_t lag = 0;
    pj_mutex_lock(&r->mu);
    for (size_t t = 0; t < r->ntopics; t++) {
        for (int p = 0; p < r->nparts[t]; p++) {
            if (fz->final[t][p] >= 0)
                continue;
            int64_t at = l->stored[t][p];
            rd_kafka_topic_partition_t *e =
                pos ? rd_kafka_topic_partition_list_find(pos, r->topic[t], p) : NULL;
            if (e && e->offset > at)
                at = e->offset;
            if (at >= fz->high[t][p]) {
                fz->final[t][p] = fz->high[t][p];
            } else {
                done = false;
                lag += fz->high[t][p] - at;
            }
        }
    }
    fz->lag = lag;
    pj_mutex_unlock(&r->mu);
    if (pos)
        rd_kafka_topic_partition_list_destroy(pos);
    return done;
}

/* Every partition stopped: record the final offsets, then the marker. */
static es_err_t frozen_complete(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    pj_frozen_t *fz = l->mode;
    es_batch_t *b = l->batch;
    es_err_t err;
    es_batch_clear(b);
    for (size_t t = 0; t < r->ntopics; t++)
        for (int p = 0; p < r->nparts[t]; p++)
            es_batch_put_offset(b, r->topic[t], p, fz->final[t][p]);
    if ((err = es_store_write(l->st, b, l->errstr, sizeof(l->errstr))))
        return err;
    es_batch_clear(b);
    pj_mutex_lock(&r->mu);
    fz->finished_ms = es_now_ms();
    fz->lag = 0;
    pj_mutex_unlock(&r->mu);
    if ((err = write_marker(r, fz, l->errstr, sizeof(l->errstr))))
        return err;
    pj_mutex_lock(&r->mu);
    fz->state = PJ_FZ_READY;
    pj_mutex_unlock(&r->mu);
    es_log_info(LOG, "%s: frozen view %s ready: %lld events up to %lld in %.1f s", r->def->name,
                fz->label, (long long)fz->events, (long long)fz->until_ms,
                (double)(fz->finished_ms - fz->started_ms) / 1000.0);
    return ES_ERR_OK;
}

static bool frozen_step(pj_loop_t *l, const pj_batch_t *b)
{
    if (l->halted || !frozen_all_stopped(l, b->n <= 0))
        return false;
    if (frozen_complete(l)) {
        char msg[PJ_ERRSTR_MAX];
        snprintf(msg, sizeof(msg), "finish: %.500s", l->errstr);
        frozen_halt(l, msg);
    }
    return true;
}

/* An unfinished frozen view is dropped; it stays listed as failed. */
static void frozen_finish(pj_loop_t *l)
{
    pj_runner_t *r = l->r;
    pj_frozen_t *fz = l->mode;
    pj_mutex_lock(&r->mu);
    bool ready = fz->state == PJ_FZ_READY;
    pj_mutex_unlock(&r->mu);
    if (ready)
        return;
    es_store_close(l->st);
    remove_dir(fz->dir);
    pj_mutex_lock(&r->mu);
    fz->st = NULL;
    fz->state = PJ_FZ_FAILED;
    fz->finished_ms = es_now_ms();
    if (!fz->error[0])
        snprintf(fz->error, sizeof(fz->error), "stopped before it was complete");
    pj_mutex_unlock(&r->mu);
}

static const pj_loop_ops_t frozen_ops = {
    .kind = "frozen",
    .opened = frozen_capture,
    .start_failed = frozen_start_failed,
    .started = frozen_started,
    .admit = frozen_admit,
    .dropped = frozen_dropped,
    .halt = frozen_halt,
    .waits = frozen_waits,
    .written = frozen_written,
    .step = frozen_step,
    .finish = frozen_finish,
    .advance_idle = false,
};

/* A new view's store and build thread.  Locks: `lock` for writing. */
static es_err_t freeze_locked(pj_runner_t *r, const char *label, int64_t until_ms, char *errstr,
                              size_t errstr_size)
{
    pj_assert_write_locked(&r->lock);
    pj_frozen_t *fz = frozen_new(r, label, until_ms);
    remove_dir(fz->dir); /* a leftover of a crash */
    fz->st = es_store_open(fz->dir, &r->store_opts, errstr, errstr_size);
    if (!fz->st) {
        frozen_free(r, fz);
        return ES_ERR_STORE;
    }
    pj_loop_t *l = pj_loop_new(r, &frozen_ops, fz->st, 0);
    l->mode = fz;
    l->cancel = &fz->cancel;
    pj_mutex_lock(&r->mu);
    if (!pj_loop_spawn(l, &fz->thread)) {
        pj_mutex_unlock(&r->mu);
        pj_loop_free(l);
        es_store_close(fz->st);
        remove_dir(fz->dir);
        frozen_free(r, fz);
        snprintf(errstr, errstr_size, "cannot start the frozen build thread");
        return ES_ERR_STATE;
    }
    fz->thread_valid = true;
    frozen_add(r, fz); /* room checked by the caller */
    pj_mutex_unlock(&r->mu);
    return ES_ERR_OK;
}

es_err_t pj_freeze_start(pj_runner_t *r, const char *label, int64_t until_ms, char *errstr,
                         size_t errstr_size)
{
    es_err_t err = ES_ERR_STATE;
    pj_assert_unlocked(&r->lock);
    pj_assert_unlocked(&r->mu);
    pj_rwlock_wrlock(&r->lock);
    if (pj_frozen_find(r, label))
        snprintf(errstr, errstr_size, "%s already has a frozen view %s", r->def->name, label);
    else if (r->nfrozen == PJ_MAX_FROZEN)
        snprintf(errstr, errstr_size, "%s has %d frozen views already: delete one", r->def->name,
                 PJ_MAX_FROZEN);
    else
        err = freeze_locked(r, label, until_ms, errstr, errstr_size);
    pj_rwlock_unlock(&r->lock);
    if (!err)
        es_log_info(LOG, "%s: frozen view %s until %lld started", r->def->name, label,
                    (long long)until_ms);
    return err;
}

/* ------------------------------------------------------ views on the disk */

/* Re-open one complete view from its marker; false when it is not complete. */
static bool load_one(pj_runner_t *r, const char *label, const char *dir)
{
    char path[PJ_FILE_MAX], errstr[PJ_ERRSTR_MAX];
    snprintf(path, sizeof(path), "%s/FROZEN", dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j)
        return false;
    pj_frozen_t *fz = frozen_new(r, label, json_integer_value(json_object_get(j, "until_ms")));
    fz->events = json_integer_value(json_object_get(j, "events"));
    fz->started_ms = json_integer_value(json_object_get(j, "started_ms"));
    fz->finished_ms = json_integer_value(json_object_get(j, "finished_ms"));
    fz->lag = 0;
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(j, "offsets"), i, o)
    {
        const char *topic = json_string_value(json_object_get(o, "topic"));
        int p = (int)json_integer_value(json_object_get(o, "partition"));
        for (size_t t = 0; t < r->ntopics; t++) {
            if (topic && strcmp(topic, r->topic[t]) == 0 && p >= 0 && p < r->nparts[t])
                fz->final[t][p] = json_integer_value(json_object_get(o, "offset"));
        }
    }
    json_decref(j);
    fz->st = es_store_open(dir, &r->store_opts, errstr, sizeof(errstr));
    fz->state = PJ_FZ_READY;
    pj_rwlock_wrlock(&r->lock);
    bool added = fz->st && frozen_add(r, fz);
    pj_rwlock_unlock(&r->lock);
    if (!added) {
        es_log_error(LOG, "%s: frozen view %s not served: %s", r->def->name, label,
                     fz->st ? "too many frozen views" : errstr);
        es_store_close(fz->st);
        frozen_free(r, fz);
        return true; /* complete: kept on disk */
    }
    es_log_info(LOG, "%s: frozen view %s (until %lld, %lld events) re-opened", r->def->name, label,
                (long long)fz->until_ms, (long long)fz->events);
    return true;
}

es_err_t pj_frozen_load(pj_runner_t *r, char *errstr, size_t errstr_size)
{
    DIR *d = opendir(r->dir);
    struct dirent *e;
    char dir[PJ_PATH_MAX];
    if (!d) {
        snprintf(errstr, errstr_size, "opendir %s: %s", r->dir, strerror(errno));
        return ES_ERR_IO;
    }
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "frozen-", 7) != 0)
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", r->dir, e->d_name);
        if (!pj_frozen_label_ok(e->d_name + 7) || !load_one(r, e->d_name + 7, dir)) {
            remove_dir(dir);
            es_log_info(LOG, "%s: removed incomplete frozen view %s", r->def->name, dir);
        }
    }
    closedir(d);
    return ES_ERR_OK;
}

/* Stop a view's build (if any) and wait for its thread. */
static void stop_build(pj_runner_t *r, pj_frozen_t *fz)
{
    atomic_store(&fz->cancel, true);
    pj_runner_join(r, &fz->thread, &fz->thread_valid);
}

es_err_t pj_frozen_delete(pj_runner_t *r, const char *label, char *errstr, size_t errstr_size)
{
    pj_assert_unlocked(&r->lock);
    pj_assert_unlocked(&r->mu);
    pj_rwlock_wrlock(&r->lock);
    pj_frozen_t *fz = NULL;
    for (size_t i = 0; i < r->nfrozen && !fz; i++) {
        if (strcmp(r->frozen[i]->label, label) == 0) {
            fz = r->frozen[i];
            memmove(&r->frozen[i], &r->frozen[i + 1], (r->nfrozen - i - 1) * sizeof(fz));
            r->nfrozen--;
        }
    }
    pj_rwlock_unlock(&r->lock);
    if (!fz) {
        snprintf(errstr, errstr_size, "%s has no frozen view %s", r->def->name, label);
        return ES_ERR_NOT_FOUND;
    }
    stop_build(r, fz); /* an unfinished build removes its own directory */
    if (fz->st) {
        es_store_close(fz->st);
        fz->st = NULL;
        remove_dir(fz->dir);
    }
    es_log_info(LOG, "%s: frozen view %s deleted", r->def->name, label);
    frozen_free(r, fz);
    return ES_ERR_OK;
}

void pj_frozen_close_all(pj_runner_t *r)
{
    pj_assert_unlocked(&r->mu);
    for (size_t i = 0; i < r->nfrozen; i++) {
        pj_frozen_t *fz = r->frozen[i];
        stop_build(r, fz);
        es_store_close(fz->st);
        frozen_free(r, fz);
    }
    r->nfrozen = 0;
}

static const char *state_name(pj_fz_state_t s)
{
    return s == PJ_FZ_READY ? "ready" : s == PJ_FZ_FAILED ? "failed" : "building";
}

json_t *pj_frozen_json(pj_runner_t *r)
{
    json_t *arr = json_array();
    pj_assert_unlocked(&r->lock);
    pj_assert_unlocked(&r->mu);
    pj_rwlock_rdlock(&r->lock);
    pj_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->nfrozen; i++) {
        pj_frozen_t *fz = r->frozen[i];
        char until[PJ_TIME_MAX];
        pj_format_time(fz->until_ms, until, sizeof(until));
        int64_t elapsed = (fz->finished_ms ? fz->finished_ms : es_now_ms()) - fz->started_ms;
        double rate = elapsed > 0 ? (double)fz->events * 1000.0 / (double)elapsed : 0;
        json_array_append_new(
            arr, json_pack("{s:s, s:I, s:s, s:s, s:I, s:I, s:f, s:f, s:I, s:I, s:s, s:o}", "label",
                           fz->label, "until_ms", (json_int_t)fz->until_ms, "until", until, "state",
                           state_name(fz->state), "events", (json_int_t)fz->events, "lag",
                           (json_int_t)fz->lag, "events_per_second", rate, "eta_seconds",
                           rate > 0 && fz->lag >= 0 ? (double)fz->lag / rate : -1.0, "started_ms",
                           (json_int_t)fz->started_ms, "finished_ms", (json_int_t)fz->finished_ms,
                           "error", fz->error, "offsets", offsets_json(r, fz)));
    }
    pj_mutex_unlock(&r->mu);
    pj_rwlock_unlock(&r->lock);
    return arr;
}
