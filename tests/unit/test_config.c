/*
 * moat.conf parser: defaults, every key's range and bad values, the loopback
 * rules, and the promise that every error names FILE:LINE and a fix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/log.h"

#define DATA_DIR "/var/lib/moat"
/* A valid listener to append when a test is about another section. */
#define LISTENER "[listener.t]\nbind = 127.0.0.1\nport = 8883\n"

static char err[1024];

static moat_err parse(const char *text, struct moat_conf *c)
{
	memset(err, 0, sizeof(err));
	return moat_conf_parse_string(text, "moat.conf", DATA_DIR, c, err, sizeof(err));
}

static void expect_ok(const char *text, struct moat_conf *c)
{
	moat_err rc = parse(text, c);

	if (rc != MOAT_OK)
		fail_msg("expected success, got %d: %s\n--- input ---\n%s", (int)rc, err, text);
	assert_string_equal(err, "");
}

/* The error must be MOAT_E_CONFIG, start with "moat.conf:LINE: ", carry a
 * fix, and contain `what`. */
static void expect_err(const char *text, unsigned line, const char *what)
{
	struct moat_conf c;
	char prefix[64];
	moat_err rc = parse(text, &c);

	snprintf(prefix, sizeof(prefix), "moat.conf:%u: ", line);
	if (rc != MOAT_E_CONFIG)
		fail_msg("expected MOAT_E_CONFIG, got %d (%s)\n--- input ---\n%s", (int)rc, err,
			 text);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("expected prefix '%s' in: %s", prefix, err);
	if (strstr(err, "; fix: ") == NULL)
		fail_msg("no '; fix: ' in: %s", err);
	if (strstr(err, what) == NULL)
		fail_msg("expected '%s' in: %s", what, err);
}

/* "[broker]\nKEY = VALUE\n" + LISTENER */
static void broker_kv(char *buf, size_t len, const char *key, const char *value)
{
	snprintf(buf, len, "[broker]\n%s = %s\n" LISTENER, key, value);
}

static void test_defaults(void **state)
{
	(void)state;
	struct moat_conf c;

	moat_conf_defaults(&c);
	assert_int_equal(c.workers, 0);
	assert_int_equal(c.lim.max_packet_size, MOAT_MAX_PACKET_SIZE_DEFAULT);
	assert_int_equal(c.lim.max_keepalive, MOAT_MAX_KEEPALIVE_DEFAULT);
	assert_int_equal(c.lim.receive_maximum, MOAT_RECEIVE_MAXIMUM_DEFAULT);
	assert_int_equal(c.lim.max_inflight, MOAT_MAX_INFLIGHT_DEFAULT);
	assert_int_equal(c.lim.max_queued_messages, MOAT_MAX_QUEUED_DEFAULT);
	assert_int_equal(c.lim.max_connections, MOAT_MAX_CONNECTIONS_DEFAULT);
	assert_string_equal(c.tls_cert, "server.crt");
	assert_string_equal(c.tls_key, "server.key");
	assert_string_equal(c.tls_ca, "ca.crt");
	assert_int_equal(c.log_level, MOAT_LOG_INFO);
	assert_int_equal(c.n_listeners, 0);
}

static void test_default_text_parses(void **state)
{
	(void)state;
	struct moat_conf c, d;

	expect_ok(moat_conf_default_text(), &c);
	moat_conf_defaults(&d);
	/* The text must spell out exactly the compiled defaults. */
	assert_int_equal(c.workers, d.workers);
	assert_int_equal(c.lim.max_packet_size, d.lim.max_packet_size);
	assert_int_equal(c.lim.max_keepalive, d.lim.max_keepalive);
	assert_int_equal(c.lim.receive_maximum, d.lim.receive_maximum);
	assert_int_equal(c.lim.max_inflight, d.lim.max_inflight);
	assert_int_equal(c.lim.max_queued_messages, d.lim.max_queued_messages);
	assert_int_equal(c.lim.max_connections, d.lim.max_connections);
	assert_int_equal(c.log_level, MOAT_LOG_INFO);
	assert_string_equal(c.tls_cert, DATA_DIR "/server.crt");
	assert_string_equal(c.tls_key, DATA_DIR "/server.key");
	assert_string_equal(c.tls_ca, DATA_DIR "/ca.crt");
	assert_int_equal(c.n_listeners, 2);
	assert_string_equal(c.listeners[0].name, "mqtts");
	assert_string_equal(c.listeners[0].bind, "0.0.0.0");
	assert_int_equal(c.listeners[0].port, 8883);
	assert_int_equal(c.listeners[0].protocol, MOAT_PROTO_MQTT);
	assert_true(c.listeners[0].tls);
	assert_true(c.listeners[0].require_client_cert);
	assert_int_equal(c.listeners[0].policy, MOAT_POLICY_DEFAULT);
	/* The management API: HTTPS on loopback, no client certificate. */
	assert_string_equal(c.listeners[1].name, "api");
	assert_string_equal(c.listeners[1].bind, "127.0.0.1");
	assert_int_equal(c.listeners[1].port, 8443);
	assert_int_equal(c.listeners[1].protocol, MOAT_PROTO_HTTPS);
	assert_true(c.listeners[1].tls);
	assert_false(c.listeners[1].require_client_cert);
	/* The plaintext example must stay commented out... */
	assert_non_null(strstr(moat_conf_default_text(), "; [listener.local]"));
	assert_non_null(strstr(moat_conf_default_text(), "WARNING"));
}

