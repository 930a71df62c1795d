/*
 * Tests for src/pki/csr.c: EST body decoding, DER parsing and the issuing
 * policy for certificate requests. Keys and requests are made here with
 * OpenSSL; every refusal is checked for its status and for the sentence a
 * device maker would read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/limits.h"
#include "pki/csr.h"

#define ID "dev1"
#define URI_ID "URI:moat:device:dev1"

enum key_kind { K_P256, K_P384, K_ED25519, K_RSA3072, K_RSA2048, K_P224, K_K256, K_ED448, K_N };

static EVP_PKEY *keys[K_N];

static int setup(void **state)
{
	(void)state;
	keys[K_P256] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	keys[K_P384] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	keys[K_ED25519] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	keys[K_RSA3072] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
	keys[K_RSA2048] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	keys[K_P224] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-224");
	keys[K_K256] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
	keys[K_ED448] = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
	for (int i = 0; i < K_N; i++) {
		if (keys[i] == NULL) {
			fprintf(stderr, "setup: key %d\n", i);
			return -1;
		}
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < K_N; i++)
		EVP_PKEY_free(keys[i]);
	return 0;
}

static const EVP_MD *md_for(EVP_PKEY *key)
{
	int id = EVP_PKEY_get_base_id(key);

	return (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) ? NULL : EVP_sha256();
}

/* A request with subject CN=cn (none if NULL; "+O" adds an O only) and a
 * subjectAltName from san (OpenSSL config syntax, none if NULL), signed by
 * key with md. */
static X509_REQ *csr_make_md(EVP_PKEY *key, const char *cn, const char *san, const EVP_MD *md)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();

	assert_non_null(req);
	assert_non_null(name);
	assert_int_equal(X509_REQ_set_version(req, X509_REQ_VERSION_1), 1);
	if (cn != NULL)
		assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
							    (const unsigned char *)cn, -1, -1, 0),
				 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
						    (const unsigned char *)"Acme", -1, -1, 0),
			 1);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	X509_NAME_free(name);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	if (san != NULL) {
		STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
		X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);

		assert_non_null(exts);
		assert_non_null(ext);
		assert_true(sk_X509_EXTENSION_push(exts, ext) > 0);
		assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	}
	assert_true(X509_REQ_sign(req, key, md) > 0);
	return req;
}

static X509_REQ *csr_make(EVP_PKEY *key, const char *cn, const char *san)
{
	return csr_make_md(key, cn, san, md_for(key));
}

static uint8_t *csr_der(X509_REQ *req, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_X509_REQ(req, &der);
	uint8_t *copy;

	assert_true(n > 0);
	copy = malloc((size_t)n);
	assert_non_null(copy);
	memcpy(copy, der, (size_t)n);
	OPENSSL_free(der);
	*len = (size_t)n;
	return copy;
}

/* Check a fresh copy of req parsed back from DER, as the CA would. */
static moat_err check_der(X509_REQ *req, const char *id, char *why, size_t whylen)
{
	X509_REQ *back = NULL;
	size_t len;
	uint8_t *der = csr_der(req, &len);
	moat_err rc;

	assert_int_equal(moat_csr_parse(der, len, &back, why, whylen), MOAT_OK);
	rc = moat_csr_check(back, id, why, whylen);
	X509_REQ_free(back);
	free(der);
	assert_int_equal(ERR_peek_error(), 0);
	return rc;
}

static void test_accepted_keys(void **state)
{
	(void)state;
	const enum key_kind ok[] = {K_P256, K_P384, K_ED25519, K_RSA3072};
	char why[512];
	char id[65];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		X509_REQ *req = csr_make(keys[ok[i]], ID, URI_ID);

		why[0] = '\0';
		assert_int_equal(check_der(req, ID, why, sizeof(why)), MOAT_OK);
		assert_int_equal(moat_csr_subject_id(req, id, sizeof(id)), MOAT_OK);
		assert_string_equal(id, ID);
		X509_REQ_free(req);
	}
}

