/**
 * @file auth.h
 * @brief Who is calling, and may they: bearer JWTs checked against a JWKS,
 *        and a declared policy of what each scope or role may do.
 *
 * Authentication (`auth.mode=jwt`): `Authorization: Bearer <JWT>` signed
 * with a key of the JWKS (a file, or an OIDC provider's jwks_uri fetched and
 * refreshed: Keycloak, Dex, ...), with an algorithm on `auth.algorithms`
 * that fits the key (RS* for RSA keys, ES256/384/512 for P-256/384/521; never
 * `none`, never HMAC: a public key used as an HMAC secret is the classic
 * forgery), issued by `auth.issuer` for `auth.audience`, not expired and
 * already valid (`exp` required, `nbf` honoured, both within
 * `auth.clock.skew.s`), with a `sub`.  libjwt checks the signature; this
 * module chooses the key and the algorithm before it does, since libjwt
 * 1.10 accepts `alg: none` and HMAC with any key it is given.
 *
 * Authorization: every route names an action — `command:<collection>.<verb>`
 * (`command:accounts.deposit`), `query:<collection>` (`query:carts`),
 * `admin:<operation>` (`admin:rebuild`), `metrics` — and the policy
 * (`auth.policy.file`) grants actions to claims, one rule per line:
 *
 *     # who                action patterns ('*' at the end matches any rest)
 *     scope:accounts.write command:accounts.*
 *     role:escqrs-admin    admin:* metrics
 *     sub:reporting-job    query:stats
 *     any                  query:*
 *
 * Scopes come from `scope` (space-separated) or `scp`; roles from the claim
 * named by `auth.roles.claim` (a dotted path: `realm_access.roles` for
 * Keycloak); `any` is every authenticated caller.  Nothing is allowed that
 * no rule grants (default deny).  With `auth.mode=none` every check passes
 * and the principal is anonymous.
 *
 * Pure parts (policy parsing and matching, claim checks) are unit-tested
 * without a network: tests/unit/test_auth.c.
 */
#ifndef ESCQRS_AUTH_H
#define ESCQRS_AUTH_H

#include "escqrs/conf.h"
#include "escqrs/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ES_AUTH_MAX_GRANTS 32
#define ES_AUTH_NAME_MAX   256

/** Who sent a request, as its token says. */
typedef struct es_principal_s {
    bool authenticated;
    char subject[ES_AUTH_NAME_MAX];   /**< `sub`; "" when anonymous */
    char client_id[ES_AUTH_NAME_MAX]; /**< `azp` or `client_id`; "" when none */
    size_t nscopes, nroles;
    char scopes[ES_AUTH_MAX_GRANTS][ES_AUTH_NAME_MAX];
    char roles[ES_AUTH_MAX_GRANTS][ES_AUTH_NAME_MAX];
} es_principal_t;

/** @brief `auth.*` keys; add to the tables of a program that serves HTTP. */
extern const es_conf_def_t es_auth_conf_defs[];

typedef struct es_auth_s es_auth_t;

/**
 * @brief From @p conf: NULL with @p errstr naming the key when the
 *        configuration is incomplete or a file does not load; with
 *        `auth.mode=none`, an authenticator that lets everyone in.
 */
es_auth_t *es_auth_new(const es_conf_t *conf, char *errstr, size_t errstr_size);
void es_auth_destroy(es_auth_t *a);
/** @brief Is authentication on (`auth.mode=jwt`)? */
bool es_auth_enabled(const es_auth_t *a);

/**
 * @brief Check the value of an Authorization header (NULL when absent).
 *
 * A token naming a key id the JWKS URL's keys lack has the JWKS fetched
 * again (at most every `auth.jwks.refetch.min.s`, one fetch at a time);
 * that waits for the provider, up to 10 s.
 * @param may_wait false on a thread that must not wait (an HTTP event
 *        thread): ES_ERR_WOULD_BLOCK instead of the wait, to ask again
 *        where waiting is allowed.
 * @returns ES_ERR_OK with @p p filled, ES_ERR_INVALID_ARG with why in
 *          @p why (answer 401), or ES_ERR_WOULD_BLOCK.
 */
es_err_t es_auth_verify(es_auth_t *a, const char *authorization, bool may_wait, es_principal_t *p,
                        char *why, size_t whysz);

/** @brief May @p p do @p action?  Always true with authentication off. */
bool es_auth_allows(const es_auth_t *a, const es_principal_t *p, const char *action);

/* ------------------------------------------------------------ pure parts */

typedef struct es_policy_s es_policy_t;

/**
 * @brief Parse policy @p text (the format above).
 * @returns NULL with the line and the problem in @p errstr.
 */
es_policy_t *es_policy_parse(const char *text, char *errstr, size_t errstr_size);
void es_policy_destroy(es_policy_t *pol);
/** @brief Does a rule of @p pol grant @p action to @p p? */
bool es_policy_allows(const es_policy_t *pol, const es_principal_t *p, const char *action);

/** The claims checks of a decoded token (everything but the signature). */
typedef struct es_claims_rules_s {
    const char *issuer;
    const char *audience;
    int64_t now_s;
    int skew_s;
    const char *roles_claim; /**< dotted path, e.g. "realm_access.roles" */
} es_claims_rules_t;

/**
 * @brief Check the claims @p payload_json of a token whose signature was
 *        verified, and fill @p p.  ES_ERR_INVALID_ARG with the reason.
 */
es_err_t es_claims_check(const char *payload_json, const es_claims_rules_t *rules,
                         es_principal_t *p, char *why, size_t whysz);

#endif
