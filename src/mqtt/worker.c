#define _GNU_SOURCE
/*
 * Worker threads: each runs one reactor with its own listening sockets
 * (SO_REUSEPORT spreads new connections across workers), a one-second tick
 * (keepalive, connect timeouts, will delay, session expiry, $SYS), and a
 * mailbox for messages and connections from other workers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/net.h"
#include "mqtt/internal.h"
#include "store/store.h"

struct listen_ev {
	struct moat_ev ev;
	struct moat_worker *w;
	struct moat_listener *l;
};

static void listen_cb(struct moat_ev *ev, uint32_t events)
{
	struct listen_ev *le = moat_container_of(ev, struct listen_ev, ev);
	struct moat_worker *w = le->w;
	int i;

	(void)events;
	w->now = moat_now_ms(); /* the connect timeout counts from here */
	for (i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char addr[64] = "?";
		int one = 1;
		int fd = accept4(ev->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("accept_failed", "errno=%d", errno);
			return;
		}
		if (atomic_fetch_add(&w->b->connections, 1) >= (int)w->lim.max_connections) {
			atomic_fetch_sub(&w->b->connections, 1);
			close(fd);
			log_warn("connection_refused", "reason=max_connections");
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		moat_sockaddr_str(&ss, addr, sizeof(addr));
		moat_conn_accept(w, le->l, fd, addr);
	}
}

void moat_worker_index_session(struct moat_worker *w, struct moat_session *s, bool add)
{
	size_t i, j, k, cap;

	if (add) {
		if ((w->by_id_n + 1) * 2 > w->by_id_cap) {
			size_t ncap = w->by_id_cap ? w->by_id_cap * 2 : 256;
			struct moat_session **n = calloc(ncap, sizeof(*n));
			if (n == NULL)
				return;
			for (i = 0; i < w->by_id_cap; i++) {
				if (w->by_id[i] == NULL)
					continue;
				j = w->by_id[i]->id & (ncap - 1);
				while (n[j])
					j = (j + 1) & (ncap - 1);
				n[j] = w->by_id[i];
			}
			free(w->by_id);
			w->by_id = n;
			w->by_id_cap = ncap;
		}
		j = s->id & (w->by_id_cap - 1);
		while (w->by_id[j])
			j = (j + 1) & (w->by_id_cap - 1);
		w->by_id[j] = s;
		w->by_id_n++;
		return;
	}
	cap = w->by_id_cap;
	if (cap == 0)
		return;
	j = s->id & (cap - 1);
	while (w->by_id[j] && w->by_id[j] != s)
		j = (j + 1) & (cap - 1);
	if (w->by_id[j] == NULL)
		return;
	w->by_id[j] = NULL;
	w->by_id_n--;
	k = (j + 1) & (cap - 1);
	while (w->by_id[k]) {
		size_t home = w->by_id[k]->id & (cap - 1);
		bool move = (j <= k) ? (home <= j || home > k) : (home <= j && home > k);
		if (move) {
			w->by_id[j] = w->by_id[k];
			w->by_id[k] = NULL;
			j = k;
		}
		k = (k + 1) & (cap - 1);
	}
}

struct moat_session *moat_worker_find_session(struct moat_worker *w, uint64_t id)
{
	size_t j;

	if (w->by_id_cap == 0)
		return NULL;
	j = id & (w->by_id_cap - 1);
	while (w->by_id[j]) {
		if (w->by_id[j]->id == id)
			return w->by_id[j];
		j = (j + 1) & (w->by_id_cap - 1);
	}
	return NULL;
}

void moat_worker_post(struct moat_worker *from, unsigned to, struct moat_mailitem *it)
{
	it->link.next = NULL;
	if (from->batch_tail[to])
		from->batch_tail[to]->link.next = &it->link;
	else
		from->batch_head[to] = it;
	from->batch_tail[to] = it;
}

void moat_worker_flush_mail(struct moat_worker *w)
{
	unsigned i;

	for (i = 0; i < w->b->n_workers; i++) {
		if (w->batch_head[i] == NULL)
			continue;
		moat_mailbox_post(&w->b->workers[i].mb, &w->batch_head[i]->link,
				  &w->batch_tail[i]->link);
		w->batch_head[i] = w->batch_tail[i] = NULL;
	}
}

static void worker_shutdown(struct moat_worker *w)
{
	struct moat_conn *c;

	for (c = w->conns; c; c = c->next) {
		if (c->state == CONN_CONNECTED) {
			c->graceful = true; /* a server shutdown is not the client's fault */
			moat_conn_disconnect(c, MQTT_RC_SERVER_SHUTTING_DOWN, "shutdown");
		} else {
			moat_conn_close(c, "shutdown");
		}
	}
	w->r.stop = true;
}

