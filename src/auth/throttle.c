/*
 * The login throttle table: a fixed array of entries kept dense (e[0..n)),
 * indexed by an open-addressing hash table of entry numbers with linear
 * probing and backward-shift deletion, sized to twice max_keys so probes
 * stay short. Keys are chosen by whoever is logging in, so the hash is
 * SipHash with a random key: nobody can make their keys collide to turn
 * lookups into scans. Eviction when full is an O(n) scan for the oldest
 * failure; it happens only when a new key arrives at a full table.
 *
 * The login throttle on top combines three keys per attempt (see
 * throttle.h): the (account, address) pair and the address in one table,
 * the account, with its larger budget, in another.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth/throttle.h"
#include "core/assert.h"

#define NOT_FOUND SIZE_MAX

/* A SHA-256 hex digest stands in for a key longer than the maximum. */
_Static_assert(MOAT_THROTTLE_KEY_MAX >= 2u * crypto_hash_sha256_BYTES, "hashed key fits");
_Static_assert(crypto_shorthash_BYTES == sizeof(uint64_t), "SipHash output is 64 bits");

struct throttle_entry {
	uint64_t hash;
	uint64_t last_fail_ms;
	uint64_t until_ms; /* no attempt before this */
	uint32_t failures;
	char key[MOAT_THROTTLE_KEY_MAX + 1];
};

struct moat_throttle {
	struct throttle_entry *e; /* e[0..n) in use */
	uint32_t *slot;		  /* entry number + 1; 0 = empty */
	size_t n, max, mask;
	uint32_t free_failures; /* failures before the first wait */
	uint64_t forget_ms;	/* a key with no failure this long starts again */
	uint8_t hkey[crypto_shorthash_KEYBYTES];
};

/* The login throttle: (account, address) pairs and addresses in one table,
 * accounts in their own, so a flood of pairs cannot evict an account's
 * count. */
struct moat_login_throttle {
	struct moat_throttle *keys;	/* "p" addr 0x1f account, "a" addr */
	struct moat_throttle *accounts; /* account names */
};

static struct moat_throttle *throttle_create(size_t max_keys, uint32_t free_failures,
					     uint64_t forget_ms)
{
	struct moat_throttle *t = NULL;
	size_t cap = 1;

	if (max_keys < MOAT_THROTTLE_KEYS_MIN || max_keys > MOAT_THROTTLE_KEYS_MAX)
		return NULL;
	if (sodium_init() < 0)
		return NULL;
	while (cap < 2 * max_keys)
		cap <<= 1;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		goto fail;
	t->e = calloc(max_keys, sizeof(*t->e));
	t->slot = calloc(cap, sizeof(*t->slot));
	if (t->e == NULL || t->slot == NULL)
		goto fail;
	t->max = max_keys;
	t->mask = cap - 1;
	t->free_failures = free_failures;
	t->forget_ms = forget_ms;
	crypto_shorthash_keygen(t->hkey);
	return t;
fail:
	moat_throttle_free(t);
	return NULL;
}

struct moat_throttle *moat_throttle_new(size_t max_keys)
{
	return throttle_create(max_keys, MOAT_THROTTLE_FREE_FAILURES, MOAT_THROTTLE_FORGET_MS);
}

void moat_throttle_free(struct moat_throttle *t)
{
	if (t == NULL)
		return;
	free(t->e);
	free(t->slot);
	sodium_memzero(t->hkey, sizeof(t->hkey));
	free(t);
}

size_t moat_throttle_count(const struct moat_throttle *t)
{
	return t != NULL ? t->n : 0;
}

/* The key as stored: itself if short enough, else its SHA-256 in hex. */
static void key_form(const char *key, char out[MOAT_THROTTLE_KEY_MAX + 1])
{
	uint8_t d[crypto_hash_sha256_BYTES];
	size_t n = strnlen(key, MOAT_THROTTLE_KEY_MAX + 1);

	if (n <= MOAT_THROTTLE_KEY_MAX) {
		memcpy(out, key, n);
		out[n] = '\0';
		return;
	}
	crypto_hash_sha256(d, (const unsigned char *)key, strlen(key));
	sodium_bin2hex(out, MOAT_THROTTLE_KEY_MAX + 1, d, sizeof(d));
}

static uint64_t key_hash(const struct moat_throttle *t, const char *k)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, (const unsigned char *)k, strlen(k), t->hkey);
	memcpy(&v, h, sizeof(v));
	return v;
}

/* The entry number of k, or NOT_FOUND; *pos is its slot, or the empty slot
 * where it would go. Terminates: the table is never more than half full. */
