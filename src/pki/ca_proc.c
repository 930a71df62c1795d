/*
 * The key process and its client (ca.h).
 *
 * The child owns the keys and nothing else: it keeps one socket (fd 3),
 * stdin and stdout on /dev/null and stderr for log lines, loads the CA key
 * into OpenSSL's secure heap (mlock'ed, left out of core dumps) and the
 * audit and sealing keys into locked, undumped memory of its own (creating
 * those two when the data directory predates them), makes itself
 * undumpable, exercises every code path it will need once (so lazy
 * initialisation that opens files happens before the sandbox), then
 * installs a seccomp-bpf filter and serves one answer per request until the
 * parent closes the socket or dies. Buffers that held a sealed secret's
 * plaintext are wiped after each request, on both sides.
 *
 * The parent side keeps no key material, only the socket. Each call sends a
 * request with a fresh sequence number and waits, up to MOAT_CA_TIMEOUT_MS,
 * for the answer with that number; an answer to an earlier call that timed
 * out is recognised by its number and dropped, so a slow CA can never make
 * one caller read another's certificate.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <sodium.h>

#if defined(__linux__) && defined(__has_include)
#if __has_include(<linux/seccomp.h>) && __has_include(<linux/filter.h>) &&                         \
    __has_include(<linux/audit.h>) && (defined(__x86_64__) || defined(__aarch64__))
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#define CA_SECCOMP 1
#endif
#endif

#include "core/limits.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/reactor.h"
#include "pki/ca.h"
#include "pki/pki.h"
#include "pki/csr.h"
#include "tls/tls.h"

#if defined(__SANITIZE_ADDRESS__)
#define CA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CA_ASAN 1
#endif
#endif

/* The CA's socket in the child, right after stderr. */
#define CA_FD 3

/* OpenSSL's secure heap in the child: private key numbers live there, in
 * mlock'ed pages that core dumps skip. 64 KiB holds an RSA-4096 key with
 * room to spare; both sizes must be powers of two. */
#define CA_SECURE_HEAP (64u * 1024u)
#define CA_SECURE_MIN 32u

/* moat_ca_raw_request lets tests send this much past the limit. */
#define CA_RAW_SLACK 4096u

/* How often moat_ca_stop looks whether the CA has exited: it usually has
 * within a millisecond of EOF, so a short poll keeps shutdown quick. */
#define CA_STOP_POLL_NS (5L * 1000L * 1000L)

#define DEVICE_URI_PREFIX "moat:device:"

#define SECONDS_PER_DAY 86400LL

struct moat_ca {
	pthread_mutex_t lock;
	int fd;
	pid_t pid;
	uint32_t seq;
	uint8_t *rbuf; /* MOAT_CA_MSG_MAX: one answer */
};

/* The keys other than the CA's, in one block the child locks in memory and
 * leaves out of core dumps. */
struct key_slots {
	uint8_t audit_sk[MOAT_AUDIT_SK_LEN];
	uint8_t seal[MOAT_SEAL_KEY_LEN];
};

/* What the child holds. */
struct ca_state {
	struct key_slots *keys;
	EVP_PKEY *key;
	X509 *cert;
	uint8_t *cert_der;
	size_t cert_der_len;
	const EVP_MD *md; /* NULL: the key type fixes the hash (Ed25519) */
	/* The CRL being assembled (CRL_ADD) and the last one signed (CRL_PART). */
	struct moat_ca_entry *pending;
	uint32_t n_pending, cap_pending;
	uint8_t *crl_der;
	size_t crl_len;
};

/* ------------------------------------------------------------------------
 * The child: loading the key
 */

/* An encrypted key must fail to load, never prompt on a terminal. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static const EVP_MD *sig_md(EVP_PKEY *key)
{
	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_ED25519:
	case EVP_PKEY_ED448:
		return NULL;
	case EVP_PKEY_EC:
		/* Match the hash to the curve's strength. */
		if (EVP_PKEY_get_bits(key) > 384)
			return EVP_sha512();
		if (EVP_PKEY_get_bits(key) > 256)
			return EVP_sha384();
		return EVP_sha256();
	default:
		return EVP_sha256();
	}
}

/*
 * Load dir/ca.key and dir/ca.crt. The key must be a regular file readable
 * by its owner only (checked on the open file, never through a symlink): a
 * CA key others can read is a CA anyone on the box can impersonate.
 */
static moat_err ca_load(const char *dir, struct ca_state *st, char *err, size_t errlen)
{
	char key_path[MOAT_MAX_PATH];
	char cert_path[MOAT_MAX_PATH];
	unsigned char *der = NULL;
	BIO *bio = NULL;
	struct stat st_key;
	int fd = -1, n;
	moat_err rc = MOAT_E_LIMIT;

	n = snprintf(key_path, sizeof(key_path), "%s/ca.key", dir);
	if (n < 0 || (size_t)n >= sizeof(key_path)) {
		moat_pki_fail(err, errlen, "ca: path too long: %s/ca.key", dir);
		goto out;
	}
	n = snprintf(cert_path, sizeof(cert_path), "%s/ca.crt", dir);
	if (n < 0 || (size_t)n >= sizeof(cert_path)) {
		moat_pki_fail(err, errlen, "ca: path too long: %s/ca.crt", dir);
		goto out;
	}
	rc = MOAT_E_IO;
	fd = open(key_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			rc = MOAT_E_NOTFOUND;
		moat_pki_fail(err, errlen, "ca: cannot open CA key %s: %s", key_path,
			      strerror(errno));
		goto out;
	}
	if (fstat(fd, &st_key) != 0) {
		moat_pki_fail(err, errlen, "ca: cannot stat %s: %s", key_path, strerror(errno));
		goto out;
	}
	rc = MOAT_E_PERM;
	if (!S_ISREG(st_key.st_mode)) {
		moat_pki_fail(err, errlen, "ca: CA key %s is not a regular file", key_path);
		goto out;
	}
	if ((st_key.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		moat_pki_fail(
		    err, errlen,
		    "ca: CA key %s is accessible by group or others (mode %03o); run `chmod "
		    "600 %s`",
		    key_path, (unsigned)(st_key.st_mode & 0777), key_path);
		goto out;
	}
	rc = MOAT_E_CRYPTO;
	bio = BIO_new_fd(fd, BIO_NOCLOSE);
	if (bio == NULL) {
		moat_pki_fail(err, errlen, "ca: cannot read %s", key_path);
		goto out;
	}
	/* PEM_read_bio_PrivateKey decodes through OpenSSL's secure heap. */
	st->key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase_cb, NULL);
	if (st->key == NULL) {
		moat_pki_fail(err, errlen, "ca: cannot load CA key %s", key_path);
		goto out;
	}
	BIO_free(bio);
	bio = BIO_new_file(cert_path, "r");
	if (bio == NULL) {
		rc = MOAT_E_IO;
		moat_pki_fail(err, errlen, "ca: cannot open CA certificate %s", cert_path);
		goto out;
	}
	/* ca.crt may be a bundle (a CA rotation trusts the old and the new CA
	 * for a while, docs/ca-rotation.md): sign with the certificate that
	 * belongs to ca.key. */
	for (;;) {
		X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		if (x == NULL)
			break;
		if (X509_check_private_key(x, st->key) == 1) {
			st->cert = x;
			break;
		}
		X509_free(x);
	}
	ERR_clear_error();
	if (st->cert == NULL) {
		moat_pki_fail(err, errlen, "ca: no certificate in %s belongs to the CA key %s",
			      cert_path, key_path);
		goto out;
	}
	if (X509_check_ca(st->cert) < 1) {
		moat_pki_fail(err, errlen, "ca: %s is not a CA certificate", cert_path);
		goto out;
	}
	n = i2d_X509(st->cert, &der);
	if (n <= 0) {
		moat_pki_fail(err, errlen, "ca: cannot encode %s", cert_path);
		goto out;
	}
	rc = MOAT_E_NOMEM;
	st->cert_der = malloc((size_t)n);
	if (st->cert_der == NULL) {
		moat_pki_fail(err, errlen, "ca: out of memory");
		goto out;
	}
	memcpy(st->cert_der, der, (size_t)n);
	st->cert_der_len = (size_t)n;
	st->md = sig_md(st->key);
	rc = MOAT_OK;
out:
	if (fd >= 0)
		close(fd);
	OPENSSL_free(der);
	BIO_free(bio);
	return rc;
}

static void ca_state_free(struct ca_state *st)
{
	if (st->keys != NULL)
		sodium_memzero(st->keys, sizeof(*st->keys));
	EVP_PKEY_free(st->key);
	X509_free(st->cert);
	free(st->cert_der);
	free(st->pending);
	free(st->crl_der);
	memset(st, 0, sizeof(*st));
}

_Static_assert(MOAT_KEY_SEAL_TAG_LEN + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
		       crypto_aead_xchacha20poly1305_ietf_ABYTES ==
		   MOAT_KEY_SEAL_OVERHEAD,
	       "the sealed blob's overhead is its tag, nonce and MAC");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == MOAT_SEAL_KEY_LEN,
	       "seal.key is an XChaCha20-Poly1305 key");

/*
 * The audit signing key and the sealing key, created first when the data
 * directory predates them (exclusively: an existing key is never replaced),
 * so a data directory from before the key process gets them here rather
 * than in the serving process. Kept in static storage that is locked in
 * memory and left out of core dumps (best effort: without a memlock
 * allowance they are still in an undumpable process).
 */
static moat_err keys_load(const char *dir, struct ca_state *st, char *err, size_t errlen)
{
	static struct key_slots keys;
	uint8_t pk[MOAT_AUDIT_PK_LEN];
	moat_err rc;

	if (sodium_init() < 0) {
		moat_pki_fail(err, errlen, "key: libsodium failed to initialise");
		return MOAT_E_CRYPTO;
	}
	(void)sodium_mlock(&keys, sizeof(keys));
	st->keys = &keys;
	rc = moat_audit_key_create(dir, err, errlen);
	if (rc == MOAT_OK)
		log_notice("audit_key_created",
			   "path=%s/audit.key note=\"keep a copy of audit.pub elsewhere\"", dir);
	else if (rc != MOAT_E_EXISTS)
		return rc;
	rc = moat_audit_key_load(dir, keys.audit_sk, pk, err, errlen);
	if (rc)
		return rc;
	rc = moat_seal_key_create(dir, err, errlen);
	if (rc == MOAT_OK)
		log_notice("seal_key_created",
			   "path=%s/seal.key note=\"back it up with moat.db: it opens the "
			   "sealed TOTP seeds\"",
			   dir);
	else if (rc != MOAT_E_EXISTS)
		return rc;
	return moat_seal_key_load(dir, keys.seal, err, errlen);
}

