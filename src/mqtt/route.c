/*
 * Routing: from one published message to the sessions that receive it.
 *
 * The publishing worker matches its own trie and posts the message (one
 * refcounted object) to every other worker that has subscriptions; each
 * matches its own trie. Retained messages are applied by every worker to its
 * own replica of the retained tree, so subscribing never takes a lock.
 * Shared subscriptions are global (share_lock) and consulted only when any
 * exist.
 */
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "core/log.h"
#include "mqtt/internal.h"
#include "mqtt/topic.h"

/* --- shared subscriptions ------------------------------------------------ */

struct share_member {
	uint64_t session_id;
	unsigned worker;
	uint8_t qos;
	bool rap;
	uint32_t sub_id;
	const struct moat_sub *sub; /* identity only; never dereferenced cross-thread */
};

struct share_group {
	char *key; /* "group\0filter" */
	size_t glen;
	const char *filter;
	size_t flen;
	struct share_member *m;
	size_t n, cap, rr;
	struct share_group *next;
};

static struct share_group *share_find(struct moat_broker *b, const char *g, size_t glen,
				      const char *f, size_t flen)
{
	struct share_group *sg;

	for (sg = b->share_groups; sg; sg = sg->next)
		if (sg->glen == glen && sg->flen == flen && memcmp(sg->key, g, glen) == 0 &&
		    memcmp(sg->filter, f, flen) == 0)
			return sg;
	return NULL;
}

moat_err moat_share_add(struct moat_broker *b, struct moat_sub *sub)
{
	const char *g, *f;
	size_t glen, flen;
	bool bad;
	struct share_group *sg;
	moat_err rc = MOAT_E_NOMEM;
	void *old;

	if (!moat_topic_shared_parse(sub->filter, sub->filter_len, &g, &glen, &f, &flen, &bad))
		return MOAT_E_INVAL;
	pthread_mutex_lock(&b->share_lock);
	sg = share_find(b, g, glen, f, flen);
	if (sg == NULL) {
		sg = calloc(1, sizeof(*sg));
		if (sg == NULL)
			goto out;
		sg->key = malloc(glen + 1 + flen + 1);
		if (sg->key == NULL) {
			free(sg);
			goto out;
		}
		memcpy(sg->key, g, glen);
		sg->key[glen] = '\0';
		memcpy(sg->key + glen + 1, f, flen);
		sg->key[glen + 1 + flen] = '\0';
		sg->glen = glen;
		sg->filter = sg->key + glen + 1;
		sg->flen = flen;
		if (moat_subtrie_insert(b->shared, sg->filter, flen, sg, sg, &old) != MOAT_OK) {
			free(sg->key);
			free(sg);
			goto out;
		}
		sg->next = b->share_groups;
		b->share_groups = sg;
	}
	if (sg->n == sg->cap) {
		size_t ncap = sg->cap ? sg->cap * 2 : 4;
		struct share_member *n = realloc(sg->m, ncap * sizeof(*n));
		if (n == NULL)
			goto out;
		sg->m = n;
		sg->cap = ncap;
	}
	sg->m[sg->n].session_id = sub->s->id;
	sg->m[sg->n].worker = sub->s->w->idx;
	sg->m[sg->n].qos = sub->qos;
	sg->m[sg->n].rap = sub->rap;
	sg->m[sg->n].sub_id = sub->sub_id;
	sg->m[sg->n].sub = sub;
	sg->n++;
	atomic_fetch_add(&b->n_shared, 1);
	rc = MOAT_OK;
out:
	pthread_mutex_unlock(&b->share_lock);
	return rc;
}

