/*
 * Tests for the key process (src/pki/ca_proc.c) and its message codec
 * (ca_msg.c). A CA made with moat_pki_create_ca in a mkdtemp directory is
 * served by a real forked key process under its seccomp filter; certificates
 * and CRLs it returns are verified against ca.crt with OpenSSL, audit
 * checkpoints against the audit.pub it created, sealed blobs by opening
 * them (and failing to, with other associated data). Hostile
 * input is sent as raw messages on the socket, and the process must answer
 * each with an error and keep serving.
 */
/* nftw() is X/Open. */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <sodium.h>

#include "audit/audit.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/limits.h"
#include "pki/ca.h"
#include "pki/pki.h"
#include "tls/tls.h"

struct fx {
	char dir[256];
	char ca_crt[300];
	struct moat_ca *ca;
	EVP_PKEY *p256;
	EVP_PKEY *ed25519;
	EVP_PKEY *rsa3072;
	EVP_PKEY *rsa2048;
};

static struct fx F;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int mk_tmpdir(char *out, size_t n, const char *tag)
{
	const char *tmp = getenv("TMPDIR");
	int r;

	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	r = snprintf(out, n, "%s/moat-%s-XXXXXX", tmp, tag);
	if (r < 0 || (size_t)r >= n || mkdtemp(out) == NULL)
		return -1;
	return 0;
}

static int setup(void **state)
{
	(void)state;
	char err[512] = "";

	if (mk_tmpdir(F.dir, sizeof(F.dir), "ca") != 0)
		return -1;
	snprintf(F.ca_crt, sizeof(F.ca_crt), "%s/ca.crt", F.dir);
	if (moat_pki_create_ca(F.dir, "Moat Test CA", err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	/* Before any thread, as ca.h requires. */
	if (moat_ca_spawn(F.dir, &F.ca, err, sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "setup: spawn: %s\n", err);
		return -1;
	}
	F.p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	F.ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	F.rsa3072 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
	F.rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (F.p256 == NULL || F.ed25519 == NULL || F.rsa3072 == NULL || F.rsa2048 == NULL)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	moat_ca_stop(F.ca);
	EVP_PKEY_free(F.p256);
	EVP_PKEY_free(F.ed25519);
	EVP_PKEY_free(F.rsa3072);
	EVP_PKEY_free(F.rsa2048);
	rm_rf(F.dir);
	return 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A DER request for CN=cn and URI moat:device:<san_id> (none if NULL). */
static uint8_t *csr_make(EVP_PKEY *key, const char *cn, const char *san_id, size_t *len)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	int id = EVP_PKEY_get_base_id(key);
	unsigned char *der = NULL;
	uint8_t *copy;
	int n;

	assert_non_null(req);
	assert_non_null(name);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
						    (const unsigned char *)cn, -1, -1, 0),
			 1);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	X509_NAME_free(name);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	if (san_id != NULL) {
		char san[128];
		STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
		X509_EXTENSION *ext;

		snprintf(san, sizeof(san), "URI:moat:device:%s", san_id);
		ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
		assert_non_null(ext);
		assert_true(sk_X509_EXTENSION_push(exts, ext) > 0);
		assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	}
	assert_true(X509_REQ_sign(req, key, id == EVP_PKEY_ED25519 ? NULL : EVP_sha256()) > 0);
	n = i2d_X509_REQ(req, &der);
	assert_true(n > 0);
	copy = malloc((size_t)n);
	assert_non_null(copy);
	memcpy(copy, der, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(der);
	X509_REQ_free(req);
	return copy;
}

static X509 *cert_from(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);

	assert_non_null(x);
	assert_ptr_equal(p, der + len);
	return x;
}

static X509 *ca_cert(void)
{
	BIO *bio = BIO_new_file(F.ca_crt, "r");
	X509 *x;

	assert_non_null(bio);
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	assert_non_null(x);
	return x;
}

/* X509_verify_cert of leaf against ca.crt for TLS client use, strict. */
static int chain_verify(X509 *leaf)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok, e;

	assert_non_null(store);
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_load_file(store, F.ca_crt), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
	assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT), 1);
	X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
	ok = X509_verify_cert(ctx);
	e = X509_STORE_CTX_get_error(ctx);
	assert_true((ok == 1) == (e == X509_V_OK));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	ERR_clear_error();
	return e;
}

/* The certificate's serial as 32 lowercase hex digits. */
static void serial_hex_of(X509 *x, char out[33])
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	unsigned char raw[16];

	assert_non_null(bn);
	assert_int_equal(BN_bn2binpad(bn, raw, sizeof(raw)), 16);
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	BN_free(bn);
}

static void sign_and_verify(EVP_PKEY *key, const char *id, unsigned days)
{
	char err[512] = "";
	char serial[MOAT_CA_SERIAL_HEX_LEN + 1];
	char want_serial[33];
	char ident[MOAT_DEVICE_ID_MAX + 1];
	size_t csr_len, cert_len = 0;
	uint8_t *csr = csr_make(key, id, id, &csr_len);
	uint8_t *der = NULL;
	int64_t not_after = 0;
	time_t now = time(NULL);
	X509 *cert;
	EXTENDED_KEY_USAGE *eku;
	int crit = -1;

	assert_int_equal(moat_ca_sign(F.ca, id, csr, csr_len, days, NULL, &der, &cert_len, serial,
				      &not_after, err, sizeof(err)),
			 MOAT_OK);
	cert = cert_from(der, cert_len);
	assert_int_equal(chain_verify(cert), X509_V_OK);

	/* Identity: CN and URI SAN, as tls.c reads them. */
	assert_int_equal(moat_tls_cert_identity(cert, ident, sizeof(ident)), MOAT_OK);
	assert_string_equal(ident, id);
	assert_int_equal(
	    X509_NAME_get_index_by_NID(X509_get_subject_name(cert), NID_commonName, -1), 0);

	/* Profile. */
	assert_int_equal(X509_get_version(cert), X509_VERSION_3);
	assert_int_equal(X509_check_ca(cert), 0);
	assert_true((X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) != 0);
	assert_int_equal(X509_get_extended_key_usage(cert), XKU_SSL_CLIENT);
	assert_int_equal(X509_get_key_usage(cert), KU_DIGITAL_SIGNATURE);
	eku = X509_get_ext_d2i(cert, NID_ext_key_usage, &crit, NULL);
	assert_non_null(eku);
	EXTENDED_KEY_USAGE_free(eku);
	assert_non_null(X509_get0_subject_key_id(cert));
	assert_non_null(X509_get0_authority_key_id(cert));

	/* The request's key, not one the CA made up. */
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), key), 1);

	/* Validity: days from now, notBefore MOAT_CERT_SKEW_S back. */
	assert_true(not_after >= (int64_t)now + (int64_t)days * 86400 - 5);
	assert_true(not_after <= (int64_t)now + (int64_t)days * 86400 + 5);
	{
		int pday = 0, psec = 0;

		assert_int_equal(ASN1_TIME_diff(&pday, &psec, NULL, X509_get0_notBefore(cert)), 1);
		assert_true(pday * 86400 + psec <= -(int)MOAT_CERT_SKEW_S + 5);
		assert_true(pday * 86400 + psec >= -(int)MOAT_CERT_SKEW_S - 5);
		assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notAfter(cert), (time_t)not_after),
				 0);
	}

	/* The serial the CA reported is the certificate's. */
	assert_int_equal(strlen(serial), MOAT_CA_SERIAL_HEX_LEN);
	serial_hex_of(cert, want_serial);
	assert_string_equal(serial, want_serial);

	X509_free(cert);
	free(der);
	free(csr);
}

static void test_sign_profiles(void **state)
{
	(void)state;
	sign_and_verify(F.p256, "sensor-01", 30);
	sign_and_verify(F.ed25519, "sensor.02", 1);
	sign_and_verify(F.rsa3072, "gw_3", MOAT_CERT_DAYS_MAX);
}