/* ------------------------------------------------------------------------
 * The child: issuing
 */

static void hex_encode(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0xfu];
	}
	out[2 * n] = '\0';
}

/* 128 random bits: unpredictable serials defeat chosen-prefix collision
 * attacks on the signature and are unique without a counter to keep. */
static moat_err serial_set(X509 *cert, char hex[MOAT_CA_SERIAL_HEX_LEN + 1], char *why,
			   size_t whylen)
{
	uint8_t raw[MOAT_CA_SERIAL_HEX_LEN / 2];
	ASN1_INTEGER *serial = NULL;
	BIGNUM *bn = NULL;
	moat_err rc = MOAT_E_CRYPTO;

	if (RAND_bytes(raw, (int)sizeof(raw)) != 1) {
		moat_pki_fail(why, whylen, "ca: no randomness for a serial number");
		goto out;
	}
	/* Unsigned big-endian, so positive; DER adds a zero octet when the top
	 * bit is set (17 <= 20 octets). */
	bn = BN_bin2bn(raw, (int)sizeof(raw), NULL);
	if (bn == NULL || BN_is_zero(bn)) {
		moat_pki_fail(why, whylen, "ca: cannot make a serial number");
		goto out;
	}
	serial = BN_to_ASN1_INTEGER(bn, NULL);
	if (serial == NULL || X509_set_serialNumber(cert, serial) != 1) {
		moat_pki_fail(why, whylen, "ca: cannot set the serial number");
		goto out;
	}
	hex_encode(raw, sizeof(raw), hex);
	rc = MOAT_OK;
out:
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	return rc;
}

static moat_err ext_add(X509 *cert, X509V3_CTX *v3, int nid, const char *value, char *why,
			size_t whylen)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
	moat_err rc = MOAT_OK;

	if (ext == NULL || X509_add_ext(cert, ext, -1) != 1) {
		rc = MOAT_E_CRYPTO;
		moat_pki_fail(why, whylen, "ca: cannot add extension %s", OBJ_nid2sn(nid));
	}
	X509_EXTENSION_free(ext);
	return rc;
}

/*
 * A device certificate for id with public key pub, valid days from now and
 * skew_s before. The caller has checked the request (moat_csr_check), which
 * also proves id is a valid device id: it goes into the CN and the SAN
 * configuration string only because it holds nothing but [a-z0-9._-].
 */
static moat_err cert_issue(const struct ca_state *st, const char *id, EVP_PKEY *pub, uint32_t days,
			   uint32_t skew_s, const char *crl_url, X509 **out,
			   char serial_hex[MOAT_CA_SERIAL_HEX_LEN + 1], int64_t *not_after,
			   char *why, size_t whylen)
{
	char san[sizeof("URI:" DEVICE_URI_PREFIX) + MOAT_DEVICE_ID_MAX];
	X509_NAME *name = NULL;
	X509 *cert = NULL;
	X509V3_CTX v3;
	time_t now = time(NULL);
	size_t i, n_exts = 0;
	const struct moat_pki_ext *exts = moat_pki_device_exts(&n_exts);
	int n;
	moat_err rc = MOAT_E_NOMEM;

	cert = X509_new();
	name = X509_NAME_new();
	if (cert == NULL || name == NULL) {
		moat_pki_fail(why, whylen, "ca: out of memory");
		goto out;
	}
	rc = MOAT_E_CRYPTO;
	if (X509_set_version(cert, X509_VERSION_3) != 1) {
		moat_pki_fail(why, whylen, "ca: cannot set the certificate version");
		goto out;
	}
	rc = serial_set(cert, serial_hex, why, whylen);
	if (rc)
		goto out;
	rc = MOAT_E_CRYPTO;
	if (ASN1_TIME_adj(X509_getm_notBefore(cert), now, 0, -(long)skew_s) == NULL ||
	    ASN1_TIME_adj(X509_getm_notAfter(cert), now, (int)days, 0) == NULL) {
		moat_pki_fail(why, whylen, "ca: cannot set the validity");
		goto out;
	}
	if (ASN1_TIME_compare(X509_get0_notAfter(cert), X509_get0_notAfter(st->cert)) > 0) {
		rc = MOAT_E_INVAL;
		moat_pki_fail(
		    why, whylen,
		    "ca: a certificate valid %u days would outlive the CA; issue a shorter one "
		    "or renew the CA",
		    days);
		goto out;
	}
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)id, -1, -1,
				       0) != 1 ||
	    X509_set_subject_name(cert, name) != 1 ||
	    X509_set_issuer_name(cert, X509_get_subject_name(st->cert)) != 1 ||
	    X509_set_pubkey(cert, pub) != 1) {
		moat_pki_fail(why, whylen, "ca: cannot set the names or the public key");
		goto out;
	}
	X509V3_set_ctx(&v3, st->cert, cert, NULL, NULL, 0);
	for (i = 0; i < n_exts; i++) {
		rc = ext_add(cert, &v3, exts[i].nid, exts[i].value, why, whylen);
		if (rc)
			goto out;
	}
	rc = MOAT_E_INTERNAL;
	n = snprintf(san, sizeof(san), "URI:%s%s", DEVICE_URI_PREFIX, id);
	if (n < 0 || (size_t)n >= sizeof(san)) {
		moat_pki_fail(why, whylen, "ca: device URI too long");
		goto out;
	}
	rc = ext_add(cert, &v3, NID_subject_alt_name, san, why, whylen);
	if (rc)
		goto out;
	/* Where relying parties find out whether it was revoked. */
	if (crl_url != NULL && crl_url[0] != '\0') {
		rc = moat_pki_add_cdp(cert, crl_url);
		if (rc) {
			moat_pki_fail(why, whylen, "ca: invalid CRL distribution point");
			goto out;
		}
	}
	rc = MOAT_E_CRYPTO;
	if (X509_sign(cert, st->key, st->md) <= 0) {
		moat_pki_fail(why, whylen, "ca: cannot sign the certificate");
		goto out;
	}
	*not_after = (int64_t)now + (int64_t)days * SECONDS_PER_DAY;
	*out = cert;
	cert = NULL;
	rc = MOAT_OK;
out:
	X509_NAME_free(name);
	X509_free(cert);
	return rc;
}

/* A v2 CRL of the n entries in list, already validated by
 * moat_ca_req_parse. */
static moat_err crl_build(const struct ca_state *st, uint64_t number, uint32_t next_update_s,
			  const struct moat_ca_entry *list, uint32_t n, X509_CRL **out, char *why,
			  size_t whylen)
{
	const struct moat_ca_entry *e;
	ASN1_INTEGER *num = NULL;
	ASN1_INTEGER *serial = NULL;
	ASN1_TIME *t = NULL;
	X509_REVOKED *rev = NULL;
	X509_EXTENSION *ext = NULL;
	X509_CRL *crl = NULL;
	BIGNUM *bn = NULL;
	X509V3_CTX v3;
	time_t now = time(NULL);
	uint32_t i;
	moat_err rc = MOAT_E_NOMEM;

	crl = X509_CRL_new();
	t = ASN1_TIME_new();
	num = ASN1_INTEGER_new();
	if (crl == NULL || t == NULL || num == NULL) {
		moat_pki_fail(why, whylen, "ca: out of memory");
		goto out;
	}
	rc = MOAT_E_CRYPTO;
	if (X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
	    X509_CRL_set_issuer_name(crl, X509_get_subject_name(st->cert)) != 1 ||
	    ASN1_TIME_set(t, now) == NULL || X509_CRL_set1_lastUpdate(crl, t) != 1 ||
	    ASN1_TIME_adj(t, now, 0, (long)next_update_s) == NULL ||
	    X509_CRL_set1_nextUpdate(crl, t) != 1) {
		moat_pki_fail(why, whylen, "ca: cannot set the CRL's issuer or dates");
		goto out;
	}
	for (i = 0; i < n; i++) {
		e = &list[i];
		rev = X509_REVOKED_new();
		bn = BN_bin2bn(e->serial, (int)e->serial_len, NULL);
		serial = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
		if (rev == NULL || serial == NULL ||
		    ASN1_TIME_set(t, (time_t)e->revoked_at) == NULL ||
		    X509_REVOKED_set_serialNumber(rev, serial) != 1 ||
		    X509_REVOKED_set_revocationDate(rev, t) != 1 ||
		    X509_CRL_add0_revoked(crl, rev) != 1) {
			moat_pki_fail(why, whylen, "ca: cannot add CRL entry %u", i);
			goto out;
		}
		rev = NULL;
		ASN1_INTEGER_free(serial);
		serial = NULL;
		BN_free(bn);
		bn = NULL;
	}
	if (ASN1_INTEGER_set_uint64(num, number) != 1 ||
	    X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, X509V3_ADD_DEFAULT) != 1) {
		moat_pki_fail(why, whylen, "ca: cannot set the CRL number");
		goto out;
	}
	X509V3_set_ctx(&v3, st->cert, NULL, NULL, crl, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier, "keyid:always");
	if (ext == NULL || X509_CRL_add_ext(crl, ext, -1) != 1) {
		moat_pki_fail(why, whylen, "ca: cannot add the CRL's authority key identifier");
		goto out;
	}
	if (X509_CRL_sort(crl) != 1 || X509_CRL_sign(crl, st->key, st->md) <= 0) {
		moat_pki_fail(why, whylen, "ca: cannot sign the CRL");
		goto out;
	}
	*out = crl;
	crl = NULL;
	rc = MOAT_OK;
out:
	X509_EXTENSION_free(ext);
	X509_REVOKED_free(rev);
	ASN1_INTEGER_free(serial);
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(t);
	BN_free(bn);
	X509_CRL_free(crl);
	return rc;
}

/* ------------------------------------------------------------------------
 * The child: request handlers. Each writes exactly one answer into out.
 */

static void answer_error(struct moat_buf *out, uint8_t type, uint32_t seq, moat_err rc,
			 const char *why)
{
	moat_buf_reset(out);
	if (moat_ca_ans_put_error(out, type, seq, rc, why) != MOAT_OK) {
		/* Only a broken invariant gets here; say something short. */
		moat_buf_reset(out);
		(void)moat_ca_ans_put_error(out, type, seq, MOAT_E_INTERNAL, "ca: internal error");
	}
}

