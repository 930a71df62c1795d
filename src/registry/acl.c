/*
 * The policy engine: rule validation and text form, filter algebra (match,
 * covers, intersects) over pre-split levels, and the compiled per-identity
 * ACL the broker evaluates on every PUBLISH, SUBSCRIBE and delivery.
 *
 * Compiling does all the work that can be done once per session: variables
 * are substituted, filters are split into levels and deny rules are ordered
 * before allow rules, all in one allocation. Evaluation then only splits the
 * topic (on the stack) and walks the rules; the first deny or allow rule
 * that matches decides, and since denies come first, deny wins.
 *
 * Every answer that grants access is false on doubt: invalid topics and
 * filters are refused, and an invalid rule fails the whole compile rather
 * than being skipped (a skipped deny rule would widen access).
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "core/limits.h"
#include "mqtt/topic.h"
#include "registry/acl.h"

#define VAR_DEVICE "${device}"
#define VAR_DEVICE_LEN (sizeof(VAR_DEVICE) - 1)
#define VAR_GROUP "${group}"
#define VAR_GROUP_LEN (sizeof(VAR_GROUP) - 1)
#define MOAT_LEVEL "$moat"
#define MOAT_LEVEL_LEN (sizeof(MOAT_LEVEL) - 1)

/* The quarantine namespace; the rule is compiled like any other. */
#define QUARANTINE_FILTER "$moat/q/" VAR_DEVICE "/#"

enum lv_kind { LV_LIT = 0, LV_PLUS, LV_HASH };

/* One level of a topic or filter: a view into its text. */
struct lv {
	const char *p;
	uint16_t len;
	uint8_t kind;
};

struct acl_rule {
	uint8_t effect;
	uint8_t actions;
	uint8_t nlev;
	const struct lv *lev;
};

struct moat_acl {
	atomic_uint refs;
	size_t n;
	/* rules[0..n): deny rules first, then allow rules; the level views
	 * and filter texts follow in the same allocation. */
	struct acl_rule *rules;
};

_Static_assert(MOAT_MAX_TOPIC_LEN <= UINT16_MAX, "level length fits u16");
_Static_assert(MOAT_MAX_TOPIC_LEVELS <= UINT8_MAX, "level count fits u8");

static const struct moat_rule device_default[] = {
    {.effect = MOAT_RULE_ALLOW, .actions = MOAT_RULE_PUBLISH, .filter = "d/" VAR_DEVICE "/#"},
    {.effect = MOAT_RULE_ALLOW, .actions = MOAT_RULE_SUBSCRIBE, .filter = "c/" VAR_DEVICE "/#"},
    {.effect = MOAT_RULE_ALLOW, .actions = MOAT_RULE_SUBSCRIBE, .filter = "d/" VAR_DEVICE "/#"},
};

static const struct moat_rule quarantine_rule = {
    .effect = MOAT_RULE_ALLOW, .actions = MOAT_RULE_PUBLISH, .filter = QUARANTINE_FILTER};

