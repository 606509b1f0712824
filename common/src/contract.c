/*
 * contract.c — the HTTP contract's JSON error body, the one place its shape
 * is written down in code.
 */
#include "escqrs/contract.h"

json_t *es_http_error_body(const char *code, const char *message)
{
    return json_pack("{s:s, s:s}", "error", code, "message", message);
}
