/*
 * err.c — string forms of the error codes declared once in err.h.
 *
 * Both functions are generated from ES_ERR_LIST so a new code needs one line
 * in the header and nothing here.
 */
#include "escqrs/err.h"

const char *es_err2str(es_err_t err)
{
    switch (err) {
#define ES__ERR_STR(name, val, desc)                                                               \
    case ES_ERR_##name:                                                                            \
        return desc;
        ES_ERR_LIST(ES__ERR_STR)
#undef ES__ERR_STR
    }
    return "Unknown error code";
}

const char *es_err2name(es_err_t err)
{
    switch (err) {
#define ES__ERR_NAME(name, val, desc)                                                              \
    case ES_ERR_##name:                                                                            \
        return #name;
        ES_ERR_LIST(ES__ERR_NAME)
#undef ES__ERR_NAME
    }
    return "UNKNOWN";
}
