/*
 * moat.conf parser and validator.
 *
 * libinih does the INI tokenising; everything around it is ours:
 *  - conf_reader_cb feeds inih one line at a time. It counts lines (the
 *    Debian build of inih has no INI_HANDLER_LINENO), refuses lines that would
 *    not fit inih's fixed line buffer instead of letting inih split them,
 *    strips leading blanks so inih's multi-line continuation never glues two
 *    keys together, and validates every [section] header itself so that
 *    sections without keys are still seen and listener headers have a line.
 *  - conf_key_cb validates each key against the tables below.
 *  - conf_finish applies the whole-file rules (listeners, loopback-only
 *    plaintext/open policy, path resolution).
 * Only the first error (by line) is reported, as "FILE:LINE: problem; fix: ...".
 * The caller's struct is written only on success.
 */
#include "core/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/assert.h"
#include "core/log.h"

/* How much of a user-supplied string we echo back in a message. */
#define CONF_ECHO_MAX 48u
/* Longest key name we bother to compare for "did you mean". */
#define CONF_SUGGEST_MAX 64u
/* Most keys any one section has ([broker]). */
#define CONF_MAX_KEYS 12u
/* Sections: [broker], [tls], [log] and the listeners. */
#define CONF_MAX_SECTIONS (3u + MOAT_MAX_LISTENERS)
#define CONF_LISTENER_PREFIX "listener."
#define CONF_LISTENER_PREFIX_LEN (sizeof(CONF_LISTENER_PREFIX) - 1u)

_Static_assert(MOAT_MAX_CONFIG_LINE >= 80u, "config lines must hold a path");
_Static_assert(MOAT_MAX_LISTENER_NAME + CONF_LISTENER_PREFIX_LEN < 50u,
	       "inih truncates section names at 49 characters");

enum conf_type {
	CONF_UINT,	 /* decimal, min..max */
	CONF_SIZE,	 /* decimal with optional K/KiB/M/MiB, min..max */
	CONF_BOOL,	 /* on/off, true/false, yes/no */
	CONF_PATH,	 /* file path; relative to data_dir */
	CONF_LEVEL,	 /* debug|info|warn|error */
	CONF_POLICY,	 /* default|open */
	CONF_DURABILITY, /* strict|relaxed */
	CONF_ADDR,	 /* numeric IPv4/IPv6 literal */
	CONF_PROTOCOL,	 /* mqtt|https */
	CONF_UNKNOWN,	 /* refuse|allow */
	CONF_URL,	 /* http(s)://, printable ASCII, up to MOAT_CRL_URL_MAX */
};

enum conf_key_id {
	K_WORKERS,
	K_MAX_PACKET_SIZE,
	K_MAX_KEEPALIVE,
	K_RECEIVE_MAXIMUM,
	K_MAX_INFLIGHT,
	K_MAX_QUEUED,
	K_MAX_CONNECTIONS,
	K_DURABILITY,
	K_CERT,
	K_KEY,
	K_CA,
	K_LEVEL,
	K_BIND,
	K_PORT,
	K_TLS,
	K_REQUIRE_CLIENT_CERT,
	K_POLICY,
	K_PROTOCOL,
	K_UNKNOWN_DEVICES,
	K_CERT_DAYS,
	K_CRL_URL,
	K_COMMIT_WINDOW_US,
	K_TLS_RESUMPTION,
};

struct conf_key {
	const char *name;
	enum conf_key_id id;
	enum conf_type type;
	unsigned long min;
	unsigned long max;
};

static const struct conf_key broker_keys[] = {
    {"workers", K_WORKERS, CONF_UINT, 0, MOAT_MAX_WORKERS},
    {"max_packet_size", K_MAX_PACKET_SIZE, CONF_SIZE, MOAT_MAX_PACKET_SIZE_MIN,
     MOAT_MAX_PACKET_SIZE_MAX},
    {"max_keepalive", K_MAX_KEEPALIVE, CONF_UINT, MOAT_MAX_KEEPALIVE_MIN, MOAT_MAX_KEEPALIVE_MAX},
    {"receive_maximum", K_RECEIVE_MAXIMUM, CONF_UINT, MOAT_RECEIVE_MAXIMUM_MIN,
     MOAT_RECEIVE_MAXIMUM_MAX},
    {"max_inflight", K_MAX_INFLIGHT, CONF_UINT, MOAT_MAX_INFLIGHT_MIN, MOAT_MAX_INFLIGHT_MAX},
    {"max_queued_messages", K_MAX_QUEUED, CONF_UINT, MOAT_MAX_QUEUED_MIN, MOAT_MAX_QUEUED_MAX},
    {"max_connections", K_MAX_CONNECTIONS, CONF_UINT, MOAT_MAX_CONNECTIONS_MIN,
     MOAT_MAX_CONNECTIONS_MAX},
    {"durability", K_DURABILITY, CONF_DURABILITY, 0, 0},
    {"commit_window_us", K_COMMIT_WINDOW_US, CONF_UINT, 0, MOAT_STORE_COMMIT_WINDOW_US_MAX},
    {"unknown_devices", K_UNKNOWN_DEVICES, CONF_UNKNOWN, 0, 0},
    {"cert_days", K_CERT_DAYS, CONF_UINT, MOAT_CERT_DAYS_MIN, MOAT_CERT_DAYS_MAX},
    {"crl_url", K_CRL_URL, CONF_URL, 0, 0},
};

static const struct conf_key tls_keys[] = {
    {"cert", K_CERT, CONF_PATH, 0, 0},
    {"key", K_KEY, CONF_PATH, 0, 0},
    {"ca", K_CA, CONF_PATH, 0, 0},
    {"tls_resumption", K_TLS_RESUMPTION, CONF_BOOL, 0, 0},
};

static const struct conf_key log_keys[] = {
    {"level", K_LEVEL, CONF_LEVEL, 0, 0},
};

static const struct conf_key listener_keys[] = {
    {"bind", K_BIND, CONF_ADDR, 0, 0},
    {"port", K_PORT, CONF_UINT, 1, 65535},
    {"tls", K_TLS, CONF_BOOL, 0, 0},
    {"require_client_cert", K_REQUIRE_CLIENT_CERT, CONF_BOOL, 0, 0},
    {"policy", K_POLICY, CONF_POLICY, 0, 0},
    {"protocol", K_PROTOCOL, CONF_PROTOCOL, 0, 0},
    {"tls_resumption", K_TLS_RESUMPTION, CONF_BOOL, 0, 0},
};

enum conf_section_kind { SEC_BROKER, SEC_TLS, SEC_LOG, SEC_LISTENER, SEC__COUNT };

