/**
 * @file modules.h
 * @brief The loaded domain modules: the loader and the process-wide registry
 *        of their aggregates, projections and schemas.
 *
 * A program names its modules in configuration (`modules`, `modules.dir`,
 * es_modules_conf_defs) and loads them once at start-up, before it starts a
 * thread; afterwards the registry is read-only and look-ups are safe from
 * any thread.  Loading is all or nothing per module: a module that fails a
 * check (no entry point, an SDK version this library cannot run, a name that
 * another module or the library already uses) is unloaded again and the
 * call fails with a message naming it; a program then exits 2, as for any
 * bad configuration.
 *
 * Version rule (version.h): a module built against SDK M.m.p runs on this
 * library (M'.m'.p') when M == M' and m <= m'.
 *
 * This header is for the programs (it depends on conf.h); a domain module
 * needs only module.h.
 */
#ifndef ESCQRS_MODULES_H
#define ESCQRS_MODULES_H

#include "escqrs/conf.h"
#include "escqrs/err.h"
#include "escqrs/module.h"

#include <stddef.h>

/** The keys `modules` and `modules.dir`: every program that loads modules declares them. */
extern const es_conf_def_t es_modules_conf_defs[];

/**
 * @brief Load one module: @p spec is a path (it contains a '/') or a name,
 *        which loads `<dir>/escqrs-<name>.so` (@p dir NULL or "": the default
 *        directory, es_modules_default_dir()).
 * @returns ES_ERR_OK, ES_ERR_IO when the file cannot be loaded, ES_ERR_CONF
 *          when it is not a usable module (the message says why).
 */
es_err_t es_modules_load(const char *spec, const char *dir, char *errstr, size_t errstr_size);

/**
 * @brief Register a module linked into the program itself (no shared object),
 *        with the same checks as es_modules_load(); @p origin names it in messages.
 */
es_err_t es_modules_add(const es_module_t *module, const char *origin, char *errstr,
                        size_t errstr_size);

/** @brief Load every module of the configuration's `modules` list from `modules.dir`. */
es_err_t es_modules_load_conf(const es_conf_t *conf, char *errstr, size_t errstr_size);

/**
 * @brief es_modules_load_conf() for main(): on failure logs the message as
 *        component @p program and exits 2.
 * @remark For main() only, as es_conf_load_or_exit().
 */
void es_modules_load_or_exit(const es_conf_t *conf, const char *program);

/**
 * @brief The default module directory: `escqrs/modules` beside the
 *        libescqrs.so this process runs on (<prefix>/lib/escqrs/modules when
 *        installed, <build>/lib/escqrs/modules in a build tree).
 */
const char *es_modules_default_dir(char *out, size_t outsz);

/* ------------------------------------------------------------- the registry */

size_t es_modules_count(void);
/** @brief Module @p i in load order; @p path (may be NULL) gets where it came from. */
const es_module_t *es_modules_at(size_t i, const char **path);

/** @brief The loaded aggregate named @p name, or NULL. */
const es_aggregate_def_t *es_modules_aggregate(const char *name);
size_t es_modules_aggregate_count(void);
/** @brief Aggregate @p i, in load order (modules, then each module's list). */
const es_aggregate_def_t *es_modules_aggregate_at(size_t i);

/** @brief The loaded projection named @p name, or NULL. */
const es_proj_def_t *es_modules_projection(const char *name);
size_t es_modules_projection_count(void);
const es_proj_def_t *es_modules_projection_at(size_t i);

/** @brief Every schema the process knows: the library's own, then each module's. */
size_t es_modules_schema_count(void);
const es_module_schema_t *es_modules_schema_at(size_t i);
/** @brief The text of schema @p name, or NULL (es_schema_text() asks this). */
const char *es_modules_schema_text(const char *name);

#endif
