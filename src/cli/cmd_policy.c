/* `moat policy ...`: the policies of the device registry
 * (/api/v1/policies): topic rules such as "allow publish d/${device}/#",
 * attached to groups (`moat group attach`) or to identities
 * (`moat device attach`). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/api_client.h"
#include "cli/cli.h"
#include "core/limits.h"
#include "registry/acl.h"
#include "tls/tls.h"

/* --rule given more often than a policy may hold rules is refused here;
 * the server checks each rule. */
#define POLICY_RULES_MAX MOAT_POLICY_MAX_RULES
/* A rules file: one rule per line, comments and blank lines; anything much
 * bigger than the largest policy is not one. */
#define POLICY_FILE_MAX (256u * 1024u)

enum policy_op { P_LIST, P_SHOW, P_SET, P_DELETE };

struct policy_sub {
	const char *name;
	enum policy_op op;
	int npos;
	const char *synopsis;
	const char *what;
};

static const struct policy_sub policy_subs[] = {
    {"list", P_LIST, 0, "list", "list policies"},
    {"show", P_SHOW, 1, "show NAME", "show one policy and its rules"},
    {"set", P_SET, 1, "set NAME (--rule RULE... | --file FILE) [--description D]",
     "create a policy or replace its rules. A rule reads\n"
     "\"allow|deny publish|subscribe|pubsub FILTER\"; the MQTT filter may use\n"
     "${device} (the identity) and ${group} (the group the policy is attached\n"
     "through). Deny wins; what no rule allows is denied. The change applies at\n"
     "once to every identity the policy reaches. Without --description a\n"
     "replaced policy keeps its own"},
    {"delete", P_DELETE, 1, "delete NAME",
     "delete a policy; it is detached from every group and identity (built-in\n"
     "policies cannot be deleted)"},
};

static const struct moat_cli_col policy_cols[] = {
    {"NAME", "name"},
    {"RULES", "rule_count"},
    {"BUILTIN", "builtin"},
    {"DESCRIPTION", "description"},
};

static const struct moat_cli_col policy_fields[] = {
    {"name", "name"},
    {"description", "description"},
    {"builtin", "builtin"},
    {"created_at", "created_at"},
    {"updated_at", "updated_at"},
};

static void policy_usage(FILE *f)
{
	size_t k;

	fprintf(f, "usage: moat policy <subcommand> [options]\n\nsubcommands:\n");
	for (k = 0; k < sizeof(policy_subs) / sizeof(policy_subs[0]); k++)
		fprintf(f, "  %s\n", policy_subs[k].synopsis);
	fprintf(f,
		"\nPolicy names: 1-64 of [a-z0-9._-], starting with a letter or digit.\n"
		"Quote rules for the shell: --rule 'allow publish d/${device}/#'.\n"
		"\noptions (every subcommand):\n%s"
		"\nRun 'moat policy <subcommand> --help' for one subcommand.\n",
		moat_cli_common_help);
}

static void policy_sub_usage(FILE *f, const struct policy_sub *s)
{
	fprintf(f, "usage: moat policy %s [options]\n\n%s.\n\noptions:\n", s->synopsis, s->what);
	if (s->op == P_SET)
		fprintf(f,
			"  --rule RULE           a rule (repeat for more, in order; at most %u)\n"
			"  --file FILE           the rules from FILE, one per line; blank lines\n"
			"                        and lines starting with '#' are skipped, leading\n"
			"                        and trailing blanks ignored\n"
			"  --description D       what the policy is for (up to 256 bytes)\n",
			POLICY_RULES_MAX);
	fputs(moat_cli_common_help, f);
}

static void policy_print(const struct moat_cli_ctx *c, json_t *doc)
{
	json_t *rules, *r;
	size_t i;

	if (c->json) {
		moat_cli_print_json(stdout, doc);
		return;
	}
	moat_cli_print_fields(stdout, doc, policy_fields,
			      sizeof(policy_fields) / sizeof(policy_fields[0]));
	rules = json_object_get(doc, "rules");
	printf("rules:\n");
	json_array_foreach(rules, i, r)
	{
		printf("  ");
		moat_cli_print_safe(stdout,
				    json_string_value(r) != NULL ? json_string_value(r) : "?");
		printf("\n");
	}
}

/*
 * The rules of FILE into arr; lines[i] gets the line number of rule i (for
 * the server's "rules[i]" in an error). Returns EXIT_OK or prints why.
 */
