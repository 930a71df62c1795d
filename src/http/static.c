#define _GNU_SOURCE
/*
 * Files as answers: strong ETags, conditional requests (If-None-Match ->
 * 304), single byte ranges (RFC 9110 14: 206 with Content-Range, 416 when
 * unsatisfiable, If-Range), and files under a directory with no way out of
 * it. The body streams from the file descriptor (server.c), so a firmware
 * image costs the server one 16 KiB piece at a time.
 *
 * Confinement: the name is checked segment by segment (no "", ".", "..",
 * NUL or backslash) and opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS), so neither ".." nor a symlink can leave the
 * directory; symlinks that stay inside are followed. Where openat2 is
 * missing (ENOSYS), no symlink is followed at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "http/http.h"

static const struct {
	const char *ext, *type;
} ctypes[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"woff2", "font/woff2"},
    {"woff", "font/woff"},
    {"wasm", "application/wasm"},
    {"pem", "application/x-pem-file"},
};

const char *moat_http_content_type(const char *name)
{
	const char *dot = strrchr(name, '.'), *slash = strrchr(name, '/');
	size_t i;

	if (dot == NULL || (slash != NULL && dot < slash))
		return "application/octet-stream";
	for (i = 0; i < sizeof(ctypes) / sizeof(ctypes[0]); i++)
		if (strcasecmp(dot + 1, ctypes[i].ext) == 0)
			return ctypes[i].type;
	return "application/octet-stream";
}

void moat_http_etag(const struct stat *st, char *out, size_t outlen)
{
	snprintf(out, outlen, "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st->st_size,
		 (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec,
		 (uint64_t)st->st_ino);
}

/* One entity-tag of a list at *p (skipping blanks and commas); weak is set
 * for W/"...". false at the end of the list or on garbage. */
static bool next_etag(const char **p, const char **tag, size_t *len, bool *weak)
{
	const char *s = *p, *e;

	while (*s == ' ' || *s == '\t' || *s == ',')
		s++;
	if (*s == '\0')
		return false;
	*weak = false;
	if (s[0] == 'W' && s[1] == '/') {
		*weak = true;
		s += 2;
	}
	if (*s != '"')
		return false;
	e = strchr(s + 1, '"');
	if (e == NULL)
		return false;
	*tag = s;
	*len = (size_t)(e - s) + 1;
	*p = e + 1;
	return true;
}

/* If-None-Match (RFC 9110 13.1.2): weak comparison, "*" matches. */
static bool none_match(const char *h, const char *etag)
{
	const char *tag;
	size_t len;
	bool weak;

	while (*h == ' ')
		h++;
	if (strcmp(h, "*") == 0)
		return true;
	while (next_etag(&h, &tag, &len, &weak))
		if (len == strlen(etag) && memcmp(tag, etag, len) == 0)
			return true;
	return false;
}

static bool digits_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > 19)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

enum range_kind { RANGE_NONE, RANGE_OK, RANGE_UNSATISFIABLE };

/*
 * A Range header for a body of size bytes: one "bytes=" range (first-last,
 * first- or -suffix). Anything else (several ranges, another unit, bad
 * syntax) is ignored, as RFC 9110 14.2 allows: the whole body is sent.
 */
static enum range_kind parse_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last)
{
	const char *dash, *end;
	uint64_t a, b;

	if (strncasecmp(h, "bytes=", 6) != 0)
		return RANGE_NONE;
	h += 6;
	while (*h == ' ')
		h++;
	end = h + strlen(h);
	while (end > h && end[-1] == ' ')
		end--;
	if (memchr(h, ',', (size_t)(end - h)) != NULL)
		return RANGE_NONE;
	dash = memchr(h, '-', (size_t)(end - h));
	if (dash == NULL)
		return RANGE_NONE;
	if (dash == h) { /* suffix: the last b bytes */
		if (!digits_u64(dash + 1, (size_t)(end - dash - 1), &b))
			return RANGE_NONE;
		if (b == 0 || size == 0)
			return RANGE_UNSATISFIABLE;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return RANGE_OK;
	}
	if (!digits_u64(h, (size_t)(dash - h), &a))
		return RANGE_NONE;
	if (dash + 1 == end) {
		b = UINT64_MAX;
	} else if (!digits_u64(dash + 1, (size_t)(end - dash - 1), &b) || b < a) {
		return RANGE_NONE;
	}
	if (a >= size)
		return RANGE_UNSATISFIABLE;
	*first = a;
	*last = b >= size ? size - 1 : b;
	return RANGE_OK;
}

