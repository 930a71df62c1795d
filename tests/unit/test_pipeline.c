/*
 * The publish pipeline's stage table (src/mqtt/pipeline.c): guards run in
 * the order registered and the first refusal wins with its own verdict;
 * taps see every accepted message; the table is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/pipeline.h"

struct probe {
	int calls;
	int order; /* value of *clock when called */
	bool allow;
	uint8_t reason;
	bool disconnect;
	int *clock;
};

static bool guard(void *arg, const struct moat_pub_view *pv, struct moat_pub_verdict *v)
{
	struct probe *p = arg;

	assert_non_null(pv);
	assert_null(pv->msg); /* guards run before the message exists */
	p->calls++;
	p->order = ++*p->clock;
	if (p->allow)
		return true;
	v->reason = p->reason;
	v->disconnect = p->disconnect;
	v->why = "probe";
	return false;
}

static void tap(void *arg, const struct moat_pub_view *pv)
{
	struct probe *p = arg;

	assert_int_equal(pv->topic_len, strlen(pv->topic));
	p->calls++;
	p->order = ++*p->clock;
}

static struct moat_pub_view sample(void)
{
	struct moat_pub_view pv;

	memset(&pv, 0, sizeof(pv));
	pv.identity = "dev-1";
	pv.client_id = "dev-1";
	pv.addr = "127.0.0.1";
	pv.topic = "d/dev-1/temp";
	pv.topic_len = strlen(pv.topic);
	pv.qos = 1;
	return pv;
}

static void test_empty_pipeline_allows(void **state)
{
	struct moat_pipeline pl;
	struct moat_pub_view pv = sample();
	struct moat_pub_verdict v;

	(void)state;
	memset(&pl, 0, sizeof(pl));
	assert_true(moat_pipeline_guard(&pl, &pv, &v));
	moat_pipeline_tap(&pl, &pv); /* nothing to call */
}

static void test_guards_in_order_first_refusal_wins(void **state)
{
	struct moat_pipeline pl;
	struct moat_pub_view pv = sample();
	struct moat_pub_verdict v;
	int clock = 0;
	struct probe a = {0, 0, true, 0, false, &clock};
	struct probe b = {0, 0, false, 0x96, true, &clock};
	struct probe c = {0, 0, false, 0x97, false, &clock};

	(void)state;
	memset(&pl, 0, sizeof(pl));
	assert_int_equal(moat_pipeline_add_guard(&pl, "a", guard, &a), MOAT_OK);
	assert_int_equal(moat_pipeline_add_guard(&pl, "b", guard, &b), MOAT_OK);
	assert_int_equal(moat_pipeline_add_guard(&pl, "c", guard, &c), MOAT_OK);
	assert_false(moat_pipeline_guard(&pl, &pv, &v));
	assert_int_equal(a.order, 1);
	assert_int_equal(b.order, 2);
	assert_int_equal(c.calls, 0); /* never asked after a refusal */
	assert_int_equal(v.reason, 0x96);
	assert_true(v.disconnect);
	assert_string_equal(v.why, "probe");
	/* b now allows: c's verdict is the answer, not b's leftovers */
	b.allow = true;
	assert_false(moat_pipeline_guard(&pl, &pv, &v));
	assert_int_equal(v.reason, 0x97);
	assert_false(v.disconnect);
	c.allow = true;
	assert_true(moat_pipeline_guard(&pl, &pv, &v));
	assert_int_equal(a.calls, 3);
}

static void test_taps_see_every_message(void **state)
{
	struct moat_pipeline pl;
	struct moat_pub_view pv = sample();
	int clock = 0;
	struct probe t1 = {0, 0, true, 0, false, &clock};
	struct probe t2 = {0, 0, true, 0, false, &clock};

	(void)state;
	memset(&pl, 0, sizeof(pl));
	assert_int_equal(moat_pipeline_add_tap(&pl, "t1", tap, &t1), MOAT_OK);
	assert_int_equal(moat_pipeline_add_tap(&pl, "t2", tap, &t2), MOAT_OK);
	moat_pipeline_tap(&pl, &pv);
	moat_pipeline_tap(&pl, &pv);
	assert_int_equal(t1.calls, 2);
	assert_int_equal(t2.calls, 2);
	assert_int_equal(t2.order, 4);
}

static void test_table_is_bounded_and_checked(void **state)
{
	struct moat_pipeline pl;
	int clock = 0;
	struct probe p = {0, 0, true, 0, false, &clock};
	size_t i;

	(void)state;
	memset(&pl, 0, sizeof(pl));
	for (i = 0; i < MOAT_PIPELINE_MAX_STAGES; i++) {
		assert_int_equal(moat_pipeline_add_guard(&pl, "g", guard, &p), MOAT_OK);
		assert_int_equal(moat_pipeline_add_tap(&pl, "t", tap, &p), MOAT_OK);
	}
	assert_int_equal(moat_pipeline_add_guard(&pl, "g", guard, &p), MOAT_E_LIMIT);
	assert_int_equal(moat_pipeline_add_tap(&pl, "t", tap, &p), MOAT_E_LIMIT);
	assert_int_equal(moat_pipeline_add_guard(NULL, "g", guard, &p), MOAT_E_INVAL);
	assert_int_equal(moat_pipeline_add_guard(&pl, NULL, guard, &p), MOAT_E_INVAL);
	assert_int_equal(moat_pipeline_add_tap(&pl, "t", NULL, &p), MOAT_E_INVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_pipeline_allows),
	    cmocka_unit_test(test_guards_in_order_first_refusal_wins),
	    cmocka_unit_test(test_taps_see_every_message),
	    cmocka_unit_test(test_table_is_bounded_and_checked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