static void on_sign(const struct ca_state *st, const struct moat_ca_req *req, struct moat_buf *out)
{
	char why[MOAT_CA_ERR_MAX] = "";
	char serial[MOAT_CA_SERIAL_HEX_LEN + 1];
	unsigned char *der = NULL;
	X509_REQ *csr = NULL;
	X509 *cert = NULL;
	int64_t not_after = 0;
	int n;
	moat_err rc;

	/* Never trust the parent's checks: the same policy, here. */
	rc = moat_csr_parse(req->csr, req->csr_len, &csr, why, sizeof(why));
	if (rc)
		goto out;
	rc = moat_csr_check(csr, req->device_id, why, sizeof(why));
	if (rc)
		goto out;
	rc = cert_issue(st, req->device_id, X509_REQ_get0_pubkey(csr), req->days, req->skew_s,
			req->crl_url, &cert, serial, &not_after, why, sizeof(why));
	if (rc)
		goto out;
	rc = MOAT_E_CRYPTO;
	n = i2d_X509(cert, &der);
	if (n <= 0) {
		moat_pki_fail(why, sizeof(why), "ca: cannot encode the certificate");
		goto out;
	}
	rc = moat_ca_ans_put_sign(out, req->seq, der, (size_t)n, serial, not_after);
	if (rc)
		snprintf(why, sizeof(why), "ca: the certificate does not fit an answer");
out:
	if (rc)
		answer_error(out, MOAT_CA_SIGN, req->seq, rc, why);
	OPENSSL_free(der);
	X509_free(cert);
	X509_REQ_free(csr);
	ERR_clear_error();
}

/*
 * Append the request's entries to the CRL being assembled. start must be
 * what is held (0 starts over): a client that failed half-way, or a
 * confused one, cannot splice two lists together. Grows by doubling, never
 * past MOAT_CRL_MAX_ENTRIES (the parser bounded start + count).
 */
static moat_err crl_append(struct ca_state *st, const struct moat_ca_req *req, char *why,
			   size_t whylen)
{
	struct moat_rd r;
	uint32_t i, need;

	if (req->start == 0)
		st->n_pending = 0;
	if (req->start != st->n_pending) {
		moat_pki_fail(why, whylen, "ca: CRL entries out of order (start %u, holding %u)",
			      req->start, st->n_pending);
		st->n_pending = 0;
		return MOAT_E_PROTOCOL;
	}
	need = st->n_pending + req->n_revoked;
	if (need > st->cap_pending) {
		uint32_t cap = st->cap_pending ? st->cap_pending : MOAT_CRL_CHUNK_ENTRIES;
		struct moat_ca_entry *p;

		while (cap < need)
			cap = cap > MOAT_CRL_MAX_ENTRIES / 2 ? MOAT_CRL_MAX_ENTRIES : cap * 2;
		p = realloc(st->pending, (size_t)cap * sizeof(*p));
		if (p == NULL) {
			moat_pki_fail(why, whylen, "ca: out of memory for %u CRL entries", need);
			st->n_pending = 0;
			return MOAT_E_NOMEM;
		}
		st->pending = p;
		st->cap_pending = cap;
	}
	moat_rd_init(&r, req->revoked, req->revoked_len);
	for (i = 0; i < req->n_revoked; i++) {
		/* Validated by the parser; a failure here is a broken invariant. */
		if (moat_ca_entry_next(&r, &st->pending[st->n_pending]) != MOAT_OK) {
			moat_pki_fail(why, whylen, "ca: invalid CRL entry %u", i);
			st->n_pending = 0;
			return MOAT_E_INTERNAL;
		}
		st->n_pending++;
	}
	return MOAT_OK;
}

static void on_crl_add(struct ca_state *st, const struct moat_ca_req *req, struct moat_buf *out)
{
	char why[MOAT_CA_ERR_MAX] = "";
	moat_err rc = crl_append(st, req, why, sizeof(why));

	if (rc == MOAT_OK)
		rc = moat_ca_ans_put_ok(out, MOAT_CA_CRL_ADD, req->seq);
	if (rc)
		answer_error(out, MOAT_CA_CRL_ADD, req->seq, rc, why);
}

static void on_crl(struct ca_state *st, const struct moat_ca_req *req, struct moat_buf *out)
{
	char why[MOAT_CA_ERR_MAX] = "";
	unsigned char *der = NULL;
	X509_CRL *crl = NULL;
	int n;
	moat_err rc;

	free(st->crl_der);
	st->crl_der = NULL;
	st->crl_len = 0;
	rc = crl_append(st, req, why, sizeof(why));
	if (rc)
		goto out;
	rc = crl_build(st, req->crl_number, req->next_update_s, st->pending, st->n_pending, &crl,
		       why, sizeof(why));
	st->n_pending = 0;
	if (rc)
		goto out;
	rc = MOAT_E_CRYPTO;
	n = i2d_X509_CRL(crl, &der);
	if (n <= 0) {
		moat_pki_fail(why, sizeof(why), "ca: cannot encode the CRL");
		goto out;
	}
	rc = MOAT_E_LIMIT;
	if ((size_t)n > MOAT_CRL_DER_MAX) {
		snprintf(why, sizeof(why), "ca: the CRL (%d bytes) is over %u bytes", n,
			 MOAT_CRL_DER_MAX);
		goto out;
	}
	rc = MOAT_E_NOMEM;
	st->crl_der = malloc((size_t)n);
	if (st->crl_der == NULL) {
		snprintf(why, sizeof(why), "ca: out of memory");
		goto out;
	}
	memcpy(st->crl_der, der, (size_t)n);
	st->crl_len = (size_t)n;
	rc = moat_ca_ans_put_crl(out, req->seq, (uint32_t)n, der,
				 (size_t)n < MOAT_CRL_PART_MAX ? (size_t)n : MOAT_CRL_PART_MAX);
	if (rc)
		snprintf(why, sizeof(why), "ca: the CRL does not fit an answer");
out:
	if (rc)
		answer_error(out, MOAT_CA_CRL, req->seq, rc, why);
	OPENSSL_free(der);
	X509_CRL_free(crl);
	ERR_clear_error();
}

/* Allowed only while a signed CRL is held, at an offset inside it. */
static void on_crl_part(const struct ca_state *st, const struct moat_ca_req *req,
			struct moat_buf *out)
{
	size_t left;

	if (st->crl_der == NULL || req->offset >= st->crl_len) {
		answer_error(out, MOAT_CA_CRL_PART, req->seq, MOAT_E_PROTOCOL,
			     "ca: no signed CRL at that offset");
		return;
	}
	left = st->crl_len - req->offset;
	if (moat_ca_ans_put_der(out, MOAT_CA_CRL_PART, req->seq, st->crl_der + req->offset,
				left < MOAT_CRL_PART_MAX ? left : MOAT_CRL_PART_MAX) != MOAT_OK)
		answer_error(out, MOAT_CA_CRL_PART, req->seq, MOAT_E_INTERNAL, "ca: cannot answer");
}

/* A new server certificate for the one in der: see moat_ca_renew_server. */
static moat_err server_renew(const struct ca_state *st, const uint8_t *der, size_t len, X509 **out,
			     char *why, size_t whylen)
{
	const unsigned char *p = der;
	const struct moat_pki_ext *exts;
	X509 *old = d2i_X509(NULL, &p, (long)len);
	X509 *cert = NULL;
	X509V3_CTX v3;
	char serial[MOAT_CA_SERIAL_HEX_LEN + 1];
	time_t now = time(NULL);
	size_t i, n_exts = 0;
	int san;
	moat_err rc = MOAT_E_INVAL;

	if (old == NULL || p != der + len) {
		moat_pki_fail(why, whylen, "ca: not a DER certificate");
		goto out;
	}
	rc = MOAT_E_DENIED;
	if (X509_NAME_cmp(X509_get_issuer_name(old), X509_get_subject_name(st->cert)) != 0 ||
	    X509_verify(old, X509_get0_pubkey(st->cert)) != 1) {
		moat_pki_fail(why, whylen,
			      "ca: the server certificate was not issued by this CA; renew it "
			      "where it came from");
		goto out;
	}
	if (X509_check_ca(old) != 0 || (X509_get_extension_flags(old) & EXFLAG_XKUSAGE) == 0 ||
	    (X509_get_extended_key_usage(old) & XKU_SSL_SERVER) == 0) {
		moat_pki_fail(why, whylen, "ca: not a server certificate (serverAuth)");
		goto out;
	}
	rc = MOAT_E_NOMEM;
	cert = X509_new();
	if (cert == NULL) {
		moat_pki_fail(why, whylen, "ca: out of memory");
		goto out;
	}
	rc = MOAT_E_CRYPTO;
	if (X509_set_version(cert, X509_VERSION_3) != 1 ||
	    serial_set(cert, serial, why, whylen) != MOAT_OK ||
	    ASN1_TIME_adj(X509_getm_notBefore(cert), now, 0, -(long)MOAT_CERT_SKEW_S) == NULL ||
	    ASN1_TIME_adj(X509_getm_notAfter(cert), now, 0,
			  (long)MOAT_SERVER_CERT_LIFETIME_S - (long)MOAT_CERT_SKEW_S) == NULL ||
	    X509_set_subject_name(cert, X509_get_subject_name(old)) != 1 ||
	    X509_set_issuer_name(cert, X509_get_subject_name(st->cert)) != 1 ||
	    X509_set_pubkey(cert, X509_get0_pubkey(old)) != 1) {
		moat_pki_fail(why, whylen, "ca: cannot build the server certificate");
		goto out;
	}
	if (ASN1_TIME_compare(X509_get0_notAfter(cert), X509_get0_notAfter(st->cert)) > 0) {
		rc = MOAT_E_INVAL;
		moat_pki_fail(why, whylen,
			      "ca: a renewed server certificate would outlive the CA; renew the CA "
			      "(docs/ca-rotation.md)");
		goto out;
	}
	X509V3_set_ctx(&v3, st->cert, cert, NULL, NULL, 0);
	exts = moat_pki_server_exts(&n_exts);
	for (i = 0; i < n_exts; i++) {
		rc = ext_add(cert, &v3, exts[i].nid, exts[i].value, why, whylen);
		if (rc)
			goto out;
	}
	rc = MOAT_E_CRYPTO;
	san = X509_get_ext_by_NID(old, NID_subject_alt_name, -1);
	if (san >= 0 && X509_add_ext(cert, X509_get_ext(old, san), -1) != 1) {
		moat_pki_fail(why, whylen, "ca: cannot copy the subject alternative names");
		goto out;
	}
	if (X509_sign(cert, st->key, st->md) <= 0) {
		moat_pki_fail(why, whylen, "ca: cannot sign the server certificate");
		goto out;
	}
	*out = cert;
	cert = NULL;
	rc = MOAT_OK;
out:
	X509_free(old);
	X509_free(cert);
	return rc;
}

static void on_renew_server(const struct ca_state *st, const struct moat_ca_req *req,
			    struct moat_buf *out)
{
	char why[MOAT_CA_ERR_MAX] = "";
	unsigned char *der = NULL;
	X509 *cert = NULL;
	int n;
	moat_err rc;

