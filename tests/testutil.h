/*
 * testutil.h — what every escqrs test shares: a CUnit runner that returns the
 * failure count as the exit code, the addresses of the test stack, unique
 * names so reruns never collide with earlier data on the broker, the shipped
 * domain modules linked in and registered, string
 * assertions that survive a missing JSON field, and child processes that die
 * with the test that started them.
 */
#ifndef ESCQRS_TESTUTIL_H
#define ESCQRS_TESTUTIL_H

#include "escqrs/util.h" /* es_mono_s: monotonic seconds, for the durations tests print */

#include <CUnit/CUnit.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} es_test_case_t;

/**
 * @brief Run @p cases (ended by {NULL, NULL}) as one suite; returns the exit code.
 *        The shipped modules (cart, account) are registered first, as the
 *        programs load them (shipped.h).  With ESCQRS_TEST_CASE set, only the
 *        cases whose name holds it run (none is a failure: "no test ran").
 */
int es_test_run(const char *suite, const es_test_case_t *cases);

/** @brief Bootstrap servers of the test stack (ESCQRS_TEST_BOOTSTRAP, default 127.0.0.1:19092). */
const char *es_test_bootstrap(void);
/** @brief Set topic config @p name of @p topic to @p value on the test stack (AlterConfigs:
 *         the topic's other non-default settings go back to their defaults). */
bool es_test_topic_config(const char *topic, const char *name, const char *value);
/** @brief ccompat base URL of the test registry (ESCQRS_TEST_REGISTRY). */
const char *es_test_registry(void);
/** @brief "<prefix>-<pid>-<time>": a name no earlier run used. */
void es_test_unique(const char *prefix, char *out, size_t outsz);

/**
 * @brief A free loopback TCP port for a daemon this test starts.  Never the same port twice in
 *        one process: two daemons started one after the other (the first not listening yet)
 *        could otherwise be handed the same free port.
 */
int es_test_free_port(void);

/* ------------------------------------------------------- string checks */

/**
 * @brief Assert that string @p actual equals @p expected.  Either may be NULL
 *        (json_string_value() of a missing field): NULL equals only NULL, and
 *        a failure names both expressions and prints both values instead of
 *        crashing in strcmp as CU_ASSERT_STRING_EQUAL does.
 */
#define ES_ASSERT_STR_EQ(actual, expected)                                                         \
    es_test_assert_str_eq((actual), (expected), #actual, #expected, __LINE__, __FILE__, CU_FALSE)
/** @brief ES_ASSERT_STR_EQ() that ends the test case when it fails. */
#define ES_ASSERT_STR_EQ_FATAL(actual, expected)                                                   \
    es_test_assert_str_eq((actual), (expected), #actual, #expected, __LINE__, __FILE__, CU_TRUE)

CU_BOOL es_test_assert_str_eq(const char *actual, const char *expected, const char *actual_expr,
                              const char *expected_expr, unsigned line, const char *file,
                              CU_BOOL fatal);

/** @brief @p a and @p b are both non-NULL and equal (for conditions, not assertions). */
bool es_test_str_eq(const char *a, const char *b);
/** @brief @p s, or "" when it is NULL (copying a JSON field that may be missing). */
const char *es_test_or_empty(const char *s);
/** @brief Whether @p path names something (a file, a directory, ...). */
bool es_test_exists(const char *path);
/** @brief The value of @p series (name and labels, exactly) in Prometheus exposition
 *         text @p text, -1 when no line has it (or @p text is NULL). */
double es_test_metric(const char *text, const char *series);

/* ----------------------------------------------------- child processes */

/**
 * @brief fork() a child that cannot outlive the test.
 *
 * In the child: PR_SET_PDEATHSIG(SIGKILL), so a test killed with -9 takes its
 * daemons with it, then a check that the parent did not die before that was
 * set (the getppid() race: the child then exits at once).  In the parent the
 * pid is remembered; an atexit handler kills (SIGKILL) and reaps every child
 * still remembered, so a test that ends through a fatal assertion or exit()
 * leaves nothing running either.
 *
 * @returns as fork(): 0 in the child, the pid (or -1) in the parent.
 * @remark The death signal follows the *thread* that forked: call this from a
 *         thread that lives as long as the child should (the tests' main thread).
 */
pid_t es_test_fork(void);
/** @brief Forget @p pid after it was reaped (the atexit handler then leaves it alone). */
void es_test_child_reaped(pid_t pid);
/**
 * @brief LD_PRELOAD @p so (a fault test's shim) in the children started next; NULL: none.
 *        In a sanitizer build (make test's) AddressSanitizer's runtime must come first in
 *        the list or the child refuses to start: this test is built the same way, so its
 *        own libasan goes first.
 */
void es_test_preload(const char *so);

/**
 * @brief Mount a tmpfs of @p mib MiB at @p path (an existing directory),
 *        unmounted at exit whatever ends the test; fails the test (it does
 *        not skip) without the privilege to mount.
 */
void es_test_tmpfs_mount(const char *path, long long mib);
/** @brief Resize the tmpfs at @p path to @p mib MiB (remount); false on failure (printed). */
bool es_test_tmpfs_resize(const char *path, long long mib);
/** @brief Shrink the tmpfs at @p path to what it uses now and @p free_mib MiB. */
bool es_test_tmpfs_shrink(const char *path, long long free_mib);
/** @brief Bytes used on the filesystem of @p path (-1 on failure). */
long long es_test_fs_used_bytes(const char *path);

/**
 * @brief popen(@p cmd, "r") whose shell execs the command (`exec` is prefixed)
 *        in a child made by es_test_fork(); read with fgets, close with
 *        es_test_pclose().  NULL on failure.
 */
FILE *es_test_popen(const char *cmd, pid_t *pid);
/** @brief Close the pipe, wait for @p pid; returns its wait status (or -1). */
int es_test_pclose(FILE *f, pid_t pid);

/**
 * @brief `scripts/stack VERB COMPONENT` with ESCQRS_STACK_PROFILE=@p profile
 *        (the fault suite's own broker or registry); its exit status.
 */
int es_test_stack(const char *profile, const char *verb, const char *component);

/** @brief A read_committed consumer of the test stack that joins no group (@p group names it). */
rd_kafka_t *es_test_consumer(const char *group);
/** @brief The number of partitions of @p topic, 0 when its metadata cannot be read. */
int es_test_partition_count(rd_kafka_t *rk, const char *topic);
/**
 * @brief Delete the records of @p topic before @p before[p] in each of its
 *        @p partitions (0: none), as an operator's DeleteRecords does; asserts
 *        that each partition's log then starts there.
 */
void es_test_delete_records(rd_kafka_t *rk, const char *topic, const int64_t *before,
                            int partitions);
/**
 * @brief What @p group committed on each partition of @p topic (-1001: nothing; -2: the
 *        query failed) and each partition's end offset, for at most @p max partitions.
 * @return the partitions of @p topic (at most @p max).
 */
int es_test_group_offsets(const char *group, const char *topic, int64_t *committed, int64_t *end,
                          int max);

#endif
