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
};
