/*
 * What the API commands (login, user, token, audit) share: where the server
 * and the credentials come from, one call helper that turns problem+json
 * answers into one line on stderr, reading passwords, and table output.
 *
 * Credentials, first match wins:
 *   server  --server URL, $MOAT_SERVER, the credentials file
 *   CA      --ca FILE, $MOAT_CA, the credentials file (same server only)
 *   auth    $MOAT_TOKEN (Authorization: Bearer), else the session in the
 *           credentials file when it is for the same server
 * The credentials file is $XDG_CONFIG_HOME/moat/credentials (default
 * ~/.config/moat/credentials), JSON {"server","ca","username","session",
 * "csrf"}, mode 0600 in a 0700 directory; it is refused when group or others
 * have any access to it.
 */
#ifndef MOAT_CLI_API_CLIENT_H
#define MOAT_CLI_API_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/http_client.h"
#include "core/error.h"
#include "core/limits.h"

/* Session cookie and CSRF token sizes we keep (the server's are far shorter). */
#define MOAT_CLI_SECRET_MAX 1100u
/* A user name is 1-64 characters (docs/api.md). */
#define MOAT_CLI_USERNAME_MAX 64u

struct moat_cli_creds {
	char server[300]; /* canonical https://host:port, or "" */
	char ca[MOAT_MAX_PATH];
	char username[MOAT_CLI_USERNAME_MAX + 1];
	char session[MOAT_CLI_SECRET_MAX];
	char csrf[MOAT_CLI_SECRET_MAX];
};

struct moat_cli_ctx {
	const char *cmd;	/* "user list": messages read "moat user list: ..." */
	const char *opt_server; /* --server */
	const char *opt_ca;	/* --ca */
	bool json;		/* --json */
	/* Set by moat_cli_resolve. */
	struct moat_hc_url url;
	char ca[MOAT_MAX_PATH]; /* "" for the system trust store */
	char username[MOAT_CLI_USERNAME_MAX + 1];
	char token[MOAT_CLI_SECRET_MAX];
	char session[MOAT_CLI_SECRET_MAX];
	char csrf[MOAT_CLI_SECRET_MAX];
	struct moat_cli_creds file; /* the credentials file as loaded */
	bool file_found;
};

void moat_cli_ctx_init(struct moat_cli_ctx *c, const char *cmd);
/* Wipe every secret the context holds. */
void moat_cli_ctx_wipe(struct moat_cli_ctx *c);

/* --server URL, --ca FILE, --json: 1 when argv[*i] was one of them (*i is
 * advanced past its value), 0 otherwise (also when a value is missing: the
 * caller reports an incomplete option). */
int moat_cli_common_opt(struct moat_cli_ctx *c, int argc, char **argv, int *i);

/* Help text for the common options, for the commands' usage(). */
extern const char moat_cli_common_help[];

/*
 * Decide the server, CA and credentials as the header describes. need_auth:
 * a token or a session for this server is required. Returns EXIT_OK, or
 * prints why and returns EXIT_USAGE (no server, bad URL) or EXIT_FAIL (not
 * logged in, unsafe credentials file).
 */
int moat_cli_resolve(struct moat_cli_ctx *c, bool need_auth);

/*
 * Send one request. body (may be NULL) is sent as JSON. auth: send the
 * token or session (with the CSRF token on state-changing methods). On
 * EXIT_OK *resp holds the answer, whatever its status (free it with
 * moat_hc_resp_free); on EXIT_FAIL the transport error was printed.
 */
int moat_cli_send(struct moat_cli_ctx *c, const char *method, const char *path, json_t *body,
		  bool auth, struct moat_hc_resp *resp);

/* The answer's body as JSON, or NULL when it is empty or not JSON. */
json_t *moat_cli_parse(const struct moat_hc_resp *resp);

/* The last segment of a problem answer's "type" ("mfa-required"), or NULL
 * when doc is not a problem document. */
const char *moat_cli_problem_type(json_t *doc);

/* Print a failed answer to stderr: "moat <cmd>: <title>: <detail>", the
 * field, and hints (401: run moat login; 429: Retry-After). doc may be NULL. */
void moat_cli_report(const struct moat_cli_ctx *c, const struct moat_hc_resp *resp, json_t *doc);

