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

#define MQTT_STMT(name) MOAT_STMT(&moat_mqtt_store, MQTT_STMT_##name)

#endif
