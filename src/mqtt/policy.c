/*
 * Access policy on the MQTT path:
 * - open listeners (loopback only, enforced by the config): everything;
 * - otherwise the connection's ACL, compiled from the registry at CONNECT
 *   (src/registry: the identity's groups' policies and its own; deny wins;
 *   no rule means deny). Shared subscriptions are checked on their inner
 *   filter (the ACL does that).
 * A registry change re-admits the sessions of the identities it touched
 * (all of them at start and on SIGHUP), connected and offline: an identity
 * no longer allowed is disconnected (0x98 administrative action), the
 * others get the new ACL and lose the subscriptions it denies (MQTT has no
 * packet to tell the client; the removal is logged and, for stored
 * sessions, written to the store).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "mqtt/topic.h"
#include "store/store.h"
#include "mqtt/schema.h"

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
			(void)moat_store_batch_add(b, MQTT_STMT(SUB_DEL), v, 2);
		}
		if (!moat_session_remove_sub(s, filter, len))
			i++; /* cannot happen; never loop forever */
	}
	if (b != NULL && moat_store_submit(st, b, noop_cb, NULL) != MOAT_OK)
		log_warn("subscription_removal_not_stored", "client=%s", s->client_id);
}

/* Is the retained topic under d/<id>/ of a decommissioned identity? */
static bool decommissioned_topic(const char *topic, size_t len, void *ctx)
{
	struct moat_regtab *reg = ctx;
	char id[MOAT_DEVICE_ID_MAX + 1];
	const char *slash;
	size_t idlen;

	if (len < 3 || topic[0] != 'd' || topic[1] != '/')
		return false;
	slash = memchr(topic + 2, '/', len - 2);
	if (slash == NULL)
		return false;
	idlen = (size_t)(slash - (topic + 2));
	if (idlen == 0 || idlen > MOAT_DEVICE_ID_MAX)
		return false;
	memcpy(id, topic + 2, idlen);
	id[idlen] = '\0';
	return moat_regtab_decommissioned(reg, id);
}

/* Re-admit one session under the current table, online or offline. Not
 * admitted (disabled, revoked, no longer registered): a live connection is
 * closed with 0x98 and the session receives nothing (its queue is dropped;
 * its subscriptions stay, so a device enabled again resumes them, pruned by
 * the policy it then has). Admitted: the new ACL, the subscriptions and
 * queued messages it denies removed (a quarantined identity's ACL allows it
 * nothing to receive). */
static void readmit(struct moat_worker *w, struct moat_session *s)
{
	struct moat_conn *c = s->conn;
	struct moat_acl *acl = NULL;
	const char *why = "";
	size_t dropped;
	bool online = c != NULL && c->state == CONN_CONNECTED;

	if (s->acl_all)
		return;
	if (!moat_broker_admit(w->b, s->identity, online ? c->serial : NULL, &acl, &why)) {
		if (online) {
			log_info("registry_disconnect", "client=%s reason=\"%s\"", s->client_id,
				 why);
			moat_conn_disconnect(c, MQTT_RC_ADMIN_ACTION, why);
		}
		moat_session_set_acl(s, NULL, false);
	} else {
		moat_session_set_acl(s, acl, false);
		if (c != NULL) {
			moat_acl_unref(c->acl);
			c->acl = acl;
		} else {
			moat_acl_unref(acl);
		}
		moat_policy_prune(s, s->acl);
	}
	dropped = moat_session_drop_denied(s);
	if (dropped > 0)
		log_info("queue_pruned", "client=%s dropped=%zu reason=policy", s->client_id,
			 dropped);
}

/* A session's identity ("" on open listeners: unrestricted). */
static const char *session_identity(const struct moat_session *s)
{
	return s->identity[0] ? s->identity : s->client_id;
}

/* Re-evaluate one session: a decommissioned identity leaves nothing
 * behind (the API erases it synchronously, erase.c; this catches what it
 * could not, a decommission loaded by SIGHUP or found at start); others
 * are re-admitted. */
static void reevaluate(struct moat_worker *w, struct moat_session *s)
{
	if (s->acl_all)
		return;
	if (moat_regtab_decommissioned(w->b->reg, session_identity(s))) {
		moat_session_erase(s, "identity is decommissioned");
		return;
	}
	readmit(w, s);
}

static bool ids_has(const struct moat_reg_change *ch, const char *id)
{
	size_t lo = 0, hi = ch->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(ch->ids[mid], id);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/*
 * A change names its identities: only their sessions are re-admitted. The
 * client id is the certificate identity on mTLS listeners, so the
 * client-id map finds each one's session (and its worker) without a scan.
 * A change naming more identities than this worker has sessions (a policy
 * of a large group) walks the sessions instead: either way the cost is the
 * smaller of the two, never the whole fleet for one identity.
 */
void moat_worker_registry(struct moat_worker *w, const struct moat_regev *ev)
{
	struct moat_session *s, *next;
	size_t i;

	if (w->b->reg == NULL)
		return;
	if (ev == NULL) {
		for (s = w->sessions; s != NULL; s = next) {
			next = s->next;
			reevaluate(w, s);
		}
		(void)moat_worker_drop_retained(w, "d/+/#", decommissioned_topic, w->b->reg);
		return;
	}
	if (ev->ch.n > w->by_id_n) {
		for (s = w->sessions; s != NULL; s = next) {
			next = s->next;
			if (!s->acl_all && ids_has(&ev->ch, session_identity(s)))
				reevaluate(w, s);
		}
	} else {
		for (i = 0; i < ev->ch.n; i++) {
			const char *id = ev->ch.ids[i];
			unsigned owner;
			uint64_t sid;

			if (!moat_clientmap_lookup(w->b, id, strlen(id), &owner, &sid) ||
			    owner != w->idx)
				continue;
			s = moat_worker_find_session(w, sid);
			if (s != NULL && strcmp(session_identity(s), id) == 0)
				reevaluate(w, s);
		}
	}
	for (i = 0; i < ev->ch.n; i++)
		if (moat_regtab_decommissioned(w->b->reg, ev->ch.ids[i]))
			(void)moat_worker_erase_retained(w, ev->ch.ids[i]);
}
