/*
 * Durable sessions and subscriptions (issue 3, slice 3). A session with a
 * non-zero expiry interval has a row in the store from its CONNECT until it
 * ends; its subscriptions follow it. SUBACK and UNSUBACK of such a session
 * wait until the change committed (the deferred packet travels back to the
 * session's worker as MAIL_STORED), so an acknowledged subscription
 * survives kill -9. Queued and in-flight messages are not stored yet.
 */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "store/store.h"
#include "mqtt/schema.h"

/* A SUBACK/UNSUBACK held back until its batch commits, plus the filters
 * whose retained messages follow a SUBACK. */
struct moat_deferred {
	struct moat_broker *b;
	unsigned worker;
	uint64_t session_id;
	uint64_t conn_id; /* only this connection may receive the packet */
	bool connack;	  /* the packet is the CONNACK of a held connection */
	bool present;	  /* ... with Session Present: resend in-flight after it */
	uint8_t version;
	uint8_t *packet; /* encoded, ready to send */
	size_t packet_len;
	char **retained; /* filters (NUL-terminated) */
	size_t n_retained;
};

static void deferred_free(struct moat_deferred *d)
{
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; i < d->n_retained; i++)
		free(d->retained[i]);
	free(d->retained);
	free(d->packet);
	free(d);
}

static void session_done_cb(void *arg, moat_err rc)
{
	struct moat_deferred *d = arg;
	struct moat_mailitem *it;

	if (rc != MOAT_OK)
		log_error("store_write_failed", "what=session error=\"%s\"", moat_strerror(rc));
	if (d->packet == NULL) {
		deferred_free(d);
		return;
	}
	it = calloc(1, sizeof(*it));
	if (it == NULL) {
		deferred_free(d);
		return;
	}
	it->kind = MAIL_STORED;
	it->session_id = d->session_id;
	it->store_rc = rc;
	it->deferred = d;
	moat_mailbox_post(&d->b->workers[d->worker].mb, &it->link, &it->link);
}

static void submit(struct moat_session *s, struct moat_store_batch *batch, struct moat_deferred *d)
{
	struct moat_broker *b = s->w->b;
	moat_err rc;

	if (d == NULL) {
		d = calloc(1, sizeof(*d));
		if (d == NULL) {
			moat_store_batch_free(batch);
			log_error("store_write_failed", "what=session error=\"%s\"",
				  moat_strerror(MOAT_E_NOMEM));
			return;
		}
	}
	d->b = b;
	d->worker = s->w->idx;
	d->session_id = s->id;
	d->conn_id = s->conn ? s->conn->id : 0;
	rc = moat_store_submit(b->store, batch, session_done_cb, d);
	if (rc != MOAT_OK) {
		/* The callback will not run: fail the deferred packet now. */
		log_error("store_write_failed", "what=session error=\"%s\"", moat_strerror(rc));
		session_done_cb(d, rc);
	}
}

static moat_err add_session_put(struct moat_store_batch *batch, struct moat_session *s,
				bool connected)
{
	struct moat_val v[12];
	struct moat_buf props;
	struct moat_msg *will = s->will;
	moat_err rc;

	moat_buf_init(&props, MOAT_MAX_PACKET_SIZE_MAX);
	v[0] = moat_val_text(s->client_id, s->client_id_len);
	v[1] = moat_val_text(s->identity, strlen(s->identity));
	v[2] = moat_val_int(s->version);
	v[3] = moat_val_int(s->expiry_interval);
	v[4] = connected ? moat_val_null()
			 : moat_val_int(moat_wall_ms() + (int64_t)s->expiry_interval * 1000);
	if (will != NULL && (rc = moat_persist_props(will, &props)) != MOAT_OK)
		goto out;
	v[5] = will ? moat_val_text(will->topic, will->topic_len) : moat_val_null();
	v[6] = will ? moat_val_blob(will->payload, will->payload_len) : moat_val_null();
	v[7] = will ? moat_val_blob(moat_buf_head(&props), moat_buf_used(&props)) : moat_val_null();
	v[8] = will ? moat_val_int(will->qos) : moat_val_null();
	v[9] = will ? moat_val_int(will->retain) : moat_val_null();
	v[10] = will ? moat_val_int(s->will_delay) : moat_val_null();
	v[11] = will ? moat_val_int(will->expiry_interval) : moat_val_null();
	rc = moat_store_batch_add(batch, MQTT_STMT(SESSION_PUT), v, 12);
out:
	moat_buf_free(&props);
	return rc;
}

