/*
 * The one bounded buffer type for wire data (STYLE.md item 3).
 *
 * struct moat_buf is a growable byte buffer whose maximum is fixed when it is
 * created: growing past `max` is MOAT_E_LIMIT, never a silent realloc. Bytes
 * are appended at the end and consumed from the front (`off`). A buffer marked
 * secret is wiped before its memory is released.
 *
 * struct moat_rd is a read cursor over bytes someone else owns: every read is
 * bounds-checked and a short read is MOAT_E_MALFORMED, never a crash.
 */
#ifndef MOAT_BUF_H
#define MOAT_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

struct moat_buf {
	uint8_t *data;
	size_t off; /* first unconsumed byte */
	size_t len; /* end of valid data (absolute index into data) */
	size_t cap; /* allocated bytes */
	size_t max; /* hard limit on cap */
	unsigned secret : 1;
};

void moat_buf_init(struct moat_buf *b, size_t max);
void moat_buf_free(struct moat_buf *b);
/* Drop all content; keep the allocation. */
void moat_buf_reset(struct moat_buf *b);
/* Release the allocation if the buffer is empty (idle connections). */
void moat_buf_shrink(struct moat_buf *b);
/* Make room for n more bytes at the end. */
moat_err moat_buf_reserve(struct moat_buf *b, size_t n);
moat_err moat_buf_append(struct moat_buf *b, const void *p, size_t n);
moat_err moat_buf_put_u8(struct moat_buf *b, uint8_t v);
moat_err moat_buf_put_u16(struct moat_buf *b, uint16_t v);
moat_err moat_buf_put_u32(struct moat_buf *b, uint32_t v);
/* MQTT variable byte integer, v <= 268435455. */
moat_err moat_buf_put_varint(struct moat_buf *b, uint32_t v);
/* Two-byte length prefixed string/binary, n <= 65535. */
moat_err moat_buf_put_str(struct moat_buf *b, const void *p, size_t n);
/* Unconsumed bytes. */
static inline size_t moat_buf_used(const struct moat_buf *b)
{
	return b->len - b->off;
}
static inline uint8_t *moat_buf_head(const struct moat_buf *b)
{
	return b->data + b->off;
}
/* Writable tail after reserve. */
static inline uint8_t *moat_buf_tail(const struct moat_buf *b)
{
	return b->data + b->len;
}
static inline size_t moat_buf_room(const struct moat_buf *b)
{
	return b->cap - b->len;
}
/* Mark n bytes written directly at the tail. */
void moat_buf_commit(struct moat_buf *b, size_t n);
/* Drop n bytes from the front. */
void moat_buf_consume(struct moat_buf *b, size_t n);
/* Size of an MQTT varint encoding of v (1-4). */
size_t moat_varint_size(uint32_t v);

struct moat_rd {
	const uint8_t *p;
	size_t len;
	size_t pos;
};

static inline void moat_rd_init(struct moat_rd *r, const void *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->pos = 0;
}
static inline size_t moat_rd_left(const struct moat_rd *r)
{
	return r->len - r->pos;
}
moat_err moat_rd_u8(struct moat_rd *r, uint8_t *v);
moat_err moat_rd_u16(struct moat_rd *r, uint16_t *v);
moat_err moat_rd_u32(struct moat_rd *r, uint32_t *v);
/* MQTT variable byte integer: at most 4 bytes, minimal form not required. */
moat_err moat_rd_varint(struct moat_rd *r, uint32_t *v);
/* Two-byte length prefixed bytes; returns a view into the input. */
moat_err moat_rd_str(struct moat_rd *r, const uint8_t **p, uint16_t *n);
/* n raw bytes as a view. */
moat_err moat_rd_bytes(struct moat_rd *r, size_t n, const uint8_t **p);

#endif
