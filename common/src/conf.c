/*
 * conf.c — declared configuration tables, their sources and their validation.
 *
 * Values are kept as strings next to the declaration they belong to; typed
 * getters parse them again, which is cheap and keeps one representation.
 * Every value is validated when it is set, so a program that got past
 * es_conf_init_from_args() never meets a bad value later.  `kafka.` keys are
 * validated by asking librdkafka to accept them on a scratch configuration:
 * librdkafka is the authority on its own properties.
 */
#include "escqrs/conf.h"
#include "escqrs/log.h"
#include "escqrs/util.h"

#include <ctype.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KAFKA_PREFIX     "kafka."
#define KAFKA_PREFIX_LEN (sizeof(KAFKA_PREFIX) - 1)
#define ENV_PREFIX       "ESCQRS_"
#define ENV_PREFIX_LEN   (sizeof(ENV_PREFIX) - 1)

typedef struct es_conf_entry_s {
    char *name;
    char *value;              /* NULL: unset */
    const char *source;       /* "default", "file", "env", "flag" */
    const es_conf_def_t *def; /* NULL for undeclared kafka.* keys */
} es_conf_entry_t;

struct es_conf_s {
    char *program;
    const es_conf_def_t *const *tables;
    es_conf_entry_t *entries;
    size_t cnt, cap;
};

static es_conf_entry_t *conf_find(const es_conf_t *conf, const char *name)
{
    for (size_t i = 0; i < conf->cnt; i++)
        if (!strcmp(conf->entries[i].name, name))
            return &conf->entries[i];
    return NULL;
}

static es_conf_entry_t *conf_add(es_conf_t *conf, const char *name, const es_conf_def_t *def)
{
    if (conf->cnt == conf->cap) {
        conf->cap = conf->cap ? conf->cap * 2 : 32;
        conf->entries = es_realloc(conf->entries, conf->cap * sizeof(*conf->entries));
    }
    es_conf_entry_t *e = &conf->entries[conf->cnt++];
    e->name = es_strdup(name);
    e->value = NULL;
    e->source = "unset";
    e->def = def;
    return e;
}

static void entry_assign(es_conf_entry_t *e, const char *value, const char *source)
{
    free(e->value);
    e->value = value ? es_strdup(value) : NULL;
    e->source = source;
}

es_conf_t *es_conf_new(const char *program, const es_conf_def_t *const *tables)
{
    es_conf_t *conf = es_calloc(1, sizeof(*conf));
    conf->program = es_strdup(program);
    conf->tables = tables;
    for (const es_conf_def_t *const *t = tables; t && *t; t++) {
        for (const es_conf_def_t *d = *t; d->name; d++) {
            es_conf_entry_t *e = conf_find(conf, d->name);
            if (!e)
                e = conf_add(conf, d->name, d);
            e->def = d; /* a later table may refine an earlier default */
            entry_assign(e, d->defval, "default");
        }
    }
    return conf;
}

void es_conf_destroy(es_conf_t *conf)
{
    if (!conf)
        return;
    for (size_t i = 0; i < conf->cnt; i++) {
        free(conf->entries[i].name);
        free(conf->entries[i].value);
    }
    free(conf->entries);
    free(conf->program);
    free(conf);
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = true;
            return true;
        }
        if (!strcasecmp(s, no[i])) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool enum_has(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == vlen && !strncmp(p, value, len))
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

bool es_conf_is_secret(const char *name)
{
    /* the words, and what librdkafka itself redacts (_RK_SENSITIVE in 2.0.2's rdkafka_conf.c) */
    static const char *const words[] = {
        "password",   "secret",  "token",   "jaas",          "credential",         "private",
        "passphrase", "key.pem", "ssl.key", "sasl.username", "oauthbearer.config", "ca.pem"};
    char lower[256];
    size_t i;
    for (i = 0; name[i] && i + 1 < sizeof(lower); i++)
        lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    lower[i] = '\0';
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(lower, words[i]))
            return true;
    return false;
}

