#define _GNU_SOURCE
/*
 * The management plane's HTTPS server loop (see server.h). One connection
 * is: a TLS handshake, then requests parsed by parse.c and answered in
 * order by the handler; pipelined requests are answered one after another
 * while their responses queue (up to MOAT_HTTP_MAX_OUT, then we stop
 * reading). Deadlines close slow clients: the head of a request must arrive
 * within MOAT_HTTP_HEADER_TIMEOUT_MS, its body within
 * MOAT_HTTP_BODY_TIMEOUT_MS, and an idle connection lives
 * MOAT_HTTP_IDLE_TIMEOUT_MS.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <wslay/wslay.h>

#include "core/log.h"
#include "core/net.h"
#include "core/reactor.h"
#include "http/server.h"
#include "tls/tls.h"

enum hc_phase {
	HC_HANDSHAKE = 0,
	HC_OPEN,
};

struct hconn {
	struct moat_ev ev;
	struct moat_http_server *s;
	struct hconn *prev, *next;
	SSL *ssl;
	enum hc_phase phase;
	enum moat_http_pstate seen; /* parser state at the last deadline update */
	bool dead;
	bool close_after;     /* close once out is flushed */
	bool lingering;	      /* answered and half-closed; draining what the peer still sends */
	bool shut;	      /* close_notify sent */
	bool tls_wants_read;  /* SSL_write needs the peer's bytes first */
	bool tls_wants_write; /* SSL_read needs to send first (renegotiation-like) */
	size_t drained;
	bool continue_sent;
	char peer[64];
	char peer_identity[MOAT_DEVICE_ID_MAX + 1]; /* from a client certificate, or "" */
	char peer_serial[72];
	char peer_anchor[65];
	uint8_t peer_key[MOAT_HTTP_PEER_KEY_MAX];
	size_t peer_key_len;
	struct moat_http_parser hp;
	uint8_t *pend; /* read but not yet parsed (behind queued answers) */
	size_t pend_len;
	char *out;
	size_t out_len, out_off, out_cap;
	uint64_t deadline;
	unsigned requests;
	/* a streamed request body going to the handler's sink */
	bool sinking;
	struct moat_http_sink sink;
	/* a streamed answer: one piece at a time, when out is empty */
	bool sourcing;
	bool src_chunked;
	struct moat_http_source src;
	uint64_t src_left; /* bytes still to send when the length is known */
	/* after a WebSocket upgrade: frames by wslay, bytes read before the
	 * upgrade completed (pend, from pend_off) go to it first */
	wslay_event_context_ptr ws;
	struct moat_http_ws_handler wsh;
	size_t pend_off;
	uint64_t ws_heard; /* when the client last sent a frame */
	bool ws_pinged;
};

struct hlisten {
	struct moat_ev ev;
	struct moat_http_server *s;
	size_t idx;
};

struct moat_http_server {
	struct moat_http_server_opts o;
	struct moat_reactor r;
	struct moat_ev wake; /* eventfd: stop */
	struct moat_ev tick; /* timerfd: once a second */
	struct hlisten ls[MOAT_MAX_LISTENERS];
	size_t n_ls;
	struct hconn *conns;
	struct hconn *dead;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	struct moat_http_stats st;
	uint8_t rbuf[16384];
	uint8_t sbuf[16384]; /* one piece of a streamed answer */
};

static void hc_event_cb(struct moat_ev *ev, uint32_t events);

static size_t out_pending(const struct hconn *c);

/* Heap bytes this connection's buffers hold now. */
static size_t hc_held(const struct hconn *c)
{
	return moat_http_parser_held(&c->hp) + c->out_cap + c->pend_len +
	       (c->ws ? wslay_event_get_queued_msg_length(c->ws) : 0);
}

/* Between requests: nothing read of the next one, nothing to send. */
static bool hc_idle(const struct hconn *c)
{
	return !c->dead && c->phase == HC_OPEN && !c->lingering && !c->close_after && !c->ws &&
	       c->hp.state == MOAT_HTTP_P_IDLE && c->pend == NULL && out_pending(c) == 0 &&
	       !c->sourcing && !c->sinking;
}

static bool hc_has_output(const struct hconn *c)
{
	return out_pending(c) > 0 || c->sourcing;
}

/* A streamed body that will not complete: the handler undoes its part. */
static void hc_sink_abort(struct hconn *c)
{
	if (!c->sinking)
		return;
	c->sinking = false;
	c->sink.abort_cb(c->sink.arg);
}

static void hc_src_free(struct hconn *c)
{
	if (!c->sourcing)
		return;
	c->sourcing = false;
	moat_http_source_free(&c->src);
}

