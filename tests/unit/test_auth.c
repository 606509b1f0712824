/*
 * test_auth.c — the pure parts of authentication and authorization: the
 * policy's grammar and default deny, and every claim check of a token whose
 * signature already verified (issuer, audience, expiry, not-before with the
 * clock skew, subject, scopes, roles under a dotted claim path).  The
 * signature and key choice are tested against real keys and tokens in
 * integration test 0204.
 */
#include "escqrs/auth.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static char errstr[512];

static const char *policy_text = "# who             what\n"
                                 "scope:accounts.write command:accounts.*   # writers\n"
                                 "scope:read           query:*\n"
                                 "role:escqrs-admin    admin:* metrics\n"
                                 "sub:reporting-job    query:stats\n";

static es_principal_t who(const char *sub, const char *scopes, const char *roles)
{
    es_principal_t p = {.authenticated = true};
    snprintf(p.subject, sizeof(p.subject), "%s", sub);
    char buf[512], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", scopes ? scopes : "");
    for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
        snprintf(p.scopes[p.nscopes++], sizeof(p.scopes[0]), "%s", w);
    snprintf(buf, sizeof(buf), "%s", roles ? roles : "");
    for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
        snprintf(p.roles[p.nroles++], sizeof(p.roles[0]), "%s", w);
    return p;
}

static void test_policy(void)
{
    es_policy_t *pol = es_policy_parse(policy_text, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(pol);
    es_principal_t writer = who("w", "accounts.write", NULL), reader = who("r", "read", NULL),
                   admin = who("a", NULL, "escqrs-admin"), job = who("reporting-job", NULL, NULL),
                   nobody = who("n", "carts.write", "user");
    CU_ASSERT_TRUE(es_policy_allows(pol, &writer, "command:accounts.deposit"));
    CU_ASSERT_FALSE(es_policy_allows(pol, &writer, "command:carts.add-item"));
    CU_ASSERT_FALSE(es_policy_allows(pol, &writer, "query:accounts"));
    CU_ASSERT_TRUE(es_policy_allows(pol, &reader, "query:carts"));
    CU_ASSERT_FALSE(es_policy_allows(pol, &reader, "command:accounts.open"));
    CU_ASSERT_FALSE(es_policy_allows(pol, &reader, "admin:rebuild"));
    CU_ASSERT_TRUE(es_policy_allows(pol, &admin, "admin:rebuild"));
    CU_ASSERT_TRUE(es_policy_allows(pol, &admin, "metrics"));
    CU_ASSERT_FALSE(es_policy_allows(pol, &admin, "query:carts"));
    CU_ASSERT_TRUE(es_policy_allows(pol, &job, "query:stats"));
    CU_ASSERT_FALSE(es_policy_allows(pol, &job, "query:statsx")); /* exact, not a prefix */
    CU_ASSERT_FALSE(es_policy_allows(pol, &nobody, "command:carts.add-item")); /* default deny */
    es_principal_t anon = {0};
    CU_ASSERT_FALSE(es_policy_allows(pol, &anon, "query:carts")); /* unauthenticated */
    es_policy_destroy(pol);

    pol = es_policy_parse("any query:*\n", errstr, sizeof(errstr));
    CU_ASSERT_TRUE(es_policy_allows(pol, &nobody, "query:carts"));
    es_policy_destroy(pol);

    static const char *const bad[] = {"scope: command:x\n", "group:g query:*\n",
                                      "scope:a delete:everything\n", "role:admin\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errstr[0] = '\0';
        CU_ASSERT_PTR_NULL(es_policy_parse(bad[i], errstr, sizeof(errstr)));
        CU_ASSERT_PTR_NOT_NULL(strstr(errstr, "policy line 1"));
    }
}

static es_err_t check(const char *claims, es_principal_t *p)
{
    es_claims_rules_t rules = {.issuer = "https://idp",
                               .audience = "escqrs",
                               .now_s = 1000000,
                               .skew_s = 60,
                               .roles_claim = "realm_access.roles"};
    errstr[0] = '\0';
    return es_claims_check(claims, &rules, p, errstr, sizeof(errstr));
}

static void test_claims(void)
{
    es_principal_t p;
    CU_ASSERT_EQUAL(check("{\"iss\":\"https://idp\",\"aud\":[\"other\",\"escqrs\"],\"exp\":1000100,"
                          "\"sub\":\"alice\",\"azp\":\"web\",\"scope\":\"a b\","
                          "\"realm_access\":{\"roles\":[\"admin\",\"user\"]}}",
                          &p),
                    ES_ERR_OK);
    ES_ASSERT_STR_EQ(p.subject, "alice");
    ES_ASSERT_STR_EQ(p.client_id, "web");
    CU_ASSERT_EQUAL(p.nscopes, 2);
    CU_ASSERT_EQUAL(p.nroles, 2);
    ES_ASSERT_STR_EQ(p.roles[0], "admin");
    CU_ASSERT_TRUE(p.authenticated);

    struct {
        const char *claims, *why;
    } refused[] = {
        {"{\"iss\":\"https://evil\",\"aud\":\"escqrs\",\"exp\":1000100,\"sub\":\"a\"}", "issued"},
        {"{\"iss\":\"https://idp\",\"aud\":\"other\",\"exp\":1000100,\"sub\":\"a\"}", "audience"},
        {"{\"iss\":\"https://idp\",\"aud\":\"escqrs\",\"sub\":\"a\"}", "expiry"},
        {"{\"iss\":\"https://idp\",\"aud\":\"escqrs\",\"exp\":999939,\"sub\":\"a\"}", "expired"},
        {"{\"iss\":\"https://"
         "idp\",\"aud\":\"escqrs\",\"exp\":1000100,\"nbf\":1000061,\"sub\":\"a\"}",
         "not valid yet"},
        {"{\"iss\":\"https://idp\",\"aud\":\"escqrs\",\"exp\":1000100}", "subject"},
        {"[1,2]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        CU_ASSERT_EQUAL(check(refused[i].claims, &p), ES_ERR_INVALID_ARG);
        CU_ASSERT_PTR_NOT_NULL(strstr(errstr, refused[i].why));
        CU_ASSERT_FALSE(p.authenticated);
    }
    /* within the skew: expired 59 s ago, valid from 59 s on, are still accepted */
    CU_ASSERT_EQUAL(check("{\"iss\":\"https://idp\",\"aud\":\"escqrs\",\"exp\":999941,"
                          "\"nbf\":1000059,\"sub\":\"a\"}",
                          &p),
                    ES_ERR_OK);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"policy grammar, grants and default deny", test_policy},
        {"claims: issuer, audience, expiry, not-before, subject, roles", test_claims},
        {NULL, NULL},
    };
    return es_test_run("auth", cases);
}