static int rules_from_file(const struct moat_cli_ctx *c, const char *file, json_t *arr,
			   unsigned *lines, size_t maxrules)
{
	char buf[MOAT_RULE_TEXT_MAX + 64];
	unsigned lineno = 0;
	size_t total = 0;
	int rc = EXIT_FAIL;
	FILE *f = fopen(file, "r");

	if (f == NULL) {
		fprintf(stderr, "moat %s: %s: %s\n", c->cmd, file, strerror(errno));
		return EXIT_FAIL;
	}
	while (fgets(buf, sizeof(buf), f) != NULL) {
		size_t n = strlen(buf);
		char *p = buf;

		lineno++;
		total += n;
		if (total > POLICY_FILE_MAX) {
			fprintf(stderr, "moat %s: %s: larger than %u bytes\n", c->cmd, file,
				POLICY_FILE_MAX);
			goto out;
		}
		if (n > 0 && buf[n - 1] != '\n' && !feof(f)) {
			fprintf(stderr, "moat %s: %s:%u: line longer than a rule can be\n", c->cmd,
				file, lineno);
			goto out;
		}
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
				 buf[n - 1] == '\t'))
			buf[--n] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		if (json_array_size(arr) >= maxrules) {
			fprintf(stderr, "moat %s: %s:%u: a policy has at most %zu rules\n", c->cmd,
				file, lineno, maxrules);
			goto out;
		}
		lines[json_array_size(arr)] = lineno;
		if (json_array_append_new(arr, json_string(p)) != 0) {
			fprintf(stderr, "moat %s: %s:%u: not valid UTF-8\n", c->cmd, file, lineno);
			goto out;
		}
	}
	if (ferror(f)) {
		fprintf(stderr, "moat %s: %s: read error\n", c->cmd, file);
		goto out;
	}
	if (json_array_size(arr) == 0) {
		fprintf(stderr, "moat %s: %s: no rules\n", c->cmd, file);
		goto out;
	}
	rc = EXIT_OK;
out:
	fclose(f);
	return rc;
}

/* PUT the policy; on a bad rule from a file, say which line it was. */
static int policy_set(struct moat_cli_ctx *c, const char *name, json_t *rules, const char *desc,
		      const char *file, const unsigned *lines)
{
	struct moat_hc_resp resp;
	char path[256];
	json_t *body, *doc = NULL;
	int rc = EXIT_FAIL;

	body = json_pack("{s:O}", "rules", rules);
	if (body == NULL ||
	    (desc != NULL && json_object_set_new(body, "description", json_string(desc)) != 0)) {
		fprintf(stderr, "moat %s: a rule or the description is not valid UTF-8\n", c->cmd);
		json_decref(body);
		return EXIT_FAIL;
	}
	(void)snprintf(path, sizeof(path), "/api/v1/policies/%s", name);
	if (moat_cli_send(c, "PUT", path, body, true, &resp) != EXIT_OK) {
		json_decref(body);
		return EXIT_FAIL;
	}
	doc = moat_cli_parse(&resp);
	if (resp.status < 200 || resp.status > 299) {
		const char *field = json_string_value(json_object_get(doc, "field"));
		moat_cli_report(c, &resp, doc);
		if (file != NULL && field != NULL && strncmp(field, "rules[", 6) == 0) {
			char *end;
			unsigned long i;
			errno = 0;
			i = strtoul(field + 6, &end, 10);
			if (errno == 0 && end != field + 6 && *end == ']' &&
			    i < json_array_size(rules))
				fprintf(stderr, "moat %s: that is %s line %u\n", c->cmd, file,
					lines[i]);
		}
		goto out;
	}
	if (doc == NULL) {
		fprintf(stderr, "moat %s: the server's answer (HTTP %d) is not JSON\n", c->cmd,
			resp.status);
		goto out;
	}
	if (c->json)
		moat_cli_print_json(stdout, doc);
	else
		printf("%s policy %s (%zu rules)\n", resp.status == 201 ? "created" : "replaced",
		       name, json_array_size(json_object_get(doc, "rules")));
	rc = EXIT_OK;
out:
	json_decref(body);
	json_decref(doc);
	moat_hc_resp_free(&resp);
	return rc;
}