/* Give an idle connection's buffers back (the next request allocates them
 * again), and note the high-water mark of what a connection held. */
static void hc_settle(struct hconn *c)
{
	size_t held = hc_held(c);

	if (held > c->s->st.conn_bytes_max)
		c->s->st.conn_bytes_max = held;
	if (!hc_idle(c))
		return;
	moat_http_parser_release(&c->hp);
	free(c->out);
	c->out = NULL;
	c->out_off = c->out_len = c->out_cap = 0;
}

static void hc_close(struct hconn *c)
{
	struct moat_http_server *s = c->s;

	if (c->dead)
		return;
	c->dead = true;
	hc_sink_abort(c);
	hc_src_free(c);
	if (c->ws) {
		c->wsh.close_cb(c->wsh.arg);
		wslay_event_context_free(c->ws);
		c->ws = NULL;
	}
	moat_reactor_del(&s->r, &c->ev);
	if (c->ssl && c->phase == HC_OPEN && !c->shut)
		(void)SSL_shutdown(c->ssl); /* best effort close_notify */
	close(c->ev.fd);
	c->ev.fd = -1;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = s->dead;
	s->dead = c;
	s->st.open--;
}

static void hc_free(struct hconn *c)
{
	SSL_free(c->ssl);
	moat_http_parser_free(&c->hp);
	free(c->pend);
	free(c->out);
	free(c);
}

static void reap(struct moat_http_server *s)
{
	while (s->dead) {
		struct hconn *c = s->dead;
		s->dead = c->next;
		hc_free(c);
	}
}

static size_t out_pending(const struct hconn *c)
{
	return c->out_len - c->out_off;
}

static moat_err out_append(struct hconn *c, const char *p, size_t n)
{
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + n > c->out_cap) {
		size_t ncap = c->out_cap ? c->out_cap : 4096;
		char *nb;
		if (c->out_off > 0) { /* compact first */
			memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
		}
		while (ncap < c->out_len + n)
			ncap *= 2;
		nb = realloc(c->out, ncap);
		if (nb == NULL)
			return MOAT_E_NOMEM;
		c->out = nb;
		c->out_cap = ncap;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return MOAT_OK;
}

static void hc_want(struct hconn *c, uint32_t events)
{
	if (c->ev.events != events)
		(void)moat_reactor_mod(&c->s->r, &c->ev, events);
}

/*
 * Watch for what this connection can act on now. The socket is level
 * triggered: watching EPOLLIN while we refuse to read (answers queued over
 * MOAT_HTTP_MAX_OUT, or the last answer going out) would spin the thread.
 */
static void hc_interest(struct hconn *c)
{
	uint32_t ev = 0;
	bool reading = c->pend == NULL && !c->close_after;

	if (c->dead)
		return;
	if (c->ws) {
		if (wslay_event_want_read(c->ws) || c->tls_wants_read)
			ev |= EPOLLIN;
		if (out_pending(c) > 0 || wslay_event_want_write(c->ws) || c->tls_wants_write)
			ev |= EPOLLOUT;
		hc_want(c, ev);
		return;
	}
	if (c->lingering || reading || c->tls_wants_read)
		ev |= EPOLLIN;
	if (hc_has_output(c) || c->tls_wants_write)
		ev |= EPOLLOUT;
	hc_want(c, ev);
}

/*
 * The last answer is out and the connection must close. Closing at once
 * while the client is still sending (a body we refused with 413) makes the
 * kernel answer with a reset that can destroy our answer before the client
 * reads it; so half-close and drain for a moment first (a lingering close,
 * as Apache and nginx do).
 */
static void hc_finish(struct hconn *c)
{
	if (c->dead || c->lingering)
		return;
	if (c->phase == HC_OPEN) {
		(void)SSL_shutdown(c->ssl);
		c->shut = true;
	}
	(void)shutdown(c->ev.fd, SHUT_WR);
	c->lingering = true;
	c->deadline = moat_now_ms() + MOAT_HTTP_LINGER_MS;
	hc_want(c, EPOLLIN);
}