static void mail_process(struct moat_worker *w)
{
	struct moat_mail *m = moat_mailbox_take(&w->mb);

	if (m == NULL)
		return;
	w->now = moat_now_ms();
	while (m) {
		struct moat_mailitem *it = moat_container_of(m, struct moat_mailitem, link);
		struct moat_session *s;
		m = m->next;
		switch (it->kind) {
		case MAIL_ROUTE:
			moat_persist_begin(w, it->tok);
			moat_route_local(w, it->msg, it->route, it->retain);
			moat_persist_end(w);
			moat_pubtoken_release(w, it->tok);
			it->tok = NULL;
			break;
		case MAIL_TARGET:
			s = moat_worker_find_session(w, it->session_id);
			moat_persist_begin(w, it->tok);
			if (s)
				moat_session_deliver(s, it->msg, it->qos, it->retain, &it->sub_id,
						     it->sub_id ? 1 : 0);
			moat_persist_end(w);
			moat_pubtoken_release(w, it->tok);
			it->tok = NULL;
			break;
		case MAIL_PUBACKED:
			moat_pubtoken_mail(w, it->tok);
			it->tok = NULL;
			break;
		case MAIL_ADOPT:
			moat_conn_adopt(w, it->conn);
			break;
		case MAIL_STORED:
			if (it->deferred) {
				moat_persist_deferred_done(w, it);
				break;
			}
			s = moat_worker_find_session(w, it->session_id);
			if (s && s->conn && s->conn->state == CONN_CONNECTED)
				moat_handle_stored(s->conn, (uint16_t)it->sub_id, it->qos,
						   it->store_rc);
			break;
		case MAIL_RELOAD:
			if (it->lim)
				w->lim = *it->lim;
			free(it->lim);
			break;
		case MAIL_REGISTRY:
			moat_worker_registry(w, it->regev);
			moat_regev_unref(it->regev);
			it->regev = NULL;
			break;
		case MAIL_ERASE:
			moat_worker_erase(w, it->erase);
			break;
		case MAIL_STOP:
			worker_shutdown(w);
			break;
		default:
			break;
		}
		moat_msg_unref(it->msg);
		free(it);
	}
}

static void mail_cb(struct moat_ev *ev, uint32_t events)
{
	struct moat_worker *w = moat_container_of(ev, struct moat_worker, mb.ev);

	(void)events;
	mail_process(w);
}

/*
 * Run before every batch of events: mail first. A retained message or a
 * delivery another worker posted before acknowledging it to its publisher is
 * then applied here before any packet that arrived after that
 * acknowledgement (a SUBSCRIBE that expects the retained message).
 */
static void before_dispatch(void *arg)
{
	mail_process(arg);
}

/* Messages this worker moved per second, over the last tick (placement). */
static void rate_update(struct moat_worker *w)
{
	uint64_t msgs = atomic_load_explicit(&w->stats.msgs_in, memory_order_relaxed) +
			atomic_load_explicit(&w->stats.msgs_out, memory_order_relaxed);
	uint64_t span = w->now - w->rate_at_ms;

	if (span == 0)
		return;
	atomic_store_explicit(&w->msg_rate, (unsigned)((msgs - w->rate_msgs) * 1000u / span),
			      memory_order_relaxed);
	w->rate_msgs = msgs;
	w->rate_at_ms = w->now;
}

static void tick_cb(struct moat_ev *ev, uint32_t events)
{
	struct moat_worker *w = moat_container_of(ev, struct moat_worker, tick);
	struct moat_conn *c, *cn;
	struct moat_session *s, *sn;
	uint64_t exp;
	static _Thread_local uint64_t last_sys, last_sweep;

	(void)events;
	(void)!read(ev->fd, &exp, sizeof(exp));
	w->now = moat_now_ms();
	for (c = w->conns; c; c = cn) {
		cn = c->next;
		moat_conn_tick(c, w->now);
	}
	for (s = w->sessions; s; s = sn) {
		sn = s->next;
		moat_session_tick(s, w->now);
	}
	rate_update(w);
	if (w->idx == 0 && w->now - last_sys >= MOAT_SYS_INTERVAL_S * 1000u) {
		last_sys = w->now;
		moat_sys_publish(w, true);
	}
	if (w->idx == 0 && w->b->store != NULL &&
	    w->now - last_sweep >= MOAT_STORE_SWEEP_S * 1000u) {
		/* Expired queued messages and orphans leave the disk too. */
		last_sweep = w->now;
		moat_persist_sweep(w);
	}
}