void moat_http_resp_file(struct moat_http_resp *r, const struct moat_http_req *req, int fd,
			 const char *ctype, const char *cache_control)
{
	struct moat_http_source src;
	struct stat st;
	char etag[80], cr[96];
	const char *inm, *range, *ifr;
	uint64_t first = 0, last = 0, size;
	enum range_kind rk = RANGE_NONE;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		moat_http_resp_problem(r, 404, "not-found", "no such file");
		return;
	}
	size = (uint64_t)st.st_size;
	moat_http_etag(&st, etag, sizeof(etag));
	moat_http_resp_header(r, "ETag", etag);
	moat_http_resp_header(r, "Accept-Ranges", "bytes");
	snprintf(r->cache_control, sizeof(r->cache_control), "%s",
		 cache_control ? cache_control : "no-cache");
	inm = moat_http_header(req, "if-none-match");
	if (inm != NULL && none_match(inm, etag)) {
		close(fd);
		moat_http_resp_take(r, 304, NULL, NULL, 0);
		return;
	}
	range = moat_http_header(req, "range");
	if (range != NULL && req->method == MOAT_HTTP_GET &&
	    moat_http_header_count(req, "range") == 1) {
		ifr = moat_http_header(req, "if-range");
		/* If-Range: the range only if the representation is unchanged,
		 * by strong comparison (a date is never strong enough here). */
		if (ifr == NULL || strcmp(ifr, etag) == 0)
			rk = parse_range(range, size, &first, &last);
	}
	if (rk == RANGE_UNSATISFIABLE) {
		close(fd);
		snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
		moat_http_resp_header(r, "Content-Range", cr);
		moat_http_resp_problem(r, 416, "range-not-satisfiable",
				       "the range is outside the file");
		return;
	}
	memset(&src, 0, sizeof(src));
	src.fd = fd;
	if (rk == RANGE_OK) {
		snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last,
			 size);
		moat_http_resp_header(r, "Content-Range", cr);
		src.offset = first;
		src.length = last - first + 1;
		moat_http_resp_source(r, 206, ctype, &src);
		return;
	}
	src.length = size;
	moat_http_resp_source(r, 200, ctype, &src);
}

/* "a/b.css": segments of anything but NUL, '/', '\\'; none empty, "." or "..". */
static bool name_clean(const char *rel)
{
	const char *seg = rel, *p;

	if (rel[0] == '\0' || strlen(rel) >= MOAT_HTTP_PARAM_REST_MAX)
		return false;
	for (p = rel;; p++) {
		if (*p == '\\')
			return false;
		if (*p == '/' || *p == '\0') {
			size_t n = (size_t)(p - seg);
			if (n == 0 || (n == 1 && seg[0] == '.') ||
			    (n == 2 && seg[0] == '.' && seg[1] == '.'))
				return false;
			if (*p == '\0')
				return true;
			seg = p + 1;
		}
	}
}

static int open_beneath(int dirfd, const char *rel)
{
	struct open_how how;
	long fd;

	memset(&how, 0, sizeof(how));
	how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS) {
		/* no openat2: walk the segments, following no symlink */
		char part[MOAT_HTTP_PARAM_REST_MAX];
		const char *p = rel;
		int at = dup(dirfd);
		while (at >= 0) {
			const char *slash = strchr(p, '/');
			size_t n = slash ? (size_t)(slash - p) : strlen(p);
			int next;
			memcpy(part, p, n);
			part[n] = '\0';
			next = openat(at, part,
				      (slash ? O_DIRECTORY | O_PATH : O_RDONLY | O_NONBLOCK) |
					  O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
			close(at);
			if (slash == NULL)
				return next;
			at = next;
			p = slash + 1;
		}
		return -1;
	}
	return (int)fd;
}

void moat_http_static(const char *dir, const char *rel, const struct moat_http_req *req,
		      struct moat_http_resp *resp)
{
	int dirfd, fd;

	if (!name_clean(rel)) {
		moat_http_resp_problem(resp, 404, "not-found", "no such file");
		return;
	}
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		moat_http_resp_problem(resp, 404, "not-found", "no such file");
		return;
	}
	fd = open_beneath(dirfd, rel);
	close(dirfd);
	if (fd < 0) {
		/* outside the directory (EXDEV, ELOOP) reads as absent */
		moat_http_resp_problem(resp, 404, "not-found", "no such file");
		return;
	}
	moat_http_resp_file(resp, req, fd, moat_http_content_type(rel), NULL);
}
