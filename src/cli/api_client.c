/*
 * Credentials, the call helper, prompts and table output shared by the API
 * commands; see api_client.h for the contract.
 *
 * The session cookie in the credentials file is as good as a password for
 * up to 12 hours, so the file is private (0600 in a 0700 directory), written
 * atomically, refused when others can reach it, and only ever sent to the
 * server it was issued by.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "cli/api_client.h"
#include "cli/cli.h"
#include "core/limits.h"

/* The credentials file is a few hundred bytes; anything much bigger is not
 * ours. */
#define CREDS_FILE_MAX (64u * 1024u)
/* Pages one listing follows at most: a server that never stops handing out
 * cursors must not keep the CLI busy forever. */
#define CLI_MAX_PAGES 100000u

const char moat_cli_common_help[] =
    "  --server URL          API server https://HOST[:PORT] (default: $MOAT_SERVER,\n"
    "                        then the credentials file)\n"
    "  --ca FILE             CA certificate the server's chains to, usually\n"
    "                        DATA_DIR/ca.crt (default: $MOAT_CA, then the\n"
    "                        credentials file, then the system trust store)\n"
    "  --json                print the API's JSON instead of a table\n"
    "  -h, --help            this help\n";

static bool cli_copy(char *dst, size_t n, const char *src)
{
	size_t l = strlen(src);

	if (l >= n)
		return false;
	memcpy(dst, src, l + 1);
	return true;
}

static void cli_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cli_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void moat_cli_ctx_init(struct moat_cli_ctx *c, const char *cmd)
{
	memset(c, 0, sizeof(*c));
	c->cmd = cmd;
}

void moat_cli_ctx_wipe(struct moat_cli_ctx *c)
{
	sodium_memzero(c->token, sizeof(c->token));
	sodium_memzero(c->session, sizeof(c->session));
	sodium_memzero(c->csrf, sizeof(c->csrf));
	sodium_memzero(&c->file, sizeof(c->file));
}

int moat_cli_common_opt(struct moat_cli_ctx *c, int argc, char **argv, int *i)
{
	const char *a = argv[*i];

	if (strcmp(a, "--json") == 0) {
		c->json = true;
		return 1;
	}
	if (*i + 1 >= argc)
		return 0;
	if (strcmp(a, "--server") == 0) {
		c->opt_server = argv[++*i];
		return 1;
	}
	if (strcmp(a, "--ca") == 0) {
		c->opt_ca = argv[++*i];
		return 1;
	}
	return 0;
}

int moat_cli_usage_error(const struct moat_cli_ctx *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "moat %s: ", c->cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

static const char *cli_env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? v : NULL;
}

int moat_cli_resolve(struct moat_cli_ctx *c, bool need_auth)
{
	const char *server = c->opt_server, *ca = c->opt_ca, *token = cli_env("MOAT_TOKEN");
	struct moat_hc_url fu;
	bool same = false;
	char err[1024];

	if (server == NULL)
		server = cli_env("MOAT_SERVER");
	if (ca == NULL)
		ca = cli_env("MOAT_CA");
	if (server == NULL || ca == NULL || (need_auth && token == NULL)) {
		if (moat_cli_creds_load(&c->file, &c->file_found, err, sizeof(err)) != MOAT_OK) {
			fprintf(stderr, "moat %s: %s\n", c->cmd, err);
			return EXIT_FAIL;
		}
	}
	if (server == NULL && c->file_found && c->file.server[0] != '\0')
		server = c->file.server;
	if (server == NULL) {
		fprintf(stderr,
			"moat %s: no server: pass --server https://HOST:PORT, set MOAT_SERVER, "
			"or run 'moat login'\n",
			c->cmd);
		return EXIT_USAGE;
	}
	if (moat_hc_url_parse(server, &c->url, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "moat %s: %s\n", c->cmd, err);
		return EXIT_USAGE;
	}
	/* What the file holds (CA, session) belongs to the server it names and
	 * is never sent anywhere else. */
	if (c->file_found && c->file.server[0] != '\0' &&
	    moat_hc_url_parse(c->file.server, &fu, NULL, 0) == MOAT_OK &&
	    strcmp(fu.canon, c->url.canon) == 0)
		same = true;
	if (ca == NULL && same && c->file.ca[0] != '\0')
		ca = c->file.ca;
	if (ca != NULL && !cli_copy(c->ca, sizeof(c->ca), ca)) {
		fprintf(stderr, "moat %s: CA path too long\n", c->cmd);
		return EXIT_USAGE;
	}
	if (same)
		(void)cli_copy(c->username, sizeof(c->username), c->file.username);
	if (!need_auth)
		return EXIT_OK;
	if (token != NULL) {
		if (!cli_copy(c->token, sizeof(c->token), token)) {
			fprintf(stderr, "moat %s: MOAT_TOKEN is too long to be a Moat token\n",
				c->cmd);
			return EXIT_FAIL;
		}
		return EXIT_OK;
	}
	if (same && c->file.session[0] != '\0') {
		(void)cli_copy(c->session, sizeof(c->session), c->file.session);
		(void)cli_copy(c->csrf, sizeof(c->csrf), c->file.csrf);
		return EXIT_OK;
	}
	fprintf(stderr,
		"moat %s: not logged in to %s: run 'moat login --server %s' or set MOAT_TOKEN\n",
		c->cmd, c->url.canon, c->url.canon);
	return EXIT_FAIL;
}

