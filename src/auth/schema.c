/*
 * The auth module's tables and statements (docs/storage.md). The SQL uses
 * only what SQLite (>= 3.37) and PostgreSQL both accept: $n parameters,
 * upserts with ON CONFLICT (...) DO UPDATE. Times are wall-clock
 * milliseconds since the epoch; NULL means "never".
 *
 * Migrations: dense versions from 1, each applied in its own transaction;
 * never edit a step that has shipped, add one.
 */
#include "auth/schema.h"

static const struct moat_store_migration migrations[] = {
    {1, "operators, recovery codes, operator sessions, API tokens, setup tokens",
     "CREATE TABLE operators ("
     " id INTEGER PRIMARY KEY,"
     " name TEXT NOT NULL UNIQUE,"
     " role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'viewer')),"
     " pw_hash TEXT NOT NULL,"
     /* totp_secret: enrolled (confirmed) secret; totp_pending: an
      * enrolment that has not been confirmed with a code yet. */
     " totp_secret BLOB,"
     " totp_pending BLOB,"
     " totp_last_step INTEGER NOT NULL DEFAULT 0,"
     " disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL"
     ") STRICT;"
     /* Only hashes; a used code is deleted. */
     "CREATE TABLE recovery_codes ("
     " operator_id INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,"
     " hash BLOB NOT NULL,"
     " PRIMARY KEY (operator_id, hash)"
     ") STRICT, WITHOUT ROWID;"
     /* Console/CLI sessions: the cookie holds a random secret; we keep its
      * SHA-256 and a public id (sid) derived from that hash. */
     "CREATE TABLE op_sessions ("
     " id_hash BLOB PRIMARY KEY NOT NULL,"
     " sid TEXT NOT NULL UNIQUE,"
     " operator_id INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,"
     " csrf TEXT NOT NULL,"
     " mfa INTEGER NOT NULL CHECK (mfa IN (0, 1)),"
     " created_at INTEGER NOT NULL,"
     " last_seen INTEGER NOT NULL,"
     " peer TEXT NOT NULL,"
     " user_agent TEXT NOT NULL"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX op_sessions_operator ON op_sessions (operator_id);"
     "CREATE TABLE api_tokens ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " hash BLOB NOT NULL UNIQUE,"
     " name TEXT NOT NULL,"
     " role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'viewer', "
     "'metrics')),"
     " creator TEXT NOT NULL,"
     " created_at INTEGER NOT NULL,"
     " expires_at INTEGER NOT NULL,"
     " last_used INTEGER,"
     " revoked_at INTEGER"
     ") STRICT, WITHOUT ROWID;"
     "CREATE TABLE setup_tokens ("
     " hash BLOB PRIMARY KEY NOT NULL,"
     " expires_at INTEGER NOT NULL,"
     " used_at INTEGER"
     ") STRICT, WITHOUT ROWID;"},
};

