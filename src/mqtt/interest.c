/* The interest filter of a worker; see interest.h. */
#include <string.h>

#include <sodium.h>

#include "mqtt/interest.h"

#define SLOT_MASK ((1u << MOAT_INTEREST_SLOTS_LOG2) - 1u)

enum key_kind { KEY_PREFIX = 1, KEY_EXACT = 2 };

/* FNV-1a over the prefix bytes, seeded; the level count and the kind are
 * mixed in at the end (fmix64), so "" at level 0 and "" at level 1 differ. */
static uint64_t bytes_hash(uint64_t h, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (uint8_t)p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t key_final(uint64_t h, unsigned levels, enum key_kind kind)
{
	h ^= ((uint64_t)levels << 8) | (uint64_t)kind;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static uint64_t key_hash(const struct moat_interest *in, const char *p, size_t n, unsigned levels,
			 enum key_kind kind)
{
	return key_final(bytes_hash(in->seed, p, n), levels, kind);
}

static void slots(uint64_t h, uint32_t *a, uint32_t *b)
{
	*a = (uint32_t)h & SLOT_MASK;
	*b = (uint32_t)(h >> 32) & SLOT_MASK;
	if (*b == *a)
		*b = (*a + 1u) & SLOT_MASK;
}

void moat_interest_init(struct moat_interest *in)
{
	size_t i;

	randombytes_buf(&in->seed, sizeof(in->seed));
	in->seed ^= 0xcbf29ce484222325ull;
	for (i = 0; i <= SLOT_MASK; i++)
		atomic_init(&in->slot[i], 0);
}

/* The one key of a filter (see interest.h). */
static uint64_t filter_key(const struct moat_interest *in, const char *f, size_t len)
{
	size_t start = 0;
	unsigned level = 0;

	for (;;) {
		size_t end = start;
		while (end < len && f[end] != '/')
			end++;
		if ((end - start == 1) && (f[start] == '+' || f[start] == '#'))
			/* the levels before the wildcard, and anything after */
			return key_hash(in, f, start ? start - 1 : 0, level, KEY_PREFIX);
		level++;
		if (end == len)
			return key_hash(in, f, len, level, KEY_EXACT);
		if (level == MOAT_INTEREST_LEVELS)
			return key_hash(in, f, end, level, KEY_PREFIX);
		start = end + 1;
	}
}

static void adjust(struct moat_interest *in, const char *filter, size_t len, int delta)
{
	uint32_t a, b;

	slots(filter_key(in, filter, len), &a, &b);
	if (delta > 0) {
		atomic_fetch_add_explicit(&in->slot[a], 1, memory_order_release);
		atomic_fetch_add_explicit(&in->slot[b], 1, memory_order_release);
	} else {
		atomic_fetch_sub_explicit(&in->slot[a], 1, memory_order_release);
		atomic_fetch_sub_explicit(&in->slot[b], 1, memory_order_release);
	}
}

void moat_interest_add(struct moat_interest *in, const char *filter, size_t len)
{
	adjust(in, filter, len, 1);
}

void moat_interest_remove(struct moat_interest *in, const char *filter, size_t len)
{
	adjust(in, filter, len, -1);
}

static bool probe(const struct moat_interest *in, uint64_t h)
{
	uint32_t a, b;

	slots(h, &a, &b);
	return atomic_load_explicit(&in->slot[a], memory_order_acquire) != 0 &&
	       atomic_load_explicit(&in->slot[b], memory_order_acquire) != 0;
}

bool moat_interest_may_match(const struct moat_interest *in, const char *topic, size_t len)
{
	uint64_t h = in->seed; /* FNV state over topic[0..pos) */
	size_t pos = 0, end;
	unsigned level = 0;

	/* Prefixes of 0..MOAT_INTEREST_LEVELS levels, each followed by any. */
	for (;;) {
		if (probe(in, key_final(h, level, KEY_PREFIX)))
			return true;
		if (level == MOAT_INTEREST_LEVELS)
			return false;
		end = pos;
		while (end < len && topic[end] != '/')
			end++;
		/* The prefix of level + 1 levels: topic[0..end). Its hash
		 * continues from the previous prefix's, plus the separator. */
		if (level > 0)
			h = bytes_hash(h, "/", 1);
		h = bytes_hash(h, topic + pos, end - pos);
		level++;
		if (end == len)
			/* The whole topic: an exact filter, or a wildcard after
			 * its last level ("a/#" matches "a"). */
			return probe(in, key_final(h, level, KEY_EXACT)) ||
			       probe(in, key_final(h, level, KEY_PREFIX));
		pos = end + 1;
	}
}
