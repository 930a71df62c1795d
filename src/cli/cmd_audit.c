/* `moat audit ...`: read, verify and export the tamper-evident audit log,
 * over the API or, with --dir, offline from a data directory (which needs
 * no server and trusts nothing but audit.pub; docs/audit.md). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/audit_store.h"
#include "cli/api_client.h"
#include "cli/cli.h"
#include "core/limits.h"

/* Page size we ask for: the API's maximum (docs/api.md). */
#define AUDIT_PAGE 200u
/* --limit: more than any terminal shows, less than would exhaust memory. */
#define AUDIT_LIMIT_MAX 1000000ul
#define AUDIT_LIMIT_DEFAULT 50ul

enum audit_op { A_LIST, A_VERIFY, A_EXPORT };

struct audit_sub {
	const char *name;
	enum audit_op op;
	const char *synopsis;
	const char *what;
	const char *opts;
};

static const struct audit_sub audit_subs[] = {
    {"list", A_LIST,
     "list [--actor A] [--action PREFIX] [--since T] [--until T]\n"
     "                  [--limit N | --all]",
     "list audit entries, newest first",
     "  --actor A             only entries by actor A (user:alice, token:ID, system)\n"
     "  --action PREFIX       only actions starting with PREFIX (auth., user.create)\n"
     "  --since T             only entries at or after T (RFC 3339, e.g.\n"
     "                        2026-11-22T07:10:00Z)\n"
     "  --until T             only entries before T (RFC 3339)\n"
     "  --limit N             at most N entries (default 50)\n"
     "  --all                 every matching entry (follows the pages)\n"},
    {"verify", A_VERIFY, "verify [--dir DIR [--pub FILE]]",
     "verify the hash chain and the signed checkpoints. Exit 0: intact;\n"
     "exit 1: tampered (the reason and the first bad entry are printed) or the\n"
     "check could not run. With --dir, offline: reads DIR's database and\n"
     "audit.pub directly (run it on a copy, or while the server is running:\n"
     "reads do not block it)",
     "  --dir DIR             verify the data directory DIR offline (no server)\n"
     "  --pub FILE            with --dir: the public key to trust (default\n"
     "                        DIR/audit.pub; use a copy kept off the host)\n"},
    {"export", A_EXPORT, "export [--dir DIR] [--out FILE]",
     "write every entry as JSON lines, oldest first, in the form docs/audit.md\n"
     "describes (enough to re-verify the chain elsewhere)",
     "  --dir DIR             export the data directory DIR offline (no server)\n"
     "  --out FILE            write to FILE (mode 0600, replaced atomically)\n"
     "                        instead of stdout\n"},
};

static const struct moat_cli_col audit_cols[] = {
    {"SEQ", "seq"},	  {"TIME", "ts"},	  {"ACTOR", "actor"}, {"ACTION", "action"},
    {"TARGET", "target"}, {"OUTCOME", "outcome"}, {"PEER", "peer"},
};

static void audit_usage(FILE *f)
{
	size_t k;

	fprintf(f, "usage: moat audit <subcommand> [options]\n\nsubcommands:\n");
	for (k = 0; k < sizeof(audit_subs) / sizeof(audit_subs[0]); k++)
		fprintf(f, "  %s\n", audit_subs[k].synopsis);
	fprintf(f,
		"\nThe API needs the audit:read permission (admin, auditor).\n"
		"\noptions (every subcommand):\n%s"
		"\nRun 'moat audit <subcommand> --help' for one subcommand.\n",
		moat_cli_common_help);
}

static void audit_sub_usage(FILE *f, const struct audit_sub *s)
{
	fprintf(f, "usage: moat audit %s [options]\n\n%s.\n\noptions:\n%s%s", s->synopsis, s->what,
		s->opts, moat_cli_common_help);
}

static bool digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

/* RFC 3339 date-time, by shape: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM).
 * The server checks the values; this catches typos with a usage error. */
static bool rfc3339_ok(const char *s)
{
	size_t n = strlen(s), i = 19;

	if (n < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
	    !digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2) ||
	    s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
		return false;
	if (s[i] == '.') {
		i++;
		if (!digits(s + i, 1))
			return false;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n)
		return true;
	return (s[i] == '+' || s[i] == '-') && n - i == 6 && digits(s + i + 1, 2) &&
	       s[i + 3] == ':' && digits(s + i + 4, 2);
}

