/*
 * modules.c — `escqrs modules`: the domain modules the configuration loads
 * (keys modules and modules.dir), with what each brings.  The same loading
 * as the daemons', so it is also the quick check of a module before a
 * deployment: a module the programs would refuse is refused here, exit 2.
 */
#include "cli.h"
#include "escqrs/modules.h"

#include <stdio.h>
#include <string.h>

int cli_modules(es_conf_t *conf, int argc, char **argv)
{
    if (argc > 1) {
        FILE *fp = strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? stderr : stdout;
        fprintf(fp, "usage: escqrs modules\n\n"
                    "Load the domain modules named by the key modules (from modules.dir) and\n"
                    "list each: its file, the SDK version it was built against, its\n"
                    "aggregates (with their HTTP collection), projections and schemas.\n");
        return fp == stdout ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    }
    if (!cli_modules_load(conf))
        return CLI_EXIT_USAGE;
    for (size_t i = 0; i < es_modules_count(); i++) {
        const char *path = NULL;
        const es_module_t *m = es_modules_at(i, &path);
        char version[32];
        printf("%s  %s  (SDK %s)\n", m->name, path,
               es_sdk_version_format(m->sdk_version, version, sizeof(version)));
        for (const es_aggregate_def_t *const *a = m->aggregates; a && *a; a++)
            printf("  aggregate   %-16s /v1/%s/{id}, %zu command(s)\n", (*a)->name,
                   (*a)->collection, (*a)->ncommands);
        for (const es_proj_def_t *const *p = m->projections; p && *p; p++)
            printf("  projection  %s\n", (*p)->name);
        for (const es_module_schema_t *s = m->schemas; s && s->name; s++)
            printf("  schema      %s\n", s->name);
    }
    return CLI_EXIT_OK;
}
