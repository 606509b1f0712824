/*
 * trace.c — W3C Trace Context level 1 text, and correlation ids.
 *
 * Why strict: these values arrive from anyone on the network and end up in
 * the permanent log (commands and events are kept for ever) and in every
 * log line of the request.  The spec's answer to a malformed traceparent is
 * to ignore it and start a new trace, never to refuse the request, so
 * parsing here only says yes or no; the gateway refuses (400) only what no
 * spec covers, an over-long or binary correlation id.  tracestate is
 * checked against the spec's grammar (keys, values, at most 32 members, no
 * key twice) and a length cap, and kept or dropped whole: a vendor's entry
 * cut in half is worse than none.
 */
#include "escqrs/trace.h"
#include "escqrs/mem.h"
#include "escqrs/util.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TP_VERSION_INVALID 0xff /* the one version the spec forbids */
#define TS_KEY_MAX         256  /* simple-key, or tenant@system in all */
#define TS_VALUE_MAX       256
#define TS_TENANT_MAX      241
#define TS_SYSTEM_MAX      14

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10; /* lowercase only: the spec's HEXDIGLC */
    return -1;
}

/* @p n lowercase hex digits at @p s; *nonzero says whether any is not '0'. */
static bool hex_run(const char *s, size_t n, bool *nonzero)
{
    bool nz = false;
    for (size_t i = 0; i < n; i++) {
        if (hexval(s[i]) < 0)
            return false;
        nz = nz || s[i] != '0';
    }
    if (nonzero)
        *nonzero = nz;
    return true;
}

bool es_traceparent_parse(const char *s, es_traceparent_t *out)
{
    bool trace_nz, parent_nz;
    if (!s)
        return false;
    size_t len = strnlen(s, ES_TRACEPARENT_LEN + 1);
    if (len < ES_TRACEPARENT_LEN || !hex_run(s, 2, NULL) || s[2] != '-')
        return false;
    unsigned version = (unsigned)(hexval(s[0]) << 4 | hexval(s[1]));
    if (version == TP_VERSION_INVALID)
        return false;
    /* version 00 is exactly 55 characters; a later one may go on after a '-' */
    if (len > ES_TRACEPARENT_LEN && (version == 0 || s[ES_TRACEPARENT_LEN] != '-'))
        return false;
    if (!hex_run(s + 3, ES_TRACE_ID_LEN, &trace_nz) || s[35] != '-' ||
        !hex_run(s + 36, ES_SPAN_ID_LEN, &parent_nz) || s[52] != '-' || !hex_run(s + 53, 2, NULL))
        return false;
    if (!trace_nz || !parent_nz)
        return false;
    memcpy(out->trace_id, s + 3, ES_TRACE_ID_LEN);
    out->trace_id[ES_TRACE_ID_LEN] = '\0';
    memcpy(out->parent_id, s + 36, ES_SPAN_ID_LEN);
    out->parent_id[ES_SPAN_ID_LEN] = '\0';
    out->flags = (unsigned)(hexval(s[53]) << 4 | hexval(s[54]));
    if (version != 0)
        out->flags &= ES_TRACE_FLAG_SAMPLED; /* only the bits version 00 defines */
    return true;
}

void es_traceparent_format(char out[ES_TRACEPARENT_LEN + 1], const char *trace_id,
                           const char *span_id, unsigned flags)
{
    snprintf(out, ES_TRACEPARENT_LEN + 1, "00-%.32s-%.16s-%02x", trace_id, span_id, flags & 0xffu);
}

/* ------------------------------------------------------------ tracestate */

static bool ts_keychar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' ||
           c == '/';
}

