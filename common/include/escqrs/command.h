/**
 * @file command.h
 * @brief The pure part of the write side: HTTP bodies to commands, outcomes to answers.
 *
 * The gateway turns `POST /v1/<collection>/{id}/<verb>` with a JSON body into
 * a command envelope value (es_command_from_json(), driven by the
 * es_command_def_t table of the aggregate definition), and a CommandResult
 * value back into the HTTP answer of the contract (es_outcome_http()).  The
 * command service builds CommandResult values from es_outcome_t and compares
 * retried commands by es_command_fingerprint().  Nothing here touches Kafka,
 * RocksDB, HTTP or a clock, so every rule is unit-tested (tests/unit/test_command.c).
 */
#ifndef ESCQRS_COMMAND_H
#define ESCQRS_COMMAND_H

#include "escqrs/aggregate.h"
#include "escqrs/err.h"

#include <avro.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define ES_ID_MAX 128 /* bytes of an aggregate id or a command id (Idempotency-Key) */

/** @brief The command of @p def whose verb is @p verb, or NULL (404 unknown_command). */
const es_command_def_t *es_command_find(const es_aggregate_def_t *def, const char *verb);

/**
 * @brief Validate a JSON body against @p cmd and fill @p payload (the
 *        command envelope's `payload` union) with the record it describes.
 *        An empty body counts as `{}`.  Unknown fields are refused, so a typo
 *        is an error instead of a silently missing value.
 * @param code set to "invalid_json" or "invalid_command" on failure.
 * @returns ES_ERR_OK, or ES_ERR_INVALID_ARG with a message for the client in @p msg.
 */
es_err_t es_command_from_json(const es_command_def_t *cmd, const char *body, size_t len,
                              avro_value_t *payload, const char **code, char *msg, size_t msgsz);

/** @brief A valid aggregate id or command id: 1..ES_ID_MAX printable ASCII bytes. */
bool es_command_id_valid(const char *id);

/**
 * @brief Fingerprint of what a command asks (payload and expected_version) of
 *        a command envelope value, to tell a retry from a reused Idempotency-Key.
 *        Never 0 (0 means "unknown" in the aggregate store).
 */
uint64_t es_command_fingerprint(avro_value_t *command);

/** What to do with a command before deciding it (es_command_precheck()). */
typedef enum {
    ES_PRECHECK_DECIDE,   /**< new command, version fine: run decide() */
    ES_PRECHECK_REPLAY,   /**< a retry: answer the first outcome, write nothing */
    ES_PRECHECK_REUSED,   /**< same id, different command: IDEMPOTENCY_KEY_REUSED */
    ES_PRECHECK_CONFLICT, /**< If-Match differs from the version: VERSION_CONFLICT */
} es_precheck_t;

/**
 * @brief The idempotency and expected-version rules, in their order.
 * @param known whether an outcome is remembered for this (aggregate, command id)
 * @param known_fp its fingerprint (0: rebuilt from the log, body unknown → a retry)
 * @param fp this command's es_command_fingerprint()
 */
es_precheck_t es_command_precheck(bool known, uint64_t known_fp, uint64_t fp, bool has_expected,
                                  int64_t expected, int64_t version);

typedef enum {
    ES_OUTCOME_ACCEPTED = 0, /* the order of the CommandStatus enum */
    ES_OUTCOME_REJECTED,
    ES_OUTCOME_VERSION_CONFLICT,
    ES_OUTCOME_IDEMPOTENCY_KEY_REUSED,
} es_outcome_status_t;

/** The outcome of one command, the plain form of a CommandResult record. */
typedef struct es_outcome_s {
    char command_id[ES_ID_MAX + 1];
    char aggregate_id[ES_ID_MAX + 1];
    es_outcome_status_t status;
    char reason[64]; /**< "" when none */
    bool has_expected;
    int64_t expected_version;
    int64_t actual_version; /**< version when decided */
    int64_t version;        /**< version after the command */
    size_t nevents;
    struct {
        char type[64];
        int64_t version;
    } events[ES_AGG_MAX_EVENTS];
    char position[48]; /**< "<partition>:<offset>" of the last event, "" when none */
    int64_t processed_at;
    char principal[256];        /**< who sent the command (token subject), "" when unknown */
    char principal_client[256]; /**< the OAuth client it was issued to, "" when none */
} es_outcome_t;

/** @brief Fill a CommandResult record value from @p o. */
es_err_t es_outcome_to_value(const es_outcome_t *o, avro_value_t *result, char *errstr,
                             size_t errstr_size);
/** @brief Read a CommandResult record value into @p o (ES_ERR_DECODE when malformed). */
es_err_t es_outcome_from_value(avro_value_t *result, es_outcome_t *o, char *errstr,
                               size_t errstr_size);

/**
 * @brief The HTTP answer of the contract for @p o: 200 with the success body,
 *        422 rejected (400 invalid_command, 404 unknown_command when the
 *        aggregate refused the body itself), 409 version_conflict or
 *        idempotency_key_reused.
 * @param body set to a new JSON object the caller owns.
 * @returns the HTTP status.
 */
int es_outcome_http(const es_outcome_t *o, json_t **body);

#endif
