/*
 * catchup.c — on every partition assignment, the store is brought up to the end of <agg>.events
 * before anything of the partition is decided.
 *
 * Why: the store is a cache of the log.  After a crash between a commit and the store write,
 * after another owner wrote the partition, or with a lost store, the events topic holds states
 * the store does not.
 *
 * A store that knows nothing of the partition (no stored events offset: an empty store, a pod
 * rescheduled with an emptyDir) is first restored from <agg>.state (read_committed, to its end;
 * state.c says why that is every aggregate as of the last transaction it shows when the
 * partition has its baseline marker), and then only the events after the largest events offset
 * the restored states reflect are read: the work follows the live aggregates, not the length of
 * the history.  Without a marker (topics older than <agg>.state) the events are read from
 * offset 0, and the partition is marked for a baseline.  With `state.restore=false` the
 * decisions are restored all the same (the outcome records and windows: no event holds a
 * rejection) and the events are read from offset 0, each restored aggregate's state computed
 * again from its first event by the module's evolve (a fixed evolve, a state topic not
 * trusted).
 *
 * A store that knows the partition first reads <agg>.state [p] after the offset it keeps for it
 * (the state tail, state_tail()): another owner's records, with the rejected outcomes no event
 * carries.
 *
 * Reading the events (read_committed) from the stored offset to its end rebuilds the states and
 * the accepted outcomes of the commands whose events it finds, so a client retry of such a
 * command still gets its first outcome and writes nothing.  This runs inside the rebalance
 * callback, so no command of the partition is polled before it ends; its length is bounded by
 * `max.poll.interval.ms` (docs/write-side.md, "State restore").  A failure marks the clients
 * for re-creation (the new consumer's assignment catches up again); so does a catch-up that
 * gets neither a record nor the end for `catchup.stall.timeout.ms`, because librdkafka's
 * fetcher can stop for good after a broker restart and the end it waits for would never come
 * (es_consumer_next_to_end()).
 */
#include "service_int.h"

#include "escqrs/log.h"
#include "escqrs/record.h"
#include "escqrs/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define CATCHUP_WRITE_EVERY 2000 /* events applied between store writes: bounded memory */

/* The accepted outcome of the command of an event, completed by it. */
static es_err_t remember_event(cs_t *cs, rd_kafka_message_t *m, avro_value_t *v, agg_ent_t *a,
                               bool forgotten, const char *agg_id, const char *cmd_id,
                               const char *type, int64_t version, int64_t occurred, char *errstr,
                               size_t errstr_size)
{
    idem_ent_t *e;
    es_err_t err;
    if ((err = cs_idem_load(cs, agg_id, cmd_id, &e, errstr, errstr_size)))
        return err;
    if (!e && forgotten)
        return ES_ERR_OK; /* its outcome left the window: kept, no window would forget it */
    if (!e) {
        e = cs_idem_insert(cs, agg_id, cmd_id, 0);
        snprintf(e->o.command_id, sizeof(e->o.command_id), "%s", cmd_id);
        snprintf(e->o.aggregate_id, sizeof(e->o.aggregate_id), "%s", agg_id);
        e->o.status = ES_OUTCOME_ACCEPTED;
        e->o.actual_version = version - 1;
    } else if (e->o.status != ES_OUTCOME_ACCEPTED || e->o.version >= version ||
               e->o.nevents == ES_AGG_MAX_EVENTS) {
        return ES_ERR_OK; /* its outcome already covers this event */
    }
    e->dirty = true;
    snprintf(e->o.events[e->o.nevents].type, sizeof(e->o.events[0].type), "%s", type);
    e->o.events[e->o.nevents++].version = version;
    e->o.version = version;
    snprintf(e->o.position, sizeof(e->o.position), "%d:%" PRId64, (int)m->partition, m->offset);
    e->o.processed_at = occurred;
    es_principal_get(v, e->o.principal, sizeof(e->o.principal), e->o.principal_client,
                     sizeof(e->o.principal_client));
    /* Its id joins the aggregate's window of remembered outcomes: the owner that
     * decided it wrote its outcome record, and this one tombstones it once the
     * window moves past it (state.c). */
    if (a)
        cs_state_note_outcome(cs, a, agg_id, cmd_id);
    return ES_ERR_OK;
}

