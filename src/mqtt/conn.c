/*
 * Connections: TLS handshake, reading and framing packets, buffered output
 * flushed once per loop turn (many small messages become one SSL_write), and
 * closing. Everything here runs on the owning worker's thread.
 *
 * Closing is deferred: moat_conn_close() marks the connection and puts it on
 * the flush list; the worker destroys it after a last flush at the end of
 * the loop turn, so handlers never free a connection under their callers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "tls/tls.h"

#define READ_CHUNK 16384u

static void conn_event_cb(struct moat_ev *ev, uint32_t events);

static void conn_update_events(struct moat_conn *c)
{
	/* A held connection reads nothing until its CONNACK is out. */
	uint32_t evs = c->held ? 0 : EPOLLIN;

	if (moat_buf_used(&c->out) > 0 || c->want_write)
		evs |= EPOLLOUT;
	(void)moat_reactor_mod(&c->w->r, &c->ev, evs);
}

void moat_conn_mark_dirty(struct moat_conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->dirty_next = c->w->dirty;
	c->w->dirty = c;
}

static void conn_link(struct moat_worker *w, struct moat_conn *c)
{
	c->w = w;
	c->prev = NULL;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->n_conns++;
}

static void conn_unlink(struct moat_conn *c)
{
	struct moat_worker *w = c->w;

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	w->n_conns--;
}

void moat_conn_accept(struct moat_worker *w, struct moat_listener *l, int fd, const char *addr)
{
	struct moat_conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		close(fd);
		atomic_fetch_sub(&w->b->connections, 1);
		return;
	}
	c->ev.fd = fd;
	c->ev.cb = conn_event_cb;
	c->id = atomic_fetch_add(&w->b->next_conn_id, 1) + 1;
	c->l = l;
	c->opened = c->last_rx = w->now;
	c->peer_max_packet = MOAT_MQTT_MAX_REMAINING + 5u;
	c->peer_receive_max = 65535;
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	moat_buf_init(&c->in, MOAT_MAX_CONNECT_PACKET + 5u);
	moat_buf_init(&c->out, MOAT_MAX_OUTBUF);
	if (l->ssl_ctx != NULL) {
		pthread_mutex_lock(w->b->ctx_lock);
		c->ssl = SSL_new(l->ssl_ctx);
		pthread_mutex_unlock(w->b->ctx_lock);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
			SSL_free(c->ssl);
			free(c);
			close(fd);
			atomic_fetch_sub(&w->b->connections, 1);
			return;
		}
		SSL_set_accept_state(c->ssl);
		c->state = CONN_TLS_HANDSHAKE;
	} else {
		c->state = CONN_WAIT_CONNECT;
	}
	conn_link(w, c);
	if (moat_reactor_add(&w->r, &c->ev, EPOLLIN) != MOAT_OK)
		moat_conn_close(c, "epoll");
}

void moat_conn_adopt(struct moat_worker *w, struct moat_conn *c)
{
	c->state = CONN_WAIT_CONNECT;
	c->dirty = false;
	c->dirty_next = NULL;
	conn_link(w, c);
	if (moat_reactor_add(&w->r, &c->ev, EPOLLIN) != MOAT_OK) {
		moat_conn_close(c, "epoll");
		return;
	}
	/* The CONNECT is still at the head of the input buffer. */
	conn_event_cb(&c->ev, 0);
}

void moat_conn_close(struct moat_conn *c, const char *why)
{
	if (c->state == CONN_CLOSING)
		return;
	log_debug("close", "addr=%s client=%s why=%s", c->addr, c->s ? c->s->client_id : "-", why);
	c->state = CONN_CLOSING;
	moat_conn_mark_dirty(c);
}

void moat_conn_disconnect(struct moat_conn *c, uint8_t reason, const char *why)
{
	if (c->state == CONN_CLOSING)
		return;
	if (c->version == MQTT_V5 && c->state == CONN_CONNECTED) {
		struct mqtt_packet p;
		memset(&p, 0, sizeof(p));
		p.type = MQTT_DISCONNECT;
		p.u.reason.code = reason;
		(void)moat_conn_send(c, &p);
	}
	moat_conn_close(c, why);
}

