/*
 * The audit log's hash chain, checkpoint signatures and verification.
 *
 * This file owns the two byte encodings a third party must reproduce (entry
 * hash, checkpoint message; both documented in audit.h) and the rules that
 * turn a damaged chain into "the first entry that can no longer be trusted".
 * It touches no files and no database: the caller hands in rows.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit/audit.h"
#include "core/assert.h"

/* Domain tags keep an entry hash from ever being mistaken for another
 * SHA-256 Moat computes, and a checkpoint signature from signing anything
 * else. The NUL is part of each tag. */
static const char ENTRY_TAG[] = "moat-audit-v1";
static const char CHECKPOINT_TAG[] = "moat-audit-checkpoint-v1";

#define CHECKPOINT_MSG_LEN (sizeof(CHECKPOINT_TAG) + 8u + 8u + MOAT_AUDIT_HASH_LEN)

static const uint8_t zero_hash[MOAT_AUDIT_HASH_LEN];

static void put_be64(uint8_t *p, int64_t v)
{
	uint64_t u = (uint64_t)v;
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (uint8_t)(u & 0xffu);
		u >>= 8;
	}
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void hash_str(crypto_hash_sha256_state *st, const char *s)
{
	uint8_t len[4];
	size_t n = s != NULL ? strlen(s) : 0;

	/* A string of 4 GiB cannot be stored in a row; if one ever reaches us
	 * hash a prefix rather than a wrapped (ambiguous) length. */
	if (NEVER(n > UINT32_MAX))
		n = UINT32_MAX;
	put_be32(len, (uint32_t)n);
	crypto_hash_sha256_update(st, len, sizeof(len));
	if (n > 0)
		crypto_hash_sha256_update(st, (const unsigned char *)s, n);
}

void moat_audit_entry_hash(const struct moat_audit_entry *e, uint8_t out[MOAT_AUDIT_HASH_LEN])
{
	crypto_hash_sha256_state st;
	uint8_t num[16];

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const unsigned char *)ENTRY_TAG, sizeof(ENTRY_TAG));
	put_be64(num, e->seq);
	put_be64(num + 8, e->ts_ms);
	crypto_hash_sha256_update(&st, num, sizeof(num));
	hash_str(&st, e->actor);
	hash_str(&st, e->action);
	hash_str(&st, e->target);
	hash_str(&st, e->outcome);
	hash_str(&st, e->peer);
	hash_str(&st, e->detail);
	crypto_hash_sha256_update(&st, e->prev, MOAT_AUDIT_HASH_LEN);
	crypto_hash_sha256_final(&st, out);
}

void moat_audit_chain(struct moat_audit_entry *e, const uint8_t prev[MOAT_AUDIT_HASH_LEN])
{
	memmove(e->prev, prev, MOAT_AUDIT_HASH_LEN);
	moat_audit_entry_hash(e, e->hash);
}

static void checkpoint_msg(const struct moat_audit_checkpoint *c, uint8_t msg[CHECKPOINT_MSG_LEN])
{
	memcpy(msg, CHECKPOINT_TAG, sizeof(CHECKPOINT_TAG));
	put_be64(msg + sizeof(CHECKPOINT_TAG), c->seq);
	put_be64(msg + sizeof(CHECKPOINT_TAG) + 8, c->ts_ms);
	memcpy(msg + sizeof(CHECKPOINT_TAG) + 16, c->head, MOAT_AUDIT_HASH_LEN);
}

void moat_audit_checkpoint_sign(struct moat_audit_checkpoint *c,
				const uint8_t sk[MOAT_AUDIT_SK_LEN])
{
	uint8_t msg[CHECKPOINT_MSG_LEN];

	/* Signing cannot fail otherwise; an all-zero signature never verifies,
	 * so a broken libsodium shows up as a bad checkpoint, not a silent gap. */
	if (sodium_init() < 0) {
		memset(c->sig, 0, sizeof(c->sig));
		return;
	}
	checkpoint_msg(c, msg);
	crypto_sign_detached(c->sig, NULL, msg, sizeof(msg), sk);
}

