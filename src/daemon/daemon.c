/*
 * The daemon's start, main loop and stop (daemon.h). The order matters:
 * 1. the key process is forked while this process has one thread;
 * 2. the signals the main thread waits for are blocked before any other
 *    thread starts (they inherit the mask);
 * 3. configuration, listeners, store (its writer thread), identity table,
 *    broker (state restored), management API and its HTTPS thread;
 * 4. the seccomp filter on every thread; then the worker threads, which
 *    inherit it;
 * 5. the main thread waits for signals and runs its chores (the server
 *    certificate's renewal, the TLS ticket keys' rotation), one at a time,
 *    so a chore and a reload never overlap.
 * Stopping goes the other way; the store closes after the workers stopped
 * and before the broker is freed (its last completions post to the
 * workers' mailboxes, which freeing drains).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/reactor.h"
#include "core/sandbox.h"
#include "daemon/daemon.h"
#include "daemon/internal.h"
#include "http/server.h"
#include "pki/ca.h"
#include "pki/pki.h"
#include "registry/registry.h"
#include "store/store.h"

static void sec_hook(void *arg, const char *action, const char *subject, const char *peer,
		     const char *detail)
{
	struct moat_daemon *d = arg;

	if (d->api != NULL)
		moat_api_security_event(d->api, action, subject, peer, detail);
}

static size_t broker_metrics(void *arg, struct moat_api_metric *out, size_t max)
{
	struct moat_daemon *d = arg;
	struct moat_broker_stats st;
	size_t n = 0;

	moat_broker_stats(d->broker, &st);
#define M(nm, h, t, v)                                                                             \
	do {                                                                                       \
		if (n < max) {                                                                     \
			out[n].name = nm;                                                          \
			out[n].help = h;                                                           \
			out[n].type = t;                                                           \
			out[n].value = (double)(v);                                                \
			n++;                                                                       \
		}                                                                                  \
	} while (0)
	M("moat_mqtt_messages_received_total", "PUBLISH packets received", "counter", st.msgs_in);
	M("moat_mqtt_messages_sent_total", "PUBLISH packets sent", "counter", st.msgs_out);
	M("moat_mqtt_bytes_received_total", "MQTT bytes received", "counter", st.bytes_in);
	M("moat_mqtt_bytes_sent_total", "MQTT bytes sent", "counter", st.bytes_out);
	M("moat_mqtt_messages_dropped_total", "messages dropped (queue limits, expiry)", "counter",
	  st.dropped);
	M("moat_mqtt_deliveries_denied_total",
	  "deliveries the receiver's ACL refused (queued or at sending)", "counter", st.denied);
	M("moat_mqtt_routes_posted_total",
	  "published messages handed to another worker (each a wake-up there)", "counter",
	  st.routes_posted);
	M("moat_mqtt_routes_skipped_total",
	  "hand-offs to another worker skipped: none of its subscriptions could match", "counter",
	  st.routes_skipped);
	M("moat_mqtt_sessions_placed_total",
	  "new sessions made on the worker their consumers live on (hand-off at CONNECT)",
	  "counter", st.placed);
	M("moat_mqtt_clients_connected", "MQTT clients connected", "gauge", st.clients);
	M("moat_mqtt_connections_open", "MQTT connections open (including handshakes)", "gauge",
	  st.connections);
	M("moat_uptime_seconds", "seconds since start", "gauge", st.uptime_s);
#undef M
	return n;
}

/* The API changed the registry: load and enforce it now, for the
 * identities the change touched (ch NULL: everything). */
static void registry_changed(void *arg, const struct moat_reg_change *ch)
{
	struct moat_daemon *d = arg;
	char err[512];
	moat_err rc = ch != NULL ? moat_daemon_registry_update(d, ch, err, sizeof(err))
				 : moat_daemon_registry_reload(d, false, err, sizeof(err));

	if (rc != MOAT_OK)
		log_error("registry_reload", "error=\"%s\"", err);
}

