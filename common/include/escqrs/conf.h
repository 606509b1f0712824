/**
 * @file conf.h
 * @brief Declared configuration: one table per program drives everything.
 *
 * A program declares its keys in tables of es_conf_def_t (name, type, default,
 * bounds, description).  The same tables drive parsing, validation (an unknown
 * key or a bad value is an error naming the key), `--list-config` and the
 * generated docs/configuration.md.
 *
 * Sources, later wins: the declared defaults, an optional file (`--config F`,
 * `key = value` lines, `#` comments, like Kafka's server.properties), the
 * environment (`ESCQRS_FOO_BAR` sets `foo.bar`), and flags (`--set foo.bar=x`).
 *
 * Keys under `kafka.` need no declaration: they go verbatim (without the
 * prefix) to librdkafka, and are validated by librdkafka itself when set, so
 * `--set kafka.acks=banana` fails at start-up.  Declared `kafka.` keys exist
 * only to document and apply escqrs' own defaults (see kafka.h).
 *
 * @remark An es_conf_t is built on one thread at start-up and read-only after;
 *         reads from many threads are then safe.
 */
#ifndef ESCQRS_CONF_H
#define ESCQRS_CONF_H

#include "escqrs/err.h"
#include "escqrs/mem.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    ES_CONF_STRING,
    ES_CONF_INT,
    ES_CONF_BOOL,
    ES_CONF_ENUM,
} es_conf_type_t;

/** Which Kafka clients a declared `kafka.` default applies to. */
typedef enum {
    ES_CONF_ROLE_ANY = 0,
    ES_CONF_ROLE_PRODUCER = 1,
    ES_CONF_ROLE_CONSUMER = 2,
} es_conf_role_t;

typedef struct es_conf_def_s {
    const char *name; /**< dotted key, e.g. "http.listen"; NULL ends a table */
    es_conf_type_t type;
    const char *defval; /**< default in string form; NULL: unset unless given */
    int64_t min, max;   /**< bounds for ES_CONF_INT (inclusive); ES_CONF_STRING: min 1 = required */
    const char *choices; /**< ES_CONF_ENUM: "a|b|c" */
    const char *desc;    /**< one sentence for --list-config and the docs */
    es_conf_role_t role; /**< for declared `kafka.` defaults only */
} es_conf_def_t;

typedef struct es_conf_s es_conf_t;

/**
 * @brief New configuration for @p program over the NULL-terminated list of
 *        tables @p tables (each ends with an entry whose name is NULL).
 *        Defaults are applied at once.
 * @remark The tables must outlive the es_conf_t.
 */
es_conf_t *es_conf_new(const char *program, const es_conf_def_t *const *tables);
void es_conf_destroy(es_conf_t *conf);

/** @brief Set one key from source @p source ("file", "env", "flag", ...); validates. */
es_err_t es_conf_set(es_conf_t *conf, const char *name, const char *value, const char *source,
                     char *errstr, size_t errstr_size);

/** @brief Load `key = value` lines from @p path. Errors name the file, line and key. */
es_err_t es_conf_load_file(es_conf_t *conf, const char *path, char *errstr, size_t errstr_size);

/**
 * @brief Apply every ESCQRS_* variable of @p envp that names a declared key or
 *        a `kafka.` key (ESCQRS_KAFKA_BOOTSTRAP_SERVERS → kafka.bootstrap.servers).
 *        Other ESCQRS_* variables are left alone (scripts use some) with a debug log.
 */
es_err_t es_conf_load_env(es_conf_t *conf, char **envp, char *errstr, size_t errstr_size);

/** What --list-config asked for. */
typedef enum {
    ES_CONF_LIST_NONE = 0,
    ES_CONF_LIST_TEXT,     /**< effective values with their sources */
    ES_CONF_LIST_MARKDOWN, /**< the declared table, for docs/configuration.md */
} es_conf_list_t;

/**
 * @brief The standard start-up sequence: removes `--config F`, `--set k=v`
 *        and `--list-config[=text|markdown]` from argv (compacting it and
 *        updating *argc), then applies defaults, the file, @p envp and the
 *        flags in that order.  Also applies `log.level` if declared.
 * @param list set to what --list-config asked for (the caller prints it).
 * @returns ES_ERR_OK, or ES_ERR_CONF with a message naming the key.
 */
es_err_t es_conf_init_from_args(es_conf_t *conf, int *argc, char **argv, char **envp,
                                es_conf_list_t *list, char *errstr, size_t errstr_size);

/** @brief Render the tables (@p fmt MARKDOWN) or the effective values (TEXT). */
void es_conf_describe(const es_conf_t *conf, es_conf_list_t fmt, es_buf_t *out);

/**
 * @brief Is @p name a secret (a password, secret, token, JAAS or private-key
 *        setting)?  Its value is never shown: not by --list-config, not in an
 *        error message, not in a log line.
 */
bool es_conf_is_secret(const char *name);

/** @brief Value of @p name in string form, or NULL when unset. */
const char *es_conf_get(const es_conf_t *conf, const char *name);
/** @brief Integer value of a declared ES_CONF_INT key (0 when unset). */
int64_t es_conf_get_int(const es_conf_t *conf, const char *name);
/** @brief Boolean value of a declared ES_CONF_BOOL key (false when unset). */
bool es_conf_get_bool(const es_conf_t *conf, const char *name);

/**
 * @brief Call @p cb for every `kafka.` key that has a value and applies to
 *        @p role, with the name stripped of its prefix.  User-set keys apply
 *        to every role; declared defaults only to their own role.
 */
void es_conf_kafka_foreach(const es_conf_t *conf, es_conf_role_t role,
                           void (*cb)(void *opaque, const char *name, const char *value),
                           void *opaque);

/**
 * @brief The start-up sequence of a program's main(): es_conf_new() plus
 *        es_conf_init_from_args(); on a configuration error logs it naming the
 *        key and exits 2; on --list-config prints the listing to stdout and
 *        exits 0.  Returns the loaded configuration otherwise.
 * @remark For main() only: it is the one place in libescqrs that exits.
 */
es_conf_t *es_conf_load_or_exit(const char *program, const es_conf_def_t *const *tables, int *argc,
                                char **argv, char **envp);

/** @brief Common keys every program has (log.level). */
extern const es_conf_def_t es_conf_common_defs[];

#endif
