/*
 * CONNECT: the identity rules, session takeover/resumption (possibly by
 * handing the connection to the worker that owns the session), wills,
 * keepalive override and the CONNACK.
 *
 * Identity: on a listener with a verified client certificate, the client id
 * must equal the certificate's device id (an empty one becomes it). Without a
 * certificate only an open-policy listener (loopback, enforced by the
 * config) accepts the client; a default-policy listener refuses it.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "store/store.h"
#include "mqtt/topic.h"
#include "registry/schema.h"

static void refuse(struct moat_conn *c, uint8_t v5_code, uint8_t v3_code, const char *why)
{
	struct mqtt_packet r;

	memset(&r, 0, sizeof(r));
	r.type = MQTT_CONNACK;
	r.u.connack.code = c->version == MQTT_V5 ? v5_code : v3_code;
	if (c->version == MQTT_V5) {
		r.props.present |= MQTT_HAS(MQTT_PROP_REASON_STRING);
		r.props.reason_string.p = (const uint8_t *)why;
		r.props.reason_string.len = strlen(why);
	}
	(void)moat_conn_send(c, &r);
	/* tls_resumed: a refusal of a session resumed from a ticket (revoked,
	 * decommissioned, disabled) shows that tickets do not get around it. */
	log_info("connect_refused", "addr=%s identity=%s tls_resumed=%d reason=\"%s\"", c->addr,
		 c->identity[0] ? c->identity : "-", c->ssl != NULL && SSL_session_reused(c->ssl),
		 why);
	moat_broker_secev(c->w->b, "mqtt.connect_refused", c->identity, c->addr, why);
	moat_conn_close(c, why);
}

static struct moat_msg *will_new(const struct mqtt_connect *k, uint64_t origin)
{
	return moat_msg_new((const char *)k->will_topic.p, k->will_topic.len, k->will_payload.p,
			    k->will_payload.len, &k->will_props, k->will_qos, k->will_retain,
			    origin, 0);
}

static void seen_cb(void *arg, moat_err rc)
{
	(void)arg;
	(void)rc;
}

/* The registry's first/last seen, last address and (MQTT 5 user property
 * "firmware" on CONNECT) firmware version: one write nobody waits for. */
static void record_seen(struct moat_conn *c, const struct mqtt_packet *p)
{
	struct moat_store *st = c->w->b->store;
	struct moat_store_batch *b = NULL;
	struct mqtt_user_iter it;
	struct mqtt_bytes k, v;
	char fw[65] = "";

	if (st == NULL || c->identity[0] == '\0')
		return;
	if (c->version == MQTT_V5) {
		mqtt_user_iter_init(&it, &p->props);
		while (mqtt_user_iter_next(&it, &k, &v)) {
			size_t i, n = v.len < sizeof(fw) - 1 ? v.len : sizeof(fw) - 1;
			bool ok = true;
			if (k.len != 8 || memcmp(k.p, "firmware", 8) != 0)
				continue;
			for (i = 0; i < n; i++) /* printable ASCII: it is shown and sent as JSON */
				ok = ok && v.p[i] >= 0x20 && v.p[i] < 0x7f;
			if (ok && n > 0) {
				memcpy(fw, v.p, n);
				fw[n] = '\0';
			}
		}
	}
	if (moat_store_batch_new(&b) != MOAT_OK)
		return;
	if (moat_reg_seen_add(b, c->identity, moat_wall_ms(), c->addr, fw[0] ? fw : NULL) !=
	    MOAT_OK) {
		moat_store_batch_free(b);
		return;
	}
	(void)moat_store_submit(st, b, seen_cb, NULL);
}

