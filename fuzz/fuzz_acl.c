/*
 * Fuzz the policy engine (src/registry/acl.c). The input is lines separated
 * by '\n': a rule in its text form, then a topic or filter x, an optional
 * filter y and an optional topic t (y and t default to x).
 *
 * The rule is parsed; when it parses it must format back to a text that
 * parses to the same rule. ACLs are compiled for identity "dev1" in group
 * "g" and evaluated on x against independent restatements: a one-rule ACL
 * against moat_topic_matches / moat_topic_filter_covers on the substituted
 * filter, "allow everything" plus the rule against the deny semantics, the
 * device-default policy plus the rule for monotonicity, and quarantine.
 * The filter algebra is checked on (x, y) both ways: covers agrees with the
 * broker's helper, covers(a, a), covers implies intersects, intersects is
 * symmetric and holds exactly when a common topic can be built level by
 * level, and a topic t matched by both proves an intersection. Any broken
 * property aborts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "mqtt/topic.h"
#include "registry/acl.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

#define ID "dev1"
#define GROUP "g"

struct str {
	const char *s;
	size_t len;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_shared(const struct str *x)
{
	return x->len >= 6 && memcmp(x->s, "$share", 6) == 0;
}

/* ${device} -> ID, ${group} -> GROUP (or none: returns false). */
static bool substitute(const char *tmpl, const char *group, char *out, size_t cap, size_t *n)
{
	size_t i = 0, o = 0, len = strlen(tmpl);

	while (i < len) {
		const char *v = NULL;
		size_t vl = 0, skip = 1;

		if (strncmp(tmpl + i, "${device}", 9) == 0) {
			v = ID;
			skip = 9;
		} else if (strncmp(tmpl + i, "${group}", 8) == 0) {
			if (group == NULL)
				return false;
			v = group;
			skip = 8;
		} else {
			v = tmpl + i;
			vl = 1;
		}
		if (vl == 0)
			vl = strlen(v);
		if (o + vl >= cap)
			return false;
		memcpy(out + o, v, vl);
		o += vl;
		i += skip;
	}
	out[o] = '\0';
	*n = o;
	return true;
}

/* Levels of a valid filter. */
static size_t levels(const char *s, size_t len, struct str *lv)
{
	size_t pos = 0, k = 0;

	for (;;) {
		const char *slash = memchr(s + pos, '/', len - pos);
		size_t end = slash != NULL ? (size_t)(slash - s) : len;

		lv[k].s = s + pos;
		lv[k].len = end - pos;
		k++;
		if (slash == NULL)
			return k;
		pos = end + 1;
	}
}

static bool lv_is(const struct str *l, char c)
{
	return l->len == 1 && l->s[0] == c;
}

static bool put_level(char *out, size_t *o, size_t cap, const char *s, size_t len)
{
	if (*o + len + 1 > cap)
		return false;
	memcpy(out + *o, s, len);
	*o += len;
	return true;
}

/* Append level l of a filter with its wildcards made concrete ("x"). */
static bool put_concrete(char *out, size_t *o, size_t cap, const struct str *l, bool slash)
{
	if (slash && !put_level(out, o, cap, "/", 1))
		return false;
	if (lv_is(l, '+') || lv_is(l, '#'))
		return put_level(out, o, cap, "x", 1);
	return put_level(out, o, cap, l->s, l->len);
}

/*
 * A topic both valid filters match, built level by level: '+' against '+'
 * becomes "x", a literal wins over '+', '#' takes the other's rest (its
 * wildcards made concrete) or, if the other ended, the parent. Returns 0
 * when the construction fails (no common topic), SIZE_MAX when the result
 * would not fit, else its length.
 */
