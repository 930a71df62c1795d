/* `moat user ...`: operator accounts over the management API
 * (/api/v1/users, /api/v1/me/password). */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "cli/api_client.h"
#include "cli/cli.h"

#define USER_PW_MAX 1024u

enum user_op { U_ADD, U_LIST, U_SHOW, U_DISABLE, U_ENABLE, U_SET_ROLE, U_RESET_MFA, U_PASSWD };

struct user_sub {
	const char *name;
	enum user_op op;
	int npos; /* positional arguments */
	const char *synopsis;
	const char *what;
};

static const struct user_sub user_subs[] = {
    {"add", U_ADD, 1, "add NAME --role ROLE [--password-file FILE]",
     "create an operator account; the password is asked twice on a terminal,\n"
     "otherwise read from one line of stdin (or from the first line of FILE)"},
    {"list", U_LIST, 0, "list", "list operator accounts"},
    {"show", U_SHOW, 1, "show NAME", "show one operator account"},
    {"disable", U_DISABLE, 1, "disable NAME",
     "disable an account (its sessions and logins are refused)"},
    {"enable", U_ENABLE, 1, "enable NAME", "enable a disabled account"},
    {"set-role", U_SET_ROLE, 2, "set-role NAME ROLE", "change an account's role"},
    {"reset-mfa", U_RESET_MFA, 1, "reset-mfa NAME",
     "remove an account's TOTP and recovery codes (a lost phone); an\n"
     "administrator enrols again at the next login"},
    {"passwd", U_PASSWD, 0, "passwd",
     "change your own password: the current one, then the new one (asked twice\n"
     "on a terminal; otherwise two lines of stdin: current, new). Your other\n"
     "sessions end"},
};

static const struct moat_cli_col user_cols[] = {
    {"USERNAME", "username"}, {"ROLE", "role"},		 {"DISABLED", "disabled"},
    {"MFA", "mfa_enrolled"},  {"CREATED", "created_at"}, {"UPDATED", "updated_at"},
};

static const struct moat_cli_col user_fields[] = {
    {"username", "username"},	  {"role", "role"},
    {"disabled", "disabled"},	  {"mfa_enrolled", "mfa_enrolled"},
    {"created_at", "created_at"}, {"updated_at", "updated_at"},
};

static void user_usage(FILE *f)
{
	size_t k;

	fprintf(f, "usage: moat user <subcommand> [options]\n\nsubcommands:\n");
	for (k = 0; k < sizeof(user_subs) / sizeof(user_subs[0]); k++)
		fprintf(f, "  %s\n", user_subs[k].synopsis);
	fprintf(f,
		"\nRoles: admin, operator, auditor, viewer (docs/api.md). User names: 1-64 of\n"
		"[a-z0-9._-], starting with a letter or digit.\n"
		"\noptions (every subcommand):\n%s"
		"\nRun 'moat user <subcommand> --help' for one subcommand.\n",
		moat_cli_common_help);
}

static void user_sub_usage(FILE *f, const struct user_sub *s)
{
	fprintf(f, "usage: moat user %s [options]\n\n%s.\n\noptions:\n", s->synopsis, s->what);
	if (s->op == U_ADD)
		fprintf(f,
			"  --role ROLE           admin, operator, auditor or viewer\n"
			"  --password-file FILE  read the password from the first line of FILE\n");
	fputs(moat_cli_common_help, f);
}

