/*
 * The daemon's state, shared by the files of src/daemon: what `moat serve`
 * is made of and who owns each part (docs/architecture.md, "Threads, and
 * who guards what").
 */
#ifndef MOAT_DAEMON_INTERNAL_H
#define MOAT_DAEMON_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "core/config.h"
#include "core/limits.h"
#include "mqtt/broker.h"

struct moat_store;
struct moat_regtab;
struct moat_reg_change;
struct moat_ca;
struct moat_api;
struct moat_http_server;
struct moat_tls_tickets;

struct moat_daemon {
	char dir[MOAT_MAX_PATH];
	char conf_path[MOAT_MAX_PATH];
	/* The configuration as loaded at start and by each SIGHUP that was
	 * applied: the main thread's (others get copies or their own fields). */
	struct moat_conf conf;
	struct moat_store *store;
	/* The identities admitted at CONNECT (registry.c: its own rwlock). */
	struct moat_regtab *reg;
	/* Every listener and its TLS context; contexts swap under ctx_lock
	 * (SIGHUP on the main thread, manufacturer CAs on the API thread). */
	struct moat_listener listeners[MOAT_MAX_LISTENERS];
	size_t n_listeners;
	pthread_mutex_t ctx_lock;
	/* Serializes registry loads and the HTTPS trust rebuild (the API thread
	 * after a change, the main thread on SIGHUP); guards the digest. */
	pthread_mutex_t reload_lock;
	unsigned char mca_digest[32]; /* SHA-256 over the manufacturer CAs trusted */
	bool mca_digest_set;
	struct moat_ca *keys; /* the key process */
	/* The MQTT listeners' session-ticket keys (tickets.c): kept across
	 * SIGHUP, sealed on disk across restarts; own rwlock. */
	struct moat_tls_tickets *tickets;
	struct moat_broker *broker;
	struct moat_api *api;
	struct moat_http_server *http;
	char crl_url[MOAT_CRL_URL_MAX + 1];
};

/* listeners.c */
/* Build the listeners of conf with fresh TLS contexts into out; MQTT
 * listeners with tls_resumption seal tickets with the shared keys. */
moat_err moat_daemon_listeners_build(const struct moat_conf *conf, struct moat_tls_tickets *tickets,
				     struct moat_listener *out, char *err, size_t errlen);
/* Swap in the contexts of the listeners nl of a new configuration (by
 * name); what is left in nl is freed. */
void moat_daemon_listeners_swap(struct moat_daemon *d, struct moat_listener *nl, size_t n);
void moat_daemon_listeners_free(struct moat_daemon *d);
/* Rebuild the contexts of HTTPS listeners that do not require client
 * certificates so they trust the registered manufacturer CAs too, when that
 * set changed (or after retrust was asked). At start, or with reload_lock. */
moat_err moat_daemon_https_trust(struct moat_daemon *d, char *err, size_t errlen);

/* registry.c */
/* Everything, from the store (start, SIGHUP: retrust), announced to the
 * broker. */
moat_err moat_daemon_registry_reload(struct moat_daemon *d, bool retrust, char *err, size_t errlen);
/* The identities a committed change touched, reloaded and announced. */
moat_err moat_daemon_registry_update(struct moat_daemon *d, const struct moat_reg_change *ch,
				     char *err, size_t errlen);

/* config.c */
/* SIGHUP: everything a reload can apply, or nothing (a key that needs a
 * restart names itself in err). */
moat_err moat_daemon_reload(struct moat_daemon *d, char *err, size_t errlen);
/* Load DIR/moat.conf into conf and check the key files' modes. */
moat_err moat_daemon_conf_load(struct moat_daemon *d, struct moat_conf *conf, char *err,
			       size_t errlen);
moat_err moat_daemon_check_private(const char *path, unsigned mask, char *err, size_t errlen);

/* tickets.c */
/* Make d->tickets from DIR/tls-tickets.sealed (unsealed by the key
 * process), or fresh keys when it is missing or does not open (logged);
 * rotate when due and save. Fails only when no keys can be made. */
moat_err moat_daemon_tickets_start(struct moat_daemon *d, char *err, size_t errlen);
/* How long until the next rotation is due (ms). */
uint64_t moat_daemon_tickets_wait_ms(struct moat_daemon *d);
/* The main thread's chore: rotate when due and save the sealed file. */
void moat_daemon_tickets_chore(struct moat_daemon *d);
/* Wipe and free the keys (after every context was freed). */
void moat_daemon_tickets_free(struct moat_daemon *d);

#endif
