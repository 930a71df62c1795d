/* `moat setup`, `moat login`, `moat logout`: the first administrator, and
 * the session the other API commands use (kept in the credentials file,
 * api_client.h). Login also walks an administrator through TOTP enrolment,
 * which the server requires before anything else. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <qrencode.h>
#include <sodium.h>

#include "cli/api_client.h"
#include "cli/cli.h"

/* Password buffers: the server takes at most MOAT_PASSWORD_MAX_BYTES; a
 * longer line is still read whole so the server can say what is wrong. */
#define LOGIN_PW_MAX 1024u
/* TOTP codes are 6 digits, recovery codes 11 characters. */
#define LOGIN_CODE_MAX 64u
/* Light modules around a QR code (ISO/IEC 18004 asks for 4). */
#define LOGIN_QR_QUIET 4

static bool is_help(const char *a)
{
	return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* --------------------------------------------------------------------- */
/* moat setup                                                             */

static void setup_usage(FILE *f)
{
	fprintf(f,
		"usage: moat setup --server URL [--ca FILE] --token SETUP_TOKEN --user NAME\n"
		"                  [--password-file FILE]\n"
		"\n"
		"Create the first administrator with the one-time setup token that\n"
		"'moat setup-token' printed on the server. Then run 'moat login'.\n"
		"\n"
		"options:\n"
		"  --token TOKEN         the setup token moat_st_... (default: $MOAT_SETUP_TOKEN)\n"
		"  --user NAME           the administrator's user name: 1-64 of [a-z0-9._-]\n"
		"  --password-file FILE  read the password from the first line of FILE\n"
		"                        (default: asked twice on a terminal, else one line of\n"
		"                        stdin)\n"
		"%s",
		moat_cli_common_help);
}

int moat_cmd_setup(int argc, char **argv)
{
	struct moat_cli_ctx c;
	struct moat_hc_resp resp;
	const char *token = NULL, *user = NULL, *pwfile = NULL;
	char password[LOGIN_PW_MAX], err[1024], prompt[128];
	json_t *body = NULL, *doc = NULL;
	int i, rc;

	moat_cli_ctx_init(&c, "setup");
	memset(&resp, 0, sizeof(resp));
	password[0] = '\0';
	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			setup_usage(stdout);
			return EXIT_OK;
		} else if (moat_cli_common_opt(&c, argc, argv, &i)) {
			continue;
		} else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
			token = argv[++i];
		} else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc) {
			user = argv[++i];
		} else if (strcmp(argv[i], "--password-file") == 0 && i + 1 < argc) {
			pwfile = argv[++i];
		} else {
			fprintf(stderr, "moat setup: unknown or incomplete option '%s'\n", argv[i]);
			setup_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (token == NULL)
		token = getenv("MOAT_SETUP_TOKEN");
	if (token == NULL || *token == '\0')
		return moat_cli_usage_error(&c, "--token SETUP_TOKEN (or MOAT_SETUP_TOKEN) is "
						"required; 'moat setup-token' creates one");
	if (user == NULL)
		return moat_cli_usage_error(&c, "--user NAME is required");
	if (!moat_cli_username_valid(user))
		return moat_cli_usage_error(&c,
					    "'%s' is not a valid user name (1-64 of [a-z0-9._-], "
					    "starting with a letter or digit)",
					    user);
	rc = moat_cli_resolve(&c, false);
	if (rc != EXIT_OK)
		goto out;
	rc = EXIT_FAIL;
	(void)snprintf(prompt, sizeof(prompt), "Password for %s: ", user);
	if (moat_cli_new_password(pwfile, prompt, password, sizeof(password), err, sizeof(err)) !=
	    MOAT_OK) {
		fprintf(stderr, "moat setup: %s\n", err);
		goto out;
	}
	body = json_pack("{s:s, s:s, s:s}", "setup_token", token, "username", user, "password",
			 password);
	if (body == NULL) {
		fprintf(stderr, "moat setup: out of memory or invalid UTF-8 in the password\n");
		goto out;
	}
	if (moat_cli_send(&c, "POST", "/api/v1/setup", body, false, &resp) != EXIT_OK)
		goto out;
	doc = moat_cli_parse(&resp);
	if (resp.status < 200 || resp.status > 299) {
		const char *type = moat_cli_problem_type(doc);
		moat_cli_report(&c, &resp, doc);
		if (type != NULL && strcmp(type, "setup-unavailable") == 0)
			fprintf(stderr,
				"moat setup: hint: setup works once, with a token that has not "
				"expired; 'moat setup-token' on the server makes a new one\n");
		goto out;
	}
	if (c.json)
		moat_cli_print_json(stdout, doc);
	else
		printf("created administrator %s\n"
		       "next: moat login --server %s%s%s --user %s (you will enrol TOTP)\n",
		       user, c.url.canon, c.ca[0] != '\0' ? " --ca " : "", c.ca, user);
	rc = EXIT_OK;
out:
	sodium_memzero(password, sizeof(password));
	moat_cli_json_wipe_free(body);
	moat_cli_json_wipe_free(doc);
	moat_hc_resp_free(&resp);
	moat_cli_ctx_wipe(&c);
	return rc;
}