struct conf_section_desc {
	const char *name; /* as written in messages */
	const struct conf_key *keys;
	size_t n_keys;
};

static const struct conf_section_desc section_descs[SEC__COUNT] = {
    [SEC_BROKER] = {"broker", broker_keys, MOAT_ARRAY_LEN(broker_keys)},
    [SEC_TLS] = {"tls", tls_keys, MOAT_ARRAY_LEN(tls_keys)},
    [SEC_LOG] = {"log", log_keys, MOAT_ARRAY_LEN(log_keys)},
    [SEC_LISTENER] = {"listener.NAME", listener_keys, MOAT_ARRAY_LEN(listener_keys)},
};

_Static_assert(MOAT_ARRAY_LEN(broker_keys) <= CONF_MAX_KEYS, "key_line too small");
_Static_assert(MOAT_ARRAY_LEN(listener_keys) <= CONF_MAX_KEYS, "key_line too small");

struct conf_section {
	enum conf_section_kind kind;
	unsigned line;			  /* line of the [header] */
	unsigned key_line[CONF_MAX_KEYS]; /* where each key was set; 0 = not set */
	size_t listener;		  /* index into conf.listeners (SEC_LISTENER) */
};

struct conf_parse {
	const char *file; /* name used in messages */
	const char *data_dir;
	struct moat_conf conf;
	/* input: exactly one of fp / text */
	FILE *fp;
	const char *text;
	size_t pos;
	unsigned lineno; /* lines handed to inih so far */
	/* sections seen, in file order */
	struct conf_section sections[CONF_MAX_SECTIONS];
	size_t n_sections;
	struct conf_section *cur;
	/* first error */
	bool failed;
	unsigned fail_line;
	moat_err fail_rc;
	char *err;
	size_t errlen;
};

/*
 * Record an error unless an earlier line already failed. Messages echo user
 * text only through conf_echo, so a hostile file cannot put terminal escapes
 * into the operator's console.
 */
static void conf_fail(struct conf_parse *st, unsigned line, moat_err rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void conf_fail(struct conf_parse *st, unsigned line, moat_err rc, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (st->failed && st->fail_line <= line)
		return;
	st->failed = true;
	st->fail_line = line;
	st->fail_rc = rc;
	if (st->err == NULL || st->errlen == 0)
		return;
	n = snprintf(st->err, st->errlen, "%s:%u: ", st->file, line);
	if (n < 0 || (size_t)n >= st->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(st->err + n, st->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Printable, bounded copy of untrusted text for messages. */
static const char *conf_echo(const char *s, char *buf, size_t buflen)
{
	size_t i = 0, o = 0;

	if (buflen < 4) {
		if (buflen > 0)
			buf[0] = '\0';
		return buf;
	}
	for (; s[i] != '\0' && o < buflen - 4 && i < CONF_ECHO_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];
		buf[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	if (s[i] != '\0') {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* Levenshtein distance, or SIZE_MAX when either string is too long to care. */
static size_t conf_distance(const char *a, const char *b)
{
	size_t row[CONF_SUGGEST_MAX + 1];
	size_t la = strlen(a), lb = strlen(b), i, j, diag, up, d = SIZE_MAX;

	if (la > CONF_SUGGEST_MAX || lb > CONF_SUGGEST_MAX)
		goto out;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		diag = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t best = diag + (a[i - 1] == b[j - 1] ? 0u : 1u);
			up = row[j];
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	d = row[lb];
out:
	return d;
}

/* Close enough to be a typo of `known`? Short names need a closer match. */
static bool conf_is_close(const char *typed, const char *known)
{
	size_t d = conf_distance(typed, known), len = strlen(known);

	return d <= 1 || (d <= 2 && len >= 4) || (d <= 3 && len >= 10);
}

static const struct conf_key *conf_find_key(const struct conf_section_desc *desc, const char *name)
{
	const struct conf_key *k = NULL;
	size_t i;

	for (i = 0; i < desc->n_keys; i++) {
		if (strcmp(desc->keys[i].name, name) == 0) {
			k = &desc->keys[i];
			break;
		}
	}
	return k;
}

static void conf_key_list(const struct conf_section_desc *desc, char *buf, size_t buflen)
{
	size_t i, o = 0;
	int n;

	buf[0] = '\0';
	for (i = 0; i < desc->n_keys && o < buflen; i++) {
		n = snprintf(buf + o, buflen - o, "%s%s", i ? ", " : "", desc->keys[i].name);
		if (n < 0)
			break;
		o += (size_t)n;
	}
}

static void conf_unknown_key(struct conf_parse *st, const char *name)
{
	const struct conf_section_desc *desc = &section_descs[st->cur->kind];
	char echo[CONF_ECHO_MAX + 4], keys[256], where[CONF_ECHO_MAX + 16];
	const char *close = NULL;
	size_t i, s;

	conf_key_list(desc, keys, sizeof(keys));
	if (st->cur->kind == SEC_LISTENER)
		snprintf(where, sizeof(where), "listener.%s",
			 st->conf.listeners[st->cur->listener].name);
	else
		snprintf(where, sizeof(where), "%s", desc->name);
	conf_echo(name, echo, sizeof(echo));

	/* A key that is right but in the wrong section deserves a direct hint. */
	for (s = 0; s < SEC__COUNT; s++) {
		if (s != st->cur->kind && conf_find_key(&section_descs[s], name) != NULL) {
			conf_fail(st, st->lineno, MOAT_E_CONFIG,
				  "key '%s' does not belong in [%s]; fix: move it to [%s]", echo,
				  where, section_descs[s].name);
			return;
		}
	}
	for (i = 0; i < desc->n_keys; i++) {
		if (conf_is_close(name, desc->keys[i].name)) {
			close = desc->keys[i].name;
			break;
		}
	}
	if (close != NULL)
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "unknown key '%s' in [%s]; fix: did you mean '%s'? (keys here: %s)", echo,
			  where, close, keys);
	else
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "unknown key '%s' in [%s]; fix: remove it or use one of: %s", echo, where,
			  keys);
}

enum conf_num_status { NUM_OK, NUM_NOT_NUMBER, NUM_NEGATIVE, NUM_OVERFLOW };

/*
 * Strict decimal: digits only (no sign, no blanks, no hex), no trailing
 * text. strtoul alone would accept " -1" as a huge positive number.
 */
static enum conf_num_status conf_parse_number(const char *v, bool size_suffix, unsigned long *out)
{
	enum conf_num_status st = NUM_NOT_NUMBER;
	unsigned long n, mult = 1;
	char *end = NULL;

	if (v[0] == '-' && isdigit((unsigned char)v[1])) {
		st = NUM_NEGATIVE;
		goto out;
	}
	if (!isdigit((unsigned char)v[0]))
		goto out;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno == ERANGE) {
		st = NUM_OVERFLOW;
		goto out;
	}
	if (errno != 0 || end == v)
		goto out;
	if (size_suffix) {
		while (*end == ' ' || *end == '\t')
			end++;
		if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kib") == 0) {
			mult = 1024ul;
			end += strlen(end);
		} else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mib") == 0) {
			mult = 1024ul * 1024ul;
			end += strlen(end);
		}
	}
	if (*end != '\0')
		goto out;
	if (n > ULONG_MAX / mult) {
		st = NUM_OVERFLOW;
		goto out;
	}
	*out = n * mult;
	st = NUM_OK;
out:
	return st;
}

static bool conf_parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"on", "true", "yes"};
	static const char *const no[] = {"off", "false", "no"};
	bool ok = false;
	size_t i;

	for (i = 0; i < MOAT_ARRAY_LEN(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			ok = true;
		} else if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			ok = true;
		}
	}
	return ok;
}