/* Keep an encoded copy of ack in d. */
static moat_err defer_packet(struct moat_deferred *d, uint8_t version,
			     const struct mqtt_packet *ack)
{
	struct moat_buf out;
	moat_err rc;

	moat_buf_init(&out, MOAT_MAX_OUTBUF);
	if ((rc = mqtt_encode(&out, version, ack)) != MOAT_OK)
		goto out;
	d->packet = malloc(moat_buf_used(&out));
	if (d->packet == NULL) {
		rc = MOAT_E_NOMEM;
		goto out;
	}
	memcpy(d->packet, moat_buf_head(&out), moat_buf_used(&out));
	d->packet_len = moat_buf_used(&out);
	d->version = version;
out:
	moat_buf_free(&out);
	return rc;
}

static struct moat_store_batch *batch_new(void)
{
	struct moat_store_batch *b = NULL;

	if (moat_store_batch_new(&b) != MOAT_OK)
		return NULL;
	return b;
}

enum moat_persist moat_persist_session(struct moat_session *s, bool connected, bool fresh,
				       const struct mqtt_packet *connack, bool present)
{
	struct moat_store_batch *batch;
	struct moat_deferred *d = NULL;
	struct moat_val cid = moat_val_text(s->client_id, s->client_id_len);
	moat_err rc = MOAT_OK;

	if (s->w->b->store == NULL || (s->expiry_interval == 0 && !s->stored))
		return MOAT_PERSIST_NONE;
	if ((batch = batch_new()) == NULL)
		return MOAT_PERSIST_FAILED;
	if (s->expiry_interval == 0) {
		/* No longer persistent: the row and what it owns go. */
		rc = moat_store_batch_add(batch, MQTT_STMT(SESSION_DEL), &cid, 1);
		moat_session_set_stored(s, false);
	} else {
		if (fresh && s->stored) /* clean start: old row and its subscriptions go */
			rc = moat_store_batch_add(batch, MQTT_STMT(SESSION_DEL), &cid, 1);
		if (rc == MOAT_OK)
			rc = add_session_put(batch, s, connected);
		moat_session_set_stored(s, true);
	}
	if (rc == MOAT_OK && connack != NULL) {
		d = calloc(1, sizeof(*d));
		if (d == NULL)
			rc = MOAT_E_NOMEM;
		else if ((rc = defer_packet(d, s->version, connack)) == MOAT_OK) {
			d->connack = true;
			d->present = present;
		}
	}
	if (rc != MOAT_OK) {
		moat_store_batch_free(batch);
		deferred_free(d);
		log_error("store_write_failed", "what=session error=\"%s\"", moat_strerror(rc));
		return MOAT_PERSIST_FAILED;
	}
	submit(s, batch, d);
	return d ? MOAT_PERSIST_PENDING : MOAT_PERSIST_NONE;
}

void moat_persist_session_del(struct moat_session *s)
{
	struct moat_store_batch *batch;
	struct moat_val cid = moat_val_text(s->client_id, s->client_id_len);

	if (s->w->b->store == NULL || !s->stored)
		return;
	moat_session_set_stored(s, false);
	if ((batch = batch_new()) == NULL)
		return;
	if (moat_store_batch_add(batch, MQTT_STMT(SESSION_DEL), &cid, 1) != MOAT_OK) {
		moat_store_batch_free(batch);
		return;
	}
	submit(s, batch, NULL);
}