/* --------------------------------------------------------------------- */
/* Calls                                                                  */

int moat_cli_send(struct moat_cli_ctx *c, const char *method, const char *path, json_t *body,
		  bool auth, struct moat_hc_resp *resp)
{
	struct moat_hc_req req;
	char err[1024];
	char *text = NULL;
	moat_err rc;

	memset(&req, 0, sizeof(req));
	memset(resp, 0, sizeof(*resp));
	req.method = method;
	req.path = path;
	if (body != NULL) {
		text = json_dumps(body, JSON_COMPACT);
		if (text == NULL) {
			fprintf(stderr, "moat %s: cannot encode the request\n", c->cmd);
			return EXIT_FAIL;
		}
		req.body = text;
		req.body_len = strlen(text);
	}
	if (auth) {
		if (c->token[0] != '\0') {
			req.bearer = c->token;
		} else if (c->session[0] != '\0') {
			req.session = c->session;
			req.csrf = c->csrf[0] != '\0' ? c->csrf : NULL;
		}
	}
	rc =
	    moat_hc_request(&c->url, c->ca[0] != '\0' ? c->ca : NULL, &req, resp, err, sizeof(err));
	if (text != NULL) {
		/* Bodies carry passwords and codes. */
		sodium_memzero(text, req.body_len);
		free(text);
	}
	if (rc != MOAT_OK) {
		fprintf(stderr, "moat %s: %s\n", c->cmd, err);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

json_t *moat_cli_parse(const struct moat_hc_resp *resp)
{
	json_error_t e;

	if (resp->body == NULL || resp->body_len == 0)
		return NULL;
	return json_loadb(resp->body, resp->body_len, JSON_REJECT_DUPLICATES, &e);
}

const char *moat_cli_problem_type(json_t *doc)
{
	const char *t, *slash;

	if (!json_is_object(doc))
		return NULL;
	t = json_string_value(json_object_get(doc, "type"));
	if (t == NULL)
		return NULL;
	slash = strrchr(t, '/');
	return slash != NULL ? slash + 1 : t;
}

void moat_cli_report(const struct moat_cli_ctx *c, const struct moat_hc_resp *resp, json_t *doc)
{
	const char *title = NULL, *detail = NULL, *field = NULL, *type = moat_cli_problem_type(doc);

	if (json_is_object(doc)) {
		title = json_string_value(json_object_get(doc, "title"));
		detail = json_string_value(json_object_get(doc, "detail"));
		field = json_string_value(json_object_get(doc, "field"));
	}
	fprintf(stderr, "moat %s: ", c->cmd);
	if (title != NULL) {
		moat_cli_print_safe(stderr, title);
		if (detail != NULL && *detail != '\0') {
			fputs(": ", stderr);
			moat_cli_print_safe(stderr, detail);
		}
		if (field != NULL && *field != '\0') {
			fputs(" (field: ", stderr);
			moat_cli_print_safe(stderr, field);
			fputc(')', stderr);
		}
	} else {
		fprintf(stderr, "the server answered HTTP %d", resp->status);
	}
	fputc('\n', stderr);
	if (resp->status == 401 && (type == NULL || (strcmp(type, "invalid-credentials") != 0 &&
						     strcmp(type, "mfa-required") != 0))) {
		fprintf(stderr,
			"moat %s: hint: the session has ended or the token is not valid: run "
			"'moat login'%s\n",
			c->cmd, c->token[0] != '\0' ? " or check MOAT_TOKEN" : "");
	} else if (resp->status == 403 && type != NULL &&
		   strcmp(type, "mfa-enrolment-required") == 0) {
		fprintf(stderr,
			"moat %s: hint: administrators must enrol TOTP first: run 'moat login' to "
			"enrol\n",
			c->cmd);
	} else if (resp->status == 429) {
		fprintf(stderr, "moat %s: too many attempts: retry after ", c->cmd);
		if (resp->retry_after != NULL) {
			moat_cli_print_safe(stderr, resp->retry_after);
			if (strspn(resp->retry_after, "0123456789") == strlen(resp->retry_after))
				fputs(" s", stderr);
		} else {
			fputs("a while", stderr);
		}
		fputc('\n', stderr);
	}
}

int moat_cli_call(struct moat_cli_ctx *c, const char *method, const char *path, json_t *body,
		  json_t **out)
{
	struct moat_hc_resp resp;
	json_t *doc;
	int rc = EXIT_FAIL;

	if (out != NULL)
		*out = NULL;
	if (moat_cli_send(c, method, path, body, true, &resp) != EXIT_OK)
		return EXIT_FAIL;
	doc = moat_cli_parse(&resp);
	if (resp.status < 200 || resp.status > 299) {
		moat_cli_report(c, &resp, doc);
		goto out;
	}
	if (resp.body_len > 0 && doc == NULL) {
		fprintf(stderr, "moat %s: the server's answer (HTTP %d) is not JSON\n", c->cmd,
			resp.status);
		goto out;
	}
	if (out != NULL) {
		*out = doc;
		doc = NULL;
	}
	rc = EXIT_OK;
out:
	moat_cli_json_wipe_free(doc);
	moat_hc_resp_free(&resp);
	return rc;
}

moat_err moat_cli_query_add(char *path, size_t len, const char *key, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(path), orig = n;
	const unsigned char *v;
	int w;

	if (n >= len)
		return MOAT_E_LIMIT;
	w = snprintf(path + n, len - n, "%c%s=", strchr(path, '?') != NULL ? '&' : '?', key);
	if (w < 0 || (size_t)w >= len - n)
		goto full;
	n += (size_t)w;
	for (v = (const unsigned char *)value; *v != '\0'; v++) {
		bool plain = (*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') ||
			     (*v >= '0' && *v <= '9') || *v == '-' || *v == '.' || *v == '_' ||
			     *v == '~';
		if (n + (plain ? 1 : 3) >= len)
			goto full;
		if (plain) {
			path[n++] = (char)*v;
		} else {
			path[n++] = '%';
			path[n++] = hex[*v >> 4];
			path[n++] = hex[*v & 15];
		}
	}
	path[n] = '\0';
	return MOAT_OK;
full:
	path[orig] = '\0';
	return MOAT_E_LIMIT;
}

int moat_cli_get_all(struct moat_cli_ctx *c, const char *path, size_t max, json_t **items)
{
	json_t *all = json_array(), *doc = NULL;
	char p[4096], cursor[1024] = "";
	unsigned pages;
	int rc = EXIT_FAIL;

	*items = NULL;
	if (all == NULL) {
		fprintf(stderr, "moat %s: out of memory\n", c->cmd);
		return EXIT_FAIL;
	}
	for (pages = 0; pages < CLI_MAX_PAGES; pages++) {
		json_t *list, *next;
		const char *nc;

		if (!cli_copy(p, sizeof(p), path) ||
		    (cursor[0] != '\0' &&
		     moat_cli_query_add(p, sizeof(p), "cursor", cursor) != MOAT_OK)) {
			fprintf(stderr, "moat %s: request path too long\n", c->cmd);
			goto out;
		}
		if (moat_cli_call(c, "GET", p, NULL, &doc) != EXIT_OK)
			goto out;
		list = json_object_get(doc, "items");
		if (!json_is_array(list)) {
			fprintf(stderr, "moat %s: unexpected answer: no \"items\" list\n", c->cmd);
			goto out;
		}
		if (json_array_extend(all, list) != 0) {
			fprintf(stderr, "moat %s: out of memory\n", c->cmd);
			goto out;
		}
		if (max > 0 && json_array_size(all) >= max) {
			while (json_array_size(all) > max)
				(void)json_array_remove(all, json_array_size(all) - 1);
			break;
		}
		next = json_object_get(doc, "next_cursor");
		nc = json_string_value(next);
		if (nc == NULL || *nc == '\0' || json_array_size(list) == 0)
			break;
		if (strcmp(nc, cursor) == 0) {
			fprintf(stderr, "moat %s: the server repeated a page cursor\n", c->cmd);
			goto out;
		}
		if (!cli_copy(cursor, sizeof(cursor), nc)) {
			fprintf(stderr, "moat %s: the server's page cursor is too long\n", c->cmd);
			goto out;
		}
		json_decref(doc);
		doc = NULL;
	}
	*items = all;
	all = NULL;
	rc = EXIT_OK;
out:
	json_decref(doc);
	json_decref(all);
	return rc;
}

bool moat_cli_username_valid(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > MOAT_CLI_USERNAME_MAX)
		return false;
	for (i = 0; i < n; i++) {
		char ch = s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
		if (!alnum && (i == 0 || (ch != '.' && ch != '_' && ch != '-')))
			return false;
	}
	return true;
}

bool moat_cli_role_valid(const char *s, bool allow_metrics)
{
	return strcmp(s, "admin") == 0 || strcmp(s, "operator") == 0 || strcmp(s, "auditor") == 0 ||
	       strcmp(s, "viewer") == 0 || (allow_metrics && strcmp(s, "metrics") == 0);
}

/* --------------------------------------------------------------------- */
/* Credentials file                                                       */

moat_err moat_cli_creds_path(char *path, size_t len, char *dir, size_t dirlen)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home;
	char d[MOAT_MAX_PATH];
	int n;

	/* The XDG spec: a relative XDG_CONFIG_HOME is invalid and ignored. */
	if (xdg != NULL && xdg[0] == '/') {
		n = snprintf(d, sizeof(d), "%s/moat", xdg);
	} else {
		home = getenv("HOME");
		if (home == NULL || home[0] != '/') {
			struct passwd *pw = getpwuid(getuid());
			home = pw != NULL ? pw->pw_dir : NULL;
		}
		if (home == NULL || home[0] != '/')
			return MOAT_E_CONFIG;
		n = snprintf(d, sizeof(d), "%s/.config/moat", home);
	}
	if (n < 0 || (size_t)n >= sizeof(d))
		return MOAT_E_LIMIT;
	n = snprintf(path, len, "%s/credentials", d);
	if (n < 0 || (size_t)n >= len)
		return MOAT_E_LIMIT;
	if (dir != NULL && !cli_copy(dir, dirlen, d))
		return MOAT_E_LIMIT;
	return MOAT_OK;
}

static bool creds_field(json_t *obj, const char *key, char *dst, size_t n)
{
	json_t *v = json_object_get(obj, key);

	dst[0] = '\0';
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_string(v) || json_string_length(v) >= n ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return false;
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return true;
}

moat_err moat_cli_creds_load(struct moat_cli_creds *cr, bool *found, char *err, size_t errlen)
{
	char path[MOAT_MAX_PATH];
	uint8_t *buf = NULL;
	size_t used = 0;
	struct moat_cli_creds t;
	struct stat st;
	json_error_t je;
	json_t *doc = NULL;
	moat_err rc;
	int fd = -1;

	*found = false;
	memset(&t, 0, sizeof(t));
	rc = moat_cli_creds_path(path, sizeof(path), NULL, 0);
	if (rc != MOAT_OK) {
		cli_errf(err, errlen,
			 "cannot locate the credentials file: set HOME or "
			 "XDG_CONFIG_HOME");
		return rc;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return MOAT_OK;
		cli_errf(err, errlen, "cannot open the credentials file %s: %s%s", path,
			 strerror(errno), errno == ELOOP ? " (it is a symbolic link)" : "");
		return errno == ELOOP ? MOAT_E_PERM : MOAT_E_IO;
	}
	rc = MOAT_E_PERM;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		cli_errf(err, errlen, "the credentials file %s is not a regular file", path);
		goto out;
	}
	if (st.st_uid != geteuid()) {
		cli_errf(err, errlen, "the credentials file %s belongs to another user; remove it",
			 path);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		cli_errf(
		    err, errlen,
		    "the credentials file %s is accessible by group or others (mode %04o); "
		    "it holds a session secret: fix: chmod 600 %s (and consider 'moat logout')",
		    path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	rc = MOAT_E_IO;
	if (st.st_size < 0 || (uint64_t)st.st_size > CREDS_FILE_MAX) {
		cli_errf(err, errlen, "the credentials file %s is too large to be one", path);
		goto out;
	}
	buf = malloc(CREDS_FILE_MAX);
	if (buf == NULL) {
		cli_errf(err, errlen, "out of memory");
		rc = MOAT_E_NOMEM;
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, buf + used, CREDS_FILE_MAX - used);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cli_errf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		used += (size_t)r;
		if (used == CREDS_FILE_MAX) {
			cli_errf(err, errlen, "the credentials file %s is too large to be one",
				 path);
			goto out;
		}
	}
	rc = MOAT_E_MALFORMED;
	doc = json_loadb((const char *)buf, used, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(doc) || !creds_field(doc, "server", t.server, sizeof(t.server)) ||
	    !creds_field(doc, "ca", t.ca, sizeof(t.ca)) ||
	    !creds_field(doc, "username", t.username, sizeof(t.username)) ||
	    !creds_field(doc, "session", t.session, sizeof(t.session)) ||
	    !creds_field(doc, "csrf", t.csrf, sizeof(t.csrf))) {
		cli_errf(err, errlen, "the credentials file %s is damaged; run 'moat login' again",
			 path);
		goto out;
	}
	*cr = t;
	*found = true;
	rc = MOAT_OK;
out:
	sodium_memzero(&t, sizeof(t));
	if (buf != NULL) {
		sodium_memzero(buf, CREDS_FILE_MAX);
		free(buf);
	}
	moat_cli_json_wipe_free(doc);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* mkdir -p with mode 0700 for what we create. */
static moat_err creds_mkdirs(const char *dir, char *err, size_t errlen)
{
	char p[MOAT_MAX_PATH];
	size_t i;

	if (!cli_copy(p, sizeof(p), dir))
		return MOAT_E_LIMIT;
	for (i = 1;; i++) {
		if (p[i] == '/' || p[i] == '\0') {
			char keep = p[i];
			p[i] = '\0';
			if (mkdir(p, 0700) != 0 && errno != EEXIST) {
				cli_errf(err, errlen, "cannot create %s: %s", p, strerror(errno));
				return MOAT_E_IO;
			}
			p[i] = keep;
			if (keep == '\0')
				break;
		}
	}
	return MOAT_OK;
}

static moat_err creds_write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return MOAT_E_IO;
		s += w;
		n -= (size_t)w;
	}
	return MOAT_OK;
}