static void test_sign_refused(void **state)
{
	(void)state;
	char err[512] = "";
	char serial[MOAT_CA_SERIAL_HEX_LEN + 1];
	size_t csr_len, cert_len = 0;
	uint8_t *der = NULL;
	int64_t not_after = 0;
	uint8_t *csr = csr_make(F.p256, "dev2", NULL, &csr_len);
	uint8_t *weak;

	/* The CA re-checks: a request for dev2 does not become dev1's. */
	assert_int_equal(moat_ca_sign(F.ca, "dev1", csr, csr_len, 30, NULL, &der, &cert_len, serial,
				      &not_after, err, sizeof(err)),
			 MOAT_E_DENIED);
	assert_non_null(strstr(err, "CN \"dev2\" is not the device id dev1"));
	assert_null(der);

	weak = csr_make(F.rsa2048, "dev2", NULL, &csr_len);
	assert_int_equal(moat_ca_sign(F.ca, "dev2", weak, csr_len, 30, NULL, &der, &cert_len,
				      serial, &not_after, err, sizeof(err)),
			 MOAT_E_DENIED);
	assert_non_null(strstr(err, "RSA-2048"));

	/* Garbage that is not a request at all. */
	assert_int_equal(moat_ca_sign(F.ca, "dev2", (const uint8_t *)"\x30\x00", 2, 30, NULL, &der,
				      &cert_len, serial, &not_after, err, sizeof(err)),
			 MOAT_E_MALFORMED);

	/* Client-side argument checks. */
	assert_int_equal(moat_ca_sign(F.ca, "dev2", weak, csr_len, 0, NULL, &der, &cert_len, serial,
				      &not_after, err, sizeof(err)),
			 MOAT_E_INVAL);
	assert_int_equal(moat_ca_sign(F.ca, "dev2", weak, csr_len, MOAT_CERT_DAYS_MAX + 1, NULL,
				      &der, &cert_len, serial, &not_after, err, sizeof(err)),
			 MOAT_E_INVAL);
	assert_int_equal(moat_ca_sign(F.ca, "dev2", weak, 0, 30, NULL, &der, &cert_len, serial,
				      &not_after, err, sizeof(err)),
			 MOAT_E_TOO_LARGE);
	/* A device id the encoder cannot carry. */
	{
		char long_id[MOAT_DEVICE_ID_MAX + 2];

		memset(long_id, 'a', sizeof(long_id) - 1);
		long_id[sizeof(long_id) - 1] = '\0';
		assert_int_equal(moat_ca_sign(F.ca, long_id, csr, csr_len, 30, NULL, &der,
					      &cert_len, serial, &not_after, err, sizeof(err)),
				 MOAT_E_INVAL);
	}
	assert_int_equal(moat_ca_ping(F.ca, err, sizeof(err)), MOAT_OK);
	free(weak);
	free(csr);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_serials_unique(void **state)
{
	(void)state;
	char serials[20][MOAT_CA_SERIAL_HEX_LEN + 1];
	char err[512] = "";
	size_t csr_len;
	uint8_t *csr = csr_make(F.p256, "dev1", "dev1", &csr_len);

	for (int i = 0; i < 20; i++) {
		uint8_t *der = NULL;
		size_t cert_len = 0;
		int64_t not_after;

		assert_int_equal(moat_ca_sign(F.ca, "dev1", csr, csr_len, 30, NULL, &der, &cert_len,
					      serials[i], &not_after, err, sizeof(err)),
				 MOAT_OK);
		free(der);
	}
	qsort(serials, 20, sizeof(serials[0]), cmp_str);
	for (int i = 1; i < 20; i++)
		assert_string_not_equal(serials[i - 1], serials[i]);
	free(csr);
}

static void test_crl(void **state)
{
	(void)state;
	struct moat_revoked list[3];
	char err[512] = "";
	size_t csr_len, crl_len = 0;
	uint8_t *csr = csr_make(F.p256, "dev1", "dev1", &csr_len);
	uint8_t *crl_der = NULL;
	const unsigned char *p;
	X509_CRL *crl;
	X509 *ca = ca_cert();
	X509 *certs[3];
	ASN1_INTEGER *num;
	time_t now = time(NULL);
	int crit = -1;

	for (int i = 0; i < 3; i++) {
		uint8_t *der = NULL;
		size_t cert_len = 0;
		int64_t not_after;

		assert_int_equal(moat_ca_sign(F.ca, "dev1", csr, csr_len, 30, NULL, &der, &cert_len,
					      list[i].serial, &not_after, err, sizeof(err)),
				 MOAT_OK);
		list[i].revoked_at = (int64_t)now - 3600 * (i + 1);
		certs[i] = cert_from(der, cert_len);
		free(der);
	}
	assert_int_equal(moat_ca_crl(F.ca, 7, 3600, list, 3, &crl_der, &crl_len, err, sizeof(err)),
			 MOAT_OK);
	p = crl_der;
	crl = d2i_X509_CRL(NULL, &p, (long)crl_len);
	assert_non_null(crl);
	assert_ptr_equal(p, crl_der + crl_len);

	/* Signed by the CA, v2, issuer is the CA. */
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
	assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
	assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);
	assert_int_equal(X509_check_issued(ca, certs[0]), X509_V_OK);

	/* Every certificate is on it, with its revocation time. */
	for (int i = 0; i < 3; i++) {
		X509_REVOKED *rev = NULL;

		assert_int_equal(X509_CRL_get0_by_cert(crl, &rev, certs[i]), 1);
		assert_int_equal(ASN1_TIME_cmp_time_t(X509_REVOKED_get0_revocationDate(rev),
						      (time_t)list[i].revoked_at),
				 0);
	}
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 3);

	/* CRL number and AKI; nextUpdate an hour ahead. */
	num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
	assert_non_null(num);
	assert_int_equal(ASN1_INTEGER_get(num), 7);
	ASN1_INTEGER_free(num);
	{
		AUTHORITY_KEYID *akid =
		    X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, &crit, NULL);
		assert_non_null(akid);
		assert_non_null(akid->keyid);
		assert_int_equal(ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(ca)),
				 0);
		AUTHORITY_KEYID_free(akid);
	}
	assert_true(ASN1_TIME_cmp_time_t(X509_CRL_get0_nextUpdate(crl), now + 3600 - 5) > 0);
	assert_true(ASN1_TIME_cmp_time_t(X509_CRL_get0_nextUpdate(crl), now + 3600 + 5) < 0);

	/* A verifier with CRL checking now rejects the first certificate. */
	{
		X509_STORE *store = X509_STORE_new();
		X509_STORE_CTX *ctx = X509_STORE_CTX_new();

		assert_int_equal(X509_STORE_add_cert(store, ca), 1);
		assert_int_equal(X509_STORE_add_crl(store, crl), 1);
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
		assert_int_equal(X509_STORE_CTX_init(ctx, store, certs[0], NULL), 1);
		assert_int_not_equal(X509_verify_cert(ctx), 1);
		assert_int_equal(X509_STORE_CTX_get_error(ctx), X509_V_ERR_CERT_REVOKED);
		X509_STORE_CTX_free(ctx);
		X509_STORE_free(store);
		ERR_clear_error();
	}
	X509_CRL_free(crl);
	free(crl_der);

	/* An empty CRL, and refusals. */
	assert_int_equal(moat_ca_crl(F.ca, 8, 60, NULL, 0, &crl_der, &crl_len, err, sizeof(err)),
			 MOAT_OK);
	free(crl_der);
	crl_der = NULL;
	assert_int_equal(moat_ca_crl(F.ca, 9, 0, list, 3, &crl_der, &crl_len, err, sizeof(err)),
			 MOAT_E_INVAL);
	assert_int_equal(moat_ca_crl(F.ca, 9, MOAT_CRL_NEXT_UPDATE_MAX_S + 1, list, 3, &crl_der,
				     &crl_len, err, sizeof(err)),
			 MOAT_E_INVAL);
	assert_int_equal(moat_ca_crl(F.ca, 9, 60, list, MOAT_CRL_MAX_ENTRIES + 1, &crl_der,
				     &crl_len, err, sizeof(err)),
			 MOAT_E_LIMIT);
	snprintf(list[1].serial, sizeof(list[1].serial), "xyz");
	assert_int_equal(moat_ca_crl(F.ca, 9, 60, list, 3, &crl_der, &crl_len, err, sizeof(err)),
			 MOAT_E_INVAL);
	assert_non_null(strstr(err, "entry 1"));
	assert_null(crl_der);

	for (int i = 0; i < 3; i++)
		X509_free(certs[i]);
	X509_free(ca);
	free(csr);
}

/* A CRL of more entries than one message carries, and more bytes than one
 * answer: streamed to the CA in chunks, fetched back in parts, nothing
 * dropped (one re-enrollment cycle of a 4,100-device fleet used to be cut
 * at 4,096). */
