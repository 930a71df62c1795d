/*
 * Every limit Moat enforces lives here, each with the reason for its value.
 * Configurable limits have a DEFAULT and a hard MIN/MAX the config parser
 * enforces; the static asserts at the bottom keep the bounds coherent.
 */
#ifndef MOAT_LIMITS_H
#define MOAT_LIMITS_H

/* MQTT's variable byte integer tops out at 268,435,455 (spec 1.5.5). */
#define MOAT_MQTT_MAX_REMAINING 268435455u

/* Default largest packet a client may send us: big enough for firmware
 * chunks and JSON batches, small enough that 10k connections cannot pin GBs. */
#define MOAT_MAX_PACKET_SIZE_DEFAULT (256u * 1024u)
#define MOAT_MAX_PACKET_SIZE_MIN 1024u
#define MOAT_MAX_PACKET_SIZE_MAX (16u * 1024u * 1024u)

/* Before CONNECT is accepted the peer is unauthenticated at the MQTT layer:
 * cap the first packet harder (STYLE.md item 4). A CONNECT carries at most a
 * client id, a will and credentials. */
#define MOAT_MAX_CONNECT_PACKET (64u * 1024u)

/* Topic names and filters: the protocol allows 65535 bytes; real fleets use
 * well under 256. 1024 leaves room while bounding trie work per publish. */
#define MOAT_MAX_TOPIC_LEN 1024u
/* Levels per topic bound the recursion depth of trie matching. */
#define MOAT_MAX_TOPIC_LEVELS 32u

/* Client ids: device ids are 1-64 chars; services and test suites use longer
 * generated ids, so allow up to 128. */
#define MOAT_MAX_CLIENT_ID_LEN 128u
#define MOAT_DEVICE_ID_MAX 64u

/* Keepalive the broker will accept before overriding (seconds). */
#define MOAT_MAX_KEEPALIVE_DEFAULT 300u
#define MOAT_MAX_KEEPALIVE_MIN 10u
#define MOAT_MAX_KEEPALIVE_MAX 65535u

/* How many QoS 1/2 PUBLISH a client may have unacknowledged towards us
 * (our Receive Maximum). Bounds the QoS 2 packet-id table per session. */
#define MOAT_RECEIVE_MAXIMUM_DEFAULT 64u
#define MOAT_RECEIVE_MAXIMUM_MIN 1u
#define MOAT_RECEIVE_MAXIMUM_MAX 65535u

/* How many QoS 1/2 messages we keep in flight to one client. */
#define MOAT_MAX_INFLIGHT_DEFAULT 32u
#define MOAT_MAX_INFLIGHT_MIN 1u
#define MOAT_MAX_INFLIGHT_MAX 65535u

/* Messages queued for one session beyond the inflight window (offline or
 * slow). Beyond this QoS 0 is dropped first, then new QoS>0 is dropped. */
#define MOAT_MAX_QUEUED_DEFAULT 1000u
#define MOAT_MAX_QUEUED_MIN 0u
#define MOAT_MAX_QUEUED_MAX 1000000u

/* Connections per daemon. Each idle mTLS connection costs ~30 KB (mostly
 * OpenSSL); 100k connections is ~3 GiB. */
#define MOAT_MAX_CONNECTIONS_DEFAULT 100000u
#define MOAT_MAX_CONNECTIONS_MIN 1u
#define MOAT_MAX_CONNECTIONS_MAX 1000000u

/* Worker threads; 0 in the config means one per core. */
#define MOAT_MAX_WORKERS 64u

/* Listener sections in moat.conf. */
#define MOAT_MAX_LISTENERS 16u
#define MOAT_MAX_LISTENER_NAME 32u

/* Topic aliases we accept from a client (our Topic Alias Maximum). */
#define MOAT_TOPIC_ALIAS_MAX 64u
/* Topic aliases we assign towards a client, at most (also capped by theirs). */
#define MOAT_TOPIC_ALIAS_OUT_MAX 64u

/* Subscriptions per session: bounds trie memory per client. */
#define MOAT_MAX_SUBSCRIPTIONS 256u

/* User properties per packet we will forward; more is a protocol nuisance
 * that only costs us memory. */
#define MOAT_MAX_USER_PROPERTIES 64u

/* Session expiry we grant at most (seconds): one week. */
#define MOAT_MAX_SESSION_EXPIRY (7u * 24u * 3600u)

/* A CONNECT must arrive this soon after the TCP/TLS connection opens
 * (seconds); slow handshakes are a cheap DoS. */
#define MOAT_CONNECT_TIMEOUT_S 10u

/* Output bytes buffered for one connection before we stop reading from it
 * and drop QoS 0 to it: one slow reader must not pin memory. */
#define MOAT_MAX_OUTBUF (4u * 1024u * 1024u)

