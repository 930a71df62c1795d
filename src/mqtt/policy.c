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

void moat_worker_registry(struct moat_worker *w)
{
	struct moat_conn *c, *next;

	for (c = w->conns; c != NULL; c = next) {
		struct moat_acl *acl = NULL;
		const char *why = "";

		next = c->next;
		if (c->state != CONN_CONNECTED || c->s == NULL ||
		    c->l->conf.policy == MOAT_POLICY_OPEN || c->identity[0] == '\0')
			continue;
		if (!moat_broker_admit(w->b, c->identity, &acl, &why)) {
			log_info("registry_disconnect", "client=%s reason=\"%s\"", c->identity,
				 why);
			moat_conn_disconnect(c, MQTT_RC_ADMIN_ACTION, why);
			continue;
		}
		moat_acl_unref(c->acl);
		c->acl = acl;
		moat_policy_prune(c->s, acl);
	}
}