static __attribute__((format(printf, 3, 4))) void say(char *why, size_t whylen, const char *fmt,
						      ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* Levels: splitting and the three relations. */

/* Validate s as a topic name (filter == false) or filter and split it into
 * at most cap levels. */
static bool split(const char *s, size_t len, bool filter, struct lv *out, size_t cap, size_t *n)
{
	size_t pos = 0, k = 0;

	if (filter ? !moat_topic_filter_valid(s, len) : !moat_topic_name_valid(s, len))
		return false;
	for (;;) {
		const char *slash = memchr(s + pos, '/', len - pos);
		size_t end = slash != NULL ? (size_t)(slash - s) : len;

		if (NEVER(k >= cap))
			return false;
		out[k].p = s + pos;
		out[k].len = (uint16_t)(end - pos);
		out[k].kind = LV_LIT;
		if (end - pos == 1 && s[pos] == '+')
			out[k].kind = LV_PLUS;
		else if (end - pos == 1 && s[pos] == '#')
			out[k].kind = LV_HASH;
		k++;
		if (slash == NULL)
			break;
		pos = end + 1;
	}
	*n = k;
	return true;
}

static bool lv_wild(const struct lv *l)
{
	return l->kind != LV_LIT;
}

/* A literal first level starting with '$': no wildcard matches it (4.7.2). */
static bool lv_dollar(const struct lv *l)
{
	return l->kind == LV_LIT && l->len > 0 && l->p[0] == '$';
}

static bool lv_empty(const struct lv *l)
{
	return l->kind == LV_LIT && l->len == 0;
}

static bool lv_eq(const struct lv *a, const struct lv *b)
{
	return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/* Filter f matches topic t (both split, both valid). */
static bool lv_match(const struct lv *f, size_t nf, const struct lv *t, size_t nt)
{
	size_t k;

	if (lv_dollar(&t[0]) && lv_wild(&f[0]))
		return false;
	for (k = 0;; k++) {
		/* '#' takes the rest, including nothing: "a/#" matches "a". */
		if (k < nf && f[k].kind == LV_HASH)
			return true;
		if (k == nf || k == nt)
			return k == nf && k == nt;
		if (f[k].kind == LV_LIT && !lv_eq(&f[k], &t[k]))
			return false;
	}
}

/* Every topic inner matches is matched by outer. */
static bool lv_covers(const struct lv *o, size_t no, const struct lv *in, size_t ni)
{
	size_t k;

	if (lv_dollar(&in[0]) && lv_wild(&o[0]))
		return false;
	for (k = 0;; k++) {
		if (k < no && o[k].kind == LV_HASH)
			return true;
		if (k == no || k == ni)
			return k == no && k == ni;
		if (in[k].kind == LV_HASH) {
			/*
			 * Inner takes any depth from here, including its
			 * parent; outer only does with '#', or with "+/#" when
			 * inner's parent is no topic (inner "#", or "/#" whose
			 * parent "" is empty): then both take exactly one or
			 * more further levels.
			 */
			bool parent_void = k == 0 || (k == 1 && lv_empty(&in[0]));

			return parent_void && o[k].kind == LV_PLUS && no == k + 2 &&
			       o[k + 1].kind == LV_HASH;
		}
		if (o[k].kind == LV_PLUS)
			continue;
		if (in[k].kind == LV_PLUS || !lv_eq(&o[k], &in[k]))
			return false;
	}
}

/* Some valid topic name is matched by both. */
static bool lv_intersects(const struct lv *a, size_t na, const struct lv *b, size_t nb)
{
	size_t k;

	if ((lv_wild(&a[0]) && lv_dollar(&b[0])) || (lv_wild(&b[0]) && lv_dollar(&a[0])))
		return false;
	for (k = 0;; k++) {
		bool ah = k < na && a[k].kind == LV_HASH;
		bool bh = k < nb && b[k].kind == LV_HASH;

		if (ah || bh) {
			/*
			 * The other filter's remaining levels (wildcards made
			 * concrete) complete a common topic. When the other
			 * ended here the common topic is the shared prefix,
			 * the parent '#' also matches, which is no topic when
			 * it is the empty string ("/#" against "+").
			 */
			bool ended = (ah && k == nb) || (bh && k == na);

			return !(ended && k == 1 && (lv_empty(&a[0]) || lv_empty(&b[0])));
		}
		if (k == na || k == nb)
			return k == na && k == nb;
		if (a[k].kind == LV_LIT && b[k].kind == LV_LIT && !lv_eq(&a[k], &b[k]))
			return false;
	}
}

bool moat_filter_covers(const char *outer, size_t olen, const char *inner, size_t ilen)
{
	struct lv o[MOAT_MAX_TOPIC_LEVELS], in[MOAT_MAX_TOPIC_LEVELS];
	size_t no, ni;

	if (!split(outer, olen, true, o, MOAT_MAX_TOPIC_LEVELS, &no) ||
	    !split(inner, ilen, true, in, MOAT_MAX_TOPIC_LEVELS, &ni))
		return false;
	return lv_covers(o, no, in, ni);
}

bool moat_filter_intersects(const char *a, size_t alen, const char *b, size_t blen)
{
	struct lv la[MOAT_MAX_TOPIC_LEVELS], lb[MOAT_MAX_TOPIC_LEVELS];
	size_t na, nb;

	if (!split(a, alen, true, la, MOAT_MAX_TOPIC_LEVELS, &na) ||
	    !split(b, blen, true, lb, MOAT_MAX_TOPIC_LEVELS, &nb))
		return false;
	return lv_intersects(la, na, lb, nb);
}

/* Rules. */

/* Filter syntax of a template with its variables replaced (s, n). */
static moat_err check_syntax(const char *s, size_t n, char *why, size_t whylen)
{
	size_t i, levels = 1, lstart = 0;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '/') {
			if (++levels > MOAT_MAX_TOPIC_LEVELS) {
				say(why, whylen, "the filter has more than %u levels",
				    MOAT_MAX_TOPIC_LEVELS);
				return MOAT_E_INVAL;
			}
			lstart = i + 1;
			continue;
		}
		if (c != '+' && c != '#')
			continue;
		if (i != lstart || (i + 1 < n && s[i + 1] != '/')) {
			say(why, whylen, "'%c' must be a whole level of the filter", c);
			return MOAT_E_INVAL;
		}
		if (c == '#' && i + 1 != n) {
			say(why, whylen, "'#' must be the last level of the filter");
			return MOAT_E_INVAL;
		}
	}
	if (NEVER(!moat_topic_filter_valid(s, n))) {
		say(why, whylen, "the filter is not a valid topic filter");
		return MOAT_E_INVAL;
	}
	return MOAT_OK;
}

