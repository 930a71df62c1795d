/*
 * Topic names and filters (MQTT 5 sections 4.7 and 4.8.2): validation,
 * "$share/{group}/{filter}" parsing, single filter/topic matching and the
 * filter-covers-filter check that subscription policies rely on.
 *
 * Everything here is a pure function over (pointer, length) byte strings; no
 * input is trusted to be NUL-terminated or valid. Matching and covering
 * validate their inputs first and answer false for anything invalid, because
 * their callers use the answer to grant access.
 */
#include <string.h>

#include "core/limits.h"
#include "mqtt/topic.h"

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN (sizeof(SHARE_PREFIX) - 1)

/* One pass over a topic name (filter == false) or filter (filter == true). */
static bool topic_check(const char *s, size_t len, bool filter)
{
	size_t i, levels = 1, lstart = 0;

	if (s == NULL || len == 0 || len > MOAT_MAX_TOPIC_LEN)
		return false;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (c == '\0')
			return false;
		if (c == '/') {
			if (++levels > MOAT_MAX_TOPIC_LEVELS)
				return false;
			lstart = i + 1;
			continue;
		}
		if (c != '+' && c != '#')
			continue;
		if (!filter)
			return false;
		/* A wildcard is a whole level; '#' is also the last one. */
		if (i != lstart || (i + 1 < len && s[i + 1] != '/'))
			return false;
		if (c == '#' && i + 1 != len)
			return false;
	}
	return true;
}

bool moat_topic_name_valid(const char *t, size_t len)
{
	return topic_check(t, len, false);
}

bool moat_topic_filter_valid(const char *f, size_t len)
{
	return topic_check(f, len, true);
}

bool moat_topic_shared_parse(const char *f, size_t len, const char **group, size_t *glen,
			     const char **filter, size_t *flen, bool *malformed)
{
	const char *g, *slash;
	size_t rest, gl;

	*malformed = false;
	if (f == NULL || len < SHARE_PREFIX_LEN - 1 ||
	    memcmp(f, SHARE_PREFIX, SHARE_PREFIX_LEN - 1) != 0)
		return false;
	/* "$share" as a whole first level is reserved for shared subscriptions
	 * (4.8.2): "$share" alone is a malformed one, "$shared/x" is not one. */
	if (len > SHARE_PREFIX_LEN - 1 && f[SHARE_PREFIX_LEN - 1] != '/')
		return false;
	*malformed = true;
	if (len > MOAT_MAX_TOPIC_LEN || len <= SHARE_PREFIX_LEN)
		return false;
	g = f + SHARE_PREFIX_LEN;
	rest = len - SHARE_PREFIX_LEN;
	slash = memchr(g, '/', rest);
	if (slash == NULL)
		return false;
	gl = (size_t)(slash - g);
	if (gl == 0 || memchr(g, '+', gl) != NULL || memchr(g, '#', gl) != NULL ||
	    memchr(g, '\0', gl) != NULL)
		return false;
	/* The whole string is bounded by the limits; the inner filter must be a
	 * valid filter on its own. */
	if (!moat_topic_filter_valid(slash + 1, rest - gl - 1) || !moat_topic_filter_valid(f, len))
		return false;
	*group = g;
	*glen = gl;
	*filter = slash + 1;
	*flen = rest - gl - 1;
	*malformed = false;
	return true;
}

/* End (exclusive) of the level starting at pos. */
static size_t level_end(const char *s, size_t len, size_t pos)
{
	const char *p = pos < len ? memchr(s + pos, '/', len - pos) : NULL;

	return p != NULL ? (size_t)(p - s) : len;
}

static bool level_is(const char *s, size_t start, size_t end, char c)
{
	return end - start == 1 && s[start] == c;
}

bool moat_topic_matches(const char *f, size_t flen, const char *t, size_t tlen)
{
	size_t fp = 0, tp = 0;

	if (!moat_topic_filter_valid(f, flen) || !moat_topic_name_valid(t, tlen))
		return false;
	/* 4.7.2: wildcards at the first level never match "$" topics. */
	if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false;
	for (;;) {
		size_t fe = level_end(f, flen, fp);
		size_t te = level_end(t, tlen, tp);

		if (level_is(f, fp, fe, '#'))
			return true;
		if (!level_is(f, fp, fe, '+') &&
		    (fe - fp != te - tp || memcmp(f + fp, t + tp, fe - fp) != 0))
			return false;
		if (te == tlen) {
			/* Topic exhausted: only a trailing "/#" still matches
			 * (4.7.1.2: "sport/#" matches "sport"). */
			return fe == flen || (flen - fe == 2 && f[fe + 1] == '#');
		}
		if (fe == flen)
			return false;
		fp = fe + 1;
		tp = te + 1;
	}
}

bool moat_topic_filter_covers(const char *outer, size_t olen, const char *inner, size_t ilen)
{
	size_t op = 0, ip = 0;
	bool first = true;

	if (!moat_topic_filter_valid(outer, olen) || !moat_topic_filter_valid(inner, ilen))
		return false;
	/*
	 * Walk both filters level by level. At each step every topic `inner`
	 * matches agrees with `outer` on the levels already walked; the step
	 * fails as soon as inner can produce a level outer cannot accept.
	 */
	for (;;) {
		bool odone = op > olen, idone = ip > ilen;
		size_t oe = odone ? op : level_end(outer, olen, op);
		size_t ie = idone ? ip : level_end(inner, ilen, ip);
		bool ohash = !odone && level_is(outer, op, oe, '#');
		bool oplus = !odone && level_is(outer, op, oe, '+');
		bool ihash = !idone && level_is(inner, ip, ie, '#');
		bool iplus = !idone && level_is(inner, ip, ie, '+');

		/* A literal first level starting with '$' can only be matched
		 * by the same literal, never by an outer wildcard. */
		if (first && !idone && !ihash && !iplus && ie > ip && inner[ip] == '$' &&
		    (ohash || oplus))
			return false;
		if (ohash)
			return true; /* also covers inner ending here ("a/#" ⊇ "a") */
		if (odone || idone)
			return odone && idone;
		if (ihash) {
			/* Inner takes any depth, and outer only does with '#'
			 * here. The one exception: "+/#" takes everything "#"
			 * does when inner's '#' has no parent topic ("#", or
			 * "/#" whose parent "" is not a topic), which holds
			 * exactly when inner's prefix is empty. */
			return ip <= 1 && oplus && olen - oe == 2 && outer[oe + 1] == '#';
		}
		if (oplus) {
			/* '+' accepts any single level, whether inner's is a
			 * literal or '+'. */
		} else if (iplus || oe - op != ie - ip ||
			   memcmp(outer + op, inner + ip, oe - op) != 0) {
			return false;
		}
		op = oe + 1;
		ip = ie + 1;
		first = false;
	}
}
