/*
 * Sessions: subscriptions, the outgoing QoS 1/2 window and queue, incoming
 * QoS 2 state, wills and expiry. A session belongs to one worker; all of
 * this runs on that worker's thread.
 */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "mqtt/topic.h"

struct moat_session *moat_session_new(struct moat_worker *w, const char *cid, size_t len)
{
	struct moat_session *s;

	if (len > MOAT_MAX_CLIENT_ID_LEN)
		return NULL;
	s = calloc(1, sizeof(*s) + len + 1);
	if (s == NULL)
		return NULL;
	s->id = atomic_fetch_add(&w->b->next_session_id, 1) + 1;
	memcpy(s->client_id, cid, len);
	s->client_id[len] = '\0';
	s->client_id_len = (uint16_t)len;
	s->w = w;
	s->next_pid = 1;
	s->next = w->sessions;
	if (w->sessions)
		w->sessions->prev = s;
	w->sessions = s;
	moat_worker_index_session(w, s, true);
	return s;
}

static void delivery_release(struct moat_delivery *d)
{
	moat_msg_unref(d->msg);
	d->msg = NULL;
}

static void session_clear_messages(struct moat_session *s)
{
	uint32_t i;

	for (i = 0; i < s->n_inflight; i++)
		delivery_release(&s->inflight[i]);
	s->n_inflight = 0;
	for (i = 0; i < s->q_len; i++)
		delivery_release(&s->queue[(s->q_head + i) % s->q_cap]);
	s->q_head = s->q_len = 0;
	s->n_qos2_in = 0;
}

static void sub_unlink(struct moat_session *s, struct moat_sub *sub);

/* Drop subscriptions, messages and will: used by clean start and end. */
static void session_clear(struct moat_session *s)
{
	uint16_t i;

	for (i = 0; i < s->n_subs; i++) {
		sub_unlink(s, s->subs[i]);
		moat_sub_free(s->subs[i]);
	}
	s->n_subs = 0;
	session_clear_messages(s);
	moat_msg_unref(s->will);
	s->will = NULL;
	s->will_at = 0;
}

void moat_session_free(struct moat_session *s)
{
	struct moat_worker *w = s->w;

	moat_session_set_stored(s, false);
	session_clear(s);
	moat_acl_unref(s->acl);
	free(s->subs);
	free(s->inflight);
	free(s->queue);
	free(s->qos2_in);
	if (s->prev)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	moat_worker_index_session(w, s, false);
	free(s);
}

void moat_session_reset(struct moat_session *s)
{
	session_clear(s);
}

/* --- subscriptions ------------------------------------------------------ */

struct moat_sub *moat_sub_new(const struct mqtt_sub_entry *e, uint32_t sub_id)
{
	struct moat_sub *sub = calloc(1, sizeof(*sub));
	const char *g, *f;
	size_t glen, flen;
	bool bad;

	if (sub == NULL)
		return NULL;
	sub->filter = malloc(e->filter.len + 1);
	if (sub->filter == NULL) {
		free(sub);
		return NULL;
	}
	memcpy(sub->filter, e->filter.p, e->filter.len);
	sub->filter[e->filter.len] = '\0';
	sub->filter_len = (uint16_t)e->filter.len;
	sub->match = sub->filter;
	sub->match_len = sub->filter_len;
	if (moat_topic_shared_parse(sub->filter, sub->filter_len, &g, &glen, &f, &flen, &bad)) {
		sub->shared = true;
		sub->match = f;
		sub->match_len = (uint16_t)flen;
	}
	sub->qos = e->qos;
	sub->no_local = e->no_local;
	sub->rap = e->retain_as_published;
	sub->rh = e->retain_handling;
	sub->sub_id = sub_id;
	return sub;
}

void moat_sub_free(struct moat_sub *sub)
{
	if (sub == NULL)
		return;
	free(sub->filter);
	free(sub);
}

static void sub_unlink(struct moat_session *s, struct moat_sub *sub)
{
	void *old = NULL;

	if (sub->shared) {
		moat_share_remove(s->w->b, sub);
		return;
	}
	if (moat_subtrie_remove(s->w->subs, sub->match, sub->match_len, s, &old) == MOAT_OK) {
		moat_interest_remove(s->w->interest, sub->match, sub->match_len);
		atomic_fetch_sub(&s->w->n_subs, 1);
	}
}

