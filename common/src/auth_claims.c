/*
 * auth_claims.c — the claims of a token whose signature verified: issuer,
 * audience, expiry and not-before (within the clock skew), subject, and the
 * scopes and roles the policy is matched against.
 *
 * Pure: a JSON payload and the rules in, a principal or a reason out, so
 * every check is unit-tested with a fixed clock (tests/unit/test_auth.c).
 * `exp` is required, `nbf` honoured when present, and a subject too long to
 * keep is refused rather than cut (a cut name could match another's rule).
 * Scopes come from `scope` (space-separated) or `scp` (either form), roles
 * from the dotted path of auth.roles.claim; names that do not fit are left
 * out, never cut.
 */
#include "escqrs/auth.h"
#include "escqrs/mem.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add_name(char list[][ES_AUTH_NAME_MAX], size_t *n, const char *name)
{
    if (*n < ES_AUTH_MAX_GRANTS && *name && strlen(name) < ES_AUTH_NAME_MAX)
        snprintf(list[(*n)++], ES_AUTH_NAME_MAX, "%s", name);
}

/* A string of space-separated names, or an array of strings. */
static void add_names(json_t *v, char list[][ES_AUTH_NAME_MAX], size_t *n)
{
    if (json_is_string(v)) {
        char *copy = es_strdup(json_string_value(v)), *save = NULL;
        for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
            add_name(list, n, w);
        free(copy);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (json_is_string(e))
                add_name(list, n, json_string_value(e));
        }
    }
}

static json_t *dotted(json_t *obj, const char *path)
{
    char *copy = es_strdup(path), *save = NULL;
    json_t *v = obj;
    for (char *k = strtok_r(copy, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    free(copy);
    return v;
}

static bool aud_has(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return !strcmp(json_string_value(aud), want);
    size_t i;
    json_t *e;
    json_array_foreach(aud, i, e)
    {
        if (json_is_string(e) && !strcmp(json_string_value(e), want))
            return true;
    }
    return false;
}

es_err_t es_claims_check(const char *payload_json, const es_claims_rules_t *rules,
                         es_principal_t *p, char *why, size_t whysz)
{
    json_t *c = json_loads(payload_json, JSON_REJECT_DUPLICATES, NULL);
    es_err_t err = ES_ERR_INVALID_ARG;
    memset(p, 0, sizeof(*p));
    if (!json_is_object(c)) {
        snprintf(why, whysz, "the token's claims are not a JSON object");
        goto out;
    }
    json_t *iss = json_object_get(c, "iss"), *aud = json_object_get(c, "aud"),
           *exp = json_object_get(c, "exp"), *nbf = json_object_get(c, "nbf"),
           *sub = json_object_get(c, "sub");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), rules->issuer)) {
        snprintf(why, whysz, "the token was not issued by %s", rules->issuer);
        goto out;
    }
    if (!aud_has(aud, rules->audience)) {
        snprintf(why, whysz, "the token is not for the audience %s", rules->audience);
        goto out;
    }
    if (!json_is_number(exp)) {
        snprintf(why, whysz, "the token has no expiry (exp)");
        goto out;
    }
    if ((int64_t)json_number_value(exp) + rules->skew_s < rules->now_s) {
        snprintf(why, whysz, "the token expired");
        goto out;
    }
    if (nbf &&
        (!json_is_number(nbf) || (int64_t)json_number_value(nbf) - rules->skew_s > rules->now_s)) {
        snprintf(why, whysz, "the token is not valid yet (nbf)");
        goto out;
    }
    if (!json_is_string(sub) || !*json_string_value(sub) ||
        strlen(json_string_value(sub)) >= sizeof(p->subject)) {
        snprintf(why, whysz, "the token names no subject (sub)");
        goto out;
    }
    snprintf(p->subject, sizeof(p->subject), "%s", json_string_value(sub));
    json_t *client = json_object_get(c, "azp");
    if (!json_is_string(client))
        client = json_object_get(c, "client_id");
    if (json_is_string(client) && strlen(json_string_value(client)) < sizeof(p->client_id))
        snprintf(p->client_id, sizeof(p->client_id), "%s", json_string_value(client));
    add_names(json_object_get(c, "scope"), p->scopes, &p->nscopes);
    add_names(json_object_get(c, "scp"), p->scopes, &p->nscopes);
    if (rules->roles_claim && *rules->roles_claim)
        add_names(dotted(c, rules->roles_claim), p->roles, &p->nroles);
    p->authenticated = true;
    err = ES_ERR_OK;
out:
    json_decref(c);
    return err;
}