#define CRL_BIG (3u * MOAT_CRL_CHUNK_ENTRIES + 17u)
static void test_crl_full(void **state)
{
	struct moat_revoked *list = calloc(CRL_BIG, sizeof(*list));
	char err[512] = "";
	uint8_t *crl_der = NULL;
	size_t crl_len = 0;
	const unsigned char *p;
	X509_CRL *crl;

	(void)state;
	assert_non_null(list);
	for (unsigned i = 0; i < CRL_BIG; i++) {
		/* 20 octets, top bit clear: the largest serial allowed. */
		snprintf(list[i].serial, sizeof(list[i].serial),
			 "7fffffffffffffffffffffffffff%012x", i);
		list[i].revoked_at = 4102444800LL + i; /* 2100: GeneralizedTime */
	}
	assert_int_equal(
	    moat_ca_crl(F.ca, UINT64_MAX, 60, list, CRL_BIG, &crl_der, &crl_len, err, sizeof(err)),
	    MOAT_OK);
	assert_true(crl_len > MOAT_CRL_PART_MAX);
	p = crl_der;
	crl = d2i_X509_CRL(NULL, &p, (long)crl_len);
	assert_non_null(crl);
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), CRL_BIG);
	X509_CRL_free(crl);
	free(crl_der);
	crl_der = NULL;
	/* The next CRL starts over: a short one lists only its own entries. */
	assert_int_equal(moat_ca_crl(F.ca, 1, 60, list, 5, &crl_der, &crl_len, err, sizeof(err)),
			 MOAT_OK);
	p = crl_der;
	crl = d2i_X509_CRL(NULL, &p, (long)crl_len);
	assert_non_null(crl);
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 5);
	X509_CRL_free(crl);
	free(crl_der);
	free(list);
}

/* The CA's state allow-list: CRL entries out of order, and a CRL part
 * past the signed CRL, are refused. */
static void test_crl_stream_refused(void **state)
{
	struct moat_revoked one = {"42", 1700000000};
	struct moat_ca_ans ans;
	struct moat_buf b;
	uint8_t *raw = NULL;
	size_t raw_len = 0;

	(void)state;
	moat_buf_init(&b, MOAT_CA_MSG_MAX);
	assert_int_equal(moat_ca_req_put_crl_add(&b, 11, 7, &one, 1), MOAT_OK);
	assert_int_equal(
	    moat_ca_raw_request(F.ca, moat_buf_head(&b), moat_buf_used(&b), &raw, &raw_len),
	    MOAT_OK);
	assert_int_equal(moat_ca_ans_parse(raw, raw_len, &ans), MOAT_OK);
	assert_int_equal(ans.status, MOAT_E_PROTOCOL);
	free(raw);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_crl_part(&b, 12, MOAT_CRL_DER_MAX - 1), MOAT_OK);
	assert_int_equal(
	    moat_ca_raw_request(F.ca, moat_buf_head(&b), moat_buf_used(&b), &raw, &raw_len),
	    MOAT_OK);
	assert_int_equal(moat_ca_ans_parse(raw, raw_len, &ans), MOAT_OK);
	assert_int_equal(ans.status, MOAT_E_PROTOCOL);
	free(raw);
	moat_buf_free(&b);
}

/* Server certificate renewal refuses what is not a server certificate of
 * this CA, and renews one that is: same names and key, 397 days in all,
 * with a CRL distribution point on device certificates only. */
static void test_renew_server(void **state)
{
	char err[512] = "", serial[MOAT_CA_SERIAL_HEX_LEN + 1];
	size_t csr_len, cert_len = 0, out_len = 0;
	uint8_t *der = NULL, *out = NULL, *csr = csr_make(F.p256, "dev1", NULL, &csr_len);
	int64_t not_after = 0, nb = 0, na = 0;
	const unsigned char *p;
	X509 *dev, *ca = ca_cert(), *srv = NULL, *renewed;
	X509_NAME *name = X509_NAME_new();
	unsigned char *sd = NULL;
	int n;

	(void)state;
	assert_int_equal(moat_ca_sign(F.ca, "dev1", csr, csr_len, 30, "https://moat.test/crl", &der,
				      &cert_len, serial, &not_after, err, sizeof(err)),
			 MOAT_OK);
	p = der;
	dev = d2i_X509(NULL, &p, (long)cert_len);
	assert_non_null(dev);
	{
		CRL_DIST_POINTS *cdp =
		    X509_get_ext_d2i(dev, NID_crl_distribution_points, NULL, NULL);
		assert_non_null(cdp);
		CRL_DIST_POINTS_free(cdp);
	}
	/* A device certificate (clientAuth) is not renewed as a server one. */
	assert_int_equal(
	    moat_ca_renew_server(F.ca, der, cert_len, &out, &out_len, err, sizeof(err)),
	    MOAT_E_DENIED);
	assert_non_null(strstr(err, "serverAuth"));
	/* Garbage, and a server certificate this CA did not sign. */
	assert_int_equal(moat_ca_renew_server(F.ca, (const uint8_t *)"\x30\x00", 2, &out, &out_len,
					      err, sizeof(err)),
			 MOAT_E_INVAL);
	srv = X509_new();
	assert_non_null(srv);
	X509_set_version(srv, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(srv), 7);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
				   -1, 0);
	X509_set_subject_name(srv, name);
	X509_set_issuer_name(srv, X509_get_subject_name(ca));
	X509_gmtime_adj(X509_getm_notBefore(srv), 0);
	X509_gmtime_adj(X509_getm_notAfter(srv), 86400);
	X509_set_pubkey(srv, F.p256);
	{
		X509_EXTENSION *e =
		    X509V3_EXT_conf_nid(NULL, NULL, NID_ext_key_usage, "serverAuth");
		assert_non_null(e);
		X509_add_ext(srv, e, -1);
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(srv, F.p256, EVP_sha256()) > 0); /* not the CA's key */
	n = i2d_X509(srv, &sd);
	assert_true(n > 0);
	assert_int_equal(
	    moat_ca_renew_server(F.ca, sd, (size_t)n, &out, &out_len, err, sizeof(err)),
	    MOAT_E_DENIED);
	assert_non_null(strstr(err, "not issued by this CA"));
	assert_null(out);
	OPENSSL_free(sd);
	sd = NULL;
	/* The same certificate signed by the CA (the test reads ca.key) is renewed. */
	{
		char kp[300];
		FILE *f;
		EVP_PKEY *ca_key;

		snprintf(kp, sizeof(kp), "%s/ca.key", F.dir);
		f = fopen(kp, "r");
		assert_non_null(f);
		ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		assert_non_null(ca_key);
		assert_true(X509_sign(srv, ca_key, EVP_sha256()) > 0);
		EVP_PKEY_free(ca_key);
	}
	n = i2d_X509(srv, &sd);
	assert_int_equal(
	    moat_ca_renew_server(F.ca, sd, (size_t)n, &out, &out_len, err, sizeof(err)), MOAT_OK);
	p = out;
	renewed = d2i_X509(NULL, &p, (long)out_len);
	assert_non_null(renewed);
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(renewed), name), 0);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(renewed), F.p256), 1);
	assert_int_equal(moat_pki_cert_validity(renewed, &nb, &na), MOAT_OK);
	assert_true(na - nb <= (int64_t)MOAT_SERVER_CERT_LIFETIME_S);
	assert_true(na - nb > (int64_t)MOAT_SERVER_CERT_LIFETIME_S - 5);
	assert_int_equal(X509_verify(renewed, X509_get0_pubkey(ca)), 1);
	X509_free(renewed);
	OPENSSL_free(sd);
	free(out);
	X509_NAME_free(name);
	X509_free(srv);
	X509_free(dev);
	X509_free(ca);
	free(der);
	free(csr);
}

/* The CRL URL: configured, or derived from the first HTTPS listener. */
static void test_crl_url_default(void **state)
{
	struct moat_conf c;
	char url[MOAT_CRL_URL_MAX + 1], e[256];

	(void)state;
	assert_int_equal(moat_conf_parse_string("[listener.m]\nbind = 127.0.0.1\nport = 8883\n"
						"[listener.api]\nbind = 0.0.0.0\nport = 8443\n"
						"protocol = https\n",
						"t", "/tmp", &c, e, sizeof(e)),
			 MOAT_OK);
	moat_pki_crl_url(&c, url, sizeof(url));
	assert_string_equal(url, "https://localhost:8443/crl");
	memcpy(c.listeners[1].bind, "::1", 4);
	moat_pki_crl_url(&c, url, sizeof(url));
	assert_string_equal(url, "https://[::1]:8443/crl");
	memcpy(c.crl_url, "https://moat.example/crl", 25);
	moat_pki_crl_url(&c, url, sizeof(url));
	assert_string_equal(url, "https://moat.example/crl");
	c.crl_url[0] = '\0';
	c.n_listeners = 1; /* MQTT only: no URL */
	moat_pki_crl_url(&c, url, sizeof(url));
	assert_string_equal(url, "");
	assert_false(moat_pki_crl_url_valid("https://a,b/crl x"));
	assert_true(moat_pki_crl_url_valid("http://10.0.0.1/crl"));
}

