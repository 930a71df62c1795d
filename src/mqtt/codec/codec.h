/*
 * MQTT 3.1.1 and 5.0 codec: a pure, bounded translation between bytes and
 * structs. No I/O, no allocation on decode, no global state, so it can be
 * fuzzed on its own (fuzz/fuzz_codec.c).
 *
 * Decoding is two steps:
 *   1. mqtt_frame() finds one packet in a byte stream and checks its declared
 *      length against the caller's cap *before* the body has arrived.
 *   2. mqtt_decode() turns the body into a struct mqtt_packet whose strings
 *      and binaries are views into the caller's bytes (valid while they are).
 *
 * Everything the spec says is malformed or a protocol error at the packet
 * level is rejected by mqtt_decode (reserved flags, bad QoS, invalid UTF-8,
 * duplicate properties, properties not allowed in the packet, packet id 0,
 * empty SUBSCRIBE...). Rules that need session state (topic alias ranges,
 * receive maximum, auth method continuity) are the broker's.
 *
 * Variable-count parts (user properties, SUBSCRIBE/UNSUBSCRIBE entries) are
 * validated on decode and kept as raw regions walked by iterators, so a peer
 * cannot make us allocate by declaring a count.
 */
#ifndef MOAT_MQTT_CODEC_H
#define MOAT_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"

/* Protocol level byte of CONNECT. MQTT 3.1 (level 3) is not supported. */
enum mqtt_version {
	MQTT_V311 = 4,
	MQTT_V5 = 5,
};

enum mqtt_type {
	MQTT_CONNECT = 1,
	MQTT_CONNACK = 2,
	MQTT_PUBLISH = 3,
	MQTT_PUBACK = 4,
	MQTT_PUBREC = 5,
	MQTT_PUBREL = 6,
	MQTT_PUBCOMP = 7,
	MQTT_SUBSCRIBE = 8,
	MQTT_SUBACK = 9,
	MQTT_UNSUBSCRIBE = 10,
	MQTT_UNSUBACK = 11,
	MQTT_PINGREQ = 12,
	MQTT_PINGRESP = 13,
	MQTT_DISCONNECT = 14,
	MQTT_AUTH = 15,
};

/* MQTT 5 reason codes (spec 2.4). */
enum mqtt_rc {
	MQTT_RC_SUCCESS = 0x00,
	MQTT_RC_GRANTED_QOS1 = 0x01,
	MQTT_RC_GRANTED_QOS2 = 0x02,
	MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
	MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
	MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
	MQTT_RC_CONTINUE_AUTH = 0x18,
	MQTT_RC_REAUTHENTICATE = 0x19,
	MQTT_RC_UNSPECIFIED = 0x80,
	MQTT_RC_MALFORMED = 0x81,
	MQTT_RC_PROTOCOL_ERROR = 0x82,
	MQTT_RC_IMPL_SPECIFIC = 0x83,
	MQTT_RC_UNSUPPORTED_VERSION = 0x84,
	MQTT_RC_CLIENT_ID_INVALID = 0x85,
	MQTT_RC_BAD_USERNAME_PASSWORD = 0x86,
	MQTT_RC_NOT_AUTHORIZED = 0x87,
	MQTT_RC_SERVER_UNAVAILABLE = 0x88,
	MQTT_RC_SERVER_BUSY = 0x89,
	MQTT_RC_BANNED = 0x8A,
	MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
	MQTT_RC_BAD_AUTH_METHOD = 0x8C,
	MQTT_RC_KEEPALIVE_TIMEOUT = 0x8D,
	MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
	MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
	MQTT_RC_TOPIC_NAME_INVALID = 0x90,
	MQTT_RC_PACKET_ID_IN_USE = 0x91,
	MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
	MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
	MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
	MQTT_RC_PACKET_TOO_LARGE = 0x95,
	MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
	MQTT_RC_QUOTA_EXCEEDED = 0x97,
	MQTT_RC_ADMIN_ACTION = 0x98,
	MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
	MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
	MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
	MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
	MQTT_RC_SERVER_MOVED = 0x9D,
	MQTT_RC_SHARED_SUB_NOT_SUPPORTED = 0x9E,
	MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
	MQTT_RC_MAX_CONNECT_TIME = 0xA0,
	MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
	MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED = 0xA2,
};

/* MQTT 3.1.1 CONNACK return codes. */
enum mqtt_v3_connack {
	MQTT_V3_ACCEPTED = 0,
	MQTT_V3_BAD_VERSION = 1,
	MQTT_V3_ID_REJECTED = 2,
	MQTT_V3_UNAVAILABLE = 3,
	MQTT_V3_BAD_CREDENTIALS = 4,
	MQTT_V3_NOT_AUTHORIZED = 5,
};