moat_err moat_session_add_sub(struct moat_session *s, struct moat_sub *sub, bool *existed)
{
	uint16_t i;
	moat_err rc;
	void *old = NULL;

	*existed = false;
	for (i = 0; i < s->n_subs; i++) {
		struct moat_sub *cur = s->subs[i];
		if (cur->filter_len == sub->filter_len &&
		    memcmp(cur->filter, sub->filter, sub->filter_len) == 0) {
			/* Same filter: replace options in place (MQTT 3.8.4). */
			*existed = true;
			if (cur->shared)
				moat_share_remove(s->w->b, cur);
			cur->qos = sub->qos;
			cur->no_local = sub->no_local;
			cur->rap = sub->rap;
			cur->rh = sub->rh;
			cur->sub_id = sub->sub_id;
			if (cur->shared && (rc = moat_share_add(s->w->b, cur)) != MOAT_OK)
				return rc;
			moat_sub_free(sub);
			return MOAT_OK;
		}
	}
	if (s->n_subs >= MOAT_MAX_SUBSCRIPTIONS)
		return MOAT_E_LIMIT;
	if (s->n_subs == s->cap_subs) {
		uint16_t ncap = s->cap_subs ? (uint16_t)(s->cap_subs * 2) : 4;
		struct moat_sub **n = realloc(s->subs, ncap * sizeof(*n));
		if (n == NULL)
			return MOAT_E_NOMEM;
		s->subs = n;
		s->cap_subs = ncap;
	}
	sub->s = s;
	if (sub->shared) {
		if ((rc = moat_share_add(s->w->b, sub)) != MOAT_OK)
			return rc;
	} else {
		rc = moat_subtrie_insert(s->w->subs, sub->match, sub->match_len, s, sub, &old);
		if (rc != MOAT_OK)
			return rc;
		moat_interest_add(s->w->interest, sub->match, sub->match_len);
		atomic_fetch_add(&s->w->n_subs, 1);
	}
	s->subs[s->n_subs++] = sub;
	return MOAT_OK;
}

bool moat_session_remove_sub(struct moat_session *s, const char *filter, size_t len)
{
	uint16_t i;

	for (i = 0; i < s->n_subs; i++) {
		struct moat_sub *cur = s->subs[i];
		if (cur->filter_len == len && memcmp(cur->filter, filter, len) == 0) {
			sub_unlink(s, cur);
			moat_sub_free(cur);
			memmove(&s->subs[i], &s->subs[i + 1],
				(size_t)(s->n_subs - i - 1) * sizeof(*s->subs));
			s->n_subs--;
			return true;
		}
	}
	return false;
}

/* --- authorization at delivery ------------------------------------------ */

void moat_session_set_acl(struct moat_session *s, struct moat_acl *acl, bool all)
{
	if (acl != NULL)
		moat_acl_ref(acl);
	moat_acl_unref(s->acl);
	s->acl = acl;
	s->acl_all = all;
}

bool moat_session_may_receive(const struct moat_session *s, const struct moat_msg *m)
{
	return s->acl_all || moat_acl_may_receive(s->acl, m->topic, m->topic_len);
}

static void count_denied(struct moat_session *s, const struct moat_msg *m)
{
	atomic_fetch_add_explicit(&s->w->stats.denied, 1, memory_order_relaxed);
	log_debug("delivery_denied", "client=%s topic=\"%s\"", s->client_id, m->topic);
}

size_t moat_session_drop_denied(struct moat_session *s)
{
	size_t dropped = 0;
	uint32_t i, n = s->q_len, kept = 0;
	uint16_t k = 0;

	/* The queue, in order, keeping what is still allowed. */
	for (i = 0; i < n; i++) {
		struct moat_delivery d = s->queue[(s->q_head + i) % s->q_cap];
		if (moat_session_may_receive(s, d.msg)) {
			s->queue[(s->q_head + kept) % s->q_cap] = d;
			kept++;
			continue;
		}
		count_denied(s, d.msg);
		moat_persist_delivery_done(s, &d);
		delivery_release(&d);
		dropped++;
	}
	s->q_len = kept;
	/* In flight: a PUBLISH not yet acknowledged is not sent again. */
	while (k < s->n_inflight) {
		struct moat_delivery *d = &s->inflight[k];
		if (d->state == DELIVERY_WAIT_PUBCOMP || moat_session_may_receive(s, d->msg)) {
			k++;
			continue;
		}
		count_denied(s, d->msg);
		moat_session_complete(s, d);
		dropped++;
	}
	return dropped;
}

