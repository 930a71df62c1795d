/*
 * moat.conf: INI parsed by libinih. Every key is validated; an unknown
 * section/key or a bad value is an error naming file:line and the fix.
 * docs/configuration.md lists every key.
 */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/limits.h"

enum moat_policy_kind {
	MOAT_POLICY_DEFAULT = 0, /* deny by default; device X: pub d/X/#, sub c/X/# and d/X/# */
	MOAT_POLICY_OPEN = 1,	 /* anything goes; loopback listeners only (conformance suites) */
};

enum moat_listener_protocol {
	MOAT_PROTO_MQTT = 0, /* MQTT 3.1.1/5.0, served by the broker's workers */
	MOAT_PROTO_HTTPS,    /* the management API, served by the management thread */
};

struct moat_listener_conf {
	char name[MOAT_MAX_LISTENER_NAME + 1];
	char bind[64]; /* numeric IPv4/IPv6 address */
	uint16_t port;
	enum moat_listener_protocol protocol;
	bool tls;
	/* mqtt: on by default; https: off by default (operators log in with a
	 * password and TOTP), on to also demand a certificate from the CA. */
	bool require_client_cert;
	bool require_client_cert_set; /* written in the file (for the https default) */
	/* Session resumption with tickets; unset: [tls] tls_resumption. A
	 * reload applies it (the contexts are rebuilt). */
	bool tls_resumption;
	bool tls_resumption_set;
	enum moat_policy_kind policy;
	unsigned line; /* line of the [listener.NAME] header, for messages */
};

enum moat_log_format { MOAT_LOGFMT_LOGFMT = 0 };

enum moat_durability {
	MOAT_DURABILITY_STRICT = 0, /* fsync before acknowledging what must persist */
	MOAT_DURABILITY_RELAXED,    /* flushed within MOAT_STORE_FLUSH_MS_DEFAULT */
};

/* The [broker] limits that SIGHUP can change. The broker gives each worker
 * its own copy (see src/mqtt/broker.h), so a reload never races a reader. */
struct moat_limits {
	uint32_t max_packet_size;
	uint16_t max_keepalive;
	uint16_t receive_maximum;
	uint16_t max_inflight;
	uint32_t max_queued_messages;
	uint32_t max_connections;
};

struct moat_conf {
	/* [broker] */
	unsigned workers; /* 0 = one per core */
	struct moat_limits lim;
	enum moat_durability durability;
	/* [broker] commit_window_us: strict durability's group-commit window */
	uint32_t commit_window_us;
	/* [broker] unknown_devices: a CA-signed identity the registry does not
	 * know is refused (false, the default) or treated as a member of the
	 * group "devices" (true: development and migration). SIGHUP changes
	 * it: in the broker, read and written under moat_broker.snap_lock. */
	bool unknown_allow;
	/* [broker] cert_days: lifetime of enrolled device certificates. */
	unsigned cert_days;
	/* [broker] crl_url: the CRL distribution point issued certificates
	 * name; "" derives it from the first HTTPS listener (moat_pki_crl_url). */
	char crl_url[MOAT_CRL_URL_MAX + 1];
	/* [tls]: paths; relative paths are relative to the data directory */
	char tls_cert[MOAT_MAX_PATH];
	char tls_key[MOAT_MAX_PATH];
	char tls_ca[MOAT_MAX_PATH];
	bool tls_resumption; /* the listeners' default (on) */
	/* [log] */
	int log_level; /* enum moat_log_level */
	/* [listener.NAME]* */
	size_t n_listeners;
	struct moat_listener_conf listeners[MOAT_MAX_LISTENERS];
};

/* Defaults (no listeners). */
void moat_conf_defaults(struct moat_conf *c);

/*
 * Load and validate path. Relative [tls] paths are resolved against
 * data_dir. On error returns MOAT_E_CONFIG (or MOAT_E_IO if unreadable) and
 * writes "FILE:LINE: problem; fix" into err.
 */
moat_err moat_conf_load(const char *path, const char *data_dir, struct moat_conf *c, char *err,
			size_t errlen);

/* Same, from a string (unit tests, fuzzing); `name` is used in messages. */
moat_err moat_conf_parse_string(const char *text, const char *name, const char *data_dir,
				struct moat_conf *c, char *err, size_t errlen);

/*
 * SIGHUP applies the [broker] limits, unknown_devices, [log] level and the
 * contents of the [tls] files. Everything else is fixed for the life of
 * the process (threads, the store, sockets, what the management API was
 * given at start). If next differs from cur in such a key, write its name
 * ("broker.workers", "listener.mqtts.port", "listener.extra", ...) into
 * key and return true: the reload must be refused as a whole.
 */
bool moat_conf_needs_restart(const struct moat_conf *cur, const struct moat_conf *next, char *key,
			     size_t keylen);

/* The moat.conf that `moat init` writes (commented, secure defaults). */
const char *moat_conf_default_text(void);

/* Is addr a numeric loopback address (127.0.0.0/8 or ::1)? */
bool moat_addr_is_loopback(const char *addr);

#endif
