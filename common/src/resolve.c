/*
 * resolve.c — writer-to-reader copy with defaults; see resolve.h for why.
 *
 * The reader schema's JSON is indexed once: every record's fields array by
 * the record's full name, so a reader-only field's "default" is found in
 * O(fields).  Copying walks the reader value.  Per pair of writer and reader
 * record schemas a plan is made the first time the pair is met and kept
 * while the resolver lives: for each reader field the writer's field index,
 * or the default to fill in.  Without it every record paid a by-name look-up
 * per field, and Avro C formats an error message for every miss (a quarter
 * of a replay's CPU over events older than the reader schema, issue 17).
 * Errors name the field path so a schema mistake is easy to find.
 *
 * copy() resolves unions first (the writer's current branch; the reader's
 * matching branch), then checks once that the writer's type can be read as
 * the reader's — the same type, or one of the spec's promotions — and takes
 * one small step per reader type (copy_number, copy_record, copy_items, ...), so each
 * step only converts and never has to refuse a type.
 */
#include "resolve.h"
#include "escqrs/mem.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define RESOLVE_MAX_DEPTH 64
#define FULLNAME_MAX      512 /* a record's namespace.name */

typedef struct {
    char *fullname;
    json_t *fields; /* borrowed from root */
} record_index_t;

/* How to fill one reader record from one writer record. */
typedef struct {
    avro_schema_t writer, reader; /* held (incref) while the plan is kept */
    size_t nfields;
    int *from;         /* per reader field: the writer's field index, or -1 */
    json_t **defaults; /* per reader field with from == -1: its default, or NULL */
} record_plan_t;

struct es_resolver_s {
    json_t *root;
    record_index_t *records;
    size_t nrecords, cap;
    record_plan_t *plans;
    size_t nplans, capplans;
};

static void index_schema(es_resolver_t *r, json_t *node, const char *ns)
{
    if (json_is_array(node)) {
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v) index_schema(r, v, ns);
        return;
    }
    if (!json_is_object(node))
        return;
    const char *type = json_string_value(json_object_get(node, "type"));
    const char *name = json_string_value(json_object_get(node, "name"));
    const char *own_ns = json_string_value(json_object_get(node, "namespace"));
    if (own_ns)
        ns = own_ns;
    if (type && !strcmp(type, "record") && name) {
        char full[FULLNAME_MAX];
        if (strchr(name, '.') || !ns || !*ns)
            snprintf(full, sizeof(full), "%s", name);
        else
            snprintf(full, sizeof(full), "%s.%s", ns, name);
        if (r->nrecords == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 16;
            r->records = es_realloc(r->records, r->cap * sizeof(*r->records));
        }
        json_t *fields = json_object_get(node, "fields");
        r->records[r->nrecords++] = (record_index_t){es_strdup(full), fields};
        size_t i;
        json_t *f;
        json_array_foreach(fields, i, f) index_schema(r, json_object_get(f, "type"), ns);
        return;
    }
    if (type && !strcmp(type, "array"))
        index_schema(r, json_object_get(node, "items"), ns);
    else if (type && !strcmp(type, "map"))
        index_schema(r, json_object_get(node, "values"), ns);
    else if (json_is_object(json_object_get(node, "type")) ||
             json_is_array(json_object_get(node, "type")))
        index_schema(r, json_object_get(node, "type"), ns);
}

es_resolver_t *es_resolver_new(const char *reader_schema_json, char *errstr, size_t errstr_size)
{
    json_error_t jerr;
    json_t *root = json_loads(reader_schema_json, 0, &jerr);
    if (!root) {
        snprintf(errstr, errstr_size, "reader schema JSON: %s (line %d)", jerr.text, jerr.line);
        return NULL;
    }
    es_resolver_t *r = es_calloc(1, sizeof(*r));
    r->root = root;
    index_schema(r, root, NULL);
    return r;
}

void es_resolver_destroy(es_resolver_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nrecords; i++)
        free(r->records[i].fullname);
    free(r->records);
    for (size_t i = 0; i < r->nplans; i++) {
        avro_schema_decref(r->plans[i].writer);
        avro_schema_decref(r->plans[i].reader);
        free(r->plans[i].from);
        free(r->plans[i].defaults);
    }
    free(r->plans);
    json_decref(r->root);
    free(r);
}