moat_err moat_cli_creds_save(const struct moat_cli_creds *cr, char *err, size_t errlen)
{
	char path[MOAT_MAX_PATH], dir[MOAT_MAX_PATH], tmp[MOAT_MAX_PATH];
	struct stat st;
	json_t *doc = NULL;
	char *text = NULL;
	size_t tlen = 0;
	moat_err rc;
	int fd = -1, dfd, n;

	tmp[0] = '\0';
	rc = moat_cli_creds_path(path, sizeof(path), dir, sizeof(dir));
	if (rc != MOAT_OK) {
		cli_errf(err, errlen,
			 "cannot locate the credentials file: set HOME or "
			 "XDG_CONFIG_HOME");
		return rc;
	}
	rc = creds_mkdirs(dir, err, errlen);
	if (rc != MOAT_OK)
		return rc;
	rc = MOAT_E_PERM;
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
		cli_errf(err, errlen, "%s is not a directory of yours", dir);
		goto out;
	}
	/* Our own config directory: make it private if it is not. */
	if ((st.st_mode & 077) != 0 && chmod(dir, 0700) != 0) {
		cli_errf(err, errlen, "cannot chmod 700 %s: %s", dir, strerror(errno));
		goto out;
	}
	rc = MOAT_E_NOMEM;
	doc = json_pack("{s:s, s:s, s:s, s:s, s:s}", "server", cr->server, "ca", cr->ca, "username",
			cr->username, "session", cr->session, "csrf", cr->csrf);
	text = doc != NULL ? json_dumps(doc, JSON_INDENT(2)) : NULL;
	if (text == NULL) {
		cli_errf(err, errlen, "out of memory");
		goto out;
	}
	tlen = strlen(text);
	rc = MOAT_E_IO;
	n = snprintf(tmp, sizeof(tmp), "%s/.credentials.XXXXXX", dir);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		tmp[0] = '\0';
		cli_errf(err, errlen, "path too long: %s", dir);
		goto out;
	}
	fd = mkstemp(tmp); /* O_EXCL, mode 0600 */
	if (fd < 0) {
		cli_errf(err, errlen, "cannot create a file in %s: %s", dir, strerror(errno));
		tmp[0] = '\0';
		goto out;
	}
	if (fchmod(fd, 0600) != 0 || creds_write_all(fd, text, tlen) != MOAT_OK ||
	    creds_write_all(fd, "\n", 1) != MOAT_OK || fsync(fd) != 0) {
		cli_errf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		cli_errf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		cli_errf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto out;
	}
	tmp[0] = '\0';
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	rc = MOAT_OK;
out:
	if (fd >= 0)
		close(fd);
	if (tmp[0] != '\0')
		(void)unlink(tmp);
	if (text != NULL) {
		sodium_memzero(text, tlen);
		free(text);
	}
	moat_cli_json_wipe_free(doc);
	return rc;
}