/* The API decommissioned an identity: the broker erases it now. */
static moat_err erase_identity(void *arg, const char *id, unsigned *sessions)
{
	struct moat_daemon *d = arg;

	return moat_broker_erase_identity(d->broker, id, sessions);
}

static const struct moat_http_stats *http_stats(void *arg)
{
	struct moat_daemon *d = arg;

	return d->http ? moat_http_server_stats(d->http) : NULL;
}

/* At start and daily: renew the server certificate through the key process
 * when it is due, and swap the TLS contexts as SIGHUP does. */
static void server_cert_chore(struct moat_daemon *d)
{
	int64_t not_after = 0;
	bool renewed = false;
	char err[512];

	if (moat_ca_server_cert_check(d->keys, d->conf.tls_cert, moat_wall_ms() / 1000, &renewed,
				      &not_after, err, sizeof(err)) != MOAT_OK) {
		log_warn("server_cert_renewal", "ok=0 path=%s error=\"%s\"", d->conf.tls_cert, err);
		return;
	}
	if (!renewed)
		return;
	log_notice("server_cert_renewed", "path=%s not_after=%lld", d->conf.tls_cert,
		   (long long)not_after);
	if (moat_daemon_reload(d, err, sizeof(err)) != MOAT_OK)
		log_error("reload", "ok=0 error=\"%s\"", err);
}

/* Say which part failed: "what: " before the message in err. */
static void prefix(char *err, size_t errlen, const char *what)
{
	char tmp[1024];

	snprintf(tmp, sizeof(tmp), "%s%s", what, err);
	snprintf(err, errlen, "%s", tmp);
}

static moat_err open_store(struct moat_daemon *d, char *err, size_t errlen)
{
	struct moat_store_opts o;
	char path[MOAT_MAX_PATH];
	int n = snprintf(path, sizeof(path), "%s/moat.db", d->dir);

	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(err, errlen, "data directory path too long");
		return MOAT_E_INVAL;
	}
	memset(&o, 0, sizeof(o));
	o.path = path;
	o.durability =
	    d->conf.durability == MOAT_DURABILITY_RELAXED ? MOAT_STORE_RELAXED : MOAT_STORE_STRICT;
	o.commit_window_us = d->conf.commit_window_us;
	return moat_store_open(&o, &d->store, err, errlen);
}

static moat_err start_broker(struct moat_daemon *d, char *err, size_t errlen)
{
	struct moat_broker_opts o;
	size_t i;

	memset(&o, 0, sizeof(o));
	o.dir = d->dir;
	o.store = d->store;
	o.reg = d->reg;
	o.listeners = d->listeners;
	o.n_listeners = d->n_listeners;
	o.ctx_lock = &d->ctx_lock;
	o.workers = d->conf.workers;
	o.lim = d->conf.lim;
	o.durability_relaxed = d->conf.durability == MOAT_DURABILITY_RELAXED;
	o.unknown_allow = d->conf.unknown_allow;
	o.sec_hook = sec_hook;
	o.sec_arg = d;
	for (i = 0; i < d->n_listeners; i++)
		if (!d->listeners[i].conf.tls)
			log_warn("plaintext_listener",
				 "listener=%s bind=%s port=%u note=\"tls = off: traffic on this "
				 "loopback listener is not encrypted\"",
				 d->listeners[i].conf.name, d->listeners[i].conf.bind,
				 d->listeners[i].conf.port);
	return moat_broker_new(&o, &d->broker, err, errlen);
}