bool moat_conn_send(struct moat_conn *c, const struct mqtt_packet *p)
{
	size_t before = moat_buf_used(&c->out);

	if (c->state == CONN_CLOSING && p->type != MQTT_DISCONNECT && p->type != MQTT_CONNACK)
		return false;
	if (mqtt_encode(&c->out, c->version ? c->version : MQTT_V311, p) != MOAT_OK)
		return false;
	atomic_fetch_add_explicit(&c->w->stats.bytes_out, moat_buf_used(&c->out) - before,
				  memory_order_relaxed);
	moat_conn_mark_dirty(c);
	return true;
}

/* Write buffered output; returns false on a fatal error. */
static bool conn_write(struct moat_conn *c)
{
	while (moat_buf_used(&c->out) > 0) {
		size_t n = moat_buf_used(&c->out);
		if (c->ssl) {
			int r = SSL_write(c->ssl, moat_buf_head(&c->out),
					  n > INT32_MAX ? INT32_MAX : (int)n);
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					return true;
				ERR_clear_error();
				return false;
			}
			moat_buf_consume(&c->out, (size_t)r);
		} else {
			ssize_t r = write(c->ev.fd, moat_buf_head(&c->out), n);
			if (r < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return true;
				return false;
			}
			moat_buf_consume(&c->out, (size_t)r);
		}
	}
	return true;
}

