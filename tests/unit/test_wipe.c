/*
 * Secrets that pass through the management API are wiped after use
 * (docs/security.md, "What is wiped"): the HTTP request body once its
 * request is handled, and every block jansson frees once moat_api_new has
 * installed the wiping allocator (parsed bodies with passwords and codes,
 * answers with tokens and recovery codes, their serialised text).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/internal.h"
#include "http/http.h"

#define SECRET "Correct-Horse-Battery-Staple-42"

static size_t limit_cb(void *arg, int method, const char *path, size_t path_len)
{
	(void)arg;
	(void)method;
	(void)path;
	(void)path_len;
	return 4096;
}

static bool has_secret(const uint8_t *p, size_t n)
{
	size_t i, k = strlen(SECRET);

	for (i = 0; i + k <= n; i++) {
		if (memcmp(p + i, SECRET, k) == 0)
			return true;
	}
	return false;
}

/* The body buffer is kept for the next request on the connection; the
 * password in it is gone once the request is done. */
static void test_request_body_wiped(void **state)
{
	(void)state;
	static const char req[] = "POST /api/v1/login HTTP/1.1\r\nHost: x\r\n"
				  "Content-Type: application/json\r\nContent-Length: 66\r\n\r\n"
				  "{\"username\":\"alice\",\"password\":\"" SECRET "\"}\n";
	struct moat_http_parser *hp = malloc(sizeof(*hp));
	size_t used = 0, len;

	assert_non_null(hp);
	moat_http_parser_init(hp, limit_cb, NULL);
	assert_int_equal(moat_http_parser_feed(hp, (const uint8_t *)req, sizeof(req) - 1, &used),
			 MOAT_OK);
	assert_int_equal(hp->state, MOAT_HTTP_P_DONE);
	assert_non_null(hp->body);
	len = hp->body_len;
	assert_true(has_secret(hp->body, len));
	moat_http_parser_next(hp);
	/* Still allocated (a small buffer is kept), and zero. */
	assert_non_null(hp->body);
	assert_false(has_secret(hp->body, len));
	for (size_t i = 0; i < len; i++)
		assert_int_equal(hp->body[i], 0);
	moat_http_parser_free(hp);
	free(hp);
}

/* jansson's free wipes: a block freed through it and handed out again by
 * malloc (glibc's cache returns the same block of the same size at once)
 * no longer holds the secret. Under a sanitizer freed blocks are held back
 * and a different one comes out; that run then checks only that the
 * allocator is installed. */
static void test_json_free_wipes(void **state)
{
	(void)state;
	json_malloc_t m = NULL;
	json_free_t f = NULL;
	json_t *o;
	char *a, *b;

	api_json_wipe_init();
	json_get_alloc_funcs(&m, &f);
	assert_non_null(m);
	assert_non_null(f);
	assert_true(f != free);

	a = m(256);
	assert_non_null(a);
	memset(a, 0, 256);
	memcpy(a + 64, SECRET, strlen(SECRET));
	f(a);
	b = malloc(256);
	assert_non_null(b);
	if (b == a)
		assert_false(has_secret((const uint8_t *)b, 256));
	free(b);

	/* And a real object with a password in it still works as before. */
	o = json_pack("{s:s}", "password", SECRET);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "password")), SECRET);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_body_wiped),
	    cmocka_unit_test(test_json_free_wipes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