static void test_refused_keys(void **state)
{
	(void)state;
	const struct {
		enum key_kind k;
		const char *named;
	} bad[] = {
	    {K_RSA2048, "RSA-2048"},
	    {K_P224, "secp224r1"},
	    {K_K256, "secp256k1"},
	    {K_ED448, "ED448"},
	};
	char why[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		X509_REQ *req = csr_make(keys[bad[i].k], ID, URI_ID);

		why[0] = '\0';
		assert_int_equal(check_der(req, ID, why, sizeof(why)), MOAT_E_DENIED);
		assert_non_null(strstr(why, bad[i].named));
		assert_non_null(strstr(why, "accepted keys are ECDSA P-256 or P-384, Ed25519"));
		X509_REQ_free(req);
	}
}

/* Signed by key A, then key B's public key swapped in: the signature no
 * longer matches the key, the classic proof-of-possession failure. */
static void test_pop_swapped_key(void **state)
{
	(void)state;
	X509_REQ *req = csr_make(keys[K_P256], ID, URI_ID);
	char why[512] = "";

	assert_int_equal(X509_REQ_set_pubkey(req, keys[K_P384]), 1);
	assert_int_equal(check_der(req, ID, why, sizeof(why)), MOAT_E_DENIED);
	assert_non_null(strstr(why, "proof of possession"));
	X509_REQ_free(req);
}

static void test_pop_corrupt_signature(void **state)
{
	(void)state;
	const enum key_kind kinds[] = {K_P256, K_ED25519, K_RSA3072};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		X509_REQ *req = csr_make(keys[kinds[i]], ID, URI_ID);
		X509_REQ *back = NULL;
		char why[512] = "";
		size_t len;
		uint8_t *der = csr_der(req, &len);

		/* The signature BIT STRING ends the DER: flip its last byte. */
		der[len - 1] ^= 0x01;
		assert_int_equal(moat_csr_parse(der, len, &back, why, sizeof(why)), MOAT_OK);
		assert_int_equal(moat_csr_check(back, ID, why, sizeof(why)), MOAT_E_DENIED);
		assert_non_null(strstr(why, "proof of possession"));
		X509_REQ_free(back);
		X509_REQ_free(req);
		free(der);
	}
}

static void test_weak_hash(void **state)
{
	(void)state;
	X509_REQ *req = csr_make_md(keys[K_P256], ID, URI_ID, EVP_sha1());
	char why[512] = "";

	assert_int_equal(check_der(req, ID, why, sizeof(why)), MOAT_E_DENIED);
	assert_non_null(strstr(why, "SHA1"));
	X509_REQ_free(req);
}

static void test_cn_rules(void **state)
{
	(void)state;
	X509_REQ *req;
	X509_NAME *name;
	char why[512] = "";

	/* CN for another device. */
	req = csr_make(keys[K_P256], "dev2", NULL);
	assert_int_equal(check_der(req, ID, why, sizeof(why)), MOAT_E_DENIED);
	assert_non_null(strstr(why, "CN \"dev2\" is not the device id dev1"));
	X509_REQ_free(req);

	/* Case matters: device ids are lower case. */
	req = csr_make(keys[K_P256], "DEV1", NULL);
	assert_int_equal(check_der(req, ID, why, sizeof(why)), MOAT_E_DENIED);
	X509_REQ_free(req);

	/* CN only: enough. */
	req = csr_make(keys[K_P256], ID, NULL);
	assert_int_equal(check_der(req, ID, why, sizeof(why)), MOAT_OK);
	X509_REQ_free(req);

	/* Two CNs, one of them right: refused, not guessed. */
	req = csr_make(keys[K_P256], ID, NULL);
	name = X509_REQ_get_subject_name(req);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
						    (const unsigned char *)"dev2", -1, -1, 0),
			 1);
	assert_true(X509_REQ_sign(req, keys[K_P256], EVP_sha256()) > 0);
	assert_int_equal(check_der(req, ID, why, sizeof(why)), MOAT_E_DENIED);
	assert_non_null(strstr(why, "more than one CN"));
	X509_REQ_free(req);

	/* A control character in a CN is quoted safely. */
	req = csr_make(keys[K_P256], "dev\n1\"x", NULL);
	assert_int_equal(check_der(req, ID, why, sizeof(why)), MOAT_E_DENIED);
	assert_null(strchr(why, '\n'));
	X509_REQ_free(req);
}

