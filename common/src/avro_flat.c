/*
 * avro_flat.c — Avro binary read in one checked pass into flat values.
 *
 * Why: the projector's fold loop spent about 40 % of its CPU decoding
 * (perf, 1 M events): a bounds-checking walk of the bytes against the schema,
 * then Avro C's generic reader over the same bytes, which looks every field
 * up by index in a hash table, allocates a string per string field and
 * frees it on the next reset.
 *
 * How: the schema is compiled once into nodes (a record's field nodes and
 * names in arrays, a link pointing at its target's node).  A read walks the
 * nodes and the bytes together with the same checks and the same messages
 * the walk had, and writes each value into an arena that is reused from
 * record to record (one chunk in the steady state, so nothing is allocated
 * per record).  Strings, bytes, fixed and map keys are copied into the arena
 * with a NUL after them.  Arrays and maps grow their item array by doubling,
 * so many small blocks stay linear.  A map key that repeats replaces the
 * earlier value in place, as Avro C's generic map does.  A boolean byte
 * other than 0 or 1 is refused: the spec allows no other, and Avro C (true)
 * and Java (false) would read it differently.  For the same reason a block
 * whose byte size is not the bytes its items take is refused: a reader that
 * skips blocks by their size (Java, projecting a field away) would land
 * elsewhere than one that reads the items.
 *
 * The values implement Avro C's avro_value_iface_t for reading
 * (avro_flat_value.c).
 */
#include "avro_flat.h"
#include "escqrs/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FLAT_MAX_DEPTH       64    /* nesting, counted as the walk counted it */
#define ZERO_WIDTH_MAX_ITEMS 65536 /* items that take no bytes (e.g. null) per record */
#define ARENA_MIN            4096
#define ARENA_KEEP_MAX       (1u << 20) /* a reset keeps at most this much */
#define MAP_LINEAR_MAX       16         /* past this many keys, repeats are found by hash */

typedef struct {
    char *base;
    size_t cap, used;
} chunk_t;

struct es_flat_s {
    flat_node_t *root;
    flat_node_t **nodes; /* every node, for destroy; named ones double as the link table */
    size_t nnodes;
    chunk_t *chunks;
    size_t nchunks;
};

/* ------------------------------------------------------------------ compile */

static flat_node_t *node_add(es_flat_t *f, avro_type_t type, avro_schema_t s)
{
    flat_node_t *node = es_calloc(1, sizeof(*node));
    node->type = type;
    node->schema = s;
    f->nodes = es_realloc(f->nodes, (f->nnodes + 1) * sizeof(*f->nodes));
    f->nodes[f->nnodes++] = node;
    return node;
}

static flat_node_t *compile(es_flat_t *f, avro_schema_t s)
{
    avro_type_t t = avro_typeof(s);
    if (t == AVRO_LINK) {
        flat_node_t *node = node_add(f, AVRO_LINK, s);
        avro_schema_t target = avro_schema_link_target(s);
        for (size_t i = 0; i < f->nnodes && !node->n; i++) { /* the named schema it points at */
            if (f->nodes[i]->schema == target && f->nodes[i]->type != AVRO_LINK) {
                node->kids = es_malloc(sizeof(*node->kids));
                node->kids[0] = f->nodes[i];
                node->n = 1;
            }
        }
        if (!node->n) { /* not met yet: compile it (a link always follows its target) */
            node->kids = es_malloc(sizeof(*node->kids));
            node->kids[0] = compile(f, target);
            node->n = 1;
        }
        return node;
    }
    flat_node_t *node = node_add(f, t, s);
    switch (t) {
    case AVRO_RECORD:
        node->n = avro_schema_record_size(s);
        node->kids = es_calloc(node->n ? node->n : 1, sizeof(*node->kids));
        node->names = es_calloc(node->n ? node->n : 1, sizeof(*node->names));
        for (size_t i = 0; i < node->n; i++) {
            node->names[i] = avro_schema_record_field_name(s, (int)i);
            node->kids[i] = compile(f, avro_schema_record_field_get_by_index(s, (int)i));
        }
        break;
    case AVRO_UNION:
        node->n = avro_schema_union_size(s);
        node->kids = es_calloc(node->n ? node->n : 1, sizeof(*node->kids));
        for (size_t i = 0; i < node->n; i++)
            node->kids[i] = compile(f, avro_schema_union_branch(s, (int)i));
        break;
    case AVRO_ARRAY:
    case AVRO_MAP:
        node->kids = es_malloc(sizeof(*node->kids));
        node->kids[0] =
            compile(f, t == AVRO_ARRAY ? avro_schema_array_items(s) : avro_schema_map_values(s));
        break;
    case AVRO_ENUM:
        node->n = (size_t)avro_schema_enum_number_of_symbols(s);
        break;
    case AVRO_FIXED:
        node->n = (size_t)avro_schema_fixed_size(s);
        break;
    default:
        break;
    }
    return node;
}

