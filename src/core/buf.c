/* Bounded buffers and read cursors; see buf.h for the contract. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/buf.h"
#include "core/limits.h"

void moat_buf_init(struct moat_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void moat_buf_free(struct moat_buf *b)
{
	if (b->data != NULL && b->secret)
		sodium_memzero(b->data, b->cap);
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

void moat_buf_reset(struct moat_buf *b)
{
	if (b->data != NULL && b->secret)
		sodium_memzero(b->data, b->cap);
	b->off = b->len = 0;
}

void moat_buf_shrink(struct moat_buf *b)
{
	if (b->data != NULL && b->off == b->len)
		moat_buf_free(b);
}

moat_err moat_buf_reserve(struct moat_buf *b, size_t n)
{
	size_t used = b->len - b->off;
	size_t need, ncap;
	uint8_t *nd;

	if (n > b->max || used > b->max - n)
		return MOAT_E_LIMIT;
	need = used + n;
	if (b->len + n <= b->cap)
		return MOAT_OK;
	/* Compact first: consumed bytes at the front are reusable. */
	if (need <= b->cap) {
		memmove(b->data, b->data + b->off, used);
		b->off = 0;
		b->len = used;
		return MOAT_OK;
	}
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap = ncap > b->max / 2 ? b->max : ncap * 2;
	if (ncap < need)
		ncap = need;
	/* The first block (256) may exceed a small max; max bounds cap. */
	if (ncap > b->max)
		ncap = b->max;
	if (b->secret) {
		/* Never leave secret bytes behind in a freed block. */
		nd = malloc(ncap);
		if (nd == NULL)
			return MOAT_E_NOMEM;
		if (used)
			memcpy(nd, b->data + b->off, used);
		moat_buf_free(b);
	} else {
		if (b->off) {
			/* Keep the buffer consistent if realloc fails. */
			memmove(b->data, b->data + b->off, used);
			b->off = 0;
			b->len = used;
		}
		nd = realloc(b->data, ncap);
		if (nd == NULL)
			return MOAT_E_NOMEM;
	}
	b->data = nd;
	b->off = 0;
	b->len = used;
	b->cap = ncap;
	return MOAT_OK;
}

moat_err moat_buf_append(struct moat_buf *b, const void *p, size_t n)
{
	moat_err rc;

	if (n == 0)
		return MOAT_OK;
	if ((rc = moat_buf_reserve(b, n)) != MOAT_OK)
		return rc;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return MOAT_OK;
}

moat_err moat_buf_put_u8(struct moat_buf *b, uint8_t v)
{
	return moat_buf_append(b, &v, 1);
}

moat_err moat_buf_put_u16(struct moat_buf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	return moat_buf_append(b, x, 2);
}

moat_err moat_buf_put_u32(struct moat_buf *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	return moat_buf_append(b, x, 4);
}

size_t moat_varint_size(uint32_t v)
{
	if (v < 128u)
		return 1;
	if (v < 16384u)
		return 2;
	if (v < 2097152u)
		return 3;
	return 4;
}

moat_err moat_buf_put_varint(struct moat_buf *b, uint32_t v)
{
	uint8_t x[4];
	size_t n = 0;

	if (v > MOAT_MQTT_MAX_REMAINING)
		return MOAT_E_INVAL;
	do {
		uint8_t d = (uint8_t)(v % 128u);
		v /= 128u;
		if (v > 0)
			d |= 0x80u;
		x[n++] = d;
	} while (v > 0);
	return moat_buf_append(b, x, n);
}

moat_err moat_buf_put_str(struct moat_buf *b, const void *p, size_t n)
{
	moat_err rc;

	if (n > 65535u)
		return MOAT_E_INVAL;
	if ((rc = moat_buf_reserve(b, n + 2)) != MOAT_OK)
		return rc;
	(void)moat_buf_put_u16(b, (uint16_t)n);
	return moat_buf_append(b, p, n);
}

void moat_buf_commit(struct moat_buf *b, size_t n)
{
	if (n > b->cap - b->len)
		n = b->cap - b->len;
	b->len += n;
}

void moat_buf_consume(struct moat_buf *b, size_t n)
{
	if (n >= b->len - b->off) {
		b->off = b->len = 0;
		return;
	}
	b->off += n;
}

moat_err moat_rd_u8(struct moat_rd *r, uint8_t *v)
{
	if (r->len - r->pos < 1)
		return MOAT_E_MALFORMED;
	*v = r->p[r->pos++];
	return MOAT_OK;
}

moat_err moat_rd_u16(struct moat_rd *r, uint16_t *v)
{
	if (r->len - r->pos < 2)
		return MOAT_E_MALFORMED;
	*v = (uint16_t)((r->p[r->pos] << 8) | r->p[r->pos + 1]);
	r->pos += 2;
	return MOAT_OK;
}

moat_err moat_rd_u32(struct moat_rd *r, uint32_t *v)
{
	if (r->len - r->pos < 4)
		return MOAT_E_MALFORMED;
	*v = ((uint32_t)r->p[r->pos] << 24) | ((uint32_t)r->p[r->pos + 1] << 16) |
	     ((uint32_t)r->p[r->pos + 2] << 8) | (uint32_t)r->p[r->pos + 3];
	r->pos += 4;
	return MOAT_OK;
}

moat_err moat_rd_varint(struct moat_rd *r, uint32_t *v)
{
	uint32_t val = 0, mul = 1;
	int i;

	for (i = 0; i < 4; i++) {
		uint8_t d;
		if (r->len - r->pos < 1)
			return MOAT_E_MALFORMED;
		d = r->p[r->pos++];
		val += (uint32_t)(d & 0x7fu) * mul;
		if ((d & 0x80u) == 0) {
			*v = val;
			return MOAT_OK;
		}
		mul *= 128u;
	}
	return MOAT_E_MALFORMED;
}

moat_err moat_rd_str(struct moat_rd *r, const uint8_t **p, uint16_t *n)
{
	uint16_t l;
	moat_err rc;

	if ((rc = moat_rd_u16(r, &l)) != MOAT_OK)
		return rc;
	if (r->len - r->pos < l)
		return MOAT_E_MALFORMED;
	*p = r->p + r->pos;
	*n = l;
	r->pos += l;
	return MOAT_OK;
}

moat_err moat_rd_bytes(struct moat_rd *r, size_t n, const uint8_t **p)
{
	if (r->len - r->pos < n)
		return MOAT_E_MALFORMED;
	*p = r->p + r->pos;
	r->pos += n;
	return MOAT_OK;
}
