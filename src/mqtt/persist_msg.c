/*
 * Durable messages for persistent sessions (issue 3, slice 4).
 *
 * A QoS 1/2 PUBLISH is acknowledged only when every write it caused has
 * committed: the deliveries queued for stored (persistent) sessions on
 * every worker, the retained entry, the QoS 2 receive state. The publishing
 * worker makes a token with one hold for itself; each write batch and each
 * worker it posts the message to (if that worker has stored sessions) takes
 * a hold; whoever drops the last hold acknowledges (inline on the
 * publishing worker, else through its mailbox, MAIL_PUBACKED).
 *
 * While a worker routes a message it collects the statements for its
 * stored sessions in one batch (moat_persist_begin/end). Later state changes
 * of a stored delivery (sent, PUBREC, done) go into a per-worker lazy batch
 * submitted once per loop turn; nobody waits for those, and the writer's
 * FIFO order keeps them after the delivery's own insert.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "store/store.h"
#include "mqtt/schema.h"

struct moat_pubtoken {
	atomic_int pending;
	atomic_bool failed;
	struct moat_broker *b;
	unsigned worker;
	uint64_t session_id;
	uint64_t conn_id;
	uint16_t pid;
	uint8_t qos;
};

struct moat_pubtoken *moat_pubtoken_new(struct moat_conn *c, uint16_t pid, uint8_t qos)
{
	struct moat_pubtoken *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	atomic_init(&t->pending, 1);
	atomic_init(&t->failed, false);
	t->b = c->w->b;
	t->worker = c->w->idx;
	t->session_id = c->s->id;
	t->conn_id = c->id;
	t->pid = pid;
	t->qos = qos;
	return t;
}

void moat_pubtoken_hold(struct moat_pubtoken *t)
{
	atomic_fetch_add(&t->pending, 1);
}

static void pubtoken_ack(struct moat_worker *w, struct moat_pubtoken *t)
{
	struct moat_session *s = moat_worker_find_session(w, t->session_id);

	if (s && s->conn && s->conn->id == t->conn_id && s->conn->state == CONN_CONNECTED)
		moat_handle_stored(s->conn, t->pid, t->qos,
				   atomic_load(&t->failed) ? MOAT_E_FULL : MOAT_OK);
	free(t);
}

/* Drop a hold from any thread; the last one acknowledges through the
 * publisher's mailbox. */
static void pubtoken_release_remote(struct moat_pubtoken *t)
{
	struct moat_mailitem *it;

	if (atomic_fetch_sub(&t->pending, 1) != 1)
		return;
	it = calloc(1, sizeof(*it));
	if (it == NULL) {
		free(t); /* the publisher retransmits; nothing was lost */
		return;
	}
	it->kind = MAIL_PUBACKED;
	it->tok = t;
	moat_mailbox_post(&t->b->workers[t->worker].mb, &it->link, &it->link);
}

void moat_pubtoken_release(struct moat_worker *w, struct moat_pubtoken *t)
{
	if (t == NULL)
		return;
	if (w != NULL && w->idx == t->worker) {
		if (atomic_fetch_sub(&t->pending, 1) == 1)
			pubtoken_ack(w, t);
		return;
	}
	pubtoken_release_remote(t);
}

void moat_pubtoken_mail(struct moat_worker *w, struct moat_pubtoken *t)
{
	pubtoken_ack(w, t);
}

void moat_pubtoken_drop(struct moat_pubtoken *t)
{
	if (t != NULL && atomic_fetch_sub(&t->pending, 1) == 1)
		free(t);
}

/* --- the per-route collector --------------------------------------------- */

static void batch_done_cb(void *arg, moat_err rc)
{
	struct moat_pubtoken *t = arg;

	if (rc != MOAT_OK) {
		log_error("store_write_failed", "what=messages error=\"%s\"", moat_strerror(rc));
		if (t)
			atomic_store(&t->failed, true);
	}
	if (t)
		pubtoken_release_remote(t);
}

void moat_persist_begin(struct moat_worker *w, struct moat_pubtoken *t)
{
	w->pcollect = w->b->store != NULL;
	w->ptok = t;
	w->pbatch = NULL;
	w->pmsg = NULL;
	w->pfailed = false;
}

struct moat_store_batch *moat_persist_batch(struct moat_worker *w)
{
	if (!w->pcollect)
		return NULL;
	if (w->pbatch == NULL && moat_store_batch_new(&w->pbatch) != MOAT_OK) {
		w->pfailed = true;
		return NULL;
	}
	return w->pbatch;
}

void moat_persist_fail(struct moat_worker *w)
{
	w->pfailed = true;
}

