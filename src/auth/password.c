/*
 * Operator passwords: Argon2id hashes in libsodium's encoded string form (the
 * algorithm, cost and salt travel with the hash, so the cost can be raised
 * later and old hashes upgraded at login), the dummy verification that keeps
 * unknown users from being told apart by timing, and the password policy.
 *
 * The policy follows NIST SP 800-63B: a minimum length and a check against
 * known-common passwords, no composition rules. Length is counted in code
 * points so a passphrase in any script counts what the user typed.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth/password.h"

_Static_assert(MOAT_PASSWORD_HASH_MAX == crypto_pwhash_STRBYTES, "hash string size is libsodium's");
_Static_assert(MOAT_PASSWORD_OPSLIMIT >= crypto_pwhash_argon2id_OPSLIMIT_MIN &&
		   MOAT_PASSWORD_MEMLIMIT >= crypto_pwhash_argon2id_MEMLIMIT_MIN,
	       "Argon2id cost within libsodium's bounds");

moat_err moat_password_hash(const char *pw, size_t len, char out[MOAT_PASSWORD_HASH_MAX])
{
	char tmp[MOAT_PASSWORD_HASH_MAX];
	moat_err rc = MOAT_E_INVAL;

	memset(tmp, 0, sizeof(tmp));
	if (pw == NULL || out == NULL)
		goto out;
	rc = MOAT_E_LIMIT;
	if (len > MOAT_PASSWORD_MAX_BYTES)
		goto out;
	rc = MOAT_E_CRYPTO;
	if (sodium_init() < 0)
		goto out;
	/* With valid parameters the only way Argon2 fails is allocating its
	 * memory. */
	rc = MOAT_E_NOMEM;
	if (crypto_pwhash_str_alg(tmp, pw, len, MOAT_PASSWORD_OPSLIMIT, MOAT_PASSWORD_MEMLIMIT,
				  crypto_pwhash_ALG_ARGON2ID13) != 0)
		goto out;
	memcpy(out, tmp, sizeof(tmp));
	rc = MOAT_OK;
out:
	sodium_memzero(tmp, sizeof(tmp));
	return rc;
}

/* A hash string must end within the buffer libsodium expects: a stored
 * value cut short or run long must not be read past its end. */
static bool hash_well_formed(const char *hash)
{
	return hash != NULL && strnlen(hash, MOAT_PASSWORD_HASH_MAX) < MOAT_PASSWORD_HASH_MAX;
}

bool moat_password_verify(const char *hash, const char *pw, size_t len)
{
	if (!hash_well_formed(hash) || pw == NULL || len > MOAT_PASSWORD_MAX_BYTES)
		return false;
	if (sodium_init() < 0)
		return false;
	return crypto_pwhash_str_verify(hash, pw, len) == 0;
}

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[MOAT_PASSWORD_HASH_MAX];
static bool dummy_ok;

/* The fixed hash is of a random password nobody knows, so the dummy
 * verification can never succeed, even for a caller that uses its result. */
static void dummy_init(void)
{
	uint8_t pw[32];

	randombytes_buf(pw, sizeof(pw));
	dummy_ok = moat_password_hash((const char *)pw, sizeof(pw), dummy_hash) == MOAT_OK;
	sodium_memzero(pw, sizeof(pw));
}

void moat_password_dummy_verify(const char *pw, size_t len)
{
	char scratch[MOAT_PASSWORD_HASH_MAX];

	if (sodium_init() < 0)
		return;
	pthread_once(&dummy_once, dummy_init);
	if (dummy_ok) {
		(void)moat_password_verify(dummy_hash, pw, len);
		return;
	}
	/* The fixed hash could not be made (out of memory): hashing costs the
	 * same as verifying, so spend the time that way. */
	if (pw != NULL && moat_password_hash(pw, len, scratch) == MOAT_OK)
		sodium_memzero(scratch, sizeof(scratch));
}

bool moat_password_needs_rehash(const char *hash)
{
	if (!hash_well_formed(hash))
		return true;
	return crypto_pwhash_str_needs_rehash(hash, MOAT_PASSWORD_OPSLIMIT,
					      MOAT_PASSWORD_MEMLIMIT) != 0;
}

struct needle {
	const char *p;
	size_t n;
};

/* Byte order, as the generator sorted the list; a needle with embedded NUL
 * bytes still compares consistently. */
static int common_cmp(const void *key, const void *elem)
{
	const struct needle *nd = key;
	const char *s = *(const char *const *)elem;
	size_t sn = strlen(s);
	int c = memcmp(nd->p, s, nd->n < sn ? nd->n : sn);

	if (c != 0)
		return c;
	return (nd->n > sn) - (nd->n < sn);
}

bool moat_password_is_common(const char *lower, size_t len)
{
	struct needle nd = {lower, len};

	if (lower == NULL || len == 0 || len > MOAT_PASSWORD_MAX_BYTES)
		return false;
	return bsearch(&nd, moat_common_passwords, moat_common_passwords_len,
		       sizeof(moat_common_passwords[0]), common_cmp) != NULL;
}