int moat_cmd_policy(int argc, char **argv)
{
	struct moat_cli_ctx c;
	const struct policy_sub *s = NULL;
	const char *pos[1] = {NULL}, *desc = NULL, *file = NULL;
	unsigned lines[POLICY_RULES_MAX];
	char cmd[64], path[256];
	json_t *doc = NULL, *rules = NULL, *v;
	int i, npos = 0, rc;
	size_t k;

	rc = moat_cli_pick_sub(argc, argv, "policy", policy_subs,
			       sizeof(policy_subs) / sizeof(policy_subs[0]), sizeof(policy_subs[0]),
			       policy_usage, (const void **)&s);
	if (rc >= 0)
		return rc;
	(void)snprintf(cmd, sizeof(cmd), "policy %s", s->name);
	moat_cli_ctx_init(&c, cmd);
	rules = json_array();
	if (rules == NULL) {
		fprintf(stderr, "moat %s: out of memory\n", cmd);
		return EXIT_FAIL;
	}
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			policy_sub_usage(stdout, s);
			rc = EXIT_OK;
			goto out;
		} else if (moat_cli_common_opt(&c, argc, argv, &i)) {
			continue;
		} else if (s->op == P_SET && strcmp(argv[i], "--rule") == 0 && i + 1 < argc) {
			if (json_array_size(rules) >= POLICY_RULES_MAX) {
				rc = moat_cli_usage_error(&c, "a policy has at most %u rules",
							  POLICY_RULES_MAX);
				goto out;
			}
			if (json_array_append_new(rules, json_string(argv[++i])) != 0) {
				rc = moat_cli_usage_error(&c, "a rule is not valid UTF-8");
				goto out;
			}
		} else if (s->op == P_SET && strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
			file = argv[++i];
		} else if (s->op == P_SET && strcmp(argv[i], "--description") == 0 &&
			   i + 1 < argc) {
			desc = argv[++i];
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "moat %s: unknown or incomplete option '%s'\n", cmd,
				argv[i]);
			policy_sub_usage(stderr, s);
			rc = EXIT_USAGE;
			goto out;
		} else if (npos < s->npos) {
			pos[npos++] = argv[i];
		} else {
			fprintf(stderr, "moat %s: unexpected argument '%s'\n", cmd, argv[i]);
			policy_sub_usage(stderr, s);
			rc = EXIT_USAGE;
			goto out;
		}
	}
	if (npos < s->npos) {
		fprintf(stderr, "moat %s: missing argument\n", cmd);
		policy_sub_usage(stderr, s);
		rc = EXIT_USAGE;
		goto out;
	}
	if (npos > 0 && !moat_device_id_valid(pos[0], strlen(pos[0]))) {
		rc = moat_cli_usage_error(&c,
					  "'%s' is not a valid policy name (1-64 of [a-z0-9._-], "
					  "starting with a letter or digit)",
					  pos[0]);
		goto out;
	}
	if (s->op == P_SET && (file == NULL) == (json_array_size(rules) == 0)) {
		rc = moat_cli_usage_error(&c, "give the rules with --rule or with --file (not "
					      "both)");
		goto out;
	}
	if (file != NULL &&
	    (rc = rules_from_file(&c, file, rules, lines, POLICY_RULES_MAX)) != EXIT_OK)
		goto out;
	rc = moat_cli_resolve(&c, true);
	if (rc != EXIT_OK)
		goto out;
	if (npos > 0)
		(void)snprintf(path, sizeof(path), "/api/v1/policies/%s", pos[0]);
	switch (s->op) {
	case P_LIST:
		rc = moat_cli_get_all(&c, "/api/v1/policies?limit=200", 0, &doc);
		if (rc != EXIT_OK)
			break;
		if (c.json) {
			json_t *wrap = json_pack("{s:O, s:n}", "items", doc, "next_cursor");
			moat_cli_print_json(stdout, wrap);
			json_decref(wrap);
		} else {
			json_array_foreach(doc, k, v)
			{
				json_t *r = json_object_get(v, "rules");
				(void)json_object_set_new(
				    v, "rule_count", json_integer((json_int_t)json_array_size(r)));
			}
			moat_cli_print_table(stdout, doc, policy_cols,
					     sizeof(policy_cols) / sizeof(policy_cols[0]));
		}
		break;
	case P_SHOW:
		rc = moat_cli_call(&c, "GET", path, NULL, &doc);
		if (rc == EXIT_OK)
			policy_print(&c, doc);
		break;
	case P_SET:
		rc = policy_set(&c, pos[0], rules, desc, file, lines);
		break;
	case P_DELETE:
		rc = moat_cli_call(&c, "DELETE", path, NULL, &doc);
		if (rc == EXIT_OK && !c.json)
			printf("deleted policy %s\n", pos[0]);
		break;
	}
out:
	json_decref(rules);
	json_decref(doc);
	moat_cli_ctx_wipe(&c);
	return rc;
}