void moat_persist_abort(struct moat_worker *w)
{
	if (w->pbatch != NULL)
		moat_store_batch_free(w->pbatch);
	w->pbatch = NULL;
	w->pcollect = false;
	w->ptok = NULL;
	w->pmsg = NULL;
	w->pfailed = false;
}

void moat_persist_end(struct moat_worker *w)
{
	struct moat_pubtoken *t = w->ptok;

	if (w->pfailed && t)
		atomic_store(&t->failed, true);
	/* relaxed: acknowledged at once; the write commits within the flush
	 * interval (a process crash loses nothing committed, a power loss the
	 * last interval). strict: the acknowledgement waits for the commit. */
	if (w->b->durability_relaxed)
		t = NULL;
	if (w->pbatch != NULL) {
		if (t)
			moat_pubtoken_hold(t);
		if (moat_store_submit(w->b->store, w->pbatch, batch_done_cb, t) != MOAT_OK) {
			log_error("store_write_failed",
				  "what=messages error=\"pending writes over the limit\"");
			batch_done_cb(t, MOAT_E_LIMIT);
		}
	}
	w->pbatch = NULL;
	w->pcollect = false;
	w->ptok = NULL;
	w->pmsg = NULL;
}

static moat_err add_msg(struct moat_worker *w, struct moat_store_batch *b, struct moat_msg *m)
{
	struct moat_buf props;
	struct moat_val v[7];
	int64_t expire = 0;
	moat_err rc;

	if (w->pmsg == m)
		return MOAT_OK;
	moat_buf_init(&props, MOAT_MAX_PACKET_SIZE_MAX);
	if ((rc = moat_persist_props(m, &props)) != MOAT_OK)
		goto out;
	if (m->expiry_at)
		expire = moat_wall_ms() + (int64_t)(m->expiry_at - w->now);
	v[0] = moat_val_int((int64_t)m->store_id);
	v[1] = moat_val_text(m->topic, m->topic_len);
	v[2] = moat_val_blob(m->payload, m->payload_len);
	v[3] = moat_val_blob(moat_buf_head(&props), moat_buf_used(&props));
	v[4] = moat_val_int(m->qos);
	v[5] = moat_val_int(m->retain);
	v[6] = m->expiry_at ? moat_val_int(expire) : moat_val_null();
	rc = moat_store_batch_add(b, MQTT_STMT(MSG_PUT_IGNORE), v, 7);
	if (rc == MOAT_OK)
		w->pmsg = m;
out:
	moat_buf_free(&props);
	return rc;
}

static int delivery_state(const struct moat_delivery *d)
{
	switch (d->state) {
	case DELIVERY_WAIT_PUBACK:
		return 1;
	case DELIVERY_WAIT_PUBREC:
		return 2;
	case DELIVERY_WAIT_PUBCOMP:
		return 3;
	default:
		return 0;
	}
}

void moat_persist_delivery_put(struct moat_session *s, const struct moat_delivery *d)
{
	struct moat_worker *w = s->w;
	struct moat_store_batch *b;
	struct moat_val v[8];
	uint8_t ids[4 * MOAT_SUB_IDS_PER_DELIVERY];
	size_t i;

	if (!w->pcollect || !s->stored || d->msg->store_id == 0)
		return;
	if ((b = moat_persist_batch(w)) == NULL)
		return;
	for (i = 0; i < d->n_sub_ids; i++) {
		ids[4 * i] = (uint8_t)(d->sub_ids[i] >> 24);
		ids[4 * i + 1] = (uint8_t)(d->sub_ids[i] >> 16);
		ids[4 * i + 2] = (uint8_t)(d->sub_ids[i] >> 8);
		ids[4 * i + 3] = (uint8_t)d->sub_ids[i];
	}
	v[0] = moat_val_text(s->client_id, s->client_id_len);
	v[1] = moat_val_int((int64_t)d->seq);
	v[2] = moat_val_int((int64_t)d->msg->store_id);
	v[3] = moat_val_int(d->qos);
	v[4] = moat_val_int(d->retain);
	v[5] = moat_val_int(delivery_state(d));
	v[6] = moat_val_int(d->pid);
	v[7] = moat_val_blob(ids, 4 * d->n_sub_ids);
	if (add_msg(w, b, d->msg) != MOAT_OK ||
	    moat_store_batch_add(b, MQTT_STMT(DELIVERY_PUT), v, 8) != MOAT_OK)
		w->pfailed = true;
}

/* --- lazy changes, once per loop turn ------------------------------------ */

static struct moat_store_batch *lazy(struct moat_worker *w)
{
	if (w->b->store == NULL)
		return NULL;
	if (w->lazy == NULL && moat_store_batch_new(&w->lazy) != MOAT_OK)
		return NULL;
	return w->lazy;
}