static json_t *audit_report_json(const struct moat_audit_report *rep)
{
	return json_pack(
	    "{s:s, s:I, s:s, s:I, s:I, s:I, s:I}", "status", moat_audit_fault_name(rep->fault),
	    "first_bad_seq", (json_int_t)rep->first_bad_seq, "reason", rep->reason, "entries",
	    (json_int_t)rep->entries, "checkpoints", (json_int_t)rep->checkpoints, "sealed_seq",
	    (json_int_t)rep->sealed_seq, "unsealed", (json_int_t)rep->unsealed);
}

/* Print a verification result (API answer or offline report, same shape);
 * EXIT_OK when intact. */
static int audit_print_verify(const struct moat_cli_ctx *c, json_t *doc)
{
	const char *status = json_string_value(json_object_get(doc, "status"));
	const char *reason = json_string_value(json_object_get(doc, "reason"));
	json_int_t bad = json_integer_value(json_object_get(doc, "first_bad_seq"));
	json_int_t entries = json_integer_value(json_object_get(doc, "entries"));
	json_int_t cps = json_integer_value(json_object_get(doc, "checkpoints"));
	json_int_t sealed = json_integer_value(json_object_get(doc, "sealed_seq"));
	json_int_t unsealed = json_integer_value(json_object_get(doc, "unsealed"));
	bool intact = status != NULL && strcmp(status, "intact") == 0;

	if (status == NULL) {
		fprintf(stderr, "moat %s: the answer has no status\n", c->cmd);
		return EXIT_FAIL;
	}
	if (c->json) {
		moat_cli_print_json(stdout, doc);
		return intact ? EXIT_OK : EXIT_FAIL;
	}
	if (intact) {
		printf("audit log intact: %" JSON_INTEGER_FORMAT " entries, %" JSON_INTEGER_FORMAT
		       " valid checkpoints, sealed up to seq %" JSON_INTEGER_FORMAT "\n",
		       entries, cps, sealed);
		if (unsealed > 0)
			printf("note: the last %" JSON_INTEGER_FORMAT
			       " entries are not sealed by a checkpoint yet; removing them from "
			       "the end would not be detected\n",
			       unsealed);
		return EXIT_OK;
	}
	printf("audit log NOT intact: ");
	moat_cli_print_safe(stdout, status);
	printf(" at seq %" JSON_INTEGER_FORMAT "\nreason: ", bad);
	moat_cli_print_safe(stdout, reason != NULL ? reason : "-");
	printf("\nfirst bad entry: seq %" JSON_INTEGER_FORMAT " (entries before it are "
	       "trustworthy)\n",
	       bad);
	printf("%" JSON_INTEGER_FORMAT " entries examined, %" JSON_INTEGER_FORMAT
	       " valid checkpoints\n",
	       entries, cps);
	return EXIT_FAIL;
}

static int audit_verify(struct moat_cli_ctx *c, const char *dir, const char *pub)
{
	struct moat_audit_report rep;
	char err[512] = "";
	json_t *doc = NULL;
	moat_err e;
	int rc;

	if (dir == NULL) {
		rc = moat_cli_resolve(c, true);
		if (rc != EXIT_OK)
			return rc;
		if (moat_cli_call(c, "GET", "/api/v1/audit/verify", NULL, &doc) != EXIT_OK)
			return EXIT_FAIL;
		rc = audit_print_verify(c, doc);
		json_decref(doc);
		return rc;
	}
	memset(&rep, 0, sizeof(rep));
	e = moat_audit_verify_dir(dir, pub, &rep, err, sizeof(err));
	if (e != MOAT_OK && e != MOAT_E_CORRUPT) {
		fprintf(stderr, "moat %s: %s\n", c->cmd, err[0] != '\0' ? err : moat_strerror(e));
		return EXIT_FAIL;
	}
	doc = audit_report_json(&rep);
	if (doc == NULL) {
		fprintf(stderr, "moat %s: out of memory\n", c->cmd);
		return EXIT_FAIL;
	}
	rc = audit_print_verify(c, doc);
	json_decref(doc);
	/* Never report intact when the verifier did not. */
	return e == MOAT_OK ? rc : EXIT_FAIL;
}

