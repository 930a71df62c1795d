/*
 * The registry module's tables and statements (docs/storage.md). The SQL uses
 * only what SQLite (>= 3.37) and PostgreSQL both accept: $n parameters,
 * upserts with ON CONFLICT (...) DO UPDATE. Times are wall-clock
 * milliseconds since the epoch; NULL means "never".
 *
 * Migrations: dense versions from 1, each applied in its own transaction;
 * never edit a step that has shipped, add one.
 */
#include <string.h>

#include "registry/schema.h"

/* When the identity's newest unrevoked certificate expires. */
#define CERT_EXPIRES                                                                               \
	"(SELECT max(c.not_after) FROM certificates c WHERE c.identity = identities.id AND "       \
	"c.revoked_at IS NULL)"

static const struct moat_store_migration migrations[] = {
    {1,
     "identities, groups, memberships, policies, attachments, certificates, enrollment tokens, "
     "manufacturer CAs",
     /* Devices and service identities share one namespace (the certificate
      * identity). A decommissioned row stays (terminal) so the id is never
      * silently reused by a new device. */
     "CREATE TABLE identities ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " kind TEXT NOT NULL CHECK (kind IN ('device', 'service')),"
     " state TEXT NOT NULL CHECK (state IN ('registered', 'active', 'disabled', "
     "'quarantined', 'decommissioned')),"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL,"
     " first_seen INTEGER,"
     " last_seen INTEGER,"
     " last_addr TEXT,"
     " firmware TEXT"
     ") STRICT, WITHOUT ROWID;"
     "CREATE TABLE groups ("
     " name TEXT PRIMARY KEY NOT NULL,"
     " description TEXT NOT NULL,"
     " created_at INTEGER NOT NULL"
     ") STRICT, WITHOUT ROWID;"
     "CREATE TABLE memberships ("
     " identity TEXT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,"
     " group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,"
     " PRIMARY KEY (identity, group_name)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX memberships_group ON memberships (group_name);"
     /* rules: one rule per line in the text form of src/registry/acl.h */
     "CREATE TABLE policies ("
     " name TEXT PRIMARY KEY NOT NULL,"
     " description TEXT NOT NULL,"
     " rules TEXT NOT NULL,"
     " builtin INTEGER NOT NULL DEFAULT 0 CHECK (builtin IN (0, 1)),"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL"
     ") STRICT, WITHOUT ROWID;"
     /* A policy attaches to a group or to one identity (services). */
     "CREATE TABLE attachments ("
     " policy TEXT NOT NULL REFERENCES policies (name) ON DELETE CASCADE,"
     " group_name TEXT REFERENCES groups (name) ON DELETE CASCADE,"
     " identity TEXT REFERENCES identities (id) ON DELETE CASCADE,"
     " CHECK ((group_name IS NULL) <> (identity IS NULL))"
     ") STRICT;"
     "CREATE UNIQUE INDEX attachments_group ON attachments (policy, group_name) WHERE "
     "group_name IS NOT NULL;"
     "CREATE UNIQUE INDEX attachments_identity ON attachments (policy, identity) WHERE "
     "identity IS NOT NULL;"
     "CREATE TABLE certificates ("
     " serial TEXT PRIMARY KEY NOT NULL,"
     " identity TEXT NOT NULL,"
     " fingerprint TEXT NOT NULL,"
     " not_before INTEGER NOT NULL,"
     " not_after INTEGER NOT NULL,"
     " issued_at INTEGER NOT NULL,"
     " revoked_at INTEGER,"
     " reason TEXT"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX certificates_identity ON certificates (identity);"
     "CREATE TABLE enroll_tokens ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " hash BLOB NOT NULL UNIQUE,"
     " identity TEXT,"
     " group_name TEXT,"
     " uses_left INTEGER NOT NULL CHECK (uses_left >= 0),"
     " expires_at INTEGER NOT NULL,"
     " creator TEXT NOT NULL,"
     " created_at INTEGER NOT NULL"
     ") STRICT, WITHOUT ROWID;"
     "CREATE TABLE manufacturer_cas ("
     " name TEXT PRIMARY KEY NOT NULL,"
     " cert_pem TEXT NOT NULL,"
     " fingerprint TEXT NOT NULL UNIQUE,"
     " created_at INTEGER NOT NULL"
     ") STRICT, WITHOUT ROWID;"
     /* The built-in policy and the group every new device joins unless told
      * otherwise: today's default (d/<id>/ publish, c/<id>/ and d/<id>/
      * subscribe). */
     "INSERT INTO policies VALUES ('device-default', 'publish under d/<id>/, subscribe under "
     "c/<id>/ and d/<id>/', 'allow publish d/${device}/#' || char(10) || 'allow subscribe "
     "c/${device}/#' || char(10) || 'allow subscribe d/${device}/#', 1, 0, 0);"
     "INSERT INTO groups VALUES ('devices', 'every device unless registered into other "
     "groups', 0);"
     "INSERT INTO attachments (policy, group_name) VALUES ('device-default', 'devices');"},
    {2, "certificates: revocation scheduled after re-enrollment",
     /* EST simplereenroll issues a new certificate and revokes the old one
      * after a grace period, so a device can switch without a gap. */
     "ALTER TABLE certificates ADD COLUMN revoke_at INTEGER;"
     "CREATE INDEX certificates_revoke_at ON certificates (revoke_at) WHERE revoke_at IS NOT "
     "NULL AND revoked_at IS NULL;"},
    {3, "manufacturer CAs: the devices each may enroll",
     /* A manufacturer CA vouches for the devices it made, not the fleet:
      * device-id patterns (one a line: an id, or a prefix ending in '*') or
      * a group. A CA registered before has neither and enrolls nothing
      * until it is registered again with a scope. */
     "ALTER TABLE manufacturer_cas ADD COLUMN devices TEXT;"
     "ALTER TABLE manufacturer_cas ADD COLUMN group_name TEXT;"},
};

