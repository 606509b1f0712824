/**
 * @file version.h
 * @brief The version of the escqrs SDK: the headers a domain module is built
 *        against and the library that runs it.
 *
 * A domain module records ES_SDK_VERSION when it is compiled (es_module_t,
 * module.h); the programs compare it with es_sdk_version() of the library
 * they run on and refuse a module of another major version, or of a newer
 * minor version, at start-up.  Rule for maintainers: any change to a struct
 * or a signature of an SDK header bumps the major; a new call or a new
 * header bumps the minor; a fix bumps the patch.
 */
#ifndef ESCQRS_VERSION_H
#define ESCQRS_VERSION_H

#include <stddef.h>

#define ES_SDK_VERSION_MAJOR 3
#define ES_SDK_VERSION_MINOR 0
#define ES_SDK_VERSION_PATCH 0

/** One integer: 0x00MMmmpp (major, minor, patch). */
#define ES_SDK_VERSION                                                                             \
    ((ES_SDK_VERSION_MAJOR << 16) | (ES_SDK_VERSION_MINOR << 8) | ES_SDK_VERSION_PATCH)

/** @brief ES_SDK_VERSION of the library this process runs on. */
int es_sdk_version(void);

/** @brief @p version (0x00MMmmpp) as "M.m.p" into @p out; returns @p out. */
const char *es_sdk_version_format(int version, char *out, size_t outsz);

#endif
