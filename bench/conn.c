/*
 * The clients of moat-bench and the worker loop that drives them.
 *
 * Each client is one non-blocking TCP socket, one OpenSSL client SSL with its
 * own certificate, and a small state machine: TCP connect -> TLS handshake ->
 * CONNECT/CONNACK -> (SUBSCRIBE/SUBACK) -> ready. Packets go through Moat's
 * codec (mqtt_encode, mqtt_frame, mqtt_decode), so the bench also exercises
 * the codec as a client would.
 *
 * A worker owns an epoll loop and a share of the clients; it never touches
 * another worker's clients. Publishing is paced in one of two ways:
 *   - open loop (--rate): message k of this worker is due at
 *     t_start + k / rate and carries that scheduled time as its timestamp, so
 *     a broker (or a QoS 1 window) that falls behind shows up as latency
 *     rather than as silently fewer messages;
 *   - closed loop (no --rate): as fast as the QoS 1 windows and the
 *     end-to-end cap on undelivered messages (--outstanding) allow. The cap
 *     keeps every broker's per-subscriber queue far below its drop limit, so
 *     the comparison is of work done, not of messages dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "bench.h"
#include "mqtt/codec/codec.h"

#define ROLE_PUB 1u
#define ROLE_SUB 2u

/* Largest packet we accept from a broker; our own are far smaller. */
#define CLIENT_MAX_PACKET (1024u * 1024u)
#define CLIENT_IN_MAX (CLIENT_MAX_PACKET + 16384u)
/* Bytes we let pile up for one client before it is a bench bug. */
#define CLIENT_OUT_MAX (4u * 1024u * 1024u)
/* Stop adding QoS 0 publishes to a client whose socket is this far behind. */
#define CLIENT_OUT_HIGH (64u * 1024u)
/* One TLS record's worth of plaintext per SSL_read. */
#define CLIENT_READ_CHUNK 16384u
/* Messages one publisher may add per visit of the pump. */
#define PUMP_BURST 8u
#define EPOLL_BATCH 256
#define HOUSEKEEPING_NS 1000000000ull

enum client_state {
	CL_IDLE,
	CL_TCP,
	CL_TLS,
	CL_CONNACK,
	CL_SUBACK,
	CL_READY,
	CL_DEAD,
};

struct bench_client {
	struct bench_worker *w;
	unsigned idx;
	unsigned roles;
	enum client_state state;
	int fd;
	SSL *ssl;
	EVP_PKEY *key;
	X509 *cert;
	SSL_SESSION *offer; /* --load-sessions: offered when connecting */
	SSL_SESSION *saved; /* --save-sessions: a copy taken before closing */
	uint32_t events;
	bool ssl_wants_write;
	uint16_t next_pid;
	uint32_t inflight;
	uint32_t window;
	/* QoS 1: when each PUBLISH in flight was sent, by packet id modulo
	 * ack_slots (a power of two at least twice the window, so no two in
	 * flight share a slot even across the packet id wrap) */
	uint64_t *ack_sent;
	uint32_t ack_slots;
	uint32_t seq;
	uint64_t last_tx_ns;
	char id[BENCH_ID_MAX + 1];
	char pub_topic[BENCH_TOPIC_MAX];
	size_t pub_topic_len;
	char sub_filter[BENCH_TOPIC_MAX];
	size_t sub_filter_len;
	struct moat_buf in;
	struct moat_buf out;
};

/* The epoll data pointer of the worker's timerfd. */
static char timer_tag;

static void client_fail(struct bench_client *c, enum bench_errkind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* OpenSSL's error queue as text (cleared), or the socket errno. */
static void ssl_reason(char *buf, size_t len, int ssl_err, int saved_errno)
{
	unsigned long e;
	size_t n = 0;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0 && n + 2 < len) {
		if (n > 0) {
			buf[n++] = ';';
			buf[n++] = ' ';
		}
		ERR_error_string_n(e, buf + n, len - n);
		n = strlen(buf);
	}
	if (n > 0)
		return;
	if (ssl_err == SSL_ERROR_SYSCALL && saved_errno != 0)
		snprintf(buf, len, "%s", strerror(saved_errno));
	else if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_ZERO_RETURN)
		snprintf(buf, len, "connection closed by the broker");
	else
		snprintf(buf, len, "SSL error %d", ssl_err);
}

static const char *state_name(enum client_state s)
{
	switch (s) {
	case CL_IDLE:
		return "idle";
	case CL_TCP:
		return "tcp-connect";
	case CL_TLS:
		return "tls-handshake";
	case CL_CONNACK:
		return "waiting-connack";
	case CL_SUBACK:
		return "waiting-suback";
	case CL_READY:
		return "ready";
	case CL_DEAD:
		return "dead";
	}
	return "?";
}

static void client_close(struct bench_client *c)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		/* Reset rather than linger in TIME_WAIT: runs of thousands of
		 * connections would otherwise exhaust the ephemeral ports. */
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(c->fd);
		c->fd = -1;
	}
	moat_buf_free(&c->in);
	moat_buf_free(&c->out);
}

