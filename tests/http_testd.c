/*
 * moat-http-testd: src/http's server with a test-only route table, for the
 * integration tests of what the management API does not route yet
 * (tests/integration/test_http_stream.py): streamed request bodies to a
 * callback and to files, streamed answers from a callback, static files
 * with ETag and ranges. Built only with the tests; never installed.
 *
 *   moat-http-testd --port N --cert F --key F [--stream-max BYTES]
 *                   [--upload-dir DIR] [--static DIR]
 *
 * Prints "ready" once listening; stops at SIGTERM/SIGINT or EOF on stdin.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "http/server.h"

enum route_id {
	R_STATS,
	R_SINK,
	R_FILE,
	R_REFUSE,
	R_GEN,
	R_FILES,
	R_SMALL,
	R_WS,
	R__COUNT,
};

static const struct moat_http_route routes[] = {
    [R_STATS] = {MOAT_HTTP_GET, "/stats", "", 0, NULL},
    [R_SINK] = {MOAT_HTTP_PUT, "/upload/sink", "", 0, NULL},
    [R_FILE] = {MOAT_HTTP_PUT, "/upload/file/{name}", "", 0, NULL},
    [R_REFUSE] = {MOAT_HTTP_PUT, "/upload/refuse", "", 0, NULL},
    [R_GEN] = {MOAT_HTTP_GET, "/gen/{n}", "", 0, NULL},
    [R_FILES] = {MOAT_HTTP_GET, "/files/{file*}", "", 0, NULL},
    [R_SMALL] = {MOAT_HTTP_POST, "/small", "", 1024, NULL},
    [R_WS] = {MOAT_HTTP_GET, "/ws", "", 0, NULL},
};

static struct {
	size_t stream_max;
	const char *upload_dir;
	const char *static_dir;
	struct moat_http_server *srv;
	uint64_t sink_chunks, sink_chunk_max, aborts;
	uint64_t ws_open, ws_closed, ws_full;
} g;

static int route_of(const struct moat_http_req *req, struct moat_http_params *p)
{
	bool known;

	return moat_http_route_find(routes, R__COUNT, req->method, req->path, req->path_len, p,
				    &known, NULL, 0);
}

static size_t body_limit_cb(void *arg, int method, const char *path, size_t path_len)
{
	struct moat_http_params p;
	bool known;
	int i = moat_http_route_find(routes, R__COUNT, method, path, path_len, &p, &known, NULL, 0);

	(void)arg;
	return i < 0 ? 0 : routes[i].body_max;
}

static size_t stream_limit_cb(void *arg, int method, const char *path, size_t path_len)
{
	struct moat_http_params p;
	bool known;
	int i = moat_http_route_find(routes, R__COUNT, method, path, path_len, &p, &known, NULL, 0);

	(void)arg;
	return i == R_SINK || i == R_FILE || i == R_REFUSE ? g.stream_max : 0;
}

static void answer(struct moat_http_resp *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void answer(struct moat_http_resp *resp, int status, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		n = 0;
	(void)moat_http_resp_body(resp, status, "application/json", buf, (size_t)n);
}

/* --- a body streamed to a callback: counted and hashed --- */

struct hash_sink {
	EVP_MD_CTX *md;
	uint64_t bytes;
};

static moat_err hs_chunk_cb(void *arg, const uint8_t *data, size_t len)
{
	struct hash_sink *h = arg;

	h->bytes += len;
	g.sink_chunks++;
	if (len > g.sink_chunk_max)
		g.sink_chunk_max = len;
	return EVP_DigestUpdate(h->md, data, len) == 1 ? MOAT_OK : MOAT_E_CRYPTO;
}

static void hs_end_cb(void *arg, const struct moat_http_req *req, struct moat_http_resp *resp)
{
	struct hash_sink *h = arg;
	unsigned char d[32];
	char hex[65];
	unsigned i, dl = 0;

	(void)EVP_DigestFinal_ex(h->md, d, &dl);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	answer(resp, 200, "{\"bytes\":%llu,\"streamed\":%llu,\"sha256\":\"%s\"}",
	       (unsigned long long)h->bytes, (unsigned long long)req->streamed, hex);
	EVP_MD_CTX_free(h->md);
	free(h);
}

