/*
 * testutil.c — shared test runner and test-stack helpers (see testutil.h).
 *
 * Children: a test that dies (kill -9, a crash, a fatal assertion) must not
 * leave a projector or command service running against the shared stack —
 * the next run would share its consumer groups, ports and transactional ids.
 * The kernel covers kill -9 (PR_SET_PDEATHSIG); the atexit handler covers
 * every ordinary exit.  The registry is a small fixed array: tests start a
 * handful of daemons at a time.
 */
#include "testutil.h"
#include "shipped.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int es_test_run(const char *suite, const es_test_case_t *cases)
{
    es_shipped_modules_register();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite(suite, NULL, NULL);
    const char *only = getenv("ESCQRS_TEST_CASE"); /* a part of the names of the cases to run */
    for (const es_test_case_t *c = cases; c->name; c++)
        if (!only || strstr(c->name, only))
            CU_add_test(s, c->name, c->fn);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0) {
        fprintf(stderr, "%s: no test ran\n", suite);
        return 1;
    }
    return failed ? 1 : 0;
}

int es_test_free_port(void)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static int given[1024];
    static size_t ngiven;
    pthread_mutex_lock(&mu);
    int port = 0;
    for (int tries = 0; tries < 100 && !port; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
        socklen_t len = sizeof(a);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0)
            port = ntohs(a.sin_port);
        if (fd >= 0)
            close(fd);
        for (size_t i = 0; port && i < ngiven; i++)
            if (given[i] == port)
                port = 0; /* handed out before: the daemon may not be listening yet */
    }
    if (port && ngiven < sizeof(given) / sizeof(given[0]))
        given[ngiven++] = port;
    pthread_mutex_unlock(&mu);
    return port;
}

const char *es_test_bootstrap(void)
{
    const char *v = getenv("ESCQRS_TEST_BOOTSTRAP");
    return v && *v ? v : "127.0.0.1:19092";
}

const char *es_test_registry(void)
{
    const char *v = getenv("ESCQRS_TEST_REGISTRY");
    return v && *v ? v : "http://127.0.0.1:18081/apis/ccompat/v7";
}

void es_test_unique(const char *prefix, char *out, size_t outsz)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, outsz, "%s-%d-%lld%03ld", prefix, (int)getpid(), (long long)ts.tv_sec,
             ts.tv_nsec / 1000000);
}

/* ------------------------------------------------------- string checks */

bool es_test_topic_config(const char *topic, const char *name, const char *value)
{
    char errstr[512];
    bool ok = false;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", es_test_bootstrap(), errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "AlterConfigs %s: %s\n", topic, errstr);
        return false;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_ConfigResource_set_config(cr, name, value);
    rd_kafka_AlterConfigs(rk, &cr, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    if (!ev || rd_kafka_event_error(ev)) {
        fprintf(stderr, "AlterConfigs %s: %s\n", topic,
                ev ? rd_kafka_event_error_string(ev) : "no answer");
    } else {
        size_t n = 0;
        const rd_kafka_ConfigResource_t **res =
            rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
        ok = n == 1 && !rd_kafka_ConfigResource_error(res[0]);
        if (!ok)
            fprintf(stderr, "AlterConfigs %s: %s\n", topic,
                    n ? rd_kafka_ConfigResource_error_string(res[0]) : "no resource");
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_ConfigResource_destroy(cr);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return ok;
}

bool es_test_str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

bool es_test_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

const char *es_test_or_empty(const char *s)
{
    return s ? s : "";
}

double es_test_metric(const char *text, const char *series)
{
    size_t sl = strlen(series);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, series, sl) == 0 && line[sl] == ' ')
            return strtod(line + sl + 1, NULL);
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    return -1;
}

CU_BOOL es_test_assert_str_eq(const char *actual, const char *expected, const char *actual_expr,
                              const char *expected_expr, unsigned line, const char *file,
                              CU_BOOL fatal)
{
    bool ok = actual == expected || es_test_str_eq(actual, expected);
    char cond[1024];
    if (ok) {
        snprintf(cond, sizeof(cond), "ES_ASSERT_STR_EQ(%s, %s)", actual_expr, expected_expr);
    } else {
        snprintf(cond, sizeof(cond), "ES_ASSERT_STR_EQ(%s, %s): got %s%.200s%s, want %s%.200s%s",
                 actual_expr, expected_expr, actual ? "\"" : "", actual ? actual : "NULL",
                 actual ? "\"" : "", expected ? "\"" : "", expected ? expected : "NULL",
                 expected ? "\"" : "");
        fprintf(stderr, "\n    %s:%u: %s\n", file, line, cond);
    }
    /* CUnit copies the condition text into its failure record */
    return CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, line, cond, file, "", fatal);
}

