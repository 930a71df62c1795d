/*
 * Durable retained messages, and the encoding of message properties that
 * the other persist_*.c files share (docs/durability.md).
 *
 * A retained PUBLISH is applied in memory at once and its write (message +
 * retained entry, or deletion) joins the batch of the PUBLISH being routed
 * (persist_msg.c), so a QoS 1/2 retained PUBLISH is acknowledged only once
 * it committed. At start the retained tree of every worker is restored from
 * the store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "store/store.h"
#include "mqtt/schema.h"

/* The v5 properties that travel with a message, as an encoded PUBLISH (so
 * the codec both writes and validates them; topic and payload are dummies). */
moat_err moat_persist_props(const struct moat_msg *m, struct moat_buf *out)
{
	struct mqtt_packet p;

	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.topic.p = (const uint8_t *)"p";
	p.u.publish.topic.len = 1;
	if (m->has_payload_format) {
		p.props.present |= MQTT_HAS(MQTT_PROP_PAYLOAD_FORMAT);
		p.props.payload_format = m->payload_format;
	}
	if (m->content_type) {
		p.props.present |= MQTT_HAS(MQTT_PROP_CONTENT_TYPE);
		p.props.content_type.p = m->content_type;
		p.props.content_type.len = m->content_type_len;
	}
	if (m->response_topic) {
		p.props.present |= MQTT_HAS(MQTT_PROP_RESPONSE_TOPIC);
		p.props.response_topic.p = m->response_topic;
		p.props.response_topic.len = m->response_topic_len;
	}
	if (m->correlation) {
		p.props.present |= MQTT_HAS(MQTT_PROP_CORRELATION_DATA);
		p.props.correlation_data.p = m->correlation;
		p.props.correlation_data.len = m->correlation_len;
	}
	if (m->user) {
		p.props.user.p = m->user;
		p.props.user.len = m->user_len;
		p.props.n_user = m->n_user;
	}
	return mqtt_encode(out, MQTT_V5, &p);
}

enum moat_persist moat_persist_retained(struct moat_worker *w, struct moat_msg *m)
{
	struct moat_broker *b = w->b;
	struct moat_store_batch *batch;
	struct moat_msg *old;
	struct moat_buf props;
	moat_err rc = MOAT_OK;

	if (b->store == NULL || m->topic[0] == '$')
		return MOAT_PERSIST_NONE;
	if ((batch = moat_persist_batch(w)) == NULL)
		return MOAT_PERSIST_FAILED;
	moat_buf_init(&props, MOAT_MAX_PACKET_SIZE_MAX);
	old = moat_rettree_get(w->retained, m->topic, m->topic_len);
	if (m->payload_len == 0) {
		struct moat_val v = moat_val_text(m->topic, m->topic_len);
		rc = moat_store_batch_add(batch, MQTT_STMT(RETAINED_DEL), &v, 1);
	} else {
		struct moat_val v[7];
		int64_t expire = 0;
		if (m->expiry_at)
			expire = moat_wall_ms() + (int64_t)(m->expiry_at - w->now);
		if ((rc = moat_persist_props(m, &props)) != MOAT_OK)
			goto out;
		if (m->store_id == 0) /* not shared yet: only this thread sees it */
			m->store_id = atomic_fetch_add(&b->next_msg_id, 1);
		v[0] = moat_val_int((int64_t)m->store_id);
		v[1] = moat_val_text(m->topic, m->topic_len);
		v[2] = moat_val_blob(m->payload, m->payload_len);
		v[3] = moat_val_blob(moat_buf_head(&props), moat_buf_used(&props));
		v[4] = moat_val_int(m->qos);
		v[5] = moat_val_int(1);
		v[6] = m->expiry_at ? moat_val_int(expire) : moat_val_null();
		rc = moat_store_batch_add(batch, MQTT_STMT(MSG_PUT_IGNORE), v, 7);
		if (rc == MOAT_OK) {
			struct moat_val r[2] = {moat_val_text(m->topic, m->topic_len),
						moat_val_int((int64_t)m->store_id)};
			rc = moat_store_batch_add(batch, MQTT_STMT(RETAINED_PUT), r, 2);
		}
	}
	if (rc == MOAT_OK && old != NULL && old->store_id != 0 && old->store_id != m->store_id) {
		struct moat_val g = moat_val_int((int64_t)old->store_id);
		rc = moat_store_batch_add(batch, MQTT_STMT(MSG_GC), &g, 1);
	}
out:
	moat_buf_free(&props);
	if (rc != MOAT_OK) {
		log_error("store_write_failed", "what=retained error=\"%s\"", moat_strerror(rc));
		moat_persist_fail(w);
		return MOAT_PERSIST_FAILED;
	}
	return MOAT_PERSIST_NONE;
}