/* inet_pton into a 16-byte key; the family goes into *family. */
static bool conf_addr_parse(const char *addr, unsigned char out[16], int *family)
{
	bool ok = false;

	memset(out, 0, 16);
	if (inet_pton(AF_INET, addr, out) == 1) {
		*family = AF_INET;
		ok = true;
	} else if (inet_pton(AF_INET6, addr, out) == 1) {
		*family = AF_INET6;
		ok = true;
	}
	return ok;
}

bool moat_addr_is_loopback(const char *addr)
{
	unsigned char a[16];
	int family = 0;
	bool lo = false;

	if (addr == NULL || !conf_addr_parse(addr, a, &family))
		goto out;
	if (family == AF_INET) {
		lo = a[0] == 127;
	} else {
		static const unsigned char v6_loopback[16] = {[15] = 1};
		static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
		lo = memcmp(a, v6_loopback, 16) == 0 ||
		     (memcmp(a, v4_mapped, 12) == 0 && a[12] == 127);
	}
out:
	return lo;
}

static void conf_range_fix(const struct conf_key *k, char *buf, size_t buflen)
{
	if (k->id == K_WORKERS)
		snprintf(buf, buflen, "use a value from %lu to %lu (0 = one per core)", k->min,
			 k->max);
	else if (k->id == K_MAX_PACKET_SIZE)
		snprintf(buf, buflen,
			 "use a value from %lu to %lu (K, KiB, M and MiB suffixes work)", k->min,
			 k->max);
	else
		snprintf(buf, buflen, "use a value from %lu to %lu", k->min, k->max);
}

/* Store a validated number; the key tables guarantee the value fits. */
static void conf_store_number(struct conf_parse *st, const struct conf_key *k, unsigned long n)
{
	struct moat_conf *c = &st->conf;

	switch (k->id) {
	case K_WORKERS:
		c->workers = (unsigned)n;
		break;
	case K_MAX_PACKET_SIZE:
		c->lim.max_packet_size = (uint32_t)n;
		break;
	case K_MAX_KEEPALIVE:
		c->lim.max_keepalive = (uint16_t)n;
		break;
	case K_RECEIVE_MAXIMUM:
		c->lim.receive_maximum = (uint16_t)n;
		break;
	case K_MAX_INFLIGHT:
		c->lim.max_inflight = (uint16_t)n;
		break;
	case K_MAX_QUEUED:
		c->lim.max_queued_messages = (uint32_t)n;
		break;
	case K_MAX_CONNECTIONS:
		c->lim.max_connections = (uint32_t)n;
		break;
	case K_CERT_DAYS:
		c->cert_days = (unsigned)n;
		break;
	case K_COMMIT_WINDOW_US:
		c->commit_window_us = (uint32_t)n;
		break;
	case K_PORT:
		c->listeners[st->cur->listener].port = (uint16_t)n;
		break;
	default:
		conf_fail(st, st->lineno, MOAT_E_INTERNAL,
			  "key '%s' is not numeric; fix: report this bug", k->name);
		break;
	}
}

static void conf_set_number(struct conf_parse *st, const struct conf_key *k, const char *v)
{
	char echo[CONF_ECHO_MAX + 4], fix[128];
	unsigned long n = 0;

	conf_echo(v, echo, sizeof(echo));
	conf_range_fix(k, fix, sizeof(fix));
	switch (conf_parse_number(v, k->type == CONF_SIZE, &n)) {
	case NUM_OK:
		if (n < k->min || n > k->max)
			conf_fail(st, st->lineno, MOAT_E_CONFIG, "%s = %s is out of range; fix: %s",
				  k->name, echo, fix);
		else
			conf_store_number(st, k, n);
		break;
	case NUM_NEGATIVE:
		conf_fail(st, st->lineno, MOAT_E_CONFIG, "%s = %s is negative; fix: %s", k->name,
			  echo, fix);
		break;
	case NUM_OVERFLOW:
		conf_fail(st, st->lineno, MOAT_E_CONFIG, "%s = %s is out of range; fix: %s",
			  k->name, echo, fix);
		break;
	case NUM_NOT_NUMBER:
	default:
		/* '#' is a comment only at the start of a line; say so when it bites. */
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "%s = '%s' is not a whole decimal number%s; fix: %s", k->name, echo,
			  strchr(v, '#') ? " (inline comments start with ' ;', not '#')" : "", fix);
		break;
	}
}

static void conf_set_path(struct conf_parse *st, const struct conf_key *k, const char *v)
{
	char *dst = k->id == K_CERT  ? st->conf.tls_cert
		    : k->id == K_KEY ? st->conf.tls_key
				     : st->conf.tls_ca;
	size_t len = strlen(v), i;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch < 0x20 || ch == 0x7f) {
			conf_fail(st, st->lineno, MOAT_E_CONFIG,
				  "%s path contains a control character; fix: rename the file",
				  k->name);
			return;
		}
	}
	if (len >= MOAT_MAX_PATH) {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "%s path is longer than %u bytes; fix: use a shorter path", k->name,
			  MOAT_MAX_PATH - 1u);
		return;
	}
	memcpy(dst, v, len + 1);
}

