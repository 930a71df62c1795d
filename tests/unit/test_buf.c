/*
 * Bounded buffers and read cursors (core/buf.c): limits, compaction,
 * integer and varint encodings at their boundaries, short reads, strings,
 * the secret-wiping path and shrinking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/limits.h"

/* Let a huge allocation fail with NULL under ASan, as it does in libc, so
 * the out-of-memory path can be tested. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static void test_init_free(void **state)
{
	(void)state;
	struct moat_buf b;

	moat_buf_init(&b, 1000);
	assert_null(b.data);
	assert_int_equal(b.max, 1000);
	assert_int_equal(moat_buf_used(&b), 0);
	assert_int_equal(b.secret, 0);
	moat_buf_free(&b);
	moat_buf_free(&b); /* idempotent */
	assert_null(b.data);
}

static void test_limits(void **state)
{
	(void)state;
	struct moat_buf b;
	uint8_t data[600], *before;
	size_t cap;

	fill(data, sizeof(data), 1);
	moat_buf_init(&b, 512);
	assert_int_equal(moat_buf_reserve(&b, 513), MOAT_E_LIMIT);
	assert_null(b.data);
	assert_int_equal(moat_buf_reserve(&b, SIZE_MAX), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_append(&b, data, 300), MOAT_OK);
	before = b.data;
	cap = b.cap;
	/* 300 used + 213 > 512: refused, buffer unchanged. */
	assert_int_equal(moat_buf_reserve(&b, 213), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_append(&b, data, 213), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_reserve(&b, SIZE_MAX - 100), MOAT_E_LIMIT);
	assert_ptr_equal(b.data, before);
	assert_int_equal(b.cap, cap);
	assert_int_equal(moat_buf_used(&b), 300);
	assert_memory_equal(moat_buf_head(&b), data, 300);
	/* Exactly up to max is fine; one byte more is not. */
	assert_int_equal(moat_buf_append(&b, data + 300, 212), MOAT_OK);
	assert_int_equal(moat_buf_used(&b), 512);
	assert_true(b.cap <= b.max);
	assert_int_equal(moat_buf_put_u8(&b, 1), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_put_u16(&b, 1), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_put_u32(&b, 1), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_put_varint(&b, 1), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_put_str(&b, "", 0), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_used(&b), 512);
	assert_memory_equal(moat_buf_head(&b), data, 512);
	/* Appending nothing always works. */
	assert_int_equal(moat_buf_append(&b, NULL, 0), MOAT_OK);
	/* Consuming frees room again. */
	moat_buf_consume(&b, 12);
	assert_int_equal(moat_buf_append(&b, data, 12), MOAT_OK);
	assert_int_equal(moat_buf_used(&b), 512);
	assert_true(b.cap <= b.max);
	moat_buf_free(&b);

	/* A max below the first allocation size still bounds the allocation. */
	moat_buf_init(&b, 100);
	assert_int_equal(moat_buf_append(&b, data, 10), MOAT_OK);
	assert_true(b.cap >= 10 && b.cap <= 100);
	assert_int_equal(moat_buf_append(&b, data, 90), MOAT_OK);
	assert_int_equal(moat_buf_put_u8(&b, 0), MOAT_E_LIMIT);
	moat_buf_free(&b);

	/* max 0: nothing fits. */
	moat_buf_init(&b, 0);
	assert_int_equal(moat_buf_put_u8(&b, 0), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_append(&b, data, 0), MOAT_OK);
	moat_buf_free(&b);
}

