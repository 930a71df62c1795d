/*
 * Tests for src/pki (the local CA) and src/tls (server policy and device
 * identity). A CA, a server and a device certificate are made once in a
 * mkdtemp directory; handshakes run in memory over BIO pairs. Wherever a
 * test expects a handshake to fail, a permissive server proves the same
 * client could connect, so the failure is Moat's policy and not a broken
 * client.
 */
/* nftw() is X/Open. */
#define _XOPEN_SOURCE 700

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/limits.h"
#include "pki/pki.h"
#include "tls/tickets.h"
#include "tls/tls.h"

#define DEVICE_ID "sensor-01.hall_2"

struct fx {
	char dir[256];
	char ca_crt[300];
	char ca_key[300];
	char srv_crt[300];
	char srv_key[300];
	char dev_crt[300];
	char dev_key[300];
	char other_dir[300]; /* a second, unrelated CA */
	char other_ca[300];
	char other_crt[300];
	char other_key[300];
};

static struct fx F;

static void join(char *out, size_t n, const char *dir, const char *name)
{
	int r = snprintf(out, n, "%s/%s", dir, name);

	assert_true(r > 0 && (size_t)r < n);
}

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

static int setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	const char *extra[] = {"mqtt.example.com", "10.1.2.3", "fd00::7"};
	char err[512] = "";
	int r;

	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	r = snprintf(F.dir, sizeof(F.dir), "%s/moat-tls-XXXXXX", tmp);
	if (r < 0 || (size_t)r >= sizeof(F.dir) || mkdtemp(F.dir) == NULL)
		return -1;
	join(F.ca_crt, sizeof(F.ca_crt), F.dir, "ca.crt");
	join(F.ca_key, sizeof(F.ca_key), F.dir, "ca.key");
	join(F.srv_crt, sizeof(F.srv_crt), F.dir, "server.crt");
	join(F.srv_key, sizeof(F.srv_key), F.dir, "server.key");
	join(F.dev_crt, sizeof(F.dev_crt), F.dir, "dev.crt");
	join(F.dev_key, sizeof(F.dev_key), F.dir, "dev.key");
	join(F.other_dir, sizeof(F.other_dir), F.dir, "other");
	join(F.other_ca, sizeof(F.other_ca), F.other_dir, "ca.crt");
	join(F.other_crt, sizeof(F.other_crt), F.other_dir, "dev.crt");
	join(F.other_key, sizeof(F.other_key), F.other_dir, "dev.key");
	if (mkdir(F.other_dir, 0700) != 0)
		return -1;
	if (moat_pki_create_ca(F.dir, "Moat Test CA", err, sizeof(err)) != MOAT_OK ||
	    moat_pki_create_server(F.dir, extra, 3, err, sizeof(err)) != MOAT_OK ||
	    moat_pki_issue_device(F.dir, DEVICE_ID, 30, NULL, F.dev_key, F.dev_crt, err,
				  sizeof(err)) != MOAT_OK ||
	    moat_pki_create_ca(F.other_dir, "Other CA", err, sizeof(err)) != MOAT_OK ||
	    moat_pki_issue_device(F.other_dir, DEVICE_ID, 30, NULL, F.other_key, F.other_crt, err,
				  sizeof(err)) != MOAT_OK) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rm_rf(F.dir);
	return 0;
}

static X509 *cert_load(const char *path)
{
	BIO *bio = BIO_new_file(path, "r");
	X509 *x;

	assert_non_null(bio);
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	assert_non_null(x);
	return x;
}

/* X509_verify_cert of leaf against the CA file for a TLS purpose, with
 * strict checks; returns the verification error (X509_V_OK on success). */
static int chain_verify(X509 *leaf, const char *ca_path, int purpose)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok, e;

	assert_non_null(store);
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_load_file(store, ca_path), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
	assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
	X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
	ok = X509_verify_cert(ctx);
	e = X509_STORE_CTX_get_error(ctx);
	assert_true((ok == 1) == (e == X509_V_OK));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	ERR_clear_error();
	return e;
}

static mode_t file_mode(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static void file_read(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	size_t got;

	assert_non_null(f);
	got = fread(buf, 1, n - 1, f);
	buf[got] = '\0';
	fclose(f);
}

/* ---- device ids ---------------------------------------------------------- */

static void test_device_id_table(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		bool ok;
	} cases[] = {
	    {"a", true},       {"0", true},	 {"sensor-01", true},
	    {"a.b_c-d", true}, {"9lives", true}, {"a..", true},
	    {"", false},       {"-a", false},	 {".a", false},
	    {"_a", false},     {"A", false},	 {"sensorA", false},
	    {"a b", false},    {"a/b", false},	 {"a:b", false},
	    {"a+b", false},    {"a\\b", false},	 {"caf\xc3\xa9", false},
	    {"a\tb", false},   {"a*", false},	 {"a#", false},
	};
	char max[MOAT_DEVICE_ID_MAX + 2];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = moat_device_id_valid(cases[i].s, strlen(cases[i].s));

		if (got != cases[i].ok)
			fail_msg("device id \"%s\": got %d", cases[i].s, got);
	}
	memset(max, 'x', sizeof(max));
	assert_true(moat_device_id_valid(max, MOAT_DEVICE_ID_MAX));
	assert_false(moat_device_id_valid(max, MOAT_DEVICE_ID_MAX + 1));
	/* Only n bytes count: an embedded NUL is just another bad byte. */
	assert_false(moat_device_id_valid("ab\0c", 4));
	assert_true(moat_device_id_valid("ab\0c", 2));
	assert_false(moat_device_id_valid(NULL, 1));
	assert_false(moat_device_id_valid("a", 0));
}

/* ---- pki ----------------------------------------------------------------- */

static void test_pki_file_modes(void **state)
{
	(void)state;
	char pem[4096];

	assert_int_equal(file_mode(F.ca_key), 0600);
	assert_int_equal(file_mode(F.srv_key), 0600);
	assert_int_equal(file_mode(F.dev_key), 0600);
	assert_int_equal(file_mode(F.ca_crt), 0644);
	assert_int_equal(file_mode(F.srv_crt), 0644);
	assert_int_equal(file_mode(F.dev_crt), 0644);
	/* PKCS#8, unencrypted. */
	file_read(F.dev_key, pem, sizeof(pem));
	assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
	/* No temp files left behind. */
	{
		char tmp[320];

		join(tmp, sizeof(tmp), F.dir, "ca.key.tmp");
		assert_int_not_equal(access(tmp, F_OK), 0);
		join(tmp, sizeof(tmp), F.dir, "server.crt.tmp");
		assert_int_not_equal(access(tmp, F_OK), 0);
	}
}

