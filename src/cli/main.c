/* `moat`: dispatch to subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: moat <command> [options]\n"
		   "\n"
		   "Moat: a secure-by-default IoT platform (MQTT 3.1.1/5.0 over mutual TLS).\n"
		   "\n"
		   "commands:\n"
		   "  init    create a data directory: CA, server certificate, moat.conf\n"
		   "  serve   run the broker on a data directory\n"
		   "  cert    issue development device certificates from the local CA\n"
		   "  version print the version\n"
		   "\n"
		   "Run 'moat <command> --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("moat %s\n", MOAT_VERSION);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "init") == 0)
		return moat_cmd_init(argc - 1, argv + 1);
	if (strcmp(argv[1], "serve") == 0)
		return moat_cmd_serve(argc - 1, argv + 1);
	if (strcmp(argv[1], "cert") == 0)
		return moat_cmd_cert(argc - 1, argv + 1);
	fprintf(stderr, "moat: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
