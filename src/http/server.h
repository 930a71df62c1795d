/*
 * The HTTPS server of the management plane: one thread with its own reactor
 * (src/core/reactor.h) serving every `protocol = https` listener, with the
 * same TLS contexts as the broker (a SIGHUP reload swaps them for new
 * connections). Handlers run on this thread and may block briefly (store
 * reads, a group commit, an Argon2id hash): that is why the API has its own
 * thread instead of sharing the MQTT workers' loops.
 */
#ifndef MOAT_HTTP_SERVER_H
#define MOAT_HTTP_SERVER_H

#include <pthread.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "core/config.h"
#include "http/http.h"

struct moat_http_server;

/* Answer one request (fill resp). Runs on the server thread. For a route
 * whose body streams (stream_limit), it is called when the head is
 * complete (req->streaming, no body yet): answer to refuse, or set
 * resp->sink to take the body (the sink's end_cb answers). */
typedef void (*moat_http_handle_cb)(void *arg, const struct moat_http_req *req,
				    struct moat_http_resp *resp);
/* Once a second on the server thread (housekeeping, audit checkpoints). */
typedef void (*moat_http_tick_cb)(void *arg, uint64_t now_ms);

struct moat_http_listener {
	const struct moat_listener_conf *conf;
	SSL_CTX **ctx; /* the slot a reload swaps, read under ctx_lock */
};

struct moat_http_server_opts {
	struct moat_http_listener listeners[MOAT_MAX_LISTENERS];
	size_t n_listeners;
	pthread_mutex_t *ctx_lock;
	moat_http_handle_cb handle;
	moat_http_body_limit_cb body_limit;
	/* Optional: the body limit of a route whose body streams, 0 for the
	 * others (see moat_http_parser_set_stream). */
	moat_http_body_limit_cb stream_limit;
	moat_http_tick_cb tick;
	void *arg;
};

struct moat_http_stats {
	uint64_t connections;  /* accepted */
	uint64_t refused;      /* over the total or per-address connection cap */
	uint64_t tls_failures; /* handshakes that failed */
	uint64_t timeouts;     /* closed by a header, body or idle timeout */
	uint64_t requests;     /* complete requests answered */
	uint64_t bad_requests; /* refused by the parser (400, 413, 414, 431, ...) */
	uint64_t by_class[6];  /* answers by status class: [2] = 2xx ... [5] = 5xx */
	uint64_t open;	       /* connections open now */
	/* Gauges computed when read: connections between requests, and the
	 * bytes of buffers they hold (0: idle connections give everything
	 * back; OpenSSL's own buffers go with SSL_MODE_RELEASE_BUFFERS). */
	uint64_t idle;
	uint64_t idle_bytes;
	/* The most buffer bytes one connection has held (parser arena, body,
	 * output, parked input, stream buffers): constant for streamed bodies
	 * of any size. */
	uint64_t conn_bytes_max;
};

/* Open the listening sockets (errors name the listener) and start the
 * thread; *out is written before the thread starts. No https listener:
 * *out is NULL and MOAT_OK. */
moat_err moat_http_server_start(const struct moat_http_server_opts *opts,
				struct moat_http_server **out, char *err, size_t errlen);
/* Stop accepting, close every connection, join the thread, free. */
void moat_http_server_stop(struct moat_http_server *s);
/* Counters, read on the server thread (handlers) or after stop. */
const struct moat_http_stats *moat_http_server_stats(struct moat_http_server *s);

#endif
