/*
 * schemas.c — `escqrs schemas check|register`: the schemas/ folder against the registry.
 *
 * Each file maps to the subjects of the topics it describes:
 *   <agg>.commands.avsc  → <agg>.commands-value
 *   <agg>.events.avsc    → <agg>.events-value   (compatibility BACKWARD_TRANSITIVE)
 *   command-result.avsc  → <agg>.command-results-value for every aggregate found
 *   aggregate-state.avsc → <agg>.state-value for every aggregate found
 * `check` registers nothing: it asks the registry whether each schema is
 * compatible with every registered version of its subjects and exits 1 with
 * the registry's reason when one is not, or when an event subject's level is
 * weaker than BACKWARD_TRANSITIVE.  `register` registers them all and
 * sets the event subjects' compatibility level.  Without --dir the schemas
 * the daemons run are used: every loaded module's (key `modules`) and the
 * library's own command-result.
 */
#include "cli.h"
#include "escqrs/modules.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"
#include "escqrs/util.h"

#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SCHEMAS    64
#define MAX_AGGREGATES 16  /* aggregates found in one folder */
#define AGG_NAME_MAX   64  /* bytes of an aggregate's name */
#define SCHEMA_NAME    128 /* bytes of a file name without .avsc */
#define FILE_PATH_MAX  1024
#define EVENTS_LEVEL   "BACKWARD_TRANSITIVE" /* what register sets on event subjects */

typedef struct {
    char name[SCHEMA_NAME]; /* file name without .avsc */
    char *text;
} schema_file_t;

static void schemas_usage(FILE *fp)
{
    fprintf(fp, "usage: escqrs schemas check|register [--dir DIR] [--prefix P]\n\n"
                "check     ask the registry (registry.url) whether every schema is compatible\n"
                "          with all registered versions of its subjects; registers nothing;\n"
                "          exit 1 with the registry's reason if one is not, or if an\n"
                "          event subject's level is weaker than BACKWARD_TRANSITIVE\n"
                "register  register every schema under its subjects; event subjects get\n"
                "          compatibility BACKWARD_TRANSITIVE\n"
                "--dir     read <name>.avsc files from DIR instead of the loaded modules' schemas\n"
                "          (key modules) and command-result\n"
                "--prefix  prepend P to every subject (tests use it for unique subjects)\n");
}

static size_t load_dir(const char *dir, schema_file_t *out)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;
    if (!d)
        return 0;
    while ((de = readdir(d)) && n < MAX_SCHEMAS) {
        size_t len = strlen(de->d_name);
        if (len <= 5 || strcmp(de->d_name + len - 5, ".avsc"))
            continue;
        char path[FILE_PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        snprintf(out[n].name, sizeof(out[n].name), "%.*s", (int)(len - 5), de->d_name);
        es_buf_t text = {0};
        if (es_buf_read_file(&text, path)) {
            out[n].text = text.data; /* ownership moves to out[n] */
            n++;
        } else {
            es_buf_free(&text);
        }
    }
    closedir(d);
    return n;
}

static size_t load_builtin(schema_file_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < es_modules_schema_count() && n < MAX_SCHEMAS; i++) {
        const es_module_schema_t *s = es_modules_schema_at(i);
        snprintf(out[n].name, sizeof(out[n].name), "%s", s->name);
        out[n].text = es_strdup(s->text);
        n++;
    }
    return n;
}

/* Aggregates are the <agg> of every <agg>.events schema. */
static size_t aggregates(const schema_file_t *files, size_t n, char aggs[][AGG_NAME_MAX])
{
    size_t na = 0;
    for (size_t i = 0; i < n && na < MAX_AGGREGATES; i++) {
        const char *dot = strstr(files[i].name, ".events");
        if (dot && !strcmp(dot, ".events"))
            snprintf(aggs[na++], AGG_NAME_MAX, "%.*s", (int)(dot - files[i].name), files[i].name);
    }
    return na;
}

/*
 * The registry judges a check under the subject's own level, and Apicurio's
 * default is NONE, under which everything is compatible.  An event subject
 * with versions but a level weaker than BACKWARD_TRANSITIVE would make a
 * passing check meaningless, so that is a failure of its own.
 */
static es_err_t check_event_level(es_registry_t *reg, const char *subject, char *errstr,
                                  size_t errstr_size)
{
    size_t nver = 0;
    char level[64] = "";
    es_err_t err = es_registry_version_count(reg, subject, &nver, errstr, errstr_size);
    if (err || nver == 0)
        return err;
    err = es_registry_get_compatibility(reg, subject, level, sizeof(level), errstr, errstr_size);
    if (err == ES_ERR_NOT_FOUND)
        snprintf(level, sizeof(level), "(none)");
    else if (err)
        return err;
    if (!strcmp(level, "BACKWARD_TRANSITIVE") || !strcmp(level, "FULL_TRANSITIVE"))
        return ES_ERR_OK;
    snprintf(errstr, errstr_size,
             "compatibility level is %s, not BACKWARD_TRANSITIVE, so the registry's answer "
             "does not cover every earlier version (run `escqrs schemas register`, or set "
             "the level)",
             level);
    return ES_ERR_STATE;
}

/*
 * Register @p text under @p subject.  An existing event subject gets its
 * level first, so the registry judges this very registration by it (a
 * subject left at NONE would take anything); a new one gets it after.
 */