static void test_append_consume_compact(void **state)
{
	(void)state;
	struct moat_buf b;
	uint8_t data[1000], *before;
	size_t cap;

	fill(data, sizeof(data), 3);
	moat_buf_init(&b, 4096);
	assert_int_equal(moat_buf_append(&b, data, 200), MOAT_OK);
	before = b.data;
	cap = b.cap;
	assert_true(cap >= 200);
	moat_buf_consume(&b, 150);
	assert_int_equal(moat_buf_used(&b), 50);
	assert_memory_equal(moat_buf_head(&b), data + 150, 50);
	/* Fits only after moving the 50 live bytes to the front: compaction
	 * reuses the block instead of growing. */
	assert_int_equal(moat_buf_append(&b, data + 200, cap - 60), MOAT_OK);
	assert_ptr_equal(b.data, before);
	assert_int_equal(b.cap, cap);
	assert_int_equal(b.off, 0);
	assert_int_equal(moat_buf_used(&b), 50 + cap - 60);
	assert_memory_equal(moat_buf_head(&b), data + 150, 50 + cap - 60);
	/* Growing past cap keeps the content (including after a consume). */
	moat_buf_consume(&b, 10);
	assert_int_equal(moat_buf_append(&b, data, 900), MOAT_OK);
	assert_true(b.cap > cap);
	assert_int_equal(moat_buf_used(&b), 40 + cap - 60 + 900);
	assert_memory_equal(moat_buf_head(&b), data + 160, 40 + cap - 60);
	assert_memory_equal(moat_buf_head(&b) + 40 + cap - 60, data, 900);
	/* Consuming everything (or more) empties it and rewinds. */
	moat_buf_consume(&b, moat_buf_used(&b) + 5);
	assert_int_equal(moat_buf_used(&b), 0);
	assert_int_equal(b.off, 0);
	assert_int_equal(b.len, 0);
	moat_buf_consume(&b, 1);
	assert_int_equal(moat_buf_used(&b), 0);
	/* reset keeps the allocation. */
	assert_int_equal(moat_buf_append(&b, data, 10), MOAT_OK);
	before = b.data;
	moat_buf_reset(&b);
	assert_int_equal(moat_buf_used(&b), 0);
	assert_ptr_equal(b.data, before);
	moat_buf_free(&b);
}

static void test_commit(void **state)
{
	(void)state;
	struct moat_buf b;

	moat_buf_init(&b, 1024);
	assert_int_equal(moat_buf_reserve(&b, 10), MOAT_OK);
	assert_true(moat_buf_room(&b) >= 10);
	memcpy(moat_buf_tail(&b), "0123456789", 10);
	moat_buf_commit(&b, 4);
	assert_int_equal(moat_buf_used(&b), 4);
	assert_memory_equal(moat_buf_head(&b), "0123", 4);
	/* Committing more than the room is clamped, never past cap. */
	moat_buf_commit(&b, SIZE_MAX);
	assert_int_equal(b.len, b.cap);
	assert_int_equal(moat_buf_room(&b), 0);
	moat_buf_free(&b);
}

/* realloc failing after the front was consumed must leave the content
 * where head() says it is. */
static void test_nomem_keeps_content(void **state)
{
	(void)state;
	struct moat_buf b;
	uint8_t data[300];
	int secret;

	fill(data, sizeof(data), 9);
	for (secret = 0; secret < 2; secret++) {
		moat_buf_init(&b, SIZE_MAX / 4);
		if (secret)
			b.secret = 1;
		assert_int_equal(moat_buf_append(&b, data, 200), MOAT_OK);
		moat_buf_consume(&b, 50);
		assert_int_equal(moat_buf_reserve(&b, (size_t)1 << 60), MOAT_E_NOMEM);
		assert_int_equal(moat_buf_used(&b), 150);
		assert_memory_equal(moat_buf_head(&b), data + 50, 150);
		assert_int_equal(moat_buf_append(&b, data, 10), MOAT_OK);
		assert_memory_equal(moat_buf_head(&b) + 150, data, 10);
		moat_buf_free(&b);
	}
}