static void test_san_rules(void **state)
{
	(void)state;
	const struct {
		const char *cn;
		const char *san;
		moat_err rc;
		const char *named;
	} cases[] = {
	    {ID, "DNS:dev1.example.com", MOAT_E_DENIED, "DNS name"},
	    {ID, "URI:moat:device:dev1,DNS:x.example", MOAT_E_DENIED, "DNS name"},
	    {ID, "IP:10.0.0.1", MOAT_E_DENIED, "IP address"},
	    {ID, "email:a@example.com", MOAT_E_DENIED, "e-mail"},
	    {ID, "URI:moat:device:dev2", MOAT_E_DENIED, "moat:device:dev2"},
	    {ID, "URI:MOAT:DEVICE:dev1", MOAT_E_DENIED, "may only have moat:device:dev1"},
	    {ID, "URI:moat:device:dev1x", MOAT_E_DENIED, "moat:device:dev1x"},
	    {ID, "URI:https://example.com/", MOAT_E_DENIED, "https://example.com/"},
	    {NULL, "URI:moat:device:dev1", MOAT_OK, NULL},
	    {ID, "URI:moat:device:dev1,URI:moat:device:dev1", MOAT_OK, NULL},
	    {NULL, NULL, MOAT_E_DENIED, "names no device"},
	};
	char why[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		X509_REQ *req = csr_make(keys[K_P256], cases[i].cn, cases[i].san);

		why[0] = '\0';
		assert_int_equal(check_der(req, ID, why, sizeof(why)), cases[i].rc);
		if (cases[i].named != NULL)
			assert_non_null(strstr(why, cases[i].named));
		X509_REQ_free(req);
	}
}

static void test_invalid_device_id(void **state)
{
	(void)state;
	X509_REQ *req = csr_make(keys[K_P256], "Dev1", NULL);
	char why[512] = "";

	assert_int_equal(moat_csr_check(req, "Dev1", why, sizeof(why)), MOAT_E_DENIED);
	assert_non_null(strstr(why, "not a valid device id"));
	assert_int_equal(moat_csr_check(req, "", why, sizeof(why)), MOAT_E_DENIED);
	assert_int_equal(moat_csr_check(req, NULL, why, sizeof(why)), MOAT_E_INVAL);
	assert_int_equal(moat_csr_check(NULL, ID, why, sizeof(why)), MOAT_E_INVAL);
	/* A NULL why is allowed. */
	assert_int_equal(moat_csr_check(req, "Dev1", NULL, 0), MOAT_E_DENIED);
	X509_REQ_free(req);
}