/* Discard what arrives on a lingering connection; close at EOF. */
static void hc_drain(struct hconn *c)
{
	char buf[4096];

	for (;;) {
		ssize_t n = recv(c->ev.fd, buf, sizeof(buf), 0);
		if (n > 0) {
			c->drained += (size_t)n;
			if (c->drained > MOAT_HTTP_BODY_MAX) {
				hc_close(c);
				return;
			}
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		hc_close(c);
		return;
	}
}

/*
 * The next piece of a streamed answer into out (which is empty): at most
 * sbuf's size, framed as a chunk when the length is unknown. false on a
 * source error or a source shorter than its Content-Length: the answer
 * cannot be completed, so the connection must close.
 */
static bool hc_produce(struct hconn *c)
{
	uint8_t *buf = c->s->sbuf;
	size_t cap = sizeof(c->s->sbuf), got = 0;
	bool known = c->src.length != MOAT_HTTP_LENGTH_UNKNOWN;
	char hdr[24];
	int hl;

	if (known && c->src_left < cap)
		cap = (size_t)c->src_left;
	if (cap > 0 && c->src.read_cb) {
		if (c->src.read_cb(c->src.arg, buf, cap, &got) != MOAT_OK || got > cap)
			return false;
	} else if (cap > 0) {
		ssize_t n;
		do
			n = pread(c->src.fd, buf, cap, (off_t)c->src.offset);
		while (n < 0 && errno == EINTR);
		if (n < 0 && errno == ESPIPE)
			n = read(c->src.fd, buf, cap);
		if (n < 0)
			return false;
		got = (size_t)n;
	}
	c->src.offset += got;
	if (got == 0) {
		if (known && c->src_left > 0) {
			log_warn("http_stream_short", "peer=%s missing=%llu", c->peer,
				 (unsigned long long)c->src_left);
			return false;
		}
		hc_src_free(c);
		return !c->src_chunked || out_append(c, "0\r\n\r\n", 5) == MOAT_OK;
	}
	if (c->src_chunked) {
		hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", got);
		if (hl <= 0 || out_append(c, hdr, (size_t)hl) != MOAT_OK)
			return false;
	}
	if (out_append(c, (const char *)buf, got) != MOAT_OK ||
	    (c->src_chunked && out_append(c, "\r\n", 2) != MOAT_OK))
		return false;
	if (known) {
		c->src_left -= got;
		if (c->src_left == 0)
			hc_src_free(c);
	}
	return true;
}

/* Write what is queued, and the pieces of a streamed answer while TLS
 * takes them. false when the connection was closed. */
static bool hc_flush(struct hconn *c)
{
	for (;;) {
		int n;
		size_t chunk;

		if (out_pending(c) == 0) {
			if (!c->sourcing)
				break;
			if (!hc_produce(c)) {
				hc_close(c);
				return false;
			}
			continue;
		}
		chunk = out_pending(c);
		if (chunk > 1u << 30)
			chunk = 1u << 30;
		ERR_clear_error();
		n = SSL_write(c->ssl, c->out + c->out_off, (int)chunk);
		if (n > 0) {
			c->out_off += (size_t)n;
			if (c->sourcing) /* a long download lives while it moves */
				c->deadline = moat_now_ms() + MOAT_HTTP_IDLE_TIMEOUT_MS;
			continue;
		}
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_WRITE:
			hc_interest(c);
			return true;
		case SSL_ERROR_WANT_READ:
			c->tls_wants_read = true;
			hc_interest(c);
			return true;
		default:
			hc_close(c);
			return false;
		}
	}
	c->tls_wants_read = false;
	c->out_off = c->out_len = 0;
	if (c->close_after) {
		hc_finish(c);
		return false;
	}
	hc_interest(c);
	return true;
}

static void queue_resp(struct hconn *c, struct moat_http_resp *resp, bool keep_alive, bool head)
{
	char *wire = NULL;
	size_t len = 0;
	int cls = resp->headers_full ? 5 : resp->status / 100;

	if (moat_http_resp_serialize(resp, keep_alive, head, &wire, &len) != MOAT_OK ||
	    out_append(c, wire, len) != MOAT_OK) {
		free(wire);
		hc_close(c);
		return;
	}
	free(wire);
	if (cls >= 1 && cls <= 5)
		c->s->st.by_class[cls]++;
	if (!keep_alive || resp->close)
		c->close_after = true;
	if (resp->streamed && !head && !resp->headers_full && resp->status != 204 &&
	    resp->status != 304 && resp->status >= 200) {
		/* the body follows piece by piece (hc_flush) */
		c->src = resp->src;
		c->sourcing = true;
		c->src_chunked = c->src.length == MOAT_HTTP_LENGTH_UNKNOWN && !resp->http10;
		c->src_left = c->src.length;
		resp->streamed = false;
		resp->src.fd = -1;
		resp->src.free_cb = NULL;
	}
}

/* An answer the parser decided (400, 413, ...): problem+json, then close. */
static void hc_refuse(struct hconn *c, int status, const char *why)
{
	struct moat_http_resp resp;
	char body[512];
	int n;

	hc_sink_abort(c);
	moat_http_resp_init(&resp);
	n = snprintf(body, sizeof(body),
		     "{\"type\":\"https://moat.dev/problems/%s\",\"title\":\"%s\","
		     "\"status\":%d,\"detail\":\"%s\"}",
		     status == 413   ? "payload-too-large"
		     : status == 408 ? "timeout"
				     : "bad-request",
		     moat_http_reason(status), status, why);
	if (n > 0 && (size_t)n < sizeof(body))
		(void)moat_http_resp_body(&resp, status, "application/problem+json", body,
					  (size_t)n);
	resp.close = true;
	queue_resp(c, &resp, false, false);
	moat_http_resp_free(&resp);
	log_info("http_refused", "peer=%s status=%d reason=\"%s\"", c->peer, status, why);
}

