/* The `moat` command: one function per subcommand. Exit codes: 0 ok,
 * 1 failure, 2 usage. */
#ifndef MOAT_CLI_H
#define MOAT_CLI_H

#include <stdbool.h>

#include "audit/audit_store.h"
#include "registry/registry.h"

#define MOAT_VERSION "0.1.0"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

int moat_cmd_init(int argc, char **argv);
int moat_cmd_serve(int argc, char **argv);
int moat_cmd_cert(int argc, char **argv);
int moat_cmd_setup_token(int argc, char **argv);
/* Clients of the HTTPS management API (api_client.h). */
int moat_cmd_login(int argc, char **argv);
int moat_cmd_logout(int argc, char **argv);
int moat_cmd_setup(int argc, char **argv);
int moat_cmd_user(int argc, char **argv);
int moat_cmd_token(int argc, char **argv);
int moat_cmd_audit(int argc, char **argv);
/* The device registry: identities, groups, policies. */
int moat_cmd_device(int argc, char **argv);
/* `moat device import`: offline, on the data directory (cmd_device_import.c). */
int moat_cmd_device_import(int argc, char **argv);
int moat_cmd_group(int argc, char **argv);
int moat_cmd_policy(int argc, char **argv);
/* Enrollment: tokens, issued certificates (`moat cert list|revoke`, routed
 * from moat_cmd_cert), decommissioning (`moat device decommission`). */
int moat_cmd_enroll_token(int argc, char **argv);
int moat_cmd_cert_api(int argc, char **argv);

/* Offline registry changes (`moat cert issue`, `moat device import`) go
 * through the registry service with an audit log signed by DIR/audit.key,
 * the actor being "cli:<unix user>" (offline.c). open fills rx for the
 * store st; close always. */
struct moat_cli_offline {
	struct moat_audit_file_signer signer;
	struct moat_audit_log log;
	bool signer_open, log_open;
	char actor[96];
	struct moat_reg_ctx rx;
};
moat_err moat_cli_offline_open(struct moat_cli_offline *o, struct moat_store *st, const char *dir,
			       char *err, size_t errlen);
void moat_cli_offline_close(struct moat_cli_offline *o);

#endif