/* ...and be valid once an operator uncomments it. */
static void test_default_text_example_uncommented(void **state)
{
	(void)state;
	const char *text = moat_conf_default_text();
	const char *ex = strstr(text, "; [listener.local]");
	char buf[8192];
	size_t o = 0;
	struct moat_conf c;

	assert_non_null(ex);
	assert_true(strlen(text) < sizeof(buf));
	memcpy(buf, text, (size_t)(ex - text));
	o = (size_t)(ex - text);
	while (*ex != '\0') {
		if (strncmp(ex, "; ", 2) == 0)
			ex += 2;
		while (*ex != '\0' && *ex != '\n')
			buf[o++] = *ex++;
		if (*ex == '\n')
			buf[o++] = *ex++;
	}
	buf[o] = '\0';
	expect_ok(buf, &c);
	assert_int_equal(c.n_listeners, 3);
	assert_string_equal(c.listeners[2].name, "local");
	assert_string_equal(c.listeners[2].bind, "127.0.0.1");
	assert_int_equal(c.listeners[2].port, 1883);
	assert_false(c.listeners[2].tls);
	assert_int_equal(c.listeners[2].policy, MOAT_POLICY_OPEN);
}

static void test_minimal_listener_defaults(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_ok(LISTENER, &c);
	assert_int_equal(c.n_listeners, 1);
	assert_string_equal(c.listeners[0].name, "t");
	assert_true(c.listeners[0].tls);
	assert_true(c.listeners[0].require_client_cert);
	assert_int_equal(c.listeners[0].policy, MOAT_POLICY_DEFAULT);
	assert_int_equal(c.listeners[0].line, 1);
	assert_int_equal(c.lim.max_inflight, MOAT_MAX_INFLIGHT_DEFAULT);
}

struct range_case {
	const char *key;
	unsigned long min, max;
};

static const struct range_case ranges[] = {
    {"workers", 0, MOAT_MAX_WORKERS},
    {"max_packet_size", MOAT_MAX_PACKET_SIZE_MIN, MOAT_MAX_PACKET_SIZE_MAX},
    {"max_keepalive", MOAT_MAX_KEEPALIVE_MIN, MOAT_MAX_KEEPALIVE_MAX},
    {"receive_maximum", MOAT_RECEIVE_MAXIMUM_MIN, MOAT_RECEIVE_MAXIMUM_MAX},
    {"max_inflight", MOAT_MAX_INFLIGHT_MIN, MOAT_MAX_INFLIGHT_MAX},
    {"max_queued_messages", MOAT_MAX_QUEUED_MIN, MOAT_MAX_QUEUED_MAX},
    {"max_connections", MOAT_MAX_CONNECTIONS_MIN, MOAT_MAX_CONNECTIONS_MAX},
};

static unsigned long broker_value(const struct moat_conf *c, const char *key)
{
	if (strcmp(key, "workers") == 0)
		return c->workers;
	if (strcmp(key, "max_packet_size") == 0)
		return c->lim.max_packet_size;
	if (strcmp(key, "max_keepalive") == 0)
		return c->lim.max_keepalive;
	if (strcmp(key, "receive_maximum") == 0)
		return c->lim.receive_maximum;
	if (strcmp(key, "max_inflight") == 0)
		return c->lim.max_inflight;
	if (strcmp(key, "max_queued_messages") == 0)
		return c->lim.max_queued_messages;
	if (strcmp(key, "max_connections") == 0)
		return c->lim.max_connections;
	fail_msg("unknown key %s", key);
	return 0;
}

/* protocol = https: TLS mandatory, no MQTT policy, no client certificate
 * unless asked for. */
static void test_https_listener(void **state)
{
	struct moat_conf c;

	(void)state;
	expect_ok("[listener.api]\nbind = 127.0.0.1\nport = 8443\nprotocol = https\n", &c);
	assert_int_equal(c.listeners[0].protocol, MOAT_PROTO_HTTPS);
	assert_false(c.listeners[0].require_client_cert);
	expect_ok("[listener.api]\nbind = 0.0.0.0\nport = 8443\nprotocol = HTTPS\n"
		  "require_client_cert = on\n",
		  &c);
	assert_true(c.listeners[0].require_client_cert);
	expect_ok("[listener.m]\nbind = 0.0.0.0\nport = 8883\nprotocol = mqtt\n", &c);
	assert_int_equal(c.listeners[0].protocol, MOAT_PROTO_MQTT);
	assert_true(c.listeners[0].require_client_cert);
	expect_err("[listener.api]\nbind = 0.0.0.0\nport = 8443\nprotocol = http\n", 4,
		   "is not a protocol");
	expect_err("[listener.api]\nbind = 127.0.0.1\nport = 8443\nprotocol = https\ntls = off\n",
		   1, "needs tls = on");
	expect_err("[listener.api]\nbind = 127.0.0.1\nport = 8443\nprotocol = https\n"
		   "policy = open\n",
		   1, "MQTT listeners only");
}

/* tls_resumption: on by default; [tls] sets every listener's default, a
 * listener's own key wins; a bad value is a file:line error. */
static void test_tls_resumption(void **state)
{
	struct moat_conf c;

	(void)state;
	expect_ok(LISTENER, &c);
	assert_true(c.tls_resumption);
	assert_true(c.listeners[0].tls_resumption);
	expect_ok("[tls]\ntls_resumption = off\n" LISTENER, &c);
	assert_false(c.tls_resumption);
	assert_false(c.listeners[0].tls_resumption);
	expect_ok("[tls]\ntls_resumption = off\n" LISTENER "tls_resumption = on\n"
		  "[listener.u]\nbind = 127.0.0.1\nport = 8884\n",
		  &c);
	assert_true(c.listeners[0].tls_resumption);
	assert_false(c.listeners[1].tls_resumption);
	expect_ok(LISTENER "tls_resumption = no\n", &c);
	assert_true(c.tls_resumption);
	assert_false(c.listeners[0].tls_resumption);
	expect_err("[tls]\ntls_resumption = maybe\n" LISTENER, 2, "is not on or off");
	expect_err(LISTENER "tls_resumption = 1\n", 4, "is not on or off");
}

