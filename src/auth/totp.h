/*
 * Time-based one-time passwords (RFC 6238) as every authenticator app does
 * them: HMAC-SHA-1, 30 s steps, 6 digits (liboath). Secrets are raw bytes;
 * apps receive them base32-encoded inside an otpauth:// URI.
 *
 * Pure functions; the caller passes the time. Thread-safe.
 */
#ifndef MOAT_AUTH_TOTP_H
#define MOAT_AUTH_TOTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/limits.h"

/* Characters in the base32 form of a MOAT_TOTP_SECRET_MAX-byte secret
 * (a buffer needs one more for the NUL). */
#define MOAT_TOTP_BASE32_MAX ((MOAT_TOTP_SECRET_MAX * 8u + 4u) / 5u)

/*
 * Fill secret with MOAT_TOTP_SECRET_LEN random bytes.
 * Errors: MOAT_E_INVAL (NULL), MOAT_E_CRYPTO (libsodium could not initialise).
 */
moat_err moat_totp_secret_new(uint8_t secret[MOAT_TOTP_SECRET_LEN]);

/*
 * RFC 4648 base32 of len bytes at secret: uppercase, no padding,
 * NUL-terminated in out. Needs outlen >= ceil(len * 8 / 5) + 1.
 * Errors: MOAT_E_INVAL (NULL with len > 0, or out NULL), MOAT_E_LIMIT (out
 * too small). Constant-time in the secret's bytes.
 */
moat_err moat_totp_base32(const uint8_t *secret, size_t len, char *out, size_t outlen);

/*
 * The provisioning URI an authenticator app reads from a QR code:
 * otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=SHA1
 * &digits=6&period=30, with issuer and account percent-encoded (RFC 3986
 * unreserved characters stay as they are).
 * Errors: MOAT_E_INVAL (secret length outside [MOAT_TOTP_SECRET_MIN,
 * MOAT_TOTP_SECRET_MAX], empty issuer or account, or one containing ':' or
 * a control character), MOAT_E_LIMIT (out too small; out is wiped).
 */
moat_err moat_totp_uri(const uint8_t *secret, size_t len, const char *issuer, const char *account,
		       char *out, size_t outlen);

/*
 * Check code (exactly 6 ASCII digits, NUL-terminated) against secret at
 * time now_s (Unix seconds), accepting the steps within MOAT_TOTP_WINDOW of
 * now. Steps at or before last_step (the step of the last code accepted for
 * this secret; -1 if none) are refused so a code cannot be replayed. On
 * success *matched_step is the step to store as the new last_step.
 * Comparison is constant-time; all window steps are always computed.
 * Errors: MOAT_E_INVAL (secret length out of range, code not 6 digits,
 * now_s negative, NULL), MOAT_E_DENIED (wrong or replayed code),
 * MOAT_E_CRYPTO (liboath failed).
 */
moat_err moat_totp_verify(const uint8_t *secret, size_t len, const char *code, int64_t now_s,
			  int64_t last_step, int64_t *matched_step);

/*
 * The 6-digit code for secret at now_s, NUL-terminated (for tests and
 * tools). Errors: MOAT_E_INVAL (secret length out of range, now_s negative,
 * NULL), MOAT_E_CRYPTO (liboath failed).
 */
moat_err moat_totp_code(const uint8_t *secret, size_t len, int64_t now_s,
			char out[MOAT_TOTP_DIGITS + 1]);

#endif
