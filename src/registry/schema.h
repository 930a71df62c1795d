/*
 * The registry module's storage: identities, groups, memberships, policies and their attachments,
 * issued certificates (and their revocation), enrollment tokens, manufacturer
 * CAs.
 * Its statements (SQL in schema.c), named REG_STMT(NAME) at call sites, and
 * its migrations; registered with the store in src/store/modules.c
 * (docs/storage.md).
 */
#ifndef MOAT_REGISTRY_SCHEMA_H
#define MOAT_REGISTRY_SCHEMA_H

#include "store/store.h"

extern const struct moat_store_module moat_registry_store;

enum registry_stmt {
	REG_STMT_ID_INSERT = 0,
	REG_STMT_ID_SET_STATE,
	REG_STMT_ID_SEEN,
	REG_STMT_MEMBER_ADD,
	REG_STMT_MEMBER_DEL,
	REG_STMT_MEMBER_DEL_ALL,
	REG_STMT_GROUP_INSERT,
	REG_STMT_GROUP_DEL,
	REG_STMT_POLICY_PUT,
	REG_STMT_POLICY_DEL,
	REG_STMT_ATTACH_GROUP,
	REG_STMT_DETACH_GROUP,
	REG_STMT_ATTACH_ID,
	REG_STMT_DETACH_ID,
	REG_STMT_CERT_PUT,
	REG_STMT_CERT_REVOKE,
	REG_STMT_CERT_REVOKE_ID,
	REG_STMT_ETOKEN_PUT,
	REG_STMT_ETOKEN_USE,
	REG_STMT_ETOKEN_BURN_ID,
	REG_STMT_CERT_SCHEDULE_REVOKE,
	REG_STMT_CERT_REVOKE_DUE,
	REG_STMT_MCA_PUT,
	REG_STMT_ID_DELETE_DECOMMISSIONED,
	REG_STMT_MCA_DEL,
	REG_STMT_REG_IDENTITIES,
	REG_STMT_REG_MEMBERS,
	REG_STMT_REG_ATTACH,
	REG_STMT_REG_POLICIES,
	REG_STMT_ID_GET,
	REG_STMT_ID_LIST,
	REG_STMT_MEMBERS_OF,
	REG_STMT_GROUP_GET,
	REG_STMT_GROUP_LIST,
	REG_STMT_POLICY_GET,
	REG_STMT_POLICY_LIST,
	REG_STMT_ATTACHED_TO_GROUP,
	REG_STMT_ATTACHED_TO_ID,
	REG_STMT_CERT_GET,
	REG_STMT_CERT_LIST,
	REG_STMT_REVOKED_ALL,
	REG_STMT_ETOKEN_GET_HASH,
	REG_STMT_ETOKEN_LIST,
	REG_STMT_DECOM_COUNTS,
	REG_STMT_DECOM_TOKENS,
	REG_STMT_GROUP_EXISTS,
	REG_STMT_CERT_DUE_COUNT,
	REG_STMT_MCA_LIST,
	REG_STMT_MCA_ALL,
	REG_STMT_CRL_ENTRIES,
	REG_STMT_MCA_SCOPE,
	REG_STMT_MEMBER_IS,
	REG_STMT_REG_GROUP_MEMBERS,
	REG_STMT_REG_POLICY_IDS,
	REG_STMT_REG_POLICY_GROUPS,
	REG_STMT_REG_ID_STATE,
	REG_STMT_REG_ID_SOURCES,
	REG_STMT_REG_GROUP_SOURCES,
	REG_STMT_REG_ID_REVOKED,
	REG_STMT__COUNT
};

/*
 * Rows, decoded next to the SQL (schema.c). The values point into the row
 * and are valid only during the row callback; a nullable one may be
 * MOAT_VAL_NULL. MOAT_E_CORRUPT when a row is not what the schema says.
 */

/* ID_GET, ID_LIST */
struct moat_reg_identity_row {
	struct moat_val id, kind, state;	/* text */
	struct moat_val created_at, updated_at; /* int */
	struct moat_val first_seen, last_seen;	/* int or NULL */
	struct moat_val last_addr, firmware;	/* text or NULL */
	struct moat_val cert_expires_at;	/* int or NULL: the newest unrevoked certificate */
};
moat_err moat_reg_identity_row_decode(const struct moat_val *cols, size_t n,
				      struct moat_reg_identity_row *out);

/* GROUP_GET, GROUP_LIST */
struct moat_reg_group_row {
	struct moat_val name, description;   /* text */
	struct moat_val created_at, members; /* int */
};
moat_err moat_reg_group_row_decode(const struct moat_val *cols, size_t n,
				   struct moat_reg_group_row *out);