moat_err moat_worker_init(struct moat_worker *w, struct moat_broker *b, unsigned idx)
{
	struct itimerspec its = {.it_interval = {1, 0}, .it_value = {0, 100000000}};
	size_t i;
	char err[256];

	memset(w, 0, sizeof(*w));
	w->b = b;
	w->idx = idx;
	w->r.epfd = -1;
	w->mb.ev.fd = -1;
	w->tick.fd = -1;
	w->lim = b->lim;
	w->rate_at_ms = moat_now_ms();
	if (moat_reactor_init(&w->r) != MOAT_OK || moat_mailbox_init(&w->mb) != MOAT_OK)
		return MOAT_E_IO;
	w->subs = moat_subtrie_new();
	w->interest = malloc(sizeof(*w->interest));
	if (w->interest != NULL)
		moat_interest_init(w->interest);
	w->retained = moat_rettree_new();
	w->batch_head = calloc(b->n_workers, sizeof(*w->batch_head));
	w->batch_tail = calloc(b->n_workers, sizeof(*w->batch_tail));
	w->listen_evs = calloc(b->n_listeners, sizeof(struct listen_ev));
	if (!w->subs || !w->interest || !w->retained || !w->batch_head || !w->batch_tail ||
	    !w->listen_evs)
		return MOAT_E_NOMEM;
	w->mb.ev.cb = mail_cb;
	/* Edge-triggered: every post that wakes us is an edge, so the eventfd
	 * never needs reading (its counter cannot realistically overflow). */
	if (moat_reactor_add(&w->r, &w->mb.ev, EPOLLIN | EPOLLET) != MOAT_OK)
		return MOAT_E_IO;
	w->tick.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (w->tick.fd < 0 || timerfd_settime(w->tick.fd, 0, &its, NULL) != 0)
		return MOAT_E_IO;
	w->tick.cb = tick_cb;
	if (moat_reactor_add(&w->r, &w->tick, EPOLLIN) != MOAT_OK)
		return MOAT_E_IO;
	for (i = 0; i < b->n_listeners; i++) {
		struct listen_ev *le = &((struct listen_ev *)(void *)w->listen_evs)[i];
		le->w = w;
		le->l = &b->listeners[i];
		le->ev.cb = listen_cb;
		le->ev.fd = -1;
		if (b->listeners[i].conf.protocol != MOAT_PROTO_MQTT)
			continue; /* served by the management thread */
		le->ev.fd = moat_listen_socket(&b->listeners[i].conf, err, sizeof(err));
		if (le->ev.fd < 0) {
			log_error("listen_failed", "error=\"%s\"", err);
			return MOAT_E_IO;
		}
		if (moat_reactor_add(&w->r, &le->ev, EPOLLIN) != MOAT_OK)
			return MOAT_E_IO;
	}
	return MOAT_OK;
}

void *moat_worker_main(void *arg)
{
	struct moat_worker *w = arg;

	while (!w->r.stop || w->conns != NULL) {
		struct moat_conn *c;
		int timeout = w->r.stop ? 100 : 1000;

		if (moat_reactor_poll(&w->r, timeout, before_dispatch, w) < 0)
			break;
		w->now = moat_now_ms();
		/* Mail to other workers goes out before any acknowledgement of
		 * the same turn reaches a client (see before_dispatch). */
		moat_worker_flush_mail(w);
		/* Flush what this turn produced: one write per connection. */
		while ((c = w->dirty) != NULL) {
			w->dirty = c->dirty_next;
			moat_conn_flush(c);
		}
		/* Closing connections may have published wills. */
		moat_worker_flush_mail(w);
		moat_persist_flush(w, w->r.stop);
		if (w->r.stop) {
			/* Shutdown: force-close whatever did not close itself. */
			struct moat_conn *cn;
			for (c = w->conns; c; c = cn) {
				cn = c->next;
				moat_conn_close(c, "shutdown");
			}
			while ((c = w->dirty) != NULL) {
				w->dirty = c->dirty_next;
				moat_conn_flush(c);
			}
		}
	}
	return NULL;
}

static void free_sub_cb(void *owner, void *value)
{
	(void)owner;
	(void)value;
}

static void free_ret_cb(void *value)
{
	moat_msg_unref(value);
}

void moat_worker_free(struct moat_worker *w)
{
	size_t i;
	struct moat_mail *m;

	while (w->sessions) {
		struct moat_session *s = w->sessions;
		moat_msg_unref(s->will);
		s->will = NULL;
		s->will_at = 0;
		moat_session_free(s);
	}
	if (w->mb.ev.fd >= 0) {
		m = moat_mailbox_take(&w->mb);
		while (m) {
			struct moat_mailitem *it = moat_container_of(m, struct moat_mailitem, link);
			m = m->next;
			moat_msg_unref(it->msg);
			moat_persist_deferred_free(it->deferred);
			moat_pubtoken_drop(it->tok);
			moat_regev_unref(it->regev);
			free(it->lim);
			free(it);
		}
	}
	if (w->listen_evs) {
		for (i = 0; i < w->b->n_listeners; i++) {
			struct listen_ev *le = &((struct listen_ev *)(void *)w->listen_evs)[i];
			if (le->ev.fd > 0)
				close(le->ev.fd);
		}
	}
	free(w->listen_evs);
	if (w->subs)
		moat_subtrie_free(w->subs, free_sub_cb);
	free(w->interest);
	if (w->retained)
		moat_rettree_free(w->retained, free_ret_cb);
	if (w->lazy)
		moat_store_batch_free(w->lazy);
	w->lazy = NULL;
	free(w->batch_head);
	free(w->batch_tail);
	free(w->by_id);
	free(w->scratch);
	if (w->tick.fd >= 0)
		close(w->tick.fd);
	moat_mailbox_close(&w->mb);
	moat_reactor_close(&w->r);
}
