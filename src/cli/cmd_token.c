/* `moat token ...`: API tokens for automation (/api/v1/tokens). The secret
 * is shown once, when the token is created; the server keeps only its hash. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/api_client.h"
#include "cli/cli.h"

/* docs/api.md: tokens expire after 1-365 days. */
#define TOKEN_DAYS_MAX 365ul
/* Ids go into the request path: be strict about what we put there. */
#define TOKEN_ID_MAX 128u

enum token_op { T_CREATE, T_LIST, T_REVOKE };

struct token_sub {
	const char *name;
	enum token_op op;
	int npos;
	const char *synopsis;
	const char *what;
};

static const struct token_sub token_subs[] = {
    {"create", T_CREATE, 0, "create --name NAME --role ROLE [--days N]",
     "create an API token and print its secret, once: store it now. ROLE is\n"
     "admin, operator, auditor, viewer or metrics (a Prometheus scraper) and\n"
     "no higher than your own; it expires after N days (1-365, default 90)"},
    {"list", T_LIST, 0, "list", "list API tokens (never their secrets)"},
    {"revoke", T_REVOKE, 1, "revoke ID", "revoke a token at once"},
};

static const struct moat_cli_col token_cols[] = {
    {"ID", "id"},
    {"NAME", "name"},
    {"ROLE", "role"},
    {"CREATOR", "creator"},
    {"CREATED", "created_at"},
    {"EXPIRES", "expires_at"},
    {"LAST-USED", "last_used"},
    {"REVOKED", "revoked"},
};

static void token_usage(FILE *f)
{
	size_t k;

	fprintf(f, "usage: moat token <subcommand> [options]\n\nsubcommands:\n");
	for (k = 0; k < sizeof(token_subs) / sizeof(token_subs[0]); k++)
		fprintf(f, "  %s\n", token_subs[k].synopsis);
	fprintf(f,
		"\nA token is used as MOAT_TOKEN=moat_at_... (Authorization: Bearer).\n"
		"\noptions (every subcommand):\n%s"
		"\nRun 'moat token <subcommand> --help' for one subcommand.\n",
		moat_cli_common_help);
}

static void token_sub_usage(FILE *f, const struct token_sub *s)
{
	fprintf(f, "usage: moat token %s [options]\n\n%s.\n\noptions:\n", s->synopsis, s->what);
	if (s->op == T_CREATE)
		fprintf(
		    f, "  --name NAME           what it is for (shown in lists and the audit log)\n"
		       "  --role ROLE           admin, operator, auditor, viewer or metrics\n"
		       "  --days N              lifetime in days, 1-365 (default 90)\n");
	fputs(moat_cli_common_help, f);
}

static bool token_id_valid(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= TOKEN_ID_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n;
}

static int token_create(struct moat_cli_ctx *c, const char *name, const char *role,
			unsigned long days)
{
	json_t *body, *doc = NULL;
	const char *secret;
	int rc = EXIT_FAIL;

	body = json_pack("{s:s, s:s}", "name", name, "role", role);
	if (body == NULL) {
		fprintf(stderr, "moat %s: the name is not valid UTF-8\n", c->cmd);
		return EXIT_FAIL;
	}
	if (days > 0 &&
	    json_object_set_new(body, "expires_in_days", json_integer((json_int_t)days)) != 0)
		goto out;
	if (moat_cli_call(c, "POST", "/api/v1/tokens", body, &doc) != EXIT_OK)
		goto out;
	secret = json_string_value(json_object_get(doc, "token"));
	if (secret == NULL) {
		fprintf(stderr, "moat %s: the server's answer has no token\n", c->cmd);
		goto out;
	}
	if (c->json) {
		moat_cli_print_json(stdout, doc);
	} else {
		const char *id = json_string_value(json_object_get(doc, "id"));
		const char *exp = json_string_value(json_object_get(doc, "expires_at"));
		printf("id:      ");
		moat_cli_print_safe(stdout, id != NULL ? id : "?");
		printf("\nexpires: ");
		moat_cli_print_safe(stdout, exp != NULL ? exp : "?");
		printf("\ntoken:   ");
		moat_cli_print_safe(stdout, secret);
		printf("\n");
	}
	fflush(stdout);
	fprintf(stderr, "Store the token now (a secret manager, not a script): it is not shown "
			"again. Use it as MOAT_TOKEN or 'Authorization: Bearer'.\n");
	rc = EXIT_OK;
out:
	json_decref(body);
	moat_cli_json_wipe_free(doc);
	return rc;
}

