/**
 * @file err.h
 * @brief The one error model of escqrs.
 *
 * Every fallible call returns an es_err_t; human-readable detail goes to a
 * caller-supplied `char *errstr, size_t errstr_size`.  The list of codes is
 * declared once, below, as an X-macro: it yields the enum, es_err2str(),
 * es_err2name() and the table in docs/errors.md (scripts/gen-config-docs
 * parses the macro), so no list can drift.
 *
 * Answers that are not failures (ES_ERR_NOT_FOUND, ES_ERR_TIMED_OUT when a
 * caller asked to wait, ...) have codes of their own so callers never guess.
 */
#ifndef ESCQRS_ERR_H
#define ESCQRS_ERR_H

/* X(NAME, value, description) */
#define ES_ERR_LIST(X)                                                                             \
    X(OK, 0, "Success")                                                                            \
    X(NOT_FOUND, 1, "No such item (an answer, not a failure)")                                     \
    X(TIMED_OUT, 2, "The operation did not finish before its deadline")                            \
    X(QUEUE_FULL, 3, "A bounded queue is full; retry later")                                       \
    X(WOULD_BLOCK, 4, "The answer needs a wait this thread must not make; ask again where it may") \
    X(INVALID_ARG, 10, "Invalid argument")                                                         \
    X(CONF, 11, "Invalid configuration")                                                           \
    X(IO, 12, "Operating system I/O error")                                                        \
    X(KAFKA, 20, "Kafka client error")                                                             \
    X(KAFKA_FATAL, 21, "Fatal or fenced Kafka client; it must be destroyed and created anew")      \
    X(REGISTRY, 30, "Schema registry error")                                                       \
    X(REGISTRY_UNAVAILABLE, 31, "Schema registry unreachable")                                     \
    X(INCOMPATIBLE_SCHEMA, 32, "Schema rejected as incompatible")                                  \
    X(SCHEMA, 33, "Invalid Avro schema")                                                           \
    X(BAD_MAGIC, 40, "Record is not in the Confluent wire format (bad magic byte)")                \
    X(UNKNOWN_SCHEMA, 41, "Record names a schema id the registry does not know")                   \
    X(TRUNCATED, 42, "Record body is truncated")                                                   \
    X(BAD_LENGTH, 43, "Record body holds a negative or oversized length")                          \
    X(DECODE, 44, "Record body cannot be decoded")                                                 \
    X(ENCODE, 45, "Value cannot be encoded")                                                       \
    X(STORE, 50, "RocksDB store error")                                                            \
    X(NO_SPACE, 51, "Too little free disk space for the store to write; waiting for space")        \
    X(HTTP, 60, "HTTP error")                                                                      \
    X(REJECTED, 70, "Command rejected by the aggregate (an answer, not a failure)")                \
    X(VERSION_CONFLICT, 71, "Expected aggregate version does not match")                           \
    X(STATE, 80, "Operation not allowed in the current state")

typedef enum {
#define ES__ERR_ENUM(name, val, desc) ES_ERR_##name = val,
    ES_ERR_LIST(ES__ERR_ENUM)
#undef ES__ERR_ENUM
} es_err_t;

/** @brief Human-readable description of @p err (static string). */
const char *es_err2str(es_err_t err);

/** @brief Symbolic name of @p err without the ES_ERR_ prefix, e.g. "NOT_FOUND". */
const char *es_err2name(es_err_t err);

#endif