	rc = server_renew(st, req->cert, req->cert_len, &cert, why, sizeof(why));
	if (rc)
		goto out;
	rc = MOAT_E_CRYPTO;
	n = i2d_X509(cert, &der);
	if (n <= 0) {
		moat_pki_fail(why, sizeof(why), "ca: cannot encode the certificate");
		goto out;
	}
	rc = moat_ca_ans_put_der(out, MOAT_CA_RENEW_SERVER, req->seq, der, (size_t)n);
	if (rc)
		snprintf(why, sizeof(why), "ca: the certificate does not fit an answer");
out:
	if (rc)
		answer_error(out, MOAT_CA_RENEW_SERVER, req->seq, rc, why);
	OPENSSL_free(der);
	X509_free(cert);
	ERR_clear_error();
}

/* SIGN with a key slot: only MOAT_KEY_AUDIT holds a signing key today. */
static void on_key_sign(const struct ca_state *st, const struct moat_ca_req *req,
			struct moat_buf *out)
{
	struct moat_audit_checkpoint cp;
	struct moat_rd r;
	uint32_t hi, lo;
	const uint8_t *head;

	if (req->slot != MOAT_KEY_AUDIT) {
		answer_error(out, MOAT_CA_KEY_SIGN, req->seq, MOAT_E_NOTFOUND,
			     "key: no signing key in that slot");
		return;
	}
	/* The size and nothing else: the chain is the caller's. */
	if (req->data_len != MOAT_KEY_AUDIT_PAYLOAD) {
		answer_error(out, MOAT_CA_KEY_SIGN, req->seq, MOAT_E_INVAL,
			     "key: an audit checkpoint is 48 bytes (seq, time, head)");
		return;
	}
	memset(&cp, 0, sizeof(cp));
	moat_rd_init(&r, req->data, req->data_len);
	(void)moat_rd_u32(&r, &hi);
	(void)moat_rd_u32(&r, &lo);
	cp.seq = (int64_t)(((uint64_t)hi << 32) | lo);
	(void)moat_rd_u32(&r, &hi);
	(void)moat_rd_u32(&r, &lo);
	cp.ts_ms = (int64_t)(((uint64_t)hi << 32) | lo);
	if (moat_rd_bytes(&r, MOAT_AUDIT_HASH_LEN, &head) != MOAT_OK) {
		answer_error(out, MOAT_CA_KEY_SIGN, req->seq, MOAT_E_INTERNAL,
			     "key: short payload");
		return;
	}
	memcpy(cp.head, head, sizeof(cp.head));
	moat_audit_checkpoint_sign(&cp, st->keys->audit_sk);
	if (moat_ca_ans_put_der(out, MOAT_CA_KEY_SIGN, req->seq, cp.sig, sizeof(cp.sig)) != MOAT_OK)
		answer_error(out, MOAT_CA_KEY_SIGN, req->seq, MOAT_E_INTERNAL,
			     "key: cannot answer");
}

/* SEAL and UNSEAL: only MOAT_KEY_SECRETS holds a sealing key today. */
static void on_seal(const struct ca_state *st, const struct moat_ca_req *req, struct moat_buf *out)
{
	uint8_t blob[MOAT_KEY_SEAL_OVERHEAD + MOAT_KEY_SEAL_MAX];
	uint8_t *nonce = blob + MOAT_KEY_SEAL_TAG_LEN;
	uint8_t *ct = nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
	unsigned long long len = 0;

	if (req->slot != MOAT_KEY_SECRETS) {
		answer_error(out, req->type, req->seq, MOAT_E_NOTFOUND,
			     "key: no sealing key in that slot");
		return;
	}
	if (req->type == MOAT_CA_SEAL) {
		memcpy(blob, MOAT_KEY_SEAL_TAG, MOAT_KEY_SEAL_TAG_LEN);
		/* A random 192-bit nonce: never repeats in practice, no
		 * counter to keep across restarts. */
		randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
		(void)crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &len, req->data, req->data_len,
								 req->ad, req->ad_len, NULL, nonce,
								 st->keys->seal);
		if (moat_ca_ans_put_der(out, MOAT_CA_SEAL, req->seq, blob,
					(size_t)(ct - blob) + (size_t)len) != MOAT_OK)
			answer_error(out, MOAT_CA_SEAL, req->seq, MOAT_E_INTERNAL,
				     "key: cannot answer");
		return;
	}
	/* UNSEAL: the parser bounded the length to overhead + 1 or more. */
	if (memcmp(req->data, MOAT_KEY_SEAL_TAG, MOAT_KEY_SEAL_TAG_LEN) != 0 ||
	    crypto_aead_xchacha20poly1305_ietf_decrypt(
		blob, &len, NULL, req->data + (ct - blob), req->data_len - (size_t)(ct - blob),
		req->ad, req->ad_len, req->data + MOAT_KEY_SEAL_TAG_LEN, st->keys->seal) != 0) {
		answer_error(out, MOAT_CA_UNSEAL, req->seq, MOAT_E_CRYPTO,
			     "key: the sealed blob does not open (altered, sealed under another "
			     "key, or moved from another row or column)");
		return;
	}
	if (moat_ca_ans_put_der(out, MOAT_CA_UNSEAL, req->seq, blob, (size_t)len) != MOAT_OK)
		answer_error(out, MOAT_CA_UNSEAL, req->seq, MOAT_E_INTERNAL, "key: cannot answer");
	sodium_memzero(blob, sizeof(blob));
}

/* Answer one message of n bytes (truncated: the sender's was larger). */
static void ca_handle(struct ca_state *st, const uint8_t *p, size_t n, bool truncated,
		      struct moat_buf *out)
{
	struct moat_ca_req req;
	const char *why = NULL;
	uint8_t type = n >= 1 ? p[0] : 0xffu;
	uint32_t seq = 0;
	moat_err rc;

	moat_buf_reset(out);
	/* Echo what we can of the header so the client can match the error
	 * to its request. */
	if (n >= 5)
		seq =
		    ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | p[4];
	if (truncated) {
		char msg[96];

		snprintf(msg, sizeof(msg), "request over %u bytes", MOAT_CA_MSG_MAX);
		answer_error(out, type, seq, MOAT_E_TOO_LARGE, msg);
		return;
	}
	rc = moat_ca_req_parse(p, n, &req, &why);
	if (rc) {
		answer_error(out, type, seq, rc, why);
		return;
	}
	switch (req.type) {
	case MOAT_CA_PING:
		rc = moat_ca_ans_put_ok(out, MOAT_CA_PING, req.seq);
		break;
	case MOAT_CA_CACERTS:
		rc = moat_ca_ans_put_der(out, MOAT_CA_CACERTS, req.seq, st->cert_der,
					 st->cert_der_len);
		break;
	case MOAT_CA_SIGN:
		on_sign(st, &req, out);
		break;
	case MOAT_CA_CRL:
		on_crl(st, &req, out);
		break;
	case MOAT_CA_CRL_ADD:
		on_crl_add(st, &req, out);
		break;
	case MOAT_CA_CRL_PART:
		on_crl_part(st, &req, out);
		break;
	case MOAT_CA_RENEW_SERVER:
		on_renew_server(st, &req, out);
		break;
	case MOAT_CA_KEY_SIGN:
		on_key_sign(st, &req, out);
		break;
	case MOAT_CA_SEAL:
	case MOAT_CA_UNSEAL:
		on_seal(st, &req, out);
		break;
	default:
		rc = MOAT_E_PROTOCOL;
		break;
	}
	if (rc)
		answer_error(out, req.type, req.seq, rc, "ca: cannot answer");
}

/* One request per message, one answer per request, until EOF. */
static void ca_loop(struct ca_state *st)
{
	struct moat_buf out;
	uint8_t *in = malloc(MOAT_CA_MSG_MAX);

	moat_buf_init(&out, MOAT_CA_MSG_MAX);
	if (in == NULL)
		goto out;
	for (;;) {
		struct iovec iov = {.iov_base = in, .iov_len = MOAT_CA_MSG_MAX};
		struct msghdr mh;
		ssize_t n;
		bool secret;

		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		/* No control buffer: descriptors someone passes are closed by
		 * the kernel, never installed here. 0 is an empty message or
		 * the parent's EOF: either way it gets an error answer, and
		 * after EOF that send fails. */
		n = recvmsg(CA_FD, &mh, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		ca_handle(st, in, (size_t)n, (mh.msg_flags & MSG_TRUNC) != 0, &out);
		secret = n >= 1 && (in[0] == MOAT_CA_SEAL || in[0] == MOAT_CA_UNSEAL);
		/* A SEAL request and an UNSEAL answer carry plaintext. */
		if (secret)
			sodium_memzero(in, (size_t)n);
		do {
			n = send(CA_FD, moat_buf_head(&out), moat_buf_used(&out), MSG_NOSIGNAL);
		} while (n < 0 && errno == EINTR);
		if (secret)
			sodium_memzero(moat_buf_head(&out), moat_buf_used(&out));
		if (n < 0)
			break; /* the parent is gone */
	}
out:
	moat_buf_free(&out);
	free(in);
}

/* ------------------------------------------------------------------------
 * The child: lockdown
 */

/* The parent's handlers (a self-pipe, a shutdown flag) mean nothing here.
 * The CA follows its parent: EOF or PR_SET_PDEATHSIG ends it, not a ^C to
 * the process group or a hangup. */
static void child_signals(void)
{
	struct sigaction sa;
	sigset_t none;
	int s;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (s = 1; s < NSIG; s++) {
		if (s != SIGKILL && s != SIGSTOP)
			(void)sigaction(s, &sa, NULL);
	}
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGHUP, &sa, NULL);
	(void)sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Close every descriptor above CA_FD by walking /proc/self/fd (kernels
 * before 5.9 have no close_range). */
static int close_from_proc(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int dfd;

	if (d == NULL)
		return -1;
	dfd = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		char *end = NULL;
		long fd;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		errno = 0;
		fd = strtol(de->d_name, &end, 10);
		if (errno != 0 || end == NULL || *end != '\0' || fd <= CA_FD || fd > INT_MAX ||
		    fd == dfd)
			continue;
		(void)close((int)fd);
	}
	closedir(d);
	return 0;
}

/* Keep the socket as CA_FD, stdin/stdout on /dev/null, stderr for the log
 * (or /dev/null if the parent had none); close everything else the parent
 * had open: listeners, the database, other keys. */