static int audit_list(struct moat_cli_ctx *c, const char *actor, const char *action,
		      const char *since, const char *until, unsigned long limit, bool all)
{
	char path[2048];
	json_t *items = NULL;
	unsigned long page = all || limit > AUDIT_PAGE ? AUDIT_PAGE : limit;
	int rc;

	(void)snprintf(path, sizeof(path), "/api/v1/audit?limit=%lu", page);
	if ((actor != NULL && moat_cli_query_add(path, sizeof(path), "actor", actor) != MOAT_OK) ||
	    (action != NULL &&
	     moat_cli_query_add(path, sizeof(path), "action", action) != MOAT_OK) ||
	    (since != NULL && moat_cli_query_add(path, sizeof(path), "since", since) != MOAT_OK) ||
	    (until != NULL && moat_cli_query_add(path, sizeof(path), "until", until) != MOAT_OK))
		return moat_cli_usage_error(c, "filters too long");
	rc = moat_cli_resolve(c, true);
	if (rc != EXIT_OK)
		return rc;
	rc = moat_cli_get_all(c, path, all ? 0 : (size_t)limit, &items);
	if (rc != EXIT_OK)
		return rc;
	if (c->json) {
		json_t *wrap = json_pack("{s:O, s:n}", "items", items, "next_cursor");
		moat_cli_print_json(stdout, wrap);
		json_decref(wrap);
	} else {
		moat_cli_print_table(stdout, items, audit_cols,
				     sizeof(audit_cols) / sizeof(audit_cols[0]));
	}
	json_decref(items);
	return EXIT_OK;
}

/* Open the export target: a temporary file next to FILE, renamed over it
 * when complete, so a failed export never leaves a file that looks whole. */
static FILE *audit_out_open(const char *file, char *tmp, size_t tmplen)
{
	FILE *f;
	int fd, n;

	n = snprintf(tmp, tmplen, "%s.XXXXXX", file);
	if (n < 0 || (size_t)n >= tmplen) {
		fprintf(stderr, "moat audit export: path too long: %s\n", file);
		tmp[0] = '\0';
		return NULL;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		fprintf(stderr, "moat audit export: cannot create %s: %s\n", tmp, strerror(errno));
		tmp[0] = '\0';
		return NULL;
	}
	(void)fchmod(fd, 0600);
	f = fdopen(fd, "w");
	if (f == NULL) {
		fprintf(stderr, "moat audit export: %s: %s\n", tmp, strerror(errno));
		close(fd);
		(void)unlink(tmp);
		tmp[0] = '\0';
	}
	return f;
}

static int audit_export(struct moat_cli_ctx *c, const char *dir, const char *file)
{
	char tmp[MOAT_MAX_PATH] = "", err[512] = "";
	json_t *items = NULL;
	FILE *out = stdout;
	size_t i, n = 0;
	int rc = EXIT_FAIL;

	if (dir == NULL) {
		char path[64];
		rc = moat_cli_resolve(c, true);
		if (rc != EXIT_OK)
			return rc;
		rc = EXIT_FAIL;
		(void)snprintf(path, sizeof(path), "/api/v1/audit?limit=%u", AUDIT_PAGE);
		if (moat_cli_get_all(c, path, 0, &items) != EXIT_OK)
			return EXIT_FAIL;
	}
	if (file != NULL) {
		out = audit_out_open(file, tmp, sizeof(tmp));
		if (out == NULL)
			goto out;
	}
	if (dir != NULL) {
		moat_err e = moat_audit_export_dir(dir, out, err, sizeof(err));
		if (e != MOAT_OK) {
			fprintf(stderr, "moat %s: %s\n", c->cmd,
				err[0] != '\0' ? err : moat_strerror(e));
			goto out;
		}
	} else {
		/* The API lists newest first; an export reads oldest first. */
		n = json_array_size(items);
		for (i = n; i > 0; i--) {
			char *line = json_dumps(json_array_get(items, i - 1), JSON_COMPACT);
			int w = line != NULL ? fprintf(out, "%s\n", line) : -1;
			free(line);
			if (w < 0) {
				fprintf(stderr, "moat %s: write failed: %s\n", c->cmd,
					strerror(errno));
				goto out;
			}
		}
	}
	if (fflush(out) != 0 || (out != stdout && fsync(fileno(out)) != 0)) {
		fprintf(stderr, "moat %s: write failed: %s\n", c->cmd, strerror(errno));
		goto out;
	}
	if (out != stdout) {
		int ce = fclose(out);
		out = stdout;
		if (ce != 0 || rename(tmp, file) != 0) {
			fprintf(stderr, "moat %s: cannot write %s: %s\n", c->cmd, file,
				strerror(errno));
			goto out;
		}
		tmp[0] = '\0';
		if (dir != NULL)
			fprintf(stderr, "exported the audit log of %s to %s\n", dir, file);
		else
			fprintf(stderr, "exported %zu entries to %s\n", n, file);
	}
	rc = EXIT_OK;
out:
	if (out != stdout)
		fclose(out);
	if (tmp[0] != '\0')
		(void)unlink(tmp);
	json_decref(items);
	return rc;
}