void moat_share_remove(struct moat_broker *b, struct moat_sub *sub)
{
	const char *g, *f;
	size_t glen, flen, i;
	bool bad;
	struct share_group *sg, **pp;
	void *old;

	if (!moat_topic_shared_parse(sub->filter, sub->filter_len, &g, &glen, &f, &flen, &bad))
		return;
	pthread_mutex_lock(&b->share_lock);
	sg = share_find(b, g, glen, f, flen);
	if (sg == NULL)
		goto out;
	for (i = 0; i < sg->n; i++) {
		if (sg->m[i].sub == sub) {
			sg->m[i] = sg->m[--sg->n];
			atomic_fetch_sub(&b->n_shared, 1);
			break;
		}
	}
	if (sg->n == 0) {
		(void)moat_subtrie_remove(b->shared, sg->filter, sg->flen, sg, &old);
		for (pp = &b->share_groups; *pp; pp = &(*pp)->next)
			if (*pp == sg) {
				*pp = sg->next;
				break;
			}
		free(sg->m);
		free(sg->key);
		free(sg);
	}
out:
	pthread_mutex_unlock(&b->share_lock);
}

void moat_share_free_all(struct moat_broker *b)
{
	while (b->share_groups) {
		struct share_group *sg = b->share_groups;
		b->share_groups = sg->next;
		free(sg->m);
		free(sg->key);
		free(sg);
	}
}

struct share_pick {
	struct share_member m[16];
	size_t n;
};

static void share_match_cb(void *owner, void *value, void *ctx)
{
	struct share_group *sg = value;
	struct share_pick *pick = ctx;

	(void)owner;
	if (sg->n == 0 || pick->n >= MOAT_ARRAY_LEN(pick->m))
		return;
	pick->m[pick->n++] = sg->m[sg->rr++ % sg->n];
}

void moat_route_shared(struct moat_worker *w, struct moat_msg *m)
{
	struct moat_broker *b = w->b;
	struct share_pick pick;
	size_t i;

	pick.n = 0;
	pthread_mutex_lock(&b->share_lock);
	moat_subtrie_match(b->shared, m->topic, m->topic_len, share_match_cb, &pick);
	pthread_mutex_unlock(&b->share_lock);
	for (i = 0; i < pick.n; i++) {
		struct share_member *sm = &pick.m[i];
		uint8_t qos = sm->qos < m->qos ? sm->qos : m->qos;
		if (sm->worker == w->idx) {
			struct moat_session *s = moat_worker_find_session(w, sm->session_id);
			if (s)
				moat_session_deliver(s, m, qos, sm->rap ? m->retain : false,
						     &sm->sub_id, sm->sub_id ? 1 : 0);
			continue;
		}
		{
			struct moat_mailitem *it = calloc(1, sizeof(*it));
			if (it == NULL)
				continue;
			it->kind = MAIL_TARGET;
			it->msg = moat_msg_ref(m);
			if (w->ptok != NULL) {
				moat_pubtoken_hold(w->ptok);
				it->tok = w->ptok;
			}
			it->qos = qos;
			it->retain = sm->rap ? m->retain : false;
			it->session_id = sm->session_id;
			it->sub_id = sm->sub_id;
			moat_worker_post(w, sm->worker, it);
		}
	}
}

/* --- local matching ------------------------------------------------------ */

static void collect_cb(void *owner, void *value, void *ctx)
{
	struct moat_worker *w = ctx;

	if (w->scratch_n == w->scratch_cap) {
		size_t ncap = w->scratch_cap ? w->scratch_cap * 2 : 64;
		struct moat_match *n = realloc(w->scratch, ncap * sizeof(*n));
		if (n == NULL)
			return;
		w->scratch = n;
		w->scratch_cap = ncap;
	}
	w->scratch[w->scratch_n].s = owner;
	w->scratch[w->scratch_n].sub = value;
	w->scratch_n++;
}

static int match_cmp(const void *a, const void *b)
{
	const struct moat_match *x = a, *y = b;

	if (x->s == y->s)
		return 0;
	return (uintptr_t)x->s < (uintptr_t)y->s ? -1 : 1;
}

static void retain_apply(struct moat_worker *w, struct moat_msg *m)
{
	void *old = NULL;

	if (m->payload_len == 0) {
		(void)moat_rettree_set(w->retained, m->topic, m->topic_len, NULL, &old);
	} else if (moat_rettree_set(w->retained, m->topic, m->topic_len, moat_msg_ref(m), &old) !=
		   MOAT_OK) {
		moat_msg_unref(m);
		log_warn("retain_failed", "topic=%s", m->topic);
	}
	moat_msg_unref(old);
}

