/*
 * auth_jwks.c — a JWKS document (RFC 7517) to the PEM public keys libjwt
 * verifies with.
 *
 * A JWK is turned into a PEM SubjectPublicKeyInfo with OpenSSL once, when
 * the JWKS is loaded, never per request.  RSA keys (n, e) and EC keys on
 * P-256, P-384 and P-521 (x, y, each exactly the curve's size) are taken;
 * a key for another use than signing, of another type, or that OpenSSL
 * refuses is left out with a warning, and a document left with no key is
 * an error.  Each key remembers its type and curve so the verifier can
 * refuse a token whose algorithm does not fit its key (an RSA key used as
 * an HMAC secret is the classic forgery).
 */
#include "auth_internal.h"
#include "escqrs/log.h"
#include "escqrs/util.h"

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHY_MAX 256 /* why one key was left out */

void auth_keyset_free(auth_keyset_t *ks)
{
    for (size_t i = 0; ks && i < ks->n; i++)
        free(ks->keys[i].pem);
    if (ks)
        free(ks->keys);
    free(ks);
}

static int b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

bool auth_b64url_decode(const char *in, size_t len, es_buf_t *out)
{
    uint32_t acc = 0;
    int bits = 0;
    es_buf_clear(out);
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '=')
            break;
        int v = b64url_val(in[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            unsigned char b = (unsigned char)(acc >> bits);
            es_buf_append(out, &b, 1);
        }
    }
    return true;
}

static bool jwk_bytes(json_t *jwk, const char *field, es_buf_t *out)
{
    const char *s = json_string_value(json_object_get(jwk, field));
    return s && auth_b64url_decode(s, strlen(s), out) && out->len > 0;
}

/* The JWK curves (RFC 7518 §6.2.1.1), OpenSSL's names, bytes per coordinate. */
typedef struct {
    const char *crv, *group;
    size_t coord;
    int bits;
} curve_t;

static const curve_t curves[] = {
    {"P-256", "prime256v1", 32, 256},
    {"P-384", "secp384r1", 48, 384},
    {"P-521", "secp521r1", 66, 521},
};

static const curve_t *curve_of(const char *crv)
{
    for (size_t i = 0; crv && i < ES_ARRAY_SIZE(curves); i++)
        if (!strcmp(curves[i].crv, crv))
            return &curves[i];
    return NULL;
}

/* A PEM SubjectPublicKeyInfo of an RSA or EC JWK, or NULL. */
static char *jwk_to_pem(json_t *jwk, bool *rsa, int *ec_bits, char *why, size_t whysz)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    es_buf_t a = {0}, b = {0};
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *n = NULL, *e = NULL;
    BIO *bio = NULL;
    char *pem = NULL;
    if (kty && !strcmp(kty, "RSA")) {
        if (!jwk_bytes(jwk, "n", &a) || !jwk_bytes(jwk, "e", &b)) {
            snprintf(why, whysz, "RSA key without n or e");
            goto out;
        }
        n = BN_bin2bn((const unsigned char *)a.data, (int)a.len, NULL);
        e = BN_bin2bn((const unsigned char *)b.data, (int)b.len, NULL);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        *rsa = true;
    } else if (kty && !strcmp(kty, "EC")) {
        const curve_t *cv = curve_of(json_string_value(json_object_get(jwk, "crv")));
        if (!cv || !jwk_bytes(jwk, "x", &a) || !jwk_bytes(jwk, "y", &b) || a.len != cv->coord ||
            b.len != cv->coord) {
            snprintf(why, whysz, "EC key with an unknown curve or bad coordinates");
            goto out;
        }
        es_buf_t pt = {0};
        unsigned char form = (unsigned char)POINT_CONVERSION_UNCOMPRESSED; /* 04 || x || y */
        es_buf_append(&pt, &form, 1);
        es_buf_append(&pt, a.data, a.len);
        es_buf_append(&pt, b.data, b.len);
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, cv->group, 0);
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt.data, pt.len);
        params = OSSL_PARAM_BLD_to_param(bld);
        es_buf_free(&pt);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        *rsa = false;
        *ec_bits = cv->bits;
    } else {
        snprintf(why, whysz, "key type %s is not RSA or EC", kty ? kty : "(none)");
        goto out;
    }
    if (!params)
        params = OSSL_PARAM_BLD_to_param(bld);
    if (!ctx || !params || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        snprintf(why, whysz, "OpenSSL refused the key");
        goto out;
    }
    bio = BIO_new(BIO_s_mem());
    if (PEM_write_bio_PUBKEY(bio, pkey) != 1) {
        snprintf(why, whysz, "OpenSSL cannot write the key");
        goto out;
    }
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    pem = es_strndup(data, (size_t)len);
out:
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    es_buf_free(&a);
    es_buf_free(&b);
    return pem;
}

/* Keys for other uses than signing are left out, as are keys OpenSSL refuses (logged). */
auth_keyset_t *auth_jwks_parse(const char *text, size_t len, char *errstr, size_t errstr_size)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr);
    json_t *keys = json_object_get(doc, "keys");
    auth_keyset_t *ks = es_calloc(1, sizeof(*ks));
    size_t i;
    json_t *jwk;
    if (!json_is_array(keys)) {
        snprintf(errstr, errstr_size, "not a JWKS (no \"keys\" array)%s%s", doc ? "" : ": ",
                 doc ? "" : jerr.text);
        goto fail;
    }
    json_array_foreach(keys, i, jwk)
    {
        const char *use = json_string_value(json_object_get(jwk, "use"));
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        char why[WHY_MAX];
        auth_key_t k = {0};
        if (use && strcmp(use, "sig"))
            continue;
        if (!(k.pem = jwk_to_pem(jwk, &k.rsa, &k.ec_bits, why, sizeof(why)))) {
            es_log_warn("auth", "JWKS key %s left out: %s", kid ? kid : "(no kid)", why);
            continue;
        }
        snprintf(k.kid, sizeof(k.kid), "%s", kid ? kid : "");
        ks->keys = es_realloc(ks->keys, (ks->n + 1) * sizeof(*ks->keys));
        ks->keys[ks->n++] = k;
    }
    if (!ks->n) {
        snprintf(errstr, errstr_size, "the JWKS holds no usable signing key");
        goto fail;
    }
    json_decref(doc);
    return ks;
fail:
    json_decref(doc);
    auth_keyset_free(ks);
    return NULL;
}

bool auth_key_fits(const auth_key_t *k, jwt_alg_t alg)
{
    if (alg >= JWT_ALG_RS256 && alg <= JWT_ALG_RS512)
        return k->rsa;
    return !k->rsa && ((alg == JWT_ALG_ES256 && k->ec_bits == 256) ||
                       (alg == JWT_ALG_ES384 && k->ec_bits == 384) ||
                       (alg == JWT_ALG_ES512 && k->ec_bits == 521));
}