moat_err moat_cli_creds_delete(bool *found, char *err, size_t errlen)
{
	char path[MOAT_MAX_PATH];

	*found = false;
	if (moat_cli_creds_path(path, sizeof(path), NULL, 0) != MOAT_OK) {
		cli_errf(err, errlen,
			 "cannot locate the credentials file: set HOME or "
			 "XDG_CONFIG_HOME");
		return MOAT_E_CONFIG;
	}
	if (unlink(path) != 0) {
		if (errno == ENOENT)
			return MOAT_OK;
		cli_errf(err, errlen, "cannot delete %s: %s", path, strerror(errno));
		return MOAT_E_IO;
	}
	*found = true;
	return MOAT_OK;
}

/* --------------------------------------------------------------------- */
/* Input                                                                  */

static struct termios cli_saved_tio;
static volatile sig_atomic_t cli_tio_saved;

/* Ctrl-C at a password prompt must not leave the terminal without echo. */
static void cli_restore_tty_cb(int sig)
{
	if (cli_tio_saved)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &cli_saved_tio);
	(void)signal(sig, SIG_DFL);
	(void)raise(sig);
}

bool moat_cli_interactive(void)
{
	return isatty(STDIN_FILENO) == 1;
}

/* One line from fd, byte by byte (no stdio buffer keeps a copy). */
static moat_err cli_fd_line(int fd, char *buf, size_t len, char *err, size_t errlen)
{
	size_t n = 0;
	bool over = false, any = false;
	char ch = 0;

	for (;;) {
		ssize_t r = read(fd, &ch, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cli_errf(err, errlen, "read: %s", strerror(errno));
			sodium_memzero(buf, len);
			return MOAT_E_IO;
		}
		if (r == 0)
			break;
		any = true;
		if (ch == '\n')
			break;
		if (n + 1 >= len) {
			over = true;
			continue;
		}
		buf[n++] = ch;
	}
	ch = 0;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (over) {
		sodium_memzero(buf, len);
		cli_errf(err, errlen, "input line too long (at most %zu bytes)", len - 1);
		return MOAT_E_LIMIT;
	}
	if (!any) {
		cli_errf(err, errlen, "no input (end of file)");
		return MOAT_E_CLOSED;
	}
	return MOAT_OK;
}