/* The default of @p field in record entry @p i, or NULL. */
static json_t *entry_default(es_resolver_t *r, size_t i, const char *field)
{
    size_t j;
    json_t *f;
    json_array_foreach(r->records[i].fields, j, f)
    {
        if (!strcmp(json_string_value(json_object_get(f, "name")), field))
            return json_object_get(f, "default");
    }
    return NULL;
}

/*
 * The default of @p field of @p record in the reader schema: the record with
 * exactly its full name first; only when none has it, the one with the same
 * bare name (a namespace Avro C inherited differently).  Taking the first
 * bare-name match gave nb.Meta the default of na.Meta.
 */
static json_t *field_default(es_resolver_t *r, avro_schema_t record, const char *field)
{
    char full[FULLNAME_MAX];
    const char *ns = avro_schema_namespace(record);
    const char *name = avro_schema_name(record);
    if (ns && *ns)
        snprintf(full, sizeof(full), "%s.%s", ns, name);
    else
        snprintf(full, sizeof(full), "%s", name);
    for (size_t i = 0; i < r->nrecords; i++)
        if (!strcmp(r->records[i].fullname, full))
            return entry_default(r, i, field);
    for (size_t i = 0; i < r->nrecords; i++) {
        const char *rn = r->records[i].fullname;
        const char *dot = strrchr(rn, '.');
        if (!strcmp(dot ? dot + 1 : rn, name))
            return entry_default(r, i, field);
    }
    return NULL;
}

/* Set @p dst from a JSON default value (Avro spec: a union's default is for its first branch). */
static es_err_t set_from_json(avro_value_t *dst, json_t *j, int depth)
{
    avro_value_t child;
    size_t i;
    if (depth > RESOLVE_MAX_DEPTH)
        return ES_ERR_DECODE;
    switch (avro_value_get_type(dst)) {
    case AVRO_NULL:
        return json_is_null(j) ? (avro_value_set_null(dst), ES_ERR_OK) : ES_ERR_SCHEMA;
    case AVRO_BOOLEAN:
        return json_is_boolean(j) ? (avro_value_set_boolean(dst, json_is_true(j)), ES_ERR_OK)
                                  : ES_ERR_SCHEMA;
    case AVRO_INT32:
        return json_is_integer(j)
                   ? (avro_value_set_int(dst, (int32_t)json_integer_value(j)), ES_ERR_OK)
                   : ES_ERR_SCHEMA;
    case AVRO_INT64:
        return json_is_integer(j) ? (avro_value_set_long(dst, json_integer_value(j)), ES_ERR_OK)
                                  : ES_ERR_SCHEMA;
    case AVRO_FLOAT:
        return json_is_number(j)
                   ? (avro_value_set_float(dst, (float)json_number_value(j)), ES_ERR_OK)
                   : ES_ERR_SCHEMA;
    case AVRO_DOUBLE:
        return json_is_number(j) ? (avro_value_set_double(dst, json_number_value(j)), ES_ERR_OK)
                                 : ES_ERR_SCHEMA;
    case AVRO_STRING:
        return json_is_string(j) ? (avro_value_set_string(dst, json_string_value(j)), ES_ERR_OK)
                                 : ES_ERR_SCHEMA;
    case AVRO_BYTES:
        return json_is_string(j) ? (avro_value_set_bytes(dst, (void *)json_string_value(j),
                                                         json_string_length(j)),
                                    ES_ERR_OK)
                                 : ES_ERR_SCHEMA;
    case AVRO_ENUM: {
        int sym = json_is_string(j) ? avro_schema_enum_get_by_name(avro_value_get_schema(dst),
                                                                   json_string_value(j))
                                    : -1;
        return sym >= 0 ? (avro_value_set_enum(dst, sym), ES_ERR_OK) : ES_ERR_SCHEMA;
    }
    case AVRO_UNION:
        if (avro_value_set_branch(dst, 0, &child))
            return ES_ERR_SCHEMA;
        return set_from_json(&child, j, depth + 1);
    case AVRO_RECORD: {
        size_t n = 0;
        avro_value_get_size(dst, &n);
        for (i = 0; i < n; i++) {
            const char *name = NULL;
            avro_value_get_by_index(dst, i, &child, &name);
            json_t *v = json_object_get(j, name);
            if (!v || set_from_json(&child, v, depth + 1))
                return ES_ERR_SCHEMA;
        }
        return ES_ERR_OK;
    }
    case AVRO_ARRAY: {
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (avro_value_append(dst, &child, NULL) || set_from_json(&child, v, depth + 1))
                return ES_ERR_SCHEMA;
        }
        return ES_ERR_OK;
    }
    case AVRO_MAP: {
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v)
        {
            if (avro_value_add(dst, key, &child, NULL, NULL) || set_from_json(&child, v, depth + 1))
                return ES_ERR_SCHEMA;
        }
        return ES_ERR_OK;
    }
    default:
        return ES_ERR_SCHEMA;
    }
}