static void lazy_add(struct moat_worker *w, struct moat_stmt id, const struct moat_val *v, size_t n)
{
	struct moat_store_batch *b = lazy(w);

	if (b != NULL && moat_store_batch_add(b, id, v, n) != MOAT_OK)
		log_error("store_write_failed", "what=lazy error=\"cannot queue a write\"");
}

void moat_persist_delivery_state(struct moat_session *s, const struct moat_delivery *d)
{
	struct moat_val v[4];

	if (!s->stored || d->seq == 0)
		return;
	v[0] = moat_val_text(s->client_id, s->client_id_len);
	v[1] = moat_val_int((int64_t)d->seq);
	v[2] = moat_val_int(delivery_state(d));
	v[3] = moat_val_int(d->pid);
	lazy_add(s->w, MQTT_STMT(DELIVERY_SET_STATE), v, 4);
}

void moat_persist_delivery_done(struct moat_session *s, const struct moat_delivery *d)
{
	struct moat_val v[2];
	struct moat_val g;

	if (!s->stored || d->seq == 0)
		return;
	v[0] = moat_val_text(s->client_id, s->client_id_len);
	v[1] = moat_val_int((int64_t)d->seq);
	lazy_add(s->w, MQTT_STMT(DELIVERY_DEL), v, 2);
	g = moat_val_int((int64_t)d->msg->store_id);
	lazy_add(s->w, MQTT_STMT(MSG_GC), &g, 1);
}

void moat_persist_qos2(struct moat_session *s, uint16_t pid, bool add)
{
	struct moat_val v[2];

	if (!s->stored || s->w->b->store == NULL)
		return;
	v[0] = moat_val_text(s->client_id, s->client_id_len);
	v[1] = moat_val_int(pid);
	if (add) {
		/* Part of the PUBLISH's own batch: PUBREC waits for it. A pending
		 * lazy delete of the same id (an earlier PUBREL) must commit
		 * first, or it would delete this one. */
		struct moat_store_batch *b;
		moat_persist_flush(s->w, true);
		b = moat_persist_batch(s->w);
		if (b == NULL || moat_store_batch_add(b, MQTT_STMT(QOS2_IN_PUT), v, 2) != MOAT_OK)
			s->w->pfailed = true;
		return;
	}
	lazy_add(s->w, MQTT_STMT(QOS2_IN_DEL), v, 2);
}

static void lazy_done_cb(void *arg, moat_err rc)
{
	(void)arg;
	if (rc != MOAT_OK)
		log_error("store_write_failed", "what=delivery_state error=\"%s\"",
			  moat_strerror(rc));
}

void moat_persist_flush(struct moat_worker *w, bool force)
{
	struct moat_store_batch *b = w->lazy;

	if (b == NULL)
		return;
	/* Nobody waits for these: one transaction per interval, not per loop
	 * turn, so a strict store does not fsync once per acknowledgement. */
	if (!force && w->now - w->lazy_at < MOAT_STORE_LAZY_MS)
		return;
	w->lazy_at = w->now;
	w->lazy = NULL;
	if (moat_store_submit(w->b->store, b, lazy_done_cb, NULL) != MOAT_OK)
		log_error("store_write_failed",
			  "what=delivery_state error=\"pending writes over the limit\"");
}

void moat_persist_sweep(struct moat_worker *w)
{
	struct moat_val now = moat_val_int(moat_wall_ms());

	lazy_add(w, MQTT_STMT(EXPIRE_QUEUED), &now, 1);
	lazy_add(w, MQTT_STMT(MSG_GC_ALL), NULL, 0);
}

/* --- restore at start ---------------------------------------------------- */

struct msgmap {
	struct moat_msg **m;
	size_t n, cap;
};

