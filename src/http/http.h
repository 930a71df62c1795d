/*
 * HTTP/1.1 for the management API: request parsing (llhttp, compiled from
 * Debian's node-llhttp sources), responses with the security headers every
 * answer carries, and a route table. The server loop is in server.h.
 *
 * Parsing is incremental and bounded by limits.h (target, header count and
 * bytes, body per route); a request that breaks a bound is answered with
 * its status (400, 413, 414, 431, 501, 505) and the connection is closed.
 */
#ifndef MOAT_HTTP_H
#define MOAT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "core/error.h"
#include "core/limits.h"

enum moat_http_method {
	MOAT_HTTP_GET = HTTP_GET,
	MOAT_HTTP_HEAD = HTTP_HEAD,
	MOAT_HTTP_POST = HTTP_POST,
	MOAT_HTTP_PUT = HTTP_PUT,
	MOAT_HTTP_PATCH = HTTP_PATCH,
	MOAT_HTTP_DELETE = HTTP_DELETE,
	MOAT_HTTP_OPTIONS = HTTP_OPTIONS,
};

struct moat_http_header {
	const char *name; /* NUL-terminated, as sent */
	const char *value;
	size_t value_len;
};

/* A complete request. Every pointer points into the parser and is valid
 * until moat_http_parser_next. */
struct moat_http_req {
	int method;	    /* llhttp_method_t */
	const char *target; /* path and query, NUL-terminated */
	const char *path;   /* the target up to '?', NUL-terminated copy */
	size_t path_len;
	const char *query; /* after '?', or "" */
	size_t n_headers;
	const struct moat_http_header *headers; /* n_headers of them */
	const uint8_t *body;
	size_t body_len;
	/* A route whose body streams (see moat_http_parser_set_stream): true
	 * from the head on; body is "" and streamed counts what went to the
	 * sink. */
	bool streaming;
	uint64_t streamed;
	bool keep_alive;
	uint8_t http_minor; /* HTTP/1.x */
	const char *peer;   /* client address, set by the server */
	/* A verified client certificate's device identity and serial (lowercase
	 * hex), or "" when the client sent none. Set by the server. */
	const char *peer_identity;
	const char *peer_serial;
	/* SHA-256 (lowercase hex) of the trust anchor that verified the client
	 * certificate's chain: the Moat CA or a registered manufacturer CA. */
	const char *peer_anchor;
	/* The client certificate's public key (SubjectPublicKeyInfo DER), so
	 * enrollment can insist on a new key; peer_key_len 0 when none. */
	const uint8_t *peer_key;
	size_t peer_key_len;
};

/* Case-insensitive lookup; NULL when absent. With duplicates, the first. */
const char *moat_http_header(const struct moat_http_req *req, const char *name);
/* How many times a header appears (duplicate Content-Type etc. is refused). */
size_t moat_http_header_count(const struct moat_http_req *req, const char *name);

/* The body limit for a request, decided when its head is complete:
 * 0 = no body allowed. */
typedef size_t (*moat_http_body_limit_cb)(void *arg, int method, const char *path, size_t path_len);
/* One piece of a streamed body. MOAT_OK, or an error that ends the request
 * (MOAT_E_FULL answers 507, anything else 500). */
typedef moat_err (*moat_http_chunk_cb)(void *arg, const uint8_t *data, size_t len);

enum moat_http_pstate {
	MOAT_HTTP_P_IDLE = 0, /* nothing of a request yet */
	MOAT_HTTP_P_HEAD,     /* inside the request line or headers */
	MOAT_HTTP_P_STREAM,   /* head of a streamed request complete: call
			       * moat_http_parser_stream to take its body */
	MOAT_HTTP_P_BODY,     /* head complete, reading the body */
	MOAT_HTTP_P_DONE,     /* a complete request is in req */
	MOAT_HTTP_P_ERROR,    /* status/why say what to answer; then close */
};

/* What one request in progress needs: allocated when its first byte
 * arrives, given back by moat_http_parser_release once the connection is
 * idle (an idle keep-alive connection holds none of it). */
struct moat_http_arena {
	/* target and header names/values, NUL-terminated */
	char head[MOAT_HTTP_MAX_HEAD + 1];
	char path[MOAT_HTTP_MAX_TARGET + 1];
	size_t name_off[MOAT_HTTP_MAX_HEADERS];
	size_t value_off[MOAT_HTTP_MAX_HEADERS];
	size_t value_len[MOAT_HTTP_MAX_HEADERS];
	struct moat_http_header headers[MOAT_HTTP_MAX_HEADERS];
};

