/*
 * The worker interest filter (mqtt/interest.h): it may say yes when no
 * subscription matches (a wasted hand-off), never no when one does (a lost
 * message). Checked against moat_topic_matches on hand-written edge cases
 * and on random filters and topics over a small alphabet of levels (so
 * matches are frequent), with subscriptions added and removed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "mqtt/interest.h"
#include "mqtt/topic.h"

static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static struct moat_interest *new_interest(void)
{
	struct moat_interest *in = malloc(sizeof(*in));

	assert_non_null(in);
	moat_interest_init(in);
	return in;
}

static bool may(struct moat_interest *in, const char *topic)
{
	return moat_interest_may_match(in, topic, strlen(topic));
}

static void add(struct moat_interest *in, const char *f)
{
	moat_interest_add(in, f, strlen(f));
}

static void del(struct moat_interest *in, const char *f)
{
	moat_interest_remove(in, f, strlen(f));
}

/* Every filter shape against topics it matches, then removed. */
static void test_interest_edges(void **state)
{
	static const struct {
		const char *filter, *topic;
	} cases[] = {
	    {"#", "a"},
	    {"#", "a/b/c/d/e"},
	    {"+", "a"},
	    {"+/x", "/x"},
	    {"/+", "/x"},
	    {"a/#", "a"},
	    {"a/#", "a/b/c/d"},
	    {"a/+", "a/"},
	    {"a/", "a/"},
	    {"a", "a"},
	    {"a/b", "a/b"},
	    {"a/b/c", "a/b/c"},
	    {"a/b/c/d", "a/b/c/d"},
	    {"a/b/c/d/+/f", "a/b/c/d/e/f"},
	    {"a/b/c/#", "a/b/c"},
	    {"a/b/+/#", "a/b/c"},
	    {"a/b/+/#", "a/b/c/d/e"},
	    {"d/+/t", "d/bench-000001/t"},
	    {"d/dev-1/#", "d/dev-1/x/y/z"},
	    {"//", "//"},
	    {"+/+/+/+", "a/b/c/d"},
	};
	struct moat_interest *in = new_interest();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(moat_topic_matches(cases[i].filter, strlen(cases[i].filter),
					       cases[i].topic, strlen(cases[i].topic)));
		add(in, cases[i].filter);
		if (!may(in, cases[i].topic))
			fail_msg("filter %s: topic %s missed", cases[i].filter, cases[i].topic);
		del(in, cases[i].filter);
	}
	free(in);
}

/* Device-specific subscriptions: another device's topics are not of
 * interest (up to a collision, which the slot count makes rare). */
static void test_interest_excludes(void **state)
{
	struct moat_interest *in = new_interest();
	char f[64], t[64];
	unsigned i, false_pos = 0;

	(void)state;
	assert_false(may(in, "d/x/t"));
	for (i = 0; i < 1000; i++) {
		snprintf(f, sizeof(f), "d/dev-%u/p2p", i);
		add(in, f);
	}
	for (i = 0; i < 1000; i++) {
		snprintf(t, sizeof(t), "d/dev-%u/p2p", i);
		assert_true(may(in, t));
		snprintf(t, sizeof(t), "d/dev-%u/p2p", 1000 + i);
		false_pos += may(in, t);
	}
	/* Two of 2^16 slots per key, 1000 keys: about 0.1 % expected. */
	assert_true(false_pos < 20);
	assert_false(may(in, "c/dev-1/p2p"));
	assert_false(may(in, "d"));
	for (i = 0; i < 1000; i++) {
		snprintf(f, sizeof(f), "d/dev-%u/p2p", i);
		del(in, f);
	}
	for (i = 0; i < 1000; i++) {
		snprintf(t, sizeof(t), "d/dev-%u/p2p", i);
		assert_false(may(in, t));
	}
	free(in);
}

static void rand_levels(char *out, size_t cap, bool filter)
{
	static const char *const lv[] = {"a", "b", "", "dev-1", "x"};
	unsigned n = 1 + (unsigned)(rng() % 6), i;
	size_t len = 0;

	out[0] = '\0';
	for (i = 0; i < n; i++) {
		const char *l = lv[rng() % 5];
		if (filter) {
			unsigned r = (unsigned)(rng() % 8);
			if (r == 0)
				l = "+";
			else if (r == 1 && i == n - 1)
				l = "#";
		}
		len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "/" : "", l);
	}
}

/* No false negative, ever: random filters subscribed (some twice, some
 * removed again), every random topic a live filter matches is of
 * interest. */
static void test_interest_differential(void **state)
{
	enum { N_FILTERS = 200, N_TOPICS = 400, ROUNDS = 20 };
	static char filters[N_FILTERS][64], topics[N_TOPICS][64];
	bool live[N_FILTERS];
	struct moat_interest *in = new_interest();
	unsigned r, i, j, checked = 0;

	(void)state;
	rng_state = 0x9e3779b97f4a7c15ull;
	for (r = 0; r < ROUNDS; r++) {
		memset(live, 0, sizeof(live));
		for (i = 0; i < N_FILTERS; i++) {
			rand_levels(filters[i], sizeof(filters[i]), true);
			if (rng() % 3 != 0) {
				add(in, filters[i]);
				live[i] = true;
			}
		}
		/* Remove a third again: counts must stay exact. */
		for (i = 0; i < N_FILTERS; i++)
			if (live[i] && rng() % 3 == 0) {
				del(in, filters[i]);
				live[i] = false;
			}
		for (j = 0; j < N_TOPICS; j++)
			rand_levels(topics[j], sizeof(topics[j]), false);
		for (i = 0; i < N_FILTERS; i++) {
			if (!live[i])
				continue;
			for (j = 0; j < N_TOPICS; j++) {
				if (!moat_topic_matches(filters[i], strlen(filters[i]), topics[j],
							strlen(topics[j])))
					continue;
				checked++;
				if (!may(in, topics[j]))
					fail_msg(
					    "round %u: filter %s matches %s but is not of interest",
					    r, filters[i], topics[j]);
			}
		}
		for (i = 0; i < N_FILTERS; i++)
			if (live[i])
				del(in, filters[i]);
		/* Everything removed: nothing of interest any more. */
		for (j = 0; j < N_TOPICS; j++)
			assert_false(may(in, topics[j]));
	}
	assert_true(checked > 1000);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_interest_edges),
	    cmocka_unit_test(test_interest_excludes),
	    cmocka_unit_test(test_interest_differential),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
