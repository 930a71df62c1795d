/*
 * TOTP (RFC 6238) on top of liboath, plus what liboath leaves to us: the
 * base32 and otpauth:// forms of a secret, and replay protection.
 *
 * Verification computes the code of every step in the window and compares
 * each in constant time, choosing the matching step without branching, so
 * the time taken says nothing about which step (if any) matched. A code is
 * accepted at most once: its step must be newer than the last one accepted.
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <liboath/oath.h>
#include <sodium.h>

#include "auth/totp.h"

static pthread_once_t oath_once = PTHREAD_ONCE_INIT;
static int oath_init_rc = -1;

static void oath_init_once(void)
{
	oath_init_rc = oath_init();
}

static moat_err totp_init(void)
{
	pthread_once(&oath_once, oath_init_once);
	return oath_init_rc == OATH_OK ? MOAT_OK : MOAT_E_CRYPTO;
}

static bool secret_ok(const uint8_t *secret, size_t len)
{
	return secret != NULL && len >= MOAT_TOTP_SECRET_MIN && len <= MOAT_TOTP_SECRET_MAX;
}

/* The code of time step `step` (>= 0, not near overflow: callers check). */
static moat_err totp_at(const uint8_t *secret, size_t len, int64_t step,
			char out[MOAT_TOTP_DIGITS + 1])
{
	time_t t = (time_t)(step * (int64_t)MOAT_TOTP_STEP_S);

	if (oath_totp_generate2((const char *)secret, len, t, MOAT_TOTP_STEP_S, 0, MOAT_TOTP_DIGITS,
				0, out) != OATH_OK)
		return MOAT_E_CRYPTO;
	return MOAT_OK;
}

moat_err moat_totp_secret_new(uint8_t secret[MOAT_TOTP_SECRET_LEN])
{
	if (secret == NULL)
		return MOAT_E_INVAL;
	if (sodium_init() < 0)
		return MOAT_E_CRYPTO;
	randombytes_buf(secret, MOAT_TOTP_SECRET_LEN);
	return MOAT_OK;
}

/* 0..31 to "A".."Z","2".."7" without a table or a branch: the values are
 * secret. */
static char base32_char(uint32_t v)
{
	uint32_t over = (uint32_t)0 - ((25u - v) >> 31); /* all ones if v > 25 */

	return (char)('A' + v - (over & ('A' + 26u - '2')));
}

moat_err moat_totp_base32(const uint8_t *secret, size_t len, char *out, size_t outlen)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t i, o = 0;

	if (out == NULL || (secret == NULL && len > 0))
		return MOAT_E_INVAL;
	if (len > (SIZE_MAX - 5) / 8 || outlen < (len * 8 + 4) / 5 + 1)
		return MOAT_E_LIMIT;
	for (i = 0; i < len; i++) {
		acc = ((acc << 8) | secret[i]) & 0x1fffu;
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			out[o++] = base32_char((acc >> bits) & 31u);
		}
	}
	if (bits > 0)
		out[o++] = base32_char((acc << (5 - bits)) & 31u);
	out[o] = '\0';
	return MOAT_OK;
}

/* A bounded string builder: on overflow it stops writing and remembers. */
struct sb {
	char *p;
	size_t cap, len;
	bool over;
};

static void sb_putc(struct sb *b, char c)
{
	if (b->len + 1 >= b->cap) {
		b->over = true;
		return;
	}
	b->p[b->len++] = c;
	b->p[b->len] = '\0';
}

static void sb_puts(struct sb *b, const char *s)
{
	while (*s != '\0')
		sb_putc(b, *s++);
}

static bool is_unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static void sb_pct(struct sb *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (is_unreserved(c)) {
			sb_putc(b, (char)c);
		} else {
			sb_putc(b, '%');
			sb_putc(b, hex[c >> 4]);
			sb_putc(b, hex[c & 15u]);
		}
	}
}

/* The label is "issuer:account", so neither may hold a colon (Key Uri
 * Format); control characters have no business in a label either. */