static void hc_deadline(struct hconn *c, uint64_t now)
{
	enum moat_http_pstate st = c->hp.state;

	if (st == c->seen)
		return;
	c->seen = st;
	if (st == MOAT_HTTP_P_HEAD)
		c->deadline = now + MOAT_HTTP_HEADER_TIMEOUT_MS;
	else if (st == MOAT_HTTP_P_BODY)
		c->deadline = now + MOAT_HTTP_BODY_TIMEOUT_MS;
	else if (st == MOAT_HTTP_P_IDLE)
		c->deadline = now + MOAT_HTTP_IDLE_TIMEOUT_MS;
}

/* --- WebSocket: wslay reads and writes through TLS --- */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
			  void *user)
{
	struct hconn *c = user;
	int n;

	(void)flags;
	if (c->pend != NULL) { /* frames that came with the upgrade request */
		size_t k = c->pend_len - c->pend_off < len ? c->pend_len - c->pend_off : len;
		memcpy(buf, c->pend + c->pend_off, k);
		c->pend_off += k;
		if (c->pend_off == c->pend_len) {
			free(c->pend);
			c->pend = NULL;
			c->pend_len = c->pend_off = 0;
		}
		return (ssize_t)k;
	}
	if (len > INT32_MAX)
		len = INT32_MAX;
	ERR_clear_error();
	n = SSL_read(c->ssl, buf, (int)len);
	if (n > 0)
		return n;
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_WRITE:
		c->tls_wants_write = true;
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	case SSL_ERROR_WANT_READ:
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	default:
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
			  void *user)
{
	struct hconn *c = user;
	int n;

	(void)flags;
	if (len > INT32_MAX)
		len = INT32_MAX;
	ERR_clear_error();
	n = SSL_write(c->ssl, data, (int)len);
	if (n > 0)
		return n;
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_READ:
		c->tls_wants_read = true;
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	case SSL_ERROR_WANT_WRITE:
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	default:
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
}

static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
	(void)ctx;
	(void)user;
	return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

static void ws_frame_start_cb(wslay_event_context_ptr ctx,
			      const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
	struct hconn *c = user;

	(void)ctx;
	(void)arg;
	c->ws_heard = moat_now_ms();
	c->ws_pinged = false;
	c->deadline = c->ws_heard + MOAT_HTTP_WS_IDLE_MS;
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
		      void *user)
{
	struct hconn *c = user;

	(void)ctx;
	if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
		c->wsh.message_cb(c->wsh.arg, (struct moat_http_ws *)c,
				  arg->opcode == WSLAY_TEXT_FRAME, arg->msg, arg->msg_length);
}

static bool hc_ws_start(struct hconn *c, const struct moat_http_ws_handler *h)
{
	static const struct wslay_event_callbacks cbs = {
	    ws_recv_cb, ws_send_cb, ws_genmask_cb, ws_frame_start_cb, NULL, NULL, ws_msg_cb,
	};

	if (wslay_event_context_server_init(&c->ws, &cbs, c) != 0) {
		c->ws = NULL;
		return false;
	}
	wslay_event_config_set_max_recv_msg_length(c->ws, MOAT_HTTP_WS_MAX_MSG);
	c->wsh = *h;
	c->ws_heard = moat_now_ms();
	c->deadline = c->ws_heard + MOAT_HTTP_WS_IDLE_MS;
	c->pend_off = 0;
	return true;
}

/* Frames in and out once the 101 answer is out; false when closed. */
static bool hc_ws_io(struct hconn *c)
{
	if (out_pending(c) > 0 && !hc_flush(c))
		return false;
	if (c->dead || out_pending(c) > 0)
		return !c->dead;
	c->tls_wants_read = c->tls_wants_write = false;
	if (wslay_event_recv(c->ws) != 0 || wslay_event_send(c->ws) != 0) {
		hc_close(c);
		return false;
	}
	if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)) {
		/* closed (both ways, or after a 1009/1002 of ours): drain what
		 * the client still sends so it reads our close frame */
		hc_finish(c);
		return false;
	}
	hc_interest(c);
	return true;
}