static void test_subject_id(void **state)
{
	(void)state;
	const struct {
		const char *cn;
		const char *san;
		moat_err rc;
		const char *id;
	} cases[] = {
	    {"dev9", "URI:moat:device:dev1", MOAT_OK, "dev1"}, /* the URI wins */
	    {"dev9", NULL, MOAT_OK, "dev9"},
	    {"dev9", "DNS:x.example", MOAT_OK, "dev9"},
	    {NULL, "URI:moat:device:dev1,URI:moat:device:dev2", MOAT_E_DENIED, NULL},
	    {"dev9", "URI:moat:device:Bad!", MOAT_E_DENIED, NULL}, /* no CN fallback */
	    {"Not Valid", NULL, MOAT_E_DENIED, NULL},
	    {NULL, NULL, MOAT_E_NOTFOUND, NULL},
	    {NULL, "DNS:x.example", MOAT_E_NOTFOUND, NULL},
	};
	char id[MOAT_DEVICE_ID_MAX + 1];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		X509_REQ *req = csr_make(keys[K_P256], cases[i].cn, cases[i].san);

		assert_int_equal(moat_csr_subject_id(req, id, sizeof(id)), cases[i].rc);
		if (cases[i].id != NULL)
			assert_string_equal(id, cases[i].id);
		X509_REQ_free(req);
	}
	{
		X509_REQ *req = csr_make(keys[K_P256], ID, NULL);

		/* "dev1" needs 5 bytes. */
		assert_int_equal(moat_csr_subject_id(req, id, 4), MOAT_E_LIMIT);
		assert_int_equal(moat_csr_subject_id(req, id, 5), MOAT_OK);
		assert_int_equal(moat_csr_subject_id(req, NULL, 0), MOAT_E_LIMIT);
		assert_int_equal(moat_csr_subject_id(NULL, id, sizeof(id)), MOAT_E_INVAL);
		X509_REQ_free(req);
	}
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_parse(void **state)
{
	(void)state;
	X509_REQ *req = csr_make(keys[K_P256], ID, URI_ID);
	X509_REQ *out = NULL;
	char why[512] = "";
	size_t len;
	uint8_t *der = csr_der(req, &len);
	uint8_t *big;
	static const uint8_t garbage[] = {0x30, 0x03, 0x02, 0x01, 0x05};

	assert_int_equal(moat_csr_parse(der, len, &out, why, sizeof(why)), MOAT_OK);
	X509_REQ_free(out);
	out = NULL;

	assert_int_equal(moat_csr_parse(garbage, sizeof(garbage), &out, why, sizeof(why)),
			 MOAT_E_MALFORMED);
	assert_null(out);
	assert_int_equal(moat_csr_parse(der, 0, &out, why, sizeof(why)), MOAT_E_MALFORMED);
	assert_int_equal(moat_csr_parse(der, len - 1, &out, why, sizeof(why)), MOAT_E_MALFORMED);

	/* Trailing bytes after a valid request. */
	big = malloc(MOAT_CSR_MAX + 1);
	assert_non_null(big);
	memcpy(big, der, len);
	big[len] = 0;
	assert_int_equal(moat_csr_parse(big, len + 1, &out, why, sizeof(why)), MOAT_E_MALFORMED);
	assert_non_null(strstr(why, "1 bytes follow"));
	assert_null(out);

	memset(big + len, 0, MOAT_CSR_MAX + 1 - len);
	assert_int_equal(moat_csr_parse(big, MOAT_CSR_MAX + 1, &out, why, sizeof(why)),
			 MOAT_E_TOO_LARGE);
	assert_int_equal(moat_csr_parse(NULL, 1, &out, why, sizeof(why)), MOAT_E_INVAL);
	assert_int_equal(ERR_peek_error(), 0);
	free(big);
	free(der);
	X509_REQ_free(req);
}

/* base64 of der, with a line break (crlf or lf) every `line` characters
 * (0: none). */
static char *b64(const uint8_t *der, size_t len, size_t line, int crlf)
{
	size_t enc_len = 4 * ((len + 2) / 3);
	unsigned char *flat = malloc(enc_len + 1);
	char *out = malloc(enc_len * 3 + 8);
	size_t o = 0;

	assert_non_null(flat);
	assert_non_null(out);
	assert_int_equal(EVP_EncodeBlock(flat, der, (int)len), (int)enc_len);
	for (size_t i = 0; i < enc_len; i++) {
		out[o++] = (char)flat[i];
		if (line > 0 && (i + 1) % line == 0) {
			if (crlf)
				out[o++] = '\r';
			out[o++] = '\n';
		}
	}
	out[o] = '\0';
	free(flat);
	return out;
}

