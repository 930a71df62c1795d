/*
 * Placement at CONNECT: which worker a new session lives on.
 *
 * The kernel spreads connections over the workers (SO_REUSEPORT). When a
 * device's messages are consumed on another worker, every one of them is a
 * hand-off and a wake-up there, the dearest part of a message at fleet rates
 * (bench/README.md). So a connection without a session is handed, before
 * its session is made, to a worker whose subscribers may receive what the
 * device publishes in its own topic space d/<id>/ (the default policy's),
 * as that worker's interest filter says (interest.h), unless the connection
 * is already on such a worker or that worker already moves more than
 * MOAT_PLACE_MSG_RATE_MAX messages a second (then spreading wins:
 * throughput needs both workers, and busy workers batch anyway).
 *
 * When no worker's subscribers want the device's topics yet, sessions are
 * packed onto the first worker below that rate, so at fleet rates sessions
 * share one worker's wake-ups (handshakes still run on whichever worker
 * accepted the connection, in parallel) and spill to the next as traffic
 * grows. A heuristic only: the decision is made once, at CONNECT, from the
 * message rates of the last second; sessions never move once made (a
 * reconnect goes to its session's worker), so traffic that grows later
 * stays where it was placed.
 */
#include <stdio.h>
#include <string.h>

#include "mqtt/internal.h"

unsigned moat_place_worker(struct moat_conn *c, const char *cid, size_t cid_len)
{
	struct moat_worker *w = c->w;
	struct moat_broker *b = w->b;
	char topic[2 + MOAT_MAX_CLIENT_ID_LEN + 1];
	const char *id = c->identity[0] != '\0' ? c->identity : cid;
	size_t idlen = c->identity[0] != '\0' ? strlen(c->identity) : cid_len, tlen;
	unsigned i, best = w->idx, best_rate = MOAT_PLACE_MSG_RATE_MAX;
	bool interest = false;

	if (b->n_workers < 2 || idlen == 0 || idlen > MOAT_MAX_CLIENT_ID_LEN)
		return w->idx;
	topic[0] = 'd';
	topic[1] = '/';
	memcpy(topic + 2, id, idlen);
	tlen = 2 + idlen;
	/* Here already: nothing to gain. */
	if (atomic_load_explicit(&w->n_subs, memory_order_relaxed) > 0 &&
	    moat_interest_may_match(w->interest, topic, tlen))
		return w->idx;
	for (i = 0; i < b->n_workers; i++) {
		struct moat_worker *o = &b->workers[i];
		unsigned rate;
		if (i == w->idx || atomic_load_explicit(&o->n_subs, memory_order_relaxed) == 0 ||
		    !moat_interest_may_match(o->interest, topic, tlen))
			continue;
		interest = true;
		rate = atomic_load_explicit(&o->msg_rate, memory_order_relaxed);
		if (rate < best_rate) {
			best = i;
			best_rate = rate;
		}
	}
	if (interest)
		return best;
	/* Nobody consumes its topics yet: pack, onto the first worker that
	 * moves fewer than MOAT_PLACE_MSG_RATE_MAX messages a second. Sessions
	 * that talk to each other then share a worker and its wake-ups (a
	 * consumer connecting later finds its devices together), and a busy
	 * worker makes the next ones spill over. */
	for (i = 0; i < b->n_workers; i++)
		if (atomic_load_explicit(&b->workers[i].msg_rate, memory_order_relaxed) <
		    MOAT_PLACE_MSG_RATE_MAX)
			return i;
	return w->idx;
}
