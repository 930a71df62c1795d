/*
 * Setup tokens (`moat init` prints one; `moat setup-token --dir DIR` makes a
 * new one): random, shown once, stored only as a SHA-256 hash, usable once
 * within MOAT_SETUP_TOKEN_MS, and refused once an operator exists. Whoever
 * can read the data directory can make one: that is the same person who
 * could read the CA key.
 */
#include <stdio.h>
#include <string.h>

#include "auth/secret.h"
#include "cli/cli.h"
#include "cli/setup_token.h"
#include "core/reactor.h"
#include "store/store.h"
#include "auth/schema.h"

moat_err moat_setup_token_issue(const char *dir, char *out, size_t outlen, char *err, size_t errlen)
{
	struct moat_store_opts o;
	struct moat_store *st = NULL;
	struct moat_store_batch *b = NULL;
	struct moat_val v[2];
	uint8_t h[MOAT_SECRET_HASH_LEN];
	char path[MOAT_MAX_PATH];
	int64_t n = 0;
	moat_err rc;

	if ((size_t)snprintf(path, sizeof(path), "%s/moat.db", dir) >= sizeof(path)) {
		snprintf(err, errlen, "data directory path too long");
		return MOAT_E_INVAL;
	}
	memset(&o, 0, sizeof(o));
	o.path = path;
	if ((rc = moat_store_open(&o, &st, err, errlen)) != MOAT_OK)
		return rc;
	v[0] = moat_val_null();
	rc = moat_store_read_int(st, AUTH_STMT(OP_COUNT), v, 1, &n);
	if (rc != MOAT_OK) {
		snprintf(err, errlen, "cannot read operators: %s", moat_strerror(rc));
		goto out;
	}
	if (n > 0) {
		rc = MOAT_E_EXISTS;
		snprintf(err, errlen,
			 "an operator already exists; administrators create further accounts "
			 "with 'moat user add'");
		goto out;
	}
	if ((rc = moat_secret_token("moat_st_", out, outlen)) != MOAT_OK) {
		snprintf(err, errlen, "cannot make a token: %s", moat_strerror(rc));
		goto out;
	}
	moat_secret_hash(out, strlen(out), h);
	v[0] = moat_val_blob(h, sizeof(h));
	v[1] = moat_val_int(moat_wall_ms() + (int64_t)MOAT_SETUP_TOKEN_MS);
	if ((rc = moat_store_batch_new(&b)) == MOAT_OK &&
	    (rc = moat_store_batch_add(b, AUTH_STMT(SETUP_PUT), v, 2)) == MOAT_OK)
		rc = moat_store_write(st, b);
	else
		moat_store_batch_free(b);
	if (rc != MOAT_OK)
		snprintf(err, errlen, "cannot store the setup token: %s", moat_strerror(rc));
out:
	moat_store_close(st);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: moat setup-token --dir DIR\n"
		   "\n"
		   "Print a new one-time setup token for creating the first administrator\n"
		   "(valid for one hour, usable once). Refused once any operator exists.\n"
		   "Use it with 'moat setup' or POST /api/v1/setup.\n"
		   "\n"
		   "options:\n"
		   "  --dir DIR    data directory\n"
		   "  -h, --help   this help\n");
}

int moat_cmd_setup_token(int argc, char **argv)
{
	char tok[128], err[512];
	const char *dir = NULL;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else {
			fprintf(stderr, "moat setup-token: unknown or incomplete option '%s'\n",
				argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (dir == NULL) {
		fprintf(stderr, "moat setup-token: --dir is required\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (moat_setup_token_issue(dir, tok, sizeof(tok), err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat setup-token: %s\n", err);
		return EXIT_FAIL;
	}
	printf("%s\n", tok);
	fprintf(stderr, "moat setup-token: valid for one hour, usable once\n");
	return EXIT_OK;
}