/*
 * Authenticated call: EXIT_OK with *out the parsed answer (NULL for an empty
 * 2xx answer such as 204), or EXIT_FAIL after printing the error. out may
 * be NULL when the answer is not needed.
 */
int moat_cli_call(struct moat_cli_ctx *c, const char *method, const char *path, json_t *body,
		  json_t **out);

/*
 * GET a paginated list: follow next_cursor until the end or until max items
 * (0: no limit). path may carry a query already. *items is a new array.
 */
int moat_cli_get_all(struct moat_cli_ctx *c, const char *path, size_t max, json_t **items);

/* Append "?key=value" or "&key=value" (percent-encoded) to path; MOAT_E_LIMIT
 * when it does not fit. */
moat_err moat_cli_query_add(char *path, size_t len, const char *key, const char *value);

/* Print a usage error "moat <cmd>: <msg>" and return EXIT_USAGE. */
int moat_cli_usage_error(const struct moat_cli_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* User names: 1-64 of [a-z0-9._-] starting with a letter or digit. */
bool moat_cli_username_valid(const char *s);
/* admin, operator, auditor, viewer (and metrics when allow_metrics). */
bool moat_cli_role_valid(const char *s, bool allow_metrics);

/* --- credentials file --- */

/* The file's path (and, if dir is not NULL, its directory's). */
moat_err moat_cli_creds_path(char *path, size_t len, char *dir, size_t dirlen);
/* Load it; *found false (and MOAT_OK) when there is none. MOAT_E_PERM when
 * group or others may access it (err names the chmod that fixes it). */
moat_err moat_cli_creds_load(struct moat_cli_creds *cr, bool *found, char *err, size_t errlen);
/* Write it atomically (temporary file + rename), mode 0600, directory 0700. */
moat_err moat_cli_creds_save(const struct moat_cli_creds *cr, char *err, size_t errlen);
/* Delete it; *found false when there was none. */
moat_err moat_cli_creds_delete(bool *found, char *err, size_t errlen);

/* --- input --- */

/* Whether stdin is a terminal (prompts are shown, secrets not echoed). */
bool moat_cli_interactive(void);
/*
 * Read one line from stdin into buf (without the newline). On a terminal
 * show prompt on stderr and, if secret, turn echo off while reading. Too
 * long a line or end of input is an error (err says which).
 */
moat_err moat_cli_read_line(const char *prompt, bool secret, char *buf, size_t len, char *err,
			    size_t errlen);
/* The first line of a file (a password file). */
moat_err moat_cli_read_file_line(const char *path, char *buf, size_t len, char *err, size_t errlen);
/* A new password: from file if given; else on a terminal asked twice (they
 * must match); else one line from stdin. */
moat_err moat_cli_new_password(const char *file, const char *prompt, char *buf, size_t len,
			       char *err, size_t errlen);

/* --- output --- */

struct moat_cli_col {
	const char *heading; /* "NAME" */
	const char *key;     /* member of each item */
};

/* Aligned columns with a header row (like kubectl get); "-" for null or
 * missing members, "<none>" when there are no items. */
void moat_cli_print_table(FILE *f, json_t *items, const struct moat_cli_col *cols, size_t ncols);
/* One object as "heading: value" lines. */
void moat_cli_print_fields(FILE *f, json_t *obj, const struct moat_cli_col *cols, size_t ncols);
/* Replace the array of names obj[key] by one string "a, b" ("-" when
 * empty), for tables and field lists. */
void moat_cli_flatten_names(json_t *obj, const char *key);
/* Pick argv[1] from a subcommand table whose rows start with their name
 * (const char *): -1 with *out set to continue; else the exit code, after
 * the usage (--help: stdout, exit 0; none or unknown: stderr, exit 2). */
int moat_cli_pick_sub(int argc, char **argv, const char *cmd, const void *table, size_t n,
		      size_t stride, void (*usage)(FILE *f), const void **out);
/* Indented JSON and a newline (--json). */
void moat_cli_print_json(FILE *f, json_t *v);
/* s with control characters replaced by '?': server data never drives the
 * terminal. */
void moat_cli_print_safe(FILE *f, const char *s);

/* Zero every string in v (recursively), then drop the reference: for
 * documents that carried passwords, tokens or codes. NULL is fine. */
void moat_cli_json_wipe_free(json_t *v);

#endif
