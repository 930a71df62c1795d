/*
 * The audit module's storage: the audit log (append-only hash chain) and its signed checkpoints.
 * Its statements (SQL in schema.c), named AUDIT_STMT(NAME) at call sites, and
 * its migrations; registered with the store in src/store/modules.c
 * (docs/storage.md).
 */
#ifndef MOAT_AUDIT_SCHEMA_H
#define MOAT_AUDIT_SCHEMA_H

#include "store/store.h"

extern const struct moat_store_module moat_audit_store;

enum audit_stmt {
	AUDIT_STMT_AUDIT_PUT = 0,
	AUDIT_STMT_CHECKPOINT_PUT,
	AUDIT_STMT_AUDIT_HEAD,
	AUDIT_STMT_AUDIT_ALL,
	AUDIT_STMT_AUDIT_LIST,
	AUDIT_STMT_CHECKPOINT_ALL,
	AUDIT_STMT_CHECKPOINT_LAST,
	AUDIT_STMT__COUNT
};

/*
 * Rows, decoded next to the SQL (schema.c). Only the number of columns is
 * checked, not their types: a tampered row must still be read, so that the
 * verifier reports it as modified rather than failing to load the log; the
 * readers in log.c check each field. MOAT_E_CORRUPT for a wrong count.
 */

/* AUDIT_ALL, AUDIT_LIST */
struct moat_audit_entry_row {
	struct moat_val seq, ts;				      /* int */
	struct moat_val actor, action, target, outcome, peer, detail; /* text */
	struct moat_val prev, hash; /* blob, MOAT_AUDIT_HASH_LEN */
};
moat_err moat_audit_entry_row_decode(const struct moat_val *cols, size_t n,
				     struct moat_audit_entry_row *out);

/* CHECKPOINT_ALL, CHECKPOINT_LAST */
struct moat_audit_checkpoint_row {
	struct moat_val seq, ts;   /* int */
	struct moat_val head, sig; /* blob */
};
moat_err moat_audit_checkpoint_row_decode(const struct moat_val *cols, size_t n,
					  struct moat_audit_checkpoint_row *out);

/* AUDIT_HEAD */
struct moat_audit_head_row {
	struct moat_val seq;  /* int */
	struct moat_val hash; /* blob */
};
moat_err moat_audit_head_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_audit_head_row *out);

#define AUDIT_STMT(name) MOAT_STMT(&moat_audit_store, AUDIT_STMT_##name)

#endif