static bool client_connecting(const struct bench_client *c)
{
	return c->state >= CL_TCP && c->state <= CL_SUBACK;
}

static void client_fail(struct bench_client *c, enum bench_errkind kind, const char *fmt, ...)
{
	char msg[BENCH_ERR_MAX];
	va_list ap;

	if (c->state == CL_DEAD)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	bench_error(c->w->run, kind, "client %s (%s): %s", c->id, state_name(c->state), msg);
	if (client_connecting(c))
		c->w->connecting--;
	client_close(c);
	c->state = CL_DEAD;
	atomic_fetch_add(&c->w->run->dead, 1);
}

static void client_set_events(struct bench_client *c, uint32_t events)
{
	struct epoll_event ev;

	if (c->events == events || c->fd < 0)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = c;
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
		client_fail(c, BENCH_ERR_CONNECT, "epoll_ctl: %s", strerror(errno));
		return;
	}
	c->events = events;
}

/* Readable always; writable while bytes are pending or OpenSSL asked. */
static void client_update_events(struct bench_client *c)
{
	uint32_t ev = EPOLLIN;

	if (moat_buf_used(&c->out) > 0 || c->ssl_wants_write)
		ev |= EPOLLOUT;
	client_set_events(c, ev);
}

static void client_flush(struct bench_client *c)
{
	size_t len;
	int n, e;

	c->ssl_wants_write = false;
	while (c->state != CL_DEAD && moat_buf_used(&c->out) > 0) {
		len = moat_buf_used(&c->out);
		if (len > 256u * 1024u)
			len = 256u * 1024u;
		ERR_clear_error();
		errno = 0;
		n = SSL_write(c->ssl, moat_buf_head(&c->out), (int)len);
		if (n > 0) {
			moat_buf_consume(&c->out, (size_t)n);
			continue;
		}
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_WRITE) {
			c->ssl_wants_write = true;
			break;
		}
		if (e == SSL_ERROR_WANT_READ)
			break;
		{
			char why[256];
			ssl_reason(why, sizeof(why), e, errno);
			client_fail(c, c->state == CL_READY ? BENCH_ERR_CLOSED : BENCH_ERR_TLS,
				    "write failed: %s", why);
		}
		return;
	}
	if (c->state == CL_DEAD)
		return;
	if (moat_buf_used(&c->out) == 0)
		moat_buf_reset(&c->out);
	client_update_events(c);
}

static void client_encode(struct bench_client *c, const struct mqtt_packet *p)
{
	moat_err rc;

	rc = mqtt_encode(&c->out, c->w->run->o->version, p);
	if (rc) {
		client_fail(c, BENCH_ERR_PROTO, "cannot encode %s: %s", mqtt_type_name(p->type),
			    moat_strerror(rc));
		return;
	}
	c->last_tx_ns = bench_now_ns();
}

static uint16_t client_next_pid(struct bench_client *c)
{
	if (++c->next_pid == 0)
		c->next_pid = 1;
	return c->next_pid;
}

static void client_send_connect(struct bench_client *c)
{
	const struct bench_opts *o = c->w->run->o;
	struct mqtt_packet p;

	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNECT;
	p.u.connect.version = o->version;
	p.u.connect.clean_start = true;
	if (o->session_expiry > 0 && (c->roles & ROLE_SUB)) {
		/* A persistent session: v5 keeps clean start (no leftovers of an
		 * earlier run) and asks for an expiry; v3.1.1 has only clean
		 * session 0 for that. */
		if (o->version == MQTT_V5) {
			p.props.present |= MQTT_HAS(MQTT_PROP_SESSION_EXPIRY);
			p.props.session_expiry = o->session_expiry;
		} else {
			p.u.connect.clean_start = false;
		}
	}
	p.u.connect.keepalive = (uint16_t)o->keepalive;
	p.u.connect.client_id.p = (const uint8_t *)c->id;
	p.u.connect.client_id.len = strlen(c->id);
	client_encode(c, &p);
}

static void client_send_subscribe(struct bench_client *c)
{
	const struct bench_opts *o = c->w->run->o;
	struct mqtt_sub_entry e;
	struct mqtt_packet p;
	struct moat_buf raw;
	moat_err rc;

	moat_buf_init(&raw, 1024);
	memset(&e, 0, sizeof(e));
	e.filter.p = (const uint8_t *)c->sub_filter;
	e.filter.len = c->sub_filter_len;
	e.qos = (uint8_t)o->qos;
	rc = mqtt_sub_list_add(&raw, MQTT_SUBSCRIBE, o->version, &e);
	if (rc) {
		client_fail(c, BENCH_ERR_PROTO, "cannot build SUBSCRIBE: %s", moat_strerror(rc));
		goto out;
	}
	memset(&p, 0, sizeof(p));
	p.type = MQTT_SUBSCRIBE;
	p.u.subs.packet_id = client_next_pid(c);
	p.u.subs.raw.p = moat_buf_head(&raw);
	p.u.subs.raw.len = moat_buf_used(&raw);
	p.u.subs.count = 1;
	client_encode(c, &p);
out:
	moat_buf_free(&raw);
}

