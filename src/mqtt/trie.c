/*
 * Topic tries: subscriptions (struct moat_subtrie) and retained messages
 * (struct moat_rettree); see trie.h for the contract.
 *
 * Both are tries of topic levels sharing one node type. A node's literal
 * children sit in a small unordered array while there are few of them and in
 * an open-addressing hash table (linear probing, backward-shift deletion)
 * beyond that, so one node with 100k children ("c/<device>/#" for a whole
 * fleet) still costs one hash probe per lookup. The table hash is SipHash
 * keyed per tree: levels come from devices, and a predictable hash would let
 * one device flood a bucket. '+' and '#' children of the subscription trie
 * have their own slots so matching never searches for them.
 *
 * Every non-root node carries an entry, a value or a child; removal prunes
 * nodes that become empty and shrinks their tables, so memory returns.
 * Stored keys are validated topics, so depth never exceeds
 * MOAT_MAX_TOPIC_LEVELS; matching uses a bounded stack (subscriptions) or
 * recursion bounded by that depth (retained) and never allocates. Callbacks
 * must not modify the tree they are called from.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/assert.h"
#include "core/limits.h"
#include "mqtt/topic.h"
#include "mqtt/trie.h"

/* Up to this many children a linear scan over one cache line or two beats
 * hashing the level. */
#define KIDS_DENSE_MAX 8u
/* Smallest hash table; a power of two. Kept at most half full. */
#define KIDS_TABLE_MIN 32u
/* Tables never grow past this (2^30 children of one node is not a fleet). */
#define KIDS_TABLE_MAX (1u << 30)

struct sub_entry {
	void *owner;
	void *value;
};

struct tnode {
	struct tnode *parent;
	struct tnode *plus;  /* '+' child (subscriptions only) */
	struct tnode *multi; /* '#' child (subscriptions only) */
	/* kcap <= KIDS_DENSE_MAX: nkids pointers, unordered.
	 * Otherwise: a table of kcap slots, NULL when free. */
	struct tnode **kids;
	uint32_t nkids;
	uint32_t kcap;
	struct sub_entry *ents; /* subscriptions ending here */
	uint32_t nents;
	uint32_t ecap;
	void *value; /* retained message (retained tree only) */
	uint32_t h;  /* keyed hash of key */
	uint16_t klen;
	char key[];
};

struct trie_core {
	struct tnode *root;
	size_t count;
	unsigned char hkey[crypto_shorthash_KEYBYTES];
};

struct moat_subtrie {
	struct trie_core c;
};

struct moat_rettree {
	struct trie_core c;
};

/* One level of the key being looked up; its hash is computed only if a
 * node on the way uses a table. */
struct level {
	const char *s;
	size_t len;
	uint32_t h;
	bool hashed;
};

_Static_assert(MOAT_MAX_TOPIC_LEN <= UINT16_MAX, "level length fits klen");

static uint32_t key_hash(const struct trie_core *c, const char *s, size_t n)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint32_t h;

	crypto_shorthash(out, (const unsigned char *)s, n, c->hkey);
	memcpy(&h, out, sizeof(h));
	return h;
}

static uint32_t level_hash(const struct trie_core *c, struct level *l)
{
	if (!l->hashed) {
		l->h = key_hash(c, l->s, l->len);
		l->hashed = true;
	}
	return l->h;
}

/* Split a validated topic or filter into levels; returns their number. */
static size_t levels_split(const char *s, size_t len, struct level *lv)
{
	size_t n = 0, start = 0, i;

	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != '/')
			continue;
		if (NEVER(n >= MOAT_MAX_TOPIC_LEVELS))
			break;
		lv[n].s = s + start;
		lv[n].len = i - start;
		lv[n].hashed = false;
		n++;
		start = i + 1;
	}
	return n;
}

static bool level_is(const struct level *l, char c)
{
	return l->len == 1 && l->s[0] == c;
}