static bool starts(const char *s, size_t len, const char *prefix, size_t plen)
{
	return len >= plen && memcmp(s, prefix, plen) == 0;
}

moat_err moat_rule_check(const struct moat_rule *r, char *why, size_t whylen)
{
	char sample[MOAT_RULE_FILTER_MAX + 1];
	size_t len, i = 0, n = 0;

	say(why, whylen, "%s", "");
	if (r == NULL) {
		say(why, whylen, "there is no rule");
		return MOAT_E_INVAL;
	}
	if (r->effect != MOAT_RULE_ALLOW && r->effect != MOAT_RULE_DENY) {
		say(why, whylen, "the effect must be allow or deny");
		return MOAT_E_INVAL;
	}
	if (r->actions == 0 ||
	    (r->actions & ~(unsigned)(MOAT_RULE_PUBLISH | MOAT_RULE_SUBSCRIBE))) {
		say(why, whylen, "the action must be publish, subscribe or both");
		return MOAT_E_INVAL;
	}
	len = strnlen(r->filter, sizeof(r->filter));
	if (len > MOAT_RULE_FILTER_MAX) {
		say(why, whylen, "the filter is longer than %u bytes", MOAT_RULE_FILTER_MAX);
		return MOAT_E_LIMIT;
	}
	for (i = 0; i < len; i++) {
		/* Policies are stored one rule per line: a control character
		 * (a newline above all) could smuggle a second rule in. */
		if ((unsigned char)r->filter[i] < 0x20 || (unsigned char)r->filter[i] == 0x7f) {
			say(why, whylen, "the filter contains a control character");
			return MOAT_E_INVAL;
		}
	}
	i = 0;
	if (len == 0) {
		say(why, whylen, "the filter is empty");
		return MOAT_E_INVAL;
	}
	/* Replace each variable by the one-byte sample id "x"; the sample is
	 * never longer than the template. */
	while (i < len) {
		const char *p = r->filter + i;
		size_t rest = len - i;

		if (*p != '$') {
			sample[n++] = r->filter[i++];
		} else if (i == 0 && starts(p, rest, MOAT_LEVEL, MOAT_LEVEL_LEN) &&
			   (rest == MOAT_LEVEL_LEN || p[MOAT_LEVEL_LEN] == '/')) {
			memcpy(sample + n, MOAT_LEVEL, MOAT_LEVEL_LEN);
			n += MOAT_LEVEL_LEN;
			i += MOAT_LEVEL_LEN;
		} else if (starts(p, rest, VAR_DEVICE, VAR_DEVICE_LEN)) {
			sample[n++] = 'x';
			i += VAR_DEVICE_LEN;
		} else if (starts(p, rest, VAR_GROUP, VAR_GROUP_LEN)) {
			sample[n++] = 'x';
			i += VAR_GROUP_LEN;
		} else if (rest > 1 && p[1] == '{') {
			const char *close = memchr(p, '}', rest);
			size_t vl = close != NULL ? (size_t)(close - p) + 1 : rest;

			if (vl > 32)
				vl = 32;
			say(why, whylen,
			    "unknown variable \"%.*s\": only ${device} and ${group} exist", (int)vl,
			    p);
			return MOAT_E_INVAL;
		} else {
			say(why, whylen,
			    "'$' may only start ${device}, ${group} or a leading $moat level");
			return MOAT_E_INVAL;
		}
	}
	return check_syntax(sample, n, why, whylen);
}