static void conn_destroy(struct moat_conn *c)
{
	struct moat_worker *w = c->w;
	uint16_t i;

	if (c->s != NULL)
		moat_session_detach(c->s);
	moat_reactor_del(&w->r, &c->ev);
	if (c->ssl) {
		if (c->state != CONN_TLS_HANDSHAKE)
			(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	close(c->ev.fd);
	conn_unlink(c);
	moat_buf_free(&c->in);
	moat_buf_free(&c->out);
	if (c->alias_in) {
		for (i = 0; i < MOAT_TOPIC_ALIAS_MAX; i++)
			free(c->alias_in[i]);
		free(c->alias_in);
	}
	if (c->alias_out) {
		for (i = 0; i < c->n_alias_out; i++)
			free(c->alias_out[i]);
		free(c->alias_out);
	}
	if (c->counted)
		atomic_fetch_sub(&w->stats.clients, 1);
	atomic_fetch_sub(&w->b->connections, 1);
	moat_acl_unref(c->acl);
	free(c);
}

void moat_conn_flush(struct moat_conn *c)
{
	c->dirty = false;
	if (c->state == CONN_HANDOFF)
		return;
	if (!conn_write(c)) {
		c->state = CONN_CLOSING;
		moat_buf_reset(&c->out);
	}
	if (c->state == CONN_CLOSING) {
		conn_destroy(c);
		return;
	}
	conn_update_events(c);
}

/* Hand the connection to the worker that owns its session. The CONNECT stays
 * unconsumed in c->in; the new owner processes it again. */
static void conn_handoff(struct moat_conn *c, unsigned to)
{
	struct moat_worker *w = c->w;
	struct moat_mailitem *it = calloc(1, sizeof(*it));

	if (it == NULL) {
		c->state = CONN_CLOSING;
		return;
	}
	moat_reactor_del(&w->r, &c->ev);
	conn_unlink(c);
	if (c->dirty) {
		/* Off this worker's flush list: the new owner flushes it. */
		struct moat_conn **pp = &w->dirty;
		while (*pp != NULL && *pp != c)
			pp = &(*pp)->dirty_next;
		if (*pp == c)
			*pp = c->dirty_next;
		c->dirty = false;
		c->dirty_next = NULL;
	}
	it->kind = MAIL_ADOPT;
	it->conn = c;
	c->w = NULL;
	/* Post directly: the connection must leave this thread now. */
	moat_mailbox_post(&w->b->workers[to].mb, &it->link, &it->link);
}

/*
 * A first packet we cannot accept (oversize or undecodable). If it is a v5
 * CONNECT (protocol level byte visible), answer with a CONNACK carrying the
 * reason; a v3 client gets return code 1 for an unsupported level, else the
 * connection just closes (v3 has no code for "malformed").
 */
static void conn_refuse_early(struct moat_conn *c, const uint8_t *pkt, size_t avail, moat_err rc)
{
	struct mqtt_packet ack;
	size_t hdr = 1;

	while (hdr < avail && hdr < 4 && (pkt[hdr] & 0x80u))
		hdr++;
	hdr++; /* past the last length byte */
	memset(&ack, 0, sizeof(ack));
	ack.type = MQTT_CONNACK;
	if ((pkt[0] >> 4) == MQTT_CONNECT && avail > hdr + 6 && pkt[hdr + 6] == MQTT_V5) {
		c->version = MQTT_V5;
		ack.u.connack.code = mqtt_err_reason(rc);
		(void)moat_conn_send(c, &ack);
	} else if ((pkt[0] >> 4) == MQTT_CONNECT && rc == MOAT_E_VERSION) {
		c->version = MQTT_V311;
		ack.u.connack.code = MQTT_V3_BAD_VERSION;
		(void)moat_conn_send(c, &ack);
	}
	moat_conn_close(c, moat_strerror(rc));
}

/*
 * Decode and dispatch every complete packet in data[0..len). Returns the
 * bytes consumed; stops early when the connection starts closing or is
 * being handed over (then the CONNECT is left unconsumed for the new owner).
 */
static size_t conn_process(struct moat_conn *c, const uint8_t *data, size_t len)
{
	size_t done = 0;

	while ((c->state == CONN_WAIT_CONNECT || c->state == CONN_CONNECTED) && !c->held) {
		uint8_t first;
		size_t hdr, body;
		size_t max = c->state == CONN_CONNECTED ? c->max_packet : MOAT_MAX_CONNECT_PACKET;
		const uint8_t *pkt = data + done;
		struct mqtt_packet p;
		moat_err rc;

		/* Judge the first byte before waiting for the rest: anything but
		 * CONNECT first (an HTTP request, TLS to a plaintext port) or the
		 * reserved type 0 closes at once instead of at the timeout. */
		if (len > done && c->state == CONN_WAIT_CONNECT && pkt[0] != (MQTT_CONNECT << 4)) {
			log_info("bad_packet", "addr=%s error=\"first packet is not CONNECT\"",
				 c->addr);
			moat_conn_close(c, "first packet is not CONNECT");
			break;
		}
		if (len > done && (pkt[0] >> 4) == 0) {
			moat_conn_disconnect(c, MQTT_RC_MALFORMED, "reserved packet type 0");
			break;
		}
		rc = mqtt_frame(pkt, len - done, max, &first, &hdr, &body);
		if (rc == MOAT_E_AGAIN)
			break;
		if (rc != MOAT_OK) {
			log_info("bad_packet", "addr=%s client=%s error=\"%s\"", c->addr,
				 c->s ? c->s->client_id : "-", moat_strerror(rc));
			if (c->state == CONN_CONNECTED)
				moat_conn_disconnect(c, mqtt_err_reason(rc), moat_strerror(rc));
			else
				conn_refuse_early(c, pkt, len - done, rc);
			break;
		}
		rc = mqtt_decode(c->version, first, pkt + hdr, body, &p);
		if (rc != MOAT_OK) {
			log_info("bad_packet", "addr=%s client=%s type=%s error=\"%s\"", c->addr,
				 c->s ? c->s->client_id : "-",
				 mqtt_type_name((uint8_t)(first >> 4)), moat_strerror(rc));
			if (c->state == CONN_WAIT_CONNECT) {
				conn_refuse_early(c, pkt, hdr + body, rc);
			} else {
				moat_conn_disconnect(c, mqtt_err_reason(rc), moat_strerror(rc));
			}
			break;
		}
		atomic_fetch_add_explicit(&c->w->stats.bytes_in, hdr + body, memory_order_relaxed);
		c->last_rx = c->w->now;
		moat_handle_packet(c, &p);
		if (c->state == CONN_HANDOFF)
			break;
		done += hdr + body;
	}
	return done;
}

static void conn_handshake(struct moat_conn *c)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		moat_err rc = moat_tls_peer_identity(c->ssl, c->identity, sizeof(c->identity));
		moat_tls_peer_serial(c->ssl, c->serial, sizeof(c->serial));
		if (rc == MOAT_E_DENIED) {
			log_info("tls_identity_invalid", "addr=%s", c->addr);
			moat_broker_secev(c->w->b, "mqtt.identity_invalid", "", c->addr,
					  "certificate identity is not a valid device id");
			moat_conn_close(c, "certificate identity is not a valid device id");
			return;
		}
		if (rc != MOAT_OK)
			c->identity[0] = '\0';
		c->state = CONN_WAIT_CONNECT;
		c->want_write = false;
		conn_update_events(c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->want_write = false;
		conn_update_events(c);
		break;
	case SSL_ERROR_WANT_WRITE:
		c->want_write = true;
		conn_update_events(c);
		break;
	default: {
		char err[256] = "";
		moat_tls_errors(err, sizeof(err));
		log_info("tls_handshake_failed", "addr=%s error=\"%s\"", c->addr, err);
		moat_broker_secev(c->w->b, "mqtt.tls_handshake_failed", "", c->addr, err);
		moat_conn_close(c, "tls handshake failed");
		break;
	}
	}
}

/* One read into dst; returns bytes, 0 when nothing more is available now,
 * -1 when the connection is closing. */
static ssize_t conn_read_some(struct moat_conn *c, uint8_t *dst, size_t room)
{
	ssize_t n;

	if (c->ssl) {
		int r = SSL_read(c->ssl, dst, room > INT32_MAX ? INT32_MAX : (int)room);
		if (r > 0)
			return r;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			if (c->want_write) {
				c->want_write = false;
				conn_update_events(c);
			}
			return 0;
		case SSL_ERROR_WANT_WRITE:
			c->want_write = true;
			conn_update_events(c);
			return 0;
		case SSL_ERROR_ZERO_RETURN:
			moat_conn_close(c, "tls close");
			return -1;
		default:
			ERR_clear_error();
			moat_conn_close(c, "tls read");
			return -1;
		}
	}
	n = read(c->ev.fd, dst, room);
	if (n > 0)
		return n;
	if (n == 0) {
		moat_conn_close(c, "eof");
		return -1;
	}
	if (errno == EAGAIN || errno == EINTR)
		return 0;
	moat_conn_close(c, "read error");
	return -1;
}

