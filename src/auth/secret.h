/*
 * Opaque random secrets for the operator plane: bearer tokens (API and
 * setup tokens), their stored hashes, and single-use recovery codes.
 *
 * Tokens and codes are never stored: only their SHA-256 is. A token has
 * 256 random bits, so a fast unsalted hash is enough (nobody can guess the
 * preimage); recovery codes are checked behind the login throttle.
 *
 * Pure functions; randomness from libsodium. Thread-safe.
 */
#ifndef MOAT_AUTH_SECRET_H
#define MOAT_AUTH_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/limits.h"

/* Characters of the base64url (unpadded) part of a token; a buffer needs
 * strlen(prefix) + MOAT_SECRET_TOKEN_B64_LEN + 1 bytes. */
#define MOAT_SECRET_TOKEN_B64_LEN ((MOAT_SECRET_TOKEN_BYTES * 4u + 2u) / 3u)
/* Bytes of a SHA-256 digest, as moat_secret_hash writes it. */
#define MOAT_SECRET_HASH_LEN 32u

/*
 * A new bearer token: prefix (e.g. "moat_at_" for API tokens, "moat_st_"
 * for setup tokens; may be "") followed by MOAT_SECRET_TOKEN_BYTES random
 * bytes in base64url without padding, NUL-terminated in out.
 * Errors: MOAT_E_INVAL (NULL, or prefix holding anything but ASCII letters,
 * digits, '_' and '-'), MOAT_E_LIMIT (out too small), MOAT_E_CRYPTO
 * (libsodium could not initialise).
 */
moat_err moat_secret_token(const char *prefix, char *out, size_t outlen);

/*
 * SHA-256 of the len bytes at s (a token, or a normalised recovery code):
 * the form in which they are stored and looked up. s may be NULL only if
 * len is 0. Cannot fail.
 */
void moat_secret_hash(const char *s, size_t len, uint8_t out[MOAT_SECRET_HASH_LEN]);

/*
 * Lowercase hex of len bytes at p, NUL-terminated in out (constant-time).
 * Errors: MOAT_E_INVAL (NULL), MOAT_E_LIMIT (outlen < 2 * len + 1).
 */
moat_err moat_secret_hex(const uint8_t *p, size_t len, char *out, size_t outlen);

/*
 * n new recovery codes "xxxxx-xxxxx" (NUL-terminated) from the alphabet
 * 23456789abcdefghjkmnpqrstuvwxyz (no 0/o, 1/l/i to misread), each
 * character uniformly random (~49.5 bits per code).
 * Errors: MOAT_E_INVAL (codes NULL or n == 0), MOAT_E_CRYPTO (libsodium
 * could not initialise).
 */
moat_err moat_recovery_codes(char codes[][MOAT_RECOVERY_CODE_LEN + 1], size_t n);

/*
 * The form of a recovery code that is hashed for storage and lookup: ASCII
 * letters lowercased, spaces, tabs and dashes removed, so "ABCDE-FGHIJ",
 * "abcde fghij" and "abcdefghij" are the same code. NUL-terminated in out.
 * Errors: MOAT_E_INVAL (NULL), MOAT_E_LIMIT (the result does not fit; out
 * is then "" if outlen > 0 -- never a truncated code that could match a
 * shorter one).
 */
moat_err moat_recovery_normalise(const char *in, char *out, size_t outlen);

#endif
