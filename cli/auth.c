/*
 * auth.c — `escqrs auth keygen|token`: development keys and tokens, so the
 * local stack, the demo and the tests run with authentication on without an
 * OIDC provider.
 *
 *   escqrs auth keygen --dir DIR [--kid KID] [--alg RS256|ES256]
 *       DIR/signing-key.pem (RSA 2048, or EC P-256 for ES256; private: keep
 *       it) and DIR/jwks.json (its public key as a JWKS: give it to
 *       auth.jwks.file).
 *   escqrs auth token --key DIR/signing-key.pem --issuer I --audience A
 *                     --sub S [--kid KID] [--scope "a b"] [--role R]...
 *                     [--client C] [--ttl SECONDS] [--alg RS256]
 *       prints a signed JWT (RS256; ES256 with an EC P-256 key) on stdout.
 *
 * In production the tokens come from the OIDC provider; docs/security.md.
 */
#include "cli.h"

#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DEFAULT_KID   "escqrs-dev-1"
#define RSA_BITS      2048
#define P256_BYTES    32   /* an EC P-256 coordinate, at its full length in a JWK (RFC 7518) */
#define TTL_DEFAULT_S 3600 /* --ttl: a token lives an hour */
#define MAX_ROLES     16   /* --role at most this often (one more is a usage error) */
#define KEY_PATH_MAX  1024

static void b64url(const unsigned char *in, size_t len, es_buf_t *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    es_buf_clear(out);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        char c[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63], tab[(v >> 6) & 63], tab[v & 63]};
        es_buf_append(out, c, i + 2 < len ? 4 : i + 1 < len ? 3 : 2);
    }
    es_buf_append(out, "", 1);
    out->len--;
}

/* Key parameter @p name in base64url: its minimal bytes, or @p width bytes when > 0. */
static bool bn_b64url(EVP_PKEY *pkey, const char *name, int width, es_buf_t *out)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pkey, name, &bn))
        return false;
    int n = width > 0 ? width : BN_num_bytes(bn);
    unsigned char *bytes = es_malloc((size_t)n + 1);
    bool ok = BN_bn2binpad(bn, bytes, n) == n;
    if (ok)
        b64url(bytes, (size_t)n, out);
    free(bytes);
    BN_free(bn);
    return ok;
}

/* A new signing key for @p alg and its public JWK (kid, alg, use sig); NULL when OpenSSL fails. */
static EVP_PKEY *new_key(const char *alg, const char *kid, json_t **jwk)
{
    es_buf_t a = {0}, b = {0};
    bool ec = !strcmp(alg, "ES256");
    EVP_PKEY *pkey = ec ? EVP_EC_gen("P-256") : EVP_RSA_gen(RSA_BITS);
    if (!pkey ||
        !bn_b64url(pkey, ec ? OSSL_PKEY_PARAM_EC_PUB_X : OSSL_PKEY_PARAM_RSA_N, ec ? P256_BYTES : 0,
                   &a) ||
        !bn_b64url(pkey, ec ? OSSL_PKEY_PARAM_EC_PUB_Y : OSSL_PKEY_PARAM_RSA_E, ec ? P256_BYTES : 0,
                   &b)) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    } else if (ec) {
        *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "use", "sig", "alg",
                         alg, "kid", kid, "crv", "P-256", "x", a.data, "y", b.data);
    } else {
        *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "use", "sig", "alg", alg,
                         "kid", kid, "n", a.data, "e", b.data);
    }
    es_buf_free(&a);
    es_buf_free(&b);
    return pkey;
}

