/*
 * schemas.c — `escqrs schemas check|register`: the schemas/ folder against the registry.
 *
 * Each file maps to the subjects of the topics it describes:
 *   <agg>.commands.avsc  → <agg>.commands-value
 *   <agg>.events.avsc    → <agg>.events-value   (compatibility BACKWARD_TRANSITIVE)
 *   command-result.avsc  → <agg>.command-results-value for every aggregate found
 * `check` registers nothing: it asks the registry whether each schema is
 * compatible with every registered version of its subjects and exits 1 with
 * the registry's reason when one is not, or when an event subject's level is
 * weaker than BACKWARD_TRANSITIVE.  `register` registers them all and
 * sets the event subjects' compatibility level.  Without --dir the schemas
 * compiled into this binary are used, so the CLI checks what the daemons run.
 */
#include "cli.h"
#include "escqrs/registry.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"

#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SCHEMAS 64

typedef struct {
    char name[128]; /* file name without .avsc */
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
                "--dir     read <name>.avsc files from DIR instead of the built-in schemas\n"
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
        char path[1024];
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
    static const char *const names[] = {"cart.commands", "cart.events", "account.commands",
                                        "account.events", "command-result"};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *t = es_schema_text(names[i]);
        if (!t)
            continue;
        snprintf(out[n].name, sizeof(out[n].name), "%s", names[i]);
        out[n].text = es_strdup(t);
        n++;
    }
    return n;
}

/* Aggregates are the <agg> of every <agg>.events schema. */
static size_t aggregates(const schema_file_t *files, size_t n, char aggs[][64])
{
    size_t na = 0;
    for (size_t i = 0; i < n && na < 16; i++) {
        const char *dot = strstr(files[i].name, ".events");
        if (dot && !strcmp(dot, ".events"))
            snprintf(aggs[na++], 64, "%.*s", (int)(dot - files[i].name), files[i].name);
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

int cli_schemas(es_conf_t *conf, int argc, char **argv)
{
    static const struct option longopts[] = {{"dir", required_argument, NULL, 'd'},
                                             {"prefix", required_argument, NULL, 'p'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0}};
    const char *dir = NULL, *prefix = "";
    schema_file_t files[MAX_SCHEMAS];
    char aggs[16][64];
    char errstr[1024];
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
    size_t n = dir ? load_dir(dir, files) : load_builtin(files);
    if (n == 0) {
        fprintf(stderr, "escqrs schemas: no .avsc files in %s\n", dir ? dir : "(built-in)");
        return CLI_EXIT_FAILURE;
    }
    size_t na = aggregates(files, n, aggs);
    es_registry_t *reg = es_registry_from_conf(conf, 3, errstr, sizeof(errstr));
    if (!reg) {
        fprintf(stderr, "escqrs schemas: %s\n", errstr);
        rc = CLI_EXIT_FAILURE;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        avro_schema_t parsed = NULL;
        if (avro_schema_from_json_length(files[i].text, strlen(files[i].text), &parsed)) {
            fprintf(stderr, "INVALID %s.avsc: %s\n", files[i].name, avro_strerror());
            rc = CLI_EXIT_FAILURE;
            continue;
        }
        avro_schema_decref(parsed);
        bool is_result = !strcmp(files[i].name, "command-result");
        bool is_events = strstr(files[i].name, ".events") &&
                         !strcmp(strstr(files[i].name, ".events"), ".events");
        size_t nsubj = is_result ? na : 1;
        for (size_t s = 0; s < nsubj; s++) {
            char subject[ES_SUBJECT_MAX];
            int len = is_result
                          ? snprintf(subject, sizeof(subject), "%s%s.command-results-value", prefix,
                                     aggs[s])
                          : snprintf(subject, sizeof(subject), "%s%s-value", prefix, files[i].name);
            if (len < 0 || (size_t)len >= sizeof(subject)) {
                fprintf(stderr, "INVALID %s.avsc: the subject name would pass %d bytes\n",
                        files[i].name, ES_SUBJECT_MAX - 1);
                rc = CLI_EXIT_FAILURE;
                continue;
            }
            es_err_t err;
            if (do_register) {
                int id = 0;
                size_t nver = 0;
                /*
                 * An existing event subject gets its level first, so the
                 * registry judges this very registration by it (a subject
                 * left at NONE would take anything); a new one gets it after.
                 */
                err = is_events
                          ? es_registry_version_count(reg, subject, &nver, errstr, sizeof(errstr))
                          : ES_ERR_OK;
                if (!err && nver > 0)
                    err = es_registry_set_compatibility(reg, subject, "BACKWARD_TRANSITIVE", errstr,
                                                        sizeof(errstr));
                if (!err)
                    err = es_registry_register(reg, subject, files[i].text, &id, errstr,
                                               sizeof(errstr));
                if (!err && is_events)
                    err = es_registry_set_compatibility(reg, subject, "BACKWARD_TRANSITIVE", errstr,
                                                        sizeof(errstr));
                if (!err)
                    printf("registered %s id=%d%s\n", subject, id,
                           is_events ? " compatibility=BACKWARD_TRANSITIVE" : "");
            } else {
                err = es_registry_check_compatible(reg, subject, files[i].text, errstr,
                                                   sizeof(errstr));
                if (!err && is_events)
                    err = check_event_level(reg, subject, errstr, sizeof(errstr));
                if (!err)
                    printf("compatible %s\n", subject);
            }
            if (err) {
                fprintf(stderr, "%s %s: %s\n",
                        err == ES_ERR_INCOMPATIBLE_SCHEMA ? "INCOMPATIBLE" : "ERROR", subject,
                        errstr);
                rc = CLI_EXIT_FAILURE;
            }
        }
    }
out:
    es_registry_destroy(reg);
    for (size_t i = 0; i < n; i++)
        free(files[i].text);
    return rc;
}
