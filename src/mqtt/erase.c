/*
 * Erasing an identity from the broker (decommissioning): its sessions (the
 * live connection closed with 0x98, no will, no queue), its subscriptions,
 * its retained messages under d/<id>/ in every worker's replica and in the
 * store, and the stored messages nobody references any more; then the WAL
 * is checkpointed so the erased bytes are gone from the files too (the
 * store runs with secure_delete on).
 *
 * moat_broker_erase_identity runs on the caller's thread (the API's) and
 * returns only when every worker has erased its part and the store has
 * committed: an id re-registered the next moment finds nothing of the old
 * device. Workers never wait for the caller, so the wait cannot deadlock;
 * it is bounded all the same (MOAT_ERASE_TIMEOUT_MS), and the shared state
 * is reference counted so a late worker never touches freed memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "store/store.h"
#include "mqtt/schema.h"

struct moat_erase {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned refs;	  /* the caller + each worker not done */
	unsigned pending; /* workers not done */
	moat_err rc;
	unsigned sessions;
	char id[MOAT_DEVICE_ID_MAX + 1];
};

static void erase_unref(struct moat_erase *e)
{
	bool last;

	pthread_mutex_lock(&e->lock);
	last = --e->refs == 0;
	pthread_mutex_unlock(&e->lock);
	if (!last)
		return;
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/* A worker's writes before the erasure have committed (or failed). */
static void worker_done_cb(void *arg, moat_err rc)
{
	struct moat_erase *e = arg;

	pthread_mutex_lock(&e->lock);
	if (rc != MOAT_OK && e->rc == MOAT_OK)
		e->rc = rc;
	e->pending--;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	erase_unref(e);
}

void moat_session_erase(struct moat_session *s, const char *why)
{
	struct moat_conn *c = s->conn;

	log_info("session_erased", "client=%s reason=\"%s\"", s->client_id, why);
	moat_msg_unref(s->will);
	s->will = NULL;
	s->will_at = 0;
	/* Not persistent any more: ending it deletes its row (and, by
	 * cascade, its subscriptions, queue and QoS 2 state). */
	s->expiry_interval = 0;
	if (c == NULL) {
		moat_session_end(s);
		return;
	}
	if (c->state == CONN_CONNECTED)
		moat_conn_disconnect(c, MQTT_RC_ADMIN_ACTION, why);
	c->graceful = true;
	moat_session_detach(s); /* expiry 0: ends the session */
}

struct ret_collect {
	bool (*pred)(const char *topic, size_t len, void *ctx);
	void *ctx;
	char **topics;
	size_t n, cap;
	bool oom;
};

static void ret_collect_cb(const char *topic, size_t len, void *value, void *arg)
{
	struct ret_collect *rc = arg;
	char *copy;

	(void)value;
	if (!rc->pred(topic, len, rc->ctx))
		return;
	if (rc->n == rc->cap) {
		size_t ncap = rc->cap ? rc->cap * 2 : 16;
		char **nt = realloc(rc->topics, ncap * sizeof(*nt));
		if (nt == NULL) {
			rc->oom = true;
			return;
		}
		rc->topics = nt;
		rc->cap = ncap;
	}
	copy = malloc(len + 1);
	if (copy == NULL) {
		rc->oom = true;
		return;
	}
	memcpy(copy, topic, len);
	copy[len] = '\0';
	rc->topics[rc->n++] = copy;
}

size_t moat_worker_drop_retained(struct moat_worker *w, const char *filter,
				 bool (*pred)(const char *topic, size_t len, void *ctx), void *ctx)
{
	struct ret_collect rc;
	size_t i, n;

	/* Collected first: the tree cannot change under its own walk. */
	memset(&rc, 0, sizeof(rc));
	rc.pred = pred;
	rc.ctx = ctx;
	moat_rettree_match(w->retained, filter, strlen(filter), ret_collect_cb, &rc);
	for (i = 0; i < rc.n; i++) {
		void *old = NULL;
		(void)moat_rettree_set(w->retained, rc.topics[i], strlen(rc.topics[i]), NULL, &old);
		moat_msg_unref(old);
		free(rc.topics[i]);
	}
	n = rc.n;
	free(rc.topics);
	if (rc.oom)
		log_warn("retained_drop_partial", "filter=\"%s\" note=\"out of memory\"", filter);
	return n;
}

/* Under the prefix "d/<id>/" (the filter d/<id>/# also matches d/<id>). */
static bool under_prefix(const char *topic, size_t len, void *ctx)
{
	const char *prefix = ctx;
	size_t plen = strlen(prefix);

	return len >= plen && memcmp(topic, prefix, plen) == 0;
}

size_t moat_worker_erase_retained(struct moat_worker *w, const char *id)
{
	char filter[MOAT_DEVICE_ID_MAX + 8], prefix[MOAT_DEVICE_ID_MAX + 8];
	int len = snprintf(filter, sizeof(filter), "d/%s/#", id);

	if (len < 0 || (size_t)len >= sizeof(filter))
		return 0;
	memcpy(prefix, filter, (size_t)len - 1);
	prefix[len - 1] = '\0';
	return moat_worker_drop_retained(w, filter, under_prefix, prefix);
}

void moat_worker_erase(struct moat_worker *w, struct moat_erase *e)
{
	struct moat_session *s, *next;
	struct moat_store_batch *b = NULL;
	unsigned n = 0;

	for (s = w->sessions; s != NULL; s = next) {
		next = s->next;
		if (strcmp(s->client_id, e->id) != 0 && strcmp(s->identity, e->id) != 0)
			continue;
		moat_session_erase(s, "identity is decommissioned");
		n++;
	}
	(void)moat_worker_erase_retained(w, e->id);
	pthread_mutex_lock(&e->lock);
	e->sessions += n;
	pthread_mutex_unlock(&e->lock);
	if (w->b->store == NULL) {
		worker_done_cb(e, MOAT_OK);
		return;
	}
	/* What this worker wrote before (the session's deletion among it) is
	 * queued ahead of this empty batch: the store is first in, first out,
	 * so its completion says all of it committed. */
	moat_persist_flush(w, true);
	if (moat_store_batch_new(&b) != MOAT_OK) {
		worker_done_cb(e, MOAT_E_NOMEM);
		return;
	}
	if (moat_store_submit(w->b->store, b, worker_done_cb, e) != MOAT_OK)
		worker_done_cb(e, MOAT_E_LIMIT);
}

/* The store rows the workers' memory mirrors, then a checkpoint. */
static moat_err erase_store(struct moat_store *st, const char *id)
{
	struct moat_store_batch *b = NULL;
	char prefix[MOAT_DEVICE_ID_MAX + 4];
	struct moat_val v;
	moat_err rc;
	int len = snprintf(prefix, sizeof(prefix), "d/%s/", id);

	if (len < 0 || (size_t)len >= sizeof(prefix))
		return MOAT_E_INVAL;
	if ((rc = moat_store_batch_new(&b)) != MOAT_OK)
		return rc;
	v = moat_val_text(id, strlen(id));
	rc = moat_store_batch_add(b, MQTT_STMT(SESSION_DEL), &v, 1);
	v = moat_val_text(prefix, (size_t)len);
	if (rc == MOAT_OK)
		rc = moat_store_batch_add(b, MQTT_STMT(RETAINED_DEL_PREFIX), &v, 1);
	if (rc == MOAT_OK)
		rc = moat_store_batch_add(b, MQTT_STMT(MSG_GC_ALL), NULL, 0);
	if (rc != MOAT_OK) {
		moat_store_batch_free(b);
		return rc;
	}
	if ((rc = moat_store_write(st, b)) != MOAT_OK)
		return rc;
	return moat_store_checkpoint_wait(st);
}

moat_err moat_broker_erase_identity(struct moat_broker *b, const char *id, unsigned *sessions)
{
	struct moat_erase *e;
	struct timespec until;
	moat_err rc;
	unsigned i;

	*sessions = 0;
	if (strlen(id) > MOAT_DEVICE_ID_MAX)
		return MOAT_E_INVAL;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return MOAT_E_NOMEM;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	memcpy(e->id, id, strlen(id) + 1);
	e->refs = 1;
	for (i = 0; i < b->n_workers; i++) {
		struct moat_mailitem *it = calloc(1, sizeof(*it));
		if (it == NULL) {
			e->rc = MOAT_E_NOMEM;
			continue;
		}
		it->kind = MAIL_ERASE;
		it->erase = e;
		pthread_mutex_lock(&e->lock);
		e->refs++;
		e->pending++;
		pthread_mutex_unlock(&e->lock);
		moat_mailbox_post(&b->workers[i].mb, &it->link, &it->link);
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += MOAT_ERASE_TIMEOUT_MS / 1000;
	pthread_mutex_lock(&e->lock);
	while (e->pending > 0) {
		if (pthread_cond_timedwait(&e->cond, &e->lock, &until) == ETIMEDOUT)
			break;
	}
	rc = e->pending > 0 ? MOAT_E_AGAIN : e->rc;
	*sessions = e->sessions;
	pthread_mutex_unlock(&e->lock);
	erase_unref(e);
	if (rc == MOAT_OK && b->store != NULL)
		rc = erase_store(b->store, id);
	if (rc != MOAT_OK)
		log_error("erase_failed", "id=%s err=\"%s\"", id, moat_strerror(rc));
	else
		log_info("identity_erased", "id=%s sessions=%u", id, *sessions);
	return rc;
}
