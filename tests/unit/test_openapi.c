/* The routes the server registers (moat_api_routes) and the operations of
 * docs/openapi.yaml agree, both ways; and every operation names the
 * permission docs/api.md gives its route. The spec is read by a small line
 * reader that relies on its documented layout ("  /path:" at two spaces,
 * "    get:" at four) rather than on a YAML library. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"

#ifndef MOAT_SOURCE_DIR
#define MOAT_SOURCE_DIR "."
#endif

#define MAX_OPS 128
#define LINE_MAX_LEN 1024

struct op {
	char method[16]; /* upper case */
	char path[256];
	char perm[64]; /* x-moat-permission, "" if none */
	int line;
	bool seen; /* matched while comparing */
};

struct oplist {
	struct op v[MAX_OPS];
	size_t n;
};

static const char *const methods[] = {"get",	 "put",	 "post",  "delete",
				      "options", "head", "patch", "trace"};

static void upper(char *dst, size_t dstlen, const char *src, size_t n)
{
	size_t i;

	assert_true(n < dstlen);
	for (i = 0; i < n; i++)
		dst[i] = (src[i] >= 'a' && src[i] <= 'z') ? (char)(src[i] - 'a' + 'A') : src[i];
	dst[n] = '\0';
}

/* Leading spaces of a line (tabs are not YAML indentation). */
static size_t indent_of(const char *s)
{
	size_t n = 0;

	while (s[n] == ' ')
		n++;
	return n;
}

static void chomp(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
}

static void strip_quotes(const char **s, size_t *n)
{
	if (*n >= 2 && ((*s)[0] == '"' || (*s)[0] == '\'') && (*s)[*n - 1] == (*s)[0]) {
		(*s)++;
		*n -= 2;
	}
}

static void add_op(struct oplist *ops, const char *method, size_t mlen, const char *path, int line)
{
	struct op *o;

	if (ops->n >= MAX_OPS)
		fail_msg("openapi.yaml: more than %d operations", MAX_OPS);
	o = &ops->v[ops->n++];
	memset(o, 0, sizeof(*o));
	upper(o->method, sizeof(o->method), method, mlen);
	assert_true(strlen(path) < sizeof(o->path));
	memcpy(o->path, path, strlen(path) + 1);
	o->line = line;
}

/* The (METHOD, path) pairs under the top-level "paths:" key. */
static void read_spec(const char *file, struct oplist *ops)
{
	char line[LINE_MAX_LEN + 2], path[256] = "";
	bool in_paths = false, saw_paths = false;
	int lineno = 0;
	FILE *f = fopen(file, "r");

	if (f == NULL)
		fail_msg("cannot open %s", file);
	ops->n = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t ind, n, i;
		const char *s;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			fclose(f);
			fail_msg("%s:%d: line longer than %d bytes", file, lineno, LINE_MAX_LEN);
		}
		chomp(line);
		ind = indent_of(line);
		s = line + ind;
		if (*s == '\0' || *s == '#')
			continue;
		if (ind == 0) {
			/* Another top-level key ends the paths section. */
			in_paths = strcmp(s, "paths:") == 0;
			saw_paths = saw_paths || in_paths;
			continue;
		}
		if (!in_paths)
			continue;
		n = strlen(s);
		if (ind == 2) {
			const char *p = s;
			size_t plen = n;
			if (p[plen - 1] != ':') {
				fclose(f);
				fail_msg("%s:%d: expected \"  /path:\"", file, lineno);
			}
			plen--;
			strip_quotes(&p, &plen);
			if (plen == 0 || p[0] != '/' || plen >= sizeof(path)) {
				fclose(f);
				fail_msg("%s:%d: a path must start with '/'", file, lineno);
			}
			memcpy(path, p, plen);
			path[plen] = '\0';
			continue;
		}
		if (ind == 4 && n > 1 && s[n - 1] == ':') {
			for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
				size_t ml = strlen(methods[i]);
				if (n - 1 == ml && memcmp(s, methods[i], ml) == 0)
					break;
			}
			if (i == sizeof(methods) / sizeof(methods[0]))
				continue; /* parameters:, summary:, ... of the path item */
			if (path[0] == '\0') {
				fclose(f);
				fail_msg("%s:%d: a method outside a path", file, lineno);
			}
			add_op(ops, s, n - 1, path, lineno);
			continue;
		}
		/* The operation's permission: "      x-moat-permission: users:read". */
		if (ind == 6 && ops->n > 0 && strncmp(s, "x-moat-permission:", 18) == 0) {
			struct op *o = &ops->v[ops->n - 1];
			const char *v = s + 18;
			size_t vl;
			while (*v == ' ')
				v++;
			vl = strlen(v);
			strip_quotes(&v, &vl);
			assert_true(vl < sizeof(o->perm));
			memcpy(o->perm, v, vl);
			o->perm[vl] = '\0';
		}
	}
	fclose(f);
	if (!saw_paths)
		fail_msg("%s: no top-level \"paths:\"", file);
}