static bool label_ok(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == ':' || c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

moat_err moat_totp_uri(const uint8_t *secret, size_t len, const char *issuer, const char *account,
		       char *out, size_t outlen)
{
	char b32[MOAT_TOTP_BASE32_MAX + 1];
	struct sb b = {out, outlen, 0, false};
	moat_err rc = MOAT_E_INVAL;

	if (!secret_ok(secret, len) || !label_ok(issuer) || !label_ok(account) || out == NULL)
		goto out;
	rc = MOAT_E_LIMIT;
	if (outlen == 0)
		goto out;
	out[0] = '\0';
	rc = moat_totp_base32(secret, len, b32, sizeof(b32));
	if (rc != MOAT_OK)
		goto out;
	sb_puts(&b, "otpauth://totp/");
	sb_pct(&b, issuer);
	sb_putc(&b, ':');
	sb_pct(&b, account);
	sb_puts(&b, "?secret=");
	sb_puts(&b, b32);
	sb_puts(&b, "&issuer=");
	sb_pct(&b, issuer);
	sb_puts(&b, "&algorithm=SHA1&digits=6&period=30");
	rc = MOAT_OK;
	if (b.over) {
		/* Do not leave part of the secret behind in the caller's buffer. */
		sodium_memzero(out, outlen);
		rc = MOAT_E_LIMIT;
	}
out:
	sodium_memzero(b32, sizeof(b32));
	return rc;
}

_Static_assert(MOAT_TOTP_DIGITS == 6u, "the URI says digits=6");
_Static_assert(MOAT_TOTP_STEP_S == 30u, "the URI says period=30");

moat_err moat_totp_code(const uint8_t *secret, size_t len, int64_t now_s,
			char out[MOAT_TOTP_DIGITS + 1])
{
	char tmp[MOAT_TOTP_DIGITS + 1];
	moat_err rc = MOAT_E_INVAL;

	if (!secret_ok(secret, len) || out == NULL || now_s < 0)
		goto out;
	rc = totp_init();
	if (rc != MOAT_OK)
		goto out;
	rc = totp_at(secret, len, now_s / (int64_t)MOAT_TOTP_STEP_S, tmp);
	if (rc != MOAT_OK)
		goto out;
	memcpy(out, tmp, sizeof(tmp));
out:
	sodium_memzero(tmp, sizeof(tmp));
	return rc;
}

static bool code_well_formed(const char *code)
{
	size_t i;

	if (code == NULL || strnlen(code, MOAT_TOTP_DIGITS + 1) != MOAT_TOTP_DIGITS)
		return false;
	for (i = 0; i < MOAT_TOTP_DIGITS; i++) {
		if (code[i] < '0' || code[i] > '9')
			return false;
	}
	return true;
}

moat_err moat_totp_verify(const uint8_t *secret, size_t len, const char *code, int64_t now_s,
			  int64_t last_step, int64_t *matched_step)
{
	char want[MOAT_TOTP_DIGITS + 1];
	uint64_t found = 0, best = 0, ok, mask;
	int64_t cur, step;
	moat_err rc = MOAT_E_INVAL;

	memset(want, 0, sizeof(want));
	if (!secret_ok(secret, len) || !code_well_formed(code) || matched_step == NULL ||
	    now_s < 0 || now_s > INT64_MAX - (int64_t)(MOAT_TOTP_WINDOW + 1) * MOAT_TOTP_STEP_S)
		goto out;
	rc = totp_init();
	if (rc != MOAT_OK)
		goto out;
	cur = now_s / (int64_t)MOAT_TOTP_STEP_S;
	/* Ascending, so the newest matching step wins: storing it as
	 * last_step refuses every older code too. */
	for (step = cur - (int64_t)MOAT_TOTP_WINDOW; step <= cur + (int64_t)MOAT_TOTP_WINDOW;
	     step++) {
		if (step < 0)
			continue;
		rc = totp_at(secret, len, step, want);
		if (rc != MOAT_OK)
			goto out;
		ok = (uint64_t)(sodium_memcmp(want, code, MOAT_TOTP_DIGITS) == 0) &
		     (uint64_t)(step > last_step);
		mask = (uint64_t)0 - ok;
		best = (best & ~mask) | ((uint64_t)step & mask);
		found |= ok;
	}
	rc = MOAT_E_DENIED;
	if (found == 0)
		goto out;
	*matched_step = (int64_t)best;
	rc = MOAT_OK;
out:
	sodium_memzero(want, sizeof(want));
	return rc;
}
