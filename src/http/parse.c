/*
 * Incremental HTTP/1.1 request parsing on top of llhttp. llhttp does the
 * grammar (strict mode: no lenient flags); this file collects the target
 * and headers into one bounded arena, enforces the limits of limits.h and
 * the body limit of the route, and stops after each complete request so
 * pipelined requests are answered one at a time, in order.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "http/http.h"

enum { TOK_NONE = 0, TOK_URL, TOK_FIELD, TOK_VALUE };

static struct moat_http_parser *hp_of(llhttp_t *p)
{
	return p->data;
}

static int hp_fail(struct moat_http_parser *hp, int status, const char *why)
{
	hp->state = MOAT_HTTP_P_ERROR;
	hp->status = status;
	hp->why = why;
	return -1;
}

/* Append a piece of the current token; a token continues across calls. */
static int hp_collect(struct moat_http_parser *hp, int tok, const char *at, size_t len)
{
	if (hp->last != tok) {
		hp->tok_off = hp->head_len;
		hp->last = tok;
	}
	if (len > MOAT_HTTP_MAX_HEAD - hp->head_len)
		return hp_fail(hp, tok == TOK_URL ? 414 : 431,
			       tok == TOK_URL ? "request target too long"
					      : "request head too large");
	if (tok == TOK_URL && hp->head_len - hp->tok_off + len > MOAT_HTTP_MAX_TARGET)
		return hp_fail(hp, 414, "request target too long");
	memcpy(hp->a->head + hp->head_len, at, len);
	hp->head_len += len;
	return 0;
}

/* End the current token with a NUL (which needs one byte of the arena). */
static int hp_terminate(struct moat_http_parser *hp, int tok)
{
	if (hp->last != tok) { /* empty token: no data callback came */
		hp->tok_off = hp->head_len;
		hp->last = tok;
	}
	if (hp->head_len >= MOAT_HTTP_MAX_HEAD)
		return hp_fail(hp, 431, "request head too large");
	if (memchr(hp->a->head + hp->tok_off, '\0', hp->head_len - hp->tok_off) != NULL)
		return hp_fail(hp, 400, "NUL byte in the request head");
	hp->a->head[hp->head_len++] = '\0';
	hp->last = TOK_NONE;
	return 0;
}

static int on_message_begin(llhttp_t *p)
{
	struct moat_http_parser *hp = hp_of(p);

	hp->state = MOAT_HTTP_P_HEAD;
	hp->head_len = 0;
	hp->n_headers = 0;
	hp->last = TOK_NONE;
	hp->body_len = 0;
	hp->expect_continue = false;
	hp->streaming = false;
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	return hp_collect(hp_of(p), TOK_URL, at, len);
}

