/*
 * The local PKI behind `moat init` and `moat cert issue`: key generation,
 * certificate building and signing, and the careful writing of key files.
 *
 * Every key is ECDSA P-256 (small, fast, and what device secure elements
 * support). Certificates are X.509 v3 with random 128-bit serials and the
 * extensions a strict verifier expects. Files go to "<path>.tmp" (created
 * exclusively), are fsynced, then renamed into place, so a crash leaves the
 * old file or the new one, never a torn key. Private keys are serialised
 * only into OpenSSL secure-memory BIOs, which are wiped when freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/limits.h"
#include "core/config.h"
#include "core/file.h"
#include "pki/pki.h"
#include "tls/tls.h"

/* Validity periods, as pki.h promises them. The CA outlives the leaves it
 * signs; the server certificate's whole span, backdating included, is
 * MOAT_SERVER_CERT_LIFETIME_S (limits.h). */
#define PKI_CA_DAYS 3650

/* notBefore is backdated so a device whose clock runs a little behind the
 * CA's does not reject a certificate issued a moment ago. */
#define PKI_CLOCK_SKEW_S (5L * 60L)

/* 128 random bits: unpredictable serials defeat chosen-prefix collision
 * attacks on the signature and make serials unique without a counter. */
#define PKI_SERIAL_BYTES 16

/* DNS name limits from RFC 1035 section 2.3.4. */
#define DNS_NAME_MAX 253u
#define DNS_LABEL_MAX 63u

#define DEVICE_URI_PREFIX "moat:device:"

enum pki_kind { PKI_CA, PKI_SERVER, PKI_DEVICE };

struct pki_spec {
	enum pki_kind kind;
	const char *cn;
	int days;
	long lifetime_s;      /* instead of days when > 0: notAfter - notBefore */
	EVP_PKEY *key;	      /* subject key */
	X509 *issuer;	      /* NULL: self-signed */
	EVP_PKEY *issuer_key; /* signing key (= key when self-signed) */
	GENERAL_NAMES *sans;  /* borrowed; NULL for none */
	const char *crl_url;  /* NULL or "": no CRL distribution point */
};

/* One X509v3 extension in OpenSSL's configuration syntax. */

/* pathlen:1 rather than 0: the CA that `moat init` makes is the root, and
 * the planned EST enrollment and CA-process split will want to issue device
 * certificates from an intermediate below it without re-rooting every
 * device. It still forbids any deeper chain. */
static const struct moat_pki_ext ca_exts[] = {
    {NID_basic_constraints, "critical,CA:TRUE,pathlen:1"},
    {NID_key_usage, "critical,keyCertSign,cRLSign"},
    {NID_subject_key_identifier, "hash"},
};

static const struct moat_pki_ext server_exts[] = {
    {NID_basic_constraints, "critical,CA:FALSE"},
    {NID_key_usage, "critical,digitalSignature"},
    {NID_ext_key_usage, "serverAuth"},
    {NID_subject_key_identifier, "hash"},
    {NID_authority_key_identifier, "keyid:always"},
};

static const struct moat_pki_ext device_exts[] = {
    {NID_basic_constraints, "critical,CA:FALSE"},
    {NID_key_usage, "critical,digitalSignature"},
    {NID_ext_key_usage, "clientAuth"},
    {NID_subject_key_identifier, "hash"},
    {NID_authority_key_identifier, "keyid:always"},
};

const struct moat_pki_ext *moat_pki_server_exts(size_t *n)
{
	*n = sizeof(server_exts) / sizeof(server_exts[0]);
	return server_exts;
}

const struct moat_pki_ext *moat_pki_device_exts(size_t *n)
{
	*n = sizeof(device_exts) / sizeof(device_exts[0]);
	return device_exts;
}

/* Write a message into err and append OpenSSL's reasons, if any. */
void moat_pki_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0) {
		ERR_clear_error();
		return;
	}
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	moat_tls_errors(err, errlen);
}

static moat_err asn1_unix(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return MOAT_E_INVAL;
	*out = (int64_t)timegm(&tm);
	return MOAT_OK;
}

moat_err moat_pki_cert_validity(const X509 *cert, int64_t *not_before, int64_t *not_after)
{
	int64_t nb = 0, na = 0;

	if (cert == NULL || asn1_unix(X509_get0_notBefore(cert), &nb) != MOAT_OK ||
	    asn1_unix(X509_get0_notAfter(cert), &na) != MOAT_OK)
		return MOAT_E_INVAL;
	if (not_before != NULL)
		*not_before = nb;
	if (not_after != NULL)
		*not_after = na;
	return MOAT_OK;
}