moat_err moat_http_ws_send(struct moat_http_ws *ws, bool text, const void *data, size_t len)
{
	struct hconn *c = (struct hconn *)ws;
	struct wslay_event_msg m;

	if (c->dead || c->ws == NULL)
		return MOAT_E_INVAL;
	if (wslay_event_get_queued_msg_length(c->ws) + len > MOAT_HTTP_WS_MAX_QUEUE)
		return MOAT_E_FULL;
	m.opcode = text ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME;
	m.msg = data;
	m.msg_length = len;
	if (wslay_event_queue_msg(c->ws, &m) != 0)
		return MOAT_E_INVAL; /* closing: nothing more may be sent */
	hc_interest(c);
	return MOAT_OK;
}

void moat_http_ws_close(struct moat_http_ws *ws, uint16_t code, const char *reason)
{
	struct hconn *c = (struct hconn *)ws;

	if (c->dead || c->ws == NULL)
		return;
	(void)wslay_event_queue_close(c->ws, code, (const uint8_t *)reason,
				      reason ? strlen(reason) : 0);
	hc_interest(c);
}

static moat_err hc_chunk_cb(void *arg, const uint8_t *data, size_t len)
{
	struct hconn *c = arg;

	/* a big upload lives while it moves */
	c->deadline = moat_now_ms() + MOAT_HTTP_BODY_TIMEOUT_MS;
	return c->sink.chunk_cb(c->sink.arg, data, len);
}

/*
 * Answer the request in the parser. head_only: the head of a request whose
 * body streams; the handler refuses (an answer, then close: the body is
 * never read) or takes the body with a sink.
 */
static void hc_dispatch(struct hconn *c, bool head_only)
{
	struct moat_http_server *s = c->s;
	struct moat_http_resp resp;
	bool keep_alive;

	c->hp.req.peer = c->peer;
	c->hp.req.peer_identity = c->peer_identity;
	c->hp.req.peer_serial = c->peer_serial;
	c->hp.req.peer_anchor = c->peer_anchor;
	c->hp.req.peer_key = c->peer_key;
	c->hp.req.peer_key_len = c->peer_key_len;
	if (head_only || !c->sinking) {
		c->requests++;
		s->st.requests++;
	}
	/* The next request starts an idle period, even when its bytes are
	 * already here (hc_deadline then moves to the head deadline). */
	c->deadline = moat_now_ms() + MOAT_HTTP_IDLE_TIMEOUT_MS;
	c->seen = head_only ? MOAT_HTTP_P_BODY : MOAT_HTTP_P_IDLE;
	if (!head_only)
		c->continue_sent = false; /* the next request may ask again */
	/* RFC 9112 3.2: an HTTP/1.1 request without exactly one Host is a bad
	 * request. (Checked here, not in the parser, which is not HTTP/1.1
	 * specific.) */
	if (!c->sinking && c->hp.req.http_minor == 1 &&
	    moat_http_header_count(&c->hp.req, "host") != 1) {
		s->st.bad_requests++;
		hc_refuse(c, 400, "HTTP/1.1 requests need exactly one Host header");
		moat_http_parser_next(&c->hp);
		return;
	}
	moat_http_resp_init(&resp);
	resp.http10 = c->hp.req.http_minor == 0;
	if (c->sinking) { /* the streamed body is complete */
		c->sinking = false;
		c->sink.end_cb(c->sink.arg, &c->hp.req, &resp);
	} else {
		s->o.handle(s->o.arg, &c->hp.req, &resp);
	}
	if (head_only && resp.sink.chunk_cb && resp.sink.end_cb && resp.sink.abort_cb) {
		c->sink = resp.sink;
		c->sinking = true;
		c->deadline = moat_now_ms() + MOAT_HTTP_BODY_TIMEOUT_MS;
		moat_http_parser_stream(&c->hp, hc_chunk_cb, c);
		moat_http_resp_free(&resp);
		return;
	}
	if (resp.sink.abort_cb) /* a sink set on a request that does not stream */
		resp.sink.abort_cb(resp.sink.arg);
	if (resp.ws.close_cb != NULL) {
		if (!head_only && resp.status == 101 && !resp.headers_full &&
		    hc_ws_start(c, &resp.ws)) {
			queue_resp(c, &resp, true, false);
			moat_http_resp_free(&resp);
			/* the parser is done with this connection: its arena goes */
			moat_http_parser_next(&c->hp);
			moat_http_parser_release(&c->hp);
			c->wsh.open_cb(c->wsh.arg, (struct moat_http_ws *)c);
			return;
		}
		resp.ws.close_cb(resp.ws.arg);
		if (resp.status == 101)
			moat_http_resp_take(&resp, 500, NULL, NULL, 0);
	}
	keep_alive =
	    !head_only && c->hp.req.keep_alive && c->requests < MOAT_HTTP_MAX_REQUESTS_PER_CONN;
	queue_resp(c, &resp, keep_alive, c->hp.req.method == MOAT_HTTP_HEAD);
	moat_http_resp_free(&resp);
	if (!head_only)
		moat_http_parser_next(&c->hp);
}

