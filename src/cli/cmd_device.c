/* `moat device ...`: devices and service identities in the registry
 * (/api/v1/devices): register, list, show, the lifecycle (activate,
 * disable, quarantine, release, decommission), group memberships and
 * direct policy attachments. `moat device import` works offline on a
 * data directory instead (cmd_device_import.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/api_client.h"
#include "cli/cli.h"
#include "core/limits.h"
#include "tls/tls.h"

/* --group given more often than an identity can usefully be in groups
 * (the server's cap, docs/api.md). */
#define DEVICE_GROUPS_MAX 32u

enum device_op {
	D_REGISTER,
	D_LIST,
	D_SHOW,
	D_ACTIVATE,
	D_DISABLE,
	D_QUARANTINE,
	D_RELEASE,
	D_GROUP_ADD,
	D_GROUP_REMOVE,
	D_ATTACH,
	D_DETACH,
	D_DECOMMISSION
};

struct device_sub {
	const char *name;
	enum device_op op;
	int npos;
	const char *synopsis;
	const char *what;
};

static const struct device_sub device_subs[] = {
    {"register", D_REGISTER, 1, "register ID [--kind service] [--active] [--group G]...",
     "register a device (or, with --kind service, a service identity). A device\n"
     "joins the groups given, or the group \"devices\" when none is; a service\n"
     "only the groups given. It starts registered (it may enrol, not connect)\n"
     "unless --active"},
    {"list", D_LIST, 0, "list [--state S] [--kind K] [--expiring Nd]",
     "list devices and services (state, certificate expiry, last seen)"},
    {"show", D_SHOW, 1, "show ID", "show one identity with its groups and policies"},
    {"activate", D_ACTIVATE, 1, "activate ID",
     "let a registered or disabled identity connect (state active)"},
    {"disable", D_DISABLE, 1, "disable ID",
     "refuse the identity's connections (state disabled; it is disconnected)"},
    {"quarantine", D_QUARANTINE, 1, "quarantine ID",
     "quarantine an active or disabled identity: it may only publish under\n"
     "$moat/q/ID/ and receives nothing"},
    {"release", D_RELEASE, 1, "release ID",
     "end the quarantine of an identity (quarantined -> active)"},
    {"group-add", D_GROUP_ADD, 2, "group-add ID GROUP", "make the identity a member of GROUP"},
    {"group-remove", D_GROUP_REMOVE, 2, "group-remove ID GROUP",
     "end the identity's membership of GROUP"},
    {"attach", D_ATTACH, 2, "attach ID POLICY",
     "attach POLICY to the identity directly (meant for services; devices\n"
     "normally get policies through their groups)"},
    {"detach", D_DETACH, 2, "detach ID POLICY", "detach a directly attached policy"},
    {"decommission", D_DECOMMISSION, 1, "decommission ID [--yes]",
     "retire an identity for good: its certificates are revoked, its enrollment\n"
     "tokens burned, its sessions ended and its retained messages removed; the\n"
     "id can never connect or be registered again. Asks you to type the id on\n"
     "a terminal; elsewhere --yes is required"},
};

static const struct moat_cli_col device_cols[] = {
    {"ID", "id"},
    {"KIND", "kind"},
    {"STATE", "state"},
    {"GROUPS", "groups"},
    {"POLICIES", "policies"},
    {"CERT-EXPIRES", "cert_expires_at"},
    {"LAST-SEEN", "last_seen"},
};

static const struct moat_cli_col device_fields[] = {
    {"id", "id"},
    {"kind", "kind"},
    {"state", "state"},
    {"groups", "groups"},
    {"policies", "policies"},
    {"created_at", "created_at"},
    {"updated_at", "updated_at"},
    {"first_seen", "first_seen"},
    {"last_seen", "last_seen"},
    {"last_addr", "last_addr"},
    {"firmware", "firmware"},
    {"cert_expires_at", "cert_expires_at"},
};