static void test_cacerts(void **state)
{
	(void)state;
	char err[512] = "";
	uint8_t *der = NULL;
	size_t len = 0;
	X509 *ca = ca_cert();
	X509 *got;

	assert_int_equal(moat_ca_cacerts(F.ca, &der, &len, err, sizeof(err)), MOAT_OK);
	got = cert_from(der, len);
	assert_int_equal(X509_cmp(got, ca), 0);
	X509_free(got);
	X509_free(ca);
	free(der);
}

/* Send raw bytes; expect an error answer (seq echoed when there was one). */
static void expect_error(const uint8_t *msg, size_t len, moat_err want)
{
	struct moat_ca_ans ans;
	uint8_t *raw = NULL;
	size_t raw_len = 0;

	assert_int_equal(moat_ca_raw_request(F.ca, msg, len, &raw, &raw_len), MOAT_OK);
	assert_int_equal(moat_ca_ans_parse(raw, raw_len, &ans), MOAT_OK);
	if (ans.status != want)
		fprintf(stderr, "raw request of %zu bytes: status %u (%s)\n", len, ans.status,
			ans.msg != NULL ? ans.msg : "");
	assert_int_equal(ans.status, want);
	assert_non_null(ans.msg);
	assert_true(ans.msg[0] != '\0');
	if (len >= 5)
		assert_int_equal(ans.seq, ((uint32_t)msg[1] << 24) | ((uint32_t)msg[2] << 16) |
					      ((uint32_t)msg[3] << 8) | msg[4]);
	free(raw);
}

static void test_malformed_requests(void **state)
{
	(void)state;
	char err[512] = "";
	struct moat_buf b;
	uint8_t *big;
	size_t csr_len;
	uint8_t *csr = csr_make(F.p256, "dev1", "dev1", &csr_len);
	static const uint8_t ping_extra[] = {MOAT_CA_PING, 0, 0, 0, 9, 0};
	static const uint8_t unknown[] = {0x77, 0, 0, 0, 9};
	static const uint8_t hello[] = {MOAT_CA_HELLO, 0, 0, 0, 9};
	static const uint8_t short_hdr[] = {MOAT_CA_PING, 0, 0};
	/* SIGN: device id "dev1" without its NUL (length 4 covers "dev1"). */
	static const uint8_t unterminated[] = {
	    MOAT_CA_SIGN, 0, 0, 0, 9,  0, 4, 'd', 'e', 'v', '1', 0, 0, 0, 1,
	    0x30,	  0, 0, 0, 30, 0, 0, 0,	  0};
	/* SIGN: a NUL inside the id. */
	static const uint8_t inner_nul[] = {MOAT_CA_SIGN, 0, 0, 0, 9, 0, 5,    'd', 0, 'v',
					    '1',	  0, 0, 0, 0, 1, 0x30, 0,   0, 0,
					    30,		  0, 0, 0, 0};
	/* SIGN: a blob length far past the message. */
	static const uint8_t huge_blob[] = {MOAT_CA_SIGN, 0,   0, 0,	9,    0,    5,	  'd', 'e',
					    'v',	  '1', 0, 0x7f, 0xff, 0xff, 0xff, 0x30};
	/* CRL: two entries announced, none present. */
	static const uint8_t crl_short[] = {MOAT_CA_CRL, 0, 0, 0,  9, 0, 0, 0, 0, 0, 0, 0, 1,
					    0,		 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 2};
	/* CRL: count over the limit. */
	static const uint8_t crl_many[] = {MOAT_CA_CRL, 0, 0, 0,  9, 0, 0, 0, 0, 0, 0,	  0,   1,
					   0,		0, 0, 60, 0, 0, 0, 0, 0, 0, 0x10, 0x01};
	/* CRL: a serial with a leading zero octet. */
	static const uint8_t crl_zero[] = {
	    MOAT_CA_CRL, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,    0,    60,	  0,
	    0,		 0, 0, 0, 0, 0, 1, 2, 0, 1, 0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00};

	expect_error(NULL, 0, MOAT_E_MALFORMED);
	expect_error(short_hdr, sizeof(short_hdr), MOAT_E_MALFORMED);
	expect_error(ping_extra, sizeof(ping_extra), MOAT_E_MALFORMED);
	expect_error(unknown, sizeof(unknown), MOAT_E_PROTOCOL);
	expect_error(hello, sizeof(hello), MOAT_E_PROTOCOL);
	expect_error(unterminated, sizeof(unterminated), MOAT_E_MALFORMED);
	expect_error(inner_nul, sizeof(inner_nul), MOAT_E_MALFORMED);
	expect_error(huge_blob, sizeof(huge_blob), MOAT_E_MALFORMED);
	expect_error(crl_short, sizeof(crl_short), MOAT_E_MALFORMED);
	expect_error(crl_many, sizeof(crl_many), MOAT_E_LIMIT);
	expect_error(crl_zero, sizeof(crl_zero), MOAT_E_INVAL);

	/* A well-formed SIGN with days out of range, and with one byte too many. */
	moat_buf_init(&b, MOAT_CA_MSG_MAX + 16);
	assert_int_equal(moat_ca_req_put_sign(&b, 77, "dev1", csr, csr_len, NULL, 30, 0), MOAT_OK);
	b.data[b.len - 8] = 0xff; /* days = 0xff00001e */
	expect_error(moat_buf_head(&b), moat_buf_used(&b), MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_sign(&b, 78, "dev1", csr, csr_len, NULL, 30, 0), MOAT_OK);
	assert_int_equal(moat_buf_put_u8(&b, 0), MOAT_OK);
	expect_error(moat_buf_head(&b), moat_buf_used(&b), MOAT_E_MALFORMED);
	moat_buf_free(&b);

	/* Over MOAT_CA_MSG_MAX: refused, not truncated and obeyed. */
	big = calloc(1, MOAT_CA_MSG_MAX + 1);
	assert_non_null(big);
	big[0] = MOAT_CA_PING;
	big[4] = 42;
	expect_error(big, MOAT_CA_MSG_MAX + 1, MOAT_E_TOO_LARGE);
	/* Exactly at the limit is read whole (and is then a PING with junk). */
	expect_error(big, MOAT_CA_MSG_MAX, MOAT_E_MALFORMED);
	free(big);

	/* Still serving, and the next real call is not confused. */
	assert_int_equal(moat_ca_ping(F.ca, err, sizeof(err)), MOAT_OK);
	{
		char serial[MOAT_CA_SERIAL_HEX_LEN + 1];
		uint8_t *der = NULL;
		size_t cert_len;
		int64_t not_after;

		assert_int_equal(moat_ca_sign(F.ca, "dev1", csr, csr_len, 30, NULL, &der, &cert_len,
					      serial, &not_after, err, sizeof(err)),
				 MOAT_OK);
		free(der);
	}
	free(csr);
}

/* The CA is confined: no new privileges, a seccomp filter, not dumpable. */
static void test_sandboxed(void **state)
{
	(void)state;
	char path[64], line[256];
	int seccomp = -1, nnp = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)moat_ca_pid(F.ca));
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "Seccomp:", 8) == 0)
			seccomp = (int)strtol(line + 8, NULL, 10);
		if (strncmp(line, "NoNewPrivs:", 11) == 0)
			nnp = (int)strtol(line + 11, NULL, 10);
	}
	fclose(f);
	assert_int_equal(nnp, 1);
	/* 2 = SECCOMP_MODE_FILTER; a kernel without seccomp has no line. */
	if (seccomp != -1)
		assert_int_equal(seccomp, 2);
	else
		fprintf(stderr, "note: no Seccomp line in %s\n", path);
}

struct worker {
	pthread_t t;
	int ok;
	uint8_t *csr;
	size_t csr_len;
	char serial[5][MOAT_CA_SERIAL_HEX_LEN + 1];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char err[512];

	for (int i = 0; i < 5; i++) {
		uint8_t *der = NULL;
		size_t cert_len;
		int64_t not_after;

		if (moat_ca_sign(F.ca, "dev1", w->csr, w->csr_len, 30, NULL, &der, &cert_len,
				 w->serial[i], &not_after, err, sizeof(err)) != MOAT_OK)
			return NULL;
		X509 *x = cert_from(der, cert_len);
		char want[33];

		serial_hex_of(x, want);
		X509_free(x);
		free(der);
		if (strcmp(want, w->serial[i]) != 0)
			return NULL;
	}
	w->ok = 1;
	return NULL;
}