moat_err moat_cli_read_line(const char *prompt, bool secret, char *buf, size_t len, char *err,
			    size_t errlen)
{
	struct sigaction sa, old_int, old_term, old_hup, old_quit;
	struct termios tio;
	bool tty = moat_cli_interactive(), noecho = false;
	moat_err rc;

	if (len < 2)
		return MOAT_E_INVAL;
	if (tty && prompt != NULL) {
		fputs(prompt, stderr);
		fflush(stderr);
	}
	if (tty && secret && tcgetattr(STDIN_FILENO, &cli_saved_tio) == 0) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = cli_restore_tty_cb;
		sigemptyset(&sa.sa_mask);
		(void)sigaction(SIGINT, &sa, &old_int);
		(void)sigaction(SIGTERM, &sa, &old_term);
		(void)sigaction(SIGHUP, &sa, &old_hup);
		(void)sigaction(SIGQUIT, &sa, &old_quit);
		cli_tio_saved = 1;
		tio = cli_saved_tio;
		tio.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &tio) == 0)
			noecho = true;
	}
	rc = cli_fd_line(STDIN_FILENO, buf, len, err, errlen);
	if (cli_tio_saved) {
		if (noecho) {
			(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &cli_saved_tio);
			fputc('\n', stderr);
		}
		cli_tio_saved = 0;
		(void)sigaction(SIGINT, &old_int, NULL);
		(void)sigaction(SIGTERM, &old_term, NULL);
		(void)sigaction(SIGHUP, &old_hup, NULL);
		(void)sigaction(SIGQUIT, &old_quit, NULL);
	}
	return rc;
}