static void device_usage(FILE *f)
{
	size_t k;

	fprintf(f, "usage: moat device <subcommand> [options]\n\nsubcommands:\n");
	for (k = 0; k < sizeof(device_subs) / sizeof(device_subs[0]); k++)
		fprintf(f, "  %s\n", device_subs[k].synopsis);
	fprintf(f, "  import --dir DIR --file IDS.txt [--group G] [--state S]   (offline, on the\n"
		   "      data directory: many devices in one transaction)\n");
	fprintf(f,
		"\nIds, group and policy names: 1-64 of [a-z0-9._-], starting with a letter\n"
		"or digit. States: registered, active, disabled, quarantined, decommissioned.\n"
		"\noptions (every subcommand):\n%s"
		"\nRun 'moat device <subcommand> --help' for one subcommand.\n",
		moat_cli_common_help);
}

static void device_sub_usage(FILE *f, const struct device_sub *s)
{
	fprintf(f, "usage: moat device %s [options]\n\n%s.\n\noptions:\n", s->synopsis, s->what);
	if (s->op == D_REGISTER)
		fprintf(f, "  --kind KIND           device (default) or service\n"
			   "  --active              active at once (default: registered)\n"
			   "  --group G             a group to join (repeat for more)\n");
	if (s->op == D_LIST)
		fprintf(f,
			"  --state S             only identities in state S\n"
			"  --kind K              only devices or only services\n"
			"  --expiring Nd         only identities whose certificate expires within\n"
			"                        N days (30d, or just 30)\n");
	if (s->op == D_DECOMMISSION)
		fprintf(
		    f,
		    "  --yes                 do not ask (required when stdin is not a terminal)\n");
	fputs(moat_cli_common_help, f);
}

static bool name_valid(const char *s)
{
	return moat_device_id_valid(s, strlen(s));
}

static void device_print(const struct moat_cli_ctx *c, json_t *doc)
{
	if (c->json) {
		moat_cli_print_json(stdout, doc);
		return;
	}
	moat_cli_flatten_names(doc, "groups");
	moat_cli_flatten_names(doc, "policies");
	moat_cli_print_fields(stdout, doc, device_fields,
			      sizeof(device_fields) / sizeof(device_fields[0]));
}

static int device_register(struct moat_cli_ctx *c, const char *id, const char *kind, bool active,
			   const char *const *groups, size_t ngroups)
{
	json_t *body, *arr = NULL, *doc = NULL;
	const char *st, *kd, *gs;
	bool ok;
	size_t k;
	int rc = EXIT_FAIL;

	body = json_pack("{s:s}", "id", id);
	ok = body != NULL;
	if (ok && kind != NULL)
		ok = json_object_set_new(body, "kind", json_string(kind)) == 0;
	if (ok && active)
		ok = json_object_set_new(body, "state", json_string("active")) == 0;
	if (ok && ngroups > 0) {
		arr = json_array();
		ok = arr != NULL;
		for (k = 0; ok && k < ngroups; k++)
			ok = json_array_append_new(arr, json_string(groups[k])) == 0;
		ok = ok && json_object_set(body, "groups", arr) == 0;
	}
	if (!ok) {
		fprintf(stderr, "moat %s: out of memory\n", c->cmd);
		goto out;
	}
	if (moat_cli_call(c, "POST", "/api/v1/devices", body, &doc) != EXIT_OK)
		goto out;
	if (c->json) {
		moat_cli_print_json(stdout, doc);
	} else {
		moat_cli_flatten_names(doc, "groups");
		st = json_string_value(json_object_get(doc, "state"));
		kd = json_string_value(json_object_get(doc, "kind"));
		gs = json_string_value(json_object_get(doc, "groups"));
		printf("registered %s %s (",
		       kd != NULL && strcmp(kd, "service") == 0 ? "service" : "device", id);
		moat_cli_print_safe(stdout, st != NULL ? st : "?");
		printf("; groups: ");
		moat_cli_print_safe(stdout, gs != NULL ? gs : "-");
		printf(")\n");
	}
	rc = EXIT_OK;
out:
	json_decref(arr);
	json_decref(body);
	json_decref(doc);
	return rc;
}