/* Parse and answer what [data, data+len) holds; keep what cannot be
 * handled yet in c->pend. false when the connection was closed. */
static bool hc_process(struct hconn *c, const uint8_t *data, size_t len)
{
	while (len > 0 && !c->dead) {
		size_t used = 0;
		moat_err rc;

		if (c->close_after)
			return true; /* answering the last request; ignore the rest */
		if (out_pending(c) > MOAT_HTTP_MAX_OUT || c->sourcing || c->ws) {
			uint8_t *np = malloc(len);
			if (np == NULL) {
				hc_close(c);
				return false;
			}
			memcpy(np, data, len);
			free(c->pend);
			c->pend = np;
			c->pend_len = len;
			return true;
		}
		rc = moat_http_parser_feed(&c->hp, data, len, &used);
		data += used;
		len -= used;
		if (rc == MOAT_OK) {
			hc_dispatch(c, c->hp.state == MOAT_HTTP_P_STREAM);
			continue;
		}
		if (rc == MOAT_E_AGAIN)
			break;
		hc_sink_abort(c);
		c->s->st.bad_requests++;
		hc_refuse(c, c->hp.status, c->hp.why);
		return !c->dead;
	}
	if (!c->dead && c->hp.expect_continue && !c->continue_sent && !c->close_after &&
	    c->hp.state != MOAT_HTTP_P_STREAM) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		c->continue_sent = true;
		(void)out_append(c, cont, sizeof(cont) - 1);
	}
	if (!c->dead && c->hp.state == MOAT_HTTP_P_IDLE)
		c->continue_sent = false;
	return !c->dead;
}

static void hc_read(struct hconn *c)
{
	struct moat_http_server *s = c->s;

	/* Bytes parked behind queued answers go first. */
	if (c->pend != NULL && out_pending(c) <= MOAT_HTTP_MAX_OUT && !c->sourcing) {
		uint8_t *p = c->pend;
		size_t n = c->pend_len;
		c->pend = NULL;
		c->pend_len = 0;
		(void)hc_process(c, p, n);
		free(p);
		if (c->dead)
			return;
	}
	while (!c->dead && c->pend == NULL && !c->close_after && !c->ws) {
		int n;
		ERR_clear_error();
		n = SSL_read(c->ssl, s->rbuf, (int)sizeof(s->rbuf));
		if (n > 0) {
			if (!hc_process(c, s->rbuf, (size_t)n))
				return;
			continue;
		}
		c->tls_wants_write = false;
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_READ:
			return;
		case SSL_ERROR_WANT_WRITE:
			c->tls_wants_write = true;
			hc_interest(c);
			return;
		default: /* closed by the peer, or a TLS error */
			hc_close(c);
			return;
		}
	}
}

static void hc_event_cb(struct moat_ev *ev, uint32_t events)
{
	struct hconn *c = moat_container_of(ev, struct hconn, ev);
	uint64_t now = moat_now_ms();

	if (c->dead)
		return;
	if (events & (EPOLLERR | EPOLLHUP)) {
		hc_close(c);
		return;
	}
	if (c->lingering) {
		hc_drain(c);
		return;
	}
	if (c->phase == HC_HANDSHAKE) {
		int r;
		ERR_clear_error();
		r = SSL_accept(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ) {
				hc_want(c, EPOLLIN);
				return;
			}
			if (e == SSL_ERROR_WANT_WRITE) {
				hc_want(c, EPOLLIN | EPOLLOUT);
				return;
			}
			c->s->st.tls_failures++;
			{
				char tlserr[256] = "";
				moat_tls_errors(tlserr, sizeof(tlserr));
				log_info("http_tls_failed", "peer=%s error=\"%s\"", c->peer,
					 tlserr);
			}
			hc_close(c);
			return;
		}
		c->phase = HC_OPEN;
		if (moat_tls_peer_identity(c->ssl, c->peer_identity, sizeof(c->peer_identity)) !=
		    MOAT_OK)
			c->peer_identity[0] = '\0';
		else
			moat_tls_peer_serial(c->ssl, c->peer_serial, sizeof(c->peer_serial));
		moat_tls_peer_anchor(c->ssl, c->peer_anchor, sizeof(c->peer_anchor));
		{
			X509 *pc = SSL_get0_peer_certificate(c->ssl);
			int kl = pc ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(pc), NULL) : 0;
			unsigned char *kp = c->peer_key;

			c->peer_key_len = 0;
			if (kl > 0 && (size_t)kl <= sizeof(c->peer_key) &&
			    i2d_X509_PUBKEY(X509_get_X509_PUBKEY(pc), &kp) == kl)
				c->peer_key_len = (size_t)kl;
		}
		c->seen = MOAT_HTTP_P_ERROR; /* force a deadline update */
		hc_deadline(c, now);
	}
	if (c->ws) {
		(void)hc_ws_io(c);
		return;
	}
	if (hc_has_output(c) && !hc_flush(c))
		return;
	hc_read(c);
	if (c->dead)
		return;
	if (c->ws) { /* upgraded by what was just read */
		(void)hc_ws_io(c);
		hc_settle(c);
		return;
	}
	hc_deadline(c, now);
	if (hc_has_output(c)) {
		if (!hc_flush(c))
			return;
	} else if (c->close_after) {
		hc_finish(c);
		return;
	} else {
		hc_interest(c);
	}
	hc_settle(c);
}