/* ----------------------------------------------------- child processes */

#define MAX_CHILDREN 64

static pthread_mutex_t children_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t children[MAX_CHILDREN];
static bool atexit_set;

static void kill_children(void)
{
    pthread_mutex_lock(&children_mu);
    for (size_t i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] <= 0)
            continue;
        int st;
        kill(children[i], SIGKILL);
        waitpid(children[i], &st, 0);
        children[i] = 0;
    }
    pthread_mutex_unlock(&children_mu);
}

pid_t es_test_fork(void)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* dies with the parent; if the parent is already gone, go at once */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        return 0;
    }
    if (pid < 0)
        return pid;
    pthread_mutex_lock(&children_mu);
    if (!atexit_set) {
        atexit(kill_children);
        atexit_set = true;
    }
    size_t i;
    for (i = 0; i < MAX_CHILDREN && children[i] > 0; i++)
        ;
    if (i < MAX_CHILDREN)
        children[i] = pid;
    else
        fprintf(stderr, "es_test_fork: more than %d children; %d is not tracked\n", MAX_CHILDREN,
                (int)pid);
    pthread_mutex_unlock(&children_mu);
    return pid;
}

void es_test_child_reaped(pid_t pid)
{
    pthread_mutex_lock(&children_mu);
    for (size_t i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == pid)
            children[i] = 0;
    }
    pthread_mutex_unlock(&children_mu);
}

void es_test_preload(const char *so)
{
    static char value[1200];
    char line[1200], asan[1024] = "";
    if (!so) {
        unsetenv("LD_PRELOAD");
        return;
    }
    FILE *maps = fopen("/proc/self/maps", "r");
    while (maps && !asan[0] && fgets(line, sizeof(line), maps)) {
        char *path = strchr(line, '/');
        if (path && strstr(path, "/libasan.so")) {
            path[strcspn(path, "\n")] = '\0';
            snprintf(asan, sizeof(asan), "%s", path);
        }
    }
    if (maps)
        fclose(maps);
    snprintf(value, sizeof(value), "%s%s%s", asan, asan[0] ? ":" : "", so);
    setenv("LD_PRELOAD", value, 1);
}

FILE *es_test_popen(const char *cmd, pid_t *pid)
{
    int fds[2];
    size_t n = strlen(cmd) + 6;
    char *line = malloc(n); /* before fork: the child of a threaded process must not malloc */
    if (!line || pipe(fds) != 0) {
        free(line);
        return NULL;
    }
    snprintf(line, n, "exec %s", cmd); /* the command replaces the shell: one process */
    *pid = es_test_fork();
    if (*pid == 0) {
        close(fds[0]);
        if (fds[1] != STDOUT_FILENO) {
            dup2(fds[1], STDOUT_FILENO);
            close(fds[1]);
        }
        execl("/bin/sh", "sh", "-c", line, (char *)NULL);
        _exit(127);
    }
    free(line);
    close(fds[1]);
    if (*pid < 0) {
        close(fds[0]);
        return NULL;
    }
    FILE *f = fdopen(fds[0], "r");
    if (!f)
        close(fds[0]);
    return f;
}

int es_test_pclose(FILE *f, pid_t pid)
{
    int st = -1;
    if (f)
        fclose(f);
    if (pid <= 0)
        return -1;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    es_test_child_reaped(pid);
    return st;
}

