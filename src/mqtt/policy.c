/*
 * Access policy until the device registry exists (later issue):
 * - open listeners (loopback only, enforced by the config): everything;
 * - default: a client with certificate identity X may publish only to topics
 *   under "d/X/" and subscribe only to filters under "c/X/" or "d/X/".
 *   Anything else, including "$SYS/#" and wildcards above X, is denied.
 * A prefix check is enough: a wildcard after the "d/X/" prefix cannot match a
 * topic outside it. Shared subscriptions are checked on their inner filter.
 */
#include <string.h>

#include "mqtt/broker.h"
#include "mqtt/topic.h"

static bool under(const char *ns, const char *id, const char *t, size_t len)
{
	size_t idl = strlen(id);

	/* "d/" + id + "/" as a prefix. */
	if (idl == 0 || len < 2 + idl + 1)
		return false;
	return t[0] == ns[0] && t[1] == '/' && memcmp(t + 2, id, idl) == 0 && t[2 + idl] == '/';
}

bool moat_policy_may_publish(const struct moat_conn *c, const char *topic, size_t len)
{
	if (c->l->conf.policy == MOAT_POLICY_OPEN)
		return true;
	return under("d", c->identity, topic, len);
}

bool moat_policy_may_subscribe(const struct moat_conn *c, const char *filter, size_t len)
{
	const char *g, *f;
	size_t glen, flen;
	bool bad;

	if (c->l->conf.policy == MOAT_POLICY_OPEN)
		return true;
	if (moat_topic_shared_parse(filter, len, &g, &glen, &f, &flen, &bad)) {
		filter = f;
		len = flen;
	} else if (bad) {
		return false;
	}
	return under("d", c->identity, filter, len) || under("c", c->identity, filter, len);
}
