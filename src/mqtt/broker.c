/*
 * The broker's lifecycle as the daemon drives it (mqtt/broker.h): made from
 * what the daemon lends it (store, identity table, listeners), its state
 * restored, its workers started and stopped; registry changes, limits and
 * the unknown-devices setting passed on to the workers through their
 * mailboxes. Configuration, TLS contexts, signals and the other threads
 * are the daemon's (src/daemon).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "core/log.h"
#include "mqtt/internal.h"
#include "store/store.h"

moat_err moat_broker_new(const struct moat_broker_opts *o, struct moat_broker **out, char *err,
			 size_t errlen)
{
	struct moat_broker *b = calloc(1, sizeof(*b));
	moat_err rc;
	unsigned i;
	long ncpu;

	*out = b;
	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return MOAT_E_NOMEM;
	}
	pthread_mutex_init(&b->cmap_lock, NULL);
	pthread_mutex_init(&b->share_lock, NULL);
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium cannot initialise (no entropy source?)");
		return MOAT_E_CRYPTO;
	}
	randombytes_buf(b->cmap_key, sizeof(b->cmap_key));
	snprintf(b->dir, sizeof(b->dir), "%s", o->dir);
	b->store = o->store;
	b->reg = o->reg;
	b->listeners = o->listeners;
	b->n_listeners = o->n_listeners;
	b->ctx_lock = o->ctx_lock;
	b->lim = o->lim;
	b->durability_relaxed = o->durability_relaxed;
	atomic_init(&b->unknown_allow, o->unknown_allow);
	b->sec_hook = o->sec_hook;
	b->sec_arg = o->sec_arg;
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	b->n_workers = o->workers ? o->workers : (ncpu > 0 ? (unsigned)ncpu : 1);
	if (b->n_workers > MOAT_MAX_WORKERS)
		b->n_workers = MOAT_MAX_WORKERS;
	b->shared = moat_subtrie_new();
	b->workers = calloc(b->n_workers, sizeof(*b->workers));
	if (b->shared == NULL || b->workers == NULL) {
		snprintf(err, errlen, "out of memory");
		return MOAT_E_NOMEM;
	}
	b->started = moat_now_ms();
	for (i = 0; i < b->n_workers; i++) {
		if ((rc = moat_worker_init(&b->workers[i], b, i)) != MOAT_OK) {
			snprintf(err, errlen, "worker %u: cannot start (%s); see the log above", i,
				 moat_strerror(rc));
			b->n_workers = i + 1;
			return rc;
		}
	}
	if (b->store != NULL) {
		if ((rc = moat_persist_restore(b, err, errlen)) != MOAT_OK)
			return rc;
		if ((rc = moat_persist_restore_sessions(b, err, errlen)) != MOAT_OK)
			return rc;
		if ((rc = moat_persist_restore_messages(b, err, errlen)) != MOAT_OK)
			return rc;
	}
	/* Restored sessions get their identity's ACL as of now: what changed
	 * while they were offline (or while we were down) applies before any
	 * message reaches them. The workers do not run yet. */
	for (i = 0; i < b->n_workers; i++) {
		b->workers[i].now = moat_now_ms();
		moat_worker_registry(&b->workers[i], NULL);
	}
	return MOAT_OK;
}

struct moat_pipeline *moat_broker_pipeline(struct moat_broker *b)
{
	return &b->pipeline;
}

static void post_stop(struct moat_broker *b)
{
	unsigned i;

	for (i = 0; i < b->n_workers; i++) {
		struct moat_mailitem *it = calloc(1, sizeof(*it));
		if (it == NULL) {
			b->workers[i].r.stop = true;
			continue;
		}
		it->kind = MAIL_STOP;
		moat_mailbox_post(&b->workers[i].mb, &it->link, &it->link);
	}
}

moat_err moat_broker_start(struct moat_broker *b)
{
	unsigned i, k;
	int e;

	/* The daemon blocked the signals (moat_proc_block_signals) before
	 * any thread started; the workers inherit the mask. */
	for (i = 0; i < b->n_workers; i++) {
		e = pthread_create(&b->workers[i].thread, NULL, moat_worker_main, &b->workers[i]);
		if (e != 0) {
			log_error("thread_start_failed", "thread=worker-%u error=\"%s\"", i,
				  strerror(e));
			post_stop(b);
			for (k = 0; k < i; k++)
				pthread_join(b->workers[k].thread, NULL);
			return MOAT_E_NOMEM;
		}
	}
	b->running = true;
	return MOAT_OK;
}

void moat_broker_stop(struct moat_broker *b)
{
	unsigned i;

	if (b == NULL || !b->running)
		return;
	post_stop(b);
	for (i = 0; i < b->n_workers; i++)
		pthread_join(b->workers[i].thread, NULL);
	b->running = false;
}