static int device_list(struct moat_cli_ctx *c, const char *state, const char *kind,
		       const char *expiring)
{
	char path[512] = "/api/v1/devices?limit=200", days[16];
	json_t *items = NULL, *v;
	size_t i;
	int rc;

	if (expiring != NULL) {
		char *end;
		long n = strtol(expiring, &end, 10);
		if (expiring[0] < '0' || expiring[0] > '9' ||
		    (*end != '\0' && strcmp(end, "d") != 0) || n < 1 || n > 3650)
			return moat_cli_usage_error(c, "--expiring takes days: 30d (1d to 3650d)");
		(void)snprintf(days, sizeof(days), "%ld", n);
	}
	if ((state != NULL && moat_cli_query_add(path, sizeof(path), "state", state) != MOAT_OK) ||
	    (kind != NULL && moat_cli_query_add(path, sizeof(path), "kind", kind) != MOAT_OK) ||
	    (expiring != NULL &&
	     moat_cli_query_add(path, sizeof(path), "expiring", days) != MOAT_OK))
		return moat_cli_usage_error(c, "filter too long");
	rc = moat_cli_get_all(c, path, 0, &items);
	if (rc != EXIT_OK)
		return rc;
	if (c->json) {
		json_t *wrap = json_pack("{s:O, s:n}", "items", items, "next_cursor");
		moat_cli_print_json(stdout, wrap);
		json_decref(wrap);
	} else {
		json_array_foreach(items, i, v)
		{
			moat_cli_flatten_names(v, "groups");
			moat_cli_flatten_names(v, "policies");
		}
		moat_cli_print_table(stdout, items, device_cols,
				     sizeof(device_cols) / sizeof(device_cols[0]));
	}
	json_decref(items);
	return EXIT_OK;
}

/* The lifecycle: POST /devices/ID/state. release: only from quarantined
 * (else activate would also re-enable a disabled identity unnoticed). */
static int device_state(struct moat_cli_ctx *c, const char *id, enum device_op op)
{
	const char *to = op == D_DISABLE      ? "disabled"
			 : op == D_QUARANTINE ? "quarantined"
					      : "active";
	char path[256];
	json_t *body = NULL, *doc = NULL;
	int rc = EXIT_FAIL;

	if (op == D_RELEASE) {
		const char *st;
		(void)snprintf(path, sizeof(path), "/api/v1/devices/%s", id);
		if (moat_cli_call(c, "GET", path, NULL, &doc) != EXIT_OK)
			goto out;
		st = json_string_value(json_object_get(doc, "state"));
		if (st == NULL || strcmp(st, "quarantined") != 0) {
			fprintf(stderr, "moat %s: %s is not quarantined (state: ", c->cmd, id);
			moat_cli_print_safe(stderr, st != NULL ? st : "?");
			fprintf(stderr, ")\n");
			goto out;
		}
		json_decref(doc);
		doc = NULL;
	}
	(void)snprintf(path, sizeof(path), "/api/v1/devices/%s/state", id);
	body = json_pack("{s:s}", "state", to);
	if (body == NULL || moat_cli_call(c, "POST", path, body, &doc) != EXIT_OK)
		goto out;
	if (c->json)
		moat_cli_print_json(stdout, doc);
	else
		printf("%s is now %s\n", id, to);
	rc = EXIT_OK;
out:
	json_decref(body);
	json_decref(doc);
	return rc;
}

/* group-add/group-remove/attach/detach. */
static int device_link(struct moat_cli_ctx *c, const char *id, const char *name, enum device_op op)
{
	bool policy = op == D_ATTACH || op == D_DETACH;
	bool add = op == D_GROUP_ADD || op == D_ATTACH;
	char path[320];
	json_t *body = NULL, *doc = NULL;
	int rc = EXIT_FAIL;

	if (add) {
		(void)snprintf(path, sizeof(path), "/api/v1/devices/%s/%s", id,
			       policy ? "policies" : "groups");
		body = json_pack("{s:s}", policy ? "policy" : "group", name);
		if (body == NULL || moat_cli_call(c, "POST", path, body, &doc) != EXIT_OK)
			goto out;
	} else {
		(void)snprintf(path, sizeof(path), "/api/v1/devices/%s/%s/%s", id,
			       policy ? "policies" : "groups", name);
		if (moat_cli_call(c, "DELETE", path, NULL, &doc) != EXIT_OK)
			goto out;
	}
	if (c->json && doc != NULL)
		moat_cli_print_json(stdout, doc);
	else if (!c->json && policy)
		printf("%s policy %s %s %s\n", add ? "attached" : "detached", name,
		       add ? "to" : "from", id);
	else if (!c->json)
		printf("%s %s %s group %s\n", add ? "added" : "removed", id, add ? "to" : "from",
		       name);
	rc = EXIT_OK;
out:
	json_decref(body);
	json_decref(doc);
	return rc;
}