/* Concurrent callers each get their own answer. */
static void test_threads(void **state)
{
	(void)state;
	struct worker w[4];

	for (int i = 0; i < 4; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].csr = csr_make(F.p256, "dev1", "dev1", &w[i].csr_len);
		assert_int_equal(pthread_create(&w[i].t, NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(w[i].t, NULL), 0);
		assert_int_equal(w[i].ok, 1);
		free(w[i].csr);
	}
}

/* ---- Separate CA processes for the failure cases. */

static void test_killed_child(void **state)
{
	(void)state;
	struct moat_ca *ca = NULL;
	char err[512] = "";
	int64_t t0;
	pid_t pid;

	assert_int_equal(moat_ca_spawn(F.dir, &ca, err, sizeof(err)), MOAT_OK);
	pid = moat_ca_pid(ca);
	assert_true(pid > 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	t0 = mono_ms();
	assert_int_not_equal(moat_ca_ping(ca, err, sizeof(err)), MOAT_OK);
	assert_true(mono_ms() - t0 <= (int64_t)MOAT_CA_TIMEOUT_MS + 500);
	assert_non_null(strstr(err, "ca:"));
	/* Later calls fail too, and quickly. */
	t0 = mono_ms();
	{
		uint8_t *der = NULL;
		size_t len;

		assert_int_not_equal(moat_ca_cacerts(ca, &der, &len, err, sizeof(err)), MOAT_OK);
		assert_null(der);
	}
	assert_true(mono_ms() - t0 <= (int64_t)MOAT_CA_TIMEOUT_MS + 500);
	moat_ca_stop(ca);
	/* Reaped: no zombie left behind. */
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

/* A CA stopped by SIGSTOP does not answer: the call times out instead of
 * hanging, and stop still gets rid of it. */
static void test_stuck_child(void **state)
{
	(void)state;
	struct moat_ca *ca = NULL;
	char err[512] = "";
	int64_t t0, took;
	pid_t pid;

	assert_int_equal(moat_ca_spawn(F.dir, &ca, err, sizeof(err)), MOAT_OK);
	pid = moat_ca_pid(ca);
	assert_int_equal(kill(pid, SIGSTOP), 0);
	t0 = mono_ms();
	assert_int_equal(moat_ca_ping(ca, err, sizeof(err)), MOAT_E_IO);
	took = mono_ms() - t0;
	assert_true(took >= (int64_t)MOAT_CA_TIMEOUT_MS - 50);
	assert_true(took <= (int64_t)MOAT_CA_TIMEOUT_MS + 1000);
	assert_non_null(strstr(err, "did not answer"));
	/* Resumed, it answers the stale PING; the next call skips that
	 * answer and gets its own. */
	assert_int_equal(kill(pid, SIGCONT), 0);
	assert_int_equal(moat_ca_ping(ca, err, sizeof(err)), MOAT_OK);
	assert_int_equal(kill(pid, SIGSTOP), 0);
	t0 = mono_ms();
	moat_ca_stop(ca);
	/* A stopped process cannot exit on EOF: stop waits, then SIGKILLs. */
	assert_true(mono_ms() - t0 <= (int64_t)MOAT_CA_STOP_MS + 1000);
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void test_stop_no_zombie(void **state)
{
	(void)state;
	struct moat_ca *ca = NULL;
	char err[512] = "";
	int64_t t0;
	pid_t pid;

	assert_int_equal(moat_ca_spawn(F.dir, &ca, err, sizeof(err)), MOAT_OK);
	pid = moat_ca_pid(ca);
	assert_int_equal(moat_ca_ping(ca, err, sizeof(err)), MOAT_OK);
	t0 = mono_ms();
	moat_ca_stop(ca);
	/* EOF ends it at once; no SIGKILL wait. */
	assert_true(mono_ms() - t0 < 1000);
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	assert_int_equal(kill(pid, 0), -1);
	moat_ca_stop(NULL);
}

static void test_key_mode(void **state)
{
	(void)state;
	struct moat_ca *ca = NULL;
	char dir[256], key[300], err[1024] = "";

	assert_int_equal(mk_tmpdir(dir, sizeof(dir), "ca-mode"), 0);
	assert_int_equal(moat_pki_create_ca(dir, "Mode CA", err, sizeof(err)), MOAT_OK);
	snprintf(key, sizeof(key), "%s/ca.key", dir);
	assert_int_equal(chmod(key, 0644), 0);
	assert_int_equal(moat_ca_spawn(dir, &ca, err, sizeof(err)), MOAT_E_PERM);
	assert_null(ca);
	assert_non_null(strstr(err, "chmod 600"));
	assert_non_null(strstr(err, key));
	assert_non_null(strstr(err, "644"));
	/* After the fix it starts. */
	assert_int_equal(chmod(key, 0600), 0);
	assert_int_equal(moat_ca_spawn(dir, &ca, err, sizeof(err)), MOAT_OK);
	moat_ca_stop(ca);
	rm_rf(dir);
}

static void test_missing_ca(void **state)
{
	(void)state;
	struct moat_ca *ca = NULL;
	char dir[256], err[1024] = "";

	assert_int_equal(mk_tmpdir(dir, sizeof(dir), "ca-none"), 0);
	assert_int_equal(moat_ca_spawn(dir, &ca, err, sizeof(err)), MOAT_E_NOTFOUND);
	assert_null(ca);
	assert_non_null(strstr(err, "ca.key"));
	assert_int_equal(moat_ca_spawn(NULL, &ca, err, sizeof(err)), MOAT_E_INVAL);
	rm_rf(dir);
}

/* ---- The codec on its own. */

static void test_codec_requests(void **state)
{
	(void)state;
	struct moat_revoked list[2] = {{"00ff01", 1700000000}, {"ABCDEF", 1}};
	struct moat_ca_req req;
	struct moat_ca_entry e;
	struct moat_buf b;
	struct moat_rd r;
	const char *why = NULL;
	static const uint8_t csr[] = {0x30, 0x01, 0x00};

	moat_buf_init(&b, MOAT_CA_MSG_MAX);
	assert_int_equal(moat_ca_req_put_sign(&b, 5, "dev1", csr, sizeof(csr), NULL, 30, 300),
			 MOAT_OK);
	assert_int_equal(moat_ca_req_parse(moat_buf_head(&b), moat_buf_used(&b), &req, &why),
			 MOAT_OK);
	assert_int_equal(req.type, MOAT_CA_SIGN);
	assert_int_equal(req.seq, 5);
	assert_string_equal(req.device_id, "dev1");
	assert_int_equal(req.csr_len, sizeof(csr));
	assert_memory_equal(req.csr, csr, sizeof(csr));
	assert_int_equal(req.days, 30);
	assert_int_equal(req.skew_s, 300);
	/* Every strict prefix is refused. */
	for (size_t n = 0; n < moat_buf_used(&b); n++)
		assert_int_not_equal(moat_ca_req_parse(moat_buf_head(&b), n, &req, &why), MOAT_OK);
	moat_buf_reset(&b);

	assert_int_equal(moat_ca_req_put_crl(&b, 6, 1ull << 40, 60, 4096, list, 2), MOAT_OK);
	assert_int_equal(moat_ca_req_parse(moat_buf_head(&b), moat_buf_used(&b), &req, &why),
			 MOAT_OK);
	assert_int_equal(req.crl_number, 1ull << 40);
	assert_int_equal(req.start, 4096);
	assert_int_equal(req.n_revoked, 2);
	moat_rd_init(&r, req.revoked, req.revoked_len);
	assert_int_equal(moat_ca_entry_next(&r, &e), MOAT_OK);
	assert_int_equal(e.serial_len, 2);
	assert_int_equal(e.serial[0], 0xff);
	assert_int_equal(e.serial[1], 0x01);
	assert_int_equal(e.revoked_at, 1700000000);
	assert_int_equal(moat_ca_entry_next(&r, &e), MOAT_OK);
	assert_int_equal(e.serial_len, 3);
	assert_int_equal(moat_rd_left(&r), 0);
	moat_buf_reset(&b);

	/* Encoder refusals. */
	assert_int_equal(moat_ca_req_put_sign(&b, 1, "dev1", csr, 0, NULL, 30, 0), MOAT_E_INVAL);
	assert_int_equal(moat_ca_req_put_sign(&b, 1, "", csr, 3, NULL, 30, 0), MOAT_E_INVAL);
	assert_int_equal(moat_ca_req_put_sign(&b, 1, "dev1", csr, 3, NULL, 0, 0), MOAT_E_INVAL);
	assert_int_equal(moat_ca_req_put_simple(&b, MOAT_CA_SIGN, 1), MOAT_E_INVAL);
	list[0].revoked_at = 0;
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_crl(&b, 1, 1, 60, 0, list, 2), MOAT_E_INVAL);
	list[0].revoked_at = 1700000000;
	/* A chunk past the total limit, an empty CRL_ADD, an offset past any CRL. */
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_crl_add(&b, 1, MOAT_CRL_MAX_ENTRIES - 1, list, 2),
			 MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_crl_add(&b, 1, 0, list, 0), MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_crl_part(&b, 1, MOAT_CRL_DER_MAX), MOAT_E_INVAL);
	/* CRL_ADD and CRL_PART round trips. */
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_crl_add(&b, 7, 8192, list, 2), MOAT_OK);
	assert_int_equal(moat_ca_req_parse(moat_buf_head(&b), moat_buf_used(&b), &req, &why),
			 MOAT_OK);
	assert_int_equal(req.type, MOAT_CA_CRL_ADD);
	assert_int_equal(req.start, 8192);
	assert_int_equal(req.n_revoked, 2);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_crl_part(&b, 8, 131072), MOAT_OK);
	assert_int_equal(moat_ca_req_parse(moat_buf_head(&b), moat_buf_used(&b), &req, &why),
			 MOAT_OK);
	assert_int_equal(req.type, MOAT_CA_CRL_PART);
	assert_int_equal(req.offset, 131072);
	moat_buf_free(&b);
}

