/* `moat cert list|revoke`: the device certificates the CA has issued
 * through enrollment (/api/v1/certificates). Revoking one disconnects the
 * MQTT sessions that use it and puts its serial on the CRL; it can never
 * connect again. (`moat cert issue`, the offline development command, is in
 * cmd_cert.c, which routes these two subcommands here.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/api_client.h"
#include "cli/cli.h"
#include "tls/tls.h"

/* A serial is hex, at most 20 DER octets (RFC 5280 4.1.2.2). It goes into
 * the request path, so nothing else is let through. */
#define CERTS_SERIAL_HEX_MAX 40u

enum certs_op { C_LIST, C_REVOKE };

struct certs_sub {
	const char *name;
	enum certs_op op;
	int npos;
	const char *synopsis;
	const char *what;
};

static const struct certs_sub certs_subs[] = {
    {"list", C_LIST, 0, "list [--device ID]",
     "list the certificates issued through enrollment (all, or one device's)"},
    {"revoke", C_REVOKE, 1, "revoke SERIAL [--reason R]",
     "revoke a certificate: its MQTT sessions are disconnected, it is listed on\n"
     "the CRL and it can never connect again. SERIAL is the hex serial 'moat cert\n"
     "list' shows"},
};

static const struct moat_cli_col certs_cols[] = {
    {"SERIAL", "serial"},	{"IDENTITY", "identity"}, {"ISSUED", "issued_at"},
    {"NOT-AFTER", "not_after"}, {"REVOKED", "revoked"},	  {"REVOKED-AT", "revoked_at"},
    {"REASON", "reason"},
};

static const struct moat_cli_col certs_fields[] = {
    {"serial", "serial"},	  {"identity", "identity"},	{"fingerprint", "fingerprint"},
    {"not_before", "not_before"}, {"not_after", "not_after"},	{"issued_at", "issued_at"},
    {"revoked", "revoked"},	  {"revoked_at", "revoked_at"}, {"reason", "reason"},
};

static void certs_usage(FILE *f)
{
	size_t k;

	fprintf(f, "usage: moat cert <subcommand> [options]\n\nmanagement API subcommands:\n");
	for (k = 0; k < sizeof(certs_subs) / sizeof(certs_subs[0]); k++)
		fprintf(f, "  %s\n", certs_subs[k].synopsis);
	fprintf(f, "\noptions (list, revoke):\n%s", moat_cli_common_help);
}

static void certs_sub_usage(FILE *f, const struct certs_sub *s)
{
	fprintf(f, "usage: moat cert %s [options]\n\n%s.\n\noptions:\n", s->synopsis, s->what);
	if (s->op == C_LIST)
		fprintf(f, "  --device ID           only this device's certificates\n");
	if (s->op == C_REVOKE)
		fprintf(f,
			"  --reason R            why (kept with the certificate and in the audit "
			"log)\n");
	fputs(moat_cli_common_help, f);
}

static bool certs_serial_valid(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= CERTS_SERIAL_HEX_MAX && strspn(s, "0123456789abcdefABCDEF") == n;
}

static int certs_list(struct moat_cli_ctx *c, const char *device)
{
	char path[256] = "/api/v1/certificates?limit=200";
	json_t *items = NULL;
	int rc;

	if (device != NULL && moat_cli_query_add(path, sizeof(path), "identity", device) != MOAT_OK)
		return moat_cli_usage_error(c, "device id too long");
	rc = moat_cli_get_all(c, path, 0, &items);
	if (rc != EXIT_OK)
		return rc;
	if (c->json) {
		json_t *wrap = json_pack("{s:O, s:n}", "items", items, "next_cursor");
		moat_cli_print_json(stdout, wrap);
		json_decref(wrap);
	} else {
		moat_cli_print_table(stdout, items, certs_cols,
				     sizeof(certs_cols) / sizeof(certs_cols[0]));
	}
	json_decref(items);
	return EXIT_OK;
}