bool moat_audit_checkpoint_ok(const struct moat_audit_checkpoint *c,
			      const uint8_t pk[MOAT_AUDIT_PK_LEN])
{
	uint8_t msg[CHECKPOINT_MSG_LEN];

	if (sodium_init() < 0)
		return false;
	checkpoint_msg(c, msg);
	return crypto_sign_verify_detached(c->sig, msg, sizeof(msg), pk) == 0;
}

const char *moat_audit_fault_name(enum moat_audit_fault f)
{
	switch (f) {
	case MOAT_AUDIT_INTACT:
		return "intact";
	case MOAT_AUDIT_MODIFIED:
		return "modified";
	case MOAT_AUDIT_REMOVED:
		return "removed";
	case MOAT_AUDIT_REORDERED:
		return "reordered";
	case MOAT_AUDIT_TRUNCATED:
		return "truncated";
	case MOAT_AUDIT_BAD_CHECKPOINT:
		return "bad_checkpoint";
	}
	return "unknown";
}

/*
 * Verification.
 *
 * The walk keeps the seq it expects next and the prev that entry must carry.
 * The first row that breaks either, or whose content does not match its
 * hash, is an entry fault; the walk stops there because every later verdict
 * would depend on how the earlier damage is read. Checkpoints are then
 * judged only where they can still say something earlier than that fault.
 */

/* Every stored hash with its row, sorted, so "is this prev the hash of some
 * row in the log" is a binary search rather than a scan per row. */
struct hash_ix {
	uint8_t hash[MOAT_AUDIT_HASH_LEN];
	size_t row;
};

static int hash_ix_cmp(const void *a, const void *b)
{
	const struct hash_ix *x = a, *y = b;
	int c = memcmp(x->hash, y->hash, MOAT_AUDIT_HASH_LEN);

	if (c != 0)
		return c;
	return x->row < y->row ? -1 : x->row > y->row;
}

/* The lowest row other than `self` whose stored hash is h; n when none. */
static size_t hash_ix_find(const struct hash_ix *ix, size_t n, const uint8_t *h, size_t self)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (memcmp(ix[mid].hash, h, MOAT_AUDIT_HASH_LEN) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* Equal hashes are sorted by row: the first one not `self` is lowest. */
	for (; lo < n && memcmp(ix[lo].hash, h, MOAT_AUDIT_HASH_LEN) == 0; lo++) {
		if (ix[lo].row != self)
			return ix[lo].row;
	}
	return n;
}

