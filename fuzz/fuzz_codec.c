/*
 * libFuzzer target for the MQTT codec (src/mqtt/codec).
 *
 * Input: one mode byte, then a byte stream of packets.
 *   bit 0: negotiated version (0: 3.1.1, 1: 5.0)
 *   bit 1: the stream must start with a CONNECT (its level then sets the
 *          version), as a broker sees a new connection
 *   bit 2: client side (large packet cap) instead of server side
 *   bit 3: a tiny packet cap, to exercise MOAT_E_TOO_LARGE
 * Every packet is framed and decoded from an exact-size heap copy (so ASan
 * sees any over-read). Each decoded packet is walked with the iterators, then
 * re-encoded and decoded again: the second decode must succeed and agree on
 * every significant field, and encoding it again must give the same bytes.
 * Anything else is a codec bug and aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "mqtt/codec/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x)) {                                                                        \
			fprintf(stderr, "codec fuzz: check failed: %s (line %d)\n", #x, __LINE__); \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static int bytes_eq(const struct mqtt_bytes *a, const struct mqtt_bytes *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

static size_t walk_user(const struct mqtt_props *pr)
{
	struct mqtt_user_iter it;
	struct mqtt_bytes k, v;
	size_t n = 0;

	mqtt_user_iter_init(&it, pr);
	while (mqtt_user_iter_next(&it, &k, &v)) {
		CHECK(mqtt_utf8_valid(k.p, k.len));
		CHECK(mqtt_utf8_valid(v.p, v.len));
		n++;
	}
	return n;
}

static void props_eq(const struct mqtt_props *a, const struct mqtt_props *b)
{
	struct mqtt_user_iter ia, ib;
	struct mqtt_bytes ka, va, kb, vb;

	CHECK(a->present == b->present);
	CHECK(a->payload_format == b->payload_format);
	CHECK(a->message_expiry == b->message_expiry);
	CHECK(bytes_eq(&a->content_type, &b->content_type));
	CHECK(bytes_eq(&a->response_topic, &b->response_topic));
	CHECK(bytes_eq(&a->correlation_data, &b->correlation_data));
	CHECK(a->sub_id == b->sub_id);
	CHECK(a->n_sub_ids == b->n_sub_ids);
	CHECK(a->session_expiry == b->session_expiry);
	CHECK(bytes_eq(&a->assigned_client_id, &b->assigned_client_id));
	CHECK(a->server_keepalive == b->server_keepalive);
	CHECK(bytes_eq(&a->auth_method, &b->auth_method));
	CHECK(bytes_eq(&a->auth_data, &b->auth_data));
	CHECK(a->request_problem_info == b->request_problem_info);
	CHECK(a->will_delay == b->will_delay);
	CHECK(a->request_response_info == b->request_response_info);
	CHECK(bytes_eq(&a->response_info, &b->response_info));
	CHECK(bytes_eq(&a->server_reference, &b->server_reference));
	CHECK(bytes_eq(&a->reason_string, &b->reason_string));
	CHECK(a->receive_maximum == b->receive_maximum);
	CHECK(a->topic_alias_max == b->topic_alias_max);
	CHECK(a->topic_alias == b->topic_alias);
	CHECK(a->maximum_qos == b->maximum_qos);
	CHECK(a->retain_available == b->retain_available);
	CHECK(a->max_packet_size == b->max_packet_size);
	CHECK(a->wildcard_sub_available == b->wildcard_sub_available);
	CHECK(a->sub_id_available == b->sub_id_available);
	CHECK(a->shared_sub_available == b->shared_sub_available);
	CHECK(a->n_user == b->n_user);
	mqtt_user_iter_init(&ia, a);
	mqtt_user_iter_init(&ib, b);
	for (;;) {
		int more_a = mqtt_user_iter_next(&ia, &ka, &va);
		int more_b = mqtt_user_iter_next(&ib, &kb, &vb);
		CHECK(more_a == more_b);
		if (!more_a)
			break;
		CHECK(bytes_eq(&ka, &kb));
		CHECK(bytes_eq(&va, &vb));
	}
}

static void packet_eq(const struct mqtt_packet *a, const struct mqtt_packet *b)
{
	CHECK(a->type == b->type);
	props_eq(&a->props, &b->props);
	switch (a->type) {
	case MQTT_CONNECT: {
		const struct mqtt_connect *x = &a->u.connect, *y = &b->u.connect;
		CHECK(x->version == y->version);
		CHECK(x->clean_start == y->clean_start);
		CHECK(x->keepalive == y->keepalive);
		CHECK(bytes_eq(&x->client_id, &y->client_id));
		CHECK(x->will == y->will);
		CHECK(x->will_qos == y->will_qos);
		CHECK(x->will_retain == y->will_retain);
		props_eq(&x->will_props, &y->will_props);
		CHECK(bytes_eq(&x->will_topic, &y->will_topic));
		CHECK(bytes_eq(&x->will_payload, &y->will_payload));
		CHECK(x->has_username == y->has_username);
		CHECK(bytes_eq(&x->username, &y->username));
		CHECK(x->has_password == y->has_password);
		CHECK(bytes_eq(&x->password, &y->password));
		break;
	}
	case MQTT_CONNACK:
		CHECK(a->u.connack.session_present == b->u.connack.session_present);
		CHECK(a->u.connack.code == b->u.connack.code);
		break;
	case MQTT_PUBLISH:
		CHECK(a->u.publish.dup == b->u.publish.dup);
		CHECK(a->u.publish.qos == b->u.publish.qos);
		CHECK(a->u.publish.retain == b->u.publish.retain);
		CHECK(bytes_eq(&a->u.publish.topic, &b->u.publish.topic));
		CHECK(a->u.publish.packet_id == b->u.publish.packet_id);
		CHECK(bytes_eq(&a->u.publish.payload, &b->u.publish.payload));
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		CHECK(a->u.ack.packet_id == b->u.ack.packet_id);
		CHECK(a->u.ack.code == b->u.ack.code);
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		CHECK(a->u.subs.packet_id == b->u.subs.packet_id);
		CHECK(a->u.subs.count == b->u.subs.count);
		CHECK(bytes_eq(&a->u.subs.raw, &b->u.subs.raw));
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		CHECK(a->u.codes.packet_id == b->u.codes.packet_id);
		CHECK(bytes_eq(&a->u.codes.codes, &b->u.codes.codes));
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		CHECK(a->u.reason.code == b->u.reason.code);
		break;
	default:
		break;
	}
}

static void walk(uint8_t version, const struct mqtt_packet *p)
{
	CHECK(walk_user(&p->props) == p->props.n_user);
	if (p->type == MQTT_CONNECT)
		CHECK(walk_user(&p->u.connect.will_props) == p->u.connect.will_props.n_user);
	if (p->type == MQTT_SUBSCRIBE || p->type == MQTT_UNSUBSCRIBE) {
		struct mqtt_sub_iter it;
		struct mqtt_sub_entry e;
		size_t n = 0;

		mqtt_sub_iter_init(&it, version, p);
		while (mqtt_sub_iter_next(&it, &e)) {
			CHECK(mqtt_utf8_valid(e.filter.p, e.filter.len));
			CHECK(e.qos <= 2 && e.retain_handling <= 2);
			n++;
		}
		CHECK(n == p->u.subs.count);
	}
}

static void roundtrip(uint8_t version, const struct mqtt_packet *p)
{
	struct mqtt_packet q = *p, r;
	struct moat_buf b1, b2, small;
	uint8_t fb;
	size_t sz, hl, bl;

	/* Decode keeps only the first of several Subscription Identifiers. */
	if (q.props.n_sub_ids > 1)
		q.props.n_sub_ids = 1;
	sz = mqtt_encoded_size(version, &q);
	CHECK(sz != 0);

	moat_buf_init(&small, sz - 1);
	CHECK(mqtt_encode(&small, version, &q) == MOAT_E_LIMIT);
	CHECK(moat_buf_used(&small) == 0);
	moat_buf_free(&small);

	moat_buf_init(&b1, sz);
	CHECK(mqtt_encode(&b1, version, &q) == MOAT_OK);
	CHECK(moat_buf_used(&b1) == sz);
	CHECK(mqtt_frame(moat_buf_head(&b1), sz, sz, &fb, &hl, &bl) == MOAT_OK);
	CHECK(hl + bl == sz);
	CHECK(mqtt_frame(moat_buf_head(&b1), sz - 1, sz, &fb, &hl, &bl) == MOAT_E_AGAIN);
	CHECK(mqtt_decode(version, fb, moat_buf_head(&b1) + hl, bl, &r) == MOAT_OK);
	packet_eq(&q, &r);
	walk(version, &r);

	/* Encoding is canonical: what we wrote re-encodes to the same bytes. */
	moat_buf_init(&b2, sz);
	CHECK(mqtt_encoded_size(version, &r) == sz);
	CHECK(mqtt_encode(&b2, version, &r) == MOAT_OK);
	CHECK(moat_buf_used(&b2) == sz);
	CHECK(memcmp(moat_buf_head(&b1), moat_buf_head(&b2), sz) == 0);
	moat_buf_free(&b1);
	moat_buf_free(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t mode, version;
	int expect_connect;
	size_t cap;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	version = (mode & 1) ? MQTT_V5 : MQTT_V311;
	expect_connect = (mode & 2) != 0;
	cap = (mode & 4) ? MOAT_MAX_PACKET_SIZE_MAX : MOAT_MAX_PACKET_SIZE_DEFAULT;
	if (mode & 8)
		cap = 48;
	while (size > 0) {
		struct mqtt_packet p;
		uint8_t fb, *body;
		size_t hl, bl;
		moat_err rc;

		rc = mqtt_frame(
		    data, size,
		    expect_connect && cap > MOAT_MAX_CONNECT_PACKET ? MOAT_MAX_CONNECT_PACKET : cap,
		    &fb, &hl, &bl);
		if (rc != MOAT_OK) {
			CHECK(rc == MOAT_E_AGAIN || rc == MOAT_E_TOO_LARGE ||
			      rc == MOAT_E_MALFORMED);
			break;
		}
		CHECK(hl >= 2 && hl <= 5 && hl + bl <= size);
		body = malloc(bl ? bl : 1);
		CHECK(body != NULL);
		memcpy(body, data + hl, bl);
		rc = mqtt_decode(expect_connect ? 0 : version, fb, body, bl, &p);
		if (rc == MOAT_OK) {
			uint8_t v = version;

			if (p.type == MQTT_CONNECT)
				v = p.u.connect.version;
			walk(v, &p);
			roundtrip(v, &p);
			if (expect_connect) {
				version = v;
				expect_connect = 0;
			}
		} else {
			CHECK(rc == MOAT_E_MALFORMED || rc == MOAT_E_PROTOCOL ||
			      rc == MOAT_E_VERSION || rc == MOAT_E_LIMIT || rc == MOAT_E_INVAL);
			CHECK(mqtt_err_reason(rc) >= 0x80);
		}
		free(body);
		if (expect_connect)
			break; /* a broker closes a connection whose first packet fails */
		data += hl + bl;
		size -= hl + bl;
	}
	return 0;
}
