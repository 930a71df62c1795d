/*
 * libFuzzer target for HTTP request parsing (llhttp plus parse.c's limits
 * and arena) and routing: arbitrary bytes, fed in pieces whose sizes the
 * input chooses, must never crash, leak or break the parser's promises:
 * a DONE request has an absolute path no longer than the limit, at most
 * MOAT_HTTP_MAX_HEADERS NUL-terminated headers and a body within its
 * route's limit; an ERROR carries a 4xx/5xx status. Every parsed request
 * is routed against the API's real route table and its query read.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Paths starting "/s" stream their bodies (limit 200 bytes), like an upload
 * route: the pieces go to chunk_cb and nothing is buffered. */
static size_t stream_cb(void *arg, int method, const char *path, size_t path_len)
{
	(void)arg;
	(void)method;
	return path_len >= 2 && path[1] == 's' ? 200 : 0;
}

struct streamed {
	size_t total;
};

static moat_err chunk_cb(void *arg, const uint8_t *data, size_t len)
{
	struct streamed *st = arg;

	if (len == 0 || data == NULL)
		abort();
	st->total += len;
	if (st->total > 200)
		abort(); /* over the stream limit: the parser must have refused */
	/* a piece ending in '!' fails the sink (500/507 paths) */
	return data[len - 1] == '!' ? MOAT_E_IO : data[len - 1] == '?' ? MOAT_E_FULL : MOAT_OK;
}

static size_t limit_cb(void *arg, int method, const char *path, size_t path_len)
{
	(void)arg;
	(void)method;
	(void)path;
	/* small limits reach the 413 paths quickly */
	return path_len % 3 == 0 ? 0 : path_len % 3 == 1 ? 64 : MOAT_HTTP_BODY_DEFAULT;
}

static void check_request(const struct moat_http_parser *hp)
{
	const struct moat_http_req *r = &hp->req;
	const struct moat_http_route *routes;
	struct moat_http_params params;
	char allow[128], val[256];
	bool known;
	size_t n, i;

	if (r->path[0] != '/' || strlen(r->path) != r->path_len ||
	    r->path_len > MOAT_HTTP_MAX_TARGET || r->n_headers > MOAT_HTTP_MAX_HEADERS ||
	    r->body_len > MOAT_HTTP_BODY_DEFAULT || (r->body_len > 0 && r->body == NULL) ||
	    (r->streaming && r->body_len != 0))
		abort();
	for (i = 0; i < r->n_headers; i++)
		if (strlen(r->headers[i].value) != r->headers[i].value_len)
			abort();
	(void)moat_http_header(r, "content-type");
	routes = moat_api_routes(&n);
	if (moat_http_route_find(routes, n, r->method, r->path, r->path_len, &params, &known, allow,
				 sizeof(allow)) >= 0) {
		for (i = 0; i < params.n; i++)
			if (params.v[i][0] == '\0' || strchr(params.v[i], '/') != NULL)
				abort();
	}
	if (moat_http_query_get(r->query, "cursor", val, sizeof(val)) == MOAT_OK &&
	    strlen(val) >= sizeof(val))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_http_parser *hp;
	size_t off = 1, chunk;
	struct streamed st = {0};

	if (size < 1)
		return 0;
	chunk = (size_t)data[0] % 17u + 1u; /* 1..17 bytes per feed, or all at once */
	if (data[0] >= 240)
		chunk = size;
	hp = malloc(sizeof(*hp));
	if (hp == NULL)
		return 0;
	moat_http_parser_init(hp, limit_cb, NULL);
	moat_http_parser_set_stream(hp, stream_cb);
	while (off < size) {
		size_t len = size - off < chunk ? size - off : chunk, used = 0;
		moat_err rc = moat_http_parser_feed(hp, data + off, len, &used);
		if (used > len)
			abort();
		off += used;
		if (rc == MOAT_OK && hp->state == MOAT_HTTP_P_STREAM) {
			if (!hp->req.streaming || hp->req.path[1] != 's' || hp->body_cap != 0)
				abort();
			st.total = 0;
			moat_http_parser_stream(hp, chunk_cb, &st);
			continue;
		}
		if (rc == MOAT_OK) {
			struct moat_http_resp resp;
			char *wire = NULL;
			size_t wlen = 0;
			check_request(hp);
			moat_http_resp_init(&resp);
			(void)moat_http_resp_body(&resp, 200, "application/json", "{}", 2);
			moat_http_resp_header(&resp, "X-Path", hp->req.path);
			if (moat_http_resp_serialize(&resp, hp->req.keep_alive, false, &wire,
						     &wlen) == MOAT_OK)
				free(wire);
			moat_http_resp_free(&resp);
			if (hp->req.streaming &&
			    (hp->req.streamed != st.total || hp->body_cap != 0))
				abort();
			moat_http_parser_next(hp);
			/* an idle connection gives its buffers back */
			moat_http_parser_release(hp);
			if (moat_http_parser_held(hp) != 0)
				abort();
			continue;
		}
		if (rc == MOAT_E_AGAIN) {
			if (used == 0 && len > 0)
				abort(); /* AGAIN must consume what it was given */
			continue;
		}
		if (hp->state != MOAT_HTTP_P_ERROR || hp->status < 400 || hp->status > 599)
			abort();
		break;
	}
	moat_http_parser_free(hp);
	free(hp);
	return 0;
}
