/*
 * Unit tests of the MQTT codec (src/mqtt/codec): framing, every packet type
 * in both versions (encode -> decode round trips and golden bytes), a table
 * of malformed/protocol-error packets, UTF-8 validation and the iterators.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/limits.h"
#include "mqtt/codec/codec.h"

#define V3 MQTT_V311
#define V5 MQTT_V5

/* A byte array and its length, for tables. */
// clang-format off
#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})
// clang-format on

/* A literal that may hold NUL bytes. */
#define SL(lit) ((struct mqtt_bytes){(const uint8_t *)(lit), sizeof(lit) - 1})

static struct mqtt_bytes str_bytes(const char *s)
{
	struct mqtt_bytes b = {(const uint8_t *)s, strlen(s)};
	return b;
}

static void assert_bytes(struct mqtt_bytes a, struct mqtt_bytes b)
{
	assert_int_equal(a.len, b.len);
	if (a.len)
		assert_memory_equal(a.p, b.p, a.len);
}

/* Frame a whole packet (must be exactly one) and decode it. */
static moat_err decode_wire(uint8_t version, const uint8_t *buf, size_t len, struct mqtt_packet *p)
{
	uint8_t fb;
	size_t hl, bl;
	moat_err rc = mqtt_frame(buf, len, 1u << 20, &fb, &hl, &bl);

	if (rc != MOAT_OK)
		return rc;
	assert_int_equal(hl + bl, len);
	return mqtt_decode(version, fb, buf + hl, bl, p);
}

/* Encode p, check the size contract, decode it back into r. */
static void roundtrip(uint8_t version, const struct mqtt_packet *p, struct mqtt_packet *r,
		      struct moat_buf *b)
{
	size_t sz = mqtt_encoded_size(version, p);

	assert_true(sz > 0);
	moat_buf_init(b, 1u << 20);
	assert_int_equal(mqtt_encode(b, version, p), MOAT_OK);
	assert_int_equal(moat_buf_used(b), sz);
	assert_int_equal(decode_wire(version, moat_buf_head(b), sz, r), MOAT_OK);
	assert_int_equal(r->type, p->type);
}

/* ---------------------------------------------------------------- frame */

static void test_frame(void **state)
{
	uint8_t fb = 0;
	size_t hl = 0, bl = 0;
	const uint8_t two[] = {0x30, 0x02, 0x00, 0x00, 0xc0, 0x00};

	(void)state;
	assert_int_equal(mqtt_frame(two, 0, 100, &fb, &hl, &bl), MOAT_E_AGAIN);
	assert_int_equal(mqtt_frame(two, 1, 100, &fb, &hl, &bl), MOAT_E_AGAIN);
	assert_int_equal(mqtt_frame(two, 2, 100, &fb, &hl, &bl), MOAT_E_AGAIN);
	assert_int_equal(mqtt_frame(two, 3, 100, &fb, &hl, &bl), MOAT_E_AGAIN);
	assert_int_equal(mqtt_frame(two, 4, 100, &fb, &hl, &bl), MOAT_OK);
	assert_int_equal(fb, 0x30);
	assert_int_equal(hl, 2);
	assert_int_equal(bl, 2);
	/* Two packets in one buffer: the second starts after the first. */
	assert_int_equal(mqtt_frame(two, sizeof(two), 100, &fb, &hl, &bl), MOAT_OK);
	assert_int_equal(mqtt_frame(two + 4, 2, 100, &fb, &hl, &bl), MOAT_OK);
	assert_int_equal(fb, 0xc0);
	assert_int_equal(bl, 0);
}

static void test_frame_varint(void **state)
{
	uint8_t fb;
	size_t hl, bl;

	(void)state;
	/* Incomplete length field. */
	assert_int_equal(mqtt_frame(B(0x30, 0x80), 1u << 30, &fb, &hl, &bl), MOAT_E_AGAIN);
	assert_int_equal(mqtt_frame(B(0x30, 0x80, 0x80, 0x80), 1u << 30, &fb, &hl, &bl),
			 MOAT_E_AGAIN);
	/* A fifth length byte is malformed as soon as the fourth says "more". */
	assert_int_equal(mqtt_frame(B(0x30, 0x80, 0x80, 0x80, 0x80), 1u << 30, &fb, &hl, &bl),
			 MOAT_E_MALFORMED);
	assert_int_equal(mqtt_frame(B(0x30, 0xff, 0xff, 0xff, 0xff, 0x01), 1u << 30, &fb, &hl, &bl),
			 MOAT_E_MALFORMED);
	/* Non-minimal lengths (1.5.5). */
	assert_int_equal(mqtt_frame(B(0x30, 0x80, 0x00), 1u << 30, &fb, &hl, &bl),
			 MOAT_E_MALFORMED);
	assert_int_equal(mqtt_frame(B(0x30, 0x81, 0x80, 0x00), 1u << 30, &fb, &hl, &bl),
			 MOAT_E_MALFORMED);
	/* Largest length: 268435455, 4 length bytes. */
	assert_int_equal(mqtt_frame(B(0x30, 0xff, 0xff, 0xff, 0x7f), 1u << 30, &fb, &hl, &bl),
			 MOAT_E_AGAIN);
	/* 128 in two bytes. */
	assert_int_equal(mqtt_frame(B(0x30, 0x80, 0x01), 1000, &fb, &hl, &bl), MOAT_E_AGAIN);
}

static void test_frame_too_large(void **state)
{
	uint8_t fb;
	size_t hl, bl;
	uint8_t buf[64] = {0x30, 48};

	(void)state;
	/* Rejected from the header alone, no body needed. */
	assert_int_equal(mqtt_frame(B(0x30, 0xff, 0xff, 0xff, 0x7f), 1024, &fb, &hl, &bl),
			 MOAT_E_TOO_LARGE);
	assert_int_equal(mqtt_frame(B(0x30, 100), 50, &fb, &hl, &bl), MOAT_E_TOO_LARGE);
	/* Boundary: total 50 fits a cap of 50, 51 does not. */
	assert_int_equal(mqtt_frame(buf, sizeof(buf), 50, &fb, &hl, &bl), MOAT_OK);
	assert_int_equal(hl + bl, 50);
	assert_int_equal(mqtt_frame(buf, 2, 50, &fb, &hl, &bl), MOAT_E_AGAIN);
	assert_int_equal(mqtt_frame(buf, sizeof(buf), 49, &fb, &hl, &bl), MOAT_E_TOO_LARGE);
	assert_int_equal(mqtt_frame(B(0xc0, 0x00), 1, &fb, &hl, &bl), MOAT_E_TOO_LARGE);
}

/* ---------------------------------------------------------------- utf-8 */

struct utf8_case {
	const char *name;
	const uint8_t *p;
	size_t n;
	bool ok;
};