bool moat_pki_crl_url_valid(const char *url)
{
	size_t i, n;

	if (url == NULL)
		return false;
	n = strnlen(url, MOAT_CRL_URL_MAX + 1);
	if (n > MOAT_CRL_URL_MAX || !((n > 8 && strncmp(url, "https://", 8) == 0) ||
				      (n > 7 && strncmp(url, "http://", 7) == 0)))
		return false;
	for (i = 0; i < n; i++) {
		if (url[i] <= 0x20 || url[i] >= 0x7f)
			return false;
	}
	return true;
}

void moat_pki_crl_url(const struct moat_conf *conf, char *out, size_t outlen)
{
	const struct moat_listener_conf *l = NULL;
	const char *host;
	size_t i;
	int n;

	if (outlen == 0)
		return;
	out[0] = '\0';
	if (conf->crl_url[0] != '\0') {
		snprintf(out, outlen, "%s", conf->crl_url);
		return;
	}
	for (i = 0; i < conf->n_listeners && l == NULL; i++) {
		if (conf->listeners[i].protocol == MOAT_PROTO_HTTPS)
			l = &conf->listeners[i];
	}
	if (l == NULL)
		return;
	host = l->bind;
	/* A wildcard is no address a device can reach; the operator sets
	 * crl_url for anything but this machine. */
	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
		host = "localhost";
	n = snprintf(out, outlen, strchr(host, ':') != NULL ? "%s://[%s]:%u/crl" : "%s://%s:%u/crl",
		     l->tls ? "https" : "http", host, (unsigned)l->port);
	if (n < 0 || (size_t)n >= outlen || !moat_pki_crl_url_valid(out))
		out[0] = '\0';
}

moat_err moat_pki_add_cdp(X509 *cert, const char *url)
{
	CRL_DIST_POINTS *cdp = NULL;
	DIST_POINT *dp = NULL;
	GENERAL_NAME *gn = NULL;
	ASN1_IA5STRING *ia5 = NULL;
	moat_err rc = MOAT_E_INVAL;

	if (cert == NULL || !moat_pki_crl_url_valid(url))
		goto out;
	rc = MOAT_E_NOMEM;
	cdp = sk_DIST_POINT_new_null();
	dp = DIST_POINT_new();
	gn = GENERAL_NAME_new();
	ia5 = ASN1_IA5STRING_new();
	if (cdp == NULL || dp == NULL || gn == NULL || ia5 == NULL ||
	    ASN1_STRING_set(ia5, url, -1) != 1)
		goto out;
	GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
	ia5 = NULL; /* owned by gn */
	dp->distpoint = DIST_POINT_NAME_new();
	if (dp->distpoint == NULL)
		goto out;
	dp->distpoint->type = 0; /* fullName */
	dp->distpoint->name.fullname = GENERAL_NAMES_new();
	if (dp->distpoint->name.fullname == NULL ||
	    sk_GENERAL_NAME_push(dp->distpoint->name.fullname, gn) <= 0)
		goto out;
	gn = NULL; /* owned by dp */
	if (sk_DIST_POINT_push(cdp, dp) <= 0)
		goto out;
	dp = NULL; /* owned by cdp */
	rc = MOAT_E_CRYPTO;
	if (X509_add1_ext_i2d(cert, NID_crl_distribution_points, cdp, 0, X509V3_ADD_DEFAULT) != 1)
		goto out;
	rc = MOAT_OK;
out:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gn);
	DIST_POINT_free(dp);
	CRL_DIST_POINTS_free(cdp);
	return rc;
}

static moat_err path_join(char *out, const char *dir, const char *name, char *err, size_t errlen)
{
	int n = snprintf(out, MOAT_MAX_PATH, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= MOAT_MAX_PATH) {
		moat_pki_fail(err, errlen, "pki: path too long: %s/%s", dir, name);
		return MOAT_E_LIMIT;
	}
	return MOAT_OK;
}

static moat_err tmp_path(char *out, const char *path, char *err, size_t errlen)
{
	int n = snprintf(out, MOAT_MAX_PATH, "%s.tmp", path);

	if (n < 0 || (size_t)n >= MOAT_MAX_PATH) {
		moat_pki_fail(err, errlen, "pki: path too long: %s", path);
		return MOAT_E_LIMIT;
	}
	return MOAT_OK;
}

