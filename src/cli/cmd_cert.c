/* `moat cert issue`: development device certificates from the local CA.
 * Production devices enroll with EST and keep their keys on the device
 * (docs/enrollment.md); this exists for demos, tests and benchmarks.
 * `moat cert list|revoke` talk to the management API (cmd_certs.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "audit/audit_store.h"
#include "cli/cli.h"
#include "core/config.h"
#include "core/reactor.h"
#include "store/store.h"
#include "core/limits.h"
#include "pki/pki.h"
#include "registry/acl.h"
#include "registry/registry.h"
#include "tls/tls.h"
#include "registry/schema.h"

/* What `moat cert issue` registers: a device (group "devices") by
 * default; a service, another group, and that group's policy on request. */
struct cert_reg {
	const char *id;
	const char *kind;  /* "device" | "service" */
	const char *group; /* the group a new identity joins */
	const char *rules; /* NULL, or the policy <group>: rule lines joined by '\n' */
};

struct id_row {
	char kind[16];
	char state[32];
};

static void copy_col(char *dst, size_t dstlen, const struct moat_val *v)
{
	size_t n = v->len < dstlen - 1 ? v->len : dstlen - 1;

	memcpy(dst, v->p, n);
	dst[n] = '\0';
}

static moat_err state_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_identity_row row;
	struct id_row *r = arg;

	if (moat_reg_identity_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	copy_col(r->kind, sizeof(r->kind), &row.kind);
	copy_col(r->state, sizeof(r->state), &row.state);
	return MOAT_OK;
}

static moat_err found_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	bool *found = arg;

	(void)cols;
	(void)ncols;
	*found = true;
	return MOAT_OK;
}

static moat_err rules_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_policy_row row;
	char **rules = arg;

	if (moat_reg_policy_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	*rules = strndup(row.rules.p, row.rules.len);
	return *rules != NULL ? MOAT_OK : MOAT_E_NOMEM;
}

/* What a new identity's group needs, through the registry service (each
 * change audited): the group if missing, and its policy (named after it)
 * attached when rules were given. A policy that exists with other rules is
 * left alone and refused: the API changes policies. */
static moat_err add_group(const struct moat_reg_ctx *rx, const struct cert_reg *r,
			  struct moat_reg_change *ch, char *err, size_t errlen)
{
	struct moat_val v = moat_val_text(r->group, strlen(r->group));
	char *have = NULL;
	bool found = false;
	moat_err rc;

	if ((rc = moat_store_read(rx->store, REG_STMT(GROUP_GET), &v, 1, found_cb, &found)) !=
	    MOAT_OK) {
		snprintf(err, errlen, "cannot read the groups: %s", moat_strerror(rc));
		return rc;
	}
	if (!found && (rc = moat_reg_group_create(rx, r->group, "")) != MOAT_OK) {
		snprintf(err, errlen, "cannot create group %s: %s", r->group, moat_strerror(rc));
		return rc;
	}
	if (r->rules == NULL)
		return MOAT_OK;
	if ((rc = moat_store_read(rx->store, REG_STMT(POLICY_GET), &v, 1, rules_cb, &have)) !=
	    MOAT_OK) {
		snprintf(err, errlen, "cannot read the policies: %s", moat_strerror(rc));
		goto out;
	}
	if (have != NULL && strcmp(have, r->rules) != 0) {
		rc = MOAT_E_EXISTS;
		snprintf(err, errlen,
			 "policy %s exists with other rules; change it with 'moat policy set' or "
			 "leave out --rule",
			 r->group);
		goto out;
	}
	if (have == NULL &&
	    (rc = moat_reg_policy_put(rx, r->group, "", r->rules, true, ch)) != MOAT_OK) {
		snprintf(err, errlen, "cannot create policy %s: %s", r->group, moat_strerror(rc));
		goto out;
	}
	if ((rc = moat_reg_group_attach(rx, r->group, r->group, ch)) != MOAT_OK)
		snprintf(err, errlen, "cannot attach policy %s: %s", r->group, moat_strerror(rc));
out:
	free(have);
	return rc;
}

/* Register the identity (active, in its group) unless it exists, and
 * record the certificate, in DIR's store, through the registry service:
 * every change with its audit entry. */
