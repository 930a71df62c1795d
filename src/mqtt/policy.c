/*
 * Access policy on the MQTT path:
 * - open listeners (loopback only, enforced by the config): everything;
 * - otherwise the connection's ACL, compiled from the registry at CONNECT
 *   (src/registry: the identity's groups' policies and its own; deny wins;
 *   no rule means deny). Shared subscriptions are checked on their inner
 *   filter (the ACL does that).
 * A new registry snapshot re-admits every connection of a worker: an
 * identity no longer allowed is disconnected (0x98 administrative action),
 * the others get the new ACL and lose the subscriptions it denies (MQTT has
 * no packet to tell the client; the removal is logged and, for stored
 * sessions, written to the store).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "mqtt/broker.h"
#include "mqtt/topic.h"
#include "store/store.h"

bool moat_policy_may_publish(const struct moat_conn *c, const char *topic, size_t len)
{
	if (c->l->conf.policy == MOAT_POLICY_OPEN)
		return true;
	return c->acl != NULL && moat_acl_may_publish(c->acl, topic, len);
}

bool moat_policy_may_subscribe(const struct moat_conn *c, const char *filter, size_t len)
{
	if (c->l->conf.policy == MOAT_POLICY_OPEN)
		return true;
	return c->acl != NULL && moat_acl_may_subscribe(c->acl, filter, len);
}

static void noop_cb(void *arg, moat_err rc)
{
	(void)arg;
	(void)rc;
}

void moat_policy_prune(struct moat_session *s, const struct moat_acl *acl)
{
	struct moat_store *st = s->w->b->store;
	struct moat_store_batch *b = NULL;
	size_t i = 0;

	while (i < s->n_subs) {
		struct moat_sub *sub = s->subs[i];
		char filter[MOAT_MAX_TOPIC_LEN + 64];
		size_t len = sub->filter_len;

		if (moat_acl_may_subscribe(acl, sub->filter, len) || len >= sizeof(filter)) {
			i++;
			continue;
		}
		memcpy(filter, sub->filter, len);
		filter[len] = '\0';
		log_info("subscription_removed", "client=%s filter=\"%s\" reason=policy",
			 s->client_id, filter);
		if (s->stored && st != NULL && (b != NULL || moat_store_batch_new(&b) == MOAT_OK)) {
			struct moat_val v[2];
			v[0] = moat_val_text(s->client_id, strlen(s->client_id));
			v[1] = moat_val_text(filter, len);
			(void)moat_store_batch_add(b, MOAT_STMT_SUB_DEL, v, 2);
		}
		if (!moat_session_remove_sub(s, filter, len))
			i++; /* cannot happen; never loop forever */
	}
	if (b != NULL && moat_store_submit(st, b, noop_cb, NULL) != MOAT_OK)
		log_warn("subscription_removal_not_stored", "client=%s", s->client_id);
}

struct ret_drop {
	const struct moat_regsnap *snap;
	char **topics;
	size_t n, cap;
	bool oom;
};

/* Retained topics d/<id>/... of decommissioned identities. */
static void ret_collect_cb(const char *topic, size_t len, void *value, void *ctx)
{
	struct ret_drop *d = ctx;
	char id[MOAT_DEVICE_ID_MAX + 1];
	const char *slash;
	size_t idlen;
	char *copy;

	(void)value;
	if (len < 3 || topic[0] != 'd' || topic[1] != '/')
		return;
	slash = memchr(topic + 2, '/', len - 2);
	idlen = slash ? (size_t)(slash - (topic + 2)) : len - 2;
	if (idlen == 0 || idlen > MOAT_DEVICE_ID_MAX)
		return;
	memcpy(id, topic + 2, idlen);
	id[idlen] = '\0';
	if (!moat_regsnap_decommissioned(d->snap, id))
		return;
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 16;
		char **nt = realloc(d->topics, ncap * sizeof(*nt));
		if (nt == NULL) {
			d->oom = true;
			return;
		}
		d->topics = nt;
		d->cap = ncap;
	}
	copy = malloc(len + 1);
	if (copy == NULL) {
		d->oom = true;
		return;
	}
	memcpy(copy, topic, len);
	copy[len] = '\0';
	d->topics[d->n++] = copy;
}

/* A decommissioned identity leaves nothing behind on this worker: its
 * session ends at the next tick (no will, no queue) and this worker's copy
 * of the retained messages under d/<id>/ goes. The store rows went with the
 * API's change. */
static void erase_decommissioned(struct moat_worker *w, struct moat_regsnap *snap)
{
	struct ret_drop drop;
	struct moat_session *s;
	size_t i;

	for (s = w->sessions; s != NULL; s = s->next) {
		if (!moat_regsnap_decommissioned(snap, s->client_id))
			continue;
		s->expiry_interval = 0;
		s->expire_at = 1;
		s->will_at = 0;
		moat_msg_unref(s->will);
		s->will = NULL;
		log_info("decommission_erased", "client=%s", s->client_id);
	}
	memset(&drop, 0, sizeof(drop));
	drop.snap = snap;
	moat_rettree_match(w->retained, "d/+/#", 5, ret_collect_cb, &drop);
	for (i = 0; i < drop.n; i++) {
		void *old = NULL;
		(void)moat_rettree_set(w->retained, drop.topics[i], strlen(drop.topics[i]), NULL,
				       &old);
		moat_msg_unref(old);
		free(drop.topics[i]);
	}
	free(drop.topics);
	if (drop.oom)
		log_warn("decommission_retained_partial", "note=\"out of memory\"");
}

void moat_worker_registry(struct moat_worker *w)
{
	struct moat_conn *c, *next;
	struct moat_regsnap *snap;

	for (c = w->conns; c != NULL; c = next) {
		struct moat_acl *acl = NULL;
		const char *why = "";

		next = c->next;
		if (c->state != CONN_CONNECTED || c->s == NULL ||
		    c->l->conf.policy == MOAT_POLICY_OPEN || c->identity[0] == '\0')
			continue;
		if (!moat_broker_admit(w->b, c->identity, c->serial, &acl, &why)) {
			log_info("registry_disconnect", "client=%s reason=\"%s\"", c->identity,
				 why);
			moat_conn_disconnect(c, MQTT_RC_ADMIN_ACTION, why);
			continue;
		}
		moat_acl_unref(c->acl);
		c->acl = acl;
		moat_policy_prune(c->s, acl);
	}
	pthread_mutex_lock(&w->b->snap_lock);
	snap = w->b->reg_snap;
	if (snap != NULL)
		moat_regsnap_ref(snap);
	pthread_mutex_unlock(&w->b->snap_lock);
	if (snap != NULL) {
		erase_decommissioned(w, snap);
		moat_regsnap_unref(snap);
	}
}
