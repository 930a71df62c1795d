/*
 * The mqtt module's storage: the broker's durable state: sessions, subscriptions, messages,
 * deliveries, QoS 2 receive state, retained messages. Its statements (SQL in schema.c), named
 * MQTT_STMT(NAME) at call sites, and its migrations; registered with the store in
 * src/store/modules.c (docs/storage.md).
 */
#ifndef MOAT_MQTT_SCHEMA_H
#define MOAT_MQTT_SCHEMA_H

#include "store/store.h"

extern const struct moat_store_module moat_mqtt_store;

enum mqtt_stmt {
	MQTT_STMT_SESSION_PUT = 0,
	MQTT_STMT_SESSION_SET_EXPIRE,
	MQTT_STMT_SESSION_DEL,
	MQTT_STMT_SUB_PUT,
	MQTT_STMT_SUB_DEL,
	MQTT_STMT_MSG_PUT,
	MQTT_STMT_MSG_PUT_IGNORE,
	MQTT_STMT_MSG_GC,
	MQTT_STMT_DELIVERY_PUT,
	MQTT_STMT_DELIVERY_SET_STATE,
	MQTT_STMT_DELIVERY_DEL,
	MQTT_STMT_QOS2_IN_PUT,
	MQTT_STMT_QOS2_IN_DEL,
	MQTT_STMT_RETAINED_PUT,
	MQTT_STMT_RETAINED_DEL,
	MQTT_STMT_EXPIRE_SESSIONS,
	MQTT_STMT_EXPIRE_QUEUED,
	MQTT_STMT_EXPIRE_RETAINED,
	MQTT_STMT_MSG_GC_ALL,
	MQTT_STMT_RETAINED_DEL_PREFIX,
	MQTT_STMT_LOAD_SESSIONS,
	MQTT_STMT_LOAD_SUBS,
	MQTT_STMT_LOAD_MESSAGES,
	MQTT_STMT_LOAD_DELIVERIES,
	MQTT_STMT_LOAD_QOS2_IN,
	MQTT_STMT_LOAD_RETAINED,
	MQTT_STMT_MSG_GET,
	MQTT_STMT_MSG_MAX_ID,
	MQTT_STMT_DECOM_SESSIONS,
	MQTT_STMT_DECOM_RETAINED,
	MQTT_STMT__COUNT
};

/*
 * Rows, decoded next to the SQL (schema.c). The values point into the row
 * and are valid only during the row callback; a nullable one may be
 * MOAT_VAL_NULL. MOAT_E_CORRUPT when a row is not what the schema says.
 */

/* LOAD_MESSAGES, MSG_GET */
struct moat_mqtt_msg_row {
	struct moat_val id;	     /* int: the broker-assigned id */
	struct moat_val topic;	     /* text */
	struct moat_val payload;     /* blob */
	struct moat_val props;	     /* blob (encoded v5 properties) or NULL */
	struct moat_val qos, retain; /* int */
	struct moat_val expire_at;   /* int (wall ms) or NULL */
};
moat_err moat_mqtt_msg_row_decode(const struct moat_val *cols, size_t n,
				  struct moat_mqtt_msg_row *out);

/* LOAD_SESSIONS */
struct moat_mqtt_session_row {
	struct moat_val client_id, identity;	  /* text */
	struct moat_val version, expiry_interval; /* int */
	struct moat_val expire_at;		  /* int or NULL (was connected) */
	struct moat_val will_topic;		  /* text or NULL */
	struct moat_val will_payload, will_props; /* blob or NULL */
	struct moat_val will_qos, will_retain;	  /* int or NULL */
	struct moat_val will_delay, will_expiry;  /* int or NULL */
};
moat_err moat_mqtt_session_row_decode(const struct moat_val *cols, size_t n,
				      struct moat_mqtt_session_row *out);

/* LOAD_SUBS */
struct moat_mqtt_sub_row {
	struct moat_val client_id, filter; /* text */
	struct moat_val options, sub_id;   /* int */
};
moat_err moat_mqtt_sub_row_decode(const struct moat_val *cols, size_t n,
				  struct moat_mqtt_sub_row *out);

/* LOAD_DELIVERIES */
struct moat_mqtt_delivery_row {
	struct moat_val client_id;			      /* text */
	struct moat_val seq, msg_id, qos, retain, state, pid; /* int */
	struct moat_val sub_ids; /* blob (4 bytes each, big-endian) or NULL */
};
moat_err moat_mqtt_delivery_row_decode(const struct moat_val *cols, size_t n,
				       struct moat_mqtt_delivery_row *out);

/* LOAD_QOS2_IN */
struct moat_mqtt_qos2_row {
	struct moat_val client_id; /* text */
	struct moat_val pid;	   /* int */
};
moat_err moat_mqtt_qos2_row_decode(const struct moat_val *cols, size_t n,
				   struct moat_mqtt_qos2_row *out);

/* LOAD_RETAINED */
struct moat_mqtt_retained_row {
	struct moat_val topic;	/* text */
	struct moat_val msg_id; /* int */
};
moat_err moat_mqtt_retained_row_decode(const struct moat_val *cols, size_t n,
				       struct moat_mqtt_retained_row *out);

#define MQTT_STMT(name) MOAT_STMT(&moat_mqtt_store, MQTT_STMT_##name)

#endif
