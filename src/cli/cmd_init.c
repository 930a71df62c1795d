/* `moat init --dir DIR [--san NAME]...`: a new data directory with a CA, a
 * server certificate and a commented moat.conf. Refuses a non-empty DIR. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "audit/audit.h"
#include "cli/setup_token.h"
#include "core/config.h"
#include "core/limits.h"
#include "pki/pki.h"

#define INIT_MAX_SANS 32

static void init_usage(FILE *f)
{
	fprintf(f, "usage: moat init --dir DIR [--san NAME]... [--no-setup-token]\n"
		   "\n"
		   "Create DIR (mode 0700) holding:\n"
		   "  ca.key, ca.crt          the fleet CA (ECDSA P-256; key mode 0600)\n"
		   "  server.key, server.crt  the broker's certificate for localhost, 127.0.0.1,\n"
		   "                          ::1 and every --san (DNS name or IP address)\n"
		   "  moat.conf               configuration with secure defaults\n"
		   "  audit.key, audit.pub    the audit log's signing key (key mode 0600)\n"
		   "  seal.key                the key sealing TOTP seeds in moat.db (mode 0600)\n"
		   "DIR must not exist or be empty.\n"
		   "\n"
		   "options:\n"
		   "  --dir DIR     data directory to create\n"
		   "  --san NAME    extra subject alternative name (repeatable)\n"
		   "  --no-setup-token\n"
		   "                do not make the setup token for the first administrator\n"
		   "                (make one later with 'moat setup-token --dir DIR')\n"
		   "  -h, --help    this help\n");
}

static bool dir_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool empty = true;

	if (d == NULL)
		return false;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			empty = false;
			break;
		}
	}
	closedir(d);
	return empty;
}

static int write_conf(const char *dir)
{
	char path[MOAT_MAX_PATH];
	const char *text = moat_conf_default_text();
	size_t len = strlen(text), off = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/moat.conf", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	if (fsync(fd) != 0) {
		close(fd);
		return -1;
	}
	return close(fd);
}

int moat_cmd_init(int argc, char **argv)
{
	const char *dir = NULL;
	const char *sans[INIT_MAX_SANS];
	size_t n_sans = 0;
	bool token = true;
	char err[512], tok[128];
	struct stat st;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			init_usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (strcmp(argv[i], "--no-setup-token") == 0) {
			token = false;
		} else if (strcmp(argv[i], "--san") == 0 && i + 1 < argc) {
			if (n_sans == INIT_MAX_SANS) {
				fprintf(stderr, "moat init: at most %d --san\n", INIT_MAX_SANS);
				return EXIT_USAGE;
			}
			sans[n_sans++] = argv[++i];
		} else {
			fprintf(stderr, "moat init: unknown or incomplete option '%s'\n", argv[i]);
			init_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (dir == NULL) {
		fprintf(stderr, "moat init: --dir is required\n");
		init_usage(stderr);
		return EXIT_USAGE;
	}
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode) || !dir_empty(dir)) {
			fprintf(stderr,
				"moat init: %s exists and is not an empty directory; refusing to "
				"touch it (choose a new --dir)\n",
				dir);
			return EXIT_FAIL;
		}
		if (chmod(dir, 0700) != 0) {
			fprintf(stderr, "moat init: chmod %s: %s\n", dir, strerror(errno));
			return EXIT_FAIL;
		}
	} else if (mkdir(dir, 0700) != 0) {
		fprintf(stderr, "moat init: cannot create %s: %s\n", dir, strerror(errno));
		return EXIT_FAIL;
	}
	printf("moat init: creating CA in %s\n", dir);
	if (moat_pki_create_ca(dir, "Moat CA", err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat init: CA: %s\n", err);
		return EXIT_FAIL;
	}
	printf("moat init: creating server certificate\n");
	if (moat_pki_create_server(dir, sans, n_sans, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat init: server certificate: %s\n", err);
		return EXIT_FAIL;
	}
	if (write_conf(dir) != 0) {
		fprintf(stderr, "moat init: cannot write %s/moat.conf: %s\n", dir, strerror(errno));
		return EXIT_FAIL;
	}
	printf("moat init: wrote %s/moat.conf\n", dir);
	if (moat_audit_key_create(dir, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat init: audit key: %s\n", err);
		return EXIT_FAIL;
	}
	printf("moat init: created the audit log signing key (keep a copy of %s/audit.pub "
	       "elsewhere)\n",
	       dir);
	if (moat_seal_key_create(dir, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat init: sealing key: %s\n", err);
		return EXIT_FAIL;
	}
	printf("moat init: created the sealing key %s/seal.key (back it up with moat.db: it "
	       "opens the sealed TOTP seeds)\n",
	       dir);
	/* scripts/run-demo makes the token itself, on every start, so that a
	 * new and an existing data directory print exactly one. */
	if (!token)
		return EXIT_OK;
	if (moat_setup_token_issue(dir, tok, sizeof(tok), err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat init: %s\n", err);
		return EXIT_FAIL;
	}
	printf("\n"
	       "Setup token (valid for one hour, usable once; creates the first administrator):\n"
	       "  %s\n"
	       "\n"
	       "Next: moat serve --dir %s\n"
	       "      moat setup --server https://127.0.0.1:8443 --ca %s/ca.crt --token TOKEN "
	       "--user NAME\n"
	       "      moat cert issue --dir %s --device NAME   (development device certificate)\n",
	       tok, dir, dir, dir);
	return EXIT_OK;
}
