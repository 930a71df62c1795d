#define _GNU_SOURCE
/*
 * A streamed request body written to a new file (moat_http_sink_file):
 * created with O_EXCL next to nothing else (openat on the directory, no
 * symlink followed), written piece by piece as it arrives, fsync'd with its
 * directory before the handler answers, and removed when the request fails.
 * Memory does not grow with the body: the parser hands over each piece.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "http/http.h"

struct file_sink {
	int dirfd, fd;
	uint64_t size;
	moat_http_file_done_cb done_cb;
	void *arg;
	char name[MOAT_HTTP_PARAM_REST_MAX];
};

static void fs_free(struct file_sink *f, bool remove)
{
	if (f->fd >= 0)
		close(f->fd);
	if (remove && unlinkat(f->dirfd, f->name, 0) != 0 && errno != ENOENT)
		log_warn("http_upload_unlink", "name=%s errno=%d", f->name, errno);
	close(f->dirfd);
	free(f);
}

static moat_err fs_chunk_cb(void *arg, const uint8_t *data, size_t len)
{
	struct file_sink *f = arg;

	while (len > 0) {
		ssize_t n = write(f->fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return errno == ENOSPC || errno == EDQUOT ? MOAT_E_FULL : MOAT_E_IO;
		data += n;
		len -= (size_t)n;
		f->size += (uint64_t)n;
	}
	return MOAT_OK;
}

static void fs_end_cb(void *arg, const struct moat_http_req *req, struct moat_http_resp *resp)
{
	struct file_sink *f = arg;
	static const char fail[] = "{\"type\":\"https://moat.dev/problems/internal\","
				   "\"title\":\"Internal error\",\"status\":500,"
				   "\"detail\":\"the body could not be stored\"}";

	if (fsync(f->fd) != 0 || close(f->fd) != 0 || fsync(f->dirfd) != 0) {
		f->fd = -1;
		log_error("http_upload_sync", "name=%s errno=%d", f->name, errno);
		(void)moat_http_resp_body(resp, 500, "application/problem+json", fail,
					  sizeof(fail) - 1);
		fs_free(f, true);
		return;
	}
	f->fd = -1;
	f->done_cb(f->arg, f->name, f->size, req, resp);
	fs_free(f, false);
}

static void fs_abort_cb(void *arg)
{
	fs_free(arg, true);
}

moat_err moat_http_sink_file(struct moat_http_sink *sink, const char *dir, const char *name,
			     moat_http_file_done_cb done_cb, void *arg)
{
	struct file_sink *f;
	size_t nlen = strlen(name);

	if (nlen == 0 || nlen >= sizeof(f->name) || strchr(name, '/') != NULL ||
	    strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return MOAT_E_INVAL;
	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return MOAT_E_NOMEM;
	memcpy(f->name, name, nlen + 1);
	f->done_cb = done_cb;
	f->arg = arg;
	f->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (f->dirfd < 0) {
		free(f);
		return MOAT_E_IO;
	}
	f->fd = openat(f->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (f->fd < 0) {
		moat_err rc = errno == EEXIST ? MOAT_E_EXISTS : MOAT_E_IO;
		close(f->dirfd);
		free(f);
		return rc;
	}
	sink->chunk_cb = fs_chunk_cb;
	sink->end_cb = fs_end_cb;
	sink->abort_cb = fs_abort_cb;
	sink->arg = f;
	return MOAT_OK;
}
