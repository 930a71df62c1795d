/* `moat enroll-token ...`: enrollment tokens (/api/v1/enroll-tokens), the
 * credential a device presents to EST simpleenroll (docs/enrollment.md).
 * A token is for one registered device, or for a group (a batch: each
 * device enrolling with it is registered into the group with the id from
 * its CSR). The secret is shown once, when the token is created; the server
 * keeps only its hash. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/api_client.h"
#include "cli/cli.h"
#include "tls/tls.h"

/* docs/api.md: uses 1..100000 (default 1), lifetime 1..720 hours (default
 * 24). Checked here too so a typo is a usage error, not a round trip. */
#define ENROLL_USES_MAX 100000ul
#define ENROLL_HOURS_MAX 720ul

enum enroll_op { E_CREATE, E_LIST };

struct enroll_sub {
	const char *name;
	enum enroll_op op;
	const char *synopsis;
	const char *what;
};

static const struct enroll_sub enroll_subs[] = {
    {"create", E_CREATE, "create (--device ID | --group G) [--uses N] [--hours H]",
     "create an enrollment token and print it, once. With --device it lets that\n"
     "registered device enroll; with --group it lets up to N devices enroll, each\n"
     "registered into G with the id in its CSR. It is spent after N uses (1-100000,\n"
     "default 1) and expires after H hours (1-720, default 24)"},
    {"list", E_LIST, "list", "list enrollment tokens (never their secrets)"},
};

static const struct moat_cli_col enroll_cols[] = {
    {"ID", "id"},
    {"IDENTITY", "identity"},
    {"GROUP", "group"},
    {"USES-LEFT", "uses_left"},
    {"EXPIRES", "expires_at"},
    {"CREATOR", "creator"},
    {"CREATED", "created_at"},
};

static void enroll_usage(FILE *f)
{
	size_t k;

	fprintf(f, "usage: moat enroll-token <subcommand> [options]\n\nsubcommands:\n");
	for (k = 0; k < sizeof(enroll_subs) / sizeof(enroll_subs[0]); k++)
		fprintf(f, "  %s\n", enroll_subs[k].synopsis);
	fprintf(f,
		"\nA device sends the token (moat_et_...) to EST simpleenroll as\n"
		"'Authorization: Bearer' with its CSR; see docs/enrollment.md.\n"
		"\noptions (every subcommand):\n%s"
		"\nRun 'moat enroll-token <subcommand> --help' for one subcommand.\n",
		moat_cli_common_help);
}

static void enroll_sub_usage(FILE *f, const struct enroll_sub *s)
{
	fprintf(f, "usage: moat enroll-token %s [options]\n\n%s.\n\noptions:\n", s->synopsis,
		s->what);
	if (s->op == E_CREATE)
		fprintf(
		    f,
		    "  --device ID           a token for this registered device\n"
		    "  --group G             a batch token: devices enrolling join G\n"
		    "  --uses N              how many enrollments it allows, 1-100000 (default 1)\n"
		    "  --hours H             lifetime in hours, 1-720 (default 24)\n");
	fputs(moat_cli_common_help, f);
}

/* A decimal number in 1..max; false for anything else ("", "-1", "1x"). */
static bool enroll_number(const char *v, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long n;

	if (v[0] < '0' || v[0] > '9')
		return false;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno != 0 || *end != '\0' || n == 0 || n > max)
		return false;
	*out = n;
	return true;
}

static int enroll_create(struct moat_cli_ctx *c, const char *device, const char *group,
			 unsigned long uses, unsigned long hours)
{
	json_t *body, *doc = NULL;
	const char *secret, *v;
	json_int_t left;
	bool ok;
	int rc = EXIT_FAIL;

	body = device != NULL ? json_pack("{s:s}", "identity", device)
			      : json_pack("{s:s}", "group", group);
	ok = body != NULL;
	if (ok && uses > 0)
		ok = json_object_set_new(body, "uses", json_integer((json_int_t)uses)) == 0;
	if (ok && hours > 0)
		ok = json_object_set_new(body, "expires_in_hours",
					 json_integer((json_int_t)hours)) == 0;
	if (!ok) {
		fprintf(stderr, "moat %s: out of memory\n", c->cmd);
		goto out;
	}
	if (moat_cli_call(c, "POST", "/api/v1/enroll-tokens", body, &doc) != EXIT_OK)
		goto out;
	secret = json_string_value(json_object_get(doc, "token"));
	if (secret == NULL) {
		fprintf(stderr, "moat %s: the server's answer has no token\n", c->cmd);
		goto out;
	}
	if (c->json) {
		moat_cli_print_json(stdout, doc);
	} else {
		v = json_string_value(json_object_get(doc, "id"));
		printf("id:        ");
		moat_cli_print_safe(stdout, v != NULL ? v : "?");
		if ((v = json_string_value(json_object_get(doc, "identity"))) != NULL) {
			printf("\nidentity:  ");
			moat_cli_print_safe(stdout, v);
		}
		if ((v = json_string_value(json_object_get(doc, "group"))) != NULL) {
			printf("\ngroup:     ");
			moat_cli_print_safe(stdout, v);
		}
		left = json_integer_value(json_object_get(doc, "uses_left"));
		if (json_is_integer(json_object_get(doc, "uses_left")))
			printf("\nuses left: %lld", (long long)left);
		else
			printf("\nuses left: ?");
		v = json_string_value(json_object_get(doc, "expires_at"));
		printf("\nexpires:   ");
		moat_cli_print_safe(stdout, v != NULL ? v : "?");
		printf("\ntoken:     ");
		moat_cli_print_safe(stdout, secret);
		printf("\n");
	}
	fflush(stdout);
	fprintf(stderr,
		"Give the token to the device (or its provisioning step) now: it is not shown\n"
		"again. Anyone holding it can enroll %s until it is spent or expires, so keep it\n"
		"out of logs, tickets and shell history.\n",
		device != NULL ? "as that device" : "devices into the group");
	rc = EXIT_OK;
out:
	json_decref(body);
	moat_cli_json_wipe_free(doc);
	return rc;
}