es_flat_t *es_flat_new(avro_schema_t schema)
{
    es_flat_t *f = es_calloc(1, sizeof(*f));
    f->root = compile(f, schema);
    f->chunks = es_calloc(1, sizeof(*f->chunks));
    f->chunks[0].base = es_malloc(ARENA_MIN);
    f->chunks[0].cap = ARENA_MIN;
    f->nchunks = 1;
    return f;
}

void es_flat_destroy(es_flat_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nnodes; i++) {
        free(f->nodes[i]->kids);
        free(f->nodes[i]->names);
        free(f->nodes[i]);
    }
    free(f->nodes);
    for (size_t i = 0; i < f->nchunks; i++)
        free(f->chunks[i].base);
    free(f->chunks);
    free(f);
}

/* -------------------------------------------------------------------- arena */

static void *arena_alloc(es_flat_t *f, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    chunk_t *c = &f->chunks[f->nchunks - 1]; /* a reset leaves one; only the last has room */
    if (size > c->cap - c->used) {
        size_t cap = c->cap * 2 > size ? c->cap * 2 : size;
        f->chunks = es_realloc(f->chunks, (f->nchunks + 1) * sizeof(*f->chunks));
        c = &f->chunks[f->nchunks++];
        *c = (chunk_t){.base = es_malloc(cap), .cap = cap};
    }
    void *p = c->base + c->used;
    c->used += size;
    return p;
}

size_t es_flat_held(const es_flat_t *f)
{
    size_t total = 0;
    for (size_t i = 0; i < f->nchunks; i++)
        total += f->chunks[i].cap;
    return total;
}

/* Start over; a record that needed several chunks leaves one big enough (up to a cap). */
static void arena_reset(es_flat_t *f)
{
    if (f->nchunks > 1) {
        size_t total = es_flat_held(f);
        for (size_t i = 0; i < f->nchunks; i++)
            free(f->chunks[i].base);
        if (total > ARENA_KEEP_MAX)
            total = ARENA_KEEP_MAX;
        f->chunks[0] = (chunk_t){.base = es_malloc(total), .cap = total};
        f->nchunks = 1;
    }
    f->chunks[0].used = 0;
}

/* --------------------------------------------------------------------- read */

typedef struct {
    es_flat_t *f;
    const uint8_t *p;
    size_t len, pos;
    uint64_t items;   /* array and map items seen so far in this record */
    const char *what; /* for the error message */
} rd_t;

/* A zigzag varint of at most @p max_bytes (5 for int, 10 for long, as Avro C reads them). */
static es_err_t read_varint_max(rd_t *r, int max_bytes, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 7 * max_bytes; shift += 7) {
        if (r->pos >= r->len) {
            r->what = "varint runs past the end";
            return ES_ERR_TRUNCATED;
        }
        uint8_t b = r->p[r->pos++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return ES_ERR_OK;
        }
    }
    r->what = "varint longer than its type allows";
    return ES_ERR_DECODE;
}

static es_err_t read_varint(rd_t *r, int64_t *out)
{
    return read_varint_max(r, 10, out);
}

/* @p n bytes at the current position, or an error; *at is where they start. */
static es_err_t take(rd_t *r, int64_t n, const uint8_t **at)
{
    if (n < 0 || n > INT32_MAX) {
        r->what = "negative or oversized length";
        return ES_ERR_BAD_LENGTH;
    }
    if ((uint64_t)n > r->len - r->pos) {
        r->what = "length runs past the end";
        return ES_ERR_TRUNCATED;
    }
    *at = r->p + r->pos;
    r->pos += (size_t)n;
    return ES_ERR_OK;
}

/* @p n bytes copied into the arena with a NUL after them. */
static es_err_t take_copy(rd_t *r, int64_t n, const char **p, size_t *len)
{
    const uint8_t *at;
    es_err_t err = take(r, n, &at);
    if (err)
        return err;
    char *s = arena_alloc(r->f, (size_t)n + 1);
    memcpy(s, at, (size_t)n);
    s[n] = '\0';
    *p = s;
    *len = (size_t)n;
    return ES_ERR_OK;
}

static es_err_t read_val(rd_t *r, const flat_node_t *node, flat_val_t *out, int depth);

