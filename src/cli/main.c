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
		   "  init         create a data directory: CA, server certificate, moat.conf\n"
		   "  serve        run the broker on a data directory\n"
		   "  cert         issue development certificates (offline); list and revoke\n"
		   "               issued ones (API)\n"
		   "  setup-token  create the one-time token for the first administrator\n"
		   "  version      print the version\n"
		   "\n"
		   "management API (HTTPS):\n"
		   "  setup        create the first administrator with a setup token\n"
		   "  login        log in; keeps a session in ~/.config/moat/credentials\n"
		   "  logout       end the session and delete the credentials file\n"
		   "  user         manage operator accounts\n"
		   "  token        manage API tokens\n"
		   "  audit        list, verify and export the audit log\n"
		   "  device       register devices and services, their lifecycle and groups\n"
		   "  enroll-token create and list enrollment tokens for EST\n"
		   "  group        manage device groups and the policies attached to them\n"
		   "  policy       manage policies (topic rules)\n"
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
	if (strcmp(argv[1], "setup-token") == 0)
		return moat_cmd_setup_token(argc - 1, argv + 1);
	if (strcmp(argv[1], "setup") == 0)
		return moat_cmd_setup(argc - 1, argv + 1);
	if (strcmp(argv[1], "login") == 0)
		return moat_cmd_login(argc - 1, argv + 1);
	if (strcmp(argv[1], "logout") == 0)
		return moat_cmd_logout(argc - 1, argv + 1);
	if (strcmp(argv[1], "user") == 0)
		return moat_cmd_user(argc - 1, argv + 1);
	if (strcmp(argv[1], "token") == 0)
		return moat_cmd_token(argc - 1, argv + 1);
	if (strcmp(argv[1], "audit") == 0)
		return moat_cmd_audit(argc - 1, argv + 1);
	if (strcmp(argv[1], "device") == 0)
		return moat_cmd_device(argc - 1, argv + 1);
	if (strcmp(argv[1], "group") == 0)
		return moat_cmd_group(argc - 1, argv + 1);
	if (strcmp(argv[1], "policy") == 0)
		return moat_cmd_policy(argc - 1, argv + 1);
	if (strcmp(argv[1], "enroll-token") == 0)
		return moat_cmd_enroll_token(argc - 1, argv + 1);
	fprintf(stderr, "moat: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