static void test_ints(void **state)
{
	(void)state;
	struct moat_buf b;
	struct moat_rd r;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	static const uint8_t want[] = {0xab, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef,
				       0x00, 0xff, 0xff, 0xff, 0xff, 0xff};

	moat_buf_init(&b, 64);
	assert_int_equal(moat_buf_put_u8(&b, 0xab), MOAT_OK);
	assert_int_equal(moat_buf_put_u16(&b, 0x1234), MOAT_OK);
	assert_int_equal(moat_buf_put_u32(&b, 0xdeadbeefu), MOAT_OK);
	assert_int_equal(moat_buf_put_u8(&b, 0), MOAT_OK);
	assert_int_equal(moat_buf_put_u16(&b, 0xffff), MOAT_OK);
	assert_int_equal(moat_buf_put_u16(&b, 0xffff), MOAT_OK);
	assert_int_equal(moat_buf_put_u8(&b, 0xff), MOAT_OK);
	assert_int_equal(moat_buf_used(&b), sizeof(want));
	assert_memory_equal(moat_buf_head(&b), want, sizeof(want));

	moat_rd_init(&r, want, sizeof(want));
	assert_int_equal(moat_rd_u8(&r, &u8), MOAT_OK);
	assert_int_equal(u8, 0xab);
	assert_int_equal(moat_rd_u16(&r, &u16), MOAT_OK);
	assert_int_equal(u16, 0x1234);
	assert_int_equal(moat_rd_u32(&r, &u32), MOAT_OK);
	assert_int_equal(u32, 0xdeadbeefu);
	assert_int_equal(moat_rd_u8(&r, &u8), MOAT_OK);
	assert_int_equal(u8, 0);
	assert_int_equal(moat_rd_u32(&r, &u32), MOAT_OK);
	assert_int_equal(u32, 0xffffffffu);
	assert_int_equal(moat_rd_left(&r), 1);
	moat_buf_free(&b);
}

static void test_short_reads(void **state)
{
	(void)state;
	static const uint8_t p[] = {0x01, 0x02, 0x03, 0x04, 0x05};
	struct moat_rd r;
	uint8_t u8 = 0x77;
	uint16_t u16 = 0x7777;
	uint32_t u32 = 0x77777777;
	const uint8_t *v = NULL;
	uint16_t n = 0x7777;

	moat_rd_init(&r, p, 0);
	assert_int_equal(moat_rd_u8(&r, &u8), MOAT_E_MALFORMED);
	assert_int_equal(moat_rd_u16(&r, &u16), MOAT_E_MALFORMED);
	assert_int_equal(moat_rd_u32(&r, &u32), MOAT_E_MALFORMED);
	assert_int_equal(moat_rd_varint(&r, &u32), MOAT_E_MALFORMED);
	assert_int_equal(moat_rd_str(&r, &v, &n), MOAT_E_MALFORMED);
	assert_int_equal(moat_rd_bytes(&r, 1, &v), MOAT_E_MALFORMED);
	assert_int_equal(moat_rd_bytes(&r, 0, &v), MOAT_OK);
	/* Outputs untouched by failed reads. */
	assert_int_equal(u8, 0x77);
	assert_int_equal(u16, 0x7777);
	assert_int_equal(u32, 0x77777777);
	assert_int_equal(n, 0x7777);

	moat_rd_init(&r, p, 1);
	assert_int_equal(moat_rd_u16(&r, &u16), MOAT_E_MALFORMED);
	moat_rd_init(&r, p, 3);
	assert_int_equal(moat_rd_u32(&r, &u32), MOAT_E_MALFORMED);
	moat_rd_init(&r, p, 5);
	assert_int_equal(moat_rd_bytes(&r, 6, &v), MOAT_E_MALFORMED);
	assert_int_equal(moat_rd_bytes(&r, SIZE_MAX, &v), MOAT_E_MALFORMED);
	assert_int_equal(moat_rd_bytes(&r, 5, &v), MOAT_OK);
	assert_ptr_equal(v, p);
	assert_int_equal(moat_rd_left(&r), 0);
	assert_int_equal(moat_rd_u8(&r, &u8), MOAT_E_MALFORMED);
	/* A varint whose continuation bit runs off the end. */
	{
		static const uint8_t cont[] = {0x80, 0x80, 0x80};

		moat_rd_init(&r, cont, sizeof(cont));
		assert_int_equal(moat_rd_varint(&r, &u32), MOAT_E_MALFORMED);
	}
}