/* Decommissioning cannot be undone: a terminal must type the id back, a
 * script must say --yes. */
static int device_decommission(struct moat_cli_ctx *c, const char *id, bool yes)
{
	char path[256], typed[MOAT_DEVICE_ID_MAX + 2], err[128];
	json_t *doc = NULL, *rm;
	int rc = EXIT_FAIL;

	if (!yes) {
		fprintf(
		    stderr,
		    "Decommissioning %s revokes its certificates, burns its enrollment tokens,\n"
		    "ends its sessions and removes its retained messages. It cannot be undone\n"
		    "and the id can never be used again.\n",
		    id);
		if (moat_cli_read_line("Type the device id to confirm: ", false, typed,
				       sizeof(typed), err, sizeof(err)) != MOAT_OK) {
			fprintf(stderr, "moat %s: %s\n", c->cmd, err);
			goto out;
		}
		if (strcmp(typed, id) != 0) {
			fprintf(stderr, "moat %s: not confirmed; nothing was changed\n", c->cmd);
			goto out;
		}
	}
	(void)snprintf(path, sizeof(path), "/api/v1/devices/%s/decommission", id);
	if (moat_cli_call(c, "POST", path, NULL, &doc) != EXIT_OK)
		goto out;
	if (c->json) {
		moat_cli_print_json(stdout, doc);
	} else {
		rm = json_object_get(doc, "removed");
		printf("decommissioned %s: %lld certificate(s) revoked, %lld enrollment token(s) "
		       "burned, %lld stored session(s) and %lld retained message(s) removed\n",
		       id,
		       (long long)json_integer_value(json_object_get(rm, "certificates_revoked")),
		       (long long)json_integer_value(json_object_get(rm, "tokens_burned")),
		       (long long)json_integer_value(json_object_get(rm, "sessions")),
		       (long long)json_integer_value(json_object_get(rm, "retained")));
	}
	rc = EXIT_OK;
out:
	json_decref(doc);
	return rc;
}

