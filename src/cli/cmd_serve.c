/* `moat serve --dir DIR`: run the daemon (src/daemon: the broker, the
 * management API and everything they need) in the foreground. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "daemon/daemon.h"

static void serve_usage(FILE *f)
{
	fprintf(f, "usage: moat serve --dir DIR\n"
		   "\n"
		   "Run the broker and the management API on the data directory DIR\n"
		   "(created by 'moat init'). Logs go to stderr (logfmt). Signals:\n"
		   "SIGTERM/SIGINT stop cleanly, SIGHUP reloads certificates, the CA and\n"
		   "[broker] limits without dropping connections.\n"
		   "\n"
		   "options:\n"
		   "  --dir DIR    data directory\n"
		   "  -h, --help   this help\n");
}

int moat_cmd_serve(int argc, char **argv)
{
	const char *dir = NULL;
	char err[1024];
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			serve_usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else {
			fprintf(stderr, "moat serve: unknown or incomplete option '%s'\n", argv[i]);
			serve_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (dir == NULL) {
		fprintf(stderr, "moat serve: --dir is required\n");
		serve_usage(stderr);
		return EXIT_USAGE;
	}
	if (moat_daemon_run(dir, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat serve: %s\n", err);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}