static size_t witness(const struct str *a, const struct str *b, char *out, size_t cap)
{
	struct str la[MOAT_MAX_TOPIC_LEVELS], lb[MOAT_MAX_TOPIC_LEVELS];
	size_t na = levels(a->s, a->len, la), nb = levels(b->s, b->len, lb), k, j, o = 0;

	for (k = 0;; k++) {
		bool ah = k < na && lv_is(&la[k], '#'), bh = k < nb && lv_is(&lb[k], '#');

		if (ah || bh) {
			const struct str *rest = ah ? lb : la;
			size_t nrest = ah ? nb : na;

			/* Both '#': one more level; else the other's rest (none:
			 * the parent). */
			if (ah && bh && !put_concrete(out, &o, cap, &la[k], k > 0))
				return SIZE_MAX;
			for (j = k; !(ah && bh) && j < nrest; j++) {
				if (!put_concrete(out, &o, cap, &rest[j], j > 0))
					return SIZE_MAX;
			}
			break;
		}
		if (k == na || k == nb) {
			if (k != na || k != nb)
				return 0;
			break;
		}
		if (!lv_is(&la[k], '+') && !lv_is(&lb[k], '+') &&
		    (la[k].len != lb[k].len || memcmp(la[k].s, lb[k].s, la[k].len) != 0))
			return 0;
		if (!put_concrete(out, &o, cap, lv_is(&la[k], '+') ? &lb[k] : &la[k], k > 0))
			return SIZE_MAX;
	}
	if (o > MOAT_MAX_TOPIC_LEN)
		return SIZE_MAX;
	return o;
}

static void check_algebra(const struct str *a, const struct str *b, const struct str *t)
{
	static char w[4 * MOAT_MAX_TOPIC_LEN];
	bool fa = moat_topic_filter_valid(a->s, a->len);
	bool fb = moat_topic_filter_valid(b->s, b->len);
	bool c = moat_filter_covers(a->s, a->len, b->s, b->len);
	bool i = moat_filter_intersects(a->s, a->len, b->s, b->len);

	CHECK(c == moat_topic_filter_covers(a->s, a->len, b->s, b->len));
	CHECK(i == moat_filter_intersects(b->s, b->len, a->s, a->len));
	CHECK(!c || (fa && fb));
	CHECK(!i || (fa && fb));
	/* Every valid filter matches some topic, so covering implies sharing. */
	CHECK(!c || i);
	if (fa) {
		CHECK(moat_filter_covers(a->s, a->len, a->s, a->len));
		CHECK(moat_filter_intersects(a->s, a->len, a->s, a->len));
	}
	if (fa && fb) {
		size_t n = witness(a, b, w, sizeof(w));

		if (n != SIZE_MAX) {
			bool ok = n > 0 && moat_topic_matches(a->s, a->len, w, n) &&
				  moat_topic_matches(b->s, b->len, w, n);

			CHECK(i == ok);
		}
	}
	/* On a topic, covering and intersecting are matching. */
	if (moat_topic_name_valid(b->s, b->len)) {
		bool m = moat_topic_matches(a->s, a->len, b->s, b->len);

		CHECK(c == m && i == m);
	}
	if (moat_topic_matches(a->s, a->len, t->s, t->len) &&
	    moat_topic_matches(b->s, b->len, t->s, t->len))
		CHECK(i);
	if (c && moat_topic_matches(b->s, b->len, t->s, t->len))
		CHECK(moat_topic_matches(a->s, a->len, t->s, t->len));
}

static struct moat_acl *compile(const struct moat_acl_source *s, size_t n, bool q)
{
	struct moat_acl *a = NULL;
	moat_err rc = moat_acl_compile(ID, s, n, q, &a);

	/* Only a substitution beyond the topic length may fail. */
	CHECK(rc == MOAT_OK || rc == MOAT_E_LIMIT);
	CHECK((rc == MOAT_OK) == (a != NULL));
	return a;
}

