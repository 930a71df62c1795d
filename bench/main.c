/*
 * moat-bench: command line, set-up, the coordinator of a run and its JSON
 * report. See usage() for what it measures and bench/README.md for how
 * bench/run uses it.
 *
 * The coordinator (this thread) only watches counters and moves the run
 * through its phases: connect every client, let the broker settle, publish,
 * drain, stop. At each boundary it samples the broker's /proc files, so CPU
 * and memory are charged to exactly one phase.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "bench.h"
#include "mqtt/codec/codec.h"

/* Errors printed to stderr in full; the rest are only counted. */
#define ERR_PRINT_MAX 10u
/* How often the coordinator looks at the counters. */
#define COORD_TICK_NS 2000000L
/* Drain after a client died mid-run: long enough to see the fallout. */
#define DEAD_DRAIN_S 1.0
#define DEFAULT_MAX_S 60.0
#define DEFAULT_IDLE_S 5.0
/* Publish-phase cap beyond the last scheduled message (--rate). */
#define PACED_SLACK_S 2.0

struct scenario_name {
	const char *name;
	enum bench_scenario scenario;
	int qos; /* -1: from --qos or the scenario's default */
};

static const struct scenario_name scenarios[] = {
    {"fanin", BENCH_FANIN, -1},	      {"fanin-qos0", BENCH_FANIN, 0},
    {"fanin-qos1", BENCH_FANIN, 1},   {"p2p", BENCH_P2P, -1},
    {"p2p-qos0", BENCH_P2P, 0},	      {"p2p-qos1", BENCH_P2P, 1},
    {"fanout", BENCH_FANOUT, -1},     {"fanout-qos0", BENCH_FANOUT, 0},
    {"fanout-qos1", BENCH_FANOUT, 1}, {"idle", BENCH_IDLE, 0},
};

static const char *const errkind_names[BENCH_ERR__COUNT] = {
    [BENCH_ERR_CONNECT] = "connect", [BENCH_ERR_TLS] = "tls",	    [BENCH_ERR_CONNACK] = "connack",
    [BENCH_ERR_SUBACK] = "suback",   [BENCH_ERR_PUBACK] = "puback", [BENCH_ERR_CLOSED] = "closed",
    [BENCH_ERR_PROTO] = "protocol",
};

struct report {
	bool ok;
	char error[BENCH_ERR_MAX];
	unsigned connected;
	double connect_s;
	double elapsed_s;
	uint64_t sent, received, acked, expected;
	struct bench_hist *hist;
	struct bench_hist *ack_hist; /* QoS 1: PUBLISH to PUBACK */
	struct bench_proc_sample before, connected_s, settled, run_start, run_end;
};