static void conf_set_addr(struct conf_parse *st, const struct conf_key *k, const char *v)
{
	struct moat_listener_conf *l = &st->conf.listeners[st->cur->listener];
	char echo[CONF_ECHO_MAX + 4];
	unsigned char a[16];
	int family;
	size_t len = strlen(v);

	conf_echo(v, echo, sizeof(echo));
	if (v[0] == '[') {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "%s = '%s' is bracketed; fix: write the IPv6 address without brackets "
			  "(e.g. ::1)",
			  k->name, echo);
		return;
	}
	if (len >= sizeof(l->bind) || !conf_addr_parse(v, a, &family)) {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "%s = '%s' is not a numeric IPv4 or IPv6 address; fix: use e.g. "
			  "127.0.0.1, 0.0.0.0, ::1 or :: (host names are not resolved)",
			  k->name, echo);
		return;
	}
	memcpy(l->bind, v, len + 1);
}

static void conf_set_choice(struct conf_parse *st, const struct conf_key *k, const char *v)
{
	char echo[CONF_ECHO_MAX + 4];
	bool b = false;

	conf_echo(v, echo, sizeof(echo));
	switch (k->type) {
	case CONF_BOOL:
		if (!conf_parse_bool(v, &b)) {
			conf_fail(st, st->lineno, MOAT_E_CONFIG,
				  "%s = '%s' is not on or off; fix: use on or off (true/false and "
				  "yes/no also work)",
				  k->name, echo);
			break;
		}
		if (k->id == K_TLS_RESUMPTION && st->cur->kind == SEC_TLS) {
			st->conf.tls_resumption = b;
		} else if (k->id == K_TLS_RESUMPTION) {
			st->conf.listeners[st->cur->listener].tls_resumption = b;
			st->conf.listeners[st->cur->listener].tls_resumption_set = true;
		} else if (k->id == K_TLS) {
			st->conf.listeners[st->cur->listener].tls = b;
		} else {
			st->conf.listeners[st->cur->listener].require_client_cert = b;
			st->conf.listeners[st->cur->listener].require_client_cert_set = true;
		}
		break;
	case CONF_UNKNOWN:
		if (strcasecmp(v, "refuse") == 0)
			st->conf.unknown_allow = false;
		else if (strcasecmp(v, "allow") == 0)
			st->conf.unknown_allow = true;
		else
			conf_fail(
			    st, st->lineno, MOAT_E_CONFIG,
			    "%s = '%s' is not a choice; fix: use refuse (only registered "
			    "identities connect) or allow (unregistered CA-signed devices get "
			    "the group \"devices\")",
			    k->name, echo);
		break;
	case CONF_PROTOCOL:
		if (strcasecmp(v, "mqtt") == 0)
			st->conf.listeners[st->cur->listener].protocol = MOAT_PROTO_MQTT;
		else if (strcasecmp(v, "https") == 0)
			st->conf.listeners[st->cur->listener].protocol = MOAT_PROTO_HTTPS;
		else
			conf_fail(st, st->lineno, MOAT_E_CONFIG,
				  "%s = '%s' is not a protocol; fix: use mqtt (devices) or https "
				  "(management API)",
				  k->name, echo);
		break;
	case CONF_LEVEL:
		if (strcasecmp(v, "debug") == 0)
			st->conf.log_level = MOAT_LOG_DEBUG;
		else if (strcasecmp(v, "info") == 0)
			st->conf.log_level = MOAT_LOG_INFO;
		else if (strcasecmp(v, "warn") == 0)
			st->conf.log_level = MOAT_LOG_WARN;
		else if (strcasecmp(v, "error") == 0)
			st->conf.log_level = MOAT_LOG_ERROR;
		else
			conf_fail(
			    st, st->lineno, MOAT_E_CONFIG,
			    "%s = '%s' is not a log level; fix: use debug, info, warn or error",
			    k->name, echo);
		break;
	case CONF_DURABILITY:
		if (strcasecmp(v, "strict") == 0)
			st->conf.durability = MOAT_DURABILITY_STRICT;
		else if (strcasecmp(v, "relaxed") == 0)
			st->conf.durability = MOAT_DURABILITY_RELAXED;
		else
			conf_fail(st, st->lineno, MOAT_E_CONFIG,
				  "%s = '%s' is not a durability mode; fix: use strict (on disk "
				  "before acknowledged) or relaxed (flushed within 100 ms)",
				  k->name, echo);
		break;
	case CONF_POLICY:
		if (strcasecmp(v, "default") == 0)
			st->conf.listeners[st->cur->listener].policy = MOAT_POLICY_DEFAULT;
		else if (strcasecmp(v, "open") == 0)
			st->conf.listeners[st->cur->listener].policy = MOAT_POLICY_OPEN;
		else
			conf_fail(st, st->lineno, MOAT_E_CONFIG,
				  "%s = '%s' is not a policy; fix: use default (or open, loopback "
				  "only)",
				  k->name, echo);
		break;
	case CONF_UINT:
	case CONF_SIZE:
	case CONF_PATH:
	case CONF_ADDR:
	default:
		conf_fail(st, st->lineno, MOAT_E_INTERNAL,
			  "key '%s' has no choice parser; fix: report this bug", k->name);
		break;
	}
}

/* The CRL URL goes into every certificate: an http(s) URL of printable
 * ASCII without spaces, short enough for MOAT_CRL_URL_MAX. */
static void conf_set_url(struct conf_parse *st, const struct conf_key *k, const char *v)
{
	size_t i, n = strlen(v);
	bool ok = n <= MOAT_CRL_URL_MAX && ((n > 8 && strncmp(v, "https://", 8) == 0) ||
					    (n > 7 && strncmp(v, "http://", 7) == 0));

	for (i = 0; ok && i < n; i++)
		ok = v[i] > 0x20 && v[i] < 0x7f;
	if (!ok) {
		conf_fail(
		    st, st->lineno, MOAT_E_CONFIG,
		    "%s is not an http:// or https:// URL of at most %u printable characters; "
		    "fix: e.g. %s = https://moat.example.com:8443/crl",
		    k->name, MOAT_CRL_URL_MAX, k->name);
		return;
	}
	memcpy(st->conf.crl_url, v, n + 1);
}

static bool conf_section_matches(const struct conf_parse *st, const char *section)
{
	const struct conf_section *s = st->cur;

	if (s->kind != SEC_LISTENER)
		return strcmp(section, section_descs[s->kind].name) == 0;
	return strncmp(section, CONF_LISTENER_PREFIX, CONF_LISTENER_PREFIX_LEN) == 0 &&
	       strcmp(section + CONF_LISTENER_PREFIX_LEN, st->conf.listeners[s->listener].name) ==
		   0;
}

