/*
 * fuzz_serde_decode.c — libFuzzer target for the record decode path.
 *
 * Feeds arbitrary bytes to es_serde_decode() with the cart.events reader
 * schema and no registry (schema id 7 is the only known writer), so every
 * input exercises the wire header check, the bounds-checking walk and Avro
 * C's read.  Any crash, sanitizer report or leak is a finding.  Seeds in
 * corpus/serde/ are golden records (see docs/wire-format.md).
 */
#include "escqrs/serde.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static es_serde_t *serde;

static void destroy_serde(void)
{
    es_serde_destroy(serde);
}

/* Built once before any input, and destroyed at exit, so LeakSanitizer sees no leak. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char errstr[256];
    (void)argc;
    (void)argv;
    serde = es_serde_new(NULL, "cart.events-value", es_schema_text("cart.events"), false, 7, errstr,
                         sizeof(errstr));
    if (!serde)
        abort();
    atexit(destroy_serde);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errstr[256];
    avro_value_t *out;
    es_serde_decode(serde, data, size, &out, errstr, sizeof(errstr));
    return 0;
}