static void hs_abort_cb(void *arg)
{
	struct hash_sink *h = arg;

	g.aborts++;
	EVP_MD_CTX_free(h->md);
	free(h);
}

static void file_done_cb(void *arg, const char *name, uint64_t size,
			 const struct moat_http_req *req, struct moat_http_resp *resp)
{
	(void)arg;
	(void)req;
	answer(resp, 201, "{\"name\":\"%s\",\"bytes\":%llu}", name, (unsigned long long)size);
}

/* --- an answer generated piece by piece --- */

struct gen {
	uint64_t pos, end;
};

static moat_err gen_read_cb(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
	struct gen *gn = arg;
	size_t i, n = gn->end - gn->pos < cap ? (size_t)(gn->end - gn->pos) : cap;

	for (i = 0; i < n; i++)
		buf[i] = (uint8_t)((gn->pos + i) % 251);
	gn->pos += n;
	*got = n;
	return MOAT_OK;
}

static void gen_free_cb(void *arg)
{
	free(arg);
}

/* --- a WebSocket echo: "close" closes, "flood" fills the send queue --- */

static void ws_open_cb(void *arg, struct moat_http_ws *ws)
{
	(void)arg;
	g.ws_open++;
	(void)moat_http_ws_send(ws, true, "hello", 5);
}

static void ws_message_cb(void *arg, struct moat_http_ws *ws, bool text, const uint8_t *data,
			  size_t len)
{
	static uint8_t block[32768];
	char msg[64];
	unsigned n = 0;

	(void)arg;
	if (text && len == 5 && memcmp(data, "close", 5) == 0) {
		moat_http_ws_close(ws, 1000, "bye");
		return;
	}
	if (text && len == 5 && memcmp(data, "flood", 5) == 0) {
		while (moat_http_ws_send(ws, false, block, sizeof(block)) == MOAT_OK)
			n++;
		g.ws_full++;
		snprintf(msg, sizeof(msg), "queued %u", n);
		moat_http_ws_close(ws, 1008, msg);
		return;
	}
	(void)moat_http_ws_send(ws, text, data, len);
}

static void ws_close_cb(void *arg)
{
	(void)arg;
	g.ws_closed++;
}

