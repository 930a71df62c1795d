/*
 * PUBLISH from a client, as the pipeline of pipeline.h: admission (topic
 * aliases, validation, QoS 2 de-duplication and Receive Maximum), policy,
 * guard, taps, then routing and the acknowledgement. Each stage is one
 * function below; a stage that refuses answers the client itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "mqtt/topic.h"

static void send_ack(struct moat_conn *c, uint8_t type, uint16_t pid, uint8_t code)
{
	struct mqtt_packet r;

	memset(&r, 0, sizeof(r));
	r.type = type;
	r.u.ack.packet_id = pid;
	r.u.ack.code = c->version == MQTT_V5 ? code : 0;
	(void)moat_conn_send(c, &r);
}

/* Resolve or record a client->server topic alias. On success topic and len
 * point at the topic to use. */
static bool resolve_alias(struct moat_conn *c, const struct mqtt_packet *p, const char **topic,
			  size_t *len)
{
	uint16_t a = p->props.topic_alias;

	if (!(p->props.present & MQTT_HAS(MQTT_PROP_TOPIC_ALIAS))) {
		*topic = (const char *)p->u.publish.topic.p;
		*len = p->u.publish.topic.len;
		return true; /* an empty topic is refused by the name check */
	}
	if (a == 0 || a > MOAT_TOPIC_ALIAS_MAX)
		return false;
	if (c->alias_in == NULL) {
		c->alias_in = calloc(MOAT_TOPIC_ALIAS_MAX, sizeof(char *));
		if (c->alias_in == NULL)
			return false;
	}
	if (p->u.publish.topic.len > 0) {
		char *t = strndup((const char *)p->u.publish.topic.p, p->u.publish.topic.len);
		if (t == NULL)
			return false;
		free(c->alias_in[a - 1]);
		c->alias_in[a - 1] = t;
	}
	if (c->alias_in[a - 1] == NULL)
		return false;
	*topic = c->alias_in[a - 1];
	*len = strlen(*topic);
	return true;
}

static bool qos2_seen(const struct moat_session *s, uint16_t pid)
{
	uint16_t i;

	for (i = 0; i < s->n_qos2_in; i++)
		if (s->qos2_in[i] == pid)
			return true;
	return false;
}

/* Remember an incoming QoS 2 packet id until PUBREL (bounded by our
 * Receive Maximum, checked before). */
static bool qos2_remember(struct moat_conn *c, uint16_t pid)
{
	struct moat_session *s = c->s;

	if (s->n_qos2_in == s->cap_qos2_in) {
		uint16_t ncap = s->cap_qos2_in ? (uint16_t)(s->cap_qos2_in * 2) : 8;
		uint16_t *n;
		if (ncap > c->w->lim.receive_maximum)
			ncap = c->w->lim.receive_maximum;
		if (ncap <= s->n_qos2_in)
			ncap = (uint16_t)(s->n_qos2_in + 1);
		n = realloc(s->qos2_in, ncap * sizeof(*n));
		if (n == NULL) {
			moat_conn_disconnect(c, MQTT_RC_UNSPECIFIED, "out of memory");
			return false;
		}
		s->qos2_in = n;
		s->cap_qos2_in = ncap;
	}
	s->qos2_in[s->n_qos2_in++] = pid;
	return true;
}

static void qos2_forget(struct moat_session *s, uint16_t pid)
{
	uint16_t i;

	for (i = 0; i < s->n_qos2_in; i++) {
		if (s->qos2_in[i] == pid) {
			s->qos2_in[i] = s->qos2_in[--s->n_qos2_in];
			return;
		}
	}
}

/* Refuse to acknowledge: v5 says why (0x97), v3 can only disconnect. */
static void refuse_ack(struct moat_conn *c, uint8_t type, uint16_t pid, const char *why)
{
	if (c->version == MQTT_V5)
		send_ack(c, type, pid, MQTT_RC_QUOTA_EXCEEDED);
	else
		moat_conn_close(c, why);
}

/* A token nobody else holds yet. */
static void free_token(struct moat_pubtoken *t)
{
	free(t);
}

/* One PUBLISH on its way through the pipeline (pipeline.h). */
struct pub {
	struct moat_conn *c;
	const struct mqtt_packet *p;
	const char *topic;
	size_t tlen;
	uint8_t ack; /* PUBACK or PUBREC */
};

