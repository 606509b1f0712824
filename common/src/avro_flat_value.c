/*
 * avro_flat_value.c — Avro C's value interface over the flat values of
 * avro_flat.c, for reading.
 *
 * One static interface serves every type: each method checks the node's
 * type and answers EINVAL on a mismatch, as Avro C's generic classes do, and
 * out-parameters may be NULL (avro_value_sizeof asks for a size alone).
 * Strings count their NUL in their size, as Avro C's do.  grab_* copy into
 * a wrapped buffer (avro_value_copy uses them).  Setters are absent, so Avro
 * C answers EINVAL; reference counting is a no-op, since the reader's arena
 * owns every value.
 */
#include "avro_flat.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static avro_value_iface_t flat_iface;

static const flat_val_t *fv(const void *self)
{
    return self;
}

void es_flat_value_set(avro_value_t *out, const flat_val_t *v)
{
    out->iface = &flat_iface;
    out->self = (void *)(uintptr_t)v; /* read-only: no method writes through it */
}

static void flat_ref(avro_value_t *value)
{
    (void)value;
}

static avro_type_t flat_get_type(const avro_value_iface_t *iface, const void *self)
{
    (void)iface;
    return fv(self)->node->type;
}

static avro_schema_t flat_get_schema(const avro_value_iface_t *iface, const void *self)
{
    (void)iface;
    return fv(self)->node->schema;
}

/* A getter of a scalar held in field @p field of the value union. */
#define FLAT_SCALAR(name, tag, ctype, field)                                                       \
    static int name(const avro_value_iface_t *iface, const void *self, ctype *out)                 \
    {                                                                                              \
        (void)iface;                                                                               \
        if (fv(self)->node->type != (tag))                                                         \
            return EINVAL;                                                                         \
        *out = fv(self)->v.field;                                                                  \
        return 0;                                                                                  \
    }

FLAT_SCALAR(flat_get_boolean, AVRO_BOOLEAN, int, i)
FLAT_SCALAR(flat_get_int, AVRO_INT32, int32_t, i)
FLAT_SCALAR(flat_get_long, AVRO_INT64, int64_t, l)
FLAT_SCALAR(flat_get_float, AVRO_FLOAT, float, f)
FLAT_SCALAR(flat_get_double, AVRO_DOUBLE, double, d)
FLAT_SCALAR(flat_get_enum, AVRO_ENUM, int, i)
FLAT_SCALAR(flat_get_discriminant, AVRO_UNION, int, u.disc)

static int flat_get_null(const avro_value_iface_t *iface, const void *self)
{
    (void)iface;
    return fv(self)->node->type == AVRO_NULL ? 0 : EINVAL;
}

/* The bytes of a string (@p extra 1: its NUL counts), bytes or fixed value. */
static int get_raw(const void *self, avro_type_t tag, size_t extra, const void **buf, size_t *size)
{
    if (fv(self)->node->type != tag)
        return EINVAL;
    if (buf)
        *buf = fv(self)->v.s.p;
    if (size)
        *size = fv(self)->v.s.n + extra;
    return 0;
}

static int grab_raw(const void *self, avro_type_t tag, size_t extra, avro_wrapped_buffer_t *dest)
{
    const void *buf;
    size_t size;
    int err = get_raw(self, tag, extra, &buf, &size);
    return err ? err : avro_wrapped_buffer_new_copy(dest, buf, size);
}

static int flat_get_string(const avro_value_iface_t *iface, const void *self, const char **str,
                           size_t *size)
{
    (void)iface;
    return get_raw(self, AVRO_STRING, 1, (const void **)str, size);
}

static int flat_get_bytes(const avro_value_iface_t *iface, const void *self, const void **buf,
                          size_t *size)
{
    (void)iface;
    return get_raw(self, AVRO_BYTES, 0, buf, size);
}

static int flat_get_fixed(const avro_value_iface_t *iface, const void *self, const void **buf,
                          size_t *size)
{
    (void)iface;
    return get_raw(self, AVRO_FIXED, 0, buf, size);
}

static int flat_grab_string(const avro_value_iface_t *iface, const void *self,
                            avro_wrapped_buffer_t *dest)
{
    (void)iface;
    return grab_raw(self, AVRO_STRING, 1, dest);
}

static int flat_grab_bytes(const avro_value_iface_t *iface, const void *self,
                           avro_wrapped_buffer_t *dest)
{
    (void)iface;
    return grab_raw(self, AVRO_BYTES, 0, dest);
}

static int flat_grab_fixed(const avro_value_iface_t *iface, const void *self,
                           avro_wrapped_buffer_t *dest)
{
    (void)iface;
    return grab_raw(self, AVRO_FIXED, 0, dest);
}

static bool is_container(const flat_val_t *v)
{
    avro_type_t t = v->node->type;
    return t == AVRO_RECORD || t == AVRO_ARRAY || t == AVRO_MAP;
}

static int flat_get_size(const avro_value_iface_t *iface, const void *self, size_t *size)
{
    (void)iface;
    if (!is_container(fv(self)))
        return EINVAL;
    *size = fv(self)->v.c.n;
    return 0;
}

static int flat_get_by_index(const avro_value_iface_t *iface, const void *self, size_t index,
                             avro_value_t *child, const char **name)
{
    (void)iface;
    const flat_val_t *v = fv(self);
    if (!is_container(v) || index >= v->v.c.n)
        return EINVAL;
    es_flat_value_set(child, &v->v.c.kids[index]);
    if (name && v->node->type == AVRO_RECORD)
        *name = v->node->names[index];
    else if (name && v->node->type == AVRO_MAP)
        *name = v->v.c.keys[index];
    return 0;
}

static int flat_get_by_name(const avro_value_iface_t *iface, const void *self, const char *name,
                            avro_value_t *child, size_t *index)
{
    (void)iface;
    const flat_val_t *v = fv(self);
    const char *const *names;
    if (v->node->type == AVRO_RECORD)
        names = v->node->names;
    else if (v->node->type == AVRO_MAP)
        names = v->v.c.keys;
    else
        return EINVAL;
    for (size_t i = 0; i < v->v.c.n; i++) {
        if (names[i][0] == name[0] && !strcmp(names[i], name)) { /* most differ at once */
            es_flat_value_set(child, &v->v.c.kids[i]);
            if (index)
                *index = i;
            return 0;
        }
    }
    return EINVAL;
}

static int flat_get_current_branch(const avro_value_iface_t *iface, const void *self,
                                   avro_value_t *branch)
{
    (void)iface;
    if (fv(self)->node->type != AVRO_UNION)
        return EINVAL;
    es_flat_value_set(branch, fv(self)->v.u.branch);
    return 0;
}

static avro_value_iface_t flat_iface = {
    .incref = flat_ref,
    .decref = flat_ref,
    .get_type = flat_get_type,
    .get_schema = flat_get_schema,
    .get_boolean = flat_get_boolean,
    .get_bytes = flat_get_bytes,
    .grab_bytes = flat_grab_bytes,
    .get_double = flat_get_double,
    .get_float = flat_get_float,
    .get_int = flat_get_int,
    .get_long = flat_get_long,
    .get_null = flat_get_null,
    .get_string = flat_get_string,
    .grab_string = flat_grab_string,
    .get_enum = flat_get_enum,
    .get_fixed = flat_get_fixed,
    .grab_fixed = flat_grab_fixed,
    .get_size = flat_get_size,
    .get_by_index = flat_get_by_index,
    .get_by_name = flat_get_by_name,
    .get_discriminant = flat_get_discriminant,
    .get_current_branch = flat_get_current_branch,
};
