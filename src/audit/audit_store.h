/*
 * The audit log in the store: the appender the management thread owns (one
 * writer, so the chain head lives in memory), signed checkpoints, and the
 * offline verification and export `moat audit` runs on a data directory.
 */
#ifndef MOAT_AUDIT_STORE_H
#define MOAT_AUDIT_STORE_H

#include <stdio.h>

#include "audit/audit.h"
#include "store/store.h"

/* Sign a checkpoint: fill c->sig for c->seq, c->ts_ms and c->head. In
 * `moat serve` the key process does it (moat_ca_audit_sign, pki/ca.h): the
 * serving process never holds audit.key. */
typedef moat_err (*moat_audit_sign_cb)(void *arg, struct moat_audit_checkpoint *c);

/* Offline commands (`moat cert issue`) sign with the key file itself: they
 * are short-lived and run as the data directory's owner; the long-running
 * serving process never does. open loads DIR/audit.key (the checks of
 * moat_audit_key_load); close wipes it. moat_audit_file_sign is the
 * moat_audit_sign_cb to pass with it. */
struct moat_audit_file_signer {
	uint8_t sk[MOAT_AUDIT_SK_LEN];
};
moat_err moat_audit_file_signer_open(struct moat_audit_file_signer *fs, const char *dir, char *err,
				     size_t errlen);
moat_err moat_audit_file_sign(void *arg, struct moat_audit_checkpoint *c);
void moat_audit_file_signer_close(struct moat_audit_file_signer *fs);

struct moat_audit_log {
	struct moat_store *store;
	moat_audit_sign_cb sign;
	void *sign_arg;
	uint8_t pk[MOAT_AUDIT_PK_LEN]; /* dir/audit.pub: every signature is checked */
	int64_t seq;		       /* last appended entry, 0 for none */
	uint8_t head[MOAT_AUDIT_HASH_LEN];
	int64_t sealed_seq; /* last checkpoint (every entry is sealed as it is written) */
	uint64_t appended;  /* entries appended since start (metrics) */
	uint64_t failures;  /* appends that did not commit */
};

/* What one entry says (the chain fields are the appender's business). */
struct moat_audit_event {
	const char *actor;
	const char *action;
	const char *target;
	const char *outcome;
	const char *peer;
	const char *detail; /* compact JSON object, or NULL for "{}" */
};

/* Load the public key from dir/audit.pub and the chain head from the
 * store; checkpoints are signed by sign(sign_arg, ...) and each signature
 * is verified against audit.pub before it is stored (a key process holding
 * another key fails every write instead of writing checkpoints that never
 * verify). */
moat_err moat_audit_log_open(struct moat_audit_log *log, struct moat_store *store, const char *dir,
			     moat_audit_sign_cb sign, void *sign_arg, char *err, size_t errlen);
void moat_audit_log_close(struct moat_audit_log *log);

/*
 * Append ev to batch b (created when *b is NULL) and write the batch,
 * waiting for its commit: the change and its audit entry land together or
 * not at all. Takes *b in every case. On failure the head is rolled back
 * and the caller must treat the change as not made.
 */
moat_err moat_audit_log_write(struct moat_audit_log *log, struct moat_store_batch **b,
			      const struct moat_audit_event *ev);

/* Verify every entry and checkpoint of a store (read-only use). */
moat_err moat_audit_verify_store(struct moat_store *st, const uint8_t pk[MOAT_AUDIT_PK_LEN],
				 struct moat_audit_report *rep, char *err, size_t errlen);
/* Offline: open DIR's store and verify with the public key in pub_path
 * (NULL: DIR/audit.pub). MOAT_OK intact, MOAT_E_CORRUPT tampered (rep says
 * where), other errors in err. */
moat_err moat_audit_verify_dir(const char *dir, const char *pub_path, struct moat_audit_report *rep,
			       char *err, size_t errlen);
/* Offline: every entry as JSON lines, oldest first. */
moat_err moat_audit_export_dir(const char *dir, FILE *out, char *err, size_t errlen);

/* Callback over stored entries (the strings are valid during the call). */
typedef moat_err (*moat_audit_row_cb)(void *arg, const struct moat_audit_entry *e);
/* Entries newest first: seq < before (0 = from the newest), filters NULL =
 * any, action_prefix matches the start of the action; at most limit rows. */
moat_err moat_audit_list(struct moat_store *st, int64_t before, const char *actor,
			 const char *action_prefix, int64_t since_ms, int64_t until_ms,
			 size_t limit, moat_audit_row_cb cb, void *arg);

#endif