static bool core_init(struct trie_core *c)
{
	if (sodium_init() < 0)
		return false;
	randombytes_buf(c->hkey, sizeof(c->hkey));
	c->count = 0;
	c->root = calloc(1, sizeof(*c->root));
	return c->root != NULL;
}

static struct tnode *node_new(const struct trie_core *c, struct tnode *parent,
			      const struct level *l)
{
	struct tnode *n = calloc(1, sizeof(*n) + l->len);

	if (n == NULL)
		return NULL;
	n->parent = parent;
	n->klen = (uint16_t)l->len;
	if (l->len)
		memcpy(n->key, l->s, l->len);
	n->h = key_hash(c, l->s, l->len);
	return n;
}

static bool kids_dense(const struct tnode *n)
{
	return n->kcap <= KIDS_DENSE_MAX;
}

/* Slots to scan when iterating children (NULL slots are skipped). */
static uint32_t kids_span(const struct tnode *n)
{
	return kids_dense(n) ? n->nkids : n->kcap;
}

static struct tnode *kids_find(const struct trie_core *c, const struct tnode *n, struct level *l)
{
	uint32_t i, mask;
	struct tnode *k;

	if (kids_dense(n)) {
		for (i = 0; i < n->nkids; i++) {
			k = n->kids[i];
			if (k->klen == l->len && memcmp(k->key, l->s, l->len) == 0)
				return k;
		}
		return NULL;
	}
	mask = n->kcap - 1;
	/* Terminates: the table is never more than half full. */
	for (i = level_hash(c, l) & mask;; i = (i + 1) & mask) {
		k = n->kids[i];
		if (k == NULL)
			return NULL;
		if (k->h == l->h && k->klen == l->len && memcmp(k->key, l->s, l->len) == 0)
			return k;
	}
}

static void table_put(struct tnode **tab, uint32_t cap, struct tnode *k)
{
	uint32_t mask = cap - 1, i;

	for (i = k->h & mask; tab[i] != NULL; i = (i + 1) & mask)
		;
	tab[i] = k;
}

/* Move n's children into a new array (cap <= KIDS_DENSE_MAX) or table. */
static moat_err kids_resize(struct tnode *n, uint32_t cap)
{
	struct tnode **nk = calloc(cap, sizeof(*nk));
	uint32_t i, span = kids_span(n), j = 0;

	if (nk == NULL)
		return MOAT_E_NOMEM;
	for (i = 0; i < span; i++) {
		struct tnode *k = n->kids[i];

		if (k == NULL)
			continue;
		if (cap <= KIDS_DENSE_MAX)
			nk[j++] = k;
		else
			table_put(nk, cap, k);
	}
	free(n->kids);
	n->kids = nk;
	n->kcap = cap;
	return MOAT_OK;
}

static moat_err kids_add(struct tnode *n, struct tnode *k)
{
	moat_err rc = MOAT_OK;

	if (kids_dense(n)) {
		if (n->nkids == n->kcap) {
			if (n->kcap < KIDS_DENSE_MAX)
				rc = kids_resize(n, n->kcap ? n->kcap * 2 : 2);
			else
				rc = kids_resize(n, KIDS_TABLE_MIN);
			if (rc != MOAT_OK)
				goto out;
		}
	} else if ((n->nkids + 1u) * 2u > n->kcap) {
		if (n->kcap >= KIDS_TABLE_MAX) {
			rc = MOAT_E_LIMIT;
			goto out;
		}
		if ((rc = kids_resize(n, n->kcap * 2)) != MOAT_OK)
			goto out;
	}
	if (kids_dense(n))
		n->kids[n->nkids] = k;
	else
		table_put(n->kids, n->kcap, k);
	n->nkids++;
out:
	return rc;
}