static size_t find(const struct moat_throttle *t, const char *k, uint64_t h, size_t *pos)
{
	size_t i = (size_t)h & t->mask;
	uint32_t s;

	while ((s = t->slot[i]) != 0) {
		const struct throttle_entry *e = &t->e[s - 1];

		if (e->hash == h && strcmp(e->key, k) == 0) {
			*pos = i;
			return s - 1;
		}
		i = (i + 1) & t->mask;
	}
	*pos = i;
	return NOT_FOUND;
}

/* Remove the entry at slot pos, keeping probe chains unbroken (backward
 * shift) and the entry array dense (the last entry fills the hole). */
static void remove_at(struct moat_throttle *t, size_t pos)
{
	size_t idx = t->slot[pos] - 1u, i = pos, j = pos, home, last;

	for (;;) {
		j = (j + 1) & t->mask;
		if (t->slot[j] == 0)
			break;
		home = (size_t)t->e[t->slot[j] - 1].hash & t->mask;
		/* The entry at j may move back to i unless its home lies
		 * (cyclically) in (i, j]. */
		if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
			t->slot[i] = t->slot[j];
			i = j;
		}
	}
	t->slot[i] = 0;

	last = --t->n;
	if (idx != last) {
		t->e[idx] = t->e[last];
		i = (size_t)t->e[idx].hash & t->mask;
		while (t->slot[i] != last + 1)
			i = (i + 1) & t->mask;
		t->slot[i] = (uint32_t)(idx + 1);
	}
}

static bool expired(const struct moat_throttle *t, const struct throttle_entry *e, uint64_t now_ms)
{
	/* A clock that went backwards does not forgive anything. */
	return now_ms >= e->last_fail_ms && now_ms - e->last_fail_ms >= t->forget_ms;
}

static void evict_oldest(struct moat_throttle *t)
{
	size_t i, oldest = 0, pos;

	for (i = 1; i < t->n; i++) {
		if (t->e[i].last_fail_ms < t->e[oldest].last_fail_ms)
			oldest = i;
	}
	if (ALWAYS(find(t, t->e[oldest].key, t->e[oldest].hash, &pos) == oldest))
		remove_at(t, pos);
}

uint64_t moat_throttle_wait_ms(struct moat_throttle *t, const char *key, uint64_t now_ms)
{
	char k[MOAT_THROTTLE_KEY_MAX + 1];
	const struct throttle_entry *e;
	size_t idx, pos;

	if (NEVER(t == NULL || key == NULL))
		return 0;
	key_form(key, k);
	idx = find(t, k, key_hash(t, k), &pos);
	if (idx == NOT_FOUND)
		return 0;
	e = &t->e[idx];
	if (expired(t, e, now_ms)) {
		remove_at(t, pos);
		return 0;
	}
	return e->until_ms > now_ms ? e->until_ms - now_ms : 0;
}

/* The wait after the n-th failure in a row. */
static uint64_t wait_after(const struct moat_throttle *t, uint32_t failures)
{
	uint32_t k;

	if (failures <= t->free_failures)
		return 0;
	k = failures - t->free_failures - 1;
	/* 2^20 s is far past the cap; stop shifting before it overflows. */
	if (k >= 20)
		return MOAT_THROTTLE_MAX_WAIT_MS;
	return (((uint64_t)MOAT_THROTTLE_BASE_WAIT_MS << k) < MOAT_THROTTLE_MAX_WAIT_MS)
		   ? (uint64_t)MOAT_THROTTLE_BASE_WAIT_MS << k
		   : MOAT_THROTTLE_MAX_WAIT_MS;
}

void moat_throttle_fail(struct moat_throttle *t, const char *key, uint64_t now_ms)
{
	char k[MOAT_THROTTLE_KEY_MAX + 1];
	struct throttle_entry *e;
	size_t idx, pos;
	uint64_t h, wait;

	if (NEVER(t == NULL || key == NULL))
		return;
	key_form(key, k);
	h = key_hash(t, k);
	idx = find(t, k, h, &pos);
	if (idx == NOT_FOUND) {
		if (t->n == t->max) {
			evict_oldest(t);
			/* The deletion may have shifted slots: probe again. */
			idx = find(t, k, h, &pos);
			if (NEVER(idx != NOT_FOUND))
				return;
		}
		idx = t->n++;
		e = &t->e[idx];
		memset(e, 0, sizeof(*e));
		e->hash = h;
		memcpy(e->key, k, strlen(k) + 1);
		t->slot[pos] = (uint32_t)(idx + 1);
	} else {
		e = &t->e[idx];
		if (expired(t, e, now_ms)) {
			e->failures = 0;
			e->until_ms = 0;
		}
	}
	if (e->failures < UINT32_MAX)
		e->failures++;
	e->last_fail_ms = now_ms;
	wait = wait_after(t, e->failures);
	if (wait > 0)
		e->until_ms = now_ms > UINT64_MAX - wait ? UINT64_MAX : now_ms + wait;
}