static int on_url_complete(llhttp_t *p)
{
	struct moat_http_parser *hp = hp_of(p);
	int rc = hp_terminate(hp, TOK_URL);

	hp->target_off = hp->tok_off;
	return rc;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct moat_http_parser *hp = hp_of(p);

	if (hp->state == MOAT_HTTP_P_BODY)
		return 0; /* a chunked trailer: never a request header */

	if (hp->last != TOK_FIELD && hp->n_headers >= MOAT_HTTP_MAX_HEADERS)
		return hp_fail(hp, 431, "too many header fields");
	return hp_collect(hp, TOK_FIELD, at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
	struct moat_http_parser *hp = hp_of(p);
	int rc;

	if (hp->state == MOAT_HTTP_P_BODY)
		return 0;
	if (hp->n_headers >= MOAT_HTTP_MAX_HEADERS)
		return hp_fail(hp, 431, "too many header fields");
	rc = hp_terminate(hp, TOK_FIELD);
	hp->a->name_off[hp->n_headers] = hp->tok_off;
	return rc;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	if (hp_of(p)->state == MOAT_HTTP_P_BODY)
		return 0;
	return hp_collect(hp_of(p), TOK_VALUE, at, len);
}

static int on_header_value_complete(llhttp_t *p)
{
	struct moat_http_parser *hp = hp_of(p);
	int rc;

	if (hp->state == MOAT_HTTP_P_BODY)
		return 0;
	rc = hp_terminate(hp, TOK_VALUE);
	if (rc != 0)
		return rc;
	/* Trailing whitespace is not part of a field value (RFC 9110 5.5);
	 * llhttp strips only the leading part. */
	while (hp->head_len - 1 > hp->tok_off &&
	       (hp->a->head[hp->head_len - 2] == ' ' || hp->a->head[hp->head_len - 2] == '\t')) {
		hp->a->head[hp->head_len - 2] = '\0';
		hp->head_len--;
	}
	hp->a->value_off[hp->n_headers] = hp->tok_off;
	hp->a->value_len[hp->n_headers] = hp->head_len - 1 - hp->tok_off;
	hp->n_headers++;
	return 0;
}

static void hp_fill_req(struct moat_http_parser *hp)
{
	struct moat_http_req *r = &hp->req;
	size_t i;

	r->method = llhttp_get_method(&hp->p);
	r->target = hp->a->head + hp->target_off;
	r->path = hp->a->path;
	r->n_headers = hp->n_headers;
	r->headers = hp->a->headers;
	for (i = 0; i < hp->n_headers; i++) {
		hp->a->headers[i].name = hp->a->head + hp->a->name_off[i];
		hp->a->headers[i].value = hp->a->head + hp->a->value_off[i];
		hp->a->headers[i].value_len = hp->a->value_len[i];
	}
}

static int on_headers_complete(llhttp_t *p)
{
	struct moat_http_parser *hp = hp_of(p);
	const char *target, *q, *expect;
	size_t plen;
	bool chunked = (p->flags & F_CHUNKED) != 0;

	if (hp->last == TOK_URL || hp->target_off >= hp->head_len)
		return hp_fail(hp, 400, "no request target");
	if (llhttp_get_http_major(p) != 1)
		return hp_fail(hp, 505, "only HTTP/1.x is supported");
	target = hp->a->head + hp->target_off;
	if (target[0] != '/')
		return hp_fail(hp, 400, "the request target must be an absolute path");
	q = strchr(target, '?');
	plen = q ? (size_t)(q - target) : strlen(target);
	memcpy(hp->a->path, target, plen);
	hp->a->path[plen] = '\0';
	hp->req.path_len = plen;
	hp->req.query = q ? q + 1 : "";
	hp_fill_req(hp);
	hp->body_limit =
	    hp->stream_cb ? hp->stream_cb(hp->limit_arg, hp->req.method, hp->a->path, plen) : 0;
	hp->streaming = hp->body_limit > 0;
	if (hp->streaming) {
		if (hp->body_limit > MOAT_HTTP_STREAM_MAX)
			hp->body_limit = MOAT_HTTP_STREAM_MAX;
	} else {
		hp->body_limit =
		    hp->limit_cb ? hp->limit_cb(hp->limit_arg, hp->req.method, hp->a->path, plen)
				 : MOAT_HTTP_BODY_DEFAULT;
		if (hp->body_limit > MOAT_HTTP_BODY_MAX)
			hp->body_limit = MOAT_HTTP_BODY_MAX;
	}
	hp->req.streaming = hp->streaming;
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > hp->body_limit)
		return hp_fail(hp, 413, "request body too large for this route");
	if (chunked && hp->body_limit == 0)
		return hp_fail(hp, 413, "this route takes no request body");
	expect = moat_http_header(&hp->req, "expect");
	if (expect != NULL) {
		if (strcasecmp(expect, "100-continue") != 0)
			return hp_fail(hp, 417, "only Expect: 100-continue is understood");
		/* HTTP/1.0 clients do not know 100 Continue (RFC 9110 10.1.1). */
		hp->expect_continue = llhttp_get_http_minor(p) >= 1;
	}
	hp->req.keep_alive = llhttp_should_keep_alive(p) != 0;
	hp->req.http_minor = llhttp_get_http_minor(p);
	if (hp->streaming) {
		/* Stop here: the server asks the handler whether it takes the
		 * body before any of it is read. */
		hp->state = MOAT_HTTP_P_STREAM;
		return HPE_PAUSED;
	}
	hp->state = MOAT_HTTP_P_BODY;
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct moat_http_parser *hp = hp_of(p);

	hp->expect_continue = false; /* the body is coming anyway */
	if (len > hp->body_limit - hp->body_len)
		return hp_fail(hp, 413, "request body too large for this route");
	if (hp->streaming) {
		moat_err rc = hp->chunk_cb ? hp->chunk_cb(hp->chunk_arg, (const uint8_t *)at, len)
					   : MOAT_E_INTERNAL;
		if (rc == MOAT_E_FULL)
			return hp_fail(hp, 507, "no room to store the request body");
		if (rc != MOAT_OK)
			return hp_fail(hp, 500, "the request body could not be stored");
		hp->body_len += len;
		return 0;
	}
	if (hp->body_len + len > hp->body_cap) {
		size_t ncap = hp->body_cap ? hp->body_cap : 1024;
		uint8_t *nb;
		while (ncap < hp->body_len + len)
			ncap *= 2;
		if (ncap > hp->body_limit)
			ncap = hp->body_limit;
		nb = realloc(hp->body, ncap);
		if (nb == NULL)
			return hp_fail(hp, 503, "out of memory");
		hp->body = nb;
		hp->body_cap = ncap;
	}
	memcpy(hp->body + hp->body_len, at, len);
	hp->body_len += len;
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	struct moat_http_parser *hp = hp_of(p);

	hp->state = MOAT_HTTP_P_DONE;
	hp->expect_continue = false;
	hp_fill_req(hp);
	if (hp->streaming) {
		hp->req.body = (const uint8_t *)"";
		hp->req.body_len = 0;
		hp->req.streaming = true;
		hp->req.streamed = hp->body_len;
	} else {
		hp->req.body = hp->body_len ? hp->body : (const uint8_t *)"";
		hp->req.body_len = hp->body_len;
	}
	/* No protocol upgrades here: answer, then close. */
	hp->req.keep_alive = llhttp_should_keep_alive(p) != 0 && !llhttp_get_upgrade(p);
	hp->req.http_minor = llhttp_get_http_minor(p);
	return HPE_PAUSED;
}