static int child_fds(int sock)
{
	int nul;

	if (sock != CA_FD && dup2(sock, CA_FD) < 0)
		return -1;
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul < 0)
		return -1;
	if ((nul != 0 && dup2(nul, 0) < 0) || (nul != 1 && dup2(nul, 1) < 0))
		return -1;
	if ((sock == 2 || fcntl(2, F_GETFD) < 0) && nul != 2 && dup2(nul, 2) < 0)
		return -1;
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)CA_FD + 1u, ~0u, 0u) == 0)
		return 0;
#endif
	return close_from_proc();
}

#ifdef CA_SECCOMP

#if defined(__x86_64__)
#define CA_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define CA_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef SECCOMP_RET_KILL_PROCESS
#define CA_RET_KILL SECCOMP_RET_KILL_PROCESS
#else
#define CA_RET_KILL SECCOMP_RET_KILL
#endif

/* The low 32 bits of a syscall argument: descriptors and prot are ints. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define CA_ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * sizeof(uint64_t))
#else
#define CA_ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * sizeof(uint64_t) + 4)
#endif

#define CA_RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define CA_LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
/* nr: allow. */
#define CA_ALLOW(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), CA_RET(SECCOMP_RET_ALLOW)
/* nr on descriptor fd only; on any other descriptor: kill. */
#define CA_ALLOW_FD(nr, fd)                                                                        \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 4),                                           \
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, CA_ARG_LO(0)),                                      \
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (fd), 0, 1), CA_RET(SECCOMP_RET_ALLOW),            \
	    CA_RET(CA_RET_KILL)
/* nr on descriptor fd1 or fd2 only. */
#define CA_ALLOW_FD2(nr, fd1, fd2)                                                                 \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 5),                                           \
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, CA_ARG_LO(0)),                                      \
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (fd1), 1, 0),                                      \
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (fd2), 0, 1), CA_RET(SECCOMP_RET_ALLOW),           \
	    CA_RET(CA_RET_KILL)
/* nr unless argument i (a prot) asks for executable memory. */
#define CA_ALLOW_NOEXEC(nr, i)                                                                     \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 4),                                           \
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, CA_ARG_LO(i)),                                      \
	    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 1, 0), CA_RET(SECCOMP_RET_ALLOW),      \
	    CA_RET(CA_RET_KILL)

/*
 * What the serving loop needs and nothing more: its socket, stderr for log
 * lines, malloc (never executable memory), time, randomness, and exit.
 * Anything else, open() and execve() above all, kills the process.
 *
 * Under ASan the runtime's _exit interceptor tears down the alternate
 * signal stack, so sigaltstack is allowed in sanitizer builds only. Nothing
 * else is needed: allocations go through mmap/munmap/madvise, and the child
 * ends with _exit so LeakSanitizer's exit-time scan (ptrace, /proc) never
 * runs in it. A sanitizer report from the child would be cut short by the
 * filter, but the child still dies, which the tests see.
 */
static const struct sock_filter ca_filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, CA_AUDIT_ARCH, 1, 0),
    CA_RET(CA_RET_KILL),
    CA_LD_NR,
#if defined(__x86_64__)
    /* x32 system calls reuse the numbers with this bit set. */
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1),
    CA_RET(CA_RET_KILL),
#endif
    CA_ALLOW_FD(__NR_recvmsg, CA_FD),
    CA_ALLOW_FD(__NR_sendto, CA_FD),
    CA_ALLOW_FD(__NR_recvfrom, CA_FD),
    CA_ALLOW_FD(__NR_sendmsg, CA_FD),
    CA_ALLOW_FD(__NR_read, CA_FD),
    CA_ALLOW_FD2(__NR_write, CA_FD, 2),
    CA_ALLOW(__NR_futex),
    CA_ALLOW(__NR_brk),
    CA_ALLOW_NOEXEC(__NR_mmap, 2),
    CA_ALLOW_NOEXEC(__NR_mprotect, 2),
    CA_ALLOW(__NR_munmap),
    CA_ALLOW(__NR_mremap),
    CA_ALLOW(__NR_madvise),
    CA_ALLOW(__NR_getrandom),
    CA_ALLOW(__NR_clock_gettime),
    CA_ALLOW(__NR_gettimeofday),
#ifdef __NR_time
    CA_ALLOW(__NR_time),
#endif
    /* OpenSSL's DRBG compares the pid to notice a fork. */
    CA_ALLOW(__NR_getpid),
    /* glibc's qsort (X509_CRL_sort) sizes its buffer by physical memory. */
    CA_ALLOW(__NR_sysinfo),
    CA_ALLOW(__NR_rt_sigreturn),
    CA_ALLOW(__NR_close),
#ifdef __NR_fstat
    CA_ALLOW(__NR_fstat),
#endif
    CA_ALLOW(__NR_newfstatat),
    CA_ALLOW(__NR_lseek),
    CA_ALLOW(__NR_exit),
    CA_ALLOW(__NR_exit_group),
#ifdef CA_ASAN
    CA_ALLOW(__NR_sigaltstack),
#endif
    CA_RET(CA_RET_KILL),
};

/* Install the filter. MOAT_OK also when the kernel has no seccomp (logged):
 * the CA is still a separate, undumpable process without the key in the
 * parent. Any other failure refuses to run unconfined. */
static moat_err sandbox(char *err, size_t errlen)
{
	struct sock_fprog prog = {
	    .len = (unsigned short)(sizeof(ca_filter) / sizeof(ca_filter[0])),
	    .filter = (struct sock_filter *)ca_filter,
	};
	long r;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		if (errno == EINVAL) {
			log_warn("ca_sandbox", "seccomp=unavailable reason=no_new_privs");
			return MOAT_OK;
		}
		moat_pki_fail(err, errlen, "ca: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return MOAT_E_IO;
	}
	r = -1;
	errno = ENOSYS;
#ifdef __NR_seccomp
	r = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0u, &prog);
#endif
	if (r != 0 && errno == ENOSYS)
		r = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
	if (r != 0) {
		if (errno == EINVAL || errno == ENOSYS) {
			log_warn("ca_sandbox", "seccomp=unavailable errno=%d", errno);
			return MOAT_OK;
		}
		moat_pki_fail(err, errlen, "ca: cannot install the seccomp filter: %s",
			      strerror(errno));
		return MOAT_E_IO;
	}
	log_debug("ca_sandbox", "seccomp=on");
	return MOAT_OK;
}

#else

static moat_err sandbox(char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	log_warn("ca_sandbox", "seccomp=unavailable reason=unsupported_platform");
	return MOAT_OK;
}

#endif

/* Sign a checkpoint and seal and open a secret once through the handlers,
 * checking what comes out (libsodium picks its implementations and its
 * randomness source on first use). */
static moat_err keys_warm(const struct ca_state *st, char *err, size_t errlen)
{
	static const uint8_t payload[MOAT_KEY_AUDIT_PAYLOAD] = {0, 0, 0, 0, 0, 0, 0, 1};
	static const uint8_t secret[] = "warm-up secret";
	struct moat_ca_req req;
	struct moat_ca_ans ans;
	struct moat_buf out;
	uint8_t blob[MOAT_KEY_SEAL_OVERHEAD + MOAT_KEY_SEAL_MAX];
	size_t blob_len = 0;
	moat_err rc = MOAT_E_CRYPTO;

	moat_buf_init(&out, MOAT_CA_MSG_MAX);
	memset(&req, 0, sizeof(req));
	req.type = MOAT_CA_KEY_SIGN;
	req.slot = MOAT_KEY_AUDIT;
	req.data = payload;
	req.data_len = sizeof(payload);
	on_key_sign(st, &req, &out);
	if (moat_ca_ans_parse(moat_buf_head(&out), moat_buf_used(&out), &ans) != MOAT_OK ||
	    ans.status != MOAT_OK || ans.der_len != MOAT_AUDIT_SIG_LEN)
		goto fail;
	moat_buf_reset(&out);
	req.type = MOAT_CA_SEAL;
	req.slot = MOAT_KEY_SECRETS;
	req.data = secret;
	req.data_len = sizeof(secret);
	req.ad = payload;
	req.ad_len = sizeof(payload);
	on_seal(st, &req, &out);
	if (moat_ca_ans_parse(moat_buf_head(&out), moat_buf_used(&out), &ans) != MOAT_OK ||
	    ans.status != MOAT_OK || ans.der_len > sizeof(blob))
		goto fail;
	memcpy(blob, ans.der, ans.der_len);
	blob_len = ans.der_len;
	moat_buf_reset(&out);
	req.type = MOAT_CA_UNSEAL;
	req.data = blob;
	req.data_len = blob_len;
	on_seal(st, &req, &out);
	if (moat_ca_ans_parse(moat_buf_head(&out), moat_buf_used(&out), &ans) != MOAT_OK ||
	    ans.status != MOAT_OK || ans.der_len != sizeof(secret) ||
	    memcmp(ans.der, secret, sizeof(secret)) != 0)
		goto fail;
	rc = MOAT_OK;
	goto out;
fail:
	moat_pki_fail(err, errlen, "key: self-test of the audit or sealing key failed");
out:
	moat_buf_free(&out);
	return rc;
}

/*
 * Run every kind of work the loop does once, before the filter is in
 * place: OpenSSL fetches algorithms, seeds its DRBG and may read its
 * configuration lazily, and the C library reads the time zone the first
 * time it converts a time. After the filter, opening a file would kill us.
 */
static moat_err ca_warm(const struct ca_state *st, char *err, size_t errlen)
{
	static const struct moat_ca_entry entry = {{0x42}, 1, 1700000000};
	char serial[MOAT_CA_SERIAL_HEX_LEN + 1];
	unsigned char *der = NULL;
	X509_CRL *crl = NULL;
	X509 *cert = NULL;
	int64_t not_after;
	moat_err rc;

	tzset();
	if (OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1) {
		moat_pki_fail(err, errlen, "ca: cannot initialise OpenSSL");
		return MOAT_E_CRYPTO;
	}
	rc = cert_issue(st, "warm-up", X509_get0_pubkey(st->cert), 1, 0, "https://localhost/crl",
			&cert, serial, &not_after, err, errlen);
	if (rc == MOAT_OK && (i2d_X509(cert, &der) <= 0 || X509_verify(cert, st->key) != 1)) {
		rc = MOAT_E_CRYPTO;
		moat_pki_fail(err, errlen, "ca: self-test signature failed");
	}
	if (rc == MOAT_OK) {
		/* The renewal's checks (a device certificate is refused at the
		 * last one, after the signature and the extension cache). */
		char why[MOAT_CA_ERR_MAX];
		int n = i2d_X509(cert, NULL);
		unsigned char *d = NULL;
		X509 *renewed = NULL;

		if (n > 0 && i2d_X509(cert, &d) == n)
			(void)server_renew(st, d, (size_t)n, &renewed, why, sizeof(why));
		OPENSSL_free(d);
		X509_free(renewed);
		rc = crl_build(st, 1, 60, &entry, 1, &crl, err, errlen);
	}
	if (rc == MOAT_OK)
		rc = keys_warm(st, err, errlen);
	OPENSSL_free(der);
	X509_CRL_free(crl);
	X509_free(cert);
	ERR_clear_error();
	return rc;
}