static moat_err start_api(struct moat_daemon *d, char *err, size_t errlen)
{
	struct moat_http_server_opts ho;
	struct moat_api_opts ao;
	moat_err rc;
	size_t l;

	memset(&ao, 0, sizeof(ao));
	ao.store = d->store;
	ao.dir = d->dir;
	ao.metrics = broker_metrics;
	ao.metrics_arg = d;
	ao.http_stats = http_stats;
	ao.http_stats_arg = d;
	ao.ca = d->keys;
	ao.cert_days = d->conf.cert_days;
	moat_pki_crl_url(&d->conf, d->crl_url, sizeof(d->crl_url));
	ao.crl_url = d->crl_url;
	log_info("crl_url", "url=%s", d->crl_url[0] ? d->crl_url : "-");
	ao.registry_changed = registry_changed;
	ao.registry_arg = d;
	ao.erase_identity = erase_identity;
	if ((rc = moat_api_new(&ao, &d->api, err, errlen)) != MOAT_OK) {
		prefix(err, errlen, "management API: ");
		return rc;
	}
	memset(&ho, 0, sizeof(ho));
	for (l = 0; l < d->n_listeners; l++) {
		if (d->listeners[l].conf.protocol != MOAT_PROTO_HTTPS)
			continue;
		ho.listeners[ho.n_listeners].conf = &d->listeners[l].conf;
		ho.listeners[ho.n_listeners].ctx = &d->listeners[l].ssl_ctx;
		ho.n_listeners++;
	}
	ho.ctx_lock = &d->ctx_lock;
	ho.handle = moat_api_handle;
	ho.body_limit = moat_api_body_limit;
	ho.tick = moat_api_tick;
	ho.arg = d->api;
	return moat_http_server_start(&ho, &d->http, err, errlen);
}

static moat_err start(struct moat_daemon *d, const char *dir, char *err, size_t errlen)
{
	moat_err rc;
	bool sandboxed;

	snprintf(d->dir, sizeof(d->dir), "%s", dir);
	if ((size_t)snprintf(d->conf_path, sizeof(d->conf_path), "%s/moat.conf", dir) >=
	    sizeof(d->conf_path)) {
		snprintf(err, errlen, "data directory path too long");
		return MOAT_E_INVAL;
	}
	/* 1. The key process, while this process has one thread
	 * (moat_ca_spawn refuses otherwise): it alone reads ca.key,
	 * audit.key and seal.key, and creates the last two for a data
	 * directory made before them. */
	if ((rc = moat_ca_spawn(dir, &d->keys, err, errlen)) != MOAT_OK) {
		prefix(err, errlen, "key process: ");
		return rc;
	}
	/* 2. After the fork: the key process keeps SIGTERM for its
	 * parent-death signal. */
	moat_proc_block_signals();
	/* 3. */
	if ((rc = moat_daemon_check_private(dir, 077, err, errlen)) != MOAT_OK ||
	    (rc = moat_daemon_conf_load(d, &d->conf, err, errlen)) != MOAT_OK)
		return rc;
	moat_log_set_level((enum moat_log_level)d->conf.log_level);
	/* The ticket keys before the contexts that use them (they need the
	 * key process to unseal them). */
	if ((rc = moat_daemon_tickets_start(d, err, errlen)) != MOAT_OK)
		return rc;
	if ((rc = moat_daemon_listeners_build(&d->conf, d->tickets, d->listeners, err, errlen)) !=
	    MOAT_OK)
		return rc;
	d->n_listeners = d->conf.n_listeners;
	if ((rc = open_store(d, err, errlen)) != MOAT_OK)
		return rc;
	if ((rc = moat_regtab_new(&d->reg)) != MOAT_OK) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	if ((rc = moat_daemon_registry_reload(d, true, err, errlen)) != MOAT_OK)
		return rc;
	log_info("registry_loaded", "identities=%zu unknown_devices=%s", moat_regtab_count(d->reg),
		 d->conf.unknown_allow ? "allow" : "refuse");
	if ((rc = start_broker(d, err, errlen)) != MOAT_OK)
		return rc;
	if ((rc = start_api(d, err, errlen)) != MOAT_OK)
		return rc;
	/* 4. Every thread but the workers runs now; they inherit the filter. */
	if ((rc = moat_sandbox_serve(&sandboxed, err, errlen)) != MOAT_OK) {
		prefix(err, errlen, "sandbox: ");
		return rc;
	}
	return moat_broker_start(d->broker);
}

