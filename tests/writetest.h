/*
 * writetest.h — harness of the write-side integration tests: the command
 * service and the gateway run as subprocesses against the test stack under a
 * unique aggregate prefix, an HTTP client that records every answer, and
 * readers of the whole events, commands, command-results and state topics and of the
 * command service's committed offsets, to check the log against the answers.
 */
#ifndef ESCQRS_TEST_WRITETEST_H
#define ESCQRS_TEST_WRITETEST_H

#include "escqrs/envelope.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct wt_proc_s {
    pid_t pid;
    int port;
    char log[600];
    const char *token; /* bearer token sent by wt_post and wt_get, or NULL */
} wt_proc_t;

typedef struct wt_stack_s {
    char prefix[128]; /* "<unique>-": topics <prefix><agg>.* */
    char dir[512];    /* stores and logs */
    char agg[32];     /* "account" or "cart" */
    wt_proc_t cs, gw;
} wt_stack_t;

/** @brief Unique prefix and directory for aggregate @p agg; starts nothing. */
void wt_stack_init(wt_stack_t *st, const char *agg);
/** @brief Start escqrs-command-service (creating topics); extra `--set` strings in @p sets. */
void wt_start_service(wt_stack_t *st, const char *const *sets, size_t nsets);
/** @brief Start escqrs-gateway. */
void wt_start_gateway(wt_stack_t *st, const char *const *sets, size_t nsets);
/** @brief Wait until GET /readyz of @p p answers 200 (fails the test after @p timeout_s). */
void wt_wait_ready(wt_proc_t *p, int timeout_s);
/**
 * @brief Wait until GET /readyz of @p p answers 503 with a reason holding
 *        @p words (the reasons before it, such as "starting", are passed
 *        over).  @returns whether it did within @p timeout_s.
 */
bool wt_wait_not_ready_because(const wt_proc_t *p, const char *words, int timeout_s);
/** @brief How many of the /readyz samples (one each 100 ms for @p ms; *@p asked) said 200. */
int wt_count_ready(const wt_proc_t *p, int ms, int *asked);
void wt_kill9(wt_proc_t *p);
/** @brief Is the daemon still running (not exited)? */
bool wt_proc_alive(wt_proc_t *p);
/**
 * @brief The first line of the log at @p path holding @p a and (unless NULL)
 *        @p b, into @p line (may be NULL); false when there is none.
 */
bool wt_log_line(const char *path, const char *a, const char *b, char *line, size_t linesz);
/** @brief SIGTERM and reap; returns the exit status (or -1). */
int wt_stop(wt_proc_t *p);
/** @brief Delete the command service's store (st->dir/store), as a lost volume does;
 *         whether that worked.  The service must not be running. */
bool wt_delete_store(const wt_stack_t *st);
/** @brief Stop both daemons (SIGTERM) and check they exit 0. */
void wt_stack_stop(wt_stack_t *st);

/**
 * @brief POST @p body to the gateway at @p path.
 * @param idem Idempotency-Key or NULL; @param if_match If-Match or NULL.
 * @param out set to the parsed answer (caller decrefs; NULL when not JSON).
 * @returns the status, 0 when no answer came (connection refused, reset).
 */
int wt_post(const wt_proc_t *gw, const char *path, const char *body, size_t len, const char *idem,
            const char *if_match, json_t **out);
/**
 * @brief POST with extra request header lines @p hdrs ("Name: value", NULL
 *        at the end; may be NULL) and no Idempotency-Key unless given there.
 * @param resp_headers set to the answer's header block (caller frees; may be NULL).
 */
int wt_post_with(const wt_proc_t *gw, const char *path, const char *body, const char *const *hdrs,
                 char **resp_headers, json_t **out);
/** @brief The value of header @p name (case-insensitive) in a header block, into @p out ("" when
 * none). */
void wt_header_value(const char *block, const char *name, char *out, size_t outsz);
/**
 * @brief Any request with an optional bearer token @p bearer (NULL: none, not
 *        even p->token); @p body may be NULL; *out the parsed answer or NULL.
 */
int wt_call(const wt_proc_t *p, const char *method, const char *path, const char *body,
            const char *bearer, json_t **out);
/** @brief GET; @p raw (may be NULL) gets the body. */
int wt_get(const wt_proc_t *p, const char *path, char **raw);
/** @brief The value of @p series (name and labels as printed) in @p p's /metrics; -1 if none. */
double wt_metric(const wt_proc_t *p, const char *series);