void moat_http_parser_init(struct moat_http_parser *hp, moat_http_body_limit_cb cb, void *arg)
{
	memset(hp, 0, sizeof(*hp));
	llhttp_settings_init(&hp->s);
	hp->s.on_message_begin = on_message_begin;
	hp->s.on_url = on_url;
	hp->s.on_url_complete = on_url_complete;
	hp->s.on_header_field = on_header_field;
	hp->s.on_header_field_complete = on_header_field_complete;
	hp->s.on_header_value = on_header_value;
	hp->s.on_header_value_complete = on_header_value_complete;
	hp->s.on_headers_complete = on_headers_complete;
	hp->s.on_body = on_body;
	hp->s.on_message_complete = on_message_complete;
	llhttp_init(&hp->p, HTTP_REQUEST, &hp->s);
	hp->p.data = hp;
	hp->limit_cb = cb;
	hp->limit_arg = arg;
	hp->state = MOAT_HTTP_P_IDLE;
}

void moat_http_parser_free(struct moat_http_parser *hp)
{
	free(hp->a);
	hp->a = NULL;
	if (hp->body != NULL)
		sodium_memzero(hp->body, hp->body_cap);
	free(hp->body);
	hp->body = NULL;
	hp->body_cap = hp->body_len = 0;
}

/* A well-formed "HTTP/x.y" CRLF with x != 1 around the error position
 * (strict llhttp refuses any version but 1.0/1.1 as invalid): 505, not 400. */
static bool version_unsupported(const uint8_t *data, size_t len, const char *pos)
{
	size_t at, start, i;

	if (pos == NULL || pos < (const char *)data || pos > (const char *)data + len)
		return false;
	at = (size_t)(pos - (const char *)data);
	start = at > 16 ? at - 16 : 0;
	for (i = start; i + 10 <= len && i <= at; i++) {
		const uint8_t *v = data + i;
		if (memcmp(v, "HTTP/", 5) != 0)
			continue;
		return v[5] >= '0' && v[5] <= '9' && v[5] != '1' && v[6] == '.' && v[7] >= '0' &&
		       v[7] <= '9' && v[8] == '\r' && v[9] == '\n';
	}
	return false;
}