static void kids_del(struct tnode *n, struct tnode *k)
{
	uint32_t i, j, mask;

	if (kids_dense(n)) {
		for (i = 0; i < n->nkids && n->kids[i] != k; i++)
			;
		if (NEVER(i == n->nkids))
			return;
		n->kids[i] = n->kids[--n->nkids];
		if (n->nkids == 0) {
			free(n->kids);
			n->kids = NULL;
			n->kcap = 0;
		}
		return;
	}
	mask = n->kcap - 1;
	for (i = k->h & mask; n->kids[i] != k; i = (i + 1) & mask)
		if (NEVER(n->kids[i] == NULL))
			return;
	/* Backward-shift deletion: pull later members of the probe run into
	 * the hole unless their home slot lies cyclically in (hole, j]. */
	for (j = (i + 1) & mask; n->kids[j] != NULL; j = (j + 1) & mask) {
		uint32_t home = n->kids[j]->h & mask;
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);

		if (stays)
			continue;
		n->kids[i] = n->kids[j];
		i = j;
	}
	n->kids[i] = NULL;
	n->nkids--;
	/* Shrink with hysteresis (grow at 1/2 full, shrink below 1/8). A
	 * failed shrink leaves a valid, larger table. */
	if (n->nkids <= KIDS_DENSE_MAX / 2)
		(void)kids_resize(n, KIDS_DENSE_MAX);
	else if (n->kcap > KIDS_TABLE_MIN && n->nkids * 8u < n->kcap)
		(void)kids_resize(n, n->kcap / 2);
}

static bool node_empty(const struct tnode *n)
{
	return n->nkids == 0 && n->plus == NULL && n->multi == NULL && n->nents == 0 &&
	       n->value == NULL;
}

/* Free n and its empty ancestors (never the root). */
static void node_prune(struct tnode *n)
{
	while (n->parent != NULL && node_empty(n)) {
		struct tnode *p = n->parent;

		if (p->plus == n)
			p->plus = NULL;
		else if (p->multi == n)
			p->multi = NULL;
		else
			kids_del(p, n);
		free(n->kids);
		free(n->ents);
		free(n);
		n = p;
	}
}

/* Recursion depth is the depth of the tree, bounded by validated keys. */
static void node_free_all(struct tnode *n, void (*sub_cb)(void *, void *), void (*ret_cb)(void *))
{
	uint32_t i, span = kids_span(n);

	for (i = 0; i < span; i++)
		if (n->kids[i] != NULL)
			node_free_all(n->kids[i], sub_cb, ret_cb);
	if (n->plus != NULL)
		node_free_all(n->plus, sub_cb, ret_cb);
	if (n->multi != NULL)
		node_free_all(n->multi, sub_cb, ret_cb);
	if (sub_cb != NULL)
		for (i = 0; i < n->nents; i++)
			sub_cb(n->ents[i].owner, n->ents[i].value);
	if (ret_cb != NULL && n->value != NULL)
		ret_cb(n->value);
	free(n->kids);
	free(n->ents);
	free(n);
}

/* The node for the levels, or NULL. With create, missing nodes are added;
 * on failure the caller prunes from *last, the deepest node reached. */
static moat_err core_walk(struct trie_core *c, struct level *lv, size_t nlv, bool create,
			  struct tnode **out, struct tnode **last)
{
	struct tnode *n = c->root, *k;
	moat_err rc = MOAT_OK;
	size_t i;

	for (i = 0; i < nlv; i++) {
		struct tnode **slot = NULL;

		if (level_is(&lv[i], '+'))
			slot = &n->plus;
		else if (level_is(&lv[i], '#'))
			slot = &n->multi;
		k = slot != NULL ? *slot : kids_find(c, n, &lv[i]);
		if (k == NULL && !create) {
			rc = MOAT_E_NOTFOUND;
			goto out;
		}
		if (k == NULL) {
			if ((k = node_new(c, n, &lv[i])) == NULL) {
				rc = MOAT_E_NOMEM;
				goto out;
			}
			if (slot != NULL) {
				*slot = k;
			} else if ((rc = kids_add(n, k)) != MOAT_OK) {
				free(k);
				goto out;
			}
		}
		n = k;
	}
	*out = n;
out:
	*last = n;
	return rc;
}

struct moat_subtrie *moat_subtrie_new(void)
{
	struct moat_subtrie *t = calloc(1, sizeof(*t));