static void listen_cb(struct moat_ev *ev, uint32_t events)
{
	struct hlisten *hl = moat_container_of(ev, struct hlisten, ev);
	struct moat_http_server *s = hl->s;
	int i;

	(void)events;
	for (i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char addr[64];
		struct hconn *c, *o;
		size_t same = 0;
		int one = 1;
		SSL_CTX *ctx;
		int fd = accept4(ev->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("accept_failed", "listener=%s errno=%d",
					 s->o.listeners[hl->idx].conf->name, errno);
			return;
		}
		moat_sockaddr_str(&ss, addr, sizeof(addr));
		for (o = s->conns; o; o = o->next)
			if (strcmp(o->peer, addr) == 0)
				same++;
		if (s->st.open >= MOAT_HTTP_MAX_CONNS || same >= MOAT_HTTP_MAX_CONNS_PER_ADDR) {
			s->st.refused++;
			log_warn("http_connection_refused", "peer=%s reason=%s", addr,
				 same >= MOAT_HTTP_MAX_CONNS_PER_ADDR ? "per_address_limit"
								      : "connection_limit");
			close(fd);
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		pthread_mutex_lock(s->o.ctx_lock);
		ctx = *s->o.listeners[hl->idx].ctx;
		c->ssl = ctx ? SSL_new(ctx) : NULL;
		pthread_mutex_unlock(s->o.ctx_lock);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
			SSL_free(c->ssl);
			free(c);
			close(fd);
			continue;
		}
		/* RELEASE_BUFFERS: OpenSSL frees its record buffers while a
		 * connection has nothing in flight (an idle keep-alive connection
		 * would otherwise keep ~34 KiB). */
		SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
					 SSL_MODE_RELEASE_BUFFERS);
		c->s = s;
		c->ev.fd = fd;
		c->ev.cb = hc_event_cb;
		snprintf(c->peer, sizeof(c->peer), "%s", addr);
		moat_http_parser_init(&c->hp, s->o.body_limit, s->o.arg);
		moat_http_parser_set_stream(&c->hp, s->o.stream_limit);
		c->deadline = moat_now_ms() + MOAT_HTTP_HEADER_TIMEOUT_MS;
		c->seen = MOAT_HTTP_P_IDLE;
		if (moat_reactor_add(&s->r, &c->ev, EPOLLIN) != MOAT_OK) {
			hc_free(c);
			close(fd);
			continue;
		}
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		s->st.open++;
		s->st.connections++;
	}
}

static void tick_cb(struct moat_ev *ev, uint32_t events)
{
	struct moat_http_server *s = moat_container_of(ev, struct moat_http_server, tick);
	uint64_t exp, now = moat_now_ms();
	struct hconn *c, *next;

	(void)events;
	if (read(ev->fd, &exp, sizeof(exp)) < 0 && errno != EAGAIN)
		log_debug("tick_read", "errno=%d", errno);
	for (c = s->conns; c; c = next) {
		next = c->next;
		if (c->ws && !c->ws_pinged && now - c->ws_heard >= MOAT_HTTP_WS_PING_MS) {
			struct wslay_event_msg ping = {WSLAY_PING, NULL, 0};
			c->ws_pinged = true;
			if (wslay_event_queue_msg(c->ws, &ping) == 0)
				hc_interest(c);
		}
		if (now < c->deadline)
			continue;
		if (c->lingering) {
			hc_close(c);
			continue;
		}
		s->st.timeouts++;
		if (c->phase == HC_OPEN && !hc_has_output(c) &&
		    (c->hp.state == MOAT_HTTP_P_HEAD || c->hp.state == MOAT_HTTP_P_BODY)) {
			log_info("http_timeout", "peer=%s phase=%s", c->peer,
				 c->hp.state == MOAT_HTTP_P_HEAD ? "head" : "body");
			hc_refuse(c, 408,
				  c->hp.state == MOAT_HTTP_P_HEAD
				      ? "the request head did not arrive in time"
				      : "the request body did not arrive in time");
			if (!c->dead)
				(void)hc_flush(c);
			if (!c->dead)
				hc_close(c);
		} else {
			hc_close(c);
		}
	}
	if (s->o.tick)
		s->o.tick(s->o.arg, now);
}