static const struct moat_store_stmt stmts[REG_STMT__COUNT] = {
    /* Registry (migration 3). States are checked by the caller against the
     * lifecycle; the SQL refuses only what can never be valid. */
    [REG_STMT_ID_INSERT] = {MOAT_STORE_WRITE, 4,
			    "INSERT INTO identities (id, kind, state, created_at, updated_at) "
			    "VALUES ($1, $2, $3, $4, $4)"},
    [REG_STMT_ID_SET_STATE] =
	{MOAT_STORE_WRITE, 3,
	 "UPDATE identities SET state = $2, updated_at = $3 WHERE id = $1 AND "
	 "state <> 'decommissioned'"},
    /* $4: the firmware version the device reported, or NULL (keep). */
    [REG_STMT_ID_SEEN] = {MOAT_STORE_WRITE, 4,
			  "UPDATE identities SET first_seen = coalesce(first_seen, $2), last_seen "
			  "= $2, last_addr = $3, firmware = coalesce($4, firmware) WHERE id = $1"},
    [REG_STMT_MEMBER_ADD] = {MOAT_STORE_WRITE, 2,
			     "INSERT INTO memberships (identity, group_name) VALUES ($1, $2) ON "
			     "CONFLICT DO NOTHING"},
    [REG_STMT_MEMBER_DEL] = {MOAT_STORE_WRITE, 2,
			     "DELETE FROM memberships WHERE identity = $1 AND group_name = $2"},
    [REG_STMT_MEMBER_DEL_ALL] = {MOAT_STORE_WRITE, 1,
				 "DELETE FROM memberships WHERE identity = $1"},
    [REG_STMT_GROUP_INSERT] = {MOAT_STORE_WRITE, 3,
			       "INSERT INTO groups (name, description, created_at) VALUES ($1, $2, "
			       "$3)"},
    [REG_STMT_GROUP_DEL] = {MOAT_STORE_WRITE, 1, "DELETE FROM groups WHERE name = $1"},
    [REG_STMT_POLICY_PUT] = {MOAT_STORE_WRITE, 4,
			     "INSERT INTO policies (name, description, rules, created_at, "
			     "updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO UPDATE "
			     "SET description = excluded.description, rules = excluded.rules, "
			     "updated_at = excluded.updated_at WHERE policies.builtin = 0"},
    [REG_STMT_POLICY_DEL] = {MOAT_STORE_WRITE, 1,
			     "DELETE FROM policies WHERE name = $1 AND builtin = 0"},
    [REG_STMT_ATTACH_GROUP] = {MOAT_STORE_WRITE, 2,
			       "INSERT INTO attachments (policy, group_name) VALUES ($1, $2) ON "
			       "CONFLICT DO NOTHING"},
    [REG_STMT_DETACH_GROUP] = {MOAT_STORE_WRITE, 2,
			       "DELETE FROM attachments WHERE policy = $1 AND group_name = $2"},
    [REG_STMT_ATTACH_ID] = {MOAT_STORE_WRITE, 2,
			    "INSERT INTO attachments (policy, identity) VALUES ($1, $2) ON "
			    "CONFLICT DO NOTHING"},
    [REG_STMT_DETACH_ID] = {MOAT_STORE_WRITE, 2,
			    "DELETE FROM attachments WHERE policy = $1 AND identity = $2"},
    [REG_STMT_CERT_PUT] = {MOAT_STORE_WRITE, 6,
			   "INSERT INTO certificates (serial, identity, fingerprint, not_before, "
			   "not_after, issued_at) VALUES ($1, $2, $3, $4, $5, $6)"},
    [REG_STMT_CERT_REVOKE] = {MOAT_STORE_WRITE, 3,
			      "UPDATE certificates SET revoked_at = $2, reason = $3 WHERE serial = "
			      "$1 AND revoked_at IS NULL"},
    [REG_STMT_CERT_REVOKE_ID] = {MOAT_STORE_WRITE, 3,
				 "UPDATE certificates SET revoked_at = $2, reason = $3 WHERE "
				 "identity = $1 AND revoked_at IS NULL"},
    [REG_STMT_ETOKEN_PUT] =
	{MOAT_STORE_WRITE, 8,
	 "INSERT INTO enroll_tokens (id, hash, identity, group_name, uses_left, "
	 "expires_at, creator, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, "
	 "$8)"},
    [REG_STMT_ETOKEN_USE] = {MOAT_STORE_WRITE, 1,
			     "UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE id = $1 AND "
			     "uses_left > 0"},
    [REG_STMT_ETOKEN_BURN_ID] = {MOAT_STORE_WRITE, 1,
				 "UPDATE enroll_tokens SET uses_left = 0 WHERE identity = $1"},
    [REG_STMT_CERT_SCHEDULE_REVOKE] =
	{MOAT_STORE_WRITE, 2,
	 "UPDATE certificates SET revoke_at = $2 WHERE serial = $1 AND "
	 "revoked_at IS NULL"},
    [REG_STMT_CERT_REVOKE_DUE] =
	{MOAT_STORE_WRITE, 1,
	 "UPDATE certificates SET revoked_at = revoke_at, reason = "
	 "'superseded' WHERE revoke_at IS NOT NULL AND revoke_at <= $1 AND "
	 "revoked_at IS NULL"},
    [REG_STMT_MCA_PUT] = {MOAT_STORE_WRITE, 6,
			  "INSERT INTO manufacturer_cas (name, cert_pem, fingerprint, created_at, "
			  "devices, group_name) VALUES ($1, $2, $3, $4, $5, $6)"},
    /* Re-registering a decommissioned id starts a new device: the old row
     * (and its memberships and attachments) goes; its certificates stay
     * revoked and its history stays in the audit log. */
    [REG_STMT_ID_DELETE_DECOMMISSIONED] = {MOAT_STORE_WRITE, 1,
					   "DELETE FROM identities WHERE id = $1 AND state = "
					   "'decommissioned'"},
    [REG_STMT_MCA_DEL] = {MOAT_STORE_WRITE, 1, "DELETE FROM manufacturer_cas WHERE name = $1"},
    /* The registry snapshot the broker enforces is built from these four. */
    [REG_STMT_REG_IDENTITIES] = {MOAT_STORE_READ, 0,
				 "SELECT id, kind, state FROM identities ORDER BY id"},
    [REG_STMT_REG_MEMBERS] = {MOAT_STORE_READ, 0,
			      "SELECT identity, group_name FROM memberships ORDER BY identity, "
			      "group_name"},
    [REG_STMT_REG_ATTACH] =
	{MOAT_STORE_READ, 0,
	 "SELECT policy, group_name, identity FROM attachments ORDER BY policy"},
    [REG_STMT_REG_POLICIES] = {MOAT_STORE_READ, 0,
			       "SELECT name, rules FROM policies ORDER BY name"},
    /* The last column: when the identity's newest unrevoked certificate
     * expires (NULL without one). */
    [REG_STMT_ID_GET] = {MOAT_STORE_READ, 1,
			 "SELECT id, kind, state, created_at, updated_at, first_seen, last_seen, "
			 "last_addr, firmware, " CERT_EXPIRES " FROM identities WHERE id = $1"},
    /* $1 cursor, $2 kind or NULL, $3 state or NULL, $4 limit, $5 a time:
     * only identities whose certificate expires before it (NULL: all). */
    [REG_STMT_ID_LIST] =
	{MOAT_STORE_READ, 5,
	 "SELECT id, kind, state, created_at, updated_at, first_seen, last_seen, "
	 "last_addr, firmware, " CERT_EXPIRES " FROM identities WHERE id > $1 AND "
	 "($2 IS NULL OR kind = $2) AND ($3 IS NULL OR state = $3) AND ($5 IS NULL "
	 "OR " CERT_EXPIRES " < $5) ORDER BY id LIMIT $4"},
    [REG_STMT_MEMBERS_OF] = {MOAT_STORE_READ, 1,
			     "SELECT group_name FROM memberships WHERE identity = $1 ORDER BY "
			     "group_name"},
    [REG_STMT_GROUP_GET] = {MOAT_STORE_READ, 1,
			    "SELECT name, description, created_at, (SELECT count(*) FROM "
			    "memberships m WHERE m.group_name = g.name) FROM groups g WHERE name = "
			    "$1"},
    [REG_STMT_GROUP_LIST] =
	{MOAT_STORE_READ, 2,
	 "SELECT name, description, created_at, (SELECT count(*) FROM "
	 "memberships m WHERE m.group_name = g.name) FROM groups g WHERE name > "
	 "$1 ORDER BY name LIMIT $2"},
    [REG_STMT_POLICY_GET] =
	{MOAT_STORE_READ, 1,
	 "SELECT name, description, rules, builtin, created_at, updated_at FROM "
	 "policies WHERE name = $1"},
    [REG_STMT_POLICY_LIST] = {MOAT_STORE_READ, 2,
			      "SELECT name, description, rules, builtin, created_at, updated_at "
			      "FROM policies WHERE name > $1 ORDER BY name LIMIT $2"},
    [REG_STMT_ATTACHED_TO_GROUP] = {MOAT_STORE_READ, 1,
				    "SELECT policy FROM attachments WHERE group_name = $1 ORDER BY "
				    "policy"},
    [REG_STMT_ATTACHED_TO_ID] = {MOAT_STORE_READ, 1,
				 "SELECT policy FROM attachments WHERE identity = $1 ORDER BY "
				 "policy"},
    [REG_STMT_CERT_GET] =
	{MOAT_STORE_READ, 1,
	 "SELECT serial, identity, fingerprint, not_before, not_after, issued_at, "
	 "revoked_at, reason FROM certificates WHERE serial = $1"},
    /* $1 identity or NULL, $2 cursor (serial), $3 limit */
    [REG_STMT_CERT_LIST] = {MOAT_STORE_READ, 3,
			    "SELECT serial, identity, fingerprint, not_before, not_after, "
			    "issued_at, revoked_at, reason FROM certificates WHERE ($1 IS NULL OR "
			    "identity = $1) AND serial > $2 ORDER BY serial LIMIT $3"},
    [REG_STMT_REVOKED_ALL] = {MOAT_STORE_READ, 0,
			      "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT "
			      "NULL ORDER BY serial"},
    [REG_STMT_ETOKEN_GET_HASH] = {MOAT_STORE_READ, 1,
				  "SELECT id, identity, group_name, uses_left, expires_at FROM "
				  "enroll_tokens WHERE hash = $1"},
    [REG_STMT_ETOKEN_LIST] = {MOAT_STORE_READ, 2,
			      "SELECT id, identity, group_name, uses_left, expires_at, creator, "
			      "created_at FROM enroll_tokens WHERE id > $1 ORDER BY id LIMIT $2"},
    /* What decommissioning an identity ($1) will remove. */
    [REG_STMT_DECOM_COUNTS] = {MOAT_STORE_READ, 1,
			       "SELECT count(*) FROM certificates WHERE identity = $1 AND "
			       "revoked_at IS NULL"},
    [REG_STMT_DECOM_TOKENS] = {MOAT_STORE_READ, 1,
			       "SELECT count(*) FROM enroll_tokens WHERE identity = $1 AND "
			       "uses_left > 0"},
    [REG_STMT_GROUP_EXISTS] = {MOAT_STORE_READ, 1, "SELECT count(*) FROM groups WHERE name = $1"},
    [REG_STMT_CERT_DUE_COUNT] =
	{MOAT_STORE_READ, 1,
	 "SELECT count(*) FROM certificates WHERE revoke_at IS NOT NULL AND "
	 "revoke_at <= $1 AND revoked_at IS NULL"},
    [REG_STMT_MCA_LIST] =
	{MOAT_STORE_READ, 2,
	 "SELECT name, fingerprint, created_at, cert_pem, devices, group_name FROM "
	 "manufacturer_cas WHERE name > $1 ORDER BY name LIMIT $2"},
    [REG_STMT_MCA_ALL] = {MOAT_STORE_READ, 0,
			  "SELECT name, fingerprint, cert_pem FROM manufacturer_cas ORDER BY name"},
    /* What the CRL lists: revoked and not yet expired ($1 now); a
     * certificate past its notAfter is refused anyway (RFC 5280 5.1). */
    [REG_STMT_CRL_ENTRIES] = {MOAT_STORE_READ, 1,
			      "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT "
			      "NULL AND not_after > $1 ORDER BY serial"},
    /* The scope of manufacturer CA $1: device-id patterns or a group. */
    [REG_STMT_MCA_SCOPE] = {MOAT_STORE_READ, 1,
			    "SELECT devices, group_name FROM manufacturer_cas WHERE name = $1"},
    /* Is $1 a member of group $2? */
    [REG_STMT_MEMBER_IS] = {MOAT_STORE_READ, 2,
			    "SELECT count(*) FROM memberships WHERE identity = $1 AND "
			    "group_name = $2"},
    /* The registry service (src/registry/service.c) and the broker's
     * identity table: which identities a change touches, and one
     * identity's record, so a change costs what it touches, not the
     * fleet. */
    [REG_STMT_REG_GROUP_MEMBERS] = {MOAT_STORE_READ, 1,
				    "SELECT identity FROM memberships WHERE group_name = $1 "
				    "ORDER BY identity"},
    /* Identities a policy ($1) reaches: members of the groups it is
     * attached to, and the identities it is attached to directly. */
    [REG_STMT_REG_POLICY_IDS] =
	{MOAT_STORE_READ, 1,
	 "SELECT m.identity FROM attachments a JOIN memberships m ON m.group_name = "
	 "a.group_name WHERE a.policy = $1 UNION SELECT identity FROM attachments WHERE "
	 "policy = $1 AND identity IS NOT NULL ORDER BY 1"},
    [REG_STMT_REG_POLICY_GROUPS] = {MOAT_STORE_READ, 1,
				    "SELECT group_name FROM attachments WHERE policy = $1 AND "
				    "group_name IS NOT NULL ORDER BY group_name"},
    [REG_STMT_REG_ID_STATE] = {MOAT_STORE_READ, 1, "SELECT state FROM identities WHERE id = $1"},
    /* The policies that apply to one identity ($1): through each group it
     * is a member of (the group named), then attached to it directly
     * (group NULL). Columns: group, policy, rules. */
    [REG_STMT_REG_ID_SOURCES] =
	{MOAT_STORE_READ, 1,
	 "SELECT 0, m.group_name, p.name, p.rules FROM memberships m JOIN attachments a ON "
	 "a.group_name = m.group_name JOIN policies p ON p.name = a.policy WHERE m.identity = "
	 "$1 UNION ALL SELECT 1, NULL, p.name, p.rules FROM attachments a JOIN policies p ON "
	 "p.name = a.policy WHERE a.identity = $1 ORDER BY 1, 2, 3"},
    /* A group's policies (the built-in group, for identities the registry
     * does not know under unknown_devices = allow). Columns: policy, rules. */
    [REG_STMT_REG_GROUP_SOURCES] = {MOAT_STORE_READ, 1,
				    "SELECT p.name, p.rules FROM attachments a JOIN policies p ON "
				    "p.name = a.policy WHERE a.group_name = $1 ORDER BY p.name"},
    [REG_STMT_REG_ID_REVOKED] = {MOAT_STORE_READ, 1,
				 "SELECT serial FROM certificates WHERE identity = $1 AND "
				 "revoked_at IS NOT NULL"},
};