/* The rename is only durable once the directory entry is on disk. */
static moat_err dir_sync(const char *path, char *err, size_t errlen)
{
	char dir[MOAT_MAX_PATH];
	const char *slash = strrchr(path, '/');
	size_t n;
	moat_err rc = MOAT_E_IO;

	if (slash == NULL) {
		dir[0] = '.';
		dir[1] = '\0';
	} else {
		n = (size_t)(slash - path);
		if (n == 0)
			n = 1; /* "/name": the root directory */
		if (n >= sizeof(dir)) {
			rc = MOAT_E_LIMIT;
			moat_pki_fail(err, errlen, "pki: path too long: %s", path);
			goto out;
		}
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	rc = moat_dir_sync(dir, err, errlen);
out:
	return rc;
}

/*
 * Write data to "<path>.tmp" with exactly `mode`, and fsync it. O_EXCL: a
 * leftover temp file (crash, or a concurrent run) is reported, never
 * truncated or followed if it is a symlink.
 */
static moat_err file_stage(const char *path, mode_t mode, const char *data, size_t n, char *err,
			   size_t errlen)
{
	char tmp[MOAT_MAX_PATH];
	moat_err rc;

	rc = tmp_path(tmp, path, err, errlen);
	if (rc)
		return rc;
	rc = moat_file_create(tmp, mode, data, n, err, errlen);
	if (rc == MOAT_E_EXISTS && err != NULL && errlen > 0) {
		size_t used = strlen(err);
		snprintf(err + used, errlen - used, " (left by an interrupted run? remove it)");
	}
	return rc;
}

/* Remove a staged file that will not be committed. */
static void file_discard(const char *path)
{
	char tmp[MOAT_MAX_PATH];

	if (tmp_path(tmp, path, NULL, 0) == MOAT_OK)
		unlink(tmp);
}

/*
 * Move "<path>.tmp" to path. Without `replace`, link(2) makes the no-clobber
 * check and the creation one atomic step: rename would silently overwrite a
 * key that appeared since we looked.
 */
static moat_err file_commit(const char *path, bool replace, char *err, size_t errlen)
{
	char tmp[MOAT_MAX_PATH];
	moat_err rc;

	rc = tmp_path(tmp, path, err, errlen);
	if (rc)
		goto out;
	rc = MOAT_E_IO;
	if (replace) {
		if (rename(tmp, path) != 0) {
			moat_pki_fail(err, errlen, "pki: cannot rename %s to %s: %s", tmp, path,
				      strerror(errno));
			goto out;
		}
	} else {
		if (link(tmp, path) != 0) {
			if (errno == EEXIST)
				rc = MOAT_E_EXISTS;
			moat_pki_fail(err, errlen, "pki: cannot create %s: %s", path,
				      strerror(errno));
			goto out;
		}
		if (unlink(tmp) != 0) {
			moat_pki_fail(err, errlen, "pki: cannot remove %s: %s", tmp,
				      strerror(errno));
			goto out;
		}
	}
	rc = dir_sync(path, err, errlen);
out:
	return rc;
}

/* Refuse early, before generating anything, when a key is already there. */
static moat_err refuse_existing(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (lstat(path, &st) == 0) {
		moat_pki_fail(err, errlen, "pki: %s already exists; refusing to overwrite a key",
			      path);
		return MOAT_E_EXISTS;
	}
	if (errno != ENOENT) {
		moat_pki_fail(err, errlen, "pki: cannot check %s: %s", path, strerror(errno));
		return MOAT_E_IO;
	}
	return MOAT_OK;
}

/* An encrypted key must fail to load, never prompt on a terminal. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Serialise as PEM into a BIO; the caller frees it (secure BIOs are wiped). */
static moat_err pem_key(EVP_PKEY *key, BIO **out, char *err, size_t errlen)
{
	BIO *bio = BIO_new(BIO_s_secmem());
	moat_err rc = MOAT_E_CRYPTO;

	if (bio == NULL) {
		rc = MOAT_E_NOMEM;
		moat_pki_fail(err, errlen, "pki: cannot allocate key buffer");
		goto out;
	}
	/* In OpenSSL 3 this is unencrypted PKCS#8 ("BEGIN PRIVATE KEY"). */
	if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
		moat_pki_fail(err, errlen, "pki: cannot encode private key");
		goto out;
	}
	*out = bio;
	bio = NULL;
	rc = MOAT_OK;
out:
	BIO_free(bio);
	return rc;
}

