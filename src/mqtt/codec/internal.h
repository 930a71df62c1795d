/*
 * Private to the codec (decode.c, props.c, encode.c): a bounded read cursor
 * and raw writers. They are static inline so reading a u16 on the hot path is
 * a load, not a call; every read is bounds-checked and a short read is
 * MOAT_E_MALFORMED. Writers assume the caller reserved the exact size first
 * (encode.c computes the size, reserves, then writes).
 */
#ifndef MOAT_MQTT_CODEC_INTERNAL_H
#define MOAT_MQTT_CODEC_INTERNAL_H

#include <string.h>

#include "core/limits.h"
#include "mqtt/codec/codec.h"

struct mqtt_cur {
	const uint8_t *p;
	const uint8_t *end;
};

static inline size_t cur_left(const struct mqtt_cur *c)
{
	return (size_t)(c->end - c->p);
}

static inline moat_err cur_u8(struct mqtt_cur *c, uint8_t *v)
{
	if (c->p >= c->end)
		return MOAT_E_MALFORMED;
	*v = *c->p++;
	return MOAT_OK;
}

static inline moat_err cur_u16(struct mqtt_cur *c, uint16_t *v)
{
	if (cur_left(c) < 2)
		return MOAT_E_MALFORMED;
	*v = (uint16_t)((c->p[0] << 8) | c->p[1]);
	c->p += 2;
	return MOAT_OK;
}

static inline moat_err cur_u32(struct mqtt_cur *c, uint32_t *v)
{
	if (cur_left(c) < 4)
		return MOAT_E_MALFORMED;
	*v = ((uint32_t)c->p[0] << 24) | ((uint32_t)c->p[1] << 16) | ((uint32_t)c->p[2] << 8) |
	     (uint32_t)c->p[3];
	c->p += 4;
	return MOAT_OK;
}

/*
 * Variable byte integer. MQTT 5 1.5.5 requires the minimum number of bytes
 * (3.1.1's algorithm only produces that form), so a multi-byte encoding that
 * ends in 0x00 is malformed: it would let one value have several encodings.
 */
static inline moat_err cur_varint(struct mqtt_cur *c, uint32_t *v)
{
	uint32_t val = 0;
	unsigned shift = 0;
	uint8_t d;

	do {
		if (shift > 21 || c->p >= c->end)
			return MOAT_E_MALFORMED;
		d = *c->p++;
		val |= (uint32_t)(d & 0x7fu) << shift;
		shift += 7;
	} while (d & 0x80u);
	if (shift > 7 && d == 0)
		return MOAT_E_MALFORMED;
	*v = val;
	return MOAT_OK;
}

/* Two-byte length prefixed binary data, as a view. */
static inline moat_err cur_bin(struct mqtt_cur *c, struct mqtt_bytes *b)
{
	size_t n;

	if (cur_left(c) < 2)
		return MOAT_E_MALFORMED;
	n = ((size_t)c->p[0] << 8) | c->p[1];
	if (cur_left(c) - 2 < n)
		return MOAT_E_MALFORMED;
	b->p = c->p + 2;
	b->len = n;
	c->p += 2 + n;
	return MOAT_OK;
}

/* A UTF-8 Encoded String (1.5.4): binary data that must be valid UTF-8. */
static inline moat_err cur_str(struct mqtt_cur *c, struct mqtt_bytes *b)
{
	moat_err rc = cur_bin(c, b);

	if (rc == MOAT_OK && !mqtt_utf8_valid(b->p, b->len))
		rc = MOAT_E_MALFORMED;
	return rc;
}

static inline uint8_t *wr_u8(uint8_t *w, uint8_t v)
{
	*w = v;
	return w + 1;
}

static inline uint8_t *wr_u16(uint8_t *w, uint16_t v)
{
	w[0] = (uint8_t)(v >> 8);
	w[1] = (uint8_t)v;
	return w + 2;
}

static inline uint8_t *wr_u32(uint8_t *w, uint32_t v)
{
	w[0] = (uint8_t)(v >> 24);
	w[1] = (uint8_t)(v >> 16);
	w[2] = (uint8_t)(v >> 8);
	w[3] = (uint8_t)v;
	return w + 4;
}

/* v <= MOAT_MQTT_MAX_REMAINING (checked by the size pass). */
static inline uint8_t *wr_varint(uint8_t *w, uint32_t v)
{
	do {
		uint8_t d = (uint8_t)(v & 0x7fu);
		v >>= 7;
		if (v)
			d |= 0x80u;
		*w++ = d;
	} while (v);
	return w;
}

static inline uint8_t *wr_raw(uint8_t *w, const void *p, size_t n)
{
	if (n)
		memcpy(w, p, n);
	return w + n;
}

/* n <= 65535 (checked by the size pass). */
static inline uint8_t *wr_bin(uint8_t *w, const struct mqtt_bytes *b)
{
	w = wr_u16(w, (uint16_t)b->len);
	return wr_raw(w, b->p, b->len);
}

/*
 * Property contexts: the packet type (1..15) selects the allowed set of
 * properties; 0 is the Will Properties of a CONNECT.
 */
#define MQTT_PCTX_WILL 0u

/* Decode a property block (length varint + properties) in context ctx. */
moat_err mqtt_props_decode(struct mqtt_cur *c, unsigned ctx, struct mqtt_props *out);

/*
 * Size of the properties of `pr` (without the length varint) for ctx.
 * MOAT_E_INVAL when a property is not allowed in ctx or cannot be encoded.
 */
moat_err mqtt_props_size(unsigned ctx, const struct mqtt_props *pr, size_t *size);

/* Write the properties (without the length varint); size from mqtt_props_size. */
uint8_t *mqtt_props_write(uint8_t *w, const struct mqtt_props *pr);

/* Reason codes valid for a packet type and version. */
bool mqtt_code_valid(uint8_t type, uint8_t version, uint8_t code);

#endif