const struct moat_store_module moat_registry_store = {
    .name = "registry",
    .stmts = stmts,
    .n_stmts = REG_STMT__COUNT,
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(migrations[0]),
};

moat_err moat_reg_identity_row_decode(const struct moat_val *cols, size_t n,
				      struct moat_reg_identity_row *out)
{
	static const struct moat_store_col want[] = {
	    MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_I(false),
	    MOAT_COL_I(false), MOAT_COL_I(true),  MOAT_COL_I(true),  MOAT_COL_T(true),
	    MOAT_COL_T(true),  MOAT_COL_I(true)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->id = cols[0];
	out->kind = cols[1];
	out->state = cols[2];
	out->created_at = cols[3];
	out->updated_at = cols[4];
	out->first_seen = cols[5];
	out->last_seen = cols[6];
	out->last_addr = cols[7];
	out->firmware = cols[8];
	out->cert_expires_at = cols[9];
	return MOAT_OK;
}

moat_err moat_reg_group_row_decode(const struct moat_val *cols, size_t n,
				   struct moat_reg_group_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_T(false),
						     MOAT_COL_I(false), MOAT_COL_I(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->name = cols[0];
	out->description = cols[1];
	out->created_at = cols[2];
	out->members = cols[3];
	return MOAT_OK;
}

moat_err moat_reg_policy_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_reg_policy_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_T(false),
						     MOAT_COL_T(false), MOAT_COL_I(false),
						     MOAT_COL_I(false), MOAT_COL_I(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->name = cols[0];
	out->description = cols[1];
	out->rules = cols[2];
	out->builtin = cols[3];
	out->created_at = cols[4];
	out->updated_at = cols[5];
	return MOAT_OK;
}

moat_err moat_reg_name_row_decode(const struct moat_val *cols, size_t n, struct moat_val *name)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc == MOAT_OK)
		*name = cols[0];
	return rc;
}