static void usage(FILE *f)
{
	fputs("usage: moat-bench --ca FILE --ca-key FILE --scenario NAME [options]\n"
	      "\n"
	      "MQTT load generator over mutual TLS: every simulated device has its own\n"
	      "ECDSA P-256 key and certificate (CN = client id = device id, URI SAN\n"
	      "moat:device:<id>), signed at start-up by the given CA. Prints one line of\n"
	      "JSON with the results on stdout; progress and errors go to stderr.\n"
	      "\n"
	      "Connection:\n"
	      "  --host HOST          broker address (default 127.0.0.1); the server\n"
	      "                       certificate must be valid for it (IP or DNS SAN)\n"
	      "  --port PORT          broker TLS port (default 8883)\n"
	      "  --ca FILE            CA certificate: verifies the broker and signs clients\n"
	      "                       (a moat data dir's ca.crt)\n"
	      "  --ca-key FILE        CA private key (the data dir's ca.key)\n"
	      "  --cert-cache DIR     keep generated client keys and certificates here\n"
	      "                       (DIR/<CA fingerprint>/<id>.pem, mode 0600) and reuse\n"
	      "                       them in later runs; default: generate every run\n"
	      "  --id-prefix STR      client id prefix (default \"bench-\"; ids are\n"
	      "                       STR000000, STR000001, ...)\n"
	      "  --v5 | --v311        MQTT version (default --v5)\n"
	      "  --keepalive S        MQTT keepalive in seconds (default 60; PINGREQ is sent\n"
	      "                       after S/2 seconds without traffic)\n"
	      "  --session-expiry S   subscribers use persistent sessions, so QoS 1\n"
	      "                       messages to them are stored by a durable broker:\n"
	      "                       v5 Session Expiry Interval S with clean start (a\n"
	      "                       new stored session every run), v3.1.1 clean\n"
	      "                       session 0 (resumes a stored one). Default 0: clean\n"
	      "                       sessions; publishers always use clean sessions\n"
	      "\n"
	      "Scenario:\n"
	      "  --scenario NAME      one of\n"
	      "      fanin-qos0, fanin-qos1  N publishers on d/<id>/t, one extra subscriber\n"
	      "                              of d/+/t (needs an open policy); the\n"
	      "                              subscriber connects and subscribes first, as\n"
	      "                              a fleet's back end is up before its devices\n"
	      "      p2p-qos1, p2p-qos0      N devices, each subscribed to d/<id>/p2p and\n"
	      "                              publishing to it: one route per message, each\n"
	      "                              within the default policy (write and read of\n"
	      "                              the device's own d/<id>/#)\n"
	      "      fanout-qos0, fanout-qos1  one extra publisher, N subscribers of its\n"
	      "                              topic (needs an open policy)\n"
	      "      idle                    N connections, no traffic for --duration\n"
	      "                              (default 5 s): memory per connection, CPU per\n"
	      "                              full mTLS handshake (no session resumption)\n"
	      "      fanin, p2p, fanout      QoS from --qos\n"
	      "  --clients N          devices (default 100)\n"
	      "  --messages N         messages published in total (default 100000);\n"
	      "                       deliveries = N x subscribers for fan-out\n"
	      "  --payload BYTES      payload size, >= 20 (default 64): magic, publish\n"
	      "                       timestamp, publisher, sequence, then filler\n"
	      "  --qos 0|1            override the scenario's QoS\n"
	      "  --rate R             open loop: publish R messages/s in total, message k\n"
	      "                       stamped with its scheduled time (so a broker that\n"
	      "                       falls behind shows as latency). Default: closed loop,\n"
	      "                       as fast as --window and --outstanding allow\n"
	      "  --duration S         cap on the publish phase (default 60 s), or the idle\n"
	      "                       hold time; with --rate and --messages 0, publishes\n"
	      "                       R x S messages; with --rate the cap is at least\n"
	      "                       messages/R + 2 s\n"
	      "  --window N           QoS 1 messages in flight per publisher (default 16;\n"
	      "                       lowered to the broker's Receive Maximum in v5)\n"
	      "  --outstanding N      closed loop: at most N published messages not yet\n"
	      "                       delivered to every subscriber (default 500, well under\n"
	      "                       the per-client queue limits of moat and mosquitto, so\n"
	      "                       no broker has to drop)\n"
	      "  --drain-timeout S    after the last publish, wait this long for missing\n"
	      "                       deliveries (default 5)\n"
	      "\n"
	      "Run control and measurement:\n"
	      "  --threads 1|2        worker threads, each with its own epoll (default 1)\n"
	      "  --connect-concurrency N  handshakes in progress at once (default 64)\n"
	      "  --connect-timeout S  give up when not all clients are connected after S\n"
	      "                       seconds (default 120)\n"
	      "  --settle S           pause between all-connected and the memory sample and\n"
	      "                       the start of publishing (default 0.5)\n"
	      "  --broker-pid PID     sample CPU (utime+stime of /proc/PID/stat) and VmRSS\n"
	      "                       (/proc/PID/status) of PID and its descendants before\n"
	      "                       connecting, when all are connected, after settling,\n"
	      "                       and around the publish phase\n"
	      "  --window-cmd CMD     run CMD with /bin/sh for exactly the publish phase\n"
	      "                       (started as it starts, SIGINT to its process group\n"
	      "                       as it ends), MOAT_BENCH_PID=the --broker-pid in its\n"
	      "                       environment; e.g. 'perf stat -p $MOAT_BENCH_PID -o F'\n"
	      "  --save-sessions FILE once all clients are connected, write each one's TLS\n"
	      "                       session (PEM, after a line with its client id) to\n"
	      "                       FILE (mode 0600)\n"
	      "  --load-sessions FILE offer the sessions saved in FILE when connecting\n"
	      "                       (session resumption); \"resumed\" counts the\n"
	      "                       handshakes the broker resumed\n"
	      "  --quiet              no progress on stderr\n"
	      "  -h, --help           this text\n"
	      "\n"
	      "Output (one JSON line): ok, error, scenario, version, qos, clients,\n"
	      "connections, payload, rate, sent, received, expected, lost, acked,\n"
	      "elapsed_s (first publish to last delivery), msgs_per_s (deliveries/s),\n"
	      "lat_us {p50,p90,p99,p999,max,mean} (publish timestamp to receipt, same\n"
	      "clock), puback_us {p50,p90,p99,p999,max} (QoS 1: PUBLISH queued to its\n"
	      "PUBACK, for the publisher), connect_s, resumed, errors {total and per\n"
	      "kind}, and with\n"
	      "--broker-pid\n"
	      "broker {cpu_connect_s, cpu_per_connect_ms, cpu_run_s, cpu_s_per_million\n"
	      "(per million deliveries), rss_before_kb, rss_connected_kb, rss_end_kb,\n"
	      "rss_per_conn_kb}.\n"
	      "\n"
	      "Exit status: 0 all clients connected and (QoS 1) every message delivered;\n"
	      "1 a failure (the JSON says which; the first errors are on stderr); 2 usage.\n"
	      "The process raises its open-files limit to what the clients need.\n",
	      f);
}

const char *bench_errkind_name(enum bench_errkind kind)
{
	if ((unsigned)kind >= BENCH_ERR__COUNT)
		return "?";
	return errkind_names[kind];
}