/* key = simple-key / tenant-id "@" system-id */
static bool ts_key_valid(const char *k, size_t n)
{
    const char *at = memchr(k, '@', n);
    if (n == 0 || n > TS_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (k + i != at && !ts_keychar(k[i]))
            return false;
    if (!at) /* simple-key: starts with a lowercase letter */
        return k[0] >= 'a' && k[0] <= 'z';
    size_t tenant = (size_t)(at - k), system = n - tenant - 1;
    bool tenant_ok = tenant >= 1 && tenant <= TS_TENANT_MAX &&
                     ((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= '0' && k[0] <= '9'));
    return tenant_ok && system >= 1 && system <= TS_SYSTEM_MAX && at[1] >= 'a' && at[1] <= 'z';
}

/* value = 0*255(chr) nblk-chr: printable ASCII without ',' and '=', not ending in a space */
static bool ts_value_valid(const char *v, size_t n)
{
    if (n == 0 || n > TS_VALUE_MAX || v[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] > 0x7e || v[i] == ',' || v[i] == '=')
            return false;
    return true;
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

bool es_tracestate_valid(const char *s)
{
    struct {
        const char *k;
        size_t n;
    } keys[ES_TRACESTATE_MEMBERS_MAX];
    size_t nkeys = 0;
    if (!s || strnlen(s, ES_TRACESTATE_MAX + 1) > ES_TRACESTATE_MAX)
        return false;
    for (const char *p = s;;) {
        const char *end = strchr(p, ',');
        const char *stop = end ? end : p + strlen(p);
        while (p < stop && ows(*p))
            p++;
        while (stop > p && ows(stop[-1]))
            stop--;
        if (p < stop) { /* an empty member is allowed, and not counted */
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            if (!eq || nkeys == ES_TRACESTATE_MEMBERS_MAX || !ts_key_valid(p, (size_t)(eq - p)) ||
                !ts_value_valid(eq + 1, (size_t)(stop - eq - 1)))
                return false;
            for (size_t i = 0; i < nkeys; i++) /* a key at most once */
                if (keys[i].n == (size_t)(eq - p) && !memcmp(keys[i].k, p, keys[i].n))
                    return false;
            keys[nkeys].k = p;
            keys[nkeys++].n = (size_t)(eq - p);
        }
        if (!end)
            return true;
        p = end + 1;
    }
}

/* ------------------------------------------------------------------- ids */

/* @p nbytes random bytes as lowercase hex into @p out, never all zeros. */
static void random_hex(char *out, size_t nbytes)
{
    uint8_t b[16];
    bool nonzero = false;
    while (!nonzero) {
        es_random_bytes(b, nbytes);
        for (size_t i = 0; i < nbytes; i++)
            nonzero = nonzero || b[i];
    }
    es_hex_encode(out, b, nbytes);
    out[2 * nbytes] = '\0';
}

void es_trace_id_new(char out[ES_TRACE_ID_LEN + 1])
{
    random_hex(out, ES_TRACE_ID_LEN / 2);
}

void es_span_id_new(char out[ES_SPAN_ID_LEN + 1])
{
    random_hex(out, ES_SPAN_ID_LEN / 2);
}

bool es_correlation_id_valid(const char *s)
{
    size_t n = 0;
    if (!s)
        return false;
    for (; s[n] && n <= ES_CORRELATION_ID_MAX; n++)
        if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e)
            return false;
    return n >= 1 && n <= ES_CORRELATION_ID_MAX;
}

void es_trace_ctx_start(es_trace_ctx_t *ctx, const char *traceparent, const char *tracestate)
{
    es_traceparent_t in;
    unsigned flags = ES_TRACE_FLAG_SAMPLED;
    ctx->continued = es_traceparent_parse(traceparent, &in);
    ctx->tracestate[0] = '\0';
    if (ctx->continued) {
        memcpy(ctx->trace_id, in.trace_id, sizeof(ctx->trace_id));
        flags = in.flags & ES_TRACE_FLAG_SAMPLED;
        if (es_tracestate_valid(tracestate))
            snprintf(ctx->tracestate, sizeof(ctx->tracestate), "%s", tracestate);
    } else {
        es_trace_id_new(ctx->trace_id);
    }
    es_span_id_new(ctx->span_id);
    es_traceparent_format(ctx->traceparent, ctx->trace_id, ctx->span_id, flags);
}

void es_trace_id_of(const char *s, char out[ES_TRACE_ID_LEN + 1])
{
    es_traceparent_t tp;
    if (es_traceparent_parse(s, &tp))
        memcpy(out, tp.trace_id, ES_TRACE_ID_LEN + 1);
    else
        out[0] = '\0';
}
