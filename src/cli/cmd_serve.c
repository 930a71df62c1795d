/* `moat serve --dir DIR`: run the broker in the foreground. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "mqtt/broker.h"

static void serve_usage(FILE *f)
{
	fprintf(f, "usage: moat serve --dir DIR\n"
		   "\n"
		   "Run the broker on the data directory DIR (created by 'moat init').\n"
		   "Logs go to stderr (logfmt). Signals: SIGTERM/SIGINT stop cleanly,\n"
		   "SIGHUP reloads certificates, the CA and [broker] limits without\n"
		   "dropping connections.\n"
		   "\n"
		   "options:\n"
		   "  --dir DIR    data directory\n"
		   "  -h, --help   this help\n");
}

int moat_cmd_serve(int argc, char **argv)
{
	static struct moat_broker b;
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
	if (moat_broker_start(&b, dir, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat serve: %s\n", err);
		moat_broker_free(&b);
		return EXIT_FAIL;
	}
	moat_broker_run(&b);
	moat_broker_free(&b);
	return EXIT_OK;
}