/* POLICY_GET, POLICY_LIST */
struct moat_reg_policy_row {
	struct moat_val name, description, rules;	 /* text; rules one per line */
	struct moat_val builtin, created_at, updated_at; /* int */
};
moat_err moat_reg_policy_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_reg_policy_row *out);

/* One text column: MEMBERS_OF, REG_POLICY_GROUPS (groups),
 * ATTACHED_TO_GROUP and ATTACHED_TO_ID (policies), REG_GROUP_MEMBERS,
 * REG_POLICY_IDS (identities), REG_ID_STATE (a state), REG_ID_REVOKED (a
 * serial). */
moat_err moat_reg_name_row_decode(const struct moat_val *cols, size_t n, struct moat_val *name);

/* The broker's identity table (src/registry/registry.c) loads from these. */

/* REG_POLICIES, REG_GROUP_SOURCES */
struct moat_reg_rules_row {
	struct moat_val policy, rules; /* text; rules one per line */
};
moat_err moat_reg_rules_row_decode(const struct moat_val *cols, size_t n,
				   struct moat_reg_rules_row *out);

/* REG_IDENTITIES */
struct moat_reg_ident_state_row {
	struct moat_val id, kind, state; /* text */
};
moat_err moat_reg_ident_state_row_decode(const struct moat_val *cols, size_t n,
					 struct moat_reg_ident_state_row *out);

/* REG_MEMBERS */
struct moat_reg_member_row {
	struct moat_val identity, group; /* text */
};
moat_err moat_reg_member_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_reg_member_row *out);

/* REG_ATTACH: a policy attached to a group or (else) to one identity */
struct moat_reg_attach_row {
	struct moat_val policy;		 /* text */
	struct moat_val group, identity; /* text or NULL: exactly one is text */
};
moat_err moat_reg_attach_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_reg_attach_row *out);

/* REG_ID_SOURCES: a policy that applies to one identity */
struct moat_reg_id_source_row {
	struct moat_val direct;	       /* int: 0 through a group, 1 attached directly */
	struct moat_val group;	       /* text (through this group) or NULL */
	struct moat_val policy, rules; /* text */
};
moat_err moat_reg_id_source_row_decode(const struct moat_val *cols, size_t n,
				       struct moat_reg_id_source_row *out);

/* CERT_GET, CERT_LIST */
struct moat_reg_cert_row {
	struct moat_val serial, identity, fingerprint;	  /* text */
	struct moat_val not_before, not_after, issued_at; /* int */
	struct moat_val revoked_at;			  /* int or NULL */
	struct moat_val reason;				  /* text or NULL */
};
moat_err moat_reg_cert_row_decode(const struct moat_val *cols, size_t n,
				  struct moat_reg_cert_row *out);

/* REVOKED_ALL, CRL_ENTRIES */
struct moat_reg_revoked_row {
	struct moat_val serial;	    /* text */
	struct moat_val revoked_at; /* int */
};
moat_err moat_reg_revoked_row_decode(const struct moat_val *cols, size_t n,
				     struct moat_reg_revoked_row *out);

/* ETOKEN_LIST; ETOKEN_GET_HASH has the first five (creator and created_at
 * are MOAT_VAL_NULL then). */
struct moat_reg_etoken_row {
	struct moat_val id;		       /* text */
	struct moat_val identity, group;       /* text or NULL */
	struct moat_val uses_left, expires_at; /* int */
	struct moat_val creator;	       /* text */
	struct moat_val created_at;	       /* int */
};
moat_err moat_reg_etoken_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_reg_etoken_row *out);

/* MCA_LIST; MCA_ALL has name, fingerprint, cert_pem (the others NULL);
 * MCA_SCOPE has devices, group (the others NULL). */
struct moat_reg_mca_row {
	struct moat_val name, fingerprint; /* text */
	struct moat_val created_at;	   /* int */
	struct moat_val cert_pem;	   /* text */
	struct moat_val devices, group;	   /* text or NULL: the CA's scope */
};
moat_err moat_reg_mca_row_decode(const struct moat_val *cols, size_t n,
				 struct moat_reg_mca_row *out);

/* The broker's note that an identity connected (its first and last time,
 * address and the firmware it reported, NULL: keep), added to the
 * caller's batch: the registry's statement, run by the registry's code. */
moat_err moat_reg_seen_add(struct moat_store_batch *b, const char *id, int64_t now_ms,
			   const char *addr, const char *firmware);

#define REG_STMT(name) MOAT_STMT(&moat_registry_store, REG_STMT_##name)

#endif
