/* The policy engine (src/registry/acl.c): the device-default policy against
 * the broker's historical default, deny wins, no rule means deny, ${group}
 * per source, quarantine, the filter algebra, the rule text form, limits and
 * reference counting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/limits.h"
#include "mqtt/topic.h"
#include "registry/acl.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static bool pub(const struct moat_acl *a, const char *t)
{
	return moat_acl_may_publish(a, t, strlen(t));
}

static bool sub(const struct moat_acl *a, const char *f)
{
	return moat_acl_may_subscribe(a, f, strlen(f));
}

static bool recv_(const struct moat_acl *a, const char *t)
{
	return moat_acl_may_receive(a, t, strlen(t));
}

static struct moat_rule rule(const char *text)
{
	struct moat_rule r;
	char why[256];
	moat_err rc = moat_rule_parse(text, &r, why, sizeof(why));

	if (rc != MOAT_OK)
		fail_msg("rule '%s': %s (%s)", text, why, moat_strerror(rc));
	return r;
}

static struct moat_acl *device_default(const char *id)
{
	struct moat_acl_source s;
	struct moat_acl *a = NULL;

	s.rules = moat_acl_device_default(&s.n);
	s.group = NULL;
	assert_int_equal(moat_acl_compile(id, &s, 1, false, &a), MOAT_OK);
	assert_non_null(a);
	return a;
}

static struct moat_acl *compile_texts(const char *id, const char *const *texts, size_t n,
				      const char *group)
{
	struct moat_rule r[16];
	struct moat_acl_source s = {.rules = r, .n = n, .group = group};
	struct moat_acl *a = NULL;
	size_t i;

	assert_true(n <= N(r));
	for (i = 0; i < n; i++)
		r[i] = rule(texts[i]);
	assert_int_equal(moat_acl_compile(id, &s, 1, false, &a), MOAT_OK);
	return a;
}

/* The cases of tests/unit/test_policy.c, answered the same way. */
static void test_default_publish(void **state)
{
	(void)state;
	struct moat_acl *a = device_default("dev1");
	static const char *const allowed[] = {"d/dev1/t", "d/dev1/a/b/c", "d/dev1/", "d/dev1/x"};
	static const char *const denied[] = {
	    "d/dev2/t",	 "d/dev10/t",
	    "d/dev/t",	 "c/dev1/t",
	    "x/dev1/t",	 "$SYS/broker/x",
	    "d/dev1x/t", "D/dev1/t",
	    "d//dev1/t", "",
	    "d/",	 "d/dev2/x",
	    "d/+/x",	 "d/dev1/#",
	    "c/dev1",	 "$moat/q/dev1/x",
	};
	size_t i;

	for (i = 0; i < N(allowed); i++) {
		if (!pub(a, allowed[i]))
			fail_msg("denied publish '%s'", allowed[i]);
	}
	for (i = 0; i < N(denied); i++) {
		if (pub(a, denied[i]))
			fail_msg("published to '%s'", denied[i]);
	}
	/* The one difference from the prefix check: '#' matches its parent
	 * (MQTT 4.7.1.2), so "d/dev1" itself is now the device's too. */
	assert_true(pub(a, "d/dev1"));
	moat_acl_unref(a);
}

static void test_default_subscribe(void **state)
{
	(void)state;
	struct moat_acl *a = device_default("dev1");
	static const char *const allowed[] = {
	    "d/dev1/#",		 "c/dev1/#",	      "c/dev1/+",
	    "d/dev1/t",		 "c/dev1/cmd/+/x",    "$share/g/d/dev1/#",
	    "$share/g/c/dev1/t", "$share/g/d/dev1/x", "d/dev1/+/#",
	};
	static const char *const denied[] = {
	    "#",	  "+/dev1/#",
	    "d/+/#",	  "d/#",
	    "c/+/cmd",	  "d/dev2/#",
	    "c/dev10/#",  "$SYS/#",
	    "$share/g/#", "$share/g/d/+/t",
	    "$share/g",	  "$share//d/dev1/#",
	    "d/+/x",	  "+/#",
	    "+/+/#",	  "d/dev1/#/x",
	    "",		  "c/dev1+/x",
	    "d/dev10/#",
	};
	size_t i;

	for (i = 0; i < N(allowed); i++) {
		if (!sub(a, allowed[i]))
			fail_msg("denied subscribe '%s'", allowed[i]);
	}
	for (i = 0; i < N(denied); i++) {
		if (sub(a, denied[i]))
			fail_msg("allowed subscribe '%s'", denied[i]);
	}
	/* The parent levels, as for publish. */
	assert_true(sub(a, "d/dev1"));
	assert_true(sub(a, "c/dev1"));
	moat_acl_unref(a);
}

