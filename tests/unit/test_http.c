/* src/http: the request parser (framing, pipelining, keep-alive, every
 * limit and the status it answers), the response serializer (security
 * headers, framing, header injection), the router (parameters, dot-segments,
 * 405) and the query-string helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "http/http.h"

/* --- helpers --- */

static size_t small_limit = 8;

static size_t limit_small_cb(void *arg, int method, const char *path, size_t path_len)
{
	(void)method;
	(void)path;
	(void)path_len;
	return *(const size_t *)arg;
}

static size_t limit_none_cb(void *arg, int method, const char *path, size_t path_len)
{
	(void)arg;
	(void)method;
	(void)path;
	(void)path_len;
	return 0;
}

/* The parser is ~25 KiB: keep it off the stack. */
static struct moat_http_parser *parser_new(moat_http_body_limit_cb cb, void *arg)
{
	struct moat_http_parser *hp = malloc(sizeof(*hp));

	assert_non_null(hp);
	moat_http_parser_init(hp, cb, arg);
	return hp;
}

static void parser_del(struct moat_http_parser *hp)
{
	moat_http_parser_free(hp);
	free(hp);
}

static moat_err feed(struct moat_http_parser *hp, const char *s, size_t len, size_t *used)
{
	return moat_http_parser_feed(hp, (const uint8_t *)s, len, used);
}

/* Feed a whole request in one call; it must be complete and fully used. */
static void feed_done(struct moat_http_parser *hp, const char *s, size_t len)
{
	size_t used = 0;
	moat_err rc = feed(hp, s, len, &used);

	if (rc != MOAT_OK)
		fail_msg("feed: %s (status %d, %s)", moat_strerror(rc), hp->status,
			 hp->why ? hp->why : "");
	assert_int_equal(hp->state, MOAT_HTTP_P_DONE);
	assert_int_equal(used, len);
}

/* Feed s (all at once) and expect the parser to refuse it with status. */
static void expect_refusal(moat_http_body_limit_cb cb, void *arg, const char *s, size_t len,
			   int status, moat_err want)
{
	struct moat_http_parser *hp = parser_new(cb, arg);
	size_t used = 0;
	moat_err rc = feed(hp, s, len, &used);

	if (rc != want || hp->state != MOAT_HTTP_P_ERROR || hp->status != status)
		fail_msg("wanted %d (%s), got rc=%s state=%d status=%d why=%s", status,
			 moat_strerror(want), moat_strerror(rc), (int)hp->state, hp->status,
			 hp->why ? hp->why : "(null)");
	assert_non_null(hp->why);
	/* The error is sticky: nothing more is parsed. */
	rc = feed(hp, "GET / HTTP/1.1\r\n\r\n", 18, &used);
	assert_int_equal(rc, MOAT_E_MALFORMED);
	assert_int_equal(used, 0);
	assert_int_equal(hp->state, MOAT_HTTP_P_ERROR);
	parser_del(hp);
}

#define S(lit) lit, sizeof(lit) - 1