static void spec_file(char *buf, size_t len, const char *rel)
{
	int n = snprintf(buf, len, "%s/%s", MOAT_SOURCE_DIR, rel);

	assert_true(n > 0 && (size_t)n < len);
}

static struct oplist spec;

static void test_spec_is_readable(void **state)
{
	(void)state;
	char file[1024];
	size_t i, j;

	spec_file(file, sizeof(file), "docs/openapi.yaml");
	read_spec(file, &spec);
	assert_true(spec.n > 0);
	/* No operation twice. */
	for (i = 0; i < spec.n; i++)
		for (j = i + 1; j < spec.n; j++)
			if (strcmp(spec.v[i].method, spec.v[j].method) == 0 &&
			    strcmp(spec.v[i].path, spec.v[j].path) == 0)
				fail_msg("openapi.yaml:%d: %s %s is described twice (see line %d)",
					 spec.v[j].line, spec.v[j].method, spec.v[j].path,
					 spec.v[i].line);
}

static void test_routes_and_spec_agree(void **state)
{
	(void)state;
	char file[1024];
	const struct moat_http_route *routes;
	size_t n = 0, i, j, missing = 0;

	spec_file(file, sizeof(file), "docs/openapi.yaml");
	read_spec(file, &spec);
	routes = moat_api_routes(&n);
	assert_non_null(routes);
	assert_true(n > 0);
	for (i = 0; i < n; i++) {
		const char *m = llhttp_method_name((llhttp_method_t)routes[i].method);
		bool found = false;
		for (j = 0; j < spec.n && !found; j++) {
			if (strcmp(spec.v[j].method, m) == 0 &&
			    strcmp(spec.v[j].path, routes[i].pattern) == 0) {
				spec.v[j].seen = true;
				found = true;
			}
		}
		if (!found) {
			print_error("registered but not in docs/openapi.yaml: %s %s\n", m,
				    routes[i].pattern);
			missing++;
		}
	}
	for (j = 0; j < spec.n; j++) {
		if (!spec.v[j].seen) {
			print_error("in docs/openapi.yaml (line %d) but not registered: %s %s\n",
				    spec.v[j].line, spec.v[j].method, spec.v[j].path);
			missing++;
		}
	}
	if (missing > 0)
		fail_msg("%zu route(s) differ between moat_api_routes() and docs/openapi.yaml",
			 missing);
	assert_int_equal(spec.n, n);
}

/* Each operation's x-moat-permission is the permission of its row in the
 * docs/api.md route table ("| GET | `/healthz` | none | ... |"). */