static const struct moat_store_stmt stmts[AUTH_STMT__COUNT] = {
    /* Management plane. Operators are addressed by name (unique); the
     * numeric id only links the child tables. */
    [AUTH_STMT_OP_INSERT] = {MOAT_STORE_WRITE, 4,
			     "INSERT INTO operators (name, role, pw_hash, created_at, updated_at) "
			     "VALUES ($1, $2, $3, $4, $4)"},
    [AUTH_STMT_OP_SET_PASSWORD] = {MOAT_STORE_WRITE, 3,
				   "UPDATE operators SET pw_hash = $2, updated_at = $3 WHERE name "
				   "= $1"},
    [AUTH_STMT_OP_SET_TOTP_PENDING] = {MOAT_STORE_WRITE, 3,
				       "UPDATE operators SET totp_pending = $2, updated_at = $3 "
				       "WHERE name = $1"},
    [AUTH_STMT_OP_CONFIRM_TOTP] = {MOAT_STORE_WRITE, 4,
				   "UPDATE operators SET totp_secret = $2, totp_pending = NULL, "
				   "totp_last_step = $3, updated_at = $4 WHERE name = $1"},
    [AUTH_STMT_OP_SET_TOTP_STEP] = {MOAT_STORE_WRITE, 2,
				    "UPDATE operators SET totp_last_step = $2 WHERE name = $1 AND "
				    "totp_last_step < $2"},
    [AUTH_STMT_OP_RESET_MFA] = {MOAT_STORE_WRITE, 2,
				"UPDATE operators SET totp_secret = NULL, totp_pending = NULL, "
				"totp_last_step = 0, updated_at = $2 WHERE name = $1"},
    [AUTH_STMT_OP_SET_ROLE] = {MOAT_STORE_WRITE, 3,
			       "UPDATE operators SET role = $2, updated_at = $3 WHERE name = $1"},
    [AUTH_STMT_OP_SET_DISABLED] = {MOAT_STORE_WRITE, 3,
				   "UPDATE operators SET disabled = $2, updated_at = $3 WHERE name "
				   "= $1"},
    [AUTH_STMT_RECOVERY_PUT] = {MOAT_STORE_WRITE, 2,
				"INSERT INTO recovery_codes (operator_id, hash) SELECT id, $2 FROM "
				"operators WHERE name = $1"},
    [AUTH_STMT_RECOVERY_USE] = {MOAT_STORE_WRITE, 2,
				"DELETE FROM recovery_codes WHERE hash = $2 AND operator_id = "
				"(SELECT id FROM operators WHERE name = $1)"},
    [AUTH_STMT_RECOVERY_DEL_ALL] = {MOAT_STORE_WRITE, 1,
				    "DELETE FROM recovery_codes WHERE operator_id = (SELECT id "
				    "FROM operators WHERE name = $1)"},
    [AUTH_STMT_SESS_PUT] = {MOAT_STORE_WRITE, 9,
			    "INSERT INTO op_sessions (id_hash, sid, operator_id, csrf, mfa, "
			    "created_at, last_seen, peer, user_agent) SELECT $1, $2, id, $4, $5, "
			    "$6, $7, $8, $9 FROM operators WHERE name = $3"},
    [AUTH_STMT_SESS_TOUCH] = {MOAT_STORE_WRITE, 2,
			      "UPDATE op_sessions SET last_seen = $2 WHERE id_hash = $1"},
    [AUTH_STMT_SESS_SET_MFA] = {MOAT_STORE_WRITE, 2,
				"UPDATE op_sessions SET mfa = $2 WHERE id_hash = $1"},
    [AUTH_STMT_SESS_DEL] = {MOAT_STORE_WRITE, 1, "DELETE FROM op_sessions WHERE sid = $1"},
    /* All sessions of an operator but one ($2, may be NULL): after a
     * password change, disabling, or an MFA reset. */
    [AUTH_STMT_SESS_DEL_OPERATOR] = {MOAT_STORE_WRITE, 2,
				     "DELETE FROM op_sessions WHERE operator_id = (SELECT id FROM "
				     "operators WHERE name = $1) AND ($2 IS NULL OR sid <> $2)"},
    /* $1: idle cutoff (last_seen before it), $2: absolute cutoff. */
    [AUTH_STMT_SESS_EXPIRE] = {MOAT_STORE_WRITE, 2,
			       "DELETE FROM op_sessions WHERE last_seen < $1 OR created_at < $2"},
    [AUTH_STMT_TOKEN_PUT] = {MOAT_STORE_WRITE, 7,
			     "INSERT INTO api_tokens (id, hash, name, role, creator, created_at, "
			     "expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"},
    [AUTH_STMT_TOKEN_REVOKE] =
	{MOAT_STORE_WRITE, 2,
	 "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at "
	 "IS NULL"},
    [AUTH_STMT_TOKEN_TOUCH] = {MOAT_STORE_WRITE, 2,
			       "UPDATE api_tokens SET last_used = $2 WHERE id = $1"},
    [AUTH_STMT_SETUP_PUT] = {MOAT_STORE_WRITE, 2,
			     "INSERT INTO setup_tokens (hash, expires_at) VALUES ($1, $2)"},
    [AUTH_STMT_SETUP_USE] = {MOAT_STORE_WRITE, 2,
			     "UPDATE setup_tokens SET used_at = $2 WHERE hash = $1 AND used_at IS "
			     "NULL"},
    [AUTH_STMT_OP_GET] = {MOAT_STORE_READ, 1,
			  "SELECT name, role, pw_hash, totp_secret, totp_pending, totp_last_step, "
			  "disabled, created_at, updated_at FROM operators WHERE name = $1"},
    /* Keyset pagination: names after the cursor $1 ('' = from the start). */
    [AUTH_STMT_OP_LIST] = {MOAT_STORE_READ, 2,
			   "SELECT name, role, disabled, totp_secret IS NOT NULL, created_at, "
			   "updated_at FROM operators WHERE name > $1 ORDER BY name LIMIT $2"},
    /* $1: a role (enabled operators with it), or NULL (every operator,
     * disabled ones too: setup stays closed once anyone exists). */
    [AUTH_STMT_OP_COUNT] = {MOAT_STORE_READ, 1,
			    "SELECT count(*) FROM operators WHERE $1 IS NULL OR (role = $1 AND "
			    "disabled = 0)"},
    [AUTH_STMT_RECOVERY_HAS] = {MOAT_STORE_READ, 2,
				"SELECT count(*) FROM recovery_codes WHERE hash = $2 AND "
				"operator_id = (SELECT id FROM operators WHERE name = $1)"},
    [AUTH_STMT_SESS_GET] = {MOAT_STORE_READ, 1,
			    "SELECT s.sid, o.name, o.role, s.csrf, s.mfa, s.created_at, "
			    "s.last_seen, o.disabled, o.totp_secret IS NOT NULL FROM op_sessions s "
			    "JOIN operators o ON o.id = s.operator_id WHERE s.id_hash = $1"},
    /* $1: an operator name or NULL for all; $2: sid cursor. */
    [AUTH_STMT_SESS_LIST] = {MOAT_STORE_READ, 3,
			     "SELECT s.sid, o.name, s.created_at, s.last_seen, s.peer, "
			     "s.user_agent FROM op_sessions s JOIN operators o ON o.id = "
			     "s.operator_id WHERE ($1 IS NULL OR o.name = $1) AND s.sid > $2 ORDER "
			     "BY s.sid LIMIT $3"},
    [AUTH_STMT_SESS_GET_SID] = {MOAT_STORE_READ, 1,
				"SELECT o.name FROM op_sessions s JOIN operators o ON o.id = "
				"s.operator_id WHERE s.sid = $1"},
    /* With the creator's current role and state: a token never outlives
     * or outranks the operator who made it. */
    [AUTH_STMT_TOKEN_GET_HASH] =
	{MOAT_STORE_READ, 1,
	 "SELECT t.id, t.name, t.role, t.creator, t.expires_at, t.revoked_at, "
	 "o.role, o.disabled FROM api_tokens t LEFT JOIN operators o ON "
	 "'user:' || o.name = t.creator WHERE t.hash = $1"},
    [AUTH_STMT_TOKEN_GET] = {MOAT_STORE_READ, 1,
			     "SELECT id, name, role, creator, created_at, expires_at, last_used, "
			     "revoked_at FROM api_tokens WHERE id = $1"},
    [AUTH_STMT_TOKEN_LIST] = {MOAT_STORE_READ, 2,
			      "SELECT id, name, role, creator, created_at, expires_at, last_used, "
			      "revoked_at FROM api_tokens WHERE id > $1 ORDER BY id LIMIT $2"},
    [AUTH_STMT_SETUP_GET] = {MOAT_STORE_READ, 1,
			     "SELECT expires_at, used_at FROM setup_tokens WHERE hash = $1"},
};