void moat_broker_set_limits(struct moat_broker *b, const struct moat_limits *lim)
{
	unsigned i;

	/* Each worker gets its own copy through its mailbox. New connections
	 * see them; live ones keep what their CONNACK promised. */
	for (i = 0; i < b->n_workers; i++) {
		struct moat_mailitem *it = calloc(1, sizeof(*it));
		struct moat_limits *l = malloc(sizeof(*l));
		if (it == NULL || l == NULL) {
			free(it);
			free(l);
			continue;
		}
		*l = *lim;
		it->kind = MAIL_RELOAD;
		it->lim = l;
		moat_mailbox_post(&b->workers[i].mb, &it->link, &it->link);
	}
}

void moat_broker_set_unknown_allow(struct moat_broker *b, bool allow)
{
	atomic_store(&b->unknown_allow, allow);
}

bool moat_broker_unknown_allow(struct moat_broker *b)
{
	return atomic_load(&b->unknown_allow);
}

bool moat_broker_admit(struct moat_broker *b, const char *identity, const char *serial,
		       struct moat_acl **acl, const char **why)
{
	if (b->reg == NULL) {
		*why = "the registry is not loaded";
		return false;
	}
	return moat_regtab_admit(b->reg, identity, serial,
				 atomic_load_explicit(&b->unknown_allow, memory_order_relaxed), acl,
				 why) == MOAT_ADMIT_OK;
}

void moat_regev_unref(struct moat_regev *ev)
{
	if (ev != NULL && atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel) == 1) {
		moat_reg_change_clear(&ev->ch);
		free(ev);
	}
}

moat_err moat_broker_registry_changed(struct moat_broker *b, const struct moat_reg_change *ch)
{
	struct moat_regev *ev = NULL;
	moat_err rc = MOAT_OK;
	unsigned i;
	size_t k;

	if (ch != NULL) {
		ev = calloc(1, sizeof(*ev));
		rc = ev != NULL ? MOAT_OK : MOAT_E_NOMEM;
		for (k = 0; rc == MOAT_OK && k < ch->n; k++)
			rc = moat_reg_change_add(&ev->ch, ch->ids[k]);
		if (rc != MOAT_OK) {
			if (ev != NULL)
				moat_reg_change_clear(&ev->ch);
			free(ev);
			/* Without the list, re-admit everyone: never less. */
			ev = NULL;
		} else {
			atomic_init(&ev->refs, 1);
		}
	}
	for (i = 0; i < b->n_workers; i++) {
		struct moat_mailitem *it = calloc(1, sizeof(*it));
		if (it == NULL)
			continue; /* that worker re-admits at the next change */
		it->kind = MAIL_REGISTRY;
		if (ev != NULL) {
			atomic_fetch_add_explicit(&ev->refs, 1, memory_order_relaxed);
			it->regev = ev;
		}
		moat_mailbox_post(&b->workers[i].mb, &it->link, &it->link);
	}
	moat_regev_unref(ev);
	return rc;
}

void moat_broker_stats(struct moat_broker *b, struct moat_broker_stats *out)
{
	unsigned i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < b->n_workers; i++) {
		struct moat_stats *s = &b->workers[i].stats;
		out->msgs_in += atomic_load(&s->msgs_in);
		out->msgs_out += atomic_load(&s->msgs_out);
		out->bytes_in += atomic_load(&s->bytes_in);
		out->bytes_out += atomic_load(&s->bytes_out);
		out->dropped += atomic_load(&s->dropped);
		out->denied += atomic_load(&s->denied);
		out->routes_posted += atomic_load(&s->routes_posted);
		out->routes_skipped += atomic_load(&s->routes_skipped);
		out->placed += atomic_load(&s->placed);
		out->clients += atomic_load(&s->clients);
	}
	out->connections = atomic_load(&b->connections);
	out->workers = b->n_workers;
	out->uptime_s = (moat_now_ms() - b->started) / 1000;
}

static void share_free_cb(void *owner, void *value)
{
	(void)owner;
	(void)value;
}

void moat_broker_free(struct moat_broker *b)
{
	unsigned i;

	if (b == NULL)
		return;
	moat_broker_stop(b);
	for (i = 0; i < b->n_workers && b->workers; i++)
		moat_worker_free(&b->workers[i]);
	free(b->workers);
	if (b->shared)
		moat_subtrie_free(b->shared, share_free_cb);
	moat_share_free_all(b);
	moat_clientmap_free(b);
	pthread_mutex_destroy(&b->cmap_lock);
	pthread_mutex_destroy(&b->share_lock);
	free(b);
}