/* inih calls this for every key = value, right after conf_reader_cb read it. */
static int conf_key_cb(void *user, const char *section, const char *name, const char *value)
{
	struct conf_parse *st = user;
	const struct conf_key *k;
	char echo[CONF_ECHO_MAX + 4];
	size_t idx;

	if (st->failed)
		goto out;
	conf_echo(name, echo, sizeof(echo));
	if (st->cur == NULL) {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "key '%s' is outside any section; fix: put it under [broker], [tls], "
			  "[log] or [listener.NAME]",
			  echo);
		goto out;
	}
	/* The reader and inih must agree on the section; a fuzzer finds it if not. */
	if (NEVER(!conf_section_matches(st, section))) {
		conf_fail(st, st->lineno, MOAT_E_INTERNAL,
			  "section header not understood; fix: write it as [name]");
		goto out;
	}
	if (name[0] == '\0') {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "missing key name before '='; fix: write key = value");
		goto out;
	}
	k = conf_find_key(&section_descs[st->cur->kind], name);
	if (k == NULL) {
		conf_unknown_key(st, name);
		goto out;
	}
	idx = (size_t)(k - section_descs[st->cur->kind].keys);
	if (st->cur->key_line[idx] != 0) {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "duplicate key '%s' (first set on line %u); fix: keep only one", k->name,
			  st->cur->key_line[idx]);
		goto out;
	}
	st->cur->key_line[idx] = st->lineno;
	if (value[0] == '\0') {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "%s has an empty value; fix: set a value or delete the line to use the "
			  "default",
			  k->name);
		goto out;
	}
	switch (k->type) {
	case CONF_UINT:
	case CONF_SIZE:
		conf_set_number(st, k, value);
		break;
	case CONF_PATH:
		conf_set_path(st, k, value);
		break;
	case CONF_ADDR:
		conf_set_addr(st, k, value);
		break;
	case CONF_URL:
		conf_set_url(st, k, value);
		break;
	case CONF_BOOL:
	case CONF_LEVEL:
	case CONF_POLICY:
	case CONF_DURABILITY:
	case CONF_PROTOCOL:
	case CONF_UNKNOWN:
	default:
		conf_set_choice(st, k, value);
		break;
	}
out:
	/* Errors are tracked in st; keep inih's return value for syntax errors. */
	return 1;
}

static bool conf_listener_name_ok(const char *name, size_t len)
{
	size_t i;
	bool ok = len >= 1 && len <= MOAT_MAX_LISTENER_NAME;

	for (i = 0; ok && i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
	}
	return ok;
}

static void conf_begin_listener(struct conf_parse *st, const char *name, size_t len)
{
	struct moat_listener_conf *l;
	struct conf_section *s;
	char echo[CONF_ECHO_MAX + 4];
	size_t i;

	if (!conf_listener_name_ok(name, len)) {
		conf_echo(name, echo, sizeof(echo));
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "listener name '%s' is invalid; fix: use 1 to %u characters from a-z, "
			  "0-9, '_' and '-', e.g. [listener.mqtts]",
			  echo, MOAT_MAX_LISTENER_NAME);
		return;
	}
	for (i = 0; i < st->conf.n_listeners; i++) {
		if (strcmp(st->conf.listeners[i].name, name) == 0) {
			conf_fail(st, st->lineno, MOAT_E_CONFIG,
				  "duplicate section [listener.%s] (first on line %u); fix: give "
				  "each listener its own name",
				  name, st->conf.listeners[i].line);
			return;
		}
	}
	if (st->conf.n_listeners >= MOAT_MAX_LISTENERS ||
	    NEVER(st->n_sections >= CONF_MAX_SECTIONS)) {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "too many listeners; fix: configure at most %u", MOAT_MAX_LISTENERS);
		return;
	}
	l = &st->conf.listeners[st->conf.n_listeners];
	memset(l, 0, sizeof(*l));
	memcpy(l->name, name, len);
	l->name[len] = '\0';
	l->tls = true;
	l->require_client_cert = true;
	l->policy = MOAT_POLICY_DEFAULT;
	l->line = st->lineno;
	s = &st->sections[st->n_sections++];
	memset(s, 0, sizeof(*s));
	s->kind = SEC_LISTENER;
	s->line = st->lineno;
	s->listener = st->conf.n_listeners++;
	st->cur = s;
}

static void conf_begin_fixed(struct conf_parse *st, enum conf_section_kind kind)
{
	struct conf_section *s;
	size_t i;

	for (i = 0; i < st->n_sections; i++) {
		if (st->sections[i].kind == kind) {
			conf_fail(st, st->lineno, MOAT_E_CONFIG,
				  "duplicate section [%s] (first on line %u); fix: merge the two",
				  section_descs[kind].name, st->sections[i].line);
			return;
		}
	}
	if (NEVER(st->n_sections >= CONF_MAX_SECTIONS)) {
		conf_fail(st, st->lineno, MOAT_E_INTERNAL,
			  "too many sections; fix: report this bug");
		return;
	}
	s = &st->sections[st->n_sections++];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->line = st->lineno;
	st->cur = s;
}

static void conf_unknown_section(struct conf_parse *st, const char *name)
{
	static const char *const known[] = {"broker", "tls", "log", "listener"};
	char echo[CONF_ECHO_MAX + 4], head[16];
	const char *close = NULL, *dot;
	size_t i;

	conf_echo(name, echo, sizeof(echo));
	for (i = 0; i < MOAT_ARRAY_LEN(known); i++) {
		if (conf_is_close(name, known[i]))
			close = known[i];
	}
	/* "[listner.x]": judge the part before the dot. */
	dot = strchr(name, '.');
	if (close == NULL && dot != NULL && (size_t)(dot - name) < sizeof(head)) {
		memcpy(head, name, (size_t)(dot - name));
		head[dot - name] = '\0';
		if (conf_is_close(head, "listener"))
			close = "listener";
	}
	if (strcmp(name, "listener") == 0)
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "listener section has no name; fix: write [listener.NAME], e.g. "
			  "[listener.mqtts]");
	else if (close != NULL && strcmp(close, "listener") == 0)
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "unknown section [%s]; fix: did you mean [listener.NAME]?", echo);
	else if (close != NULL)
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "unknown section [%s]; fix: did you mean [%s]?", echo, close);
	else
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "unknown section [%s]; fix: use [broker], [tls], [log] or "
			  "[listener.NAME]",
			  echo);
}