static moat_err register_device(const char *dir, const struct cert_reg *r, const char *crt_path,
				char *err, size_t errlen)
{
	struct moat_store_opts o;
	struct moat_store *st = NULL;
	struct moat_reg_change ch = {0};
	struct moat_cli_offline off;
	struct moat_reg_cert cert;
	bool off_open = false;
	struct moat_val v[1];
	struct id_row row;
	const char *id = r->id;
	char path[MOAT_MAX_PATH], serial[72] = "", fp[65] = "";
	unsigned char md[32];
	unsigned int mdlen = 0;
	int64_t now = moat_wall_ms(), not_before = 0, not_after = 0;
	X509 *x = NULL;
	FILE *f;
	moat_err rc;
	size_t i;

	memset(&row, 0, sizeof(row));
	if ((size_t)snprintf(path, sizeof(path), "%s/moat.db", dir) >= sizeof(path)) {
		snprintf(err, errlen, "data directory path too long");
		return MOAT_E_INVAL;
	}
	f = fopen(crt_path, "r");
	if (f != NULL) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (x == NULL || !X509_digest(x, EVP_sha256(), md, &mdlen)) {
		X509_free(x);
		snprintf(err, errlen, "cannot read the new certificate %.200s", crt_path);
		return MOAT_E_IO;
	}
	/* Record the validity the certificate really has (--days), so
	 * `moat device list --expiring` sees it. */
	if (moat_pki_cert_validity(x, &not_before, &not_after) != MOAT_OK) {
		X509_free(x);
		snprintf(err, errlen, "cannot read the validity of %.200s", crt_path);
		return MOAT_E_CRYPTO;
	}
	moat_tls_cert_serial(x, serial, sizeof(serial));
	for (i = 0; i < 32 && i < mdlen; i++)
		snprintf(fp + 2 * i, 3, "%02x", md[i]);
	memset(&o, 0, sizeof(o));
	o.path = path;
	if ((rc = moat_store_open(&o, &st, err, errlen)) != MOAT_OK)
		goto out;
	v[0] = moat_val_text(id, strlen(id));
	if ((rc = moat_store_read(st, REG_STMT(ID_GET), v, 1, state_cb, &row)) != MOAT_OK) {
		snprintf(err, errlen, "cannot read the registry: %s", moat_strerror(rc));
		goto out;
	}
	if (strcmp(row.state, "decommissioned") == 0) {
		rc = MOAT_E_DENIED;
		snprintf(err, errlen,
			 "%s %s is decommissioned; registering it again through the API "
			 "(POST /api/v1/devices) makes it a new one",
			 r->kind, id);
		goto out;
	}
	if (row.state[0] != '\0' && strcmp(row.kind, r->kind) != 0) {
		rc = MOAT_E_EXISTS;
		snprintf(err, errlen, "%s is registered as a %s, not a %s", id, row.kind, r->kind);
		goto out;
	}
	if ((rc = moat_cli_offline_open(&off, st, dir, err, errlen)) != MOAT_OK)
		goto out;
	off_open = true;
	off.rx.now = now;
	if (row.state[0] == '\0' && strcmp(r->group, "devices") != 0 &&
	    (rc = add_group(&off.rx, r, &ch, err, errlen)) != MOAT_OK)
		goto out;
	cert.serial = serial;
	cert.fingerprint = fp;
	cert.not_before = not_before * 1000;
	cert.not_after = not_after * 1000;
	rc = moat_reg_cert_issue(&off.rx, id, row.state[0] == '\0', r->kind, r->group, &cert, &ch);
	if (rc != MOAT_OK)
		snprintf(err, errlen, "cannot register %s: %s", id, moat_strerror(rc));
out:
	moat_reg_change_clear(&ch);
	if (off_open)
		moat_cli_offline_close(&off);
	X509_free(x);
	moat_store_close(st);
	return rc;
}

/* The CRL URL the server names in the certificates it issues (moat.conf
 * in dir); none when the configuration cannot be read (said on stderr). */