static moat_err load_msg_cb(void *arg, const struct moat_val *c, size_t n)
{
	struct moat_mqtt_msg_row row;
	struct msgmap *mm = arg;
	struct mqtt_packet p;
	struct moat_msg *m;

	if (moat_mqtt_msg_row_decode(c, n, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if (moat_persist_decode_props(&row.props, &p) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if (row.expire_at.type == MOAT_VAL_INT) {
		int64_t left = row.expire_at.i - moat_wall_ms();
		p.props.present |= MQTT_HAS(MQTT_PROP_MESSAGE_EXPIRY);
		p.props.message_expiry = left > 0 ? (uint32_t)((left + 999) / 1000) : 1;
	}
	m = moat_msg_new(row.topic.p, row.topic.len, row.payload.p, row.payload.len, &p.props,
			 (uint8_t)row.qos.i, row.retain.i != 0, 0, moat_now_ms());
	if (m == NULL)
		return MOAT_E_NOMEM;
	m->store_id = (uint64_t)row.id.i;
	if (mm->n == mm->cap) {
		size_t ncap = mm->cap ? mm->cap * 2 : 64;
		struct moat_msg **nm = realloc(mm->m, ncap * sizeof(*nm));
		if (nm == NULL) {
			moat_msg_unref(m);
			return MOAT_E_NOMEM;
		}
		mm->m = nm;
		mm->cap = ncap;
	}
	mm->m[mm->n++] = m; /* ordered by id (the query sorts) */
	return MOAT_OK;
}

static struct moat_msg *msgmap_find(const struct msgmap *mm, uint64_t id)
{
	size_t lo = 0, hi = mm->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (mm->m[mid]->store_id == id)
			return mm->m[mid];
		if (mm->m[mid]->store_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct restore_ctx {
	struct moat_broker *b;
	struct msgmap mm;
	size_t deliveries;
};

static moat_err load_delivery_cb(void *arg, const struct moat_val *c, size_t n)
{
	struct moat_mqtt_delivery_row row;
	struct restore_ctx *rc = arg;
	struct moat_session *s;
	struct moat_delivery d;
	struct moat_msg *m;
	size_t i;

	if (moat_mqtt_delivery_row_decode(c, n, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	s = moat_clientmap_find_session(rc->b, row.client_id.p, row.client_id.len);
	m = msgmap_find(&rc->mm, (uint64_t)row.msg_id.i);
	if (s == NULL || m == NULL)
		return MOAT_OK; /* expired session or message: the sweep removes it */
	memset(&d, 0, sizeof(d));
	d.msg = moat_msg_ref(m);
	d.seq = (uint64_t)row.seq.i;
	d.qos = (uint8_t)row.qos.i;
	d.retain = row.retain.type == MOAT_VAL_INT && row.retain.i != 0;
	d.pid = (uint16_t)row.pid.i;
	d.state = row.state.i == 1   ? DELIVERY_WAIT_PUBACK
		  : row.state.i == 2 ? DELIVERY_WAIT_PUBREC
		  : row.state.i == 3 ? DELIVERY_WAIT_PUBCOMP
				     : DELIVERY_QUEUED;
	if (row.sub_ids.type == MOAT_VAL_BLOB)
		for (i = 0; i + 4 <= row.sub_ids.len && d.n_sub_ids < MOAT_SUB_IDS_PER_DELIVERY;
		     i += 4) {
			const uint8_t *p = (const uint8_t *)row.sub_ids.p + i;
			d.sub_ids[d.n_sub_ids++] = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
						   ((uint32_t)p[2] << 8) | p[3];
		}
	if (moat_session_restore_delivery(s, &d) != MOAT_OK) {
		moat_msg_unref(d.msg);
		return MOAT_E_NOMEM;
	}
	rc->deliveries++;
	return MOAT_OK;
}

static moat_err load_qos2_cb(void *arg, const struct moat_val *c, size_t n)
{
	struct moat_mqtt_qos2_row row;
	struct restore_ctx *rc = arg;
	struct moat_session *s;

	if (moat_mqtt_qos2_row_decode(c, n, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	s = moat_clientmap_find_session(rc->b, row.client_id.p, row.client_id.len);
	if (s == NULL)
		return MOAT_OK;
	return moat_session_restore_qos2(s, (uint16_t)row.pid.i);
}

moat_err moat_persist_restore_messages(struct moat_broker *b, char *err, size_t errlen)
{
	struct restore_ctx ctx;
	size_t i;
	moat_err rc;

	memset(&ctx, 0, sizeof(ctx));
	ctx.b = b;
	rc = moat_store_read(b->store, MQTT_STMT(LOAD_MESSAGES), NULL, 0, load_msg_cb, &ctx.mm);
	if (rc == MOAT_OK)
		rc = moat_store_read(b->store, MQTT_STMT(LOAD_DELIVERIES), NULL, 0,
				     load_delivery_cb, &ctx);
	if (rc == MOAT_OK)
		rc =
		    moat_store_read(b->store, MQTT_STMT(LOAD_QOS2_IN), NULL, 0, load_qos2_cb, &ctx);
	for (i = 0; i < ctx.mm.n; i++)
		moat_msg_unref(ctx.mm.m[i]);
	free(ctx.mm.m);
	if (rc != MOAT_OK) {
		snprintf(err, errlen, "restoring queued messages from the store: %s",
			 moat_strerror(rc));
		return rc;
	}
	log_info("restored", "deliveries=%zu", ctx.deliveries);
	return MOAT_OK;
}
