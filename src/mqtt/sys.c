/*
 * $SYS/broker/... statistics, published retained by worker 0 every
 * MOAT_SYS_INTERVAL_S. Only open-policy listeners can read them: the default
 * policy never lets a device subscribe outside its own namespace, and a
 * leading wildcard never matches '$' topics.
 */
#include <stdio.h>
#include <string.h>

#include "mqtt/internal.h"

static void sys_put(struct moat_worker *w, bool route, const char *name, unsigned long long v)
{
	char topic[96], val[32];
	int tl = snprintf(topic, sizeof(topic), "$SYS/broker/%s", name);
	int vl = snprintf(val, sizeof(val), "%llu", v);
	struct moat_msg *m;

	if (tl <= 0 || vl <= 0)
		return;
	m = moat_msg_new(topic, (size_t)tl, (const uint8_t *)val, (size_t)vl, NULL, 0, true, 0,
			 w->now);
	if (m == NULL)
		return;
	if (route)
		moat_route(w, m, NULL);
	else
		moat_route_local(w, m, false, true);
	moat_msg_unref(m);
}

void moat_sys_publish(struct moat_worker *w, bool route)
{
	struct moat_broker *b = w->b;
	unsigned long long in = 0, out = 0, bin = 0, bout = 0, dropped = 0;
	long long clients = 0;
	unsigned i;

	for (i = 0; i < b->n_workers; i++) {
		struct moat_stats *st = &b->workers[i].stats;
		in += atomic_load_explicit(&st->msgs_in, memory_order_relaxed);
		out += atomic_load_explicit(&st->msgs_out, memory_order_relaxed);
		bin += atomic_load_explicit(&st->bytes_in, memory_order_relaxed);
		bout += atomic_load_explicit(&st->bytes_out, memory_order_relaxed);
		dropped += atomic_load_explicit(&st->dropped, memory_order_relaxed);
		clients += atomic_load_explicit(&st->clients, memory_order_relaxed);
	}
	sys_put(w, route, "clients/connected", clients > 0 ? (unsigned long long)clients : 0);
	sys_put(w, route, "messages/received", in);
	sys_put(w, route, "messages/sent", out);
	sys_put(w, route, "messages/dropped", dropped);
	sys_put(w, route, "bytes/received", bin);
	sys_put(w, route, "bytes/sent", bout);
	sys_put(w, route, "uptime", (unsigned long long)((w->now - b->started) / 1000u));
}