	if (t != NULL && !core_init(&t->c)) {
		free(t);
		t = NULL;
	}
	return t;
}

void moat_subtrie_free(struct moat_subtrie *t, void (*free_cb)(void *owner, void *value))
{
	if (t == NULL)
		return;
	node_free_all(t->c.root, free_cb, NULL);
	sodium_memzero(t->c.hkey, sizeof(t->c.hkey));
	free(t);
}

static uint32_t ents_find(const struct tnode *n, const void *owner)
{
	uint32_t i;

	for (i = 0; i < n->nents && n->ents[i].owner != owner; i++)
		;
	return i;
}

moat_err moat_subtrie_insert(struct moat_subtrie *t, const char *filter, size_t len, void *owner,
			     void *value, void **old)
{
	struct level lv[MOAT_MAX_TOPIC_LEVELS];
	struct tnode *n = NULL, *last = NULL;
	void *prev = NULL;
	moat_err rc = MOAT_E_INVAL;
	uint32_t i;

	if (t == NULL || !moat_topic_filter_valid(filter, len))
		goto out;
	rc = core_walk(&t->c, lv, levels_split(filter, len, lv), true, &n, &last);
	if (rc != MOAT_OK)
		goto out;
	i = ents_find(n, owner);
	if (i < n->nents) {
		prev = n->ents[i].value;
		n->ents[i].value = value;
		goto out;
	}
	if (n->nents == n->ecap) {
		uint32_t ncap = n->ecap ? n->ecap * 2 : 1;
		struct sub_entry *ne;

		if (n->ecap >= UINT32_MAX / 2) {
			rc = MOAT_E_LIMIT;
			goto out;
		}
		if ((ne = realloc(n->ents, ncap * sizeof(*ne))) == NULL) {
			rc = MOAT_E_NOMEM;
			goto out;
		}
		n->ents = ne;
		n->ecap = ncap;
	}
	n->ents[n->nents].owner = owner;
	n->ents[n->nents].value = value;
	n->nents++;
	t->c.count++;
out:
	if (rc == MOAT_OK && old != NULL)
		*old = prev;
	if (rc != MOAT_OK && last != NULL)
		node_prune(last);
	return rc;
}

moat_err moat_subtrie_remove(struct moat_subtrie *t, const char *filter, size_t len, void *owner,
			     void **old)
{
	struct level lv[MOAT_MAX_TOPIC_LEVELS];
	struct tnode *n = NULL, *last = NULL;
	void *prev = NULL;
	moat_err rc = MOAT_E_INVAL;
	uint32_t i;

	if (t == NULL || !moat_topic_filter_valid(filter, len))
		goto out;
	rc = core_walk(&t->c, lv, levels_split(filter, len, lv), false, &n, &last);
	if (rc != MOAT_OK)
		goto out;
	i = ents_find(n, owner);
	if (i == n->nents) {
		rc = MOAT_E_NOTFOUND;
		goto out;
	}
	prev = n->ents[i].value;
	n->ents[i] = n->ents[--n->nents];
	t->c.count--;
	if (n->nents == 0) {
		free(n->ents);
		n->ents = NULL;
		n->ecap = 0;
	} else if (n->nents * 4u < n->ecap) {
		/* Give back memory after a mass unsubscribe; a failed
		 * shrink keeps the old, valid array. */
		struct sub_entry *ne = realloc(n->ents, (n->ecap / 2) * sizeof(*ne));

		if (ne != NULL) {
			n->ents = ne;
			n->ecap /= 2;
		}
	}
	node_prune(n);
out:
	if (rc == MOAT_OK && old != NULL)
		*old = prev;
	return rc;
}

static void sub_report(const struct tnode *n, moat_subtrie_match_cb cb, void *ctx)
{
	uint32_t i;

	for (i = 0; i < n->nents; i++)
		cb(n->ents[i].owner, n->ents[i].value, ctx);
}

