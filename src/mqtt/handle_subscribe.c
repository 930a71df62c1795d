/*
 * SUBSCRIBE and UNSUBSCRIBE: validate each filter, apply the policy, update
 * the session (and so the trie), answer, then send matching retained
 * messages according to each subscription's Retain Handling.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "mqtt/topic.h"

void moat_handle_subscribe(struct moat_conn *c, const struct mqtt_packet *p)
{
	struct moat_session *s = c->s;
	struct mqtt_sub_iter it;
	struct mqtt_sub_entry e;
	struct mqtt_packet r;
	uint8_t *codes = NULL;
	struct moat_sub **granted = NULL, **ret = NULL;
	bool *existed = NULL;
	size_t n = 0, i, n_ret, n_put;
	uint32_t sub_id = 0;

	if (p->props.present & MQTT_HAS(MQTT_PROP_SUBSCRIPTION_ID))
		sub_id = p->props.sub_id;
	/* The count comes from bytes we hold, not from a declared number. */
	codes = calloc(p->u.subs.count, 1);
	granted = calloc(p->u.subs.count, sizeof(*granted));
	existed = calloc(p->u.subs.count, sizeof(*existed));
	ret = calloc(p->u.subs.count, sizeof(*ret));
	if (codes == NULL || granted == NULL || existed == NULL || ret == NULL) {
		moat_conn_disconnect(c, MQTT_RC_UNSPECIFIED, "out of memory");
		goto out;
	}
	mqtt_sub_iter_init(&it, c->version, p);
	while (n < p->u.subs.count && mqtt_sub_iter_next(&it, &e)) {
		const char *g, *f;
		size_t glen, flen;
		bool bad = false, shared;
		uint8_t fail = c->version == MQTT_V5 ? MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
		struct moat_sub *sub;
		moat_err rc;

		shared = moat_topic_shared_parse((const char *)e.filter.p, e.filter.len, &g, &glen,
						 &f, &flen, &bad);
		if (bad || !moat_topic_filter_valid((const char *)e.filter.p, e.filter.len)) {
			codes[n++] = fail;
			continue;
		}
		if (shared && e.no_local) {
			/* MQTT-3.8.3-4 */
			moat_conn_disconnect(c, MQTT_RC_PROTOCOL_ERROR,
					     "no local on shared subscription");
			goto out;
		}
		if (!moat_policy_may_subscribe(c, (const char *)e.filter.p, e.filter.len)) {
			log_info("subscribe_denied", "client=%s filter=\"%.*s\"", s->client_id,
				 (int)(e.filter.len > 128 ? 128 : e.filter.len),
				 (const char *)e.filter.p);
			{
				char d[160];
				snprintf(d, sizeof(d), "filter=%.*s",
					 (int)(e.filter.len > 128 ? 128 : e.filter.len),
					 (const char *)e.filter.p);
				moat_broker_secev(c->w->b, "mqtt.subscribe_denied", s->client_id,
						  c->addr, d);
			}
			codes[n++] = c->version == MQTT_V5 ? MQTT_RC_NOT_AUTHORIZED : 0x80;
			continue;
		}
		sub = moat_sub_new(&e, sub_id);
		if (sub == NULL) {
			codes[n++] = c->version == MQTT_V5 ? MQTT_RC_UNSPECIFIED : 0x80;
			continue;
		}
		rc = moat_session_add_sub(s, sub, &existed[n]);
		if (rc != MOAT_OK) {
			moat_sub_free(sub);
			codes[n++] = c->version == MQTT_V5 ? MQTT_RC_QUOTA_EXCEEDED : 0x80;
			continue;
		}
		/* On replace, the session kept its own record; look it up. */
		for (i = 0; i < s->n_subs; i++)
			if (s->subs[i]->filter_len == e.filter.len &&
			    memcmp(s->subs[i]->filter, e.filter.p, e.filter.len) == 0)
				granted[n] = s->subs[i];
		codes[n++] = e.qos;
	}
	memset(&r, 0, sizeof(r));
	r.type = MQTT_SUBACK;
	r.u.codes.packet_id = p->u.subs.packet_id;
	r.u.codes.codes.p = codes;
	r.u.codes.codes.len = n;
	/* Fresh $SYS values for a new $SYS subscriber, not up to 10 s old. */
	for (i = 0; i < n; i++) {
		if (granted[i] && granted[i]->match_len >= 4 &&
		    memcmp(granted[i]->match, "$SYS", 4) == 0) {
			moat_sys_publish(c->w, false);
			break;
		}
	}
	/* Which subscriptions get their retained messages (Retain Handling). */
	n_ret = 0;
	for (i = 0; i < n; i++) {
		struct moat_sub *sub = granted[i];
		if (sub == NULL || sub->rh == 2 || (sub->rh == 1 && existed[i]) || sub->shared)
			continue;
		ret[n_ret++] = sub;
	}
	n_put = 0;
	for (i = 0; i < n; i++)
		if (granted[i] != NULL)
			granted[n_put++] = granted[i];
	switch (moat_persist_subs(s, granted, n_put, NULL, c->version, &r, ret, n_ret)) {
	case MOAT_PERSIST_PENDING:
		goto out; /* SUBACK and retained follow the commit */
	case MOAT_PERSIST_FAILED:
		moat_conn_disconnect(c, MQTT_RC_UNSPECIFIED, "subscription could not be stored");
		goto out;
	case MOAT_PERSIST_NONE:
		break;
	}
	(void)moat_conn_send(c, &r);
	for (i = 0; i < n_ret; i++)
		moat_route_retained_to(s, ret[i]);
out:
	free(codes);
	free(granted);
	free(existed);
	free(ret);
}

void moat_handle_unsubscribe(struct moat_conn *c, const struct mqtt_packet *p)
{
	struct moat_session *s = c->s;
	struct mqtt_sub_iter it;
	struct mqtt_sub_entry e;
	struct mqtt_packet r;
	uint8_t *codes = calloc(p->u.subs.count ? p->u.subs.count : 1, 1);
	size_t n = 0;

	if (codes == NULL) {
		moat_conn_disconnect(c, MQTT_RC_UNSPECIFIED, "out of memory");
		return;
	}
	mqtt_sub_iter_init(&it, c->version, p);
	while (n < p->u.subs.count && mqtt_sub_iter_next(&it, &e)) {
		bool found = moat_session_remove_sub(s, (const char *)e.filter.p, e.filter.len);
		codes[n++] = found ? MQTT_RC_SUCCESS : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
	}
	memset(&r, 0, sizeof(r));
	r.type = MQTT_UNSUBACK;
	r.u.codes.packet_id = p->u.subs.packet_id;
	r.u.codes.codes.p = codes;
	r.u.codes.codes.len = n;
	switch (moat_persist_subs(s, NULL, 0, &p->u.subs, c->version, &r, NULL, 0)) {
	case MOAT_PERSIST_PENDING:
		break; /* UNSUBACK follows the commit */
	case MOAT_PERSIST_FAILED:
		moat_conn_disconnect(c, MQTT_RC_UNSPECIFIED, "unsubscribe could not be stored");
		break;
	case MOAT_PERSIST_NONE:
		(void)moat_conn_send(c, &r);
		break;
	}
	free(codes);
}
