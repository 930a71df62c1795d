/* `moat device import --dir DIR --file IDS.txt`: register a list of
 * device ids (a manufacturer's batch) offline, in the data directory's
 * store, through the registry service: one transaction, one audit entry
 * (device.import). Every line is checked first (the API's rules for an id,
 * no repeats, not registered yet): the first bad line is named and nothing
 * is imported. The other `moat device` subcommands talk to the API;
 * this one is told apart by its name and takes --dir, never a server. A
 * running server applies the import on SIGHUP. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit_store.h"
#include "cli/cli.h"
#include "core/limits.h"
#include "core/reactor.h"
#include "registry/registry.h"
#include "registry/schema.h"
#include "store/store.h"
#include "tls/tls.h"

struct import_line {
	char *id;
	unsigned line;
};

struct import_list {
	struct import_line *v;
	size_t n, cap;
};

static void import_usage(FILE *f)
{
	fprintf(f,
		"usage: moat device import --dir DIR --file IDS.txt [--group G] [--state S]\n"
		"\n"
		"Register many devices at once, offline, in the data directory DIR (no\n"
		"server or login needed; run it as the user that owns DIR). IDS.txt holds\n"
		"one device id per line (1-64 of [a-z0-9._-], starting with a letter or\n"
		"digit); empty lines and lines starting with '#' are skipped. Every line is\n"
		"checked first: an invalid id, an id given twice or an id already in the\n"
		"registry is reported with its line number and nothing is imported. The\n"
		"ids are registered in one transaction with one audit entry\n"
		"(device.import), at most %u per file. A running server applies the\n"
		"import when it receives SIGHUP.\n"
		"\n"
		"options:\n"
		"  --dir DIR             the data directory (moat init)\n"
		"  --file FILE           the id list ('-': standard input)\n"
		"  --group G             the group the devices join (default devices; it\n"
		"                        must exist)\n"
		"  --state S             registered (default: may enrol, not connect) or\n"
		"                        active (may connect with a certificate of the CA)\n",
		MOAT_REG_IMPORT_MAX_IDS);
}

static void list_free(struct import_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i].id);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* Read and check every line of f (named path in messages). EXIT_OK, or
 * EXIT_FAIL with err naming the line. */
static int read_ids(FILE *f, const char *path, struct import_list *l, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t bufcap = 0, len;
	ssize_t got;
	unsigned line = 0;
	struct import_line *grown;
	int rc = EXIT_OK;

	while ((got = getline(&buf, &bufcap, f)) >= 0) {
		line++;
		len = (size_t)got;
		if (len > 0 && buf[len - 1] == '\n')
			buf[--len] = '\0';
		if (len > 0 && buf[len - 1] == '\r')
			buf[--len] = '\0';
		if (len == 0 || buf[0] == '#')
			continue;
		if (memchr(buf, '\0', len) != NULL || !moat_device_id_valid(buf, len)) {
			snprintf(err, errlen,
				 "%s line %u: '%.80s%s' is not a valid device id (1-64 of "
				 "[a-z0-9._-], starting with a letter or digit)",
				 path, line, buf, len > 80 ? "..." : "");
			rc = EXIT_FAIL;
			break;
		}
		if (l->n >= MOAT_REG_IMPORT_MAX_IDS) {
			snprintf(err, errlen,
				 "%s line %u: more than %u ids; split the list into files of "
				 "at most %u",
				 path, line, MOAT_REG_IMPORT_MAX_IDS, MOAT_REG_IMPORT_MAX_IDS);
			rc = EXIT_FAIL;
			break;
		}
		if (l->n == l->cap) {
			size_t ncap = l->cap ? l->cap * 2 : 1024;
			grown = realloc(l->v, ncap * sizeof(*grown));
			if (grown == NULL)
				goto nomem;
			l->v = grown;
			l->cap = ncap;
		}
		l->v[l->n].id = strndup(buf, len);
		if (l->v[l->n].id == NULL)
			goto nomem;
		l->v[l->n].line = line;
		l->n++;
	}
	if (rc == EXIT_OK && ferror(f)) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		rc = EXIT_FAIL;
	}
	if (rc == EXIT_OK && l->n == 0) {
		snprintf(err, errlen, "%s holds no device id", path);
		rc = EXIT_FAIL;
	}
	free(buf);
	return rc;