struct moat_http_parser {
	llhttp_t p;
	llhttp_settings_t s;
	enum moat_http_pstate state;
	int status;		   /* error answer (400, 413, ...) in state ERROR */
	const char *why;	   /* short reason for the log and the problem detail */
	bool expect_continue;	   /* the client waits for "100 Continue" */
	struct moat_http_arena *a; /* NULL while idle */
	size_t head_len;
	size_t tok_off; /* start of the token being collected */
	int last;	/* what the last data callback collected */
	size_t target_off;
	size_t n_headers;
	uint8_t *body; /* malloc'd up to body_limit */
	size_t body_len, body_cap, body_limit;
	moat_http_body_limit_cb limit_cb;
	void *limit_arg;
	moat_http_body_limit_cb stream_cb; /* a streamed body's limit, 0: buffered */
	bool streaming;
	moat_http_chunk_cb chunk_cb;
	void *chunk_arg;
	struct moat_http_req req;
};

void moat_http_parser_init(struct moat_http_parser *hp, moat_http_body_limit_cb cb, void *arg);
void moat_http_parser_free(struct moat_http_parser *hp);
/* Routes whose bodies stream: cb (called with the limit callback's arg)
 * returns the body limit of such a route (at most MOAT_HTTP_STREAM_MAX),
 * 0 for a route whose body is buffered. The parser then stops after the
 * head (state STREAM, moat_http_parser_feed returns MOAT_OK) and hands
 * every piece of the body to the callback moat_http_parser_stream names,
 * holding none of it. */
void moat_http_parser_set_stream(struct moat_http_parser *hp, moat_http_body_limit_cb cb);
/* In state STREAM: take the body (state BODY; then DONE as usual). */
void moat_http_parser_stream(struct moat_http_parser *hp, moat_http_chunk_cb cb, void *arg);
/*
 * Feed bytes. Sets *used to how many were consumed: parsing stops right
 * after a complete request (pipelined bytes after it stay with the caller).
 * Returns MOAT_OK with state DONE (a request is in hp->req), MOAT_E_AGAIN
 * when more bytes are needed, or MOAT_E_MALFORMED / MOAT_E_TOO_LARGE /
 * MOAT_E_LIMIT with state ERROR and hp->status set.
 */
moat_err moat_http_parser_feed(struct moat_http_parser *hp, const uint8_t *data, size_t len,
			       size_t *used);
/* After a DONE request was answered: get ready for the next one. */
void moat_http_parser_next(struct moat_http_parser *hp);
/* Between requests (state IDLE): free the arena and body buffer; the next
 * byte allocates them again. A no-op in any other state. */
void moat_http_parser_release(struct moat_http_parser *hp);
/* Bytes of heap the parser holds now (arena and body buffer). */
size_t moat_http_parser_held(const struct moat_http_parser *hp);

/*
 * Taking a streamed body (a route declared with MOAT_HTTP_ROUTE_STREAM):
 * the handler, called when the head is complete, either answers at once
 * (a refusal: the body is not read and the connection closes) or sets
 * resp->sink. Then every piece of the body goes to chunk_cb, and end_cb
 * answers once the body is complete; if the request fails first (the
 * client goes away, a timeout, the route's limit) abort_cb is called
 * instead. Exactly one of end_cb and abort_cb is called.
 */
struct moat_http_resp;
struct moat_http_sink {
	moat_http_chunk_cb chunk_cb;
	void (*end_cb)(void *arg, const struct moat_http_req *req, struct moat_http_resp *resp);
	void (*abort_cb)(void *arg);
	void *arg;
};

/* A body written to a new file: dir/name, created with O_EXCL (an existing
 * file is MOAT_E_EXISTS), not following symlinks; fsync'd (file and
 * directory) before done_cb answers; removed if the request fails or the
 * fsync does. name is one path segment. */
typedef void (*moat_http_file_done_cb)(void *arg, const char *name, uint64_t size,
				       const struct moat_http_req *req,
				       struct moat_http_resp *resp);
moat_err moat_http_sink_file(struct moat_http_sink *sink, const char *dir, const char *name,
			     moat_http_file_done_cb done_cb, void *arg);