/* --- restore at start ---------------------------------------------------- */

struct restore_ids {
	int64_t *id;
	size_t n, cap;
};

static moat_err restore_id_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_mqtt_retained_row row;
	struct restore_ids *r = arg;

	if (moat_mqtt_retained_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 64;
		int64_t *n = realloc(r->id, ncap * sizeof(*n));
		if (n == NULL)
			return MOAT_E_NOMEM;
		r->id = n;
		r->cap = ncap;
	}
	r->id[r->n++] = row.msg_id.i;
	return MOAT_OK;
}

/* The inverse of moat_persist_props: p->props holds the properties (none
 * for an empty blob). */
moat_err moat_persist_decode_props(const struct moat_val *blob, struct mqtt_packet *p)
{
	uint8_t first;
	size_t hdr, body;

	memset(p, 0, sizeof(*p));
	if (blob->type != MOAT_VAL_BLOB || blob->len == 0)
		return MOAT_OK;
	if (mqtt_frame(blob->p, blob->len, blob->len, &first, &hdr, &body) != MOAT_OK ||
	    mqtt_decode(MQTT_V5, first, (const uint8_t *)blob->p + hdr, body, p) != MOAT_OK)
		return MOAT_E_CORRUPT;
	return MOAT_OK;
}

static moat_err restore_msg_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_mqtt_msg_row row;
	struct moat_broker *b = arg;
	struct mqtt_packet p;
	uint64_t now = moat_now_ms();
	struct moat_msg *m;
	unsigned i;

	if (moat_mqtt_msg_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if (moat_persist_decode_props(&row.props, &p) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if (row.expire_at.type == MOAT_VAL_INT) {
		int64_t left = row.expire_at.i - moat_wall_ms();
		if (left <= 0)
			return MOAT_OK; /* expired while we were down */
		p.props.present |= MQTT_HAS(MQTT_PROP_MESSAGE_EXPIRY);
		p.props.message_expiry = (uint32_t)((left + 999) / 1000);
	}
	m = moat_msg_new(row.topic.p, row.topic.len, row.payload.p, row.payload.len, &p.props,
			 (uint8_t)row.qos.i, true, 0, now);
	if (m == NULL)
		return MOAT_E_NOMEM;
	m->store_id = (uint64_t)row.id.i;
	for (i = 0; i < b->n_workers; i++) {
		void *old = NULL;
		if (moat_rettree_set(b->workers[i].retained, m->topic, m->topic_len,
				     moat_msg_ref(m), &old) != MOAT_OK)
			moat_msg_unref(m);
		moat_msg_unref(old);
	}
	moat_msg_unref(m);
	return MOAT_OK;
}

moat_err moat_persist_restore(struct moat_broker *b, char *err, size_t errlen)
{
	struct restore_ids ids = {NULL, 0, 0};
	int64_t max_id = 0;
	size_t i;
	moat_err rc;

	rc = moat_store_read_int(b->store, MQTT_STMT(MSG_MAX_ID), NULL, 0, &max_id);
	if (rc != MOAT_OK && rc != MOAT_E_NOTFOUND)
		goto out;
	atomic_store(&b->next_msg_id, (uint64_t)max_id + 1);
	rc = moat_store_read(b->store, MQTT_STMT(LOAD_RETAINED), NULL, 0, restore_id_cb, &ids);
	if (rc != MOAT_OK)
		goto out;
	for (i = 0; i < ids.n; i++) {
		struct moat_val id = moat_val_int(ids.id[i]);
		rc = moat_store_read(b->store, MQTT_STMT(MSG_GET), &id, 1, restore_msg_cb, b);
		if (rc != MOAT_OK)
			goto out;
	}
	log_info("restored", "retained=%zu", ids.n);
out:
	if (rc != MOAT_OK)
		snprintf(err, errlen, "restoring retained messages from the store: %s",
			 moat_strerror(rc));
	free(ids.id);
	return rc;
}
