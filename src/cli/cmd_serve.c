/* `moat serve --dir DIR`: run the broker and the management API in the
 * foreground. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "audit/audit.h"
#include "cli/cli.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/sandbox.h"
#include "http/server.h"
#include "mqtt/broker.h"
#include "pki/ca.h"
#include "pki/pki.h"

static void serve_usage(FILE *f)
{
	fprintf(f, "usage: moat serve --dir DIR\n"
		   "\n"
		   "Run the broker and the management API on the data directory DIR\n"
		   "(created by 'moat init'). Logs go to stderr (logfmt). Signals:\n"
		   "SIGTERM/SIGINT stop cleanly, SIGHUP reloads certificates, the CA and\n"
		   "[broker] limits without dropping connections.\n"
		   "\n"
		   "options:\n"
		   "  --dir DIR    data directory\n"
		   "  -h, --help   this help\n");
}

static void sec_hook(void *arg, const char *action, const char *subject, const char *peer,
		     const char *detail)
{
	moat_api_security_event(arg, action, subject, peer, detail);
}

static size_t broker_metrics(void *arg, struct moat_api_metric *out, size_t max)
{
	struct moat_broker *b = arg;
	uint64_t in = 0, outm = 0, bin = 0, bout = 0, dropped = 0, denied = 0;
	int64_t clients = 0;
	size_t n = 0;
	unsigned i;

	for (i = 0; i < b->n_workers; i++) {
		struct moat_stats *s = &b->workers[i].stats;
		in += atomic_load(&s->msgs_in);
		outm += atomic_load(&s->msgs_out);
		bin += atomic_load(&s->bytes_in);
		bout += atomic_load(&s->bytes_out);
		dropped += atomic_load(&s->dropped);
		denied += atomic_load(&s->denied);
		clients += atomic_load(&s->clients);
	}
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
	M("moat_mqtt_messages_received_total", "PUBLISH packets received", "counter", in);
	M("moat_mqtt_messages_sent_total", "PUBLISH packets sent", "counter", outm);
	M("moat_mqtt_bytes_received_total", "MQTT bytes received", "counter", bin);
	M("moat_mqtt_bytes_sent_total", "MQTT bytes sent", "counter", bout);
	M("moat_mqtt_messages_dropped_total", "messages dropped (queue limits, expiry)", "counter",
	  dropped);
	M("moat_mqtt_deliveries_denied_total",
	  "deliveries the receiver's ACL refused (queued or at sending)", "counter", denied);
	M("moat_mqtt_clients_connected", "MQTT clients connected", "gauge", clients);
	M("moat_mqtt_connections_open", "MQTT connections open (including handshakes)", "gauge",
	  atomic_load(&b->connections));
	M("moat_uptime_seconds", "seconds since start", "gauge",
	  (moat_now_ms() - b->started) / 1000);
#undef M
	return n;
}

/* The API changed the registry: the broker loads and enforces it now,
 * for the identities the change touched (ch NULL: everything). */
static void registry_changed(void *arg, const struct moat_reg_change *ch)
{
	char err[512];
	moat_err rc = ch != NULL ? moat_broker_registry_update(arg, ch, err, sizeof(err))
				 : moat_broker_registry_reload(arg, err, sizeof(err));

	if (rc != MOAT_OK)
		log_error("registry_reload", "error=\"%s\"", err);
}

/* The API decommissioned an identity: the broker erases it now. */
static moat_err erase_identity(void *arg, const char *id, unsigned *sessions)
{
	return moat_broker_erase_identity(arg, id, sessions);
}

static const struct moat_http_stats *http_stats(void *arg)
{
	struct moat_http_server *const *s = arg;

	return *s ? moat_http_server_stats(*s) : NULL;
}

struct cert_chore {
	struct moat_broker *b;
	struct moat_ca *ca;
};

/* At start and daily: renew the server certificate through the key process
 * when it is due, and swap the TLS contexts as SIGHUP does. */