/* [broker] crl_url: an http(s) URL of printable ASCII, or the default "". */
static void test_crl_url(void **state)
{
	char buf[512];
	struct moat_conf c;

	(void)state;
	expect_ok(LISTENER, &c);
	assert_string_equal(c.crl_url, "");
	broker_kv(buf, sizeof(buf), "crl_url", "https://moat.example.com:8443/crl");
	expect_ok(buf, &c);
	assert_string_equal(c.crl_url, "https://moat.example.com:8443/crl");
	broker_kv(buf, sizeof(buf), "crl_url", "ftp://moat.example.com/crl");
	expect_err(buf, 2, "crl_url is not an http");
	broker_kv(buf, sizeof(buf), "crl_url", "https://a b/crl");
	expect_err(buf, 2, "crl_url is not an http");
	broker_kv(buf, sizeof(buf), "crl_url", "https://");
	expect_err(buf, 2, "crl_url is not an http");
}

static void test_broker_ranges_accept_bounds(void **state)
{
	(void)state;
	char buf[256], v[32];
	struct moat_conf c;
	size_t i;

	for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		snprintf(v, sizeof(v), "%lu", ranges[i].min);
		broker_kv(buf, sizeof(buf), ranges[i].key, v);
		expect_ok(buf, &c);
		assert_int_equal(broker_value(&c, ranges[i].key), ranges[i].min);
		snprintf(v, sizeof(v), "%lu", ranges[i].max);
		broker_kv(buf, sizeof(buf), ranges[i].key, v);
		expect_ok(buf, &c);
		assert_int_equal(broker_value(&c, ranges[i].key), ranges[i].max);
	}
}

static void test_broker_ranges_reject_outside(void **state)
{
	(void)state;
	char buf[256], v[32], fix[96];
	size_t i;

	for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		snprintf(fix, sizeof(fix), "from %lu to %lu", ranges[i].min, ranges[i].max);
		if (ranges[i].min > 0) {
			snprintf(v, sizeof(v), "%lu", ranges[i].min - 1);
			broker_kv(buf, sizeof(buf), ranges[i].key, v);
			expect_err(buf, 2, "out of range");
			expect_err(buf, 2, fix);
		}
		snprintf(v, sizeof(v), "%lu", ranges[i].max + 1);
		broker_kv(buf, sizeof(buf), ranges[i].key, v);
		expect_err(buf, 2, "out of range");
		expect_err(buf, 2, fix);
	}
}

static void test_exact_range_message(void **state)
{
	(void)state;
	struct moat_conf c;

	assert_int_equal(parse("\n\n[broker]\nmax_inflight = 0\n" LISTENER, &c), MOAT_E_CONFIG);
	assert_string_equal(
	    err, "moat.conf:4: max_inflight = 0 is out of range; fix: use a value from 1 "
		 "to 65535");
}

static void test_packet_size_suffixes(void **state)
{
	(void)state;
	static const struct {
		const char *v;
		uint32_t want;
	} ok[] = {
	    {"1K", 1024},
	    {"1k", 1024},
	    {"256KiB", 256u * 1024u},
	    {"64 KiB", 64u * 1024u},
	    {"1M", 1024u * 1024u},
	    {"16MiB", 16u * 1024u * 1024u},
	    {"2048", 2048},
	};
	char buf[256];
	struct moat_conf c;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		broker_kv(buf, sizeof(buf), "max_packet_size", ok[i].v);
		expect_ok(buf, &c);
		assert_int_equal(c.lim.max_packet_size, ok[i].want);
	}
	broker_kv(buf, sizeof(buf), "max_packet_size", "17M");
	expect_err(buf, 2, "out of range");
	broker_kv(buf, sizeof(buf), "max_packet_size", "0K");
	expect_err(buf, 2, "out of range");
	broker_kv(buf, sizeof(buf), "max_packet_size", "1G");
	expect_err(buf, 2, "not a whole decimal number");
	broker_kv(buf, sizeof(buf), "max_packet_size", "1KK");
	expect_err(buf, 2, "not a whole decimal number");
	broker_kv(buf, sizeof(buf), "max_packet_size", "K");
	expect_err(buf, 2, "not a whole decimal number");
	/* An overflow through the multiplier must not wrap into range. */
	broker_kv(buf, sizeof(buf), "max_packet_size", "18014398509481985K");
	expect_err(buf, 2, "out of range");
	/* Suffixes are only for sizes. */
	broker_kv(buf, sizeof(buf), "max_connections", "1K");
	expect_err(buf, 2, "not a whole decimal number");
}

static void test_numbers_reject_garbage(void **state)
{
	(void)state;
	static const char *const bad[] = {"10x", "abc", "0x10", "+5", "1.5", "1e3", "1 0", "ten"};
	char buf[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		broker_kv(buf, sizeof(buf), "max_inflight", bad[i]);
		expect_err(buf, 2, "is not a whole decimal number");
	}
}

static void test_numbers_reject_negative(void **state)
{
	(void)state;
	char buf[256];

	broker_kv(buf, sizeof(buf), "max_queued_messages", "-1");
	expect_err(buf, 2, "max_queued_messages = -1 is negative");
	broker_kv(buf, sizeof(buf), "workers", "-0");
	expect_err(buf, 2, "negative");
}

static void test_numbers_reject_overflow(void **state)
{
	(void)state;
	char buf[256];

	broker_kv(buf, sizeof(buf), "max_connections", "99999999999999999999999999");
	expect_err(buf, 2, "out of range");
	broker_kv(buf, sizeof(buf), "max_keepalive", "4294967306");
	expect_err(buf, 2, "out of range");
}

static void test_hash_is_not_an_inline_comment(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_err("[broker]\nmax_inflight = 10 # ten\n" LISTENER, 2, "inline comments start");
	expect_ok("[broker]\nmax_inflight = 10 ; ten\n" LISTENER, &c);
	assert_int_equal(c.lim.max_inflight, 10);
}