static void handle_cb(void *arg, const struct moat_http_req *req, struct moat_http_resp *resp)
{
	struct moat_http_params p;
	int r = route_of(req, &p);

	(void)arg;
	switch (r) {
	case R_STATS: {
		const struct moat_http_stats *st = moat_http_server_stats(g.srv);
		answer(resp, 200,
		       "{\"open\":%llu,\"idle\":%llu,\"idle_bytes\":%llu,\"conn_bytes_max\":%llu,"
		       "\"requests\":%llu,\"sink_chunks\":%llu,\"sink_chunk_max\":%llu,"
		       "\"aborts\":%llu,\"ws_open\":%llu,\"ws_closed\":%llu,\"ws_full\":%llu}",
		       (unsigned long long)st->open, (unsigned long long)st->idle,
		       (unsigned long long)st->idle_bytes, (unsigned long long)st->conn_bytes_max,
		       (unsigned long long)st->requests, (unsigned long long)g.sink_chunks,
		       (unsigned long long)g.sink_chunk_max, (unsigned long long)g.aborts,
		       (unsigned long long)g.ws_open, (unsigned long long)g.ws_closed,
		       (unsigned long long)g.ws_full);
		return;
	}
	case R_SINK: {
		struct hash_sink *h = calloc(1, sizeof(*h));
		if (h == NULL || (h->md = EVP_MD_CTX_new()) == NULL ||
		    EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
			if (h)
				EVP_MD_CTX_free(h->md);
			free(h);
			answer(resp, 500, "{}");
			return;
		}
		resp->sink.chunk_cb = hs_chunk_cb;
		resp->sink.end_cb = hs_end_cb;
		resp->sink.abort_cb = hs_abort_cb;
		resp->sink.arg = h;
		return;
	}
	case R_FILE: {
		moat_err rc;
		if (g.upload_dir == NULL) {
			answer(resp, 404, "{}");
			return;
		}
		rc = moat_http_sink_file(&resp->sink, g.upload_dir, moat_http_param(&p, "name"),
					 file_done_cb, NULL);
		if (rc == MOAT_E_EXISTS)
			answer(resp, 409, "{\"error\":\"exists\"}");
		else if (rc != MOAT_OK)
			answer(resp, 500, "{\"error\":\"%s\"}", moat_strerror(rc));
		return;
	}
	case R_REFUSE:
		answer(resp, 403, "{\"error\":\"refused before the body\"}");
		return;
	case R_GEN: {
		struct moat_http_source src = {NULL, NULL, NULL, -1, 0, 0};
		struct gen *gn = calloc(1, sizeof(*gn));
		char *end;
		char q[8];
		if (gn == NULL) {
			answer(resp, 500, "{}");
			return;
		}
		gn->end = strtoull(moat_http_param(&p, "n"), &end, 10);
		src.read_cb = gen_read_cb;
		src.free_cb = gen_free_cb;
		src.arg = gn;
		src.length = moat_http_query_get(req->query, "chunked", q, sizeof(q)) == MOAT_OK
				 ? MOAT_HTTP_LENGTH_UNKNOWN
				 : gn->end;
		moat_http_resp_source(resp, 200, "application/octet-stream", &src);
		return;
	}
	case R_FILES:
		if (g.static_dir == NULL) {
			answer(resp, 404, "{}");
			return;
		}
		moat_http_static(g.static_dir, moat_http_param(&p, "file"), req, resp);
		return;
	case R_SMALL:
		answer(resp, 200, "{\"bytes\":%zu}", req->body_len);
		return;
	case R_WS: {
		static const struct moat_http_ws_handler h = {ws_open_cb, ws_message_cb,
							      ws_close_cb, NULL};
		(void)moat_http_ws_accept(req, resp, &h);
		return;
	}
	default:
		answer(resp, 404, "{\"error\":\"not found\"}");
		return;
	}
}

int main(int argc, char **argv)
{
	struct moat_listener_conf lc;
	struct moat_http_server_opts o;
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	const char *cert = NULL, *key = NULL;
	char err[256], line[16];
	sigset_t set;
	int i, sig;

	memset(&lc, 0, sizeof(lc));
	snprintf(lc.name, sizeof(lc.name), "test");
	snprintf(lc.bind, sizeof(lc.bind), "127.0.0.1");
	lc.protocol = MOAT_PROTO_HTTPS;
	lc.tls = true;
	g.stream_max = 1024 * 1024;
	for (i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--port") == 0)
			lc.port = (uint16_t)strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--cert") == 0)
			cert = argv[i + 1];
		else if (strcmp(argv[i], "--key") == 0)
			key = argv[i + 1];
		else if (strcmp(argv[i], "--stream-max") == 0)
			g.stream_max = strtoull(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--upload-dir") == 0)
			g.upload_dir = argv[i + 1];
		else if (strcmp(argv[i], "--static") == 0)
			g.static_dir = argv[i + 1];
	}
	if (ctx == NULL || cert == NULL || key == NULL ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "usage: moat-http-testd --port N --cert F --key F ...\n");
		return 2;
	}
	memset(&o, 0, sizeof(o));
	o.listeners[0].conf = &lc;
	o.listeners[0].ctx = &ctx;
	o.n_listeners = 1;
	o.ctx_lock = &lock;
	o.handle = handle_cb;
	o.body_limit = body_limit_cb;
	o.stream_limit = stream_limit_cb;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (moat_http_server_start(&o, &g.srv, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat-http-testd: %s\n", err);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	(void)sigwait(&set, &sig);
	(void)line;
	moat_http_server_stop(g.srv);
	SSL_CTX_free(ctx);
	return 0;
}