static void server_cert_chore(void *arg)
{
	struct cert_chore *ch = arg;
	int64_t not_after = 0;
	bool renewed = false;
	char err[512];

	if (moat_ca_server_cert_check(ch->ca, ch->b->conf.tls_cert, moat_wall_ms() / 1000, &renewed,
				      &not_after, err, sizeof(err)) != MOAT_OK) {
		log_warn("server_cert_renewal", "ok=0 path=%s error=\"%s\"", ch->b->conf.tls_cert,
			 err);
		return;
	}
	if (!renewed)
		return;
	log_notice("server_cert_renewed", "path=%s not_after=%lld", ch->b->conf.tls_cert,
		   (long long)not_after);
	if (moat_broker_reload(ch->b, err, sizeof(err)) != MOAT_OK)
		log_error("reload", "ok=0 error=\"%s\"", err);
}

int moat_cmd_serve(int argc, char **argv)
{
	static struct moat_broker b;
	struct moat_http_server_opts ho;
	struct moat_api_opts ao;
	struct moat_api *api = NULL;
	static struct moat_http_server *http;
	struct moat_ca *ca = NULL;
	static char crl_url[MOAT_CRL_URL_MAX + 1];
	static struct cert_chore chore;
	const char *dir = NULL;
	char err[1024];
	int i, rc = EXIT_FAIL;
	size_t l;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			serve_usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else {
			fprintf(stderr, "moat serve: unknown or incomplete option '%s'\n", argv[i]);
			serve_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (dir == NULL) {
		fprintf(stderr, "moat serve: --dir is required\n");
		serve_usage(stderr);
		return EXIT_USAGE;
	}
	/* The key process is forked first, while this process has one thread
	 * (moat_ca_spawn refuses otherwise): it alone reads ca.key, audit.key
	 * and seal.key, and creates the last two for a data directory made
	 * before them. */
	if (moat_ca_spawn(dir, &ca, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat serve: key process: %s\n", err);
		return EXIT_FAIL;
	}
	/* Block the signals moat_broker_run waits for before any thread starts
	 * (the store's writer, the management thread): a thread created with
	 * them unblocked could take a SIGHUP and die of its default action.
	 * After the fork: the key process keeps SIGTERM for its parent-death
	 * signal. */
	moat_proc_block_signals();
	if (moat_broker_start(&b, dir, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat serve: %s\n", err);
		goto out;
	}
	memset(&ho, 0, sizeof(ho));
	for (l = 0; l < b.n_listeners; l++) {
		if (b.listeners[l].conf.protocol != MOAT_PROTO_HTTPS)
			continue;
		ho.listeners[ho.n_listeners].conf = &b.listeners[l].conf;
		ho.listeners[ho.n_listeners].ctx = &b.listeners[l].ssl_ctx;
		ho.n_listeners++;
	}
	memset(&ao, 0, sizeof(ao));
	ao.store = b.store;
	ao.dir = dir;
	ao.metrics = broker_metrics;
	ao.metrics_arg = &b;
	ao.http_stats = http_stats;
	ao.http_stats_arg = &http;
	ao.ca = ca;
	ao.cert_days = b.conf.cert_days;
	moat_pki_crl_url(&b.conf, crl_url, sizeof(crl_url));
	ao.crl_url = crl_url;
	log_info("crl_url", "url=%s", crl_url[0] ? crl_url : "-");
	ao.registry_changed = registry_changed;
	ao.registry_arg = &b;
	ao.erase_identity = erase_identity;
	if (moat_api_new(&ao, &api, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat serve: management API: %s\n", err);
		goto out;
	}
	ho.ctx_lock = &b.ctx_lock;
	ho.handle = moat_api_handle;
	ho.body_limit = moat_api_body_limit;
	ho.tick = moat_api_tick;
	ho.arg = api;
	if (moat_http_server_start(&ho, &http, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat serve: %s\n", err);
		goto out;
	}
	b.sec_hook = sec_hook;
	b.sec_arg = api;
	chore.b = &b;
	chore.ca = ca;
	b.housekeeping = server_cert_chore;
	b.housekeeping_arg = &chore;
	b.housekeeping_s = MOAT_SERVER_CERT_CHECK_S;
	/* Every thread but the workers runs now; they inherit the filter. */
	{
		bool on;
		if (moat_sandbox_serve(&on, err, sizeof(err)) != MOAT_OK) {
			fprintf(stderr, "moat serve: sandbox: %s\n", err);
			goto out;
		}
	}
	if (moat_broker_run(&b) == MOAT_OK)
		rc = EXIT_OK;
out:
	moat_http_server_stop(http);
	moat_api_free(api);
	moat_broker_free(&b);
	moat_ca_stop(ca);
	return rc;
}