static void test_default_receive(void **state)
{
	(void)state;
	struct moat_acl *a = device_default("dev1");

	assert_true(recv_(a, "c/dev1/cmd"));
	assert_true(recv_(a, "d/dev1/t"));
	assert_false(recv_(a, "c/dev2/cmd"));
	assert_false(recv_(a, "$SYS/broker/uptime"));
	assert_false(recv_(a, "x/y"));
	assert_false(recv_(a, "c/+/x"));
	assert_int_equal(moat_acl_rule_count(a), 3);
	moat_acl_unref(a);
}

static void test_no_identity_gets_nothing(void **state)
{
	(void)state;
	struct moat_acl_source s;
	struct moat_acl *a = NULL;
	static const char *const bad[] = {"", "a/b", "+", "#", "$x", "a+b"};
	size_t i;

	s.rules = moat_acl_device_default(&s.n);
	s.group = NULL;
	assert_int_equal(moat_acl_compile(NULL, &s, 1, false, &a), MOAT_E_INVAL);
	for (i = 0; i < N(bad); i++)
		assert_int_equal(moat_acl_compile(bad[i], &s, 1, false, &a), MOAT_E_INVAL);
	assert_null(a);
	assert_int_equal(moat_acl_compile("dev1", &s, 1, false, NULL), MOAT_E_INVAL);
	/* NULL ACL answers no. */
	assert_false(pub(NULL, "d/dev1/x"));
	assert_false(sub(NULL, "d/dev1/x"));
	assert_false(recv_(NULL, "d/dev1/x"));
	assert_int_equal(moat_acl_rule_count(NULL), 0);
	moat_acl_unref(NULL);
}

static void test_deny_wins(void **state)
{
	(void)state;
	static const char *const r[] = {
	    "allow pubsub d/${device}/#",
	    "deny publish d/${device}/secret/#",
	    "deny subscribe d/${device}/private",
	    "allow publish d/${device}/secret/ok",
	};
	struct moat_acl *a = compile_texts("dev1", r, N(r), NULL);

	assert_true(pub(a, "d/dev1/x"));
	assert_false(pub(a, "d/dev1/secret"));
	assert_false(pub(a, "d/dev1/secret/ok"));
	assert_false(pub(a, "d/dev1/secret/a/b"));
	assert_true(pub(a, "d/dev1/private"));
	/* The subscribe deny intersects every filter that could carry it. */
	assert_true(sub(a, "d/dev1/x"));
	assert_true(sub(a, "d/dev1/secret/#"));
	assert_false(sub(a, "d/dev1/#"));
	assert_false(sub(a, "d/dev1/+"));
	assert_false(sub(a, "d/dev1/private"));
	assert_false(sub(a, "$share/g/d/dev1/+"));
	assert_true(sub(a, "d/dev1/+/x"));
	assert_true(recv_(a, "d/dev1/x"));
	assert_false(recv_(a, "d/dev1/private"));
	assert_int_equal(moat_acl_rule_count(a), 4);
	moat_acl_unref(a);
}

