/* See file.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"

moat_err moat_file_create(const char *path, mode_t mode, const void *data, size_t n, char *err,
			  size_t errlen)
{
	const char *p = data;
	size_t done = 0;
	moat_err rc = MOAT_E_IO;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);

	if (fd < 0) {
		if (errno == EEXIST)
			rc = MOAT_E_EXISTS;
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return rc;
	}
	/* The umask may have taken bits away from a certificate's 0644. */
	if (fchmod(fd, mode) != 0) {
		snprintf(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
		goto fail;
	}
	while (done < n) {
		ssize_t w = write(fd, p + done, n - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(err, errlen, "cannot write %s: %s", path,
				 w < 0 ? strerror(errno) : "short write");
			goto fail;
		}
		done += (size_t)w;
	}
	if (fsync(fd) != 0) {
		snprintf(err, errlen, "cannot sync %s: %s", path, strerror(errno));
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		snprintf(err, errlen, "cannot close %s: %s", path, strerror(errno));
		goto fail;
	}
	return MOAT_OK;
fail:
	if (fd >= 0)
		close(fd);
	unlink(path);
	return rc;
}

moat_err moat_dir_sync(const char *dir, char *err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) != 0) {
		snprintf(err, errlen, "cannot sync directory %s: %s", dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return MOAT_E_IO;
	}
	close(fd);
	return MOAT_OK;
}

moat_err moat_file_replace(const char *path, mode_t mode, const void *data, size_t n, char *err,
			   size_t errlen)
{
	char tmp[4096], dir[4096];
	const char *slash = strrchr(path, '/');
	moat_err rc;
	int len = snprintf(tmp, sizeof(tmp), "%s.tmp", path);

	if (len < 0 || (size_t)len >= sizeof(tmp)) {
		snprintf(err, errlen, "path too long: %s", path);
		return MOAT_E_LIMIT;
	}
	(void)unlink(tmp);
	rc = moat_file_create(tmp, mode, data, n, err, errlen);
	if (rc)
		return rc;
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		return MOAT_E_IO;
	}
	if (slash == NULL) {
		dir[0] = '.';
		dir[1] = '\0';
	} else {
		size_t dl = slash == path ? 1 : (size_t)(slash - path);
		memcpy(dir, path, dl);
		dir[dl] = '\0';
	}
	return moat_dir_sync(dir, err, errlen);
}
