/*
 * frozen.c — frozen views: the projection as of a timestamp, for audits.
 *
 * A frozen view is built by the ordinary consume loop (loop.c, with a
 * `pj_frozen_t` attached) from offset 0 into <dir>/frozen-<label>/, applying
 * per partition the records up to the first one stamped after `until` or up
 * to the high watermark seen when the build began (es_proj_until_stop).
 * When every partition has stopped, the final offsets are in the store and a
 * FROZEN marker (JSON) is written last, with a rename: a directory without
 * it is an interrupted build and is deleted at the next start, like an
 * orphan generation.  A complete view is never written again and never
 * swapped in; queries reach it with `view=<label>`.
 *
 * This file holds the bookkeeping around the loop: labels, the marker,
 * re-opening views at start-up, deleting them, and their JSON for the admin
 * API.
 */
#include "projector.h"

#include "escqrs/log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG "projector"

/* @p ms as UTC, RFC 3339 or compact (no ':', for directory names), then ".mmmZ". */
static void format_utc_ms(int64_t ms, bool compact, char *out, size_t outsz)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = compact ? strftime(out, outsz, "%Y%m%dT%H%M%S", &tm)
                       : strftime(out, outsz, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outsz - n, ".%03dZ", (int)(ms % 1000));
}

void pj_format_time(int64_t ms, char *out, size_t outsz)
{
    format_utc_ms(ms, false, out, outsz);
}

bool pj_frozen_label_ok(const char *label)
{
    size_t n = strlen(label);
    if (n == 0 || n >= 64 || label[0] == '.')
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
    format_utc_ms(until_ms, true, out, outsz);
}

pj_frozen_t *pj_frozen_new(pj_runner_t *r, const char *label, int64_t until_ms)
{
    pj_frozen_t *fz = es_calloc(1, sizeof(*fz));
    snprintf(fz->label, sizeof(fz->label), "%s", label);
    snprintf(fz->dir, sizeof(fz->dir), "%s/frozen-%s", r->dir, label);
    fz->until_ms = until_ms;
    fz->state = PJ_FZ_BUILDING;
    fz->lag = -1;
    fz->started_ms = pj_now_ms();
    for (size_t t = 0; t < r->ntopics; t++) {
        fz->high[t] = es_calloc((size_t)r->nparts[t], sizeof(int64_t));
        fz->final[t] = es_calloc((size_t)r->nparts[t], sizeof(int64_t));
        for (int p = 0; p < r->nparts[t]; p++)
            fz->high[t][p] = fz->final[t][p] = -1;
    }
    return fz;
}

void pj_frozen_free(pj_runner_t *r, pj_frozen_t *fz)
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

es_err_t pj_frozen_write_marker(pj_runner_t *r, pj_frozen_t *fz, char *errstr, size_t errstr_size)
{
    char tmp[700], path[700], until[40], fin[40];
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
        snprintf(errstr, errstr_size, "write %s: %s", path, strerror(errno));
        return ES_ERR_IO;
    }
    return ES_ERR_OK;
}

void pj_frozen_remove_dir(const char *dir)
{
    char path[1100], errstr[256];
    snprintf(path, sizeof(path), "%s/FROZEN", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/FROZEN.tmp", dir);
    unlink(path);
    es_store_destroy_path(dir, errstr, sizeof(errstr));
    rmdir(dir);
}

/* Re-open one complete view from its marker; false when it is not complete. */
static bool load_one(pj_runner_t *r, const char *label, const char *dir)
{
    char path[1100], errstr[512];
    snprintf(path, sizeof(path), "%s/FROZEN", dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j)
        return false;
    pj_frozen_t *fz = pj_frozen_new(r, label, json_integer_value(json_object_get(j, "until_ms")));
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
    fz->st = es_store_open(dir, &r->pj->store_opts, errstr, sizeof(errstr));
    if (!fz->st || r->nfrozen == PJ_MAX_FROZEN) {
        es_log_error(LOG, "%s: frozen view %s not served: %s", r->def->name, label,
                     fz->st ? "too many frozen views" : errstr);
        es_store_close(fz->st);
        pj_frozen_free(r, fz);
        return true; /* complete: kept on disk */
    }
    fz->state = PJ_FZ_READY;
    r->frozen[r->nfrozen++] = fz;
    es_log_info(LOG, "%s: frozen view %s (until %lld, %lld events) re-opened", r->def->name, label,
                (long long)fz->until_ms, (long long)fz->events);
    return true;
}

es_err_t pj_frozen_load(pj_runner_t *r, char *errstr, size_t errstr_size)
{
    DIR *d = opendir(r->dir);
    struct dirent *e;
    char dir[1024];
    if (!d) {
        snprintf(errstr, errstr_size, "opendir %s: %s", r->dir, strerror(errno));
        return ES_ERR_IO;
    }
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "frozen-", 7) != 0)
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", r->dir, e->d_name);
        if (!pj_frozen_label_ok(e->d_name + 7) || !load_one(r, e->d_name + 7, dir)) {
            pj_frozen_remove_dir(dir);
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
    pthread_mutex_lock(&r->mu);
    bool valid = fz->thread_valid;
    pthread_t th = fz->thread;
    fz->thread_valid = false;
    pthread_mutex_unlock(&r->mu);
    if (valid)
        pthread_join(th, NULL);
}

es_err_t pj_frozen_delete(pj_runner_t *r, const char *label, char *errstr, size_t errstr_size)
{
    pthread_rwlock_wrlock(&r->lock);
    pj_frozen_t *fz = NULL;
    for (size_t i = 0; i < r->nfrozen && !fz; i++) {
        if (strcmp(r->frozen[i]->label, label) == 0) {
            fz = r->frozen[i];
            memmove(&r->frozen[i], &r->frozen[i + 1], (r->nfrozen - i - 1) * sizeof(fz));
            r->nfrozen--;
        }
    }
    pthread_rwlock_unlock(&r->lock);
    if (!fz) {
        snprintf(errstr, errstr_size, "%s has no frozen view %s", r->def->name, label);
        return ES_ERR_NOT_FOUND;
    }
    stop_build(r, fz); /* an unfinished build removes its own directory */
    if (fz->st) {
        es_store_close(fz->st);
        fz->st = NULL;
        pj_frozen_remove_dir(fz->dir);
    }
    es_log_info(LOG, "%s: frozen view %s deleted", r->def->name, label);
    pj_frozen_free(r, fz);
    return ES_ERR_OK;
}

void pj_frozen_close_all(pj_runner_t *r)
{
    for (size_t i = 0; i < r->nfrozen; i++) {
        pj_frozen_t *fz = r->frozen[i];
        stop_build(r, fz);
        es_store_close(fz->st);
        pj_frozen_free(r, fz);
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
    pthread_rwlock_rdlock(&r->lock);
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->nfrozen; i++) {
        pj_frozen_t *fz = r->frozen[i];
        char until[40];
        pj_format_time(fz->until_ms, until, sizeof(until));
        int64_t elapsed = (fz->finished_ms ? fz->finished_ms : pj_now_ms()) - fz->started_ms;
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
    pthread_mutex_unlock(&r->mu);
    pthread_rwlock_unlock(&r->lock);
    return arr;
}
