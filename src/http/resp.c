/*
 * HTTP responses. Every answer carries the same security headers, whatever
 * the handler did (docs/api.md "Conventions"), and no Server header.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/http.h"

/* The console is served from the same origin; nothing may frame us, no
 * MIME sniffing, no referrer leaks, nothing cached (answers hold secrets). */
static const char security_headers[] =
    "Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n"
    "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n";

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
	case 206:
		return "Partial Content";
	case 304:
		return "Not Modified";
	case 412:
		return "Precondition Failed";
	case 416:
		return "Range Not Satisfiable";
	case 507:
		return "Insufficient Storage";
	case 101:
		return "Switching Protocols";
	case 426:
		return "Upgrade Required";
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
	r->src.fd = -1;
}

void moat_http_source_free(struct moat_http_source *src)
{
	if (src->free_cb)
		src->free_cb(src->arg);
	if (src->fd >= 0)
		close(src->fd);
	memset(src, 0, sizeof(*src));
	src->fd = -1;
}

void moat_http_resp_free(struct moat_http_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
	if (r->streamed) {
		moat_http_source_free(&r->src);
		r->streamed = false;
	}
}

void moat_http_resp_source(struct moat_http_resp *r, int status, const char *ctype,
			   const struct moat_http_source *src)
{
	moat_http_resp_take(r, status, ctype, NULL, 0);
	if (r->streamed)
		moat_http_source_free(&r->src);
	r->src = *src;
	r->streamed = true;
}

/* Append a formatted line to top; false when it does not fit. */
__attribute__((format(printf, 4, 5))) static bool top_add(char *top, size_t cap, size_t *n,
							  const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(top + *n, cap - *n, fmt, ap);
	va_end(ap);
	if (k < 0 || (size_t)k >= cap - *n)
		return false;
	*n += (size_t)k;
	return true;
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
	if (r->streamed) {
		moat_http_source_free(&r->src);
		r->streamed = false;
	}
	r->status = status;
	snprintf(r->ctype, sizeof(r->ctype), "%s", ctype ? ctype : "");
	r->body = body;
	r->body_len = len;
}

moat_err moat_http_resp_serialize(const struct moat_http_resp *r, bool keep_alive, bool head,
				  char **out, size_t *outlen)
{
	char top[768];
	int status = r->status;
	const char *extra = r->headers;
	size_t extra_len = r->headers_len, body_len = r->body_len, total, n = 0;
	bool bodyless, streamed = r->streamed, close = !keep_alive || r->close;
	char *buf;

	if (r->headers_full) {
		status = 500;
		extra = "";
		extra_len = 0;
		body_len = 0;
		streamed = false;
	}
	bodyless = status == 204 || status == 304 || (status >= 100 && status < 200);
	if (bodyless) {
		body_len = 0;
		streamed = false;
	}
	if (!top_add(top, sizeof(top), &n, "HTTP/1.1 %d %s\r\n", status, moat_http_reason(status)))
		return MOAT_E_INTERNAL;
	if (streamed && r->src.length == MOAT_HTTP_LENGTH_UNKNOWN) {
		/* HTTP/1.0 knows no chunked coding: the end of the body is the
		 * end of the connection. */
		if (r->http10)
			close = true;
		else if (!top_add(top, sizeof(top), &n, "Transfer-Encoding: chunked\r\n"))
			return MOAT_E_INTERNAL;
	} else if (status == 304) {
		/* no framing: a 304 has no body */
	} else if (!bodyless &&
		   !top_add(top, sizeof(top), &n, "Content-Length: %llu\r\n",
			    (unsigned long long)(streamed ? r->src.length : body_len))) {
		return MOAT_E_INTERNAL;
	}
	if (!bodyless && (body_len || streamed) && r->ctype[0] && !r->headers_full &&
	    !top_add(top, sizeof(top), &n, "Content-Type: %s\r\n", r->ctype))
		return MOAT_E_INTERNAL;
	if (!top_add(top, sizeof(top), &n, "Cache-Control: %s\r\n",
		     r->cache_control[0] && !r->headers_full ? r->cache_control : "no-store"))
		return MOAT_E_INTERNAL;
	if (close && !top_add(top, sizeof(top), &n, "Connection: close\r\n"))
		return MOAT_E_INTERNAL;
	total = n + sizeof(security_headers) - 1 + extra_len + 2 + (head ? 0 : body_len);
	buf = malloc(total);
	if (buf == NULL)
		return MOAT_E_NOMEM;
	memcpy(buf, top, n);
	memcpy(buf + n, security_headers, sizeof(security_headers) - 1);
	memcpy(buf + n + sizeof(security_headers) - 1, extra, extra_len);
	memcpy(buf + n + sizeof(security_headers) - 1 + extra_len, "\r\n", 2);
	if (!head && body_len)
		memcpy(buf + n + sizeof(security_headers) - 1 + extra_len + 2, r->body, body_len);
	*out = buf;
	*outlen = total;
	return MOAT_OK;
}

void moat_http_resp_problem(struct moat_http_resp *r, int status, const char *type,
			    const char *detail)
{
	char body[320];
	int n = snprintf(body, sizeof(body),
			 "{\"type\":\"https://moat.dev/problems/%s\",\"title\":\"%s\","
			 "\"status\":%d,\"detail\":\"%s\"}",
			 type, moat_http_reason(status), status, detail);

	if (n > 0 && (size_t)n < sizeof(body))
		(void)moat_http_resp_body(r, status, "application/problem+json", body, (size_t)n);
}