nomem:
	free(buf);
	snprintf(err, errlen, "out of memory");
	return EXIT_FAIL;
}

static int by_id_line(const void *a, const void *b)
{
	const struct import_line *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	if (c != 0)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* An id given twice: the earliest line that repeats an earlier one. */
static int check_repeats(const struct import_list *l, const char *path, char *err, size_t errlen)
{
	struct import_line *s = malloc(l->n * sizeof(*s));
	size_t i, bad = 0;
	bool found = false;

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return EXIT_FAIL;
	}
	memcpy(s, l->v, l->n * sizeof(*s));
	qsort(s, l->n, sizeof(*s), by_id_line);
	for (i = 1; i < l->n; i++)
		if (strcmp(s[i - 1].id, s[i].id) == 0 && (!found || s[i].line < s[bad].line)) {
			bad = i;
			found = true;
		}
	if (found)
		snprintf(err, errlen, "%s line %u: %s is already on line %u", path, s[bad].line,
			 s[bad].id, s[bad - 1].line);
	free(s);
	return found ? EXIT_FAIL : EXIT_OK;
}

/* A group row: the group exists ("" stays "" otherwise). */
static moat_err group_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_group_row row;
	char *found = arg;
	moat_err rc = moat_reg_group_row_decode(cols, ncols, &row);

	if (rc == MOAT_OK)
		snprintf(found, 32, "yes");
	return rc;
}

/* An identity row: its state, so the message can name it. */
static moat_err state_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_identity_row row;
	char *state = arg;
	moat_err rc = moat_reg_identity_row_decode(cols, ncols, &row);
	size_t n;

	if (rc != MOAT_OK)
		return rc;
	n = row.state.len < 31 ? row.state.len : 31;
	memcpy(state, row.state.p, n);
	state[n] = '\0';
	return MOAT_OK;
}

/* Check the list against DIR's registry and import it. */
static int import_into(const char *dir, const char *path, const struct import_list *l,
		       const char *group, enum moat_id_state state, char *err, size_t errlen)
{
	struct moat_store_opts o;
	struct moat_store *st = NULL;
	struct moat_reg_change ch = {0};
	struct moat_cli_offline off;
	bool off_open = false;
	const char **ids = NULL;
	char dbpath[MOAT_MAX_PATH], have[32];
	struct moat_val v;
	moat_err rc;
	size_t i;
	int ret = EXIT_FAIL;

	if ((size_t)snprintf(dbpath, sizeof(dbpath), "%s/moat.db", dir) >= sizeof(dbpath)) {
		snprintf(err, errlen, "data directory path too long");
		return EXIT_FAIL;
	}
	if (access(dbpath, F_OK) != 0) {
		snprintf(err, errlen, "%s has no moat.db (create it with 'moat init --dir %s')",
			 dir, dir);
		return EXIT_FAIL;
	}
	memset(&o, 0, sizeof(o));
	o.path = dbpath;
	if (moat_store_open(&o, &st, err, errlen) != MOAT_OK)
		return EXIT_FAIL;
	have[0] = '\0';
	v = moat_val_text(group, strlen(group));
	if ((rc = moat_store_read(st, REG_STMT(GROUP_GET), &v, 1, group_cb, have)) != MOAT_OK) {
		snprintf(err, errlen, "cannot read the groups: %s", moat_strerror(rc));
		goto out;
	}
	if (have[0] == '\0') {
		snprintf(err, errlen,
			 "group %s does not exist (create it with 'moat group create')", group);
		goto out;
	}
	/* In file order, so the first line in the registry is the one named. */
	for (i = 0; i < l->n; i++) {
		have[0] = '\0';
		v = moat_val_text(l->v[i].id, strlen(l->v[i].id));
		if ((rc = moat_store_read(st, REG_STMT(ID_GET), &v, 1, state_cb, have)) !=
		    MOAT_OK) {
			snprintf(err, errlen, "cannot read the registry: %s", moat_strerror(rc));
			goto out;
		}
		if (have[0] != '\0') {
			snprintf(err, errlen, "%s line %u: %s is already registered (state %s)%s",
				 path, l->v[i].line, l->v[i].id, have,
				 strcmp(have, "decommissioned") == 0
				     ? "; registering it again through the API makes it a new "
				       "device"
				     : "");
			goto out;
		}
	}
	ids = malloc(l->n * sizeof(*ids));
	if (ids == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < l->n; i++)
		ids[i] = l->v[i].id;
	if (moat_cli_offline_open(&off, st, dir, err, errlen) != MOAT_OK)
		goto out;
	off_open = true;
	rc = moat_reg_register_many(&off.rx, ids, l->n, state, group, &ch);
	if (rc != MOAT_OK) {
		snprintf(err, errlen, "cannot import: %s", moat_strerror(rc));
		goto out;
	}
	ret = EXIT_OK;
out:
	moat_reg_change_clear(&ch);
	if (off_open)
		moat_cli_offline_close(&off);
	free(ids);
	moat_store_close(st);
	return ret;
}