static void test_varint(void **state)
{
	(void)state;
	static const struct {
		uint32_t v;
		size_t n;
		uint8_t enc[4];
	} cases[] = {
	    {0, 1, {0x00}},
	    {1, 1, {0x01}},
	    {127, 1, {0x7f}},
	    {128, 2, {0x80, 0x01}},
	    {16383, 2, {0xff, 0x7f}},
	    {16384, 3, {0x80, 0x80, 0x01}},
	    {2097151, 3, {0xff, 0xff, 0x7f}},
	    {2097152, 4, {0x80, 0x80, 0x80, 0x01}},
	    {268435455, 4, {0xff, 0xff, 0xff, 0x7f}},
	};
	struct moat_buf b;
	struct moat_rd r;
	uint32_t v;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		moat_buf_init(&b, 16);
		assert_int_equal(moat_varint_size(cases[i].v), cases[i].n);
		assert_int_equal(moat_buf_put_varint(&b, cases[i].v), MOAT_OK);
		assert_int_equal(moat_buf_used(&b), cases[i].n);
		assert_memory_equal(moat_buf_head(&b), cases[i].enc, cases[i].n);
		moat_rd_init(&r, moat_buf_head(&b), moat_buf_used(&b));
		assert_int_equal(moat_rd_varint(&r, &v), MOAT_OK);
		assert_int_equal(v, cases[i].v);
		assert_int_equal(moat_rd_left(&r), 0);
		/* Every strict prefix is a short read. */
		moat_rd_init(&r, moat_buf_head(&b), cases[i].n - 1);
		assert_int_equal(moat_rd_varint(&r, &v), MOAT_E_MALFORMED);
		moat_buf_free(&b);
	}
	/* Beyond MQTT's maximum: refused, nothing written. */
	moat_buf_init(&b, 16);
	assert_int_equal(moat_buf_put_varint(&b, 268435456u), MOAT_E_INVAL);
	assert_int_equal(moat_buf_put_varint(&b, UINT32_MAX), MOAT_E_INVAL);
	assert_int_equal(moat_buf_used(&b), 0);
	moat_buf_free(&b);
	/* Five bytes are never a varint, whatever the last one holds. */
	{
		static const uint8_t five[] = {0xff, 0xff, 0xff, 0xff, 0x7f};
		static const uint8_t five0[] = {0x80, 0x80, 0x80, 0x80, 0x00};
		static const uint8_t nonmin[] = {0x80, 0x00, 0x55};

		moat_rd_init(&r, five, sizeof(five));
		assert_int_equal(moat_rd_varint(&r, &v), MOAT_E_MALFORMED);
		moat_rd_init(&r, five0, sizeof(five0));
		assert_int_equal(moat_rd_varint(&r, &v), MOAT_E_MALFORMED);
		/* Non-minimal encodings are accepted (buf.h), and stop at the
		 * first byte without the continuation bit. */
		moat_rd_init(&r, nonmin, sizeof(nonmin));
		assert_int_equal(moat_rd_varint(&r, &v), MOAT_OK);
		assert_int_equal(v, 0);
		assert_int_equal(moat_rd_left(&r), 1);
	}
}

