/*
 * Fuzz topics: validation, "$share/" parsing, matching, covering and the
 * tries. The input is lines separated by '\n'. The first two lines are a
 * filter (outer) and a topic or filter (inner) for the pairwise properties;
 * all lines then feed a subscription trie and a retained tree whose answers
 * must equal a brute-force scan with moat_topic_matches. Any broken property
 * aborts.
 *
 * The covers property: if covers(outer, inner), then every topic inner
 * matches is matched by outer. We build such topics by replacing inner's
 * wildcards with concrete levels (chosen to differ from what outer likely
 * names) and check both filters match them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "mqtt/topic.h"
#include "mqtt/trie.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

#define MAX_LINES 48

struct line {
	const char *s;
	size_t len;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool has_wild(const char *s, size_t len)
{
	return memchr(s, '+', len) != NULL || memchr(s, '#', len) != NULL;
}

/*
 * Replace inner's wildcards: variant 0: '+' -> "\x01", '#' dropped (the
 * parent topic); 1: '+' -> "", '#' -> "\x01"; 2: '+' -> "\x01", '#' ->
 * "\x01/\x01"; 3: '+' -> "", '#' -> "". Returns the length, or 0 when the
 * result is no valid topic name.
 */
static size_t concretize(const char *f, size_t flen, int variant, char *out, size_t cap)
{
	static const char *const plus[] = {"\x01", "", "\x01", ""};
	static const char *const hash[] = {NULL, "\x01", "\x01/\x01", ""};
	size_t pos = 0, n = 0;

	while (pos <= flen) {
		const char *slash = pos < flen ? memchr(f + pos, '/', flen - pos) : NULL;
		size_t end = slash != NULL ? (size_t)(slash - f) : flen;
		const char *lv = f + pos;
		size_t lvlen = end - pos;

		if (lvlen == 1 && lv[0] == '+') {
			lv = plus[variant];
			lvlen = strlen(lv);
		} else if (lvlen == 1 && lv[0] == '#') {
			if (hash[variant] == NULL) {
				/* Drop "/#": the parent. "#" alone has none. */
				if (n == 0)
					return 0;
				n--;
				break;
			}
			lv = hash[variant];
			lvlen = strlen(lv);
		}
		if (n + lvlen + 1 > cap)
			return 0;
		memcpy(out + n, lv, lvlen);
		n += lvlen;
		if (slash == NULL)
			break;
		out[n++] = '/';
		pos = end + 1;
	}
	return moat_topic_name_valid(out, n) ? n : 0;
}

static void check_pair(const struct line *o, const struct line *i)
{
	static char topic[4 * MOAT_MAX_TOPIC_LEN];
	bool fo = moat_topic_filter_valid(o->s, o->len);
	bool fi = moat_topic_filter_valid(i->s, i->len);
	bool ni = moat_topic_name_valid(i->s, i->len);
	bool m = moat_topic_matches(o->s, o->len, i->s, i->len);
	bool c = moat_topic_filter_covers(o->s, o->len, i->s, i->len);
	int v;

	CHECK(!m || (fo && ni));
	CHECK(!c || (fo && fi));
	/* A topic is a filter; a filter without wildcards is a topic. */
	CHECK(!ni || fi);
	CHECK(!fi || ni == !has_wild(i->s, i->len));
	/* For a topic, covering is exactly matching. */
	if (ni)
		CHECK(c == m);
	if (fi) {
		CHECK(moat_topic_filter_covers(i->s, i->len, i->s, i->len));
		CHECK(!ni || moat_topic_matches(i->s, i->len, i->s, i->len));
	}
	if (!c)
		return;
	for (v = 0; v < 4; v++) {
		size_t n = concretize(i->s, i->len, v, topic, sizeof(topic));

		if (n == 0)
			continue;
		CHECK(moat_topic_matches(i->s, i->len, topic, n));
		CHECK(moat_topic_matches(o->s, o->len, topic, n));
	}
}