static es_err_t register_one(es_registry_t *reg, const char *subject, const char *text,
                             bool is_events, char *errstr, size_t errstr_size)
{
    int id = 0;
    size_t nver = 0;
    es_err_t err =
        is_events ? es_registry_version_count(reg, subject, &nver, errstr, errstr_size) : ES_ERR_OK;
    if (!err && nver > 0)
        err = es_registry_set_compatibility(reg, subject, EVENTS_LEVEL, errstr, errstr_size);
    if (!err)
        err = es_registry_register(reg, subject, text, &id, errstr, errstr_size);
    if (!err && is_events)
        err = es_registry_set_compatibility(reg, subject, EVENTS_LEVEL, errstr, errstr_size);
    if (!err)
        printf("registered %s id=%d%s\n", subject, id,
               is_events ? " compatibility=" EVENTS_LEVEL : "");
    return err;
}

/* Is @p text compatible with every version of @p subject (and its level strict enough)? */
static es_err_t check_one(es_registry_t *reg, const char *subject, const char *text, bool is_events,
                          char *errstr, size_t errstr_size)
{
    es_err_t err = es_registry_check_compatible(reg, subject, text, errstr, errstr_size);
    if (!err && is_events)
        err = check_event_level(reg, subject, errstr, errstr_size);
    if (!err)
        printf("compatible %s\n", subject);
    return err;
}

/* Check or register one schema file under each of its subjects; the exit code. */
static int schemas_file(es_registry_t *reg, const schema_file_t *file, char aggs[][AGG_NAME_MAX],
                        size_t na, const char *prefix, bool do_register)
{
    char errstr[CLI_ERRSTR_MAX];
    int rc = CLI_EXIT_OK;
    avro_schema_t parsed = NULL;
    if (avro_schema_from_json_length(file->text, strlen(file->text), &parsed)) {
        fprintf(stderr, "INVALID %s.avsc: %s\n", file->name, avro_strerror());
        return CLI_EXIT_FAILURE;
    }
    avro_schema_decref(parsed);
    /* the library's own schemas: one subject per aggregate */
    const char *per_agg = !strcmp(file->name, "command-result")    ? ".command-results"
                          : !strcmp(file->name, "aggregate-state") ? ".state"
                                                                   : NULL;
    bool is_events =
        strstr(file->name, ".events") && !strcmp(strstr(file->name, ".events"), ".events");
    size_t nsubj = per_agg ? na : 1;
    for (size_t s = 0; s < nsubj; s++) {
        char subject[ES_SUBJECT_MAX];
        int len = per_agg
                      ? snprintf(subject, sizeof(subject), "%s%s%s-value", prefix, aggs[s], per_agg)
                      : snprintf(subject, sizeof(subject), "%s%s-value", prefix, file->name);
        if (len < 0 || (size_t)len >= sizeof(subject)) {
            fprintf(stderr, "INVALID %s.avsc: the subject name would pass %d bytes\n", file->name,
                    ES_SUBJECT_MAX - 1);
            rc = CLI_EXIT_FAILURE;
            continue;
        }
        es_err_t err =
            do_register ? register_one(reg, subject, file->text, is_events, errstr, sizeof(errstr))
                        : check_one(reg, subject, file->text, is_events, errstr, sizeof(errstr));
        if (err) {
            fprintf(stderr, "%s %s: %s\n",
                    err == ES_ERR_INCOMPATIBLE_SCHEMA ? "INCOMPATIBLE" : "ERROR", subject, errstr);
            rc = CLI_EXIT_FAILURE;
        }
    }
    return rc;
}

int cli_schemas(es_conf_t *conf, int argc, char **argv)
{
    static const struct option longopts[] = {{"dir", required_argument, NULL, 'd'},
                                             {"prefix", required_argument, NULL, 'p'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0}};
    const char *dir = NULL, *prefix = "";
    schema_file_t files[MAX_SCHEMAS];
    char aggs[MAX_AGGREGATES][AGG_NAME_MAX];
    char errstr[CLI_ERRSTR_MAX];
    int c, rc = CLI_EXIT_OK;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 'h':
            schemas_usage(stdout);
            return CLI_EXIT_OK;
        default:
            schemas_usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || (strcmp(argv[optind], "check") && strcmp(argv[optind], "register"))) {
        schemas_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    bool do_register = !strcmp(argv[optind], "register");
    if (!dir && !cli_modules_load(conf))
        return CLI_EXIT_USAGE;
    size_t n = dir ? load_dir(dir, files) : load_builtin(files);
    if (n == 0) {
        fprintf(stderr, "escqrs schemas: no .avsc files in %s\n", dir ? dir : "(built-in)");
        return CLI_EXIT_FAILURE;
    }
    size_t na = aggregates(files, n, aggs);
    es_registry_t *reg = es_registry_from_conf(conf, CLI_REGISTRY_RETRIES, errstr, sizeof(errstr));
    if (!reg) {
        fprintf(stderr, "escqrs schemas: %s\n", errstr);
        rc = CLI_EXIT_FAILURE;
    }
    for (size_t i = 0; reg && i < n; i++)
        if (schemas_file(reg, &files[i], aggs, na, prefix, do_register) != CLI_EXIT_OK)
            rc = CLI_EXIT_FAILURE;
    es_registry_destroy(reg);
    for (size_t i = 0; i < n; i++)
        free(files[i].text);
    return rc;
}
