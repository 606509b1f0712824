/*
 * auth_internal.h — private to authentication (common/src/auth*.c): the
 * keys of a JWKS as auth.c keeps them, and the calls auth.c makes to
 * auth_jwks.c.  Nothing outside those files includes it.
 *
 * The files: auth.c (the authenticator: configuration, fetching and
 * refreshing the JWKS, verifying a token), auth_jwks.c (a JWKS document to
 * PEM public keys), auth_claims.c and auth_policy.c (pure, declared in
 * auth.h for the tests).  Only auth.c calls the others.
 */
#ifndef ESCQRS_AUTH_INTERNAL_H
#define ESCQRS_AUTH_INTERNAL_H

#include "escqrs/auth.h"
#include "escqrs/mem.h"

#include <jwt.h>
#include <stdbool.h>
#include <stddef.h>

/* One signing key of a JWKS. */
typedef struct {
    char kid[ES_AUTH_NAME_MAX];
    bool rsa;
    int ec_bits; /* 256, 384, 521 for EC keys */
    char *pem;   /* SubjectPublicKeyInfo, for libjwt */
} auth_key_t;

typedef struct {
    auth_key_t *keys;
    size_t n;
} auth_keyset_t;

/* The signing keys of a JWKS document; NULL with why when none is usable. */
auth_keyset_t *auth_jwks_parse(const char *text, size_t len, char *errstr, size_t errstr_size);
void auth_keyset_free(auth_keyset_t *ks);
/* Does key @p k fit algorithm @p alg (RS* an RSA key, ESnnn an EC key of that curve)? */
bool auth_key_fits(const auth_key_t *k, jwt_alg_t alg);
/* base64url without padding (RFC 7515) into @p out; false on a bad character. */
bool auth_b64url_decode(const char *in, size_t len, es_buf_t *out);

#endif
