/* `moat group ...`: groups of the device registry (/api/v1/groups). A
 * policy attached to a group applies to every member, with ${group} the
 * group's name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/api_client.h"
#include "cli/cli.h"
#include "tls/tls.h"

enum group_op { G_CREATE, G_LIST, G_SHOW, G_DELETE, G_ATTACH, G_DETACH };

struct group_sub {
	const char *name;
	enum group_op op;
	int npos;
	const char *synopsis;
	const char *what;
};

static const struct group_sub group_subs[] = {
    {"create", G_CREATE, 1, "create NAME [--description D]", "create an empty group"},
    {"list", G_LIST, 0, "list", "list groups with their policies and member counts"},
    {"show", G_SHOW, 1, "show NAME", "show one group"},
    {"delete", G_DELETE, 1, "delete NAME",
     "delete a group: its members leave it and its policies are detached from\n"
     "it (the group \"devices\" cannot be deleted)"},
    {"attach", G_ATTACH, 2, "attach NAME POLICY",
     "attach POLICY to the group: it applies to every member at once"},
    {"detach", G_DETACH, 2, "detach NAME POLICY", "detach POLICY from the group"},
};

static const struct moat_cli_col group_cols[] = {
    {"NAME", "name"},	    {"MEMBERS", "members"},	    {"POLICIES", "policies"},
    {"BUILTIN", "builtin"}, {"DESCRIPTION", "description"},
};

static const struct moat_cli_col group_fields[] = {
    {"name", "name"},	    {"description", "description"}, {"builtin", "builtin"},
    {"members", "members"}, {"policies", "policies"},	    {"created_at", "created_at"},
};

static void group_usage(FILE *f)
{
	size_t k;

	fprintf(f, "usage: moat group <subcommand> [options]\n\nsubcommands:\n");
	for (k = 0; k < sizeof(group_subs) / sizeof(group_subs[0]); k++)
		fprintf(f, "  %s\n", group_subs[k].synopsis);
	fprintf(f,
		"\nGroup and policy names: 1-64 of [a-z0-9._-], starting with a letter or\n"
		"digit. Members are added with 'moat device group-add ID GROUP'.\n"
		"\noptions (every subcommand):\n%s"
		"\nRun 'moat group <subcommand> --help' for one subcommand.\n",
		moat_cli_common_help);
}

static void group_sub_usage(FILE *f, const struct group_sub *s)
{
	fprintf(f, "usage: moat group %s [options]\n\n%s.\n\noptions:\n", s->synopsis, s->what);
	if (s->op == G_CREATE)
		fprintf(f, "  --description D       what the group is for (up to 256 bytes)\n");
	fputs(moat_cli_common_help, f);
}

static bool name_valid(const char *s)
{
	return moat_device_id_valid(s, strlen(s));
}

/* The policies array as "a, b" for tables and fields. */
static void group_print(const struct moat_cli_ctx *c, json_t *doc)
{
	if (c->json) {
		moat_cli_print_json(stdout, doc);
		return;
	}
	moat_cli_flatten_names(doc, "policies");
	moat_cli_print_fields(stdout, doc, group_fields,
			      sizeof(group_fields) / sizeof(group_fields[0]));
}