int moat_cmd_audit(int argc, char **argv)
{
	struct moat_cli_ctx c;
	const struct audit_sub *s = NULL;
	const char *actor = NULL, *action = NULL, *since = NULL, *until = NULL, *dir = NULL,
		   *file = NULL, *pub = NULL;
	unsigned long limit = AUDIT_LIMIT_DEFAULT;
	bool all = false;
	char cmd[64];
	int i, rc = EXIT_FAIL;

	rc = moat_cli_pick_sub(argc, argv, "audit", audit_subs,
			       sizeof(audit_subs) / sizeof(audit_subs[0]), sizeof(audit_subs[0]),
			       audit_usage, (const void **)&s);
	if (rc >= 0)
		return rc;
	(void)snprintf(cmd, sizeof(cmd), "audit %s", s->name);
	moat_cli_ctx_init(&c, cmd);
	for (i = 2; i < argc; i++) {
		const char *a = argv[i];
		bool more = i + 1 < argc;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			audit_sub_usage(stdout, s);
			return EXIT_OK;
		} else if (moat_cli_common_opt(&c, argc, argv, &i)) {
			continue;
		} else if (s->op == A_LIST && strcmp(a, "--actor") == 0 && more) {
			actor = argv[++i];
		} else if (s->op == A_LIST && strcmp(a, "--action") == 0 && more) {
			action = argv[++i];
		} else if (s->op == A_LIST && strcmp(a, "--since") == 0 && more) {
			since = argv[++i];
		} else if (s->op == A_LIST && strcmp(a, "--until") == 0 && more) {
			until = argv[++i];
		} else if (s->op == A_LIST && strcmp(a, "--all") == 0) {
			all = true;
		} else if (s->op == A_LIST && strcmp(a, "--limit") == 0 && more) {
			const char *v = argv[++i];
			char *end;
			errno = 0;
			limit = strtoul(v, &end, 10);
			if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || limit == 0 ||
			    limit > AUDIT_LIMIT_MAX)
				return moat_cli_usage_error(&c, "--limit must be 1..%lu",
							    AUDIT_LIMIT_MAX);
		} else if (s->op != A_LIST && strcmp(a, "--dir") == 0 && more) {
			dir = argv[++i];
		} else if (s->op == A_VERIFY && strcmp(a, "--pub") == 0 && more) {
			pub = argv[++i];
		} else if (s->op == A_EXPORT && strcmp(a, "--out") == 0 && more) {
			file = argv[++i];
		} else {
			fprintf(stderr, "moat %s: unknown or incomplete option '%s'\n", cmd, a);
			audit_sub_usage(stderr, s);
			return EXIT_USAGE;
		}
	}
	if (pub != NULL && dir == NULL)
		return moat_cli_usage_error(&c, "--pub needs --dir");
	if (since != NULL && !rfc3339_ok(since))
		return moat_cli_usage_error(&c,
					    "--since '%s' is not an RFC 3339 time "
					    "(2026-11-22T07:10:00Z)",
					    since);
	if (until != NULL && !rfc3339_ok(until))
		return moat_cli_usage_error(&c,
					    "--until '%s' is not an RFC 3339 time "
					    "(2026-11-22T07:10:00Z)",
					    until);
	if (dir != NULL && (c.opt_server != NULL || c.opt_ca != NULL))
		return moat_cli_usage_error(&c,
					    "--dir works offline: it takes no --server or --ca");
	if (dir != NULL && *dir == '\0')
		return moat_cli_usage_error(&c, "--dir needs a directory");
	if (file != NULL && *file == '\0')
		return moat_cli_usage_error(&c, "--out needs a file name");
	switch (s->op) {
	case A_LIST:
		rc = audit_list(&c, actor, action, since, until, limit, all);
		break;
	case A_VERIFY:
		rc = audit_verify(&c, dir, pub);
		break;
	case A_EXPORT:
		rc = audit_export(&c, dir, file);
		break;
	}
	moat_cli_ctx_wipe(&c);
	return rc;
}