/* line starts with '['; it is NUL-terminated and has no leading blanks. */
static void conf_header(struct conf_parse *st, char *line)
{
	char *end = strchr(line, ']'), *rest, *name = line + 1;
	size_t len;

	if (end == NULL) {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "section header has no closing ']'; fix: write it as [name]");
		return;
	}
	for (rest = end + 1; *rest == ' ' || *rest == '\t' || *rest == '\r'; rest++)
		;
	if (*rest != '\0' && *rest != ';' && *rest != '#') {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "text after the section header; fix: put nothing but a ';' comment "
			  "after ']'");
		return;
	}
	len = (size_t)(end - name);
	*end = '\0';
	if (len == 0)
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "empty section name; fix: use [broker], [tls], [log] or [listener.NAME]");
	else if (strcmp(name, "broker") == 0)
		conf_begin_fixed(st, SEC_BROKER);
	else if (strcmp(name, "tls") == 0)
		conf_begin_fixed(st, SEC_TLS);
	else if (strcmp(name, "log") == 0)
		conf_begin_fixed(st, SEC_LOG);
	else if (strncmp(name, CONF_LISTENER_PREFIX, CONF_LISTENER_PREFIX_LEN) == 0)
		conf_begin_listener(st, name + CONF_LISTENER_PREFIX_LEN,
				    len - CONF_LISTENER_PREFIX_LEN);
	else
		conf_unknown_section(st, name);
	*end = ']';
}

static int conf_getc(struct conf_parse *st)
{
	int ch = EOF;

	if (st->fp != NULL)
		ch = getc(st->fp);
	else if (st->text[st->pos] != '\0')
		ch = (unsigned char)st->text[st->pos++];
	return ch;
}

/*
 * fgets-style reader for ini_parse_stream. Returns NULL at end of input and
 * as soon as an error is recorded: nothing after the first error matters.
 */
static char *conf_reader_cb(char *str, int num, void *stream)
{
	struct conf_parse *st = stream;
	size_t cap, limit, len = 0, raw = 0, content, skip = 0;
	bool nul = false;
	char *ret = NULL;
	int ch = EOF;

	/* inih wants room for '\r', '\n' and the NUL beyond the longest line. */
	if (st->failed || num < 8)
		goto out;
	cap = (size_t)num - 2;
	limit = (size_t)num - 3;
	if (limit > MOAT_MAX_CONFIG_LINE)
		limit = MOAT_MAX_CONFIG_LINE;
	while ((ch = conf_getc(st)) != EOF && ch != '\n') {
		if (ch == '\0')
			nul = true;
		if (len < cap)
			str[len++] = (char)ch;
		raw++;
	}
	if (st->fp != NULL && ferror(st->fp)) {
		conf_fail(st, st->lineno + 1, MOAT_E_IO, "read error: %s; fix: check the file",
			  strerror(errno));
		goto out;
	}
	if (ch == EOF && raw == 0)
		goto out;
	st->lineno++;
	content = raw;
	if (raw <= cap && len > 0 && str[len - 1] == '\r')
		content--;
	if (content > limit) {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "line is longer than %zu characters; fix: shorten it (e.g. use a path "
			  "relative to the data directory)",
			  limit);
		goto out;
	}
	if (nul) {
		conf_fail(st, st->lineno, MOAT_E_CONFIG,
			  "line contains a NUL byte; fix: save the file as plain text");
		goto out;
	}
	str[len] = '\0';
	if (st->lineno == 1 && len >= 3 && memcmp(str, "\xef\xbb\xbf", 3) == 0)
		skip = 3;
	/* Leading blanks would make inih treat the line as a continuation. */
	while (skip < len && isspace((unsigned char)str[skip]))
		skip++;
	len -= skip;
	memmove(str, str + skip, len + 1);
	if (str[0] == '[') {
		conf_header(st, str);
	} else if (str[0] != '\0' && str[0] != ';' && str[0] != '#') {
		char *sep = strpbrk(str, "=:");
		if (sep == NULL || *sep == ':')
			conf_fail(st, st->lineno, MOAT_E_CONFIG,
				  "expected 'key = value'; fix: write key = value, a [section] "
				  "header, or a comment starting with ';' or '#'");
	}
	if (st->failed)
		goto out;
	str[len] = '\n';
	str[len + 1] = '\0';
	ret = str;
out:
	return ret;
}

/* Join a relative path onto data_dir; absolute paths are kept. */
static bool conf_resolve_path(const char *data_dir, char *path)
{
	char joined[MOAT_MAX_PATH];
	size_t dl;
	bool ok = false;
	int n;

	if (path[0] == '/' || data_dir == NULL || data_dir[0] == '\0') {
		ok = true;
		goto out;
	}
	dl = strlen(data_dir);
	n = snprintf(joined, sizeof(joined), "%s%s%s", data_dir, data_dir[dl - 1] == '/' ? "" : "/",
		     path);
	if (n < 0 || (size_t)n >= sizeof(joined))
		goto out;
	memcpy(path, joined, (size_t)n + 1);
	ok = true;
out:
	return ok;
}

static void conf_finish_paths(struct conf_parse *st)
{
	char *paths[3] = {st->conf.tls_cert, st->conf.tls_key, st->conf.tls_ca};
	static const char *const names[3] = {"cert", "key", "ca"};
	unsigned line = st->lineno ? st->lineno : 1;
	size_t i, s;

	for (i = 0; i < 3; i++) {
		if (conf_resolve_path(st->data_dir, paths[i]))
			continue;
		for (s = 0; s < st->n_sections; s++) {
			if (st->sections[s].kind == SEC_TLS && st->sections[s].key_line[i] != 0)
				line = st->sections[s].key_line[i];
		}
		conf_fail(st, line, MOAT_E_CONFIG,
			  "[tls] %s path joined to the data directory is longer than %u bytes; "
			  "fix: use an absolute or shorter path",
			  names[i], MOAT_MAX_PATH - 1u);
		break;
	}
}