void bench_error(struct bench_run *run, enum bench_errkind kind, const char *fmt, ...)
{
	char msg[BENCH_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	atomic_fetch_add(&run->errors[kind], 1);
	pthread_mutex_lock(&run->err_lock);
	if (run->first_err[0] == '\0')
		snprintf(run->first_err, sizeof(run->first_err), "%s", msg);
	if (run->err_printed < ERR_PRINT_MAX) {
		fprintf(stderr, "moat-bench: error [%s]: %s\n", bench_errkind_name(kind), msg);
		if (++run->err_printed == ERR_PRINT_MAX)
			fprintf(stderr, "moat-bench: further errors only counted\n");
	}
	pthread_mutex_unlock(&run->err_lock);
}

static bool parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *v)
{
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*v = strtoul(s, &end, 10);
	return errno == 0 && *end == '\0' && *v >= min && *v <= max;
}

static bool parse_double(const char *s, double min, double max, double *v)
{
	char *end;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	*v = strtod(s, &end);
	return errno == 0 && *end == '\0' && *v >= min && *v <= max;
}

enum opt_id {
	OPT_HOST = 256,
	OPT_PORT,
	OPT_CA,
	OPT_CA_KEY,
	OPT_CERT_CACHE,
	OPT_ID_PREFIX,
	OPT_V5,
	OPT_V311,
	OPT_KEEPALIVE,
	OPT_SESSION_EXPIRY,
	OPT_SCENARIO,
	OPT_CLIENTS,
	OPT_MESSAGES,
	OPT_PAYLOAD,
	OPT_QOS,
	OPT_RATE,
	OPT_DURATION,
	OPT_WINDOW,
	OPT_OUTSTANDING,
	OPT_DRAIN,
	OPT_THREADS,
	OPT_CONC,
	OPT_CONNECT_TIMEOUT,
	OPT_SETTLE,
	OPT_BROKER_PID,
	OPT_WINDOW_CMD,
	OPT_QUIET,
	OPT_SAVE_SESSIONS,
	OPT_LOAD_SESSIONS,
};

