/*
 * The audit module's tables and statements (docs/storage.md). The SQL uses
 * only what SQLite (>= 3.37) and PostgreSQL both accept: $n parameters,
 * upserts with ON CONFLICT (...) DO UPDATE. Times are wall-clock
 * milliseconds since the epoch; NULL means "never".
 *
 * Migrations: dense versions from 1, each applied in its own transaction;
 * never edit a step that has shipped, add one.
 */
#include "audit/schema.h"

static const struct moat_store_migration migrations[] = {
    {1, "the audit log and its signed checkpoints",
     /* The audit log is append-only: the triggers stop Moat's own code (and
      * careless hands) from rewriting it; deliberate tampering with the
      * file is what the hash chain and signed checkpoints catch. */
     "CREATE TABLE audit_log ("
     " seq INTEGER PRIMARY KEY,"
     " ts INTEGER NOT NULL,"
     " actor TEXT NOT NULL,"
     " action TEXT NOT NULL,"
     " target TEXT NOT NULL,"
     " outcome TEXT NOT NULL,"
     " peer TEXT NOT NULL,"
     " detail TEXT NOT NULL,"
     " prev BLOB NOT NULL,"
     " hash BLOB NOT NULL"
     ") STRICT;"
     "CREATE INDEX audit_log_ts ON audit_log (ts);"
     "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
     "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
     "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
     "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
     "CREATE TABLE audit_checkpoints ("
     " seq INTEGER PRIMARY KEY,"
     " ts INTEGER NOT NULL,"
     " head BLOB NOT NULL,"
     " sig BLOB NOT NULL"
     ") STRICT;"},
};

static const struct moat_store_stmt stmts[AUDIT_STMT__COUNT] = {
    [AUDIT_STMT_AUDIT_PUT] =
	{MOAT_STORE_WRITE, 10,
	 "INSERT INTO audit_log (seq, ts, actor, action, target, outcome, peer, "
	 "detail, prev, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"},
    [AUDIT_STMT_CHECKPOINT_PUT] = {MOAT_STORE_WRITE, 4,
				   "INSERT INTO audit_checkpoints (seq, ts, head, sig) VALUES ($1, "
				   "$2, $3, $4)"},
    [AUDIT_STMT_AUDIT_HEAD] = {MOAT_STORE_READ, 0,
			       "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"},
    [AUDIT_STMT_AUDIT_ALL] = {MOAT_STORE_READ, 0,
			      "SELECT seq, ts, actor, action, target, outcome, peer, detail, prev, "
			      "hash FROM audit_log ORDER BY seq"},
    /* Newest first. $1: entries before this seq; $2 actor, $3 action
     * prefix, $4 since (ts >=), $5 until (ts <): NULL = any; $6 limit. */
    [AUDIT_STMT_AUDIT_LIST] =
	{MOAT_STORE_READ, 6,
	 "SELECT seq, ts, actor, action, target, outcome, peer, detail, prev, "
	 "hash FROM audit_log WHERE seq < $1 AND ($2 IS NULL OR actor = $2) "
	 "AND ($3 IS NULL OR substr(action, 1, length($3)) = $3) AND ($4 IS "
	 "NULL OR ts >= $4) AND ($5 IS NULL OR ts < $5) ORDER BY seq DESC "
	 "LIMIT $6"},
    [AUDIT_STMT_CHECKPOINT_ALL] = {MOAT_STORE_READ, 0,
				   "SELECT seq, ts, head, sig FROM audit_checkpoints ORDER BY seq"},
    [AUDIT_STMT_CHECKPOINT_LAST] = {MOAT_STORE_READ, 0,
				    "SELECT seq, ts, head, sig FROM audit_checkpoints ORDER BY seq "
				    "DESC LIMIT 1"},
};

const struct moat_store_module moat_audit_store = {
    .name = "audit",
    .stmts = stmts,
    .n_stmts = AUDIT_STMT__COUNT,
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(migrations[0]),
};

moat_err moat_audit_entry_row_decode(const struct moat_val *cols, size_t n,
				     struct moat_audit_entry_row *out)
{
	if (cols == NULL || n != 10)
		return MOAT_E_CORRUPT;
	out->seq = cols[0];
	out->ts = cols[1];
	out->actor = cols[2];
	out->action = cols[3];
	out->target = cols[4];
	out->outcome = cols[5];
	out->peer = cols[6];
	out->detail = cols[7];
	out->prev = cols[8];
	out->hash = cols[9];
	return MOAT_OK;
}

moat_err moat_audit_checkpoint_row_decode(const struct moat_val *cols, size_t n,
					  struct moat_audit_checkpoint_row *out)
{
	if (cols == NULL || n != 4)
		return MOAT_E_CORRUPT;
	out->seq = cols[0];
	out->ts = cols[1];
	out->head = cols[2];
	out->sig = cols[3];
	return MOAT_OK;
}

moat_err moat_audit_head_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_audit_head_row *out)
{
	if (cols == NULL || n != 2)
		return MOAT_E_CORRUPT;
	out->seq = cols[0];
	out->hash = cols[1];
	return MOAT_OK;
}
