/*
 * Client identities for moat-bench: one ECDSA P-256 key and certificate per
 * simulated device, signed by the CA of a `moat init` data directory, with
 * CN = client id and URI SAN moat:device:<id> (what Moat reads as the device
 * identity; Mosquitto's use_identity_as_username reads the CN).
 *
 * Generating thousands of keys takes seconds, so each identity is cached as
 * one PEM file (key then certificate, mode 0600) under
 * CACHE/<CA fingerprint>/<id>.pem. The fingerprint directory means a new CA
 * never picks up certificates of an old one. Writes go through a temporary
 * file and rename so an interrupted run never leaves half an identity.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "bench.h"
#include "core/limits.h"

/* Lifetime of a generated certificate, and how much of it must remain for a
 * cached one to be reused. */
#define CERT_DAYS 90
#define CERT_MIN_LEFT_S (7L * 24 * 3600)

struct bench_ca {
	X509 *cert;
	EVP_PKEY *key;
	char dir[MOAT_MAX_PATH]; /* empty: no cache */
};

static void ca_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write "msg: <openssl reasons>" into err. */
static void ca_fail(char *err, size_t errlen, const char *fmt, ...)
{
	char ossl[256];
	unsigned long e;
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	e = ERR_get_error();
	if (e != 0) {
		ERR_error_string_n(e, ossl, sizeof(ossl));
		n = strlen(err);
		if (n < errlen)
			snprintf(err + n, errlen - n, ": %s", ossl);
	}
	ERR_clear_error();
}

static moat_err mkdir_p(const char *path)
{
	char tmp[MOAT_MAX_PATH];
	size_t n = strlen(path), i;

	if (n == 0 || n >= sizeof(tmp))
		return MOAT_E_INVAL;
	memcpy(tmp, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
			return MOAT_E_IO;
		if (i < n)
			tmp[i] = '/';
	}
	return MOAT_OK;
}

static moat_err ca_load(const char *cert_path, const char *key_path, struct bench_ca *ca, char *err,
			size_t errlen)
{
	moat_err rc = MOAT_E_CRYPTO;
	FILE *f = NULL;

	f = fopen(cert_path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "cannot open CA certificate %s: %s", cert_path,
			 strerror(errno));
		rc = MOAT_E_IO;
		goto out;
	}
	ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	f = NULL;
	if (ca->cert == NULL) {
		ca_fail(err, errlen, "cannot parse CA certificate %s", cert_path);
		goto out;
	}
	f = fopen(key_path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "cannot open CA key %s: %s", key_path, strerror(errno));
		rc = MOAT_E_IO;
		goto out;
	}
	ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	if (ca->key == NULL) {
		ca_fail(err, errlen, "cannot parse CA key %s", key_path);
		goto out;
	}
	if (X509_check_private_key(ca->cert, ca->key) != 1) {
		ca_fail(err, errlen, "CA key %s does not match %s", key_path, cert_path);
		goto out;
	}
	rc = MOAT_OK;
out:
	if (f != NULL)
		fclose(f);
	return rc;
}

moat_err bench_ca_open(const char *cert_path, const char *key_path, const char *cache_dir,
		       struct bench_ca **out, char *err, size_t errlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	struct bench_ca *ca = NULL;
	moat_err rc = MOAT_E_NOMEM;
	unsigned mdlen = 0, i;
	char fp[17];
	int n;

	ca = calloc(1, sizeof(*ca));
	if (ca == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = ca_load(cert_path, key_path, ca, err, errlen);
	if (rc)
		goto out;
	if (cache_dir != NULL && cache_dir[0] != '\0') {
		rc = MOAT_E_CRYPTO;
		if (X509_digest(ca->cert, EVP_sha256(), md, &mdlen) != 1 || mdlen < 8) {
			ca_fail(err, errlen, "cannot fingerprint the CA certificate");
			goto out;
		}
		for (i = 0; i < 8; i++)
			snprintf(fp + 2 * i, 3, "%02x", md[i]);
		n = snprintf(ca->dir, sizeof(ca->dir), "%s/%s", cache_dir, fp);
		rc = MOAT_E_INVAL;
		if (n < 0 || (size_t)n >= sizeof(ca->dir)) {
			snprintf(err, errlen, "certificate cache path too long");
			goto out;
		}
		rc = mkdir_p(ca->dir);
		if (rc) {
			snprintf(err, errlen, "cannot create %s: %s", ca->dir, strerror(errno));
			goto out;
		}
	}
	*out = ca;
	ca = NULL;
	rc = MOAT_OK;
out:
	bench_ca_close(ca);
	return rc;
}

void bench_ca_close(struct bench_ca *ca)
{
	if (ca == NULL)
		return;
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	free(ca);
}

static moat_err add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext;
	moat_err rc = MOAT_E_CRYPTO;

	ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	if (ext == NULL)
		return rc;
	if (X509_add_ext(cert, ext, -1) == 1)
		rc = MOAT_OK;
	X509_EXTENSION_free(ext);
	return rc;
}

/* A positive random 128-bit serial number (RFC 5280 4.1.2.2). */
static moat_err random_serial(X509 *cert)
{
	unsigned char raw[16];
	ASN1_INTEGER *ai = NULL;
	BIGNUM *bn = NULL;
	moat_err rc = MOAT_E_CRYPTO;

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		goto out;
	raw[0] &= 0x7f;
	raw[0] |= 0x01;
	bn = BN_bin2bn(raw, (int)sizeof(raw), NULL);
	if (bn == NULL)
		goto out;
	ai = BN_to_ASN1_INTEGER(bn, NULL);
	if (ai == NULL || X509_set_serialNumber(cert, ai) != 1)
		goto out;
	rc = MOAT_OK;
out:
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	return rc;
}