void moat_throttle_success(struct moat_throttle *t, const char *key)
{
	char k[MOAT_THROTTLE_KEY_MAX + 1];
	size_t pos;

	if (NEVER(t == NULL || key == NULL))
		return;
	key_form(key, k);
	if (find(t, k, key_hash(t, k), &pos) != NOT_FOUND)
		remove_at(t, pos);
}

/* --- the login throttle --- */

struct moat_login_throttle *moat_login_throttle_new(size_t max_keys)
{
	struct moat_login_throttle *lt = calloc(1, sizeof(*lt));

	if (lt == NULL)
		return NULL;
	lt->keys = moat_throttle_new(max_keys);
	lt->accounts = throttle_create(max_keys, MOAT_THROTTLE_ACCOUNT_FREE_FAILURES,
				       MOAT_THROTTLE_ACCOUNT_FORGET_MS);
	if (lt->keys == NULL || lt->accounts == NULL) {
		moat_login_throttle_free(lt);
		return NULL;
	}
	return lt;
}

void moat_login_throttle_free(struct moat_login_throttle *lt)
{
	if (lt == NULL)
		return;
	moat_throttle_free(lt->keys);
	moat_throttle_free(lt->accounts);
	free(lt);
}

/* The keys of an attempt: "p" addr US account and "a" addr. An address
 * never holds the unit separator (0x1f), so no two pairs share a key; keys
 * longer than the maximum are tracked by their SHA-256 (key_form). */
static void pair_key(const char *account, const char *addr, char *out, size_t outlen)
{
	size_t na = strlen(addr), nu = strlen(account), n = 0;

	if (NEVER(outlen < 2))
		return;
	out[n++] = 'p';
	na = na < outlen - n - 1 ? na : outlen - n - 1;
	memcpy(out + n, addr, na);
	n += na;
	if (n < outlen - 1)
		out[n++] = 0x1f;
	nu = nu < outlen - n - 1 ? nu : outlen - n - 1;
	memcpy(out + n, account, nu);
	n += nu;
	out[n] = '\0';
}

static void addr_key(const char *addr, char *out, size_t outlen)
{
	size_t na = strlen(addr);

	if (NEVER(outlen < 2))
		return;
	out[0] = 'a';
	na = na < outlen - 2 ? na : outlen - 2;
	memcpy(out + 1, addr, na);
	out[1 + na] = '\0';
}

/* Room for "p", an address of up to 128 bytes, the separator and a user
 * name of up to 1024: longer inputs are cut, which only merges keys of
 * inputs the API refuses anyway. */
#define LOGIN_KEY_MAX (2u + 128u + 1024u + 1u)

uint64_t moat_login_throttle_wait_ms(struct moat_login_throttle *lt, const char *account,
				     const char *addr, uint64_t now_ms)
{
	char k[LOGIN_KEY_MAX];
	uint64_t w, wait;

	if (NEVER(lt == NULL || account == NULL || addr == NULL))
		return 0;
	pair_key(account, addr, k, sizeof(k));
	wait = moat_throttle_wait_ms(lt->keys, k, now_ms);
	addr_key(addr, k, sizeof(k));
	w = moat_throttle_wait_ms(lt->keys, k, now_ms);
	wait = w > wait ? w : wait;
	w = moat_throttle_wait_ms(lt->accounts, account, now_ms);
	return w > wait ? w : wait;
}

void moat_login_throttle_fail(struct moat_login_throttle *lt, const char *account, const char *addr,
			      uint64_t now_ms)
{
	char k[LOGIN_KEY_MAX];

	if (NEVER(lt == NULL || account == NULL || addr == NULL))
		return;
	pair_key(account, addr, k, sizeof(k));
	moat_throttle_fail(lt->keys, k, now_ms);
	addr_key(addr, k, sizeof(k));
	moat_throttle_fail(lt->keys, k, now_ms);
	moat_throttle_fail(lt->accounts, account, now_ms);
}

void moat_login_throttle_success(struct moat_login_throttle *lt, const char *account,
				 const char *addr)
{
	char k[LOGIN_KEY_MAX];

	if (NEVER(lt == NULL || account == NULL || addr == NULL))
		return;
	/* The address keeps its count: a success on an account of one's own
	 * must not reset the guessing of others' from the same address. */
	pair_key(account, addr, k, sizeof(k));
	moat_throttle_success(lt->keys, k);
	moat_throttle_success(lt->accounts, account);
}