static void check_shared(const struct line *l)
{
	const char *g = NULL, *f = NULL;
	size_t gl = 0, fl = 0;
	bool mal = true;

	if (moat_topic_shared_parse(l->s, l->len, &g, &gl, &f, &fl, &mal)) {
		CHECK(!mal);
		CHECK(l->len > 7 && memcmp(l->s, "$share/", 7) == 0);
		CHECK(g == l->s + 7 && gl > 0 && f == g + gl + 1 && f + fl == l->s + l->len);
		CHECK(memchr(g, '+', gl) == NULL && memchr(g, '#', gl) == NULL);
		CHECK(memchr(g, '/', gl) == NULL);
		CHECK(moat_topic_filter_valid(f, fl));
		CHECK(moat_topic_filter_valid(l->s, l->len));
	} else if (!mal) {
		CHECK(l->len < 7 || memcmp(l->s, "$share/", 7) != 0);
	}
}

struct hit {
	uintptr_t owner, value;
};

struct hits {
	struct hit h[MAX_LINES];
	size_t n;
	const struct line *lines;
};

static void sub_cb(void *owner, void *value, void *ctx)
{
	struct hits *hs = ctx;

	CHECK(hs->n < MAX_LINES);
	hs->h[hs->n].owner = (uintptr_t)owner;
	hs->h[hs->n].value = (uintptr_t)value;
	hs->n++;
}

static void ret_cb(const char *topic, size_t len, void *value, void *ctx)
{
	struct hits *hs = ctx;
	const struct line *l;

	CHECK(hs->n < MAX_LINES);
	CHECK((uintptr_t)value >= 1 && (uintptr_t)value <= MAX_LINES);
	/* The rebuilt topic is the one that was stored. */
	l = &hs->lines[(uintptr_t)value - 1];
	CHECK(len == l->len && memcmp(topic, l->s, len) == 0);
	hs->h[hs->n].owner = 0;
	hs->h[hs->n].value = (uintptr_t)value;
	hs->n++;
}

static int hit_cmp(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;

	return x->value < y->value ? -1 : x->value > y->value;
}

static void hits_check(struct hits *got, struct hits *want)
{
	size_t i;

	qsort(got->h, got->n, sizeof(got->h[0]), hit_cmp);
	qsort(want->h, want->n, sizeof(want->h[0]), hit_cmp);
	CHECK(got->n == want->n);
	for (i = 0; i < got->n; i++)
		CHECK(got->h[i].owner == want->h[i].owner && got->h[i].value == want->h[i].value);
}

static void freed_cb(void *owner, void *value)
{
	(void)owner;
	(void)value;
}

/* live[k]: line k's subscription (or retained topic) is in the tree. */
static void verify(const struct moat_subtrie *st, const struct moat_rettree *rt,
		   const struct line *l, size_t n, const bool *slive, const bool *rlive)
{
	static struct hits got, want;
	size_t i, k, scount = 0, rcount = 0;

	for (k = 0; k < n; k++) {
		scount += slive[k];
		rcount += rlive[k];
	}
	CHECK(moat_subtrie_count(st) == scount);
	CHECK(moat_rettree_count(rt) == rcount);
	for (i = 0; i < n; i++) {
		got.n = want.n = 0;
		got.lines = l;
		moat_subtrie_match(st, l[i].s, l[i].len, sub_cb, &got);
		for (k = 0; k < n; k++) {
			if (!slive[k] || !moat_topic_matches(l[k].s, l[k].len, l[i].s, l[i].len))
				continue;
			want.h[want.n].owner = k % 5 + 1;
			want.h[want.n].value = k + 1;
			want.n++;
		}
		hits_check(&got, &want);

		got.n = want.n = 0;
		moat_rettree_match(rt, l[i].s, l[i].len, ret_cb, &got);
		for (k = 0; k < n; k++) {
			if (!rlive[k] || !moat_topic_matches(l[i].s, l[i].len, l[k].s, l[k].len))
				continue;
			want.h[want.n].owner = 0;
			want.h[want.n].value = k + 1;
			want.n++;
		}
		hits_check(&got, &want);
		if (moat_topic_name_valid(l[i].s, l[i].len)) {
			uintptr_t v = (uintptr_t)moat_rettree_get(rt, l[i].s, l[i].len);

			CHECK(v == 0 || (rlive[v - 1] && l[v - 1].len == l[i].len &&
					 memcmp(l[v - 1].s, l[i].s, l[i].len) == 0));
		}
	}
}

