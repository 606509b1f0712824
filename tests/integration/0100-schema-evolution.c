/*
 * 0100-schema-evolution.c — schema evolution against the real registry.
 *
 * v1 is schemas/cart.events.avsc; v2 (tests/data/evolution/v2) adds a field
 * with a default; v3 (tests/data/evolution/v3) changes a field's type.
 * Records written with v1 decode under the v2 reader with the default filled
 * in, records written with v2 decode under the v1 reader with the field
 * ignored, and `escqrs schemas check` accepts v2 but refuses v3 with the
 * registry's reason.  Subjects are unique per run.
 */
#include "escqrs/envelope.h"
#include "escqrs/record.h"
#include "escqrs/serde.h"
#include "escqrs/schemas.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char prefix[96], subject[160], errstr[1024];
static es_registry_t *reg;
static char *v2_text;

static void fill_event(avro_value_t *ev, const char *cart, int64_t version)
{
    avro_value_t f, br, payload;
    avro_value_get_by_name(ev, "event_id", &f, NULL);
    avro_value_set_string(&f, "6f1c2a38-0d6f-4a8e-9d3c-1b2a3c4d5e6f");
    avro_value_get_by_name(ev, "cart_id", &f, NULL);
    avro_value_set_string(&f, cart);
    avro_value_get_by_name(ev, "version", &f, NULL);
    avro_value_set_long(&f, version);
    avro_value_get_by_name(ev, "occurred_at", &f, NULL);
    avro_value_set_long(&f, 1700000000000LL);
    avro_value_get_by_name(ev, "command_id", &f, NULL);
    avro_value_set_string(&f, "cmd-1");
    avro_value_get_by_name(ev, "correlation_id", &f, NULL);
    avro_value_set_branch(&f, 0, &br);
    es_principal_set(ev, "alice", NULL); /* who sent it, kept across versions */
    es_opt_string_set(
        ev, "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"); /* in versions that have it */
    es_opt_string_set(ev, "tracestate", "congo=t61rcWkgMzE");
    avro_value_get_by_name(ev, "payload", &f, NULL);
    avro_value_set_branch(&f, 1, &payload); /* ItemRemoved */
    avro_value_get_by_name(&payload, "sku", &f, NULL);
    avro_value_set_string(&f, "SKU-9");
    avro_value_get_by_name(&payload, "quantity", &f, NULL);
    avro_value_set_int(&f, 3);
}

static const char *get_str(avro_value_t *rec, const char *field)
{
    avro_value_t f;
    const char *s = NULL;
    size_t sz;
    if (avro_value_get_by_name(rec, field, &f, NULL))
        return NULL;
    avro_value_get_string(&f, &s, &sz);
    return s;
}

static int64_t get_long(avro_value_t *rec, const char *field)
{
    avro_value_t f;
    int64_t v = -1;
    avro_value_get_by_name(rec, field, &f, NULL);
    avro_value_get_long(&f, &v);
    return v;
}

static void test_v1_and_v2_read_each_other(void)
{
    es_buf_t rec1 = {0}, rec2 = {0};
    avro_value_t ev, *got;

    es_serde_t *v1 =
        es_serde_new(reg, subject, es_schema_text("cart.events"), true, 0, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(v1);
    CU_ASSERT_EQUAL(
        es_registry_set_compatibility(reg, subject, "BACKWARD_TRANSITIVE", errstr, sizeof(errstr)),
        ES_ERR_OK);
    es_serde_new_value(v1, &ev);
    fill_event(&ev, "cart-v1", 1);
    CU_ASSERT_EQUAL(es_serde_encode(v1, &ev, &rec1, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_decref(&ev);

    es_serde_t *v2 = es_serde_new(reg, subject, v2_text, true, 0, errstr, sizeof(errstr));
    if (!v2)
        fprintf(stderr, "v2: %s\n", errstr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v2);
    CU_ASSERT_NOT_EQUAL(es_serde_schema_id(v1), es_serde_schema_id(v2));
    es_serde_new_value(v2, &ev);
    fill_event(&ev, "cart-v2", 2);
    avro_value_t ch;
    avro_value_get_by_name(&ev, "channel", &ch, NULL);
    avro_value_set_string(&ch, "mobile");
    CU_ASSERT_EQUAL(es_serde_encode(v2, &ev, &rec2, errstr, sizeof(errstr)), ES_ERR_OK);
    avro_value_decref(&ev);

    /* old record, new reader: the default is filled in */
    if (es_serde_decode(v2, rec1.data, rec1.len, &got, errstr, sizeof(errstr)))
        fprintf(stderr, "decode v1 as v2: %s\n", errstr);
    CU_ASSERT_EQUAL_FATAL(es_serde_decode(v2, rec1.data, rec1.len, &got, errstr, sizeof(errstr)),
                          ES_ERR_OK);
    ES_ASSERT_STR_EQ(get_str(got, "cart_id"), "cart-v1");
    ES_ASSERT_STR_EQ(get_str(got, "channel"), "web");
    CU_ASSERT_EQUAL(get_long(got, "version"), 1);

    /* new record, old reader (fetched the v2 writer schema by id): field ignored */
    es_serde_t *v1_reader =
        es_serde_new(reg, subject, es_schema_text("cart.events"), false, 0, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(v1_reader);
    if (es_serde_decode(v1_reader, rec2.data, rec2.len, &got, errstr, sizeof(errstr)))
        fprintf(stderr, "decode v2 as v1: %s\n", errstr);
    CU_ASSERT_EQUAL_FATAL(
        es_serde_decode(v1_reader, rec2.data, rec2.len, &got, errstr, sizeof(errstr)), ES_ERR_OK);
    ES_ASSERT_STR_EQ(get_str(got, "cart_id"), "cart-v2");
    CU_ASSERT_EQUAL(get_long(got, "version"), 2);
    CU_ASSERT_PTR_NULL(get_str(got, "channel"));
    avro_value_t payload, br, sku;
    avro_value_get_by_name(got, "payload", &payload, NULL);
    avro_value_get_current_branch(&payload, &br);
    const char *s = NULL;
    size_t sz;
    avro_value_get_by_name(&br, "sku", &sku, NULL);
    avro_value_get_string(&sku, &s, &sz);
    ES_ASSERT_STR_EQ(s, "SKU-9");

    es_serde_destroy(v1_reader);
    es_serde_destroy(v1);
    es_serde_destroy(v2);
    es_buf_free(&rec1);
    es_buf_free(&rec2);
}

/* Runs `escqrs schemas VERB --dir DIR --prefix P`; returns its exit code and output. */
static int run_schemas(const char *verb, const char *dir, const char *pfx, es_buf_t *output)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "'%s/cli/escqrs' --set 'registry.url=%s' --set log.level=error schemas %s "
             "--dir '%s/tests/data/evolution/%s' --prefix '%s' 2>&1",
             getenv("ESCQRS_BUILD_DIR"), es_test_registry(), verb, getenv("ESCQRS_SOURCE_DIR"), dir,
             pfx);
    pid_t pid = -1;
    FILE *p = es_test_popen(cmd, &pid); /* the CLI dies with this test */
    char line[1024];
    es_buf_clear(output);
    while (p && fgets(line, sizeof(line), p))
        es_buf_append(output, line, strlen(line));
    int st = p ? es_test_pclose(p, pid) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run_check(const char *dir, const char *pfx, es_buf_t *output)
{
    return run_schemas("check", dir, pfx, output);
}

static void test_check_accepts_v2_refuses_v3(void)
{
    es_buf_t out = {0};
    CU_ASSERT_PTR_NOT_NULL_FATAL(getenv("ESCQRS_BUILD_DIR"));
    CU_ASSERT_EQUAL(run_check("v2", prefix, &out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data ? out.data : "", "compatible"));
    CU_ASSERT_EQUAL(run_check("v3", prefix, &out), 1);
    printf("\n    v3 check said: %s", out.data ? out.data : "");
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data ? out.data : "", "INCOMPATIBLE"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data ? out.data : "", "cart.events-value"));
    /* the registry's reason is passed on: it names the field whose type changed */
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data ? out.data : "", "/fields/2"));
    es_buf_free(&out);
}