/* --- outgoing messages -------------------------------------------------- */

static uint16_t session_window(const struct moat_session *s)
{
	uint16_t win = s->w->lim.max_inflight;

	if (s->conn && s->conn->peer_receive_max < win)
		win = s->conn->peer_receive_max;
	return win ? win : 1;
}

static bool pid_in_use(const struct moat_session *s, uint16_t pid)
{
	uint16_t i;

	for (i = 0; i < s->n_inflight; i++)
		if (s->inflight[i].pid == pid)
			return true;
	return false;
}

static uint16_t session_next_pid(struct moat_session *s)
{
	uint16_t pid;

	do {
		pid = s->next_pid++;
		if (s->next_pid == 0)
			s->next_pid = 1;
	} while (pid == 0 || pid_in_use(s, pid));
	return pid;
}

/* Topic alias towards the client: reuse or assign; 0 when none. */
static uint16_t alias_out(struct moat_conn *c, const struct moat_msg *m, bool *known)
{
	uint16_t i, max = c->peer_alias_max;

	*known = false;
	if (max == 0)
		return 0;
	if (max > MOAT_TOPIC_ALIAS_OUT_MAX)
		max = MOAT_TOPIC_ALIAS_OUT_MAX;
	if (c->alias_out == NULL) {
		c->alias_out = calloc(max, sizeof(char *));
		if (c->alias_out == NULL)
			return 0;
	}
	for (i = 0; i < c->n_alias_out; i++) {
		if (strcmp(c->alias_out[i], m->topic) == 0) {
			*known = true;
			return (uint16_t)(i + 1);
		}
	}
	if (c->n_alias_out >= max)
		return 0;
	c->alias_out[c->n_alias_out] = strdup(m->topic);
	if (c->alias_out[c->n_alias_out] == NULL)
		return 0;
	return ++c->n_alias_out;
}

/* Encode and queue one PUBLISH to the session's connection. false when the
 * packet exceeds the client's Maximum Packet Size (message is discarded, per
 * MQTT 3.1.2.25) or cannot be buffered. */
static bool send_publish(struct moat_session *s, const struct moat_delivery *d, bool dup)
{
	struct moat_conn *c = s->conn;
	struct mqtt_packet p;
	struct moat_msg *m = d->msg;
	uint64_t now = s->w->now;
	bool known = false;
	uint16_t alias = 0;

	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.dup = dup;
	p.u.publish.qos = d->qos;
	p.u.publish.retain = d->retain;
	p.u.publish.topic.p = (const uint8_t *)m->topic;
	p.u.publish.topic.len = m->topic_len;
	p.u.publish.packet_id = d->pid;
	p.u.publish.payload.p = m->payload;
	p.u.publish.payload.len = m->payload_len;
	if (c->version == MQTT_V5) {
		struct mqtt_props *pr = &p.props;
		if (m->has_payload_format) {
			pr->present |= MQTT_HAS(MQTT_PROP_PAYLOAD_FORMAT);
			pr->payload_format = m->payload_format;
		}
		if (m->expiry_at) {
			uint64_t left =
			    m->expiry_at > now ? (m->expiry_at - now + 999u) / 1000u : 0;
			if (left == 0)
				return false;
			pr->present |= MQTT_HAS(MQTT_PROP_MESSAGE_EXPIRY);
			pr->message_expiry = (uint32_t)left;
		}
		if (m->content_type) {
			pr->present |= MQTT_HAS(MQTT_PROP_CONTENT_TYPE);
			pr->content_type.p = m->content_type;
			pr->content_type.len = m->content_type_len;
		}
		if (m->response_topic) {
			pr->present |= MQTT_HAS(MQTT_PROP_RESPONSE_TOPIC);
			pr->response_topic.p = m->response_topic;
			pr->response_topic.len = m->response_topic_len;
		}
		if (m->correlation) {
			pr->present |= MQTT_HAS(MQTT_PROP_CORRELATION_DATA);
			pr->correlation_data.p = m->correlation;
			pr->correlation_data.len = m->correlation_len;
		}
		if (m->user) {
			pr->user.p = m->user;
			pr->user.len = m->user_len;
			pr->n_user = m->n_user;
		}
		if (d->n_sub_ids) {
			pr->present |= MQTT_HAS(MQTT_PROP_SUBSCRIPTION_ID);
			pr->sub_ids = d->sub_ids;
			pr->n_sub_ids = d->n_sub_ids;
		}
		if (!dup)
			alias = alias_out(c, m, &known);
		if (alias) {
			pr->present |= MQTT_HAS(MQTT_PROP_TOPIC_ALIAS);
			pr->topic_alias = alias;
			if (known)
				p.u.publish.topic.len = 0;
		}
	}
	if (mqtt_encoded_size(c->version, &p) > c->peer_max_packet) {
		atomic_fetch_add_explicit(&s->w->stats.dropped, 1, memory_order_relaxed);
		return false;
	}
	if (!moat_conn_send(c, &p)) {
		atomic_fetch_add_explicit(&s->w->stats.dropped, 1, memory_order_relaxed);
		return false;
	}
	atomic_fetch_add_explicit(&s->w->stats.msgs_out, 1, memory_order_relaxed);
	return true;
}

