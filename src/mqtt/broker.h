/*
 * The MQTT broker as other modules see it (src/daemon assembles it): made
 * from options that lend it the daemon's store, identity table and
 * listeners, started and stopped, told about registry changes, asked to
 * erase an identity, and read for statistics. Everything else of src/mqtt
 * is in mqtt/internal.h, for src/mqtt alone.
 */
#ifndef MOAT_MQTT_BROKER_H
#define MOAT_MQTT_BROKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "core/config.h"
#include "core/error.h"
#include "mqtt/pipeline.h"

struct moat_broker;
struct moat_store;
struct moat_regtab;
struct moat_reg_change;

/* A listener and its TLS context. The daemon owns the array and swaps
 * contexts under the ctx_lock it lends the broker (SIGHUP, manufacturer
 * CAs); workers take a context under that lock at accept. */
struct moat_listener {
	struct moat_listener_conf conf;
	SSL_CTX *ssl_ctx; /* NULL for tls = off */
};

/* Called from any worker for security events (refused handshakes, identity
 * mismatches, policy denials); the receiver aggregates. */
typedef void (*moat_broker_secev_fn)(void *arg, const char *action, const char *subject,
				     const char *peer, const char *detail);

struct moat_broker_opts {
	const char *dir;		 /* the data directory (logs) */
	struct moat_store *store;	 /* lent; NULL: nothing is durable */
	struct moat_regtab *reg;	 /* lent: the identities admitted at CONNECT */
	struct moat_listener *listeners; /* lent, n_listeners of them */
	size_t n_listeners;
	pthread_mutex_t *ctx_lock; /* guards listeners[].ssl_ctx */
	unsigned workers;	   /* 0: one per core */
	struct moat_limits lim;
	bool durability_relaxed;
	bool unknown_allow;	       /* [broker] unknown_devices = allow */
	moat_broker_secev_fn sec_hook; /* NULL: log only */
	void *sec_arg;
};

/* Make the broker: its workers (listening sockets bound), and the durable
 * state restored from the store, every restored session re-admitted under
 * today's registry. No thread runs yet. *out is set even on failure (for
 * moat_broker_free). */
moat_err moat_broker_new(const struct moat_broker_opts *o, struct moat_broker **out, char *err,
			 size_t errlen);
/* The stages of the publish pipeline: register them before
 * moat_broker_start (pipeline.h). */
struct moat_pipeline *moat_broker_pipeline(struct moat_broker *b);
/* Start the worker threads (with the caller's signal mask). */
moat_err moat_broker_start(struct moat_broker *b);
/* Stop the workers and wait for them. */
void moat_broker_stop(struct moat_broker *b);
void moat_broker_free(struct moat_broker *b);

/* SIGHUP: new limits for new connections (each worker gets a copy), and
 * the unknown_devices setting for every later admission. */
void moat_broker_set_limits(struct moat_broker *b, const struct moat_limits *lim);
void moat_broker_set_unknown_allow(struct moat_broker *b, bool allow);
bool moat_broker_unknown_allow(struct moat_broker *b);

/* The identity table changed for ch's identities (NULL: every identity):
 * every worker re-admits those sessions, connected and offline. Call in
 * the order the changes were loaded (any thread). */
moat_err moat_broker_registry_changed(struct moat_broker *b, const struct moat_reg_change *ch);

/* Erase everything the broker holds of identity id: its sessions on every
 * worker (live ones closed with 0x98, no will), its retained messages under
 * d/<id>/, their rows and the messages nobody references, then checkpoint.
 * Returns when all of it is done (any thread but a worker's). */
moat_err moat_broker_erase_identity(struct moat_broker *b, const char *id, unsigned *sessions);

struct moat_broker_stats {
	uint64_t msgs_in, msgs_out, bytes_in, bytes_out, dropped, denied;
	/* published messages handed to another worker, and hand-offs skipped
	 * because no subscription there could match */
	uint64_t routes_posted, routes_skipped;
	uint64_t placed;     /* connections handed at CONNECT to their consumers' worker */
	int64_t clients;     /* MQTT clients connected */
	int64_t connections; /* connections open, handshakes included */
	unsigned workers;
	uint64_t uptime_s;
};
void moat_broker_stats(struct moat_broker *b, struct moat_broker_stats *out);

#endif