static void test_no_rule_denies(void **state)
{
	(void)state;
	static const char *const r[] = {"allow publish t/${device}"};
	struct moat_acl *a = NULL;

	assert_int_equal(moat_acl_compile("dev1", NULL, 0, false, &a), MOAT_OK);
	assert_int_equal(moat_acl_rule_count(a), 0);
	assert_false(pub(a, "d/dev1/x"));
	assert_false(sub(a, "d/dev1/x"));
	assert_false(recv_(a, "d/dev1/x"));
	moat_acl_unref(a);

	/* A publish rule grants nothing else. */
	a = compile_texts("dev1", r, N(r), NULL);
	assert_true(pub(a, "t/dev1"));
	assert_false(pub(a, "t/dev1/x"));
	assert_false(sub(a, "t/dev1"));
	assert_false(recv_(a, "t/dev1"));
	moat_acl_unref(a);
}

static void test_group_substitution(void **state)
{
	(void)state;
	struct moat_rule r1[] = {rule("allow pubsub g/${group}/${device}/#"),
				 rule("allow subscribe g/${group}/all")};
	struct moat_rule r2[] = {rule("allow pubsub g/${group}/${device}/#"),
				 rule("deny publish g/${group}/${device}/ro")};
	struct moat_acl_source s[] = {
	    {.rules = r1, .n = N(r1), .group = "north"},
	    {.rules = r2, .n = N(r2), .group = "south"},
	};
	struct moat_acl *a = NULL;

	assert_int_equal(moat_acl_compile("dev1", s, N(s), false, &a), MOAT_OK);
	assert_int_equal(moat_acl_rule_count(a), 4);
	assert_true(pub(a, "g/north/dev1/x"));
	assert_true(pub(a, "g/south/dev1/x"));
	assert_false(pub(a, "g/east/dev1/x"));
	assert_false(pub(a, "g/north/dev2/x"));
	assert_true(sub(a, "g/north/all"));
	assert_false(sub(a, "g/south/all"));
	/* Each source's deny applies to its own group only. */
	assert_false(pub(a, "g/south/dev1/ro"));
	assert_true(pub(a, "g/north/dev1/ro"));
	assert_false(sub(a, "g/+/all"));
	moat_acl_unref(a);

	/* A group name must be one plain level. */
	s[0].group = "no/rth";
	assert_int_equal(moat_acl_compile("dev1", s, N(s), false, &a), MOAT_E_INVAL);
	s[0].group = "+";
	assert_int_equal(moat_acl_compile("dev1", s, N(s), false, &a), MOAT_E_INVAL);
	s[0].group = "$SYS";
	assert_int_equal(moat_acl_compile("dev1", s, N(s), false, &a), MOAT_E_INVAL);
}

static void test_group_rule_from_service_never_matches(void **state)
{
	(void)state;
	struct moat_rule r[] = {
	    rule("allow pubsub s/${group}/#"),
	    rule("allow pubsub s/${device}/#"),
	    rule("deny publish s/${device}/${group}"),
	    rule("allow pubsub ${group}/#"),
	};
	struct moat_acl_source s = {.rules = r, .n = N(r), .group = NULL};
	struct moat_acl *a = NULL;
	const char *groups[] = {NULL, ""};
	size_t i;

	for (i = 0; i < N(groups); i++) {
		s.group = groups[i];
		assert_int_equal(moat_acl_compile("svc1", &s, 1, false, &a), MOAT_OK);
		assert_int_equal(moat_acl_rule_count(a), 1);
		assert_false(pub(a, "s/x"));
		assert_false(pub(a, "s//x"));
		assert_false(pub(a, "s/${group}/x"));
		assert_false(sub(a, "s/+/#"));
		assert_true(pub(a, "s/svc1/x"));
		/* The ${group} deny is gone too: it matches nothing. */
		assert_true(pub(a, "s/svc1/"));
		assert_true(sub(a, "s/svc1/#"));
		assert_false(pub(a, "x/y"));
		moat_acl_unref(a);
		a = NULL;
	}
}