static uint8_t sub_options(const struct moat_sub *sub)
{
	/* The MQTT 5 Subscription Options byte layout. */
	unsigned v = (unsigned)sub->qos | (sub->no_local ? 0x04u : 0u) | (sub->rap ? 0x08u : 0u) |
		     ((unsigned)sub->rh << 4);
	return (uint8_t)v;
}

enum moat_persist moat_persist_subs(struct moat_session *s, struct moat_sub *const *put,
				    size_t n_put, const struct mqtt_sub_list *del, uint8_t version,
				    const struct mqtt_packet *ack, struct moat_sub *const *retained,
				    size_t n_retained)
{
	struct moat_store_batch *batch;
	struct moat_deferred *d = NULL;
	size_t i;
	moat_err rc = MOAT_OK;

	if (s->w->b->store == NULL || !s->stored)
		return MOAT_PERSIST_NONE;
	if ((batch = batch_new()) == NULL)
		return MOAT_PERSIST_FAILED;
	for (i = 0; i < n_put && rc == MOAT_OK; i++) {
		struct moat_val v[4] = {moat_val_text(s->client_id, s->client_id_len),
					moat_val_text(put[i]->filter, put[i]->filter_len),
					moat_val_int(sub_options(put[i])),
					moat_val_int(put[i]->sub_id)};
		rc = moat_store_batch_add(batch, MQTT_STMT(SUB_PUT), v, 4);
	}
	if (del != NULL) {
		struct mqtt_sub_iter it;
		struct mqtt_sub_entry e;
		struct mqtt_packet p;
		memset(&p, 0, sizeof(p));
		p.type = MQTT_UNSUBSCRIBE;
		p.u.subs = *del;
		mqtt_sub_iter_init(&it, version, &p);
		while (rc == MOAT_OK && mqtt_sub_iter_next(&it, &e)) {
			struct moat_val v[2] = {
			    moat_val_text(s->client_id, s->client_id_len),
			    moat_val_text((const char *)e.filter.p, e.filter.len)};
			rc = moat_store_batch_add(batch, MQTT_STMT(SUB_DEL), v, 2);
		}
	}
	d = calloc(1, sizeof(*d));
	if (rc != MOAT_OK || d == NULL)
		goto fail;
	if ((rc = defer_packet(d, version, ack)) != MOAT_OK)
		goto fail;
	if (n_retained) {
		d->retained = calloc(n_retained, sizeof(*d->retained));
		if (d->retained == NULL)
			goto fail;
		for (i = 0; i < n_retained; i++) {
			d->retained[i] = strdup(retained[i]->filter);
			if (d->retained[i] == NULL)
				goto fail;
			d->n_retained++;
		}
	}
	submit(s, batch, d);
	return MOAT_PERSIST_PENDING;
fail:
	log_error("store_write_failed", "what=subscription error=\"%s\"",
		  moat_strerror(rc != MOAT_OK ? rc : MOAT_E_NOMEM));
	moat_store_batch_free(batch);
	deferred_free(d);
	return MOAT_PERSIST_FAILED;
}

