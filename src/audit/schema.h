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

#define AUDIT_STMT(name) MOAT_STMT(&moat_audit_store, AUDIT_STMT_##name)

#endif