static int user_passwd(struct moat_cli_ctx *c)
{
	char cur[USER_PW_MAX], pw[USER_PW_MAX], err[512];
	json_t *body = NULL;
	int rc = EXIT_FAIL;

	cur[0] = pw[0] = '\0';
	if (moat_cli_read_line("Current password: ", true, cur, sizeof(cur), err, sizeof(err)) !=
	    MOAT_OK) {
		fprintf(stderr, "moat %s: %s\n", c->cmd, err);
		goto out;
	}
	if (moat_cli_new_password(NULL, "New password: ", pw, sizeof(pw), err, sizeof(err)) !=
	    MOAT_OK) {
		fprintf(stderr, "moat %s: %s\n", c->cmd, err);
		goto out;
	}
	body = json_pack("{s:s, s:s}", "current_password", cur, "new_password", pw);
	sodium_memzero(cur, sizeof(cur));
	sodium_memzero(pw, sizeof(pw));
	if (body == NULL) {
		fprintf(stderr, "moat %s: a password is not valid UTF-8\n", c->cmd);
		goto out;
	}
	if (moat_cli_call(c, "POST", "/api/v1/me/password", body, NULL) != EXIT_OK)
		goto out;
	fprintf(stderr, "Password changed; your other sessions have ended.\n");
	rc = EXIT_OK;
out:
	sodium_memzero(cur, sizeof(cur));
	sodium_memzero(pw, sizeof(pw));
	moat_cli_json_wipe_free(body);
	return rc;
}