static void test_permissions_match_api_md(void **state)
{
	(void)state;
	/* "setup token" and "enroll token" (EST simpleenroll) are credentials
	 * of their own, not role permissions. */
	static const char *const known[] = {
	    "none",	     "setup token",    "self",	       "users:read",	     "users:write",
	    "tokens:read",   "tokens:write",   "audit:read",   "metrics:read",	     "devices:read",
	    "devices:write", "policies:write", "enroll token", "device certificate",
	};
	char file[1024], line[LINE_MAX_LEN + 2];
	size_t i, k, bad = 0, rows = 0;
	FILE *f;

	spec_file(file, sizeof(file), "docs/openapi.yaml");
	read_spec(file, &spec);
	for (i = 0; i < spec.n; i++) {
		for (k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (strcmp(spec.v[i].perm, known[k]) == 0)
				break;
		if (k == sizeof(known) / sizeof(known[0])) {
			print_error("openapi.yaml:%d: %s %s: x-moat-permission '%s' is missing or "
				    "unknown\n",
				    spec.v[i].line, spec.v[i].method, spec.v[i].path,
				    spec.v[i].perm);
			bad++;
		}
	}
	spec_file(file, sizeof(file), "docs/api.md");
	f = fopen(file, "r");
	if (f == NULL)
		fail_msg("cannot open %s", file);
	while (fgets(line, sizeof(line), f) != NULL) {
		char cell[3][256];
		const char *p = line;
		size_t c;

		chomp(line);
		if (line[0] != '|')
			continue;
		/* The first three cells, trimmed, without backticks. */
		for (c = 0; c < 3; c++) {
			const char *end;
			size_t o = 0;
			if (*p != '|')
				break;
			p++;
			end = strchr(p, '|');
			if (end == NULL)
				break;
			for (; p < end; p++)
				if (*p != '`' && o + 1 < sizeof(cell[c]))
					cell[c][o++] = *p;
			while (o > 0 && cell[c][o - 1] == ' ')
				o--;
			cell[c][o] = '\0';
			memmove(cell[c], cell[c] + indent_of(cell[c]), strlen(cell[c]) + 1);
		}
		if (c < 3 || cell[1][0] != '/')
			continue;
		rows++;
		for (i = 0; i < spec.n; i++) {
			if (strcmp(spec.v[i].method, cell[0]) != 0 ||
			    strcmp(spec.v[i].path, cell[1]) != 0)
				continue;
			if (strcmp(spec.v[i].perm, cell[2]) != 0) {
				print_error(
				    "%s %s: docs/api.md says '%s', openapi.yaml says '%s'\n",
				    cell[0], cell[1], cell[2], spec.v[i].perm);
				bad++;
			}
			break;
		}
		if (i == spec.n) {
			print_error("docs/api.md lists %s %s, openapi.yaml does not\n", cell[0],
				    cell[1]);
			bad++;
		}
	}
	fclose(f);
	assert_true(rows > 0);
	if (bad > 0)
		fail_msg("%zu permission(s) disagree", bad);
}

/* The reader itself: the layout rules it relies on. */
static void test_reader_layout(void **state)
{
	(void)state;
	static const char yaml[] = "openapi: 3.0.3\n"
				   "info:\n"
				   "  title: x\n"
				   "paths:\n"
				   "  # a comment\n"
				   "  /a:\n"
				   "    parameters:\n"
				   "      - name: q\n"
				   "    get:\n"
				   "      x-moat-permission: none\n"
				   "      responses:\n"
				   "        \"200\":\n"
				   "          description: get:\n"
				   "    post:\r\n"
				   "      x-moat-permission: \"users:write\"\n"
				   "  \"/b/{id}\":\n"
				   "    delete:\n"
				   "components:\n"
				   "  /notapath:\n"
				   "    get:\n";
	char file[] = "/tmp/moat-test-openapi-XXXXXX";
	struct oplist ops;
	int fd = mkstemp(file);
	FILE *f;

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(yaml, 1, sizeof(yaml) - 1, f), sizeof(yaml) - 1);
	assert_int_equal(fclose(f), 0);
	read_spec(file, &ops);
	(void)remove(file);
	assert_int_equal(ops.n, 3);
	assert_string_equal(ops.v[0].method, "GET");
	assert_string_equal(ops.v[0].path, "/a");
	assert_string_equal(ops.v[0].perm, "none");
	assert_string_equal(ops.v[1].method, "POST");
	assert_string_equal(ops.v[1].path, "/a");
	assert_string_equal(ops.v[1].perm, "users:write");
	assert_string_equal(ops.v[2].method, "DELETE");
	assert_string_equal(ops.v[2].path, "/b/{id}");
	assert_string_equal(ops.v[2].perm, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reader_layout),
	    cmocka_unit_test(test_spec_is_readable),
	    cmocka_unit_test(test_routes_and_spec_agree),
	    cmocka_unit_test(test_permissions_match_api_md),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
