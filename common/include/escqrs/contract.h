/**
 * @file contract.h
 * @brief The JSON shapes of the HTTP contract (ARCHITECTURE.md, "HTTP
 *        contract") that pure code builds too: the error body.
 *
 * Depends on jansson only, so the pure modules that map answers to the
 * contract (command.c) need no HTTP server header.
 */
#ifndef ESCQRS_CONTRACT_H
#define ESCQRS_CONTRACT_H

#include <jansson.h>

/** @brief A new `{"error": code, "message": message}` object to add fields to. */
json_t *es_http_error_body(const char *code, const char *message);

#endif