/* Property identifiers (spec 2.2.2.2). */
enum mqtt_prop_id {
	MQTT_PROP_PAYLOAD_FORMAT = 0x01,
	MQTT_PROP_MESSAGE_EXPIRY = 0x02,
	MQTT_PROP_CONTENT_TYPE = 0x03,
	MQTT_PROP_RESPONSE_TOPIC = 0x08,
	MQTT_PROP_CORRELATION_DATA = 0x09,
	MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
	MQTT_PROP_SESSION_EXPIRY = 0x11,
	MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
	MQTT_PROP_SERVER_KEEPALIVE = 0x13,
	MQTT_PROP_AUTH_METHOD = 0x15,
	MQTT_PROP_AUTH_DATA = 0x16,
	MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
	MQTT_PROP_WILL_DELAY = 0x18,
	MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
	MQTT_PROP_RESPONSE_INFO = 0x1A,
	MQTT_PROP_SERVER_REFERENCE = 0x1C,
	MQTT_PROP_REASON_STRING = 0x1F,
	MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
	MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
	MQTT_PROP_TOPIC_ALIAS = 0x23,
	MQTT_PROP_MAXIMUM_QOS = 0x24,
	MQTT_PROP_RETAIN_AVAILABLE = 0x25,
	MQTT_PROP_USER_PROPERTY = 0x26,
	MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
	MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
	MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
	MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* Bit for property id in mqtt_props.present. All ids are < 64. */
#define MQTT_HAS(id) ((uint64_t)1 << (id))

/* A view of bytes owned by someone else (decode) or by the caller (encode). */
struct mqtt_bytes {
	const uint8_t *p;
	size_t len;
};

/*
 * Properties of any packet. `present` says which scalar/string fields were
 * present (decode) or are to be written (encode). User properties are one raw
 * region holding complete property encodings (0x26, key, value)*, so they can
 * be forwarded verbatim. (On decode the region spans first to last User
 * Property and may enclose other properties the peer interleaved; walk it
 * only with mqtt_user_iter, which skips them, as mqtt_encode does.)
 */
struct mqtt_props {
	uint64_t present;
	uint8_t payload_format;
	uint32_t message_expiry;
	struct mqtt_bytes content_type;
	struct mqtt_bytes response_topic;
	struct mqtt_bytes correlation_data;
	/* Decode: the value of the (single) Subscription Identifier in SUBSCRIBE
	 * or the first one of a PUBLISH; n_sub_ids counts them (a PUBLISH from a
	 * server may carry several). Encode: sub_ids[0..n_sub_ids), or sub_id
	 * when sub_ids is NULL and n_sub_ids is 1. */
	uint32_t sub_id;
	const uint32_t *sub_ids;
	size_t n_sub_ids;
	uint32_t session_expiry;
	struct mqtt_bytes assigned_client_id;
	uint16_t server_keepalive;
	struct mqtt_bytes auth_method;
	struct mqtt_bytes auth_data;
	uint8_t request_problem_info;
	uint32_t will_delay;
	uint8_t request_response_info;
	struct mqtt_bytes response_info;
	struct mqtt_bytes server_reference;
	struct mqtt_bytes reason_string;
	uint16_t receive_maximum;
	uint16_t topic_alias_max;
	uint16_t topic_alias;
	uint8_t maximum_qos;
	uint8_t retain_available;
	uint32_t max_packet_size;
	uint8_t wildcard_sub_available;
	uint8_t sub_id_available;
	uint8_t shared_sub_available;
	struct mqtt_bytes user; /* raw (0x26 key value)* */
	size_t n_user;
};

struct mqtt_connect {
	uint8_t version; /* enum mqtt_version */
	bool clean_start;
	uint16_t keepalive;
	struct mqtt_bytes client_id;
	bool will;
	uint8_t will_qos;
	bool will_retain;
	struct mqtt_props will_props;
	struct mqtt_bytes will_topic;
	struct mqtt_bytes will_payload;
	bool has_username;
	struct mqtt_bytes username;
	bool has_password;
	struct mqtt_bytes password;
};

struct mqtt_connack {
	bool session_present;
	uint8_t code; /* v5 reason code or v3 return code */
};

struct mqtt_publish {
	bool dup;
	uint8_t qos;
	bool retain;
	struct mqtt_bytes topic; /* may be empty in v5 when a topic alias is used */
	uint16_t packet_id;	 /* 0 for QoS 0 */
	struct mqtt_bytes payload;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK (id only), SUBACK (id only). */
struct mqtt_ack {
	uint16_t packet_id;
	uint8_t code; /* v5 reason code; 0 when absent */
};

/* SUBSCRIBE / UNSUBSCRIBE entries: raw, validated, walked by iterators. */
struct mqtt_sub_list {
	uint16_t packet_id;
	struct mqtt_bytes raw;
	size_t count;
};

struct mqtt_sub_entry {
	struct mqtt_bytes filter;
	uint8_t qos;
	bool no_local;
	bool retain_as_published;
	uint8_t retain_handling; /* 0, 1 or 2 */
};

/* SUBACK / UNSUBACK reason codes (UNSUBACK has none in v3). */
struct mqtt_codes {
	uint16_t packet_id;
	struct mqtt_bytes codes;
};

/* DISCONNECT and AUTH: reason code (0 when absent). */
struct mqtt_reason {
	uint8_t code;
};

struct mqtt_packet {
	uint8_t type; /* enum mqtt_type */
	struct mqtt_props props;
	union {
		struct mqtt_connect connect;
		struct mqtt_connack connack;
		struct mqtt_publish publish;
		struct mqtt_ack ack;
		struct mqtt_sub_list subs; /* SUBSCRIBE, UNSUBSCRIBE */
		struct mqtt_codes codes;   /* SUBACK, UNSUBACK */
		struct mqtt_reason reason; /* DISCONNECT, AUTH */
	} u;
};

/*
 * Find one packet at the start of buf[0..len).
 * On MOAT_OK: *first_byte is the type/flags byte, the body is
 * buf[*hdr_len .. *hdr_len + *body_len).
 * MOAT_E_AGAIN: need more bytes. MOAT_E_TOO_LARGE: total packet size would
 * exceed max_packet (known as soon as the length field is complete).
 * MOAT_E_MALFORMED: length field longer than 4 bytes.
 */
moat_err mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, uint8_t *first_byte,
		    size_t *hdr_len, size_t *body_len);

/*
 * Decode one packet body. `version` is the negotiated version; it is ignored
 * for CONNECT (which carries its own). Returns MOAT_E_MALFORMED,
 * MOAT_E_PROTOCOL or MOAT_E_VERSION on bad input; `out` is only meaningful on
 * MOAT_OK. Strings are checked to be well-formed UTF-8 without U+0000.
 */
moat_err mqtt_decode(uint8_t version, uint8_t first_byte, const uint8_t *body, size_t body_len,
		     struct mqtt_packet *out);

/* Iterate SUBSCRIBE (with options) or UNSUBSCRIBE (filters only) entries. */
struct mqtt_sub_iter {
	struct moat_rd rd;
	uint8_t type;
	uint8_t version;
};
void mqtt_sub_iter_init(struct mqtt_sub_iter *it, uint8_t version, const struct mqtt_packet *p);
/* true and *e filled while entries remain. */
bool mqtt_sub_iter_next(struct mqtt_sub_iter *it, struct mqtt_sub_entry *e);

/* Iterate user properties of a decoded struct mqtt_props. */
struct mqtt_user_iter {
	struct moat_rd rd;
};
void mqtt_user_iter_init(struct mqtt_user_iter *it, const struct mqtt_props *props);
bool mqtt_user_iter_next(struct mqtt_user_iter *it, struct mqtt_bytes *key, struct mqtt_bytes *val);

/*
 * Total encoded size (fixed header included) of packet p for version.
 * Used to respect the peer's Maximum Packet Size before writing.
 */
size_t mqtt_encoded_size(uint8_t version, const struct mqtt_packet *p);

/*
 * Append the encoding of p to out. v3 encodings silently omit what v3 cannot
 * carry (properties, reason codes where absent in v3). For SUBSCRIBE/
 * UNSUBSCRIBE the entries are taken from p->u.subs.raw, which must already be
 * in wire form (build it with mqtt_sub_list_add). Returns MOAT_E_LIMIT when
 * out's maximum would be exceeded (out is then unchanged).
 */
moat_err mqtt_encode(struct moat_buf *out, uint8_t version, const struct mqtt_packet *p);

/* Build a SUBSCRIBE/UNSUBSCRIBE entry list (client side, tests, bench). */
moat_err mqtt_sub_list_add(struct moat_buf *raw, uint8_t type, uint8_t version,
			   const struct mqtt_sub_entry *e);

/* Append one user property (0x26 key value) to a raw region buffer. */
moat_err mqtt_user_prop_add(struct moat_buf *raw, const void *key, size_t klen, const void *val,
			    size_t vlen);

/* Well-formed UTF-8 per MQTT 1.5.4: no surrogates, no U+0000, shortest form. */
bool mqtt_utf8_valid(const uint8_t *p, size_t n);

/* Map a decode error to the v5 reason code a DISCONNECT/CONNACK should carry. */
uint8_t mqtt_err_reason(moat_err e);

const char *mqtt_type_name(uint8_t type);

#endif