static void test_empty_value(void **state)
{
	(void)state;
	expect_err("[broker]\nworkers =\n" LISTENER, 2, "workers has an empty value");
	expect_err("[listener.a]\nbind =\nport = 1\n", 2, "bind has an empty value");
	expect_err("[tls]\ncert = ; nothing\n" LISTENER, 2, "cert has an empty value");
}

static void test_duplicate_key(void **state)
{
	(void)state;
	expect_err("[broker]\nworkers = 1\n\nworkers = 2\n" LISTENER, 4,
		   "duplicate key 'workers' (first set on line 2)");
	expect_err("[listener.a]\nbind = ::1\nport = 1\nport = 2\n", 4, "duplicate key 'port'");
}

static void test_unknown_key_suggests(void **state)
{
	(void)state;
	expect_err("[broker]\nworkers = 1\nmax_pakcet_size = 1M\n" LISTENER, 3,
		   "unknown key 'max_pakcet_size' in [broker]; fix: did you mean "
		   "'max_packet_size'?");
	expect_err(LISTENER "requre_client_cert = off\n", 4, "did you mean 'require_client_cert'");
	expect_err("[log]\nlevl = info\n" LISTENER, 2, "did you mean 'level'");
}

static void test_unknown_key_lists_keys(void **state)
{
	(void)state;
	expect_err("[broker]\nfrobnicate = 1\n" LISTENER, 2,
		   "unknown key 'frobnicate' in [broker]; fix: remove it or use one of: workers, "
		   "max_packet_size, max_keepalive");
	expect_err("[tls]\nzzz = 1\n" LISTENER, 2, "use one of: cert, key, ca");
	expect_err(LISTENER "qqqqqq = 1\n", 4, "in [listener.t]");
}

static void test_key_in_wrong_section(void **state)
{
	(void)state;
	expect_err("[tls]\nworkers = 1\n" LISTENER, 2, "move it to [broker]");
	expect_err("[broker]\nport = 1\n" LISTENER, 2, "move it to [listener.NAME]");
}

static void test_key_outside_section(void **state)
{
	(void)state;
	expect_err("workers = 1\n" LISTENER, 1, "outside any section");
}

static void test_unknown_section(void **state)
{
	(void)state;
	expect_err(LISTENER "[brokr]\n", 4, "unknown section [brokr]; fix: did you mean [broker]?");
	expect_err(LISTENER "[storage]\nx = 1\n", 4, "unknown section [storage]");
	expect_err(LISTENER "[listner.x]\n", 4, "did you mean [listener.NAME]");
	/* A section with no keys is still checked. */
	expect_err(LISTENER "\n[mqtt]\n", 5, "unknown section [mqtt]");
	expect_err(LISTENER "[]\n", 4, "empty section name");
}

static void test_section_header_syntax(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_err(LISTENER "[broker\nworkers = 1\n", 4, "no closing ']'");
	expect_err(LISTENER "[broker] workers = 1\n", 4, "text after the section header");
	expect_ok("[broker] ; the broker\n" LISTENER, &c);
	expect_ok("  [broker]   # the broker\n" LISTENER, &c);
}

static void test_line_syntax(void **state)
{
	(void)state;
	expect_err("[broker]\nworkers\n" LISTENER, 2, "expected 'key = value'");
	expect_err("[broker]\nworkers: 1\n" LISTENER, 2, "expected 'key = value'");
	expect_err("[broker]\n= 1\n" LISTENER, 2, "missing key name");
}

static void test_listener_names(void **state)
{
	(void)state;
	char buf[256];
	struct moat_conf c;

	expect_err("[listener]\nbind = ::1\nport = 1\n", 1, "listener section has no name");
	expect_err("[listener.]\nbind = ::1\nport = 1\n", 1, "listener name '' is invalid");
	expect_err("[listener.MQTT]\nbind = ::1\nport = 1\n", 1, "listener name 'MQTT'");
	expect_err("[listener.a.b]\nbind = ::1\nport = 1\n", 1, "is invalid");
	expect_err("[listener.a b]\nbind = ::1\nport = 1\n", 1, "is invalid");
	/* 32 characters is the limit; 33 is refused. */
	snprintf(buf, sizeof(buf), "[listener.%s]\nbind = ::1\nport = 1\n",
		 "abcdefghijklmnopqrstuvwxyz0_-123");
	expect_ok(buf, &c);
	assert_string_equal(c.listeners[0].name, "abcdefghijklmnopqrstuvwxyz0_-123");
	snprintf(buf, sizeof(buf), "[listener.%s]\nbind = ::1\nport = 1\n",
		 "abcdefghijklmnopqrstuvwxyz0_-1234");
	expect_err(buf, 1, "is invalid");
}

static void test_duplicate_sections(void **state)
{
	(void)state;
	expect_err(LISTENER "[listener.t]\n", 4,
		   "duplicate section [listener.t] (first on line 1)");
	expect_err("[broker]\nworkers = 1\n" LISTENER "[broker]\n", 6,
		   "duplicate section [broker] (first on line 1)");
}

static void test_listener_count(void **state)
{
	(void)state;
	char buf[4096];
	size_t o = 0;
	unsigned i;
	struct moat_conf c;

	for (i = 0; i < MOAT_MAX_LISTENERS; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o,
				      "[listener.l%u]\nbind = 127.0.0.1\nport = %u\n", i, 1000 + i);
	expect_ok(buf, &c);
	assert_int_equal(c.n_listeners, MOAT_MAX_LISTENERS);
	assert_int_equal(c.listeners[MOAT_MAX_LISTENERS - 1].port, 1000 + MOAT_MAX_LISTENERS - 1);
	snprintf(buf + o, sizeof(buf) - o, "[listener.extra]\nbind = ::1\nport = 1\n");
	expect_err(buf, 3 * MOAT_MAX_LISTENERS + 1, "too many listeners");
}