static void client_send_simple(struct bench_client *c, uint8_t type)
{
	struct mqtt_packet p;

	memset(&p, 0, sizeof(p));
	p.type = type;
	client_encode(c, &p);
}

static void client_became_ready(struct bench_client *c)
{
	c->state = CL_READY;
	c->w->connecting--;
	atomic_fetch_add(&c->w->run->ready, 1);
	if (c == c->w->run->first)
		atomic_store(&c->w->run->first_ready, true);
}

static void client_on_connack(struct bench_client *c, const struct mqtt_packet *p)
{
	const struct bench_opts *o = c->w->run->o;

	if (c->state != CL_CONNACK) {
		client_fail(c, BENCH_ERR_PROTO, "unexpected CONNACK");
		return;
	}
	if (p->u.connack.code != 0) {
		client_fail(c, BENCH_ERR_CONNACK, "CONNACK refused: code 0x%02x",
			    p->u.connack.code);
		return;
	}
	c->window = o->window;
	if (o->version == MQTT_V5 && (p->props.present & MQTT_HAS(MQTT_PROP_RECEIVE_MAXIMUM)) &&
	    p->props.receive_maximum < c->window)
		c->window = p->props.receive_maximum;
	if (c->roles & ROLE_SUB) {
		client_send_subscribe(c);
		c->state = CL_SUBACK;
	} else {
		client_became_ready(c);
	}
}

static void client_on_suback(struct bench_client *c, const struct mqtt_packet *p)
{
	uint8_t code;

	if (c->state != CL_SUBACK || p->u.codes.codes.len != 1) {
		client_fail(c, BENCH_ERR_PROTO, "unexpected SUBACK");
		return;
	}
	code = p->u.codes.codes.p[0];
	if (code >= 0x80) {
		client_fail(c, BENCH_ERR_SUBACK, "SUBSCRIBE %.*s refused: code 0x%02x",
			    (int)c->sub_filter_len, c->sub_filter, code);
		return;
	}
	client_became_ready(c);
}

static void client_on_publish(struct bench_client *c, const struct mqtt_packet *p)
{
	struct bench_worker *w = c->w;
	const uint8_t *pl = p->u.publish.payload.p;
	struct mqtt_packet ack;
	uint64_t ts, now;
	uint32_t magic;

	if (p->u.publish.qos > 0) {
		memset(&ack, 0, sizeof(ack));
		ack.type = MQTT_PUBACK;
		ack.u.ack.packet_id = p->u.publish.packet_id;
		client_encode(c, &ack);
	}
	if (p->u.publish.payload.len < BENCH_PAYLOAD_MIN) {
		client_fail(c, BENCH_ERR_PROTO, "foreign message (payload of %zu bytes)",
			    p->u.publish.payload.len);
		return;
	}
	memcpy(&magic, pl, sizeof(magic));
	if (magic != BENCH_MAGIC) {
		client_fail(c, BENCH_ERR_PROTO, "foreign message (bad magic)");
		return;
	}
	memcpy(&ts, pl + 4, sizeof(ts));
	now = bench_now_ns();
	bench_hist_add(w->hist, now > ts ? now - ts : 0);
	w->d_received++;
	w->last_rx_ns = now;
}

static void client_on_puback(struct bench_client *c, const struct mqtt_packet *p)
{
	if (c->inflight == 0) {
		client_fail(c, BENCH_ERR_PROTO, "PUBACK %u with nothing in flight",
			    p->u.ack.packet_id);
		return;
	}
	c->inflight--;
	c->w->d_acked++;
	if (c->ack_sent != NULL) {
		uint64_t *t = &c->ack_sent[p->u.ack.packet_id & (c->ack_slots - 1)];
		uint64_t now = bench_now_ns();
		if (*t != 0)
			bench_hist_add(c->w->ack_hist, now > *t ? now - *t : 0);
		*t = 0;
	}
	if (p->u.ack.code >= 0x80)
		bench_error(c->w->run, BENCH_ERR_PUBACK, "client %s: PUBLISH %.*s refused: 0x%02x",
			    c->id, (int)c->pub_topic_len, c->pub_topic, p->u.ack.code);
}

static void client_on_packet(struct bench_client *c, const struct mqtt_packet *p)
{
	switch (p->type) {
	case MQTT_CONNACK:
		client_on_connack(c, p);
		break;
	case MQTT_SUBACK:
		client_on_suback(c, p);
		break;
	case MQTT_PUBLISH:
		client_on_publish(c, p);
		break;
	case MQTT_PUBACK:
		client_on_puback(c, p);
		break;
	case MQTT_PINGRESP:
		break;
	case MQTT_DISCONNECT:
		client_fail(c, BENCH_ERR_CLOSED, "broker sent DISCONNECT, reason 0x%02x",
			    p->u.reason.code);
		break;
	default:
		client_fail(c, BENCH_ERR_PROTO, "unexpected %s", mqtt_type_name(p->type));
		break;
	}
}