static const char *effect_word(enum moat_rule_effect e)
{
	switch (e) {
	case MOAT_RULE_ALLOW:
		return "allow";
	case MOAT_RULE_DENY:
		return "deny";
	}
	return NULL;
}

static const char *action_word(unsigned actions)
{
	switch (actions) {
	case MOAT_RULE_PUBLISH:
		return "publish";
	case MOAT_RULE_SUBSCRIBE:
		return "subscribe";
	case MOAT_RULE_PUBLISH | MOAT_RULE_SUBSCRIBE:
		return "pubsub";
	default:
		return NULL;
	}
}

static bool word_is(const char *w, size_t wl, const char *s)
{
	return wl == strlen(s) && memcmp(w, s, wl) == 0;
}

moat_err moat_rule_parse(const char *text, struct moat_rule *out, char *why, size_t whylen)
{
	static const char usage[] = "a rule reads \"allow|deny publish|subscribe|pubsub <filter>\"";
	struct moat_rule r;
	const char *sp1, *sp2, *f;
	size_t tlen, wl, flen;
	moat_err rc;

	say(why, whylen, "%s", "");
	if (text == NULL || out == NULL) {
		say(why, whylen, "there is no rule");
		return MOAT_E_INVAL;
	}
	tlen = strnlen(text, MOAT_RULE_TEXT_MAX + 1);
	if (tlen > MOAT_RULE_TEXT_MAX) {
		say(why, whylen, "the rule is longer than %u bytes", MOAT_RULE_TEXT_MAX);
		return MOAT_E_LIMIT;
	}
	memset(&r, 0, sizeof(r));
	sp1 = memchr(text, ' ', tlen);
	sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', tlen - (size_t)(sp1 + 1 - text)) : NULL;
	if (sp2 == NULL) {
		say(why, whylen, "%s", usage);
		return MOAT_E_INVAL;
	}
	wl = (size_t)(sp1 - text);
	if (word_is(text, wl, "allow")) {
		r.effect = MOAT_RULE_ALLOW;
	} else if (word_is(text, wl, "deny")) {
		r.effect = MOAT_RULE_DENY;
	} else {
		say(why, whylen, "unknown effect \"%.*s\": use allow or deny",
		    (int)(wl > 16 ? 16 : wl), text);
		return MOAT_E_INVAL;
	}
	wl = (size_t)(sp2 - sp1 - 1);
	if (word_is(sp1 + 1, wl, "publish")) {
		r.actions = MOAT_RULE_PUBLISH;
	} else if (word_is(sp1 + 1, wl, "subscribe")) {
		r.actions = MOAT_RULE_SUBSCRIBE;
	} else if (word_is(sp1 + 1, wl, "pubsub")) {
		r.actions = MOAT_RULE_PUBLISH | MOAT_RULE_SUBSCRIBE;
	} else {
		say(why, whylen, "unknown action \"%.*s\": use publish, subscribe or pubsub",
		    (int)(wl > 16 ? 16 : wl), sp1 + 1);
		return MOAT_E_INVAL;
	}
	f = sp2 + 1;
	flen = tlen - (size_t)(f - text);
	if (flen > MOAT_RULE_FILTER_MAX) {
		say(why, whylen, "the filter is longer than %u bytes", MOAT_RULE_FILTER_MAX);
		return MOAT_E_LIMIT;
	}
	memcpy(r.filter, f, flen);
	r.filter[flen] = '\0';
	rc = moat_rule_check(&r, why, whylen);
	if (rc == MOAT_OK)
		*out = r;
	return rc;
}