static void test_quarantine(void **state)
{
	(void)state;
	struct moat_rule r[] = {rule("allow pubsub #")};
	struct moat_acl_source s = {.rules = r, .n = N(r), .group = "g"};
	struct moat_acl *a = NULL;

	assert_int_equal(moat_acl_compile("dev1", &s, 1, true, &a), MOAT_OK);
	assert_int_equal(moat_acl_rule_count(a), 1);
	assert_true(pub(a, "$moat/q/dev1/x"));
	assert_true(pub(a, "$moat/q/dev1/a/b"));
	assert_false(pub(a, "$moat/q/dev2/x"));
	assert_false(pub(a, "$moat/q/x"));
	assert_false(pub(a, "d/dev1/x"));
	assert_false(pub(a, "x"));
	assert_false(sub(a, "$moat/q/dev1/#"));
	assert_false(sub(a, "c/dev1/#"));
	assert_false(sub(a, "#"));
	assert_false(recv_(a, "c/dev1/cmd"));
	assert_false(recv_(a, "$moat/q/dev1/x"));
	moat_acl_unref(a);

	/* The sources are ignored entirely, even over the limits. */
	assert_int_equal(moat_acl_compile("dev1", NULL, MOAT_ACL_MAX_SOURCES + 1, true, &a),
			 MOAT_OK);
	assert_true(pub(a, "$moat/q/dev1/x"));
	moat_acl_unref(a);
}

struct pair {
	const char *a, *b;
	bool want;
};