static void client_parse(struct bench_client *c)
{
	uint8_t version = c->w->run->o->version;
	size_t hdr, body;
	struct mqtt_packet p;
	uint8_t fb;
	moat_err rc;

	while (c->state != CL_DEAD && moat_buf_used(&c->in) > 0) {
		rc = mqtt_frame(moat_buf_head(&c->in), moat_buf_used(&c->in), CLIENT_MAX_PACKET,
				&fb, &hdr, &body);
		if (rc == MOAT_E_AGAIN)
			break;
		if (rc) {
			client_fail(c, BENCH_ERR_PROTO, "bad packet framing: %s",
				    moat_strerror(rc));
			return;
		}
		rc = mqtt_decode(version, fb, moat_buf_head(&c->in) + hdr, body, &p);
		if (rc) {
			client_fail(c, BENCH_ERR_PROTO, "cannot decode packet 0x%02x: %s", fb,
				    moat_strerror(rc));
			return;
		}
		client_on_packet(c, &p);
		if (c->state == CL_DEAD)
			return;
		moat_buf_consume(&c->in, hdr + body);
	}
	if (moat_buf_used(&c->in) == 0)
		moat_buf_reset(&c->in);
}

/* Read until OpenSSL wants more from the socket: with read-ahead, records
 * already pulled into OpenSSL's buffer would never wake epoll again. */
static void client_read(struct bench_client *c)
{
	moat_err rc;
	int n, e;

	while (c->state != CL_DEAD) {
		rc = moat_buf_reserve(&c->in, CLIENT_READ_CHUNK);
		if (rc) {
			client_fail(c, BENCH_ERR_PROTO, "input buffer: %s", moat_strerror(rc));
			return;
		}
		ERR_clear_error();
		errno = 0;
		n = SSL_read(c->ssl, moat_buf_tail(&c->in), (int)CLIENT_READ_CHUNK);
		if (n > 0) {
			moat_buf_commit(&c->in, (size_t)n);
			client_parse(c);
			continue;
		}
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_WANT_WRITE) {
			c->ssl_wants_write = true;
			break;
		}
		{
			char why[256];
			ssl_reason(why, sizeof(why), e, errno);
			client_fail(c,
				    c->state == CL_READY   ? BENCH_ERR_CLOSED
				    : (e == SSL_ERROR_SSL) ? BENCH_ERR_TLS
							   : BENCH_ERR_CLOSED,
				    "read failed: %s", why);
		}
		return;
	}
	if (c->state != CL_DEAD)
		client_flush(c);
}

static void client_handshake(struct bench_client *c)
{
	char why[256];
	long vr;
	int r, e;

	ERR_clear_error();
	errno = 0;
	r = SSL_connect(c->ssl);
	if (r == 1) {
		if (SSL_session_reused(c->ssl))
			atomic_fetch_add(&c->w->run->resumed, 1);
		c->state = CL_CONNACK;
		client_send_connect(c);
		if (c->state != CL_DEAD)
			client_flush(c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		client_set_events(c, EPOLLIN);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		client_set_events(c, EPOLLOUT);
		return;
	}
	vr = SSL_get_verify_result(c->ssl);
	ssl_reason(why, sizeof(why), e, errno);
	if (vr != X509_V_OK)
		client_fail(c, BENCH_ERR_TLS, "handshake failed: server certificate: %s (%s)",
			    X509_verify_cert_error_string(vr), why);
	else
		client_fail(c, BENCH_ERR_TLS, "handshake failed: %s", why);
}

static void client_on_event(struct bench_client *c, uint32_t ev)
{
	const struct bench_run *run = c->w->run;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	switch (c->state) {
	case CL_TCP:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
			soerr = errno;
		if (soerr != 0) {
			client_fail(c, BENCH_ERR_CONNECT, "connect to %s:%u: %s", run->o->host,
				    run->o->port, strerror(soerr));
			return;
		}
		c->state = CL_TLS;
		client_handshake(c);
		return;
	case CL_TLS:
		client_handshake(c);
		return;
	case CL_CONNACK:
	case CL_SUBACK:
	case CL_READY:
		if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
			client_read(c);
		if (c->state != CL_DEAD && (ev & EPOLLOUT))
			client_flush(c);
		return;
	case CL_IDLE:
	case CL_DEAD:
		return;
	}
}

static void client_start(struct bench_client *c)
{
	const struct bench_run *run = c->w->run;
	struct epoll_event ev;
	int one = 1;

	c->w->connecting++;
	c->state = CL_TCP;
	c->fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		client_fail(c, BENCH_ERR_CONNECT, "socket: %s", strerror(errno));
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->ssl = SSL_new(run->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    SSL_use_certificate(c->ssl, c->cert) != 1 || SSL_use_PrivateKey(c->ssl, c->key) != 1 ||
	    (c->offer != NULL && SSL_set_session(c->ssl, c->offer) != 1)) {
		char why[256];
		ssl_reason(why, sizeof(why), SSL_ERROR_SSL, 0);
		client_fail(c, BENCH_ERR_TLS, "cannot set up SSL: %s", why);
		return;
	}
	SSL_set_connect_state(c->ssl);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		client_fail(c, BENCH_ERR_CONNECT, "epoll_ctl: %s", strerror(errno));
		return;
	}
	c->events = EPOLLOUT;
	if (connect(c->fd, (const struct sockaddr *)&run->addr, run->addrlen) != 0 &&
	    errno != EINPROGRESS) {
		client_fail(c, BENCH_ERR_CONNECT, "connect to %s:%u: %s", run->o->host,
			    run->o->port, strerror(errno));
		return;
	}
	/* Whether connect finished at once or not, EPOLLOUT reports it. */
}