static void log_listeners(const struct moat_daemon *d)
{
	size_t l;

	for (l = 0; l < d->n_listeners; l++) {
		const struct moat_listener_conf *c = &d->listeners[l].conf;
		log_info("listening",
			 "listener=%s protocol=%s bind=%s port=%u tls=%s client_cert=%s policy=%s",
			 c->name, c->protocol == MOAT_PROTO_HTTPS ? "https" : "mqtt", c->bind,
			 c->port, c->tls ? "on" : "off",
			 !c->tls		  ? "none"
			 : c->require_client_cert ? "required"
						  : "optional",
			 c->policy == MOAT_POLICY_OPEN ? "open" : "default");
	}
}

/* 5. Signals and chores until asked to stop. */
static void main_loop(struct moat_daemon *d)
{
	uint64_t next_chore;
	struct moat_broker_stats st;
	int sig;

	log_listeners(d);
	server_cert_chore(d);
	moat_broker_stats(d->broker, &st);
	log_notice("ready", "workers=%u dir=%s", st.workers, d->dir);
	next_chore = moat_now_ms() + (uint64_t)MOAT_SERVER_CERT_CHECK_S * 1000u;
	for (;;) {
		uint64_t now = moat_now_ms();
		uint64_t wait = next_chore > now ? next_chore - now : 0;
		uint64_t tickets_wait = moat_daemon_tickets_wait_ms(d);

		sig = moat_proc_wait_signal(tickets_wait < wait ? tickets_wait : wait);
		if (sig == 0) {
			moat_daemon_tickets_chore(d);
			if (moat_now_ms() < next_chore)
				continue;
			server_cert_chore(d);
			next_chore = moat_now_ms() + (uint64_t)MOAT_SERVER_CERT_CHECK_S * 1000u;
			continue;
		}
		if (sig == SIGHUP) {
			char err[512];
			if (moat_daemon_reload(d, err, sizeof(err)) == MOAT_OK)
				log_notice("reload", "ok=1 unknown_devices=%s",
					   d->conf.unknown_allow ? "allow" : "refuse");
			else
				log_error("reload", "ok=0 error=\"%s\"", err);
			continue;
		}
		log_notice("stopping", "signal=%d", sig);
		break;
	}
}

static void stop(struct moat_daemon *d, bool started)
{
	moat_http_server_stop(d->http);
	d->http = NULL;
	moat_api_free(d->api);
	d->api = NULL;
	moat_broker_stop(d->broker);
	if (d->store != NULL) {
		struct moat_store_stats st;
		moat_store_stats(d->store, &st);
		log_notice("store_stats",
			   "transactions=%llu commits=%llu batches=%llu batches_failed=%llu "
			   "fsyncs=%llu errors=%llu",
			   (unsigned long long)st.transactions, (unsigned long long)st.commits,
			   (unsigned long long)st.batches, (unsigned long long)st.batches_failed,
			   (unsigned long long)st.fsyncs, (unsigned long long)st.errors);
		moat_store_close(d->store);
		d->store = NULL;
	}
	moat_broker_free(d->broker);
	d->broker = NULL;
	moat_daemon_listeners_free(d);
	moat_daemon_tickets_free(d);
	moat_regtab_free(d->reg);
	d->reg = NULL;
	moat_ca_stop(d->keys);
	d->keys = NULL;
	if (started)
		log_notice("stopped", "dir=%s", d->dir);
}

moat_err moat_daemon_run(const char *dir, char *err, size_t errlen)
{
	static struct moat_daemon d;
	moat_err rc;

	memset(&d, 0, sizeof(d));
	pthread_mutex_init(&d.ctx_lock, NULL);
	pthread_mutex_init(&d.reload_lock, NULL);
	rc = start(&d, dir, err, errlen);
	if (rc == MOAT_OK)
		main_loop(&d);
	stop(&d, rc == MOAT_OK);
	pthread_mutex_destroy(&d.reload_lock);
	pthread_mutex_destroy(&d.ctx_lock);
	return rc;
}
