/*
 * cli.h — internal interface between the escqrs CLI's dispatcher and its
 * subcommands.  Each subcommand is one function taking the loaded
 * configuration and the arguments after its name; it returns the process
 * exit code (0 ok, 1 failure, 2 usage or configuration error, 3 refused).
 * main.c dispatches; common.c holds what subcommands share.
 */
#ifndef ESCQRS_CLI_H
#define ESCQRS_CLI_H

#include "escqrs/conf.h"

#include <stdbool.h>

#define CLI_EXIT_OK      0
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE   2
#define CLI_EXIT_REFUSED 3 /* send: the gateway refused the command (4xx) */

#define CLI_ERRSTR_MAX       1024 /* an error line: a URL and what the server said */
#define CLI_URL_MAX          1024 /* a request URL: a base URL, a path and a query */
#define CLI_REGISTRY_RETRIES 3    /* extra attempts of a registry request */

int cli_topics(es_conf_t *conf, int argc, char **argv);
int cli_schemas(es_conf_t *conf, int argc, char **argv);
int cli_export(es_conf_t *conf, int argc, char **argv);
int cli_tail(es_conf_t *conf, int argc, char **argv);
int cli_status(es_conf_t *conf, int argc, char **argv);
int cli_send(es_conf_t *conf, int argc, char **argv);
int cli_rebuild(es_conf_t *conf, int argc, char **argv);
int cli_freeze(es_conf_t *conf, int argc, char **argv);
int cli_auth(es_conf_t *conf, int argc, char **argv);
int cli_modules(es_conf_t *conf, int argc, char **argv);
int cli_history(es_conf_t *conf, int argc, char **argv);
int cli_clone(es_conf_t *conf, int argc, char **argv);

struct es_http_client_opts_s;
/** @brief TLS and bearer token of the CLI's requests (keys `token`, `tls.ca.file`); common.c. */
void cli_http_opts(const es_conf_t *conf, struct es_http_client_opts_s *opts);
/**
 * @brief Load the domain modules of `modules` (send and schemas need their
 *        aggregates and schemas); false with the reason on stderr.  common.c.
 */
bool cli_modules_load(const es_conf_t *conf);

/**
 * @brief Percent-encode @p s for a URL path segment or query value (RFC 3986 unreserved
 *        kept); false, never a truncated value, when it does not fit @p outsz.
 */
bool cli_url_escape(const char *s, char *out, size_t outsz);

#endif