static int enroll_list(struct moat_cli_ctx *c)
{
	json_t *items = NULL;
	int rc;

	rc = moat_cli_get_all(c, "/api/v1/enroll-tokens?limit=200", 0, &items);
	if (rc != EXIT_OK)
		return rc;
	if (c->json) {
		json_t *wrap = json_pack("{s:O, s:n}", "items", items, "next_cursor");
		moat_cli_print_json(stdout, wrap);
		json_decref(wrap);
	} else {
		moat_cli_print_table(stdout, items, enroll_cols,
				     sizeof(enroll_cols) / sizeof(enroll_cols[0]));
	}
	json_decref(items);
	return EXIT_OK;
}

int moat_cmd_enroll_token(int argc, char **argv)
{
	struct moat_cli_ctx c;
	const struct enroll_sub *s = NULL;
	const char *device = NULL, *group = NULL;
	unsigned long uses = 0, hours = 0;
	char cmd[64];
	int i, rc;

	rc = moat_cli_pick_sub(argc, argv, "enroll-token", enroll_subs,
			       sizeof(enroll_subs) / sizeof(enroll_subs[0]), sizeof(enroll_subs[0]),
			       enroll_usage, (const void **)&s);
	if (rc >= 0)
		return rc;
	(void)snprintf(cmd, sizeof(cmd), "enroll-token %s", s->name);
	moat_cli_ctx_init(&c, cmd);
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			enroll_sub_usage(stdout, s);
			return EXIT_OK;
		} else if (moat_cli_common_opt(&c, argc, argv, &i)) {
			continue;
		} else if (s->op == E_CREATE && strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
			device = argv[++i];
		} else if (s->op == E_CREATE && strcmp(argv[i], "--group") == 0 && i + 1 < argc) {
			group = argv[++i];
		} else if (s->op == E_CREATE && strcmp(argv[i], "--uses") == 0 && i + 1 < argc) {
			if (!enroll_number(argv[++i], ENROLL_USES_MAX, &uses))
				return moat_cli_usage_error(&c, "--uses must be 1..%lu",
							    ENROLL_USES_MAX);
		} else if (s->op == E_CREATE && strcmp(argv[i], "--hours") == 0 && i + 1 < argc) {
			if (!enroll_number(argv[++i], ENROLL_HOURS_MAX, &hours))
				return moat_cli_usage_error(&c, "--hours must be 1..%lu",
							    ENROLL_HOURS_MAX);
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "moat %s: unknown or incomplete option '%s'\n", cmd,
				argv[i]);
			enroll_sub_usage(stderr, s);
			return EXIT_USAGE;
		} else {
			fprintf(stderr, "moat %s: unexpected argument '%s'\n", cmd, argv[i]);
			enroll_sub_usage(stderr, s);
			return EXIT_USAGE;
		}
	}
	if (s->op == E_CREATE) {
		if ((device == NULL) == (group == NULL))
			return moat_cli_usage_error(&c, "give exactly one of --device ID and "
							"--group G");
		if (device != NULL && !moat_device_id_valid(device, strlen(device)))
			return moat_cli_usage_error(&c,
						    "'%s' is not a valid device id (1-64 of "
						    "[a-z0-9._-], starting with a letter or digit)",
						    device);
		if (group != NULL && !moat_device_id_valid(group, strlen(group)))
			return moat_cli_usage_error(&c, "'%s' is not a valid group name", group);
	}
	rc = moat_cli_resolve(&c, true);
	if (rc != EXIT_OK)
		goto out;
	rc = s->op == E_CREATE ? enroll_create(&c, device, group, uses, hours) : enroll_list(&c);
out:
	moat_cli_ctx_wipe(&c);
	return rc;
}
