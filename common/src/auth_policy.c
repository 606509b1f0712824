/*
 * auth_policy.c — the policy: who may do what (auth.h has the format).
 *
 * Pure: parsing and matching take text and a principal and touch nothing
 * else, so they are unit-tested without keys or a network
 * (tests/unit/test_auth.c).  A rule names one kind of claim (a scope, a
 * role, a subject) or `any` authenticated caller, and grants action
 * patterns; a pattern ending in `*` matches any rest.  Nothing is allowed
 * that no rule grants (default deny), an unauthenticated principal nothing
 * at all, and a line that names nobody, grants nothing or names something
 * that is not an action refuses the whole file, with its line number, so a
 * typo cannot silently open or close a route.
 */
#include "escqrs/auth.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    enum { WHO_ANY, WHO_SCOPE, WHO_ROLE, WHO_SUB } kind;
    char name[ES_AUTH_NAME_MAX];
    char **actions;
    size_t nactions;
} rule_t;

struct es_policy_s {
    rule_t *rules;
    size_t n;
};

void es_policy_destroy(es_policy_t *pol)
{
    if (!pol)
        return;
    for (size_t i = 0; i < pol->n; i++) {
        for (size_t k = 0; k < pol->rules[i].nactions; k++)
            free(pol->rules[i].actions[k]);
        free(pol->rules[i].actions);
    }
    free(pol->rules);
    free(pol);
}

static bool action_ok(const char *a)
{
    static const char *const kinds[] = {"command:", "query:", "audit:", "admin:", "metrics", "*"};
    for (size_t i = 0; i < ES_ARRAY_SIZE(kinds); i++)
        if (!strncmp(a, kinds[i], strlen(kinds[i])))
            return true;
    return false;
}

es_policy_t *es_policy_parse(const char *text, char *errstr, size_t errstr_size)
{
    es_policy_t *pol = es_calloc(1, sizeof(*pol));
    char *copy = es_strdup(text), *save = NULL;
    int lineno = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#'), *wsave = NULL;
        lineno++;
        if (hash)
            *hash = '\0';
        char *who = strtok_r(line, " \t\r", &wsave);
        if (!who)
            continue;
        rule_t r = {0};
        if (!strcmp(who, "any")) {
            r.kind = WHO_ANY;
        } else if (!strncmp(who, "scope:", 6) || !strncmp(who, "role:", 5) ||
                   !strncmp(who, "sub:", 4)) {
            char *colon = strchr(who, ':');
            r.kind = who[0] == 's' ? (who[1] == 'c' ? WHO_SCOPE : WHO_SUB) : WHO_ROLE;
            if (!colon[1] || strlen(colon + 1) >= sizeof(r.name)) {
                snprintf(errstr, errstr_size, "policy line %d: \"%s\" names nobody", lineno, who);
                goto fail;
            }
            snprintf(r.name, sizeof(r.name), "%s", colon + 1);
        } else {
            snprintf(errstr, errstr_size,
                     "policy line %d: \"%s\" is not any, scope:<name>, role:<name> or sub:<name>",
                     lineno, who);
            goto fail;
        }
        for (char *a = strtok_r(NULL, " \t\r", &wsave); a; a = strtok_r(NULL, " \t\r", &wsave)) {
            if (!action_ok(a)) {
                snprintf(errstr, errstr_size,
                         "policy line %d: \"%s\" is not an action (command:, query:, audit:, "
                         "admin:, metrics)",
                         lineno, a);
                for (size_t k = 0; k < r.nactions; k++)
                    free(r.actions[k]);
                free(r.actions);
                goto fail;
            }
            r.actions = es_realloc(r.actions, (r.nactions + 1) * sizeof(*r.actions));
            r.actions[r.nactions++] = es_strdup(a);
        }
        if (!r.nactions) {
            snprintf(errstr, errstr_size, "policy line %d: %s is granted no action", lineno, who);
            goto fail;
        }
        pol->rules = es_realloc(pol->rules, (pol->n + 1) * sizeof(*pol->rules));
        pol->rules[pol->n++] = r;
    }
    free(copy);
    return pol;
fail:
    free(copy);
    es_policy_destroy(pol);
    return NULL;
}

/* "command:accounts.*" matches "command:accounts.deposit"; "*" anything. */
static bool pattern_matches(const char *pat, const char *action)
{
    size_t n = strlen(pat);
    if (n && pat[n - 1] == '*')
        return !strncmp(pat, action, n - 1);
    return !strcmp(pat, action);
}

static bool has(char list[][ES_AUTH_NAME_MAX], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], name))
            return true;
    return false;
}

bool es_policy_allows(const es_policy_t *pol, const es_principal_t *p, const char *action)
{
    if (!p->authenticated)
        return false;
    for (size_t i = 0; i < pol->n; i++) {
        const rule_t *r = &pol->rules[i];
        bool applies =
            r->kind == WHO_ANY ||
            (r->kind == WHO_SCOPE &&
             has((char(*)[ES_AUTH_NAME_MAX])p->scopes, p->nscopes, r->name)) ||
            (r->kind == WHO_ROLE && has((char(*)[ES_AUTH_NAME_MAX])p->roles, p->nroles, r->name)) ||
            (r->kind == WHO_SUB && !strcmp(p->subject, r->name));
        for (size_t k = 0; applies && k < r->nactions; k++)
            if (pattern_matches(r->actions[k], action))
                return true;
    }
    return false;
}
