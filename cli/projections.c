/*
 * projections.c — `escqrs status`, `escqrs rebuild` and `escqrs freeze`: the
 * projector's admin API.
 *
 * status prints each projection's state, generation, lag, rebuild progress
 * and frozen views from GET /admin/projections.  rebuild starts a blue/green
 * rebuild with POST /admin/projections/{name}/rebuild and follows it until
 * the swap; freeze starts a frozen view (POST .../freeze?until=) and follows
 * it until it is ready.  Both follow through one loop (follow()): a progress
 * bar on a terminal, a plain line every few seconds otherwise (so logs of a
 * Job stay readable).  Exit 1 when the operation fails.
 */
#include "cli.h"
#include "escqrs/http_client.h"

#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_TIMEOUT_MS 10000 /* one request to the admin API */
#define FOLLOW_POLL_MS   500   /* how often follow() asks for progress */
#define FOLLOW_LINE_S    2     /* a progress line at most this often when not on a terminal */
#define BAR_WIDTH        30    /* characters of the progress bar */
#define PROGRESS_MAX     128   /* a rebuild's progress in the status table, a view's label */
#define ADMIN_PATH_MAX   1024  /* an admin API path with its query */
#define QUERY_VALUE_MAX  256   /* a percent-encoded --until or --label */

static json_t *admin_get(es_conf_t *conf, const char *method, const char *path, long *status,
                         char *errstr, size_t errstr_size)
{
    char url[CLI_URL_MAX];
    es_buf_t resp = {0};
    es_http_client_opts_t opts;
    cli_http_opts(conf, &opts);
    snprintf(url, sizeof(url), "%s%s", es_conf_get(conf, "projector.admin.url"), path);
    if (es_http_fetch_opts(method, url, "application/json", NULL, NULL, ADMIN_TIMEOUT_MS, &opts,
                           status, &resp, errstr, errstr_size)) {
        es_buf_free(&resp);
        return NULL;
    }
    json_t *j = json_loadb(resp.data, resp.len, 0, NULL);
    if (!j)
        snprintf(errstr, errstr_size, "%s %.400s: HTTP %ld, not JSON: %.200s", method, url, *status,
                 resp.data);
    es_buf_free(&resp);
    return j;
}

static json_t *find_projection(json_t *list, const char *name)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(list, "projections"), i, p)
    {
        if (!strcmp(json_string_value(json_object_get(p, "name")), name))
            return p;
    }
    return NULL;
}

int cli_status(es_conf_t *conf, int argc, char **argv)
{
    char errstr[CLI_ERRSTR_MAX];
    long status = 0;
    if (argc > 1) {
        bool help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");
        fprintf(help ? stdout : stderr,
                "usage: escqrs status\n\nEach projection of the projector at projector.admin.url: "
                "state, generation, lag\n(events not yet applied), rebuild progress and frozen "
                "views.\n");
        return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    }
    json_t *list = admin_get(conf, "GET", "/admin/projections", &status, errstr, sizeof(errstr));
    if (!list || status != 200) {
        fprintf(stderr, "escqrs status: %s\n", list ? "unexpected answer" : errstr);
        json_decref(list);
        return CLI_EXIT_FAILURE;
    }
    printf("%-20s %-8s %-10s %-10s %s\n", "PROJECTION", "STATE", "GENERATION", "LAG", "REBUILD");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(list, "projections"), i, p)
    {
        json_t *rb = json_object_get(p, "rebuild");
        char rbtext[PROGRESS_MAX] = "-";
        if (json_is_true(json_object_get(rb, "running")))
            snprintf(rbtext, sizeof(rbtext), "running: %lld events, %.0f/s, lag %lld",
                     (long long)json_integer_value(json_object_get(rb, "events")),
                     json_number_value(json_object_get(rb, "events_per_second")),
                     (long long)json_integer_value(json_object_get(rb, "lag")));
        printf("%-20s %-8s %-10lld %-10lld %s\n", json_string_value(json_object_get(p, "name")),
               json_string_value(json_object_get(p, "state")),
               (long long)json_integer_value(json_object_get(p, "generation")),
               (long long)json_integer_value(json_object_get(p, "lag")), rbtext);
        size_t k;
        json_t *f;
        json_array_foreach(json_object_get(p, "frozen"), k, f)
        {
            printf("  frozen view %-24s until %s  %-8s %lld events\n",
                   json_string_value(json_object_get(f, "label")),
                   json_string_value(json_object_get(f, "until")),
                   json_string_value(json_object_get(f, "state")),
                   (long long)json_integer_value(json_object_get(f, "events")));
        }
    }
    json_decref(list);
    return CLI_EXIT_OK;
}

