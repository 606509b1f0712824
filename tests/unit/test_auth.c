/*
 * test_auth.c — the pure parts of authentication and authorization: the
 * policy's grammar and default deny, and every claim check of a token whose
 * signature already verified (issuer, audience, expiry, not-before with the
 * clock skew, subject, scopes, roles under a dotted claim path).  The
 * signature and key choice are tested against real keys and tokens in
 * integration test 0204.
 */
#include "auth_internal.h"
#include "escqrs/auth.h"
#include "escqrs/log.h"
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ----------------------------------------------------- keys and algorithms */

/* Real public keys (made with openssl for this test): RSA 2048, and EC P-256, P-384, P-521. */
static const char rsa_n[] = "udy1PlMxzJDJqDuvhfQgQRbDKloaoDG255H5axa4ckssEX14zkeMyI_dkt8aqAOs"
                            "qyc_DB8LbK1a6hdXM4QxBXmN65CH4VAjskk64lcRpJ0FQY6EvcK8jTjoVCR6VY3O"
                            "Lwxzt470L-0-bW-Nta49-FBlVBY1PS8pYOGQW_I9PoPTOO4TwPnqGglfTPO_-lln"
                            "7uD54AMJCCQuPBlCsIirNl5pEdL1xTjjoDcQoUG_dLIofhkg-N3rY5T9vwmyVYn8"
                            "1377EvNNeHv2E0_k4yuzsWh_voS__LiUiQcy0A_dvKz_urnZvOIXnh97wx7PV8sm"
                            "9Ih324_XU6_vXCTJqECiow";
#define EC256_X "wAwLPcdDyMfmlwZ-hjBiND2T9RUeLv201wCNXM6Bs54"
#define EC256_Y "ee-melP-qFctgw5Z0XO60yGOHm11dKhIlyakB5PCzqg"
#define EC384_X "m6QZSIiy8aUIBJe2pfjcbad_c0R2SVLuGUpCikulNAXs_MxJITZh0UI1vv29niVe"
#define EC384_Y "_rdKasVYbJjpWScJtw24yswsfxjCTsAYrcL9ExqMf3l-rlGSRGuui9bjLgmRDXhU"
#define EC521_X                                                                                    \
    "AOQv7LaW5TO2KgDyCsqd_jqrzKyRcabbWVM8PbipCuhXwR42_xQX8BxGNHui4rpO8NGW7W3tK4hZ3k2ZFhS_0MdL"
#define EC521_Y                                                                                    \
    "AA3zfU99TMks8xhYViHgJuY60ZAxl1rqn_APzuPVqp38mt7YE4efArvog8v_AQT3dSGaV39j4Z1M0lu71rMCMe5t"

static char last_line[256];

static void last_line_sink(void *opaque, es_log_level_t level, const char *component,
                           const char *msg)
{
    (void)opaque;
    (void)level;
    (void)component;
    snprintf(last_line, sizeof(last_line), "%s", msg);
}

static char *jwk_ec(const char *kid, const char *crv, const char *x, const char *y)
{
    json_t *k =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "kid", kid, "crv", crv, "x", x, "y", y);
    char *text = json_dumps(k, JSON_COMPACT);
    json_decref(k);
    return text;
}

/*
 * A key fits its algorithm only: an RSA key RS256/384/512 and nothing else, an EC key the
 * ES algorithm of its own curve only, so a token cannot name a key of another kind or
 * curve (the key-confusion forgeries).  A JWKS whose EC key has a coordinate a byte short,
 * or an unknown curve, is refused, naming why.
 */
static void test_key_fits_its_algorithm(void)
{
    char *e256 = jwk_ec("e256", "P-256", EC256_X, EC256_Y);
    char *e384 = jwk_ec("e384", "P-384", EC384_X, EC384_Y);
    char *e521 = jwk_ec("e521", "P-521", EC521_X, EC521_Y);
    char doc[4096];
    snprintf(doc, sizeof(doc),
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r\",\"n\":\"%s\",\"e\":\"AQAB\"},%s,%s,%s]}",
             rsa_n, e256, e384, e521);
    auth_keyset_t *ks = auth_jwks_parse(doc, strlen(doc), errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(ks);
    CU_ASSERT_EQUAL_FATAL(ks->n, 4);
    static const jwt_alg_t algs[] = {JWT_ALG_NONE,  JWT_ALG_HS256, JWT_ALG_HS384, JWT_ALG_HS512,
                                     JWT_ALG_RS256, JWT_ALG_RS384, JWT_ALG_RS512, JWT_ALG_ES256,
                                     JWT_ALG_ES384, JWT_ALG_ES512};
    /* per key (r, e256, e384, e521): the algorithms that fit, as the index into algs */
    static const bool fits[4][10] = {
        {0, 0, 0, 0, 1, 1, 1, 0, 0, 0},
        {0, 0, 0, 0, 0, 0, 0, 1, 0, 0},
        {0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
        {0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
    };
    for (size_t k = 0; k < 4; k++) {
        for (size_t i = 0; i < ES_ARRAY_SIZE(algs); i++) {
            bool got = auth_key_fits(&ks->keys[k], algs[i]);
            if (got != fits[k][i])
                printf("\n    key %s, %s: %s", ks->keys[k].kid, jwt_alg_str(algs[i]),
                       got ? "fits" : "does not fit");
            CU_ASSERT_EQUAL(got, fits[k][i]);
        }
    }
    auth_keyset_free(ks);

    /* a P-256 coordinate one byte short (42 characters of base64url are 31 bytes) */
    char *short_x = jwk_ec("bad", "P-256", "wAwLPcdDyMfmlwZ-hjBiND2T9RUeLv201wCNXM6Bs5", EC256_Y);
    char *unknown = jwk_ec("bad", "P-192", EC256_X, EC256_Y);
    char *bad[] = {short_x, unknown};
    es_log_set_sink(last_line_sink, NULL);
    for (size_t i = 0; i < 2; i++) {
        snprintf(doc, sizeof(doc), "{\"keys\":[%s,%s]}", bad[i], e256); /* left out, logged */
        last_line[0] = '\0';
        ks = auth_jwks_parse(doc, strlen(doc), errstr, sizeof(errstr));
        CU_ASSERT_PTR_NOT_NULL_FATAL(ks);
        CU_ASSERT_EQUAL(ks->n, 1);
        ES_ASSERT_STR_EQ(ks->keys[0].kid, "e256");
        auth_keyset_free(ks);
        ES_ASSERT_STR_EQ(last_line,
                         "JWKS key bad left out: EC key with an unknown curve or bad coordinates");
        snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", bad[i]); /* nothing left: refused */
        CU_ASSERT_PTR_NULL(auth_jwks_parse(doc, strlen(doc), errstr, sizeof(errstr)));
        ES_ASSERT_STR_EQ(errstr, "the JWKS holds no usable signing key");
    }
    es_log_set_sink(NULL, NULL);
    free(short_x);
    free(unknown);
    free(e256);
    free(e384);
    free(e521);
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"policy grammar, grants and default deny", test_policy},
        {"claims: issuer, audience, expiry, not-before, subject, roles", test_claims},
        {"a key fits its own algorithm only", test_key_fits_its_algorithm},
        {NULL, NULL},
    };
    return es_test_run("auth", cases);
}