/* Apply one committed event to the overlay; @p reevolve: the restored states are
 * computed again from their first event (state.restore=false, catch_up()). */
static es_err_t catchup_apply(cs_t *cs, rd_kafka_message_t *m, bool reevolve, char *errstr,
                              size_t errstr_size)
{
    avro_value_t *v, pl;
    const char *agg_id, *cmd_id, *type;
    int64_t version = 0, occurred = 0;
    agg_ent_t *a;
    es_err_t err;
    if ((err = es_serde_decode(cs->ev_serde, m->payload, m->len, &v, errstr, errstr_size)) ||
        (err = es_record_string(v, cs->def->id_field, &agg_id, NULL, errstr, errstr_size)) ||
        (err = es_record_string(v, "command_id", &cmd_id, NULL, errstr, errstr_size)) ||
        (err = es_record_long(v, "version", &version, errstr, errstr_size)) ||
        (err = es_record_long(v, "occurred_at", &occurred, errstr, errstr_size)) ||
        (err = es_record_payload(v, &pl, &type, errstr, errstr_size)))
        return err;
    if (!es_command_id_valid(agg_id) || !es_command_id_valid(cmd_id)) {
        snprintf(errstr, errstr_size, "event at %d:%" PRId64 " has an invalid id", m->partition,
                 m->offset);
        return ES_ERR_DECODE;
    }
    if ((err = cs_agg_load(cs, agg_id, &a, errstr, errstr_size)))
        return err;
    bool newer = version > a->version;
    if (newer) { /* else already in the stored or restored state */
        if (version != a->version + 1)
            es_log_warn("command-service", "aggregate %s: event version %" PRId64 " after %" PRId64,
                        agg_id, version, a->version);
        if ((err = cs->def->evolve(a->state, type, &pl, errstr, errstr_size)))
            return err;
        a->version = version;
    } else if (reevolve) { /* its version, window and outcomes stay the restored ones */
        if (version == 1)
            memset(a->state, 0, cs->def->state_size);
        if ((err = cs->def->evolve(a->state, type, &pl, errstr, errstr_size)))
            return err;
        a->dirty = true;
    }
    /* its last event where new topics put it (a migration, operations.md): decided there */
    if (newer || (version == a->version && a->partition != m->partition)) {
        a->ev_offset = m->offset;
        a->partition = m->partition;
        a->dirty = true;
    }
    /* Its command's outcome, unless it left the window: a state restored without it
     * (older than the outcomes its record carries) still answers a retry of it.  Only a
     * newer event's joins the window, at its newest end: an older one's outcome is in
     * the window already or older than all of it (a replay from 0 after a restore that
     * found no baseline marker would otherwise push the restored window out of order).
     * An older one not in the store left the window when it is older than the state's
     * last state.commands.remembered * ES_AGG_MAX_EVENTS versions (a window holds that
     * many commands, each of at most that many events); a newer one may lack its outcome record
     * (written with state.commands.remembered=0, or before outcome records had keys of
     * their own) and is kept. */
    bool forgotten = !newer && cs->remember_max &&
                     version <= a->version - (int64_t)cs->remember_max * ES_AGG_MAX_EVENTS;
    return remember_event(cs, m, v, newer ? a : NULL, forgotten, agg_id, cmd_id, type, version,
                          occurred, errstr, errstr_size);
}

/* The next message of the catch-up consumer: NULL at the partition's end or on a
 * failure (@p errstr names the partition and its position when it stalled). */
static rd_kafka_message_t *catchup_next(cs_t *cs, es_err_t *err, char *errstr, size_t errstr_size)
{
    rd_kafka_message_t *m = NULL;
    es_err_t e = es_consumer_next_to_end(cs->catchup, cs->stop, cs->catchup_stall_ms, &m, errstr,
                                         errstr_size);
    if (e)
        *err = e;
    return m;
}

/*
 * Read partition @p p of <agg>.events from @p start to its end into the store.
 * With @p reevolve the writes along the way carry no events offset: a state
 * half computed again must never be taken for the one of its version, so a
 * crash before the end leaves a store without the offset, restored again.
 */