void moat_handle_connect(struct moat_conn *c, const struct mqtt_packet *p)
{
	const struct mqtt_connect *k = &p->u.connect;
	struct moat_worker *w = c->w;
	struct moat_broker *b = w->b;
	char cid[MOAT_MAX_CLIENT_ID_LEN + 1];
	size_t cid_len;
	bool assigned = false, present = false;
	struct moat_session *s = NULL;
	unsigned owner;
	uint64_t owner_sid = 0;
	struct mqtt_packet r;
	uint32_t expiry;
	uint16_t server_keepalive = 0;

	c->version = k->version;
	/* --- identity --- */
	if (c->identity[0] != '\0') {
		size_t il = strlen(c->identity);
		if (k->client_id.len == 0) {
			memcpy(cid, c->identity, il + 1);
			cid_len = il;
			assigned = true;
		} else if (k->client_id.len != il || memcmp(k->client_id.p, c->identity, il) != 0) {
			refuse(c, MQTT_RC_CLIENT_ID_INVALID, MQTT_V3_ID_REJECTED,
			       "client id must equal the certificate identity");
			return;
		} else {
			memcpy(cid, c->identity, il + 1);
			cid_len = il;
		}
	} else if (c->l->conf.policy == MOAT_POLICY_OPEN) {
		if (k->client_id.len == 0) {
			uint8_t rnd[8];
			if (c->version != MQTT_V5 && !k->clean_start) {
				refuse(c, MQTT_RC_CLIENT_ID_INVALID, MQTT_V3_ID_REJECTED,
				       "empty client id needs clean session");
				return;
			}
			randombytes_buf(rnd, sizeof(rnd));
			cid_len = (size_t)snprintf(
			    cid, sizeof(cid), "auto-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0],
			    rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
			assigned = true;
		} else if (k->client_id.len > MOAT_MAX_CLIENT_ID_LEN) {
			refuse(c, MQTT_RC_CLIENT_ID_INVALID, MQTT_V3_ID_REJECTED,
			       "client id too long");
			return;
		} else {
			memcpy(cid, k->client_id.p, k->client_id.len);
			cid[k->client_id.len] = '\0';
			cid_len = k->client_id.len;
		}
	} else {
		refuse(c, MQTT_RC_NOT_AUTHORIZED, MQTT_V3_NOT_AUTHORIZED,
		       "a client certificate is required");
		return;
	}
	/* --- the registry: may this identity connect, with what ACL --- */
	if (c->l->conf.policy != MOAT_POLICY_OPEN && c->acl == NULL) {
		const char *why = "";
		if (!moat_broker_admit(b, c->identity, c->serial, &c->acl, &why)) {
			refuse(c, MQTT_RC_NOT_AUTHORIZED, MQTT_V3_NOT_AUTHORIZED, why);
			return;
		}
		record_seen(c, p);
	}
	if (c->version == MQTT_V5 && (p->props.present & MQTT_HAS(MQTT_PROP_AUTH_METHOD))) {
		refuse(c, MQTT_RC_BAD_AUTH_METHOD, MQTT_V3_NOT_AUTHORIZED,
		       "no enhanced authentication methods; use a client certificate");
		return;
	}
	if (k->will) {
		if (!moat_topic_name_valid((const char *)k->will_topic.p, k->will_topic.len)) {
			refuse(c, MQTT_RC_TOPIC_NAME_INVALID, MQTT_V3_NOT_AUTHORIZED,
			       "invalid will topic");
			return;
		}
		if (!moat_policy_may_publish(c, (const char *)k->will_topic.p, k->will_topic.len)) {
			refuse(c, MQTT_RC_NOT_AUTHORIZED, MQTT_V3_NOT_AUTHORIZED,
			       "will topic not allowed by policy");
			return;
		}
	}

	/* --- a new session: on the worker its consumers live on (place.c) --- */
	if (!c->placed) {
		unsigned to;
		c->placed = true;
		if (!moat_clientmap_lookup(b, cid, cid_len, &owner, &owner_sid) &&
		    (to = moat_place_worker(c, cid, cid_len)) != w->idx) {
			atomic_fetch_add_explicit(&w->stats.placed, 1, memory_order_relaxed);
			c->handoff_to = to;
			c->state = CONN_HANDOFF;
			return;
		}
	}
	/* --- session: find its worker, hand over if it lives elsewhere --- */
	if (!moat_clientmap_claim(b, cid, cid_len, w->idx, 0, &owner, &owner_sid)) {
		if (owner != w->idx) {
			c->handoff_to = owner;
			c->state = CONN_HANDOFF;
			return;
		}
		s = moat_worker_find_session(w, owner_sid);
	}
	if (s == NULL) {
		s = moat_session_new(w, cid, cid_len);
		if (s == NULL) {
			moat_clientmap_release(b, cid, cid_len, owner_sid);
			refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT_V3_UNAVAILABLE, "out of memory");
			return;
		}
		/* Bind the registry entry (claimed with id 0, or a stale id) to it. */
		moat_clientmap_rebind(b, cid, cid_len, w->idx, s->id);
	} else {
		if (s->conn != NULL) {
			struct moat_conn *old = s->conn;
			log_info("session_takeover", "client=%s", s->client_id);
			moat_conn_disconnect(old, MQTT_RC_SESSION_TAKEN_OVER, "session taken over");
			/* The old connection's will follows the usual rules. */
			old->graceful = s->will_delay > 0 && !k->clean_start;
			moat_session_detach(s);
			s = moat_worker_find_session(w, owner_sid);
		}
		if (s != NULL && k->clean_start) {
			if (s->will_at)
				moat_session_publish_will(s);
			moat_session_reset(s);
		} else if (s != NULL) {
			present = true;
			/* Reconnect cancels a pending delayed will (MQTT-3.1.3-9). */
			moat_msg_unref(s->will);
			s->will = NULL;
			s->will_at = 0;
		}
		if (s == NULL) {
			/* Detaching ended it (expiry 0): start afresh. */
			s = moat_session_new(w, cid, cid_len);
			if (s == NULL) {
				refuse(c, MQTT_RC_SERVER_UNAVAILABLE, MQTT_V3_UNAVAILABLE,
				       "out of memory");
				return;
			}
			moat_clientmap_rebind(b, cid, cid_len, w->idx, s->id);
		}
	}
	memcpy(s->identity, c->identity, sizeof(s->identity));
	s->version = c->version;
	s->expire_at = 0;
	if (c->version == MQTT_V5)
		expiry = (p->props.present & MQTT_HAS(MQTT_PROP_SESSION_EXPIRY))
			     ? p->props.session_expiry
			     : 0;
	else
		expiry = k->clean_start ? 0 : MOAT_MAX_SESSION_EXPIRY;
	s->expiry_interval = expiry < MOAT_MAX_SESSION_EXPIRY ? expiry : MOAT_MAX_SESSION_EXPIRY;
	if (k->will) {
		s->will = will_new(k, s->id);
		s->will_delay = (k->will_props.present & MQTT_HAS(MQTT_PROP_WILL_DELAY))
				    ? k->will_props.will_delay
				    : 0;
	}

	/* --- connection parameters --- */
	c->keepalive = k->keepalive;
	if (c->version == MQTT_V5) {
		if (k->keepalive == 0 || k->keepalive > w->lim.max_keepalive) {
			server_keepalive = w->lim.max_keepalive;
			c->keepalive = server_keepalive;
		}
		if (p->props.present & MQTT_HAS(MQTT_PROP_RECEIVE_MAXIMUM))
			c->peer_receive_max = p->props.receive_maximum;
		if (p->props.present & MQTT_HAS(MQTT_PROP_MAXIMUM_PACKET_SIZE))
			c->peer_max_packet = p->props.max_packet_size;
		if (p->props.present & MQTT_HAS(MQTT_PROP_TOPIC_ALIAS_MAXIMUM))
			c->peer_alias_max = p->props.topic_alias_max;
	}
	c->s = s;
	s->conn = c;
	moat_session_set_acl(s, c->acl, c->l->conf.policy == MOAT_POLICY_OPEN);
	/* A resumed session keeps only what today's policy allows. */
	if (present && c->acl != NULL) {
		moat_policy_prune(s, c->acl);
		(void)moat_session_drop_denied(s);
	}
	c->state = CONN_CONNECTED;
	c->max_packet = w->lim.max_packet_size;
	c->in.max = c->max_packet + 5u;
	c->counted = true;
	atomic_fetch_add(&w->stats.clients, 1);

	memset(&r, 0, sizeof(r));
	r.type = MQTT_CONNACK;
	r.u.connack.session_present = present;
	r.u.connack.code = 0;
	if (c->version == MQTT_V5) {
		struct mqtt_props *pr = &r.props;
		pr->present |= MQTT_HAS(MQTT_PROP_RECEIVE_MAXIMUM) |
			       MQTT_HAS(MQTT_PROP_MAXIMUM_PACKET_SIZE) |
			       MQTT_HAS(MQTT_PROP_TOPIC_ALIAS_MAXIMUM);
		pr->receive_maximum = w->lim.receive_maximum;
		pr->max_packet_size = c->max_packet;
		pr->topic_alias_max = MOAT_TOPIC_ALIAS_MAX;
		if (assigned) {
			pr->present |= MQTT_HAS(MQTT_PROP_ASSIGNED_CLIENT_ID);
			pr->assigned_client_id.p = (const uint8_t *)s->client_id;
			pr->assigned_client_id.len = s->client_id_len;
		}
		if (server_keepalive) {
			pr->present |= MQTT_HAS(MQTT_PROP_SERVER_KEEPALIVE);
			pr->server_keepalive = server_keepalive;
		}
		if (expiry != s->expiry_interval) {
			pr->present |= MQTT_HAS(MQTT_PROP_SESSION_EXPIRY);
			pr->session_expiry = s->expiry_interval;
		}
	}
	/* A stored session's row (or its deletion) commits before the CONNACK
	 * goes out: a clean start or a new session, once acknowledged, survives
	 * a crash. Until then the connection reads and sends nothing. */
	switch (moat_persist_session(s, true, k->clean_start, &r, present)) {
	case MOAT_PERSIST_PENDING:
		c->held = true;
		return;
	case MOAT_PERSIST_FAILED:
		r.u.connack.code =
		    c->version == MQTT_V5 ? MQTT_RC_UNSPECIFIED : MQTT_V3_UNAVAILABLE;
		r.props.present = 0;
		r.u.connack.session_present = false;
		(void)moat_conn_send(c, &r);
		moat_conn_close(c, "session could not be stored");
		return;
	case MOAT_PERSIST_NONE:
		break;
	}
	(void)moat_conn_send(c, &r);
	log_debug("connected", "client=%s addr=%s version=%u present=%d tls_resumed=%d",
		  s->client_id, c->addr, c->version, present,
		  c->ssl != NULL && SSL_session_reused(c->ssl));
	if (present) {
		moat_session_resend(s);
		moat_session_pump(s);
	}
}
