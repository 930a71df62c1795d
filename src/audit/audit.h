/*
 * The tamper-evident audit log: the pure logic, no database.
 *
 * Every entry carries the SHA-256 hash of its predecessor (`prev`) and its own
 * hash over a canonical encoding, so the rows form a hash chain. Every so
 * often the daemon signs the head of the chain with an Ed25519 key (a
 * checkpoint). Verification walks rows the caller loaded (SELECT ... ORDER BY
 * seq) and names the FIRST entry at which the log was modified, removed,
 * reordered or truncated. docs/audit.md explains the model and its limits for
 * operators and for anyone who wants to re-implement verification.
 *
 * Entry hash (all integers big-endian, two's complement):
 *
 *     SHA-256( "moat-audit-v1" 0x00               14 bytes, domain tag
 *              seq                                 8 bytes
 *              ts_ms                               8 bytes
 *              len(actor)   actor                  4 bytes + bytes
 *              len(action)  action                 4 bytes + bytes
 *              len(target)  target                 4 bytes + bytes
 *              len(outcome) outcome                4 bytes + bytes
 *              len(peer)    peer                   4 bytes + bytes
 *              len(detail)  detail                 4 bytes + bytes
 *              prev )                             32 bytes
 *
 * Strings are hashed as their bytes without the terminating NUL; a NULL
 * pointer is hashed as "" (length 0). `prev` is 32 zero bytes for seq 1.
 *
 * Checkpoint signature: Ed25519 (libsodium crypto_sign_detached, pure
 * Ed25519, no prehash) over the 73-byte message
 *
 *     "moat-audit-checkpoint-v1" 0x00   25 bytes
 *     seq                               8 bytes
 *     ts_ms                             8 bytes
 *     head                             32 bytes (hash of entry seq)
 *
 * Key files in the data directory, both text: lines starting with '#' are
 * comments; the one other line is standard base64 (RFC 4648 section 4, with
 * padding) of the key:
 *   audit.key  mode 0600: the 64-byte libsodium Ed25519 secret key
 *              (32-byte seed followed by the 32-byte public key);
 *   audit.pub  mode 0644: the 32-byte Ed25519 public key.
 */
#ifndef MOAT_AUDIT_H
#define MOAT_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
/* Writers need MOAT_AUDIT_DETAIL_MAX and the checkpoint cadence. */
#include "core/limits.h"

#define MOAT_AUDIT_HASH_LEN 32
#define MOAT_AUDIT_SIG_LEN 64
#define MOAT_AUDIT_SK_LEN 64
#define MOAT_AUDIT_PK_LEN 32

struct moat_audit_entry {
	int64_t seq;	     /* 1, 2, 3 ... consecutive */
	int64_t ts_ms;	     /* wall clock ms since the epoch, UTC */
	const char *actor;   /* "user:alice", "token:ab12", "device:x", "system", "anonymous" */
	const char *action;  /* "auth.login", "user.create", "mqtt.policy_denied" ... */
	const char *target;  /* may be "" */
	const char *outcome; /* "ok", "denied", "failed", "error" */
	const char *peer;    /* client address or "" */
	const char *detail;  /* compact JSON object text, may be "{}" */
	uint8_t prev[MOAT_AUDIT_HASH_LEN]; /* hash of entry seq-1; all zero for seq 1 */
	uint8_t hash[MOAT_AUDIT_HASH_LEN]; /* hash of this entry */
};

struct moat_audit_checkpoint {
	int64_t seq; /* the entry it seals (the head at signing time); entries 1..seq */
	int64_t ts_ms;
	uint8_t head[MOAT_AUDIT_HASH_LEN]; /* hash of entry seq */
	uint8_t sig[MOAT_AUDIT_SIG_LEN];   /* Ed25519 over the checkpoint message */
};

enum moat_audit_fault {
	MOAT_AUDIT_INTACT = 0,
	MOAT_AUDIT_MODIFIED,	   /* an entry's content was changed (re-hashed or not) */
	MOAT_AUDIT_REMOVED,	   /* entries are missing from the middle or the start */
	MOAT_AUDIT_REORDERED,	   /* entries are out of place, duplicated or inserted */
	MOAT_AUDIT_TRUNCATED,	   /* entries a valid checkpoint sealed are gone from the end */
	MOAT_AUDIT_BAD_CHECKPOINT, /* a checkpoint's signature does not verify */
};

struct moat_audit_report {
	enum moat_audit_fault fault;
	int64_t first_bad_seq; /* the first entry (seq) at which the log stops being
				* trustworthy; 0 if intact */
	char reason[256];      /* one sentence for an operator */
	size_t entries;	       /* rows examined (all rows passed in) */
	size_t checkpoints;    /* checkpoints whose signature verifies */
	int64_t sealed_seq;    /* last seq covered by a valid checkpoint; 0 if none */
	size_t unsealed;       /* entries after sealed_seq: their truncation cannot be
				* proven without an external anchor */
};

/* Hash of entry e over the encoding above, using e->prev as stored. */
void moat_audit_entry_hash(const struct moat_audit_entry *e, uint8_t out[MOAT_AUDIT_HASH_LEN]);