static void show_progress(const char *what, bool tty, json_t *pr)
{
    long long events = json_integer_value(json_object_get(pr, "events"));
    long long lag = json_integer_value(json_object_get(pr, "lag"));
    double rate = json_number_value(json_object_get(pr, "events_per_second"));
    double eta = json_number_value(json_object_get(pr, "eta_seconds"));
    double frac = events + lag > 0 && lag >= 0 ? (double)events / (double)(events + lag) : 0;
    if (tty) {
        char bar[BAR_WIDTH + 1];
        int filled = (int)(frac * BAR_WIDTH);
        for (int i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[BAR_WIDTH] = '\0';
        printf("\r[%s] %5.1f%%  %lld events  %.0f events/s  lag %lld  ETA %.0fs   ", bar,
               frac * 100, events, rate, lag, eta);
    } else {
        printf("%s: %.1f%% events=%lld rate=%.0f/s lag=%lld eta=%.0fs\n", what, frac * 100, events,
               rate, lag, eta);
    }
    fflush(stdout);
}

typedef enum { FOLLOW_RUNNING, FOLLOW_DONE, FOLLOW_FAILED } follow_t;

/*
 * One look at an operation in projection @p p of GET /admin/projections:
 * running (with *progress, an object with events, lag, events_per_second and
 * eta_seconds, or NULL when there is nothing to show), done or failed (with
 * a line in @p msg).
 */
typedef follow_t (*follow_step_t)(json_t *p, void *ctx, json_t **progress, char *msg, size_t msgsz);

/* Poll GET /admin/projections until @p step says the operation ended. */
static int follow(es_conf_t *conf, const char *what, const char *name, follow_step_t step,
                  void *ctx)
{
    bool tty = isatty(STDOUT_FILENO);
    char errstr[CLI_ERRSTR_MAX], msg[CLI_ERRSTR_MAX];
    long status = 0;
    time_t last_line = 0;
    for (;;) {
        usleep(FOLLOW_POLL_MS * 1000);
        json_t *list =
            admin_get(conf, "GET", "/admin/projections", &status, errstr, sizeof(errstr));
        json_t *p = list ? find_projection(list, name) : NULL;
        if (!p) {
            fprintf(stderr, "\nescqrs %s: lost the projector: %s\n", what, errstr);
            json_decref(list);
            return CLI_EXIT_FAILURE;
        }
        json_t *progress = NULL;
        msg[0] = '\0';
        follow_t f = step(p, ctx, &progress, msg, sizeof(msg));
        if (f == FOLLOW_RUNNING && progress && (tty || time(NULL) - last_line >= FOLLOW_LINE_S)) {
            show_progress(what, tty, progress);
            last_line = time(NULL);
        } else if (f == FOLLOW_FAILED) {
            fprintf(stderr, "%sescqrs %s: failed: %s\n", tty ? "\n" : "", what, msg);
        } else if (f == FOLLOW_DONE) {
            printf("%s%s\n", tty ? "\n" : "", msg);
        }
        json_decref(list);
        if (f != FOLLOW_RUNNING)
            return f == FOLLOW_DONE ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    }
}

typedef struct {
    const char *name;
    long long from_gen;
} rebuild_ctx_t;

static follow_t rebuild_step(json_t *p, void *ctx, json_t **progress, char *msg, size_t msgsz)
{
    rebuild_ctx_t *c = ctx;
    json_t *rb = json_object_get(p, "rebuild");
    long long gen = json_integer_value(json_object_get(p, "generation"));
    const char *lasterr = json_string_value(json_object_get(rb, "last_error"));
    if (json_is_true(json_object_get(rb, "running"))) {
        *progress = rb;
        return FOLLOW_RUNNING;
    }
    if (lasterr && *lasterr) {
        snprintf(msg, msgsz, "%s", lasterr);
        return FOLLOW_FAILED;
    }
    if (gen == c->from_gen)
        return FOLLOW_RUNNING; /* not started yet */
    snprintf(msg, msgsz, "rebuilt %s: %lld events in %.1f s, now live as generation %lld", c->name,
             (long long)json_integer_value(json_object_get(rb, "last_events")),
             (double)json_integer_value(json_object_get(rb, "last_duration_ms")) / 1000.0, gen);
    return FOLLOW_DONE;
}

int cli_rebuild(es_conf_t *conf, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"no-wait", no_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'}, {0}};
    bool wait = true;
    char errstr[CLI_ERRSTR_MAX], path[ADMIN_PATH_MAX];
    long status = 0;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'n') {
            wait = false;
        } else {
            FILE *fp = c == 'h' ? stdout : stderr;
            fprintf(fp, "usage: escqrs rebuild NAME [--no-wait]\n\n"
                        "Rebuild projection NAME from offset 0 into a shadow store while the live\n"
                        "one keeps serving; the projector swaps them when the shadow has caught\n"
                        "up. Follows the rebuild with a progress bar unless --no-wait.\n");
            return c == 'h' ? CLI_EXIT_OK : CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "usage: escqrs rebuild NAME [--no-wait]\n");
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[optind];
    snprintf(path, sizeof(path), "/admin/projections/%s/rebuild", name);
    json_t *started = admin_get(conf, "POST", path, &status, errstr, sizeof(errstr));
    if (!started || status != 202) {
        const char *msg = started ? json_string_value(json_object_get(started, "message")) : NULL;
        fprintf(stderr, "escqrs rebuild: %s\n", msg ? msg : errstr);
        json_decref(started);
        return CLI_EXIT_FAILURE;
    }
    rebuild_ctx_t ctx = {name, json_integer_value(json_object_get(started, "generation"))};
    json_decref(started);
    printf("rebuild of %s started (live generation %lld)\n", name, ctx.from_gen);
    if (!wait)
        return CLI_EXIT_OK;
    return follow(conf, "rebuild", name, rebuild_step, &ctx);
}