moat_err moat_cli_read_file_line(const char *path, char *buf, size_t len, char *err, size_t errlen)
{
	char why[256];
	moat_err rc;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cli_errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return MOAT_E_IO;
	}
	rc = cli_fd_line(fd, buf, len, why, sizeof(why));
	close(fd);
	if (rc != MOAT_OK) {
		cli_errf(err, errlen, "%s: %s", path,
			 rc == MOAT_E_CLOSED ? "the file is empty" : why);
		return rc;
	}
	if (buf[0] == '\0') {
		cli_errf(err, errlen, "%s: the first line is empty", path);
		return MOAT_E_INVAL;
	}
	return MOAT_OK;
}

moat_err moat_cli_new_password(const char *file, const char *prompt, char *buf, size_t len,
			       char *err, size_t errlen)
{
	char again[1024];
	moat_err rc;

	if (file != NULL)
		return moat_cli_read_file_line(file, buf, len, err, errlen);
	rc = moat_cli_read_line(prompt, true, buf, len, err, errlen);
	if (rc != MOAT_OK)
		return rc;
	if (buf[0] == '\0') {
		cli_errf(err, errlen, "empty password");
		return MOAT_E_INVAL;
	}
	if (!moat_cli_interactive())
		return MOAT_OK;
	rc = moat_cli_read_line("Repeat it: ", true, again, sizeof(again), err, errlen);
	if (rc == MOAT_OK &&
	    (strlen(again) != strlen(buf) || sodium_memcmp(again, buf, strlen(buf)) != 0)) {
		cli_errf(err, errlen, "the passwords do not match");
		rc = MOAT_E_INVAL;
	}
	sodium_memzero(again, sizeof(again));
	if (rc != MOAT_OK)
		sodium_memzero(buf, len);
	return rc;
}

