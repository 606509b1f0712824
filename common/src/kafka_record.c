/*
 * kafka_record.c — how large a record librdkafka takes: the size it counts
 * for a record against the producer's message.max.bytes, computed the way
 * librdkafka 2.0 does (rd_kafka_msg_new0(): rd_kafka_msg_max_wire_size()),
 * so a caller can refuse a record before anything of its transaction is
 * produced.  unit.test_kafka_producer holds the two to the byte.  And where
 * a keyed record goes, by librdkafka's own partitioner function, for a caller
 * that names the partitions of a transaction before its records exist.
 */
#include "kafka_int.h"
#include "escqrs/util.h"

#include <string.h>

/* The producer's message.max.bytes as librdkafka took it (conf file, default or override). */
size_t es_kafka_max_record_bytes(rd_kafka_t *rk)
{
    char v[32];
    size_t vsz = sizeof(v);
    int64_t n = 0;
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes", v, &vsz) != RD_KAFKA_CONF_OK ||
        !es_parse_i64(v, 1, INT32_MAX, &n))
        n = INT32_MAX; /* cannot happen: librdkafka always has one; then it alone decides */
    return (size_t)n;
}

/* Bytes of the zigzag varint of the length @p n (a header's name or value). */
static size_t length_varint_size(size_t n)
{
    size_t k = 1;
    for (uint64_t z = (uint64_t)n << 1; z >= 0x80; z >>= 7)
        k++;
    return k;
}

/* Bytes of the largest varint of a 32- and a 64-bit integer (RD_UVARINT_ENC_SIZEOF). */
#define VARINT32_MAX_BYTES (4 + 1 + 4 / 7)
#define VARINT64_MAX_BYTES (8 + 1 + 8 / 7)
/* RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD: length, attributes, timestamp delta,
 * offset delta, key length, value length, header count. */
#define RECORD_V2_MAX_OVERHEAD (5 * VARINT32_MAX_BYTES + 1 + VARINT64_MAX_BYTES)

size_t es_record_wire_size(const es_record_t *rec)
{
    size_t n = RECORD_V2_MAX_OVERHEAD + rec->keylen + rec->valuelen;
    const char *name;
    const void *value;
    size_t vsize;
    for (size_t i = 0;
         rec->headers && !rd_kafka_header_get_all(rec->headers, i, &name, &value, &vsize); i++) {
        size_t nlen = strlen(name);
        n += nlen + length_varint_size(nlen) + vsize + length_varint_size(vsize);
    }
    return n;
}

bool es_producer_fits(const es_producer_t *prod, const es_record_t *rec)
{
    return es_record_wire_size(rec) <= prod->max_record_bytes;
}

/* librdkafka's own function for the partitioner @p rk was configured with, when it is
 * one that places a keyed record by its key alone (the *_random ones do, for a key). */
es_key_partitioner_t *es_kafka_key_partitioner(rd_kafka_t *rk)
{
    static const struct {
        const char *name;
        es_key_partitioner_t *fn;
    } known[] = {
        {"murmur2", rd_kafka_msg_partitioner_murmur2},
        {"murmur2_random", rd_kafka_msg_partitioner_murmur2},
        {"consistent", rd_kafka_msg_partitioner_consistent},
        {"consistent_random", rd_kafka_msg_partitioner_consistent},
        {"fnv1a", rd_kafka_msg_partitioner_fnv1a},
        {"fnv1a_random", rd_kafka_msg_partitioner_fnv1a},
    };
    char name[64];
    size_t size = sizeof(name);
    rd_kafka_topic_conf_t *tconf = rd_kafka_default_topic_conf_dup(rk);
    rd_kafka_conf_res_t res = rd_kafka_topic_conf_get(tconf, "partitioner", name, &size);
    rd_kafka_topic_conf_destroy(tconf);
    for (size_t i = 0; res == RD_KAFKA_CONF_OK && i < sizeof(known) / sizeof(known[0]); i++)
        if (!strcmp(name, known[i].name))
            return known[i].fn;
    return NULL;
}

int32_t es_producer_key_partition(const es_producer_t *prod, const void *key, size_t keylen,
                                  int32_t partition_cnt)
{
    if (!prod->key_partitioner || partition_cnt <= 0 || !key)
        return -1;
    return prod->key_partitioner(NULL, key, keylen, partition_cnt, NULL, NULL);
}