/*
 * The index of map key @p key (@p keylen: its strlen) among @p v's items, or
 * -1; by hash past MAP_LINEAR_MAX keys.  Keys are C strings, as Avro C's
 * generic maps take them: a key with a NUL inside is the part before it.
 */
static long map_find_key(flat_val_t *v, es_map_t *index, const char *key, size_t keylen)
{
    if (v->v.c.n < MAP_LINEAR_MAX) {
        for (size_t i = 0; i < v->v.c.n; i++)
            if (!strcmp(v->v.c.keys[i], key))
                return (long)i;
        return -1;
    }
    if (!es_map_count(index)) /* first time past the linear range: index what is there */
        for (size_t i = 0; i < v->v.c.n; i++)
            es_map_set(index, v->v.c.keys[i], strlen(v->v.c.keys[i]), (void *)(uintptr_t)(i + 1));
    bool found = false;
    void *at = es_map_get(index, key, keylen, &found);
    return found ? (long)((uintptr_t)at - 1) : -1;
}

/* Room for @p more items in array or map @p v (doubling, so many small blocks stay linear). */
static void items_reserve(rd_t *r, flat_val_t *v, size_t more, bool is_map)
{
    size_t need = v->v.c.n + more;
    if (need <= v->v.c.cap)
        return;
    size_t cap = v->v.c.cap * 2 > need ? v->v.c.cap * 2 : need;
    flat_val_t *kids = arena_alloc(r->f, cap * sizeof(*kids));
    if (v->v.c.n)
        memcpy(kids, v->v.c.kids, v->v.c.n * sizeof(*kids));
    v->v.c.kids = kids;
    if (is_map) {
        const char **keys = arena_alloc(r->f, cap * sizeof(*keys));
        if (v->v.c.n)
            memcpy(keys, v->v.c.keys, v->v.c.n * sizeof(*keys));
        v->v.c.keys = keys;
    }
    v->v.c.cap = cap;
}

/* Arrays and maps: blocks of (count, [byte size], items), ended by a count of 0. */
static es_err_t read_blocks(rd_t *r, const flat_node_t *node, flat_val_t *out, int depth)
{
    bool is_map = node->type == AVRO_MAP;
    es_map_t index = ES_MAP_INIT(NULL);
    es_err_t err = ES_ERR_OK;
    for (;;) {
        int64_t count, bytes = -1; /* a block's byte size, when it gives one */
        if ((err = read_varint(r, &count)) || count == 0)
            break;
        if (count < 0) {
            if (count == INT64_MIN) {
                r->what = "block count out of range";
                err = ES_ERR_BAD_LENGTH;
                break;
            }
            count = -count;
            if ((err = read_varint(r, &bytes)))
                break;
            if (bytes < 0 || (uint64_t)bytes > r->len - r->pos) {
                r->what = "block byte size is negative or runs past the end";
                err = bytes < 0 ? ES_ERR_BAD_LENGTH : ES_ERR_TRUNCATED;
                break;
            }
        }
        /*
         * Every item takes at least one byte unless its type takes none (null,
         * an empty record), so a record of n bytes holds at most n items plus
         * a bounded number of zero-width ones.  Counting across all blocks
         * keeps many blocks of zero-width items from adding up to an
         * unbounded number of values.
         */
        r->items += (uint64_t)count;
        if (r->items > (uint64_t)r->len + ZERO_WIDTH_MAX_ITEMS) {
            r->what = "more array or map items than the record's bytes can hold";
            err = ES_ERR_BAD_LENGTH;
            break;
        }
        items_reserve(r, out, (size_t)count, is_map);
        size_t block_start = r->pos;
        for (int64_t i = 0; i < count && !err; i++) {
            size_t at = out->v.c.n;
            if (is_map) {
                int64_t klen;
                const char *key;
                size_t keylen;
                if ((err = read_varint(r, &klen)) || (err = take_copy(r, klen, &key, &keylen)))
                    break;
                keylen = strlen(key);
                long seen = map_find_key(out, &index, key, keylen);
                if (seen >= 0) {
                    at = (size_t)seen;
                } else {
                    out->v.c.keys[at] = key;
                    if (es_map_count(&index))
                        es_map_set(&index, key, keylen, (void *)(uintptr_t)(at + 1));
                }
            }
            if (!(err = read_val(r, node->kids[0], &out->v.c.kids[at], depth + 1)) &&
                at == out->v.c.n)
                out->v.c.n++;
        }
        if (err)
            break;
        if (bytes >= 0 && r->pos - block_start != (uint64_t)bytes) {
            r->what = "block byte size does not match its items";
            err = ES_ERR_DECODE;
            break;
        }
    }
    es_map_free(&index);
    return err;
}