static moat_err pem_cert(X509 *cert, BIO **out, char *err, size_t errlen)
{
	BIO *bio = BIO_new(BIO_s_mem());
	moat_err rc = MOAT_E_CRYPTO;

	if (bio == NULL) {
		rc = MOAT_E_NOMEM;
		moat_pki_fail(err, errlen, "pki: cannot allocate certificate buffer");
		goto out;
	}
	if (PEM_write_bio_X509(bio, cert) != 1) {
		moat_pki_fail(err, errlen, "pki: cannot encode certificate");
		goto out;
	}
	*out = bio;
	bio = NULL;
	rc = MOAT_OK;
out:
	BIO_free(bio);
	return rc;
}

static moat_err bio_stage(const char *path, mode_t mode, BIO *bio, char *err, size_t errlen)
{
	char *data = NULL;
	long n = BIO_get_mem_data(bio, &data);

	if (n <= 0 || data == NULL) {
		moat_pki_fail(err, errlen, "pki: nothing to write to %s", path);
		return MOAT_E_INTERNAL;
	}
	return file_stage(path, mode, data, (size_t)n, err, errlen);
}

/*
 * Write a key (0600) and its certificate (0644). Both are staged before
 * either is committed; the key goes first so a key that appeared meanwhile
 * stops us before the certificate beside it is replaced.
 */
static moat_err write_pair(const char *key_path, bool replace_key, EVP_PKEY *key,
			   const char *cert_path, X509 *cert, char *err, size_t errlen)
{
	BIO *kbio = NULL;
	BIO *cbio = NULL;
	bool key_staged = false;
	bool cert_staged = false;
	moat_err rc;

	rc = pem_key(key, &kbio, err, errlen);
	if (rc)
		goto out;
	rc = pem_cert(cert, &cbio, err, errlen);
	if (rc)
		goto out;
	rc = bio_stage(key_path, 0600, kbio, err, errlen);
	if (rc)
		goto out;
	key_staged = true;
	rc = bio_stage(cert_path, 0644, cbio, err, errlen);
	if (rc)
		goto out;
	cert_staged = true;
	rc = file_commit(key_path, replace_key, err, errlen);
	if (rc)
		goto out;
	key_staged = false;
	rc = file_commit(cert_path, true, err, errlen);
	if (rc) {
		/* A key without its certificate would make the next run refuse
		 * to start over; we just created it, so take it back. */
		if (!replace_key)
			unlink(key_path);
		goto out;
	}
	cert_staged = false;
out:
	if (key_staged)
		file_discard(key_path);
	if (cert_staged)
		file_discard(cert_path);
	BIO_free(kbio);
	BIO_free(cbio);
	return rc;
}

static moat_err key_new(EVP_PKEY **out, char *err, size_t errlen)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	if (key == NULL) {
		moat_pki_fail(err, errlen, "pki: cannot generate P-256 key");
		return MOAT_E_CRYPTO;
	}
	*out = key;
	return MOAT_OK;
}

static moat_err serial_set(X509 *cert, char *err, size_t errlen)
{
	unsigned char raw[PKI_SERIAL_BYTES];
	ASN1_INTEGER *serial = NULL;
	BIGNUM *bn = NULL;
	moat_err rc = MOAT_E_CRYPTO;

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		moat_pki_fail(err, errlen, "pki: no randomness for serial number");
		goto out;
	}
	/* BN_bin2bn reads unsigned big-endian, so the serial is positive; DER
	 * adds a leading zero when the top bit is set (17 <= 20 octets). */
	bn = BN_bin2bn(raw, (int)sizeof(raw), NULL);
	if (bn == NULL || BN_is_zero(bn)) {
		moat_pki_fail(err, errlen, "pki: cannot make serial number");
		goto out;
	}
	serial = BN_to_ASN1_INTEGER(bn, NULL);
	if (serial == NULL || X509_set_serialNumber(cert, serial) != 1) {
		moat_pki_fail(err, errlen, "pki: cannot set serial number");
		goto out;
	}
	rc = MOAT_OK;
out:
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	return rc;
}

