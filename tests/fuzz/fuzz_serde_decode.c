/*
 * fuzz_serde_decode.c — libFuzzer target for the record decode path.
 *
 * Feeds arbitrary bytes to es_serde_decode() of three registry-less serdes, so
 * every input exercises the wire header check, the one-pass checked read,
 * and, for a second writer schema, the resolver:
 *   - cart.events reader; id 7 is cart.events itself (read directly), id 8
 *     the v2 of tests/data/evolution (adds a field: resolved to the reader);
 *   - the v2 as reader, so id 7 is resolved with the added field's default;
 *   - command-result reader, id 9 (enum, array of records, unions).
 * Each input is decoded as a whole record, then as a body behind a valid
 * header whose id its first byte picks.  Any crash, sanitizer report or
 * leak is a finding.  Seeds in corpus/serde/
 * are golden records of those ids (see docs/wire-format.md).
 */
#include "avro_tracked.h"
#include "shipped.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static es_serde_t *events, *events_v2, *results;

static void destroy_serdes(void)
{
    es_serde_destroy(events);
    es_serde_destroy(events_v2);
    es_serde_destroy(results);
}

static char *slurp(const char *rel)
{
    char path[1024];
    es_buf_t b = {0};
    snprintf(path, sizeof(path), "%s/%s", ESCQRS_SOURCE_DIR, rel);
    if (!es_buf_read_file(&b, path)) {
        es_buf_free(&b);
        return NULL;
    }
    return b.data;
}

/*
 * Built once before any input, and destroyed at exit, before avro_tracked.c
 * checks that no Avro allocation is left.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char errstr[256];
    (void)argc;
    (void)argv;
    fuzz_avro_track_start();
    char *v2 = slurp("tests/data/evolution/v2/cart.events.avsc");
    es_shipped_modules_register();
    events = es_serde_new(NULL, "cart.events-value", es_schema_text("cart.events"), false, 7,
                          errstr, sizeof(errstr));
    results = es_serde_new(NULL, "cart.command-results-value", es_schema_text("command-result"),
                           false, 9, errstr, sizeof(errstr));
    events_v2 =
        v2 ? es_serde_new(NULL, "cart.events-value", v2, false, 8, errstr, sizeof(errstr)) : NULL;
    if (!events || !events_v2 || !results ||
        es_serde_add_writer(events, 8, v2, errstr, sizeof(errstr)) != ES_ERR_OK ||
        es_serde_add_writer(events_v2, 7, es_schema_text("cart.events"), errstr, sizeof(errstr)) !=
            ES_ERR_OK) {
        fprintf(stderr, "fuzz_serde_decode: setup failed: %s\n", errstr);
        abort();
    }
    free(v2);
    atexit(destroy_serdes);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int ids[] = {7, 8, 9};
    char errstr[256];
    avro_value_t *out;
    /* as a whole record: the wire header is fuzzed too */
    es_serde_decode(events, data, size, &out, errstr, sizeof(errstr));
    es_serde_decode(events_v2, data, size, &out, errstr, sizeof(errstr));
    es_serde_decode(results, data, size, &out, errstr, sizeof(errstr));
    if (size == 0)
        return 0;
    /*
     * As a body: the first byte picks a known id, the rest follows a valid
     * header, so mutations spend their effort on the checked read and
     * the resolver rather than on finding the three ids.
     */
    int id = ids[data[0] % 3];
    uint8_t *rec = malloc(size - 1 + ES_WIRE_HEADER_SIZE);
    if (!rec)
        return 0;
    rec[0] = ES_WIRE_MAGIC;
    rec[1] = rec[2] = rec[3] = 0;
    rec[4] = (uint8_t)id;
    memcpy(rec + ES_WIRE_HEADER_SIZE, data + 1, size - 1);
    if (id == 9) {
        es_serde_decode(results, rec, size - 1 + ES_WIRE_HEADER_SIZE, &out, errstr, sizeof(errstr));
    } else {
        es_serde_decode(events, rec, size - 1 + ES_WIRE_HEADER_SIZE, &out, errstr, sizeof(errstr));
        es_serde_decode(events_v2, rec, size - 1 + ES_WIRE_HEADER_SIZE, &out, errstr,
                        sizeof(errstr));
    }
    free(rec);
    return 0;
}