static int certs_revoke(struct moat_cli_ctx *c, const char *serial, const char *reason)
{
	char path[128];
	json_t *body, *doc = NULL;
	int rc = EXIT_FAIL;

	body = reason != NULL ? json_pack("{s:s}", "reason", reason) : json_object();
	if (body == NULL) {
		fprintf(stderr, "moat %s: the reason is not valid UTF-8\n", c->cmd);
		return EXIT_FAIL;
	}
	(void)snprintf(path, sizeof(path), "/api/v1/certificates/%s/revoke", serial);
	if (moat_cli_call(c, "POST", path, body, &doc) != EXIT_OK)
		goto out;
	if (c->json) {
		moat_cli_print_json(stdout, doc);
	} else {
		const char *id = json_string_value(json_object_get(doc, "identity"));
		printf("revoked certificate %s of ", serial);
		moat_cli_print_safe(stdout, id != NULL ? id : "?");
		printf("; sessions using it are disconnected and it is on the CRL\n");
		moat_cli_print_fields(stdout, doc, certs_fields,
				      sizeof(certs_fields) / sizeof(certs_fields[0]));
	}
	rc = EXIT_OK;
out:
	json_decref(body);
	json_decref(doc);
	return rc;
}

int moat_cmd_cert_api(int argc, char **argv)
{
	struct moat_cli_ctx c;
	const struct certs_sub *s = NULL;
	const char *pos[1] = {NULL}, *device = NULL, *reason = NULL;
	char cmd[64];
	int i, npos = 0, rc;
	size_t k;

	if (argc < 2) {
		certs_usage(stderr);
		return EXIT_USAGE;
	}
	for (k = 0; k < sizeof(certs_subs) / sizeof(certs_subs[0]); k++) {
		if (strcmp(argv[1], certs_subs[k].name) == 0)
			s = &certs_subs[k];
	}
	if (s == NULL) {
		fprintf(stderr, "moat cert: unknown subcommand '%s'\n", argv[1]);
		certs_usage(stderr);
		return EXIT_USAGE;
	}
	(void)snprintf(cmd, sizeof(cmd), "cert %s", s->name);
	moat_cli_ctx_init(&c, cmd);
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			certs_sub_usage(stdout, s);
			return EXIT_OK;
		} else if (moat_cli_common_opt(&c, argc, argv, &i)) {
			continue;
		} else if (s->op == C_LIST && strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
			device = argv[++i];
		} else if (s->op == C_REVOKE && strcmp(argv[i], "--reason") == 0 && i + 1 < argc) {
			reason = argv[++i];
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "moat %s: unknown or incomplete option '%s'\n", cmd,
				argv[i]);
			certs_sub_usage(stderr, s);
			return EXIT_USAGE;
		} else if (npos < s->npos) {
			pos[npos++] = argv[i];
		} else {
			fprintf(stderr, "moat %s: unexpected argument '%s'\n", cmd, argv[i]);
			certs_sub_usage(stderr, s);
			return EXIT_USAGE;
		}
	}
	if (npos < s->npos) {
		fprintf(stderr, "moat %s: missing argument\n", cmd);
		certs_sub_usage(stderr, s);
		return EXIT_USAGE;
	}
	if (device != NULL && !moat_device_id_valid(device, strlen(device)))
		return moat_cli_usage_error(&c,
					    "'%s' is not a valid device id (1-64 of [a-z0-9._-], "
					    "starting with a letter or digit)",
					    device);
	if (s->op == C_REVOKE && !certs_serial_valid(pos[0]))
		return moat_cli_usage_error(&c,
					    "'%s' is not a certificate serial (1-40 hex digits; "
					    "see 'moat cert list')",
					    pos[0]);
	rc = moat_cli_resolve(&c, true);
	if (rc != EXIT_OK)
		goto out;
	rc = s->op == C_LIST ? certs_list(&c, device) : certs_revoke(&c, pos[0], reason);
out:
	moat_cli_ctx_wipe(&c);
	return rc;
}