/* The key process. Never returns. */
static void ca_child(int sock, const char *dir, pid_t parent) __attribute__((noreturn));

static void ca_child(int sock, const char *dir, pid_t parent)
{
	char err[MOAT_CA_ERR_MAX] = "";
	struct ca_state st;
	struct moat_buf out;
	moat_err rc = MOAT_E_IO;

	memset(&st, 0, sizeof(st));
	moat_buf_init(&out, MOAT_CA_MSG_MAX);
	child_signals();
	if (child_fds(sock) != 0) {
		/* The socket may be the one thing still open: try to say so. */
		moat_pki_fail(err, sizeof(err), "ca: cannot set up descriptors: %s",
			      strerror(errno));
		goto hello;
	}
	/* Die with the parent, and check it did not die before we asked. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0 || getppid() != parent)
		_exit(1);
	/* Not dumpable: no core file with the key, no ptrace by the same
	 * user, /proc/<pid>/mem closed. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		moat_pki_fail(err, sizeof(err), "ca: PR_SET_DUMPABLE: %s", strerror(errno));
		goto hello;
	}
	/* Best effort: without CAP_IPC_LOCK or a memlock limit the heap is
	 * still separate and cleansed on free, just not pinned. */
	(void)CRYPTO_secure_malloc_init(CA_SECURE_HEAP, CA_SECURE_MIN);
	rc = ca_load(dir, &st, err, sizeof(err));
	if (rc == MOAT_OK)
		rc = keys_load(dir, &st, err, sizeof(err));
	if (rc == MOAT_OK)
		rc = ca_warm(&st, err, sizeof(err));
	if (rc == MOAT_OK)
		rc = sandbox(err, sizeof(err));
hello:
	if (rc == MOAT_OK)
		rc = moat_ca_ans_put_ok(&out, MOAT_CA_HELLO, 0);
	else
		answer_error(&out, MOAT_CA_HELLO, 0, rc, err);
	if (send(CA_FD, moat_buf_head(&out), moat_buf_used(&out), MSG_NOSIGNAL) < 0)
		rc = MOAT_E_IO;
	moat_buf_free(&out);
	if (rc == MOAT_OK)
		ca_loop(&st);
	ca_state_free(&st);
	/* _exit: no atexit handlers (the parent's), no stdio flush of the
	 * parent's buffers, no LeakSanitizer scan under the filter. */
	_exit(rc == MOAT_OK ? 0 : 1);
}

/* ------------------------------------------------------------------------
 * The parent: transport
 */

static moat_err ca_send(struct moat_ca *ca, const void *p, size_t n, int64_t deadline, char *err,
			size_t errlen)
{
	for (;;) {
		struct pollfd pfd = {.fd = ca->fd, .events = POLLOUT};
		int64_t left;
		ssize_t w = send(ca->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w >= 0)
			return MOAT_OK; /* SOCK_SEQPACKET: all or nothing */
		if (errno == EPIPE || errno == ECONNRESET || errno == ECONNREFUSED) {
			moat_pki_fail(err, errlen, "ca: the key process has exited");
			return MOAT_E_CLOSED;
		}
		if (errno == EMSGSIZE) {
			moat_pki_fail(err, errlen, "ca: request of %zu bytes too large", n);
			return MOAT_E_TOO_LARGE;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			moat_pki_fail(err, errlen, "ca: send: %s", strerror(errno));
			return MOAT_E_IO;
		}
		left = deadline - (int64_t)moat_now_ms();
		if (left <= 0) {
			moat_pki_fail(err, errlen, "ca: the key process is not reading (timeout)");
			return MOAT_E_IO;
		}
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) {
			moat_pki_fail(err, errlen, "ca: poll: %s", strerror(errno));
			return MOAT_E_IO;
		}
	}
}

/* Receive one message into ca->rbuf by the deadline. */
static moat_err ca_recv(struct moat_ca *ca, int64_t deadline, size_t *len, char *err, size_t errlen)
{
	for (;;) {
		struct pollfd pfd = {.fd = ca->fd, .events = POLLIN};
		struct iovec iov = {.iov_base = ca->rbuf, .iov_len = MOAT_CA_MSG_MAX};
		struct msghdr mh;
		int64_t left = deadline - (int64_t)moat_now_ms();
		ssize_t n;
		int r;

		if (left <= 0) {
			moat_pki_fail(err, errlen,
				      "ca: the key process did not answer within %u ms",
				      MOAT_CA_TIMEOUT_MS);
			return MOAT_E_IO;
		}
		r = poll(&pfd, 1, (int)left);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			moat_pki_fail(err, errlen, "ca: poll: %s", strerror(errno));
			return MOAT_E_IO;
		}
		if (r == 0)
			continue; /* the deadline check above reports it */
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		n = recvmsg(ca->fd, &mh, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				continue;
			if (errno == ECONNRESET) {
				moat_pki_fail(err, errlen, "ca: the key process has exited");
				return MOAT_E_CLOSED;
			}
			moat_pki_fail(err, errlen, "ca: recv: %s", strerror(errno));
			return MOAT_E_IO;
		}
		if (n == 0) {
			moat_pki_fail(err, errlen, "ca: the key process has exited");
			return MOAT_E_CLOSED;
		}
		if ((mh.msg_flags & MSG_TRUNC) != 0) {
			moat_pki_fail(err, errlen, "ca: answer over %u bytes", MOAT_CA_MSG_MAX);
			return MOAT_E_TOO_LARGE;
		}
		*len = (size_t)n;
		return MOAT_OK;
	}
}

/*
 * Send the request in req (numbered seq) and parse its answer into ans
 * (views into ca->rbuf). An error answer becomes its status, with the CA's
 * sentence in err. Caller holds ca->lock.
 */
static moat_err ca_exchange(struct moat_ca *ca, const struct moat_buf *req, uint8_t type,
			    uint32_t seq, struct moat_ca_ans *ans, char *err, size_t errlen)
{
	int64_t deadline = (int64_t)moat_now_ms() + MOAT_CA_TIMEOUT_MS;
	size_t n;
	moat_err rc;

	if (ca->fd < 0) {
		moat_pki_fail(err, errlen, "ca: the key process is not running");
		return MOAT_E_CLOSED;
	}
	rc = ca_send(ca, moat_buf_head(req), moat_buf_used(req), deadline, err, errlen);
	if (rc)
		return rc;
	for (;;) {
		rc = ca_recv(ca, deadline, &n, err, errlen);
		if (rc)
			return rc;
		rc = moat_ca_ans_parse(ca->rbuf, n, ans);
		if (rc) {
			moat_pki_fail(err, errlen, "ca: malformed answer from the key process (%s)",
				      moat_strerror(rc));
			return MOAT_E_PROTOCOL;
		}
		/* A late answer to a call that already timed out. */
		if (ans->seq != seq)
			continue;
		if (ans->status != MOAT_OK) {
			moat_pki_fail(err, errlen, "%s", ans->msg);
			return (moat_err)ans->status;
		}
		if (ans->type != type) {
			moat_pki_fail(err, errlen,
				      "ca: answer of the wrong type from the key process");
			return MOAT_E_PROTOCOL;
		}
		return MOAT_OK;
	}
}

/* Sequence numbers skip 0, which the start-up report and answers to
 * unreadable requests use. */
static uint32_t ca_next_seq(struct moat_ca *ca)
{
	if (++ca->seq == 0)
		ca->seq = 1;
	return ca->seq;
}

static moat_err dup_bytes(const uint8_t *p, size_t n, uint8_t **out, size_t *out_len, char *err,
			  size_t errlen)
{
	uint8_t *c = malloc(n);

	if (c == NULL) {
		moat_pki_fail(err, errlen, "ca: out of memory");
		return MOAT_E_NOMEM;
	}
	memcpy(c, p, n);
	*out = c;
	*out_len = n;
	return MOAT_OK;
}

/* ------------------------------------------------------------------------
 * The parent: API
 */

static void ca_reap(pid_t pid, int *status, bool *reaped)
{
	int64_t deadline = (int64_t)moat_now_ms() + MOAT_CA_STOP_MS;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = CA_STOP_POLL_NS};
	pid_t r;

	*reaped = false;
	for (;;) {
		r = waitpid(pid, status, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD)) {
			/* ECHILD: someone else reaped it (a SIGCHLD handler). */
			*reaped = r == pid;
			return;
		}
		if (r < 0 && errno != EINTR)
			return;
		if ((int64_t)moat_now_ms() >= deadline)
			break;
		nanosleep(&ts, NULL);
	}
	/* waitpid said 0: still our unreaped child, so the pid cannot have
	 * been reused and the signal reaches the right process. */
	log_warn("ca_stop", "pid=%d exited=no after_ms=%u action=kill", (int)pid, MOAT_CA_STOP_MS);
	(void)kill(pid, SIGKILL);
	while ((r = waitpid(pid, status, 0)) < 0 && errno == EINTR)
		;
	*reaped = r == pid;
}

/* Why the child ended, for a start-up failure without a report. */
static void exit_describe(int status, bool reaped, char *err, size_t errlen)
{
	if (!reaped)
		moat_pki_fail(err, errlen, "ca: the key process ended during start-up");
	else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
		moat_pki_fail(
		    err, errlen,
		    "ca: the key process was killed by its seccomp filter during start-up");
	else if (WIFSIGNALED(status))
		moat_pki_fail(err, errlen,
			      "ca: the key process was killed by signal %d during start-up",
			      WTERMSIG(status));
	else
		moat_pki_fail(err, errlen,
			      "ca: the key process exited with status %d during start-up",
			      WEXITSTATUS(status));
}

/* log_exit: say so when the CA ended other than by exiting 0 (not for a
 * start-up failure, which the caller reports). */
static void ca_free(struct moat_ca *ca, bool log_exit)
{
	int status = 0;
	bool reaped;

	if (ca->fd >= 0)
		close(ca->fd);
	ca->fd = -1;
	if (ca->pid > 0) {
		ca_reap(ca->pid, &status, &reaped);
		/* EOF ends a healthy CA with status 0; anything else (SIGSYS
		 * from its filter above all) is worth an operator's look. */
		if (!log_exit || !reaped)
			;
		else if (WIFSIGNALED(status))
			log_warn("ca_exit", "pid=%d signal=%d", (int)ca->pid, WTERMSIG(status));
		else if (WEXITSTATUS(status) != 0)
			log_warn("ca_exit", "pid=%d status=%d", (int)ca->pid, WEXITSTATUS(status));
	}
	free(ca->rbuf);
	pthread_mutex_destroy(&ca->lock);
	free(ca);
}