/* --------------------------------------------------------------------- */
/* moat login                                                             */

static void login_usage(FILE *f)
{
	fprintf(f,
		"usage: moat login [--server URL] [--ca FILE] [--user NAME]\n"
		"                  [--password-file FILE] [--totp CODE]\n"
		"                  [--enrol-totp-file FILE] [--no-qr]\n"
		"\n"
		"Log in to the management API and keep the session in the credentials file\n"
		"($XDG_CONFIG_HOME/moat/credentials, default ~/.config/moat/credentials,\n"
		"mode 0600). Sessions end after 30 minutes idle or 12 hours.\n"
		"\n"
		"The user name and password are asked for when missing (the password without\n"
		"echo on a terminal; otherwise one line of stdin each). If the account has\n"
		"TOTP, the code is asked for (or taken from --totp; a recovery code\n"
		"xxxxx-xxxxx works too). An administrator without TOTP enrols now: a QR code,\n"
		"the secret and its otpauth URI are shown for an authenticator app, a code\n"
		"from it confirms, and ten recovery\n"
		"codes are printed once.\n"
		"\n"
		"options:\n"
		"  --user NAME             user name\n"
		"  --password-file FILE    read the password from the first line of FILE\n"
		"  --totp CODE             TOTP code (or recovery code) if the account asks\n"
		"  --no-qr                 when enrolling, do not draw the QR code of the\n"
		"                          otpauth URI (the secret and URI are still shown)\n"
		"  --enrol-totp-file FILE  when enrolling, write the TOTP secret to FILE (mode\n"
		"                          0600) instead of printing it; the confirmation code\n"
		"                          is then read from stdin (for scripts)\n"
		"  --server URL            API server https://HOST[:PORT] (default: $MOAT_SERVER,\n"
		"                          then the credentials file)\n"
		"  --ca FILE               CA certificate the server's chains to, usually\n"
		"                          DATA_DIR/ca.crt (default: $MOAT_CA, then the\n"
		"                          credentials file, then the system trust store)\n"
		"  -h, --help              this help\n");
}

/* Is module (x, y) dark? Outside the symbol (the quiet zone) is light. */
static bool login_qr_dark(const QRcode *qr, int x, int y)
{
	if (x < 0 || y < 0 || x >= qr->width || y >= qr->width)
		return false;
	return (qr->data[(size_t)y * (size_t)qr->width + (size_t)x] & 1) != 0;
}

