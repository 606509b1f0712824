/*
 * fuzz_http_body.c — libFuzzer target for the gateway's body parser.
 *
 * The first input byte picks one of the shipped HTTP commands (cart and
 * account), the rest is the request body given to es_command_from_json(),
 * exactly as the gateway does after the 413 cap.  Accepted bodies are then
 * fingerprinted, which walks and encodes the payload Avro built.  Any crash,
 * sanitizer report or leak is a finding; so is a refusal without a message
 * or an accepted body whose payload has no branch.
 */
#include "avro_tracked.h"
#include "shipped.h"
#include "escqrs/command.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const es_aggregate_def_t *def;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t cmd, payload;
} target_t;

static target_t targets[2];

/* At exit, before avro_tracked.c checks that no Avro allocation is left. */
static void destroy_targets(void)
{
    for (int i = 0; i < 2; i++) {
        avro_value_decref(&targets[i].cmd);
        avro_value_iface_decref(targets[i].iface);
        avro_schema_decref(targets[i].schema);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char errstr[256];
    const es_aggregate_def_t *defs[2] = {&es_domain_cart, &es_domain_account};
    fuzz_avro_track_start();
    es_shipped_modules_register();
    for (int i = 0; i < 2; i++) {
        target_t *t = &targets[i];
        t->def = defs[i];
        if (es_schema_parse(t->def->commands_schema, &t->schema, errstr, sizeof(errstr))) {
            fprintf(stderr, "%s\n", errstr);
            abort();
        }
        t->iface = avro_generic_class_from_schema(t->schema);
        avro_generic_value_new(t->iface, &t->cmd);
        avro_value_get_by_name(&t->cmd, "payload", &t->payload, NULL);
    }
    atexit(destroy_targets);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[512];
    const char *code = NULL;
    if (size < 1)
        return 0;
    size_t ncmds = es_domain_cart.ncommands + es_domain_account.ncommands;
    size_t pick = data[0] % ncmds;
    target_t *t = pick < es_domain_cart.ncommands ? &targets[0] : &targets[1];
    const es_command_def_t *cd =
        &t->def->commands[pick < es_domain_cart.ncommands ? pick : pick - es_domain_cart.ncommands];
    avro_value_reset(&t->cmd);
    msg[0] = '\0';
    es_err_t err = es_command_from_json(cd, (const char *)data + 1, size - 1, &t->payload, &code,
                                        msg, sizeof(msg));
    if (err) {
        if (!msg[0] || !code)
            abort(); /* every refusal must say why */
        return 0;
    }
    avro_value_t br;
    if (avro_value_get_current_branch(&t->payload, &br))
        abort();
    (void)es_command_fingerprint(&t->cmd);
    return 0;
}