int moat_cmd_group(int argc, char **argv)
{
	struct moat_cli_ctx c;
	const struct group_sub *s = NULL;
	const char *pos[2] = {NULL, NULL}, *desc = NULL;
	char cmd[64], path[320];
	json_t *doc = NULL, *body = NULL, *v;
	int i, npos = 0, rc;
	size_t k;

	rc = moat_cli_pick_sub(argc, argv, "group", group_subs,
			       sizeof(group_subs) / sizeof(group_subs[0]), sizeof(group_subs[0]),
			       group_usage, (const void **)&s);
	if (rc >= 0)
		return rc;
	(void)snprintf(cmd, sizeof(cmd), "group %s", s->name);
	moat_cli_ctx_init(&c, cmd);
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			group_sub_usage(stdout, s);
			return EXIT_OK;
		} else if (moat_cli_common_opt(&c, argc, argv, &i)) {
			continue;
		} else if (s->op == G_CREATE && strcmp(argv[i], "--description") == 0 &&
			   i + 1 < argc) {
			desc = argv[++i];
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "moat %s: unknown or incomplete option '%s'\n", cmd,
				argv[i]);
			group_sub_usage(stderr, s);
			return EXIT_USAGE;
		} else if (npos < s->npos) {
			pos[npos++] = argv[i];
		} else {
			fprintf(stderr, "moat %s: unexpected argument '%s'\n", cmd, argv[i]);
			group_sub_usage(stderr, s);
			return EXIT_USAGE;
		}
	}
	if (npos < s->npos) {
		fprintf(stderr, "moat %s: missing argument\n", cmd);
		group_sub_usage(stderr, s);
		return EXIT_USAGE;
	}
	for (k = 0; k < (size_t)npos; k++)
		if (!name_valid(pos[k]))
			return moat_cli_usage_error(&c,
						    "'%s' is not a valid %s name (1-64 of "
						    "[a-z0-9._-], starting with a letter or digit)",
						    pos[k], k == 0 ? "group" : "policy");
	rc = moat_cli_resolve(&c, true);
	if (rc != EXIT_OK)
		goto out;
	if (npos > 0)
		(void)snprintf(path, sizeof(path), "/api/v1/groups/%s", pos[0]);
	switch (s->op) {
	case G_CREATE:
		body = json_pack("{s:s, s:s}", "name", pos[0], "description",
				 desc != NULL ? desc : "");
		if (body == NULL) {
			rc = moat_cli_usage_error(&c, "the description is not valid UTF-8");
			break;
		}
		rc = moat_cli_call(&c, "POST", "/api/v1/groups", body, &doc);
		if (rc != EXIT_OK)
			break;
		if (c.json)
			moat_cli_print_json(stdout, doc);
		else
			printf("created group %s\n", pos[0]);
		break;
	case G_LIST:
		rc = moat_cli_get_all(&c, "/api/v1/groups?limit=200", 0, &doc);
		if (rc != EXIT_OK)
			break;
		if (c.json) {
			json_t *wrap = json_pack("{s:O, s:n}", "items", doc, "next_cursor");
			moat_cli_print_json(stdout, wrap);
			json_decref(wrap);
		} else {
			json_array_foreach(doc, k, v) moat_cli_flatten_names(v, "policies");
			moat_cli_print_table(stdout, doc, group_cols,
					     sizeof(group_cols) / sizeof(group_cols[0]));
		}
		break;
	case G_SHOW:
		rc = moat_cli_call(&c, "GET", path, NULL, &doc);
		if (rc == EXIT_OK)
			group_print(&c, doc);
		break;
	case G_DELETE:
		rc = moat_cli_call(&c, "DELETE", path, NULL, &doc);
		if (rc == EXIT_OK && !c.json)
			printf("deleted group %s\n", pos[0]);
		break;
	case G_ATTACH:
		(void)snprintf(path, sizeof(path), "/api/v1/groups/%s/policies", pos[0]);
		body = json_pack("{s:s}", "policy", pos[1]);
		rc = body != NULL ? moat_cli_call(&c, "POST", path, body, &doc) : EXIT_FAIL;
		if (rc != EXIT_OK)
			break;
		if (c.json)
			moat_cli_print_json(stdout, doc);
		else
			printf("attached policy %s to group %s\n", pos[1], pos[0]);
		break;
	case G_DETACH:
		(void)snprintf(path, sizeof(path), "/api/v1/groups/%s/policies/%s", pos[0], pos[1]);
		rc = moat_cli_call(&c, "DELETE", path, NULL, &doc);
		if (rc == EXIT_OK && !c.json)
			printf("detached policy %s from group %s\n", pos[1], pos[0]);
		break;
	}
out:
	json_decref(body);
	json_decref(doc);
	moat_cli_ctx_wipe(&c);
	return rc;
}