/*
 * A streamed answer: the body comes from read_cb (fill up to cap bytes, set
 * *got; 0 bytes is the end) or, when read_cb is NULL, from fd (read from
 * offset; closed afterwards). length is the body's size, or
 * MOAT_HTTP_LENGTH_UNKNOWN for chunked transfer coding. The server reads a
 * piece only when the previous one has gone to TLS (constant memory);
 * free_cb (if set) runs once at the end, whatever happened.
 */
#define MOAT_HTTP_LENGTH_UNKNOWN UINT64_MAX
struct moat_http_source {
	moat_err (*read_cb)(void *arg, uint8_t *buf, size_t cap, size_t *got);
	void (*free_cb)(void *arg);
	void *arg;
	int fd;
	uint64_t offset;
	uint64_t length;
};

/*
 * WebSocket (RFC 6455). A handler accepts an upgrade request (after its
 * own authentication) with moat_http_ws_accept; the connection then
 * carries messages until either side closes. Callbacks run on the server
 * thread: open_cb once the 101 answer is queued (messages sent from it
 * follow the answer), message_cb per complete text or binary message from
 * the client (at most MOAT_HTTP_WS_MAX_MSG bytes; 1009 beyond), close_cb
 * exactly once when the connection ends for any reason (after it, ws is
 * gone: free arg there).
 */
struct moat_http_ws; /* one WebSocket connection, owned by the server */
struct moat_http_ws_handler {
	void (*open_cb)(void *arg, struct moat_http_ws *ws);
	void (*message_cb)(void *arg, struct moat_http_ws *ws, bool text, const uint8_t *data,
			   size_t len);
	void (*close_cb)(void *arg);
	void *arg;
};
/* Queue a message; MOAT_E_FULL when MOAT_HTTP_WS_MAX_QUEUE bytes already
 * wait for this client (the caller decides: drop it, or close). */
moat_err moat_http_ws_send(struct moat_http_ws *ws, bool text, const void *data, size_t len);
/* Start the closing handshake (code 1000 normal, 1008 policy, ...). */
void moat_http_ws_close(struct moat_http_ws *ws, uint16_t code, const char *reason);

/* Response being built by a handler. */
struct moat_http_resp {
	int status;
	char ctype[80];
	char headers[2048]; /* extra "Name: value\r\n" lines */
	size_t headers_len;
	bool headers_full; /* an extra header did not fit: answer 500 */
	char *body;	   /* malloc'd */
	size_t body_len;
	bool close; /* close the connection after this answer */
	/* The body streams from here instead (moat_http_resp_source). */
	bool streamed;
	struct moat_http_source src;
	/* Accepting a streamed request body (see moat_http_sink). */
	struct moat_http_sink sink;
	/* Cache-Control to send instead of "no-store" (public static files). */
	char cache_control[64];
	bool http10; /* set by the server: no chunked coding, close instead */
	/* Set by moat_http_ws_accept: the connection becomes a WebSocket. */
	struct moat_http_ws_handler ws;
};

/*
 * Answer a WebSocket upgrade (RFC 6455 4.2): GET with "Upgrade: websocket",
 * "Connection: Upgrade", Sec-WebSocket-Version 13 (else 426 naming it) and
 * a Sec-WebSocket-Key of 16 bytes in base64 (else 400); an Origin header,
 * when sent, must be this server's own origin, https://<Host> (else 403:
 * another site's page cannot ride an operator's session cookie). On
 * success resp is the 101 answer with Sec-WebSocket-Accept and takes h;
 * otherwise resp holds the problem answer and h is untouched.
 */
moat_err moat_http_ws_accept(const struct moat_http_req *req, struct moat_http_resp *resp,
			     const struct moat_http_ws_handler *h);

void moat_http_resp_init(struct moat_http_resp *r);
void moat_http_resp_free(struct moat_http_resp *r);
/* Add a header line; name and value must not contain CR or LF (refused). */
void moat_http_resp_header(struct moat_http_resp *r, const char *name, const char *value);
/* Set the body (copied). */
moat_err moat_http_resp_body(struct moat_http_resp *r, int status, const char *ctype,
			     const void *body, size_t len);
/* A short RFC 9457 problem+json answer (type under moat.dev/problems/,
 * the status's reason as title); for the HTTP layer's own refusals, where
 * detail is a fixed sentence (it is not escaped). */
void moat_http_resp_problem(struct moat_http_resp *r, int status, const char *type,
			    const char *detail);
/* Set the body, taking ownership of a malloc'd buffer. */
void moat_http_resp_take(struct moat_http_resp *r, int status, const char *ctype, char *body,
			 size_t len);