static void test_pki_existing_key_refused(void **state)
{
	(void)state;
	char before[4096], after[4096], crt_before[4096], crt_after[4096];
	char err[512] = "";

	file_read(F.ca_key, before, sizeof(before));
	file_read(F.ca_crt, crt_before, sizeof(crt_before));
	assert_int_equal(moat_pki_create_ca(F.dir, "Again", err, sizeof(err)), MOAT_E_EXISTS);
	assert_non_null(strstr(err, "ca.key"));
	file_read(F.ca_key, after, sizeof(after));
	file_read(F.ca_crt, crt_after, sizeof(crt_after));
	assert_string_equal(before, after);
	assert_string_equal(crt_before, crt_after);

	file_read(F.srv_key, before, sizeof(before));
	assert_int_equal(moat_pki_create_server(F.dir, NULL, 0, err, sizeof(err)), MOAT_E_EXISTS);
	file_read(F.srv_key, after, sizeof(after));
	assert_string_equal(before, after);
}

static void test_pki_ca_cert(void **state)
{
	(void)state;
	X509 *ca = cert_load(F.ca_crt);
	uint32_t ku;

	assert_int_equal(X509_get_version(ca), X509_VERSION_3);
	assert_int_equal(X509_check_ca(ca), 1);
	assert_int_equal(X509_get_pathlen(ca), 1);
	ku = X509_get_key_usage(ca);
	assert_true(ku & KU_KEY_CERT_SIGN);
	assert_true(ku & KU_CRL_SIGN);
	assert_false(ku & KU_DIGITAL_SIGNATURE);
	assert_non_null(X509_get0_subject_key_id(ca));
	assert_true(X509_get_extension_flags(ca) & EXFLAG_SS);
	assert_int_equal(X509_get_signature_nid(ca), NID_ecdsa_with_SHA256);
	assert_int_equal(chain_verify(ca, F.ca_crt, X509_PURPOSE_ANY), X509_V_OK);
	X509_free(ca);
}

/* The serial is positive, at most 20 octets, and differs between certs. */
static void test_pki_serials(void **state)
{
	(void)state;
	X509 *a = cert_load(F.srv_crt);
	X509 *b = cert_load(F.dev_crt);
	BIGNUM *sa = ASN1_INTEGER_to_BN(X509_get0_serialNumber(a), NULL);
	BIGNUM *sb = ASN1_INTEGER_to_BN(X509_get0_serialNumber(b), NULL);

	assert_non_null(sa);
	assert_non_null(sb);
	assert_false(BN_is_negative(sa));
	assert_false(BN_is_zero(sa));
	assert_true(BN_num_bits(sa) <= 128);
	/* 2^-64 chance of a false failure. */
	assert_true(BN_num_bits(sa) > 64);
	assert_int_not_equal(BN_cmp(sa, sb), 0);
	/* Backdated about 5 minutes for clock skew, not more. */
	{
		time_t lo = time(NULL) - 3600;
		time_t hi = time(NULL) - 240;

		assert_true(X509_cmp_time(X509_get0_notBefore(a), &hi) < 0);
		assert_true(X509_cmp_time(X509_get0_notBefore(a), &lo) > 0);
	}
	BN_free(sa);
	BN_free(sb);
	X509_free(a);
	X509_free(b);
}

