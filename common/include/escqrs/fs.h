/**
 * @file fs.h
 * @brief Small file-system steps the stores' directories need: a directory
 *        and its parents, a small file replaced crash-safely, a flat
 *        directory removed.
 *
 * Layering: a low-level module; it calls nothing of escqrs but err.h.
 */
#ifndef ESCQRS_FS_H
#define ESCQRS_FS_H

#include "escqrs/err.h"

#include <stddef.h>

/** @brief mkdir -p @p path (mode 0755); ES_ERR_IO with the reason. */
es_err_t es_fs_mkdirs(const char *path, char *errstr, size_t errstr_size);

/**
 * @brief Replace file @p path with @p len bytes of @p data the crash-safe
 *        way: `<path>.tmp`, fsync, rename, fsync of the directory.  After a
 *        kill -9 the file holds the old bytes or the new ones, never a part.
 */
es_err_t es_fs_write_atomic(const char *path, const void *data, size_t len, char *errstr,
                            size_t errstr_size);

/**
 * @brief Remove directory @p dir and the regular files in it (no
 *        subdirectory is entered: for flat directories such as a store's
 *        checkpoint).  A directory that does not exist is no error.
 */
es_err_t es_fs_remove_flat_dir(const char *dir, char *errstr, size_t errstr_size);

/**
 * @brief Write all @p len bytes of @p data to @p fd, writing again after a
 *        short write or EINTR.  0, or the errno of the write that failed (a
 *        disk that fills up mid-way takes part of a write, then fails the
 *        next with ENOSPC: that is the reason to report).
 */
int es_fs_write_all(int fd, const void *data, size_t len);

/** @brief fsync directory @p dir (a rename or a new entry in it is then durable). */
es_err_t es_fs_sync_dir(const char *dir, char *errstr, size_t errstr_size);

#endif