size_t moat_rule_format(const struct moat_rule *r, char *out, size_t outlen)
{
	const char *eff, *act;
	size_t flen;
	int n;

	if (out == NULL)
		outlen = 0;
	if (outlen > 0)
		out[0] = '\0';
	if (r == NULL)
		return 0;
	eff = effect_word(r->effect);
	act = action_word(r->actions);
	flen = strnlen(r->filter, sizeof(r->filter));
	if (eff == NULL || act == NULL || flen > MOAT_RULE_FILTER_MAX)
		return 0;
	n = snprintf(out, outlen, "%s %s %.*s", eff, act, (int)flen, r->filter);
	if (n < 0) {
		if (outlen > 0)
			out[0] = '\0';
		return 0;
	}
	return (size_t)n;
}

const struct moat_rule *moat_acl_device_default(size_t *n)
{
	if (n != NULL)
		*n = MOAT_ARRAY_LEN(device_default);
	return device_default;
}

/* Compiling. */

/* An identity or group name substituted into a filter must stay one literal
 * level: no separator, no wildcard, and no '$' start that would move a rule
 * into a reserved topic space. */
static bool name_ok(const char *s)
{
	size_t len;

	if (s == NULL)
		return false;
	len = strnlen(s, MOAT_MAX_CLIENT_ID_LEN + 1);
	if (len == 0 || len > MOAT_MAX_CLIENT_ID_LEN || s[0] == '$')
		return false;
	return memchr(s, '/', len) == NULL && memchr(s, '+', len) == NULL &&
	       memchr(s, '#', len) == NULL;
}

/* Append src to out (capacity MOAT_MAX_TOPIC_LEN). */
static bool put(char *out, size_t *n, const char *src, size_t len)
{
	if (len > MOAT_MAX_TOPIC_LEN - *n)
		return false;
	memcpy(out + *n, src, len);
	*n += len;
	return true;
}

/*
 * Substitute the variables of a checked rule into out (room for
 * MOAT_MAX_TOPIC_LEN bytes and a NUL). *skip when the rule uses ${group}
 * and there is no group: it never matches.
 */
static moat_err substitute(const struct moat_rule *r, const char *id, size_t idlen,
			   const char *group, size_t glen, char *out, size_t *outlen, bool *skip)
{
	size_t len = strnlen(r->filter, sizeof(r->filter)), i = 0, n = 0;

	*skip = false;
	while (i < len) {
		const char *p = r->filter + i;
		const char *stop = memchr(p, '$', len - i);
		size_t lit = stop != NULL ? (size_t)(stop - p) : len - i;

		/* The '$' of a leading "$moat" level is copied literally. */
		if (lit == 0 && i == 0 && !starts(p, len - i, VAR_DEVICE, VAR_DEVICE_LEN) &&
		    !starts(p, len - i, VAR_GROUP, VAR_GROUP_LEN))
			lit = 1;
		if (lit > 0) {
			if (!put(out, &n, p, lit))
				return MOAT_E_LIMIT;
			i += lit;
		} else if (starts(p, len - i, VAR_DEVICE, VAR_DEVICE_LEN)) {
			if (!put(out, &n, id, idlen))
				return MOAT_E_LIMIT;
			i += VAR_DEVICE_LEN;
		} else if (ALWAYS(starts(p, len - i, VAR_GROUP, VAR_GROUP_LEN))) {
			if (glen == 0) {
				*skip = true;
				return MOAT_OK;
			}
			if (!put(out, &n, group, glen))
				return MOAT_E_LIMIT;
			i += VAR_GROUP_LEN;
		} else {
			return MOAT_E_INTERNAL;
		}
	}
	out[n] = '\0';
	*outlen = n;
	return MOAT_OK;
}