static void test_pki_server_cert(void **state)
{
	(void)state;
	X509 *srv = cert_load(F.srv_crt);
	X509 *ca = cert_load(F.ca_crt);
	GENERAL_NAMES *gens;
	const ASN1_OCTET_STRING *akid;
	uint32_t ku;

	assert_int_equal(chain_verify(srv, F.ca_crt, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	assert_int_equal(chain_verify(srv, F.ca_crt, X509_PURPOSE_SSL_CLIENT),
			 X509_V_ERR_INVALID_PURPOSE);
	assert_int_equal(X509_check_host(srv, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(srv, "mqtt.example.com", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(srv, "other.example.com", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(srv, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(srv, "::1", 0), 1);
	assert_int_equal(X509_check_ip_asc(srv, "10.1.2.3", 0), 1);
	assert_int_equal(X509_check_ip_asc(srv, "fd00::7", 0), 1);
	assert_int_equal(X509_check_ip_asc(srv, "10.1.2.4", 0), 0);
	gens = X509_get_ext_d2i(srv, NID_subject_alt_name, NULL, NULL);
	assert_non_null(gens);
	assert_int_equal(sk_GENERAL_NAME_num(gens), 6);
	GENERAL_NAMES_free(gens);

	assert_int_equal(X509_check_ca(srv), 0);
	ku = X509_get_key_usage(srv);
	assert_int_equal(ku, KU_DIGITAL_SIGNATURE);
	assert_true(X509_get_extended_key_usage(srv) & XKU_SSL_SERVER);
	assert_false(X509_get_extended_key_usage(srv) & XKU_SSL_CLIENT);
	akid = X509_get0_authority_key_id(srv);
	assert_non_null(akid);
	assert_int_equal(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(ca)), 0);
	X509_free(srv);
	X509_free(ca);
}

static void test_pki_server_bad_san(void **state)
{
	(void)state;
	char dir[320], err[512] = "";
	const char *bad[] = {"ok.example", "evil.example,URI:moat:device:x"};
	const char *wild[] = {"*.example.com"};
	struct stat st;

	/* Use a fresh dir holding a copy of the CA so no server key exists. */
	join(dir, sizeof(dir), F.dir, "badsan");
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(moat_pki_create_ca(dir, "Bad SAN CA", err, sizeof(err)), MOAT_OK);
	assert_int_equal(moat_pki_create_server(dir, bad, 2, err, sizeof(err)), MOAT_E_INVAL);
	assert_non_null(strstr(err, "evil.example"));
	assert_int_equal(moat_pki_create_server(dir, wild, 1, err, sizeof(err)), MOAT_E_INVAL);
	{
		char p[400];

		join(p, sizeof(p), dir, "server.key");
		assert_int_not_equal(stat(p, &st), 0);
	}
}

static void test_pki_device_cert(void **state)
{
	(void)state;
	X509 *dev = cert_load(F.dev_crt);
	char id[MOAT_DEVICE_ID_MAX + 1];
	X509_NAME *subj = X509_get_subject_name(dev);
	char cn[128];

	assert_int_equal(chain_verify(dev, F.ca_crt, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	/* A device certificate must not work as a server certificate. */
	assert_int_equal(chain_verify(dev, F.ca_crt, X509_PURPOSE_SSL_SERVER),
			 X509_V_ERR_INVALID_PURPOSE);
	/* Nor against another CA. */
	assert_int_equal(chain_verify(dev, F.other_ca, X509_PURPOSE_SSL_CLIENT),
			 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	assert_int_equal(X509_check_ca(dev), 0);
	assert_int_equal(X509_get_key_usage(dev), KU_DIGITAL_SIGNATURE);
	assert_true(X509_get_extended_key_usage(dev) & XKU_SSL_CLIENT);
	assert_false(X509_get_extended_key_usage(dev) & XKU_SSL_SERVER);
	assert_int_equal(X509_NAME_get_text_by_NID(subj, NID_commonName, cn, sizeof(cn)),
			 (int)strlen(DEVICE_ID));
	assert_string_equal(cn, DEVICE_ID);
	assert_int_equal(moat_tls_cert_identity(dev, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, DEVICE_ID);
	/* Too small an output buffer is an error, not a truncated id. */
	assert_int_not_equal(moat_tls_cert_identity(dev, id, strlen(DEVICE_ID)), MOAT_OK);
	X509_free(dev);

	dev = cert_load(F.other_crt);
	assert_int_equal(chain_verify(dev, F.ca_crt, X509_PURPOSE_SSL_CLIENT),
			 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	X509_free(dev);
}

static void test_pki_device_invalid_id(void **state)
{
	(void)state;
	char toolong[MOAT_DEVICE_ID_MAX + 2];
	const char *const bad[] = {"", "Sensor", "-x", "a/b", "../x", "a b", toolong};
	char key[320], crt[320], err[512];
	size_t i;

	memset(toolong, 'x', sizeof(toolong) - 1);
	toolong[sizeof(toolong) - 1] = '\0';
	join(key, sizeof(key), F.dir, "bad.key");
	join(crt, sizeof(crt), F.dir, "bad.crt");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(
		    moat_pki_issue_device(F.dir, bad[i], 30, NULL, key, crt, err, sizeof(err)),
		    MOAT_E_INVAL);
		assert_non_null(strstr(err, "invalid device id"));
		assert_int_not_equal(access(key, F_OK), 0);
		assert_int_not_equal(access(crt, F_OK), 0);
	}
	assert_int_equal(moat_pki_issue_device(F.dir, "ok", 0, NULL, key, crt, err, sizeof(err)),
			 MOAT_E_INVAL);
	/* Longer than the CA's own life. */
	assert_int_equal(
	    moat_pki_issue_device(F.dir, "ok", 20 * 365, NULL, key, crt, err, sizeof(err)),
	    MOAT_E_INVAL);
	assert_int_not_equal(access(key, F_OK), 0);
}

static void test_pki_ca_key_mode(void **state)
{
	(void)state;
	char key[320], crt[320], err[512] = "";

	join(key, sizeof(key), F.dir, "perm.key");
	join(crt, sizeof(crt), F.dir, "perm.crt");
	assert_int_equal(chmod(F.ca_key, 0640), 0);
	assert_int_equal(moat_pki_issue_device(F.dir, "perm", 30, NULL, key, crt, err, sizeof(err)),
			 MOAT_E_PERM);
	assert_non_null(strstr(err, "chmod 600"));
	assert_non_null(strstr(err, F.ca_key));
	assert_int_equal(chmod(F.ca_key, 0604), 0);
	assert_int_equal(moat_pki_issue_device(F.dir, "perm", 30, NULL, key, crt, err, sizeof(err)),
			 MOAT_E_PERM);
	assert_int_equal(chmod(F.ca_key, 0600), 0);
	assert_int_equal(moat_pki_issue_device(F.dir, "perm", 30, NULL, key, crt, err, sizeof(err)),
			 MOAT_OK);
	/* Re-issuing to the same paths replaces the pair. */
	assert_int_equal(moat_pki_issue_device(F.dir, "perm", 30, NULL, key, crt, err, sizeof(err)),
			 MOAT_OK);
	assert_int_equal(file_mode(key), 0600);
	unlink(key);
	unlink(crt);
}

static void test_pki_missing_ca(void **state)
{
	(void)state;
	char dir[320], key[400], crt[400], err[512] = "";

	join(dir, sizeof(dir), F.dir, "noca");
	assert_int_equal(mkdir(dir, 0700), 0);
	join(key, sizeof(key), dir, "d.key");
	join(crt, sizeof(crt), dir, "d.crt");
	assert_int_equal(moat_pki_issue_device(dir, "x", 30, NULL, key, crt, err, sizeof(err)),
			 MOAT_E_NOTFOUND);
	assert_non_null(strstr(err, "ca.key"));
	assert_int_equal(moat_pki_create_server(dir, NULL, 0, err, sizeof(err)), MOAT_E_NOTFOUND);
}

/* ---- identity from hand-made certificates -------------------------------- */

/* A self-signed certificate with the given CNs and URI SANs. */
static X509 *make_cert(const char *const *cns, size_t n_cns, const char *const *uris, size_t n_uris)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_get_subject_name(x);
	size_t i;

	assert_non_null(key);
	assert_non_null(x);
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	for (i = 0; i < n_cns; i++)
		assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
							    (const unsigned char *)cns[i], -1, -1,
							    0),
				 1);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, key);
	if (n_uris > 0) {
		GENERAL_NAMES *gens = GENERAL_NAMES_new();

		for (i = 0; i < n_uris; i++) {
			GENERAL_NAME *gn = GENERAL_NAME_new();
			ASN1_IA5STRING *s = ASN1_IA5STRING_new();

			ASN1_STRING_set(s, uris[i], -1);
			GENERAL_NAME_set0_value(gn, GEN_URI, s);
			sk_GENERAL_NAME_push(gens, gn);
		}
		assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0), 1);
		GENERAL_NAMES_free(gens);
	}
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	EVP_PKEY_free(key);
	return x;
}

static moat_err ident(const char *const *cns, size_t n_cns, const char *const *uris, size_t n_uris,
		      char *id, size_t idlen)
{
	X509 *x = make_cert(cns, n_cns, uris, n_uris);
	moat_err rc = moat_tls_cert_identity(x, id, idlen);

	X509_free(x);
	return rc;
}

static void test_identity_cn_and_uri(void **state)
{
	(void)state;
	char id[MOAT_DEVICE_ID_MAX + 1];
	const char *cn_ok[] = {"cn-device"};
	const char *cn_bad[] = {"CN Device"};
	const char *cn_two[] = {"one", "two"};
	const char *uri_ok[] = {"moat:device:uri-device"};
	const char *uri_upper[] = {"MOAT:Device:uri-device"};
	const char *uri_same[] = {"moat:device:same", "moat:device:same"};
	const char *uri_two[] = {"moat:device:one", "moat:device:two"};
	const char *uri_bad[] = {"moat:device:Bad"};
	const char *uri_empty[] = {"moat:device:"};
	const char *uri_other[] = {"https://example.com/x", "urn:foo:bar"};
	const char *uri_mixed[] = {"https://example.com/x", "moat:device:mixed"};
	char max[MOAT_DEVICE_ID_MAX + 2];
	const char *cn_max[] = {max};

	/* CN only. */
	assert_int_equal(ident(cn_ok, 1, NULL, 0, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, "cn-device");
	assert_int_equal(ident(cn_bad, 1, NULL, 0, id, sizeof(id)), MOAT_E_DENIED);
	assert_int_equal(ident(cn_two, 2, NULL, 0, id, sizeof(id)), MOAT_E_DENIED);
	assert_int_equal(ident(NULL, 0, NULL, 0, id, sizeof(id)), MOAT_E_DENIED);
	memset(max, 'm', MOAT_DEVICE_ID_MAX);
	max[MOAT_DEVICE_ID_MAX] = '\0';
	assert_int_equal(ident(cn_max, 1, NULL, 0, id, sizeof(id)), MOAT_OK);
	assert_int_equal(strlen(id), MOAT_DEVICE_ID_MAX);

	/* The URI SAN overrides the CN, even an invalid or missing CN. */
	assert_int_equal(ident(cn_ok, 1, uri_ok, 1, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, "uri-device");
	assert_int_equal(ident(cn_bad, 1, uri_ok, 1, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, "uri-device");
	assert_int_equal(ident(NULL, 0, uri_upper, 1, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, "uri-device");
	assert_int_equal(ident(cn_ok, 1, uri_same, 2, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, "same");
	assert_int_equal(ident(cn_ok, 1, uri_mixed, 2, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, "mixed");

	/* Ambiguous or invalid URI identities never fall back to the CN. */
	assert_int_equal(ident(cn_ok, 1, uri_two, 2, id, sizeof(id)), MOAT_E_DENIED);
	assert_int_equal(ident(cn_ok, 1, uri_bad, 1, id, sizeof(id)), MOAT_E_DENIED);
	assert_int_equal(ident(cn_ok, 1, uri_empty, 1, id, sizeof(id)), MOAT_E_DENIED);

	/* URIs that are not ours are ignored. */
	assert_int_equal(ident(cn_ok, 1, uri_other, 2, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, "cn-device");

	assert_int_equal(moat_tls_cert_identity(NULL, id, sizeof(id)), MOAT_E_NOTFOUND);
	assert_int_equal(moat_tls_peer_identity(NULL, id, sizeof(id)), MOAT_E_NOTFOUND);
}

/* ---- moat_tls_errors ----------------------------------------------------- */

static void test_tls_errors(void **state)
{
	(void)state;
	char buf[64];
	char tiny[8];

	ERR_clear_error();
	snprintf(buf, sizeof(buf), "ctx");
	ERR_raise_data(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED, "detail %d", 7);
	ERR_raise(ERR_LIB_SSL, SSL_R_NO_SHARED_CIPHER);
	moat_tls_errors(buf, sizeof(buf));
	assert_string_equal(buf, "ctx: certificate verify failed (detail 7); no shared cipher");
	assert_int_equal(ERR_peek_error(), 0);

	/* Truncation keeps a terminated string and still drains the queue. */
	tiny[0] = '\0';
	ERR_raise(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED);
	ERR_raise(ERR_LIB_SSL, SSL_R_NO_SHARED_CIPHER);
	moat_tls_errors(tiny, sizeof(tiny));
	assert_string_equal(tiny, "certifi");
	assert_int_equal(ERR_peek_error(), 0);

	/* An unterminated buffer is not read past its end. */
	memset(tiny, 'z', sizeof(tiny));
	ERR_raise(ERR_LIB_SSL, SSL_R_NO_SHARED_CIPHER);
	moat_tls_errors(tiny, sizeof(tiny));
	assert_int_equal(tiny[sizeof(tiny) - 1], '\0');
	assert_int_equal(ERR_peek_error(), 0);

	ERR_raise(ERR_LIB_SSL, SSL_R_NO_SHARED_CIPHER);
	moat_tls_errors(NULL, 0);
	assert_int_equal(ERR_peek_error(), 0);
}

/* ---- server context ------------------------------------------------------ */

static SSL_CTX *server_ctx(bool require)
{
	struct moat_tls_paths p = {F.srv_crt, F.srv_key, F.ca_crt};
	char err[512] = "";
	SSL_CTX *ctx = moat_tls_server_ctx(&p, require, err, sizeof(err));

	if (ctx == NULL)
		fail_msg("server ctx: %s", err);
	return ctx;
}

static void test_server_ctx_builds(void **state)
{
	(void)state;
	SSL_CTX *ctx = server_ctx(true);
	STACK_OF(SSL_CIPHER) *ciphers = SSL_CTX_get_ciphers(ctx);
	int i, n12 = 0, n13 = 0;

	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_CIPHER_SERVER_PREFERENCE);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
	assert_false(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET);
	assert_true(SSL_CTX_get_mode(ctx) & SSL_MODE_RELEASE_BUFFERS);
	assert_true(SSL_CTX_get_mode(ctx) & SSL_MODE_ENABLE_PARTIAL_WRITE);
	assert_true(SSL_CTX_get_mode(ctx) & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	assert_int_equal(SSL_CTX_get_num_tickets(ctx), 1);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx),
			 SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
	assert_int_equal(SSL_CTX_get_verify_depth(ctx), 4);
	assert_int_equal(sk_X509_NAME_num(SSL_CTX_get_client_CA_list(ctx)), 1);
	/* Every TLS 1.2 suite is ECDHE + AEAD. */
	for (i = 0; i < sk_SSL_CIPHER_num(ciphers); i++) {
		const SSL_CIPHER *c = sk_SSL_CIPHER_value(ciphers, i);

		if (strcmp(SSL_CIPHER_get_version(c), "TLSv1.3") == 0) {
			n13++;
			continue;
		}
		n12++;
		if (SSL_CIPHER_get_kx_nid(c) != NID_kx_ecdhe || !SSL_CIPHER_is_aead(c))
			fail_msg("weak TLS 1.2 cipher %s", SSL_CIPHER_get_name(c));
	}
	assert_int_equal(n12, 6);
	assert_true(n13 >= 3);
	SSL_CTX_free(ctx);

	ctx = server_ctx(false);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
	SSL_CTX_free(ctx);
}

static void test_server_ctx_errors(void **state)
{
	(void)state;
	struct moat_tls_paths p = {F.srv_crt, F.dev_key, F.ca_crt};
	char err[512] = "";

	assert_null(moat_tls_server_ctx(&p, true, err, sizeof(err)));
	assert_non_null(strstr(err, "does not match"));
	assert_non_null(strstr(err, "dev.key"));
	assert_int_equal(ERR_peek_error(), 0);

	p.key = F.srv_key;
	p.ca = "/nonexistent/ca.crt";
	err[0] = '\0';
	assert_null(moat_tls_server_ctx(&p, true, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/ca.crt"));

	p.ca = F.ca_crt;
	p.cert = "/nonexistent/server.crt";
	err[0] = '\0';
	assert_null(moat_tls_server_ctx(&p, true, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/server.crt"));

	/* A certificate is not a key. */
	p.cert = F.srv_crt;
	p.key = F.srv_crt;
	err[0] = '\0';
	assert_null(moat_tls_server_ctx(&p, true, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot load private key"));

	assert_null(moat_tls_server_ctx(NULL, true, err, sizeof(err)));
}

/* ---- handshakes ---------------------------------------------------------- */

struct client_opts {
	const char *cert; /* NULL: no client certificate */
	const char *key;
	int min_version;
	int max_version;
	const char *ciphers; /* TLS 1.2 list; NULL: default */
	const char *groups;  /* NULL: default */
};

static SSL_CTX *client_ctx(const struct client_opts *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	assert_non_null(ctx);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	assert_int_equal(SSL_CTX_load_verify_file(ctx, F.ca_crt), 1);
	if (o->cert != NULL) {
		assert_int_equal(SSL_CTX_use_certificate_file(ctx, o->cert, SSL_FILETYPE_PEM), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM), 1);
	}
	if (o->min_version)
		assert_int_equal(SSL_CTX_set_min_proto_version(ctx, o->min_version), 1);
	if (o->max_version)
		assert_int_equal(SSL_CTX_set_max_proto_version(ctx, o->max_version), 1);
	if (o->ciphers)
		assert_int_equal(SSL_CTX_set_cipher_list(ctx, o->ciphers), 1);
	if (o->groups)
		assert_int_equal(SSL_CTX_set1_groups_list(ctx, o->groups), 1);
	return ctx;
}

/* A server that accepts anything the client offers, to prove a client in a
 * negative test is able to connect at all. */
static SSL_CTX *permissive_server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate_file(ctx, F.srv_crt, SSL_FILETYPE_PEM), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, F.srv_key, SSL_FILETYPE_PEM), 1);
	SSL_CTX_set_min_proto_version(ctx, 0);
	assert_int_equal(SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0"), 1);
	return ctx;
}

struct conn {
	SSL *server;
	SSL *client;
};

/* Run both ends of a handshake over a BIO pair until both finish or one
 * fails. Returns 1 when both sides completed. */
static int handshake(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *resume, struct conn *c)
{
	BIO *sb = NULL, *cb = NULL;
	int s_done = 0, c_done = 0;
	int i;

	c->server = SSL_new(sctx);
	c->client = SSL_new(cctx);
	assert_non_null(c->server);
	assert_non_null(c->client);
	assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
	SSL_set_bio(c->server, sb, sb);
	SSL_set_bio(c->client, cb, cb);
	SSL_set_accept_state(c->server);
	SSL_set_connect_state(c->client);
	assert_int_equal(SSL_set1_host(c->client, "localhost"), 1);
	if (resume != NULL)
		assert_int_equal(SSL_set_session(c->client, resume), 1);

	for (i = 0; i < 64 && !(s_done && c_done); i++) {
		if (!c_done) {
			int r = SSL_do_handshake(c->client);

			if (r == 1)
				c_done = 1;
			else if (SSL_get_error(c->client, r) != SSL_ERROR_WANT_READ)
				goto fail;
		}
		if (!s_done) {
			int r = SSL_do_handshake(c->server);

			if (r == 1)
				s_done = 1;
			else if (SSL_get_error(c->server, r) != SSL_ERROR_WANT_READ)
				goto fail;
		}
	}
	if (s_done && c_done) {
		/* TLS 1.3: a client-certificate failure is only seen by the
		 * client once it reads the server's alert; exchange a byte. */
		char b = 'x';

		if (SSL_write(c->client, &b, 1) == 1 && SSL_read(c->server, &b, 1) == 1 &&
		    SSL_write(c->server, &b, 1) == 1 && SSL_read(c->client, &b, 1) == 1)
			return 1;
	}
fail:
	ERR_clear_error();
	return 0;
}

/* Close cleanly: OpenSSL marks the session of a connection freed without
 * close_notify as not resumable. */
static void conn_free(struct conn *c)
{
	if (c->client != NULL && SSL_is_init_finished(c->client)) {
		SSL_shutdown(c->client);
		SSL_shutdown(c->server);
	}
	ERR_clear_error();
	SSL_free(c->server);
	SSL_free(c->client);
	c->server = NULL;
	c->client = NULL;
}

/* Handshake with a fresh client context, freeing everything. */
static int try_connect(SSL_CTX *sctx, const struct client_opts *o, char *id, size_t idlen,
		       moat_err *idrc)
{
	SSL_CTX *cctx = client_ctx(o);
	struct conn c = {0};
	int ok = handshake(sctx, cctx, NULL, &c);

	if (ok && idrc != NULL)
		*idrc = moat_tls_peer_identity(c.server, id, idlen);
	conn_free(&c);
	SSL_CTX_free(cctx);
	return ok;
}

static void test_handshake_tls13_mtls(void **state)
{
	(void)state;
	SSL_CTX *sctx = server_ctx(true);
	struct client_opts o = {.cert = F.dev_crt, .key = F.dev_key};
	SSL_CTX *cctx = client_ctx(&o);
	struct conn c = {0};
	char id[MOAT_DEVICE_ID_MAX + 1] = "";
	const STACK_OF(X509_NAME) * cas;
	X509 *ca = cert_load(F.ca_crt);

	assert_int_equal(handshake(sctx, cctx, NULL, &c), 1);
	assert_int_equal(SSL_version(c.server), TLS1_3_VERSION);
	assert_int_equal(moat_tls_peer_identity(c.server, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, DEVICE_ID);
	/* The server advertised the Moat CA as acceptable issuer. */
	cas = SSL_get0_peer_CA_list(c.client);
	assert_non_null(cas);
	assert_int_equal(sk_X509_NAME_num(cas), 1);
	assert_int_equal(X509_NAME_cmp(sk_X509_NAME_value(cas, 0), X509_get_subject_name(ca)), 0);
	/* The group is one of ours. */
	assert_int_equal(SSL_get_negotiated_group(c.server), NID_X25519);
	conn_free(&c);
	X509_free(ca);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void test_handshake_tls12_mtls(void **state)
{
	(void)state;
	SSL_CTX *sctx = server_ctx(true);
	struct client_opts o = {.cert = F.dev_crt,
				.key = F.dev_key,
				.min_version = TLS1_2_VERSION,
				.max_version = TLS1_2_VERSION};
	SSL_CTX *cctx = client_ctx(&o);
	struct conn c = {0};
	char id[MOAT_DEVICE_ID_MAX + 1] = "";

	assert_int_equal(handshake(sctx, cctx, NULL, &c), 1);
	assert_int_equal(SSL_version(c.server), TLS1_2_VERSION);
	assert_string_equal(SSL_get_cipher_name(c.server), "ECDHE-ECDSA-AES128-GCM-SHA256");
	assert_int_equal(moat_tls_peer_identity(c.server, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, DEVICE_ID);
	conn_free(&c);
	SSL_CTX_free(cctx);

	/* A peer certificate that did not verify gives no identity, even when
	 * the handshake went on (here: a client that does not enforce). */
	cctx = client_ctx(&o);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	/* An empty trust store: the server certificate cannot verify. */
	SSL_CTX_set_cert_store(cctx, X509_STORE_new());
	assert_int_equal(handshake(sctx, cctx, NULL, &c), 1);
	assert_non_null(SSL_get0_peer_certificate(c.client));
	assert_int_not_equal(SSL_get_verify_result(c.client), X509_V_OK);
	assert_int_equal(moat_tls_peer_identity(c.client, id, sizeof(id)), MOAT_E_DENIED);
	conn_free(&c);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

/* A ticket resumes the session (TLS 1.3 and 1.2, with no server-side
 * cache) and still carries the device identity. */
static void test_handshake_resumption(void **state)
{
	(void)state;
	static const int versions[] = {0, TLS1_2_VERSION};
	SSL_CTX *sctx = server_ctx(true);
	size_t i;

	for (i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		struct client_opts o = {
		    .cert = F.dev_crt, .key = F.dev_key, .max_version = versions[i]};
		SSL_CTX *cctx = client_ctx(&o);
		struct conn c = {0};
		SSL_SESSION *sess;
		char id[MOAT_DEVICE_ID_MAX + 1] = "";

		assert_int_equal(handshake(sctx, cctx, NULL, &c), 1);
		assert_false(SSL_session_reused(c.server));
		sess = SSL_get1_session(c.client);
		assert_non_null(sess);
		assert_true(SSL_SESSION_has_ticket(sess));
		conn_free(&c);

		assert_int_equal(handshake(sctx, cctx, sess, &c), 1);
		assert_true(SSL_session_reused(c.server));
		assert_true(SSL_session_reused(c.client));
		assert_int_equal(moat_tls_peer_identity(c.server, id, sizeof(id)), MOAT_OK);
		assert_string_equal(id, DEVICE_ID);
		conn_free(&c);
		SSL_SESSION_free(sess);
		SSL_CTX_free(cctx);
	}
	SSL_CTX_free(sctx);
}

static void test_handshake_no_client_cert(void **state)
{
	(void)state;
	SSL_CTX *req = server_ctx(true);
	SSL_CTX *opt = server_ctx(false);
	SSL_CTX *perm = permissive_server_ctx();
	struct client_opts o = {0};
	char id[MOAT_DEVICE_ID_MAX + 1];
	moat_err idrc = MOAT_OK;

	assert_int_equal(try_connect(perm, &o, NULL, 0, NULL), 1);
	assert_int_equal(try_connect(req, &o, NULL, 0, NULL), 0);
	o.max_version = TLS1_2_VERSION;
	assert_int_equal(try_connect(req, &o, NULL, 0, NULL), 0);
	/* Optional: the connection stands, but there is no identity. */
	o.max_version = 0;
	assert_int_equal(try_connect(opt, &o, id, sizeof(id), &idrc), 1);
	assert_int_equal(idrc, MOAT_E_NOTFOUND);
	SSL_CTX_free(req);
	SSL_CTX_free(opt);
	SSL_CTX_free(perm);
}

static void test_handshake_wrong_ca(void **state)
{
	(void)state;
	SSL_CTX *req = server_ctx(true);
	SSL_CTX *opt = server_ctx(false);
	struct client_opts o = {.cert = F.other_crt, .key = F.other_key};
	struct client_opts srvcert = {.cert = F.srv_crt, .key = F.srv_key};

	/* Verification is enforced even when a certificate is optional. */
	assert_int_equal(try_connect(req, &o, NULL, 0, NULL), 0);
	assert_int_equal(try_connect(opt, &o, NULL, 0, NULL), 0);
	o.max_version = TLS1_2_VERSION;
	assert_int_equal(try_connect(req, &o, NULL, 0, NULL), 0);
	/* The server certificate lacks clientAuth: not a device identity. */
	assert_int_equal(try_connect(req, &srvcert, NULL, 0, NULL), 0);
	SSL_CTX_free(req);
	SSL_CTX_free(opt);
}

static void test_handshake_weak_ciphers(void **state)
{
	(void)state;
	static const char *const weak[] = {
	    "ECDHE-ECDSA-AES128-SHA256:@SECLEVEL=0", /* ECDHE, but CBC */
	    "ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0",    /* ECDHE, CBC, SHA-1 */
	    "AECDH-AES128-SHA:@SECLEVEL=0",	     /* unauthenticated */
	    "AES128-SHA256:@SECLEVEL=0",	     /* no forward secrecy */
	};
	SSL_CTX *sctx = server_ctx(true);
	SSL_CTX *perm = permissive_server_ctx();
	size_t i;

	for (i = 0; i < sizeof(weak) / sizeof(weak[0]); i++) {
		struct client_opts o = {.cert = F.dev_crt,
					.key = F.dev_key,
					.min_version = TLS1_2_VERSION,
					.max_version = TLS1_2_VERSION,
					.ciphers = weak[i]};

		/* AES128-SHA256 needs an RSA server key, so the permissive
		 * control cannot use it; the ECDSA ones it can. */
		if (strncmp(weak[i], "AES128", 6) != 0 && try_connect(perm, &o, NULL, 0, NULL) != 1)
			fail_msg("control handshake failed for %s", weak[i]);
		if (try_connect(sctx, &o, NULL, 0, NULL) != 0)
			fail_msg("weak cipher %s accepted", weak[i]);
	}
	SSL_CTX_free(sctx);
	SSL_CTX_free(perm);
}

/* Only X25519, P-256 and P-384 for key exchange. */
static void test_handshake_groups(void **state)
{
	(void)state;
	static const char *const groups[] = {"X25519", "P-256", "P-384"};
	SSL_CTX *sctx = server_ctx(true);
	SSL_CTX *perm = permissive_server_ctx();
	struct client_opts o = {.cert = F.dev_crt, .key = F.dev_key};
	size_t i;

	for (i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		o.groups = groups[i];
		assert_int_equal(try_connect(sctx, &o, NULL, 0, NULL), 1);
	}
	/* TLS 1.3 only: in TLS 1.2 the client's group list also limits the
	 * curve of the server's ECDSA key, so a client without P-256 could not
	 * talk to the P-256 server certificate even on the permissive server. */
	o.groups = "P-521:ffdhe2048";
	assert_int_equal(try_connect(perm, &o, NULL, 0, NULL), 1);
	assert_int_equal(try_connect(sctx, &o, NULL, 0, NULL), 0);
	SSL_CTX_free(sctx);
	SSL_CTX_free(perm);
}

static void test_handshake_old_versions(void **state)
{
	(void)state;
	SSL_CTX *sctx = server_ctx(true);
	SSL_CTX *perm = permissive_server_ctx();
	struct client_opts o = {.cert = F.dev_crt,
				.key = F.dev_key,
				.min_version = TLS1_1_VERSION,
				.max_version = TLS1_1_VERSION,
				.ciphers = "DEFAULT:@SECLEVEL=0"};

	assert_int_equal(try_connect(perm, &o, NULL, 0, NULL), 1);
	assert_int_equal(try_connect(sctx, &o, NULL, 0, NULL), 0);
	o.min_version = TLS1_VERSION;
	o.max_version = TLS1_VERSION;
	assert_int_equal(try_connect(perm, &o, NULL, 0, NULL), 1);
	assert_int_equal(try_connect(sctx, &o, NULL, 0, NULL), 0);
	SSL_CTX_free(sctx);
	SSL_CTX_free(perm);
}

/* ---- session-ticket keys (tickets.c) -------------------------------------- */

#define T0 1700000000LL

static struct moat_tls_tickets *ring_new(int64_t now)
{
	struct moat_tls_tickets *t = NULL;

	assert_int_equal(moat_tls_tickets_new(now, &t), MOAT_OK);
	assert_non_null(t);
	return t;
}

static SSL_CTX *ticket_ctx(struct moat_tls_tickets *t, const char *label)
{
	SSL_CTX *ctx = server_ctx(true);
	char err[256] = "";

	if (moat_tls_tickets_attach(ctx, t, label, err, sizeof(err)) != MOAT_OK)
		fail_msg("attach: %s", err);
	assert_int_equal(SSL_CTX_get_timeout(ctx), (long)MOAT_TLS_TICKET_LIFETIME_S);
	return ctx;
}

/* A full handshake on sctx; the client's session (with its ticket). */
static SSL_SESSION *first_session(SSL_CTX *sctx, SSL_CTX *cctx)
{
	struct conn c = {0};
	SSL_SESSION *sess;

	assert_int_equal(handshake(sctx, cctx, NULL, &c), 1);
	assert_false(SSL_session_reused(c.server));
	sess = SSL_get1_session(c.client);
	assert_non_null(sess);
	assert_true(SSL_SESSION_has_ticket(sess));
	conn_free(&c);
	return sess;
}

/* Offer sess to sctx: 1 when the session was resumed, 0 when a full
 * handshake was done instead (it must succeed either way). The identity
 * comes from the certificate the session carries. */
static int resumes(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *sess)
{
	struct conn c = {0};
	char id[MOAT_DEVICE_ID_MAX + 1] = "";
	int reused;

	assert_int_equal(handshake(sctx, cctx, sess, &c), 1);
	reused = SSL_session_reused(c.server);
	assert_int_equal(reused, SSL_session_reused(c.client));
	assert_int_equal(moat_tls_peer_identity(c.server, id, sizeof(id)), MOAT_OK);
	assert_string_equal(id, DEVICE_ID);
	conn_free(&c);
	return reused;
}

static void test_tickets_rotation_schedule(void **state)
{
	(void)state;
	struct moat_tls_tickets *t = ring_new(T0);
	const int64_t p = (int64_t)MOAT_TLS_TICKET_ROTATE_S;

	assert_int_equal(moat_tls_tickets_count(t), 1);
	assert_int_equal(moat_tls_tickets_next_rotation(t), T0 + p);
	assert_int_equal(moat_tls_tickets_rotate_due(t, T0 + p - 1), 0);
	assert_int_equal(moat_tls_tickets_rotate_due(t, T0 + p), 1);
	assert_int_equal(moat_tls_tickets_count(t), 2);
	assert_int_equal(moat_tls_tickets_next_rotation(t), T0 + 2 * p);
	/* Two periods late (a restart): two new keys, the schedule kept. */
	assert_int_equal(moat_tls_tickets_rotate_due(t, T0 + 3 * p + 5), 2);
	assert_int_equal(moat_tls_tickets_count(t), MOAT_TLS_TICKET_KEYS);
	assert_int_equal(moat_tls_tickets_next_rotation(t), T0 + 4 * p);
	/* Down for a month: every key new, the schedule starts from now. */
	assert_int_equal(moat_tls_tickets_rotate_due(t, T0 + 60 * p), MOAT_TLS_TICKET_KEYS);
	assert_int_equal(moat_tls_tickets_count(t), MOAT_TLS_TICKET_KEYS);
	assert_int_equal(moat_tls_tickets_next_rotation(t), T0 + 61 * p);
	/* The clock went back: no rotation, and the key is redated to now so
	 * it does not live for ever. */
	assert_int_equal(moat_tls_tickets_rotate_due(t, T0), 0);
	assert_int_equal(moat_tls_tickets_next_rotation(t), T0 + p);
	moat_tls_tickets_free(t);
	moat_tls_tickets_free(NULL);
}

static void test_tickets_export_import(void **state)
{
	(void)state;
	struct moat_tls_tickets *t = ring_new(T0);
	struct moat_tls_tickets *u = ring_new(T0 + 7);
	uint8_t a[MOAT_TLS_TICKETS_BLOB_MAX], b[MOAT_TLS_TICKETS_BLOB_MAX];
	uint8_t bad[MOAT_TLS_TICKETS_BLOB_MAX + 1];
	size_t alen = 0, blen = 0, ulen = 0;
	uint8_t ub[MOAT_TLS_TICKETS_BLOB_MAX];

	assert_int_equal(moat_tls_tickets_export(t, a, sizeof(a) - 1, &alen), MOAT_E_INVAL);
	assert_int_equal(moat_tls_tickets_rotate(t, T0 + 1), MOAT_OK);
	assert_int_equal(moat_tls_tickets_export(t, a, sizeof(a), &alen), MOAT_OK);
	assert_int_equal(alen, 13u + 2u * MOAT_TLS_TICKET_KEY_LEN);
	assert_memory_equal(a, "MTK1", 4);
	assert_int_equal(a[12], 2);
	assert_int_equal(moat_tls_tickets_import(u, a, alen), MOAT_OK);
	assert_int_equal(moat_tls_tickets_export(u, b, sizeof(b), &blen), MOAT_OK);
	assert_int_equal(blen, alen);
	assert_memory_equal(a, b, alen);
	assert_int_equal(moat_tls_tickets_next_rotation(u), T0 + 1 + MOAT_TLS_TICKET_ROTATE_S);

	/* Every malformed input is refused and leaves the ring as it was. */
	assert_int_equal(moat_tls_tickets_rotate(u, T0 + 9), MOAT_OK);
	assert_int_equal(moat_tls_tickets_export(u, ub, sizeof(ub), &ulen), MOAT_OK);
#define REFUSED(buf, n)                                                                            \
	do {                                                                                       \
		assert_int_equal(moat_tls_tickets_import(u, (buf), (n)), MOAT_E_MALFORMED);        \
		assert_int_equal(moat_tls_tickets_export(u, b, sizeof(b), &blen), MOAT_OK);        \
		assert_int_equal(blen, ulen);                                                      \
		assert_memory_equal(b, ub, ulen);                                                  \
	} while (0)
	REFUSED(NULL, 0);
	REFUSED(a, 12);
	REFUSED(a, alen - 1);
	memcpy(bad, a, alen);
	bad[alen] = 0;
	REFUSED(bad, alen + 1);
	memcpy(bad, a, alen);
	bad[3] = '2'; /* tag */
	REFUSED(bad, alen);
	memcpy(bad, a, alen);
	bad[12] = 0; /* no keys */
	REFUSED(bad, 13);
	bad[12] = MOAT_TLS_TICKET_KEYS + 1; /* too many */
	REFUSED(bad, alen);
	memcpy(bad, a, alen);
	memset(bad + 4, 0, 8); /* time 0 */
	REFUSED(bad, alen);
	memset(bad + 4, 0xff, 8); /* time past any clock */
	REFUSED(bad, alen);
	memcpy(bad, a, alen);
	memcpy(bad + 13 + MOAT_TLS_TICKET_KEY_LEN, bad + 13, 16); /* one name twice */
	REFUSED(bad, alen);
#undef REFUSED
	OPENSSL_cleanse(a, sizeof(a));
	moat_tls_tickets_free(t);
	moat_tls_tickets_free(u);
}

/* Tickets survive a new context (SIGHUP) and a new ring made from the
 * exported one (restart); older keys still open tickets until they leave
 * the ring; another ring (data directory) or listener never resumes. TLS
 * 1.3 and 1.2. */
static void test_tickets_resume_across_contexts(void **state)
{
	(void)state;
	static const int versions[] = {0, TLS1_2_VERSION};
	size_t v;
	unsigned k;

	for (v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
		struct client_opts o = {
		    .cert = F.dev_crt, .key = F.dev_key, .max_version = versions[v]};
		SSL_CTX *cctx = client_ctx(&o);
		struct moat_tls_tickets *t = ring_new(T0);
		struct moat_tls_tickets *t2 = ring_new(T0);
		struct moat_tls_tickets *other = ring_new(T0);
		uint8_t blob[MOAT_TLS_TICKETS_BLOB_MAX];
		size_t blen = 0;
		SSL_CTX *a = ticket_ctx(t, "mqtts");
		SSL_CTX *b = ticket_ctx(t, "mqtts");
		SSL_CTX *c = NULL;
		SSL_CTX *x = ticket_ctx(other, "mqtts");
		SSL_CTX *y = ticket_ctx(t, "mqtts-2");
		SSL_SESSION *sess = first_session(a, cctx);

		assert_int_equal(resumes(a, cctx, sess), 1);
		/* SIGHUP: a new context with the same ring. */
		SSL_CTX_free(a);
		assert_int_equal(resumes(b, cctx, sess), 1);
		/* Restart: a new ring from the exported bytes. */
		assert_int_equal(moat_tls_tickets_export(t, blob, sizeof(blob), &blen), MOAT_OK);
		assert_int_equal(moat_tls_tickets_import(t2, blob, blen), MOAT_OK);
		OPENSSL_cleanse(blob, sizeof(blob));
		c = ticket_ctx(t2, "mqtts");
		assert_int_equal(resumes(c, cctx, sess), 1);
		/* Another data directory's keys, another listener. */
		assert_int_equal(resumes(x, cctx, sess), 0);
		assert_int_equal(resumes(y, cctx, sess), 0);
		/* Rotation: the ticket's key stays acceptable while it is in the
		 * ring, and not a moment longer. */
		for (k = 1; k < MOAT_TLS_TICKET_KEYS; k++) {
			assert_int_equal(moat_tls_tickets_rotate(t, T0 + k), MOAT_OK);
			assert_int_equal(resumes(b, cctx, sess), 1);
		}
		assert_int_equal(moat_tls_tickets_rotate(t, T0 + k), MOAT_OK);
		assert_int_equal(resumes(b, cctx, sess), 0);
		SSL_SESSION_free(sess);
		SSL_CTX_free(b);
		SSL_CTX_free(c);
		SSL_CTX_free(x);
		SSL_CTX_free(y);
		SSL_CTX_free(cctx);
		moat_tls_tickets_free(t);
		moat_tls_tickets_free(t2);
		moat_tls_tickets_free(other);
	}
}

/* A ticket opened with an older key is replaced by one under the current
 * key, which then resumes after the old key left the ring. */
static void test_tickets_renewed_under_current_key(void **state)
{
	(void)state;
	struct client_opts o = {.cert = F.dev_crt, .key = F.dev_key};
	SSL_CTX *cctx = client_ctx(&o);
	struct moat_tls_tickets *t = ring_new(T0);
	SSL_CTX *sctx = ticket_ctx(t, "mqtts");
	SSL_SESSION *sess = first_session(sctx, cctx);
	SSL_SESSION *renewed;
	struct conn c = {0};
	unsigned k;

	assert_int_equal(moat_tls_tickets_rotate(t, T0 + 1), MOAT_OK);
	assert_int_equal(handshake(sctx, cctx, sess, &c), 1);
	assert_true(SSL_session_reused(c.server));
	renewed = SSL_get1_session(c.client);
	assert_non_null(renewed);
	assert_true(SSL_SESSION_has_ticket(renewed));
	conn_free(&c);
	for (k = 1; k < MOAT_TLS_TICKET_KEYS; k++)
		assert_int_equal(moat_tls_tickets_rotate(t, T0 + 1 + k), MOAT_OK);
	assert_int_equal(resumes(sctx, cctx, sess), 0);
	assert_int_equal(resumes(sctx, cctx, renewed), 1);
	SSL_SESSION_free(sess);
	SSL_SESSION_free(renewed);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	moat_tls_tickets_free(t);
}

/* Resumption off: no ticket is issued, and a ticket from a context that
 * had one is not accepted. */
static void test_tickets_resumption_off(void **state)
{
	(void)state;
	struct client_opts o = {.cert = F.dev_crt, .key = F.dev_key};
	SSL_CTX *cctx = client_ctx(&o);
	struct moat_tls_tickets *t = ring_new(T0);
	SSL_CTX *on = ticket_ctx(t, "mqtts");
	SSL_CTX *off = server_ctx(true);
	SSL_SESSION *sess = first_session(on, cctx);
	SSL_SESSION *none;
	struct conn c = {0};
	char err[256] = "";

	assert_int_equal(moat_tls_resumption_off(off, err, sizeof(err)), MOAT_OK);
	assert_int_equal(SSL_CTX_get_num_tickets(off), 0);
	assert_int_equal(handshake(off, cctx, NULL, &c), 1);
	none = SSL_get1_session(c.client);
	assert_non_null(none);
	assert_false(SSL_SESSION_has_ticket(none));
	SSL_SESSION_free(none);
	conn_free(&c);
	assert_int_equal(resumes(off, cctx, sess), 0);
	/* Attaching twice is refused (the callbacks' state is per context). */
	assert_int_not_equal(moat_tls_tickets_attach(on, t, "mqtts", err, sizeof(err)), MOAT_OK);
	SSL_SESSION_free(sess);
	SSL_CTX_free(on);
	SSL_CTX_free(off);
	SSL_CTX_free(cctx);
	moat_tls_tickets_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_device_id_table),
	    cmocka_unit_test(test_pki_file_modes),
	    cmocka_unit_test(test_pki_existing_key_refused),
	    cmocka_unit_test(test_pki_ca_cert),
	    cmocka_unit_test(test_pki_serials),
	    cmocka_unit_test(test_pki_server_cert),
	    cmocka_unit_test(test_pki_server_bad_san),
	    cmocka_unit_test(test_pki_device_cert),
	    cmocka_unit_test(test_pki_device_invalid_id),
	    cmocka_unit_test(test_pki_ca_key_mode),
	    cmocka_unit_test(test_pki_missing_ca),
	    cmocka_unit_test(test_identity_cn_and_uri),
	    cmocka_unit_test(test_tls_errors),
	    cmocka_unit_test(test_server_ctx_builds),
	    cmocka_unit_test(test_server_ctx_errors),
	    cmocka_unit_test(test_handshake_tls13_mtls),
	    cmocka_unit_test(test_handshake_tls12_mtls),
	    cmocka_unit_test(test_handshake_resumption),
	    cmocka_unit_test(test_handshake_no_client_cert),
	    cmocka_unit_test(test_handshake_wrong_ca),
	    cmocka_unit_test(test_handshake_weak_ciphers),
	    cmocka_unit_test(test_handshake_groups),
	    cmocka_unit_test(test_handshake_old_versions),
	    cmocka_unit_test(test_tickets_rotation_schedule),
	    cmocka_unit_test(test_tickets_export_import),
	    cmocka_unit_test(test_tickets_resume_across_contexts),
	    cmocka_unit_test(test_tickets_renewed_under_current_key),
	    cmocka_unit_test(test_tickets_resumption_off),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