static int user_add(struct moat_cli_ctx *c, const char *name, const char *role, const char *pwfile)
{
	char pw[USER_PW_MAX], err[512], prompt[128];
	json_t *body = NULL, *doc = NULL;
	int rc = EXIT_FAIL;

	pw[0] = '\0';
	(void)snprintf(prompt, sizeof(prompt), "Password for %s: ", name);
	if (moat_cli_new_password(pwfile, prompt, pw, sizeof(pw), err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat %s: %s\n", c->cmd, err);
		goto out;
	}
	body = json_pack("{s:s, s:s, s:s}", "username", name, "role", role, "password", pw);
	sodium_memzero(pw, sizeof(pw));
	if (body == NULL) {
		fprintf(stderr, "moat %s: the password is not valid UTF-8\n", c->cmd);
		goto out;
	}
	if (moat_cli_call(c, "POST", "/api/v1/users", body, &doc) != EXIT_OK)
		goto out;
	if (c->json)
		moat_cli_print_json(stdout, doc);
	else
		printf("created user %s (%s)\n", name, role);
	rc = EXIT_OK;
out:
	sodium_memzero(pw, sizeof(pw));
	moat_cli_json_wipe_free(body);
	json_decref(doc);
	return rc;
}

/* PATCH one account and say what changed. */
static int user_patch(struct moat_cli_ctx *c, const char *name, json_t *body, const char *done)
{
	char path[256];
	json_t *doc = NULL;
	int rc = EXIT_FAIL;

	if (body == NULL) {
		fprintf(stderr, "moat %s: out of memory\n", c->cmd);
		return EXIT_FAIL;
	}
	(void)snprintf(path, sizeof(path), "/api/v1/users/%s", name);
	if (moat_cli_call(c, "PATCH", path, body, &doc) == EXIT_OK) {
		if (c->json)
			moat_cli_print_json(stdout, doc);
		else
			printf("%s\n", done);
		rc = EXIT_OK;
	}
	json_decref(body);
	json_decref(doc);
	return rc;
}

int moat_cmd_user(int argc, char **argv)
{
	struct moat_cli_ctx c;
	const struct user_sub *s = NULL;
	const char *pos[2] = {NULL, NULL}, *role = NULL, *pwfile = NULL;
	char cmd[64], path[256], done[256];
	json_t *doc = NULL;
	int i, npos = 0, rc;

	rc = moat_cli_pick_sub(argc, argv, "user", user_subs,
			       sizeof(user_subs) / sizeof(user_subs[0]), sizeof(user_subs[0]),
			       user_usage, (const void **)&s);
	if (rc >= 0)
		return rc;
	(void)snprintf(cmd, sizeof(cmd), "user %s", s->name);
	moat_cli_ctx_init(&c, cmd);
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			user_sub_usage(stdout, s);
			return EXIT_OK;
		} else if (moat_cli_common_opt(&c, argc, argv, &i)) {
			continue;
		} else if (s->op == U_ADD && strcmp(argv[i], "--role") == 0 && i + 1 < argc) {
			role = argv[++i];
		} else if (s->op == U_ADD && strcmp(argv[i], "--password-file") == 0 &&
			   i + 1 < argc) {
			pwfile = argv[++i];
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "moat %s: unknown or incomplete option '%s'\n", cmd,
				argv[i]);
			user_sub_usage(stderr, s);
			return EXIT_USAGE;
		} else if (npos < s->npos) {
			pos[npos++] = argv[i];
		} else {
			fprintf(stderr, "moat %s: unexpected argument '%s'\n", cmd, argv[i]);
			user_sub_usage(stderr, s);
			return EXIT_USAGE;
		}
	}
	if (npos < s->npos) {
		fprintf(stderr, "moat %s: missing argument\n", cmd);
		user_sub_usage(stderr, s);
		return EXIT_USAGE;
	}
	if (npos > 0 && !moat_cli_username_valid(pos[0]))
		return moat_cli_usage_error(&c,
					    "'%s' is not a valid user name (1-64 of [a-z0-9._-], "
					    "starting with a letter or digit)",
					    pos[0]);
	if (s->op == U_SET_ROLE)
		role = pos[1];
	if (s->op == U_ADD && role == NULL)
		return moat_cli_usage_error(&c, "--role is required (admin, operator, auditor "
						"or viewer)");
	if (role != NULL && !moat_cli_role_valid(role, false))
		return moat_cli_usage_error(
		    &c, "'%s' is not a role (admin, operator, auditor, viewer)", role);
	rc = moat_cli_resolve(&c, true);
	if (rc != EXIT_OK)
		goto out;
	if (npos > 0)
		(void)snprintf(path, sizeof(path), "/api/v1/users/%s", pos[0]);
	switch (s->op) {
	case U_ADD:
		rc = user_add(&c, pos[0], role, pwfile);
		break;
	case U_LIST:
		rc = moat_cli_get_all(&c, "/api/v1/users?limit=200", 0, &doc);
		if (rc != EXIT_OK)
			break;
		if (c.json) {
			json_t *wrap = json_pack("{s:O, s:n}", "items", doc, "next_cursor");
			moat_cli_print_json(stdout, wrap);
			json_decref(wrap);
		} else {
			moat_cli_print_table(stdout, doc, user_cols,
					     sizeof(user_cols) / sizeof(user_cols[0]));
		}
		break;
	case U_SHOW:
		rc = moat_cli_call(&c, "GET", path, NULL, &doc);
		if (rc != EXIT_OK)
			break;
		if (c.json)
			moat_cli_print_json(stdout, doc);
		else
			moat_cli_print_fields(stdout, doc, user_fields,
					      sizeof(user_fields) / sizeof(user_fields[0]));
		break;
	case U_DISABLE:
	case U_ENABLE:
		(void)snprintf(done, sizeof(done), "%s user %s",
			       s->op == U_DISABLE ? "disabled" : "enabled", pos[0]);
		rc = user_patch(&c, pos[0], json_pack("{s:b}", "disabled", s->op == U_DISABLE),
				done);
		break;
	case U_SET_ROLE:
		(void)snprintf(done, sizeof(done), "user %s is now %s", pos[0], role);
		rc = user_patch(&c, pos[0], json_pack("{s:s}", "role", role), done);
		break;
	case U_RESET_MFA:
		if (snprintf(path, sizeof(path), "/api/v1/users/%s/reset-mfa", pos[0]) < 0) {
			rc = EXIT_FAIL;
			break;
		}
		rc = moat_cli_call(&c, "POST", path, NULL, &doc);
		if (rc != EXIT_OK)
			break;
		if (c.json && doc != NULL)
			moat_cli_print_json(stdout, doc);
		else
			printf("removed the TOTP and recovery codes of %s\n", pos[0]);
		break;
	case U_PASSWD:
		rc = user_passwd(&c);
		break;
	}
out:
	json_decref(doc);
	moat_cli_ctx_wipe(&c);
	return rc;
}