static void check_tries(const struct line *l, size_t n)
{
	struct moat_subtrie *st = moat_subtrie_new();
	struct moat_rettree *rt = moat_rettree_new();
	bool slive[MAX_LINES] = {false}, rlive[MAX_LINES] = {false};
	size_t k, j;
	void *old;

	CHECK(st != NULL && rt != NULL);
	for (k = 0; k < n; k++) {
		/* Owners repeat every 5 lines; an equal earlier line with the
		 * same owner is replaced. */
		moat_err rc =
		    moat_subtrie_insert(st, l[k].s, l[k].len, (void *)(uintptr_t)(k % 5 + 1),
					(void *)(uintptr_t)(k + 1), &old);

		CHECK((rc == MOAT_OK) == moat_topic_filter_valid(l[k].s, l[k].len));
		if (rc == MOAT_OK) {
			uintptr_t prev = 0;

			for (j = 0; j < k; j++)
				if (slive[j] && j % 5 == k % 5 && l[j].len == l[k].len &&
				    memcmp(l[j].s, l[k].s, l[k].len) == 0) {
					prev = j + 1;
					slive[j] = false;
				}
			CHECK((uintptr_t)old == prev);
			slive[k] = true;
		}
		rc = moat_rettree_set(rt, l[k].s, l[k].len, (void *)(uintptr_t)(k + 1), &old);
		CHECK((rc == MOAT_OK) == moat_topic_name_valid(l[k].s, l[k].len));
		if (rc == MOAT_OK) {
			uintptr_t prev = 0;

			for (j = 0; j < k; j++)
				if (rlive[j] && l[j].len == l[k].len &&
				    memcmp(l[j].s, l[k].s, l[k].len) == 0) {
					prev = j + 1;
					rlive[j] = false;
				}
			CHECK((uintptr_t)old == prev);
			rlive[k] = true;
		}
	}
	verify(st, rt, l, n, slive, rlive);
	/* Remove every other live entry (and try removing dead ones). */
	for (k = 0; k < n; k += 2) {
		moat_err rc =
		    moat_subtrie_remove(st, l[k].s, l[k].len, (void *)(uintptr_t)(k % 5 + 1), &old);

		/* Line k's entry, or the later equal line that replaced it. */
		for (j = k; j < n; j++)
			if (slive[j] && j % 5 == k % 5 && l[j].len == l[k].len &&
			    memcmp(l[j].s, l[k].s, l[k].len) == 0)
				break;
		if (j < n) {
			CHECK(rc == MOAT_OK && (uintptr_t)old == j + 1);
			slive[j] = false;
		} else {
			CHECK(rc != MOAT_OK);
		}
		if (rlive[k]) {
			CHECK(moat_rettree_set(rt, l[k].s, l[k].len, NULL, &old) == MOAT_OK);
			CHECK((uintptr_t)old == k + 1);
			rlive[k] = false;
		}
	}
	verify(st, rt, l, n, slive, rlive);
	moat_subtrie_free(st, freed_cb);
	moat_rettree_free(rt, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct line l[MAX_LINES];
	const char *s = (const char *)data;
	size_t n = 0, pos = 0, k;

	while (n < MAX_LINES) {
		const char *nl = pos < size ? memchr(s + pos, '\n', size - pos) : NULL;
		size_t end = nl != NULL ? (size_t)(nl - s) : size;

		l[n].s = s + pos;
		l[n].len = end - pos;
		n++;
		if (nl == NULL)
			break;
		pos = end + 1;
	}
	if (n == 1) {
		l[1].s = s;
		l[1].len = 0;
		n = 2;
	}
	for (k = 0; k < n; k++) {
		check_shared(&l[k]);
		CHECK(!moat_topic_name_valid(l[k].s, l[k].len) ||
		      moat_topic_filter_valid(l[k].s, l[k].len));
	}
	check_pair(&l[0], &l[1]);
	check_pair(&l[1], &l[0]);
	check_tries(l, n);
	return 0;
}