/* The name a union branch is matched by: a named type's name, else the primitive's. */
static const char *branch_name(avro_schema_t s)
{
    switch (avro_typeof(s)) {
    case AVRO_RECORD:
    case AVRO_ENUM:
    case AVRO_FIXED:
        return avro_schema_name(s);
    default:
        return avro_schema_type_name(s);
    }
}

static es_err_t copy(es_resolver_t *r, avro_value_t *src, avro_value_t *dst, int depth,
                     char *errstr, size_t errstr_size);

/* The spec's promotions: int to long, float or double; long to float or double;
 * float to double; string and bytes to each other. */
static bool promotable(avro_type_t from, avro_type_t to)
{
    switch (from) {
    case AVRO_INT32:
        return to == AVRO_INT64 || to == AVRO_FLOAT || to == AVRO_DOUBLE;
    case AVRO_INT64:
        return to == AVRO_FLOAT || to == AVRO_DOUBLE;
    case AVRO_FLOAT:
        return to == AVRO_DOUBLE;
    case AVRO_STRING:
        return to == AVRO_BYTES;
    case AVRO_BYTES:
        return to == AVRO_STRING;
    default:
        return false;
    }
}

/* The spec: the first reader branch that matches the writer's value, by name
 * first, else the first one the value can be promoted to. */
static es_err_t copy_into_union(es_resolver_t *r, avro_value_t *src, avro_value_t *dst, int depth,
                                char *errstr, size_t errstr_size)
{
    avro_schema_t us = avro_value_get_schema(dst);
    const char *want = branch_name(avro_value_get_schema(src));
    size_t nb = avro_schema_union_size(us);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t b = 0; b < nb; b++) {
            avro_schema_t bs = avro_schema_union_branch(us, (int)b);
            if (pass == 0 ? strcmp(branch_name(bs), want) != 0
                          : !promotable(avro_value_get_type(src), avro_typeof(bs)))
                continue;
            avro_value_t branch;
            if (avro_value_set_branch(dst, (int)b, &branch))
                break;
            return copy(r, src, &branch, depth + 1, errstr, errstr_size);
        }
    }
    snprintf(errstr, errstr_size, "writer union branch %s has no match in the reader union", want);
    return ES_ERR_SCHEMA;
}

/* Can a writer value of type @p st be read as reader type @p dt (the same, or promoted)? */
static bool readable_as(avro_type_t st, avro_type_t dt)
{
    return st == dt || promotable(st, dt);
}

/* The steps below run once the types are known to be readable_as() each other. */

static es_err_t copy_boolean(avro_value_t *src, avro_value_t *dst)
{
    int b = 0;
    avro_value_get_boolean(src, &b);
    avro_value_set_boolean(dst, b);
    return ES_ERR_OK;
}

static es_err_t copy_int(avro_value_t *src, avro_value_t *dst)
{
    int32_t v = 0;
    avro_value_get_int(src, &v);
    avro_value_set_int(dst, v);
    return ES_ERR_OK;
}