moat_err moat_http_parser_feed(struct moat_http_parser *hp, const uint8_t *data, size_t len,
			       size_t *used)
{
	llhttp_errno_t e;
	bool at_start = hp->state == MOAT_HTTP_P_IDLE;

	*used = 0;
	if (hp->state == MOAT_HTTP_P_ERROR)
		return MOAT_E_MALFORMED;
	if (hp->state == MOAT_HTTP_P_DONE || hp->state == MOAT_HTTP_P_STREAM)
		return MOAT_OK;
	if (len == 0)
		return MOAT_E_AGAIN;
	if (hp->a == NULL) {
		hp->a = malloc(sizeof(*hp->a));
		if (hp->a == NULL) {
			hp_fail(hp, 503, "out of memory");
			return MOAT_E_NOMEM;
		}
	}
	e = llhttp_execute(&hp->p, (const char *)data, len);
	if (e == HPE_OK) {
		*used = len;
		return MOAT_E_AGAIN;
	}
	if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
		const char *pos = llhttp_get_error_pos(&hp->p);
		*used = pos ? (size_t)(pos - (const char *)data) : len;
		if (hp->state == MOAT_HTTP_P_STREAM && e == HPE_PAUSED)
			return MOAT_OK;
		if (hp->state != MOAT_HTTP_P_DONE) {
			hp_fail(hp, 400, "unexpected upgrade");
			return MOAT_E_MALFORMED;
		}
		if (e == HPE_PAUSED_UPGRADE)
			hp->req.keep_alive = false; /* no upgrades: answer, then close */
		return MOAT_OK;
	}
	if (hp->state != MOAT_HTTP_P_ERROR) {
		int status = 400;
		const char *why = "malformed request";
		/* A well-formed HTTP/2.0 or 3.0 line reaches on_headers_complete
		 * (505 there); an invalid version or method token is a malformed
		 * request line. */
		if (e == HPE_INVALID_VERSION) {
			why = "malformed HTTP version";
			if (version_unsupported(data, len, llhttp_get_error_pos(&hp->p))) {
				status = 505;
				why = "only HTTP/1.x is supported";
			}
		} else if (e == HPE_INVALID_METHOD)
			why = "malformed request line";
		/* "TOKEN SP ..." with a method we do not know: 501 (RFC 9110
		 * 9.1), when the line started in this buffer. */
		if (e == HPE_INVALID_METHOD && at_start) {
			size_t k = 0;
			while (k < len && k < 32 && data[k] >= 'A' && data[k] <= 'Z')
				k++;
			if (k > 0 && k < len && data[k] == ' ') {
				status = 501;
				why = "unknown method";
			}
		}
		hp_fail(hp, status, why);
	}
	switch (hp->status) {
	case 503:
		return MOAT_E_NOMEM;
	case 413:
		return MOAT_E_TOO_LARGE;
	case 414:
	case 431:
		return MOAT_E_LIMIT;
	default:
		return MOAT_E_MALFORMED;
	}
}

void moat_http_parser_next(struct moat_http_parser *hp)
{
	if (hp->state != MOAT_HTTP_P_DONE)
		return;
	hp->state = MOAT_HTTP_P_IDLE;
	hp->head_len = 0;
	hp->n_headers = 0;
	/* Bodies carry passwords, codes and tokens: wipe the one just handled,
	 * whether the buffer is kept or freed. */
	if (hp->body != NULL)
		sodium_memzero(hp->body, hp->body_len);
	hp->body_len = 0;
	hp->streaming = false;
	hp->chunk_cb = NULL;
	hp->chunk_arg = NULL;
	memset(&hp->req, 0, sizeof(hp->req));
	/* Keep a small body buffer for the next request; drop a big one. */
	if (hp->body_cap > MOAT_HTTP_BODY_DEFAULT) {
		free(hp->body);
		hp->body = NULL;
		hp->body_cap = 0;
	}
	llhttp_resume(&hp->p);
}

void moat_http_parser_set_stream(struct moat_http_parser *hp, moat_http_body_limit_cb cb)
{
	hp->stream_cb = cb;
}

void moat_http_parser_stream(struct moat_http_parser *hp, moat_http_chunk_cb cb, void *arg)
{
	if (hp->state != MOAT_HTTP_P_STREAM)
		return;
	hp->chunk_cb = cb;
	hp->chunk_arg = arg;
	hp->state = MOAT_HTTP_P_BODY;
	llhttp_resume(&hp->p);
}

void moat_http_parser_release(struct moat_http_parser *hp)
{
	if (hp->state != MOAT_HTTP_P_IDLE)
		return;
	free(hp->a);
	hp->a = NULL;
	free(hp->body);
	hp->body = NULL;
	hp->body_cap = 0;
}

size_t moat_http_parser_held(const struct moat_http_parser *hp)
{
	return (hp->a ? sizeof(*hp->a) : 0) + hp->body_cap;
}

const char *moat_http_header(const struct moat_http_req *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

size_t moat_http_header_count(const struct moat_http_req *req, const char *name)
{
	size_t i, n = 0;

	for (i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			n++;
	return n;
}