int moat_cmd_token(int argc, char **argv)
{
	struct moat_cli_ctx c;
	const struct token_sub *s = NULL;
	const char *pos[1] = {NULL}, *name = NULL, *role = NULL;
	unsigned long days = 0;
	char cmd[64], path[256];
	json_t *doc = NULL;
	int i, npos = 0, rc;

	rc = moat_cli_pick_sub(argc, argv, "token", token_subs,
			       sizeof(token_subs) / sizeof(token_subs[0]), sizeof(token_subs[0]),
			       token_usage, (const void **)&s);
	if (rc >= 0)
		return rc;
	(void)snprintf(cmd, sizeof(cmd), "token %s", s->name);
	moat_cli_ctx_init(&c, cmd);
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			token_sub_usage(stdout, s);
			return EXIT_OK;
		} else if (moat_cli_common_opt(&c, argc, argv, &i)) {
			continue;
		} else if (s->op == T_CREATE && strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
			name = argv[++i];
		} else if (s->op == T_CREATE && strcmp(argv[i], "--role") == 0 && i + 1 < argc) {
			role = argv[++i];
		} else if (s->op == T_CREATE && strcmp(argv[i], "--days") == 0 && i + 1 < argc) {
			char *end;
			const char *v = argv[++i];
			errno = 0;
			days = strtoul(v, &end, 10);
			if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || days == 0 ||
			    days > TOKEN_DAYS_MAX)
				return moat_cli_usage_error(&c, "--days must be 1..365");
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "moat %s: unknown or incomplete option '%s'\n", cmd,
				argv[i]);
			token_sub_usage(stderr, s);
			return EXIT_USAGE;
		} else if (npos < s->npos) {
			pos[npos++] = argv[i];
		} else {
			fprintf(stderr, "moat %s: unexpected argument '%s'\n", cmd, argv[i]);
			token_sub_usage(stderr, s);
			return EXIT_USAGE;
		}
	}
	if (npos < s->npos) {
		fprintf(stderr, "moat %s: missing argument\n", cmd);
		token_sub_usage(stderr, s);
		return EXIT_USAGE;
	}
	if (s->op == T_CREATE) {
		if (name == NULL || *name == '\0' || role == NULL)
			return moat_cli_usage_error(&c, "--name and --role are required");
		if (!moat_cli_role_valid(role, true))
			return moat_cli_usage_error(&c,
						    "'%s' is not a role (admin, operator, auditor, "
						    "viewer, metrics)",
						    role);
	}
	if (s->op == T_REVOKE && !token_id_valid(pos[0]))
		return moat_cli_usage_error(&c, "'%s' is not a token id (see 'moat token list')",
					    pos[0]);
	rc = moat_cli_resolve(&c, true);
	if (rc != EXIT_OK)
		goto out;
	switch (s->op) {
	case T_CREATE:
		rc = token_create(&c, name, role, days);
		break;
	case T_LIST:
		rc = moat_cli_get_all(&c, "/api/v1/tokens?limit=200", 0, &doc);
		if (rc != EXIT_OK)
			break;
		if (c.json) {
			json_t *wrap = json_pack("{s:O, s:n}", "items", doc, "next_cursor");
			moat_cli_print_json(stdout, wrap);
			json_decref(wrap);
		} else {
			moat_cli_print_table(stdout, doc, token_cols,
					     sizeof(token_cols) / sizeof(token_cols[0]));
		}
		break;
	case T_REVOKE:
		(void)snprintf(path, sizeof(path), "/api/v1/tokens/%s", pos[0]);
		rc = moat_cli_call(&c, "DELETE", path, NULL, &doc);
		if (rc != EXIT_OK)
			break;
		if (c.json && doc != NULL)
			moat_cli_print_json(stdout, doc);
		else
			printf("revoked token %s\n", pos[0]);
		break;
	}
out:
	json_decref(doc);
	moat_cli_ctx_wipe(&c);
	return rc;
}