/* What may be shown of @p name's @p value: a secret never is. */
static const char *shown(const char *name, const char *value)
{
    return value && es_conf_is_secret(name) ? "(secret, not shown)" : value;
}

static es_err_t validate_declared(const es_conf_def_t *d, const char *value, char *errstr,
                                  size_t errstr_size)
{
    value = shown(d->name, value);
    int64_t iv;
    bool bv;
    switch (d->type) {
    case ES_CONF_STRING:
        if (d->min > 0 && !*value) { /* "" would never work: a broker list, a directory */
            snprintf(errstr, errstr_size, "%s: must not be empty", d->name);
            return ES_ERR_CONF;
        }
        return ES_ERR_OK;
    case ES_CONF_INT:
        if (!es_parse_i64(value, d->min, d->max, &iv)) {
            const char *digits = value + (value[0] == '-');
            if (*digits && digits[strspn(digits, "0123456789")] == '\0') /* past int64 too */
                snprintf(errstr, errstr_size, "%s: %s is out of range [%lld..%lld]", d->name, value,
                         (long long)d->min, (long long)d->max);
            else
                snprintf(errstr, errstr_size, "%s: \"%s\" is not an integer (plain decimal)",
                         d->name, value);
            return ES_ERR_CONF;
        }
        return ES_ERR_OK;
    case ES_CONF_BOOL:
        if (!parse_bool(value, &bv)) {
            snprintf(errstr, errstr_size, "%s: \"%s\" is not a boolean (true|false)", d->name,
                     value);
            return ES_ERR_CONF;
        }
        return ES_ERR_OK;
    case ES_CONF_ENUM:
        if (!enum_has(d->choices, value)) {
            snprintf(errstr, errstr_size, "%s: \"%s\" is not one of %s", d->name, value,
                     d->choices);
            return ES_ERR_CONF;
        }
        return ES_ERR_OK;
    }
    return ES_ERR_OK;
}

static es_err_t validate_kafka(const char *name, const char *value, char *errstr,
                               size_t errstr_size)
{
    char kerr[512];
    rd_kafka_conf_t *scratch = rd_kafka_conf_new();
    rd_kafka_conf_res_t res =
        rd_kafka_conf_set(scratch, name + KAFKA_PREFIX_LEN, value, kerr, sizeof(kerr));
    rd_kafka_conf_destroy(scratch);
    if (res == RD_KAFKA_CONF_OK)
        return ES_ERR_OK;
    snprintf(errstr, errstr_size, "%s: \"%s\" refused by librdkafka: %s", name, shown(name, value),
             es_conf_is_secret(name) ? "invalid value" : kerr);
    return ES_ERR_CONF;
}