static bool session_online(const struct moat_session *s)
{
	return s->conn != NULL && s->conn->state == CONN_CONNECTED && !s->conn->held;
}

/* fresh: the delivery was just created (its insert records its state);
 * else it comes from the queue and its stored state changes. */
static void inflight_start(struct moat_session *s, struct moat_delivery *d, bool fresh)
{
	struct moat_delivery *slot;

	d->pid = session_next_pid(s);
	d->state = d->qos == 1 ? DELIVERY_WAIT_PUBACK : DELIVERY_WAIT_PUBREC;
	slot = &s->inflight[s->n_inflight++];
	*slot = *d;
	if (fresh)
		moat_persist_delivery_put(s, slot);
	else
		moat_persist_delivery_state(s, slot);
	if (!send_publish(s, slot, false)) {
		/* Too large for this client: discard, as if acknowledged. */
		moat_session_complete(s, slot);
	}
}

static bool inflight_room(struct moat_session *s)
{
	uint16_t win = session_window(s);

	if (s->n_inflight >= win)
		return false;
	if (s->cap_inflight < win) {
		struct moat_delivery *n = realloc(s->inflight, win * sizeof(*n));
		if (n == NULL)
			return false;
		s->inflight = n;
		s->cap_inflight = win;
	}
	return true;
}

static bool queue_push(struct moat_session *s, const struct moat_delivery *d)
{
	uint32_t max = s->w->lim.max_queued_messages;

	if (s->q_len >= max)
		return false;
	if (s->q_len == s->q_cap) {
		uint32_t ncap = s->q_cap ? s->q_cap * 2 : 8, i;
		struct moat_delivery *n;
		if (ncap > max)
			ncap = max;
		n = malloc(ncap * sizeof(*n));
		if (n == NULL)
			return false;
		for (i = 0; i < s->q_len; i++)
			n[i] = s->queue[(s->q_head + i) % s->q_cap];
		free(s->queue);
		s->queue = n;
		s->q_head = 0;
		s->q_cap = ncap;
	}
	s->queue[(s->q_head + s->q_len) % s->q_cap] = *d;
	s->q_len++;
	return true;
}