static follow_t freeze_step(json_t *p, void *ctx, json_t **progress, char *msg, size_t msgsz)
{
    const char *label = ctx;
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(p, "frozen"), i, f)
    {
        if (strcmp(json_string_value(json_object_get(f, "label")), label) != 0)
            continue;
        const char *state = json_string_value(json_object_get(f, "state"));
        if (!strcmp(state, "building")) {
            *progress = f;
            return FOLLOW_RUNNING;
        }
        if (!strcmp(state, "failed")) {
            snprintf(msg, msgsz, "%s", json_string_value(json_object_get(f, "error")));
            return FOLLOW_FAILED;
        }
        snprintf(msg, msgsz, "frozen view %s ready: %lld events up to %s; query it with view=%s",
                 label, (long long)json_integer_value(json_object_get(f, "events")),
                 json_string_value(json_object_get(f, "until")), label);
        return FOLLOW_DONE;
    }
    snprintf(msg, msgsz, "frozen view %s is gone (deleted, or the projector restarted)", label);
    return FOLLOW_FAILED;
}

int cli_freeze(es_conf_t *conf, int argc, char **argv)
{
    static const struct option longopts[] = {{"until", required_argument, NULL, 'u'},
                                             {"label", required_argument, NULL, 'l'},
                                             {"no-wait", no_argument, NULL, 'n'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0}};
    static const char usage[] = "usage: escqrs freeze NAME --until TIME [--label L] [--no-wait]\n";
    bool wait = true;
    const char *until = NULL, *label = NULL;
    char errstr[CLI_ERRSTR_MAX], path[ADMIN_PATH_MAX], euntil[QUERY_VALUE_MAX],
        elabel[QUERY_VALUE_MAX] = "";
    long status = 0;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hu:l:", longopts, NULL)) != -1) {
        if (c == 'n') {
            wait = false;
        } else if (c == 'u') {
            until = optarg;
        } else if (c == 'l') {
            label = optarg;
        } else {
            FILE *fp = c == 'h' ? stdout : stderr;
            fprintf(fp,
                    "%s\nBuild a read-only view of projection NAME as of TIME (milliseconds since\n"
                    "the epoch or RFC 3339): every event up to TIME, from offset 0, into a store\n"
                    "of its own; the live view is not touched.  Queries read it with\n"
                    "view=LABEL (default: the time, as 20261201T101500.000Z).  Follows the\n"
                    "build with a progress bar unless --no-wait.\n",
                    usage);
            return c == 'h' ? CLI_EXIT_OK : CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || !until) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[optind];
    if (!cli_url_escape(until, euntil, sizeof(euntil)) ||
        (label && !cli_url_escape(label, elabel, sizeof(elabel)))) {
        fputs("escqrs projections freeze: --until or --label is too long\n", stderr);
        return CLI_EXIT_USAGE;
    }
    snprintf(path, sizeof(path), "/admin/projections/%s/freeze?until=%s%s%s", name, euntil,
             label ? "&label=" : "", elabel);
    json_t *started = admin_get(conf, "POST", path, &status, errstr, sizeof(errstr));
    if (!started || status != 202) {
        const char *msg = started ? json_string_value(json_object_get(started, "message")) : NULL;
        fprintf(stderr, "escqrs freeze: %s\n", msg ? msg : errstr);
        json_decref(started);
        return CLI_EXIT_FAILURE;
    }
    char made[PROGRESS_MAX];
    snprintf(made, sizeof(made), "%s", json_string_value(json_object_get(started, "label")));
    printf("frozen view %s of %s up to %s started\n", made, name,
           json_string_value(json_object_get(started, "until")));
    json_decref(started);
    if (!wait)
        return CLI_EXIT_OK;
    return follow(conf, "freeze", name, freeze_step, made);
}