static const struct utf8_case utf8_cases[] = {
    {"ascii", B('a', 'b', 'c'), true},
    {"2-byte e-acute", B(0xc3, 0xa9), true},
    {"3-byte euro", B(0xe2, 0x82, 0xac), true},
    {"4-byte emoji", B(0xf0, 0x9f, 0x98, 0x80), true},
    {"U+10FFFF", B(0xf4, 0x8f, 0xbf, 0xbf), true},
    {"U+D7FF", B(0xed, 0x9f, 0xbf), true},
    {"U+E000", B(0xee, 0x80, 0x80), true},
    {"U+FFFF", B(0xef, 0xbf, 0xbf), true},
    {"U+0800", B(0xe0, 0xa0, 0x80), true},
    {"U+10000", B(0xf0, 0x90, 0x80, 0x80), true},
    {"U+0080", B(0xc2, 0x80), true},
    {"mixed long",
     B('a', 'b', 'c', 'd', 'e', 'f', 'g', 0xc3, 0xa9, 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p',
       0xe2, 0x82, 0xac),
     true},
    {"NUL", B(0x00), false},
    {"NUL in fast path", B('a', 'b', 'c', 'd', 'e', 'f', 'g', 0x00, 'i', 'j', 'k'), false},
    {"NUL after 8", B('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 0x00), false},
    {"NUL at 16",
     B('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 0x00, 'x'),
     false},
    {"overlong NUL", B(0xc0, 0x80), false},
    {"overlong C1", B(0xc1, 0xbf), false},
    {"overlong 3-byte", B(0xe0, 0x9f, 0xbf), false},
    {"overlong 3-byte zero", B(0xe0, 0x80, 0x80), false},
    {"overlong 4-byte", B(0xf0, 0x8f, 0xbf, 0xbf), false},
    {"surrogate D800", B(0xed, 0xa0, 0x80), false},
    {"surrogate DFFF", B(0xed, 0xbf, 0xbf), false},
    {"beyond 10FFFF", B(0xf4, 0x90, 0x80, 0x80), false},
    {"F5 lead", B(0xf5, 0x80, 0x80, 0x80), false},
    {"FF", B(0xff), false},
    {"stray continuation", B('a', 0x80), false},
    {"truncated 2", B(0xc3), false},
    {"truncated 3", B(0xe2, 0x82), false},
    {"truncated 4", B(0xf0, 0x9f, 0x98), false},
    {"bad continuation", B(0xc3, 0x28), false},
    {"bad 3rd byte", B(0xe2, 0x82, 0x28), false},
    {"bad 4th byte", B(0xf0, 0x9f, 0x98, 0x28), false},
    {"high after fast path", B('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 0xff), false},
};

static void test_utf8(void **state)
{
	size_t i;
	uint8_t big[300];

	(void)state;
	for (i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
		const struct utf8_case *c = &utf8_cases[i];
		if (mqtt_utf8_valid(c->p, c->n) != c->ok)
			fail_msg("utf8 case '%s': expected %s", c->name,
				 c->ok ? "valid" : "invalid");
	}
	assert_true(mqtt_utf8_valid(NULL, 0));
	memset(big, 'x', sizeof(big));
	assert_true(mqtt_utf8_valid(big, sizeof(big)));
	/* A NUL at every position of a long string is found. */
	for (i = 0; i < 40; i++) {
		big[i] = 0;
		assert_false(mqtt_utf8_valid(big, 40));
		big[i] = 'x';
	}
}

/* ------------------------------------------------------ malformed table */

struct bad_case {
	const char *name;
	uint8_t version;
	const uint8_t *p;
	size_t n;
	moat_err want;
};

/* CONNECT body prefix: "MQTT" level flags keepalive. */
#define CONNECT_HDR(level, flags) 0x00, 0x04, 'M', 'Q', 'T', 'T', level, flags, 0x00, 0x3c

static const struct bad_case bad_cases[] = {
    /* ---- fixed header / types */
    {"reserved type 0", V3, B(0x00, 0x00), MOAT_E_MALFORMED},
    {"non-CONNECT before version known", 0, B(0xc0, 0x00), MOAT_E_INVAL},
    {"CONNECT flags 0001", 0, B(0x11, 13, CONNECT_HDR(4, 0x02), 0, 1, 'a'), MOAT_E_MALFORMED},
    {"CONNACK flags", V3, B(0x28, 2, 0, 0), MOAT_E_MALFORMED},
    {"PUBACK flags", V3, B(0x41, 2, 0, 1), MOAT_E_MALFORMED},
    {"PUBREC flags", V5, B(0x52, 2, 0, 1), MOAT_E_MALFORMED},
    {"PUBREL flags 0000", V3, B(0x60, 2, 0, 1), MOAT_E_MALFORMED},
    {"PUBCOMP flags", V3, B(0x72, 2, 0, 1), MOAT_E_MALFORMED},
    {"SUBSCRIBE flags 0000", V3, B(0x80, 6, 0, 1, 0, 1, 'a', 0), MOAT_E_MALFORMED},
    {"SUBACK flags", V3, B(0x92, 3, 0, 1, 0), MOAT_E_MALFORMED},
    {"UNSUBSCRIBE flags 0000", V3, B(0xa0, 5, 0, 1, 0, 1, 'a'), MOAT_E_MALFORMED},
    {"UNSUBACK flags", V3, B(0xb1, 2, 0, 1), MOAT_E_MALFORMED},
    {"PINGREQ flags", V3, B(0xc1, 0), MOAT_E_MALFORMED},
    {"PINGRESP flags", V3, B(0xd8, 0), MOAT_E_MALFORMED},
    {"DISCONNECT flags", V5, B(0xe1, 0), MOAT_E_MALFORMED},
    {"AUTH flags", V5, B(0xf1, 0), MOAT_E_MALFORMED},
    /* ---- CONNECT */
    {"CONNECT reserved flag bit", 0, B(0x10, 13, CONNECT_HDR(4, 0x03), 0, 1, 'a'),
     MOAT_E_MALFORMED},
    {"CONNECT level 6", 0, B(0x10, 13, CONNECT_HDR(6, 0x02), 0, 1, 'a'), MOAT_E_VERSION},
    {"CONNECT MQTT level 3", 0, B(0x10, 13, CONNECT_HDR(3, 0x02), 0, 1, 'a'), MOAT_E_VERSION},
    {"CONNECT MQIsdp (3.1)", 0,
     B(0x10, 15, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x02, 0, 60, 0, 1, 'a'), MOAT_E_VERSION},
    {"CONNECT bad protocol name", 0, B(0x10, 13, 0, 4, 'M', 'Q', 'T', 'X', 4, 2, 0, 60, 0, 1, 'a'),
     MOAT_E_PROTOCOL},
    {"CONNECT truncated name", 0, B(0x10, 4, 0, 4, 'M', 'Q'), MOAT_E_MALFORMED},
    {"CONNECT will QoS 3", 0, B(0x10, 19, CONNECT_HDR(4, 0x1e), 0, 1, 'a', 0, 1, 't', 0, 1, 'x'),
     MOAT_E_MALFORMED},
    {"CONNECT will QoS without will", 0, B(0x10, 13, CONNECT_HDR(4, 0x0a), 0, 1, 'a'),
     MOAT_E_MALFORMED},
    {"CONNECT will retain without will", 0, B(0x10, 13, CONNECT_HDR(4, 0x22), 0, 1, 'a'),
     MOAT_E_MALFORMED},
    {"CONNECT v3 password without username", 0,
     B(0x10, 16, CONNECT_HDR(4, 0x42), 0, 1, 'a', 0, 1, 'p'), MOAT_E_MALFORMED},
    {"CONNECT username flag, no username", 0, B(0x10, 13, CONNECT_HDR(4, 0x82), 0, 1, 'a'),
     MOAT_E_MALFORMED},
    {"CONNECT will flag, no will topic", 0, B(0x10, 13, CONNECT_HDR(4, 0x06), 0, 1, 'a'),
     MOAT_E_MALFORMED},
    {"CONNECT trailing byte", 0, B(0x10, 14, CONNECT_HDR(4, 0x02), 0, 1, 'a', 'z'),
     MOAT_E_MALFORMED},
    {"CONNECT client id overruns", 0, B(0x10, 13, CONNECT_HDR(4, 0x02), 0, 5, 'a'),
     MOAT_E_MALFORMED},
    {"CONNECT client id bad UTF-8", 0, B(0x10, 13, CONNECT_HDR(4, 0x02), 0, 1, 0xff),
     MOAT_E_MALFORMED},
    {"CONNECT client id with NUL", 0, B(0x10, 14, CONNECT_HDR(4, 0x02), 0, 2, 'a', 0),
     MOAT_E_MALFORMED},
    {"CONNECT no keepalive", 0, B(0x10, 8, 0, 4, 'M', 'Q', 'T', 'T', 4, 2), MOAT_E_MALFORMED},
    {"CONNECT v5 props beyond packet", 0, B(0x10, 14, CONNECT_HDR(5, 0x02), 5, 0, 1, 'a'),
     MOAT_E_MALFORMED},
    {"CONNECT v5 will-only property", 0,
     B(0x10, 16, CONNECT_HDR(5, 0x02), 2, 0x01, 0x01, 0, 1, 'a'), MOAT_E_PROTOCOL},
    {"CONNECT v5 receive maximum 0", 0, B(0x10, 17, CONNECT_HDR(5, 0x02), 3, 0x21, 0, 0, 0, 1, 'a'),
     MOAT_E_PROTOCOL},
    {"CONNECT v5 maximum packet size 0", 0,
     B(0x10, 19, CONNECT_HDR(5, 0x02), 5, 0x27, 0, 0, 0, 0, 0, 1, 'a'), MOAT_E_PROTOCOL},
    {"CONNECT v5 duplicate session expiry", 0,
     B(0x10, 24, CONNECT_HDR(5, 0x02), 10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2, 0, 1, 'a'),
     MOAT_E_PROTOCOL},
    {"CONNECT v5 unknown property 0x05", 0,
     B(0x10, 16, CONNECT_HDR(5, 0x02), 2, 0x05, 0x00, 0, 1, 'a'), MOAT_E_MALFORMED},
    {"CONNECT v5 request problem info 2", 0,
     B(0x10, 16, CONNECT_HDR(5, 0x02), 2, 0x17, 0x02, 0, 1, 'a'), MOAT_E_PROTOCOL},
    {"CONNECT v5 request response info 2", 0,
     B(0x10, 16, CONNECT_HDR(5, 0x02), 2, 0x19, 0x02, 0, 1, 'a'), MOAT_E_PROTOCOL},
    {"CONNECT v5 auth data without method", 0,
     B(0x10, 18, CONNECT_HDR(5, 0x02), 4, 0x16, 0, 1, 'x', 0, 1, 'a'), MOAT_E_PROTOCOL},
    {"CONNECT v5 topic alias in will props", 0,
     B(0x10, 23, CONNECT_HDR(5, 0x06), 0, 0, 1, 'a', 3, 0x23, 0, 1, 0, 1, 't', 0, 0),
     MOAT_E_PROTOCOL},
    {"CONNECT v5 will payload format 2", 0,
     B(0x10, 22, CONNECT_HDR(5, 0x06), 0, 0, 1, 'a', 2, 0x01, 2, 0, 1, 't', 0, 0), MOAT_E_PROTOCOL},
    /* ---- CONNACK */
    {"CONNACK v3 reserved ack flag", V3, B(0x20, 2, 0x02, 0), MOAT_E_MALFORMED},
    {"CONNACK v3 return code 6", V3, B(0x20, 2, 0, 6), MOAT_E_PROTOCOL},
    {"CONNACK v3 session present on refusal", V3, B(0x20, 2, 1, 5), MOAT_E_PROTOCOL},
    {"CONNACK v3 length 3", V3, B(0x20, 3, 0, 0, 0), MOAT_E_MALFORMED},
    {"CONNACK v3 length 1", V3, B(0x20, 1, 0), MOAT_E_MALFORMED},
    {"CONNACK v5 no property length", V5, B(0x20, 2, 0, 0), MOAT_E_MALFORMED},
    {"CONNACK v5 maximum QoS 2", V5, B(0x20, 5, 0, 0, 2, 0x24, 2), MOAT_E_PROTOCOL},
    {"CONNACK v5 retain available 2", V5, B(0x20, 5, 0, 0, 2, 0x25, 2), MOAT_E_PROTOCOL},
    {"CONNACK v5 wildcard available 2", V5, B(0x20, 5, 0, 0, 2, 0x28, 2), MOAT_E_PROTOCOL},
    {"CONNACK v5 shared available 5", V5, B(0x20, 5, 0, 0, 2, 0x2a, 5), MOAT_E_PROTOCOL},
    {"CONNACK v5 reason 0x01", V5, B(0x20, 3, 0, 0x01, 0), MOAT_E_PROTOCOL},
    {"CONNACK v5 topic alias not allowed", V5, B(0x20, 6, 0, 0, 3, 0x23, 0, 1), MOAT_E_PROTOCOL},
    /* ---- PUBLISH */
    {"PUBLISH QoS 3", V3, B(0x36, 5, 0, 1, 't', 0, 1), MOAT_E_MALFORMED},
    {"PUBLISH DUP with QoS 0", V3, B(0x38, 3, 0, 1, 't'), MOAT_E_MALFORMED},
    {"PUBLISH QoS 1 packet id 0", V3, B(0x32, 5, 0, 1, 't', 0, 0), MOAT_E_PROTOCOL},
    {"PUBLISH QoS 2 packet id 0", V5, B(0x34, 6, 0, 1, 't', 0, 0, 0), MOAT_E_PROTOCOL},
    {"PUBLISH QoS 1 no packet id", V3, B(0x32, 3, 0, 1, 't'), MOAT_E_MALFORMED},
    {"PUBLISH v3 empty topic", V3, B(0x30, 3, 0, 0, 'x'), MOAT_E_PROTOCOL},
    {"PUBLISH v5 empty topic without alias", V5, B(0x30, 3, 0, 0, 0), MOAT_E_PROTOCOL},
    {"PUBLISH topic overruns", V3, B(0x30, 3, 0, 9, 't'), MOAT_E_MALFORMED},
    {"PUBLISH 1-byte body", V3, B(0x30, 1, 0), MOAT_E_MALFORMED},
    {"PUBLISH topic surrogate", V3, B(0x30, 5, 0, 3, 0xed, 0xa0, 0x80), MOAT_E_MALFORMED},
    {"PUBLISH topic NUL", V3, B(0x30, 4, 0, 2, 'a', 0), MOAT_E_MALFORMED},
    {"PUBLISH v5 no property length", V5, B(0x30, 3, 0, 1, 't'), MOAT_E_MALFORMED},
    {"PUBLISH v5 topic alias 0", V5, B(0x30, 7, 0, 1, 't', 3, 0x23, 0, 0), MOAT_E_PROTOCOL},
    {"PUBLISH v5 payload format 2", V5, B(0x30, 6, 0, 1, 't', 2, 0x01, 2), MOAT_E_PROTOCOL},
    {"PUBLISH v5 subscription id 0", V5, B(0x30, 6, 0, 1, 't', 2, 0x0b, 0), MOAT_E_PROTOCOL},
    {"PUBLISH v5 sub id non-minimal", V5, B(0x30, 7, 0, 1, 't', 3, 0x0b, 0x81, 0x00),
     MOAT_E_MALFORMED},
    {"PUBLISH v5 duplicate message expiry", V5,
     B(0x30, 14, 0, 1, 't', 10, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1), MOAT_E_PROTOCOL},
    {"PUBLISH v5 duplicate topic alias", V5, B(0x30, 10, 0, 1, 't', 6, 0x23, 0, 1, 0x23, 0, 2),
     MOAT_E_PROTOCOL},
    {"PUBLISH v5 session expiry not allowed", V5, B(0x30, 9, 0, 1, 't', 5, 0x11, 0, 0, 0, 1),
     MOAT_E_PROTOCOL},
    {"PUBLISH v5 will delay not allowed", V5, B(0x30, 9, 0, 1, 't', 5, 0x18, 0, 0, 0, 1),
     MOAT_E_PROTOCOL},
    {"PUBLISH v5 unknown property 0x00", V5, B(0x30, 5, 0, 1, 't', 1, 0x00), MOAT_E_MALFORMED},
    {"PUBLISH v5 property id 0x80", V5, B(0x30, 6, 0, 1, 't', 2, 0x80, 0x01), MOAT_E_MALFORMED},
    {"PUBLISH v5 property length 5 bytes", V5, B(0x30, 8, 0, 1, 't', 0x80, 0x80, 0x80, 0x80, 0x01),
     MOAT_E_MALFORMED},
    {"PUBLISH v5 property length non-minimal", V5, B(0x30, 5, 0, 1, 't', 0x80, 0x00),
     MOAT_E_MALFORMED},
    {"PUBLISH v5 property length beyond packet", V5, B(0x30, 6, 0, 1, 't', 9, 0x01, 1),
     MOAT_E_MALFORMED},
    {"PUBLISH v5 property overruns its block", V5,
     B(0x30, 10, 0, 1, 't', 3, 0x03, 0, 3, 'a', 'b', 'c'), MOAT_E_MALFORMED},
    {"PUBLISH v5 u32 property truncated", V5, B(0x30, 7, 0, 1, 't', 3, 0x02, 0, 0),
     MOAT_E_MALFORMED},
    {"PUBLISH v5 content type bad UTF-8", V5, B(0x30, 8, 0, 1, 't', 4, 0x03, 0, 1, 0xc0),
     MOAT_E_MALFORMED},
    {"PUBLISH v5 user property bad value", V5,
     B(0x30, 11, 0, 1, 't', 7, 0x26, 0, 1, 'k', 0, 1, 0xff), MOAT_E_MALFORMED},
    {"PUBLISH v5 user property no value", V5, B(0x30, 8, 0, 1, 't', 4, 0x26, 0, 1, 'k'),
     MOAT_E_MALFORMED},
    /* ---- PUBACK / PUBREC / PUBREL / PUBCOMP */
    {"PUBACK v3 length 3", V3, B(0x40, 3, 0, 1, 0), MOAT_E_MALFORMED},
    {"PUBACK length 1", V5, B(0x40, 1, 0), MOAT_E_MALFORMED},
    {"PUBACK packet id 0", V3, B(0x40, 2, 0, 0), MOAT_E_PROTOCOL},
    {"PUBREC v5 packet id 0", V5, B(0x50, 2, 0, 0), MOAT_E_PROTOCOL},
    {"PUBACK v5 reason 0x92", V5, B(0x40, 3, 0, 1, 0x92), MOAT_E_PROTOCOL},
    {"PUBREC v5 reason 0x01", V5, B(0x50, 3, 0, 1, 0x01), MOAT_E_PROTOCOL},
    {"PUBREL v5 reason 0x10", V5, B(0x62, 3, 0, 1, 0x10), MOAT_E_PROTOCOL},
    {"PUBCOMP v5 reason 0x80", V5, B(0x70, 3, 0, 1, 0x80), MOAT_E_PROTOCOL},
    {"PUBACK v5 content type not allowed", V5, B(0x40, 8, 0, 1, 0, 4, 0x03, 0, 1, 'x'),
     MOAT_E_PROTOCOL},
    {"PUBACK v5 trailing after properties", V5, B(0x40, 5, 0, 1, 0, 0, 0), MOAT_E_MALFORMED},
    {"PUBREC v5 property length beyond", V5, B(0x50, 4, 0, 1, 0, 4), MOAT_E_MALFORMED},
    {"PUBCOMP v5 duplicate reason string", V5,
     B(0x70, 12, 0, 1, 0, 8, 0x1f, 0, 1, 'a', 0x1f, 0, 1, 'b'), MOAT_E_PROTOCOL},
    /* ---- SUBSCRIBE */
    {"SUBSCRIBE v3 no entries", V3, B(0x82, 2, 0, 1), MOAT_E_PROTOCOL},
    {"SUBSCRIBE v5 no entries", V5, B(0x82, 3, 0, 1, 0), MOAT_E_PROTOCOL},
    {"SUBSCRIBE packet id 0", V3, B(0x82, 6, 0, 0, 0, 1, 'a', 0), MOAT_E_PROTOCOL},
    {"SUBSCRIBE v3 option bit 2", V3, B(0x82, 6, 0, 1, 0, 1, 'a', 0x04), MOAT_E_MALFORMED},
    {"SUBSCRIBE v3 option bit 7", V3, B(0x82, 6, 0, 1, 0, 1, 'a', 0x80), MOAT_E_MALFORMED},
    {"SUBSCRIBE v3 QoS 3", V3, B(0x82, 6, 0, 1, 0, 1, 'a', 0x03), MOAT_E_MALFORMED},
    {"SUBSCRIBE v5 QoS 3", V5, B(0x82, 7, 0, 1, 0, 0, 1, 'a', 0x03), MOAT_E_MALFORMED},
    {"SUBSCRIBE v5 retain handling 3", V5, B(0x82, 7, 0, 1, 0, 0, 1, 'a', 0x30), MOAT_E_MALFORMED},
    {"SUBSCRIBE v5 reserved bit 6", V5, B(0x82, 7, 0, 1, 0, 0, 1, 'a', 0x40), MOAT_E_MALFORMED},
    {"SUBSCRIBE missing options", V3, B(0x82, 5, 0, 1, 0, 1, 'a'), MOAT_E_MALFORMED},
    {"SUBSCRIBE second entry truncated", V3, B(0x82, 8, 0, 1, 0, 1, 'a', 0, 0, 3),
     MOAT_E_MALFORMED},
    {"SUBSCRIBE filter bad UTF-8", V3, B(0x82, 6, 0, 1, 0, 1, 0x80, 0), MOAT_E_MALFORMED},
    {"SUBSCRIBE v5 subscription id 0", V5, B(0x82, 9, 0, 1, 2, 0x0b, 0, 0, 1, 'a', 0),
     MOAT_E_PROTOCOL},
    {"SUBSCRIBE v5 two subscription ids", V5, B(0x82, 11, 0, 1, 4, 0x0b, 1, 0x0b, 2, 0, 1, 'a', 0),
     MOAT_E_PROTOCOL},
    {"SUBSCRIBE v5 reason string not allowed", V5,
     B(0x82, 11, 0, 1, 4, 0x1f, 0, 1, 'r', 0, 1, 'a', 0), MOAT_E_PROTOCOL},
    {"SUBSCRIBE v5 no local on shared", V5,
     B(0x82, 16, 0, 1, 0, 0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x04),
     MOAT_E_PROTOCOL},
    /* ---- SUBACK */
    {"SUBACK v3 code 0x03", V3, B(0x90, 3, 0, 1, 0x03), MOAT_E_PROTOCOL},
    {"SUBACK v3 code 0x87", V3, B(0x90, 3, 0, 1, 0x87), MOAT_E_PROTOCOL},
    {"SUBACK v5 code 0x10", V5, B(0x90, 4, 0, 1, 0, 0x10), MOAT_E_PROTOCOL},
    {"SUBACK no codes", V3, B(0x90, 2, 0, 1), MOAT_E_PROTOCOL},
    {"SUBACK packet id 0", V3, B(0x90, 3, 0, 0, 0), MOAT_E_PROTOCOL},
    /* ---- UNSUBSCRIBE */
    {"UNSUBSCRIBE no entries", V3, B(0xa2, 2, 0, 1), MOAT_E_PROTOCOL},
    {"UNSUBSCRIBE packet id 0", V5, B(0xa2, 6, 0, 0, 0, 0, 1, 'a'), MOAT_E_PROTOCOL},
    {"UNSUBSCRIBE v5 subscription id not allowed", V5, B(0xa2, 8, 0, 1, 2, 0x0b, 1, 0, 1, 'a'),
     MOAT_E_PROTOCOL},
    {"UNSUBSCRIBE filter truncated", V3, B(0xa2, 5, 0, 1, 0, 2, 'a'), MOAT_E_MALFORMED},
    /* ---- UNSUBACK */
    {"UNSUBACK v3 with payload", V3, B(0xb0, 3, 0, 1, 0), MOAT_E_MALFORMED},
    {"UNSUBACK v5 no codes", V5, B(0xb0, 3, 0, 1, 0), MOAT_E_PROTOCOL},
    {"UNSUBACK v5 code 0x01", V5, B(0xb0, 4, 0, 1, 0, 0x01), MOAT_E_PROTOCOL},
    /* ---- PING */
    {"PINGREQ with body", V3, B(0xc0, 1, 0), MOAT_E_MALFORMED},
    {"PINGRESP with body", V5, B(0xd0, 1, 0), MOAT_E_MALFORMED},
    /* ---- DISCONNECT */
    {"DISCONNECT v3 with body", V3, B(0xe0, 1, 0), MOAT_E_MALFORMED},
    {"DISCONNECT v5 reason 0x01", V5, B(0xe0, 1, 0x01), MOAT_E_PROTOCOL},
    {"DISCONNECT v5 topic alias not allowed", V5, B(0xe0, 5, 0, 3, 0x23, 0, 1), MOAT_E_PROTOCOL},
    {"DISCONNECT v5 trailing", V5, B(0xe0, 3, 0, 0, 0), MOAT_E_MALFORMED},
    /* ---- AUTH */
    {"AUTH in v3", V3, B(0xf0, 0), MOAT_E_MALFORMED},
    {"AUTH v5 length 1", V5, B(0xf0, 1, 0x18), MOAT_E_MALFORMED},
    {"AUTH v5 reason 0x04", V5, B(0xf0, 2, 0x04, 0), MOAT_E_PROTOCOL},
    {"AUTH v5 session expiry not allowed", V5, B(0xf0, 7, 0x18, 5, 0x11, 0, 0, 0, 1),
     MOAT_E_PROTOCOL},
    {"AUTH v5 duplicate method", V5, B(0xf0, 10, 0x18, 8, 0x15, 0, 1, 'a', 0x15, 0, 1, 'b'),
     MOAT_E_PROTOCOL},
};

static void test_bad_packets(void **state)
{
	size_t i, failures = 0;
	struct mqtt_packet p;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		moat_err rc = decode_wire(c->version, c->p, c->n, &p);

		if (rc != c->want) {
			print_error("case '%s': got %s, want %s\n", c->name, moat_strerror(rc),
				    moat_strerror(c->want));
			failures++;
		}
	}
	assert_int_equal(failures, 0);
	/* The table really is as big as it claims to be. */
	assert_true(sizeof(bad_cases) / sizeof(bad_cases[0]) >= 100);
}

/* Too many user properties: bounded, MOAT_E_LIMIT. */
static void test_user_property_limit(void **state)
{
	uint8_t buf[1024];
	size_t n, i, k;
	struct mqtt_packet p;

	(void)state;
	for (k = MOAT_MAX_USER_PROPERTIES; k <= MOAT_MAX_USER_PROPERTIES + 1; k++) {
		/* PUBLISH, topic "t", props: k x (0x26, "a", "b") */
		size_t plen = k * 7;
		n = 0;
		buf[n++] = 0x30;
		buf[n++] = (uint8_t)(0x80 | ((3 + 2 + plen) & 0x7f));
		buf[n++] = (uint8_t)((3 + 2 + plen) >> 7);
		buf[n++] = 0;
		buf[n++] = 1;
		buf[n++] = 't';
		buf[n++] = (uint8_t)(0x80 | (plen & 0x7f));
		buf[n++] = (uint8_t)(plen >> 7);
		for (i = 0; i < k; i++) {
			const uint8_t up[] = {0x26, 0, 1, 'a', 0, 1, 'b'};
			memcpy(buf + n, up, sizeof(up));
			n += sizeof(up);
		}
		assert_int_equal(decode_wire(V5, buf, n, &p),
				 k > MOAT_MAX_USER_PROPERTIES ? MOAT_E_LIMIT : MOAT_OK);
		if (k == MOAT_MAX_USER_PROPERTIES)
			assert_int_equal(p.props.n_user, k);
	}
}

/*
 * The property table of spec 2.2.2.2, written out again independently of
 * props.c: every property in every packet, once (allowed or protocol error)
 * and twice (only User Property, and Subscription Identifier in PUBLISH, may
 * repeat).
 */
#define CTX_WILL 0
struct prop_spec {
	uint8_t id;
	uint8_t val[5];
	uint8_t vlen;
	uint16_t ctx; /* bit per packet type; bit 0 is the Will */
};

#define T(t) (1u << (t))
static const struct prop_spec prop_specs[] = {
    {0x01, {1}, 1, T(CTX_WILL) | T(MQTT_PUBLISH)},
    {0x02, {0, 0, 0, 1}, 4, T(CTX_WILL) | T(MQTT_PUBLISH)},
    {0x03, {0, 1, 'x'}, 3, T(CTX_WILL) | T(MQTT_PUBLISH)},
    {0x08, {0, 1, 'x'}, 3, T(CTX_WILL) | T(MQTT_PUBLISH)},
    {0x09, {0, 1, 0xff}, 3, T(CTX_WILL) | T(MQTT_PUBLISH)},
    {0x0b, {1}, 1, T(MQTT_PUBLISH) | T(MQTT_SUBSCRIBE)},
    {0x11, {0, 0, 0, 1}, 4, T(MQTT_CONNECT) | T(MQTT_CONNACK) | T(MQTT_DISCONNECT)},
    {0x12, {0, 1, 'x'}, 3, T(MQTT_CONNACK)},
    {0x13, {0, 1}, 2, T(MQTT_CONNACK)},
    {0x15, {0, 1, 'x'}, 3, T(MQTT_CONNECT) | T(MQTT_CONNACK) | T(MQTT_AUTH)},
    {0x16, {0, 1, 0xff}, 3, T(MQTT_CONNECT) | T(MQTT_CONNACK) | T(MQTT_AUTH)},
    {0x17, {1}, 1, T(MQTT_CONNECT)},
    {0x18, {0, 0, 0, 1}, 4, T(CTX_WILL)},
    {0x19, {1}, 1, T(MQTT_CONNECT)},
    {0x1a, {0, 1, 'x'}, 3, T(MQTT_CONNACK)},
    {0x1c, {0, 1, 'x'}, 3, T(MQTT_CONNACK) | T(MQTT_DISCONNECT)},
    {0x1f,
     {0, 1, 'x'},
     3,
     T(MQTT_CONNACK) | T(MQTT_PUBACK) | T(MQTT_PUBREC) | T(MQTT_PUBREL) | T(MQTT_PUBCOMP) |
	 T(MQTT_SUBACK) | T(MQTT_UNSUBACK) | T(MQTT_DISCONNECT) | T(MQTT_AUTH)},
    {0x21, {0, 1}, 2, T(MQTT_CONNECT) | T(MQTT_CONNACK)},
    {0x22, {0, 1}, 2, T(MQTT_CONNECT) | T(MQTT_CONNACK)},
    {0x23, {0, 1}, 2, T(MQTT_PUBLISH)},
    {0x24, {1}, 1, T(MQTT_CONNACK)},
    {0x25, {1}, 1, T(MQTT_CONNACK)},
    {0x26, {0, 0, 0, 0}, 4, 0xffff & ~(T(MQTT_PINGREQ) | T(MQTT_PINGRESP))},
    {0x27, {0, 0, 0, 1}, 4, T(MQTT_CONNECT) | T(MQTT_CONNACK)},
    {0x28, {1}, 1, T(MQTT_CONNACK)},
    {0x29, {1}, 1, T(MQTT_CONNACK)},
    {0x2a, {1}, 1, T(MQTT_CONNACK)},
};
#undef T

/* Build a v5 packet of type ctx (0: CONNECT with a Will) carrying props. */
static size_t build_with_props(uint8_t ctx, const uint8_t *props, size_t plen, uint8_t *buf)
{
	static const uint8_t first[16] = {0x10, 0x10, 0x20, 0x30, 0x40, 0x50, 0x62, 0x70,
					  0x82, 0x90, 0xa2, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0};
	static const uint8_t chdr[] = {CONNECT_HDR(5, 0x02)};
	uint8_t body[128];
	size_t n = 0;

#define PUT(...)                                                                                   \
	do {                                                                                       \
		const uint8_t x_[] = {__VA_ARGS__};                                                \
		memcpy(body + n, x_, sizeof(x_));                                                  \
		n += sizeof(x_);                                                                   \
	} while (0)
#define PROPS()                                                                                    \
	do {                                                                                       \
		body[n++] = (uint8_t)plen;                                                         \
		memcpy(body + n, props, plen);                                                     \
		n += plen;                                                                         \
	} while (0)
	switch (ctx) {
	case CTX_WILL:
		memcpy(body, chdr, sizeof(chdr));
		n = sizeof(chdr);
		body[7] = 0x06;
		PUT(0, 0, 0);
		PROPS();
		PUT(0, 1, 't', 0, 0);
		break;
	case MQTT_CONNECT:
		memcpy(body, chdr, sizeof(chdr));
		n = sizeof(chdr);
		PROPS();
		PUT(0, 0);
		break;
	case MQTT_CONNACK:
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		if (ctx == MQTT_CONNACK)
			PUT(0);
		PUT(0);
		PROPS();
		break;
	case MQTT_PUBLISH:
		PUT(0, 1, 't');
		PROPS();
		break;
	case MQTT_SUBSCRIBE:
		PUT(0, 1);
		PROPS();
		PUT(0, 1, 'a', 0);
		break;
	case MQTT_UNSUBSCRIBE:
		PUT(0, 1);
		PROPS();
		PUT(0, 1, 'a');
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		PUT(0, 1);
		PROPS();
		PUT(0);
		break;
	default: /* PUBACK, PUBREC, PUBREL, PUBCOMP */
		PUT(0, 1, 0);
		PROPS();
		break;
	}
#undef PUT
#undef PROPS
	buf[0] = first[ctx];
	buf[1] = (uint8_t)n;
	memcpy(buf + 2, body, n);
	return n + 2;
}

static void test_prop_matrix(void **state)
{
	uint8_t ctx, props[32], buf[160];
	size_t i, n, failures = 0, checked = 0;
	struct mqtt_packet p;

	(void)state;
	for (ctx = 0; ctx < 16; ctx++) {
		if (ctx == MQTT_PINGREQ || ctx == MQTT_PINGRESP)
			continue;
		for (i = 0; i < sizeof(prop_specs) / sizeof(prop_specs[0]); i++) {
			const struct prop_spec *ps = &prop_specs[i];
			bool allowed = (ps->ctx >> ctx) & 1u;
			bool repeatable = ps->id == 0x26 || (ps->id == 0x0b && ctx == MQTT_PUBLISH);
			int times;

			for (times = 1; times <= 2; times++) {
				moat_err want = MOAT_E_PROTOCOL, rc;
				size_t plen = 0;
				int t;

				for (t = 0; t < times; t++) {
					props[plen++] = ps->id;
					memcpy(props + plen, ps->val, ps->vlen);
					plen += ps->vlen;
				}
				if (allowed && (times == 1 || repeatable))
					want = MOAT_OK;
				/* Authentication Data needs a method in CONNECT. */
				if (want == MOAT_OK && ctx == MQTT_CONNECT && ps->id == 0x16)
					want = MOAT_E_PROTOCOL;
				n = build_with_props(ctx, props, plen, buf);
				rc = decode_wire(V5, buf, n, &p);
				checked++;
				if (rc != want) {
					print_error("property 0x%02x x%d in %s: got %s, want %s\n",
						    ps->id, times,
						    ctx ? mqtt_type_name(ctx) : "Will",
						    moat_strerror(rc), moat_strerror(want));
					failures++;
				} else if (rc == MOAT_OK) {
					const struct mqtt_props *pr =
					    ctx ? &p.props : &p.u.connect.will_props;
					assert_true(pr->present & MQTT_HAS(ps->id));
				}
			}
		}
	}
	assert_int_equal(failures, 0);
	assert_int_equal(checked, 14 * 27 * 2);
}

/* ---------------------------------------------------------- valid wire */

static void test_v5_short_forms(void **state)
{
	struct mqtt_packet p;

	(void)state;
	assert_int_equal(decode_wire(V5, B(0x40, 2, 0, 7), &p), MOAT_OK);
	assert_int_equal(p.u.ack.packet_id, 7);
	assert_int_equal(p.u.ack.code, 0);
	assert_int_equal(p.props.present, 0);
	assert_int_equal(decode_wire(V5, B(0x50, 3, 0, 7, 0x10), &p), MOAT_OK);
	assert_int_equal(p.u.ack.code, 0x10);
	assert_int_equal(decode_wire(V5, B(0x62, 3, 0, 7, 0x92), &p), MOAT_OK);
	assert_int_equal(p.u.ack.code, 0x92);
	assert_int_equal(decode_wire(V5, B(0x70, 4, 0, 7, 0, 0), &p), MOAT_OK);
	assert_int_equal(decode_wire(V5, B(0x40, 8, 0, 7, 0x87, 4, 0x1f, 0, 1, 'x'), &p), MOAT_OK);
	assert_int_equal(p.u.ack.code, 0x87);
	assert_bytes(p.props.reason_string, str_bytes("x"));
	assert_int_equal(decode_wire(V5, B(0xe0, 0), &p), MOAT_OK);
	assert_int_equal(p.u.reason.code, 0);
	assert_int_equal(decode_wire(V5, B(0xe0, 1, 0x04), &p), MOAT_OK);
	assert_int_equal(p.u.reason.code, 0x04);
	assert_int_equal(decode_wire(V5, B(0xe0, 2, 0x8e, 0), &p), MOAT_OK);
	assert_int_equal(decode_wire(V5, B(0xf0, 0), &p), MOAT_OK);
	assert_int_equal(p.type, MQTT_AUTH);
	assert_int_equal(decode_wire(V5, B(0xf0, 2, 0x19, 0), &p), MOAT_OK);
	assert_int_equal(p.u.reason.code, 0x19);
}

static void test_connect_wire(void **state)
{
	struct mqtt_packet p;

	(void)state;
	/* v3, clean session, "a". Version argument is ignored for CONNECT. */
	assert_int_equal(decode_wire(V5, B(0x10, 13, CONNECT_HDR(4, 0x02), 0, 1, 'a'), &p),
			 MOAT_OK);
	assert_int_equal(p.type, MQTT_CONNECT);
	assert_int_equal(p.u.connect.version, V3);
	assert_true(p.u.connect.clean_start);
	assert_int_equal(p.u.connect.keepalive, 60);
	assert_bytes(p.u.connect.client_id, str_bytes("a"));
	/* v5 allows a password without a user name; empty client id is fine. */
	assert_int_equal(decode_wire(0, B(0x10, 16, CONNECT_HDR(5, 0x40), 0, 0, 0, 0, 1, 'p'), &p),
			 MOAT_OK);
	assert_true(p.u.connect.has_password);
	assert_false(p.u.connect.has_username);
	assert_bytes(p.u.connect.password, str_bytes("p"));
	/* The level is reported with MOAT_E_VERSION so the broker can answer. */
	assert_int_equal(decode_wire(0, B(0x10, 13, CONNECT_HDR(6, 0x02), 0, 1, 'a'), &p),
			 MOAT_E_VERSION);
	assert_int_equal(p.u.connect.version, 6);
	/* Password may hold any bytes, including NUL and invalid UTF-8. */
	assert_int_equal(
	    decode_wire(0, B(0x10, 20, CONNECT_HDR(4, 0xc2), 0, 1, 'a', 0, 1, 'u', 0, 2, 0, 0xff),
			&p),
	    MOAT_OK);
	assert_int_equal(p.u.connect.password.len, 2);
}

static void test_publish_sub_ids(void **state)
{
	struct mqtt_packet p;

	(void)state;
	/* Several subscription ids from a server: counted, first kept. */
	assert_int_equal(
	    decode_wire(
		V5, B(0x30, 13, 0, 1, 't', 9, 0x0b, 5, 0x0b, 0xff, 0xff, 0xff, 0x7f, 0x0b, 1), &p),
	    MOAT_OK);
	assert_int_equal(p.props.n_sub_ids, 3);
	assert_int_equal(p.props.sub_id, 5);
	assert_true(p.props.present & MQTT_HAS(MQTT_PROP_SUBSCRIPTION_ID));
	/* Topic alias with empty topic, payload after properties. */
	assert_int_equal(decode_wire(V5, B(0x30, 8, 0, 0, 3, 0x23, 0, 9, 'h', 'i'), &p), MOAT_OK);
	assert_int_equal(p.props.topic_alias, 9);
	assert_int_equal(p.u.publish.topic.len, 0);
	assert_bytes(p.u.publish.payload, str_bytes("hi"));
}

/* --------------------------------------------------------- round trips */

static void test_rt_connect(void **state)
{
	struct mqtt_packet p, r;
	struct moat_buf b, user;
	int vi;

	(void)state;
	for (vi = 0; vi < 2; vi++) {
		uint8_t v = vi ? V5 : V3;

		memset(&p, 0, sizeof(p));
		moat_buf_init(&user, 1024);
		assert_int_equal(mqtt_user_prop_add(&user, "k", 1, "v", 1), MOAT_OK);
		p.type = MQTT_CONNECT;
		p.u.connect.clean_start = false;
		p.u.connect.keepalive = 120;
		p.u.connect.client_id = str_bytes("sensor-42");
		p.u.connect.will = true;
		p.u.connect.will_qos = 1;
		p.u.connect.will_retain = true;
		p.u.connect.will_topic = str_bytes("d/sensor-42/status");
		p.u.connect.will_payload = str_bytes("offline");
		p.u.connect.has_username = true;
		p.u.connect.username = str_bytes("user");
		p.u.connect.has_password = true;
		p.u.connect.password = str_bytes("secret");
		p.props.present = MQTT_HAS(MQTT_PROP_SESSION_EXPIRY) |
				  MQTT_HAS(MQTT_PROP_RECEIVE_MAXIMUM) |
				  MQTT_HAS(MQTT_PROP_MAXIMUM_PACKET_SIZE) |
				  MQTT_HAS(MQTT_PROP_AUTH_METHOD) | MQTT_HAS(MQTT_PROP_AUTH_DATA);
		p.props.session_expiry = 3600;
		p.props.receive_maximum = 10;
		p.props.max_packet_size = 65536;
		p.props.auth_method = str_bytes("SCRAM-SHA-256");
		p.props.auth_data = str_bytes("\x01\x02");
		p.props.user.p = moat_buf_head(&user);
		p.props.user.len = moat_buf_used(&user);
		p.u.connect.will_props.present =
		    MQTT_HAS(MQTT_PROP_WILL_DELAY) | MQTT_HAS(MQTT_PROP_PAYLOAD_FORMAT) |
		    MQTT_HAS(MQTT_PROP_CONTENT_TYPE) | MQTT_HAS(MQTT_PROP_CORRELATION_DATA);
		p.u.connect.will_props.will_delay = 30;
		p.u.connect.will_props.payload_format = 1;
		p.u.connect.will_props.content_type = str_bytes("text/plain");
		p.u.connect.will_props.correlation_data = str_bytes("corr");

		roundtrip(v, &p, &r, &b);
		assert_int_equal(r.u.connect.version, v);
		assert_false(r.u.connect.clean_start);
		assert_int_equal(r.u.connect.keepalive, 120);
		assert_bytes(r.u.connect.client_id, str_bytes("sensor-42"));
		assert_true(r.u.connect.will);
		assert_int_equal(r.u.connect.will_qos, 1);
		assert_true(r.u.connect.will_retain);
		assert_bytes(r.u.connect.will_topic, str_bytes("d/sensor-42/status"));
		assert_bytes(r.u.connect.will_payload, str_bytes("offline"));
		assert_bytes(r.u.connect.username, str_bytes("user"));
		assert_bytes(r.u.connect.password, str_bytes("secret"));
		if (v == V5) {
			assert_int_equal(r.props.present,
					 p.props.present | MQTT_HAS(MQTT_PROP_USER_PROPERTY));
			assert_int_equal(r.props.session_expiry, 3600);
			assert_int_equal(r.props.receive_maximum, 10);
			assert_int_equal(r.props.max_packet_size, 65536);
			assert_bytes(r.props.auth_method, str_bytes("SCRAM-SHA-256"));
			assert_bytes(r.props.auth_data, str_bytes("\x01\x02"));
			assert_int_equal(r.props.n_user, 1);
			assert_int_equal(r.u.connect.will_props.will_delay, 30);
			assert_int_equal(r.u.connect.will_props.payload_format, 1);
			assert_bytes(r.u.connect.will_props.content_type, str_bytes("text/plain"));
			assert_bytes(r.u.connect.will_props.correlation_data, str_bytes("corr"));
		} else {
			/* v3 silently drops what it cannot carry. */
			assert_int_equal(r.props.present, 0);
			assert_int_equal(r.u.connect.will_props.present, 0);
		}
		moat_buf_free(&b);
		moat_buf_free(&user);
	}
}

static void test_rt_connect_minimal(void **state)
{
	struct mqtt_packet p, r;
	struct moat_buf b;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNECT;
	p.u.connect.clean_start = true;
	roundtrip(V3, &p, &r, &b);
	/* Golden bytes of the smallest v3 CONNECT. */
	assert_int_equal(moat_buf_used(&b), 14);
	assert_memory_equal(
	    moat_buf_head(&b),
	    ((const uint8_t[]){0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 0}), 14);
	assert_int_equal(r.u.connect.client_id.len, 0);
	assert_false(r.u.connect.will);
	moat_buf_free(&b);
	roundtrip(V5, &p, &r, &b);
	assert_int_equal(moat_buf_used(&b), 15);
	moat_buf_free(&b);
}

static void test_rt_connack(void **state)
{
	struct mqtt_packet p, r;
	struct moat_buf b;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNACK;
	p.u.connack.session_present = true;
	roundtrip(V3, &p, &r, &b);
	assert_memory_equal(moat_buf_head(&b), ((const uint8_t[]){0x20, 2, 1, 0}), 4);
	assert_true(r.u.connack.session_present);
	moat_buf_free(&b);

	p.u.connack.session_present = false;
	p.u.connack.code = MQTT_V3_NOT_AUTHORIZED;
	roundtrip(V3, &p, &r, &b);
	assert_int_equal(r.u.connack.code, 5);
	moat_buf_free(&b);

	p.u.connack.code = MQTT_RC_SUCCESS;
	p.props.present =
	    MQTT_HAS(MQTT_PROP_RECEIVE_MAXIMUM) | MQTT_HAS(MQTT_PROP_MAXIMUM_QOS) |
	    MQTT_HAS(MQTT_PROP_RETAIN_AVAILABLE) | MQTT_HAS(MQTT_PROP_MAXIMUM_PACKET_SIZE) |
	    MQTT_HAS(MQTT_PROP_ASSIGNED_CLIENT_ID) | MQTT_HAS(MQTT_PROP_TOPIC_ALIAS_MAXIMUM) |
	    MQTT_HAS(MQTT_PROP_SERVER_KEEPALIVE) | MQTT_HAS(MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
	    MQTT_HAS(MQTT_PROP_SUB_ID_AVAILABLE) | MQTT_HAS(MQTT_PROP_SHARED_SUB_AVAILABLE) |
	    MQTT_HAS(MQTT_PROP_RESPONSE_INFO) | MQTT_HAS(MQTT_PROP_SERVER_REFERENCE) |
	    MQTT_HAS(MQTT_PROP_REASON_STRING) | MQTT_HAS(MQTT_PROP_SESSION_EXPIRY);
	p.props.receive_maximum = 64;
	p.props.maximum_qos = 1;
	p.props.retain_available = 1;
	p.props.max_packet_size = 262144;
	p.props.assigned_client_id = str_bytes("auto-7");
	p.props.topic_alias_max = 64;
	p.props.server_keepalive = 30;
	p.props.wildcard_sub_available = 1;
	p.props.sub_id_available = 0;
	p.props.shared_sub_available = 1;
	p.props.response_info = str_bytes("r/");
	p.props.server_reference = str_bytes("other");
	p.props.reason_string = str_bytes("welcome");
	p.props.session_expiry = 60;
	roundtrip(V5, &p, &r, &b);
	assert_int_equal(r.props.present, p.props.present);
	assert_int_equal(r.props.receive_maximum, 64);
	assert_int_equal(r.props.maximum_qos, 1);
	assert_int_equal(r.props.retain_available, 1);
	assert_int_equal(r.props.max_packet_size, 262144);
	assert_bytes(r.props.assigned_client_id, str_bytes("auto-7"));
	assert_int_equal(r.props.topic_alias_max, 64);
	assert_int_equal(r.props.server_keepalive, 30);
	assert_int_equal(r.props.wildcard_sub_available, 1);
	assert_int_equal(r.props.shared_sub_available, 1);
	assert_bytes(r.props.response_info, str_bytes("r/"));
	assert_bytes(r.props.server_reference, str_bytes("other"));
	assert_bytes(r.props.reason_string, str_bytes("welcome"));
	assert_int_equal(r.props.session_expiry, 60);
	moat_buf_free(&b);
}

static void test_rt_publish(void **state)
{
	static const uint32_t ids[] = {1, 200, 268435455};
	struct mqtt_packet p, r;
	struct moat_buf b;
	uint8_t qos;
	int vi;

	(void)state;
	for (vi = 0; vi < 2; vi++) {
		uint8_t v = vi ? V5 : V3;

		for (qos = 0; qos <= 2; qos++) {
			memset(&p, 0, sizeof(p));
			p.type = MQTT_PUBLISH;
			p.u.publish.qos = qos;
			p.u.publish.dup = qos > 0;
			p.u.publish.retain = qos == 1;
			p.u.publish.packet_id = qos ? (uint16_t)(1000 + qos) : 0;
			p.u.publish.topic = str_bytes("d/dev-1/temp");
			p.u.publish.payload = str_bytes("{\"t\":21.5}");
			p.props.present =
			    MQTT_HAS(MQTT_PROP_PAYLOAD_FORMAT) |
			    MQTT_HAS(MQTT_PROP_MESSAGE_EXPIRY) | MQTT_HAS(MQTT_PROP_CONTENT_TYPE) |
			    MQTT_HAS(MQTT_PROP_RESPONSE_TOPIC) |
			    MQTT_HAS(MQTT_PROP_CORRELATION_DATA) | MQTT_HAS(MQTT_PROP_TOPIC_ALIAS);
			p.props.payload_format = 1;
			p.props.message_expiry = 86400;
			p.props.content_type = str_bytes("application/json");
			p.props.response_topic = str_bytes("c/dev-1/resp");
			p.props.correlation_data = SL("\x00\x01\x02");
			p.props.topic_alias = 3;
			p.props.sub_ids = ids;
			p.props.n_sub_ids = 3;
			roundtrip(v, &p, &r, &b);
			assert_int_equal(r.u.publish.qos, qos);
			assert_int_equal(r.u.publish.dup, qos > 0);
			assert_int_equal(r.u.publish.retain, qos == 1);
			assert_int_equal(r.u.publish.packet_id, p.u.publish.packet_id);
			assert_bytes(r.u.publish.topic, p.u.publish.topic);
			assert_bytes(r.u.publish.payload, p.u.publish.payload);
			if (v == V5) {
				assert_int_equal(r.props.present,
						 p.props.present |
						     MQTT_HAS(MQTT_PROP_SUBSCRIPTION_ID));
				assert_int_equal(r.props.payload_format, 1);
				assert_int_equal(r.props.message_expiry, 86400);
				assert_bytes(r.props.content_type, str_bytes("application/json"));
				assert_bytes(r.props.response_topic, str_bytes("c/dev-1/resp"));
				assert_bytes(r.props.correlation_data, p.props.correlation_data);
				assert_int_equal(r.props.topic_alias, 3);
				assert_int_equal(r.props.n_sub_ids, 3);
				assert_int_equal(r.props.sub_id, 1);
			} else {
				assert_int_equal(r.props.present, 0);
			}
			moat_buf_free(&b);
		}
	}
	/* Golden v3 QoS 0 PUBLISH. */
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.topic = str_bytes("a/b");
	p.u.publish.payload = str_bytes("hi");
	roundtrip(V3, &p, &r, &b);
	assert_int_equal(moat_buf_used(&b), 9);
	assert_memory_equal(moat_buf_head(&b),
			    ((const uint8_t[]){0x30, 7, 0, 3, 'a', '/', 'b', 'h', 'i'}), 9);
	moat_buf_free(&b);
	/* Empty payload and a large one (3-byte remaining length). */
	{
		static uint8_t big[70000];
		memset(big, 0xab, sizeof(big));
		p.u.publish.payload.p = big;
		p.u.publish.payload.len = sizeof(big);
		roundtrip(V5, &p, &r, &b);
		assert_int_equal(r.u.publish.payload.len, sizeof(big));
		assert_int_equal(moat_buf_used(&b), 1 + 3 + 2 + 3 + 1 + sizeof(big));
		moat_buf_free(&b);
	}
}

static void test_rt_acks(void **state)
{
	static const uint8_t types[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP};
	struct mqtt_packet p, r;
	struct moat_buf b;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(types); i++) {
		uint8_t code = types[i] <= MQTT_PUBREC ? MQTT_RC_NO_MATCHING_SUBSCRIBERS
						       : MQTT_RC_PACKET_ID_NOT_FOUND;
		uint8_t first = (uint8_t)(types[i] << 4 | (types[i] == MQTT_PUBREL ? 2 : 0));

		memset(&p, 0, sizeof(p));
		p.type = types[i];
		p.u.ack.packet_id = 0x1234;
		/* v3 and v5 success: 2 bytes of body. */
		roundtrip(V3, &p, &r, &b);
		assert_memory_equal(moat_buf_head(&b), ((const uint8_t[]){first, 2, 0x12, 0x34}),
				    4);
		assert_int_equal(r.u.ack.packet_id, 0x1234);
		moat_buf_free(&b);
		roundtrip(V5, &p, &r, &b);
		assert_int_equal(moat_buf_used(&b), 4);
		moat_buf_free(&b);
		/* v5 code, no properties: 3 bytes; v3 drops the code. */
		p.u.ack.code = code;
		roundtrip(V5, &p, &r, &b);
		assert_memory_equal(moat_buf_head(&b),
				    ((const uint8_t[]){first, 3, 0x12, 0x34, code}), 5);
		assert_int_equal(r.u.ack.code, code);
		moat_buf_free(&b);
		roundtrip(V3, &p, &r, &b);
		assert_int_equal(moat_buf_used(&b), 4);
		assert_int_equal(r.u.ack.code, 0);
		moat_buf_free(&b);
		/* v5 with a reason string. */
		p.props.present = MQTT_HAS(MQTT_PROP_REASON_STRING);
		p.props.reason_string = str_bytes("why");
		roundtrip(V5, &p, &r, &b);
		assert_int_equal(moat_buf_used(&b), 2 + 2 + 1 + 1 + 6);
		assert_bytes(r.props.reason_string, str_bytes("why"));
		assert_int_equal(r.u.ack.code, code);
		moat_buf_free(&b);
	}
}

static void test_rt_subscribe(void **state)
{
	struct mqtt_packet p, r;
	struct moat_buf b, raw;
	struct mqtt_sub_iter it;
	struct mqtt_sub_entry e, in[3];
	size_t i;
	int vi;

	(void)state;
	memset(in, 0, sizeof(in));
	in[0].filter = str_bytes("c/dev-1/#");
	in[0].qos = 1;
	in[1].filter = str_bytes("a/+/b");
	in[1].qos = 2;
	in[1].no_local = true;
	in[1].retain_as_published = true;
	in[1].retain_handling = 2;
	in[2].filter = str_bytes("$share/g/x");
	in[2].qos = 0;
	in[2].retain_handling = 1;
	for (vi = 0; vi < 2; vi++) {
		uint8_t v = vi ? V5 : V3;

		moat_buf_init(&raw, 4096);
		for (i = 0; i < 3; i++)
			assert_int_equal(mqtt_sub_list_add(&raw, MQTT_SUBSCRIBE, v, &in[i]),
					 MOAT_OK);
		memset(&p, 0, sizeof(p));
		p.type = MQTT_SUBSCRIBE;
		p.u.subs.packet_id = 42;
		p.u.subs.raw.p = moat_buf_head(&raw);
		p.u.subs.raw.len = moat_buf_used(&raw);
		p.props.present = MQTT_HAS(MQTT_PROP_SUBSCRIPTION_ID);
		p.props.n_sub_ids = 1;
		p.props.sub_id = 77; /* sub_ids NULL: the single sub_id is used */
		roundtrip(v, &p, &r, &b);
		assert_int_equal(moat_buf_head(&b)[0], 0x82);
		assert_int_equal(r.u.subs.packet_id, 42);
		assert_int_equal(r.u.subs.count, 3);
		assert_int_equal(r.props.sub_id, v == V5 ? 77 : 0);
		mqtt_sub_iter_init(&it, v, &r);
		for (i = 0; i < 3; i++) {
			assert_true(mqtt_sub_iter_next(&it, &e));
			assert_bytes(e.filter, in[i].filter);
			assert_int_equal(e.qos, in[i].qos);
			/* v3 has only the QoS. */
			assert_int_equal(e.no_local, v == V5 && in[i].no_local);
			assert_int_equal(e.retain_as_published,
					 v == V5 && in[i].retain_as_published);
			assert_int_equal(e.retain_handling, v == V5 ? in[i].retain_handling : 0);
		}
		assert_false(mqtt_sub_iter_next(&it, &e));
		assert_false(mqtt_sub_iter_next(&it, &e));
		moat_buf_free(&b);
		moat_buf_free(&raw);
	}
}

static void test_rt_unsubscribe(void **state)
{
	struct mqtt_packet p, r;
	struct moat_buf b, raw;
	struct mqtt_sub_iter it;
	struct mqtt_sub_entry e;
	int vi;

	(void)state;
	for (vi = 0; vi < 2; vi++) {
		uint8_t v = vi ? V5 : V3;

		moat_buf_init(&raw, 4096);
		memset(&e, 0, sizeof(e));
		e.filter = str_bytes("x/y");
		assert_int_equal(mqtt_sub_list_add(&raw, MQTT_UNSUBSCRIBE, v, &e), MOAT_OK);
		e.filter = str_bytes("z/#");
		assert_int_equal(mqtt_sub_list_add(&raw, MQTT_UNSUBSCRIBE, v, &e), MOAT_OK);
		assert_int_equal(moat_buf_used(&raw), 10);
		memset(&p, 0, sizeof(p));
		p.type = MQTT_UNSUBSCRIBE;
		p.u.subs.packet_id = 9;
		p.u.subs.raw.p = moat_buf_head(&raw);
		p.u.subs.raw.len = moat_buf_used(&raw);
		roundtrip(v, &p, &r, &b);
		assert_int_equal(moat_buf_head(&b)[0], 0xa2);
		assert_int_equal(r.u.subs.count, 2);
		mqtt_sub_iter_init(&it, v, &r);
		assert_true(mqtt_sub_iter_next(&it, &e));
		assert_bytes(e.filter, str_bytes("x/y"));
		assert_int_equal(e.qos, 0);
		assert_true(mqtt_sub_iter_next(&it, &e));
		assert_bytes(e.filter, str_bytes("z/#"));
		assert_false(mqtt_sub_iter_next(&it, &e));
		moat_buf_free(&b);
		moat_buf_free(&raw);
	}
}

static void test_rt_suback_unsuback(void **state)
{
	struct mqtt_packet p, r;
	struct moat_buf b;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_SUBACK;
	p.u.codes.packet_id = 3;
	p.u.codes.codes = SL("\x00\x01\x02\x87\xa2");
	roundtrip(V5, &p, &r, &b);
	assert_bytes(r.u.codes.codes, p.u.codes.codes);
	assert_int_equal(r.u.codes.packet_id, 3);
	moat_buf_free(&b);
	/* v3: every v5 failure code becomes 0x80. */
	roundtrip(V3, &p, &r, &b);
	assert_bytes(r.u.codes.codes, SL("\x00\x01\x02\x80\x80"));
	moat_buf_free(&b);

	p.type = MQTT_UNSUBACK;
	p.u.codes.codes = SL("\x00\x11\x87");
	roundtrip(V5, &p, &r, &b);
	assert_bytes(r.u.codes.codes, p.u.codes.codes);
	moat_buf_free(&b);
	/* v3 UNSUBACK has no payload. */
	roundtrip(V3, &p, &r, &b);
	assert_memory_equal(moat_buf_head(&b), ((const uint8_t[]){0xb0, 2, 0, 3}), 4);
	assert_int_equal(r.u.codes.codes.len, 0);
	moat_buf_free(&b);
}

static void test_rt_ping_disconnect_auth(void **state)
{
	struct mqtt_packet p, r;
	struct moat_buf b;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PINGREQ;
	roundtrip(V3, &p, &r, &b);
	assert_memory_equal(moat_buf_head(&b), ((const uint8_t[]){0xc0, 0}), 2);
	moat_buf_free(&b);
	p.type = MQTT_PINGRESP;
	roundtrip(V5, &p, &r, &b);
	assert_memory_equal(moat_buf_head(&b), ((const uint8_t[]){0xd0, 0}), 2);
	moat_buf_free(&b);

	p.type = MQTT_DISCONNECT;
	roundtrip(V5, &p, &r, &b);
	assert_memory_equal(moat_buf_head(&b), ((const uint8_t[]){0xe0, 0}), 2);
	moat_buf_free(&b);
	p.u.reason.code = MQTT_RC_DISCONNECT_WITH_WILL;
	roundtrip(V5, &p, &r, &b);
	assert_memory_equal(moat_buf_head(&b), ((const uint8_t[]){0xe0, 1, 0x04}), 3);
	assert_int_equal(r.u.reason.code, 0x04);
	moat_buf_free(&b);
	roundtrip(V3, &p, &r, &b);
	assert_memory_equal(moat_buf_head(&b), ((const uint8_t[]){0xe0, 0}), 2);
	moat_buf_free(&b);
	p.u.reason.code = MQTT_RC_SERVER_MOVED;
	p.props.present = MQTT_HAS(MQTT_PROP_SERVER_REFERENCE) | MQTT_HAS(MQTT_PROP_SESSION_EXPIRY);
	p.props.server_reference = str_bytes("b.example");
	p.props.session_expiry = 0;
	roundtrip(V5, &p, &r, &b);
	assert_int_equal(r.u.reason.code, MQTT_RC_SERVER_MOVED);
	assert_bytes(r.props.server_reference, str_bytes("b.example"));
	assert_int_equal(r.props.present, p.props.present);
	moat_buf_free(&b);

	memset(&p, 0, sizeof(p));
	p.type = MQTT_AUTH;
	roundtrip(V5, &p, &r, &b);
	assert_memory_equal(moat_buf_head(&b), ((const uint8_t[]){0xf0, 0}), 2);
	moat_buf_free(&b);
	/* AUTH with a code always carries a property length. */
	p.u.reason.code = MQTT_RC_CONTINUE_AUTH;
	roundtrip(V5, &p, &r, &b);
	assert_memory_equal(moat_buf_head(&b), ((const uint8_t[]){0xf0, 2, 0x18, 0}), 4);
	moat_buf_free(&b);
	p.props.present = MQTT_HAS(MQTT_PROP_AUTH_METHOD) | MQTT_HAS(MQTT_PROP_AUTH_DATA);
	p.props.auth_method = str_bytes("SCRAM");
	p.props.auth_data = str_bytes("data");
	roundtrip(V5, &p, &r, &b);
	assert_bytes(r.props.auth_method, str_bytes("SCRAM"));
	assert_bytes(r.props.auth_data, str_bytes("data"));
	moat_buf_free(&b);
}

/* ------------------------------------------------------------- encoder */

static void test_encode_invalid(void **state)
{
	struct mqtt_packet p;
	struct moat_buf b;
	static uint8_t huge[65536];
	static const uint32_t two_ids[] = {1, 2};

	(void)state;
	moat_buf_init(&b, 1u << 20);
#define EXPECT_INVAL(v)                                                                            \
	do {                                                                                       \
		assert_int_equal(mqtt_encoded_size(v, &p), 0);                                     \
		assert_int_equal(mqtt_encode(&b, v, &p), MOAT_E_INVAL);                            \
		assert_int_equal(moat_buf_used(&b), 0);                                            \
	} while (0)

	memset(&p, 0, sizeof(p));
	p.type = 0;
	EXPECT_INVAL(V5);
	p.type = MQTT_PINGREQ;
	EXPECT_INVAL(3);
	p.type = MQTT_AUTH;
	EXPECT_INVAL(V3);

	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.topic = str_bytes("t");
	p.u.publish.qos = 3;
	p.u.publish.packet_id = 1;
	EXPECT_INVAL(V3);
	p.u.publish.qos = 0;
	p.u.publish.dup = true;
	EXPECT_INVAL(V3);
	p.u.publish.dup = false;
	p.u.publish.qos = 1;
	p.u.publish.packet_id = 0;
	EXPECT_INVAL(V5);
	p.u.publish.qos = 0;
	p.u.publish.topic.len = 0;
	EXPECT_INVAL(V3); /* v3 has no topic alias */
	EXPECT_INVAL(V5); /* empty topic needs an alias */
	p.u.publish.topic.p = huge;
	p.u.publish.topic.len = sizeof(huge);
	EXPECT_INVAL(V3);
	p.u.publish.topic = str_bytes("t");
	p.props.present = MQTT_HAS(MQTT_PROP_SESSION_EXPIRY);
	EXPECT_INVAL(V5);
	p.props.present = 0;
	p.props.sub_id = 0;
	p.props.n_sub_ids = 1;
	EXPECT_INVAL(V5);
	p.props.n_sub_ids = 2; /* several ids need the sub_ids array */
	p.props.sub_id = 1;
	EXPECT_INVAL(V5);
	p.props.n_sub_ids = 0;
	p.props.present = MQTT_HAS(MQTT_PROP_CONTENT_TYPE);
	p.props.content_type.p = huge;
	p.props.content_type.len = sizeof(huge);
	EXPECT_INVAL(V5);

	memset(&p, 0, sizeof(p));
	p.type = MQTT_SUBSCRIBE;
	p.u.subs.packet_id = 1;
	EXPECT_INVAL(V3); /* no entries */
	p.u.subs.raw = str_bytes("\x00\x01"
				 "a\x01");
	p.u.subs.raw.len = 4;
	p.props.sub_ids = two_ids;
	p.props.n_sub_ids = 2;
	EXPECT_INVAL(V5); /* one subscription id at most */
	p.props.n_sub_ids = 0;
	p.u.subs.packet_id = 0;
	EXPECT_INVAL(V3);

	memset(&p, 0, sizeof(p));
	p.type = MQTT_SUBACK;
	p.u.codes.packet_id = 1;
	EXPECT_INVAL(V3); /* no codes */
	p.u.codes.codes = str_bytes("\x03");
	EXPECT_INVAL(V3);
	p.u.codes.codes = str_bytes("\x10");
	EXPECT_INVAL(V5);

	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBREL;
	p.u.ack.packet_id = 1;
	p.u.ack.code = MQTT_RC_NO_MATCHING_SUBSCRIBERS;
	EXPECT_INVAL(V5);
	p.u.ack.code = 0;
	p.u.ack.packet_id = 0;
	EXPECT_INVAL(V3);

	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNACK;
	p.u.connack.code = 6;
	EXPECT_INVAL(V3);
	p.u.connack.code = MQTT_RC_NOT_AUTHORIZED;
	p.u.connack.session_present = true;
	EXPECT_INVAL(V5);

	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNECT;
	p.u.connect.has_password = true;
	EXPECT_INVAL(V3);
	p.u.connect.has_password = false;
	p.u.connect.will = true;
	p.u.connect.will_qos = 3;
	EXPECT_INVAL(V5);
	p.u.connect.will_qos = 0;
	p.u.connect.will_topic = str_bytes("w");
	p.u.connect.will_props.present = MQTT_HAS(MQTT_PROP_TOPIC_ALIAS);
	EXPECT_INVAL(V5);
	p.u.connect.will_props.present = 0;
	p.props.present = MQTT_HAS(MQTT_PROP_AUTH_DATA);
	EXPECT_INVAL(V5);

	memset(&p, 0, sizeof(p));
	p.type = MQTT_DISCONNECT;
	p.u.reason.code = 0x01;
	EXPECT_INVAL(V5);
#undef EXPECT_INVAL
	moat_buf_free(&b);
}

static void test_encode_limit_unchanged(void **state)
{
	struct mqtt_packet p;
	struct moat_buf b;
	size_t sz;

	(void)state;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.topic = str_bytes("a/b");
	p.u.publish.payload = str_bytes("0123456789");
	sz = mqtt_encoded_size(V5, &p);
	assert_int_equal(sz, 2 + 5 + 1 + 10);
	/* Room for what is there plus one byte short of the packet. */
	moat_buf_init(&b, 3 + sz - 1);
	assert_int_equal(moat_buf_append(&b, "xyz", 3), MOAT_OK);
	assert_int_equal(mqtt_encode(&b, V5, &p), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_used(&b), 3);
	assert_memory_equal(moat_buf_head(&b), "xyz", 3);
	moat_buf_free(&b);
	/* Exactly enough: appended after the existing bytes. */
	moat_buf_init(&b, 3 + sz);
	assert_int_equal(moat_buf_append(&b, "xyz", 3), MOAT_OK);
	assert_int_equal(mqtt_encode(&b, V5, &p), MOAT_OK);
	assert_int_equal(moat_buf_used(&b), 3 + sz);
	assert_int_equal(moat_buf_head(&b)[3], 0x30);
	moat_buf_free(&b);
}

/* ----------------------------------------------------------- iterators */

static void test_user_props(void **state)
{
	struct mqtt_packet p, r;
	struct mqtt_user_iter it;
	struct mqtt_bytes k, v;
	struct moat_buf b, raw;

	(void)state;
	/* User properties interleaved with others: the iterator skips them. */
	assert_int_equal(decode_wire(V5,
				     B(0x30, 20, 0, 1, 't', 15, 0x26, 0, 1, 'a', 0, 1, '1', 0x01,
				       0x01, 0x26, 0, 1, 'b', 0, 0, 'P'),
				     &p),
			 MOAT_OK);
	assert_int_equal(p.props.n_user, 2);
	assert_true(p.props.present & MQTT_HAS(MQTT_PROP_USER_PROPERTY));
	assert_int_equal(p.props.payload_format, 1);
	assert_bytes(p.u.publish.payload, str_bytes("P"));
	mqtt_user_iter_init(&it, &p.props);
	assert_true(mqtt_user_iter_next(&it, &k, &v));
	assert_bytes(k, str_bytes("a"));
	assert_bytes(v, str_bytes("1"));
	assert_true(mqtt_user_iter_next(&it, &k, &v));
	assert_bytes(k, str_bytes("b"));
	assert_int_equal(v.len, 0);
	assert_false(mqtt_user_iter_next(&it, &k, &v));
	/* Re-encoding writes the pairs once, without the interleaved property
	 * twice: payload format 1 + two pairs. */
	roundtrip(V5, &p, &r, &b);
	assert_int_equal(r.props.n_user, 2);
	assert_int_equal(r.props.payload_format, 1);
	assert_int_equal(moat_buf_used(&b), 22);
	moat_buf_free(&b);

	/* Duplicate keys are allowed and kept in order. */
	moat_buf_init(&raw, 256);
	assert_int_equal(mqtt_user_prop_add(&raw, "k", 1, "1", 1), MOAT_OK);
	assert_int_equal(mqtt_user_prop_add(&raw, "k", 1, "2", 1), MOAT_OK);
	assert_int_equal(mqtt_user_prop_add(&raw, "k", 1, "\xff", 1), MOAT_E_INVAL);
	assert_int_equal(mqtt_user_prop_add(&raw, "\0", 1, "x", 1), MOAT_E_INVAL);
	assert_int_equal(moat_buf_used(&raw), 14);
	memset(&p, 0, sizeof(p));
	p.type = MQTT_DISCONNECT;
	p.props.user.p = moat_buf_head(&raw);
	p.props.user.len = moat_buf_used(&raw);
	roundtrip(V5, &p, &r, &b);
	assert_int_equal(r.props.n_user, 2);
	mqtt_user_iter_init(&it, &r.props);
	assert_true(mqtt_user_iter_next(&it, &k, &v));
	assert_bytes(v, str_bytes("1"));
	assert_true(mqtt_user_iter_next(&it, &k, &v));
	assert_bytes(v, str_bytes("2"));
	assert_false(mqtt_user_iter_next(&it, &k, &v));
	moat_buf_free(&b);
	moat_buf_free(&raw);

	/* No user properties: the iterator is empty. */
	memset(&p, 0, sizeof(p));
	mqtt_user_iter_init(&it, &p.props);
	assert_false(mqtt_user_iter_next(&it, &k, &v));
}

static void test_sub_list_add_invalid(void **state)
{
	struct moat_buf raw;
	struct mqtt_sub_entry e;

	(void)state;
	moat_buf_init(&raw, 64);
	memset(&e, 0, sizeof(e));
	e.filter = str_bytes("a");
	e.qos = 3;
	assert_int_equal(mqtt_sub_list_add(&raw, MQTT_SUBSCRIBE, V5, &e), MOAT_E_INVAL);
	e.qos = 0;
	e.retain_handling = 3;
	assert_int_equal(mqtt_sub_list_add(&raw, MQTT_SUBSCRIBE, V5, &e), MOAT_E_INVAL);
	e.retain_handling = 0;
	assert_int_equal(mqtt_sub_list_add(&raw, MQTT_PUBLISH, V5, &e), MOAT_E_INVAL);
	e.filter = str_bytes("\xc0\x80");
	assert_int_equal(mqtt_sub_list_add(&raw, MQTT_SUBSCRIBE, V5, &e), MOAT_E_INVAL);
	assert_int_equal(moat_buf_used(&raw), 0);
	/* The buffer's maximum is respected. */
	e.filter.p =
	    (const uint8_t *)"0123456789012345678901234567890123456789012345678901234567890123";
	e.filter.len = 64;
	assert_int_equal(mqtt_sub_list_add(&raw, MQTT_SUBSCRIBE, V5, &e), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_used(&raw), 0);
	moat_buf_free(&raw);
}

static void test_names_and_reasons(void **state)
{
	(void)state;
	assert_string_equal(mqtt_type_name(MQTT_CONNECT), "CONNECT");
	assert_string_equal(mqtt_type_name(MQTT_UNSUBACK), "UNSUBACK");
	assert_string_equal(mqtt_type_name(MQTT_AUTH), "AUTH");
	assert_string_equal(mqtt_type_name(0), "RESERVED");
	assert_string_equal(mqtt_type_name(16), "UNKNOWN");
	assert_int_equal(mqtt_err_reason(MOAT_E_MALFORMED), 0x81);
	assert_int_equal(mqtt_err_reason(MOAT_E_PROTOCOL), 0x82);
	assert_int_equal(mqtt_err_reason(MOAT_E_VERSION), 0x84);
	assert_int_equal(mqtt_err_reason(MOAT_E_TOO_LARGE), 0x95);
	assert_int_equal(mqtt_err_reason(MOAT_E_LIMIT), 0x97);
	assert_int_equal(mqtt_err_reason(MOAT_E_NOMEM), 0x80);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frame),
	    cmocka_unit_test(test_frame_varint),
	    cmocka_unit_test(test_frame_too_large),
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_bad_packets),
	    cmocka_unit_test(test_user_property_limit),
	    cmocka_unit_test(test_prop_matrix),
	    cmocka_unit_test(test_v5_short_forms),
	    cmocka_unit_test(test_connect_wire),
	    cmocka_unit_test(test_publish_sub_ids),
	    cmocka_unit_test(test_rt_connect),
	    cmocka_unit_test(test_rt_connect_minimal),
	    cmocka_unit_test(test_rt_connack),
	    cmocka_unit_test(test_rt_publish),
	    cmocka_unit_test(test_rt_acks),
	    cmocka_unit_test(test_rt_subscribe),
	    cmocka_unit_test(test_rt_unsubscribe),
	    cmocka_unit_test(test_rt_suback_unsuback),
	    cmocka_unit_test(test_rt_ping_disconnect_auth),
	    cmocka_unit_test(test_encode_invalid),
	    cmocka_unit_test(test_encode_limit_unchanged),
	    cmocka_unit_test(test_user_props),
	    cmocka_unit_test(test_sub_list_add_invalid),
	    cmocka_unit_test(test_names_and_reasons),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