static void check_rule(const struct moat_rule *r, const struct str *x)
{
	static char f[MOAT_MAX_TOPIC_LEN * 4];
	struct moat_rule all = {.effect = MOAT_RULE_ALLOW, .actions = 3, .filter = "#"};
	struct moat_rule two[2];
	struct moat_acl_source s = {.rules = r, .n = 1, .group = GROUP};
	struct moat_acl_source both[2];
	struct moat_acl *one, *svc, *deny, *def, *plus, *q;
	const struct moat_rule *dr;
	size_t flen = 0, ndr;
	bool name = moat_topic_name_valid(x->s, x->len);
	bool filt = moat_topic_filter_valid(x->s, x->len);
	bool shared = is_shared(x);
	bool subst = substitute(r->filter, GROUP, f, sizeof(f), &flen);
	bool pub_bit = (r->actions & MOAT_RULE_PUBLISH) != 0;
	bool sub_bit = (r->actions & MOAT_RULE_SUBSCRIBE) != 0;
	bool m, fm, fi;

	CHECK(subst);
	m = moat_topic_matches(f, flen, x->s, x->len);
	fm = moat_topic_filter_covers(f, flen, x->s, x->len);
	fi = moat_filter_intersects(f, flen, x->s, x->len);

	/* One rule alone. */
	one = compile(&s, 1, false);
	if (one != NULL) {
		bool allow = r->effect == MOAT_RULE_ALLOW;

		CHECK(moat_acl_rule_count(one) == 1);
		CHECK(moat_acl_may_publish(one, x->s, x->len) == (allow && pub_bit && m));
		CHECK(moat_acl_may_receive(one, x->s, x->len) == (allow && sub_bit && m));
		if (!shared)
			CHECK(moat_acl_may_subscribe(one, x->s, x->len) ==
			      (allow && sub_bit && fm));
		/* A reference outlives an unref. */
		moat_acl_ref(one);
		moat_acl_unref(one);
		CHECK(moat_acl_may_publish(one, x->s, x->len) == (allow && pub_bit && m));
		moat_acl_unref(one);
	}

	/* Without a group, a ${group} rule is gone. */
	s.group = NULL;
	svc = compile(&s, 1, false);
	if (svc != NULL) {
		bool has_group = strstr(r->filter, "${group}") != NULL;

		CHECK(moat_acl_rule_count(svc) == (has_group ? 0u : 1u));
		if (has_group) {
			CHECK(!moat_acl_may_publish(svc, x->s, x->len));
			CHECK(!moat_acl_may_subscribe(svc, x->s, x->len));
			CHECK(!moat_acl_may_receive(svc, x->s, x->len));
		}
		moat_acl_unref(svc);
	}
	s.group = GROUP;

	/* Allow everything ("#": every non-'$' topic), then the rule. */
	two[0] = all;
	two[1] = *r;
	s.rules = two;
	s.n = 2;
	deny = compile(&s, 1, false);
	if (deny != NULL) {
		bool plain = name && x->s[0] != '$';
		bool den = r->effect == MOAT_RULE_DENY;
		bool pm = moat_topic_matches(f, flen, x->s, x->len);
		bool rule_pub = r->effect == MOAT_RULE_ALLOW && pub_bit && pm;
		bool rule_rcv = r->effect == MOAT_RULE_ALLOW && sub_bit && pm;

		CHECK(moat_acl_may_publish(deny, x->s, x->len) ==
		      (den ? plain && !(pub_bit && pm) : plain || rule_pub));
		CHECK(moat_acl_may_receive(deny, x->s, x->len) ==
		      (den ? plain && !(sub_bit && pm) : plain || rule_rcv));
		if (!shared && filt && den) {
			bool cov = moat_filter_covers("#", 1, x->s, x->len);

			CHECK(moat_acl_may_subscribe(deny, x->s, x->len) ==
			      (cov && !(sub_bit && fi)));
		}
		moat_acl_unref(deny);
	}

	/* The device default with and without the rule: a deny rule never
	 * grants, an allow rule never takes away. */
	dr = moat_acl_device_default(&ndr);
	both[0].rules = dr;
	both[0].n = ndr;
	both[0].group = NULL;
	both[1].rules = r;
	both[1].n = 1;
	both[1].group = GROUP;
	def = compile(both, 1, false);
	plus = compile(both, 2, false);
	CHECK(def != NULL);
	if (plus != NULL) {
		bool p0 = moat_acl_may_publish(def, x->s, x->len);
		bool p1 = moat_acl_may_publish(plus, x->s, x->len);
		bool s0 = moat_acl_may_subscribe(def, x->s, x->len);
		bool s1 = moat_acl_may_subscribe(plus, x->s, x->len);
		bool r0 = moat_acl_may_receive(def, x->s, x->len);
		bool r1 = moat_acl_may_receive(plus, x->s, x->len);

		if (r->effect == MOAT_RULE_DENY)
			CHECK((!p1 || p0) && (!s1 || s0) && (!r1 || r0));
		else
			CHECK((!p0 || p1) && (!s0 || s1) && (!r0 || r1));
		/* On a plain topic, subscribing is receiving. */
		if (name && !shared) {
			CHECK(s0 == r0);
			CHECK(s1 == r1);
		}
		moat_acl_unref(plus);
	}
	moat_acl_unref(def);

	/* Quarantine ignores the rule. */
	q = compile(both, 2, true);
	CHECK(q != NULL);
	CHECK(moat_acl_rule_count(q) == 1);
	CHECK(!moat_acl_may_subscribe(q, x->s, x->len));
	CHECK(!moat_acl_may_receive(q, x->s, x->len));
	CHECK(moat_acl_may_publish(q, x->s, x->len) ==
	      (name && x->len >= 12 && memcmp(x->s, "$moat/q/" ID, 12) == 0 &&
	       (x->len == 12 || x->s[12] == '/')));
	moat_acl_unref(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char text[MOAT_RULE_TEXT_MAX + 2], back[MOAT_RULE_TEXT_MAX + 1];
	struct str l[4];
	const char *s = (const char *)data;
	size_t n = 0, pos = 0, k;
	struct moat_rule r, r2;
	char why[128];

	while (n < 4) {
		const char *nl = pos < size ? memchr(s + pos, '\n', size - pos) : NULL;
		size_t end = nl != NULL ? (size_t)(nl - s) : size;

		l[n].s = s + pos;
		l[n].len = end - pos;
		n++;
		if (nl == NULL)
			break;
		pos = end + 1;
	}
	for (k = n; k < 4; k++)
		l[k] = k == 1 ? (struct str){s, 0} : l[1];

	check_algebra(&l[1], &l[2], &l[3]);
	check_algebra(&l[2], &l[1], &l[3]);

	if (l[0].len > MOAT_RULE_TEXT_MAX + 1)
		return 0;
	memcpy(text, l[0].s, l[0].len);
	text[l[0].len] = '\0';
	memset(&r, 0, sizeof(r));
	if (moat_rule_parse(text, &r, why, sizeof(why)) != MOAT_OK) {
		CHECK(why[0] != '\0');
		return 0;
	}
	CHECK(moat_rule_check(&r, NULL, 0) == MOAT_OK);
	k = moat_rule_format(&r, back, sizeof(back));
	CHECK(k > 0 && k <= MOAT_RULE_TEXT_MAX && k == strlen(back));
	/* The text form is canonical: the input was exactly it, unless it
	 * held a NUL before its end. */
	CHECK(strlen(text) != l[0].len || strcmp(back, text) == 0);
	memset(&r2, 0, sizeof(r2));
	CHECK(moat_rule_parse(back, &r2, NULL, 0) == MOAT_OK);
	CHECK(r2.effect == r.effect && r2.actions == r.actions && strcmp(r2.filter, r.filter) == 0);
	check_rule(&r, &l[1]);
	return 0;
}