/* --------------------------------------------------------------------- */
/* Output                                                                 */

void moat_cli_print_safe(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		/* C1 controls (U+0080-U+009F, 0xC2 0x80-0x9F in UTF-8) include
		 * CSI, which some terminals honour like ESC [. */
		if (ch == 0xc2 && (unsigned char)s[1] >= 0x80 && (unsigned char)s[1] <= 0x9f) {
			fputc('?', f);
			s++;
			continue;
		}
		fputc(ch < 0x20 || ch == 0x7f ? '?' : ch, f);
	}
}

/* Display width: code points (UTF-8 continuation bytes do not count). */
static size_t cli_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++) {
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	}
	return w;
}

/* A cell's text, malloc'd. */
static char *cli_cell(json_t *v)
{
	char num[64];

	switch (json_typeof(v)) {
	case JSON_STRING:
		return strdup(json_string_value(v));
	case JSON_INTEGER:
		(void)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return strdup(num);
	case JSON_REAL:
		(void)snprintf(num, sizeof(num), "%g", json_real_value(v));
		return strdup(num);
	case JSON_TRUE:
		return strdup("true");
	case JSON_FALSE:
		return strdup("false");
	case JSON_OBJECT:
	case JSON_ARRAY:
		return json_dumps(v, JSON_COMPACT);
	case JSON_NULL:
	default:
		return strdup("-");
	}
}

static char *cli_cell_of(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return v != NULL ? cli_cell(v) : strdup("-");
}

