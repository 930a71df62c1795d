/*
 * The mqtt module's tables and statements (docs/storage.md). The SQL uses
 * only what SQLite (>= 3.37) and PostgreSQL both accept: $n parameters,
 * upserts with ON CONFLICT (...) DO UPDATE. Times are wall-clock
 * milliseconds since the epoch; NULL means "never".
 *
 * Migrations: dense versions from 1, each applied in its own transaction;
 * never edit a step that has shipped, add one.
 */
#include "mqtt/schema.h"

#define MSG_COLS "id, topic, payload, props, qos, retain, expire_at"
#define SESSION_COLS                                                                               \
	"client_id, identity, version, expiry_interval, expire_at, will_topic, will_payload, "     \
	"will_props, will_qos, will_retain, will_delay, will_expiry"

static const struct moat_store_migration migrations[] = {
    {1, "broker durable state: sessions, subscriptions, messages, queues, retained",
     /* A message stored once, shared by every session it is queued for
      * and by the retained table; its id is assigned by the broker so one
      * batch can insert it and reference it. */
     "CREATE TABLE messages ("
     " id INTEGER PRIMARY KEY,"
     " topic TEXT NOT NULL,"
     " payload BLOB NOT NULL,"
     " props BLOB,"
     " qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),"
     " retain INTEGER NOT NULL CHECK (retain IN (0, 1)),"
     " expire_at INTEGER"
     ") STRICT;"
     "CREATE INDEX messages_expire ON messages (expire_at) WHERE expire_at IS NOT NULL;"
     /* expire_at is NULL while the client is connected: after a crash such
      * a session counts as disconnected at restart. */
     "CREATE TABLE sessions ("
     " client_id TEXT PRIMARY KEY NOT NULL,"
     " identity TEXT NOT NULL,"
     " version INTEGER NOT NULL CHECK (version IN (3, 4, 5)),"
     " expiry_interval INTEGER NOT NULL CHECK (expiry_interval >= 0),"
     " expire_at INTEGER,"
     " will_topic TEXT,"
     " will_payload BLOB,"
     " will_props BLOB,"
     " will_qos INTEGER CHECK (will_qos BETWEEN 0 AND 2),"
     " will_retain INTEGER CHECK (will_retain IN (0, 1)),"
     " will_delay INTEGER CHECK (will_delay >= 0),"
     " will_expiry INTEGER CHECK (will_expiry >= 0),"
     " CHECK ((will_topic IS NULL) = (will_payload IS NULL))"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX sessions_expire ON sessions (expire_at) WHERE expire_at IS NOT NULL;"
     "CREATE TABLE subscriptions ("
     " client_id TEXT NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,"
     " filter TEXT NOT NULL,"
     " options INTEGER NOT NULL CHECK (options BETWEEN 0 AND 255),"
     " sub_id INTEGER NOT NULL CHECK (sub_id BETWEEN 0 AND 268435455),"
     " PRIMARY KEY (client_id, filter)"
     ") STRICT, WITHOUT ROWID;"
     /* Outgoing QoS 1/2 per session, queued (state 0) or in flight, in
      * order of seq. Messages are never deleted under a delivery
      * (no cascade): the foreign key is a guard. */
     "CREATE TABLE deliveries ("
     " client_id TEXT NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,"
     " seq INTEGER NOT NULL,"
     " msg_id INTEGER NOT NULL REFERENCES messages (id),"
     " qos INTEGER NOT NULL CHECK (qos BETWEEN 1 AND 2),"
     " retain INTEGER NOT NULL CHECK (retain IN (0, 1)),"
     " state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 3),"
     " pid INTEGER NOT NULL CHECK (pid BETWEEN 0 AND 65535),"
     " sub_ids BLOB,"
     " PRIMARY KEY (client_id, seq)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX deliveries_msg ON deliveries (msg_id);"
     "CREATE TABLE qos2_in ("
     " client_id TEXT NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,"
     " pid INTEGER NOT NULL CHECK (pid BETWEEN 1 AND 65535),"
     " PRIMARY KEY (client_id, pid)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE TABLE retained ("
     " topic TEXT PRIMARY KEY NOT NULL,"
     " msg_id INTEGER NOT NULL REFERENCES messages (id)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX retained_msg ON retained (msg_id);"},
};