/*
 * Decode one code point of strict UTF-8 at s[*i] (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). Advances *i on success.
 */
static bool utf8_next(const uint8_t *s, size_t len, size_t *i, uint32_t *cp)
{
	size_t p = *i, n, k;
	uint8_t b = s[p];
	uint8_t lo = 0x80, hi = 0xbf;
	uint32_t v;

	if (b < 0x80) {
		*cp = b;
		*i = p + 1;
		return true;
	}
	if (b >= 0xc2 && b <= 0xdf) {
		n = 1;
		v = b & 0x1fu;
	} else if (b >= 0xe0 && b <= 0xef) {
		n = 2;
		v = b & 0x0fu;
		if (b == 0xe0)
			lo = 0xa0; /* overlong */
		else if (b == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (b >= 0xf0 && b <= 0xf4) {
		n = 3;
		v = b & 0x07u;
		if (b == 0xf0)
			lo = 0x90; /* overlong */
		else if (b == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return false;
	}
	if (len - p - 1 < n)
		return false;
	for (k = 1; k <= n; k++) {
		uint8_t c = s[p + k];

		if (c < lo || c > hi)
			return false;
		lo = 0x80;
		hi = 0xbf;
		v = (v << 6) | (c & 0x3fu);
	}
	*cp = v;
	*i = p + n + 1;
	return true;
}

/* C0, DEL and C1 controls: invisible, and some terminals act on them. */
static bool is_control(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f);
}

static bool is_ascii_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool contains(const char *hay, size_t hn, const char *nd, size_t nn)
{
	size_t i;

	if (nn == 0 || nn > hn)
		return false;
	for (i = 0; i + nn <= hn; i++) {
		if (memcmp(hay + i, nd, nn) == 0)
			return true;
	}
	return false;
}

__attribute__((format(printf, 3, 4))) static moat_err refuse(char *why, size_t whylen,
							     const char *fmt, ...)
{
	va_list ap;

	if (why != NULL && whylen > 0) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return MOAT_E_INVAL;
}

moat_err moat_password_check_policy(const char *pw, size_t len, const char *username, char *why,
				    size_t whylen)
{
	char lower[MOAT_PASSWORD_MAX_BYTES];
	char user[MOAT_PASSWORD_MAX_BYTES];
	size_t i, chars = 0, ulen, start, end;
	uint32_t cp;
	bool found;
	moat_err rc;

	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (pw == NULL)
		return refuse(why, whylen, "No password was given.");
	if (len > MOAT_PASSWORD_MAX_BYTES)
		return refuse(why, whylen, "The password must be at most %u bytes long.",
			      MOAT_PASSWORD_MAX_BYTES);
	for (i = 0; i < len; chars++) {
		if (!utf8_next((const uint8_t *)pw, len, &i, &cp))
			return refuse(why, whylen, "The password is not valid UTF-8 text.");
		if (is_control(cp))
			return refuse(why, whylen,
				      "The password must not contain control characters.");
	}
	if (chars < MOAT_PASSWORD_MIN_CHARS)
		return refuse(why, whylen, "The password must be at least %u characters long.",
			      MOAT_PASSWORD_MIN_CHARS);

	for (i = 0; i < len; i++)
		lower[i] = ascii_lower(pw[i]);
	rc = MOAT_OK;
	ulen = username != NULL ? strnlen(username, sizeof(user) + 1) : 0;
	if (ulen > 0 && ulen <= len) {
		for (i = 0; i < ulen; i++)
			user[i] = ascii_lower(username[i]);
		if (ulen >= MOAT_PASSWORD_USERNAME_MATCH_MIN)
			found = contains(lower, len, user, ulen);
		else
			found = ulen == len && memcmp(lower, user, len) == 0;
		if (found)
			rc = refuse(why, whylen, "The password must not contain the username.");
		sodium_memzero(user, sizeof(user));
	}
	if (rc != MOAT_OK)
		goto out;

	/* "Password123!" is "password" with decoration: strip leading and
	 * trailing non-letters and look the core up too, when the core is at
	 * least half the password (a common word inside a long passphrase is
	 * fine, and so is one drowned in random digits). */
	start = 0;
	end = len;
	while (start < end && (unsigned char)lower[start] < 0x80 && !is_ascii_alpha(lower[start]))
		start++;
	while (end > start && (unsigned char)lower[end - 1] < 0x80 &&
	       !is_ascii_alpha(lower[end - 1]))
		end--;
	if (moat_password_is_common(lower, len) ||
	    (2 * (end - start) >= len && moat_password_is_common(lower + start, end - start)))
		rc = refuse(why, whylen,
			    "The password is too common; a few unrelated words make a good one.");
out:
	sodium_memzero(lower, sizeof(lower));
	return rc;
}