/** One event read back from <prefix><agg>.events. */
typedef struct wt_event_s {
    char agg_id[129];
    char command_id[129];
    char type[64];
    int64_t version;
    int64_t amount; /* amount_cents or quantity, 0 when none */
    int32_t partition;
    int64_t offset;
    char hdr_type[64], hdr_command[129], hdr_version[24];
    char principal[256], principal_client[256]; /* "" when null */
    es_trace_fields_t trace, hdr_trace;         /* request context: value fields, headers */
} wt_event_t;

/** @brief Every committed event of the events topic, in partition/offset order. */
wt_event_t *wt_read_events(const wt_stack_t *st, size_t *n);
/**
 * @brief Assert that aggregate @p agg_id's committed events are versions
 *        1..@p last, each once (a version twice, or past @p last, is named on
 *        stderr); prints a RESULT line with the count.
 */
void wt_assert_versions(const wt_stack_t *st, const char *agg_id, int64_t last);

/** One committed record of <prefix><agg>.state (the command service's changelog). */
typedef struct wt_state_s {
    char key[130];    /* the record key up to its 0x00: the aggregate id, or 0x01 "baseline" */
    char cmd_id[130]; /* an outcome record's key after its 0x00: the command id; else "" */
    bool tombstone;   /* no value: an outcome the window moved past (fields below unset) */
    char agg_id[129]; /* "" for a partition's baseline marker */
    int64_t version;
    int64_t events_offset;
    size_t nrecent; /* remembered outcomes it carries */
    int32_t partition;
    int64_t offset;
} wt_state_t;

/** @brief Every committed record of the state topic, in partition/offset order. */
wt_state_t *wt_read_states(const wt_stack_t *st, size_t *n);

/** One record of <prefix><agg>.commands (the audit log of every command sent). */
typedef struct wt_command_s {
    char command_id[129];
    char agg_id[129];
    char type[64];  /* payload record name: Deposit, Withdraw, OpenAccount, ... */
    int64_t amount; /* amount_cents, 0 when none */
    int32_t partition;
    int64_t offset;
    int64_t issued_at;
    es_trace_fields_t trace, hdr_trace; /* request context: value fields, headers */
} wt_command_t;

/** @brief Every record of the commands topic, in partition/offset order. */
wt_command_t *wt_read_commands(const wt_stack_t *st, size_t *n);

/** One committed record of <prefix><agg>.command-results. */
typedef struct wt_outcome_s {
    char hdr_command[129]; /* the command-id header */
    char command_id[129];
    char status[32]; /* ACCEPTED, REJECTED, VERSION_CONFLICT, IDEMPOTENCY_KEY_REUSED */
    char reason[64]; /* "" when null */
    int64_t actual_version, version;
    int32_t partition;
    int64_t offset;
    char principal[256], principal_client[256]; /* "" when null */
    es_trace_fields_t trace, hdr_trace;         /* request context: value fields, headers */
    char command_type[64];                      /* "" when null */
    int64_t issued_at;                          /* 0 when null */
} wt_outcome_t;

/** @brief Every committed record of the command-results topic. */
wt_outcome_t *wt_read_outcomes(const wt_stack_t *st, size_t *n);

/**
 * @brief The offsets group `<prefix><agg>.command-service` committed on
 *        `<prefix><agg>.commands` (read without joining the group;
 *        RD_KAFKA_OFFSET_INVALID when none, -2 when the fetch failed) and the
 *        topic's end offsets, for at most @p max partitions.
 * @returns the number of partitions filled in.
 */
int wt_command_offsets(const wt_stack_t *st, int64_t *committed, int64_t *end, int max);
/** @brief The command service's consumer group of @p st's aggregate, into @p out. */
void wt_command_group(const wt_stack_t *st, char *out, size_t outsz);
/**
 * @brief Commit @p offsets (partitions 0 .. @p n - 1 of the commands topic) for
 *        the command service's group, as an operator's reset would; retried
 *        while a member's session lasts, up to @p timeout_s.
 */
bool wt_commit_group_offsets(const wt_stack_t *st, const int64_t *offsets, int n, int timeout_s);

/**
 * @brief Wait until the command service's group has committed the end of
 *        every partition of the commands topic (nothing left undecided); a
 *        partition no command went to counts as at its end.
 * @returns false after @p timeout_s with the first lagging partition in @p why.
 */
bool wt_wait_group_at_end(const wt_stack_t *st, int timeout_s, char *why, size_t whysz);

#endif