static es_err_t catchup_read(cs_t *cs, int32_t p, int64_t start, const char *from, bool reevolve,
                             char *errstr, size_t errstr_size)
{
    int64_t t0 = es_mono_ms(), next = -1;
    size_t applied = 0, since_write = 0;
    es_err_t err = ES_ERR_OK;
    rd_kafka_message_t *m;
    cs_overlay_clear(cs);
    while ((m = catchup_next(cs, &err, errstr, errstr_size))) {
        err = catchup_apply(cs, m, reevolve, errstr, errstr_size);
        next = m->offset + 1;
        rd_kafka_message_destroy(m);
        if (err)
            break;
        applied++;
        if (++since_write >= CATCHUP_WRITE_EVERY) { /* bounded memory: write as we go */
            if ((err = cs_overlay_write(cs, &p, &next, reevolve ? 0 : 1, errstr, errstr_size)))
                break;
            cs_overlay_clear(cs);
            since_write = 0;
        }
    }
    if (!err && next >= 0)
        err = cs_overlay_write(cs, &p, &next, 1, errstr, errstr_size);
    cs_overlay_clear(cs);
    es_counter_add(cs->c_caught_up_events, (double)applied);
    if (!err)
        es_log_info("command-service",
                    "caught up %s [%d]: %zu event(s) from %s %" PRId64 " in %" PRId64 " ms",
                    cs->t_ev, p, applied, from, start < 0 ? 0 : start, es_mono_ms() - t0);
    return err;
}

/* Assign the catch-up consumer to partition @p p of @p topic from @p start. */
static es_err_t catchup_assign(cs_t *cs, const char *topic, int32_t p, int64_t start, char *errstr,
                               size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, topic, p)->offset = start;
    rd_kafka_resp_err_t kerr = rd_kafka_assign(es_consumer_rk(cs->catchup), tl);
    rd_kafka_topic_partition_list_destroy(tl);
    if (kerr) {
        snprintf(errstr, errstr_size, "catch-up assign %s [%d]: %s", topic, p,
                 rd_kafka_err2str(kerr));
        return ES_ERR_KAFKA;
    }
    return ES_ERR_OK;
}

/* The first and next offsets of partition @p p of @p topic, asked of the broker. */
static es_err_t watermarks(cs_t *cs, const char *topic, int32_t p, int64_t *lo, int64_t *hi,
                           char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t kerr = rd_kafka_query_watermark_offsets(es_consumer_rk(cs->catchup), topic,
                                                                p, lo, hi, ES_KAFKA_TIMEOUT_MS);
    if (kerr) {
        snprintf(errstr, errstr_size, "offsets of %s [%d]: %s", topic, (int)p,
                 rd_kafka_err2str(kerr));
        return ES_ERR_KAFKA;
    }
    return ES_ERR_OK;
}

typedef struct restore_s {
    bool marker;        /* the partition's baseline marker was read */
    int64_t next_ev;    /* the first events offset no restored state reflects */
    int64_t next_state; /* the offset after the last record read */
    size_t nrecords;    /* state records applied */
    int64_t commands;   /* the last record's commands offset (-1: none read) */
} restore_t;

/* Apply partition @p p of <agg>.state, from its beginning to its end, to the store. */
static es_err_t restore_read(cs_t *cs, int32_t p, restore_t *r, char *errstr, size_t errstr_size)
{
    es_err_t err = ES_ERR_OK;
    size_t since_write = 0;
    rd_kafka_message_t *m;
    cs_overlay_clear(cs);
    while ((m = catchup_next(cs, &err, errstr, errstr_size))) {
        int64_t evoff = -1;
        bool marker = false;
        err = m->len ? cs_state_apply(cs, m, &evoff, &marker, errstr, errstr_size) : ES_ERR_OK;
        r->next_state = m->offset + 1;
        int64_t commands = cs_commands_offset_of(m); /* tombstones carry it too */
        r->commands = commands >= 0 ? commands : r->commands;
        rd_kafka_message_destroy(m);
        if (err)
            break;
        r->marker |= marker;
        /* a state reflects its last event; the marker, the events before its offset */
        int64_t next = marker ? evoff : evoff + 1;
        if (next > r->next_ev)
            r->next_ev = next;
        r->nrecords += !marker;
        if (++since_write >= CATCHUP_WRITE_EVERY) { /* bounded memory; no offset yet */
            if ((err = cs_overlay_write(cs, NULL, NULL, 0, errstr, errstr_size)))
                break;
            cs_overlay_clear(cs);
            since_write = 0;
        }
    }
    /* r->next_state: after the last record read, never the high watermark (it may
     * have moved past a transaction opened since the end was read) */
    return err;
}

