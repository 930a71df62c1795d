/* The access policy: what a device may publish and subscribe to under the
 * default policy, and that the open policy allows everything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/internal.h"

static struct moat_listener def_l, open_l;
static struct moat_conn conn;

/* A connection as the broker makes it: on a default-policy listener the
 * ACL is compiled from the built-in device-default policy (what a device
 * in the group "devices" gets). */
static struct moat_conn *device(const char *id, enum moat_policy_kind kind)
{
	struct moat_acl_source src;
	size_t n;

	moat_acl_unref(conn.acl);
	memset(&conn, 0, sizeof(conn));
	def_l.conf.policy = MOAT_POLICY_DEFAULT;
	open_l.conf.policy = MOAT_POLICY_OPEN;
	conn.l = kind == MOAT_POLICY_OPEN ? &open_l : &def_l;
	snprintf(conn.identity, sizeof(conn.identity), "%s", id);
	if (kind != MOAT_POLICY_OPEN && id[0] != '\0') { /* no identity: no ACL, like the broker */
		src.rules = moat_acl_device_default(&n);
		src.n = n;
		src.group = "devices";
		assert_int_equal(moat_acl_compile(id, &src, 1, false, &conn.acl), MOAT_OK);
	}
	return &conn;
}

static bool pub(struct moat_conn *c, const char *t)
{
	return moat_policy_may_publish(c, t, strlen(t));
}

static bool sub(struct moat_conn *c, const char *f)
{
	return moat_policy_may_subscribe(c, f, strlen(f));
}

static void test_default_publish(void **state)
{
	(void)state;
	struct moat_conn *c = device("dev1", MOAT_POLICY_DEFAULT);
	/* "d/dev1" itself: the rule d/${device}/# matches its parent level
	 * (MQTT 4.7.1.2), so the device's own top level is its own too. */
	static const char *const allowed[] = {"d/dev1/t", "d/dev1/a/b/c", "d/dev1/", "d/dev1"};
	static const char *const denied[] = {
	    "d/dev2/t",	 "d/dev10/t", "d/dev/t",   "c/dev1/t", "x/dev1/t", "$SYS/broker/x",
	    "d/dev1x/t", "D/dev1/t",  "d//dev1/t", "",	       "d/",
	};
	size_t i;

	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		assert_true(pub(c, allowed[i]));
	for (i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
		if (pub(c, denied[i]))
			fail_msg("published to '%s'", denied[i]);
	}
}

static void test_default_subscribe(void **state)
{
	(void)state;
	struct moat_conn *c = device("dev1", MOAT_POLICY_DEFAULT);
	static const char *const allowed[] = {
	    "d/dev1/#",		 "c/dev1/#",	      "c/dev1/+", "d/dev1/t", "c/dev1/cmd/+/x",
	    "$share/g/d/dev1/#", "$share/g/c/dev1/t", "d/dev1",	  "c/dev1",
	};
	static const char *const denied[] = {
	    "#",	  "+/dev1/#",	    "d/+/#",	 "d/#",
	    "c/+/cmd",	  "d/dev2/#",	    "c/dev10/#", "$SYS/#",
	    "$share/g/#", "$share/g/d/+/t", "$share/g",	 "$share//d/dev1/#",
	};
	size_t i;

	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		if (!sub(c, allowed[i]))
			fail_msg("denied '%s'", allowed[i]);
	}
	for (i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
		if (sub(c, denied[i]))
			fail_msg("allowed '%s'", denied[i]);
	}
}

static void test_no_identity_gets_nothing(void **state)
{
	(void)state;
	struct moat_conn *c = device("", MOAT_POLICY_DEFAULT);

	assert_false(pub(c, "d//t"));
	assert_false(pub(c, "d/x/t"));
	assert_false(sub(c, "d//#"));
	assert_false(sub(c, "c//#"));
}

static void test_open_allows_everything(void **state)
{
	(void)state;
	struct moat_conn *c = device("", MOAT_POLICY_OPEN);

	assert_true(pub(c, "any/topic"));
	assert_true(sub(c, "#"));
	assert_true(sub(c, "$SYS/#"));
	assert_true(sub(c, "$share/g/+/x"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_default_publish),
	    cmocka_unit_test(test_default_subscribe),
	    cmocka_unit_test(test_no_identity_gets_nothing),
	    cmocka_unit_test(test_open_allows_everything),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	moat_acl_unref(conn.acl);
	return rc;
}