static const struct moat_store_stmt stmts[MQTT_STMT__COUNT] = {
    [MQTT_STMT_SESSION_PUT] =
	{MOAT_STORE_WRITE, 12,
	 "INSERT INTO sessions (" SESSION_COLS ") VALUES ($1, $2, $3, $4, $5, "
	 "$6, $7, $8, $9, $10, $11, $12) ON CONFLICT (client_id) DO UPDATE SET "
	 "identity = excluded.identity, version = excluded.version, "
	 "expiry_interval = excluded.expiry_interval, "
	 "expire_at = excluded.expire_at, will_topic = excluded.will_topic, "
	 "will_payload = excluded.will_payload, will_props = "
	 "excluded.will_props, will_qos = excluded.will_qos, will_retain = "
	 "excluded.will_retain, will_delay = excluded.will_delay, "
	 "will_expiry = excluded.will_expiry"},
    [MQTT_STMT_SESSION_SET_EXPIRE] = {MOAT_STORE_WRITE, 2,
				      "UPDATE sessions SET expire_at = $2 WHERE client_id = $1"},
    [MQTT_STMT_SESSION_DEL] = {MOAT_STORE_WRITE, 1, "DELETE FROM sessions WHERE client_id = $1"},
    [MQTT_STMT_SUB_PUT] = {MOAT_STORE_WRITE, 4,
			   "INSERT INTO subscriptions (client_id, filter, options, sub_id) VALUES "
			   "($1, $2, $3, $4) ON CONFLICT (client_id, filter) DO UPDATE SET "
			   "options = excluded.options, sub_id = excluded.sub_id"},
    [MQTT_STMT_SUB_DEL] = {MOAT_STORE_WRITE, 2,
			   "DELETE FROM subscriptions WHERE client_id = $1 AND filter = $2"},
    [MQTT_STMT_MSG_PUT] = {MOAT_STORE_WRITE, 7,
			   "INSERT INTO messages (" MSG_COLS
			   ") VALUES ($1, $2, $3, $4, $5, $6, $7)"},
    [MQTT_STMT_MSG_PUT_IGNORE] =
	{MOAT_STORE_WRITE, 7,
	 "INSERT INTO messages (" MSG_COLS
	 ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING"},
    [MQTT_STMT_MSG_GC] = {MOAT_STORE_WRITE, 1,
			  "DELETE FROM messages WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM "
			  "deliveries WHERE msg_id = $1) AND NOT EXISTS (SELECT 1 FROM retained "
			  "WHERE msg_id = $1)"},
    [MQTT_STMT_DELIVERY_PUT] =
	{MOAT_STORE_WRITE, 8,
	 "INSERT INTO deliveries (client_id, seq, msg_id, qos, retain, state, "
	 "pid, sub_ids) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"},
    [MQTT_STMT_DELIVERY_SET_STATE] = {MOAT_STORE_WRITE, 4,
				      "UPDATE deliveries SET state = $3, pid = $4 WHERE client_id "
				      "= $1 AND seq = $2"},
    [MQTT_STMT_DELIVERY_DEL] = {MOAT_STORE_WRITE, 2,
				"DELETE FROM deliveries WHERE client_id = $1 AND seq = $2"},
    [MQTT_STMT_QOS2_IN_PUT] =
	{MOAT_STORE_WRITE, 2,
	 "INSERT INTO qos2_in (client_id, pid) VALUES ($1, $2) ON CONFLICT DO "
	 "NOTHING"},
    [MQTT_STMT_QOS2_IN_DEL] = {MOAT_STORE_WRITE, 2,
			       "DELETE FROM qos2_in WHERE client_id = $1 AND pid = $2"},
    [MQTT_STMT_RETAINED_PUT] = {MOAT_STORE_WRITE, 2,
				"INSERT INTO retained (topic, msg_id) VALUES ($1, $2) ON CONFLICT "
				"(topic) DO UPDATE SET msg_id = excluded.msg_id"},
    [MQTT_STMT_RETAINED_DEL] = {MOAT_STORE_WRITE, 1, "DELETE FROM retained WHERE topic = $1"},
    /* Deleting a session cascades to its subscriptions, deliveries and
     * QoS 2 state (foreign keys). */
    [MQTT_STMT_EXPIRE_SESSIONS] = {MOAT_STORE_WRITE, 1,
				   "DELETE FROM sessions WHERE expire_at IS NOT NULL AND "
				   "expire_at <= $1"},
    /* Only deliveries not yet started: once a PUBLISH went out, MQTT
     * requires the flow to complete even if the message expires. */
    [MQTT_STMT_EXPIRE_QUEUED] = {MOAT_STORE_WRITE, 1,
				 "DELETE FROM deliveries WHERE state = 0 AND msg_id IN (SELECT id "
				 "FROM messages WHERE expire_at IS NOT NULL AND expire_at <= $1)"},
    [MQTT_STMT_EXPIRE_RETAINED] = {MOAT_STORE_WRITE, 1,
				   "DELETE FROM retained WHERE msg_id IN (SELECT id FROM messages "
				   "WHERE expire_at IS NOT NULL AND expire_at <= $1)"},
    [MQTT_STMT_MSG_GC_ALL] = {MOAT_STORE_WRITE, 0,
			      "DELETE FROM messages WHERE NOT EXISTS (SELECT 1 FROM deliveries d "
			      "WHERE d.msg_id = messages.id) AND NOT EXISTS (SELECT 1 FROM "
			      "retained r WHERE r.msg_id = messages.id)"},
    [MQTT_STMT_RETAINED_DEL_PREFIX] = {MOAT_STORE_WRITE, 1,
				       "DELETE FROM retained WHERE substr(topic, 1, length($1)) = "
				       "$1"},
    [MQTT_STMT_LOAD_SESSIONS] = {MOAT_STORE_READ, 0,
				 "SELECT " SESSION_COLS " FROM sessions ORDER BY client_id"},
    [MQTT_STMT_LOAD_SUBS] = {MOAT_STORE_READ, 0,
			     "SELECT client_id, filter, options, sub_id FROM subscriptions ORDER "
			     "BY client_id, filter"},
    [MQTT_STMT_LOAD_MESSAGES] = {MOAT_STORE_READ, 0,
				 "SELECT " MSG_COLS " FROM messages ORDER BY id"},
    [MQTT_STMT_LOAD_DELIVERIES] = {MOAT_STORE_READ, 0,
				   "SELECT client_id, seq, msg_id, qos, retain, state, pid, "
				   "sub_ids FROM deliveries ORDER BY client_id, seq"},
    [MQTT_STMT_LOAD_QOS2_IN] = {MOAT_STORE_READ, 0,
				"SELECT client_id, pid FROM qos2_in ORDER BY client_id, pid"},
    [MQTT_STMT_LOAD_RETAINED] = {MOAT_STORE_READ, 0,
				 "SELECT topic, msg_id FROM retained ORDER BY topic"},
    [MQTT_STMT_MSG_GET] = {MOAT_STORE_READ, 1, "SELECT " MSG_COLS " FROM messages WHERE id = $1"},
    [MQTT_STMT_MSG_MAX_ID] = {MOAT_STORE_READ, 0, "SELECT coalesce(max(id), 0) FROM messages"},
    [MQTT_STMT_DECOM_SESSIONS] = {MOAT_STORE_READ, 1,
				  "SELECT count(*) FROM sessions WHERE client_id = $1"},
    [MQTT_STMT_DECOM_RETAINED] = {MOAT_STORE_READ, 1,
				  "SELECT count(*) FROM retained WHERE substr(topic, 1, "
				  "length($1)) = $1"},
};

const struct moat_store_module moat_mqtt_store = {
    .name = "mqtt",
    .stmts = stmts,
    .n_stmts = MQTT_STMT__COUNT,
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(migrations[0]),
};

moat_err moat_mqtt_msg_row_decode(const struct moat_val *cols, size_t n,
				  struct moat_mqtt_msg_row *out)
{
	static const struct moat_store_col want[] = {
	    MOAT_COL_I(false), MOAT_COL_T(false), MOAT_COL_B(false), MOAT_COL_B(true),
	    MOAT_COL_I(false), MOAT_COL_I(false), MOAT_COL_I(true)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->id = cols[0];
	out->topic = cols[1];
	out->payload = cols[2];
	out->props = cols[3];
	out->qos = cols[4];
	out->retain = cols[5];
	out->expire_at = cols[6];
	return MOAT_OK;
}

moat_err moat_mqtt_session_row_decode(const struct moat_val *cols, size_t n,
				      struct moat_mqtt_session_row *out)
{
	static const struct moat_store_col want[] = {
	    MOAT_COL_T(false), MOAT_COL_T(false), MOAT_COL_I(false), MOAT_COL_I(false),
	    MOAT_COL_I(true),  MOAT_COL_T(true),  MOAT_COL_B(true),  MOAT_COL_B(true),
	    MOAT_COL_I(true),  MOAT_COL_I(true),  MOAT_COL_I(true),  MOAT_COL_I(true)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->client_id = cols[0];
	out->identity = cols[1];
	out->version = cols[2];
	out->expiry_interval = cols[3];
	out->expire_at = cols[4];
	out->will_topic = cols[5];
	out->will_payload = cols[6];
	out->will_props = cols[7];
	out->will_qos = cols[8];
	out->will_retain = cols[9];
	out->will_delay = cols[10];
	out->will_expiry = cols[11];
	return MOAT_OK;
}

moat_err moat_mqtt_sub_row_decode(const struct moat_val *cols, size_t n,
				  struct moat_mqtt_sub_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_T(false),
						     MOAT_COL_I(false), MOAT_COL_I(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->client_id = cols[0];
	out->filter = cols[1];
	out->options = cols[2];
	out->sub_id = cols[3];
	return MOAT_OK;
}

moat_err moat_mqtt_delivery_row_decode(const struct moat_val *cols, size_t n,
				       struct moat_mqtt_delivery_row *out)
{
	static const struct moat_store_col want[] = {
	    MOAT_COL_T(false), MOAT_COL_I(false), MOAT_COL_I(false), MOAT_COL_I(false),
	    MOAT_COL_I(false), MOAT_COL_I(false), MOAT_COL_I(false), MOAT_COL_B(true)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->client_id = cols[0];
	out->seq = cols[1];
	out->msg_id = cols[2];
	out->qos = cols[3];
	out->retain = cols[4];
	out->state = cols[5];
	out->pid = cols[6];
	out->sub_ids = cols[7];
	return MOAT_OK;
}

moat_err moat_mqtt_qos2_row_decode(const struct moat_val *cols, size_t n,
				   struct moat_mqtt_qos2_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_I(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->client_id = cols[0];
	out->pid = cols[1];
	return MOAT_OK;
}

moat_err moat_mqtt_retained_row_decode(const struct moat_val *cols, size_t n,
				       struct moat_mqtt_retained_row *out)
{
	static const struct moat_store_col want[] = {MOAT_COL_T(false), MOAT_COL_I(false)};
	moat_err rc = moat_store_cols_check(cols, n, want, MOAT_NCOLS(want));

	if (rc != MOAT_OK)
		return rc;
	out->topic = cols[0];
	out->msg_id = cols[1];
	return MOAT_OK;
}
