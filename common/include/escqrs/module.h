/**
 * @file module.h
 * @brief A domain module: a team's aggregates, projections and Avro schemas,
 *        in a shared object the stock programs load at start-up.
 *
 * A module is one es_module_t, returned by the entry point that
 * ES_MODULE_DEFINE() exports.  Everything in it is data and pure functions
 * (aggregate.h, projection.h): a module never touches Kafka, RocksDB or HTTP,
 * the programs do.  escqrs-gateway, escqrs-command-service, escqrs-projector
 * and the escqrs CLI load the modules their configuration names, check each
 * module's sdk_version against their own (version.h) and refuse a mismatch
 * with exit code 2 and a message naming the module and both versions.
 *
 * Schemas travel inside the module: each entry is a schema name
 * ("inventory.commands") and its .avsc text; the programs register them with
 * the registry and decode with them as they do for their own.
 */
#ifndef ESCQRS_MODULE_H
#define ESCQRS_MODULE_H

#include "escqrs/aggregate.h"
#include "escqrs/projection.h"
#include "escqrs/version.h"

/** One Avro schema a module carries. */
typedef struct es_module_schema_s {
    const char *name; /**< "inventory.events": the registry subject is "<name>-value" */
    const char *text; /**< the .avsc document */
} es_module_schema_t;

typedef struct es_module_s {
    int sdk_version;  /**< ES_SDK_VERSION the module was compiled with */
    const char *name; /**< "inventory": unique among the loaded modules */
    const char *description;
    const es_aggregate_def_t *const *aggregates; /**< NULL-terminated; may be empty */
    const es_proj_def_t *const *projections;     /**< NULL-terminated; may be empty */
    const es_module_schema_t *schemas;           /**< ends with {NULL, NULL} */
} es_module_t;

/**
 * @brief Register @p module, linked into this program, as the programs do with
 *        a module they load: a module's unit tests call it once, so that
 *        es_emitter_new() and the folds find the module's schemas.  Calling it
 *        again with the same module does nothing.
 * @returns ES_ERR_OK, or ES_ERR_CONF when the module is refused (another SDK
 *          version, a name already taken; the reason in @p errstr).
 */
es_err_t es_module_register(const es_module_t *module, char *errstr, size_t errstr_size);

/** The name of the entry point the programs look up in a module's shared object. */
#define ES_MODULE_ENTRY_SYMBOL "escqrs_module_v1"

/** Type of the entry point. */
typedef const es_module_t *(*es_module_entry_fn)(void);

/**
 * Export @p module (an es_module_t object) as this shared object's entry point.
 * Write it once, at file scope, in one source file of the module.
 */
#define ES_MODULE_DEFINE(module)                                                                   \
    __attribute__((visibility("default"))) const es_module_t *escqrs_module_v1(void);              \
    __attribute__((visibility("default"))) const es_module_t *escqrs_module_v1(void)               \
    {                                                                                              \
        return &(module);                                                                          \
    }

#endif