static size_t count_levels(const char *s, size_t len)
{
	size_t i, k = 1;

	for (i = 0; i < len; i++)
		k += s[i] == '/';
	return k;
}

moat_err moat_acl_compile(const char *identity, const struct moat_acl_source *src, size_t nsrc,
			  bool quarantined, struct moat_acl **out)
{
	const struct moat_acl_source qsrc = {.rules = &quarantine_rule, .n = 1, .group = NULL};
	char buf[MOAT_MAX_TOPIC_LEN + 1];
	struct moat_acl *a = NULL;
	struct lv *levels;
	char *text;
	size_t idlen, nrules = 0, nlev = 0, nchars = 0, used_lev = 0, used_chars = 0, k = 0;
	size_t i, j, len;
	int pass;
	bool skip;
	moat_err rc = MOAT_E_INVAL;

	if (out == NULL || !name_ok(identity))
		goto out;
	idlen = strlen(identity);
	if (quarantined) {
		src = &qsrc;
		nsrc = 1;
	}
	if (nsrc > 0 && src == NULL)
		goto out;
	rc = MOAT_E_LIMIT;
	if (nsrc > MOAT_ACL_MAX_SOURCES)
		goto out;
	/* Pass 1: check every rule and size the result. */
	for (i = 0; i < nsrc; i++) {
		const char *g = src[i].group != NULL ? src[i].group : "";

		rc = MOAT_E_LIMIT;
		if (src[i].n > MOAT_POLICY_MAX_RULES)
			goto out;
		rc = MOAT_E_INVAL;
		if ((src[i].n > 0 && src[i].rules == NULL) || (g[0] != '\0' && !name_ok(g)))
			goto out;
		for (j = 0; j < src[i].n; j++) {
			rc = moat_rule_check(&src[i].rules[j], NULL, 0);
			if (rc != MOAT_OK)
				goto out;
			rc = substitute(&src[i].rules[j], identity, idlen, g, strlen(g), buf, &len,
					&skip);
			if (rc != MOAT_OK)
				goto out;
			if (skip)
				continue;
			nrules++;
			nlev += count_levels(buf, len);
			nchars += len + 1;
		}
	}
	rc = MOAT_E_NOMEM;
	a = calloc(1, sizeof(*a) + nrules * sizeof(struct acl_rule) + nlev * sizeof(struct lv) +
			  nchars);
	if (a == NULL)
		goto out;
	a->rules = (struct acl_rule *)(a + 1);
	levels = (struct lv *)(a->rules + nrules);
	text = (char *)(levels + nlev);
	/* Pass 2: deny rules, then allow rules, so the first match decides. */
	for (pass = 0; pass < 2; pass++) {
		enum moat_rule_effect want = pass == 0 ? MOAT_RULE_DENY : MOAT_RULE_ALLOW;

		for (i = 0; i < nsrc; i++) {
			const char *g = src[i].group != NULL ? src[i].group : "";

			for (j = 0; j < src[i].n; j++) {
				const struct moat_rule *r = &src[i].rules[j];
				struct acl_rule *cr;
				size_t nl;

				if (r->effect != want)
					continue;
				rc = substitute(r, identity, idlen, g, strlen(g), buf, &len, &skip);
				if (rc != MOAT_OK)
					goto out;
				if (skip)
					continue;
				rc = MOAT_E_INTERNAL;
				if (NEVER(k >= nrules || len + 1 > nchars - used_chars))
					goto out;
				memcpy(text + used_chars, buf, len + 1);
				if (!ALWAYS(split(text + used_chars, len, true, levels + used_lev,
						  nlev - used_lev, &nl)))
					goto out;
				cr = &a->rules[k++];
				cr->effect = (uint8_t)r->effect;
				cr->actions = (uint8_t)r->actions;
				cr->nlev = (uint8_t)nl;
				cr->lev = levels + used_lev;
				used_lev += nl;
				used_chars += len + 1;
			}
		}
	}
	rc = MOAT_E_INTERNAL;
	if (NEVER(k != nrules))
		goto out;
	a->n = nrules;
	atomic_init(&a->refs, 1u);
	*out = a;
	a = NULL;
	rc = MOAT_OK;
out:
	free(a);
	return rc;
}

