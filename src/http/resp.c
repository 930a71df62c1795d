/*
 * HTTP responses. Every answer carries the same security headers, whatever
 * the handler did (docs/api.md "Conventions"), and no Server header.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

/* The console is served from the same origin; nothing may frame us, no
 * MIME sniffing, no referrer leaks, nothing cached (answers hold secrets). */
static const char security_headers[] =
    "Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n"
    "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Cache-Control: no-store\r\n";

const char *moat_http_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

void moat_http_resp_init(struct moat_http_resp *r)
{
	memset(r, 0, sizeof(*r));
	r->status = 500;
}

void moat_http_resp_free(struct moat_http_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

static bool has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

void moat_http_resp_header(struct moat_http_resp *r, const char *name, const char *value)
{
	int n;

	if (has_crlf(name) || has_crlf(value)) {
		r->headers_full = true; /* header injection: refuse the answer */
		return;
	}
	n = snprintf(r->headers + r->headers_len, sizeof(r->headers) - r->headers_len, "%s: %s\r\n",
		     name, value);
	if (n < 0 || (size_t)n >= sizeof(r->headers) - r->headers_len) {
		r->headers[r->headers_len] = '\0';
		r->headers_full = true;
		return;
	}
	r->headers_len += (size_t)n;
}

moat_err moat_http_resp_body(struct moat_http_resp *r, int status, const char *ctype,
			     const void *body, size_t len)
{
	char *copy = malloc(len ? len : 1);

	if (copy == NULL)
		return MOAT_E_NOMEM;
	if (len)
		memcpy(copy, body, len);
	moat_http_resp_take(r, status, ctype, copy, len);
	return MOAT_OK;
}

void moat_http_resp_take(struct moat_http_resp *r, int status, const char *ctype, char *body,
			 size_t len)
{
	free(r->body);
	r->status = status;
	snprintf(r->ctype, sizeof(r->ctype), "%s", ctype ? ctype : "");
	r->body = body;
	r->body_len = len;
}

moat_err moat_http_resp_serialize(const struct moat_http_resp *r, bool keep_alive, bool head,
				  char **out, size_t *outlen)
{
	char top[512];
	int status = r->status;
	const char *extra = r->headers;
	size_t extra_len = r->headers_len, body_len = r->body_len, total;
	bool bodyless;
	char *buf;
	int n;

	if (r->headers_full) {
		status = 500;
		extra = "";
		extra_len = 0;
		body_len = 0;
	}
	bodyless = status == 204 || status == 304 || (status >= 100 && status < 200);
	if (bodyless)
		body_len = 0;
	n = snprintf(top, sizeof(top), "HTTP/1.1 %d %s\r\n", status, moat_http_reason(status));
	if (n < 0 || (size_t)n >= sizeof(top))
		return MOAT_E_INTERNAL;
	if (!bodyless) {
		int m =
		    snprintf(top + n, sizeof(top) - (size_t)n, "Content-Length: %zu\r\n", body_len);
		if (m < 0 || (size_t)m >= sizeof(top) - (size_t)n)
			return MOAT_E_INTERNAL;
		n += m;
		if (body_len && r->ctype[0] && !r->headers_full) {
			m = snprintf(top + n, sizeof(top) - (size_t)n, "Content-Type: %s\r\n",
				     r->ctype);
			if (m < 0 || (size_t)m >= sizeof(top) - (size_t)n)
				return MOAT_E_INTERNAL;
			n += m;
		}
	}
	if (!keep_alive || r->close) {
		int m = snprintf(top + n, sizeof(top) - (size_t)n, "Connection: close\r\n");
		if (m < 0 || (size_t)m >= sizeof(top) - (size_t)n)
			return MOAT_E_INTERNAL;
		n += m;
	}
	total = (size_t)n + sizeof(security_headers) - 1 + extra_len + 2 + (head ? 0 : body_len);
	buf = malloc(total);
	if (buf == NULL)
		return MOAT_E_NOMEM;
	memcpy(buf, top, (size_t)n);
	memcpy(buf + n, security_headers, sizeof(security_headers) - 1);
	memcpy(buf + (size_t)n + sizeof(security_headers) - 1, extra, extra_len);
	memcpy(buf + (size_t)n + sizeof(security_headers) - 1 + extra_len, "\r\n", 2);
	if (!head && body_len)
		memcpy(buf + (size_t)n + sizeof(security_headers) - 1 + extra_len + 2, r->body,
		       body_len);
	*out = buf;
	*outlen = total;
	return MOAT_OK;
}