es_err_t es_conf_set(es_conf_t *conf, const char *name, const char *value, const char *source,
                     char *errstr, size_t errstr_size)
{
    es_conf_entry_t *e = conf_find(conf, name);
    bool is_kafka = !strncmp(name, KAFKA_PREFIX, KAFKA_PREFIX_LEN) && name[KAFKA_PREFIX_LEN];

    if (!e && !is_kafka) {
        snprintf(errstr, errstr_size, "%s: unknown configuration key (see --list-config)", name);
        return ES_ERR_CONF;
    }
    es_err_t err = is_kafka ? validate_kafka(name, value, errstr, errstr_size)
                            : validate_declared(e->def, value, errstr, errstr_size);
    if (err)
        return err;
    if (is_kafka && e && e->def && (e->def->type != ES_CONF_STRING || e->def->min > 0)) {
        err = validate_declared(e->def, value, errstr, errstr_size);
        if (err)
            return err;
    }
    if (!e)
        e = conf_add(conf, name, NULL);
    entry_assign(e, value, source);
    return ES_ERR_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

es_err_t es_conf_load_file(es_conf_t *conf, const char *path, char *errstr, size_t errstr_size)
{
    FILE *fp = fopen(path, "r");
    char line[4096];
    int lineno = 0;
    es_err_t err = ES_ERR_OK;

    if (!fp) {
        snprintf(errstr, errstr_size, "--config %s: %s", path, strerror(errno));
        return ES_ERR_CONF;
    }
    while (fgets(line, sizeof(line), fp)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(errstr, errstr_size, "%s:%d: expected key = value", path, lineno);
            err = ES_ERR_CONF;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        char detail[512];
        err = es_conf_set(conf, key, val, "file", detail, sizeof(detail));
        if (err) {
            snprintf(errstr, errstr_size, "%s:%d: %s", path, lineno, detail);
            break;
        }
    }
    fclose(fp);
    return err;
}

/* ESCQRS_FOO_BAR_BAZ for foo.bar-baz / foo.bar_baz: upper case, non-alnum → '_' */
static void env_name_of(const char *key, char *out, size_t outsz)
{
    size_t o = 0;
    for (const char *p = ENV_PREFIX; *p && o + 1 < outsz; p++)
        out[o++] = *p;
    for (const char *p = key; *p && o + 1 < outsz; p++)
        out[o++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    out[o] = '\0';
}

/* The key an environment variable name (without "=...") sets, or false;
 * with @p declared_only, a declared key only (no kafka.* pass-through). */
static bool env_key(const es_conf_t *conf, const char *name, size_t nlen, bool declared_only,
                    char *key, size_t keysz)
{
    /* A declared key (or a kafka.* key set earlier) whose env name matches. */
    for (size_t i = 0; i < conf->cnt; i++) {
        char envname[300];
        env_name_of(conf->entries[i].name, envname, sizeof(envname));
        if (strlen(envname) == nlen && !strncmp(envname, name, nlen)) {
            snprintf(key, keysz, "%s", conf->entries[i].name);
            return true;
        }
    }
    if (!declared_only && nlen > ENV_PREFIX_LEN + 6 &&
        !strncmp(name + ENV_PREFIX_LEN, "KAFKA_", 6)) {
        /* librdkafka properties are dotted lower case: KAFKA_SOCKET_TIMEOUT_MS. */
        size_t k = 0;
        for (const char *p = name + ENV_PREFIX_LEN; p < name + nlen && k + 1 < keysz; p++)
            key[k++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
        key[k] = '\0';
        return true;
    }
    return false;
}

/* The first line of file @p path (a mounted Secret), without its newline. */
static char *secret_from_file(const char *path, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    char buf[8192];
    if (!f) {
        snprintf(errstr, errstr_size, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    return es_strdup(buf);
}

es_err_t es_conf_load_env(es_conf_t *conf, char **envp, char *errstr, size_t errstr_size)
{
    for (char **ep = envp; ep && *ep; ep++) {
        const char *kv = *ep;
        const char *eq = strchr(kv, '=');
        if (!eq || strncmp(kv, ENV_PREFIX, ENV_PREFIX_LEN))
            continue;
        size_t nlen = (size_t)(eq - kv);
        char key[256];
        char *from_file = NULL;

        bool file = false;
        if (!env_key(conf, kv, nlen, true, key, sizeof(key))) {
            /* ESCQRS_<KEY>_FILE: the value of <key> is in that file (a mounted Secret) */
            file = nlen > 5 && !strncmp(eq - 5, "_FILE", 5) &&
                   env_key(conf, kv, nlen - 5, false, key, sizeof(key));
            if (!file && !env_key(conf, kv, nlen, false, key, sizeof(key))) {
                es_log_debug("conf", "ignoring environment variable %.*s: not a configuration key",
                             (int)nlen, kv);
                continue;
            }
        }
        if (file) {
            char why[512];
            if (!(from_file = secret_from_file(eq + 1, why, sizeof(why)))) {
                snprintf(errstr, errstr_size, "environment %.*s: %s", (int)nlen, kv, why);
                return ES_ERR_CONF;
            }
        }
        char detail[512];
        es_err_t err = es_conf_set(conf, key, from_file ? from_file : eq + 1,
                                   from_file ? "file" : "env", detail, sizeof(detail));
        free(from_file);
        if (err) {
            snprintf(errstr, errstr_size, "environment %.*s: %s", (int)nlen, kv, detail);
            return err;
        }
    }
    return ES_ERR_OK;
}

/* Removes argv[i .. i+n-1], keeping argv NULL-terminated. */
static void argv_remove(int *argc, char **argv, int i, int n)
{
    for (int j = i; j + n <= *argc; j++)
        argv[j] = argv[j + n];
    *argc -= n;
}

es_err_t es_conf_init_from_args(es_conf_t *conf, int *argc, char **argv, char **envp,
                                es_conf_list_t *list, char *errstr, size_t errstr_size)
{
    const char *file = NULL;
    char **sets = es_calloc((size_t)*argc + 1, sizeof(char *));
    int nsets = 0;
    es_err_t err = ES_ERR_OK;

    *list = ES_CONF_LIST_NONE;
    for (int i = 1; i < *argc;) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            break;
        } else if (!strcmp(a, "--config") || !strcmp(a, "--set")) {
            if (i + 1 >= *argc) {
                snprintf(errstr, errstr_size, "%s needs an argument", a);
                err = ES_ERR_CONF;
                goto out;
            }
            if (a[2] == 'c')
                file = argv[i + 1];
            else
                sets[nsets++] = argv[i + 1];
            argv_remove(argc, argv, i, 2);
        } else if (!strncmp(a, "--config=", 9)) {
            file = a + 9;
            argv_remove(argc, argv, i, 1);
        } else if (!strncmp(a, "--set=", 6)) {
            sets[nsets++] = argv[i] + 6;
            argv_remove(argc, argv, i, 1);
        } else if (!strcmp(a, "--list-config") || !strcmp(a, "--list-config=text")) {
            *list = ES_CONF_LIST_TEXT;
            argv_remove(argc, argv, i, 1);
        } else if (!strcmp(a, "--list-config=markdown")) {
            *list = ES_CONF_LIST_MARKDOWN;
            argv_remove(argc, argv, i, 1);
        } else {
            i++;
        }
    }

    if (file && (err = es_conf_load_file(conf, file, errstr, errstr_size)))
        goto out;
    if ((err = es_conf_load_env(conf, envp, errstr, errstr_size)))
        goto out;
    for (int i = 0; i < nsets; i++) {
        char *eq = strchr(sets[i], '=');
        if (!eq || eq == sets[i]) {
            snprintf(errstr, errstr_size, "--set %s: expected key=value",
                     es_conf_is_secret(sets[i]) ? "(a secret)" : sets[i]);
            err = ES_ERR_CONF;
            goto out;
        }
        char *key = es_strndup(sets[i], (size_t)(eq - sets[i]));
        char detail[512];
        err = es_conf_set(conf, key, eq + 1, "flag", detail, sizeof(detail));
        free(key);
        if (err) {
            snprintf(errstr, errstr_size, "--set %s", detail);
            goto out;
        }
    }
    const char *lvl = es_conf_get(conf, "log.level");
    es_log_level_t level;
    if (lvl && es_log_level_parse(lvl, &level) == ES_ERR_OK)
        es_log_set_level(level);
out:
    free(sets);
    return err;
}

static const char *type_name(const es_conf_def_t *d)
{
    switch (d->type) {
    case ES_CONF_STRING:
        return "string";
    case ES_CONF_INT:
        return "integer";
    case ES_CONF_BOOL:
        return "boolean";
    case ES_CONF_ENUM:
        return "enum";
    }
    return "?";
}

static const char *role_name(es_conf_role_t role)
{
    return role == ES_CONF_ROLE_PRODUCER   ? " (producers)"
           : role == ES_CONF_ROLE_CONSUMER ? " (consumers)"
                                           : "";
}

void es_conf_describe(const es_conf_t *conf, es_conf_list_t fmt, es_buf_t *out)
{
    if (fmt == ES_CONF_LIST_MARKDOWN) {
        es_buf_appendf(out, "| key | type | default | allowed | description |\n");
        es_buf_appendf(out, "|---|---|---|---|---|\n");
        for (size_t i = 0; i < conf->cnt; i++) {
            const es_conf_def_t *d = conf->entries[i].def;
            if (!d)
                continue;
            es_buf_appendf(out, "| `%s` | %s | %s%s%s | ", d->name, type_name(d),
                           d->defval ? "`" : "", d->defval ? (*d->defval ? d->defval : " ") : "—",
                           d->defval ? "`" : "");
            if (d->type == ES_CONF_INT)
                es_buf_appendf(out, "%lld..%lld", (long long)d->min, (long long)d->max);
            else if (d->type == ES_CONF_ENUM)
                for (const char *c = d->choices; *c; c++) /* '|' would split the table */
                    es_buf_append(out, *c == '|' ? ", " : c, *c == '|' ? 2 : 1);
            else if (d->type == ES_CONF_BOOL)
                es_buf_appendf(out, "true, false");
            else if (d->min > 0)
                es_buf_appendf(out, "not empty");
            es_buf_appendf(out, " | %s%s |\n", d->desc, role_name(d->role));
        }
        return;
    }
    for (size_t i = 0; i < conf->cnt; i++) {
        const es_conf_entry_t *e = &conf->entries[i];
        es_buf_appendf(out, "%-40s = %-30s # %s", e->name,
                       e->value ? shown(e->name, e->value) : "(unset)", e->source);
        if (e->def)
            es_buf_appendf(out, "; %s: %s", type_name(e->def), e->def->desc);
        es_buf_appendf(out, "\n");
    }
}

const char *es_conf_get(const es_conf_t *conf, const char *name)
{
    const es_conf_entry_t *e = conf_find(conf, name);
    return e ? e->value : NULL;
}

int64_t es_conf_get_int(const es_conf_t *conf, const char *name)
{
    const char *v = es_conf_get(conf, name);
    int64_t iv = 0;
    if (v && !es_parse_i64(v, INT64_MIN, INT64_MAX, &iv))
        iv = 0;
    return iv;
}

bool es_conf_get_bool(const es_conf_t *conf, const char *name)
{
    const char *v = es_conf_get(conf, name);
    bool bv = false;
    if (v && !parse_bool(v, &bv))
        bv = false;
    return bv;
}

void es_conf_kafka_foreach(const es_conf_t *conf, es_conf_role_t role,
                           void (*cb)(void *opaque, const char *name, const char *value),
                           void *opaque)
{
    for (size_t i = 0; i < conf->cnt; i++) {
        const es_conf_entry_t *e = &conf->entries[i];
        if (!e->value || strncmp(e->name, KAFKA_PREFIX, KAFKA_PREFIX_LEN))
            continue;
        bool user_set = strcmp(e->source, "default") != 0;
        if (!user_set && e->def && e->def->role != ES_CONF_ROLE_ANY && e->def->role != role)
            continue;
        cb(opaque, e->name + KAFKA_PREFIX_LEN, e->value);
    }
}

const es_conf_def_t es_conf_common_defs[] = {
    {.name = "log.level",
     .type = ES_CONF_ENUM,
     .defval = "info",
     .choices = "debug|info|warn|error",
     .desc = "Least severe log level written"},
    {.name = NULL},
};

es_conf_t *es_conf_load_or_exit(const char *program, const es_conf_def_t *const *tables, int *argc,
                                char **argv, char **envp)
{
    char errstr[1024];
    es_conf_list_t list;
    es_conf_t *conf = es_conf_new(program, tables);

    if (es_conf_init_from_args(conf, argc, argv, envp, &list, errstr, sizeof(errstr))) {
        es_log_error(program, "configuration error: %s", errstr);
        es_conf_destroy(conf);
        exit(2);
    }
    if (list != ES_CONF_LIST_NONE) {
        es_buf_t out = {0};
        es_conf_describe(conf, list, &out);
        fwrite(out.data, 1, out.len, stdout);
        es_buf_free(&out);
        es_conf_destroy(conf);
        exit(0);
    }
    return conf;
}