int moat_cmd_device(int argc, char **argv)
{
	struct moat_cli_ctx c;
	const struct device_sub *s = NULL;
	const char *pos[2] = {NULL, NULL}, *kind = NULL, *state = NULL, *expiring = NULL;
	const char *groups[DEVICE_GROUPS_MAX];
	size_t ngroups = 0, k;
	bool active = false, yes = false;
	char cmd[64], path[256];
	json_t *doc = NULL;
	int i, npos = 0, rc;

	/* The one offline subcommand: it works on a data directory (--dir),
	 * not through the API, so it has its own options. */
	if (argc >= 2 && strcmp(argv[1], "import") == 0)
		return moat_cmd_device_import(argc - 1, argv + 1);
	rc = moat_cli_pick_sub(argc, argv, "device", device_subs,
			       sizeof(device_subs) / sizeof(device_subs[0]), sizeof(device_subs[0]),
			       device_usage, (const void **)&s);
	if (rc >= 0)
		return rc;
	(void)snprintf(cmd, sizeof(cmd), "device %s", s->name);
	moat_cli_ctx_init(&c, cmd);
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			device_sub_usage(stdout, s);
			return EXIT_OK;
		} else if (moat_cli_common_opt(&c, argc, argv, &i)) {
			continue;
		} else if ((s->op == D_REGISTER || s->op == D_LIST) &&
			   strcmp(argv[i], "--kind") == 0 && i + 1 < argc) {
			kind = argv[++i];
		} else if (s->op == D_LIST && strcmp(argv[i], "--state") == 0 && i + 1 < argc) {
			state = argv[++i];
		} else if (s->op == D_LIST && strcmp(argv[i], "--expiring") == 0 && i + 1 < argc) {
			expiring = argv[++i];
		} else if (s->op == D_REGISTER && strcmp(argv[i], "--active") == 0) {
			active = true;
		} else if (s->op == D_DECOMMISSION && strcmp(argv[i], "--yes") == 0) {
			yes = true;
		} else if (s->op == D_REGISTER && strcmp(argv[i], "--group") == 0 && i + 1 < argc) {
			if (ngroups >= DEVICE_GROUPS_MAX)
				return moat_cli_usage_error(&c, "at most %u groups",
							    DEVICE_GROUPS_MAX);
			groups[ngroups++] = argv[++i];
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "moat %s: unknown or incomplete option '%s'\n", cmd,
				argv[i]);
			device_sub_usage(stderr, s);
			return EXIT_USAGE;
		} else if (npos < s->npos) {
			pos[npos++] = argv[i];
		} else {
			fprintf(stderr, "moat %s: unexpected argument '%s'\n", cmd, argv[i]);
			device_sub_usage(stderr, s);
			return EXIT_USAGE;
		}
	}
	if (npos < s->npos) {
		fprintf(stderr, "moat %s: missing argument\n", cmd);
		device_sub_usage(stderr, s);
		return EXIT_USAGE;
	}
	if (npos > 0 && !name_valid(pos[0]))
		return moat_cli_usage_error(&c,
					    "'%s' is not a valid id (1-64 of [a-z0-9._-], "
					    "starting with a letter or digit)",
					    pos[0]);
	if (npos > 1 && !name_valid(pos[1]))
		return moat_cli_usage_error(&c, "'%s' is not a valid %s name", pos[1],
					    s->op == D_ATTACH || s->op == D_DETACH ? "policy"
										   : "group");
	for (k = 0; k < ngroups; k++)
		if (!name_valid(groups[k]))
			return moat_cli_usage_error(&c, "'%s' is not a valid group name",
						    groups[k]);
	if (kind != NULL && strcmp(kind, "device") != 0 && strcmp(kind, "service") != 0)
		return moat_cli_usage_error(&c, "--kind must be device or service");
	if (state != NULL && strcmp(state, "registered") != 0 && strcmp(state, "active") != 0 &&
	    strcmp(state, "disabled") != 0 && strcmp(state, "quarantined") != 0 &&
	    strcmp(state, "decommissioned") != 0)
		return moat_cli_usage_error(&c, "--state must be registered, active, disabled, "
						"quarantined or decommissioned");
	if (s->op == D_DECOMMISSION && !yes && !moat_cli_interactive())
		return moat_cli_usage_error(&c,
					    "decommissioning %s cannot be undone: stdin is not "
					    "a terminal, so pass --yes to confirm",
					    pos[0]);
	rc = moat_cli_resolve(&c, true);
	if (rc != EXIT_OK)
		goto out;
	switch (s->op) {
	case D_REGISTER:
		rc = device_register(&c, pos[0], kind, active, groups, ngroups);
		break;
	case D_LIST:
		rc = device_list(&c, state, kind, expiring);
		break;
	case D_SHOW:
		(void)snprintf(path, sizeof(path), "/api/v1/devices/%s", pos[0]);
		rc = moat_cli_call(&c, "GET", path, NULL, &doc);
		if (rc == EXIT_OK)
			device_print(&c, doc);
		break;
	case D_ACTIVATE:
	case D_DISABLE:
	case D_QUARANTINE:
	case D_RELEASE:
		rc = device_state(&c, pos[0], s->op);
		break;
	case D_GROUP_ADD:
	case D_GROUP_REMOVE:
	case D_ATTACH:
	case D_DETACH:
		rc = device_link(&c, pos[0], pos[1], s->op);
		break;
	case D_DECOMMISSION:
		rc = device_decommission(&c, pos[0], yes);
		break;
	}
out:
	json_decref(doc);
	moat_cli_ctx_wipe(&c);
	return rc;
}
