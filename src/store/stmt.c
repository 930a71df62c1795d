/*
 * The statements of the store, shared by every backend. The SQL uses only
 * what SQLite (>= 3.37) and PostgreSQL both accept: $n parameters, upserts
 * with ON CONFLICT (...) DO UPDATE, no backend functions. Upserts, never
 * INSERT OR REPLACE: a replace deletes the row first and so would cascade
 * into a session's subscriptions and queue.
 *
 * Times are wall-clock milliseconds since the epoch (the monotonic clock
 * restarts at boot); NULL means "never".
 */
#include "store/internal.h"

#define CERT_EXPIRES                                                                               \
	"(SELECT max(c.not_after) FROM certificates c WHERE c.identity = identities.id AND "       \
	"c.revoked_at IS NULL)"
#define MSG_COLS "id, topic, payload, props, qos, retain, expire_at"
#define SESSION_COLS                                                                               \
	"client_id, identity, version, expiry_interval, expire_at, will_topic, will_payload, "     \
	"will_props, will_qos, will_retain, will_delay, will_expiry"

const struct store_stmt_def store_stmts[MOAT_STMT__COUNT] = {
    [MOAT_STMT_SESSION_PUT] =
	{STORE_WRITE, 12,
	 "INSERT INTO sessions (" SESSION_COLS ") VALUES ($1, $2, $3, $4, $5, "
	 "$6, $7, $8, $9, $10, $11, $12) ON CONFLICT (client_id) DO UPDATE SET "
	 "identity = excluded.identity, version = excluded.version, "
	 "expiry_interval = excluded.expiry_interval, "
	 "expire_at = excluded.expire_at, will_topic = excluded.will_topic, "
	 "will_payload = excluded.will_payload, will_props = "
	 "excluded.will_props, will_qos = excluded.will_qos, will_retain = "
	 "excluded.will_retain, will_delay = excluded.will_delay, "
	 "will_expiry = excluded.will_expiry"},
    [MOAT_STMT_SESSION_SET_EXPIRE] = {STORE_WRITE, 2,
				      "UPDATE sessions SET expire_at = $2 WHERE client_id = $1"},
    [MOAT_STMT_SESSION_DEL] = {STORE_WRITE, 1, "DELETE FROM sessions WHERE client_id = $1"},
    [MOAT_STMT_SUB_PUT] = {STORE_WRITE, 4,
			   "INSERT INTO subscriptions (client_id, filter, options, sub_id) VALUES "
			   "($1, $2, $3, $4) ON CONFLICT (client_id, filter) DO UPDATE SET "
			   "options = excluded.options, sub_id = excluded.sub_id"},
    [MOAT_STMT_SUB_DEL] = {STORE_WRITE, 2,
			   "DELETE FROM subscriptions WHERE client_id = $1 AND filter = $2"},
    [MOAT_STMT_MSG_PUT] = {STORE_WRITE, 7,
			   "INSERT INTO messages (" MSG_COLS
			   ") VALUES ($1, $2, $3, $4, $5, $6, $7)"},
    [MOAT_STMT_MSG_PUT_IGNORE] =
	{STORE_WRITE, 7,
	 "INSERT INTO messages (" MSG_COLS
	 ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING"},
    [MOAT_STMT_MSG_GC] = {STORE_WRITE, 1,
			  "DELETE FROM messages WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM "
			  "deliveries WHERE msg_id = $1) AND NOT EXISTS (SELECT 1 FROM retained "
			  "WHERE msg_id = $1)"},
    [MOAT_STMT_DELIVERY_PUT] =
	{STORE_WRITE, 8,
	 "INSERT INTO deliveries (client_id, seq, msg_id, qos, retain, state, "
	 "pid, sub_ids) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"},
    [MOAT_STMT_DELIVERY_SET_STATE] = {STORE_WRITE, 4,
				      "UPDATE deliveries SET state = $3, pid = $4 WHERE client_id "
				      "= $1 AND seq = $2"},
    [MOAT_STMT_DELIVERY_DEL] = {STORE_WRITE, 2,
				"DELETE FROM deliveries WHERE client_id = $1 AND seq = $2"},
    [MOAT_STMT_QOS2_IN_PUT] =
	{STORE_WRITE, 2,
	 "INSERT INTO qos2_in (client_id, pid) VALUES ($1, $2) ON CONFLICT DO "
	 "NOTHING"},
    [MOAT_STMT_QOS2_IN_DEL] = {STORE_WRITE, 2,
			       "DELETE FROM qos2_in WHERE client_id = $1 AND pid = $2"},
    [MOAT_STMT_RETAINED_PUT] = {STORE_WRITE, 2,
				"INSERT INTO retained (topic, msg_id) VALUES ($1, $2) ON CONFLICT "
				"(topic) DO UPDATE SET msg_id = excluded.msg_id"},
    [MOAT_STMT_RETAINED_DEL] = {STORE_WRITE, 1, "DELETE FROM retained WHERE topic = $1"},
    /* Deleting a session cascades to its subscriptions, deliveries and
     * QoS 2 state (foreign keys). */
    [MOAT_STMT_EXPIRE_SESSIONS] = {STORE_WRITE, 1,
				   "DELETE FROM sessions WHERE expire_at IS NOT NULL AND "
				   "expire_at <= $1"},
    /* Only deliveries not yet started: once a PUBLISH went out, MQTT
     * requires the flow to complete even if the message expires. */
    [MOAT_STMT_EXPIRE_QUEUED] = {STORE_WRITE, 1,
				 "DELETE FROM deliveries WHERE state = 0 AND msg_id IN (SELECT id "
				 "FROM messages WHERE expire_at IS NOT NULL AND expire_at <= $1)"},
    [MOAT_STMT_EXPIRE_RETAINED] = {STORE_WRITE, 1,
				   "DELETE FROM retained WHERE msg_id IN (SELECT id FROM messages "
				   "WHERE expire_at IS NOT NULL AND expire_at <= $1)"},
    [MOAT_STMT_MSG_GC_ALL] = {STORE_WRITE, 0,
			      "DELETE FROM messages WHERE NOT EXISTS (SELECT 1 FROM deliveries d "
			      "WHERE d.msg_id = messages.id) AND NOT EXISTS (SELECT 1 FROM "
			      "retained r WHERE r.msg_id = messages.id)"},

    /* Management plane. Operators are addressed by name (unique); the
     * numeric id only links the child tables. */
    [MOAT_STMT_OP_INSERT] = {STORE_WRITE, 4,
			     "INSERT INTO operators (name, role, pw_hash, created_at, updated_at) "
			     "VALUES ($1, $2, $3, $4, $4)"},
    [MOAT_STMT_OP_SET_PASSWORD] = {STORE_WRITE, 3,
				   "UPDATE operators SET pw_hash = $2, updated_at = $3 WHERE name "
				   "= $1"},
    [MOAT_STMT_OP_SET_TOTP_PENDING] = {STORE_WRITE, 3,
				       "UPDATE operators SET totp_pending = $2, updated_at = $3 "
				       "WHERE name = $1"},
    [MOAT_STMT_OP_CONFIRM_TOTP] = {STORE_WRITE, 4,
				   "UPDATE operators SET totp_secret = $2, totp_pending = NULL, "
				   "totp_last_step = $3, updated_at = $4 WHERE name = $1"},
    [MOAT_STMT_OP_SET_TOTP_STEP] = {STORE_WRITE, 2,
				    "UPDATE operators SET totp_last_step = $2 WHERE name = $1 AND "
				    "totp_last_step < $2"},
    [MOAT_STMT_OP_RESET_MFA] = {STORE_WRITE, 2,
				"UPDATE operators SET totp_secret = NULL, totp_pending = NULL, "
				"totp_last_step = 0, updated_at = $2 WHERE name = $1"},
    [MOAT_STMT_OP_SET_ROLE] = {STORE_WRITE, 3,
			       "UPDATE operators SET role = $2, updated_at = $3 WHERE name = $1"},
    [MOAT_STMT_OP_SET_DISABLED] = {STORE_WRITE, 3,
				   "UPDATE operators SET disabled = $2, updated_at = $3 WHERE name "
				   "= $1"},
    [MOAT_STMT_RECOVERY_PUT] = {STORE_WRITE, 2,
				"INSERT INTO recovery_codes (operator_id, hash) SELECT id, $2 FROM "
				"operators WHERE name = $1"},
    [MOAT_STMT_RECOVERY_USE] = {STORE_WRITE, 2,
				"DELETE FROM recovery_codes WHERE hash = $2 AND operator_id = "
				"(SELECT id FROM operators WHERE name = $1)"},
    [MOAT_STMT_RECOVERY_DEL_ALL] = {STORE_WRITE, 1,
				    "DELETE FROM recovery_codes WHERE operator_id = (SELECT id "
				    "FROM operators WHERE name = $1)"},
    [MOAT_STMT_SESS_PUT] = {STORE_WRITE, 9,
			    "INSERT INTO op_sessions (id_hash, sid, operator_id, csrf, mfa, "
			    "created_at, last_seen, peer, user_agent) SELECT $1, $2, id, $4, $5, "
			    "$6, $7, $8, $9 FROM operators WHERE name = $3"},
    [MOAT_STMT_SESS_TOUCH] = {STORE_WRITE, 2,
			      "UPDATE op_sessions SET last_seen = $2 WHERE id_hash = $1"},
    [MOAT_STMT_SESS_SET_MFA] = {STORE_WRITE, 2,
				"UPDATE op_sessions SET mfa = $2 WHERE id_hash = $1"},
    [MOAT_STMT_SESS_DEL] = {STORE_WRITE, 1, "DELETE FROM op_sessions WHERE sid = $1"},
    /* All sessions of an operator but one ($2, may be NULL): after a
     * password change, disabling, or an MFA reset. */
    [MOAT_STMT_SESS_DEL_OPERATOR] = {STORE_WRITE, 2,
				     "DELETE FROM op_sessions WHERE operator_id = (SELECT id FROM "
				     "operators WHERE name = $1) AND ($2 IS NULL OR sid <> $2)"},
    /* $1: idle cutoff (last_seen before it), $2: absolute cutoff. */
    [MOAT_STMT_SESS_EXPIRE] = {STORE_WRITE, 2,
			       "DELETE FROM op_sessions WHERE last_seen < $1 OR created_at < $2"},
    [MOAT_STMT_TOKEN_PUT] = {STORE_WRITE, 7,
			     "INSERT INTO api_tokens (id, hash, name, role, creator, created_at, "
			     "expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"},
    [MOAT_STMT_TOKEN_REVOKE] =
	{STORE_WRITE, 2,
	 "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at "
	 "IS NULL"},
    [MOAT_STMT_TOKEN_TOUCH] = {STORE_WRITE, 2,
			       "UPDATE api_tokens SET last_used = $2 WHERE id = $1"},
    [MOAT_STMT_SETUP_PUT] = {STORE_WRITE, 2,
			     "INSERT INTO setup_tokens (hash, expires_at) VALUES ($1, $2)"},
    [MOAT_STMT_SETUP_USE] = {STORE_WRITE, 2,
			     "UPDATE setup_tokens SET used_at = $2 WHERE hash = $1 AND used_at IS "
			     "NULL"},
    [MOAT_STMT_AUDIT_PUT] =
	{STORE_WRITE, 10,
	 "INSERT INTO audit_log (seq, ts, actor, action, target, outcome, peer, "
	 "detail, prev, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"},
    [MOAT_STMT_CHECKPOINT_PUT] = {STORE_WRITE, 4,
				  "INSERT INTO audit_checkpoints (seq, ts, head, sig) VALUES ($1, "
				  "$2, $3, $4)"},

    /* Registry (migration 3). States are checked by the caller against the
     * lifecycle; the SQL refuses only what can never be valid. */
    [MOAT_STMT_ID_INSERT] = {STORE_WRITE, 4,
			     "INSERT INTO identities (id, kind, state, created_at, updated_at) "
			     "VALUES ($1, $2, $3, $4, $4)"},
    [MOAT_STMT_ID_SET_STATE] =
	{STORE_WRITE, 3,
	 "UPDATE identities SET state = $2, updated_at = $3 WHERE id = $1 AND "
	 "state <> 'decommissioned'"},
    /* $4: the firmware version the device reported, or NULL (keep). */
    [MOAT_STMT_ID_SEEN] = {STORE_WRITE, 4,
			   "UPDATE identities SET first_seen = coalesce(first_seen, $2), last_seen "
			   "= $2, last_addr = $3, firmware = coalesce($4, firmware) WHERE id = $1"},
    [MOAT_STMT_MEMBER_ADD] = {STORE_WRITE, 2,
			      "INSERT INTO memberships (identity, group_name) VALUES ($1, $2) ON "
			      "CONFLICT DO NOTHING"},
    [MOAT_STMT_MEMBER_DEL] = {STORE_WRITE, 2,
			      "DELETE FROM memberships WHERE identity = $1 AND group_name = $2"},
    [MOAT_STMT_MEMBER_DEL_ALL] = {STORE_WRITE, 1, "DELETE FROM memberships WHERE identity = $1"},
    [MOAT_STMT_GROUP_INSERT] =
	{STORE_WRITE, 3,
	 "INSERT INTO groups (name, description, created_at) VALUES ($1, $2, "
	 "$3)"},
    [MOAT_STMT_GROUP_DEL] = {STORE_WRITE, 1, "DELETE FROM groups WHERE name = $1"},
    [MOAT_STMT_POLICY_PUT] =
	{STORE_WRITE, 4,
	 "INSERT INTO policies (name, description, rules, created_at, "
	 "updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO UPDATE "
	 "SET description = excluded.description, rules = excluded.rules, "
	 "updated_at = excluded.updated_at WHERE policies.builtin = 0"},
    [MOAT_STMT_POLICY_DEL] = {STORE_WRITE, 1,
			      "DELETE FROM policies WHERE name = $1 AND builtin = 0"},
    [MOAT_STMT_ATTACH_GROUP] = {STORE_WRITE, 2,
				"INSERT INTO attachments (policy, group_name) VALUES ($1, $2) ON "
				"CONFLICT DO NOTHING"},
    [MOAT_STMT_DETACH_GROUP] = {STORE_WRITE, 2,
				"DELETE FROM attachments WHERE policy = $1 AND group_name = $2"},
    [MOAT_STMT_ATTACH_ID] = {STORE_WRITE, 2,
			     "INSERT INTO attachments (policy, identity) VALUES ($1, $2) ON "
			     "CONFLICT DO NOTHING"},
    [MOAT_STMT_DETACH_ID] = {STORE_WRITE, 2,
			     "DELETE FROM attachments WHERE policy = $1 AND identity = $2"},
    [MOAT_STMT_CERT_PUT] = {STORE_WRITE, 6,
			    "INSERT INTO certificates (serial, identity, fingerprint, not_before, "
			    "not_after, issued_at) VALUES ($1, $2, $3, $4, $5, $6)"},
    [MOAT_STMT_CERT_REVOKE] =
	{STORE_WRITE, 3,
	 "UPDATE certificates SET revoked_at = $2, reason = $3 WHERE serial = "
	 "$1 AND revoked_at IS NULL"},
    [MOAT_STMT_CERT_REVOKE_ID] = {STORE_WRITE, 3,
				  "UPDATE certificates SET revoked_at = $2, reason = $3 WHERE "
				  "identity = $1 AND revoked_at IS NULL"},
    [MOAT_STMT_ETOKEN_PUT] =
	{STORE_WRITE, 8,
	 "INSERT INTO enroll_tokens (id, hash, identity, group_name, uses_left, "
	 "expires_at, creator, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, "
	 "$8)"},
    [MOAT_STMT_ETOKEN_USE] =
	{STORE_WRITE, 1,
	 "UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE id = $1 AND "
	 "uses_left > 0"},
    [MOAT_STMT_ETOKEN_BURN_ID] = {STORE_WRITE, 1,
				  "UPDATE enroll_tokens SET uses_left = 0 WHERE identity = $1"},
    [MOAT_STMT_CERT_SCHEDULE_REVOKE] =
	{STORE_WRITE, 2,
	 "UPDATE certificates SET revoke_at = $2 WHERE serial = $1 AND "
	 "revoked_at IS NULL"},
    [MOAT_STMT_CERT_REVOKE_DUE] =
	{STORE_WRITE, 1,
	 "UPDATE certificates SET revoked_at = revoke_at, reason = "
	 "'superseded' WHERE revoke_at IS NOT NULL AND revoke_at <= $1 AND "
	 "revoked_at IS NULL"},
    /* Re-registering a decommissioned id starts a new device: the old row
     * (and its memberships and attachments) goes; its certificates stay
     * revoked and its history stays in the audit log. */
    [MOAT_STMT_ID_DELETE_DECOMMISSIONED] = {STORE_WRITE, 1,
					    "DELETE FROM identities WHERE id = $1 AND state = "
					    "'decommissioned'"},
    [MOAT_STMT_MCA_PUT] = {STORE_WRITE, 6,
			   "INSERT INTO manufacturer_cas (name, cert_pem, fingerprint, created_at, "
			   "devices, group_name) VALUES ($1, $2, $3, $4, $5, $6)"},
    [MOAT_STMT_MCA_DEL] = {STORE_WRITE, 1, "DELETE FROM manufacturer_cas WHERE name = $1"},
    [MOAT_STMT_RETAINED_DEL_PREFIX] = {STORE_WRITE, 1,
				       "DELETE FROM retained WHERE substr(topic, 1, length($1)) = "
				       "$1"},

    [MOAT_STMT_LOAD_SESSIONS] = {STORE_READ, 0,
				 "SELECT " SESSION_COLS " FROM sessions ORDER BY client_id"},
    [MOAT_STMT_LOAD_SUBS] = {STORE_READ, 0,
			     "SELECT client_id, filter, options, sub_id FROM subscriptions ORDER "
			     "BY client_id, filter"},
    [MOAT_STMT_LOAD_MESSAGES] = {STORE_READ, 0, "SELECT " MSG_COLS " FROM messages ORDER BY id"},
    [MOAT_STMT_LOAD_DELIVERIES] = {STORE_READ, 0,
				   "SELECT client_id, seq, msg_id, qos, retain, state, pid, "
				   "sub_ids FROM deliveries ORDER BY client_id, seq"},
    [MOAT_STMT_LOAD_QOS2_IN] = {STORE_READ, 0,
				"SELECT client_id, pid FROM qos2_in ORDER BY client_id, pid"},
    [MOAT_STMT_LOAD_RETAINED] = {STORE_READ, 0,
				 "SELECT topic, msg_id FROM retained ORDER BY topic"},
    [MOAT_STMT_MSG_GET] = {STORE_READ, 1, "SELECT " MSG_COLS " FROM messages WHERE id = $1"},
    [MOAT_STMT_MSG_MAX_ID] = {STORE_READ, 0, "SELECT coalesce(max(id), 0) FROM messages"},
    [MOAT_STMT_OP_GET] = {STORE_READ, 1,
			  "SELECT name, role, pw_hash, totp_secret, totp_pending, totp_last_step, "
			  "disabled, created_at, updated_at FROM operators WHERE name = $1"},
    /* Keyset pagination: names after the cursor $1 ('' = from the start). */
    [MOAT_STMT_OP_LIST] = {STORE_READ, 2,
			   "SELECT name, role, disabled, totp_secret IS NOT NULL, created_at, "
			   "updated_at FROM operators WHERE name > $1 ORDER BY name LIMIT $2"},
    /* $1: a role (enabled operators with it), or NULL (every operator,
     * disabled ones too: setup stays closed once anyone exists). */
    [MOAT_STMT_OP_COUNT] = {STORE_READ, 1,
			    "SELECT count(*) FROM operators WHERE $1 IS NULL OR (role = $1 AND "
			    "disabled = 0)"},
    [MOAT_STMT_RECOVERY_HAS] = {STORE_READ, 2,
				"SELECT count(*) FROM recovery_codes WHERE hash = $2 AND "
				"operator_id = (SELECT id FROM operators WHERE name = $1)"},
    [MOAT_STMT_SESS_GET] = {STORE_READ, 1,
			    "SELECT s.sid, o.name, o.role, s.csrf, s.mfa, s.created_at, "
			    "s.last_seen, o.disabled, o.totp_secret IS NOT NULL FROM op_sessions s "
			    "JOIN operators o ON o.id = s.operator_id WHERE s.id_hash = $1"},
    /* $1: an operator name or NULL for all; $2: sid cursor. */
    [MOAT_STMT_SESS_LIST] = {STORE_READ, 3,
			     "SELECT s.sid, o.name, s.created_at, s.last_seen, s.peer, "
			     "s.user_agent FROM op_sessions s JOIN operators o ON o.id = "
			     "s.operator_id WHERE ($1 IS NULL OR o.name = $1) AND s.sid > $2 ORDER "
			     "BY s.sid LIMIT $3"},
    [MOAT_STMT_SESS_GET_SID] = {STORE_READ, 1,
				"SELECT o.name FROM op_sessions s JOIN operators o ON o.id = "
				"s.operator_id WHERE s.sid = $1"},
    /* With the creator's current role and state: a token never outlives
     * or outranks the operator who made it. */
    [MOAT_STMT_TOKEN_GET_HASH] =
	{STORE_READ, 1,
	 "SELECT t.id, t.name, t.role, t.creator, t.expires_at, t.revoked_at, "
	 "o.role, o.disabled FROM api_tokens t LEFT JOIN operators o ON "
	 "'user:' || o.name = t.creator WHERE t.hash = $1"},
    [MOAT_STMT_TOKEN_GET] = {STORE_READ, 1,
			     "SELECT id, name, role, creator, created_at, expires_at, last_used, "
			     "revoked_at FROM api_tokens WHERE id = $1"},
    [MOAT_STMT_TOKEN_LIST] = {STORE_READ, 2,
			      "SELECT id, name, role, creator, created_at, expires_at, last_used, "
			      "revoked_at FROM api_tokens WHERE id > $1 ORDER BY id LIMIT $2"},
    [MOAT_STMT_SETUP_GET] = {STORE_READ, 1,
			     "SELECT expires_at, used_at FROM setup_tokens WHERE hash = $1"},
    [MOAT_STMT_AUDIT_HEAD] = {STORE_READ, 0,
			      "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"},
    [MOAT_STMT_AUDIT_ALL] = {STORE_READ, 0,
			     "SELECT seq, ts, actor, action, target, outcome, peer, detail, prev, "
			     "hash FROM audit_log ORDER BY seq"},
    /* Newest first. $1: entries before this seq; $2 actor, $3 action
     * prefix, $4 since (ts >=), $5 until (ts <): NULL = any; $6 limit. */
    [MOAT_STMT_AUDIT_LIST] = {STORE_READ, 6,
			      "SELECT seq, ts, actor, action, target, outcome, peer, detail, prev, "
			      "hash FROM audit_log WHERE seq < $1 AND ($2 IS NULL OR actor = $2) "
			      "AND ($3 IS NULL OR substr(action, 1, length($3)) = $3) AND ($4 IS "
			      "NULL OR ts >= $4) AND ($5 IS NULL OR ts < $5) ORDER BY seq DESC "
			      "LIMIT $6"},
    [MOAT_STMT_CHECKPOINT_ALL] = {STORE_READ, 0,
				  "SELECT seq, ts, head, sig FROM audit_checkpoints ORDER BY seq"},
    [MOAT_STMT_CHECKPOINT_LAST] = {STORE_READ, 0,
				   "SELECT seq, ts, head, sig FROM audit_checkpoints ORDER BY seq "
				   "DESC LIMIT 1"},
    /* The registry snapshot the broker enforces is built from these four. */
    [MOAT_STMT_REG_IDENTITIES] = {STORE_READ, 0,
				  "SELECT id, kind, state FROM identities ORDER BY id"},
    [MOAT_STMT_REG_MEMBERS] = {STORE_READ, 0,
			       "SELECT identity, group_name FROM memberships ORDER BY identity, "
			       "group_name"},
    [MOAT_STMT_REG_ATTACH] =
	{STORE_READ, 0, "SELECT policy, group_name, identity FROM attachments ORDER BY policy"},
    [MOAT_STMT_REG_POLICIES] = {STORE_READ, 0, "SELECT name, rules FROM policies ORDER BY name"},
    /* The last column: when the identity's newest unrevoked certificate
     * expires (NULL without one). */
    [MOAT_STMT_ID_GET] = {STORE_READ, 1,
			  "SELECT id, kind, state, created_at, updated_at, first_seen, last_seen, "
			  "last_addr, firmware, " CERT_EXPIRES " FROM identities WHERE id = $1"},
    /* $1 cursor, $2 kind or NULL, $3 state or NULL, $4 limit, $5 a time:
     * only identities whose certificate expires before it (NULL: all). */
    [MOAT_STMT_ID_LIST] =
	{STORE_READ, 5,
	 "SELECT id, kind, state, created_at, updated_at, first_seen, last_seen, "
	 "last_addr, firmware, " CERT_EXPIRES " FROM identities WHERE id > $1 AND "
	 "($2 IS NULL OR kind = $2) AND ($3 IS NULL OR state = $3) AND ($5 IS NULL "
	 "OR " CERT_EXPIRES " < $5) ORDER BY id LIMIT $4"},
    [MOAT_STMT_MEMBERS_OF] = {STORE_READ, 1,
			      "SELECT group_name FROM memberships WHERE identity = $1 ORDER BY "
			      "group_name"},
    [MOAT_STMT_GROUP_GET] =
	{STORE_READ, 1,
	 "SELECT name, description, created_at, (SELECT count(*) FROM "
	 "memberships m WHERE m.group_name = g.name) FROM groups g WHERE name = "
	 "$1"},
    [MOAT_STMT_GROUP_LIST] =
	{STORE_READ, 2,
	 "SELECT name, description, created_at, (SELECT count(*) FROM "
	 "memberships m WHERE m.group_name = g.name) FROM groups g WHERE name > "
	 "$1 ORDER BY name LIMIT $2"},
    [MOAT_STMT_POLICY_GET] =
	{STORE_READ, 1,
	 "SELECT name, description, rules, builtin, created_at, updated_at FROM "
	 "policies WHERE name = $1"},
    [MOAT_STMT_POLICY_LIST] = {STORE_READ, 2,
			       "SELECT name, description, rules, builtin, created_at, updated_at "
			       "FROM policies WHERE name > $1 ORDER BY name LIMIT $2"},
    [MOAT_STMT_ATTACHED_TO_GROUP] =
	{STORE_READ, 1,
	 "SELECT policy FROM attachments WHERE group_name = $1 ORDER BY "
	 "policy"},
    [MOAT_STMT_ATTACHED_TO_ID] = {STORE_READ, 1,
				  "SELECT policy FROM attachments WHERE identity = $1 ORDER BY "
				  "policy"},
    [MOAT_STMT_CERT_GET] =
	{STORE_READ, 1,
	 "SELECT serial, identity, fingerprint, not_before, not_after, issued_at, "
	 "revoked_at, reason FROM certificates WHERE serial = $1"},
    /* $1 identity or NULL, $2 cursor (serial), $3 limit */
    [MOAT_STMT_CERT_LIST] = {STORE_READ, 3,
			     "SELECT serial, identity, fingerprint, not_before, not_after, "
			     "issued_at, revoked_at, reason FROM certificates WHERE ($1 IS NULL OR "
			     "identity = $1) AND serial > $2 ORDER BY serial LIMIT $3"},
    [MOAT_STMT_REVOKED_ALL] =
	{STORE_READ, 0,
	 "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT "
	 "NULL ORDER BY serial"},
    [MOAT_STMT_ETOKEN_GET_HASH] = {STORE_READ, 1,
				   "SELECT id, identity, group_name, uses_left, expires_at FROM "
				   "enroll_tokens WHERE hash = $1"},
    /* What decommissioning an identity ($1) will remove. */
    [MOAT_STMT_DECOM_COUNTS] = {STORE_READ, 1,
				"SELECT count(*) FROM certificates WHERE identity = $1 AND "
				"revoked_at IS NULL"},
    [MOAT_STMT_DECOM_TOKENS] = {STORE_READ, 1,
				"SELECT count(*) FROM enroll_tokens WHERE identity = $1 AND "
				"uses_left > 0"},
    [MOAT_STMT_DECOM_SESSIONS] = {STORE_READ, 1,
				  "SELECT count(*) FROM sessions WHERE client_id = $1"},
    [MOAT_STMT_DECOM_RETAINED] = {STORE_READ, 1,
				  "SELECT count(*) FROM retained WHERE substr(topic, 1, "
				  "length($1)) = $1"},
    [MOAT_STMT_MCA_LIST] =
	{STORE_READ, 2,
	 "SELECT name, fingerprint, created_at, cert_pem, devices, group_name FROM "
	 "manufacturer_cas WHERE name > $1 ORDER BY name LIMIT $2"},
    [MOAT_STMT_MCA_ALL] =
	{STORE_READ, 0, "SELECT name, fingerprint, cert_pem FROM manufacturer_cas ORDER BY name"},
    /* The registry service (src/registry/service.c) and the broker's
     * identity table: which identities a change touches, and one
     * identity's record, so a change costs what it touches, not the
     * fleet. */
    [MOAT_STMT_REG_GROUP_MEMBERS] = {STORE_READ, 1,
				     "SELECT identity FROM memberships WHERE group_name = $1 "
				     "ORDER BY identity"},
    /* Identities a policy ($1) reaches: members of the groups it is
     * attached to, and the identities it is attached to directly. */
    [MOAT_STMT_REG_POLICY_IDS] =
	{STORE_READ, 1,
	 "SELECT m.identity FROM attachments a JOIN memberships m ON m.group_name = "
	 "a.group_name WHERE a.policy = $1 UNION SELECT identity FROM attachments WHERE "
	 "policy = $1 AND identity IS NOT NULL ORDER BY 1"},
    [MOAT_STMT_REG_POLICY_GROUPS] = {STORE_READ, 1,
				     "SELECT group_name FROM attachments WHERE policy = $1 AND "
				     "group_name IS NOT NULL ORDER BY group_name"},
    [MOAT_STMT_REG_ID_STATE] = {STORE_READ, 1, "SELECT state FROM identities WHERE id = $1"},
    /* The policies that apply to one identity ($1): through each group it
     * is a member of (the group named), then attached to it directly
     * (group NULL). Columns: group, policy, rules. */
    [MOAT_STMT_REG_ID_SOURCES] =
	{STORE_READ, 1,
	 "SELECT 0, m.group_name, p.name, p.rules FROM memberships m JOIN attachments a ON "
	 "a.group_name = m.group_name JOIN policies p ON p.name = a.policy WHERE m.identity = "
	 "$1 UNION ALL SELECT 1, NULL, p.name, p.rules FROM attachments a JOIN policies p ON "
	 "p.name = a.policy WHERE a.identity = $1 ORDER BY 1, 2, 3"},
    /* A group's policies (the built-in group, for identities the registry
     * does not know under unknown_devices = allow). Columns: policy, rules. */
    [MOAT_STMT_REG_GROUP_SOURCES] = {STORE_READ, 1,
				     "SELECT p.name, p.rules FROM attachments a JOIN policies p ON "
				     "p.name = a.policy WHERE a.group_name = $1 ORDER BY p.name"},
    [MOAT_STMT_REG_ID_REVOKED] = {STORE_READ, 1,
				  "SELECT serial FROM certificates WHERE identity = $1 AND "
				  "revoked_at IS NOT NULL"},
    [MOAT_STMT_CERT_DUE_COUNT] =
	{STORE_READ, 1,
	 "SELECT count(*) FROM certificates WHERE revoke_at IS NOT NULL AND "
	 "revoke_at <= $1 AND revoked_at IS NULL"},
    /* What the CRL lists: revoked and not yet expired ($1 now); a
     * certificate past its notAfter is refused anyway (RFC 5280 5.1). */
    /* The scope of manufacturer CA $1: device-id patterns or a group. */
    [MOAT_STMT_MCA_SCOPE] = {STORE_READ, 1,
			     "SELECT devices, group_name FROM manufacturer_cas WHERE name = $1"},
    /* Is $1 a member of group $2? */
    [MOAT_STMT_MEMBER_IS] = {STORE_READ, 2,
			     "SELECT count(*) FROM memberships WHERE identity = $1 AND "
			     "group_name = $2"},
    [MOAT_STMT_CRL_ENTRIES] =
	{STORE_READ, 1,
	 "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT "
	 "NULL AND not_after > $1 ORDER BY serial"},
    [MOAT_STMT_GROUP_EXISTS] = {STORE_READ, 1, "SELECT count(*) FROM groups WHERE name = $1"},
    [MOAT_STMT_ETOKEN_LIST] = {STORE_READ, 2,
			       "SELECT id, identity, group_name, uses_left, expires_at, creator, "
			       "created_at FROM enroll_tokens WHERE id > $1 ORDER BY id LIMIT $2"},
};