static moat_err identity_generate(struct bench_ca *ca, const char *id, EVP_PKEY **key, X509 **cert,
				  char *err, size_t errlen)
{
	char san[BENCH_ID_MAX + 32];
	EVP_PKEY *k = NULL;
	X509 *c = NULL;
	X509_NAME *name;
	X509V3_CTX v3;
	moat_err rc = MOAT_E_CRYPTO;

	k = EVP_EC_gen("P-256");
	c = X509_new();
	if (k == NULL || c == NULL) {
		ca_fail(err, errlen, "%s: key generation failed", id);
		goto out;
	}
	name = X509_get_subject_name(c);
	if (X509_set_version(c, X509_VERSION_3) != 1 || random_serial(c) ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)id, -1, -1,
				       0) != 1 ||
	    X509_set_issuer_name(c, X509_get_subject_name(ca->cert)) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(c), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(c), (long)CERT_DAYS * 24 * 3600) == NULL ||
	    X509_set_pubkey(c, k) != 1) {
		ca_fail(err, errlen, "%s: cannot build certificate", id);
		goto out;
	}
	X509V3_set_ctx(&v3, ca->cert, c, NULL, NULL, 0);
	snprintf(san, sizeof(san), "URI:moat:device:%s", id);
	if (add_ext(c, &v3, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(c, &v3, NID_key_usage, "critical,digitalSignature") ||
	    add_ext(c, &v3, NID_ext_key_usage, "clientAuth") ||
	    add_ext(c, &v3, NID_subject_alt_name, san) ||
	    add_ext(c, &v3, NID_subject_key_identifier, "hash") ||
	    add_ext(c, &v3, NID_authority_key_identifier, "keyid:always")) {
		ca_fail(err, errlen, "%s: cannot add certificate extensions", id);
		goto out;
	}
	if (X509_sign(c, ca->key, EVP_sha256()) <= 0) {
		ca_fail(err, errlen, "%s: cannot sign certificate", id);
		goto out;
	}
	*key = k;
	*cert = c;
	k = NULL;
	c = NULL;
	rc = MOAT_OK;
out:
	EVP_PKEY_free(k);
	X509_free(c);
	return rc;
}

static moat_err identity_path(const struct bench_ca *ca, const char *id, const char *suffix,
			      char *path, size_t len)
{
	int n = snprintf(path, len, "%s/%s.pem%s", ca->dir, id, suffix);

	if (n < 0 || (size_t)n >= len)
		return MOAT_E_INVAL;
	return MOAT_OK;
}

/* MOAT_E_NOTFOUND when absent, unreadable, or too close to expiry. */
static moat_err identity_load(const struct bench_ca *ca, const char *id, EVP_PKEY **key,
			      X509 **cert)
{
	char path[MOAT_MAX_PATH];
	EVP_PKEY *k = NULL;
	X509 *c = NULL;
	time_t limit = time(NULL) + CERT_MIN_LEFT_S;
	moat_err rc = MOAT_E_NOTFOUND;
	FILE *f = NULL;

	if (identity_path(ca, id, "", path, sizeof(path)))
		goto out;
	f = fopen(path, "r");
	if (f == NULL)
		goto out;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	c = PEM_read_X509(f, NULL, NULL, NULL);
	if (k == NULL || c == NULL)
		goto out;
	if (X509_cmp_time(X509_get0_notAfter(c), &limit) <= 0)
		goto out;
	*key = k;
	*cert = c;
	k = NULL;
	c = NULL;
	rc = MOAT_OK;
out:
	ERR_clear_error();
	if (f != NULL)
		fclose(f);
	EVP_PKEY_free(k);
	X509_free(c);
	return rc;
}

static moat_err identity_store(const struct bench_ca *ca, const char *id, EVP_PKEY *key, X509 *cert,
			       char *err, size_t errlen)
{
	char path[MOAT_MAX_PATH], tmp[MOAT_MAX_PATH];
	moat_err rc = MOAT_E_IO;
	FILE *f = NULL;
	int fd = -1;

	if (identity_path(ca, id, "", path, sizeof(path)) ||
	    identity_path(ca, id, ".tmp", tmp, sizeof(tmp))) {
		snprintf(err, errlen, "certificate cache path too long");
		rc = MOAT_E_INVAL;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	f = fdopen(fd, "w");
	if (f == NULL) {
		snprintf(err, errlen, "fdopen %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1 ||
	    PEM_write_X509(f, cert) != 1) {
		ca_fail(err, errlen, "cannot write %s", tmp);
		goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	f = NULL;
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
		goto out;
	}
	rc = MOAT_OK;
out:
	if (f != NULL)
		fclose(f);
	if (fd >= 0)
		close(fd);
	if (rc)
		unlink(tmp);
	return rc;
}

moat_err bench_ca_identity(struct bench_ca *ca, const char *id, EVP_PKEY **key, X509 **cert,
			   bool *generated, char *err, size_t errlen)
{
	EVP_PKEY *k = NULL;
	X509 *c = NULL;
	moat_err rc;

	*generated = false;
	if (ca->dir[0] != '\0' && identity_load(ca, id, key, cert) == MOAT_OK)
		return MOAT_OK;
	rc = identity_generate(ca, id, &k, &c, err, errlen);
	if (rc)
		goto out;
	if (ca->dir[0] != '\0') {
		rc = identity_store(ca, id, k, c, err, errlen);
		if (rc)
			goto out;
	}
	*generated = true;
	*key = k;
	*cert = c;
	k = NULL;
	c = NULL;
out:
	EVP_PKEY_free(k);
	X509_free(c);
	return rc;
}