/* Link e after its predecessor: e->prev = prev (32 zero bytes for seq 1),
 * then e->hash = moat_audit_entry_hash(e). The caller sets every other field
 * first and stores the entry exactly as hashed. */
void moat_audit_chain(struct moat_audit_entry *e, const uint8_t prev[MOAT_AUDIT_HASH_LEN]);

/*
 * Generate a key pair and write dir/audit.key (0600) and dir/audit.pub
 * (0644). Both are created exclusively and without following symlinks: an
 * existing key is never overwritten (MOAT_E_EXISTS). On failure neither file
 * is left behind. err receives one line on failure.
 */
moat_err moat_audit_key_create(const char *dir, char *err, size_t errlen);

/*
 * Load dir/audit.key and dir/audit.pub for signing. Refuses a key file that
 * is a symlink, not a regular file, or accessible by group or others
 * (MOAT_E_PERM, with the chmod that fixes it in err). MOAT_E_CRYPTO when the
 * secret key is damaged (its public half does not follow from its seed) or
 * does not match audit.pub; MOAT_E_MALFORMED when a file is not a key file.
 * sk and pk are written only on success; the caller wipes sk with
 * sodium_memzero when done.
 */
moat_err moat_audit_key_load(const char *dir, uint8_t sk[MOAT_AUDIT_SK_LEN],
			     uint8_t pk[MOAT_AUDIT_PK_LEN], char *err, size_t errlen);

/*
 * The sealing key (not an audit key, but kept in the same file format with
 * the same checks): dir/seal.key, mode 0600, one line of base64 of 32
 * random bytes. create makes it exclusively (MOAT_E_EXISTS when there is
 * one); load refuses what moat_audit_key_load refuses. Only `moat init`
 * and the key process (pki/ca.h) call them. key is written only on
 * success; the caller wipes it.
 */
#define MOAT_SEAL_KEY_LEN 32
moat_err moat_seal_key_create(const char *dir, char *err, size_t errlen);
moat_err moat_seal_key_load(const char *dir, uint8_t key[MOAT_SEAL_KEY_LEN], char *err,
			    size_t errlen);

/* Load a public key file (audit.pub or an operator's copy of it) for offline
 * verification. pk is written only on success. */
moat_err moat_audit_pub_load(const char *path, uint8_t pk[MOAT_AUDIT_PK_LEN], char *err,
			     size_t errlen);

/* Sign the checkpoint: c->seq, c->ts_ms and c->head must be set; fills c->sig. */
void moat_audit_checkpoint_sign(struct moat_audit_checkpoint *c,
				const uint8_t sk[MOAT_AUDIT_SK_LEN]);

/* Whether c->sig is pk's signature over c's seq, ts_ms and head. */
bool moat_audit_checkpoint_ok(const struct moat_audit_checkpoint *c,
			      const uint8_t pk[MOAT_AUDIT_PK_LEN]);

/*
 * Verify n entries (ascending stored seq, as SELECT ... ORDER BY seq returns
 * them) against each other and against ncp checkpoints (ascending seq) signed
 * by pk. Fills *rep in all cases but invalid arguments.
 *
 * Returns MOAT_OK when the log is intact, MOAT_E_CORRUPT when a fault was
 * found (rep says which, and at which entry first), MOAT_E_NOMEM, or
 * MOAT_E_INVAL for NULL arguments. Among several faults the one at the
 * lowest seq is reported; at the same seq an entry fault wins over a
 * checkpoint fault. The rules are in docs/audit.md ("Verification").
 *
 * Entries after the last valid checkpoint (rep->unsealed) are checked
 * against each other, but dropping them from the end leaves a log that
 * verifies: truncation after the last checkpoint cannot be proven offline
 * without an anchor kept elsewhere (an exported checkpoint).
 */
moat_err moat_audit_verify(const struct moat_audit_entry *entries, size_t n,
			   const struct moat_audit_checkpoint *cps, size_t ncp,
			   const uint8_t pk[MOAT_AUDIT_PK_LEN], struct moat_audit_report *rep);

/* "intact", "modified", "removed", "reordered", "truncated", "bad_checkpoint";
 * "unknown" for anything else. */
const char *moat_audit_fault_name(enum moat_audit_fault f);

/*
 * One entry as a compact JSON object (one line of a JSON-lines export), keys
 * in this order: seq, ts (RFC 3339 UTC with milliseconds), ts_ms, actor,
 * action, target, outcome, peer, detail, prev, hash (lowercase hex).
 *
 * detail is embedded as an object when it is a JSON object whose compact
 * re-serialisation is byte for byte the stored text (true of every detail
 * Moat writes), otherwise as a string, so the exported line always carries
 * the exact hashed bytes. Strings that are not valid UTF-8 have each bad byte
 * replaced by U+FFFD (such an entry cannot be re-verified from the export).
 * *out is set only on success; free it with free().
 */
moat_err moat_audit_entry_json(const struct moat_audit_entry *e, char **out);

#endif