static moat_err exts_add(X509 *cert, X509V3_CTX *v3, const struct moat_pki_ext *exts, size_t n,
			 char *err, size_t errlen)
{
	X509_EXTENSION *ext = NULL;
	moat_err rc = MOAT_E_CRYPTO;
	size_t i;

	for (i = 0; i < n; i++) {
		ext = X509V3_EXT_conf_nid(NULL, v3, exts[i].nid, exts[i].value);
		if (ext == NULL || X509_add_ext(cert, ext, -1) != 1) {
			moat_pki_fail(err, errlen, "pki: cannot add extension %s",
				      OBJ_nid2sn(exts[i].nid));
			goto out;
		}
		X509_EXTENSION_free(ext);
		ext = NULL;
	}
	rc = MOAT_OK;
out:
	X509_EXTENSION_free(ext);
	return rc;
}

/* Build and sign a certificate as described by spec. */
static moat_err cert_build(const struct pki_spec *spec, X509 **out, char *err, size_t errlen)
{
	const struct moat_pki_ext *exts = NULL;
	const X509_NAME *issuer_name;
	X509_NAME *name = NULL;
	X509 *cert = NULL;
	X509V3_CTX v3;
	size_t n_exts = 0;
	moat_err rc = MOAT_E_CRYPTO;

	cert = X509_new();
	name = X509_NAME_new();
	if (cert == NULL || name == NULL) {
		rc = MOAT_E_NOMEM;
		moat_pki_fail(err, errlen, "pki: out of memory");
		goto out;
	}
	if (X509_set_version(cert, X509_VERSION_3) != 1) {
		moat_pki_fail(err, errlen, "pki: cannot set certificate version");
		goto out;
	}
	rc = serial_set(cert, err, errlen);
	if (rc)
		goto out;
	rc = MOAT_E_CRYPTO;
	if (X509_gmtime_adj(X509_getm_notBefore(cert), -PKI_CLOCK_SKEW_S) == NULL ||
	    (spec->lifetime_s > 0
		 ? X509_gmtime_adj(X509_getm_notAfter(cert), spec->lifetime_s - PKI_CLOCK_SKEW_S)
		 : X509_time_adj_ex(X509_getm_notAfter(cert), spec->days, 0, NULL)) == NULL) {
		moat_pki_fail(err, errlen, "pki: cannot set validity");
		goto out;
	}
	/* MBSTRING_UTF8 rejects invalid UTF-8; OpenSSL's string table rejects a
	 * CN over the 64 characters X.520 allows. */
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)spec->cn,
				       -1, -1, 0) != 1) {
		rc = MOAT_E_INVAL;
		moat_pki_fail(err, errlen, "pki: invalid common name \"%s\"", spec->cn);
		goto out;
	}
	if (X509_set_subject_name(cert, name) != 1) {
		moat_pki_fail(err, errlen, "pki: cannot set subject");
		goto out;
	}
	issuer_name = spec->issuer ? X509_get_subject_name(spec->issuer) : name;
	if (X509_set_issuer_name(cert, issuer_name) != 1 || X509_set_pubkey(cert, spec->key) != 1) {
		moat_pki_fail(err, errlen, "pki: cannot set issuer or public key");
		goto out;
	}
	if (spec->issuer != NULL &&
	    ASN1_TIME_compare(X509_get0_notAfter(cert), X509_get0_notAfter(spec->issuer)) > 0) {
		rc = MOAT_E_INVAL;
		moat_pki_fail(err, errlen,
			      "pki: a certificate valid %d days would outlive the CA; issue a "
			      "shorter one or renew the CA",
			      spec->days);
		goto out;
	}

	switch (spec->kind) {
	case PKI_CA:
		exts = ca_exts;
		n_exts = sizeof(ca_exts) / sizeof(ca_exts[0]);
		break;
	case PKI_SERVER:
		exts = server_exts;
		n_exts = sizeof(server_exts) / sizeof(server_exts[0]);
		break;
	case PKI_DEVICE:
		exts = device_exts;
		n_exts = sizeof(device_exts) / sizeof(device_exts[0]);
		break;
	}
	X509V3_set_ctx(&v3, spec->issuer ? spec->issuer : cert, cert, NULL, NULL, 0);
	rc = exts_add(cert, &v3, exts, n_exts, err, errlen);
	if (rc)
		goto out;
	rc = MOAT_E_CRYPTO;
	if (spec->sans != NULL &&
	    X509_add1_ext_i2d(cert, NID_subject_alt_name, spec->sans, 0, X509V3_ADD_DEFAULT) != 1) {
		moat_pki_fail(err, errlen, "pki: cannot add subject alternative names");
		goto out;
	}
	if (spec->crl_url != NULL && spec->crl_url[0] != '\0' &&
	    moat_pki_add_cdp(cert, spec->crl_url) != MOAT_OK) {
		moat_pki_fail(err, errlen, "pki: cannot add the CRL distribution point %s",
			      spec->crl_url);
		goto out;
	}
	if (X509_sign(cert, spec->issuer_key, EVP_sha256()) <= 0) {
		moat_pki_fail(err, errlen, "pki: cannot sign certificate");
		goto out;
	}
	*out = cert;
	cert = NULL;
	rc = MOAT_OK;