static void crl_url_of(const char *dir, char *out, size_t outlen)
{
	struct moat_conf *conf = calloc(1, sizeof(*conf));
	char path[MOAT_MAX_PATH], err[512];

	out[0] = '\0';
	if (conf == NULL ||
	    (size_t)snprintf(path, sizeof(path), "%s/moat.conf", dir) >= sizeof(path))
		goto out;
	if (moat_conf_load(path, dir, conf, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat cert issue: no CRL distribution point: %s\n", err);
		goto out;
	}
	moat_pki_crl_url(conf, out, outlen);
out:
	free(conf);
}

static void cert_usage(FILE *f)
{
	fprintf(f,
		"usage: moat cert issue --dir DIR (--device ID | --service ID) [--group NAME]\n"
		"                       [--rule RULE]... [--out PREFIX] [--days N]\n"
		"\n"
		"Issue a development client certificate for device ID from the CA in DIR.\n"
		"Writes PREFIX.key (mode 0600) and PREFIX.crt; PREFIX defaults to DIR/devices/ID.\n"
		"The key is generated here: for production devices use enrollment, which\n"
		"keeps the key on the device. The device is registered as active (group\n"
		"devices) and the certificate recorded, with an audit entry, so it can\n"
		"connect; a running server picks the registration up on SIGHUP.\n"
		"A decommissioned id is refused. An id registered before keeps its kind,\n"
		"groups and policies; only the certificate is added.\n"
		"\n"
		"options:\n"
		"  --dir DIR      data directory (holds ca.key, ca.crt)\n"
		"  --device ID    device id: 1-64 of [a-z0-9._-], starting with a letter or digit\n"
		"  --service ID   register a service identity instead (an application such as\n"
		"                 a telemetry reader); it needs --group\n"
		"  --group NAME   the group a new identity joins instead of devices (created\n"
		"                 when missing)\n"
		"  --rule RULE    a rule of the policy NAME attached to the group, e.g.\n"
		"                 'allow subscribe d/+/#' (repeatable; created when missing,\n"
		"                 refused when a policy NAME exists with other rules)\n"
		"  --out PREFIX   output path prefix\n"
		"  --days N       validity in days (default 90)\n"
		"  -h, --help     this help\n");
}

/* `moat cert` alone, --help or an unknown subcommand: every subcommand. */
static void cert_overview(FILE *f)
{
	fprintf(f,
		"usage: moat cert <subcommand> [options]\n"
		"\n"
		"subcommands:\n"
		"  issue --dir DIR (--device ID | --service ID) [--group NAME] [--rule RULE]...\n"
		"        [--out PREFIX] [--days N]\n"
		"                 offline: a development certificate from the local CA\n"
		"  list [--device ID]\n"
		"                 management API: certificates issued through enrollment\n"
		"  revoke SERIAL [--reason R]\n"
		"                 management API: revoke one (sessions end, CRL lists it)\n"
		"\n"
		"Run 'moat cert <subcommand> --help' for one subcommand.\n");
}

int moat_cmd_cert(int argc, char **argv)
{
	const char *dir = NULL, *id = NULL, *out = NULL;
	struct cert_reg reg = {NULL, "device", "devices", NULL};
	char rules[MOAT_POLICY_MAX_RULES * (MOAT_RULE_TEXT_MAX + 1)];
	size_t rules_len = 0, n_rules = 0;
	unsigned long days = 90;
	char key[MOAT_MAX_PATH], crt[MOAT_MAX_PATH], prefix[MOAT_MAX_PATH], err[512];
	char crl_url[MOAT_CRL_URL_MAX + 1];
	int i;

	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		cert_overview(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	/* list and revoke are clients of the management API (cmd_certs.c). */
	if (strcmp(argv[1], "list") == 0 || strcmp(argv[1], "revoke") == 0)
		return moat_cmd_cert_api(argc, argv);
	if (strcmp(argv[1], "issue") != 0) {
		fprintf(stderr, "moat cert: unknown subcommand '%s'\n", argv[1]);
		cert_overview(stderr);
		return EXIT_USAGE;
	}
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			cert_usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if ((strcmp(argv[i], "--device") == 0 ||
			    strcmp(argv[i], "--service") == 0) &&
			   i + 1 < argc) {
			if (id != NULL) {
				fprintf(stderr, "moat cert issue: one --device or --service\n");
				return EXIT_USAGE;
			}
			reg.kind = strcmp(argv[i], "--service") == 0 ? "service" : "device";
			id = argv[++i];
		} else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc) {
			reg.group = argv[++i];
			if (!moat_device_id_valid(reg.group, strlen(reg.group))) {
				fprintf(stderr,
					"moat cert issue: '%s' is not a valid group name (1-64 of "
					"[a-z0-9._-], starting with a letter or digit)\n",
					reg.group);
				return EXIT_USAGE;
			}
		} else if (strcmp(argv[i], "--rule") == 0 && i + 1 < argc) {
			struct moat_rule rule;
			char why[200];
			size_t n;

			if (moat_rule_parse(argv[++i], &rule, why, sizeof(why)) != MOAT_OK) {
				fprintf(stderr, "moat cert issue: --rule '%s': %s\n", argv[i], why);
				return EXIT_USAGE;
			}
			if (n_rules == MOAT_POLICY_MAX_RULES) {
				fprintf(stderr, "moat cert issue: at most %u --rule\n",
					MOAT_POLICY_MAX_RULES);
				return EXIT_USAGE;
			}
			/* Stored as the API stores it: the canonical text, one a line. */
			if (rules_len > 0)
				rules[rules_len++] = '\n';
			n = moat_rule_format(&rule, rules + rules_len, sizeof(rules) - rules_len);
			rules_len += n;
			n_rules++;
		} else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
			out = argv[++i];
		} else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc) {
			char *end;
			days = strtoul(argv[++i], &end, 10);
			if (*end != '\0' || days == 0 || days > 3650) {
				fprintf(stderr, "moat cert: --days must be 1..3650\n");
				return EXIT_USAGE;
			}
		} else {
			fprintf(stderr, "moat cert: unknown or incomplete option '%s'\n", argv[i]);
			cert_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (dir == NULL || id == NULL) {
		fprintf(stderr,
			"moat cert issue: --dir and --device (or --service) are required\n");
		return EXIT_USAGE;
	}
	if (strcmp(reg.kind, "service") == 0 && strcmp(reg.group, "devices") == 0) {
		fprintf(stderr, "moat cert issue: a --service needs its own --group (the group "
				"devices is for devices)\n");
		return EXIT_USAGE;
	}
	if (n_rules > 0 && strcmp(reg.group, "devices") == 0) {
		fprintf(stderr, "moat cert issue: --rule needs --group NAME (the policy of the "
				"group devices is built in)\n");
		return EXIT_USAGE;
	}
	rules[rules_len] = '\0';
	reg.id = id;
	reg.rules = n_rules > 0 ? rules : NULL;
	if (!moat_device_id_valid(id, strlen(id))) {
		fprintf(stderr,
			"moat cert issue: '%s' is not a valid device id (1-64 of [a-z0-9._-], "
			"starting with a letter or digit)\n",
			id);
		return EXIT_USAGE;
	}
	if (out == NULL) {
		char devdir[MOAT_MAX_PATH];
		int n = snprintf(devdir, sizeof(devdir), "%s/devices", dir);
		if (n < 0 || (size_t)n >= sizeof(devdir))
			goto too_long;
		(void)mkdir(devdir, 0700);
		n = snprintf(prefix, sizeof(prefix), "%s/%s", devdir, id);
		if (n < 0 || (size_t)n >= sizeof(prefix))
			goto too_long;
		out = prefix;
	}
	if (strlen(out) + 5 > sizeof(key))
		goto too_long;
	memcpy(key, out, strlen(out));
	memcpy(key + strlen(out), ".key", 5);
	memcpy(crt, out, strlen(out));
	memcpy(crt + strlen(out), ".crt", 5);
	crl_url_of(dir, crl_url, sizeof(crl_url));
	if (moat_pki_issue_device(dir, id, (unsigned)days, crl_url, key, crt, err, sizeof(err)) !=
	    MOAT_OK) {
		fprintf(stderr, "moat cert issue: %s\n", err);
		return EXIT_FAIL;
	}
	if (register_device(dir, &reg, crt, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat cert issue: %s\n", err);
		unlink(key);
		unlink(crt);
		return EXIT_FAIL;
	}
	printf("issued %s: %s %s\n", id, crt, key);
	return EXIT_OK;
too_long:
	fprintf(stderr, "moat cert issue: path too long\n");
	return EXIT_USAGE;
}
