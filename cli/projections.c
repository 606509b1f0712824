/*
 * projections.c — `escqrs status` and `escqrs rebuild`: the projector's admin API.
 *
 * status prints each projection's state, generation, lag and rebuild
 * progress from GET /admin/projections.  rebuild starts a blue/green rebuild
 * with POST /admin/projections/{name}/rebuild and follows it until the swap:
 * a progress bar on a terminal, a plain line every few seconds otherwise (so
 * logs of a Job stay readable).  Exit 1 when the rebuild fails.
 */
#include "cli.h"
#include "escqrs/http.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_TIMEOUT_MS 10000

static json_t *admin_get(es_conf_t *conf, const char *method, const char *path, long *status,
                         char *errstr, size_t errstr_size)
{
    char url[1024];
    es_buf_t resp = {0};
    snprintf(url, sizeof(url), "%s%s", es_conf_get(conf, "projector.url"), path);
    if (es_http_fetch(method, url, "application/json", NULL, ADMIN_TIMEOUT_MS, status, &resp,
                      errstr, errstr_size)) {
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
    char errstr[1024];
    long status = 0;
    if (argc > 1) {
        bool help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");
        fprintf(help ? stdout : stderr,
                "usage: escqrs status\n\nEach projection of the projector at projector.url: "
                "state, generation, lag\n(events not yet applied) and rebuild progress.\n");
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
        char rbtext[128] = "-";
        if (json_is_true(json_object_get(rb, "running")))
            snprintf(rbtext, sizeof(rbtext), "running: %lld events, %.0f/s, lag %lld",
                     (long long)json_integer_value(json_object_get(rb, "events")),
                     json_number_value(json_object_get(rb, "events_per_second")),
                     (long long)json_integer_value(json_object_get(rb, "lag")));
        printf("%-20s %-8s %-10lld %-10lld %s\n", json_string_value(json_object_get(p, "name")),
               json_string_value(json_object_get(p, "state")),
               (long long)json_integer_value(json_object_get(p, "generation")),
               (long long)json_integer_value(json_object_get(p, "lag")), rbtext);
    }
    json_decref(list);
    return CLI_EXIT_OK;
}

static void show_progress(bool tty, json_t *rb)
{
    long long events = json_integer_value(json_object_get(rb, "events"));
    long long lag = json_integer_value(json_object_get(rb, "lag"));
    double rate = json_number_value(json_object_get(rb, "events_per_second"));
    double eta = json_number_value(json_object_get(rb, "eta_seconds"));
    double frac = events + lag > 0 ? (double)events / (double)(events + lag) : 0;
    if (tty) {
        char bar[31];
        int filled = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[30] = '\0';
        printf("\r[%s] %5.1f%%  %lld events  %.0f events/s  lag %lld  ETA %.0fs   ", bar,
               frac * 100, events, rate, lag, eta);
    } else {
        printf("rebuild: %.1f%% events=%lld rate=%.0f/s lag=%lld eta=%.0fs\n", frac * 100, events,
               rate, lag, eta);
    }
    fflush(stdout);
}

int cli_rebuild(es_conf_t *conf, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"no-wait", no_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'}, {0}};
    bool wait = true, tty = isatty(STDOUT_FILENO);
    char errstr[1024], path[512];
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
    long long from_gen = json_integer_value(json_object_get(started, "generation"));
    json_decref(started);
    printf("rebuild of %s started (live generation %lld)\n", name, from_gen);
    if (!wait)
        return CLI_EXIT_OK;

    time_t last_line = 0;
    for (;;) {
        usleep(500 * 1000);
        json_t *list =
            admin_get(conf, "GET", "/admin/projections", &status, errstr, sizeof(errstr));
        json_t *p = list ? find_projection(list, name) : NULL;
        if (!p) {
            fprintf(stderr, "\nescqrs rebuild: lost the projector: %s\n", errstr);
            json_decref(list);
            return CLI_EXIT_FAILURE;
        }
        json_t *rb = json_object_get(p, "rebuild");
        long long gen = json_integer_value(json_object_get(p, "generation"));
        const char *lasterr = json_string_value(json_object_get(rb, "last_error"));
        if (json_is_true(json_object_get(rb, "running"))) {
            if (tty || time(NULL) - last_line >= 2) {
                show_progress(tty, rb);
                last_line = time(NULL);
            }
        } else if (lasterr && *lasterr) {
            fprintf(stderr, "%sescqrs rebuild: failed: %s\n", tty ? "\n" : "", lasterr);
            json_decref(list);
            return CLI_EXIT_FAILURE;
        } else if (gen != from_gen) {
            printf("%srebuilt %s: %lld events in %.1f s, now live as generation %lld\n",
                   tty ? "\n" : "", name,
                   (long long)json_integer_value(json_object_get(rb, "last_events")),
                   (double)json_integer_value(json_object_get(rb, "last_duration_ms")) / 1000.0,
                   gen);
            json_decref(list);
            return CLI_EXIT_OK;
        }
        json_decref(list);
    }
}