static void test_tls_paths(void **state)
{
	(void)state;
	struct moat_conf c;
	moat_err rc;

	expect_ok("[tls]\ncert = certs/srv.pem\nkey = /etc/moat/srv.key\n" LISTENER, &c);
	assert_string_equal(c.tls_cert, DATA_DIR "/certs/srv.pem");
	assert_string_equal(c.tls_key, "/etc/moat/srv.key");
	assert_string_equal(c.tls_ca, DATA_DIR "/ca.crt");

	/* A trailing slash on the data directory is not doubled. */
	rc = moat_conf_parse_string(LISTENER, "moat.conf", "/srv/moat/", &c, err, sizeof(err));
	assert_int_equal(rc, MOAT_OK);
	assert_string_equal(c.tls_cert, "/srv/moat/server.crt");

	/* Without a data directory relative paths stay as written. */
	rc = moat_conf_parse_string(LISTENER, "moat.conf", NULL, &c, err, sizeof(err));
	assert_int_equal(rc, MOAT_OK);
	assert_string_equal(c.tls_ca, "ca.crt");

	expect_err("[tls]\nca = bad\001name\n" LISTENER, 2, "control character");
}

static void test_tls_path_too_long(void **state)
{
	(void)state;
	char *dir = malloc(MOAT_MAX_PATH);
	struct moat_conf c;
	moat_err rc;

	assert_non_null(dir);
	memset(dir, 'd', MOAT_MAX_PATH - 6);
	dir[0] = '/';
	dir[MOAT_MAX_PATH - 6] = '\0';
	/* Absolute paths do not depend on the data directory. */
	rc = moat_conf_parse_string("[tls]\ncert = /a\nkey = /b\nca = /c\n" LISTENER, "moat.conf",
				    dir, &c, err, sizeof(err));
	assert_int_equal(rc, MOAT_OK);
	rc = moat_conf_parse_string("[tls]\ncert = /a\nkey = /b\nca = ca.crt\n" LISTENER,
				    "moat.conf", dir, &c, err, sizeof(err));
	assert_int_equal(rc, MOAT_E_CONFIG);
	assert_non_null(strstr(err, "moat.conf:4: [tls] ca path"));
	assert_non_null(strstr(err, "fix:"));
	free(dir);
}

static void test_log_levels(void **state)
{
	(void)state;
	static const struct {
		const char *v;
		int want;
	} ok[] = {
	    {"debug", MOAT_LOG_DEBUG}, {"info", MOAT_LOG_INFO},	  {"warn", MOAT_LOG_WARN},
	    {"error", MOAT_LOG_ERROR}, {"DEBUG", MOAT_LOG_DEBUG}, {"Warn", MOAT_LOG_WARN},
	};
	char buf[256];
	struct moat_conf c;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(buf, sizeof(buf), "[log]\nlevel = %s\n" LISTENER, ok[i].v);
		expect_ok(buf, &c);
		assert_int_equal(c.log_level, ok[i].want);
	}
	expect_err("[log]\nlevel = verbose\n" LISTENER, 2, "not a log level");
	expect_err("[log]\nlevel = 0\n" LISTENER, 2, "use debug, info, warn or error");
}

static void test_durability(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_ok("[broker]\ndurability = relaxed\n" LISTENER, &c);
	assert_int_equal(c.durability, MOAT_DURABILITY_RELAXED);
	expect_ok("[broker]\ndurability = STRICT\n" LISTENER, &c);
	assert_int_equal(c.durability, MOAT_DURABILITY_STRICT);
	expect_ok(LISTENER, &c);
	assert_int_equal(c.durability, MOAT_DURABILITY_STRICT);
	expect_err("[broker]\ndurability = sometimes\n" LISTENER, 2, "not a durability mode");
}

static void test_booleans(void **state)
{
	(void)state;
	static const struct {
		const char *v;
		bool want;
	} ok[] = {
	    {"on", true},  {"off", false}, {"true", true}, {"false", false},
	    {"yes", true}, {"no", false},  {"ON", true},   {"False", false},
	};
	char buf[256];
	struct moat_conf c;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(buf, sizeof(buf), LISTENER "require_client_cert = %s\ntls = %s\n", ok[i].v,
			 ok[i].v);
		expect_ok(buf, &c);
		assert_int_equal(c.listeners[0].require_client_cert, ok[i].want);
		assert_int_equal(c.listeners[0].tls, ok[i].want);
	}
	expect_err(LISTENER "tls = maybe\n", 4, "tls = 'maybe' is not on or off");
	expect_err(LISTENER "tls = 1\n", 4, "not on or off");
	expect_err(LISTENER "require_client_cert = onn\n", 4, "not on or off");
}

static void test_policy_values(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_ok(LISTENER "policy = default\n", &c);
	assert_int_equal(c.listeners[0].policy, MOAT_POLICY_DEFAULT);
	expect_ok(LISTENER "policy = open\n", &c);
	assert_int_equal(c.listeners[0].policy, MOAT_POLICY_OPEN);
	expect_err(LISTENER "policy = allow_all\n", 4, "is not a policy");
}

static void test_bind_values(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_ok("[listener.a]\nbind = 0.0.0.0\nport = 8883\n", &c);
	expect_ok("[listener.a]\nbind = ::\nport = 8883\n", &c);
	expect_ok("[listener.a]\nbind = 2001:db8::17\nport = 8883\n", &c);
	assert_string_equal(c.listeners[0].bind, "2001:db8::17");
	expect_err("[listener.a]\nbind = localhost\nport = 1\n", 2,
		   "'localhost' is not a numeric IPv4 or IPv6 address");
	expect_err("[listener.a]\nbind = 1.2.3.256\nport = 1\n", 2, "not a numeric");
	expect_err("[listener.a]\nbind = [::1]\nport = 1\n", 2, "without brackets");
	expect_err("[listener.a]\nbind = fe80::1%eth0\nport = 1\n", 2, "not a numeric");
}