static void conf_finish_listeners(struct conf_parse *st)
{
	size_t i, j;

	if (st->conf.n_listeners == 0) {
		conf_fail(st, st->lineno ? st->lineno : 1, MOAT_E_CONFIG,
			  "no listener configured; fix: add a [listener.NAME] section with bind "
			  "and port (moat init writes one)");
		goto out;
	}
	for (i = 0; i < st->conf.n_listeners; i++) {
		const struct moat_listener_conf *l = &st->conf.listeners[i];
		unsigned char a[16], b[16];
		int fa = 0, fb = 0;

		if (l->bind[0] == '\0') {
			conf_fail(st, l->line, MOAT_E_CONFIG,
				  "[listener.%s] has no bind address; fix: add bind = "
				  "0.0.0.0 (all IPv4) or bind = 127.0.0.1 (this host only)",
				  l->name);
			goto out;
		}
		if (l->port == 0) {
			conf_fail(st, l->line, MOAT_E_CONFIG,
				  "[listener.%s] has no port; fix: add port = 8883 (MQTT over TLS)",
				  l->name);
			goto out;
		}
		if (!l->tls && !moat_addr_is_loopback(l->bind)) {
			conf_fail(st, l->line, MOAT_E_CONFIG,
				  "[listener.%s]: plaintext listener must bind a loopback address "
				  "(127.0.0.0/8 or ::1); fix: set bind = 127.0.0.1 or tls = on",
				  l->name);
			goto out;
		}
		if (l->protocol == MOAT_PROTO_HTTPS && !l->tls) {
			conf_fail(st, l->line, MOAT_E_CONFIG,
				  "[listener.%s]: protocol = https needs tls = on (operator "
				  "passwords and session cookies never travel in plaintext); fix: "
				  "remove tls = off",
				  l->name);
			goto out;
		}
		if (l->protocol == MOAT_PROTO_HTTPS && l->policy == MOAT_POLICY_OPEN) {
			conf_fail(st, l->line, MOAT_E_CONFIG,
				  "[listener.%s]: policy applies to MQTT listeners only; fix: "
				  "remove policy = open from this https listener",
				  l->name);
			goto out;
		}
		if (l->policy == MOAT_POLICY_OPEN && !moat_addr_is_loopback(l->bind)) {
			conf_fail(
			    st, l->line, MOAT_E_CONFIG,
			    "[listener.%s]: policy = open lets any client read and write every "
			    "topic and must bind a loopback address (127.0.0.0/8 or ::1); fix: "
			    "set bind = 127.0.0.1 or policy = default",
			    l->name);
			goto out;
		}
		if (l->protocol == MOAT_PROTO_HTTPS && !l->require_client_cert_set)
			st->conf.listeners[i].require_client_cert = false;
		if (!l->tls_resumption_set)
			st->conf.listeners[i].tls_resumption = st->conf.tls_resumption;
		if (!conf_addr_parse(l->bind, a, &fa))
			continue; /* unreachable: bind was validated when set */
		for (j = 0; j < i; j++) {
			const struct moat_listener_conf *o = &st->conf.listeners[j];
			if (o->port != l->port || !conf_addr_parse(o->bind, b, &fb) || fa != fb ||
			    memcmp(a, b, 16) != 0)
				continue;
			conf_fail(
			    st, l->line, MOAT_E_CONFIG,
			    "[listener.%s] uses %s port %u like [listener.%s] on line %u; fix: "
			    "change bind or port",
			    l->name, l->bind, (unsigned)l->port, o->name, o->line);
			goto out;
		}
	}
out:
	return;
}

static moat_err conf_run(struct conf_parse *st, struct moat_conf *c)
{
	moat_err rc = MOAT_E_CONFIG;
	int ret;

	moat_conf_defaults(&st->conf);
	if (st->err != NULL && st->errlen > 0)
		st->err[0] = '\0';
	ret = ini_parse_stream(conf_reader_cb, st, conf_key_cb, st);
	if (ret == -2) {
		rc = MOAT_E_NOMEM;
		conf_fail(st, st->lineno, MOAT_E_NOMEM, "out of memory; fix: retry");
		goto out;
	}
	if (ret > 0)
		conf_fail(st, (unsigned)ret, MOAT_E_CONFIG,
			  "cannot parse this line; fix: write key = value, a [section] header, or "
			  "a comment starting with ';' or '#'");
	else if (ret < 0)
		conf_fail(st, st->lineno, MOAT_E_INTERNAL, "parser failed; fix: report this bug");
	if (!st->failed)
		conf_finish_listeners(st);
	if (!st->failed)
		conf_finish_paths(st);
	if (st->failed) {
		rc = st->fail_rc;
		goto out;
	}
	*c = st->conf;
	rc = MOAT_OK;
out:
	return rc;
}

void moat_conf_defaults(struct moat_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->workers = 0;
	c->lim.max_packet_size = MOAT_MAX_PACKET_SIZE_DEFAULT;
	c->lim.max_keepalive = MOAT_MAX_KEEPALIVE_DEFAULT;
	c->lim.receive_maximum = MOAT_RECEIVE_MAXIMUM_DEFAULT;
	c->lim.max_inflight = MOAT_MAX_INFLIGHT_DEFAULT;
	c->lim.max_queued_messages = MOAT_MAX_QUEUED_DEFAULT;
	c->lim.max_connections = MOAT_MAX_CONNECTIONS_DEFAULT;
	c->cert_days = MOAT_CERT_DAYS_DEFAULT;
	c->commit_window_us = MOAT_STORE_COMMIT_WINDOW_US_DEFAULT;
	memcpy(c->tls_cert, "server.crt", sizeof("server.crt"));
	memcpy(c->tls_key, "server.key", sizeof("server.key"));
	memcpy(c->tls_ca, "ca.crt", sizeof("ca.crt"));
	c->tls_resumption = true;
	c->log_level = MOAT_LOG_INFO;
	c->n_listeners = 0;
}

moat_err moat_conf_parse_string(const char *text, const char *name, const char *data_dir,
				struct moat_conf *c, char *err, size_t errlen)
{
	struct conf_parse *st = NULL;
	moat_err rc = MOAT_E_INVAL;

	if (text == NULL || c == NULL)
		goto out;
	/* ~14 KiB: keep it off the stack of whatever thread reloads config. */
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		rc = MOAT_E_NOMEM;
		goto out;
	}
	st->file = name != NULL ? name : "moat.conf";
	st->data_dir = data_dir;
	st->text = text;
	st->err = err;
	st->errlen = errlen;
	rc = conf_run(st, c);
out:
	free(st);
	return rc;
}

moat_err moat_conf_load(const char *path, const char *data_dir, struct moat_conf *c, char *err,
			size_t errlen)
{
	struct conf_parse *st = NULL;
	moat_err rc = MOAT_E_INVAL;
	FILE *fp = NULL;

	if (path == NULL || c == NULL)
		goto out;
	fp = fopen(path, "re");
	if (fp == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen,
				 "%s: cannot open: %s; fix: check the path, or run "
				 "'moat init --dir DIR' to create it",
				 path, strerror(errno));
		rc = MOAT_E_IO;
		goto out;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		rc = MOAT_E_NOMEM;
		goto out;
	}
	st->file = path;
	st->data_dir = data_dir;
	st->fp = fp;
	st->err = err;
	st->errlen = errlen;
	rc = conf_run(st, c);
out:
	free(st);
	if (fp != NULL)
		fclose(fp);
	return rc;
}

static bool restart_key(char *key, size_t keylen, const char *section, const char *name)
{
	snprintf(key, keylen, "%s.%s", section, name);
	return true;
}