/* int, long, float or double into long, float or double (the promotions). */
static es_err_t copy_number(avro_value_t *src, avro_value_t *dst)
{
    avro_type_t st = avro_value_get_type(src), dt = avro_value_get_type(dst);
    double d = 0;
    int64_t l = 0;
    if (st == AVRO_INT32) {
        int32_t v = 0;
        avro_value_get_int(src, &v);
        l = v;
        d = v;
    } else if (st == AVRO_INT64) {
        avro_value_get_long(src, &l);
        d = (double)l;
    } else if (st == AVRO_FLOAT) {
        float f = 0;
        avro_value_get_float(src, &f);
        d = f;
    } else {
        avro_value_get_double(src, &d);
    }
    if (dt == AVRO_INT64)
        avro_value_set_long(dst, l);
    else if (dt == AVRO_FLOAT)
        avro_value_set_float(dst, (float)d);
    else
        avro_value_set_double(dst, d);
    return ES_ERR_OK;
}

/* string or bytes into string or bytes. */
static es_err_t copy_text(avro_value_t *src, avro_value_t *dst)
{
    const void *p = NULL;
    size_t n = 0;
    if (avro_value_get_type(src) == AVRO_STRING) {
        avro_value_get_string(src, (const char **)&p, &n);
        n = n ? n - 1 : 0; /* Avro C counts the NUL */
    } else {
        avro_value_get_bytes(src, &p, &n);
    }
    if (avro_value_get_type(dst) == AVRO_BYTES) {
        avro_value_set_bytes(dst, (void *)p, n);
    } else {
        char *s = es_strndup(p, n);
        avro_value_set_string_len(dst, s, n + 1);
        free(s);
    }
    return ES_ERR_OK;
}

static es_err_t copy_fixed(avro_value_t *src, avro_value_t *dst)
{
    const void *p;
    size_t n;
    avro_value_get_fixed(src, &p, &n);
    avro_value_set_fixed(dst, (void *)p, n);
    return ES_ERR_OK;
}

/* Enums by symbol name. */
static es_err_t copy_enum(avro_value_t *src, avro_value_t *dst, char *errstr, size_t errstr_size)
{
    int sym = 0;
    avro_value_get_enum(src, &sym);
    const char *name = avro_schema_enum_get(avro_value_get_schema(src), sym);
    int dsym = avro_schema_enum_get_by_name(avro_value_get_schema(dst), name);
    if (dsym < 0) {
        snprintf(errstr, errstr_size, "enum symbol %s unknown to the reader", name);
        return ES_ERR_SCHEMA;
    }
    avro_value_set_enum(dst, dsym);
    return ES_ERR_OK;
}

/* The plan for reading writer record @p ws as reader record @p rs: made once per pair. */
static const record_plan_t *record_plan(es_resolver_t *r, avro_schema_t ws, avro_schema_t rs)
{
    for (size_t i = 0; i < r->nplans; i++)
        if (r->plans[i].writer == ws && r->plans[i].reader == rs)
            return &r->plans[i];
    if (r->nplans == r->capplans) {
        r->capplans = r->capplans ? r->capplans * 2 : 8;
        r->plans = es_realloc(r->plans, r->capplans * sizeof(*r->plans));
    }
    record_plan_t *p = &r->plans[r->nplans++];
    p->writer = avro_schema_incref(ws);
    p->reader = avro_schema_incref(rs);
    p->nfields = avro_schema_record_size(rs);
    p->from = es_calloc(p->nfields ? p->nfields : 1, sizeof(*p->from));
    p->defaults = es_calloc(p->nfields ? p->nfields : 1, sizeof(*p->defaults));
    for (size_t i = 0; i < p->nfields; i++) {
        const char *name = avro_schema_record_field_name(rs, (int)i);
        p->from[i] = -1;
        for (size_t j = 0; j < avro_schema_record_size(ws); j++)
            if (!strcmp(avro_schema_record_field_name(ws, (int)j), name)) {
                p->from[i] = (int)j;
                break;
            }
        if (p->from[i] < 0)
            p->defaults[i] = field_default(r, rs, name);
    }
    return p;
}