void moat_session_deliver(struct moat_session *s, struct moat_msg *m, uint8_t qos, bool retain,
			  const uint32_t *sub_ids, uint8_t n_sub_ids)
{
	struct moat_delivery d;

	if (moat_msg_expired(m, s->w->now))
		return;
	if (!moat_session_may_receive(s, m)) {
		count_denied(s, m);
		return;
	}
	memset(&d, 0, sizeof(d));
	d.msg = m;
	d.qos = qos;
	d.retain = retain;
	if (n_sub_ids > MOAT_SUB_IDS_PER_DELIVERY)
		n_sub_ids = MOAT_SUB_IDS_PER_DELIVERY;
	if (n_sub_ids)
		memcpy(d.sub_ids, sub_ids, n_sub_ids * sizeof(*sub_ids));
	d.n_sub_ids = n_sub_ids;
	if (qos == 0) {
		/* QoS 0 is never queued for offline sessions (MQTT allows it;
		 * memory matters more). */
		if (session_online(s))
			(void)send_publish(s, &d, false);
		return;
	}
	moat_msg_ref(m);
	if (s->stored)
		d.seq = ++s->next_seq;
	if (session_online(s) && s->q_len == 0 && inflight_room(s)) {
		inflight_start(s, &d, true);
		return;
	}
	if (!queue_push(s, &d)) {
		atomic_fetch_add_explicit(&s->w->stats.dropped, 1, memory_order_relaxed);
		moat_msg_unref(m);
		return;
	}
	moat_persist_delivery_put(s, &d);
}

void moat_session_pump(struct moat_session *s)
{
	while (s->q_len > 0 && session_online(s) && inflight_room(s)) {
		struct moat_delivery d = s->queue[s->q_head];
		bool expired = moat_msg_expired(d.msg, s->w->now);

		s->q_head = (s->q_head + 1) % s->q_cap;
		s->q_len--;
		if (expired || !moat_session_may_receive(s, d.msg)) {
			if (!expired)
				count_denied(s, d.msg);
			moat_persist_delivery_done(s, &d);
			delivery_release(&d);
			continue;
		}
		inflight_start(s, &d, false);
	}
	if (s->q_len == 0 && s->q_cap > 64) {
		free(s->queue);
		s->queue = NULL;
		s->q_cap = 0;
		s->q_head = 0;
	}
}

void moat_session_resend(struct moat_session *s)
{
	uint16_t i = 0;

	while (i < s->n_inflight) {
		struct moat_delivery *d = &s->inflight[i];
		if (d->state == DELIVERY_WAIT_PUBCOMP) {
			struct mqtt_packet p;
			memset(&p, 0, sizeof(p));
			p.type = MQTT_PUBREL;
			p.u.ack.packet_id = d->pid;
			(void)moat_conn_send(s->conn, &p);
			i++;
			continue;
		}
		if (!moat_session_may_receive(s, d->msg)) {
			count_denied(s, d->msg);
			moat_session_complete(s, d);
			continue;
		}
		if (!send_publish(s, d, true)) {
			moat_session_complete(s, d);
			continue;
		}
		i++;
	}
}

struct moat_delivery *moat_session_find_inflight(struct moat_session *s, uint16_t pid)
{
	uint16_t i;

	for (i = 0; i < s->n_inflight; i++)
		if (s->inflight[i].pid == pid)
			return &s->inflight[i];
	return NULL;
}

void moat_session_complete(struct moat_session *s, struct moat_delivery *d)
{
	size_t i = (size_t)(d - s->inflight);

	moat_persist_delivery_done(s, d);
	delivery_release(d);
	/* Keep order: retransmission after reconnect must follow it. */
	memmove(&s->inflight[i], &s->inflight[i + 1], (s->n_inflight - i - 1) * sizeof(*d));
	s->n_inflight--;
}

/* --- lifecycle ---------------------------------------------------------- */

void moat_session_publish_will(struct moat_session *s)
{
	struct moat_msg *will = s->will;

	s->will = NULL;
	s->will_at = 0;
	if (will == NULL)
		return;
	/* A will's expiry counts from its publication (MQTT 3.1.3.2). */
	if (will->expiry_interval)
		will->expiry_at = s->w->now + (uint64_t)will->expiry_interval * 1000u;
	log_debug("will", "client=%s topic=%s", s->client_id, will->topic);
	if (s->w->b->pipeline.n_taps > 0) {
		/* A will is the client's message, published on its behalf. */
		struct moat_pub_view pv = {
		    s->w,	 s->identity,	  s->client_id,	 "",
		    will->topic, will->topic_len, will->payload, will->payload_len,
		    will->qos,	 will->retain,	  will};
		moat_pipeline_tap(&s->w->b->pipeline, &pv);
	}
	moat_persist_begin(s->w, NULL);
	if (will->retain)
		(void)moat_persist_retained(s->w, will);
	if (s->w->b->store != NULL && will->qos > 0 && will->store_id == 0)
		will->store_id = atomic_fetch_add(&s->w->b->next_msg_id, 1);
	moat_route(s->w, will, NULL);
	moat_persist_end(s->w);
	moat_msg_unref(will);
}