/* Append one PUBLISH to c. ts is the timestamp the payload carries. */
static void client_publish(struct bench_client *c, uint64_t ts)
{
	struct bench_worker *w = c->w;
	const struct bench_opts *o = w->run->o;
	uint8_t *pl = moat_buf_head(&w->scratch);
	struct mqtt_packet p;
	uint32_t magic = BENCH_MAGIC, idx = c->idx, seq = c->seq++;

	memcpy(pl, &magic, sizeof(magic));
	memcpy(pl + 4, &ts, sizeof(ts));
	memcpy(pl + 12, &idx, sizeof(idx));
	memcpy(pl + 16, &seq, sizeof(seq));
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.qos = (uint8_t)o->qos;
	p.u.publish.topic.p = (const uint8_t *)c->pub_topic;
	p.u.publish.topic.len = c->pub_topic_len;
	p.u.publish.payload.p = pl;
	p.u.publish.payload.len = o->payload;
	if (o->qos > 0) {
		p.u.publish.packet_id = client_next_pid(c);
		c->inflight++;
		if (c->ack_sent == NULL) {
			uint32_t n = 2;
			while (n < 2 * c->window)
				n *= 2;
			c->ack_sent = calloc(n, sizeof(*c->ack_sent));
			c->ack_slots = c->ack_sent != NULL ? n : 0;
		}
		if (c->ack_sent != NULL)
			/* PUBACK latency counts from now, when it is queued;
			 * the flush follows in this loop turn. */
			c->ack_sent[p.u.publish.packet_id & (c->ack_slots - 1)] = bench_now_ns();
	}
	client_encode(c, &p);
	w->d_sent++;
	w->quota_sent++;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* How many messages this worker may publish now. */
static uint64_t pump_budget(struct bench_worker *w, uint64_t now)
{
	struct bench_run *run = w->run;
	uint64_t left = w->quota - w->quota_sent;
	uint64_t t0, due, pending, limit, sent, received;

	if (w->rate > 0) {
		t0 = atomic_load(&run->t_start_ns);
		due = now > t0 ? (uint64_t)((double)(now - t0) * w->rate / 1e9) + 1 : 1;
		due = min_u64(due, w->quota);
		return due > w->quota_sent ? due - w->quota_sent : 0;
	}
	sent = atomic_load_explicit(&run->sent, memory_order_relaxed) + w->d_sent;
	received = atomic_load_explicit(&run->received, memory_order_relaxed) + w->d_received;
	pending = sent * run->fan;
	pending = pending > received ? pending - received : 0;
	limit = (uint64_t)run->o->outstanding * run->fan;
	if (pending >= limit)
		return 0;
	return min_u64(left, (limit - pending) / run->fan);
}

static void timer_arm(struct bench_worker *w, uint64_t at_ns)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = (time_t)(at_ns / 1000000000u);
	its.it_value.tv_nsec = (long)(at_ns % 1000000000u);
	timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void worker_pump(struct bench_worker *w, uint64_t now)
{
	const struct bench_opts *o = w->run->o;
	uint64_t budget, t0, k;
	unsigned visited, i, room;
	struct bench_client *c;
	bool progress;

	if (w->quota_sent >= w->quota || w->n_pubs == 0)
		return;
	budget = pump_budget(w, now);
	t0 = atomic_load(&w->run->t_start_ns);
	while (budget > 0) {
		progress = false;
		for (visited = 0; visited < w->n_pubs && budget > 0; visited++) {
			c = w->pubs[w->pub_cursor];
			w->pub_cursor = (w->pub_cursor + 1) % w->n_pubs;
			if (c->state != CL_READY || moat_buf_used(&c->out) > CLIENT_OUT_HIGH)
				continue;
			room = PUMP_BURST;
			if (o->qos > 0)
				room = c->inflight < c->window ? c->window - c->inflight : 0;
			if (room > PUMP_BURST)
				room = PUMP_BURST;
			for (i = 0; i < room && budget > 0 && c->state == CL_READY; i++) {
				/* Paced: the scheduled time of this worker's k-th
				 * message; closed loop: now. */
				k = w->quota_sent;
				client_publish(c, w->rate > 0
						      ? t0 + (uint64_t)((double)k * 1e9 / w->rate)
						      : bench_now_ns());
				budget--;
				progress = true;
			}
			if (c->state == CL_READY && i > 0)
				client_flush(c);
		}
		if (!progress)
			break;
	}
	if (w->rate > 0 && w->quota_sent < w->quota) {
		/* Wake for the next message not yet due. */
		k = (uint64_t)((double)(now > t0 ? now - t0 : 0) * w->rate / 1e9) + 1;
		if (k < w->quota_sent + 1)
			k = w->quota_sent + 1;
		timer_arm(w, t0 + (uint64_t)((double)k * 1e9 / w->rate));
	}
}

/* Keepalive pings and releasing idle buffers, once a second. */
static void worker_housekeeping(struct bench_worker *w, uint64_t now)
{
	uint64_t idle_ns = (uint64_t)w->run->o->keepalive * 1000000000ull / 2;
	struct bench_client *c;
	unsigned i;

	if (now - w->last_ping_check_ns < HOUSEKEEPING_NS)
		return;
	w->last_ping_check_ns = now;
	for (i = 0; i < w->n_clients; i++) {
		c = w->clients[i];
		if (c->state != CL_READY)
			continue;
		if (idle_ns > 0 && now - c->last_tx_ns > idle_ns) {
			client_send_simple(c, MQTT_PINGREQ);
			client_flush(c);
		}
		if (c->state == CL_READY) {
			moat_buf_shrink(&c->in);
			moat_buf_shrink(&c->out);
		}
	}
}

static void worker_connect_more(struct bench_worker *w)
{
	const struct bench_opts *o = w->run->o;
	unsigned limit = o->connect_concurrency / w->run->n_workers;

	if (limit == 0)
		limit = 1;
	if (w->run->first != NULL && !atomic_load(&w->run->first_ready)) {
		/* The consumer alone first (it is on one worker). */
		if (w->run->first->w == w && w->run->first->state == CL_IDLE)
			client_start(w->run->first);
		return;
	}
	while (w->next_connect < w->n_clients && w->connecting < limit) {
		struct bench_client *c = w->clients[w->next_connect++];
		if (c != w->run->first)
			client_start(c);
	}
}

/* Fold this worker's counts into the run's. */
static void worker_fold(struct bench_worker *w)
{
	struct bench_run *run = w->run;
	uint64_t last;

	if (w->d_sent) {
		atomic_fetch_add(&run->sent, w->d_sent);
		w->d_sent = 0;
	}
	if (w->d_acked) {
		atomic_fetch_add(&run->acked, w->d_acked);
		w->d_acked = 0;
	}
	if (w->d_received) {
		last = atomic_load(&run->last_rx_ns);
		while (last < w->last_rx_ns &&
		       !atomic_compare_exchange_weak(&run->last_rx_ns, &last, w->last_rx_ns))
			;
		atomic_fetch_add(&run->received, w->d_received);
		w->d_received = 0;
	}
}

static void worker_stop(struct bench_worker *w)
{
	struct bench_client *c;
	unsigned i;

	for (i = 0; i < w->n_clients; i++) {
		c = w->clients[i];
		/* A copy: freeing a connection without close_notify marks its
		 * session not resumable. By now the ticket (sent after the
		 * handshake, before CONNACK) has been read. */
		if (c->state == CL_READY && w->run->o->save_sessions != NULL && c->saved == NULL)
			c->saved = SSL_SESSION_dup(SSL_get0_session(c->ssl));
		if (c->state == CL_READY) {
			client_send_simple(c, MQTT_DISCONNECT);
			if (c->state == CL_READY)
				client_flush(c);
		}
		client_close(c);
		if (c->state != CL_DEAD)
			c->state = CL_IDLE;
	}
}

void *bench_worker_main(void *arg)
{
	struct bench_worker *w = arg;
	struct bench_run *run = w->run;
	struct epoll_event evs[EPOLL_BATCH];
	uint64_t now, expirations;
	int n, i, phase, timeout;

	for (;;) {
		phase = atomic_load(&run->phase);
		if (phase == BENCH_PH_STOP)
			break;
		if (phase == BENCH_PH_CONNECT)
			worker_connect_more(w);
		timeout = 10;
		/* Closed loop with another worker: its deliveries free our
		 * budget without waking us. */
		if (phase == BENCH_PH_RUN && w->rate <= 0 && w->quota_sent < w->quota)
			timeout = 1;
		n = epoll_wait(w->epfd, evs, EPOLL_BATCH, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			bench_error(run, BENCH_ERR_PROTO, "epoll_wait: %s", strerror(errno));
			/* Counted as a dead client so the coordinator stops. */
			atomic_fetch_add(&run->dead, 1);
			break;
		}
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr == &timer_tag) {
				if (read(w->tfd, &expirations, sizeof(expirations)) < 0)
					expirations = 0;
				continue;
			}
			client_on_event(evs[i].data.ptr, evs[i].events);
		}
		now = bench_now_ns();
		if (atomic_load(&run->phase) == BENCH_PH_RUN)
			worker_pump(w, now);
		worker_housekeeping(w, now);
		worker_fold(w);
	}
	worker_stop(w);
	worker_fold(w);
	return NULL;
}

