/*
 * writetest.h — harness of the write-side integration tests: the command
 * service and the gateway run as subprocesses against the test stack under a
 * unique aggregate prefix, an HTTP client that records every answer, and a
 * reader of the whole events topic to check the log against those answers.
 */
#ifndef ESCQRS_TEST_WRITETEST_H
#define ESCQRS_TEST_WRITETEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct wt_proc_s {
    pid_t pid;
    int port;
    char log[600];
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
void wt_kill9(wt_proc_t *p);
/** @brief SIGTERM and reap; returns the exit status (or -1). */
int wt_stop(wt_proc_t *p);
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
/** @brief GET; @p raw (may be NULL) gets the body. */
int wt_get(const wt_proc_t *p, const char *path, char **raw);

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
} wt_event_t;

/** @brief Every committed event of the events topic, in partition/offset order. */
wt_event_t *wt_read_events(const wt_stack_t *st, size_t *n);

/** One record of the commands or results topic read back. */
typedef struct wt_record_s {
    char command_id[129];
    char agg_id[129];
    char status[32]; /* results only: ACCEPTED, REJECTED, VERSION_CONFLICT, ... */
    char reason[64]; /* results only */
    int32_t partition;
    int64_t offset;
} wt_record_t;

/** @brief Every committed record of <prefix><agg>.commands (the audit log). */
wt_record_t *wt_read_commands(const wt_stack_t *st, size_t *n);
/** @brief Every committed outcome on <prefix><agg>.command-results. */
wt_record_t *wt_read_outcomes(const wt_stack_t *st, size_t *n);
/**
 * @brief Wait until the command service's group has committed the end of
 *        every partition of the commands topic (nothing left undecided).
 * @returns false after @p timeout_s with the first lagging partition in @p why.
 */
bool wt_wait_group_at_end(const wt_stack_t *st, int timeout_s, char *why, size_t whysz);

#endif