void moat_route_local(struct moat_worker *w, struct moat_msg *m, bool route, bool retain)
{
	size_t i, j;

	if (retain)
		retain_apply(w, m);
	if (!route)
		return;
	w->scratch_n = 0;
	moat_subtrie_match(w->subs, m->topic, m->topic_len, collect_cb, w);
	if (w->scratch_n > 1)
		qsort(w->scratch, w->scratch_n, sizeof(*w->scratch), match_cmp);
	/* One copy per session: the highest QoS of its matching subscriptions
	 * and all their subscription identifiers (MQTT 3.3.4). */
	for (i = 0; i < w->scratch_n; i = j) {
		struct moat_session *s = w->scratch[i].s;
		uint32_t ids[MOAT_SUB_IDS_PER_DELIVERY];
		uint8_t n_ids = 0, qos = 0;
		bool any = false, rap = false;

		for (j = i; j < w->scratch_n && w->scratch[j].s == s; j++) {
			const struct moat_sub *sub = w->scratch[j].sub;
			if (sub->no_local && m->origin == s->id)
				continue;
			any = true;
			if (sub->qos > qos)
				qos = sub->qos;
			if (sub->rap)
				rap = true;
			if (sub->sub_id && n_ids < MOAT_SUB_IDS_PER_DELIVERY)
				ids[n_ids++] = sub->sub_id;
		}
		if (!any)
			continue;
		if (qos > m->qos)
			qos = m->qos;
		moat_session_deliver(s, m, qos, rap ? m->retain : false, ids, n_ids);
	}
}

void moat_route(struct moat_worker *w, struct moat_msg *m, struct moat_pubtoken *t)
{
	struct moat_broker *b = w->b;
	unsigned i;

	atomic_fetch_add_explicit(&w->stats.msgs_in, 1, memory_order_relaxed);
	moat_route_local(w, m, true, m->retain);
	for (i = 0; i < b->n_workers; i++) {
		struct moat_mailitem *it;
		bool has_subs;

		if (i == w->idx)
			continue;
		/* Only where a subscription may match: every post is a
		 * wake-up of that worker (interest.h). */
		has_subs = atomic_load_explicit(&b->workers[i].n_subs, memory_order_relaxed) > 0 &&
			   moat_interest_may_match(b->workers[i].interest, m->topic, m->topic_len);
		if (!has_subs && !m->retain) {
			atomic_fetch_add_explicit(&w->stats.routes_skipped, 1,
						  memory_order_relaxed);
			continue;
		}
		it = calloc(1, sizeof(*it));
		if (it == NULL)
			continue;
		it->kind = MAIL_ROUTE;
		it->msg = moat_msg_ref(m);
		it->route = has_subs;
		it->retain = m->retain;
		/* The acknowledgement waits for that worker only if it has stored
		 * sessions that may need this message on disk. */
		if (t != NULL && has_subs &&
		    atomic_load_explicit(&b->workers[i].n_stored, memory_order_relaxed) > 0) {
			moat_pubtoken_hold(t);
			it->tok = t;
		}
		atomic_fetch_add_explicit(&w->stats.routes_posted, 1, memory_order_relaxed);
		moat_worker_post(w, i, it);
	}
	if (atomic_load_explicit(&b->n_shared, memory_order_relaxed) > 0)
		moat_route_shared(w, m);
}

struct retained_ctx {
	struct moat_session *s;
	struct moat_sub *sub;
};

static void retained_cb(const char *topic, size_t len, void *value, void *ctx)
{
	struct retained_ctx *rc = ctx;
	struct moat_msg *m = value;
	uint8_t qos = rc->sub->qos < m->qos ? rc->sub->qos : m->qos;

	(void)topic;
	(void)len;
	moat_session_deliver(rc->s, m, qos, true, &rc->sub->sub_id, rc->sub->sub_id ? 1 : 0);
}

void moat_route_retained_to(struct moat_session *s, struct moat_sub *sub)
{
	struct retained_ctx ctx = {.s = s, .sub = sub};

	if (sub->shared)
		return;
	moat_rettree_match(s->w->retained, sub->match, sub->match_len, retained_cb, &ctx);
}