static void test_strings(void **state)
{
	(void)state;
	static uint8_t big[65536 + 2];
	struct moat_buf b;
	struct moat_rd r;
	const uint8_t *p;
	uint16_t n;

	fill(big, sizeof(big), 5);
	moat_buf_init(&b, 70000);
	assert_int_equal(moat_buf_put_str(&b, "hello", 5), MOAT_OK);
	assert_int_equal(moat_buf_put_str(&b, NULL, 0), MOAT_OK);
	assert_int_equal(moat_buf_put_str(&b, big, 65536), MOAT_E_INVAL);
	assert_int_equal(moat_buf_used(&b), 9);
	assert_memory_equal(moat_buf_head(&b), "\x00\x05hello\x00\x00", 9);
	moat_buf_reset(&b);
	assert_int_equal(moat_buf_put_str(&b, big, 65535), MOAT_OK);
	assert_int_equal(moat_buf_used(&b), 65537);

	moat_rd_init(&r, moat_buf_head(&b), moat_buf_used(&b));
	assert_int_equal(moat_rd_str(&r, &p, &n), MOAT_OK);
	assert_int_equal(n, 65535);
	assert_ptr_equal(p, moat_buf_head(&b) + 2);
	assert_memory_equal(p, big, 65535);
	assert_int_equal(moat_rd_left(&r), 0);
	/* Declared length beyond the input. */
	moat_rd_init(&r, moat_buf_head(&b), moat_buf_used(&b) - 1);
	assert_int_equal(moat_rd_str(&r, &p, &n), MOAT_E_MALFORMED);
	moat_rd_init(&r,
		     "\x00\x03"
		     "ab",
		     4);
	assert_int_equal(moat_rd_str(&r, &p, &n), MOAT_E_MALFORMED);
	moat_rd_init(&r, "\x00", 1);
	assert_int_equal(moat_rd_str(&r, &p, &n), MOAT_E_MALFORMED);
	moat_rd_init(&r, "\x00\x00", 2);
	assert_int_equal(moat_rd_str(&r, &p, &n), MOAT_OK);
	assert_int_equal(n, 0);
	/* The string would fit only without its prefix: refused whole. */
	moat_buf_free(&b);
	moat_buf_init(&b, 6);
	assert_int_equal(moat_buf_put_str(&b, "hello", 5), MOAT_E_LIMIT);
	assert_int_equal(moat_buf_used(&b), 0);
	moat_buf_free(&b);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* Secret buffers: growth moves the bytes to a fresh block (the old one is
 * wiped and freed), reset wipes in place, free wipes and frees. ASan checks
 * every step touches only live memory and nothing leaks. */
static void test_secret(void **state)
{
	(void)state;
	struct moat_buf b;
	uint8_t key[1000];
	size_t i;

	fill(key, sizeof(key), 0x42);
	moat_buf_init(&b, 1 << 20);
	b.secret = 1;
	for (i = 0; i < 10; i++) {
		assert_int_equal(moat_buf_append(&b, key, sizeof(key)), MOAT_OK);
		moat_buf_consume(&b, 100);
	}
	assert_int_equal(b.secret, 1);
	assert_int_equal(moat_buf_used(&b), 9000);
	/* Ten keys appended, the first thousand bytes consumed. */
	for (i = 0; i < 9; i++)
		assert_memory_equal(moat_buf_head(&b) + i * 1000, key, 1000);
	moat_buf_reset(&b);
	assert_non_null(b.data);
	assert_true(all_zero(b.data, b.cap));
	assert_int_equal(moat_buf_append(&b, key, 10), MOAT_OK);
	moat_buf_shrink(&b); /* not empty: kept */
	assert_non_null(b.data);
	moat_buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.cap, 0);
}

static void test_shrink(void **state)
{
	(void)state;
	struct moat_buf b;

	moat_buf_init(&b, 4096);
	moat_buf_shrink(&b); /* never allocated */
	assert_null(b.data);
	assert_int_equal(moat_buf_append(&b, "abc", 3), MOAT_OK);
	moat_buf_shrink(&b);
	assert_non_null(b.data);
	assert_int_equal(moat_buf_used(&b), 3);
	moat_buf_consume(&b, 3);
	moat_buf_shrink(&b);
	assert_null(b.data);
	assert_int_equal(b.cap, 0);
	assert_int_equal(b.max, 4096);
	/* Usable again after shrinking. */
	assert_int_equal(moat_buf_append(&b, "xyz", 3), MOAT_OK);
	assert_memory_equal(moat_buf_head(&b), "xyz", 3);
	moat_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_free),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_append_consume_compact),
	    cmocka_unit_test(test_commit),
	    cmocka_unit_test(test_nomem_keeps_content),
	    cmocka_unit_test(test_ints),
	    cmocka_unit_test(test_short_reads),
	    cmocka_unit_test(test_varint),
	    cmocka_unit_test(test_strings),
	    cmocka_unit_test(test_secret),
	    cmocka_unit_test(test_shrink),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