/*
 * Read <agg>.state [p] from @p from to its end into the store, with the
 * baseline note when the marker was read, the offset the next state tail
 * starts at, the commands offset the last transaction read committed (kept
 * like the store's own: a group offset behind it was moved back, whichever
 * owner decided there; check_partition) and (@p marked_events: a restore) the
 * events offset the marker covers.
 */
static es_err_t state_read(cs_t *cs, int32_t p, int64_t from, bool marked_events, restore_t *r,
                           char *errstr, size_t errstr_size)
{
    es_err_t err = catchup_assign(cs, cs->t_state, p, from, errstr, errstr_size);
    if (!err)
        err = restore_read(cs, p, r, errstr, errstr_size);
    rd_kafka_assign(es_consumer_rk(cs->catchup), NULL);
    if (!err) {
        es_batch_t *batch = es_batch_new();
        size_t nev = marked_events && r->marker ? 1 : 0;
        if (r->marker)
            cs_state_baseline_mark(batch, p);
        if (r->next_state >= 0)
            es_batch_put_offset(batch, cs->t_state, p, r->next_state);
        if (r->commands >= 0)
            es_batch_put_offset(batch, cs->t_cmd, p, r->commands);
        err = cs_overlay_write_with(cs, batch, &p, &r->next_ev, nev, errstr, errstr_size);
        es_batch_destroy(batch);
    }
    cs_overlay_clear(cs);
    return err;
}

/*
 * Restore an empty store's partition @p p from <agg>.state.  With the marker,
 * the store gets the events offset to go on from in the same write as the last
 * states; without it, what was read is kept (true states) but *start stays at
 * the beginning of the events.  With state.restore=false the decisions are
 * restored all the same (outcome records, windows, the commands offset: no
 * event holds a rejection), but *start stays at the beginning and no events
 * offset is written: the states are computed again from the events.
 */
static es_err_t restore(cs_t *cs, int32_t p, int64_t *start, bool *read_commands, char *errstr,
                        size_t errstr_size)
{
    restore_t r = {.next_ev = 0, .next_state = -1, .commands = -1};
    int64_t t0 = es_mono_ms();
    es_err_t err =
        state_read(cs, p, RD_KAFKA_OFFSET_BEGINNING, cs->restore_enabled, &r, errstr, errstr_size);
    if (err)
        return err;
    es_counter_add(cs->c_restored_states, (double)r.nrecords);
    if (r.marker && cs->restore_enabled)
        *start = r.next_ev;
    *read_commands = r.commands >= 0;
    es_log_info("command-service", "restored %s [%d]: %zu state record(s) in %" PRId64 " ms; %s",
                cs->t_state, p, r.nrecords, es_mono_ms() - t0,
                !cs->restore_enabled ? "state.restore=false: their states are computed again "
                                       "from the events from offset 0"
                : r.marker           ? "the events after the states follow"
                                     : "no baseline marker: the events are read from offset 0");
    return ES_ERR_OK;
}

/* Can the restored states of partition @p p be computed again (*@p reevolve)?  Only
 * from every aggregate's first event: not when the log no longer starts at 0. */
static es_err_t can_reevolve(cs_t *cs, int32_t p, bool *reevolve, char *errstr, size_t errstr_size)
{
    int64_t lo = -1, hi = -1;
    es_err_t err = watermarks(cs, cs->t_ev, p, &lo, &hi, errstr, errstr_size);
    if (err)
        return err;
    *reevolve = lo == 0;
    if (lo > 0)
        es_log_warn("command-service",
                    "%s [%d] starts at offset %" PRId64 ", not 0: the states restored from %s "
                    "are kept as they are (state.restore=false computes them again only from "
                    "each aggregate's first event)",
                    cs->t_ev, (int)p, lo, cs->t_state);
    return ES_ERR_OK;
}

