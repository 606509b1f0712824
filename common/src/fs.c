/*
 * fs.c — the file-system steps behind a store's directory (fs.h).
 *
 * es_fs_write_atomic() is how every small control file (a projector's
 * CURRENT and REBUILD, a cloned generation's CURRENT) is written: a reader
 * after a crash sees the old content or the new, because rename(2) replaces
 * the name atomically and the data was fsynced before it; the directory is
 * fsynced after, so the rename itself survives a power loss.
 */
#include "escqrs/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_PATH_MAX 4096

es_err_t es_fs_mkdirs(const char *path, char *errstr, size_t errstr_size)
{
    char tmp[FS_PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        snprintf(errstr, errstr_size, "mkdir %s: %s", tmp, strerror(errno));
        return ES_ERR_IO;
    }
    return ES_ERR_OK;
}

es_err_t es_fs_sync_dir(const char *dir, char *errstr, size_t errstr_size)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        snprintf(errstr, errstr_size, "fsync %s: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return ES_ERR_IO;
    }
    close(fd);
    return ES_ERR_OK;
}

int es_fs_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno : EIO; /* 0 for a regular file cannot happen */
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

es_err_t es_fs_write_atomic(const char *path, const void *data, size_t len, char *errstr,
                            size_t errstr_size)
{
    char tmp[FS_PATH_MAX], dir[FS_PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fwrite(data, 1, len, f) != len || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        snprintf(errstr, errstr_size, "write %s: %s", tmp, strerror(errno));
        if (f)
            fclose(f);
        return ES_ERR_IO;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        snprintf(errstr, errstr_size, "rename %s: %s", tmp, strerror(errno));
        return ES_ERR_IO;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return es_fs_sync_dir(".", errstr, errstr_size);
    *slash = '\0';
    return es_fs_sync_dir(*dir ? dir : "/", errstr, errstr_size);
}

es_err_t es_fs_remove_flat_dir(const char *dir, char *errstr, size_t errstr_size)
{
    char path[FS_PATH_MAX];
    struct dirent *e;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return ES_ERR_OK;
        snprintf(errstr, errstr_size, "opendir %s: %s", dir, strerror(errno));
        return ES_ERR_IO;
    }
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    if (rmdir(dir) != 0 && errno != ENOENT) {
        snprintf(errstr, errstr_size, "rmdir %s: %s", dir, strerror(errno));
        return ES_ERR_IO;
    }
    return ES_ERR_OK;
}