static const struct option long_opts[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"ca", required_argument, NULL, OPT_CA},
    {"ca-cert", required_argument, NULL, OPT_CA},
    {"ca-key", required_argument, NULL, OPT_CA_KEY},
    {"cert-cache", required_argument, NULL, OPT_CERT_CACHE},
    {"id-prefix", required_argument, NULL, OPT_ID_PREFIX},
    {"v5", no_argument, NULL, OPT_V5},
    {"v311", no_argument, NULL, OPT_V311},
    {"keepalive", required_argument, NULL, OPT_KEEPALIVE},
    {"session-expiry", required_argument, NULL, OPT_SESSION_EXPIRY},
    {"scenario", required_argument, NULL, OPT_SCENARIO},
    {"clients", required_argument, NULL, OPT_CLIENTS},
    {"messages", required_argument, NULL, OPT_MESSAGES},
    {"payload", required_argument, NULL, OPT_PAYLOAD},
    {"qos", required_argument, NULL, OPT_QOS},
    {"rate", required_argument, NULL, OPT_RATE},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"outstanding", required_argument, NULL, OPT_OUTSTANDING},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"connect-concurrency", required_argument, NULL, OPT_CONC},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"settle", required_argument, NULL, OPT_SETTLE},
    {"broker-pid", required_argument, NULL, OPT_BROKER_PID},
    {"window-cmd", required_argument, NULL, OPT_WINDOW_CMD},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"save-sessions", required_argument, NULL, OPT_SAVE_SESSIONS},
    {"load-sessions", required_argument, NULL, OPT_LOAD_SESSIONS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int bad_arg(const char *opt, const char *val)
{
	fprintf(stderr, "moat-bench: invalid value for --%s: '%s' (see --help)\n", opt,
		val != NULL ? val : "");
	return 2;
}

/* 0 ok, 2 usage error, -1 help printed. */
static int parse_args(int argc, char **argv, struct bench_opts *o)
{
	unsigned long v;
	int qos = -1, c, idx;
	size_t i;

	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	o->port = 8883;
	o->id_prefix = "bench-";
	o->version = MQTT_V5;
	o->keepalive = 60;
	o->clients = 100;
	o->messages = 100000;
	o->payload = 64;
	o->window = 16;
	o->outstanding = 500;
	o->drain_timeout = 5.0;
	o->threads = 1;
	o->connect_concurrency = 64;
	o->connect_timeout = 120.0;
	o->settle = 0.5;
	for (;;) {
		idx = 0;
		c = getopt_long(argc, argv, "h", long_opts, &idx);
		if (c == -1)
			break;
		switch (c) {
		case 'h':
			usage(stdout);
			return -1;
		case OPT_HOST:
			o->host = optarg;
			break;
		case OPT_PORT:
			if (!parse_uint(optarg, 1, 65535, &v))
				return bad_arg("port", optarg);
			o->port = (unsigned)v;
			break;
		case OPT_CA:
			o->ca_cert = optarg;
			break;
		case OPT_CA_KEY:
			o->ca_key = optarg;
			break;
		case OPT_CERT_CACHE:
			o->cert_cache = optarg;
			break;
		case OPT_ID_PREFIX:
			if (strlen(optarg) > BENCH_ID_MAX - 10)
				return bad_arg("id-prefix", optarg);
			o->id_prefix = optarg;
			break;
		case OPT_V5:
			o->version = MQTT_V5;
			break;
		case OPT_V311:
			o->version = MQTT_V311;
			break;
		case OPT_KEEPALIVE:
			if (!parse_uint(optarg, 0, 65535, &v))
				return bad_arg("keepalive", optarg);
			o->keepalive = (unsigned)v;
			break;
		case OPT_SESSION_EXPIRY:
			if (!parse_uint(optarg, 0, 0xffffffffu, &v))
				return bad_arg("session-expiry", optarg);
			o->session_expiry = (uint32_t)v;
			break;
		case OPT_SCENARIO:
			o->scenario_name = optarg;
			break;
		case OPT_CLIENTS:
			if (!parse_uint(optarg, 1, BENCH_MAX_CLIENTS, &v))
				return bad_arg("clients", optarg);
			o->clients = (unsigned)v;
			break;
		case OPT_MESSAGES:
			if (!parse_uint(optarg, 0, 1000000000000ul, &v))
				return bad_arg("messages", optarg);
			o->messages = v;
			break;
		case OPT_PAYLOAD:
			if (!parse_uint(optarg, BENCH_PAYLOAD_MIN, BENCH_PAYLOAD_MAX, &v))
				return bad_arg("payload", optarg);
			o->payload = (unsigned)v;
			break;
		case OPT_QOS:
			if (!parse_uint(optarg, 0, 1, &v))
				return bad_arg("qos", optarg);
			qos = (int)v;
			break;
		case OPT_RATE:
			if (!parse_double(optarg, 0.0, 1e9, &o->rate))
				return bad_arg("rate", optarg);
			break;
		case OPT_DURATION:
			if (!parse_double(optarg, 0.0, 86400.0, &o->duration))
				return bad_arg("duration", optarg);
			break;
		case OPT_WINDOW:
			if (!parse_uint(optarg, 1, 65535, &v))
				return bad_arg("window", optarg);
			o->window = (unsigned)v;
			break;
		case OPT_OUTSTANDING:
			if (!parse_uint(optarg, 1, 100000000, &v))
				return bad_arg("outstanding", optarg);
			o->outstanding = (unsigned)v;
			break;
		case OPT_DRAIN:
			if (!parse_double(optarg, 0.0, 3600.0, &o->drain_timeout))
				return bad_arg("drain-timeout", optarg);
			break;
		case OPT_THREADS:
			if (!parse_uint(optarg, 1, BENCH_MAX_THREADS, &v))
				return bad_arg("threads", optarg);
			o->threads = (unsigned)v;
			break;
		case OPT_CONC:
			if (!parse_uint(optarg, 1, 100000, &v))
				return bad_arg("connect-concurrency", optarg);
			o->connect_concurrency = (unsigned)v;
			break;
		case OPT_CONNECT_TIMEOUT:
			if (!parse_double(optarg, 0.1, 86400.0, &o->connect_timeout))
				return bad_arg("connect-timeout", optarg);
			break;
		case OPT_SETTLE:
			if (!parse_double(optarg, 0.0, 3600.0, &o->settle))
				return bad_arg("settle", optarg);
			break;
		case OPT_BROKER_PID:
			if (!parse_uint(optarg, 1, 0x7fffffff, &v))
				return bad_arg("broker-pid", optarg);
			o->broker_pid = (long)v;
			break;
		case OPT_WINDOW_CMD:
			o->window_cmd = optarg;
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		case OPT_SAVE_SESSIONS:
			if (optarg[0] == '\0')
				return bad_arg("save-sessions", optarg);
			o->save_sessions = optarg;
			break;
		case OPT_LOAD_SESSIONS:
			if (optarg[0] == '\0')
				return bad_arg("load-sessions", optarg);
			o->load_sessions = optarg;
			break;
		default:
			fprintf(stderr, "moat-bench: see --help\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "moat-bench: unexpected argument '%s' (see --help)\n",
			argv[optind]);
		return 2;
	}
	if (o->ca_cert == NULL || o->ca_key == NULL || o->scenario_name == NULL) {
		fprintf(stderr, "moat-bench: --ca, --ca-key and --scenario are required "
				"(see --help)\n");
		return 2;
	}
	for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		if (strcmp(scenarios[i].name, o->scenario_name) == 0)
			break;
	}
	if (i == sizeof(scenarios) / sizeof(scenarios[0]))
		return bad_arg("scenario", o->scenario_name);
	o->scenario = scenarios[i].scenario;
	if (qos < 0)
		qos = scenarios[i].qos;
	if (qos < 0)
		qos = o->scenario == BENCH_P2P ? 1 : 0;
	o->qos = (unsigned)qos;
	if (o->scenario == BENCH_IDLE) {
		o->messages = 0;
		o->rate = 0;
		if (o->duration <= 0)
			o->duration = DEFAULT_IDLE_S;
	} else {
		if (o->messages == 0 && o->rate > 0 && o->duration > 0)
			o->messages = (uint64_t)(o->rate * o->duration);
		if (o->messages == 0) {
			fprintf(stderr, "moat-bench: nothing to publish: give --messages, or "
					"--rate with --duration\n");
			return 2;
		}
		if (o->duration <= 0)
			o->duration = DEFAULT_MAX_S;
		/* Paced: the last message is due at messages/rate; a cap equal to
		 * that would race the schedule, so leave slack. */
		if (o->rate > 0 && o->duration < (double)o->messages / o->rate + PACED_SLACK_S)
			o->duration = (double)o->messages / o->rate + PACED_SLACK_S;
	}
	return 0;
}

static moat_err resolve(struct bench_run *run, char *err, size_t errlen)
{
	struct addrinfo hints, *ai = NULL;
	char port[16];
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", run->o->port);
	r = getaddrinfo(run->o->host, port, &hints, &ai);
	if (r != 0 || ai == NULL) {
		snprintf(err, errlen, "cannot resolve %s: %s", run->o->host, gai_strerror(r));
		return MOAT_E_NOTFOUND;
	}
	memcpy(&run->addr, ai->ai_addr, ai->ai_addrlen);
	run->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	return MOAT_OK;
}

static SSL_CTX *client_ctx(const struct bench_opts *o, char *err, size_t errlen)
{
	X509_VERIFY_PARAM *param;
	SSL_CTX *ctx;
	long mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
	int ok;

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1)
		goto fail;
	if (SSL_CTX_load_verify_locations(ctx, o->ca_cert, NULL) != 1)
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	param = SSL_CTX_get0_param(ctx);
	ok = X509_VERIFY_PARAM_set1_ip_asc(param, o->host);
	if (ok != 1) {
		ERR_clear_error();
		ok = X509_VERIFY_PARAM_set1_host(param, o->host, 0);
	}
	if (ok != 1)
		goto fail;
	/* Every connection is a full handshake: that is what is measured,
	 * unless sessions are saved or offered (reconnect storms). */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (o->save_sessions == NULL && o->load_sessions == NULL)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	/* Thousands of idle connections: do not hold 2 x 16 KiB each. */
	if (o->scenario == BENCH_IDLE)
		mode |= SSL_MODE_RELEASE_BUFFERS;
	SSL_CTX_set_mode(ctx, mode);
	/* Pull whole socket buffers at once rather than two reads per record;
	 * the worker reads until OpenSSL wants more (client_read). */
	SSL_CTX_set_read_ahead(ctx, 1);
	return ctx;
fail:
	snprintf(err, errlen, "cannot set up the TLS client context (CA %s): %s", o->ca_cert,
		 ERR_reason_error_string(ERR_peek_last_error()) != NULL
		     ? ERR_reason_error_string(ERR_peek_last_error())
		     : "unknown error");
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

static moat_err raise_nofile(unsigned need, char *err, size_t errlen)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		snprintf(err, errlen, "getrlimit: %s", strerror(errno));
		return MOAT_E_IO;
	}
	if (rl.rlim_cur >= need)
		return MOAT_OK;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		snprintf(err, errlen,
			 "%u clients need %u open files but the hard limit is %llu "
			 "(raise it, or use fewer clients)",
			 need - 64, need, (unsigned long long)rl.rlim_max);
		return MOAT_E_LIMIT;
	}
	rl.rlim_cur = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		snprintf(err, errlen, "setrlimit(RLIMIT_NOFILE, %u): %s", need, strerror(errno));
		return MOAT_E_IO;
	}
	return MOAT_OK;
}

