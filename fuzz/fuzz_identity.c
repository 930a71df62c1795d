/*
 * libFuzzer target for device identity extraction (tls.c). The input is a
 * DER certificate; when d2i_X509 accepts it, moat_tls_cert_identity runs
 * with a normal, a tiny, an exact-fit, a one-short and no output buffer.
 * Every buffer is its own heap block of exactly that size, so ASan reports
 * any write past it. On MOAT_OK the id must be NUL-terminated inside the
 * buffer and a valid device id; the buffer size alone must decide between
 * success and MOAT_E_LIMIT; no OpenSSL error may be left queued. The raw input also goes through
 * moat_device_id_valid, whose answer must equal an independent re-statement of the rule in tls.h.
 * Any broken property aborts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "core/limits.h"
#include "tls/tls.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

/* Real device certificates are well under 2 KiB; larger inputs only slow
 * the fuzzer down inside OpenSSL's ASN.1 decoder, not in our code. */
#define FUZZ_MAX_INPUT (16u * 1024u)

/* Room for the longest id and its NUL. */
#define ID_BUF_NORMAL (MOAT_DEVICE_ID_MAX + 1u)

/* Smaller than most ids in the corpus, large enough for a short one. */
#define ID_BUF_TINY 4u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* tls.h's rule restated without sharing code with tls.c: 1-64 bytes of
 * [a-z0-9._-], the first a letter or digit. */
static bool ref_id_valid(const char *s, size_t n)
{
	size_t i;

	if (n < 1 || n > MOAT_DEVICE_ID_MAX)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (memchr("abcdefghijklmnopqrstuvwxyz0123456789", c, 36) != NULL)
			continue;
		if (i > 0 && (c == '.' || c == '_' || c == '-'))
			continue;
		return false;
	}
	return true;
}

/*
 * Run moat_tls_cert_identity into a fresh heap buffer of exactly cap bytes
 * (cap 0: a NULL buffer). On MOAT_OK check the id and copy it to out (which
 * holds ID_BUF_NORMAL bytes).
 */
static moat_err identity_into(X509 *cert, size_t cap, char *out)
{
	char *buf = NULL;
	moat_err rc;

	if (cap > 0) {
		buf = malloc(cap);
		CHECK(buf != NULL);
		/* No NUL anywhere until the callee writes one. */
		memset(buf, 'Z', cap);
	}
	ERR_clear_error();
	rc = moat_tls_cert_identity(cert, buf, cap);
	/* tls.c drains what it provokes: a stale error would be blamed on the
	 * next, unrelated, OpenSSL call of this thread. */
	CHECK(ERR_peek_error() == 0);
	if (rc == MOAT_OK) {
		const char *nul;
		size_t n;

		CHECK(buf != NULL);
		nul = memchr(buf, '\0', cap);
		CHECK(nul != NULL);
		n = (size_t)(nul - buf);
		CHECK(n < cap && n < ID_BUF_NORMAL);
		CHECK(moat_device_id_valid(buf, n));
		CHECK(ref_id_valid(buf, n));
		memcpy(out, buf, n + 1);
	}
	free(buf);
	return rc;
}

static void check_cert(X509 *cert)
{
	char id[ID_BUF_NORMAL];
	char other[ID_BUF_NORMAL];
	moat_err rc, rc2;
	size_t n;

	rc = identity_into(cert, ID_BUF_NORMAL, id);
	/* The documented results; MOAT_E_LIMIT cannot happen with room for 64. */
	CHECK(rc == MOAT_OK || rc == MOAT_E_DENIED || rc == MOAT_E_NOTFOUND);

	/* Deterministic: the same certificate names the same device. */
	rc2 = identity_into(cert, ID_BUF_NORMAL, other);
	CHECK(rc2 == rc);
	if (rc == MOAT_OK)
		CHECK(strcmp(id, other) == 0);

	/* A NULL buffer is never written and never succeeds. */
	CHECK(identity_into(cert, 0, other) != MOAT_OK);

	rc2 = identity_into(cert, ID_BUF_TINY, other);
	if (rc != MOAT_OK) {
		/* A smaller buffer cannot turn a refusal into an identity. */
		CHECK(rc2 != MOAT_OK);
		return;
	}
	n = strlen(id);
	if (n < ID_BUF_TINY) {
		CHECK(rc2 == MOAT_OK && strcmp(id, other) == 0);
	} else {
		CHECK(rc2 == MOAT_E_LIMIT);
	}

	/* Off-by-one edges: exactly n + 1 bytes fit, n do not. */
	rc2 = identity_into(cert, n + 1, other);
	CHECK(rc2 == MOAT_OK && strcmp(id, other) == 0);
	CHECK(identity_into(cert, n, other) == MOAT_E_LIMIT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	X509 *cert;

	if (size > FUZZ_MAX_INPUT)
		return 0;

	/* libFuzzer's buffer is exactly size bytes, so ASan catches a read
	 * past n; the bytes need not be a C string. */
	CHECK(moat_device_id_valid((const char *)data, size) ==
	      ref_id_valid((const char *)data, size));

	CHECK(!moat_device_id_valid(NULL, size));

	cert = d2i_X509(NULL, &p, (long)size);
	if (cert != NULL) {
		/* d2i never reads past what it was given. */
		CHECK(p > data && p <= data + size);
		check_cert(cert);
		X509_free(cert);
	} else {
		char id[ID_BUF_NORMAL];

		/* tls.h: no certificate is MOAT_E_NOTFOUND. */
		CHECK(moat_tls_cert_identity(NULL, id, sizeof(id)) == MOAT_E_NOTFOUND);
	}
	ERR_clear_error();
	return 0;
}