static bool listener_needs_restart(const struct moat_listener_conf *a,
				   const struct moat_listener_conf *b, char *key, size_t keylen)
{
	char sec[sizeof(a->name) + CONF_LISTENER_PREFIX_LEN];

	snprintf(sec, sizeof(sec), CONF_LISTENER_PREFIX "%s", a->name);
	if (strcmp(a->bind, b->bind) != 0)
		return restart_key(key, keylen, sec, "bind");
	if (a->port != b->port)
		return restart_key(key, keylen, sec, "port");
	if (a->protocol != b->protocol)
		return restart_key(key, keylen, sec, "protocol");
	if (a->tls != b->tls)
		return restart_key(key, keylen, sec, "tls");
	/* Workers and the HTTP thread read a listener's settings without a
	 * lock for as long as it exists. */
	if (a->require_client_cert != b->require_client_cert)
		return restart_key(key, keylen, sec, "require_client_cert");
	if (a->policy != b->policy)
		return restart_key(key, keylen, sec, "policy");
	return false;
}

bool moat_conf_needs_restart(const struct moat_conf *cur, const struct moat_conf *next, char *key,
			     size_t keylen)
{
	size_t i, j;

	if (cur->workers != next->workers)
		return restart_key(key, keylen, "broker", "workers");
	/* The store is opened with it. */
	if (cur->durability != next->durability)
		return restart_key(key, keylen, "broker", "durability");
	if (cur->commit_window_us != next->commit_window_us)
		return restart_key(key, keylen, "broker", "commit_window_us");
	/* The management API is given it at start. */
	if (cur->cert_days != next->cert_days)
		return restart_key(key, keylen, "broker", "cert_days");
	/* The files are re-read on every reload; their paths are also read by
	 * the management thread, so they stay. */
	if (strcmp(cur->tls_cert, next->tls_cert) != 0)
		return restart_key(key, keylen, "tls", "cert");
	if (strcmp(cur->tls_key, next->tls_key) != 0)
		return restart_key(key, keylen, "tls", "key");
	if (strcmp(cur->tls_ca, next->tls_ca) != 0)
		return restart_key(key, keylen, "tls", "ca");
	/* Listening sockets are opened once. */
	for (i = 0; i < cur->n_listeners; i++) {
		for (j = 0; j < next->n_listeners; j++)
			if (strcmp(cur->listeners[i].name, next->listeners[j].name) == 0)
				break;
		if (j == next->n_listeners) {
			snprintf(key, keylen, CONF_LISTENER_PREFIX "%s", cur->listeners[i].name);
			return true;
		}
		if (listener_needs_restart(&cur->listeners[i], &next->listeners[j], key, keylen))
			return true;
	}
	for (j = 0; j < next->n_listeners; j++) {
		for (i = 0; i < cur->n_listeners; i++)
			if (strcmp(cur->listeners[i].name, next->listeners[j].name) == 0)
				break;
		if (i == cur->n_listeners) {
			snprintf(key, keylen, CONF_LISTENER_PREFIX "%s", next->listeners[j].name);
			return true;
		}
	}
	return false;
}

static const char default_text[] =
    "; moat.conf, written by `moat init`.\n"
    "; Every key is described in docs/configuration.md. The values below are the\n"
    "; defaults; a key you delete takes its default. Comments start with ';' or\n"
    "; '#' at the start of a line; after a value only ' ;' starts a comment.\n"
    "\n"
    "[broker]\n"
    "; Worker threads (event loops); 0 = one per CPU core, at most 64.\n"
    "workers = 0\n"
    "; Largest packet a client may send (1K to 16M; K/KiB/M/MiB suffixes).\n"
    "max_packet_size = 256KiB\n"
    "; Longest keepalive (seconds) a client may ask for; longer is lowered.\n"
    "max_keepalive = 300\n"
    "; QoS 1/2 messages a client may have unacknowledged towards us.\n"
    "receive_maximum = 64\n"
    "; QoS 1/2 messages we keep in flight to one client.\n"
    "max_inflight = 32\n"
    "; Messages queued per session beyond the inflight window.\n"
    "max_queued_messages = 1000\n"
    "; Concurrent connections; each idle mTLS connection costs about 30 KB.\n"
    "max_connections = 100000\n"
    "; strict: a retained QoS 1/2 message is on disk before it is acknowledged;\n"
    "; relaxed: written within 100 ms (a power loss may lose the last writes).\n"
    "durability = strict\n"
    "; strict: when acknowledgements come closer together than this, the\n"
    "; writer waits up to this long (microseconds, 0 to 20000) for more to\n"
    "; share one fsync.\n"
    "commit_window_us = 1000\n"
    "; A device the registry does not know: refuse (register it first: moat\n"
    "; device register) or allow (treated as a member of group \"devices\").\n"
    "unknown_devices = refuse\n"
    "; Lifetime of certificates issued by enrollment (days, 1 to 825).\n"
    "cert_days = 90\n"
    "; The CRL URL every issued certificate names; by default https://, the\n"
    "; first HTTPS listener's address (localhost for 0.0.0.0) and port, /crl.\n"
    "; crl_url = https://moat.example.com:8443/crl\n"
    "\n"
    "[tls]\n"
    "; Relative paths are relative to the data directory.\n"
    "cert = server.crt\n"
    "key = server.key\n"
    "ca = ca.crt\n"
    "; Session resumption with tickets (on or off; also per listener): a device\n"
    "; that reconnects within a day skips the full handshake. The keys survive\n"
    "; restarts sealed by the key process (docs/security.md).\n"
    "tls_resumption = on\n"
    "\n"
    "[log]\n"
    "; debug, info, warn or error\n"
    "level = info\n"
    "\n"
    "; MQTT over mutual TLS: a device's client certificate is its identity.\n"
    "[listener.mqtts]\n"
    "bind = 0.0.0.0\n"
    "port = 8883\n"
    "tls = on\n"
    "require_client_cert = on\n"
    "policy = default\n"
    "\n"
    "; The management API (HTTPS): operators log in with a password and TOTP.\n"
    "; Loopback by default; set bind = 0.0.0.0 to reach it from other hosts.\n"
    "[listener.api]\n"
    "bind = 127.0.0.1\n"
    "port = 8443\n"
    "protocol = https\n"
    "\n"
    "; WARNING: the listener below speaks plaintext MQTT without client\n"
    "; certificates and lets any client publish and subscribe to every topic.\n"
    "; It exists for running MQTT conformance test suites on this host only;\n"
    "; moat refuses it on any address but loopback. Never use it in production.\n"
    "; [listener.local]\n"
    "; bind = 127.0.0.1\n"
    "; port = 1883\n"
    "; tls = off\n"
    "; policy = open\n";

const char *moat_conf_default_text(void)
{
	return default_text;
}