void moat_acl_ref(struct moat_acl *a)
{
	if (a != NULL)
		atomic_fetch_add_explicit(&a->refs, 1u, memory_order_relaxed);
}

void moat_acl_unref(struct moat_acl *a)
{
	unsigned old;

	if (a == NULL)
		return;
	/* acq_rel: the freeing thread sees every other holder's reads done. */
	old = atomic_fetch_sub_explicit(&a->refs, 1u, memory_order_acq_rel);
	if (NEVER(old == 0))
		return;
	if (old == 1)
		free(a);
}

size_t moat_acl_rule_count(const struct moat_acl *a)
{
	return a != NULL ? a->n : 0;
}

/* Evaluation. */

/* The first rule for `action` that matches the topic decides. */
static bool may_topic(const struct moat_acl *a, const char *topic, size_t len, unsigned action)
{
	struct lv t[MOAT_MAX_TOPIC_LEVELS];
	size_t nt, i;

	if (a == NULL || !split(topic, len, false, t, MOAT_MAX_TOPIC_LEVELS, &nt))
		return false;
	for (i = 0; i < a->n; i++) {
		const struct acl_rule *r = &a->rules[i];

		if ((r->actions & action) != 0 && lv_match(r->lev, r->nlev, t, nt))
			return r->effect == MOAT_RULE_ALLOW;
	}
	return false;
}

bool moat_acl_may_publish(const struct moat_acl *a, const char *topic, size_t len)
{
	return may_topic(a, topic, len, MOAT_RULE_PUBLISH);
}

bool moat_acl_may_receive(const struct moat_acl *a, const char *topic, size_t len)
{
	return may_topic(a, topic, len, MOAT_RULE_SUBSCRIBE);
}

bool moat_acl_may_subscribe(const struct moat_acl *a, const char *filter, size_t len)
{
	struct lv f[MOAT_MAX_TOPIC_LEVELS];
	const char *g, *inner;
	size_t glen, ilen, nf, i;
	bool malformed;

	if (a == NULL)
		return false;
	if (moat_topic_shared_parse(filter, len, &g, &glen, &inner, &ilen, &malformed)) {
		filter = inner;
		len = ilen;
	} else if (malformed) {
		return false;
	}
	if (!split(filter, len, true, f, MOAT_MAX_TOPIC_LEVELS, &nf))
		return false;
	/* Deny rules come first: any that could deliver a topic refuses. */
	for (i = 0; i < a->n; i++) {
		const struct acl_rule *r = &a->rules[i];

		if ((r->actions & MOAT_RULE_SUBSCRIBE) == 0)
			continue;
		if (r->effect == MOAT_RULE_DENY) {
			if (lv_intersects(r->lev, r->nlev, f, nf))
				return false;
		} else if (lv_covers(r->lev, r->nlev, f, nf)) {
			return true;
		}
	}
	return false;
}
