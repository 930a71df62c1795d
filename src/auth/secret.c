/*
 * Random bearer tokens, recovery codes and their stored hashes. All
 * randomness is libsodium's (the kernel CSPRNG); encodings that touch secret
 * bytes are libsodium's constant-time ones.
 */
#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "auth/secret.h"

#define TOKEN_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING

_Static_assert(sodium_base64_ENCODED_LEN(MOAT_SECRET_TOKEN_BYTES, TOKEN_VARIANT) ==
		   MOAT_SECRET_TOKEN_B64_LEN + 1u,
	       "token length as secret.h promises");
_Static_assert(MOAT_SECRET_HASH_LEN == crypto_hash_sha256_BYTES, "SHA-256 digest size");
_Static_assert(MOAT_RECOVERY_CODE_LEN == 11u, "recovery code is xxxxx-xxxxx");

static bool prefix_ok(const char *p)
{
	for (; *p != '\0'; p++) {
		char c = *p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

moat_err moat_secret_token(const char *prefix, char *out, size_t outlen)
{
	uint8_t raw[MOAT_SECRET_TOKEN_BYTES];
	size_t plen;
	moat_err rc = MOAT_E_INVAL;

	memset(raw, 0, sizeof(raw));
	if (prefix == NULL || out == NULL || !prefix_ok(prefix))
		goto out;
	plen = strlen(prefix);
	rc = MOAT_E_LIMIT;
	if (outlen < MOAT_SECRET_TOKEN_B64_LEN + 1u ||
	    outlen - MOAT_SECRET_TOKEN_B64_LEN - 1u < plen)
		goto out;
	rc = MOAT_E_CRYPTO;
	if (sodium_init() < 0)
		goto out;
	randombytes_buf(raw, sizeof(raw));
	memcpy(out, prefix, plen);
	sodium_bin2base64(out + plen, outlen - plen, raw, sizeof(raw), TOKEN_VARIANT);
	rc = MOAT_OK;
out:
	sodium_memzero(raw, sizeof(raw));
	return rc;
}

void moat_secret_hash(const char *s, size_t len, uint8_t out[MOAT_SECRET_HASH_LEN])
{
	static const char empty[1] = "";

	/* A NULL with a length is a caller bug; hashing "" instead can only
	 * fail to match, never match something it should not. */
	if (s == NULL) {
		s = empty;
		len = 0;
	}
	crypto_hash_sha256(out, (const unsigned char *)s, len);
}

moat_err moat_secret_hex(const uint8_t *p, size_t len, char *out, size_t outlen)
{
	if (out == NULL || (p == NULL && len > 0))
		return MOAT_E_INVAL;
	if (len > (SIZE_MAX - 1) / 2 || outlen < 2 * len + 1)
		return MOAT_E_LIMIT;
	sodium_bin2hex(out, outlen, p, len);
	return MOAT_OK;
}

/* 31 characters: 8 digits and 23 letters, none that reads as another
 * (0/o, 1/l/i). Aligned so the whole table sits in one cache line and a
 * lookup's timing does not depend on the secret index. */
static _Alignas(32) const char recovery_alphabet[] = "23456789abcdefghjkmnpqrstuvwxyz";

moat_err moat_recovery_codes(char codes[][MOAT_RECOVERY_CODE_LEN + 1], size_t n)
{
	size_t i, j;

	if (codes == NULL || n == 0)
		return MOAT_E_INVAL;
	if (sodium_init() < 0)
		return MOAT_E_CRYPTO;
	for (i = 0; i < n; i++) {
		for (j = 0; j < MOAT_RECOVERY_CODE_LEN; j++) {
			/* randombytes_uniform rejects the biased tail, so
			 * every character is equally likely. */
			codes[i][j] = j == MOAT_RECOVERY_CODE_LEN / 2
					  ? '-'
					  : recovery_alphabet[randombytes_uniform(
						(uint32_t)(sizeof(recovery_alphabet) - 1))];
		}
		codes[i][MOAT_RECOVERY_CODE_LEN] = '\0';
	}
	return MOAT_OK;
}

moat_err moat_recovery_normalise(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	if (in == NULL || out == NULL)
		return MOAT_E_INVAL;
	if (outlen == 0)
		return MOAT_E_LIMIT;
	for (; *in != '\0'; in++) {
		char c = *in;

		if (c == ' ' || c == '\t' || c == '-')
			continue;
		if (o + 1 >= outlen) {
			sodium_memzero(out, outlen);
			return MOAT_E_LIMIT;
		}
		out[o++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	out[o] = '\0';
	return MOAT_OK;
}