static int keygen(int argc, char **argv)
{
    static const char usage[] = "usage: escqrs auth keygen --dir DIR [--kid KID] "
                                "[--alg RS256|ES256]\n";
    const char *dir = NULL, *kid = DEFAULT_KID, *alg = "RS256";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--kid") && i + 1 < argc)
            kid = argv[++i];
        else if (!strcmp(argv[i], "--alg") && i + 1 < argc)
            alg = argv[++i];
        else {
            fputs(usage, stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (!dir || (strcmp(alg, "RS256") && strcmp(alg, "ES256"))) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    char path[KEY_PATH_MAX];
    mkdir(dir, 0700);
    json_t *jwk = NULL;
    EVP_PKEY *pkey = new_key(alg, kid, &jwk);
    int rc = CLI_EXIT_FAILURE;
    if (!pkey) {
        fprintf(stderr, "escqrs auth keygen: OpenSSL could not make a key for %s\n", alg);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/signing-key.pem", dir);
    FILE *f = fopen(path, "w");
    if (!f || !PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL)) {
        fprintf(stderr, "escqrs auth keygen: cannot write %s\n", path);
        if (f)
            fclose(f);
        goto out;
    }
    fclose(f);
    chmod(path, 0600);
    json_t *jwks = json_pack("{s:[O]}", "keys", jwk);
    snprintf(path, sizeof(path), "%s/jwks.json", dir);
    if (json_dump_file(jwks, path, JSON_INDENT(2))) {
        fprintf(stderr, "escqrs auth keygen: cannot write %s\n", path);
        json_decref(jwks);
        goto out;
    }
    json_decref(jwks);
    printf("%s/signing-key.pem (private) and %s/jwks.json (public, kid %s, %s)\n", dir, dir, kid,
           alg);
    rc = CLI_EXIT_OK;
out:
    json_decref(jwk);
    EVP_PKEY_free(pkey);
    return rc;
}

static int token(int argc, char **argv)
{
    const char *key = NULL, *iss = NULL, *aud = NULL, *sub = NULL, *kid = DEFAULT_KID,
               *scope = NULL, *client = NULL, *algname = "RS256";
    const char *roles[MAX_ROLES];
    size_t nroles = 0;
    int64_t ttl = TTL_DEFAULT_S, nbf_offset = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            goto usage;
        if (!strcmp(a, "--key"))
            key = v;
        else if (!strcmp(a, "--issuer"))
            iss = v;
        else if (!strcmp(a, "--audience"))
            aud = v;
        else if (!strcmp(a, "--sub"))
            sub = v;
        else if (!strcmp(a, "--kid"))
            kid = v;
        else if (!strcmp(a, "--scope"))
            scope = v;
        else if (!strcmp(a, "--client"))
            client = v;
        else if (!strcmp(a, "--alg"))
            algname = v;
        else if (!strcmp(a, "--role") && nroles < MAX_ROLES)
            roles[nroles++] = v;
        else if (!strcmp(a, "--ttl") || !strcmp(a, "--not-before")) {
            bool is_ttl = !strcmp(a, "--ttl");
            /* a --ttl of 0 or less mints an expired token: tests need one */
            if (!es_parse_i64(v, INT32_MIN, INT32_MAX, is_ttl ? &ttl : &nbf_offset)) {
                fprintf(stderr, "escqrs auth token: %s takes whole seconds, got '%s'\n", a, v);
                return CLI_EXIT_USAGE;
            }
        } else
            goto usage;
        i++;
    }
    if (!key || !iss || !aud || !sub)
        goto usage;
    char *pem = es_read_file(key);
    if (!pem) {
        fprintf(stderr, "escqrs auth token: cannot read %s\n", key);
        return CLI_EXIT_FAILURE;
    }
    jwt_t *jwt = NULL;
    int rc = CLI_EXIT_FAILURE;
    long now = (long)time(NULL);
    jwt_alg_t alg = jwt_str_alg(algname);
    if (jwt_new(&jwt) || jwt_add_grant(jwt, "iss", iss) || jwt_add_grant(jwt, "aud", aud) ||
        jwt_add_grant(jwt, "sub", sub) || jwt_add_grant_int(jwt, "iat", now) ||
        jwt_add_grant_int(jwt, "exp", now + ttl) ||
        (nbf_offset && jwt_add_grant_int(jwt, "nbf", now + nbf_offset)) ||
        (scope && jwt_add_grant(jwt, "scope", scope)) ||
        (client && jwt_add_grant(jwt, "azp", client)) || jwt_add_header(jwt, "kid", kid) ||
        alg == JWT_ALG_INVAL ||
        jwt_set_alg(jwt, alg, (const unsigned char *)pem, (int)strlen(pem))) {
        fprintf(stderr, "escqrs auth token: cannot build the token\n");
        goto out;
    }
    if (nroles) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nroles; i++)
            json_array_append_new(arr, json_string(roles[i]));
        json_t *obj = json_pack("{s:o}", "roles", arr);
        char *text = json_dumps(obj, JSON_COMPACT);
        json_decref(obj);
        int bad = jwt_add_grants_json(jwt, text);
        free(text);
        if (bad) {
            fprintf(stderr, "escqrs auth token: cannot add the roles\n");
            goto out;
        }
    }
    char *out = jwt_encode_str(jwt);
    if (!out) {
        fprintf(stderr, "escqrs auth token: signing failed (is %s a private key for %s?)\n", key,
                algname);
        goto out;
    }
    printf("%s\n", out);
    free(out);
    rc = CLI_EXIT_OK;
out:
    jwt_free(jwt);
    free(pem);
    return rc;
usage:
    fprintf(stderr, "usage: escqrs auth token --key PEM --issuer I --audience A --sub S\n"
                    "       [--kid KID] [--scope \"a b\"] [--role R]... [--client C]\n"
                    "       [--ttl SECONDS] [--not-before SECONDS] [--alg RS256|ES256|...]\n");
    return CLI_EXIT_USAGE;
}

int cli_auth(es_conf_t *conf, int argc, char **argv)
{
    (void)conf;
    if (argc >= 2 && !strcmp(argv[1], "keygen"))
        return keygen(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "token"))
        return token(argc - 1, argv + 1);
    fprintf(stderr, "usage: escqrs auth keygen --dir DIR | escqrs auth token --key PEM ...\n"
                    "Development keys and tokens (docs/security.md).\n");
    return argc >= 2 && !strcmp(argv[1], "--help") ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}