static void sleep_ns(long ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static double secs(uint64_t a, uint64_t b)
{
	return b > a ? (double)(b - a) / 1e9 : 0.0;
}

static void report_error(struct report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void report_error(struct report *rep, const char *fmt, ...)
{
	va_list ap;

	rep->ok = false;
	if (rep->error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(rep->error, sizeof(rep->error), fmt, ap);
	va_end(ap);
}

/* Move the run through its phases; fills rep. Workers are running. */
/* --window-cmd: the profiler of the publish phase, in its own process
 * group; -1 when none or it could not start. */
static pid_t window_start(const struct bench_opts *o)
{
	char pidbuf[24];
	pid_t pid;

	if (o->window_cmd == NULL)
		return -1;
	snprintf(pidbuf, sizeof(pidbuf), "%ld", o->broker_pid);
	pid = fork();
	if (pid == 0) {
		(void)setpgid(0, 0);
		(void)setenv("MOAT_BENCH_PID", pidbuf, 1);
		execl("/bin/sh", "sh", "-c", o->window_cmd, (char *)NULL);
		_exit(127);
	}
	if (pid < 0) {
		fprintf(stderr, "moat-bench: --window-cmd: fork: %s\n", strerror(errno));
		return -1;
	}
	(void)setpgid(pid, pid);
	/* Let a profiler attach before the first message (perf: ~0.1 s). */
	sleep_ns(300000000L);
	return pid;
}

static void window_stop(pid_t pid)
{
	int status;

	if (pid <= 0)
		return;
	(void)kill(-pid, SIGINT);
	(void)waitpid(pid, &status, 0);
}

static void coordinate(struct bench_run *run, struct report *rep, uint64_t t_connect0)
{
	const struct bench_opts *o = run->o;
	uint64_t now, t_start, t_end, t_drain_end = 0, expected, sent, received, last_rx;
	bool draining = false;
	pid_t window;

	/* Connect. A client that fails here fails the run: a broker that
	 * refuses some connections is not measured, it is reported. */
	for (;;) {
		sleep_ns(COORD_TICK_NS);
		now = bench_now_ns();
		if (atomic_load(&run->dead) > 0) {
			report_error(rep, "%s", run->first_err);
			break;
		}
		if (atomic_load(&run->ready) == run->n_clients)
			break;
		if (secs(t_connect0, now) > o->connect_timeout) {
			report_error(rep, "only %llu of %u clients connected after %.0f s",
				     (unsigned long long)atomic_load(&run->ready), run->n_clients,
				     o->connect_timeout);
			break;
		}
	}
	rep->connected = (unsigned)atomic_load(&run->ready);
	rep->connect_s = secs(t_connect0, bench_now_ns());
	bench_proc_sample(o->broker_pid, &rep->connected_s);
	if (!rep->ok)
		return;
	if (!o->quiet)
		fprintf(stderr, "moat-bench: %u connections in %.2f s\n", rep->connected,
			rep->connect_s);
	sleep_ns((long)(o->settle * 1e9));
	bench_proc_sample(o->broker_pid, &rep->settled);

	/* Publish (or hold, for idle). */
	expected = o->messages * run->fan;
	rep->expected = expected;
	window = window_start(o);
	bench_proc_sample(o->broker_pid, &rep->run_start);
	t_start = bench_now_ns();
	atomic_store(&run->t_start_ns, t_start);
	atomic_store(&run->phase, BENCH_PH_RUN);
	for (;;) {
		sleep_ns(COORD_TICK_NS);
		now = bench_now_ns();
		sent = atomic_load(&run->sent);
		received = atomic_load(&run->received);
		if (o->scenario == BENCH_IDLE) {
			if (atomic_load(&run->dead) > 0) {
				report_error(rep, "%s", run->first_err);
				break;
			}
			if (secs(t_start, now) >= o->duration)
				break;
			continue;
		}
		if (received >= expected)
			break;
		if (!draining && atomic_load(&run->dead) > 0) {
			report_error(rep, "%s", run->first_err);
			draining = true;
			t_drain_end = now + (uint64_t)(DEAD_DRAIN_S * 1e9);
			atomic_store(&run->phase, BENCH_PH_DRAIN);
		}
		if (!draining && sent >= o->messages) {
			draining = true;
			t_drain_end = now + (uint64_t)(o->drain_timeout * 1e9);
		}
		if (!draining && secs(t_start, now) >= o->duration) {
			draining = true;
			t_drain_end = now + (uint64_t)(o->drain_timeout * 1e9);
			atomic_store(&run->phase, BENCH_PH_DRAIN);
		}
		if (draining && now >= t_drain_end)
			break;
	}
	bench_proc_sample(o->broker_pid, &rep->run_end);
	window_stop(window);
	now = bench_now_ns();
	atomic_store(&run->phase, BENCH_PH_STOP);
	last_rx = atomic_load(&run->last_rx_ns);
	received = atomic_load(&run->received);
	/* The window ends at the last delivery when everything arrived; else
	 * when we gave up. */
	t_end = (o->scenario != BENCH_IDLE && received >= expected && last_rx > t_start) ? last_rx
											 : now;
	rep->elapsed_s = secs(t_start, t_end);
	if (o->scenario != BENCH_IDLE && o->qos > 0 && received < expected)
		report_error(rep, "%llu of %llu QoS 1 deliveries missing",
			     (unsigned long long)(expected - received),
			     (unsigned long long)expected);
	if (o->scenario != BENCH_IDLE && atomic_load(&run->sent) < o->messages)
		report_error(rep, "only %llu of %llu messages published within %.0f s",
			     (unsigned long long)atomic_load(&run->sent),
			     (unsigned long long)o->messages, o->duration);
}

/* What the broker spent per delivered message during the run: user and
 * system CPU (us), context switches and read/write-like system calls. */
static void per_msg_json(FILE *f, const struct bench_proc_sample *a,
			 const struct bench_proc_sample *b, uint64_t msgs)
{
	double n = msgs > 0 ? (double)msgs : 1.0;

	fprintf(f,
		",\"per_msg\":{\"user_us\":%.3f,\"sys_us\":%.3f,\"ctx_vol\":%.4f,"
		"\"ctx_invol\":%.4f,\"syscr\":%.4f,\"syscw\":%.4f}",
		(b->user_s - a->user_s) * 1e6 / n, (b->sys_s - a->sys_s) * 1e6 / n,
		(double)(b->ctx_vol - a->ctx_vol) / n, (double)(b->ctx_invol - a->ctx_invol) / n,
		(double)(b->syscr - a->syscr) / n, (double)(b->syscw - a->syscw) / n);
}

static void json_str(FILE *f, const char *s)
{
	const unsigned char *p;

	fputc('"', f);
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void report_print(const struct bench_run *run, const struct report *rep)
{
	const struct bench_opts *o = run->o;
	const struct bench_hist *h = rep->hist;
	uint64_t total_err = 0, lost;
	double cpu_connect, cpu_run, rss_per_conn;
	unsigned i;
	FILE *f = stdout;

	for (i = 0; i < BENCH_ERR__COUNT; i++)
		total_err += atomic_load(&run->errors[i]);
	lost = rep->expected > rep->received ? rep->expected - rep->received : 0;
	fprintf(f, "{\"ok\":%s,\"error\":", rep->ok ? "true" : "false");
	json_str(f, rep->error);
	fprintf(f, ",\"scenario\":");
	json_str(f, o->scenario_name);
	fprintf(f,
		",\"version\":%s,\"qos\":%u,\"clients\":%u,\"connections\":%u,"
		"\"connected\":%u,\"payload\":%u,\"rate\":%.1f,\"threads\":%u,"
		"\"session_expiry\":%lu",
		o->version == MQTT_V5 ? "\"5\"" : "\"3.1.1\"", o->qos, o->clients, run->n_clients,
		rep->connected, o->payload, o->rate, o->threads, (unsigned long)o->session_expiry);
	fprintf(f,
		",\"sent\":%llu,\"received\":%llu,\"expected\":%llu,\"lost\":%llu,"
		"\"acked\":%llu,\"elapsed_s\":%.4f,\"msgs_per_s\":%.1f,\"connect_s\":%.3f,"
		"\"resumed\":%llu",
		(unsigned long long)rep->sent, (unsigned long long)rep->received,
		(unsigned long long)rep->expected, (unsigned long long)lost,
		(unsigned long long)rep->acked, rep->elapsed_s,
		rep->elapsed_s > 0 ? (double)rep->received / rep->elapsed_s : 0.0, rep->connect_s,
		(unsigned long long)atomic_load(&run->resumed));
	fprintf(f,
		",\"lat_us\":{\"count\":%llu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
		"\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
		(unsigned long long)h->count, us(bench_hist_quantile(h, 0.50)),
		us(bench_hist_quantile(h, 0.90)), us(bench_hist_quantile(h, 0.99)),
		us(bench_hist_quantile(h, 0.999)), us(h->max),
		h->count > 0 ? us(h->sum / h->count) : 0.0);
	if (rep->ack_hist != NULL && rep->ack_hist->count > 0)
		fprintf(f,
			",\"puback_us\":{\"count\":%llu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
			"\"p999\":%.1f,\"max\":%.1f}",
			(unsigned long long)rep->ack_hist->count,
			us(bench_hist_quantile(rep->ack_hist, 0.50)),
			us(bench_hist_quantile(rep->ack_hist, 0.90)),
			us(bench_hist_quantile(rep->ack_hist, 0.99)),
			us(bench_hist_quantile(rep->ack_hist, 0.999)), us(rep->ack_hist->max));
	fprintf(f, ",\"errors\":{\"total\":%llu", (unsigned long long)total_err);
	for (i = 0; i < BENCH_ERR__COUNT; i++)
		fprintf(f, ",\"%s\":%llu", errkind_names[i],
			(unsigned long long)atomic_load(&run->errors[i]));
	fputc('}', f);
	if (o->broker_pid > 0 && rep->before.ok) {
		cpu_connect = rep->connected_s.cpu_s - rep->before.cpu_s;
		cpu_run = rep->run_end.cpu_s - rep->run_start.cpu_s;
		rss_per_conn = rep->connected > 0
				   ? ((double)rep->settled.rss_kb - (double)rep->before.rss_kb) /
					 rep->connected
				   : 0.0;
		fprintf(f,
			",\"broker\":{\"pid\":%ld,\"processes\":%u,\"cpu_connect_s\":%.3f,"
			"\"cpu_per_connect_ms\":%.4f,\"cpu_run_s\":%.3f,"
			"\"cpu_s_per_million\":%.3f,\"rss_before_kb\":%llu,"
			"\"rss_connected_kb\":%llu,\"rss_end_kb\":%llu,\"rss_per_conn_kb\":%.2f",
			o->broker_pid, rep->before.nproc, cpu_connect,
			rep->connected > 0 ? cpu_connect * 1000.0 / rep->connected : 0.0, cpu_run,
			rep->received > 0 ? cpu_run * 1e6 / (double)rep->received : 0.0,
			(unsigned long long)rep->before.rss_kb,
			(unsigned long long)rep->settled.rss_kb,
			(unsigned long long)rep->run_end.rss_kb, rss_per_conn);
		per_msg_json(f, &rep->run_start, &rep->run_end, rep->received);
		fputc('}', f);
	}
	fprintf(f, "}\n");
	fflush(f);
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct bench_run run;
	struct bench_ca *ca = NULL;
	struct report rep;
	char err[BENCH_ERR_MAX] = "";
	unsigned i, started = 0;
	uint64_t t_connect0;
	int rc = 1, r;

	memset(&run, 0, sizeof(run));
	memset(&rep, 0, sizeof(rep));
	pthread_mutex_init(&run.err_lock, NULL);
	r = parse_args(argc, argv, &o);
	if (r != 0)
		return r < 0 ? 0 : r;
	run.o = &o;
	rep.ok = true;
	signal(SIGPIPE, SIG_IGN);
	rep.hist = calloc(1, sizeof(*rep.hist));
	rep.ack_hist = calloc(1, sizeof(*rep.ack_hist));
	run.n_workers = o.threads;
	run.workers = calloc(o.threads, sizeof(*run.workers));
	if (rep.hist == NULL || rep.ack_hist == NULL || run.workers == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	for (i = 0; i < o.threads; i++)
		run.workers[i].epfd = run.workers[i].tfd = -1;
	if (resolve(&run, err, sizeof(err)))
		goto out;
	if (raise_nofile(o.clients + 2 + 64 + 4 * o.threads, err, sizeof(err)))
		goto out;
	run.ctx = client_ctx(&o, err, sizeof(err));
	if (run.ctx == NULL)
		goto out;
	if (bench_ca_open(o.ca_cert, o.ca_key, o.cert_cache, &ca, err, sizeof(err)))
		goto out;
	for (i = 0; i < o.threads; i++) {
		if (bench_worker_init(&run.workers[i], &run, i)) {
			snprintf(err, sizeof(err), "cannot set up worker %u: %s", i,
				 strerror(errno));
			goto out;
		}
	}
	if (bench_clients_create(&run, ca, err, sizeof(err)))
		goto out;
	if (o.load_sessions != NULL) {
		unsigned loaded = 0;

		if (bench_sessions_load(&run, o.load_sessions, &loaded, err, sizeof(err)))
			goto out;
		if (!o.quiet)
			fprintf(stderr, "moat-bench: offering %u saved sessions\n", loaded);
	}
	atomic_store(&run.phase, BENCH_PH_CONNECT);
	bench_proc_sample(o.broker_pid, &rep.before);
	if (o.broker_pid > 0 && !rep.before.ok) {
		snprintf(err, sizeof(err), "cannot read /proc/%ld (is the broker running?)",
			 o.broker_pid);
		goto out;
	}
	t_connect0 = bench_now_ns();
	for (i = 0; i < o.threads; i++) {
		if (pthread_create(&run.workers[i].thread, NULL, bench_worker_main,
				   &run.workers[i]) != 0) {
			snprintf(err, sizeof(err), "pthread_create failed");
			atomic_store(&run.phase, BENCH_PH_STOP);
			break;
		}
		started++;
	}
	if (started == o.threads)
		coordinate(&run, &rep, t_connect0);
	atomic_store(&run.phase, BENCH_PH_STOP);
	for (i = 0; i < started; i++)
		pthread_join(run.workers[i].thread, NULL);
	if (started < o.threads)
		goto out;
	for (i = 0; i < o.threads; i++) {
		bench_hist_merge(rep.hist, run.workers[i].hist);
		bench_hist_merge(rep.ack_hist, run.workers[i].ack_hist);
	}
	rep.sent = atomic_load(&run.sent);
	rep.received = atomic_load(&run.received);
	rep.acked = atomic_load(&run.acked);
	if (o.save_sessions != NULL && rep.ok) {
		unsigned saved = 0;

		if (bench_sessions_save(&run, o.save_sessions, &saved, err, sizeof(err)))
			goto out;
		if (!o.quiet)
			fprintf(stderr, "moat-bench: saved %u sessions to %s\n", saved,
				o.save_sessions);
	}
	report_print(&run, &rep);
	rc = rep.ok ? 0 : 1;
out:
	if (err[0] != '\0') {
		fprintf(stderr, "moat-bench: %s\n", err);
		rep.ok = false;
		snprintf(rep.error, sizeof(rep.error), "%s", err);
		if (rep.hist != NULL)
			report_print(&run, &rep);
	}
	bench_clients_free(&run);
	for (i = 0; run.workers != NULL && i < o.threads; i++)
		bench_worker_free(&run.workers[i]);
	free(run.workers);
	free(rep.hist);
	free(rep.ack_hist);
	SSL_CTX_free(run.ctx);
	bench_ca_close(ca);
	pthread_mutex_destroy(&run.err_lock);
	return rc;
}