/*
 * The state tail: the records of <agg>.state [p] after the offset this store
 * last read or wrote there (the store keeps it with every transaction's
 * write, baselines', restores' and tails' own).  They are another owner's
 * (the partition moved away and came back, or came to an older copy of a
 * store), or this owner's own whose store write a crash or a full disk lost.
 * Their outcome records hold the rejected and conflicting outcomes, which no
 * event carries: without them a retry of such a command was decided again
 * (and could be accepted).  Read before the events: its states are no newer
 * than the events' end (the same transactions wrote both), and the events
 * then add what a state lacks.  A store without the offset (written before
 * it was kept, or a partition it never wrote) reads the partition from its
 * beginning once, as a restore does.
 */
static es_err_t state_tail(cs_t *cs, int32_t p, bool *read_commands, char *errstr,
                           size_t errstr_size)
{
    int64_t from = RD_KAFKA_OFFSET_BEGINNING, t0 = es_mono_ms();
    es_err_t err = es_store_get_offset(cs->store, cs->t_state, p, &from, errstr, errstr_size);
    if (err && err != ES_ERR_NOT_FOUND)
        return err;
    if (err == ES_ERR_NOT_FOUND)
        from = RD_KAFKA_OFFSET_BEGINNING;
    restore_t r = {.next_ev = 0, .next_state = from, .commands = -1};
    err = state_read(cs, p, from, false, &r, errstr, errstr_size);
    *read_commands = r.commands >= 0;
    if (!err && r.nrecords)
        es_log_info("command-service",
                    "state tail of %s [%d]: %zu record(s) from offset %" PRId64
                    " that this store had not seen, in %" PRId64 " ms",
                    cs->t_state, p, r.nrecords, from < 0 ? 0 : from, es_mono_ms() - t0);
    return err;
}

static es_err_t check_partition(cs_t *cs, const rd_kafka_topic_partition_t *tp, char *errstr,
                                size_t errstr_size);

/*
 * Bring the store up to the end of <agg>.events partition @p tp, the group's
 * committed offset in @p tp->offset.  The group's offset is checked again
 * when the states read named a later transaction's commands offset: another
 * owner's, which this store never kept (a new replica, a lost store); a
 * partition it refuses is left there, not caught up (ES_ERR_OK).
 */
static es_err_t catch_up(cs_t *cs, const rd_kafka_topic_partition_t *tp, char *errstr,
                         size_t errstr_size)
{
    int32_t p = tp->partition;
    int64_t start = RD_KAFKA_OFFSET_BEGINNING;
    const char *from = "the stored offset";
    bool read_commands = false;
    es_err_t err = es_store_get_offset(cs->store, cs->t_ev, p, &start, errstr, errstr_size);
    if (err && err != ES_ERR_NOT_FOUND)
        return err;
    if (!err && cs->restore_enabled &&
        (err = state_tail(cs, p, &read_commands, errstr, errstr_size)))
        return err;
    bool reevolve = false;
    if (err == ES_ERR_NOT_FOUND) {
        start = RD_KAFKA_OFFSET_BEGINNING;
        from = "the beginning";
        if ((err = restore(cs, p, &start, &read_commands, errstr, errstr_size)) ||
            (!cs->restore_enabled && (err = can_reevolve(cs, p, &reevolve, errstr, errstr_size))))
            return err;
        if (start != RD_KAFKA_OFFSET_BEGINNING)
            from = "the restored states' offset";
    }
    if (read_commands && (err = check_partition(cs, tp, errstr, errstr_size))) {
        if (err == ES_ERR_STATE) /* refused: nothing of it is read or decided */
            cs_refuse_partition(cs, p, errstr);
        return err == ES_ERR_STATE ? ES_ERR_OK : err;
    }
    if (cs->restore_enabled && !cs_state_has_baseline(cs, p))
        cs_state_need_baseline(cs, p); /* written from the loop, once caught up (state.c) */
    if ((err = catchup_assign(cs, cs->t_ev, p, start, errstr, errstr_size)))
        return err;
    err = catchup_read(cs, p, start, from, reevolve, errstr, errstr_size);
    rd_kafka_assign(es_consumer_rk(cs->catchup), NULL);
    return err;
}