static void report_fault(struct moat_audit_report *rep, enum moat_audit_fault f, int64_t seq,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void report_fault(struct moat_audit_report *rep, enum moat_audit_fault f, int64_t seq,
			 const char *fmt, ...)
{
	va_list ap;

	rep->fault = f;
	/* Garbage seq values must still name an entry an operator can find. */
	rep->first_bad_seq = seq < 1 ? 1 : seq;
	va_start(ap, fmt);
	vsnprintf(rep->reason, sizeof(rep->reason), fmt, ap);
	va_end(ap);
}

static bool row_hash_ok(const struct moat_audit_entry *r)
{
	uint8_t h[MOAT_AUDIT_HASH_LEN];

	moat_audit_entry_hash(r, h);
	return memcmp(h, r->hash, MOAT_AUDIT_HASH_LEN) == 0;
}

/* Rows i..n-1: does any carry seq s? Only asked once, at the fault. */
static bool seq_later(const struct moat_audit_entry *entries, size_t i, size_t n, int64_t s)
{
	for (; i < n; i++) {
		if (entries[i].seq == s)
			return true;
	}
	return false;
}

/* The walk over the rows; fills rep on the first fault and returns true. */
static bool walk_entries(const struct moat_audit_entry *entries, size_t n, const struct hash_ix *ix,
			 struct moat_audit_report *rep)
{
	const uint8_t *want_prev = zero_hash;
	int64_t e = 1;
	size_t i;

	for (i = 0; i < n; i++, e++) {
		const struct moat_audit_entry *r = &entries[i];
		size_t other;

		if (r->seq > e) {
			if (seq_later(entries, i + 1, n, e)) {
				report_fault(rep, MOAT_AUDIT_REORDERED, e,
					     "entry %" PRId64 " is out of order: entry %" PRId64
					     " comes before it",
					     e, r->seq);
			} else if (r->seq - e == 1) {
				report_fault(rep, MOAT_AUDIT_REMOVED, e,
					     "entry %" PRId64 " was removed", e);
			} else {
				report_fault(rep, MOAT_AUDIT_REMOVED, e,
					     "entries %" PRId64 " to %" PRId64 " were removed", e,
					     r->seq - 1);
			}
			return true;
		}
		if (r->seq < e) {
			report_fault(rep, MOAT_AUDIT_REORDERED, r->seq,
				     "entry %" PRId64 " appears again after entry %" PRId64
				     " (duplicated or out of order)",
				     r->seq, e - 1);
			return true;
		}
		if (memcmp(r->prev, want_prev, MOAT_AUDIT_HASH_LEN) != 0) {
			other = hash_ix_find(ix, n, r->prev, i);
			if (other < n && other + 1 < i) {
				/* It follows a row further back: the rows in between
				 * (already checked, so their seq is row + 1) were
				 * inserted or moved there. */
				report_fault(rep, MOAT_AUDIT_REORDERED, (int64_t)other + 2,
					     "entry %" PRId64 " follows entry %" PRId64
					     ", so the entries from %" PRId64
					     " on were inserted or moved",
					     e, (int64_t)other + 1, (int64_t)other + 2);
			} else if (other < n) {
				report_fault(rep, MOAT_AUDIT_REORDERED, e,
					     "entry %" PRId64
					     " is out of order: it links to a later entry "
					     "instead of entry %" PRId64,
					     e, e - 1);
			} else if (!row_hash_ok(r)) {
				/* Neither its link nor its content is intact: the
				 * shape of a removal with later rows renumbered. */
				report_fault(rep, MOAT_AUDIT_REMOVED, e,
					     "entry %" PRId64
					     " was removed (or rewritten): the entry "
					     "now at %" PRId64 " does not follow entry %" PRId64,
					     e, e, e - 1);
			} else if (e == 1) {
				report_fault(rep, MOAT_AUDIT_REMOVED, 1,
					     "entries before entry 1 were removed: it links to an "
					     "entry not in the log");
			} else {
				/* This row is self-consistent but links to a
				 * predecessor that no longer exists as stored: the
				 * predecessor was rewritten and re-hashed. */
				report_fault(rep, MOAT_AUDIT_MODIFIED, e - 1,
					     "entry %" PRId64 " was modified and re-hashed: entry "
					     "%" PRId64 " no longer links to it",
					     e - 1, e);
			}
			return true;
		}
		if (!row_hash_ok(r)) {
			report_fault(rep, MOAT_AUDIT_MODIFIED, e,
				     "entry %" PRId64
				     " was modified: its content does not match its hash",
				     e);
			return true;
		}
		want_prev = r->hash;
	}
	return false;
}

/*
 * Judge each checkpoint; keep the fault at the lowest seq, where an entry
 * fault already in rep wins a tie. `checked` is how many leading rows the
 * walk verified (seq i+1 at index i); `n` the rows passed in.
 */
static void judge_checkpoints(const struct moat_audit_entry *entries, size_t n, size_t checked,
			      const struct moat_audit_checkpoint *cps, size_t ncp,
			      const uint8_t *pk, struct moat_audit_report *rep)
{
	int64_t good = 0; /* highest seq a checkpoint seen so far confirmed */
	size_t j;

	for (j = 0; j < ncp; j++) {
		const struct moat_audit_checkpoint *c = &cps[j];
		bool faulty = rep->fault != MOAT_AUDIT_INTACT;
		int64_t at;

		if (c->seq < 1 || !moat_audit_checkpoint_ok(c, pk)) {
			at = c->seq < 1 ? 1 : c->seq;
			if (!faulty || at < rep->first_bad_seq) {
				report_fault(rep, MOAT_AUDIT_BAD_CHECKPOINT, at,
					     "the checkpoint for entry %" PRId64
					     " has an invalid signature (forged or damaged)",
					     c->seq);
			}
			continue;
		}
		rep->checkpoints++;
		if (c->seq > rep->sealed_seq)
			rep->sealed_seq = c->seq;
		if ((uint64_t)c->seq > (uint64_t)n) {
			at = (int64_t)n + 1;
			if (!faulty || at < rep->first_bad_seq) {
				report_fault(rep, MOAT_AUDIT_TRUNCATED, at,
					     "the log was truncated: it ends at entry %" PRId64
					     " but the checkpoint signed at ts_ms %" PRId64
					     " covers %" PRId64 " entries",
					     (int64_t)n, c->ts_ms, c->seq);
			}
			continue;
		}
		/* Only rows the walk verified have a known position; a
		 * checkpoint beyond them cannot report anything earlier. */
		if ((uint64_t)c->seq > (uint64_t)checked)
			continue;
		if (memcmp(entries[(size_t)(c->seq - 1)].hash, c->head, MOAT_AUDIT_HASH_LEN) == 0) {
			if (c->seq > good)
				good = c->seq;
			continue;
		}
		/* The chain up to c->seq is self-consistent yet ends in another
		 * head: it was rewritten from some entry on, and only the
		 * previous confirmed checkpoint bounds where. Everything after
		 * it is suspect. */
		at = (good < c->seq ? good : 0) + 1;
		if (!faulty || at < rep->first_bad_seq) {
			report_fault(
			    rep, MOAT_AUDIT_MODIFIED, at,
			    "entries %" PRId64 " to %" PRId64 " were rewritten: entry %" PRId64
			    " is not the one the checkpoint signed at ts_ms %" PRId64 " sealed",
			    at, c->seq, c->seq, c->ts_ms);
		}
	}
}

moat_err moat_audit_verify(const struct moat_audit_entry *entries, size_t n,
			   const struct moat_audit_checkpoint *cps, size_t ncp,
			   const uint8_t pk[MOAT_AUDIT_PK_LEN], struct moat_audit_report *rep)
{
	struct hash_ix *ix = NULL;
	size_t i, checked;
	moat_err rc = MOAT_E_INVAL;

	if (rep == NULL)
		goto out;
	memset(rep, 0, sizeof(*rep));
	if ((n > 0 && entries == NULL) || (ncp > 0 && (cps == NULL || pk == NULL))) {
		snprintf(rep->reason, sizeof(rep->reason), "invalid arguments");
		goto out;
	}
	rep->entries = n;
	if (n > 0) {
		rc = MOAT_E_NOMEM;
		if (n > SIZE_MAX / sizeof(*ix) || (ix = malloc(n * sizeof(*ix))) == NULL) {
			snprintf(rep->reason, sizeof(rep->reason), "out of memory");
			goto out;
		}
		for (i = 0; i < n; i++) {
			memcpy(ix[i].hash, entries[i].hash, MOAT_AUDIT_HASH_LEN);
			ix[i].row = i;
		}
		qsort(ix, n, sizeof(*ix), hash_ix_cmp);
	}
	checked = n;
	if (walk_entries(entries, n, ix, rep))
		checked = (size_t)(rep->first_bad_seq - 1);
	judge_checkpoints(entries, n, checked, cps, ncp, pk, rep);
	if ((uint64_t)n > (uint64_t)rep->sealed_seq)
		rep->unsealed = n - (size_t)rep->sealed_seq;
	if (rep->fault == MOAT_AUDIT_INTACT) {
		snprintf(rep->reason, sizeof(rep->reason),
			 "%zu entries intact, %zu sealed by checkpoints; %zu after the last "
			 "checkpoint",
			 n, (size_t)rep->sealed_seq, rep->unsealed);
		rc = MOAT_OK;
	} else {
		rc = MOAT_E_CORRUPT;
	}
out:
	free(ix);
	return rc;
}