static void test_codec_answers(void **state)
{
	(void)state;
	struct moat_ca_ans ans;
	struct moat_buf b;
	static const uint8_t der[] = {0x30, 0x00};

	moat_buf_init(&b, MOAT_CA_MSG_MAX);
	assert_int_equal(moat_ca_ans_put_sign(&b, 9, der, sizeof(der),
					      "0123456789abcdef0123456789abcdef", 1800000000),
			 MOAT_OK);
	assert_int_equal(moat_ca_ans_parse(moat_buf_head(&b), moat_buf_used(&b), &ans), MOAT_OK);
	assert_int_equal(ans.type, MOAT_CA_SIGN);
	assert_int_equal(ans.seq, 9);
	assert_int_equal(ans.status, MOAT_OK);
	assert_int_equal(ans.der_len, 2);
	assert_string_equal(ans.serial, "0123456789abcdef0123456789abcdef");
	assert_int_equal(ans.not_after, 1800000000);
	for (size_t n = 0; n < moat_buf_used(&b); n++)
		assert_int_not_equal(moat_ca_ans_parse(moat_buf_head(&b), n, &ans), MOAT_OK);
	moat_buf_reset(&b);

	/* A CRL answer: the total and a first part no longer than it. */
	assert_int_equal(moat_ca_ans_put_crl(&b, 4, 1000, der, sizeof(der)), MOAT_OK);
	assert_int_equal(moat_ca_ans_parse(moat_buf_head(&b), moat_buf_used(&b), &ans), MOAT_OK);
	assert_int_equal(ans.total, 1000);
	assert_int_equal(ans.der_len, 2);
	for (size_t n = 0; n < moat_buf_used(&b); n++)
		assert_int_not_equal(moat_ca_ans_parse(moat_buf_head(&b), n, &ans), MOAT_OK);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_ans_put_crl(&b, 4, 1, der, sizeof(der)), MOAT_E_INVAL);
	assert_int_equal(moat_ca_ans_put_crl(&b, 4, MOAT_CRL_DER_MAX + 1, der, sizeof(der)),
			 MOAT_E_INVAL);
	moat_buf_reset(&b);

	assert_int_equal(moat_ca_ans_put_error(&b, MOAT_CA_CRL, 3, MOAT_E_DENIED, "no"), MOAT_OK);
	assert_int_equal(moat_ca_ans_parse(moat_buf_head(&b), moat_buf_used(&b), &ans), MOAT_OK);
	assert_int_equal(ans.status, MOAT_E_DENIED);
	assert_string_equal(ans.msg, "no");
	moat_buf_reset(&b);

	/* MOAT_OK is not an error status; the encoder says so. */
	assert_int_equal(moat_ca_ans_put_error(&b, MOAT_CA_PING, 3, MOAT_OK, NULL), MOAT_OK);
	assert_int_equal(moat_ca_ans_parse(moat_buf_head(&b), moat_buf_used(&b), &ans), MOAT_OK);
	assert_int_equal(ans.status, MOAT_E_INTERNAL);
	moat_buf_reset(&b);

	/* A status past the enum, an unknown answer type. */
	{
		static const uint8_t bad_status[] = {MOAT_CA_PING, 0, 0, 0, 1, 200};
		static const uint8_t bad_type[] = {99, 0, 0, 0, 1, 0};
		static const uint8_t ping_ok[] = {MOAT_CA_PING, 0, 0, 0, 1, 0};

		assert_int_equal(moat_ca_ans_parse(bad_status, sizeof(bad_status), &ans),
				 MOAT_E_MALFORMED);
		assert_int_equal(moat_ca_ans_parse(bad_type, sizeof(bad_type), &ans),
				 MOAT_E_PROTOCOL);
		assert_int_equal(moat_ca_ans_parse(ping_ok, sizeof(ping_ok), &ans), MOAT_OK);
	}
	moat_buf_free(&b);
}

static void test_serial_hex(void **state)
{
	(void)state;
	uint8_t out[MOAT_CA_SERIAL_MAX];
	size_t len = 0;

	assert_int_equal(moat_ca_serial_from_hex("1", out, &len), MOAT_OK);
	assert_int_equal(len, 1);
	assert_int_equal(out[0], 1);
	assert_int_equal(moat_ca_serial_from_hex("000abc", out, &len), MOAT_OK);
	assert_int_equal(len, 2);
	assert_int_equal(out[0], 0x0a);
	assert_int_equal(out[1], 0xbc);
	assert_int_equal(
	    moat_ca_serial_from_hex("7fffffffffffffffffffffffffffffffffffffff", out, &len),
	    MOAT_OK);
	assert_int_equal(len, 20);
	/* 20 octets with the top bit set need a 21st in DER. */
	assert_int_equal(
	    moat_ca_serial_from_hex("8000000000000000000000000000000000000000", out, &len),
	    MOAT_E_INVAL);
	assert_int_equal(
	    moat_ca_serial_from_hex("00000000000000000000000000000000000000001", out, &len),
	    MOAT_E_INVAL); /* 41 digits */
	assert_int_equal(moat_ca_serial_from_hex("0", out, &len), MOAT_E_INVAL);
	assert_int_equal(moat_ca_serial_from_hex("", out, &len), MOAT_E_INVAL);
	assert_int_equal(moat_ca_serial_from_hex("12g4", out, &len), MOAT_E_INVAL);
	assert_int_equal(moat_ca_serial_from_hex("-1", out, &len), MOAT_E_INVAL);
	assert_int_equal(moat_ca_serial_from_hex(NULL, out, &len), MOAT_E_INVAL);
}

/* ---- Key slots: the audit signing key and the sealing key. */