moat_err bench_worker_init(struct bench_worker *w, struct bench_run *run, unsigned no)
{
	struct epoll_event ev;
	moat_err rc = MOAT_E_IO;

	memset(w, 0, sizeof(*w));
	w->run = run;
	w->no = no;
	w->epfd = -1;
	w->tfd = -1;
	moat_buf_init(&w->scratch, BENCH_PAYLOAD_MAX);
	w->hist = calloc(1, sizeof(*w->hist));
	w->ack_hist = calloc(1, sizeof(*w->ack_hist));
	if (w->hist == NULL || w->ack_hist == NULL) {
		rc = MOAT_E_NOMEM;
		goto out;
	}
	rc = moat_buf_reserve(&w->scratch, run->o->payload);
	if (rc)
		goto out;
	memset(moat_buf_tail(&w->scratch), 'x', run->o->payload);
	moat_buf_commit(&w->scratch, run->o->payload);
	rc = MOAT_E_IO;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (w->epfd < 0 || w->tfd < 0)
		goto out;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &timer_tag;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->tfd, &ev) != 0)
		goto out;
	rc = MOAT_OK;
out:
	return rc;
}

void bench_worker_free(struct bench_worker *w)
{
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->tfd >= 0)
		close(w->tfd);
	w->epfd = w->tfd = -1;
	free(w->clients);
	free(w->pubs);
	free(w->hist);
	free(w->ack_hist);
	w->clients = w->pubs = NULL;
	w->hist = w->ack_hist = NULL;
	moat_buf_free(&w->scratch);
}