static void test_port_values(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_ok("[listener.a]\nbind = ::1\nport = 1\n", &c);
	assert_int_equal(c.listeners[0].port, 1);
	expect_ok("[listener.a]\nbind = ::1\nport = 65535\n", &c);
	assert_int_equal(c.listeners[0].port, 65535);
	expect_err("[listener.a]\nbind = ::1\nport = 0\n", 3, "port = 0 is out of range");
	expect_err("[listener.a]\nbind = ::1\nport = 65536\n", 3, "from 1 to 65535");
	expect_err("[listener.a]\nbind = ::1\nport = 88 83\n", 3, "not a whole decimal number");
}

static void test_listener_required_keys(void **state)
{
	(void)state;
	expect_err("[broker]\n\n[listener.a]\nport = 1\n", 3, "[listener.a] has no bind address");
	expect_err("[listener.a]\nbind = ::1\n", 1, "[listener.a] has no port");
	expect_err(LISTENER "[listener.empty]\n", 4, "[listener.empty] has no bind");
}

static void test_no_listener(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_err("[broker]\nworkers = 2\n\n", 3, "no listener configured");
	expect_err("", 1, "no listener configured");
	assert_int_equal(parse("; only a comment\n", &c), MOAT_E_CONFIG);
}

static void test_plaintext_needs_loopback(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_err("[broker]\n[listener.plain]\nbind = 0.0.0.0\nport = 1883\ntls = off\n", 2,
		   "[listener.plain]: plaintext listener must bind a loopback address "
		   "(127.0.0.0/8 or ::1); fix: set bind = 127.0.0.1 or tls = on");
	expect_err("[listener.p]\nbind = ::\nport = 1883\ntls = no\n", 1, "plaintext listener");
	expect_err("[listener.p]\nbind = 10.0.0.1\nport = 1883\ntls = off\n", 1, "plaintext");
	expect_err("[listener.p]\nbind = ::ffff:10.0.0.1\nport = 1883\ntls = off\n", 1,
		   "plaintext");
	expect_ok("[listener.p]\nbind = 127.0.0.1\nport = 1883\ntls = off\n", &c);
	assert_false(c.listeners[0].tls);
	expect_ok("[listener.p]\nbind = 127.9.8.7\nport = 1883\ntls = off\n", &c);
	expect_ok("[listener.p]\nbind = ::1\nport = 1883\ntls = off\n", &c);
	expect_ok("[listener.p]\nbind = ::ffff:127.0.0.1\nport = 1883\ntls = off\n", &c);
}

static void test_open_policy_needs_loopback(void **state)
{
	(void)state;
	struct moat_conf c;

	/* Even over TLS: open means any certificate holder reads every topic. */
	expect_err("[listener.o]\nbind = 0.0.0.0\nport = 8883\npolicy = open\n", 1,
		   "policy = open");
	expect_err("[listener.o]\nbind = 0.0.0.0\nport = 8883\npolicy = open\n", 1,
		   "set bind = 127.0.0.1 or policy = default");
	expect_ok("[listener.o]\nbind = 127.0.0.1\nport = 8883\npolicy = open\n", &c);
	assert_int_equal(c.listeners[0].policy, MOAT_POLICY_OPEN);
}

static void test_no_client_cert_allowed_on_tls(void **state)
{
	(void)state;
	struct moat_conf c;

	/* Allowed: such clients have no identity and the default policy denies them. */
	expect_ok("[listener.a]\nbind = 0.0.0.0\nport = 8883\nrequire_client_cert = off\n", &c);
	assert_false(c.listeners[0].require_client_cert);
	assert_true(c.listeners[0].tls);
}

static void test_duplicate_bind_port(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_err("[listener.a]\nbind = 0.0.0.0\nport = 8883\n\n"
		   "[listener.b]\nbind = 0.0.0.0\nport = 8883\n",
		   5, "[listener.b] uses 0.0.0.0 port 8883 like [listener.a] on line 1");
	/* Same address in another spelling. */
	expect_err("[listener.a]\nbind = ::1\nport = 1\n[listener.b]\nbind = 0:0:0:0:0:0:0:1\n"
		   "port = 1\n",
		   4, "change bind or port");
	expect_ok("[listener.a]\nbind = 0.0.0.0\nport = 8883\n"
		  "[listener.b]\nbind = 0.0.0.0\nport = 8884\n",
		  &c);
	expect_ok("[listener.a]\nbind = 127.0.0.1\nport = 8883\n"
		  "[listener.b]\nbind = 127.0.0.2\nport = 8883\n",
		  &c);
	expect_ok("[listener.a]\nbind = 127.0.0.1\nport = 8883\n"
		  "[listener.b]\nbind = ::1\nport = 8883\n",
		  &c);
	assert_int_equal(c.n_listeners, 2);
}

static void test_loopback_predicate(void **state)
{
	(void)state;
	static const char *const yes[] = {
	    "127.0.0.1",       "127.255.255.254",  "127.0.0.0",	      "::1",
	    "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "::ffff:127.1.2.3"};
	static const char *const no[] = {
	    "128.0.0.1",       "0.0.0.0",	  "::",		 "::2",
	    "::ffff:10.0.0.1", "126.255.255.255", "localhost",	 "",
	    " 127.0.0.1",      "127.0.0.1 ",	  "::127.0.0.1", "1.127.0.0"};
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!moat_addr_is_loopback(yes[i]))
			fail_msg("%s should be loopback", yes[i]);
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (moat_addr_is_loopback(no[i]))
			fail_msg("'%s' should not be loopback", no[i]);
	assert_false(moat_addr_is_loopback(NULL));
}

static void test_comments_and_indentation(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_ok("; comment\n# comment\n[broker]\n    ; indented comment\n"
		  "    workers = 3 ; three\n\tmax_inflight = 7\n" LISTENER,
		  &c);
	/* Indented keys are keys, not continuations of the previous value. */
	assert_int_equal(c.workers, 3);
	assert_int_equal(c.lim.max_inflight, 7);
}