static const struct pair covers_cases[] = {
    {"#", "a", true},
    {"#", "a/b/c", true},
    {"#", "#", true},
    {"#", "+", true},
    {"#", "+/#", true},
    {"#", "$SYS/x", false},
    {"#", "$SYS/#", false},
    {"+/#", "$SYS/x", false},
    {"+", "$SYS", false},
    {"$SYS/#", "$SYS/x", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/+", "$SYS/x", true},
    {"a/#", "a", true},
    {"a/#", "a/#", true},
    {"a/#", "a/+", true},
    {"a/#", "a/b/#", true},
    {"a/b/#", "a/#", false},
    {"a/+", "a/#", false},
    {"a/+", "a", false},
    {"a/+", "a/b", true},
    {"a/+", "a/+", true},
    {"a/+", "a/b/c", false},
    {"a/b", "a/+", false},
    {"+", "a", true},
    {"+", "+", true},
    {"+", "#", false},
    {"+/#", "#", true},
    {"+/#", "/#", true},
    {"+/+/#", "#", false},
    {"+/+/#", "/#", true},
    {"a/+/#", "a/#", false},
    {"+/b", "a/b", true},
    {"+/b", "+/c", false},
    {"a//b", "a/+/b", false},
    {"a/+/b", "a//b", true},
    {"$moat/q/+/#", "$moat/q/dev1/x", true},
    {"+/q/#", "$moat/q/x", false},
    {"a", "a/#", false},
    {"a", "a", true},
    {"a", "b", false},
    {"a", "A", false},
    {"", "a", false},
    {"a", "", false},
    {"a/#/b", "a", false},
    {"a+", "a", false},
    {"#", "a/#/b", false},
};

static const struct pair intersects_cases[] = {
    {"#", "a", true},
    {"#", "#", true},
    {"+", "#", true},
    {"#", "$SYS/x", false},
    {"+/#", "$SYS", false},
    {"$SYS/#", "#", false},
    {"$SYS/#", "$SYS/+", true},
    {"$SYS", "$SYS/#", true},
    {"$SYS/+", "$SYS/x", true},
    {"a/#", "a", true},
    {"a", "a/#", true},
    {"a/+", "a", false},
    {"a/+", "a/#", true},
    {"a/+", "+/b", true},
    {"a/+", "b/+", false},
    {"+", "a/b", false},
    {"+", "+/+", false},
    {"+/#", "+", true},
    {"/#", "+", false},
    {"/#", "/", true},
    {"/#", "+/+", true},
    {"/#", "+/#", true},
    {"a//#", "a/+", true},
    {"a/+/c", "a/b/+", true},
    {"a/+/c", "a/b/d", false},
    {"d/dev1/#", "d/+/x", true},
    {"d/dev1/#", "d/dev2/#", false},
    {"$moat/#", "$moat/q/+", true},
    {"+/q/#", "$moat/q/x", false},
    {"a/b/c", "a/b/c", true},
    {"a/b", "a/b/c", false},
    {"a/b/+", "a/b", false},
    {"a/b/#", "a/b", true},
    {"a", "", false},
    {"a/#/b", "a/#", false},
};

static void test_covers_table(void **state)
{
	(void)state;
	size_t i;

	for (i = 0; i < N(covers_cases); i++) {
		const struct pair *p = &covers_cases[i];
		bool got = moat_filter_covers(p->a, strlen(p->a), p->b, strlen(p->b));

		if (got != p->want)
			fail_msg("covers('%s', '%s') = %d", p->a, p->b, got);
		/* Same answer as the broker's own helper. */
		assert_int_equal(got,
				 moat_topic_filter_covers(p->a, strlen(p->a), p->b, strlen(p->b)));
		/* Covering implies sharing a topic. */
		if (got)
			assert_true(moat_filter_intersects(p->a, strlen(p->a), p->b, strlen(p->b)));
	}
}

static void test_intersects_table(void **state)
{
	(void)state;
	size_t i;

	for (i = 0; i < N(intersects_cases); i++) {
		const struct pair *p = &intersects_cases[i];
		bool ab = moat_filter_intersects(p->a, strlen(p->a), p->b, strlen(p->b));
		bool ba = moat_filter_intersects(p->b, strlen(p->b), p->a, strlen(p->a));

		if (ab != p->want || ba != p->want)
			fail_msg("intersects('%s', '%s') = %d / %d", p->a, p->b, ab, ba);
	}
}

static void test_rule_roundtrip(void **state)
{
	(void)state;
	static const char *const texts[] = {
	    "allow publish d/${device}/#",	 "deny subscribe d/+/secret",
	    "allow pubsub c/${device}/#",	 "deny pubsub #",
	    "allow publish $moat/q/${device}/#", "allow subscribe g/${group}/${device}",
	    "allow publish a b/with spaces /",	 "allow subscribe $moat",
	    "deny publish x-${device}-y/+",
	};
	char buf[MOAT_RULE_TEXT_MAX + 1], small[8];
	struct moat_rule r, r2;
	size_t i, n;

	for (i = 0; i < N(texts); i++) {
		r = rule(texts[i]);
		n = moat_rule_format(&r, buf, sizeof(buf));
		assert_int_equal(n, strlen(texts[i]));
		assert_string_equal(buf, texts[i]);
		r2 = rule(buf);
		assert_int_equal(r2.effect, r.effect);
		assert_int_equal(r2.actions, r.actions);
		assert_string_equal(r2.filter, r.filter);
		assert_int_equal(moat_rule_check(&r, NULL, 0), MOAT_OK);
	}
	r = rule("allow pubsub c/${device}/#");
	assert_int_equal(r.effect, MOAT_RULE_ALLOW);
	assert_int_equal(r.actions, MOAT_RULE_PUBLISH | MOAT_RULE_SUBSCRIBE);
	assert_string_equal(r.filter, "c/${device}/#");
	r = rule("deny subscribe d/+/secret");
	assert_int_equal(r.effect, MOAT_RULE_DENY);
	assert_int_equal(r.actions, MOAT_RULE_SUBSCRIBE);
	/* Truncation like snprintf; the full length is still returned. */
	n = moat_rule_format(&r, small, sizeof(small));
	assert_int_equal(n, strlen("deny subscribe d/+/secret"));
	assert_string_equal(small, "deny su");
	assert_int_equal(moat_rule_format(&r, NULL, 0), n);
	/* Invalid rules format to nothing. */
	r.actions = 0;
	assert_int_equal(moat_rule_format(&r, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	r.actions = MOAT_RULE_PUBLISH;
	r.effect = (enum moat_rule_effect)7;
	assert_int_equal(moat_rule_format(&r, buf, sizeof(buf)), 0);
	assert_int_equal(moat_rule_format(NULL, buf, sizeof(buf)), 0);
	/* The device-default policy formats to the documented rules. */
	{
		const struct moat_rule *d = moat_acl_device_default(&n);
		static const char *const want[] = {
		    "allow publish d/${device}/#",
		    "allow subscribe c/${device}/#",
		    "allow subscribe d/${device}/#",
		};

		assert_int_equal(n, N(want));
		for (i = 0; i < n; i++) {
			moat_rule_format(&d[i], buf, sizeof(buf));
			assert_string_equal(buf, want[i]);
		}
	}
}

static void test_rule_rejections(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		moat_err rc;
		const char *why; /* a word the reason must contain */
	} bad[] = {
	    {"allow publish d/${foo}/#", MOAT_E_INVAL, "${foo}"},
	    {"allow publish d/${Device}/#", MOAT_E_INVAL, "unknown variable"},
	    {"allow publish d/${device", MOAT_E_INVAL, "unknown variable"},
	    {"allow publish d/$device/#", MOAT_E_INVAL, "'$'"},
	    {"allow publish $SYS/#", MOAT_E_INVAL, "'$'"},
	    {"allow publish $moatx/#", MOAT_E_INVAL, "'$'"},
	    {"allow publish a/$moat/#", MOAT_E_INVAL, "'$'"},
	    {"allow publish d/#/x", MOAT_E_INVAL, "last"},
	    {"allow publish d/x#", MOAT_E_INVAL, "whole level"},
	    {"allow publish d/a+b/x", MOAT_E_INVAL, "whole level"},
	    {"allow publish d/${device}+/x", MOAT_E_INVAL, "whole level"},
	    {"allow publish +${group}", MOAT_E_INVAL, "whole level"},
	    {"allow publish ", MOAT_E_INVAL, "empty"},
	    {"allow publish", MOAT_E_INVAL, "allow|deny"},
	    {"allow", MOAT_E_INVAL, "allow|deny"},
	    {"", MOAT_E_INVAL, "allow|deny"},
	    {"permit publish a", MOAT_E_INVAL, "effect"},
	    {"Allow publish a", MOAT_E_INVAL, "effect"},
	    {"allow pub a", MOAT_E_INVAL, "action"},
	    {"allow  publish a", MOAT_E_INVAL, "action"},
	    {"deny read a", MOAT_E_INVAL, "action"},
	    {"allow publish a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6",
	     MOAT_E_INVAL, "levels"},
	};
	char text[MOAT_RULE_TEXT_MAX + 64], why[256];
	struct moat_rule r, keep;
	size_t i;

	memset(&keep, 0x5a, sizeof(keep));
	for (i = 0; i < N(bad); i++) {
		r = keep;
		moat_err rc = moat_rule_parse(bad[i].text, &r, why, sizeof(why));

		if (rc != bad[i].rc)
			fail_msg("'%s': %s", bad[i].text, moat_strerror(rc));
		if (strstr(why, bad[i].why) == NULL)
			fail_msg("'%s': reason '%s' lacks '%s'", bad[i].text, why, bad[i].why);
		/* Nothing written on failure. */
		assert_memory_equal(&r, &keep, sizeof(r));
	}
	/* Length: a 256-byte filter is fine, 257 is not. */
	memcpy(text, "allow publish ", 14);
	memset(text + 14, 'a', MOAT_RULE_FILTER_MAX);
	text[14 + MOAT_RULE_FILTER_MAX] = '\0';
	assert_int_equal(moat_rule_parse(text, &r, why, sizeof(why)), MOAT_OK);
	memcpy(text, "deny publish ", 13);
	memset(text + 13, 'a', MOAT_RULE_FILTER_MAX + 1);
	text[13 + MOAT_RULE_FILTER_MAX + 1] = '\0';
	assert_int_equal(moat_rule_parse(text, &r, why, sizeof(why)), MOAT_E_LIMIT);
	assert_non_null(strstr(why, "longer"));
	memset(text, 'a', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	assert_int_equal(moat_rule_parse(text, &r, why, sizeof(why)), MOAT_E_LIMIT);
	assert_int_equal(moat_rule_parse(NULL, &r, why, sizeof(why)), MOAT_E_INVAL);
	assert_int_equal(moat_rule_parse("allow publish a", NULL, why, sizeof(why)), MOAT_E_INVAL);
	/* why may be absent or tiny. */
	assert_int_equal(moat_rule_parse("allow publish ${x}", &r, NULL, 0), MOAT_E_INVAL);
	assert_int_equal(moat_rule_parse("allow publish ${x}", &r, why, 1), MOAT_E_INVAL);
	assert_string_equal(why, "");

	/* moat_rule_check on structs the API might hand over. */
	r = rule("allow publish a");
	r.actions = 0;
	assert_int_equal(moat_rule_check(&r, why, sizeof(why)), MOAT_E_INVAL);
	r.actions = 4;
	assert_int_equal(moat_rule_check(&r, why, sizeof(why)), MOAT_E_INVAL);
	r.actions = MOAT_RULE_PUBLISH;
	r.effect = (enum moat_rule_effect)2;
	assert_int_equal(moat_rule_check(&r, why, sizeof(why)), MOAT_E_INVAL);
	r.effect = MOAT_RULE_DENY;
	memset(r.filter, 'a', sizeof(r.filter)); /* unterminated */
	assert_int_equal(moat_rule_check(&r, why, sizeof(why)), MOAT_E_LIMIT);
	assert_int_equal(moat_rule_check(NULL, why, sizeof(why)), MOAT_E_INVAL);
}

static void test_limits(void **state)
{
	(void)state;
	static struct moat_rule many[MOAT_POLICY_MAX_RULES + 1];
	static struct moat_acl_source srcs[MOAT_ACL_MAX_SOURCES + 1];
	struct moat_acl_source s = {.rules = many, .n = MOAT_POLICY_MAX_RULES, .group = "g"};
	struct moat_rule bad, lng;
	struct moat_acl *a = NULL;
	char id[MOAT_MAX_CLIENT_ID_LEN + 2];
	size_t i, n;

	for (i = 0; i < N(many); i++)
		many[i] = rule(i % 2 ? "deny publish x/${group}/+" : "allow pubsub x/${device}/#");
	assert_int_equal(moat_acl_compile("dev1", &s, 1, false, &a), MOAT_OK);
	assert_int_equal(moat_acl_rule_count(a), MOAT_POLICY_MAX_RULES);
	assert_true(pub(a, "x/dev1/y"));
	moat_acl_unref(a);
	a = NULL;
	s.n++;
	assert_int_equal(moat_acl_compile("dev1", &s, 1, false, &a), MOAT_E_LIMIT);
	assert_null(a);

	for (i = 0; i < N(srcs); i++) {
		srcs[i].rules = many;
		srcs[i].n = 2;
		srcs[i].group = "g";
	}
	assert_int_equal(moat_acl_compile("dev1", srcs, MOAT_ACL_MAX_SOURCES, false, &a), MOAT_OK);
	assert_int_equal(moat_acl_rule_count(a), 2 * MOAT_ACL_MAX_SOURCES);
	moat_acl_unref(a);
	a = NULL;
	assert_int_equal(moat_acl_compile("dev1", srcs, MOAT_ACL_MAX_SOURCES + 1, false, &a),
			 MOAT_E_LIMIT);
	assert_int_equal(moat_acl_compile("dev1", NULL, 1, false, &a), MOAT_E_INVAL);

	/* The longest identity is fine; one more byte is not. */
	memset(id, 'i', sizeof(id));
	id[MOAT_MAX_CLIENT_ID_LEN] = '\0';
	s.n = 2;
	assert_int_equal(moat_acl_compile(id, &s, 1, false, &a), MOAT_OK);
	moat_acl_unref(a);
	a = NULL;
	id[MOAT_MAX_CLIENT_ID_LEN] = 'i';
	id[MOAT_MAX_CLIENT_ID_LEN + 1] = '\0';
	assert_int_equal(moat_acl_compile(id, &s, 1, false, &a), MOAT_E_INVAL);

	/* Substitution beyond MOAT_MAX_TOPIC_LEN: nine ids of 128 bytes and
	 * eight slashes make 1160. */
	id[MOAT_MAX_CLIENT_ID_LEN] = '\0';
	memset(&lng, 0, sizeof(lng));
	lng.effect = MOAT_RULE_ALLOW;
	lng.actions = MOAT_RULE_PUBLISH;
	n = 0;
	for (i = 0; i < 9; i++)
		n += (size_t)snprintf(lng.filter + n, sizeof(lng.filter) - n, "%s${device}",
				      i ? "/" : "");
	assert_int_equal(moat_rule_check(&lng, NULL, 0), MOAT_OK);
	s.rules = &lng;
	s.n = 1;
	assert_int_equal(moat_acl_compile(id, &s, 1, false, &a), MOAT_E_LIMIT);
	/* The same template with a short id is fine. */
	assert_int_equal(moat_acl_compile("dev1", &s, 1, false, &a), MOAT_OK);
	assert_true(pub(a, "dev1/dev1/dev1/dev1/dev1/dev1/dev1/dev1/dev1"));
	moat_acl_unref(a);
	a = NULL;

	/* An invalid rule fails the whole compile. */
	bad = rule("deny publish a");
	bad.filter[0] = '\0';
	many[3] = bad;
	s.rules = many;
	s.n = 8;
	assert_int_equal(moat_acl_compile("dev1", &s, 1, false, &a), MOAT_E_INVAL);
	s.rules = NULL;
	assert_int_equal(moat_acl_compile("dev1", &s, 1, false, &a), MOAT_E_INVAL);
	assert_null(a);
}

static void test_refcount(void **state)
{
	(void)state;
	struct moat_acl *a = device_default("dev1");

	moat_acl_ref(a);
	moat_acl_unref(a);
	/* Still alive after the first unref. */
	assert_true(pub(a, "d/dev1/x"));
	moat_acl_unref(a);
	moat_acl_ref(NULL);
}

static void test_topic_validation(void **state)
{
	(void)state;
	struct moat_acl *a = device_default("dev1");
	char big[MOAT_MAX_TOPIC_LEN + 2];

	/* Wildcards and NULs are no topic names. */
	assert_false(pub(a, "d/dev1/+"));
	assert_false(pub(a, "d/dev1/#"));
	assert_false(moat_acl_may_publish(a, "d/dev1/\0x", 9));
	assert_false(moat_acl_may_receive(a, "c/dev1/\0x", 9));
	assert_false(moat_acl_may_subscribe(a, "c/dev1/\0x", 9));
	/* Lengths are taken as given, not from a NUL. */
	assert_true(moat_acl_may_publish(a, "d/dev1/xyz", 8));
	assert_false(moat_acl_may_publish(a, "d/dev1/xyz", 5));
	memset(big, 'a', sizeof(big));
	memcpy(big, "d/dev1/", 7);
	assert_true(moat_acl_may_publish(a, big, MOAT_MAX_TOPIC_LEN));
	assert_false(moat_acl_may_publish(a, big, MOAT_MAX_TOPIC_LEN + 1));
	moat_acl_unref(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_default_publish),
	    cmocka_unit_test(test_default_subscribe),
	    cmocka_unit_test(test_default_receive),
	    cmocka_unit_test(test_no_identity_gets_nothing),
	    cmocka_unit_test(test_deny_wins),
	    cmocka_unit_test(test_no_rule_denies),
	    cmocka_unit_test(test_group_substitution),
	    cmocka_unit_test(test_group_rule_from_service_never_matches),
	    cmocka_unit_test(test_quarantine),
	    cmocka_unit_test(test_covers_table),
	    cmocka_unit_test(test_intersects_table),
	    cmocka_unit_test(test_rule_roundtrip),
	    cmocka_unit_test(test_rule_rejections),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_refcount),
	    cmocka_unit_test(test_topic_validation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
