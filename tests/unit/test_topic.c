/*
 * Topic validation, shared-subscription parsing, matching and covering.
 * Covering is checked exhaustively against a brute-force definition over a
 * small universe of topics, because policy decisions depend on it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/limits.h"
#include "mqtt/topic.h"

static bool name_ok(const char *s)
{
	return moat_topic_name_valid(s, strlen(s));
}

static bool filter_ok(const char *s)
{
	return moat_topic_filter_valid(s, strlen(s));
}

static bool match(const char *f, const char *t)
{
	return moat_topic_matches(f, strlen(f), t, strlen(t));
}

static bool covers(const char *o, const char *i)
{
	return moat_topic_filter_covers(o, strlen(o), i, strlen(i));
}

/* A string of n levels "a/a/.../a" (2n - 1 bytes) in buf. */
static char *levels(char *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		buf[2 * i] = 'a';
		buf[2 * i + 1] = '/';
	}
	buf[2 * n - 1] = '\0';
	return buf;
}

static void test_name_valid(void **state)
{
	(void)state;
	static const char *good[] = {"a",
				     "/",
				     "//",
				     "a/b",
				     "/a",
				     "a/",
				     "a//b",
				     "$SYS/x",
				     "$share/g/a",
				     "sport/tennis/player1",
				     " ",
				     "a b/c",
				     "\xc3\xa9t\xc3\xa9",
				     "x$",
				     "$"};
	static const char *bad[] = {"", "+", "#", "a/+", "a/#", "a+", "#a", "a/b#", "sp+rt"};
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(name_ok(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(name_ok(bad[i]));
	/* Embedded NUL, NULL pointer. */
	assert_false(moat_topic_name_valid("a\0b", 3));
	assert_false(moat_topic_name_valid(NULL, 0));
	assert_false(moat_topic_name_valid(NULL, 3));
	/* Explicit length: bytes beyond len are not looked at. */
	assert_true(moat_topic_name_valid("ab+", 2));
}

static void test_filter_valid(void **state)
{
	(void)state;
	static const char *good[] = {
	    "a",   "+",	 "#",	"/",   "+/+",	 "/+",		 "+/",	    "a/+/b", "a/#",
	    "+/#", "/#", "//#", "a//", "$SYS/#", "$share/g/a/#", "+/+/+/#", "a/b/c"};
	static const char *bad[] = {"",	  "a#",	  "#a",	  "a/#/b", "#/", "##", "++",  "a+/b",
				    "+a", "a/b+", "a/#b", "#/#",   "+#", "#+", "/a+", "a/++"};
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(filter_ok(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(filter_ok(bad[i]));
	assert_false(moat_topic_filter_valid("a/\0", 3));
	assert_false(moat_topic_filter_valid(NULL, 1));
}

static void test_limits(void **state)
{
	(void)state;
	static char buf[MOAT_MAX_TOPIC_LEN + 2];
	static char lv[2 * (MOAT_MAX_TOPIC_LEVELS + 1)];

	memset(buf, 'x', sizeof(buf));
	assert_true(moat_topic_name_valid(buf, MOAT_MAX_TOPIC_LEN));
	assert_false(moat_topic_name_valid(buf, MOAT_MAX_TOPIC_LEN + 1));
	assert_true(moat_topic_filter_valid(buf, MOAT_MAX_TOPIC_LEN));
	assert_false(moat_topic_filter_valid(buf, MOAT_MAX_TOPIC_LEN + 1));
	buf[MOAT_MAX_TOPIC_LEN - 1] = '#';
	buf[MOAT_MAX_TOPIC_LEN - 2] = '/';
	assert_true(moat_topic_filter_valid(buf, MOAT_MAX_TOPIC_LEN));

	assert_true(name_ok(levels(lv, MOAT_MAX_TOPIC_LEVELS)));
	assert_false(name_ok(levels(lv, MOAT_MAX_TOPIC_LEVELS + 1)));
	assert_true(filter_ok(levels(lv, MOAT_MAX_TOPIC_LEVELS)));
	assert_false(filter_ok(levels(lv, MOAT_MAX_TOPIC_LEVELS + 1)));
	/* 32 slashes alone are 33 empty levels. */
	memset(buf, '/', MOAT_MAX_TOPIC_LEVELS);
	assert_false(moat_topic_name_valid(buf, MOAT_MAX_TOPIC_LEVELS));
	assert_true(moat_topic_name_valid(buf, MOAT_MAX_TOPIC_LEVELS - 1));
	/* Matching refuses what validation refuses. */
	levels(lv, MOAT_MAX_TOPIC_LEVELS + 1);
	assert_false(match("#", lv));
	assert_false(covers("#", lv));
}

static void test_shared_parse(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		bool shared, malformed;
		const char *group, *filter;
	} cases[] = {
	    {"$share/g/a/b", true, false, "g", "a/b"},
	    {"$share/grp/#", true, false, "grp", "#"},
	    {"$share/g/+", true, false, "g", "+"},
	    {"$share/g//", true, false, "g", "/"},
	    {"$share/g/$SYS/#", true, false, "g", "$SYS/#"},
	    {"$share/g/$share/h/x", true, false, "g", "$share/h/x"},
	    {"$share/a b/x", true, false, "a b", "x"},
	    {"$share/", false, true, NULL, NULL},
	    {"$share", false, true, NULL, NULL},
	    {"$share/g", false, true, NULL, NULL},
	    {"$share/g/", false, true, NULL, NULL},
	    {"$share//a", false, true, NULL, NULL},
	    {"$share/+/a", false, true, NULL, NULL},
	    {"$share/#/a", false, true, NULL, NULL},
	    {"$share/g+/a", false, true, NULL, NULL},
	    {"$share/g#/a", false, true, NULL, NULL},
	    {"$share/g/a#", false, true, NULL, NULL},
	    {"$share/g/#/a", false, true, NULL, NULL},
	    {"a/b", false, false, NULL, NULL},
	    {"$SYS/#", false, false, NULL, NULL},
	    {"$sharex/a", false, false, NULL, NULL},
	    {"$shar", false, false, NULL, NULL},
	    {"share/g/a", false, false, NULL, NULL},
	    {"#", false, false, NULL, NULL},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *g = NULL, *f = NULL;
		size_t gl = 99, fl = 99;
		bool mal = !cases[i].malformed;
		bool r = moat_topic_shared_parse(cases[i].in, strlen(cases[i].in), &g, &gl, &f, &fl,
						 &mal);

		if (r != cases[i].shared || mal != cases[i].malformed)
			fail_msg("shared_parse(\"%s\") = %d/%d", cases[i].in, r, mal);
		if (!r) {
			/* Out-parameters untouched on failure. */
			assert_null(g);
			assert_int_equal(gl, 99);
			continue;
		}
		assert_int_equal(gl, strlen(cases[i].group));
		assert_memory_equal(g, cases[i].group, gl);
		assert_int_equal(fl, strlen(cases[i].filter));
		assert_memory_equal(f, cases[i].filter, fl);
		/* Views into the input. */
		assert_ptr_equal(g, cases[i].in + 7);
	}
	{
		const char *g, *f;
		size_t gl, fl;
		bool mal;

		assert_false(moat_topic_shared_parse("$share/g\0/a", 11, &g, &gl, &f, &fl, &mal));
		assert_true(mal);
		/* Explicit length cuts the inner filter. */
		assert_false(moat_topic_shared_parse("$share/g/abc", 9, &g, &gl, &f, &fl, &mal));
		assert_true(mal);
		assert_true(moat_topic_shared_parse("$share/g/abc", 10, &g, &gl, &f, &fl, &mal));
		assert_int_equal(fl, 1);
	}
}

static void test_matches(void **state)
{
	(void)state;
	static const struct {
		const char *f, *t;
		bool m;
	} cases[] = {
	    {"a", "a", true},
	    {"a", "b", false},
	    {"a", "ab", false},
	    {"ab", "a", false},
	    {"a/b", "a/b", true},
	    {"a/b", "a", false},
	    {"a", "a/b", false},
	    {"#", "a", true},
	    {"#", "a/b/c", true},
	    {"#", "/", true},
	    {"#", "/a", true},
	    {"+", "a", true},
	    {"+", "a/b", false},
	    {"+", "/", false},
	    {"+/+", "/", true},
	    {"/+", "/a", true},
	    {"/+", "/", true},
	    {"+", "", false},
	    {"a/#", "a", true},
	    {"a/#", "a/b", true},
	    {"a/#", "a/b/c", true},
	    {"a/#", "a/", true},
	    {"a/#", "ab", false},
	    {"a/#", "b", false},
	    {"sport/tennis/player1/#", "sport/tennis/player1", true},
	    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	    {"sport/#", "sport", true},
	    {"sport/tennis/+", "sport/tennis/player1", true},
	    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
	    {"sport/+", "sport", false},
	    {"sport/+", "sport/", true},
	    {"+/+", "/finance", true},
	    {"/+", "/finance", true},
	    {"+", "/finance", false},
	    {"a//b", "a//b", true},
	    {"a/+/b", "a//b", true},
	    {"a//b", "a/b", false},
	    {"/a", "a", false},
	    {"a/", "a", false},
	    {"a/+", "a/", true},
	    {"+/+/#", "a", false},
	    {"+/+/#", "a/b", true},
	    {"+/#", "a", true},
	    {"$SYS/x", "$SYS/x", true},
	    {"#", "$SYS/x", false},
	    {"#", "$SYS", false},
	    {"+/x", "$SYS/x", false},
	    {"+", "$", false},
	    {"$SYS/#", "$SYS/x", true},
	    {"$SYS/#", "$SYS", true},
	    {"$SYS/+", "$SYS/x", true},
	    {"a/#", "a/$x", true},
	    {"+/$x", "a/$x", true},
	    {"x/+", "x/$", true},
	    {"A", "a", false},
	    /* Invalid inputs never match. */
	    {"a/#/b", "a/x/b", false},
	    {"a+", "a+", false},
	    {"a", "a/+", false},
	    {"#", "#", false},
	    {"+", "+", false},
	    {"", "", false},
	    {"#", "", false},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (match(cases[i].f, cases[i].t) != cases[i].m)
			fail_msg("matches(\"%s\", \"%s\") != %d", cases[i].f, cases[i].t,
				 cases[i].m);
	/* Lengths are honoured: no reading past them. */
	assert_true(moat_topic_matches("a/bXX", 3, "a/bYY", 3));
	assert_false(moat_topic_matches("a/b", 3, "a/bc", 4));
	assert_true(moat_topic_matches("a/#", 3, "a/b", 1));
}

static void test_covers_table(void **state)
{
	(void)state;
	static const struct {
		const char *o, *i;
		bool c;
	} cases[] = {
	    {"d/x/#", "d/x/+/t", true},
	    {"d/x/#", "d/x/#", true},
	    {"d/x/#", "d/x", true},
	    {"d/x/#", "d/x/a/b/c", true},
	    {"d/x/#", "d/+/t", false},
	    {"d/x/#", "#", false},
	    {"d/x/#", "d/#", false},
	    {"d/x/#", "d", false},
	    {"d/x/#", "d/xy", false},
	    {"d/x/#", "d/xy/#", false},
	    {"c/x/+", "c/x/a", true},
	    {"c/x/+", "c/x/+", true},
	    {"c/x/+", "c/x/#", false},
	    {"c/x/+", "c/x", false},
	    {"c/x/+", "c/x/a/b", false},
	    {"c/x/+", "c/+/a", false},
	    {"#", "#", true},
	    {"#", "+", true},
	    {"#", "a/b", true},
	    {"#", "+/#", true},
	    {"#", "/", true},
	    {"#", "$SYS/x", false},
	    {"#", "$SYS/#", false},
	    {"+/#", "$SYS/#", false},
	    {"+/#", "a", true},
	    {"+/#", "#", true},
	    {"+", "$x", false},
	    {"+", "+", true},
	    {"+", "#", false},
	    {"+", "a", true},
	    {"+", "a/b", false},
	    {"+", "", false},
	    {"$SYS/#", "$SYS/+/x", true},
	    {"$SYS/#", "$SYS", true},
	    {"$SYS/#", "+/x", false},
	    {"$SYS/#", "#", false},
	    {"+/x", "$SYS/x", false},
	    {"a/+/#", "a/b", true},
	    {"a/+/#", "a", false},
	    {"a/+/#", "a/#", false},
	    {"a/+", "a/", true},
	    {"a/b", "a/b", true},
	    {"a/b", "a/+", false},
	    {"a/b", "a/b/c", false},
	    {"a", "a/#", false},
	    {"a//b", "a/+/b", false},
	    {"a/+/b", "a//b", true},
	    {"x/$y", "x/$y", true},
	    {"x/+", "x/$y", true},
	    {"", "", false},
	    {"a/#/b", "a/x/b", false},
	    {"a", "a+", false},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (covers(cases[i].o, cases[i].i) != cases[i].c)
			fail_msg("covers(\"%s\", \"%s\") != %d", cases[i].o, cases[i].i,
				 cases[i].c);
}

/*
 * Exhaustive check of covers against its definition. Filters are all
 * sequences of 1-3 levels over {a, b, $s, "", +, #}; topics are all
 * sequences of 1-4 levels over {a, b, $s, "", z, $z}, with z and $z as
 * levels no filter names. Every witness that inner matches a topic outer
 * does not can be chosen in that universe (replace each wildcard by z or $z,
 * '#' by nothing or one or two levels), so covers must equal the universe
 * check exactly: true is never allowed to be wrong, and we also verify it is
 * not needlessly false.
 */
#define U_TOPICS (6 + 36 + 216 + 1296)
#define U_FILTERS (6 + 36 + 216)
#define U_LEN 16

static void build(char out[U_LEN], const char *const *alpha, size_t nalpha, size_t idx,
		  size_t depth)
{
	size_t d, n = 0;

	for (d = 0; d < depth; d++) {
		const char *l = alpha[idx % nalpha];

		idx /= nalpha;
		if (d > 0)
			out[n++] = '/';
		memcpy(out + n, l, strlen(l));
		n += strlen(l);
	}
	out[n] = '\0';
}

static size_t enumerate(char (*out)[U_LEN], const char *const *alpha, size_t nalpha,
			size_t maxdepth)
{
	size_t depth, count = 0, i, total;

	for (depth = 1, total = nalpha; depth <= maxdepth; depth++, total *= nalpha)
		for (i = 0; i < total; i++)
			build(out[count++], alpha, nalpha, i, depth);
	return count;
}

static void test_covers_exhaustive(void **state)
{
	(void)state;
	static const char *const falpha[] = {"a", "b", "$s", "", "+", "#"};
	static const char *const talpha[] = {"a", "b", "$s", "", "z", "$z"};
	static char filters[U_FILTERS][U_LEN];
	static char topics[U_TOPICS][U_LEN];
	static uint8_t bits[U_FILTERS][U_TOPICS];
	size_t nf, nt, o, i, t, valid = 0, covered = 0;

	nf = enumerate(filters, falpha, 6, 3);
	nt = enumerate(topics, talpha, 6, 4);
	assert_int_equal(nf, U_FILTERS);
	assert_int_equal(nt, U_TOPICS);
	for (o = 0; o < nf; o++)
		for (t = 0; t < nt; t++)
			bits[o][t] = match(filters[o], topics[t]);
	for (o = 0; o < nf; o++) {
		if (!filter_ok(filters[o]))
			continue;
		valid++;
		for (i = 0; i < nf; i++) {
			bool truth = filter_ok(filters[i]), got;

			for (t = 0; t < nt && truth; t++)
				if (bits[i][t] && !bits[o][t])
					truth = false;
			got = covers(filters[o], filters[i]);
			if (got != truth)
				fail_msg("covers(\"%s\", \"%s\") = %d, definition says %d",
					 filters[o], filters[i], got, truth);
			covered += got;
		}
	}
	/* The enumeration really exercised both answers. */
	assert_true(valid > 100);
	assert_true(covered > 1000);
	assert_true(covered < valid * valid / 2);
}

/* Matching agrees with a filter covering itself and topics covering
 * themselves; covers(outer, topic) is exactly matches(outer, topic). */
static void test_covers_vs_matches(void **state)
{
	(void)state;
	static const char *const falpha[] = {"a", "$s", "", "+", "#"};
	static const char *const talpha[] = {"a", "$s", "", "z"};
	static char filters[5 + 25 + 125][U_LEN];
	static char topics[4 + 16 + 64][U_LEN];
	size_t nf, nt, f, t;

	nf = enumerate(filters, falpha, 5, 3);
	nt = enumerate(topics, talpha, 4, 3);
	for (f = 0; f < nf; f++) {
		if (filter_ok(filters[f]))
			assert_true(covers(filters[f], filters[f]));
		for (t = 0; t < nt; t++)
			assert_int_equal(covers(filters[f], topics[t]),
					 match(filters[f], topics[t]));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_name_valid),
	    cmocka_unit_test(test_filter_valid),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_shared_parse),
	    cmocka_unit_test(test_matches),
	    cmocka_unit_test(test_covers_table),
	    cmocka_unit_test(test_covers_exhaustive),
	    cmocka_unit_test(test_covers_vs_matches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