void moat_subtrie_match(const struct moat_subtrie *t, const char *topic, size_t len,
			moat_subtrie_match_cb cb, void *ctx)
{
	struct level lv[MOAT_MAX_TOPIC_LEVELS];
	/* Depth-first walk; at most one pending sibling per depth plus the
	 * two children just pushed (see the bound in the loop). */
	struct {
		const struct tnode *n;
		size_t depth;
	} stack[MOAT_MAX_TOPIC_LEVELS + 2];
	size_t nlv, sp = 0;
	bool dollar;

	if (t == NULL || cb == NULL || !moat_topic_name_valid(topic, len))
		return;
	nlv = levels_split(topic, len, lv);
	/* 4.7.2: '+' and '#' as the first level never match "$" topics. */
	dollar = topic[0] == '$';
	stack[sp].n = t->c.root;
	stack[sp++].depth = 0;
	while (sp > 0) {
		const struct tnode *n = stack[--sp].n, *k;
		size_t d = stack[sp].depth;

		if (d == nlv) {
			sub_report(n, cb, ctx);
			/* "a/#" also matches "a" (4.7.1.2). */
			if (n->multi != NULL)
				sub_report(n->multi, cb, ctx);
			continue;
		}
		if (NEVER(sp + 2 > MOAT_ARRAY_LEN(stack)))
			break;
		if (d > 0 || !dollar) {
			if (n->multi != NULL)
				sub_report(n->multi, cb, ctx);
			if (n->plus != NULL) {
				stack[sp].n = n->plus;
				stack[sp++].depth = d + 1;
			}
		}
		k = kids_find(&t->c, n, &lv[d]);
		if (k != NULL) {
			stack[sp].n = k;
			stack[sp++].depth = d + 1;
		}
	}
}

size_t moat_subtrie_count(const struct moat_subtrie *t)
{
	return t != NULL ? t->c.count : 0;
}

struct moat_rettree *moat_rettree_new(void)
{
	struct moat_rettree *t = calloc(1, sizeof(*t));

	if (t != NULL && !core_init(&t->c)) {
		free(t);
		t = NULL;
	}
	return t;
}

void moat_rettree_free(struct moat_rettree *t, void (*free_cb)(void *value))
{
	if (t == NULL)
		return;
	node_free_all(t->c.root, NULL, free_cb);
	sodium_memzero(t->c.hkey, sizeof(t->c.hkey));
	free(t);
}

moat_err moat_rettree_set(struct moat_rettree *t, const char *topic, size_t len, void *value,
			  void **old)
{
	struct level lv[MOAT_MAX_TOPIC_LEVELS];
	struct tnode *n = NULL, *last = NULL;
	void *prev = NULL;
	moat_err rc = MOAT_E_INVAL;

	if (t == NULL || !moat_topic_name_valid(topic, len))
		goto out;
	rc = core_walk(&t->c, lv, levels_split(topic, len, lv), value != NULL, &n, &last);
	if (rc == MOAT_E_NOTFOUND && value == NULL) {
		/* Clearing a topic that holds nothing is not an error. */
		rc = MOAT_OK;
		goto out;
	}
	if (rc != MOAT_OK)
		goto out;
	prev = n->value;
	n->value = value;
	if (prev == NULL && value != NULL)
		t->c.count++;
	else if (prev != NULL && value == NULL)
		t->c.count--;
	if (value == NULL)
		node_prune(n);
out:
	if (rc == MOAT_OK && old != NULL)
		*old = prev;
	if (rc != MOAT_OK && last != NULL)
		node_prune(last);
	return rc;
}

void *moat_rettree_get(const struct moat_rettree *t, const char *topic, size_t len)
{
	struct level lv[MOAT_MAX_TOPIC_LEVELS];
	size_t nlv, i;
	const struct tnode *n;

	if (t == NULL || !moat_topic_name_valid(topic, len))
		return NULL;
	nlv = levels_split(topic, len, lv);
	n = t->c.root;
	for (i = 0; i < nlv && n != NULL; i++)
		n = kids_find(&t->c, n, &lv[i]);
	return n != NULL ? n->value : NULL;
}