void moat_persist_deferred_done(struct moat_worker *w, struct moat_mailitem *it)
{
	struct moat_deferred *d = it->deferred;
	struct moat_session *s = moat_worker_find_session(w, it->session_id);
	struct moat_conn *c = s ? s->conn : NULL;
	size_t i, j;

	it->deferred = NULL;
	if (c == NULL || c->id != d->conn_id || c->state != CONN_CONNECTED)
		goto out;
	if (d->connack) {
		if (it->store_rc != MOAT_OK) {
			/* The session could not be stored: refuse the CONNECT. */
			struct mqtt_packet r;
			memset(&r, 0, sizeof(r));
			r.type = MQTT_CONNACK;
			r.u.connack.code =
			    d->version == MQTT_V5 ? MQTT_RC_UNSPECIFIED : MQTT_V3_UNAVAILABLE;
			c->held = false;
			(void)moat_conn_send(c, &r);
			moat_conn_close(c, "session could not be stored");
			goto out;
		}
		c->held = false;
		if (moat_buf_append(&c->out, d->packet, d->packet_len) != MOAT_OK) {
			moat_conn_close(c, "output buffer full");
			goto out;
		}
		moat_conn_mark_dirty(c);
		if (d->present) {
			moat_session_resend(s);
			moat_session_pump(s);
		}
		moat_conn_resume(c);
		goto out;
	}
	if (it->store_rc != MOAT_OK) {
		/* Never acknowledge what is not stored: the client reconnects and
		 * subscribes again. */
		moat_conn_disconnect(c, MQTT_RC_UNSPECIFIED, "subscription could not be stored");
		goto out;
	}
	if (moat_buf_append(&c->out, d->packet, d->packet_len) != MOAT_OK) {
		moat_conn_close(c, "output buffer full");
		goto out;
	}
	moat_conn_mark_dirty(c);
	for (i = 0; i < d->n_retained; i++) {
		for (j = 0; j < s->n_subs; j++) {
			if (strcmp(s->subs[j]->filter, d->retained[i]) == 0) {
				moat_route_retained_to(s, s->subs[j]);
				break;
			}
		}
	}
out:
	deferred_free(d);
}

void moat_persist_deferred_free(struct moat_deferred *d)
{
	deferred_free(d);
}

/* --- restore at start ---------------------------------------------------- */

static moat_err restore_session_cb(void *arg, const struct moat_val *c, size_t n)
{
	struct moat_mqtt_session_row row;
	struct moat_broker *b = arg;
	struct moat_worker *w;
	struct moat_session *s;
	struct mqtt_packet p;
	int64_t now_wall = moat_wall_ms(), expire_wall;
	uint64_t now = moat_now_ms();
	uint64_t h = 1469598103934665603ull;
	size_t i;

	if (moat_mqtt_session_row_decode(c, n, &row) != MOAT_OK ||
	    row.client_id.len > MOAT_MAX_CLIENT_ID_LEN || row.identity.len > MOAT_DEVICE_ID_MAX)
		return MOAT_E_CORRUPT;
	/* A session that was connected when we stopped counts as disconnected
	 * now (its expiry starts now). */
	expire_wall = row.expire_at.type == MOAT_VAL_INT ? row.expire_at.i
							 : now_wall + row.expiry_interval.i * 1000;
	if (expire_wall <= now_wall)
		return MOAT_OK; /* expired while we were down; EXPIRE_SESSIONS deletes it */
	for (i = 0; i < row.client_id.len; i++)
		h = (h ^ ((const uint8_t *)row.client_id.p)[i]) * 1099511628211ull;
	w = &b->workers[h % b->n_workers];
	s = moat_session_new(w, row.client_id.p, row.client_id.len);
	if (s == NULL)
		return MOAT_E_NOMEM;
	memcpy(s->identity, row.identity.p, row.identity.len);
	s->identity[row.identity.len] = '\0';
	/* No certificate identity: made on an open listener, unrestricted. The
	 * others get their ACL once everything is restored. */
	s->acl_all = s->identity[0] == '\0';
	s->version = (uint8_t)row.version.i;
	s->expiry_interval = (uint32_t)row.expiry_interval.i;
	s->expire_at = expire_wall > now_wall ? now + (uint64_t)(expire_wall - now_wall) : now;
	moat_session_set_stored(s, true);
	moat_clientmap_rebind(b, s->client_id, s->client_id_len, w->idx, s->id);
	if (row.will_topic.type == MOAT_VAL_TEXT && row.will_payload.type == MOAT_VAL_BLOB &&
	    moat_persist_decode_props(&row.will_props, &p) == MOAT_OK) {
		if (row.will_expiry.type == MOAT_VAL_INT && row.will_expiry.i > 0) {
			p.props.present |= MQTT_HAS(MQTT_PROP_MESSAGE_EXPIRY);
			p.props.message_expiry = (uint32_t)row.will_expiry.i;
		}
		s->will = moat_msg_new(
		    row.will_topic.p, row.will_topic.len, row.will_payload.p, row.will_payload.len,
		    &p.props, (uint8_t)(row.will_qos.type == MOAT_VAL_INT ? row.will_qos.i : 0),
		    row.will_retain.type == MOAT_VAL_INT && row.will_retain.i, s->id, 0);
		s->will_delay =
		    row.will_delay.type == MOAT_VAL_INT ? (uint32_t)row.will_delay.i : 0;
		/* The connection is gone: the will is due after its delay. */
		if (s->will)
			s->will_at = now + (uint64_t)s->will_delay * 1000u;
	}
	return MOAT_OK;
}