/*
 * Read all available input. The common case (nothing buffered) reads into
 * the worker's scratch buffer and handles packets from there, so a
 * connection allocates input memory only while it holds a partial packet.
 */
static void conn_read(struct moat_conn *c)
{
	struct moat_worker *w = c->w;

	for (;;) {
		ssize_t n;
		size_t used;
		bool drained;

		if ((c->state != CONN_WAIT_CONNECT && c->state != CONN_CONNECTED) || c->held)
			return;
		if (moat_buf_used(&c->in) == 0) {
			n = conn_read_some(c, w->rbuf, sizeof(w->rbuf));
			if (n <= 0)
				break;
			used = conn_process(c, w->rbuf, (size_t)n);
			drained = (size_t)n < sizeof(w->rbuf) &&
				  (c->ssl == NULL || !SSL_has_pending(c->ssl));
			if (c->state == CONN_WAIT_CONNECT || c->state == CONN_CONNECTED ||
			    c->state == CONN_HANDOFF) {
				/* Keep the partial packet (or the CONNECT to hand over). */
				if (moat_buf_append(&c->in, w->rbuf + used, (size_t)n - used) !=
				    MOAT_OK) {
					moat_conn_close(c, "input too large");
					return;
				}
			}
		} else {
			size_t room = c->in.max - moat_buf_used(&c->in);
			if (room == 0) {
				/* Cannot happen: the cap exceeds the largest frame allowed. */
				moat_conn_close(c, "input buffer full");
				return;
			}
			if (room > READ_CHUNK)
				room = READ_CHUNK;
			if (moat_buf_reserve(&c->in, room) != MOAT_OK) {
				moat_conn_close(c, "out of memory");
				return;
			}
			n = conn_read_some(c, moat_buf_tail(&c->in), room);
			if (n <= 0)
				break;
			moat_buf_commit(&c->in, (size_t)n);
			drained = (size_t)n < room && (c->ssl == NULL || !SSL_has_pending(c->ssl));
			used = conn_process(c, moat_buf_head(&c->in), moat_buf_used(&c->in));
			if (c->state != CONN_HANDOFF)
				moat_buf_consume(&c->in, used);
		}
		if (c->state == CONN_HANDOFF)
			return;
		/* A short read emptied the socket (and TLS holds nothing more):
		 * level-triggered epoll calls again if more arrives, so skip the
		 * read(2) that would only say EAGAIN. */
		if (drained)
			break;
	}
	if (moat_buf_used(&c->in) == 0)
		moat_buf_shrink(&c->in);
}