int es_test_stack(const char *profile, const char *verb, const char *component)
{
    char cmd[1200];
    const char *src = getenv("ESCQRS_SOURCE_DIR");
    snprintf(cmd, sizeof(cmd), "ESCQRS_STACK_PROFILE=%s '%s/scripts/stack' %s %s >&2", profile,
             src ? src : ".", verb, component);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

rd_kafka_t *es_test_consumer(const char *group)
{
    char errstr[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", es_test_bootstrap(), NULL, 0);
    rd_kafka_conf_set(c, "group.id", group, NULL, 0);
    rd_kafka_conf_set(c, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_conf_set(c, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(c, "enable.auto.offset.store", "false", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

void es_test_delete_records(rd_kafka_t *rk, const char *topic, const int64_t *before,
                            int partitions)
{
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(tl, topic, p)->offset = before[p];
    rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(tl);
    rd_kafka_topic_partition_list_destroy(tl);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteRecords(rk, &dr, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ev);
    CU_ASSERT_EQUAL_FATAL(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR);
    const rd_kafka_topic_partition_list_t *res =
        rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
    CU_ASSERT_EQUAL_FATAL(res ? res->cnt : 0, partitions);
    for (int i = 0; i < res->cnt; i++) { /* the new log start of each partition */
        CU_ASSERT_EQUAL(res->elems[i].err, RD_KAFKA_RESP_ERR_NO_ERROR);
        CU_ASSERT_EQUAL(res->elems[i].offset, before[res->elems[i].partition]);
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_DeleteRecords_destroy(dr);
    rd_kafka_queue_destroy(q);
}

int es_test_partition_count(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int parts = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0 && md->topic_cnt == 1 && !md->topics[0].err)
        parts = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return parts;
}

int es_test_group_offsets(const char *group, const char *topic, int64_t *committed, int64_t *end,
                          int max)
{
    /* the group's id, but never subscribed: rd_kafka_committed only asks the
     * group coordinator (OffsetFetch), it does not join the group */
    rd_kafka_t *rk = es_test_consumer(group);
    int parts = es_test_partition_count(rk, topic);
    if (parts > max)
        parts = max;
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(parts > 0 ? parts : 1);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(tl, topic, p);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, tl, 10000);
    for (int p = 0; p < parts; p++) {
        int64_t lo = -1, hi = -1;
        committed[p] = err || tl->elems[p].err ? -2 : tl->elems[p].offset; /* -1001: none */
        rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        end[p] = hi;
    }
    if (err)
        fprintf(stderr, "committed offsets of %s: %s\n", group, rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(tl);
    rd_kafka_destroy(rk); /* no consumer_close: it never joined */
    return parts;
}

static char tmpfs_mounted[8][512];

/* A failing assertion ends the test early: the filesystems go anyway. */
static void tmpfs_unmount_at_exit(void)
{
    for (size_t i = 0; i < 8; i++)
        if (tmpfs_mounted[i][0])
            umount2(tmpfs_mounted[i], MNT_DETACH);
}

void es_test_tmpfs_mount(const char *path, long long mib)
{
    static bool registered;
    char opts[64];
    size_t slot = 0;
    while (slot < 8 && tmpfs_mounted[slot][0])
        slot++;
    CU_ASSERT_FATAL(slot < 8);
    snprintf(opts, sizeof(opts), "size=%lldm", mib);
    if (mount("tmpfs", path, "tmpfs", 0, opts)) {
        fprintf(stderr, "mount tmpfs on %s: %s (the fault suite needs root)\n", path,
                strerror(errno));
        CU_FAIL_FATAL("cannot mount a small filesystem");
    }
    snprintf(tmpfs_mounted[slot], sizeof(tmpfs_mounted[slot]), "%s", path);
    if (!registered)
        atexit(tmpfs_unmount_at_exit);
    registered = true;
}

long long es_test_fs_used_bytes(const char *path)
{
    struct statvfs sv;
    if (statvfs(path, &sv))
        return -1;
    return (long long)(sv.f_blocks - sv.f_bfree) * (long long)sv.f_frsize;
}

bool es_test_tmpfs_resize(const char *path, long long mib)
{
    char opts[64];
    snprintf(opts, sizeof(opts), "size=%lldm", mib);
    if (mount("tmpfs", path, "tmpfs", MS_REMOUNT, opts)) {
        fprintf(stderr, "remount %s %s: %s\n", path, opts, strerror(errno));
        return false;
    }
    return true;
}

bool es_test_tmpfs_shrink(const char *path, long long free_mib)
{
    return es_test_tmpfs_resize(path, es_test_fs_used_bytes(path) / (1024 * 1024) + 1 + free_mib);
}