const struct moat_store_module moat_auth_store = {
    .name = "auth",
    .stmts = stmts,
    .n_stmts = AUTH_STMT__COUNT,
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(migrations[0]),
};

moat_err moat_auth_operator_row_decode(const struct moat_val *cols, size_t n,
				       struct moat_auth_operator_row *out)
{
	static const struct moat_store_col want[] = {
	    MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_T(false),
	    MOAT_COL_B(true),  MOAT_COL_B(true),  MOAT_COL_I(false),
	    MOAT_COL_I(false), MOAT_COL_I(false), MOAT_COL_I(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->name = cols[0];
	out->role = cols[1];
	out->pw_hash = cols[2];
	out->totp_secret = cols[3];
	out->totp_pending = cols[4];
	out->totp_last_step = cols[5];
	out->disabled = cols[6];
	out->created_at = cols[7];
	out->updated_at = cols[8];
	return MOAT_OK;
}

moat_err moat_auth_operator_list_row_decode(const struct moat_val *cols, size_t n,
					    struct moat_auth_operator_list_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_T(false),
						     MOAT_COL_I(false), MOAT_COL_I(false),
						     MOAT_COL_I(false), MOAT_COL_I(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->name = cols[0];
	out->role = cols[1];
	out->disabled = cols[2];
	out->enrolled = cols[3];
	out->created_at = cols[4];
	out->updated_at = cols[5];
	return MOAT_OK;
}

moat_err moat_auth_session_row_decode(const struct moat_val *cols, size_t n,
				      struct moat_auth_session_row *out)
{
	static const struct moat_store_col want[] = {
	    MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_T(false),
	    MOAT_COL_T(false), MOAT_COL_I(false), MOAT_COL_I(false),
	    MOAT_COL_I(false), MOAT_COL_I(false), MOAT_COL_I(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->sid = cols[0];
	out->name = cols[1];
	out->role = cols[2];
	out->csrf = cols[3];
	out->mfa = cols[4];
	out->created_at = cols[5];
	out->last_seen = cols[6];
	out->disabled = cols[7];
	out->enrolled = cols[8];
	return MOAT_OK;
}

moat_err moat_auth_session_list_row_decode(const struct moat_val *cols, size_t n,
					   struct moat_auth_session_list_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_T(false),
						     MOAT_COL_I(false), MOAT_COL_I(false),
						     MOAT_COL_T(false), MOAT_COL_T(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->sid = cols[0];
	out->name = cols[1];
	out->created_at = cols[2];
	out->last_seen = cols[3];
	out->peer = cols[4];
	out->user_agent = cols[5];
	return MOAT_OK;
}

moat_err moat_auth_token_auth_row_decode(const struct moat_val *cols, size_t n,
					 struct moat_auth_token_auth_row *out)
{
	static const struct moat_store_col want[] = {
	    MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_T(false),
	    MOAT_COL_I(false), MOAT_COL_I(true),  MOAT_COL_T(true),  MOAT_COL_I(true)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->id = cols[0];
	out->name = cols[1];
	out->role = cols[2];
	out->creator = cols[3];
	out->expires_at = cols[4];
	out->revoked_at = cols[5];
	out->creator_role = cols[6];
	out->creator_disabled = cols[7];
	return MOAT_OK;
}

moat_err moat_auth_token_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_auth_token_row *out)
{
	static const struct moat_store_col want[] = {
	    MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_T(false),
	    MOAT_COL_I(false), MOAT_COL_I(false), MOAT_COL_I(true),  MOAT_COL_I(true)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->id = cols[0];
	out->name = cols[1];
	out->role = cols[2];
	out->creator = cols[3];
	out->created_at = cols[4];
	out->expires_at = cols[5];
	out->last_used = cols[6];
	out->revoked_at = cols[7];
	return MOAT_OK;
}

moat_err moat_auth_setup_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_auth_setup_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_I(false), MOAT_COL_I(true)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->expires_at = cols[0];
	out->used_at = cols[1];
	return MOAT_OK;
}

moat_err moat_auth_name_row_decode(const struct moat_val *cols, size_t n, struct moat_val *name)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc == MOAT_OK)
		*name = cols[0];
	return rc;
}