static void test_crlf_and_bom(void **state)
{
	(void)state;
	struct moat_conf c;

	expect_ok("\xef\xbb\xbf[broker]\r\nworkers = 4\r\n[listener.a]\r\nbind = ::1\r\nport = "
		  "9\r\n",
		  &c);
	assert_int_equal(c.workers, 4);
	assert_string_equal(c.listeners[0].bind, "::1");
	assert_int_equal(c.listeners[0].port, 9);
}

static void test_long_line(void **state)
{
	(void)state;
	char buf[2048], path[1100];
	struct moat_conf c;
	moat_err rc;

	memset(path, 'p', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	snprintf(buf, sizeof(buf), LISTENER "[tls]\ncert = %s\nkey = k\n", path);
	expect_err(buf, 5, "line is longer than");
	/* The parser must not resume mid-line and report the tail as a new line. */
	rc = parse(buf, &c);
	assert_int_equal(rc, MOAT_E_CONFIG);
	assert_null(strstr(err, "moat.conf:6:"));
	/* A 150-character path is fine. */
	path[150] = '\0';
	snprintf(buf, sizeof(buf), LISTENER "[tls]\ncert = %s\n", path);
	expect_ok(buf, &c);
	assert_int_equal(strlen(c.tls_cert), strlen(DATA_DIR "/") + 150);
}

/* docs/configuration.md promises 197 characters (libinih's buffer). */
static void test_line_length_boundary(void **state)
{
	(void)state;
	char buf[512], line[256];
	struct moat_conf c;
	size_t fixed = strlen("cert = /");

	memset(line, 'x', sizeof(line));
	memcpy(line, "cert = /", fixed);
	line[197] = '\0';
	snprintf(buf, sizeof(buf), LISTENER "[tls]\n%s\r\n", line);
	expect_ok(buf, &c);
	assert_int_equal(strlen(c.tls_cert), 197 - fixed + 1);
	line[197] = 'x';
	line[198] = '\0';
	snprintf(buf, sizeof(buf), LISTENER "[tls]\n%s\n", line);
	expect_err(buf, 5, "line is longer than 197 characters");
}

static void test_first_error_wins_and_file_name(void **state)
{
	(void)state;
	struct moat_conf c;
	moat_err rc;

	expect_err("[broker]\nworkers = 99\nmax_inflight = 0\n[bogus]\n", 2, "workers = 99");
	rc = moat_conf_parse_string("[broker]\nworkers = x\n", "/etc/moat/moat.conf", DATA_DIR, &c,
				    err, sizeof(err));
	assert_int_equal(rc, MOAT_E_CONFIG);
	assert_non_null(strstr(err, "/etc/moat/moat.conf:2: workers"));
}

static void test_failure_leaves_output_untouched(void **state)
{
	(void)state;
	struct moat_conf c, before;

	memset(&c, 0xa5, sizeof(c));
	memcpy(&before, &c, sizeof(c));
	assert_int_equal(parse("[broker]\nworkers = 1\n[listener.a]\nbind = 0.0.0.0\nport = "
			       "1\ntls = off\n",
			       &c),
			 MOAT_E_CONFIG);
	assert_memory_equal(&c, &before, sizeof(c));
}

static void test_error_buffer_edge_cases(void **state)
{
	(void)state;
	struct moat_conf c;
	char small[16];

	assert_int_equal(moat_conf_parse_string("[x]\n", "moat.conf", NULL, &c, NULL, 0),
			 MOAT_E_CONFIG);
	memset(small, 'Z', sizeof(small));
	assert_int_equal(moat_conf_parse_string("[broker]\nworkers = 99\n", "moat.conf", NULL, &c,
						small, sizeof(small)),
			 MOAT_E_CONFIG);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(moat_conf_parse_string(NULL, "moat.conf", NULL, &c, err, sizeof(err)),
			 MOAT_E_INVAL);
}

static void test_hostile_text_is_sanitised(void **state)
{
	(void)state;
	char buf[512];

	expect_err("[broker]\n\x1b[31mred = 1\n" LISTENER, 2, "unknown key '?[31mred'");
	assert_null(strchr(err, '\x1b'));
	/* Long junk is echoed truncated. */
	memset(buf, 0, sizeof(buf));
	snprintf(buf, sizeof(buf), "[broker]\nworkers = %0150d\n" LISTENER, 7);
	buf[19] = 'x';
	expect_err(buf, 2, "...'");
	assert_true(strlen(err) < 300);
}

static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void test_load_file(void **state)
{
	(void)state;
	char path[] = "/tmp/moat-test-conf-XXXXXX";
	static const char nul_text[] = "[broker]\nworkers = 1\0\n" LISTENER;
	struct moat_conf c;
	char want[128];
	int fd = mkstemp(path);
	moat_err rc;

	assert_true(fd >= 0);
	close(fd);
	write_file(path, moat_conf_default_text(), strlen(moat_conf_default_text()));
	rc = moat_conf_load(path, "/data", &c, err, sizeof(err));
	assert_int_equal(rc, MOAT_OK);
	assert_string_equal(c.tls_key, "/data/server.key");
	assert_int_equal(c.n_listeners, 2);

	write_file(path, "[broker]\nworkers = 1\nbad\n", 26);
	rc = moat_conf_load(path, "/data", &c, err, sizeof(err));
	assert_int_equal(rc, MOAT_E_CONFIG);
	snprintf(want, sizeof(want), "%s:3: ", path);
	assert_non_null(strstr(err, want));

	/* A NUL byte would make the rest of the line invisible; refuse it. */
	write_file(path, nul_text, sizeof(nul_text) - 1);
	rc = moat_conf_load(path, "/data", &c, err, sizeof(err));
	assert_int_equal(rc, MOAT_E_CONFIG);
	snprintf(want, sizeof(want), "%s:2: line contains a NUL byte", path);
	assert_non_null(strstr(err, want));

	unlink(path);
	rc = moat_conf_load(path, "/data", &c, err, sizeof(err));
	assert_int_equal(rc, MOAT_E_IO);
	assert_non_null(strstr(err, "cannot open"));
	assert_non_null(strstr(err, "fix:"));

	/* A directory opens but cannot be read. */
	rc = moat_conf_load("/tmp", "/data", &c, err, sizeof(err));
	assert_int_equal(rc, MOAT_E_IO);
}

/* SIGHUP: which differences need a restart, and the key named. */
static void expect_restart(const char *a, const char *b, const char *key)
{
	struct moat_conf ca, cb;
	char k[96] = "";
	bool r;

	expect_ok(a, &ca);
	expect_ok(b, &cb);
	r = moat_conf_needs_restart(&ca, &cb, k, sizeof(k));
	if (key == NULL) {
		if (r)
			fail_msg("expected reloadable, got restart for %s", k);
	} else {
		if (!r)
			fail_msg("expected restart for %s\n--- a ---\n%s--- b ---\n%s", key, a, b);
		assert_string_equal(k, key);
	}
}

static void test_needs_restart(void **state)
{
	(void)state;
	expect_restart(LISTENER, LISTENER, NULL);
	expect_restart(LISTENER,
		       "[broker]\nmax_packet_size = 4096\nmax_keepalive = 30\n"
		       "receive_maximum = 5\nmax_inflight = 5\nmax_queued_messages = 10\n"
		       "max_connections = 10\nunknown_devices = allow\n"
		       "[log]\nlevel = debug\n" LISTENER,
		       NULL);
	expect_restart(LISTENER, "[broker]\nworkers = 3\n" LISTENER, "broker.workers");
	expect_restart(LISTENER, "[broker]\ndurability = relaxed\n" LISTENER, "broker.durability");
	expect_restart(LISTENER, "[broker]\ncert_days = 30\n" LISTENER, "broker.cert_days");
	expect_restart(LISTENER, "[tls]\ncert = other.crt\n" LISTENER, "tls.cert");
	expect_restart(LISTENER, "[tls]\nca = other.crt\n" LISTENER, "tls.ca");
	expect_restart(LISTENER, "[listener.t]\nbind = 127.0.0.1\nport = 8884\n",
		       "listener.t.port");
	expect_restart(LISTENER, "[listener.t]\nbind = 127.0.0.2\nport = 8883\n",
		       "listener.t.bind");
	expect_restart(LISTENER,
		       "[listener.t]\nbind = 127.0.0.1\nport = 8883\npolicy = open\ntls = off\n",
		       "listener.t.tls");
	expect_restart(LISTENER, "[listener.u]\nbind = 127.0.0.1\nport = 8883\n", "listener.t");
	expect_restart(LISTENER, LISTENER "[listener.u]\nbind = 127.0.0.1\nport = 8884\n",
		       "listener.u");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_needs_restart),
	    cmocka_unit_test(test_default_text_parses),
	    cmocka_unit_test(test_default_text_example_uncommented),
	    cmocka_unit_test(test_minimal_listener_defaults),
	    cmocka_unit_test(test_https_listener),
	    cmocka_unit_test(test_crl_url),
	    cmocka_unit_test(test_tls_resumption),
	    cmocka_unit_test(test_broker_ranges_accept_bounds),
	    cmocka_unit_test(test_broker_ranges_reject_outside),
	    cmocka_unit_test(test_exact_range_message),
	    cmocka_unit_test(test_packet_size_suffixes),
	    cmocka_unit_test(test_numbers_reject_garbage),
	    cmocka_unit_test(test_numbers_reject_negative),
	    cmocka_unit_test(test_numbers_reject_overflow),
	    cmocka_unit_test(test_hash_is_not_an_inline_comment),
	    cmocka_unit_test(test_empty_value),
	    cmocka_unit_test(test_duplicate_key),
	    cmocka_unit_test(test_unknown_key_suggests),
	    cmocka_unit_test(test_unknown_key_lists_keys),
	    cmocka_unit_test(test_key_in_wrong_section),
	    cmocka_unit_test(test_key_outside_section),
	    cmocka_unit_test(test_unknown_section),
	    cmocka_unit_test(test_section_header_syntax),
	    cmocka_unit_test(test_line_syntax),
	    cmocka_unit_test(test_listener_names),
	    cmocka_unit_test(test_duplicate_sections),
	    cmocka_unit_test(test_listener_count),
	    cmocka_unit_test(test_tls_paths),
	    cmocka_unit_test(test_tls_path_too_long),
	    cmocka_unit_test(test_log_levels),
	    cmocka_unit_test(test_durability),
	    cmocka_unit_test(test_booleans),
	    cmocka_unit_test(test_policy_values),
	    cmocka_unit_test(test_bind_values),
	    cmocka_unit_test(test_port_values),
	    cmocka_unit_test(test_listener_required_keys),
	    cmocka_unit_test(test_no_listener),
	    cmocka_unit_test(test_plaintext_needs_loopback),
	    cmocka_unit_test(test_open_policy_needs_loopback),
	    cmocka_unit_test(test_no_client_cert_allowed_on_tls),
	    cmocka_unit_test(test_duplicate_bind_port),
	    cmocka_unit_test(test_loopback_predicate),
	    cmocka_unit_test(test_comments_and_indentation),
	    cmocka_unit_test(test_crlf_and_bom),
	    cmocka_unit_test(test_long_line),
	    cmocka_unit_test(test_line_length_boundary),
	    cmocka_unit_test(test_first_error_wins_and_file_name),
	    cmocka_unit_test(test_failure_leaves_output_untouched),
	    cmocka_unit_test(test_error_buffer_edge_cases),
	    cmocka_unit_test(test_hostile_text_is_sanitised),
	    cmocka_unit_test(test_load_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
