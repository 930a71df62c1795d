/*
 * Subscription trie and retained tree. Besides hand-written cases, both are
 * checked against moat_topic_matches by randomized differential tests with
 * a fixed seed: after every operation the trie must return exactly the
 * entries a brute-force scan of a reference list returns. Memory is checked
 * to return to its baseline after removals (pruning), and every test frees
 * everything (ASan proves no leaks).
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

#include "core/limits.h"
#include "mqtt/topic.h"
#include "mqtt/trie.h"

#if defined(__SANITIZE_ADDRESS__)
#define HEAP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_ASAN 1
#endif
#endif

#ifdef HEAP_ASAN
/* From <sanitizer/allocator_interface.h>, which not every compiler ships. */
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_used(void)
{
	return __sanitizer_get_current_allocated_bytes();
}
#else
#include <malloc.h>
static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	/* Large blocks are mmapped and counted apart. */
	return mi.uordblks + mi.hblkhd;
}
#endif

/*
 * Memory is back to `base` after a fill to `full`. ASan counts live bytes
 * exactly; glibc's mallinfo2 counts blocks parked in its thread cache as in
 * use, so without ASan allow a small fraction of the peak.
 */
static void assert_heap_back(size_t base, size_t full)
{
	size_t now = heap_used();

#ifdef HEAP_ASAN
	(void)full;
	assert_int_equal(now, base);
#else
	assert_true(now >= base ? now - base <= (full - base) / 16 : true);
#endif
}

#define P(x) ((void *)(uintptr_t)(x))
#define U(p) ((uintptr_t)(p))

/* xorshift64: the tests need reproducible, not good, randomness. */
static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static size_t rng_below(size_t n)
{
	return (size_t)(rng() % n);
}

/* ---- collecting match results ---- */

#define MAX_HITS 4096

struct hit {
	uintptr_t owner;
	uintptr_t value;
	const char *topic; /* retained tree: into pool, or the reference list */
};

struct hits {
	struct hit h[MAX_HITS];
	size_t n;
	char pool[MAX_HITS * 64];
	size_t used;
};

static void sub_cb(void *owner, void *value, void *ctx)
{
	struct hits *hs = ctx;

	assert_true(hs->n < MAX_HITS);
	hs->h[hs->n].owner = U(owner);
	hs->h[hs->n].value = U(value);
	hs->h[hs->n].topic = "";
	hs->n++;
}

static void ret_cb(const char *topic, size_t len, void *value, void *ctx)
{
	struct hits *hs = ctx;

	assert_true(hs->n < MAX_HITS);
	assert_true(len <= MOAT_MAX_TOPIC_LEN);
	hs->h[hs->n].owner = 0;
	hs->h[hs->n].value = U(value);
	assert_true(len < sizeof(hs->pool) - hs->used);
	memcpy(hs->pool + hs->used, topic, len);
	hs->pool[hs->used + len] = '\0';
	hs->h[hs->n].topic = hs->pool + hs->used;
	hs->used += len + 1;
	hs->n++;
}

static int hit_cmp(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;

	if (x->value != y->value)
		return x->value < y->value ? -1 : 1;
	if (x->owner != y->owner)
		return x->owner < y->owner ? -1 : 1;
	return strcmp(x->topic, y->topic);
}

static void hits_sort(struct hits *hs)
{
	qsort(hs->h, hs->n, sizeof(hs->h[0]), hit_cmp);
}

static void sub_match(const struct moat_subtrie *t, const char *topic, struct hits *hs)
{
	hs->n = 0;
	hs->used = 0;
	moat_subtrie_match(t, topic, strlen(topic), sub_cb, hs);
	hits_sort(hs);
}

static void ret_match(const struct moat_rettree *t, const char *filter, struct hits *hs)
{
	hs->n = 0;
	hs->used = 0;
	moat_rettree_match(t, filter, strlen(filter), ret_cb, hs);
	hits_sort(hs);
}

static void hits_equal(const struct hits *a, const struct hits *b, const char *what)
{
	size_t i;

	if (a->n != b->n)
		fail_msg("%s: %zu hits, expected %zu", what, a->n, b->n);
	for (i = 0; i < a->n; i++)
		if (hit_cmp(&a->h[i], &b->h[i]) != 0)
			fail_msg("%s: hit %zu differs", what, i);
}

static moat_err sins(struct moat_subtrie *t, const char *f, uintptr_t owner, uintptr_t value,
		     void **old)
{
	return moat_subtrie_insert(t, f, strlen(f), P(owner), P(value), old);
}

static moat_err srem(struct moat_subtrie *t, const char *f, uintptr_t owner, void **old)
{
	return moat_subtrie_remove(t, f, strlen(f), P(owner), old);
}