/* Fields by name: the writer's value, else the reader's default; writer-only fields skipped. */
static es_err_t copy_record(es_resolver_t *r, avro_value_t *src, avro_value_t *dst, int depth,
                            char *errstr, size_t errstr_size)
{
    const record_plan_t *plan =
        record_plan(r, avro_value_get_schema(src), avro_value_get_schema(dst));
    avro_value_t sc, dc;
    es_err_t err;
    for (size_t i = 0; i < plan->nfields; i++) {
        const char *name = NULL;
        avro_value_get_by_index(dst, i, &dc, &name);
        if (plan->from[i] >= 0) {
            avro_value_get_by_index(src, (size_t)plan->from[i], &sc, NULL);
            if ((err = copy(r, &sc, &dc, depth + 1, errstr, errstr_size)))
                return err;
            continue;
        }
        if (!plan->defaults[i] || set_from_json(&dc, plan->defaults[i], 0)) {
            snprintf(errstr, errstr_size,
                     "reader field %s is not in the writer and has no usable default", name);
            return ES_ERR_SCHEMA;
        }
    }
    return ES_ERR_OK;
}

/* An array's items in order, or a map's entries by key. */
static es_err_t copy_items(es_resolver_t *r, avro_value_t *src, avro_value_t *dst, int depth,
                           char *errstr, size_t errstr_size)
{
    bool map = avro_value_get_type(dst) == AVRO_MAP;
    avro_value_t sc, dc;
    es_err_t err;
    size_t n = 0;
    avro_value_get_size(src, &n);
    for (size_t i = 0; i < n; i++) {
        const char *key = NULL;
        avro_value_get_by_index(src, i, &sc, map ? &key : NULL);
        if (map)
            avro_value_add(dst, key, &dc, NULL, NULL);
        else
            avro_value_append(dst, &dc, NULL);
        if ((err = copy(r, &sc, &dc, depth + 1, errstr, errstr_size)))
            return err;
    }
    return ES_ERR_OK;
}

/*
 * Copy @p src into @p dst: a writer union by its current branch, a reader
 * union by the branch that matches, anything else by one step per reader
 * type once the writer's type is known to be readable as it.
 */
static es_err_t copy(es_resolver_t *r, avro_value_t *src, avro_value_t *dst, int depth,
                     char *errstr, size_t errstr_size)
{
    avro_type_t st = avro_value_get_type(src), dt = avro_value_get_type(dst);
    avro_value_t sc;

    if (depth > RESOLVE_MAX_DEPTH) {
        snprintf(errstr, errstr_size, "value nested too deep");
        return ES_ERR_DECODE;
    }
    if (st == AVRO_UNION) { /* resolve the writer's branch first */
        avro_value_get_current_branch(src, &sc);
        return copy(r, &sc, dst, depth + 1, errstr, errstr_size);
    }
    if (dt == AVRO_UNION)
        return copy_into_union(r, src, dst, depth, errstr, errstr_size);
    if (readable_as(st, dt)) {
        switch (dt) {
        case AVRO_NULL:
            return avro_value_set_null(dst) ? ES_ERR_DECODE : ES_ERR_OK;
        case AVRO_BOOLEAN:
            return copy_boolean(src, dst);
        case AVRO_INT32:
            return copy_int(src, dst);
        case AVRO_INT64:
        case AVRO_FLOAT:
        case AVRO_DOUBLE:
            return copy_number(src, dst);
        case AVRO_STRING:
        case AVRO_BYTES:
            return copy_text(src, dst);
        case AVRO_FIXED:
            return copy_fixed(src, dst);
        case AVRO_ENUM:
            return copy_enum(src, dst, errstr, errstr_size);
        case AVRO_RECORD:
            return copy_record(r, src, dst, depth, errstr, errstr_size);
        case AVRO_ARRAY:
        case AVRO_MAP:
            return copy_items(r, src, dst, depth, errstr, errstr_size);
        default:
            break;
        }
    }
    snprintf(errstr, errstr_size, "writer type %s cannot be read as reader type %s",
             avro_schema_type_name(avro_value_get_schema(src)),
             avro_schema_type_name(avro_value_get_schema(dst)));
    return ES_ERR_SCHEMA;
}

es_err_t es_resolve_copy(es_resolver_t *r, avro_value_t *src, avro_value_t *dst, char *errstr,
                         size_t errstr_size)
{
    return copy(r, src, dst, 0, errstr, errstr_size);
}
