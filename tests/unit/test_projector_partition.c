/*
 * test_projector_partition.c — pj_partition_of() puts a key where a Java
 * producer does: Kafka's DefaultPartitioner, toPositive(murmur2(key)) % n.
 *
 * The oracle is Kafka's own: the murmur2 values its UtilsTest.testMurmur2
 * asserts for these keys (apache/kafka, clients/.../utils/UtilsTest.java),
 * copied here as numbers, never computed by the code under test.  as_of
 * reads only the partition this names, so a wrong one answers from the
 * wrong partition (an aggregate's history looks empty).
 */
#include "projector.h"
#include "testutil.h"

#include <stdint.h>
#include <string.h>

static const struct {
    const char *key;
    int32_t murmur2; /* Java's Utils.murmur2(key.getBytes()) */
} KAFKA_VECTORS[] = {
    {"21", -973932308},
    {"foobar", -790332482},
    {"a-little-bit-long-string", -985981536},
    {"a-little-bit-longer-string", -1486304829},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
    {"abc", 479470107},
};

static void test_partition_is_javas(void)
{
    static const int counts[] = {1, 3, 4, 7, 12, 100};
    for (size_t i = 0; i < sizeof(KAFKA_VECTORS) / sizeof(KAFKA_VECTORS[0]); i++)
        for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
            const char *key = KAFKA_VECTORS[i].key;
            /* Utils.toPositive: the sign bit cleared */
            int32_t want =
                (int32_t)(((uint32_t)KAFKA_VECTORS[i].murmur2 & 0x7fffffffu) % (uint32_t)counts[c]);
            CU_ASSERT_EQUAL(pj_partition_of(key, strlen(key), counts[c]), want);
        }
}

int main(void)
{
    static const es_test_case_t cases[] = {
        {"a key's partition is the Java producer's", test_partition_is_javas},
        {NULL, NULL},
    };
    return es_test_run("projector-partition", cases);
}