/* A subject left at the registry's default level (NONE) accepts anything, so
 * check must not report it compatible. */
static void test_check_refuses_weak_level(void)
{
    char uniq[120], pfx[128], subj[192];
    int id = 0;
    es_buf_t out = {0};
    es_test_unique("it0100-weak", uniq, sizeof(uniq));
    snprintf(pfx, sizeof(pfx), "%s-", uniq);
    snprintf(subj, sizeof(subj), "%scart.events-value", pfx);
    CU_ASSERT_EQUAL_FATAL(
        es_registry_register(reg, subj, es_schema_text("cart.events"), &id, errstr, sizeof(errstr)),
        ES_ERR_OK);
    /* v2 is a compatible change, so the compatibility answer alone would pass it
     * (under Apicurio's default NONE, or a global BACKWARD rule alike); the weak
     * level of the subject must still fail the check. */
    CU_ASSERT_EQUAL(run_check("v2", pfx, &out), 1);
    printf("\n    weak-level check said: %s", out.data ? out.data : "");
    CU_ASSERT_PTR_NOT_NULL(strstr(out.data ? out.data : "", "not BACKWARD_TRANSITIVE"));
    /* register sets the level before registering, so v3 is refused, not slipped in */
    size_t nver = 0;
    CU_ASSERT_EQUAL(run_schemas("register", "v3", pfx, &out), 1);
    printf("\n    register v3 said: %s", out.data ? out.data : "");
    CU_ASSERT_EQUAL(es_registry_version_count(reg, subj, &nver, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(nver, 1);
    /* and v2 goes in, after which check is satisfied with the level */
    CU_ASSERT_EQUAL(run_schemas("register", "v2", pfx, &out), 0);
    CU_ASSERT_EQUAL(es_registry_version_count(reg, subj, &nver, errstr, sizeof(errstr)), ES_ERR_OK);
    CU_ASSERT_EQUAL(nver, 2);
    CU_ASSERT_EQUAL(run_check("v2", pfx, &out), 0);
    es_buf_free(&out);
}

int main(void)
{
    es_test_unique("it0100", prefix, sizeof(prefix));
    size_t n = strlen(prefix);
    prefix[n] = '-';
    prefix[n + 1] = '\0';
    snprintf(subject, sizeof(subject), "%scart.events-value", prefix);
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/data/evolution/v2/cart.events.avsc",
             getenv("ESCQRS_SOURCE_DIR") ? getenv("ESCQRS_SOURCE_DIR") : ".");
    es_buf_t text = {0};
    v2_text = es_buf_read_file(&text, path) ? text.data : NULL;
    reg = es_registry_new(es_test_registry(), 5000, 2, errstr, sizeof(errstr));
    if (!v2_text || !reg) {
        fprintf(stderr, "setup: %s %s\n", path, errstr);
        return 1;
    }
    static const es_test_case_t cases[] = {
        {"v1 and v2 records read each other", test_v1_and_v2_read_each_other},
        {"schemas check accepts v2, refuses v3", test_check_accepts_v2_refuses_v3},
        {"schemas check refuses an event subject at level NONE", test_check_refuses_weak_level},
        {NULL, NULL},
    };
    int rc = es_test_run("it0100-schema-evolution", cases);
    es_registry_destroy(reg);
    free(v2_text);
    return rc;
}
