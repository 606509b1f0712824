/*
 * gen.c — a runner's directory: generations, CURRENT and REBUILD.
 *
 * <store.path>/<projection>/ holds one RocksDB database per generation
 * (`gN/`).  CURRENT names the live generation; REBUILD names the generation
 * a rebuild fills, from the rebuild's start to its swap.  Both are written
 * the crash-safe way (a temporary file, fsync, rename), so after a kill -9
 * each names a generation or does not exist, never half of a number.
 *
 * At start-up the directory is tidied: a generation that CURRENT does not
 * name and that is not a rebuild to resume (REBUILD names it and it exists,
 * newer than CURRENT) is a leftover of a crash and is deleted, as are a
 * checkpoint that was being served (checkpoint-<n>/) and a clone that was
 * being downloaded (clone.tmp/): neither is ever live.  Without CURRENT no
 * generation is live, so all of them go: a clone killed after its copy
 * became g1 and before CURRENT leaves one, which may also be half removed if
 * a second clone was killed while clearing it (0916).  The swap
 * writes CURRENT first and removes REBUILD second: a crash between the two
 * leaves REBUILD naming the live generation, which is then not newer and is
 * not resumed.
 */
#include "projector.h"

#include "escqrs/fs.h"
#include "escqrs/log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG "projector"

#define GEN_MAX 1000000000 /* a generation number past this is a damaged file */

/* The generation number in file @p name of @p dir (CURRENT, REBUILD), 0 when none. */
static int read_generation_file(const char *dir, const char *name)
{
    char path[PJ_PATH_MAX], buf[32] = {0};
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    long g = strtol(buf, NULL, 10);
    return g > 0 && g < GEN_MAX ? (int)g : 0;
}

/* Write generation @p g into file @p name of @p dir: a temporary file, fsync, rename. */
static es_err_t write_generation_file(const char *dir, const char *name, int g, char *errstr,
                                      size_t errstr_size)
{
    char path[PJ_PATH_MAX], text[32];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int n = snprintf(text, sizeof(text), "%d\n", g);
    return es_fs_write_atomic(path, text, (size_t)n, errstr, errstr_size);
}

es_err_t pj_gen_write_current(const char *dir, int g, char *errstr, size_t errstr_size)
{
    return write_generation_file(dir, "CURRENT", g, errstr, errstr_size);
}

es_err_t pj_gen_write_rebuild(const char *dir, int g, char *errstr, size_t errstr_size)
{
    return write_generation_file(dir, "REBUILD", g, errstr, errstr_size);
}

void pj_gen_remove_rebuild(const char *dir)
{
    char path[PJ_PATH_MAX];
    snprintf(path, sizeof(path), "%s/REBUILD", dir);
    unlink(path);
}

void pj_gen_path(const pj_runner_t *r, int g, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/g%d", r->dir, g);
}

/* Remove generations other than `keep` and `resume`, checkpoints being
 * served and clones being installed: all left over by a crash. */
static void remove_stale_generations(pj_runner_t *r, int keep, int resume)
{
    DIR *d = opendir(r->dir);
    struct dirent *e;
    char errstr[256], path[PJ_PATH_MAX];
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (!strncmp(e->d_name, PJ_CHECKPOINT_PREFIX, strlen(PJ_CHECKPOINT_PREFIX)) ||
            !strcmp(e->d_name, ES_CKPT_STAGING)) { /* a checkpoint served or a clone, cut short */
            snprintf(path, sizeof(path), "%s/%s", r->dir, e->d_name);
            es_fs_remove_flat_dir(path, errstr, sizeof(errstr));
            continue;
        }
        if (e->d_name[0] != 'g')
            continue;
        char *end;
        long g = strtol(e->d_name + 1, &end, 10);
        if (*end || g == keep || g == resume)
            continue;
        snprintf(path, sizeof(path), "%s/%s", r->dir, e->d_name);
        if (es_store_destroy_path(path, errstr, sizeof(errstr)) == ES_ERR_OK)
            rmdir(path);
        es_log_info(LOG, "%s: removed stale generation %s", r->def->name, path);
    }
    closedir(d);
}

es_err_t pj_gen_prepare(pj_runner_t *r, char *errstr, size_t errstr_size)
{
    es_err_t err;
    if ((err = es_fs_mkdirs(r->dir, errstr, errstr_size)))
        return err;
    r->generation = read_generation_file(r->dir, "CURRENT");
    if (!r->generation) {
        /* No live store: a generation here is a clone's copy cut short before its CURRENT
         * (checkpoint_clone.c), maybe half removed by a later clone's install: never live. */
        remove_stale_generations(r, 0, 0);
        r->generation = 1;
        if ((err = pj_gen_write_current(r->dir, 1, errstr, errstr_size)))
            return err;
    }
    char path[PJ_PATH_MAX];
    struct stat sb;
    int rb = read_generation_file(r->dir, "REBUILD");
    pj_gen_path(r, rb, path, sizeof(path));
    r->resume_rebuild = rb > r->generation && stat(path, &sb) == 0 ? rb : 0;
    if (!r->resume_rebuild)
        pj_gen_remove_rebuild(r->dir);
    remove_stale_generations(r, r->generation, r->resume_rebuild);
    return ES_ERR_OK;
}