/* @p n little-endian bytes (Avro's float and double). */
static uint64_t le_bits(const uint8_t *p, int n)
{
    uint64_t bits = 0;
    for (int i = n - 1; i >= 0; i--)
        bits = bits << 8 | p[i];
    return bits;
}

static es_err_t read_val(rd_t *r, const flat_node_t *node, flat_val_t *out, int depth)
{
    int64_t v;
    const uint8_t *at;
    es_err_t err;
    if (depth > FLAT_MAX_DEPTH) {
        r->what = "nesting too deep";
        return ES_ERR_DECODE;
    }
    if (node->type == AVRO_LINK)
        return read_val(r, node->kids[0], out, depth + 1);
    memset(out, 0, sizeof(*out));
    out->node = node;
    switch (node->type) {
    case AVRO_NULL:
        return ES_ERR_OK;
    case AVRO_BOOLEAN:
        if ((err = take(r, 1, &at)))
            return err;
        if (*at > 1) { /* Avro C would keep the byte, Java read it as false */
            r->pos--;
            r->what = "boolean byte is neither 0 nor 1";
            return ES_ERR_DECODE;
        }
        out->v.i = *at;
        return ES_ERR_OK;
    case AVRO_INT32:
        if ((err = read_varint_max(r, 5, &v)))
            return err;
        if (v < INT32_MIN || v > INT32_MAX) {
            r->what = "int out of range";
            return ES_ERR_DECODE;
        }
        out->v.i = (int32_t)v;
        return ES_ERR_OK;
    case AVRO_INT64:
        return read_varint(r, &out->v.l);
    case AVRO_FLOAT:
    case AVRO_DOUBLE: {
        int n = node->type == AVRO_FLOAT ? 4 : 8;
        if ((err = take(r, n, &at)))
            return err;
        uint64_t bits = le_bits(at, n);
        uint32_t bits32 = (uint32_t)bits;
        if (n == 4)
            memcpy(&out->v.f, &bits32, sizeof(out->v.f));
        else
            memcpy(&out->v.d, &bits, sizeof(out->v.d));
        return ES_ERR_OK;
    }
    case AVRO_STRING:
    case AVRO_BYTES:
        if ((err = read_varint(r, &v)))
            return err;
        return take_copy(r, v, &out->v.s.p, &out->v.s.n);
    case AVRO_FIXED:
        return take_copy(r, (int64_t)node->n, &out->v.s.p, &out->v.s.n);
    case AVRO_ENUM:
        if ((err = read_varint(r, &v)))
            return err;
        if (v < 0 || (uint64_t)v >= node->n) {
            r->what = "enum index out of range";
            return ES_ERR_DECODE;
        }
        out->v.i = (int32_t)v;
        return ES_ERR_OK;
    case AVRO_UNION:
        if ((err = read_varint(r, &v)))
            return err;
        if (v < 0 || (uint64_t)v >= node->n) {
            r->what = "union branch out of range";
            return ES_ERR_DECODE;
        }
        out->v.u.disc = (int)v;
        out->v.u.branch = arena_alloc(r->f, sizeof(flat_val_t));
        return read_val(r, node->kids[v], out->v.u.branch, depth + 1);
    case AVRO_RECORD:
        out->v.c.n = out->v.c.cap = node->n;
        out->v.c.kids = arena_alloc(r->f, (node->n ? node->n : 1) * sizeof(flat_val_t));
        for (size_t i = 0; i < node->n; i++)
            if ((err = read_val(r, node->kids[i], &out->v.c.kids[i], depth + 1)))
                return err;
        return ES_ERR_OK;
    case AVRO_ARRAY:
    case AVRO_MAP:
        return read_blocks(r, node, out, depth);
    default:
        r->what = "unsupported schema type";
        return ES_ERR_DECODE;
    }
}

es_err_t es_flat_read(es_flat_t *f, const void *buf, size_t len, avro_value_t *out,
                      const char **what, size_t *pos)
{
    rd_t r = {.f = f, .p = buf, .len = len};
    arena_reset(f);
    flat_val_t *root = arena_alloc(f, sizeof(*root));
    es_err_t err = read_val(&r, f->root, root, 0);
    *pos = r.pos;
    if (err) {
        *what = r.what;
        return err;
    }
    es_flat_value_set(out, root);
    return ES_ERR_OK;
}