static void expect_body(const char *body, moat_err want, const uint8_t *der, size_t len)
{
	uint8_t *out = NULL;
	size_t out_len = 0;
	char why[512] = "";
	moat_err rc = moat_csr_from_est_body((const uint8_t *)body, strlen(body), &out, &out_len,
					     why, sizeof(why));

	if (rc != want)
		fprintf(stderr, "body <%.60s...>: %d (%s)\n", body, rc, why);
	assert_int_equal(rc, want);
	if (rc == MOAT_OK) {
		if (der != NULL) {
			assert_int_equal(out_len, len);
			assert_memory_equal(out, der, len);
		}
		free(out);
	} else {
		assert_null(out);
		assert_true(why[0] != '\0');
	}
}

static void test_est_body(void **state)
{
	(void)state;
	X509_REQ *req = csr_make(keys[K_RSA3072], ID, URI_ID);
	char body[MOAT_CSR_BODY_MAX + 64];
	size_t len;
	uint8_t *der = csr_der(req, &len);
	char *flat = b64(der, len, 0, 0);
	char *lines = b64(der, len, 64, 1);
	char *lf76 = b64(der, len, 76, 0);
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long pem_len;

	expect_body(flat, MOAT_OK, der, len);
	expect_body(lines, MOAT_OK, der, len);
	expect_body(lf76, MOAT_OK, der, len);

	/* Whitespace around and inside. */
	snprintf(body, sizeof(body), " \r\n\t%s\r\n\r\n", lines);
	expect_body(body, MOAT_OK, der, len);

	/* PEM, as `openssl req` writes it, and the older label. */
	assert_non_null(bio);
	assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
	pem_len = BIO_get_mem_data(bio, &pem);
	assert_true(pem_len > 0 && (size_t)pem_len < sizeof(body));
	snprintf(body, sizeof(body), "%.*s", (int)pem_len, pem);
	expect_body(body, MOAT_OK, der, len);
	snprintf(body, sizeof(body),
		 "\n-----BEGIN NEW CERTIFICATE REQUEST-----\n%s\n-----END NEW "
		 "CERTIFICATE REQUEST-----\n",
		 lines);
	expect_body(body, MOAT_OK, der, len);

	/* Refused: garbage, other PEM types, mismatched or missing END, data
	 * after END, PEM headers, broken padding. */
	expect_body("", MOAT_E_MALFORMED, NULL, 0);
	expect_body(" \r\n ", MOAT_E_MALFORMED, NULL, 0);
	expect_body("this is not base64!", MOAT_E_MALFORMED, NULL, 0);
	expect_body("MIIB\x01MIIB", MOAT_E_MALFORMED, NULL, 0);
	expect_body("QUJD", MOAT_OK, (const uint8_t *)"ABC", 3);
	expect_body("QUI=", MOAT_OK, (const uint8_t *)"AB", 2);
	expect_body("QQ==", MOAT_OK, (const uint8_t *)"A", 1);
	expect_body("Q Q = =", MOAT_OK, (const uint8_t *)"A", 1);
	expect_body("QUI", MOAT_E_MALFORMED, NULL, 0);	    /* no padding */
	expect_body("QUJ=", MOAT_E_MALFORMED, NULL, 0);	    /* non-zero leftover bits */
	expect_body("QR==", MOAT_E_MALFORMED, NULL, 0);	    /* non-zero leftover bits */
	expect_body("Q===", MOAT_E_MALFORMED, NULL, 0);	    /* misplaced '=' */
	expect_body("QQ==QUJD", MOAT_E_MALFORMED, NULL, 0); /* data after padding */
	expect_body("QQ=A", MOAT_E_MALFORMED, NULL, 0);
	expect_body("QUJD-_==", MOAT_E_MALFORMED, NULL, 0); /* base64url is not base64 */
	snprintf(body, sizeof(body), "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n",
		 lines);
	expect_body(body, MOAT_E_MALFORMED, NULL, 0);
	snprintf(body, sizeof(body), "-----BEGIN CERTIFICATE REQUEST-----\n%s\n", lines);
	expect_body(body, MOAT_E_MALFORMED, NULL, 0);
	snprintf(body, sizeof(body),
		 "-----BEGIN CERTIFICATE REQUEST-----\n%s\n-----END NEW CERTIFICATE "
		 "REQUEST-----\n",
		 lines);
	expect_body(body, MOAT_E_MALFORMED, NULL, 0);
	snprintf(body, sizeof(body), "%.*sextra\n", (int)pem_len, pem);
	expect_body(body, MOAT_E_MALFORMED, NULL, 0);
	snprintf(body, sizeof(body),
		 "-----BEGIN CERTIFICATE REQUEST-----\nProc-Type: 4,ENCRYPTED\n%s\n-----END "
		 "CERTIFICATE REQUEST-----\n",
		 lines);
	expect_body(body, MOAT_E_MALFORMED, NULL, 0);
	/* Raw DER is not what RFC 7030 says. */
	{
		uint8_t *out = NULL;
		size_t out_len = 0;

		assert_int_equal(moat_csr_from_est_body(der, len, &out, &out_len, NULL, 0),
				 MOAT_E_MALFORMED);
		assert_null(out);
	}

	/* Size limits: the body, and the decoded request. */
	memset(body, 'A', MOAT_CSR_BODY_MAX + 1);
	body[MOAT_CSR_BODY_MAX + 1] = '\0';
	expect_body(body, MOAT_E_TOO_LARGE, NULL, 0);
	memset(body, 'A', MOAT_CSR_BODY_MAX);
	body[MOAT_CSR_BODY_MAX] = '\0';
	expect_body(body, MOAT_E_TOO_LARGE, NULL, 0);
	/* Exactly MOAT_CSR_MAX decoded bytes: whole groups of three, then a
	 * padded group for the rest (16384 = 3 * 5461 + 1). */
	{
		size_t groups = MOAT_CSR_MAX / 3;

		assert_int_equal(MOAT_CSR_MAX % 3, 1);

		memset(body, 'A', groups * 4);
		memcpy(body + groups * 4, "AA==", 5);
		expect_body(body, MOAT_OK, NULL, 0);
		memcpy(body + groups * 4, "AAA=", 5);
		expect_body(body, MOAT_E_TOO_LARGE, NULL, 0);
	}

	BIO_free(bio);
	free(flat);
	free(lines);
	free(lf76);
	free(der);
	X509_REQ_free(req);
}

