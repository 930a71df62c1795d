/* Writing secrets and certificates to the data directory: exclusive
 * creation, exact modes, fsync. */
#ifndef MOAT_FILE_H
#define MOAT_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "core/error.h"

/*
 * Create path (O_EXCL, never following a symlink) with exactly `mode`
 * whatever the umask, write n bytes and fsync. On failure the file is
 * removed again and err says why. MOAT_E_EXISTS when path exists.
 */
moat_err moat_file_create(const char *path, mode_t mode, const void *data, size_t n, char *err,
			  size_t errlen);
/*
 * Replace path atomically: write "<path>.tmp" (a stale one from a crash is
 * removed first) with exactly `mode`, fsync it, rename it over path and
 * fsync the directory. Readers see the old file or the new one, never part.
 */
moat_err moat_file_replace(const char *path, mode_t mode, const void *data, size_t n, char *err,
			   size_t errlen);
/* fsync a directory, so the names created in it are durable. */
moat_err moat_dir_sync(const char *dir, char *err, size_t errlen);

#endif