/* Config file: longest line we accept. */
#define MOAT_MAX_CONFIG_LINE 1024u

/* Path lengths inside the data directory. */
#define MOAT_MAX_PATH 4096u

/* $SYS publish interval (seconds). */
#define MOAT_SYS_INTERVAL_S 10u

/* Storage (src/store/). */
/* Relaxed durability: the writer commits at most this often, so a batch
 * waits at most this long (plus the transaction) before it is committed.
 * The maximum bounds what a relaxed-mode process crash can lose when the
 * broker acknowledges before commit; 1 s is the promise docs/storage.md
 * makes. */
#define MOAT_STORE_FLUSH_MS_DEFAULT 100u
/* How often expired queued messages and orphaned messages are deleted from
 * the store (seconds): expiry is enforced in memory at once; this only
 * returns the disk space. */
#define MOAT_STORE_SWEEP_S 60u
/* Delivery state changes (sent, PUBREC, completed) are written at most this
 * often per worker (ms): nobody waits for them, and after a crash a lost
 * change only means a message is sent again (QoS 1 allows it; QoS 2 keeps
 * its packet id). The tick flushes them when the worker is idle. */
#define MOAT_STORE_LAZY_MS 100u
#define MOAT_STORE_FLUSH_MS_MIN 1u
#define MOAT_STORE_FLUSH_MS_MAX 1000u
/* How long a write waits for a lock held by another connection (an
 * operator's sqlite3 shell, a backup) before the batch fails MOAT_E_BUSY.
 * Long enough for a backup step, short enough that acknowledgements stall
 * visibly rather than forever. */
#define MOAT_STORE_BUSY_MS_DEFAULT 5000u
#define MOAT_STORE_BUSY_MS_MIN 10u
#define MOAT_STORE_BUSY_MS_MAX 60000u
/* Batches submitted but not yet committed, and their bytes: the memory a
 * stalled disk may pin before submitters are told MOAT_E_LIMIT (and stop
 * acknowledging). */
#define MOAT_STORE_MAX_PENDING 65536u
#define MOAT_STORE_MAX_PENDING_BYTES (256u * 1024u * 1024u)
/* Statements in one batch: a message queued for many offline sessions is
 * one batch of 1 + N statements. */
#define MOAT_STORE_MAX_BATCH_OPS 100000u
/* Parameters of one statement ($1..$n); the widest (a session row) has 12. */
#define MOAT_STORE_MAX_PARAMS 16u
/* The WAL is truncated to this size after a checkpoint so one burst does
 * not leave a huge file behind. */
#define MOAT_STORE_WAL_KEEP_BYTES (64u * 1024u * 1024u)

_Static_assert(MOAT_MAX_PACKET_SIZE_MAX <= MOAT_MQTT_MAX_REMAINING, "packet cap beyond MQTT");
_Static_assert(MOAT_MAX_CONNECT_PACKET <= MOAT_MAX_PACKET_SIZE_MAX, "connect cap");
_Static_assert(MOAT_MAX_TOPIC_LEN <= 65535u, "topic length beyond MQTT string");
_Static_assert(MOAT_MAX_CLIENT_ID_LEN <= 65535u, "client id beyond MQTT string");
_Static_assert(MOAT_RECEIVE_MAXIMUM_MAX <= 65535u, "receive maximum is u16");
_Static_assert(MOAT_MAX_INFLIGHT_MAX <= 65535u, "packet ids are u16");
_Static_assert(MOAT_TOPIC_ALIAS_MAX <= 65535u, "topic alias is u16");
_Static_assert(MOAT_DEVICE_ID_MAX <= MOAT_MAX_CLIENT_ID_LEN, "device id fits a client id");
_Static_assert(MOAT_STORE_FLUSH_MS_MIN >= 1u &&
		   MOAT_STORE_FLUSH_MS_MIN <= MOAT_STORE_FLUSH_MS_DEFAULT &&
		   MOAT_STORE_FLUSH_MS_DEFAULT <= MOAT_STORE_FLUSH_MS_MAX,
	       "flush interval bounds");
_Static_assert(MOAT_STORE_BUSY_MS_MIN <= MOAT_STORE_BUSY_MS_DEFAULT &&
		   MOAT_STORE_BUSY_MS_DEFAULT <= MOAT_STORE_BUSY_MS_MAX &&
		   MOAT_STORE_BUSY_MS_MAX <= 2147483647u,
	       "busy timeout bounds (sqlite3_busy_timeout takes an int)");
_Static_assert(MOAT_STORE_MAX_PARAMS <= 255u, "parameter index fits a byte");
_Static_assert(MOAT_MAX_PACKET_SIZE_MAX < MOAT_STORE_MAX_PENDING_BYTES,
	       "one message fits the pending budget");

#endif