out:
	X509_NAME_free(name);
	X509_free(cert);
	return rc;
}

/*
 * Load dir/ca.key and dir/ca.crt. The key file must be readable by its owner
 * only: a CA key others can read is a CA anyone on the box can impersonate.
 */
static moat_err ca_load(const char *dir, X509 **cert_out, EVP_PKEY **key_out, char *err,
			size_t errlen)
{
	char key_path[MOAT_MAX_PATH];
	char cert_path[MOAT_MAX_PATH];
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	BIO *bio = NULL;
	struct stat st;
	int fd = -1;
	moat_err rc;

	rc = path_join(key_path, dir, "ca.key", err, errlen);
	if (rc)
		goto out;
	rc = path_join(cert_path, dir, "ca.crt", err, errlen);
	if (rc)
		goto out;
	rc = MOAT_E_IO;
	/* O_NOFOLLOW, then fstat on the open file: the mode we check is the
	 * mode of the file we read, not of whatever a symlink pointed to. */
	fd = open(key_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			rc = MOAT_E_NOTFOUND;
		moat_pki_fail(err, errlen, "pki: cannot open CA key %s: %s", key_path,
			      strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		moat_pki_fail(err, errlen, "pki: cannot stat %s: %s", key_path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = MOAT_E_PERM;
		moat_pki_fail(err, errlen, "pki: CA key %s is not a regular file", key_path);
		goto out;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		rc = MOAT_E_PERM;
		moat_pki_fail(err, errlen,
			      "pki: CA key %s is accessible by group or others (mode %03o); run "
			      "`chmod 600 %s`",
			      key_path, (unsigned)(st.st_mode & 0777), key_path);
		goto out;
	}
	rc = MOAT_E_CRYPTO;
	bio = BIO_new_fd(fd, BIO_NOCLOSE);
	if (bio == NULL) {
		moat_pki_fail(err, errlen, "pki: cannot read %s", key_path);
		goto out;
	}
	key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase_cb, NULL);
	if (key == NULL) {
		moat_pki_fail(err, errlen, "pki: cannot load CA key %s", key_path);
		goto out;
	}
	BIO_free(bio);
	bio = BIO_new_file(cert_path, "r");
	if (bio == NULL) {
		rc = MOAT_E_IO;
		moat_pki_fail(err, errlen, "pki: cannot open CA certificate %s", cert_path);
		goto out;
	}
	cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (cert == NULL) {
		moat_pki_fail(err, errlen, "pki: cannot load CA certificate %s", cert_path);
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		moat_pki_fail(err, errlen, "pki: CA key %s does not match %s", key_path, cert_path);
		goto out;
	}
	if (X509_check_ca(cert) < 1) {
		moat_pki_fail(err, errlen, "pki: %s is not a CA certificate", cert_path);
		goto out;
	}
	*cert_out = cert;
	*key_out = key;
	cert = NULL;
	key = NULL;
	rc = MOAT_OK;
out:
	if (fd >= 0)
		close(fd);
	BIO_free(bio);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}

/* LDH host names only: no wildcards, no underscores, no trailing dot. */
static bool dns_name_valid(const char *s)
{
	size_t n = strnlen(s, DNS_NAME_MAX + 1);
	size_t label = 0;
	size_t i;

	if (n == 0 || n > DNS_NAME_MAX)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > DNS_LABEL_MAX)
			return false;
	}
	return label > 0 && s[n - 1] != '-';
}