/* A growable string for the big requests of the limit tests. */
struct sb {
	char *p;
	size_t len, cap;
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 256;
		char *np;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		np = realloc(b->p, ncap);
		assert_non_null(np);
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_rep(struct sb *b, char ch, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		sb_add(b, &ch, 1);
}

/* --- parser --- */

static void test_parse_simple_get(void **state)
{
	(void)state;
	static const char req[] = "GET /api/v1/users?limit=5&cursor=abc HTTP/1.1\r\n"
				  "Host: moat.example\r\n"
				  "User-Agent: test\r\n"
				  "\r\n";
	struct moat_http_parser *hp = parser_new(NULL, NULL);
	const struct moat_http_req *r = &hp->req;

	feed_done(hp, S(req));
	assert_int_equal(r->method, MOAT_HTTP_GET);
	assert_string_equal(r->target, "/api/v1/users?limit=5&cursor=abc");
	assert_string_equal(r->path, "/api/v1/users");
	assert_int_equal(r->path_len, strlen("/api/v1/users"));
	assert_string_equal(r->query, "limit=5&cursor=abc");
	assert_int_equal(r->n_headers, 2);
	assert_string_equal(r->headers[0].name, "Host");
	assert_string_equal(r->headers[0].value, "moat.example");
	assert_int_equal(r->headers[0].value_len, strlen("moat.example"));
	assert_string_equal(r->headers[1].name, "User-Agent");
	assert_string_equal(r->headers[1].value, "test");
	assert_int_equal(r->body_len, 0);
	assert_non_null(r->body);
	assert_true(r->keep_alive);
	assert_false(hp->expect_continue);
	/* DONE stays DONE until _next: feeding more consumes nothing. */
	{
		size_t used = 99;
		assert_int_equal(feed(hp, S("GET / HTTP/1.1\r\n\r\n"), &used), MOAT_OK);
		assert_int_equal(used, 0);
	}
	parser_del(hp);
}

static void test_parse_no_query(void **state)
{
	(void)state;
	struct moat_http_parser *hp = parser_new(NULL, NULL);

	feed_done(hp, S("DELETE /api/v1/tokens/ab12 HTTP/1.1\r\nHost: x\r\n\r\n"));
	assert_int_equal(hp->req.method, MOAT_HTTP_DELETE);
	assert_string_equal(hp->req.path, "/api/v1/tokens/ab12");
	assert_string_equal(hp->req.query, "");
	parser_del(hp);
}

static void test_parse_content_length_body(void **state)
{
	(void)state;
	static const char req[] = "POST /api/v1/users HTTP/1.1\r\n"
				  "Host: x\r\n"
				  "Content-Type: application/json\r\n"
				  "Content-Length: 16\r\n"
				  "\r\n"
				  "{\"username\":\"a\"}";
	struct moat_http_parser *hp = parser_new(NULL, NULL);

	feed_done(hp, S(req));
	assert_int_equal(hp->req.method, MOAT_HTTP_POST);
	assert_int_equal(hp->req.body_len, 16);
	assert_memory_equal(hp->req.body, "{\"username\":\"a\"}", 16);
	assert_string_equal(moat_http_header(&hp->req, "content-type"), "application/json");
	parser_del(hp);
}

static void test_parse_chunked_body(void **state)
{
	(void)state;
	static const char req[] = "POST /x HTTP/1.1\r\n"
				  "Host: x\r\n"
				  "Transfer-Encoding: chunked\r\n"
				  "\r\n"
				  "5\r\nhello\r\n"
				  "6\r\n world\r\n"
				  "0\r\n\r\n";
	struct moat_http_parser *hp = parser_new(NULL, NULL);

	feed_done(hp, S(req));
	assert_int_equal(hp->req.body_len, 11);
	assert_memory_equal(hp->req.body, "hello world", 11);
	assert_true(hp->req.keep_alive);
	parser_del(hp);
}

/* Everything split into 1-byte feeds: tokens continue across calls. */
static void test_parse_one_byte_feeds(void **state)
{
	(void)state;
	static const char req[] = "PATCH /api/v1/users/alice?x=1 HTTP/1.1\r\n"
				  "Host: moat.example:8443\r\n"
				  "X-Long-Header-Name: a value with spaces\r\n"
				  "Content-Type: application/json\r\n"
				  "Transfer-Encoding: chunked\r\n"
				  "\r\n"
				  "3\r\nabc\r\n"
				  "2\r\nde\r\n"
				  "0\r\n\r\n";
	struct moat_http_parser *hp = parser_new(NULL, NULL);
	size_t i, used;
	moat_err rc = MOAT_E_AGAIN;

	for (i = 0; i < sizeof(req) - 1; i++) {
		used = 99;
		rc = feed(hp, req + i, 1, &used);
		if (i + 1 < sizeof(req) - 1) {
			if (rc != MOAT_E_AGAIN)
				fail_msg("byte %zu: %s (status %d)", i, moat_strerror(rc),
					 hp->status);
		}
		assert_int_equal(used, 1);
	}
	assert_int_equal(rc, MOAT_OK);
	assert_int_equal(hp->state, MOAT_HTTP_P_DONE);
	assert_int_equal(hp->req.method, MOAT_HTTP_PATCH);
	assert_string_equal(hp->req.target, "/api/v1/users/alice?x=1");
	assert_string_equal(hp->req.path, "/api/v1/users/alice");
	assert_string_equal(hp->req.query, "x=1");
	assert_int_equal(hp->req.n_headers, 4);
	assert_string_equal(moat_http_header(&hp->req, "host"), "moat.example:8443");
	assert_string_equal(moat_http_header(&hp->req, "x-long-header-name"),
			    "a value with spaces");
	assert_string_equal(hp->req.headers[1].name, "X-Long-Header-Name");
	assert_int_equal(hp->req.headers[1].value_len, strlen("a value with spaces"));
	assert_int_equal(hp->req.body_len, 5);
	assert_memory_equal(hp->req.body, "abcde", 5);
	parser_del(hp);
}

/* Two requests in one buffer: the first is DONE and "used" stops after it;
 * after _next the rest parses as the second. */
static void test_parse_pipelined(void **state)
{
	(void)state;
	static const char first[] = "POST /one HTTP/1.1\r\n"
				    "Host: x\r\n"
				    "Content-Length: 3\r\n"
				    "\r\n"
				    "abc";
	static const char second[] = "GET /two?b=2 HTTP/1.1\r\n"
				     "Host: y\r\n"
				     "\r\n";
	char buf[256];
	struct moat_http_parser *hp = parser_new(NULL, NULL);
	size_t used = 0, len = sizeof(first) - 1 + sizeof(second) - 1;

	memcpy(buf, first, sizeof(first) - 1);
	memcpy(buf + sizeof(first) - 1, second, sizeof(second));
	assert_int_equal(feed(hp, buf, len, &used), MOAT_OK);
	assert_int_equal(hp->state, MOAT_HTTP_P_DONE);
	assert_int_equal(used, sizeof(first) - 1);
	assert_string_equal(hp->req.path, "/one");
	assert_int_equal(hp->req.body_len, 3);
	assert_memory_equal(hp->req.body, "abc", 3);

	moat_http_parser_next(hp);
	assert_int_equal(hp->state, MOAT_HTTP_P_IDLE);
	assert_int_equal(feed(hp, buf + used, len - used, &used), MOAT_OK);
	assert_int_equal(used, sizeof(second) - 1);
	assert_int_equal(hp->req.method, MOAT_HTTP_GET);
	assert_string_equal(hp->req.path, "/two");
	assert_string_equal(hp->req.query, "b=2");
	assert_int_equal(hp->req.n_headers, 1);
	assert_string_equal(moat_http_header(&hp->req, "host"), "y");
	assert_int_equal(hp->req.body_len, 0);
	parser_del(hp);
}

/* Two bodiless requests back to back, then a third fed separately. */
static void test_parse_pipelined_get_get(void **state)
{
	(void)state;
	static const char two[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
				  "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
	struct moat_http_parser *hp = parser_new(NULL, NULL);
	size_t used = 0, off;

	assert_int_equal(feed(hp, S(two), &used), MOAT_OK);
	assert_int_equal(used, (sizeof(two) - 1) / 2);
	assert_string_equal(hp->req.path, "/a");
	off = used;
	moat_http_parser_next(hp);
	assert_int_equal(feed(hp, two + off, sizeof(two) - 1 - off, &used), MOAT_OK);
	assert_int_equal(used, sizeof(two) - 1 - off);
	assert_string_equal(hp->req.path, "/b");
	moat_http_parser_next(hp);
	feed_done(hp, S("GET /c HTTP/1.1\r\n\r\n"));
	assert_string_equal(hp->req.path, "/c");
	assert_int_equal(hp->req.n_headers, 0);
	parser_del(hp);
}

/* A chunked request with trailers, then a HEAD, in one buffer. */
static void test_parse_pipelined_chunked(void **state)
{
	(void)state;
	static const char first[] = "POST /c HTTP/1.1\r\n"
				    "Transfer-Encoding: chunked\r\n"
				    "\r\n"
				    "3;ext=1\r\nabc\r\n"
				    "0\r\n"
				    "X-Trailer: t\r\n"
				    "\r\n";
	static const char second[] = "HEAD /healthz HTTP/1.1\r\n\r\n";
	char buf[256];
	struct moat_http_parser *hp = parser_new(NULL, NULL);
	size_t used = 0, len = sizeof(first) - 1 + sizeof(second) - 1;

	memcpy(buf, first, sizeof(first) - 1);
	memcpy(buf + sizeof(first) - 1, second, sizeof(second));
	assert_int_equal(feed(hp, buf, len, &used), MOAT_OK);
	assert_int_equal(used, sizeof(first) - 1);
	assert_int_equal(hp->req.body_len, 3);
	assert_memory_equal(hp->req.body, "abc", 3);
	moat_http_parser_next(hp);
	assert_int_equal(feed(hp, buf + used, len - used, &used), MOAT_OK);
	assert_int_equal(used, sizeof(second) - 1);
	assert_int_equal(hp->req.method, MOAT_HTTP_HEAD);
	assert_string_equal(hp->req.path, "/healthz");
	assert_int_equal(hp->req.body_len, 0);
	parser_del(hp);
}

static bool keep_alive_of(const char *req)
{
	struct moat_http_parser *hp = parser_new(NULL, NULL);
	bool ka;

	feed_done(hp, req, strlen(req));
	ka = hp->req.keep_alive;
	parser_del(hp);
	return ka;
}

static void test_parse_keep_alive(void **state)
{
	(void)state;
	assert_true(keep_alive_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
	assert_false(keep_alive_of("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
	assert_false(keep_alive_of("GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n"));
	assert_false(keep_alive_of("GET / HTTP/1.0\r\n\r\n"));
	assert_true(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
	assert_false(keep_alive_of("GET / HTTP/1.0\r\nConnection: close\r\n\r\n"));
}

static void test_parse_target_too_long(void **state)
{
	(void)state;
	struct sb b = {0};
	struct moat_http_parser *hp;

	/* Exactly the limit is fine. */
	sb_str(&b, "GET /");
	sb_rep(&b, 'a', MOAT_HTTP_MAX_TARGET - 1);
	sb_str(&b, " HTTP/1.1\r\nHost: x\r\n\r\n");
	hp = parser_new(NULL, NULL);
	feed_done(hp, b.p, b.len);
	assert_int_equal(strlen(hp->req.target), MOAT_HTTP_MAX_TARGET);
	assert_int_equal(hp->req.path_len, MOAT_HTTP_MAX_TARGET);
	parser_del(hp);
	/* One more byte is 414. */
	b.len = 0;
	sb_str(&b, "GET /");
	sb_rep(&b, 'a', MOAT_HTTP_MAX_TARGET);
	sb_str(&b, " HTTP/1.1\r\nHost: x\r\n\r\n");
	expect_refusal(NULL, NULL, b.p, b.len, 414, MOAT_E_LIMIT);
	/* Also when it arrives in pieces. */
	hp = parser_new(NULL, NULL);
	{
		size_t off = 0, used;
		moat_err rc = MOAT_E_AGAIN;
		while (off < b.len && rc == MOAT_E_AGAIN) {
			size_t n = b.len - off < 100 ? b.len - off : 100;
			rc = feed(hp, b.p + off, n, &used);
			off += n;
		}
		assert_int_equal(rc, MOAT_E_LIMIT);
		assert_int_equal(hp->status, 414);
	}
	parser_del(hp);
	free(b.p);
}

static void test_parse_too_many_headers(void **state)
{
	(void)state;
	struct sb b = {0};
	struct moat_http_parser *hp;
	char line[64];
	size_t i;

	sb_str(&b, "GET / HTTP/1.1\r\n");
	for (i = 0; i < MOAT_HTTP_MAX_HEADERS; i++) {
		snprintf(line, sizeof(line), "X-H%zu: %zu\r\n", i, i);
		sb_str(&b, line);
	}
	sb_str(&b, "\r\n");
	hp = parser_new(NULL, NULL);
	feed_done(hp, b.p, b.len);
	assert_int_equal(hp->req.n_headers, MOAT_HTTP_MAX_HEADERS);
	assert_string_equal(moat_http_header(&hp->req, "x-h63"), "63");
	parser_del(hp);

	b.len -= 2;
	sb_str(&b, "X-One-Too-Many: 1\r\n\r\n");
	expect_refusal(NULL, NULL, b.p, b.len, 431, MOAT_E_LIMIT);
	free(b.p);
}

static void test_parse_head_too_large(void **state)
{
	(void)state;
	struct sb b = {0};
	size_t i;

	/* Few headers, but more bytes than the head arena holds. */
	sb_str(&b, "GET / HTTP/1.1\r\n");
	for (i = 0; i < 9; i++) {
		sb_str(&b, "X-Big: ");
		sb_rep(&b, 'v', 2000);
		sb_str(&b, "\r\n");
	}
	sb_str(&b, "\r\n");
	assert_true(b.len > MOAT_HTTP_MAX_HEAD);
	expect_refusal(NULL, NULL, b.p, b.len, 431, MOAT_E_LIMIT);
	/* One huge header name. */
	b.len = 0;
	sb_str(&b, "GET / HTTP/1.1\r\nX-");
	sb_rep(&b, 'n', MOAT_HTTP_MAX_HEAD);
	sb_str(&b, ": 1\r\n\r\n");
	expect_refusal(NULL, NULL, b.p, b.len, 431, MOAT_E_LIMIT);
	free(b.p);
}

static void test_parse_body_over_route_limit(void **state)
{
	(void)state;
	struct moat_http_parser *hp;

	/* Content-Length at the limit passes, one more is refused from the head. */
	hp = parser_new(limit_small_cb, &small_limit);
	feed_done(hp, S("POST /x HTTP/1.1\r\nContent-Length: 8\r\n\r\n12345678"));
	assert_int_equal(hp->req.body_len, 8);
	parser_del(hp);
	expect_refusal(limit_small_cb, &small_limit,
		       S("POST /x HTTP/1.1\r\nContent-Length: 9\r\n\r\n"), 413, MOAT_E_TOO_LARGE);
	expect_refusal(limit_small_cb, &small_limit,
		       S("POST /x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"), 413,
		       MOAT_E_TOO_LARGE);
	/* Chunked: counted as the chunks arrive. */
	hp = parser_new(limit_small_cb, &small_limit);
	feed_done(hp, S("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			"4\r\n1234\r\n4\r\n5678\r\n0\r\n\r\n"));
	assert_int_equal(hp->req.body_len, 8);
	parser_del(hp);
	expect_refusal(limit_small_cb, &small_limit,
		       S("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "4\r\n1234\r\n5\r\n56789\r\n0\r\n\r\n"),
		       413, MOAT_E_TOO_LARGE);
	/* One chunk that declares more than the limit. */
	expect_refusal(limit_small_cb, &small_limit,
		       S("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "ffff\r\n0123456789"),
		       413, MOAT_E_TOO_LARGE);
}

static void test_parse_body_on_route_without_body(void **state)
{
	(void)state;
	struct moat_http_parser *hp;

	expect_refusal(limit_none_cb, NULL, S("DELETE /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"),
		       413, MOAT_E_TOO_LARGE);
	expect_refusal(limit_none_cb, NULL,
		       S("DELETE /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 413,
		       MOAT_E_TOO_LARGE);
	/* An explicit empty body is no body. */
	hp = parser_new(limit_none_cb, NULL);
	feed_done(hp, S("DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
	assert_int_equal(hp->req.body_len, 0);
	parser_del(hp);
}

static void test_parse_malformed(void **state)
{
	(void)state;
	expect_refusal(NULL, NULL, S("GET /x HTTX/1.1\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /x http/1.1\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET x HTTP/1.1\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET ?a=1 HTTP/1.1\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /x HTTP/1.1\r\nNo colon here\r\n\r\n"), 400,
		       MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /x HTTP/1.1\r\n X-A: v\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /x HTTP/1.1\r\nX-A: a\rb\r\n\r\n"), 400,
		       MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /x HTTP/1.1\r\nX-A: a\x01b\r\n\r\n"), 400,
		       MOAT_E_MALFORMED);
	/* Only origin-form targets. */
	expect_refusal(NULL, NULL, S("GET http://evil.example/ HTTP/1.1\r\n\r\n"), 400,
		       MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("OPTIONS * HTTP/1.1\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("CONNECT moat.example:443 HTTP/1.1\r\n\r\n"), 400,
		       MOAT_E_MALFORMED);
	/* Request smuggling shapes. */
	expect_refusal(NULL, NULL,
		       S("POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
		       400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL,
		       S("POST /x HTTP/1.1\r\nContent-Length: 3\r\n"
			 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
		       400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400,
		       MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("POST /x HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na"), 400,
		       MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("POST /x HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello"), 400,
		       MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL,
		       S("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 400,
		       MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), 400,
		       MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL,
		       S("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), 400,
		       MOAT_E_MALFORMED);
}

/* A request line that is not "METHOD SP origin-form SP HTTP/1.x" is a bad
 * request (RFC 9112 section 3), whichever part of it is broken. */
static void test_parse_malformed_request_line_status(void **state)
{
	(void)state;
	expect_refusal(NULL, NULL, S("GET /x HTTP/1.1 extra\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /x HTTP/1.\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /x HTTP/11\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /x HTTP/1.1\r\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET\r\n\r\n"), 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S(" GET /x HTTP/1.1\r\n\r\n"), 400, MOAT_E_MALFORMED);
}

/* RFC 9112 section 5.1: whitespace between a field name and the colon MUST
 * be answered 400; and a field name is a token (no spaces), and so is no
 * control character in the target. */
static void test_parse_space_in_field_name(void **state)
{
	(void)state;
	expect_refusal(NULL, NULL, S("GET /x HTTP/1.1\r\nX-CSRF-Token : v\r\n\r\n"), 400,
		       MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n"), 400,
		       MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /a\tb HTTP/1.1\r\n\r\n"), 400, MOAT_E_MALFORMED);
}

/* RFC 9110 section 5.5: leading and trailing whitespace is not part of a
 * field value. */
static void test_parse_trailing_ows_trimmed(void **state)
{
	(void)state;
	struct moat_http_parser *hp;

	hp = parser_new(NULL, NULL);
	feed_done(hp, S("POST /x HTTP/1.1\r\nX-A: abc  \r\nX-B:\tv\t\r\n"
			"Expect: 100-continue \r\nContent-Length: 0\r\n\r\n"));
	assert_string_equal(moat_http_header(&hp->req, "x-a"), "abc");
	assert_int_equal(hp->req.headers[0].value_len, 3);
	assert_string_equal(moat_http_header(&hp->req, "x-b"), "v");
	parser_del(hp);
}

/* We never switch protocols: a request asking to upgrade is answered and
 * then the connection closes (parse.c:274-275 says so). */
static void test_parse_upgrade_closes(void **state)
{
	(void)state;
	static const char two[] = "GET /x HTTP/1.1\r\nHost: x\r\n"
				  "Connection: upgrade\r\nUpgrade: h2c\r\n\r\n"
				  "GET /y HTTP/1.1\r\nHost: x\r\n\r\n";
	struct moat_http_parser *hp;
	size_t used = 0;

	hp = parser_new(NULL, NULL);
	assert_int_equal(feed(hp, S(two), &used), MOAT_OK);
	assert_string_equal(hp->req.path, "/x");
	assert_false(hp->req.keep_alive);
	parser_del(hp);
}

static void test_parse_unknown_method(void **state)
{
	(void)state;
	expect_refusal(NULL, NULL, S("FROB /x HTTP/1.1\r\n\r\n"), 501, MOAT_E_MALFORMED);
}

static void test_parse_http2_version(void **state)
{
	(void)state;
	expect_refusal(NULL, NULL, S("GET /x HTTP/2.0\r\nHost: x\r\n\r\n"), 505, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, S("GET /x HTTP/3.0\r\nHost: x\r\n\r\n"), 505, MOAT_E_MALFORMED);
}

static void test_parse_nul_in_header(void **state)
{
	(void)state;
	static const char req[] = "GET /x HTTP/1.1\r\nX-A: a\0b\r\n\r\n";
	static const char name[] = "GET /x HTTP/1.1\r\nX-\0A: ab\r\n\r\n";
	static const char target[] = "GET /x\0y HTTP/1.1\r\n\r\n";

	expect_refusal(NULL, NULL, req, sizeof(req) - 1, 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, name, sizeof(name) - 1, 400, MOAT_E_MALFORMED);
	expect_refusal(NULL, NULL, target, sizeof(target) - 1, 400, MOAT_E_MALFORMED);
}

static void test_parse_expect_continue(void **state)
{
	(void)state;
	static const char head[] = "POST /x HTTP/1.1\r\n"
				   "Host: x\r\n"
				   "Expect: 100-continue\r\n"
				   "Content-Length: 5\r\n"
				   "\r\n";
	struct moat_http_parser *hp = parser_new(NULL, NULL);
	size_t used = 0;

	assert_int_equal(feed(hp, S(head), &used), MOAT_E_AGAIN);
	assert_int_equal(used, sizeof(head) - 1);
	assert_int_equal(hp->state, MOAT_HTTP_P_BODY);
	assert_true(hp->expect_continue);
	feed_done(hp, S("hello"));
	assert_false(hp->expect_continue);
	assert_memory_equal(hp->req.body, "hello", 5);
	parser_del(hp);
	/* Case-insensitive value. */
	hp = parser_new(NULL, NULL);
	assert_int_equal(
	    feed(hp, S("POST /x HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"),
		 &used),
	    MOAT_E_AGAIN);
	assert_true(hp->expect_continue);
	parser_del(hp);
}

static void test_parse_unknown_expect(void **state)
{
	(void)state;
	expect_refusal(NULL, NULL,
		       S("POST /x HTTP/1.1\r\nExpect: something-else\r\nContent-Length: 1\r\n\r\n"),
		       417, MOAT_E_MALFORMED);
}

static void test_parse_header_lookup(void **state)
{
	(void)state;
	static const char req[] = "GET /x HTTP/1.1\r\n"
				  "Content-Type: text/plain\r\n"
				  "X-Dup: first\r\n"
				  "x-dup: second\r\n"
				  "X-DUP: third\r\n"
				  "\r\n";
	struct moat_http_parser *hp = parser_new(NULL, NULL);

	feed_done(hp, S(req));
	assert_string_equal(moat_http_header(&hp->req, "content-type"), "text/plain");
	assert_string_equal(moat_http_header(&hp->req, "CONTENT-TYPE"), "text/plain");
	assert_string_equal(moat_http_header(&hp->req, "Content-Type"), "text/plain");
	assert_int_equal(moat_http_header_count(&hp->req, "content-type"), 1);
	assert_string_equal(moat_http_header(&hp->req, "x-dup"), "first");
	assert_int_equal(moat_http_header_count(&hp->req, "X-Dup"), 3);
	assert_null(moat_http_header(&hp->req, "x-absent"));
	assert_int_equal(moat_http_header_count(&hp->req, "x-absent"), 0);
	/* A prefix of a name is not the name. */
	assert_null(moat_http_header(&hp->req, "x-du"));
	assert_null(moat_http_header(&hp->req, "content-type-x"));
	parser_del(hp);
}

static void test_parse_empty_header_value(void **state)
{
	(void)state;
	static const char req[] = "GET /x HTTP/1.1\r\n"
				  "X-Empty:\r\n"
				  "X-Spaces:    \r\n"
				  "X-After: yes\r\n"
				  "\r\n";
	struct moat_http_parser *hp = parser_new(NULL, NULL);
	const char *v;

	feed_done(hp, S(req));
	assert_int_equal(hp->req.n_headers, 3);
	v = moat_http_header(&hp->req, "x-empty");
	assert_non_null(v);
	assert_string_equal(v, "");
	assert_int_equal(hp->req.headers[0].value_len, 0);
	v = moat_http_header(&hp->req, "x-spaces");
	assert_non_null(v);
	assert_string_equal(v, "");
	assert_int_equal(hp->req.headers[1].value_len, 0);
	assert_string_equal(moat_http_header(&hp->req, "x-after"), "yes");
	assert_string_equal(hp->req.headers[2].name, "X-After");
	parser_del(hp);
}

/* After _next a big body buffer is dropped and the next request starts
 * clean: no header or body of the previous one leaks into it. */
static void test_parse_next_resets(void **state)
{
	(void)state;
	struct sb b = {0};
	struct moat_http_parser *hp = parser_new(NULL, NULL);
	char cl[64];

	sb_str(&b, "POST /big HTTP/1.1\r\nX-Old: 1\r\n");
	snprintf(cl, sizeof(cl), "Content-Length: %u\r\n\r\n", MOAT_HTTP_BODY_DEFAULT);
	sb_str(&b, cl);
	sb_rep(&b, 'b', MOAT_HTTP_BODY_DEFAULT);
	feed_done(hp, b.p, b.len);
	assert_int_equal(hp->req.body_len, MOAT_HTTP_BODY_DEFAULT);
	moat_http_parser_next(hp);
	feed_done(hp, S("GET /small HTTP/1.1\r\nX-New: 2\r\n\r\n"));
	assert_string_equal(hp->req.path, "/small");
	assert_int_equal(hp->req.n_headers, 1);
	assert_null(moat_http_header(&hp->req, "x-old"));
	assert_int_equal(hp->req.body_len, 0);
	parser_del(hp);
	free(b.p);
}

/* --- responses --- */

static char *serialize(const struct moat_http_resp *r, bool keep_alive, bool head, size_t *len)
{
	char *out = NULL, *z;

	assert_int_equal(moat_http_resp_serialize(r, keep_alive, head, &out, len), MOAT_OK);
	assert_non_null(out);
	/* NUL-terminated copy for strstr. */
	z = malloc(*len + 1);
	assert_non_null(z);
	memcpy(z, out, *len);
	z[*len] = '\0';
	free(out);
	return z;
}

/* The header block (up to and including the blank line), or fail. */
static size_t head_len_of(const char *wire)
{
	const char *end = strstr(wire, "\r\n\r\n");

	assert_non_null(end);
	return (size_t)(end - wire) + 4;
}

/* Is there a header line "name: ..." (case-insensitive) in the head? */
static const char *find_header(const char *wire, const char *name)
{
	size_t hl = head_len_of(wire), nl = strlen(name);
	const char *p = strstr(wire, "\r\n");

	while (p != NULL && (size_t)(p - wire) + 2 < hl) {
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':')
			return p + nl + 1 + (p[nl + 1] == ' ' ? 1 : 0);
		p = strstr(p, "\r\n");
	}
	return NULL;
}

static void assert_security_headers(const char *wire)
{
	const char *v;

	v = find_header(wire, "Strict-Transport-Security");
	assert_non_null(v);
	assert_true(strncmp(v, "max-age=", 8) == 0);
	v = find_header(wire, "Content-Security-Policy");
	assert_non_null(v);
	assert_true(strncmp(v, "default-src 'self'", 18) == 0);
	assert_non_null(strstr(v, "frame-ancestors 'none'"));
	v = find_header(wire, "X-Content-Type-Options");
	assert_non_null(v);
	assert_true(strncmp(v, "nosniff\r\n", 9) == 0);
	v = find_header(wire, "Referrer-Policy");
	assert_non_null(v);
	assert_true(strncmp(v, "no-referrer\r\n", 13) == 0);
	v = find_header(wire, "Cache-Control");
	assert_non_null(v);
	assert_true(strncmp(v, "no-store\r\n", 10) == 0);
	assert_null(find_header(wire, "Server"));
	assert_null(find_header(wire, "X-Powered-By"));
}

static long content_length_of(const char *wire)
{
	const char *v = find_header(wire, "Content-Length");
	char *end;
	long n;

	if (v == NULL)
		return -1;
	n = strtol(v, &end, 10);
	assert_true(end != v && strncmp(end, "\r\n", 2) == 0);
	return n;
}

static void test_resp_basic(void **state)
{
	(void)state;
	struct moat_http_resp r;
	size_t len, hl;
	char *w;

	moat_http_resp_init(&r);
	assert_int_equal(moat_http_resp_body(&r, 200, "application/json", S("{\"a\":1}")), MOAT_OK);
	moat_http_resp_header(&r, "X-Extra", "yes");
	w = serialize(&r, true, false, &len);
	assert_true(strncmp(w, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_security_headers(w);
	assert_int_equal(content_length_of(w), 7);
	assert_non_null(find_header(w, "Content-Type"));
	assert_true(strncmp(find_header(w, "Content-Type"), "application/json\r\n", 18) == 0);
	assert_true(strncmp(find_header(w, "X-Extra"), "yes\r\n", 5) == 0);
	assert_null(find_header(w, "Connection"));
	hl = head_len_of(w);
	assert_int_equal(len, hl + 7);
	assert_memory_equal(w + hl, "{\"a\":1}", 7);
	free(w);
	moat_http_resp_free(&r);
}

static void test_resp_status_lines(void **state)
{
	(void)state;
	static const int codes[] = {201, 400, 401, 403, 404, 405, 409, 413, 414,
				    415, 417, 422, 429, 431, 500, 501, 503, 505};
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		struct moat_http_resp r;
		char line[64], *w;
		size_t len;
		int n;

		moat_http_resp_init(&r);
		assert_int_equal(
		    moat_http_resp_body(&r, codes[i], "application/problem+json", S("{}")),
		    MOAT_OK);
		w = serialize(&r, true, false, &len);
		n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", codes[i],
			     moat_http_reason(codes[i]));
		assert_true(n > 0);
		assert_true(strncmp(w, line, (size_t)n) == 0);
		assert_string_not_equal(moat_http_reason(codes[i]), "Unknown");
		assert_security_headers(w);
		assert_int_equal(content_length_of(w), 2);
		free(w);
		moat_http_resp_free(&r);
	}
}

static void test_resp_204_has_no_body(void **state)
{
	(void)state;
	struct moat_http_resp r;
	size_t len;
	char *w;

	moat_http_resp_init(&r);
	moat_http_resp_take(&r, 204, NULL, NULL, 0);
	w = serialize(&r, true, false, &len);
	assert_true(strncmp(w, "HTTP/1.1 204 No Content\r\n", 25) == 0);
	assert_security_headers(w);
	assert_null(find_header(w, "Content-Length"));
	assert_null(find_header(w, "Content-Type"));
	assert_int_equal(len, head_len_of(w));
	free(w);
	/* Even if a handler attached a body by mistake. */
	assert_int_equal(moat_http_resp_body(&r, 204, "application/json", S("{}")), MOAT_OK);
	w = serialize(&r, true, false, &len);
	assert_null(find_header(w, "Content-Length"));
	assert_int_equal(len, head_len_of(w));
	free(w);
	moat_http_resp_free(&r);
}

static void test_resp_head_keeps_length(void **state)
{
	(void)state;
	struct moat_http_resp r;
	size_t len;
	char *w;

	moat_http_resp_init(&r);
	assert_int_equal(moat_http_resp_body(&r, 200, "application/json", S("{\"status\":\"ok\"}")),
			 MOAT_OK);
	w = serialize(&r, true, true, &len);
	assert_int_equal(content_length_of(w), 15);
	assert_int_equal(len, head_len_of(w));
	assert_security_headers(w);
	free(w);
	moat_http_resp_free(&r);
}

static void test_resp_connection_close(void **state)
{
	(void)state;
	struct moat_http_resp r;
	size_t len;
	char *w;

	moat_http_resp_init(&r);
	assert_int_equal(moat_http_resp_body(&r, 200, "text/plain", S("x")), MOAT_OK);
	w = serialize(&r, false, false, &len);
	assert_non_null(find_header(w, "Connection"));
	assert_true(strncmp(find_header(w, "Connection"), "close\r\n", 7) == 0);
	free(w);
	/* The handler can ask for it too. */
	r.close = true;
	w = serialize(&r, true, false, &len);
	assert_true(strncmp(find_header(w, "Connection"), "close\r\n", 7) == 0);
	free(w);
	moat_http_resp_free(&r);
}

static void test_resp_header_injection_refused(void **state)
{
	(void)state;
	static const char *const bad[][2] = {
	    {"Set-Cookie", "a=b\r\nX-Injected: 1"},
	    {"Set-Cookie", "a=b\nX-Injected: 1"},
	    {"Set-Cookie", "a=b\rX-Injected: 1"},
	    {"X-Injected: 1\r\nX-Name", "v"},
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct moat_http_resp r;
		size_t len;
		char *w;

		moat_http_resp_init(&r);
		moat_http_resp_header(&r, "X-Fine", "1");
		moat_http_resp_header(&r, bad[i][0], bad[i][1]);
		assert_true(r.headers_full);
		assert_int_equal(moat_http_resp_body(&r, 200, "application/json", S("{\"x\":1}")),
				 MOAT_OK);
		w = serialize(&r, true, false, &len);
		assert_true(strncmp(w, "HTTP/1.1 500 ", 13) == 0);
		assert_null(strstr(w, "X-Injected"));
		assert_null(find_header(w, "X-Fine"));
		assert_null(find_header(w, "Content-Type"));
		assert_int_equal(content_length_of(w), 0);
		assert_int_equal(len, head_len_of(w));
		assert_security_headers(w);
		free(w);
		moat_http_resp_free(&r);
	}
}

/* A refused header on a 204 answer: the 500 that replaces it must still be
 * framed (Content-Length: 0), or a keep-alive client waits for a body. */
static void test_resp_header_injection_on_204(void **state)
{
	(void)state;
	struct moat_http_resp r;
	size_t len;
	char *w;

	moat_http_resp_init(&r);
	moat_http_resp_header(&r, "Set-Cookie", "a=b\r\nX-Injected: 1");
	moat_http_resp_take(&r, 204, NULL, NULL, 0);
	w = serialize(&r, true, false, &len);
	assert_true(strncmp(w, "HTTP/1.1 500 ", 13) == 0);
	assert_int_equal(content_length_of(w), 0);
	free(w);
	moat_http_resp_free(&r);
}

static void test_resp_headers_overflow(void **state)
{
	(void)state;
	struct moat_http_resp r;
	char val[200];
	size_t i, len;
	char *w;

	memset(val, 'v', sizeof(val) - 1);
	val[sizeof(val) - 1] = '\0';
	moat_http_resp_init(&r);
	for (i = 0; i < 20; i++)
		moat_http_resp_header(&r, "X-Big", val);
	assert_true(r.headers_full);
	assert_true(r.headers_len < sizeof(r.headers));
	w = serialize(&r, true, false, &len);
	assert_true(strncmp(w, "HTTP/1.1 500 ", 13) == 0);
	assert_null(find_header(w, "X-Big"));
	free(w);
	moat_http_resp_free(&r);
}

static void test_resp_default_is_500(void **state)
{
	(void)state;
	struct moat_http_resp r;
	size_t len;
	char *w;

	moat_http_resp_init(&r);
	w = serialize(&r, true, false, &len);
	assert_true(strncmp(w, "HTTP/1.1 500 Internal Server Error\r\n", 36) == 0);
	assert_int_equal(content_length_of(w), 0);
	assert_int_equal(len, head_len_of(w));
	free(w);
	moat_http_resp_free(&r);
	moat_http_resp_free(&r); /* twice is harmless */
}

/* --- router --- */

static const struct moat_http_route table[] = {
    {MOAT_HTTP_GET, "/healthz", "", 0, NULL},
    {MOAT_HTTP_GET, "/api/v1/users", "", 0, NULL},
    {MOAT_HTTP_POST, "/api/v1/users", "", 1024, NULL},
    {MOAT_HTTP_GET, "/api/v1/users/{name}", "", 0, NULL},
    {MOAT_HTTP_PATCH, "/api/v1/users/{name}", "", 1024, NULL},
    {MOAT_HTTP_POST, "/api/v1/users/{name}/reset-mfa", "", 1024, NULL},
    {MOAT_HTTP_DELETE, "/api/v1/tokens/{id}", "", 0, NULL},
    {MOAT_HTTP_GET, "/a/{x}/b/{y}", "", 0, NULL},
};
#define N_TABLE (sizeof(table) / sizeof(table[0]))

static int find(int method, const char *path, struct moat_http_params *p, bool *known, char *allow,
		size_t allowlen)
{
	return moat_http_route_find(table, N_TABLE, method, path, strlen(path), p, known, allow,
				    allowlen);
}

static void test_route_params(void **state)
{
	(void)state;
	struct moat_http_params p;
	bool known;

	assert_int_equal(find(MOAT_HTTP_GET, "/healthz", &p, &known, NULL, 0), 0);
	assert_true(known);
	assert_int_equal(p.n, 0);
	assert_int_equal(find(MOAT_HTTP_GET, "/api/v1/users/alice", &p, &known, NULL, 0), 3);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.v[0], "alice");
	assert_int_equal(find(MOAT_HTTP_PATCH, "/api/v1/users/a.b_c-d~e", &p, &known, NULL, 0), 4);
	assert_string_equal(p.v[0], "a.b_c-d~e");
	assert_int_equal(find(MOAT_HTTP_POST, "/api/v1/users/bob/reset-mfa", &p, &known, NULL, 0),
			 5);
	assert_string_equal(p.v[0], "bob");
	assert_int_equal(find(MOAT_HTTP_GET, "/a/1/b/2", &p, &known, NULL, 0), 7);
	assert_int_equal(p.n, 2);
	assert_string_equal(p.v[0], "1");
	assert_string_equal(p.v[1], "2");
	/* "..." is an ordinary name, not a dot-segment. */
	assert_int_equal(find(MOAT_HTTP_GET, "/api/v1/users/...", &p, &known, NULL, 0), 3);
	/* path_len is honoured: the bytes after it are not part of the path. */
	assert_int_equal(moat_http_route_find(table, N_TABLE, MOAT_HTTP_GET, "/healthzzz", 8, &p,
					      &known, NULL, 0),
			 0);
}

static void test_route_param_rejects(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "/api/v1/users/.",	    "/api/v1/users/..",	   "/api/v1/users/a%2Fb",
	    "/api/v1/users/%2e%2e", "/api/v1/users/a%20b", "/api/v1/users/a b",
	    "/api/v1/users/a@b",    "/api/v1/users/a:b",   "/api/v1/users/",
	    "/api/v1/users//",	    "/api/v1/users/a/",	   "/api/v1/users/a/b",
	    "/api/v1/users/ä",	    "/api/v1/users/a?b",   "/api/v1/users/a;b",
	};
	struct moat_http_params p;
	size_t i;
	bool known;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int k = find(MOAT_HTTP_GET, bad[i], &p, &known, NULL, 0);
		if (k >= 0 || known)
			fail_msg("'%s' matched route %d (known=%d)", bad[i], k, (int)known);
	}
}

static void test_route_param_length(void **state)
{
	(void)state;
	char path[300];
	struct moat_http_params p;
	bool known;
	size_t max = sizeof(p.v[0]) - 1;

	memcpy(path, "/api/v1/tokens/", 15);
	memset(path + 15, 'a', max);
	path[15 + max] = '\0';
	assert_int_equal(find(MOAT_HTTP_DELETE, path, &p, &known, NULL, 0), 6);
	assert_int_equal(strlen(p.v[0]), max);
	path[15 + max] = 'a';
	path[16 + max] = '\0';
	assert_int_equal(find(MOAT_HTTP_DELETE, path, &p, &known, NULL, 0), -1);
}

/* Several parameters in one pattern, found by name; a trailing {param*}. */
static const struct moat_http_route table2[] = {
    {MOAT_HTTP_GET, "/api/v1/updates/{id}/artifacts/{name}", "", 0, NULL},
    {MOAT_HTTP_PUT, "/api/v1/updates/{id}/artifacts/{name}", "", 1024, NULL},
    {MOAT_HTTP_GET, "/api/v1/updates/{id}/artifacts/{name}/parts/{part}", "", 0, NULL},
    {MOAT_HTTP_GET, "/p/{a}/{b}/{c}/{d}/{e}/{f}", "", 0, NULL},
    {MOAT_HTTP_GET, "/q/{a}/{b}/{c}/{d}/{e}/{f}/{g}", "", 0, NULL},
    {MOAT_HTTP_GET, "/console/{file*}", "", 0, NULL},
    {MOAT_HTTP_GET, "/bad/{file*}/x", "", 0, NULL},
};

static int find2(int method, const char *path, struct moat_http_params *p)
{
	bool known;

	return moat_http_route_find(table2, sizeof(table2) / sizeof(table2[0]), method, path,
				    strlen(path), p, &known, NULL, 0);
}

static void test_route_several_params(void **state)
{
	struct moat_http_params p;

	(void)state;
	assert_int_equal(find2(MOAT_HTTP_GET, "/api/v1/updates/fw-2.1/artifacts/image.bin", &p), 0);
	assert_int_equal(p.n, 2);
	assert_string_equal(moat_http_param(&p, "id"), "fw-2.1");
	assert_string_equal(moat_http_param(&p, "name"), "image.bin");
	assert_null(moat_http_param(&p, "nam"));
	assert_null(moat_http_param(&p, "names"));
	assert_null(moat_http_param(&p, "part"));
	assert_int_equal(find2(MOAT_HTTP_PUT, "/api/v1/updates/7/artifacts/a", &p), 1);
	assert_string_equal(moat_http_param(&p, "id"), "7");
	assert_int_equal(find2(MOAT_HTTP_GET, "/api/v1/updates/7/artifacts/a/parts/3", &p), 2);
	assert_int_equal(p.n, 3);
	assert_string_equal(p.v[0], "7");
	assert_string_equal(p.v[1], "a");
	assert_string_equal(moat_http_param(&p, "part"), "3");
	assert_int_equal(find2(MOAT_HTTP_GET, "/p/1/2/3/4/5/6", &p), 3);
	assert_int_equal(p.n, MOAT_HTTP_MAX_PARAMS);
	assert_string_equal(moat_http_param(&p, "f"), "6");
	/* more parameters than MOAT_HTTP_MAX_PARAMS: the pattern never matches */
	assert_int_equal(find2(MOAT_HTTP_GET, "/q/1/2/3/4/5/6/7", &p), -1);
	/* each parameter is still one clean segment */
	assert_int_equal(find2(MOAT_HTTP_GET, "/api/v1/updates/7/artifacts/..", &p), -1);
	assert_int_equal(find2(MOAT_HTTP_GET, "/api/v1/updates//artifacts/a", &p), -1);
	assert_int_equal(find2(MOAT_HTTP_GET, "/api/v1/updates/7/artifacts/a%2Fb", &p), -1);
}

static void test_route_rest_param(void **state)
{
	static const char *const bad[] = {
	    "/console/",	"/console",	      "/console/a//b", "/console/a/",
	    "/console/../x",	"/console/a/../../x", "/console/./a",  "/console/a/.",
	    "/console/a%2e%2e", "/console/a b",	      "/console/a\\b", "/bad/a/x",
	};
	struct moat_http_params p;
	char path[MOAT_HTTP_PARAM_REST_MAX + 16];
	size_t i;

	(void)state;
	assert_int_equal(find2(MOAT_HTTP_GET, "/console/index.html", &p), 5);
	assert_string_equal(moat_http_param(&p, "file"), "index.html");
	assert_string_equal(p.rest, "index.html");
	assert_int_equal(find2(MOAT_HTTP_GET, "/console/css/v1/app.css", &p), 5);
	assert_string_equal(moat_http_param(&p, "file"), "css/v1/app.css");
	assert_null(moat_http_param(&p, "file*")); /* the name has no star */
	assert_int_equal(find2(MOAT_HTTP_GET, "/console/...", &p), 5);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (find2(MOAT_HTTP_GET, bad[i], &p) >= 0)
			fail_msg("'%s' matched", bad[i]);
	/* the length bound */
	memcpy(path, "/console/", 9);
	memset(path + 9, 'a', MOAT_HTTP_PARAM_REST_MAX - 1);
	path[9 + MOAT_HTTP_PARAM_REST_MAX - 1] = '\0';
	path[9 + 100] = '/';
	assert_int_equal(find2(MOAT_HTTP_GET, path, &p), 5);
	assert_int_equal(strlen(p.rest), MOAT_HTTP_PARAM_REST_MAX - 1);
	path[9 + MOAT_HTTP_PARAM_REST_MAX - 1] = 'a';
	path[9 + MOAT_HTTP_PARAM_REST_MAX] = '\0';
	assert_int_equal(find2(MOAT_HTTP_GET, path, &p), -1);
}

static void test_route_trailing_slash_and_prefixes(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "/healthz/",
	    "/healthz/x",
	    "/health",
	    "/healthzx",
	    "//healthz",
	    "/HEALTHZ",
	    "/api/v1/users/",
	    "/api/v1/user",
	    "/api/v1/usersx",
	    "/api/v1/users/a/reset-mfa/",
	    "/api/v1/tokens/",
	    "/api/v1/tokens",
	    "/",
	    "",
	};
	struct moat_http_params p;
	size_t i;
	bool known;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int k = find(MOAT_HTTP_GET, bad[i], &p, &known, NULL, 0);
		if (k >= 0 || known)
			fail_msg("'%s' matched route %d (known=%d)", bad[i], k, (int)known);
	}
}

static void test_route_405_and_allow(void **state)
{
	(void)state;
	struct moat_http_params p;
	char allow[128];
	bool known;

	assert_int_equal(find(MOAT_HTTP_DELETE, "/api/v1/users", &p, &known, allow, sizeof(allow)),
			 -1);
	assert_true(known);
	assert_string_equal(allow, "GET, POST");
	assert_int_equal(
	    find(MOAT_HTTP_PUT, "/api/v1/users/alice", &p, &known, allow, sizeof(allow)), -1);
	assert_true(known);
	assert_string_equal(allow, "GET, PATCH");
	assert_int_equal(
	    find(MOAT_HTTP_GET, "/api/v1/tokens/ab12", &p, &known, allow, sizeof(allow)), -1);
	assert_true(known);
	assert_string_equal(allow, "DELETE");
	/* Unknown path: 404, not 405. */
	assert_int_equal(find(MOAT_HTTP_GET, "/nope", &p, &known, allow, sizeof(allow)), -1);
	assert_false(known);
	assert_string_equal(allow, "");
	/* A found route still reports the others for the path. */
	assert_int_equal(find(MOAT_HTTP_POST, "/api/v1/users", &p, &known, allow, sizeof(allow)),
			 2);
	assert_true(known);
	/* A small Allow buffer is truncated, never overrun. */
	memset(allow, 'Z', sizeof(allow));
	assert_int_equal(find(MOAT_HTTP_DELETE, "/api/v1/users", &p, &known, allow, 5), -1);
	assert_true(known);
	assert_true(strlen(allow) < 5);
	assert_int_equal(allow[5], 'Z');
}

static void test_route_head_matches_get(void **state)
{
	(void)state;
	struct moat_http_params p;
	bool known;

	assert_int_equal(find(MOAT_HTTP_HEAD, "/healthz", &p, &known, NULL, 0), 0);
	assert_int_equal(find(MOAT_HTTP_HEAD, "/api/v1/users", &p, &known, NULL, 0), 1);
	assert_int_equal(find(MOAT_HTTP_HEAD, "/api/v1/users/carol", &p, &known, NULL, 0), 3);
	assert_string_equal(p.v[0], "carol");
	/* ... but not POST/DELETE routes. */
	assert_int_equal(find(MOAT_HTTP_HEAD, "/api/v1/tokens/x", &p, &known, NULL, 0), -1);
	assert_true(known);
}

/* --- query strings --- */

static void test_query_decoding(void **state)
{
	(void)state;
	static const char q[] = "a=1&b=hello%20world&c=x+y&d=%41%6a%7E&e=&f&g=%2B%26%3D";
	char out[64];

	assert_int_equal(moat_http_query_get(q, "a", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "1");
	assert_int_equal(moat_http_query_get(q, "b", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "hello world");
	assert_int_equal(moat_http_query_get(q, "c", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "x y");
	assert_int_equal(moat_http_query_get(q, "d", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "Aj~");
	assert_int_equal(moat_http_query_get(q, "e", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "");
	assert_int_equal(moat_http_query_get(q, "f", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "");
	assert_int_equal(moat_http_query_get(q, "g", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "+&=");
	/* Absent keys, and keys that are only prefixes or suffixes of one. */
	assert_int_equal(moat_http_query_get(q, "z", out, sizeof(out)), MOAT_E_NOTFOUND);
	assert_int_equal(moat_http_query_get("ab=1", "a", out, sizeof(out)), MOAT_E_NOTFOUND);
	assert_int_equal(moat_http_query_get("ab=1", "b", out, sizeof(out)), MOAT_E_NOTFOUND);
	assert_int_equal(moat_http_query_get("", "a", out, sizeof(out)), MOAT_E_NOTFOUND);
	assert_int_equal(moat_http_query_get("&&a=2&&", "a", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "2");
	/* The value may contain '='. */
	assert_int_equal(moat_http_query_get("a=b=c", "a", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "b=c");
}

static void test_query_bad_escapes(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "a=%", "a=%4", "a=%zz", "a=%4g", "a=%g4", "a=x%", "a=%%41", "a=%-1", "a=% 1",
	};
	char out[64];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		moat_err rc = moat_http_query_get(bad[i], "a", out, sizeof(out));
		if (rc != MOAT_E_MALFORMED)
			fail_msg("'%s': %s", bad[i], moat_strerror(rc));
	}
	/* An escape at the very end that is complete is fine. */
	assert_int_equal(moat_http_query_get("a=%41", "a", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "A");
	assert_int_equal(moat_http_query_get("a=%41&b=1", "a", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "A");
}

static void test_query_nul_refused(void **state)
{
	(void)state;
	char out[64];

	assert_int_equal(moat_http_query_get("a=%00", "a", out, sizeof(out)), MOAT_E_MALFORMED);
	assert_int_equal(moat_http_query_get("a=x%00y", "a", out, sizeof(out)), MOAT_E_MALFORMED);
	/* Another key's NUL does not matter to this one. */
	assert_int_equal(moat_http_query_get("b=%00&a=1", "a", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "1");
}

static void test_query_duplicate_key(void **state)
{
	(void)state;
	char out[64];

	assert_int_equal(moat_http_query_get("a=1&a=2", "a", out, sizeof(out)), MOAT_E_INVAL);
	assert_int_equal(moat_http_query_get("a=1&b=0&a=1", "a", out, sizeof(out)), MOAT_E_INVAL);
	assert_int_equal(moat_http_query_get("a&a", "a", out, sizeof(out)), MOAT_E_INVAL);
	/* A duplicate of another key is not this key's problem. */
	assert_int_equal(moat_http_query_get("b=1&b=2&a=3", "a", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "3");
}

static void test_query_limit(void **state)
{
	(void)state;
	char out[4];

	assert_int_equal(moat_http_query_get("a=abc", "a", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "abc");
	assert_int_equal(moat_http_query_get("a=abcd", "a", out, sizeof(out)), MOAT_E_LIMIT);
	assert_int_equal(moat_http_query_get("a=%41%42%43", "a", out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "ABC");
	assert_int_equal(moat_http_query_get("a=", "a", out, 0), MOAT_E_LIMIT);
}

static void test_query_only(void **state)
{
	(void)state;
	static const char *const keys[] = {"limit", "cursor", "all"};
	char bad[16];

	assert_true(moat_http_query_only("", keys, 3, bad, sizeof(bad)));
	assert_true(moat_http_query_only("limit=5", keys, 3, bad, sizeof(bad)));
	assert_true(moat_http_query_only("limit=5&cursor=x&all=true", keys, 3, bad, sizeof(bad)));
	assert_true(moat_http_query_only("all", keys, 3, bad, sizeof(bad)));
	assert_true(moat_http_query_only("limit=1&&cursor=2&", keys, 3, bad, sizeof(bad)));

	memset(bad, 0, sizeof(bad));
	assert_false(moat_http_query_only("limit=5&foo=1&bar=2", keys, 3, bad, sizeof(bad)));
	assert_string_equal(bad, "foo");
	assert_false(moat_http_query_only("bar&limit=5", keys, 3, bad, sizeof(bad)));
	assert_string_equal(bad, "bar");
	/* Prefixes and extensions of a known key are unknown keys. */
	assert_false(moat_http_query_only("limi=1", keys, 3, bad, sizeof(bad)));
	assert_string_equal(bad, "limi");
	assert_false(moat_http_query_only("limits=1", keys, 3, bad, sizeof(bad)));
	assert_string_equal(bad, "limits");
	/* Keys are compared as sent (not decoded). */
	assert_false(moat_http_query_only("li%6Dit=1", keys, 3, bad, sizeof(bad)));
	assert_string_equal(bad, "li%6Dit");
	/* The name is truncated to the buffer. */
	assert_false(moat_http_query_only("averyveryverylongkeyname=1", keys, 3, bad, sizeof(bad)));
	assert_int_equal(strlen(bad), sizeof(bad) - 1);
	assert_true(strncmp(bad, "averyveryverylongkeyname", sizeof(bad) - 1) == 0);
	/* No buffer at all is allowed. */
	assert_false(moat_http_query_only("x=1", keys, 3, NULL, 0));
	/* No keys allowed at all. */
	assert_false(moat_http_query_only("limit=1", NULL, 0, bad, sizeof(bad)));
	assert_string_equal(bad, "limit");
}

/* The arena and body buffer exist only while a request is in progress: an
 * idle keep-alive connection's parser holds no heap. */
static void test_parser_arena_is_lazy_and_released(void **state)
{
	static const char req[] = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
	size_t limit = 64, used = 0;
	struct moat_http_parser *hp = parser_new(limit_small_cb, &limit);

	(void)state;
	assert_int_equal(moat_http_parser_held(hp), 0);
	assert_int_equal(feed(hp, "POST /x HTTP/1.1\r\n", 18, &used), MOAT_E_AGAIN);
	assert_true(moat_http_parser_held(hp) >= MOAT_HTTP_MAX_HEAD);
	moat_http_parser_release(hp); /* mid-request: a no-op */
	assert_true(moat_http_parser_held(hp) >= MOAT_HTTP_MAX_HEAD);
	feed_done(hp, req + 18, sizeof(req) - 1 - 18);
	moat_http_parser_next(hp);
	moat_http_parser_release(hp);
	assert_int_equal(moat_http_parser_held(hp), 0);
	/* and the next request is parsed as usual */
	feed_done(hp, S(req));
	assert_memory_equal(hp->req.body, "hello", 5);
	assert_string_equal(moat_http_header(&hp->req, "host"), "h");
	moat_http_parser_next(hp);
	moat_http_parser_release(hp);
	assert_int_equal(moat_http_parser_held(hp), 0);
	parser_del(hp);
}

/* A route whose body streams: the parser stops after the head, then hands
 * every piece to the callback and keeps none of it. */
static size_t stream_cb_val = 0;
static size_t stream_limit_cb(void *arg, int method, const char *path, size_t path_len)
{
	(void)arg;
	(void)method;
	(void)path_len;
	return strcmp(path, "/up") == 0 ? stream_cb_val : 0;
}

struct collected {
	char data[64];
	size_t len, calls;
	moat_err fail_with;
};

static moat_err collect_cb(void *arg, const uint8_t *d, size_t len)
{
	struct collected *c = arg;

	if (c->fail_with != MOAT_OK)
		return c->fail_with;
	assert_true(c->len + len <= sizeof(c->data));
	memcpy(c->data + c->len, d, len);
	c->len += len;
	c->calls++;
	return MOAT_OK;
}

static void test_parser_streamed_body(void **state)
{
	static const char req[] =
	    "PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
	size_t limit = 4, used = 0, off;
	struct moat_http_parser *hp = parser_new(limit_small_cb, &limit);
	struct collected col = {{0}, 0, 0, MOAT_OK};

	(void)state;
	stream_cb_val = 11;
	moat_http_parser_set_stream(hp, stream_limit_cb);
	/* the head, then a stop: nothing of the body is taken yet */
	assert_int_equal(feed(hp, S(req), &used), MOAT_OK);
	assert_int_equal(hp->state, MOAT_HTTP_P_STREAM);
	assert_true(hp->req.streaming);
	assert_string_equal(hp->req.path, "/up");
	off = used;
	assert_memory_equal(req + off, "5\r\n", 3);
	/* feeding again without taking the body changes nothing */
	assert_int_equal(feed(hp, req + off, sizeof(req) - 1 - off, &used), MOAT_OK);
	assert_int_equal(used, 0);
	moat_http_parser_stream(hp, collect_cb, &col);
	assert_int_equal(hp->state, MOAT_HTTP_P_BODY);
	/* byte by byte: pieces arrive as they come */
	for (; off < sizeof(req) - 1; off++) {
		moat_err rc = feed(hp, req + off, 1, &used);
		assert_int_equal(used, 1);
		if (off + 1 < sizeof(req) - 1)
			assert_int_equal(rc, MOAT_E_AGAIN);
		else
			assert_int_equal(rc, MOAT_OK);
	}
	assert_int_equal(hp->state, MOAT_HTTP_P_DONE);
	assert_int_equal(col.len, 11);
	assert_memory_equal(col.data, "hello world", 11);
	assert_int_equal(hp->req.streamed, 11);
	assert_int_equal(hp->req.body_len, 0);
	assert_int_equal(hp->body_cap, 0); /* nothing buffered */
	moat_http_parser_next(hp);
	/* the limit is the stream callback's, not the buffered one (4) */
	stream_cb_val = 10;
	assert_int_equal(feed(hp, S(req), &used), MOAT_OK);
	moat_http_parser_stream(hp, collect_cb, &col);
	col.len = 0;
	assert_int_equal(feed(hp, req + used, sizeof(req) - 1 - used, &used), MOAT_E_TOO_LARGE);
	assert_int_equal(hp->status, 413);
	parser_del(hp);
	/* a sink that cannot store: 507 for a full disk, 500 otherwise */
	hp = parser_new(limit_small_cb, &limit);
	moat_http_parser_set_stream(hp, stream_limit_cb);
	stream_cb_val = 100;
	assert_int_equal(feed(hp, S(req), &used), MOAT_OK);
	col.fail_with = MOAT_E_FULL;
	moat_http_parser_stream(hp, collect_cb, &col);
	assert_int_not_equal(feed(hp, req + used, sizeof(req) - 1 - used, &used), MOAT_OK);
	assert_int_equal(hp->status, 507);
	parser_del(hp);
	/* other routes still buffer, with their own limit */
	hp = parser_new(limit_small_cb, &limit);
	moat_http_parser_set_stream(hp, stream_limit_cb);
	feed_done(hp, S("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd"));
	assert_false(hp->req.streaming);
	assert_memory_equal(hp->req.body, "abcd", 4);
	parser_del(hp);
}

static int freed_sources;
static void count_free_cb(void *arg)
{
	(void)arg;
	freed_sources++;
}

/* A streamed answer: Content-Length when the length is known, chunked
 * coding when not (close for HTTP/1.0), no body bytes in the head; the
 * source is released by moat_http_resp_free when the server did not take
 * it; Cache-Control can be replaced. */
static void test_resp_streamed(void **state)
{
	struct moat_http_source src = {NULL, count_free_cb, NULL, -1, 0, 1234};
	struct moat_http_resp r;
	size_t len;
	char *w;

	(void)state;
	freed_sources = 0;
	moat_http_resp_init(&r);
	moat_http_resp_source(&r, 200, "application/octet-stream", &src);
	w = serialize(&r, true, false, &len);
	assert_non_null(find_header(w, "Content-Length"));
	assert_int_equal(content_length_of(w), 1234);
	assert_null(find_header(w, "Transfer-Encoding"));
	assert_int_equal(len, head_len_of(w));
	assert_non_null(strstr(w, "Cache-Control: no-store\r\n"));
	free(w);
	src.length = MOAT_HTTP_LENGTH_UNKNOWN;
	moat_http_resp_source(&r, 200, "text/plain", &src); /* replaces: the first is freed */
	assert_int_equal(freed_sources, 1);
	snprintf(r.cache_control, sizeof(r.cache_control), "no-cache");
	w = serialize(&r, true, false, &len);
	assert_null(find_header(w, "Content-Length"));
	assert_non_null(strstr(w, "Transfer-Encoding: chunked\r\n"));
	assert_non_null(strstr(w, "Cache-Control: no-cache\r\n"));
	assert_null(strstr(w, "no-store"));
	assert_null(strstr(w, "Connection: close"));
	free(w);
	r.http10 = true;
	w = serialize(&r, true, false, &len);
	assert_null(find_header(w, "Transfer-Encoding"));
	assert_non_null(strstr(w, "Connection: close\r\n"));
	free(w);
	moat_http_resp_free(&r);
	assert_int_equal(freed_sources, 2);
	moat_http_resp_free(&r);
	assert_int_equal(freed_sources, 2);
}

static void test_content_types(void **state)
{
	(void)state;
	assert_string_equal(moat_http_content_type("index.html"), "text/html; charset=utf-8");
	assert_string_equal(moat_http_content_type("a/b/app.CSS"), "text/css; charset=utf-8");
	assert_string_equal(moat_http_content_type("app.js"), "text/javascript; charset=utf-8");
	assert_string_equal(moat_http_content_type("logo.svg"), "image/svg+xml");
	assert_string_equal(moat_http_content_type("fw.bin"), "application/octet-stream");
	assert_string_equal(moat_http_content_type("css.d/noext"), "application/octet-stream");
	assert_string_equal(moat_http_content_type("html"), "application/octet-stream");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_simple_get),
	    cmocka_unit_test(test_parse_no_query),
	    cmocka_unit_test(test_parse_content_length_body),
	    cmocka_unit_test(test_parse_chunked_body),
	    cmocka_unit_test(test_parse_one_byte_feeds),
	    cmocka_unit_test(test_parse_pipelined),
	    cmocka_unit_test(test_parse_pipelined_get_get),
	    cmocka_unit_test(test_parse_pipelined_chunked),
	    cmocka_unit_test(test_parse_keep_alive),
	    cmocka_unit_test(test_parse_target_too_long),
	    cmocka_unit_test(test_parse_too_many_headers),
	    cmocka_unit_test(test_parse_head_too_large),
	    cmocka_unit_test(test_parse_body_over_route_limit),
	    cmocka_unit_test(test_parse_body_on_route_without_body),
	    cmocka_unit_test(test_parse_malformed),
	    cmocka_unit_test(test_parse_malformed_request_line_status),
	    cmocka_unit_test(test_parse_space_in_field_name),
	    cmocka_unit_test(test_parse_trailing_ows_trimmed),
	    cmocka_unit_test(test_parse_upgrade_closes),
	    cmocka_unit_test(test_parse_unknown_method),
	    cmocka_unit_test(test_parse_http2_version),
	    cmocka_unit_test(test_parse_nul_in_header),
	    cmocka_unit_test(test_parse_expect_continue),
	    cmocka_unit_test(test_parse_unknown_expect),
	    cmocka_unit_test(test_parse_header_lookup),
	    cmocka_unit_test(test_parse_empty_header_value),
	    cmocka_unit_test(test_parse_next_resets),
	    cmocka_unit_test(test_resp_basic),
	    cmocka_unit_test(test_resp_status_lines),
	    cmocka_unit_test(test_resp_204_has_no_body),
	    cmocka_unit_test(test_resp_head_keeps_length),
	    cmocka_unit_test(test_resp_connection_close),
	    cmocka_unit_test(test_resp_header_injection_refused),
	    cmocka_unit_test(test_resp_header_injection_on_204),
	    cmocka_unit_test(test_resp_headers_overflow),
	    cmocka_unit_test(test_resp_default_is_500),
	    cmocka_unit_test(test_route_params),
	    cmocka_unit_test(test_route_param_rejects),
	    cmocka_unit_test(test_route_param_length),
	    cmocka_unit_test(test_route_trailing_slash_and_prefixes),
	    cmocka_unit_test(test_route_405_and_allow),
	    cmocka_unit_test(test_route_head_matches_get),
	    cmocka_unit_test(test_query_decoding),
	    cmocka_unit_test(test_query_bad_escapes),
	    cmocka_unit_test(test_query_nul_refused),
	    cmocka_unit_test(test_query_duplicate_key),
	    cmocka_unit_test(test_query_limit),
	    cmocka_unit_test(test_query_only),
	    cmocka_unit_test(test_resp_streamed),
	    cmocka_unit_test(test_content_types),
	    cmocka_unit_test(test_parser_streamed_body),
	    cmocka_unit_test(test_route_several_params),
	    cmocka_unit_test(test_route_rest_param),
	    cmocka_unit_test(test_parser_arena_is_lazy_and_released),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