/* Whether <agg>.state [p] holds a committed record (*at its offset): a transaction
 * decided something there. */
static es_err_t state_has_record(cs_t *cs, int32_t p, int64_t *at, char *errstr, size_t errstr_size)
{
    rd_kafka_message_t *m = NULL;
    es_err_t err =
        catchup_assign(cs, cs->t_state, p, RD_KAFKA_OFFSET_BEGINNING, errstr, errstr_size);
    if (!err)
        m = catchup_next(cs, &err, errstr, errstr_size);
    rd_kafka_assign(es_consumer_rk(cs->catchup), NULL);
    *at = m ? m->offset : -1;
    if (m)
        rd_kafka_message_destroy(m);
    return err;
}

/*
 * The commands offset this store's last transaction on partition @p p committed
 * (*out; -1: none kept, an older store or a partition it never decided on).
 * Only when it is past the group's @p committed offset is the partition's end
 * asked for: one past the end belongs to an older topic of the same name
 * (deleted and created again), not to this one: -1 then, said in the log and
 * forgotten in the store.
 */
static es_err_t decided_offset(cs_t *cs, int32_t p, int64_t committed, int64_t *out, char *errstr,
                               size_t errstr_size)
{
    int64_t lo = -1, hi = -1;
    *out = -1;
    es_err_t err = es_store_get_offset(cs->store, cs->t_cmd, p, out, errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND) {
        *out = -1;
        return ES_ERR_OK;
    }
    if (err || *out < 0 || *out <= committed)
        return err; /* the usual case: no question, no request to the broker */
    if ((err = watermarks(cs, cs->t_cmd, p, &lo, &hi, errstr, errstr_size)))
        return err;
    if (*out > hi) { /* forgotten: once the new topic grows past it, it would look like ours */
        es_log_warn("command-service",
                    "%s [%d] ends at %" PRId64 ", before %" PRId64 ", where this store last "
                    "decided: an older topic of that name; that offset is forgotten",
                    cs->t_cmd, (int)p, hi, *out);
        *out = -1;
        es_batch_t *batch = es_batch_new();
        es_batch_put_offset(batch, cs->t_cmd, p, -1); /* -1: none kept */
        err = es_store_write(cs->store, batch, errstr, errstr_size);
        es_batch_destroy(batch);
    }
    return err;
}

/* Why commands partition @p tp must not start (ES_ERR_STATE, @p errstr), or ES_ERR_OK. */
static es_err_t check_partition(cs_t *cs, const rd_kafka_topic_partition_t *tp, char *errstr,
                                size_t errstr_size)
{
    int32_t p = tp->partition;
    int64_t decided = -1, at = -1;
    es_err_t err = ES_ERR_OK;
    if (tp->err) {
        snprintf(errstr, errstr_size, "committed offset of %s [%d]: %s", cs->t_cmd, (int)p,
                 rd_kafka_err2str(tp->err));
        return ES_ERR_KAFKA;
    }
    if (tp->offset >= 0 &&
        !(err = decided_offset(cs, p, tp->offset, &decided, errstr, errstr_size)) &&
        tp->offset < decided) {
        snprintf(errstr, errstr_size,
                 "group %.120s's committed offset on %.120s [%d] is %" PRId64 ", behind %" PRId64
                 ", where the last transaction this store knows of there ended: the group's "
                 "offset was moved back (a reset?), and from there commands would be decided "
                 "again. Stop "
                 "every instance, set the group's offsets to the end (kafka-consumer-groups.sh "
                 "--reset-offsets --to-latest; not below %" PRId64 ", docs/write-side.md) and "
                 "start again",
                 cs->group, cs->t_cmd, (int)p, tp->offset, decided, decided);
        return ES_ERR_STATE;
    }
    if (tp->offset >= 0 || err)
        return err;
    if ((err = decided_offset(cs, p, tp->offset, &decided, errstr, errstr_size)) ||
        (decided < 0 && ((err = state_has_record(cs, p, &at, errstr, errstr_size)) || at < 0)))
        return err;
    char evidence[400];
    if (decided >= 0)
        snprintf(evidence, sizeof(evidence), "this store decided up to offset %" PRId64, decided);
    else
        snprintf(evidence, sizeof(evidence), "%.120s [%d] holds a decision at offset %" PRId64,
                 cs->t_state, (int)p, at);
    snprintf(errstr, errstr_size,
             "group %.120s has no committed offset on %.120s [%d], yet %s: the group's offsets "
             "were lost (expired after the broker's offsets.retention.minutes, or deleted); from "
             "offset 0 older commands would be decided again. Stop every instance, set the "
             "group's offsets to the end (kafka-consumer-groups.sh --reset-offsets --to-latest, "
             "docs/write-side.md) and start again",
             cs->group, cs->t_cmd, (int)p, evidence);
    return ES_ERR_STATE;
}

