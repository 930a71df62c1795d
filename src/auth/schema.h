/*
 * The auth module's storage: operators, their recovery codes and console/CLI sessions, API tokens,
 * setup tokens. Its statements (SQL in schema.c), named AUTH_STMT(NAME) at call sites, and its
 * migrations; registered with the store in src/store/modules.c (docs/storage.md).
 */
#ifndef MOAT_AUTH_SCHEMA_H
#define MOAT_AUTH_SCHEMA_H

#include "store/store.h"

extern const struct moat_store_module moat_auth_store;

enum auth_stmt {
	AUTH_STMT_OP_INSERT = 0,
	AUTH_STMT_OP_SET_PASSWORD,
	AUTH_STMT_OP_SET_TOTP_PENDING,
	AUTH_STMT_OP_CONFIRM_TOTP,
	AUTH_STMT_OP_SET_TOTP_STEP,
	AUTH_STMT_OP_RESET_MFA,
	AUTH_STMT_OP_SET_ROLE,
	AUTH_STMT_OP_SET_DISABLED,
	AUTH_STMT_RECOVERY_PUT,
	AUTH_STMT_RECOVERY_USE,
	AUTH_STMT_RECOVERY_DEL_ALL,
	AUTH_STMT_SESS_PUT,
	AUTH_STMT_SESS_TOUCH,
	AUTH_STMT_SESS_SET_MFA,
	AUTH_STMT_SESS_DEL,
	AUTH_STMT_SESS_DEL_OPERATOR,
	AUTH_STMT_SESS_EXPIRE,
	AUTH_STMT_TOKEN_PUT,
	AUTH_STMT_TOKEN_REVOKE,
	AUTH_STMT_TOKEN_TOUCH,
	AUTH_STMT_SETUP_PUT,
	AUTH_STMT_SETUP_USE,
	AUTH_STMT_OP_GET,
	AUTH_STMT_OP_LIST,
	AUTH_STMT_OP_COUNT,
	AUTH_STMT_RECOVERY_HAS,
	AUTH_STMT_SESS_GET,
	AUTH_STMT_SESS_LIST,
	AUTH_STMT_SESS_GET_SID,
	AUTH_STMT_TOKEN_GET_HASH,
	AUTH_STMT_TOKEN_GET,
	AUTH_STMT_TOKEN_LIST,
	AUTH_STMT_SETUP_GET,
	AUTH_STMT__COUNT
};

/*
 * Rows, decoded next to the SQL (schema.c). The values point into the row
 * and are valid only during the row callback; a nullable one may be
 * MOAT_VAL_NULL. MOAT_E_CORRUPT when a row is not what the schema says.
 */

/* OP_GET */
struct moat_auth_operator_row {
	struct moat_val name, role, pw_hash;	   /* text */
	struct moat_val totp_secret, totp_pending; /* blob or NULL */
	struct moat_val totp_last_step, disabled;  /* int */
	struct moat_val created_at, updated_at;	   /* int */
};
moat_err moat_auth_operator_row_decode(const struct moat_val *cols, size_t n,
				       struct moat_auth_operator_row *out);

/* OP_LIST */
struct moat_auth_operator_list_row {
	struct moat_val name, role;		/* text */
	struct moat_val disabled, enrolled;	/* int (0/1): enrolled = has a TOTP secret */
	struct moat_val created_at, updated_at; /* int */
};
moat_err moat_auth_operator_list_row_decode(const struct moat_val *cols, size_t n,
					    struct moat_auth_operator_list_row *out);

/* SESS_GET: the session and its operator */
struct moat_auth_session_row {
	struct moat_val sid, name, role, csrf;	    /* text */
	struct moat_val mfa, created_at, last_seen; /* int */
	struct moat_val disabled, enrolled;	    /* int (0/1): the operator's */
};
moat_err moat_auth_session_row_decode(const struct moat_val *cols, size_t n,
				      struct moat_auth_session_row *out);

/* SESS_LIST */
struct moat_auth_session_list_row {
	struct moat_val sid, name;	       /* text */
	struct moat_val created_at, last_seen; /* int */
	struct moat_val peer, user_agent;      /* text */
};
moat_err moat_auth_session_list_row_decode(const struct moat_val *cols, size_t n,
					   struct moat_auth_session_list_row *out);

/* TOKEN_GET_HASH: the token and its creator's current role and state */
struct moat_auth_token_auth_row {
	struct moat_val id, name, role, creator; /* text */
	struct moat_val expires_at;		 /* int */
	struct moat_val revoked_at;		 /* int or NULL */
	struct moat_val creator_role;		 /* text or NULL (no such operator) */
	struct moat_val creator_disabled;	 /* int or NULL */
};
moat_err moat_auth_token_auth_row_decode(const struct moat_val *cols, size_t n,
					 struct moat_auth_token_auth_row *out);

/* TOKEN_GET, TOKEN_LIST */
struct moat_auth_token_row {
	struct moat_val id, name, role, creator; /* text */
	struct moat_val created_at, expires_at;	 /* int */
	struct moat_val last_used, revoked_at;	 /* int or NULL */
};
moat_err moat_auth_token_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_auth_token_row *out);

/* SETUP_GET */
struct moat_auth_setup_row {
	struct moat_val expires_at; /* int */
	struct moat_val used_at;    /* int or NULL */
};
moat_err moat_auth_setup_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_auth_setup_row *out);

/* SESS_GET_SID: the session's operator */
moat_err moat_auth_name_row_decode(const struct moat_val *cols, size_t n, struct moat_val *name);

#define AUTH_STMT(name) MOAT_STMT(&moat_auth_store, AUTH_STMT_##name)

#endif