/* 1. Admission: false when the packet was refused (answered here). */
static bool stage_admit(struct pub *x)
{
	struct moat_conn *c = x->c;
	const struct mqtt_publish *pub = &x->p->u.publish;
	const struct mqtt_props *pr = &x->p->props;

	if (pr->n_sub_ids != 0) {
		/* Only a server may send Subscription Identifiers (MQTT-3.3.4-6). */
		moat_conn_disconnect(c, MQTT_RC_PROTOCOL_ERROR, "subscription id in PUBLISH");
		return false;
	}
	if (!resolve_alias(c, x->p, &x->topic, &x->tlen)) {
		moat_conn_disconnect(c, MQTT_RC_TOPIC_ALIAS_INVALID, "bad topic alias");
		return false;
	}
	if (x->tlen == 0) {
		/* Empty topic without an alias (MQTT-3.3.2-1, 3.3.4). */
		moat_conn_disconnect(c, MQTT_RC_PROTOCOL_ERROR, "empty topic without alias");
		return false;
	}
	if (!moat_topic_name_valid(x->topic, x->tlen)) {
		moat_conn_disconnect(c, MQTT_RC_TOPIC_NAME_INVALID, "invalid topic name");
		return false;
	}
	if (pub->qos == 2 && qos2_seen(c->s, pub->packet_id)) {
		/* A retransmission of a QoS 2 message we already routed. */
		send_ack(c, MQTT_PUBREC, pub->packet_id, MQTT_RC_SUCCESS);
		return false;
	}
	if (pub->qos == 2 && c->s->n_qos2_in >= c->w->lim.receive_maximum) {
		moat_conn_disconnect(c, MQTT_RC_RECEIVE_MAX_EXCEEDED, "receive maximum exceeded");
		return false;
	}
	if ((pr->present & MQTT_HAS(MQTT_PROP_PAYLOAD_FORMAT)) && pr->payload_format == 1 &&
	    !mqtt_utf8_valid(pub->payload.p, pub->payload.len)) {
		if (pub->qos > 0)
			send_ack(c, x->ack, pub->packet_id, MQTT_RC_PAYLOAD_FORMAT_INVALID);
		return false;
	}
	return true;
}

/* A refusal after admission: v5 says why; v3 cannot, so QoS 0 is dropped
 * silently and QoS > 0 closes the connection. */
static void refuse(struct pub *x, uint8_t reason, bool disconnect, const char *why)
{
	struct moat_conn *c = x->c;
	const struct mqtt_publish *pub = &x->p->u.publish;

	if (disconnect) {
		moat_conn_disconnect(c, reason, why);
		return;
	}
	if (pub->qos == 0)
		return;
	if (c->version == MQTT_V5)
		send_ack(c, x->ack, pub->packet_id, reason);
	else
		moat_conn_close(c, why);
}

/* 2. Policy: the identity's ACL. */
static bool stage_policy(struct pub *x)
{
	struct moat_conn *c = x->c;
	int shown = (int)(x->tlen > 128 ? 128 : x->tlen);
	char d[160];

	if (moat_policy_may_publish(c, x->topic, x->tlen))
		return true;
	log_info("publish_denied", "client=%s topic=\"%.*s\" qos=%u", c->s->client_id, shown,
		 x->topic, x->p->u.publish.qos);
	snprintf(d, sizeof(d), "topic=%.*s", shown, x->topic);
	moat_broker_secev(c->w->b, "mqtt.publish_denied", c->s->client_id, c->addr, d);
	refuse(x, MQTT_RC_NOT_AUTHORIZED, false, "publish denied (v3 QoS>0)");
	return false;
}

static void view(const struct pub *x, const struct moat_msg *m, struct moat_pub_view *pv)
{
	pv->w = x->c->w;
	pv->identity = x->c->identity;
	pv->client_id = x->c->s->client_id;
	pv->addr = x->c->addr;
	pv->topic = x->topic;
	pv->topic_len = x->tlen;
	pv->payload = x->p->u.publish.payload.p;
	pv->payload_len = x->p->u.publish.payload.len;
	pv->qos = x->p->u.publish.qos;
	pv->retain = x->p->u.publish.retain;
	pv->msg = m;
}