void moat_session_end(struct moat_session *s)
{
	if (s->will_at)
		moat_session_publish_will(s);
	moat_persist_session_del(s);
	moat_clientmap_release(s->w->b, s->client_id, s->client_id_len, s->id);
	moat_session_free(s);
}

void moat_session_detach(struct moat_session *s)
{
	struct moat_conn *c = s->conn;
	uint64_t now = s->w->now;

	if (c == NULL)
		return;
	s->conn = NULL;
	c->s = NULL;
	if (s->will != NULL) {
		if (c->graceful) {
			moat_msg_unref(s->will);
			s->will = NULL;
		} else if (s->will_delay == 0 || s->expiry_interval == 0) {
			moat_session_publish_will(s);
		} else {
			uint32_t d =
			    s->will_delay < s->expiry_interval ? s->will_delay : s->expiry_interval;
			s->will_at = now + (uint64_t)d * 1000u;
		}
	}
	if (s->expiry_interval == 0) {
		moat_session_end(s);
		return;
	}
	s->expire_at = now + (uint64_t)s->expiry_interval * 1000u;
	(void)moat_persist_session(s, false, false, NULL, false);
}

void moat_session_tick(struct moat_session *s, uint64_t now)
{
	if (s->conn != NULL)
		return;
	if (s->will_at && now >= s->will_at)
		moat_session_publish_will(s);
	if (s->expire_at && now >= s->expire_at) {
		log_debug("session_expired", "client=%s", s->client_id);
		moat_session_end(s);
	}
}

/* --- restore (before the workers start) ------------------------------------ */

moat_err moat_session_restore_delivery(struct moat_session *s, const struct moat_delivery *d)
{
	if (d->seq > s->next_seq)
		s->next_seq = d->seq;
	if (d->state == DELIVERY_QUEUED) {
		/* Restored queues may exceed today's limit: keep what was stored. */
		uint32_t max = s->w->lim.max_queued_messages;
		bool ok;
		s->w->lim.max_queued_messages = UINT32_MAX;
		ok = queue_push(s, d);
		s->w->lim.max_queued_messages = max;
		return ok ? MOAT_OK : MOAT_E_NOMEM;
	}
	if (s->n_inflight == s->cap_inflight) {
		uint16_t ncap = s->cap_inflight ? (uint16_t)(s->cap_inflight * 2) : 8;
		struct moat_delivery *n;
		if (ncap <= s->n_inflight)
			return MOAT_E_LIMIT;
		n = realloc(s->inflight, ncap * sizeof(*n));
		if (n == NULL)
			return MOAT_E_NOMEM;
		s->inflight = n;
		s->cap_inflight = ncap;
	}
	s->inflight[s->n_inflight++] = *d;
	return MOAT_OK;
}

moat_err moat_session_restore_qos2(struct moat_session *s, uint16_t pid)
{
	if (s->n_qos2_in == s->cap_qos2_in) {
		uint16_t ncap = s->cap_qos2_in ? (uint16_t)(s->cap_qos2_in * 2) : 8;
		uint16_t *n;
		if (ncap <= s->n_qos2_in)
			return MOAT_E_LIMIT;
		n = realloc(s->qos2_in, ncap * sizeof(*n));
		if (n == NULL)
			return MOAT_E_NOMEM;
		s->qos2_in = n;
		s->cap_qos2_in = ncap;
	}
	s->qos2_in[s->n_qos2_in++] = pid;
	return MOAT_OK;
}

void moat_session_set_stored(struct moat_session *s, bool stored)
{
	if (s->stored == stored)
		return;
	s->stored = stored;
	if (stored)
		atomic_fetch_add(&s->w->n_stored, 1);
	else
		atomic_fetch_sub(&s->w->n_stored, 1);
}