void moat_cli_print_table(FILE *f, json_t *items, const struct moat_cli_col *cols, size_t ncols)
{
	size_t rows = json_array_size(items), r, k, *w;
	char **cells;

	if (rows == 0) {
		fputs("<none>\n", f);
		return;
	}
	w = calloc(ncols, sizeof(*w));
	cells = calloc(rows * ncols, sizeof(*cells));
	if (w == NULL || cells == NULL) {
		fputs("moat: out of memory\n", stderr);
		free(w);
		free(cells);
		return;
	}
	for (k = 0; k < ncols; k++)
		w[k] = cli_width(cols[k].heading);
	for (r = 0; r < rows; r++) {
		for (k = 0; k < ncols; k++) {
			char *s = cli_cell_of(json_array_get(items, r), cols[k].key);
			cells[r * ncols + k] = s;
			if (s != NULL && cli_width(s) > w[k])
				w[k] = cli_width(s);
		}
	}
	for (k = 0; k < ncols; k++) {
		fputs(cols[k].heading, f);
		if (k + 1 < ncols)
			fprintf(f, "%*s", (int)(w[k] - cli_width(cols[k].heading) + 3), "");
	}
	fputc('\n', f);
	for (r = 0; r < rows; r++) {
		for (k = 0; k < ncols; k++) {
			const char *s = cells[r * ncols + k] != NULL ? cells[r * ncols + k] : "?";
			moat_cli_print_safe(f, s);
			if (k + 1 < ncols)
				fprintf(f, "%*s", (int)(w[k] - cli_width(s) + 3), "");
		}
		fputc('\n', f);
	}
	for (r = 0; r < rows * ncols; r++)
		free(cells[r]);
	free(cells);
	free(w);
}

void moat_cli_print_fields(FILE *f, json_t *obj, const struct moat_cli_col *cols, size_t ncols)
{
	size_t k, wmax = 0;

	for (k = 0; k < ncols; k++) {
		if (cli_width(cols[k].heading) > wmax)
			wmax = cli_width(cols[k].heading);
	}
	for (k = 0; k < ncols; k++) {
		char *s = cli_cell_of(obj, cols[k].key);
		fprintf(f, "%s:%*s", cols[k].heading, (int)(wmax - cli_width(cols[k].heading) + 2),
			"");
		moat_cli_print_safe(f, s != NULL ? s : "?");
		fputc('\n', f);
		free(s);
	}
}

void moat_cli_print_json(FILE *f, json_t *v)
{
	if (v == NULL)
		fputs("null", f);
	else
		(void)json_dumpf(v, f, JSON_INDENT(2));
	fputc('\n', f);
}

static void cli_json_wipe(json_t *v)
{
	const char *key;
	json_t *x;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_STRING:
		/* The string is jansson's own heap copy. */
		sodium_memzero((char *)json_string_value(v), json_string_length(v));
		break;
	case JSON_OBJECT:
		json_object_foreach(v, key, x)
		{
			if (x->refcount == 1)
				cli_json_wipe(x);
		}
		break;
	case JSON_ARRAY:
		json_array_foreach(v, i, x)
		{
			if (x->refcount == 1)
				cli_json_wipe(x);
		}
		break;
	default:
		break;
	}
}

void moat_cli_json_wipe_free(json_t *v)
{
	if (v == NULL)
		return;
	/* Only values nobody else holds are wiped: others still use theirs. */
	if (v->refcount == 1)
		cli_json_wipe(v);
	json_decref(v);
}

/* Arrays of names as "a, b" for tables and fields. */
void moat_cli_flatten_names(json_t *obj, const char *key)
{
	json_t *arr = json_object_get(obj, key), *v;
	size_t i, len = 1;
	char *s;

	if (!json_is_array(arr))
		return;
	json_array_foreach(arr, i, v)
	{
		const char *n = json_string_value(v);
		len += (n != NULL ? strlen(n) : 1) + 2;
	}
	s = malloc(len);
	if (s == NULL)
		return;
	s[0] = '\0';
	json_array_foreach(arr, i, v)
	{
		const char *n = json_string_value(v);
		size_t at = strlen(s);
		(void)snprintf(s + at, len - at, "%s%s", i > 0 ? ", " : "", n != NULL ? n : "?");
	}
	(void)json_object_set_new(obj, key, json_string(s[0] != '\0' ? s : "-"));
	free(s);
}

int moat_cli_pick_sub(int argc, char **argv, const char *cmd, const void *table, size_t n,
		      size_t stride, void (*usage)(FILE *f), const void **out)
{
	size_t k;

	*out = NULL;
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	for (k = 0; k < n; k++) {
		const void *row = (const char *)table + k * stride;
		const char *const *name = row; /* every table's first member */
		if (strcmp(argv[1], *name) == 0) {
			*out = row;
			return -1;
		}
	}
	fprintf(stderr, "moat %s: unknown subcommand '%s'\n", cmd, argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