/* The whole path a simpleenroll body takes, end to end. */
static void test_body_to_check(void **state)
{
	(void)state;
	X509_REQ *req = csr_make(keys[K_ED25519], ID, URI_ID);
	X509_REQ *back = NULL;
	char why[512] = "";
	size_t len, der_len;
	uint8_t *der = csr_der(req, &len);
	char *body = b64(der, len, 64, 0);
	uint8_t *out = NULL;

	assert_int_equal(moat_csr_from_est_body((const uint8_t *)body, strlen(body), &out, &der_len,
						why, sizeof(why)),
			 MOAT_OK);
	assert_int_equal(moat_csr_parse(out, der_len, &back, why, sizeof(why)), MOAT_OK);
	assert_int_equal(moat_csr_check(back, ID, why, sizeof(why)), MOAT_OK);
	assert_int_equal(moat_csr_check(back, "dev2", why, sizeof(why)), MOAT_E_DENIED);
	X509_REQ_free(back);
	free(out);
	free(body);
	free(der);
	X509_REQ_free(req);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accepted_keys),   cmocka_unit_test(test_refused_keys),
	    cmocka_unit_test(test_pop_swapped_key), cmocka_unit_test(test_pop_corrupt_signature),
	    cmocka_unit_test(test_weak_hash),	    cmocka_unit_test(test_cn_rules),
	    cmocka_unit_test(test_san_rules),	    cmocka_unit_test(test_invalid_device_id),
	    cmocka_unit_test(test_subject_id),	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_est_body),	    cmocka_unit_test(test_body_to_check),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