/* State of one rettree match: the filter's levels and the topic of the node
 * being visited, rebuilt from the keys on the way down. */
struct ret_walk {
	const struct trie_core *c;
	struct level lv[MOAT_MAX_TOPIC_LEVELS];
	size_t nlv;
	moat_rettree_match_cb cb;
	void *ctx;
	char topic[MOAT_MAX_TOPIC_LEN];
};

/* Append k's key to the topic of its parent (length plen, at depth d - 1);
 * returns the new length, or SIZE_MAX if it cannot be a stored topic. */
static size_t ret_path(struct ret_walk *w, size_t plen, const struct tnode *k, size_t d)
{
	size_t sep = d > 1 ? 1 : 0;

	if (NEVER(plen + sep + k->klen > sizeof(w->topic)))
		return SIZE_MAX;
	if (sep)
		w->topic[plen] = '/';
	memcpy(w->topic + plen + sep, k->key, k->klen);
	return plen + sep + k->klen;
}

static void ret_report(struct ret_walk *w, const struct tnode *n, size_t tlen)
{
	if (n->value != NULL)
		w->cb(w->topic, tlen, n->value, w->ctx);
}

/* Skip "$" topics under a leading wildcard (4.7.2). */
static bool ret_hidden(const struct tnode *k, size_t d)
{
	return d == 1 && k->klen > 0 && k->key[0] == '$';
}

/* Report n (at depth d, topic length tlen) and everything below it. */
static void ret_subtree(struct ret_walk *w, const struct tnode *n, size_t tlen, size_t d)
{
	uint32_t i, span = kids_span(n);

	ret_report(w, n, tlen);
	/* Stored topics have at most MOAT_MAX_TOPIC_LEVELS levels. */
	if (NEVER(d >= MOAT_MAX_TOPIC_LEVELS && n->nkids > 0))
		return;
	for (i = 0; i < span; i++) {
		const struct tnode *k = n->kids[i];
		size_t kl;

		if (k == NULL)
			continue;
		if ((kl = ret_path(w, tlen, k, d + 1)) != SIZE_MAX)
			ret_subtree(w, k, kl, d + 1);
	}
}

/* n matched filter levels [0, d); recursion depth is at most w->nlv. */
static void ret_match(struct ret_walk *w, const struct tnode *n, size_t tlen, size_t d)
{
	struct level *l;
	uint32_t i, span;
	const struct tnode *k;
	size_t kl;

	if (d == w->nlv) {
		ret_report(w, n, tlen);
		return;
	}
	l = &w->lv[d];
	if (level_is(l, '#') || level_is(l, '+')) {
		bool multi = level_is(l, '#');

		/* "a/#" matches "a"; the root is no topic. */
		if (multi && d > 0)
			ret_report(w, n, tlen);
		span = kids_span(n);
		for (i = 0; i < span; i++) {
			k = n->kids[i];
			if (k == NULL || ret_hidden(k, d + 1))
				continue;
			if ((kl = ret_path(w, tlen, k, d + 1)) == SIZE_MAX)
				continue;
			if (multi)
				ret_subtree(w, k, kl, d + 1);
			else
				ret_match(w, k, kl, d + 1);
		}
		return;
	}
	k = kids_find(w->c, n, l);
	if (k != NULL && (kl = ret_path(w, tlen, k, d + 1)) != SIZE_MAX)
		ret_match(w, k, kl, d + 1);
}

void moat_rettree_match(const struct moat_rettree *t, const char *filter, size_t len,
			moat_rettree_match_cb cb, void *ctx)
{
	struct ret_walk w;

	if (t == NULL || cb == NULL || !moat_topic_filter_valid(filter, len))
		return;
	w.c = &t->c;
	w.nlv = levels_split(filter, len, w.lv);
	w.cb = cb;
	w.ctx = ctx;
	ret_match(&w, t->c.root, 0, 0);
}

size_t moat_rettree_count(const struct moat_rettree *t)
{
	return t != NULL ? t->c.count : 0;
}