/*
 * Refuse partitions whose group offsets were lost or moved back.  A commands
 * partition without a committed offset starts from offset 0
 * (auto.offset.reset=earliest), right for one nothing was decided on.  But
 * every transaction that writes <agg>.state [p] (a batch's states and
 * outcomes, a baseline) sends the group's offset of <agg>.commands [p] with
 * it, and the store keeps the offset each of its transactions committed, so a
 * committed state record, or a kept offset, beside no committed offset means
 * the offsets were lost (the group empty past the broker's
 * offsets.retention.minutes, or deleted by an operator): offset 0 would decide
 * again every command older than its aggregate's window.  The same for a
 * committed offset behind the kept one: only an operator's reset moves a
 * group's offset back.  Such a partition is refused (paused, named on
 * /readyz, readiness.c) and the others go on; a check that could not ask the
 * broker is a failure of the clients (ES_ERR_KAFKA).
 */
static es_err_t check_group_offsets(cs_t *cs, rd_kafka_topic_partition_list_t *tl, char *errstr,
                                    size_t errstr_size)
{
    rd_kafka_resp_err_t kerr =
        rd_kafka_committed(es_consumer_rk(cs->cons), tl, ES_KAFKA_TIMEOUT_MS);
    if (kerr) {
        snprintf(errstr, errstr_size, "committed offsets of %s: %s", cs->t_cmd,
                 rd_kafka_err2str(kerr));
        return ES_ERR_KAFKA;
    }
    es_err_t err = ES_ERR_OK;
    for (int i = 0; i < tl->cnt && !err; i++)
        if ((err = check_partition(cs, &tl->elems[i], errstr, errstr_size)) == ES_ERR_STATE) {
            cs_refuse_partition(cs, tl->elems[i].partition, errstr);
            err = ES_ERR_OK;
        }
    return err;
}

void cs_on_rebalance(void *opaque, bool assign, rd_kafka_topic_partition_list_t *parts)
{
    cs_t *cs = opaque;
    char errstr[1024];
    atomic_fetch_add(&cs->generation, 1); /* a batch polled across this is decided by nobody */
    if (!assign) {
        es_log_info("command-service", "revoked %d partition(s) of %s", parts->cnt, cs->t_cmd);
        cs->nbaseline = 0; /* baselines are for partitions owned: the next assignment says */
        cs->caught_up = false;
        cs_refused_forget(cs, parts);
        return;
    }
    if (!cs_partitions_known(cs, parts))
        return; /* the topics are checked again first (connect.c) */
    cs_set_not_ready(cs, "catching up %d partition(s) of %s", parts->cnt, cs->t_ev);
    rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_copy(parts);
    es_err_t err = check_group_offsets(cs, committed, errstr, sizeof(errstr));
    if (err && !*cs->stop) {
        cs->fatal = true;
        snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "%s", errstr);
    }
    for (int i = 0; i < committed->cnt && !cs->fatal; i++) {
        int32_t p = committed->elems[i].partition;
        if (p >= 0 && p < cs->nparts && cs->refused[p])
            continue;
        if (catch_up(cs, &committed->elems[i], errstr, sizeof(errstr)) && !*cs->stop) {
            cs->fatal = true;
            snprintf(cs->fatal_reason, sizeof(cs->fatal_reason), "catch-up: %s", errstr);
        }
    }
    rd_kafka_topic_partition_list_destroy(committed);
    es_log_info("command-service", "assigned %d partition(s) of %s", parts->cnt, cs->t_cmd);
    if (!cs->fatal && !*cs->stop) /* a stop ends a catch-up short of the end */
        cs_caught_up(cs);
}
