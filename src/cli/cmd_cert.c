/* `moat cert issue`: development device certificates from the local CA.
 * Production devices enroll with EST and keep their keys on the device
 * (docs/enrollment.md); this exists for demos, tests and benchmarks.
 * `moat cert list|revoke` talk to the management API (cmd_certs.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "audit/audit_store.h"
#include "cli/cli.h"
#include "core/reactor.h"
#include "store/store.h"
#include "core/limits.h"
#include "pki/pki.h"
#include "registry/registry.h"
#include "tls/tls.h"

static moat_err state_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	char *state = arg;
	size_t n;

	if (ncols < 3 || cols[2].type != MOAT_VAL_TEXT)
		return MOAT_E_CORRUPT;
	n = cols[2].len < 31 ? cols[2].len : 31;
	memcpy(state, cols[2].p, n);
	state[n] = '\0';
	return MOAT_OK;
}

/* The actor of an offline change: the Unix user who ran the command. */
static void cli_actor(char *out, size_t len)
{
	struct passwd *pw = getpwuid(geteuid());

	if (pw != NULL && pw->pw_name != NULL && pw->pw_name[0] != '\0')
		snprintf(out, len, "cli:%.80s", pw->pw_name);
	else
		snprintf(out, len, "cli:uid-%lu", (unsigned long)geteuid());
}

/* Register the device (active, group "devices") unless it exists, and
 * record the certificate, in DIR's store, with an audit entry. */
static moat_err register_device(const char *dir, const char *id, const char *crt_path, char *err,
				size_t errlen)
{
	struct moat_store_opts o;
	struct moat_store *st = NULL;
	struct moat_reg_change ch = {0};
	struct moat_audit_log log;
	struct moat_reg_cert cert;
	struct moat_reg_ctx rx;
	bool log_open = false;
	struct moat_val v[1];
	char actor[96];
	char path[MOAT_MAX_PATH], state[32] = "", serial[72] = "", fp[65] = "";
	unsigned char md[32];
	unsigned int mdlen = 0;
	int64_t now = moat_wall_ms();
	X509 *x = NULL;
	FILE *f;
	moat_err rc;
	size_t i;

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
	moat_tls_cert_serial(x, serial, sizeof(serial));
	for (i = 0; i < 32 && i < mdlen; i++)
		snprintf(fp + 2 * i, 3, "%02x", md[i]);
	memset(&o, 0, sizeof(o));
	o.path = path;
	if ((rc = moat_store_open(&o, &st, err, errlen)) != MOAT_OK)
		goto out;
	v[0] = moat_val_text(id, strlen(id));
	if ((rc = moat_store_read(st, MOAT_STMT_ID_GET, v, 1, state_cb, state)) != MOAT_OK) {
		snprintf(err, errlen, "cannot read the registry: %s", moat_strerror(rc));
		goto out;
	}
	if (strcmp(state, "decommissioned") == 0) {
		rc = MOAT_E_DENIED;
		snprintf(err, errlen,
			 "device %s is decommissioned; registering it again through the API "
			 "(POST /api/v1/devices) makes it a new device",
			 id);
		goto out;
	}
	/* Through the registry service: the registration, the certificate
	 * and an audit entry commit together. */
	if ((rc = moat_audit_log_open(&log, st, dir, err, errlen)) != MOAT_OK)
		goto out;
	log_open = true;
	cli_actor(actor, sizeof(actor));
	memset(&rx, 0, sizeof(rx));
	rx.store = st;
	rx.audit = &log;
	rx.actor = actor;
	rx.peer = "";
	rx.now = now;
	cert.serial = serial;
	cert.fingerprint = fp;
	cert.not_before = now;
	cert.not_after = now + 86400000LL * 3650;
	rc = moat_reg_cert_issue(&rx, id, state[0] == '\0', &cert, &ch);
	moat_reg_change_clear(&ch);
	if (rc != MOAT_OK)
		snprintf(err, errlen, "cannot register %s: %s", id, moat_strerror(rc));
out:
	if (log_open)
		moat_audit_log_close(&log);
	X509_free(x);
	moat_store_close(st);
	return rc;
}

static void cert_usage(FILE *f)
{
	fprintf(f,
		"usage: moat cert issue --dir DIR --device ID [--out PREFIX] [--days N]\n"
		"\n"
		"Issue a development client certificate for device ID from the CA in DIR.\n"
		"Writes PREFIX.key (mode 0600) and PREFIX.crt; PREFIX defaults to DIR/devices/ID.\n"
		"The key is generated here: for production devices use enrollment, which\n"
		"keeps the key on the device. The device is registered as active (group\n"
		"devices) and the certificate recorded, with an audit entry, so it can\n"
		"connect; a running server picks the registration up on SIGHUP.\n"
		"A decommissioned device id is refused.\n"
		"\n"
		"options:\n"
		"  --dir DIR      data directory (holds ca.key, ca.crt)\n"
		"  --device ID    device id: 1-64 of [a-z0-9._-], starting with a letter or digit\n"
		"  --out PREFIX   output path prefix\n"
		"  --days N       validity in days (default 90)\n"
		"  -h, --help     this help\n");
}

/* `moat cert` alone, --help or an unknown subcommand: every subcommand. */
static void cert_overview(FILE *f)
{
	fprintf(f, "usage: moat cert <subcommand> [options]\n"
		   "\n"
		   "subcommands:\n"
		   "  issue --dir DIR --device ID [--out PREFIX] [--days N]\n"
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
	unsigned long days = 90;
	char key[MOAT_MAX_PATH], crt[MOAT_MAX_PATH], prefix[MOAT_MAX_PATH], err[512];
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
		} else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
			id = argv[++i];
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
		fprintf(stderr, "moat cert issue: --dir and --device are required\n");
		return EXIT_USAGE;
	}
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
	if (moat_pki_issue_device(dir, id, (unsigned)days, key, crt, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat cert issue: %s\n", err);
		return EXIT_FAIL;
	}
	if (register_device(dir, id, crt, err, sizeof(err)) != MOAT_OK) {
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