static moat_err rset(struct moat_rettree *t, const char *topic, uintptr_t value, void **old)
{
	return moat_rettree_set(t, topic, strlen(topic), P(value), old);
}

static uintptr_t rget(const struct moat_rettree *t, const char *topic)
{
	return U(moat_rettree_get(t, topic, strlen(topic)));
}

/* ---- subscription trie: hand-written cases ---- */

static void test_sub_basic(void **state)
{
	(void)state;
	struct moat_subtrie *t = moat_subtrie_new();
	static struct hits hs;
	void *old = P(0xdead);

	assert_non_null(t);
	assert_int_equal(moat_subtrie_count(t), 0);
	assert_int_equal(sins(t, "a/b", 1, 10, &old), MOAT_OK);
	assert_null(old);
	assert_int_equal(sins(t, "a/+", 1, 11, NULL), MOAT_OK);
	assert_int_equal(sins(t, "a/#", 2, 12, NULL), MOAT_OK);
	assert_int_equal(sins(t, "a/b", 2, 13, NULL), MOAT_OK);
	assert_int_equal(moat_subtrie_count(t), 4);

	sub_match(t, "a/b", &hs);
	assert_int_equal(hs.n, 4);
	sub_match(t, "a/c", &hs);
	assert_int_equal(hs.n, 2);
	assert_int_equal(hs.h[0].value, 11);
	assert_int_equal(hs.h[1].value, 12);
	sub_match(t, "a", &hs);
	assert_int_equal(hs.n, 1);
	assert_int_equal(hs.h[0].value, 12);
	sub_match(t, "b", &hs);
	assert_int_equal(hs.n, 0);

	/* Replace: same owner, same filter. */
	assert_int_equal(sins(t, "a/b", 1, 20, &old), MOAT_OK);
	assert_ptr_equal(old, P(10));
	assert_int_equal(moat_subtrie_count(t), 4);
	sub_match(t, "a/b", &hs);
	assert_int_equal(hs.n, 4);
	assert_int_equal(hs.h[0].value, 11);
	assert_int_equal(hs.h[1].value, 12);
	assert_int_equal(hs.h[2].value, 13);
	assert_int_equal(hs.h[3].value, 20);

	/* Remove. */
	old = NULL;
	assert_int_equal(srem(t, "a/b", 1, &old), MOAT_OK);
	assert_ptr_equal(old, P(20));
	assert_int_equal(srem(t, "a/b", 1, &old), MOAT_E_NOTFOUND);
	assert_int_equal(srem(t, "a/b/c", 1, NULL), MOAT_E_NOTFOUND);
	assert_int_equal(srem(t, "x", 1, NULL), MOAT_E_NOTFOUND);
	assert_int_equal(srem(t, "a/#", 1, NULL), MOAT_E_NOTFOUND);
	assert_int_equal(srem(t, "a/b", 2, NULL), MOAT_OK);
	assert_int_equal(moat_subtrie_count(t), 2);
	sub_match(t, "a/b", &hs);
	assert_int_equal(hs.n, 2);

	/* Invalid filters are refused, and nothing changes. */
	assert_int_equal(sins(t, "a/#/b", 1, 1, NULL), MOAT_E_INVAL);
	assert_int_equal(sins(t, "", 1, 1, NULL), MOAT_E_INVAL);
	assert_int_equal(sins(t, "a+", 1, 1, NULL), MOAT_E_INVAL);
	assert_int_equal(moat_subtrie_insert(t, "a\0b", 3, P(1), P(1), NULL), MOAT_E_INVAL);
	assert_int_equal(srem(t, "a#", 1, NULL), MOAT_E_INVAL);
	assert_int_equal(moat_subtrie_count(t), 2);
	/* Matching invalid topics finds nothing. */
	sub_match(t, "a/+", &hs);
	assert_int_equal(hs.n, 0);
	sub_match(t, "", &hs);
	assert_int_equal(hs.n, 0);
	moat_subtrie_match(t, "a/b", 3, NULL, NULL);

	/* NULL tree is harmless. */
	assert_int_equal(moat_subtrie_count(NULL), 0);
	moat_subtrie_match(NULL, "a", 1, sub_cb, &hs);
	moat_subtrie_free(NULL, NULL);
	moat_subtrie_free(t, NULL);
}

/* The spec's edge cases, through the trie: every filter inserted with its
 * own owner, every topic must hit exactly the filters that match it. */