/* Append a name of the given type; takes ownership of value on success. */
static moat_err gn_push(GENERAL_NAMES *gens, int type, void *value)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	moat_err rc = MOAT_E_NOMEM;

	if (gn == NULL)
		goto out;
	GENERAL_NAME_set0_value(gn, type, value);
	if (sk_GENERAL_NAME_push(gens, gn) <= 0) {
		/* Hand value back to the caller, who still frees it. */
		GENERAL_NAME_set0_value(gn, type, NULL);
		goto out;
	}
	gn = NULL;
	rc = MOAT_OK;
out:
	GENERAL_NAME_free(gn);
	return rc;
}

/* An IA5String name (DNS or URI) taken from a C string. */
static moat_err gn_push_ia5(GENERAL_NAMES *gens, int type, const char *s)
{
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	moat_err rc = MOAT_E_NOMEM;

	if (ia5 == NULL || ASN1_STRING_set(ia5, s, -1) != 1)
		goto out;
	rc = gn_push(gens, type, ia5);
	if (rc == MOAT_OK)
		ia5 = NULL;
out:
	ASN1_IA5STRING_free(ia5);
	return rc;
}

/* An IP literal becomes an IP SAN, anything else must be a host name. */
static moat_err san_add(GENERAL_NAMES *gens, const char *name, char *err, size_t errlen)
{
	ASN1_OCTET_STRING *ip = NULL;
	moat_err rc = MOAT_E_INVAL;

	if (name == NULL) {
		moat_pki_fail(err, errlen, "pki: empty subject alternative name");
		goto out;
	}
	ip = a2i_IPADDRESS(name);
	if (ip != NULL) {
		rc = gn_push(gens, GEN_IPADD, ip);
		if (rc == MOAT_OK)
			ip = NULL; /* owned by gens */
	} else {
		ERR_clear_error();
		if (!dns_name_valid(name)) {
			moat_pki_fail(err, errlen,
				      "pki: \"%s\" is neither an IP address nor a valid host name",
				      name);
			goto out;
		}
		rc = gn_push_ia5(gens, GEN_DNS, name);
	}
	if (rc)
		moat_pki_fail(err, errlen, "pki: cannot add subject alternative name %s", name);
out:
	ASN1_OCTET_STRING_free(ip);
	return rc;
}

moat_err moat_pki_create_ca(const char *dir, const char *cn, char *err, size_t errlen)
{
	char key_path[MOAT_MAX_PATH];
	char cert_path[MOAT_MAX_PATH];
	struct pki_spec spec;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	moat_err rc = MOAT_E_INVAL;

	ERR_clear_error();
	if (dir == NULL || cn == NULL || cn[0] == '\0') {
		moat_pki_fail(err, errlen, "pki: a directory and a CA name are required");
		goto out;
	}
	rc = path_join(key_path, dir, "ca.key", err, errlen);
	if (rc)
		goto out;
	rc = path_join(cert_path, dir, "ca.crt", err, errlen);
	if (rc)
		goto out;
	rc = refuse_existing(key_path, err, errlen);
	if (rc)
		goto out;
	rc = key_new(&key, err, errlen);
	if (rc)
		goto out;
	memset(&spec, 0, sizeof(spec));
	spec.kind = PKI_CA;
	spec.cn = cn;
	spec.days = PKI_CA_DAYS;
	spec.key = key;
	spec.issuer_key = key;
	rc = cert_build(&spec, &cert, err, errlen);
	if (rc)
		goto out;
	rc = write_pair(key_path, false, key, cert_path, cert, err, errlen);
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}