moat_err moat_reg_rules_row_decode(const struct moat_val *cols, size_t n,
				   struct moat_reg_rules_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_T(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->policy = cols[0];
	out->rules = cols[1];
	return MOAT_OK;
}

moat_err moat_reg_ident_state_row_decode(const struct moat_val *cols, size_t n,
					 struct moat_reg_ident_state_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_T(false),
						     MOAT_COL_T(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->id = cols[0];
	out->kind = cols[1];
	out->state = cols[2];
	return MOAT_OK;
}

moat_err moat_reg_member_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_reg_member_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_T(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->identity = cols[0];
	out->group = cols[1];
	return MOAT_OK;
}

moat_err moat_reg_attach_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_reg_attach_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_T(true),
						     MOAT_COL_T(true)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	/* the schema's CHECK: exactly one of group and identity */
	if ((cols[1].type == MOAT_VAL_NULL) == (cols[2].type == MOAT_VAL_NULL))
		return MOAT_E_CORRUPT;
	out->policy = cols[0];
	out->group = cols[1];
	out->identity = cols[2];
	return MOAT_OK;
}

moat_err moat_reg_id_source_row_decode(const struct moat_val *cols, size_t n,
				       struct moat_reg_id_source_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_I(false), MOAT_COL_T(true),
						     MOAT_COL_T(false), MOAT_COL_T(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->direct = cols[0];
	out->group = cols[1];
	out->policy = cols[2];
	out->rules = cols[3];
	return MOAT_OK;
}

moat_err moat_reg_cert_row_decode(const struct moat_val *cols, size_t n,
				  struct moat_reg_cert_row *out)
{
	static const struct moat_store_col want[] = {
	    MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_I(false),
	    MOAT_COL_I(false), MOAT_COL_I(false), MOAT_COL_I(true),  MOAT_COL_T(true)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->serial = cols[0];
	out->identity = cols[1];
	out->fingerprint = cols[2];
	out->not_before = cols[3];
	out->not_after = cols[4];
	out->issued_at = cols[5];
	out->revoked_at = cols[6];
	out->reason = cols[7];
	return MOAT_OK;
}

moat_err moat_reg_revoked_row_decode(const struct moat_val *cols, size_t n,
				     struct moat_reg_revoked_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_I(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->serial = cols[0];
	out->revoked_at = cols[1];
	return MOAT_OK;
}

moat_err moat_reg_etoken_row_decode(const struct moat_val *cols, size_t n,
				    struct moat_reg_etoken_row *out)
{
	static const struct moat_store_col want[] = {
	    MOAT_COL_T(false), MOAT_COL_T(true),  MOAT_COL_T(true), MOAT_COL_I(false),
	    MOAT_COL_I(false), MOAT_COL_T(false), MOAT_COL_I(false)};
	moat_err rc;

	/* ETOKEN_GET_HASH: the first five */
	rc = moat_store_cols_check(cols, n, want, n == 5 ? 5 : MOAT_NCOLS(want));
	if (rc != MOAT_OK)
		return rc;
	out->id = cols[0];
	out->identity = cols[1];
	out->group = cols[2];
	out->uses_left = cols[3];
	out->expires_at = cols[4];
	out->creator = n == 5 ? moat_val_null() : cols[5];
	out->created_at = n == 5 ? moat_val_null() : cols[6];
	return MOAT_OK;
}

moat_err moat_reg_mca_row_decode(const struct moat_val *cols, size_t n,
				 struct moat_reg_mca_row *out)
{
	static const struct moat_store_col list[] = {MOAT_COL_T(false), MOAT_COL_T(false),
						     MOAT_COL_I(false), MOAT_COL_T(false),
						     MOAT_COL_T(true),	MOAT_COL_T(true)};
	static const struct moat_store_col all[] = {MOAT_COL_T(false), MOAT_COL_T(false),
						    MOAT_COL_T(false)};
	static const struct moat_store_col scope[] = {MOAT_COL_T(true), MOAT_COL_T(true)};
	moat_err rc;

	out->name = out->fingerprint = out->created_at = out->cert_pem = moat_val_null();
	out->devices = out->group = moat_val_null();
	switch (n) {
	case MOAT_NCOLS(list):
		if ((rc = moat_store_cols_check(cols, n, list, n)) != MOAT_OK)
			return rc;
		out->name = cols[0];
		out->fingerprint = cols[1];
		out->created_at = cols[2];
		out->cert_pem = cols[3];
		out->devices = cols[4];
		out->group = cols[5];
		return MOAT_OK;
	case MOAT_NCOLS(all):
		if ((rc = moat_store_cols_check(cols, n, all, n)) != MOAT_OK)
			return rc;
		out->name = cols[0];
		out->fingerprint = cols[1];
		out->cert_pem = cols[2];
		return MOAT_OK;
	case MOAT_NCOLS(scope):
		if ((rc = moat_store_cols_check(cols, n, scope, n)) != MOAT_OK)
			return rc;
		out->devices = cols[0];
		out->group = cols[1];
		return MOAT_OK;
	default:
		return MOAT_E_CORRUPT;
	}
}

moat_err moat_reg_seen_add(struct moat_store_batch *b, const char *id, int64_t now_ms,
			   const char *addr, const char *firmware)
{
	struct moat_val v[4];

	if (id == NULL || addr == NULL)
		return MOAT_E_INVAL;
	v[0] = moat_val_text(id, strlen(id));
	v[1] = moat_val_int(now_ms);
	v[2] = moat_val_text(addr, strlen(addr));
	v[3] = firmware != NULL ? moat_val_text(firmware, strlen(firmware)) : moat_val_null();
	return moat_store_batch_add(b, REG_STMT(ID_SEEN), v, 4);
}