int moat_cmd_device_import(int argc, char **argv)
{
	const char *dir = NULL, *file = NULL, *group = "devices", *state_s = "registered", *name;
	struct import_list l = {0};
	enum moat_id_state state;
	char err[512] = "";
	FILE *f;
	int i, rc;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			import_usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
			file = argv[++i];
		} else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc) {
			group = argv[++i];
		} else if (strcmp(argv[i], "--state") == 0 && i + 1 < argc) {
			state_s = argv[++i];
		} else {
			fprintf(stderr, "moat device import: unknown or incomplete option '%s'\n",
				argv[i]);
			import_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (dir == NULL || file == NULL) {
		fprintf(stderr, "moat device import: --dir and --file are required (the import "
				"works on the data directory, not through the API)\n");
		import_usage(stderr);
		return EXIT_USAGE;
	}
	if (!moat_device_id_valid(group, strlen(group))) {
		fprintf(stderr, "moat device import: '%s' is not a valid group name\n", group);
		return EXIT_USAGE;
	}
	if (!moat_id_state_parse(state_s, &state) ||
	    (state != MOAT_ID_REGISTERED && state != MOAT_ID_ACTIVE)) {
		fprintf(stderr, "moat device import: --state must be registered or active\n");
		return EXIT_USAGE;
	}
	if (strcmp(file, "-") == 0) {
		f = stdin;
	} else if ((f = fopen(file, "r")) == NULL) {
		fprintf(stderr, "moat device import: cannot open %s: %s\n", file, strerror(errno));
		return EXIT_FAIL;
	}
	name = f == stdin ? "stdin" : file;
	rc = read_ids(f, name, &l, err, sizeof(err));
	if (f != stdin)
		fclose(f);
	if (rc == EXIT_OK)
		rc = check_repeats(&l, name, err, sizeof(err));
	if (rc == EXIT_OK)
		rc = import_into(dir, name, &l, group, state, err, sizeof(err));
	if (rc == EXIT_OK)
		printf("imported %zu devices (%s .. %s) into group %s, state %s; a running "
		       "server applies them on SIGHUP\n",
		       l.n, l.v[0].id, l.v[l.n - 1].id, group, moat_id_state_name(state));
	else
		fprintf(stderr, "moat device import: %s; nothing was imported\n", err);
	list_free(&l);
	return rc;
}
