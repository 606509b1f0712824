/**
 * @file aggregate.h
 * @brief An aggregate is data plus two pure functions: decide and evolve.
 *
 * A team adds an aggregate by writing one es_aggregate_def_t in a domain
 * module (module.h; examples/cart/ is one): its name (the topic prefix), the
 * names of its command and event schemas (carried by the module), the size of
 * its state, and
 *  - decide(state, command) → events, or a rejection reason;
 *  - evolve(state, event) → state.
 * Both are pure: they see the payload records of commands and events (the
 * branches of the envelopes' `payload` unions, read with record.h) and the
 * state, and touch no Kafka, RocksDB or clock.  The command service does the
 * rest: envelopes, versions, ids, idempotency, transactions, the store.
 * The zeroed state is the state of an aggregate that has no events yet.
 */
#ifndef ESCQRS_AGGREGATE_H
#define ESCQRS_AGGREGATE_H

#include "escqrs/err.h"
#include "escqrs/mem.h"
#include "escqrs/record.h"

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#define ES_AGG_MAX_EVENTS 8 /* events one command may produce */
#define ES_CMD_MAX_FIELDS 4 /* fields of one command's JSON body */

/** How a JSON body field maps to the command payload record (see command.h). */
typedef enum {
    ES_FIELD_STRING, /**< JSON string; min/max bound its length in bytes */
    ES_FIELD_INT,    /**< JSON integer; min/max bound its value */
} es_field_kind_t;

typedef struct es_field_def_s {
    const char *name; /**< NULL ends the list */
    es_field_kind_t kind;
    int64_t min, max;
} es_field_def_t;

/** One HTTP command: `POST /v1/<collection>/{id}/<verb>` → payload record @p type. */
typedef struct es_command_def_s {
    const char *verb; /**< "add-item" */
    const char *type; /**< "AddItem": a record of the command payload union */
    es_field_def_t fields[ES_CMD_MAX_FIELDS];
} es_command_def_t;

/** Collects the events decide() produces, as payload records of the event schema. */
typedef struct es_emitter_s es_emitter_t;

/**
 * @brief Append an event of @p type (a record in the event payload union, e.g.
 *        "ItemAdded") and return its payload record for decide() to fill.
 * @returns NULL when @p type is no such record or ES_AGG_MAX_EVENTS are emitted.
 */
avro_value_t *es_emit(es_emitter_t *em, const char *type);

typedef struct es_aggregate_def_s {
    const char *name;            /**< "cart": topics cart.commands, cart.events, ... */
    const char *id_field;        /**< envelope field holding the aggregate id: "cart_id" */
    const char *commands_schema; /**< schema name in schemas/: "cart.commands" */
    const char *events_schema;   /**< "cart.events" */
    /** Bytes of the state struct: flat (no pointers it owns), copied with memcpy. */
    size_t state_size;
    /**
     * Decide on @p command (the payload record, of type @p command_type) in @p state.
     * @returns NULL when accepted (events emitted into @p out, possibly none), or a
     *          rejection reason from the HTTP contract ("cart_empty", ...).
     */
    const char *(*decide)(const void *state, const char *command_type, avro_value_t *command,
                          es_emitter_t *out);
    /** Apply @p event (payload record of type @p event_type) to @p state. */
    es_err_t (*evolve)(void *state, const char *event_type, avro_value_t *event, char *errstr,
                       size_t errstr_size);
    /** State to bytes for the aggregate store, and back (ES_ERR_DECODE when corrupt). */
    void (*state_encode)(const void *state, es_buf_t *out);
    es_err_t (*state_decode)(void *state, const void *data, size_t len);
    /** The HTTP API: `POST /v1/<collection>/{id}/<verb>` for each of @p commands. */
    const char *collection; /**< "carts" */
    const es_command_def_t *commands;
    size_t ncommands;
} es_aggregate_def_t;

/** @brief New emitter for events of the schema named @p events_schema. */
es_emitter_t *es_emitter_new(const char *events_schema, char *errstr, size_t errstr_size);
void es_emitter_destroy(es_emitter_t *em);
/** @brief Forget the events of the previous command. */
void es_emitter_reset(es_emitter_t *em);
size_t es_emitter_count(const es_emitter_t *em);
/** @brief Event @p i: its type and its payload record (owned by the emitter). */
avro_value_t *es_emitter_event(es_emitter_t *em, size_t i, const char **type);

#endif