static moat_err restore_sub_cb(void *arg, const struct moat_val *c, size_t n)
{
	struct moat_mqtt_sub_row row;
	struct moat_broker *b = arg;
	struct moat_session *s;
	struct moat_sub *sub;
	struct mqtt_sub_entry e;
	bool existed;
	moat_err rc;

	if (moat_mqtt_sub_row_decode(c, n, &row) != MOAT_OK || row.filter.len > 65535)
		return MOAT_E_CORRUPT;
	s = moat_clientmap_find_session(b, row.client_id.p, row.client_id.len);
	if (s == NULL)
		return MOAT_OK; /* its session expired while we were down */
	memset(&e, 0, sizeof(e));
	e.filter.p = row.filter.p;
	e.filter.len = row.filter.len;
	e.qos = (uint8_t)(row.options.i & 3);
	e.no_local = (row.options.i & 0x04) != 0;
	e.retain_as_published = (row.options.i & 0x08) != 0;
	e.retain_handling = (uint8_t)((row.options.i >> 4) & 3);
	sub = moat_sub_new(&e, (uint32_t)row.sub_id.i);
	if (sub == NULL)
		return MOAT_E_NOMEM;
	rc = moat_session_add_sub(s, sub, &existed);
	if (rc != MOAT_OK)
		moat_sub_free(sub);
	return rc;
}

static void expire_done_cb(void *arg, moat_err rc)
{
	(void)arg;
	if (rc != MOAT_OK)
		log_error("store_write_failed", "what=session_expiry error=\"%s\"",
			  moat_strerror(rc));
}

moat_err moat_persist_restore_sessions(struct moat_broker *b, char *err, size_t errlen)
{
	struct moat_store_batch *batch = NULL;
	struct moat_val now = moat_val_int(moat_wall_ms());
	moat_err rc;
	size_t sessions = 0, i;

	/* Sessions that expired while we were down are skipped below and
	 * deleted, with everything they own (cascade), by this batch. */
	if ((rc = moat_store_batch_new(&batch)) != MOAT_OK ||
	    (rc = moat_store_batch_add(batch, MQTT_STMT(EXPIRE_SESSIONS), &now, 1)) != MOAT_OK) {
		moat_store_batch_free(batch);
		goto out;
	}
	if ((rc = moat_store_submit(b->store, batch, expire_done_cb, NULL)) != MOAT_OK)
		goto out;
	rc = moat_store_read(b->store, MQTT_STMT(LOAD_SESSIONS), NULL, 0, restore_session_cb, b);
	if (rc != MOAT_OK)
		goto out;
	rc = moat_store_read(b->store, MQTT_STMT(LOAD_SUBS), NULL, 0, restore_sub_cb, b);
	if (rc != MOAT_OK)
		goto out;
	for (i = 0; i < b->n_workers; i++) {
		struct moat_session *s;
		for (s = b->workers[i].sessions; s; s = s->next)
			sessions++;
	}
	log_info("restored", "sessions=%zu", sessions);
out:
	if (rc != MOAT_OK)
		snprintf(err, errlen, "restoring sessions from the store: %s", moat_strerror(rc));
	return rc;
}