moat_err moat_pki_create_server(const char *dir, const char *const *sans, size_t n_sans, char *err,
				size_t errlen)
{
	static const char *const defaults[] = {"localhost", "127.0.0.1", "::1"};
	char key_path[MOAT_MAX_PATH];
	char cert_path[MOAT_MAX_PATH];
	GENERAL_NAMES *gens = NULL;
	EVP_PKEY *ca_key = NULL;
	EVP_PKEY *key = NULL;
	X509 *ca = NULL;
	X509 *cert = NULL;
	struct pki_spec spec;
	size_t i;
	moat_err rc = MOAT_E_INVAL;

	ERR_clear_error();
	if (dir == NULL || (n_sans > 0 && sans == NULL)) {
		moat_pki_fail(err, errlen, "pki: invalid arguments");
		goto out;
	}
	rc = path_join(key_path, dir, "server.key", err, errlen);
	if (rc)
		goto out;
	rc = path_join(cert_path, dir, "server.crt", err, errlen);
	if (rc)
		goto out;
	rc = refuse_existing(key_path, err, errlen);
	if (rc)
		goto out;
	rc = MOAT_E_NOMEM;
	gens = GENERAL_NAMES_new();
	if (gens == NULL) {
		moat_pki_fail(err, errlen, "pki: out of memory");
		goto out;
	}
	for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
		rc = san_add(gens, defaults[i], err, errlen);
		if (rc)
			goto out;
	}
	for (i = 0; i < n_sans; i++) {
		rc = san_add(gens, sans[i], err, errlen);
		if (rc)
			goto out;
	}
	rc = ca_load(dir, &ca, &ca_key, err, errlen);
	if (rc)
		goto out;
	rc = key_new(&key, err, errlen);
	if (rc)
		goto out;
	memset(&spec, 0, sizeof(spec));
	spec.kind = PKI_SERVER;
	spec.cn = "localhost";
	spec.lifetime_s = (long)MOAT_SERVER_CERT_LIFETIME_S;
	spec.key = key;
	spec.issuer = ca;
	spec.issuer_key = ca_key;
	spec.sans = gens;
	rc = cert_build(&spec, &cert, err, errlen);
	if (rc)
		goto out;
	rc = write_pair(key_path, false, key, cert_path, cert, err, errlen);
out:
	GENERAL_NAMES_free(gens);
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
	return rc;
}

moat_err moat_pki_issue_device(const char *dir, const char *device_id, unsigned days,
			       const char *crl_url, const char *key_path, const char *cert_path,
			       char *err, size_t errlen)
{
	char uri[sizeof(DEVICE_URI_PREFIX) + MOAT_DEVICE_ID_MAX];
	GENERAL_NAMES *gens = NULL;
	EVP_PKEY *ca_key = NULL;
	EVP_PKEY *key = NULL;
	X509 *ca = NULL;
	X509 *cert = NULL;
	struct pki_spec spec;
	moat_err rc = MOAT_E_INVAL;
	int n;

	ERR_clear_error();
	if (dir == NULL || key_path == NULL || cert_path == NULL || device_id == NULL) {
		moat_pki_fail(err, errlen, "pki: invalid arguments");
		goto out;
	}
	if (!moat_device_id_valid(device_id, strnlen(device_id, MOAT_DEVICE_ID_MAX + 1))) {
		moat_pki_fail(
		    err, errlen,
		    "pki: invalid device id \"%.*s\": use 1-%u characters of a-z 0-9 . _ -, "
		    "starting with a letter or digit",
		    (int)MOAT_DEVICE_ID_MAX, device_id, MOAT_DEVICE_ID_MAX);
		goto out;
	}
	if (days == 0 || days > INT_MAX) {
		moat_pki_fail(err, errlen, "pki: invalid validity of %u days", days);
		goto out;
	}
	if (strcmp(key_path, cert_path) == 0) {
		moat_pki_fail(err, errlen, "pki: key and certificate paths must differ");
		goto out;
	}
	n = snprintf(uri, sizeof(uri), "%s%s", DEVICE_URI_PREFIX, device_id);
	if (n < 0 || (size_t)n >= sizeof(uri)) {
		rc = MOAT_E_INTERNAL;
		moat_pki_fail(err, errlen, "pki: device URI too long");
		goto out;
	}
	rc = MOAT_E_NOMEM;
	gens = GENERAL_NAMES_new();
	if (gens == NULL || gn_push_ia5(gens, GEN_URI, uri) != MOAT_OK) {
		moat_pki_fail(err, errlen, "pki: out of memory");
		goto out;
	}
	rc = ca_load(dir, &ca, &ca_key, err, errlen);
	if (rc)
		goto out;
	rc = key_new(&key, err, errlen);
	if (rc)
		goto out;
	memset(&spec, 0, sizeof(spec));
	spec.kind = PKI_DEVICE;
	spec.cn = device_id;
	spec.days = (int)days;
	spec.crl_url = crl_url;
	spec.key = key;
	spec.issuer = ca;
	spec.issuer_key = ca_key;
	spec.sans = gens;
	rc = cert_build(&spec, &cert, err, errlen);
	if (rc)
		goto out;
	/* Re-issuing to the same paths is how a development device is renewed,
	 * so the caller's explicit paths may be replaced. */
	rc = write_pair(key_path, true, key, cert_path, cert, err, errlen);
out:
	GENERAL_NAMES_free(gens);
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
	return rc;
}