static void test_sub_spec_table(void **state)
{
	(void)state;
	static const char *filters[] = {
	    "#",      "+",     "/",   "/+",	 "+/+",	    "a",      "a/#",	    "a/+",
	    "a//b",   "a/+/b", "+/#", "sport/+", "sport/#", "$SYS/#", "$SYS/+",	    "+/x",
	    "$SYS/x", "a/",    "//",  "+/+/+",	 "/#",	    "sport",  "$share/g/a", "a/b/c/#"};
	static const char *topics[] = {
	    "a",     "a/",    "/",	    "//",      "/a",	  "a//b",   "a/b",
	    "a/x/b", "sport", "sport/",	    "sport/x", "$SYS",	  "$SYS/x", "$SYS/y",
	    "x",     "x/x",   "$share/g/a", "a/b/c",   "a/b/c/d", "$",	    "///"};
	static struct hits got, want;
	struct moat_subtrie *t = moat_subtrie_new();
	size_t i, j;

	assert_non_null(t);
	for (i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
		assert_int_equal(sins(t, filters[i], i + 1, 100 + i, NULL), MOAT_OK);
	for (j = 0; j < sizeof(topics) / sizeof(topics[0]); j++) {
		sub_match(t, topics[j], &got);
		want.n = 0;
		for (i = 0; i < sizeof(filters) / sizeof(filters[0]); i++) {
			if (!moat_topic_matches(filters[i], strlen(filters[i]), topics[j],
						strlen(topics[j])))
				continue;
			want.h[want.n].owner = i + 1;
			want.h[want.n].value = 100 + i;
			want.h[want.n].topic = "";
			want.n++;
		}
		hits_sort(&want);
		hits_equal(&got, &want, topics[j]);
	}
	/* A few answers spelled out, so the table cannot be vacuous. */
	sub_match(t, "$SYS/x", &got);
	assert_int_equal(got.n, 3); /* $SYS/#, $SYS/+, $SYS/x */
	sub_match(t, "sport", &got);
	assert_int_equal(got.n, 5); /* #, +, sport/#, +/#, sport */
	moat_subtrie_free(t, NULL);
}

/* ---- randomized differential tests ---- */

struct sub_rec {
	char f[64];
	uintptr_t owner, value;
	bool live;
};

#define REC_MAX 2048
#define LIVE_MAX 1500

static void rand_filter(char *out, size_t cap, const char *const *alpha, size_t nalpha, bool wild)
{
	size_t depth = 1 + rng_below(4), d, n = 0;

	for (d = 0; d < depth; d++) {
		const char *l = alpha[rng_below(nalpha)];
		size_t r = wild ? rng_below(10) : 9;

		if (r == 0)
			l = "+";
		else if (r == 1 && d == depth - 1)
			l = "#";
		if (d > 0)
			out[n++] = '/';
		assert_true(n + strlen(l) + 1 < cap);
		memcpy(out + n, l, strlen(l));
		n += strlen(l);
	}
	out[n] = '\0';
}

static void sub_differential(const char *const *alpha, size_t nalpha, size_t ops, uint64_t seed)
{
	static struct sub_rec recs[REC_MAX];
	static struct hits got, want;
	struct moat_subtrie *t = moat_subtrie_new();
	size_t nrec = 0, live = 0, i, op, matched = 0;
	uintptr_t next_value = 1;

	assert_non_null(t);
	rng_state = seed;
	for (op = 0; op < ops; op++) {
		size_t kind = rng_below(8);
		char f[64];
		void *old;

		if (live >= LIVE_MAX)
			kind = 4; /* keep the reference list small */
		if (kind < 4 || live == 0) {
			uintptr_t owner = 1 + rng_below(6);
			struct sub_rec *r = NULL, *dead = NULL;

			rand_filter(f, sizeof(f), alpha, nalpha, true);
			if (!moat_topic_filter_valid(f, strlen(f))) {
				assert_int_equal(sins(t, f, owner, 1, NULL), MOAT_E_INVAL);
				continue;
			}
			for (i = 0; i < nrec && r == NULL; i++) {
				if (recs[i].owner == owner && !strcmp(recs[i].f, f))
					r = &recs[i];
				else if (!recs[i].live && dead == NULL)
					dead = &recs[i];
			}
			old = P(0xdead);
			assert_int_equal(sins(t, f, owner, next_value, &old), MOAT_OK);
			assert_int_equal(U(old), r != NULL && r->live ? r->value : 0);
			if (r == NULL) {
				r = dead;
				if (r == NULL) {
					assert_true(nrec < REC_MAX);
					r = &recs[nrec++];
				}
				memcpy(r->f, f, strlen(f) + 1);
				r->owner = owner;
				r->live = false;
			}
			if (!r->live)
				live++;
			r->live = true;
			r->value = next_value++;
		} else if (kind < 6) {
			/* Remove a live entry, or try a missing one. */
			size_t k = rng_below(nrec);

			if (!recs[k].live) {
				assert_int_equal(srem(t, recs[k].f, recs[k].owner, NULL),
						 MOAT_E_NOTFOUND);
				continue;
			}
			old = NULL;
			assert_int_equal(srem(t, recs[k].f, recs[k].owner, &old), MOAT_OK);
			assert_int_equal(U(old), recs[k].value);
			recs[k].live = false;
			live--;
		} else {
			rand_filter(f, sizeof(f), alpha, nalpha, false);
			sub_match(t, f, &got);
			want.n = 0;
			for (i = 0; i < nrec; i++) {
				if (!recs[i].live ||
				    !moat_topic_matches(recs[i].f, strlen(recs[i].f), f, strlen(f)))
					continue;
				want.h[want.n].owner = recs[i].owner;
				want.h[want.n].value = recs[i].value;
				want.h[want.n].topic = "";
				want.n++;
			}
			hits_sort(&want);
			hits_equal(&got, &want, f);
			matched += got.n;
		}
		assert_int_equal(moat_subtrie_count(t), live);
	}
	/* The run must have matched something, or it proved nothing. */
	assert_true(matched > ops / 8);
	moat_subtrie_free(t, NULL);
}

static void test_sub_random_small(void **state)
{
	(void)state;
	/* Few levels: deep overlap of wildcards, '$' and empty levels. */
	static const char *const alpha[] = {"a", "b", "", "$s", "c"};

	sub_differential(alpha, sizeof(alpha) / sizeof(alpha[0]), 30000, 0x9e3779b97f4a7c15u);
}

static void test_sub_random_wide(void **state)
{
	(void)state;
	/* Many distinct levels: nodes move between array and hash table,
	 * and deletions exercise the table's backward shift. */
	static char names[300][8];
	static const char *alpha[300];
	size_t i;

	for (i = 0; i < 300; i++) {
		snprintf(names[i], sizeof(names[i]), "k%zu", i);
		alpha[i] = names[i];
	}
	alpha[0] = "$k";
	alpha[1] = "";
	for (i = 0; i < 3; i++) {
		/* Short alphabet first so matches are frequent, then wide. */
		sub_differential(alpha, 12, 5000, 42 + i);
		sub_differential(alpha, 300, 12000, 1000 + i);
	}
}

static void test_sub_dollar(void **state)
{
	(void)state;
	struct moat_subtrie *t = moat_subtrie_new();
	static struct hits hs;

	assert_int_equal(sins(t, "#", 1, 1, NULL), MOAT_OK);
	assert_int_equal(sins(t, "+/x", 2, 2, NULL), MOAT_OK);
	assert_int_equal(sins(t, "+", 3, 3, NULL), MOAT_OK);
	assert_int_equal(sins(t, "$SYS/#", 4, 4, NULL), MOAT_OK);
	assert_int_equal(sins(t, "x/#", 5, 5, NULL), MOAT_OK);
	sub_match(t, "$SYS/x", &hs);
	assert_int_equal(hs.n, 1);
	assert_int_equal(hs.h[0].value, 4);
	sub_match(t, "$SYS", &hs);
	assert_int_equal(hs.n, 1);
	sub_match(t, "a/x", &hs);
	assert_int_equal(hs.n, 2);
	/* '$' deeper than the first level is an ordinary character. */
	sub_match(t, "x/$y", &hs);
	assert_int_equal(hs.n, 2);
	moat_subtrie_free(t, NULL);
}

/* Filters of the maximum depth and length work; deeper ones are refused. */
static void test_sub_limits(void **state)
{
	(void)state;
	static char f[MOAT_MAX_TOPIC_LEN + 1];
	static struct hits hs;
	struct moat_subtrie *t = moat_subtrie_new();
	size_t i;

	for (i = 0; i < MOAT_MAX_TOPIC_LEVELS; i++) {
		f[2 * i] = '+';
		f[2 * i + 1] = '/';
	}
	f[2 * MOAT_MAX_TOPIC_LEVELS - 1] = '\0';
	assert_int_equal(sins(t, f, 1, 1, NULL), MOAT_OK);
	f[2 * MOAT_MAX_TOPIC_LEVELS - 2] = '#';
	assert_int_equal(sins(t, f, 1, 2, NULL), MOAT_OK);
	for (i = 0; i < MOAT_MAX_TOPIC_LEVELS; i++)
		f[2 * i] = 'a';
	sub_match(t, f, &hs);
	assert_int_equal(hs.n, 2);
	f[2 * MOAT_MAX_TOPIC_LEVELS - 1] = '/';
	f[2 * MOAT_MAX_TOPIC_LEVELS] = 'a';
	f[2 * MOAT_MAX_TOPIC_LEVELS + 1] = '\0';
	assert_int_equal(sins(t, f, 1, 3, NULL), MOAT_E_INVAL);
	sub_match(t, f, &hs);
	assert_int_equal(hs.n, 0);

	memset(f, 'x', MOAT_MAX_TOPIC_LEN);
	f[MOAT_MAX_TOPIC_LEN] = '\0';
	assert_int_equal(moat_subtrie_insert(t, f, MOAT_MAX_TOPIC_LEN, P(1), P(4), NULL), MOAT_OK);
	assert_int_equal(moat_subtrie_insert(t, f, MOAT_MAX_TOPIC_LEN + 1, P(1), P(5), NULL),
			 MOAT_E_INVAL);
	hs.n = 0;
	moat_subtrie_match(t, f, MOAT_MAX_TOPIC_LEN, sub_cb, &hs);
	assert_int_equal(hs.n, 1);
	assert_int_equal(moat_subtrie_count(t), 3);
	moat_subtrie_free(t, NULL);
}

/* Removing everything returns the trie to its initial memory: empty nodes
 * are pruned and tables shrink. */
static void test_sub_prune(void **state)
{
	(void)state;
	struct moat_subtrie *t = moat_subtrie_new();
	size_t base, full, i, round;
	char f[64];

	assert_non_null(t);
	base = heap_used();
	for (round = 0; round < 2; round++) {
		for (i = 0; i < 3000; i++) {
			snprintf(f, sizeof(f), "c/%zu/x/%zu/#", i % 700, i);
			assert_int_equal(sins(t, f, i % 5, i, NULL), MOAT_OK);
			snprintf(f, sizeof(f), "+/%zu/+", i);
			assert_int_equal(sins(t, f, 1, i, NULL), MOAT_OK);
		}
		full = heap_used();
		assert_true(full > base + 3000 * 2 * 64);
		for (i = 0; i < 3000; i++) {
			snprintf(f, sizeof(f), "c/%zu/x/%zu/#", i % 700, i);
			assert_int_equal(srem(t, f, i % 5, NULL), MOAT_OK);
			snprintf(f, sizeof(f), "+/%zu/+", i);
			assert_int_equal(srem(t, f, 1, NULL), MOAT_OK);
		}
		assert_int_equal(moat_subtrie_count(t), 0);
		assert_heap_back(base, full);
	}
	/* Many owners on one filter: the entry array shrinks back too. */
	for (i = 1; i <= 5000; i++)
		assert_int_equal(sins(t, "bcast/#", i, i, NULL), MOAT_OK);
	full = heap_used();
	for (i = 101; i <= 5000; i++)
		assert_int_equal(srem(t, "bcast/#", i, NULL), MOAT_OK);
	assert_true(heap_used() - base < (full - base) / 8);
	for (i = 1; i <= 100; i++)
		assert_int_equal(srem(t, "bcast/#", i, NULL), MOAT_OK);
	assert_heap_back(base, full);
	/* A wide node's table shrinks as its children go, long before the
	 * last one does. */
	for (i = 0; i < 20000; i++) {
		snprintf(f, sizeof(f), "w/%zu", i);
		assert_int_equal(sins(t, f, 1, i, NULL), MOAT_OK);
	}
	full = heap_used();
	for (i = 100; i < 20000; i++) {
		snprintf(f, sizeof(f), "w/%zu", i);
		assert_int_equal(srem(t, f, 1, NULL), MOAT_OK);
	}
	assert_true(heap_used() - base < (full - base) / 8);
	for (i = 0; i < 100; i++) {
		snprintf(f, sizeof(f), "w/%zu", i);
		assert_int_equal(srem(t, f, 1, NULL), MOAT_OK);
	}
	assert_heap_back(base, full);
	/* A failed insert (invalid) leaves nothing behind. */
	assert_int_equal(sins(t, "q/#/x", 1, 1, NULL), MOAT_E_INVAL);
	assert_heap_back(base, full);
	moat_subtrie_free(t, NULL);
}

/* A fleet: 100k devices each subscribed to c/<id>/# under one node. */
static void test_sub_fanout(void **state)
{
	(void)state;
	struct moat_subtrie *t = moat_subtrie_new();
	static struct hits hs;
	const size_t n = 100000;
	size_t i;
	char f[64];

	assert_non_null(t);
	for (i = 0; i < n; i++) {
		snprintf(f, sizeof(f), "c/dev%zu/#", i);
		assert_int_equal(sins(t, f, i + 1, i + 1, NULL), MOAT_OK);
	}
	assert_int_equal(sins(t, "c/+/cmd", n + 1, n + 1, NULL), MOAT_OK);
	assert_int_equal(moat_subtrie_count(t), n + 1);
	for (i = 0; i < n; i++) {
		snprintf(f, sizeof(f), "c/dev%zu/cmd", i);
		sub_match(t, f, &hs);
		assert_int_equal(hs.n, 2);
		assert_int_equal(hs.h[0].value, i + 1);
		assert_int_equal(hs.h[1].value, n + 1);
	}
	sub_match(t, "c/nodev/x", &hs);
	assert_int_equal(hs.n, 0);
	/* Remove every other device; the rest still match, the removed don't. */
	for (i = 0; i < n; i += 2) {
		snprintf(f, sizeof(f), "c/dev%zu/#", i);
		assert_int_equal(srem(t, f, i + 1, NULL), MOAT_OK);
	}
	for (i = 0; i < n; i++) {
		snprintf(f, sizeof(f), "c/dev%zu/x", i);
		sub_match(t, f, &hs);
		assert_int_equal(hs.n, i % 2);
	}
	moat_subtrie_free(t, NULL);
}

/* free_cb sees every remaining entry exactly once; values are heap blocks
 * so ASan reports any that are not handed back. */
static size_t freed;

static void free_pair_cb(void *owner, void *value)
{
	assert_non_null(owner);
	freed++;
	free(value);
}

static void test_sub_free_cb(void **state)
{
	(void)state;
	struct moat_subtrie *t = moat_subtrie_new();
	size_t i;
	char f[64];
	void *old;

	for (i = 0; i < 500; i++) {
		snprintf(f, sizeof(f), "%s/%zu/%s", i % 3 ? "a" : "+", i % 40, i % 2 ? "#" : "x");
		assert_int_equal(
		    moat_subtrie_insert(t, f, strlen(f), P(1 + i % 7), malloc(16), &old), MOAT_OK);
		free(old); /* replaced values are the caller's */
	}
	for (i = 0; i < 100; i++) {
		snprintf(f, sizeof(f), "%s/%zu/%s", i % 3 ? "a" : "+", i % 40, i % 2 ? "#" : "x");
		old = NULL;
		if (moat_subtrie_remove(t, f, strlen(f), P(1 + i % 7), &old) == MOAT_OK)
			free(old);
	}
	freed = 0;
	i = moat_subtrie_count(t);
	assert_true(i > 0);
	moat_subtrie_free(t, free_pair_cb);
	assert_int_equal(freed, i);
}

/* ---- retained tree ---- */

static void test_ret_basic(void **state)
{
	(void)state;
	struct moat_rettree *t = moat_rettree_new();
	static struct hits hs;
	void *old = P(0xdead);

	assert_non_null(t);
	assert_int_equal(rset(t, "a/b", 1, &old), MOAT_OK);
	assert_null(old);
	assert_int_equal(rset(t, "a", 2, NULL), MOAT_OK);
	assert_int_equal(rset(t, "a/b/c", 3, NULL), MOAT_OK);
	assert_int_equal(rset(t, "$SYS/x", 4, NULL), MOAT_OK);
	assert_int_equal(rset(t, "/", 5, NULL), MOAT_OK);
	assert_int_equal(moat_rettree_count(t), 5);
	assert_int_equal(rget(t, "a/b"), 1);
	assert_int_equal(rget(t, "a"), 2);
	assert_int_equal(rget(t, "a/b/c"), 3);
	assert_int_equal(rget(t, "/"), 5);
	assert_int_equal(rget(t, "a/b/c/d"), 0);
	assert_int_equal(rget(t, "a/"), 0);
	assert_int_equal(rget(t, ""), 0);
	assert_int_equal(rget(t, "+"), 0);

	/* Replace and remove. */
	assert_int_equal(rset(t, "a/b", 11, &old), MOAT_OK);
	assert_ptr_equal(old, P(1));
	assert_int_equal(moat_rettree_count(t), 5);
	assert_int_equal(moat_rettree_set(t, "a", 1, NULL, &old), MOAT_OK);
	assert_ptr_equal(old, P(2));
	assert_int_equal(moat_rettree_count(t), 4);
	assert_int_equal(rget(t, "a/b"), 11);
	old = P(0xdead);
	assert_int_equal(moat_rettree_set(t, "nothing/here", 12, NULL, &old), MOAT_OK);
	assert_null(old);
	assert_int_equal(moat_rettree_set(t, "a", 1, NULL, &old), MOAT_OK);
	assert_null(old);
	assert_int_equal(moat_rettree_count(t), 4);

	/* Invalid topics are refused. */
	assert_int_equal(rset(t, "a/+", 1, NULL), MOAT_E_INVAL);
	assert_int_equal(rset(t, "#", 1, NULL), MOAT_E_INVAL);
	assert_int_equal(rset(t, "", 1, NULL), MOAT_E_INVAL);

	ret_match(t, "#", &hs);
	assert_int_equal(hs.n, 3); /* a/b, a/b/c, / -- not $SYS/x */
	assert_string_equal(hs.h[0].topic, "a/b/c");
	assert_string_equal(hs.h[1].topic, "/");
	assert_string_equal(hs.h[2].topic, "a/b");
	ret_match(t, "a/#", &hs);
	assert_int_equal(hs.n, 2);
	ret_match(t, "a/b/#", &hs);
	assert_int_equal(hs.n, 2); /* "a/b/#" matches "a/b" */
	ret_match(t, "+", &hs);
	assert_int_equal(hs.n, 0);
	ret_match(t, "+/+", &hs);
	assert_int_equal(hs.n, 2); /* a/b and / */
	ret_match(t, "$SYS/#", &hs);
	assert_int_equal(hs.n, 1);
	assert_string_equal(hs.h[0].topic, "$SYS/x");
	ret_match(t, "+/x", &hs);
	assert_int_equal(hs.n, 0);
	ret_match(t, "a/#/b", &hs);
	assert_int_equal(hs.n, 0);
	moat_rettree_match(t, "#", 1, NULL, NULL);

	assert_int_equal(moat_rettree_count(NULL), 0);
	assert_null(moat_rettree_get(NULL, "a", 1));
	moat_rettree_free(NULL, NULL);
	moat_rettree_free(t, NULL);
}

static void ret_differential(const char *const *alpha, size_t nalpha, size_t ops, uint64_t seed)
{
	static struct sub_rec recs[REC_MAX]; /* f is the topic; owner unused */
	static struct hits got, want;
	struct moat_rettree *t = moat_rettree_new();
	size_t nrec = 0, live = 0, i, op, matched = 0;
	uintptr_t next_value = 1;

	assert_non_null(t);
	rng_state = seed;
	for (op = 0; op < ops; op++) {
		size_t kind = rng_below(8);
		char f[64];
		void *old;
		struct sub_rec *r = NULL;

		if (live >= LIVE_MAX)
			kind = 4;
		if (kind < 5) {
			/* Set (or clear) a topic. */
			bool clear = kind == 4;
			struct sub_rec *dead = NULL;

			rand_filter(f, sizeof(f), alpha, nalpha, false);
			if (clear && nrec > 0 && rng_below(2))
				memcpy(f, recs[rng_below(nrec)].f, sizeof(f));
			if (!moat_topic_name_valid(f, strlen(f))) {
				assert_int_equal(rset(t, f, 1, NULL), MOAT_E_INVAL);
				continue;
			}
			for (i = 0; i < nrec && r == NULL; i++) {
				if (!strcmp(recs[i].f, f))
					r = &recs[i];
				else if (!recs[i].live && dead == NULL)
					dead = &recs[i];
			}
			old = P(0xdead);
			assert_int_equal(rset(t, f, clear ? 0 : next_value, &old), MOAT_OK);
			assert_int_equal(U(old), r != NULL && r->live ? r->value : 0);
			if (r == NULL) {
				if (clear)
					continue;
				r = dead;
				if (r == NULL) {
					assert_true(nrec < REC_MAX);
					r = &recs[nrec++];
				}
				memcpy(r->f, f, strlen(f) + 1);
				r->live = false;
			}
			if (r->live && clear)
				live--;
			else if (!r->live && !clear)
				live++;
			r->live = !clear;
			r->value = clear ? 0 : next_value++;
		} else if (kind < 6 && nrec > 0) {
			r = &recs[rng_below(nrec)];
			assert_int_equal(rget(t, r->f), r->live ? r->value : 0);
		} else {
			rand_filter(f, sizeof(f), alpha, nalpha, true);
			ret_match(t, f, &got);
			want.n = 0;
			for (i = 0; i < nrec; i++) {
				if (!recs[i].live ||
				    !moat_topic_matches(f, strlen(f), recs[i].f, strlen(recs[i].f)))
					continue;
				want.h[want.n].owner = 0;
				want.h[want.n].value = recs[i].value;
				want.h[want.n].topic = recs[i].f;
				want.n++;
			}
			hits_sort(&want);
			hits_equal(&got, &want, f);
			matched += got.n;
		}
		assert_int_equal(moat_rettree_count(t), live);
	}
	assert_true(matched > ops / 8);
	moat_rettree_free(t, NULL);
}

static void test_ret_random(void **state)
{
	(void)state;
	static const char *const small[] = {"a", "b", "", "$s", "c"};
	static char names[300][8];
	static const char *wide[300];
	size_t i;

	ret_differential(small, sizeof(small) / sizeof(small[0]), 30000, 7);
	for (i = 0; i < 300; i++) {
		snprintf(names[i], sizeof(names[i]), "r%zu", i);
		wide[i] = names[i];
	}
	wide[0] = "$r";
	wide[1] = "";
	for (i = 0; i < 3; i++) {
		ret_differential(wide, 12, 5000, 99 + i);
		ret_differential(wide, 300, 12000, 500 + i);
	}
}

static void count_cb(const char *topic, size_t len, void *value, void *ctx)
{
	(void)value;
	assert_true(moat_topic_name_valid(topic, len));
	(*(size_t *)ctx)++;
}

static void test_ret_prune(void **state)
{
	(void)state;
	struct moat_rettree *t = moat_rettree_new();
	static struct hits hs;
	size_t base, full, i, ncount;
	char f[64];

	base = heap_used();
	for (i = 0; i < 5000; i++) {
		snprintf(f, sizeof(f), "d/%zu/t/%zu", i % 900, i);
		assert_int_equal(rset(t, f, i + 1, NULL), MOAT_OK);
	}
	assert_int_equal(moat_rettree_count(t), 5000);
	full = heap_used();
	assert_true(full > base + 5000 * 64);
	ncount = 0;
	moat_rettree_match(t, "d/+/t/#", 7, count_cb, &ncount);
	assert_int_equal(ncount, 5000);
	ncount = 0;
	moat_rettree_match(t, "d/+/+/+", 7, count_cb, &ncount);
	assert_int_equal(ncount, 5000);
	ncount = 0;
	moat_rettree_match(t, "d/+", 3, count_cb, &ncount);
	assert_int_equal(ncount, 0);
	ret_match(t, "d/7/#", &hs);
	assert_int_equal(hs.n, 6); /* 7, 907, ..., 4507 */
	for (i = 0; i < 5000; i++) {
		snprintf(f, sizeof(f), "d/%zu/t/%zu", i % 900, i);
		assert_int_equal(rset(t, f, 0, NULL), MOAT_OK);
	}
	assert_int_equal(moat_rettree_count(t), 0);
	assert_heap_back(base, full);
	moat_rettree_free(t, NULL);
}

static void test_ret_limits(void **state)
{
	(void)state;
	static char f[MOAT_MAX_TOPIC_LEN + 1];
	static struct hits hs;
	struct moat_rettree *t = moat_rettree_new();
	size_t i;

	/* 32 levels, 1024 bytes: the rebuilt topic fills the whole buffer. */
	memset(f, 'y', MOAT_MAX_TOPIC_LEN);
	for (i = 1; i < MOAT_MAX_TOPIC_LEVELS; i++)
		f[i * 30] = '/';
	f[MOAT_MAX_TOPIC_LEN] = '\0';
	assert_int_equal(rset(t, f, 1, NULL), MOAT_OK);
	ret_match(t, "#", &hs);
	assert_int_equal(hs.n, 1);
	assert_string_equal(hs.h[0].topic, f);
	ret_match(t, f, &hs);
	assert_int_equal(hs.n, 1);
	/* The last level as '#', then as '+'. */
	f[31 * 30 + 1] = '#';
	f[31 * 30 + 2] = '\0';
	ret_match(t, f, &hs);
	assert_int_equal(hs.n, 1);
	f[31 * 30 + 1] = '+';
	ret_match(t, f, &hs);
	assert_int_equal(hs.n, 1);
	f[31] = '#';
	f[32] = '\0';
	ret_match(t, f, &hs);
	assert_int_equal(hs.n, 1);
	memset(f, '+', MOAT_MAX_TOPIC_LEN);
	assert_int_equal(moat_rettree_set(t, f, MOAT_MAX_TOPIC_LEN + 1, P(1), NULL), MOAT_E_INVAL);
	moat_rettree_free(t, NULL);
}

static void test_ret_free_cb(void **state)
{
	(void)state;
	struct moat_rettree *t = moat_rettree_new();
	size_t i;
	char f[64];
	void *old;

	for (i = 0; i < 300; i++) {
		snprintf(f, sizeof(f), "r/%zu/%zu", i % 17, i % 50);
		old = NULL;
		assert_int_equal(moat_rettree_set(t, f, strlen(f), malloc(8), &old), MOAT_OK);
		free(old);
	}
	/* All 300 topics are distinct: lcm(17, 50) > 300. */
	assert_int_equal(moat_rettree_count(t), 300);
	moat_rettree_free(t, free);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sub_basic),	     cmocka_unit_test(test_sub_spec_table),
	    cmocka_unit_test(test_sub_dollar),	     cmocka_unit_test(test_sub_limits),
	    cmocka_unit_test(test_sub_random_small), cmocka_unit_test(test_sub_random_wide),
	    cmocka_unit_test(test_sub_prune),	     cmocka_unit_test(test_sub_fanout),
	    cmocka_unit_test(test_sub_free_cb),	     cmocka_unit_test(test_ret_basic),
	    cmocka_unit_test(test_ret_random),	     cmocka_unit_test(test_ret_prune),
	    cmocka_unit_test(test_ret_limits),	     cmocka_unit_test(test_ret_free_cb),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