/* 3. Guard: the registered stages; nothing to do without them. */
static bool stage_guard(struct pub *x)
{
	const struct moat_pipeline *pl = &x->c->w->b->pipeline;
	struct moat_pub_view pv;
	struct moat_pub_verdict v;

	if (pl->n_guards == 0)
		return true;
	view(x, NULL, &pv);
	if (moat_pipeline_guard(pl, &pv, &v))
		return true;
	log_info("publish_refused", "client=%s reason=0x%02x why=\"%s\"", x->c->s->client_id,
		 v.reason, v.why);
	moat_broker_secev(x->c->w->b, "mqtt.publish_refused", x->c->s->client_id, x->c->addr,
			  v.why);
	refuse(x, v.reason, v.disconnect, v.why);
	return false;
}

/* 4. Taps: observers of the accepted message. */
static void stage_taps(struct pub *x, const struct moat_msg *m)
{
	const struct moat_pipeline *pl = &x->c->w->b->pipeline;
	struct moat_pub_view pv;

	if (pl->n_taps == 0)
		return;
	view(x, m, &pv);
	moat_pipeline_tap(pl, &pv);
}

/* 5. Routing: the message, its writes, its deliveries, the acknowledgement. */
static void stage_route(struct pub *x)
{
	struct moat_conn *c = x->c;
	struct moat_session *s = c->s;
	struct moat_worker *w = c->w;
	const struct mqtt_publish *pub = &x->p->u.publish;
	enum moat_persist ps = MOAT_PERSIST_NONE;
	struct moat_pubtoken *tok = NULL;
	struct moat_msg *m;

	m = moat_msg_new(x->topic, x->tlen, pub->payload.p, pub->payload.len, &x->p->props,
			 pub->qos, pub->retain, s->id, w->now);
	if (m == NULL) {
		if (pub->qos > 0 && c->version == MQTT_V5)
			send_ack(c, x->ack, pub->packet_id, MQTT_RC_UNSPECIFIED);
		else
			moat_conn_close(c, "out of memory");
		return;
	}
	if (pub->qos == 2 && !qos2_remember(c, pub->packet_id)) {
		moat_msg_unref(m);
		return;
	}
	/* Every write this PUBLISH causes (its retained entry, its QoS 2 id,
	 * the deliveries of stored sessions on any worker) holds the token;
	 * the last hold dropped sends the acknowledgement. */
	if (w->b->store != NULL && pub->qos > 0) {
		m->store_id = atomic_fetch_add(&w->b->next_msg_id, 1);
		tok = moat_pubtoken_new(c, pub->packet_id, pub->qos);
		if (tok == NULL) {
			moat_msg_unref(m);
			qos2_forget(s, pub->packet_id);
			refuse_ack(c, x->ack, pub->packet_id, "out of memory");
			return;
		}
	}
	moat_persist_begin(w, tok);
	if (pub->retain)
		ps = moat_persist_retained(w, m);
	if (ps == MOAT_PERSIST_FAILED) {
		/* Not stored, so not applied either: the publisher may retry. */
		moat_persist_abort(w);
		moat_msg_unref(m);
		free_token(tok);
		qos2_forget(s, pub->packet_id);
		refuse_ack(c, x->ack, pub->packet_id, "retained message could not be stored");
		return;
	}
	if (pub->qos == 2)
		moat_persist_qos2(s, pub->packet_id, true);
	stage_taps(x, m);
	moat_route(w, m, tok);
	moat_persist_end(w);
	moat_msg_unref(m);
	if (tok != NULL) {
		moat_pubtoken_release(w, tok); /* acknowledges now if nothing waits */
		return;
	}
	if (pub->qos > 0)
		send_ack(c, x->ack, pub->packet_id, MQTT_RC_SUCCESS);
}

void moat_handle_publish(struct moat_conn *c, const struct mqtt_packet *p)
{
	struct pub x;

	x.c = c;
	x.p = p;
	x.topic = NULL;
	x.tlen = 0;
	x.ack = p->u.publish.qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;
	if (stage_admit(&x) && stage_policy(&x) && stage_guard(&x))
		stage_route(&x);
}

void moat_handle_stored(struct moat_conn *c, uint16_t pid, uint8_t qos, moat_err rc)
{
	struct moat_session *s = c->s;
	uint8_t type = qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;

	if (rc == MOAT_OK) {
		send_ack(c, type, pid, MQTT_RC_SUCCESS);
		return;
	}
	/* The store refused it (full, I/O error): say so, and forget the QoS 2
	 * id so that a retry is treated as new. */
	if (qos == 2)
		qos2_forget(s, pid);
	refuse_ack(c, type, pid, "message could not be stored");
}