/* Ids are at most BENCH_ID_MAX characters, so every topic fits. */
static void client_setup_topics(struct bench_run *run, struct bench_client *c, unsigned pub_idx)
{
	const struct bench_opts *o = run->o;
	char pub_id[BENCH_ID_MAX + 1];

	snprintf(pub_id, sizeof(pub_id), "%s%06u", o->id_prefix, pub_idx);
	switch (o->scenario) {
	case BENCH_FANIN:
		if (c->roles & ROLE_PUB)
			snprintf(c->pub_topic, sizeof(c->pub_topic), "d/%s/t", c->id);
		else
			snprintf(c->sub_filter, sizeof(c->sub_filter), "d/+/t");
		break;
	case BENCH_P2P:
		snprintf(c->pub_topic, sizeof(c->pub_topic), "d/%s/p2p", c->id);
		snprintf(c->sub_filter, sizeof(c->sub_filter), "d/%s/p2p", c->id);
		break;
	case BENCH_FANOUT:
		/* The publisher's own subtree, so the same topic would also pass
		 * the default policy's write rule. */
		if (c->roles & ROLE_PUB)
			snprintf(c->pub_topic, sizeof(c->pub_topic), "d/%s/fan", pub_id);
		else
			snprintf(c->sub_filter, sizeof(c->sub_filter), "d/%s/fan", pub_id);
		break;
	case BENCH_IDLE:
		break;
	}
	c->pub_topic_len = strlen(c->pub_topic);
	c->sub_filter_len = strlen(c->sub_filter);
}