/* Answer with a streamed body (owned by resp from now on: released by
 * moat_http_resp_free unless the server took it). */
void moat_http_resp_source(struct moat_http_resp *r, int status, const char *ctype,
			   const struct moat_http_source *src);
/* Release a source: free_cb, close(fd). */
void moat_http_source_free(struct moat_http_source *src);
/*
 * Answer GET/HEAD with the regular file fd (taken: closed in every case):
 * a strong ETag (size, mtime, inode), Accept-Ranges, Cache-Control
 * (cache_control, or "no-cache": revalidate with the ETag), 304 when
 * If-None-Match matches, 206 with Content-Range for one satisfiable byte
 * range (If-Range honoured with the strong ETag), 416 with a Content-Range
 * of "bytes", "*", "/" and the size when the range cannot be satisfied.
 * Other Range forms (several ranges, other units) are ignored: the whole
 * file.
 * The body streams from fd (struct moat_http_source).
 */
void moat_http_resp_file(struct moat_http_resp *r, const struct moat_http_req *req, int fd,
			 const char *ctype, const char *cache_control);
/* The file rel ("css/app.css") under dir, as moat_http_resp_file answers
 * it; 404 for a name with an empty, "." or ".." segment, a backslash, or
 * one that resolves outside dir (by "..", an absolute or escaping
 * symlink), and for anything but a regular file. */
void moat_http_static(const char *dir, const char *rel, const struct moat_http_req *req,
		      struct moat_http_resp *resp);
/* Content type by extension (html, css, js, json, svg, png, ...); else
 * application/octet-stream. */
const char *moat_http_content_type(const char *name);
struct stat;
/* A strong entity-tag for a file: "size-mtime_ns-inode" in hex, quoted. */
void moat_http_etag(const struct stat *st, char *out, size_t outlen);
/* The bytes on the wire: status line, security headers, extra headers,
 * Content-Length, body (omitted for HEAD). Malloc'd into *out. */
moat_err moat_http_resp_serialize(const struct moat_http_resp *r, bool keep_alive, bool head,
				  char **out, size_t *outlen);
const char *moat_http_reason(int status);

/* Route table: "/api/v1/updates/{id}/artifacts/{name}" style patterns; a
 * {param} matches one non-empty path segment of [A-Za-z0-9._~-] (anything
 * else is 404), at most MOAT_HTTP_PARAM_MAX - 1 bytes. A last segment
 * {param*} matches one or more such segments to the end of the path
 * ("/console/{file*}" takes "css/app.css"): no empty segment, no "." or
 * "..", at most MOAT_HTTP_PARAM_REST_MAX - 1 bytes. Values are in pattern
 * order in v[], except a {param*}'s, which is in rest (its v[] is "");
 * moat_http_param finds either by name. */
struct moat_http_params {
	size_t n;
	char v[MOAT_HTTP_MAX_PARAMS][MOAT_HTTP_PARAM_MAX];
	char rest[MOAT_HTTP_PARAM_REST_MAX];
	const char *name[MOAT_HTTP_MAX_PARAMS]; /* into the pattern, name_len bytes */
	size_t name_len[MOAT_HTTP_MAX_PARAMS];
};

/* The value of the parameter called name, or NULL. */
const char *moat_http_param(const struct moat_http_params *p, const char *name);

struct moat_http_route {
	int method;
	const char *pattern;
	const char *perm; /* the permission the API checks; documented per route */
	size_t body_max;  /* 0 = no body */
	void *handler;	  /* the API's handler (its own type) */
};

/* Index of the route for method+path, or -1. When the path matches some
 * route with another method, *path_known is set (405 rather than 404) and
 * allow (if not NULL) gets the allowed methods ("GET, POST"). */
int moat_http_route_find(const struct moat_http_route *routes, size_t n, int method,
			 const char *path, size_t path_len, struct moat_http_params *params,
			 bool *path_known, char *allow, size_t allowlen);

/* Query string: the value of key (percent-decoded, '+' is a space), or
 * MOAT_E_NOTFOUND; MOAT_E_MALFORMED for bad escapes or a NUL; MOAT_E_LIMIT
 * when it does not fit. A key given twice is MOAT_E_INVAL. */
moat_err moat_http_query_get(const char *query, const char *key, char *out, size_t outlen);
/* Every key in the query is one of keys[] (else *bad names the first). */
bool moat_http_query_only(const char *query, const char *const *keys, size_t nkeys, char *bad,
			  size_t badlen);

#endif
