/*
 * common.c — what several subcommands share: the options of the CLI's HTTP
 * requests to the gateway and the projector, and loading the domain modules.
 *
 * Apart from main.c so that main.c only dispatches: subcommands call in
 * here, and nothing here calls a subcommand, so the files form no cycle.
 */
#include "cli.h"
#include "escqrs/http_client.h"
#include "escqrs/modules.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

void cli_http_opts(const es_conf_t *conf, es_http_client_opts_t *opts)
{
    const char *token = es_conf_get(conf, "token"), *ca = es_conf_get(conf, "tls.ca.file");
    memset(opts, 0, sizeof(*opts));
    opts->bearer_token = token && *token ? token : NULL;
    opts->ca_file = ca && *ca ? ca : NULL;
}

bool cli_modules_load(const es_conf_t *conf)
{
    char errstr[CLI_ERRSTR_MAX * 4];
    if (es_modules_load_conf(conf, errstr, sizeof(errstr)) == ES_ERR_OK)
        return true;
    fprintf(stderr, "escqrs: %s\n", errstr);
    return false;
}

bool cli_url_escape(const char *s, char *out, size_t outsz)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (n + 4 > outsz)
            return false; /* a truncated value would name something else */
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~')
            out[n++] = (char)ch;
        else
            n += (size_t)snprintf(out + n, outsz - n, "%%%02X", ch);
    }
    out[n] = '\0';
    return true;
}