/* Write the TOTP secret to a new private file. */
static int login_write_secret(const char *path, const char *secret)
{
	size_t n = strlen(secret), off = 0;
	int fd, rc = EXIT_FAIL;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "moat login: cannot create %s: %s\n", path, strerror(errno));
		return EXIT_FAIL;
	}
	if (fchmod(fd, 0600) != 0)
		goto fail;
	while (off < n) {
		ssize_t w = write(fd, secret + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail;
		off += (size_t)w;
	}
	if (write(fd, "\n", 1) != 1 || fsync(fd) != 0)
		goto fail;
	rc = EXIT_OK;
fail:
	if (rc != EXIT_OK)
		fprintf(stderr, "moat login: cannot write %s: %s\n", path, strerror(errno));
	if (close(fd) != 0 && rc == EXIT_OK) {
		fprintf(stderr, "moat login: cannot write %s: %s\n", path, strerror(errno));
		rc = EXIT_FAIL;
	}
	return rc;
}

/* The otpauth URI as a QR code for a terminal: two module rows per line
 * with the Unicode half blocks, light modules drawn (as `qrencode -t UTF8`
 * does, for the usual light-on-dark terminal) and the 4-module quiet zone
 * the standard asks for. Returns false when the URI cannot be encoded. */
static bool login_print_qr(FILE *f, const char *uri)
{
	static const char *const cell[4] = {" ", "\u2580", "\u2584", "\u2588"};
	const int quiet = LOGIN_QR_QUIET;
	QRcode *qr;
	int w, x, y;

	qr = QRcode_encodeString(uri, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
	if (qr == NULL)
		return false;
	w = qr->width + 2 * quiet;
	for (y = 0; y < w; y += 2) {
		for (x = 0; x < w; x++) {
			int top = !login_qr_dark(qr, x - quiet, y - quiet);
			int bottom = y + 1 < w && !login_qr_dark(qr, x - quiet, y + 1 - quiet);
			fputs(cell[top | bottom << 1], f);
		}
		fputc('\n', f);
	}
	QRcode_free(qr);
	return true;
}

/* TOTP enrolment for an administrator who has none (the server allows
 * nothing else until it is done). */
static int login_enrol(struct moat_cli_ctx *c, const char *secret_file, bool qr)
{
	json_t *doc = NULL, *done = NULL, *body = NULL, *codes;
	const char *secret, *uri;
	char code[LOGIN_CODE_MAX], err[512];
	size_t i;
	int rc = EXIT_FAIL;

	code[0] = '\0';
	fprintf(stderr, "\nAdministrators must enrol TOTP (an authenticator app) before they can "
			"use the API.\n");
	c->cmd = "login (TOTP enrolment)";
	if (moat_cli_call(c, "POST", "/api/v1/me/totp", NULL, &doc) != EXIT_OK)
		goto out;
	secret = json_string_value(json_object_get(doc, "secret"));
	uri = json_string_value(json_object_get(doc, "otpauth_uri"));
	if (secret == NULL || uri == NULL) {
		fprintf(stderr, "moat %s: the server's answer has no secret\n", c->cmd);
		goto out;
	}
	if (secret_file != NULL) {
		if (login_write_secret(secret_file, secret) != EXIT_OK)
			goto out;
		fprintf(stderr, "The TOTP secret is in %s (mode 0600).\n", secret_file);
	} else {
		printf("Add this account to your authenticator app: scan the QR code, or type "
		       "the secret.\n");
		if (qr && !login_print_qr(stdout, uri))
			fprintf(stderr, "moat %s: cannot draw the QR code; use the secret\n",
				c->cmd);
		printf("  secret: ");
		moat_cli_print_safe(stdout, secret);
		printf("\n  URI:    ");
		moat_cli_print_safe(stdout, uri);
		printf("\n");
		fflush(stdout);
	}
	if (moat_cli_read_line("Code from the app: ", false, code, sizeof(code), err,
			       sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat %s: %s\n", c->cmd, err);
		goto out;
	}
	body = json_pack("{s:s}", "code", code);
	if (body == NULL) {
		fprintf(stderr, "moat %s: invalid code\n", c->cmd);
		goto out;
	}
	if (moat_cli_call(c, "POST", "/api/v1/me/totp/confirm", body, &done) != EXIT_OK) {
		fprintf(stderr, "moat %s: run 'moat login' again to retry the enrolment\n", c->cmd);
		goto out;
	}
	codes = json_object_get(done, "recovery_codes");
	if (!json_is_array(codes) || json_array_size(codes) == 0) {
		fprintf(stderr, "moat %s: the server's answer has no recovery codes\n", c->cmd);
		goto out;
	}
	fprintf(stderr, "TOTP enrolled. Store these recovery codes somewhere safe and offline:\n"
			"each replaces a TOTP code once, and they are never shown again.\n");
	for (i = 0; i < json_array_size(codes); i++) {
		const char *s = json_string_value(json_array_get(codes, i));
		if (s != NULL) {
			moat_cli_print_safe(stdout, s);
			fputc('\n', stdout);
		}
	}
	fflush(stdout);
	rc = EXIT_OK;
out:
	c->cmd = "login";
	sodium_memzero(code, sizeof(code));
	moat_cli_json_wipe_free(body);
	moat_cli_json_wipe_free(doc);
	moat_cli_json_wipe_free(done);
	return rc;
}

/* A recovery code is "xxxxx-xxxxx"; a TOTP code is digits. */
static bool login_is_recovery(const char *code)
{
	return strchr(code, '-') != NULL || strspn(code, "0123456789") != strlen(code);
}

int moat_cmd_login(int argc, char **argv)
{
	struct moat_cli_ctx c;
	struct moat_hc_resp resp;
	struct moat_cli_creds cr;
	const char *user = NULL, *pwfile = NULL, *totp = NULL, *enrol_file = NULL;
	const char *csrf, *role, *who, *expires;
	char name[MOAT_CLI_USERNAME_MAX + 2], password[LOGIN_PW_MAX], code[LOGIN_CODE_MAX];
	char err[1024], *ca_abs = NULL;
	json_t *body = NULL, *doc = NULL;
	bool sent_code = false, enrol, qr = true;
	int i, rc;

	moat_cli_ctx_init(&c, "login");
	memset(&resp, 0, sizeof(resp));
	memset(&cr, 0, sizeof(cr));
	password[0] = code[0] = '\0';
	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			login_usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--json") != 0 &&
			   moat_cli_common_opt(&c, argc, argv, &i)) {
			continue;
		} else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc) {
			user = argv[++i];
		} else if (strcmp(argv[i], "--password-file") == 0 && i + 1 < argc) {
			pwfile = argv[++i];
		} else if (strcmp(argv[i], "--totp") == 0 && i + 1 < argc) {
			totp = argv[++i];
		} else if (strcmp(argv[i], "--enrol-totp-file") == 0 && i + 1 < argc) {
			enrol_file = argv[++i];
		} else if (strcmp(argv[i], "--no-qr") == 0) {
			qr = false;
		} else {
			fprintf(stderr, "moat login: unknown or incomplete option '%s'\n", argv[i]);
			login_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (totp != NULL && (*totp == '\0' || strlen(totp) >= sizeof(code)))
		return moat_cli_usage_error(&c, "--totp takes a 6-digit code or a recovery code");
	if (user != NULL && !moat_cli_username_valid(user))
		return moat_cli_usage_error(&c,
					    "'%s' is not a valid user name (1-64 of [a-z0-9._-], "
					    "starting with a letter or digit)",
					    user);
	rc = moat_cli_resolve(&c, false);
	if (rc != EXIT_OK)
		goto out;
	rc = EXIT_FAIL;
	if (user == NULL) {
		if (moat_cli_read_line("Username: ", false, name, sizeof(name), err, sizeof(err)) !=
		    MOAT_OK) {
			fprintf(stderr, "moat login: %s\n", err);
			goto out;
		}
		if (!moat_cli_username_valid(name)) {
			fprintf(stderr,
				"moat login: not a valid user name (1-64 of [a-z0-9._-])\n");
			rc = EXIT_USAGE;
			goto out;
		}
		user = name;
	}
	if (pwfile != NULL) {
		if (moat_cli_read_file_line(pwfile, password, sizeof(password), err, sizeof(err)) !=
		    MOAT_OK) {
			fprintf(stderr, "moat login: %s\n", err);
			goto out;
		}
	} else if (moat_cli_read_line("Password: ", true, password, sizeof(password), err,
				      sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat login: %s\n", err);
		goto out;
	}
	body = json_pack("{s:s, s:s}", "username", user, "password", password);
	sodium_memzero(password, sizeof(password));
	if (body == NULL) {
		fprintf(stderr, "moat login: the password is not valid UTF-8\n");
		goto out;
	}
	for (;;) {
		const char *type;

		if (moat_cli_send(&c, "POST", "/api/v1/auth/login", body, false, &resp) != EXIT_OK)
			goto out;
		doc = moat_cli_parse(&resp);
		if (resp.status >= 200 && resp.status <= 299)
			break;
		type = moat_cli_problem_type(doc);
		if (resp.status != 401 || type == NULL || strcmp(type, "mfa-required") != 0 ||
		    sent_code) {
			moat_cli_report(&c, &resp, doc);
			goto out;
		}
		/* The password was right; the account wants its second factor. */
		if (totp != NULL) {
			memcpy(code, totp, strlen(totp) + 1);
		} else if (moat_cli_read_line("TOTP code (or a recovery code): ", false, code,
					      sizeof(code), err, sizeof(err)) != MOAT_OK) {
			fprintf(stderr, "moat login: %s\n", err);
			goto out;
		}
		if (json_object_set_new(body,
					login_is_recovery(code) ? "recovery_code" : "totp_code",
					json_string(code)) != 0) {
			fprintf(stderr, "moat login: invalid code\n");
			goto out;
		}
		sodium_memzero(code, sizeof(code));
		sent_code = true;
		moat_cli_json_wipe_free(doc);
		doc = NULL;
		moat_hc_resp_free(&resp);
	}
	csrf = json_string_value(json_object_get(doc, "csrf_token"));
	role = json_string_value(json_object_get(doc, "role"));
	who = json_string_value(json_object_get(doc, "username"));
	expires = json_string_value(json_object_get(doc, "expires_at"));
	enrol = json_is_true(json_object_get(doc, "mfa_enrolment_required"));
	if (resp.session == NULL || csrf == NULL) {
		fprintf(stderr, "moat login: the server's answer has no session cookie or CSRF "
				"token\n");
		goto out;
	}
	if (who == NULL || !moat_cli_username_valid(who))
		who = user;
	if (c.ca[0] != '\0') {
		/* Absolute, so later commands work from any directory. */
		ca_abs = realpath(c.ca, NULL);
	}
	if (strlen(c.url.canon) >= sizeof(cr.server) ||
	    strlen(ca_abs != NULL ? ca_abs : c.ca) >= sizeof(cr.ca) ||
	    strlen(resp.session) >= sizeof(cr.session) || strlen(csrf) >= sizeof(cr.csrf)) {
		fprintf(stderr, "moat login: the session is too large to keep\n");
		goto out;
	}
	memcpy(cr.server, c.url.canon, strlen(c.url.canon) + 1);
	memcpy(cr.ca, ca_abs != NULL ? ca_abs : c.ca, strlen(ca_abs != NULL ? ca_abs : c.ca) + 1);
	memcpy(cr.username, who, strlen(who) + 1);
	memcpy(cr.session, resp.session, strlen(resp.session) + 1);
	memcpy(cr.csrf, csrf, strlen(csrf) + 1);
	if (moat_cli_creds_save(&cr, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat login: cannot keep the session: %s\n", err);
		goto out;
	}
	fprintf(stderr, "Logged in to %s as %s", c.url.canon, who);
	if (role != NULL) {
		fputs(" (", stderr);
		moat_cli_print_safe(stderr, role);
		fputc(')', stderr);
	}
	if (expires != NULL) {
		fputs("; the session ends at the latest at ", stderr);
		moat_cli_print_safe(stderr, expires);
	}
	fputs(".\n", stderr);
	rc = EXIT_OK;
	if (enrol) {
		memcpy(c.session, cr.session, strlen(cr.session) + 1);
		memcpy(c.csrf, cr.csrf, strlen(cr.csrf) + 1);
		c.token[0] = '\0';
		rc = login_enrol(&c, enrol_file, qr);
	}
out:
	sodium_memzero(password, sizeof(password));
	sodium_memzero(code, sizeof(code));
	sodium_memzero(&cr, sizeof(cr));
	free(ca_abs);
	moat_cli_json_wipe_free(body);
	moat_cli_json_wipe_free(doc);
	moat_hc_resp_free(&resp);
	moat_cli_ctx_wipe(&c);
	return rc;
}

/* --------------------------------------------------------------------- */
/* moat logout                                                            */

static void logout_usage(FILE *f)
{
	fprintf(f, "usage: moat logout\n"
		   "\n"
		   "End the session on the server (POST /api/v1/auth/logout) and delete the\n"
		   "credentials file. The file is deleted even when the server cannot be\n"
		   "reached (the session then ends on its own: 30 minutes idle, 12 hours in\n"
		   "all). API tokens (MOAT_TOKEN) are not affected: revoke them with\n"
		   "'moat token revoke'.\n"
		   "\n"
		   "options:\n"
		   "  -h, --help   this help\n");
}

int moat_cmd_logout(int argc, char **argv)
{
	struct moat_cli_ctx c;
	struct moat_hc_resp resp;
	char err[1024];
	json_t *doc = NULL;
	bool found = false, deleted = false;
	int i, rc = EXIT_FAIL;

	moat_cli_ctx_init(&c, "logout");
	memset(&resp, 0, sizeof(resp));
	for (i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			logout_usage(stdout);
			return EXIT_OK;
		}
		fprintf(stderr, "moat logout: unknown option '%s'\n", argv[i]);
		logout_usage(stderr);
		return EXIT_USAGE;
	}
	if (moat_cli_creds_load(&c.file, &found, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat logout: %s\n", err);
		goto out;
	}
	if (!found) {
		fprintf(stderr, "moat logout: not logged in (no credentials file)\n");
		rc = EXIT_OK;
		goto out;
	}
	rc = EXIT_OK;
	if (c.file.session[0] != '\0' &&
	    moat_hc_url_parse(c.file.server, &c.url, err, sizeof(err)) == MOAT_OK) {
		_Static_assert(sizeof(c.ca) == sizeof(c.file.ca), "same CA path size");
		memcpy(c.ca, c.file.ca, sizeof(c.ca));
		memcpy(c.session, c.file.session, sizeof(c.session));
		memcpy(c.csrf, c.file.csrf, sizeof(c.csrf));
		if (moat_cli_send(&c, "POST", "/api/v1/auth/logout", NULL, true, &resp) !=
		    EXIT_OK) {
			rc = EXIT_FAIL;
		} else if ((resp.status < 200 || resp.status > 299) && resp.status != 401) {
			/* 401: the session had already ended. */
			doc = moat_cli_parse(&resp);
			moat_cli_report(&c, &resp, doc);
			rc = EXIT_FAIL;
		}
		if (rc != EXIT_OK)
			fprintf(stderr, "moat logout: the session may stay valid on the server "
					"until it expires\n");
	}
	if (moat_cli_creds_delete(&deleted, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat logout: %s\n", err);
		rc = EXIT_FAIL;
		goto out;
	}
	fprintf(stderr, "Logged out%s%s.\n", c.file.server[0] != '\0' ? " of " : "", c.file.server);
out:
	moat_cli_json_wipe_free(doc);
	moat_hc_resp_free(&resp);
	moat_cli_ctx_wipe(&c);
	return rc;
}