moat_err bench_clients_create(struct bench_run *run, struct bench_ca *ca, char *err, size_t errlen)
{
	const struct bench_opts *o = run->o;
	struct bench_client *c;
	struct bench_worker *w;
	unsigned n, i, special = 0, generated = 0;
	uint64_t t0 = bench_now_ns(), assigned = 0;
	bool gen, has_special = false;
	moat_err rc = MOAT_E_NOMEM;

	switch (o->scenario) {
	case BENCH_FANIN:
	case BENCH_FANOUT:
		/* The lone subscriber (fan-in) or publisher (fan-out) is the last
		 * client. */
		n = o->clients + 1;
		special = o->clients;
		has_special = true;
		break;
	case BENCH_P2P:
	case BENCH_IDLE:
	default:
		n = o->clients;
		break;
	}
	run->clients = calloc(n, sizeof(*run->clients));
	if (run->clients == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		c = &run->clients[i];
		c->idx = i;
		c->fd = -1;
		c->state = CL_IDLE;
		moat_buf_init(&c->in, CLIENT_IN_MAX);
		moat_buf_init(&c->out, CLIENT_OUT_MAX);
	}
	run->n_clients = n;
	for (i = 0; i < run->n_workers; i++) {
		w = &run->workers[i];
		w->clients = calloc(n / run->n_workers + 1, sizeof(*w->clients));
		w->pubs = calloc(n / run->n_workers + 1, sizeof(*w->pubs));
		if (w->clients == NULL || w->pubs == NULL) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	run->fan = o->scenario == BENCH_FANOUT ? o->clients : 1;
	for (i = 0; i < n; i++) {
		c = &run->clients[i];
		snprintf(c->id, sizeof(c->id), "%s%06u", o->id_prefix, i);
		switch (o->scenario) {
		case BENCH_FANIN:
			c->roles = (has_special && i == special) ? ROLE_SUB : ROLE_PUB;
			if (c->roles == ROLE_SUB)
				run->first = c;
			break;
		case BENCH_FANOUT:
			c->roles = (has_special && i == special) ? ROLE_PUB : ROLE_SUB;
			break;
		case BENCH_P2P:
			c->roles = ROLE_PUB | ROLE_SUB;
			break;
		case BENCH_IDLE:
			c->roles = 0;
			break;
		}
		client_setup_topics(run, c, special);
		w = &run->workers[i % run->n_workers];
		c->w = w;
		w->clients[w->n_clients++] = c;
		if (c->roles & ROLE_PUB) {
			w->pubs[w->n_pubs++] = c;
			run->n_pubs++;
		}
		rc = bench_ca_identity(ca, c->id, &c->key, &c->cert, &gen, err, errlen);
		if (rc)
			goto out;
		if (gen)
			generated++;
		if (!o->quiet && gen && generated % 1000 == 0)
			fprintf(stderr, "moat-bench: generated %u client certificates\n",
				generated);
	}
	if (!o->quiet && generated > 0)
		fprintf(stderr, "moat-bench: generated %u client certificates in %.1f s\n",
			generated, (double)(bench_now_ns() - t0) / 1e9);
	/* Split the messages (and the rate) over the workers by publishers. */
	for (i = 0; i < run->n_workers && run->n_pubs > 0; i++) {
		w = &run->workers[i];
		w->quota = o->messages * w->n_pubs / run->n_pubs;
		assigned += w->quota;
	}
	for (i = 0; i < run->n_workers && assigned < o->messages && run->n_pubs > 0; i++) {
		w = &run->workers[i];
		if (w->n_pubs > 0) {
			w->quota += o->messages - assigned;
			assigned = o->messages;
		}
	}
	for (i = 0; i < run->n_workers; i++) {
		w = &run->workers[i];
		if (o->rate > 0 && o->messages > 0)
			w->rate = o->rate * (double)w->quota / (double)o->messages;
	}
	rc = MOAT_OK;
out:
	return rc;
}

void bench_clients_free(struct bench_run *run)
{
	struct bench_client *c;
	unsigned i;

	if (run->clients == NULL)
		return;
	for (i = 0; i < run->n_clients; i++) {
		c = &run->clients[i];
		client_close(c);
		EVP_PKEY_free(c->key);
		X509_free(c->cert);
		SSL_SESSION_free(c->offer);
		SSL_SESSION_free(c->saved);
		free(c->ack_sent);
	}
	free(run->clients);
	run->clients = NULL;
}

/* The client with this id (ids are prefix + 6 digits, index order), or
 * NULL. */
static struct bench_client *client_by_id(struct bench_run *run, const char *id)
{
	const char *prefix = run->o->id_prefix;
	size_t plen = strlen(prefix);
	unsigned long idx = 0;
	size_t i, n = strlen(id);

	if (n != plen + 6 || strncmp(id, prefix, plen) != 0)
		return NULL;
	for (i = plen; i < n; i++) {
		if (id[i] < '0' || id[i] > '9')
			return NULL;
		idx = idx * 10 + (unsigned long)(id[i] - '0');
	}
	if (idx >= run->n_clients || strcmp(run->clients[idx].id, id) != 0)
		return NULL;
	return &run->clients[idx];
}

moat_err bench_sessions_load(struct bench_run *run, const char *path, unsigned *loaded, char *err,
			     size_t errlen)
{
	char line[BENCH_ID_MAX + 8];
	moat_err rc = MOAT_E_IO;
	unsigned n = 0;
	BIO *bio = BIO_new_file(path, "r");

	if (bio == NULL) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	/* "<client id>\n" then its session as PEM, until the end. */
	for (;;) {
		struct bench_client *c;
		SSL_SESSION *s;
		int len = BIO_gets(bio, line, (int)sizeof(line));

		if (len <= 0)
			break;
		if (line[len - 1] != '\n') {
			snprintf(err, errlen, "%s: a client id line is too long", path);
			rc = MOAT_E_MALFORMED;
			goto out;
		}
		line[len - 1] = '\0';
		s = PEM_read_bio_SSL_SESSION(bio, NULL, NULL, NULL);
		if (s == NULL) {
			snprintf(err, errlen, "%s: no PEM session after client id '%s'", path,
				 line);
			ERR_clear_error();
			rc = MOAT_E_MALFORMED;
			goto out;
		}
		c = client_by_id(run, line);
		if (c == NULL) {
			SSL_SESSION_free(s); /* a client this run does not have */
			continue;
		}
		SSL_SESSION_free(c->offer);
		c->offer = s;
		n++;
	}
	*loaded = n;
	rc = MOAT_OK;
out:
	BIO_free(bio);
	return rc;
}

moat_err bench_sessions_save(struct bench_run *run, const char *path, unsigned *saved, char *err,
			     size_t errlen)
{
	moat_err rc = MOAT_E_IO;
	unsigned i, n = 0;
	BIO *bio = NULL;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || (bio = BIO_new_fd(fd, BIO_CLOSE)) == NULL) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	for (i = 0; i < run->n_clients; i++) {
		const struct bench_client *c = &run->clients[i];

		if (c->saved == NULL)
			continue;
		if (BIO_printf(bio, "%s\n", c->id) <= 0 ||
		    PEM_write_bio_SSL_SESSION(bio, c->saved) != 1) {
			snprintf(err, errlen, "cannot write %s", path);
			ERR_clear_error();
			goto out;
		}
		n++;
	}
	if (BIO_flush(bio) != 1) {
		snprintf(err, errlen, "cannot write %s", path);
		goto out;
	}
	*saved = n;
	rc = MOAT_OK;
out:
	BIO_free(bio);
	return rc;
}