static void wake_cb(struct moat_ev *ev, uint32_t events)
{
	struct moat_http_server *s = moat_container_of(ev, struct moat_http_server, wake);
	uint64_t v;

	(void)events;
	if (read(ev->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("wake_read", "errno=%d", errno);
	if (atomic_load(&s->stop))
		s->r.stop = true;
}

static void *server_main(void *arg)
{
	struct moat_http_server *s = arg;

	while (!s->r.stop) {
		(void)moat_reactor_poll(&s->r, 1000, NULL, NULL);
		reap(s);
	}
	while (s->conns)
		hc_close(s->conns);
	reap(s);
	return NULL;
}

static void server_free(struct moat_http_server *s)
{
	size_t i;

	for (i = 0; i < s->n_ls; i++)
		if (s->ls[i].ev.fd >= 0)
			close(s->ls[i].ev.fd);
	if (s->wake.fd >= 0)
		close(s->wake.fd);
	if (s->tick.fd >= 0)
		close(s->tick.fd);
	moat_reactor_close(&s->r);
	free(s);
}

moat_err moat_http_server_start(const struct moat_http_server_opts *opts,
				struct moat_http_server **out, char *err, size_t errlen)
{
	struct itimerspec its = {{1, 0}, {1, 0}};
	struct moat_http_server *s;
	moat_err rc = MOAT_E_IO;
	size_t i;

	*out = NULL;
	if (opts->n_listeners == 0)
		return MOAT_OK;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return MOAT_E_NOMEM;
	}
	s->o = *opts;
	s->wake.fd = s->tick.fd = -1;
	for (i = 0; i < MOAT_MAX_LISTENERS; i++)
		s->ls[i].ev.fd = -1;
	atomic_init(&s->stop, false);
	if (moat_reactor_init(&s->r) != MOAT_OK) {
		snprintf(err, errlen, "management thread: cannot create an epoll set");
		goto fail;
	}
	s->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->wake.cb = wake_cb;
	s->tick.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	s->tick.cb = tick_cb;
	if (s->wake.fd < 0 || s->tick.fd < 0 || timerfd_settime(s->tick.fd, 0, &its, NULL) != 0 ||
	    moat_reactor_add(&s->r, &s->wake, EPOLLIN) != MOAT_OK ||
	    moat_reactor_add(&s->r, &s->tick, EPOLLIN) != MOAT_OK) {
		snprintf(err, errlen, "management thread: %s", strerror(errno));
		goto fail;
	}
	for (i = 0; i < opts->n_listeners; i++) {
		struct hlisten *hl = &s->ls[i];
		hl->s = s;
		hl->idx = i;
		hl->ev.cb = listen_cb;
		hl->ev.fd = moat_listen_socket(opts->listeners[i].conf, err, errlen);
		s->n_ls = i + 1;
		if (hl->ev.fd < 0)
			goto fail;
		if (moat_reactor_add(&s->r, &hl->ev, EPOLLIN) != MOAT_OK) {
			snprintf(err, errlen, "management thread: %s", strerror(errno));
			goto fail;
		}
	}
	/* *out is set before the thread exists, so handlers may read it. */
	*out = s;
	if (pthread_create(&s->thread, NULL, server_main, s) != 0) {
		*out = NULL;
		snprintf(err, errlen, "management thread: cannot start");
		goto fail;
	}
	s->started = true;
	return MOAT_OK;
fail:
	server_free(s);
	return rc;
}

void moat_http_server_stop(struct moat_http_server *s)
{
	uint64_t one = 1;

	if (s == NULL)
		return;
	if (s->started) {
		atomic_store(&s->stop, true);
		if (write(s->wake.fd, &one, sizeof(one)) < 0)
			log_warn("http_stop", "errno=%d", errno);
		pthread_join(s->thread, NULL);
	}
	server_free(s);
}

const struct moat_http_stats *moat_http_server_stats(struct moat_http_server *s)
{
	struct hconn *c;

	s->st.idle = s->st.idle_bytes = 0;
	for (c = s->conns; c; c = c->next) {
		if (!hc_idle(c))
			continue;
		s->st.idle++;
		s->st.idle_bytes += hc_held(c);
	}
	return &s->st;
}