static void test_key_files_created(void **state)
{
	(void)state;
	char path[400];
	struct stat st;

	/* The key process made them for this new directory, private. */
	snprintf(path, sizeof(path), "%s/audit.key", F.dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(path, sizeof(path), "%s/seal.key", F.dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(path, sizeof(path), "%s/audit.pub", F.dir);
	assert_int_equal(stat(path, &st), 0);
}

static void test_audit_sign(void **state)
{
	(void)state;
	uint8_t pk[MOAT_AUDIT_PK_LEN], sig[MOAT_KEY_SIG_MAX], payload[MOAT_KEY_AUDIT_PAYLOAD];
	struct moat_audit_checkpoint c;
	char path[400], err[1024] = "";
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/audit.pub", F.dir);
	assert_int_equal(moat_audit_pub_load(path, pk, err, sizeof(err)), MOAT_OK);
	memset(&c, 0, sizeof(c));
	c.seq = 42;
	c.ts_ms = 1700000000123;
	memset(c.head, 0xab, sizeof(c.head));
	assert_int_equal(moat_ca_audit_sign(F.ca, &c), MOAT_OK);
	assert_true(moat_audit_checkpoint_ok(&c, pk));
	/* The signature covers seq, time and head. */
	c.seq = 43;
	assert_false(moat_audit_checkpoint_ok(&c, pk));

	/* Only 48 bytes: the slot signs checkpoints and nothing else. */
	memset(payload, 1, sizeof(payload));
	assert_int_equal(moat_ca_key_sign(F.ca, MOAT_KEY_AUDIT, payload, sizeof(payload) - 1, sig,
					  sizeof(sig), &len, err, sizeof(err)),
			 MOAT_E_INVAL);
	assert_non_null(strstr(err, "48 bytes"));
	/* A sealing slot does not sign; a reserved slot holds nothing. */
	assert_int_equal(moat_ca_key_sign(F.ca, MOAT_KEY_SECRETS, payload, sizeof(payload), sig,
					  sizeof(sig), &len, err, sizeof(err)),
			 MOAT_E_NOTFOUND);
	assert_int_equal(moat_ca_key_sign(F.ca, 3, payload, sizeof(payload), sig, sizeof(sig), &len,
					  err, sizeof(err)),
			 MOAT_E_NOTFOUND);
	assert_int_equal(moat_ca_key_sign(F.ca, 16, payload, sizeof(payload), sig, sizeof(sig),
					  &len, err, sizeof(err)),
			 MOAT_E_INVAL);
	assert_int_equal(moat_ca_ping(F.ca, err, sizeof(err)), MOAT_OK);
}

static void test_seal(void **state)
{
	(void)state;
	static const uint8_t secret[20] = "0123456789abcdefghij";
	static const uint8_t ad[] = "totp_secret\0alice";
	static const uint8_t ad2[] = "totp_secret\0bob";
	uint8_t blob[MOAT_KEY_SEAL_OVERHEAD + MOAT_KEY_SEAL_MAX];
	uint8_t blob2[MOAT_KEY_SEAL_OVERHEAD + MOAT_KEY_SEAL_MAX];
	uint8_t pt[MOAT_KEY_SEAL_MAX];
	uint8_t big[MOAT_KEY_SEAL_MAX + 1];
	char err[1024] = "";
	size_t len = 0, len2 = 0, plen = 0;

	assert_int_equal(moat_ca_seal(F.ca, MOAT_KEY_SECRETS, ad, sizeof(ad), secret,
				      sizeof(secret), blob, sizeof(blob), &len, err, sizeof(err)),
			 MOAT_OK);
	assert_int_equal(len, sizeof(secret) + MOAT_KEY_SEAL_OVERHEAD);
	assert_memory_equal(blob, MOAT_KEY_SEAL_TAG, MOAT_KEY_SEAL_TAG_LEN);
	/* The plaintext does not appear in the blob. */
	for (size_t i = 0; i + 8 <= len; i++)
		assert_memory_not_equal(blob + i, secret, 8);
	/* A fresh nonce every time. */
	assert_int_equal(moat_ca_seal(F.ca, MOAT_KEY_SECRETS, ad, sizeof(ad), secret,
				      sizeof(secret), blob2, sizeof(blob2), &len2, err,
				      sizeof(err)),
			 MOAT_OK);
	assert_int_equal(len2, len);
	assert_memory_not_equal(blob, blob2, len);

	assert_int_equal(moat_ca_unseal(F.ca, MOAT_KEY_SECRETS, ad, sizeof(ad), blob, len, pt,
					sizeof(pt), &plen, err, sizeof(err)),
			 MOAT_OK);
	assert_int_equal(plen, sizeof(secret));
	assert_memory_equal(pt, secret, sizeof(secret));

	/* Another row's associated data, a flipped bit, a wrong tag. */
	assert_int_equal(moat_ca_unseal(F.ca, MOAT_KEY_SECRETS, ad2, sizeof(ad2), blob, len, pt,
					sizeof(pt), &plen, err, sizeof(err)),
			 MOAT_E_CRYPTO);
	assert_non_null(strstr(err, "does not open"));
	assert_int_equal(moat_ca_unseal(F.ca, MOAT_KEY_SECRETS, NULL, 0, blob, len, pt, sizeof(pt),
					&plen, err, sizeof(err)),
			 MOAT_E_CRYPTO);
	blob[len - 1] ^= 1;
	assert_int_equal(moat_ca_unseal(F.ca, MOAT_KEY_SECRETS, ad, sizeof(ad), blob, len, pt,
					sizeof(pt), &plen, err, sizeof(err)),
			 MOAT_E_CRYPTO);
	blob[len - 1] ^= 1;
	blob[0] = 'X';
	assert_int_equal(moat_ca_unseal(F.ca, MOAT_KEY_SECRETS, ad, sizeof(ad), blob, len, pt,
					sizeof(pt), &plen, err, sizeof(err)),
			 MOAT_E_CRYPTO);
	blob[0] = 'M';

	/* A signing slot does not seal; sizes are checked on both sides. */
	assert_int_equal(moat_ca_seal(F.ca, MOAT_KEY_AUDIT, ad, sizeof(ad), secret, sizeof(secret),
				      blob2, sizeof(blob2), &len2, err, sizeof(err)),
			 MOAT_E_NOTFOUND);
	assert_int_equal(moat_ca_unseal(F.ca, 5, ad, sizeof(ad), blob, len, pt, sizeof(pt), &plen,
					err, sizeof(err)),
			 MOAT_E_NOTFOUND);
	memset(big, 7, sizeof(big));
	assert_int_equal(moat_ca_seal(F.ca, MOAT_KEY_SECRETS, ad, sizeof(ad), big, sizeof(big),
				      blob2, sizeof(blob2), &len2, err, sizeof(err)),
			 MOAT_E_INVAL);
	assert_int_equal(moat_ca_unseal(F.ca, MOAT_KEY_SECRETS, ad, sizeof(ad), blob,
					MOAT_KEY_SEAL_OVERHEAD, pt, sizeof(pt), &plen, err,
					sizeof(err)),
			 MOAT_E_INVAL);
	/* An answer that does not fit the caller's buffer. */
	assert_int_equal(moat_ca_unseal(F.ca, MOAT_KEY_SECRETS, ad, sizeof(ad), blob, len, pt, 4,
					&plen, err, sizeof(err)),
			 MOAT_E_LIMIT);
	/* Still the same key after all that. */
	assert_int_equal(moat_ca_unseal(F.ca, MOAT_KEY_SECRETS, ad, sizeof(ad), blob, len, pt,
					sizeof(pt), &plen, err, sizeof(err)),
			 MOAT_OK);
}

/* Raw hostile key-slot messages get error answers; the process goes on. */
static void test_key_raw(void **state)
{
	(void)state;
	/* KEY_SIGN slot 0; SEAL with an associated data length past the
	 * message; UNSEAL with a short blob; SEAL with a byte left over. */
	static const uint8_t slot0[] = {MOAT_CA_KEY_SIGN, 0, 0, 0, 7, 0, 0, 0, 0, 1, 'x'};
	static const uint8_t long_ad[] = {MOAT_CA_SEAL, 0, 0, 0, 8, 2, 0, 0, 1, 0, 'a'};
	static const uint8_t short_blob[] = {
	    MOAT_CA_UNSEAL, 0, 0, 0, 9, 2, 0, 0, 0, 0, 0, 0, 0, 1, 'M'};
	static const uint8_t extra[] = {MOAT_CA_SEAL, 0,  0, 0, 10, 2, 0, 0, 0, 0, 0, 0, 0, 1,
					'x',	      'y'};
	const struct {
		const uint8_t *p;
		size_t n;
		moat_err want;
	} cases[] = {
	    {slot0, sizeof(slot0), MOAT_E_INVAL},
	    {long_ad, sizeof(long_ad), MOAT_E_MALFORMED},
	    {short_blob, sizeof(short_blob), MOAT_E_INVAL},
	    {extra, sizeof(extra), MOAT_E_MALFORMED},
	};
	struct moat_ca_ans ans;
	char err[1024] = "";
	size_t i, n;
	uint8_t *a;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(moat_ca_raw_request(F.ca, cases[i].p, cases[i].n, &a, &n),
				 MOAT_OK);
		assert_int_equal(moat_ca_ans_parse(a, n, &ans), MOAT_OK);
		assert_int_equal(ans.status, cases[i].want);
		assert_int_equal(ans.type, cases[i].p[0]);
		free(a);
	}
	assert_int_equal(moat_ca_ping(F.ca, err, sizeof(err)), MOAT_OK);
}

/* The keys outlive the process: a second key process on the same directory
 * opens what the first sealed and signs with the same audit key, and a key
 * file others can read is refused. */
static void test_keys_persist(void **state)
{
	(void)state;
	static const uint8_t secret[] = "persistent";
	uint8_t blob[MOAT_KEY_SEAL_OVERHEAD + MOAT_KEY_SEAL_MAX], pt[MOAT_KEY_SEAL_MAX];
	uint8_t pk[MOAT_AUDIT_PK_LEN];
	struct moat_audit_checkpoint c;
	struct moat_ca *ca = NULL;
	char dir[256], path[400], err[1024] = "";
	size_t len = 0, plen = 0;

	assert_int_equal(mk_tmpdir(dir, sizeof(dir), "ca-keys"), 0);
	assert_int_equal(moat_pki_create_ca(dir, "Keys CA", err, sizeof(err)), MOAT_OK);
	assert_int_equal(moat_ca_spawn(dir, &ca, err, sizeof(err)), MOAT_OK);
	assert_int_equal(moat_ca_seal(ca, MOAT_KEY_SECRETS, NULL, 0, secret, sizeof(secret), blob,
				      sizeof(blob), &len, err, sizeof(err)),
			 MOAT_OK);
	moat_ca_stop(ca);
	ca = NULL;
	assert_int_equal(moat_ca_spawn(dir, &ca, err, sizeof(err)), MOAT_OK);
	assert_int_equal(moat_ca_unseal(ca, MOAT_KEY_SECRETS, NULL, 0, blob, len, pt, sizeof(pt),
					&plen, err, sizeof(err)),
			 MOAT_OK);
	assert_memory_equal(pt, secret, sizeof(secret));
	snprintf(path, sizeof(path), "%s/audit.pub", dir);
	assert_int_equal(moat_audit_pub_load(path, pk, err, sizeof(err)), MOAT_OK);
	memset(&c, 0, sizeof(c));
	c.seq = 1;
	c.ts_ms = 1;
	assert_int_equal(moat_ca_audit_sign(ca, &c), MOAT_OK);
	assert_true(moat_audit_checkpoint_ok(&c, pk));
	moat_ca_stop(ca);
	ca = NULL;

	snprintf(path, sizeof(path), "%s/seal.key", dir);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(moat_ca_spawn(dir, &ca, err, sizeof(err)), MOAT_E_PERM);
	assert_null(ca);
	assert_non_null(strstr(err, "seal.key"));
	assert_int_equal(chmod(path, 0600), 0);
	snprintf(path, sizeof(path), "%s/audit.key", dir);
	assert_int_equal(chmod(path, 0604), 0);
	assert_int_equal(moat_ca_spawn(dir, &ca, err, sizeof(err)), MOAT_E_PERM);
	assert_null(ca);
	assert_non_null(strstr(err, "audit.key"));
	rm_rf(dir);
}

static void test_codec_keys(void **state)
{
	(void)state;
	static const uint8_t payload[MOAT_KEY_AUDIT_PAYLOAD] = {1, 2, 3};
	static const uint8_t ad[] = "ad";
	uint8_t sealed[MOAT_KEY_SEAL_OVERHEAD + 3] = "MKS1";
	uint8_t big[MOAT_KEY_SIGN_MAX + 1];
	struct moat_ca_req req;
	struct moat_ca_ans ans;
	struct moat_buf b;
	const char *why = NULL;

	moat_buf_init(&b, MOAT_CA_MSG_MAX);
	assert_int_equal(moat_ca_req_put_key_sign(&b, 5, MOAT_KEY_AUDIT, payload, sizeof(payload)),
			 MOAT_OK);
	assert_int_equal(moat_ca_req_parse(moat_buf_head(&b), moat_buf_used(&b), &req, &why),
			 MOAT_OK);
	assert_int_equal(req.type, MOAT_CA_KEY_SIGN);
	assert_int_equal(req.seq, 5);
	assert_int_equal(req.slot, MOAT_KEY_AUDIT);
	assert_int_equal(req.data_len, sizeof(payload));
	assert_memory_equal(req.data, payload, sizeof(payload));
	/* One byte short of the message: refused, not read past. */
	assert_int_equal(moat_ca_req_parse(moat_buf_head(&b), moat_buf_used(&b) - 1, &req, &why),
			 MOAT_E_MALFORMED);
	moat_buf_reset(&b);

	assert_int_equal(moat_ca_req_put_seal(&b, MOAT_CA_SEAL, 6, MOAT_KEY_SECRETS, ad, sizeof(ad),
					      payload, 20),
			 MOAT_OK);
	assert_int_equal(moat_ca_req_parse(moat_buf_head(&b), moat_buf_used(&b), &req, &why),
			 MOAT_OK);
	assert_int_equal(req.type, MOAT_CA_SEAL);
	assert_int_equal(req.ad_len, sizeof(ad));
	assert_int_equal(req.data_len, 20);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_seal(&b, MOAT_CA_UNSEAL, 7, MOAT_KEY_SECRETS, NULL, 0,
					      sealed, sizeof(sealed)),
			 MOAT_OK);
	assert_int_equal(moat_ca_req_parse(moat_buf_head(&b), moat_buf_used(&b), &req, &why),
			 MOAT_OK);
	assert_int_equal(req.ad_len, 0);
	assert_int_equal(req.data_len, sizeof(sealed));
	moat_buf_reset(&b);

	/* The encoders refuse what the parser would. */
	memset(big, 0, sizeof(big));
	assert_int_equal(moat_ca_req_put_key_sign(&b, 1, MOAT_KEY_AUDIT, big, sizeof(big)),
			 MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_key_sign(&b, 1, 0, payload, sizeof(payload)),
			 MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_seal(&b, MOAT_CA_SEAL, 1, MOAT_KEY_SECRETS, ad, sizeof(ad),
					      big, MOAT_KEY_SEAL_MAX + 1),
			 MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_seal(&b, MOAT_CA_SEAL, 1, MOAT_KEY_SECRETS, big,
					      MOAT_KEY_AD_MAX + 1, payload, 1),
			 MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_req_put_seal(&b, MOAT_CA_UNSEAL, 1, MOAT_KEY_SECRETS, NULL, 0,
					      sealed, MOAT_KEY_SEAL_OVERHEAD),
			 MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(
	    moat_ca_req_put_seal(&b, MOAT_CA_PING, 1, MOAT_KEY_SECRETS, NULL, 0, payload, 1),
	    MOAT_E_INVAL);
	moat_buf_reset(&b);

	/* Answers: each blob within its type's bounds. */
	assert_int_equal(moat_ca_ans_put_der(&b, MOAT_CA_KEY_SIGN, 8, big, MOAT_AUDIT_SIG_LEN),
			 MOAT_OK);
	assert_int_equal(moat_ca_ans_parse(moat_buf_head(&b), moat_buf_used(&b), &ans), MOAT_OK);
	assert_int_equal(ans.der_len, MOAT_AUDIT_SIG_LEN);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_ans_put_der(&b, MOAT_CA_KEY_SIGN, 8, big, MOAT_KEY_SIG_MAX + 1),
			 MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_ans_put_der(&b, MOAT_CA_SEAL, 8, big, MOAT_KEY_SEAL_OVERHEAD),
			 MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_ans_put_der(&b, MOAT_CA_UNSEAL, 8, big, MOAT_KEY_SEAL_MAX + 1),
			 MOAT_E_INVAL);
	moat_buf_reset(&b);
	assert_int_equal(moat_ca_ans_put_der(&b, MOAT_CA_UNSEAL, 8, payload, 20), MOAT_OK);
	assert_int_equal(moat_ca_ans_parse(moat_buf_head(&b), moat_buf_used(&b), &ans), MOAT_OK);
	assert_int_equal(ans.type, MOAT_CA_UNSEAL);
	assert_int_equal(ans.der_len, 20);
	moat_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec_requests), cmocka_unit_test(test_codec_answers),
	    cmocka_unit_test(test_codec_keys),	   cmocka_unit_test(test_serial_hex),
	    cmocka_unit_test(test_sign_profiles),  cmocka_unit_test(test_sign_refused),
	    cmocka_unit_test(test_serials_unique), cmocka_unit_test(test_crl),
	    cmocka_unit_test(test_crl_full),	   cmocka_unit_test(test_crl_stream_refused),
	    cmocka_unit_test(test_renew_server),   cmocka_unit_test(test_crl_url_default),
	    cmocka_unit_test(test_cacerts),	   cmocka_unit_test(test_key_files_created),
	    cmocka_unit_test(test_audit_sign),	   cmocka_unit_test(test_seal),
	    cmocka_unit_test(test_key_raw),	   cmocka_unit_test(test_malformed_requests),
	    cmocka_unit_test(test_sandboxed),	   cmocka_unit_test(test_killed_child),
	    cmocka_unit_test(test_stuck_child),	   cmocka_unit_test(test_stop_no_zombie),
	    cmocka_unit_test(test_key_mode),	   cmocka_unit_test(test_missing_ca),
	    cmocka_unit_test(test_keys_persist),   cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