moat_err moat_ca_spawn(const char *dir, struct moat_ca **out, char *err, size_t errlen)
{
	struct moat_ca_ans ans;
	struct moat_ca *ca = NULL;
	int sv[2] = {-1, -1};
	int sndbuf = (int)(2u * MOAT_CA_MSG_MAX);
	int status = 0;
	size_t n;
	pid_t parent, pid;
	bool reaped;
	moat_err rc = MOAT_E_INVAL;

	ERR_clear_error();
	if (dir == NULL || out == NULL || strnlen(dir, MOAT_MAX_PATH) >= MOAT_MAX_PATH - 8) {
		moat_pki_fail(err, errlen, "ca: invalid arguments");
		goto out;
	}
	/* The child must not inherit another thread's state (a lock held, a
	 * key in a buffer): refuse rather than trust the caller's order. */
	if ((rc = moat_proc_single_threaded(err, errlen)) != MOAT_OK)
		goto out;
	rc = MOAT_E_NOMEM;
	ca = calloc(1, sizeof(*ca));
	if (ca == NULL || (ca->rbuf = malloc(MOAT_CA_MSG_MAX)) == NULL) {
		moat_pki_fail(err, errlen, "ca: out of memory");
		goto out;
	}
	ca->fd = -1;
	if (pthread_mutex_init(&ca->lock, NULL) != 0) {
		moat_pki_fail(err, errlen, "ca: cannot create a mutex");
		free(ca->rbuf);
		free(ca);
		ca = NULL;
		goto out;
	}
	rc = MOAT_E_IO;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		moat_pki_fail(err, errlen, "ca: socketpair: %s", strerror(errno));
		goto out;
	}
	/* Headroom over the default buffer for the largest message; the
	 * limits already fit the default, so failure is harmless. */
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	(void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	parent = getpid();
	pid = fork();
	if (pid < 0) {
		moat_pki_fail(err, errlen, "ca: fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		close(sv[0]);
		ca_child(sv[1], dir, parent);
	}
	close(sv[1]);
	sv[1] = -1;
	ca->fd = sv[0];
	sv[0] = -1;
	ca->pid = pid;
	rc = ca_recv(ca, (int64_t)moat_now_ms() + MOAT_CA_TIMEOUT_MS, &n, err, errlen);
	if (rc == MOAT_E_CLOSED) {
		close(ca->fd);
		ca->fd = -1;
		ca_reap(ca->pid, &status, &reaped);
		ca->pid = 0;
		exit_describe(status, reaped, err, errlen);
		goto out;
	}
	if (rc)
		goto out;
	rc = moat_ca_ans_parse(ca->rbuf, n, &ans);
	if (rc || ans.type != MOAT_CA_HELLO || ans.seq != 0) {
		rc = MOAT_E_PROTOCOL;
		moat_pki_fail(err, errlen, "ca: unexpected start-up message from the key process");
		goto out;
	}
	if (ans.status != MOAT_OK) {
		rc = (moat_err)ans.status;
		moat_pki_fail(err, errlen, "%s", ans.msg);
		goto out;
	}
	*out = ca;
	ca = NULL;
	rc = MOAT_OK;
out:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (ca != NULL)
		ca_free(ca, false);
	return rc;
}

moat_err moat_ca_sign(struct moat_ca *ca, const char *device_id, const uint8_t *csr, size_t csr_len,
		      unsigned days, const char *crl_url, uint8_t **cert, size_t *cert_len,
		      char serial_hex[MOAT_CA_SERIAL_HEX_LEN + 1], int64_t *not_after_s, char *err,
		      size_t errlen)
{
	struct moat_ca_ans ans;
	struct moat_buf req;
	uint32_t seq;
	moat_err rc = MOAT_E_INVAL;

	moat_buf_init(&req, MOAT_CA_MSG_MAX);
	if (ca == NULL || device_id == NULL || csr == NULL || cert == NULL || cert_len == NULL ||
	    serial_hex == NULL || not_after_s == NULL) {
		moat_pki_fail(err, errlen, "ca: invalid arguments");
		return rc;
	}
	if (csr_len == 0 || csr_len > MOAT_CSR_MAX) {
		rc = MOAT_E_TOO_LARGE;
		moat_pki_fail(err, errlen, "ca: the request must be 1 to %u bytes", MOAT_CSR_MAX);
		return rc;
	}
	if (days == 0 || days > MOAT_CERT_DAYS_MAX) {
		moat_pki_fail(err, errlen, "ca: validity must be 1 to %u days", MOAT_CERT_DAYS_MAX);
		return rc;
	}
	if (crl_url != NULL && crl_url[0] != '\0' && !moat_pki_crl_url_valid(crl_url)) {
		moat_pki_fail(err, errlen, "ca: invalid CRL URL");
		return rc;
	}
	pthread_mutex_lock(&ca->lock);
	seq = ca_next_seq(ca);
	rc = moat_ca_req_put_sign(&req, seq, device_id, csr, csr_len, crl_url, days,
				  MOAT_CERT_SKEW_S);
	if (rc) {
		moat_pki_fail(err, errlen, "ca: invalid device id or request");
		goto out;
	}
	rc = ca_exchange(ca, &req, MOAT_CA_SIGN, seq, &ans, err, errlen);
	if (rc)
		goto out;
	if (strlen(ans.serial) != MOAT_CA_SERIAL_HEX_LEN) {
		rc = MOAT_E_PROTOCOL;
		moat_pki_fail(err, errlen, "ca: unexpected serial number from the key process");
		goto out;
	}
	rc = dup_bytes(ans.der, ans.der_len, cert, cert_len, err, errlen);
	if (rc)
		goto out;
	memcpy(serial_hex, ans.serial, MOAT_CA_SERIAL_HEX_LEN + 1);
	*not_after_s = ans.not_after;
out:
	pthread_mutex_unlock(&ca->lock);
	moat_buf_free(&req);
	return rc;
}

/* The CRL's DER in parts, after the CRL answer gave its total length and
 * first part (ans, a view into ca->rbuf). Caller holds ca->lock. */
static moat_err crl_fetch(struct moat_ca *ca, const struct moat_ca_ans *first, uint8_t **crl,
			  size_t *crl_len, char *err, size_t errlen)
{
	struct moat_ca_ans ans;
	struct moat_buf req;
	uint8_t *der = NULL;
	size_t got, total = first->total;
	uint32_t seq;
	moat_err rc = MOAT_E_NOMEM;

	moat_buf_init(&req, 64);
	/* total was bounded by the parser (MOAT_CRL_DER_MAX). */
	der = malloc(total);
	if (der == NULL) {
		moat_pki_fail(err, errlen, "ca: out of memory for a CRL of %zu bytes", total);
		goto out;
	}
	memcpy(der, first->der, first->der_len);
	got = first->der_len;
	while (got < total) {
		moat_buf_reset(&req);
		seq = ca_next_seq(ca);
		rc = moat_ca_req_put_crl_part(&req, seq, (uint32_t)got);
		if (rc) {
			moat_pki_fail(err, errlen, "ca: cannot encode the CRL request");
			goto out;
		}
		rc = ca_exchange(ca, &req, MOAT_CA_CRL_PART, seq, &ans, err, errlen);
		if (rc)
			goto out;
		if (ans.der_len > total - got) {
			rc = MOAT_E_PROTOCOL;
			moat_pki_fail(err, errlen,
				      "ca: the key process sent more CRL than it said");
			goto out;
		}
		memcpy(der + got, ans.der, ans.der_len);
		got += ans.der_len;
	}
	*crl = der;
	*crl_len = total;
	der = NULL;
	rc = MOAT_OK;
out:
	free(der);
	moat_buf_free(&req);
	return rc;
}

moat_err moat_ca_crl(struct moat_ca *ca, uint64_t crl_number, unsigned next_update_s,
		     const struct moat_revoked *list, size_t n, uint8_t **crl, size_t *crl_len,
		     char *err, size_t errlen)
{
	uint8_t serial[MOAT_CA_SERIAL_MAX];
	struct moat_ca_ans ans;
	struct moat_buf req;
	size_t i, len, start = 0;
	uint32_t seq;
	moat_err rc = MOAT_E_INVAL;

	moat_buf_init(&req, MOAT_CA_MSG_MAX);
	if (ca == NULL || (list == NULL && n > 0) || crl == NULL || crl_len == NULL) {
		moat_pki_fail(err, errlen, "ca: invalid arguments");
		return rc;
	}
	if (n > MOAT_CRL_MAX_ENTRIES) {
		moat_pki_fail(err, errlen, "ca: %zu revoked certificates; a CRL holds at most %u",
			      n, MOAT_CRL_MAX_ENTRIES);
		return MOAT_E_LIMIT;
	}
	if (next_update_s == 0 || next_update_s > MOAT_CRL_NEXT_UPDATE_MAX_S) {
		moat_pki_fail(err, errlen, "ca: nextUpdate must be 1 to %u s ahead",
			      MOAT_CRL_NEXT_UPDATE_MAX_S);
		return rc;
	}
	/* Name the bad entry here; the encoder would only say "invalid". */
	for (i = 0; i < n; i++) {
		if (moat_ca_serial_from_hex(list[i].serial, serial, &len) != MOAT_OK ||
		    list[i].revoked_at <= 0 || list[i].revoked_at > MOAT_CA_TIME_MAX) {
			moat_pki_fail(err, errlen,
				      "ca: CRL entry %zu (serial %.72s, revoked at %lld) has an "
				      "invalid serial or time",
				      i, list[i].serial, (long long)list[i].revoked_at);
			return rc;
		}
	}
	pthread_mutex_lock(&ca->lock);
	/* All but the last chunk as CRL_ADD; the first has start 0, which
	 * also discards whatever an earlier failed call left in the CA. */
	while (n - start > MOAT_CRL_CHUNK_ENTRIES) {
		moat_buf_reset(&req);
		seq = ca_next_seq(ca);
		rc = moat_ca_req_put_crl_add(&req, seq, (uint32_t)start, list + start,
					     MOAT_CRL_CHUNK_ENTRIES);
		if (rc) {
			moat_pki_fail(err, errlen, "ca: cannot encode the CRL request");
			goto out;
		}
		rc = ca_exchange(ca, &req, MOAT_CA_CRL_ADD, seq, &ans, err, errlen);
		if (rc)
			goto out;
		start += MOAT_CRL_CHUNK_ENTRIES;
	}
	moat_buf_reset(&req);
	seq = ca_next_seq(ca);
	rc = moat_ca_req_put_crl(&req, seq, crl_number, next_update_s, (uint32_t)start,
				 n > 0 ? list + start : NULL, n - start);
	if (rc) {
		moat_pki_fail(err, errlen, "ca: cannot encode the CRL request");
		goto out;
	}
	rc = ca_exchange(ca, &req, MOAT_CA_CRL, seq, &ans, err, errlen);
	if (rc)
		goto out;
	rc = crl_fetch(ca, &ans, crl, crl_len, err, errlen);
out:
	pthread_mutex_unlock(&ca->lock);
	moat_buf_free(&req);
	return rc;
}

/* PING and CACERTS: no body. */
static moat_err ca_simple(struct moat_ca *ca, uint8_t type, uint8_t **der, size_t *der_len,
			  char *err, size_t errlen)
{
	struct moat_ca_ans ans;
	struct moat_buf req;
	uint32_t seq;
	moat_err rc;

	moat_buf_init(&req, 64);
	pthread_mutex_lock(&ca->lock);
	seq = ca_next_seq(ca);
	rc = moat_ca_req_put_simple(&req, type, seq);
	if (rc) {
		moat_pki_fail(err, errlen, "ca: cannot encode the request");
		goto out;
	}
	rc = ca_exchange(ca, &req, type, seq, &ans, err, errlen);
	if (rc == MOAT_OK && der != NULL)
		rc = dup_bytes(ans.der, ans.der_len, der, der_len, err, errlen);
out:
	pthread_mutex_unlock(&ca->lock);
	moat_buf_free(&req);
	return rc;
}

moat_err moat_ca_renew_server(struct moat_ca *ca, const uint8_t *cert, size_t cert_len,
			      uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
	struct moat_ca_ans ans;
	struct moat_buf req;
	uint32_t seq;
	moat_err rc = MOAT_E_INVAL;

	if (ca == NULL || cert == NULL || cert_len == 0 || cert_len > MOAT_CSR_MAX || out == NULL ||
	    out_len == NULL) {
		moat_pki_fail(err, errlen, "ca: invalid arguments");
		return rc;
	}
	moat_buf_init(&req, MOAT_CA_MSG_MAX);
	pthread_mutex_lock(&ca->lock);
	seq = ca_next_seq(ca);
	rc = moat_ca_req_put_renew_server(&req, seq, cert, cert_len);
	if (rc) {
		moat_pki_fail(err, errlen, "ca: cannot encode the request");
		goto out;
	}
	rc = ca_exchange(ca, &req, MOAT_CA_RENEW_SERVER, seq, &ans, err, errlen);
	if (rc == MOAT_OK)
		rc = dup_bytes(ans.der, ans.der_len, out, out_len, err, errlen);
out:
	pthread_mutex_unlock(&ca->lock);
	moat_buf_free(&req);
	return rc;
}

moat_err moat_ca_cacerts(struct moat_ca *ca, uint8_t **der, size_t *der_len, char *err,
			 size_t errlen)
{
	if (ca == NULL || der == NULL || der_len == NULL) {
		moat_pki_fail(err, errlen, "ca: invalid arguments");
		return MOAT_E_INVAL;
	}
	return ca_simple(ca, MOAT_CA_CACERTS, der, der_len, err, errlen);
}

moat_err moat_ca_ping(struct moat_ca *ca, char *err, size_t errlen)
{
	if (ca == NULL) {
		moat_pki_fail(err, errlen, "ca: invalid arguments");
		return MOAT_E_INVAL;
	}
	return ca_simple(ca, MOAT_CA_PING, NULL, NULL, err, errlen);
}

moat_err moat_ca_key_sign(struct moat_ca *ca, uint8_t slot, const uint8_t *msg, size_t len,
			  uint8_t *sig, size_t sig_cap, size_t *sig_len, char *err, size_t errlen)
{
	struct moat_ca_ans ans;
	struct moat_buf req;
	uint32_t seq;
	moat_err rc = MOAT_E_INVAL;

	if (ca == NULL || msg == NULL || len == 0 || len > MOAT_KEY_SIGN_MAX || sig == NULL ||
	    sig_len == NULL) {
		moat_pki_fail(err, errlen, "key: invalid arguments");
		return rc;
	}
	moat_buf_init(&req, MOAT_CA_MSG_MAX);
	pthread_mutex_lock(&ca->lock);
	seq = ca_next_seq(ca);
	rc = moat_ca_req_put_key_sign(&req, seq, slot, msg, len);
	if (rc) {
		moat_pki_fail(err, errlen, "key: cannot encode the request");
		goto out;
	}
	rc = ca_exchange(ca, &req, MOAT_CA_KEY_SIGN, seq, &ans, err, errlen);
	if (rc)
		goto out;
	if (ans.der_len > sig_cap) {
		rc = MOAT_E_PROTOCOL;
		moat_pki_fail(err, errlen, "key: signature of unexpected length");
		goto out;
	}
	memcpy(sig, ans.der, ans.der_len);
	*sig_len = ans.der_len;
out:
	pthread_mutex_unlock(&ca->lock);
	moat_buf_free(&req);
	return rc;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

moat_err moat_ca_audit_sign(void *arg, struct moat_audit_checkpoint *c)
{
	uint8_t payload[MOAT_KEY_AUDIT_PAYLOAD];
	char err[MOAT_CA_ERR_MAX];
	size_t len = 0;
	moat_err rc;

	if (arg == NULL || c == NULL)
		return MOAT_E_INVAL;
	put_be64(payload, (uint64_t)c->seq);
	put_be64(payload + 8, (uint64_t)c->ts_ms);
	memcpy(payload + 16, c->head, MOAT_AUDIT_HASH_LEN);
	rc = moat_ca_key_sign(arg, MOAT_KEY_AUDIT, payload, sizeof(payload), c->sig, sizeof(c->sig),
			      &len, err, sizeof(err));
	if (rc == MOAT_OK && len != sizeof(c->sig))
		rc = MOAT_E_PROTOCOL;
	if (rc)
		log_error("audit_sign", "seq=%lld error=\"%s\"", (long long)c->seq,
			  rc == MOAT_E_PROTOCOL ? "signature of unexpected length" : err);
	return rc;
}

/* SEAL and UNSEAL: the request (a plaintext for SEAL) and the answer (a
 * plaintext for UNSEAL) are wiped before this returns. */
static moat_err ca_seal_op(struct moat_ca *ca, uint8_t type, uint8_t slot, const uint8_t *ad,
			   size_t ad_len, const uint8_t *in, size_t in_len, uint8_t *out,
			   size_t cap, size_t *out_len, char *err, size_t errlen)
{
	struct moat_ca_ans ans;
	struct moat_buf req;
	uint32_t seq;
	moat_err rc = MOAT_E_INVAL;

	if (ca == NULL || (ad == NULL && ad_len > 0) || ad_len > MOAT_KEY_AD_MAX || in == NULL ||
	    out == NULL || out_len == NULL) {
		moat_pki_fail(err, errlen, "key: invalid arguments");
		return rc;
	}
	moat_buf_init(&req, MOAT_CA_MSG_MAX);
	req.secret = 1;
	pthread_mutex_lock(&ca->lock);
	seq = ca_next_seq(ca);
	rc = moat_ca_req_put_seal(&req, type, seq, slot, ad, ad_len, in, in_len);
	if (rc) {
		moat_pki_fail(err, errlen, "key: %s of %zu bytes cannot be encoded",
			      type == MOAT_CA_SEAL ? "a secret" : "a sealed blob", in_len);
		goto out;
	}
	rc = ca_exchange(ca, &req, type, seq, &ans, err, errlen);
	if (rc)
		goto wipe;
	if (ans.der_len > cap) {
		rc = MOAT_E_LIMIT;
		moat_pki_fail(err, errlen, "key: the answer (%zu bytes) does not fit %zu",
			      ans.der_len, cap);
		goto wipe;
	}
	memcpy(out, ans.der, ans.der_len);
	*out_len = ans.der_len;
wipe:
	sodium_memzero(ca->rbuf, MOAT_CA_MSG_MAX);
out:
	pthread_mutex_unlock(&ca->lock);
	moat_buf_free(&req);
	return rc;
}

moat_err moat_ca_seal(struct moat_ca *ca, uint8_t slot, const uint8_t *ad, size_t ad_len,
		      const uint8_t *pt, size_t pt_len, uint8_t *out, size_t cap, size_t *out_len,
		      char *err, size_t errlen)
{
	return ca_seal_op(ca, MOAT_CA_SEAL, slot, ad, ad_len, pt, pt_len, out, cap, out_len, err,
			  errlen);
}

moat_err moat_ca_unseal(struct moat_ca *ca, uint8_t slot, const uint8_t *ad, size_t ad_len,
			const uint8_t *blob, size_t blob_len, uint8_t *out, size_t cap,
			size_t *out_len, char *err, size_t errlen)
{
	return ca_seal_op(ca, MOAT_CA_UNSEAL, slot, ad, ad_len, blob, blob_len, out, cap, out_len,
			  err, errlen);
}

void moat_ca_stop(struct moat_ca *ca)
{
	if (ca == NULL)
		return;
	/* Wait for a call in flight to finish (it is bounded by the timeout). */
	pthread_mutex_lock(&ca->lock);
	pthread_mutex_unlock(&ca->lock);
	ca_free(ca, true);
}

pid_t moat_ca_pid(const struct moat_ca *ca)
{
	return ca != NULL ? ca->pid : -1;
}

moat_err moat_ca_raw_request(struct moat_ca *ca, const uint8_t *msg, size_t len, uint8_t **ans,
			     size_t *ans_len)
{
	size_t n;
	moat_err rc = MOAT_E_INVAL;

	if (ca == NULL || (msg == NULL && len > 0) || len > MOAT_CA_MSG_MAX + CA_RAW_SLACK ||
	    ans == NULL || ans_len == NULL)
		return rc;
	pthread_mutex_lock(&ca->lock);
	rc = MOAT_E_CLOSED;
	if (ca->fd < 0)
		goto out;
	rc = ca_send(ca, msg, len, (int64_t)moat_now_ms() + MOAT_CA_TIMEOUT_MS, NULL, 0);
	if (rc)
		goto out;
	rc = ca_recv(ca, (int64_t)moat_now_ms() + MOAT_CA_TIMEOUT_MS, &n, NULL, 0);
	if (rc)
		goto out;
	rc = dup_bytes(ca->rbuf, n, ans, ans_len, NULL, 0);
out:
	pthread_mutex_unlock(&ca->lock);
	return rc;
}
