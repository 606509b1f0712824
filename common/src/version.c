/*
 * version.c — the SDK version this library was built as (see version.h).
 */
#include "escqrs/version.h"

#include <stdio.h>

int es_sdk_version(void)
{
    return ES_SDK_VERSION;
}

const char *es_sdk_version_format(int version, char *out, size_t outsz)
{
    snprintf(out, outsz, "%d.%d.%d", (version >> 16) & 0xff, (version >> 8) & 0xff, version & 0xff);
    return out;
}