static void conn_event_cb(struct moat_ev *ev, uint32_t events)
{
	struct moat_conn *c = moat_container_of(ev, struct moat_conn, ev);
	unsigned to;

	c->w->now = moat_now_ms(); /* expiry and keepalive arithmetic use it */
	if (c->state == CONN_CLOSING)
		return;
	if (c->state == CONN_TLS_HANDSHAKE) {
		conn_handshake(c);
		if (c->state != CONN_WAIT_CONNECT)
			return;
	}
	if ((events & EPOLLOUT) && moat_buf_used(&c->out) > 0)
		moat_conn_mark_dirty(c);
	if (events == 0) {
		/* Adopted connection: process what is buffered first. */
		size_t used = conn_process(c, moat_buf_head(&c->in), moat_buf_used(&c->in));
		if (c->state == CONN_HANDOFF)
			goto handoff;
		moat_buf_consume(&c->in, used);
		if (c->state == CONN_CLOSING)
			return;
	}
	conn_read(c);
	if (c->state == CONN_HANDOFF)
		goto handoff;
	if ((events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN))
		moat_conn_close(c, "hangup");
	return;
handoff:
	to = c->handoff_to;
	conn_handoff(c, to);
}

void moat_conn_tick(struct moat_conn *c, uint64_t now)
{
	if (c->state == CONN_TLS_HANDSHAKE || c->state == CONN_WAIT_CONNECT) {
		if (now - c->opened > MOAT_CONNECT_TIMEOUT_S * 1000u)
			moat_conn_close(c, "connect timeout");
		return;
	}
	if (c->state == CONN_CONNECTED && c->keepalive > 0 &&
	    now - c->last_rx > (uint64_t)c->keepalive * 1500u) {
		log_info("keepalive_timeout", "client=%s", c->s ? c->s->client_id : "-");
		moat_conn_disconnect(c, MQTT_RC_KEEPALIVE_TIMEOUT, "keepalive timeout");
		return;
	}
	/* Idle: give buffers back (OpenSSL releases its own, RELEASE_BUFFERS). */
	if (!c->dirty && moat_buf_used(&c->out) == 0)
		moat_buf_shrink(&c->out);
	if (moat_buf_used(&c->in) == 0)
		moat_buf_shrink(&c->in);
}

void moat_conn_resume(struct moat_conn *c)
{
	c->held = false;
	conn_update_events(c);
	/* Same path as an adopted connection: buffered input first. */
	conn_event_cb(&c->ev, 0);
}
