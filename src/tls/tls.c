/*
 * OpenSSL 3 server contexts and the mapping from a verified client
 * certificate to a device identity.
 *
 * This file owns Moat's TLS policy (see tls.h): which protocol versions,
 * ciphers and groups a listener accepts, how client certificates are
 * verified, and which field of a certificate names the device. Everything
 * that decides whether a peer is who it claims to be lives here, so a review
 * of device authentication starts and ends in this file.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/limits.h"
#include "tls/tls.h"

/* TLS 1.2 only with forward secrecy (ECDHE) and AEAD; ECDSA first because
 * `moat init` issues an ECDSA server key, RSA kept for operators who bring
 * their own certificate. TLS 1.3 suites are all AEAD and stay at the
 * OpenSSL default. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:"
				    "ECDHE-ECDSA-AES256-GCM-SHA384:"
				    "ECDHE-ECDSA-CHACHA20-POLY1305:"
				    "ECDHE-RSA-AES128-GCM-SHA256:"
				    "ECDHE-RSA-AES256-GCM-SHA384:"
				    "ECDHE-RSA-CHACHA20-POLY1305";

/* X25519 first: fastest and constant-time everywhere; the NIST curves for
 * device stacks (mbedTLS, wolfSSL, secure elements) that only do those. */
static const char tls_groups[] = "X25519:P-256:P-384";

/* Sessions resumed from a ticket carry the client certificate they were made
 * with; OpenSSL refuses to resume a verified session without an id context. */
static const unsigned char tls_sid_ctx[] = "moat";

/* Device root -> (one intermediate later) -> device leaves; 4 leaves room
 * for an operator's own hierarchy without allowing absurd chains. */
#define TLS_VERIFY_DEPTH 4

#define DEVICE_URI_PREFIX "moat:device:"

static void tls_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write "msg: <openssl reasons>" into err. */
static void tls_fail(char *err, size_t errlen, const char *fmt, ...)
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

void moat_tls_errors(char *buf, size_t len)
{
	const char *data = NULL;
	unsigned long e;
	size_t used = 0;
	int flags = 0;
	int first = 1;

	if (buf != NULL && len > 0) {
		used = strnlen(buf, len);
		/* An unterminated buffer is treated as full rather than read past. */
		if (used == len) {
			used = len - 1;
			buf[used] = '\0';
		}
	}
	/* Callers may hit an error before any SSL_CTX exists (pki.c); without
	 * this, libssl reasons print as "reason(134)". Runs once. */
	OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS, NULL);
	/* Always drain the whole queue: a stale error would be blamed on the
	 * next, unrelated, operation of this thread. */
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		char one[256];
		const char *reason;
		int n;

		if (buf == NULL || len == 0 || used + 1 >= len)
			continue;
		reason = ERR_reason_error_string(e);
		if (reason == NULL) {
			ERR_error_string_n(e, one, sizeof(one));
			reason = one;
		}
		if (!(flags & ERR_TXT_STRING) || data == NULL || *data == '\0')
			data = NULL;
		n = snprintf(buf + used, len - used, "%s%s%s%s%s",
			     first ? (used > 0 ? ": " : "") : "; ", reason, data ? " (" : "",
			     data ? data : "", data ? ")" : "");
		first = 0;
		if (n < 0)
			continue;
		used += (size_t)n;
		if (used >= len)
			used = len - 1;
	}
}

bool moat_device_id_valid(const char *s, size_t n)
{
	size_t i;

	if (s == NULL || n == 0 || n > MOAT_DEVICE_ID_MAX)
		return false;
	/* Explicit ranges, not <ctype.h>: the answer must not depend on the
	 * locale, and ids are used in topics, file names and logs. */
	for (i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (alnum)
			continue;
		if (i > 0 && (c == '.' || c == '_' || c == '-'))
			continue;
		return false;
	}
	return true;
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

SSL_CTX *moat_tls_server_ctx(const struct moat_tls_paths *paths, bool require_client_cert,
			     char *err, size_t errlen)
{
	STACK_OF(X509_NAME) *ca_names = NULL;
	EVP_PKEY *key = NULL;
	BIO *bio = NULL;
	SSL_CTX *ctx = NULL;
	SSL_CTX *ret = NULL;
	int verify;

	ERR_clear_error();
	if (paths == NULL || paths->cert == NULL || paths->key == NULL || paths->ca == NULL) {
		tls_fail(err, errlen, "tls: certificate, key and CA paths are all required");
		goto out;
	}
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		tls_fail(err, errlen, "tls: cannot create context");
		goto out;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		tls_fail(err, errlen, "tls: cannot set minimum protocol version");
		goto out;
	}
	if (!SSL_CTX_set_cipher_list(ctx, tls12_ciphers)) {
		tls_fail(err, errlen, "tls: cannot set TLS 1.2 cipher list");
		goto out;
	}
	if (!SSL_CTX_set1_groups_list(ctx, tls_groups)) {
		tls_fail(err, errlen, "tls: cannot set key exchange groups");
		goto out;
	}
	/* Renegotiation is a DoS lever and an identity-change hazard; compression
	 * is CRIME. Our preference order, not the device's, picks the cipher. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				     SSL_OP_NO_COMPRESSION);
	/* Idle connections give their read/write buffers back (~34 KB each);
	 * the reactor may retry a write from a different (grown) buffer. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				  SSL_MODE_ENABLE_PARTIAL_WRITE);
	/* Read-ahead: one read(2) fetches every record the socket holds instead
	 * of two per record (header, then body). */
	SSL_CTX_set_read_ahead(ctx, 1);

	/* Stateless tickets: resumption state lives in the ticket, so no
	 * server-side cache grows with the fleet and workers need not share one.
	 * One ticket per connection: each costs an encryption (~125 us). */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (!SSL_CTX_set_num_tickets(ctx, 1)) {
		tls_fail(err, errlen, "tls: cannot set number of session tickets");
		goto out;
	}
	if (!SSL_CTX_set_session_id_context(ctx, tls_sid_ctx, sizeof(tls_sid_ctx) - 1)) {
		tls_fail(err, errlen, "tls: cannot set session id context");
		goto out;
	}

	if (SSL_CTX_use_certificate_chain_file(ctx, paths->cert) != 1) {
		tls_fail(err, errlen, "tls: cannot load certificate chain %s", paths->cert);
		goto out;
	}
	/* Loaded by hand rather than SSL_CTX_use_PrivateKey_file: an encrypted
	 * key must fail, not block the daemon on a terminal prompt, and a
	 * mismatch deserves its own message. */
	bio = BIO_new_file(paths->key, "r");
	if (bio == NULL) {
		tls_fail(err, errlen, "tls: cannot open private key %s", paths->key);
		goto out;
	}
	key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase_cb, NULL);
	if (key == NULL) {
		tls_fail(err, errlen, "tls: cannot load private key %s", paths->key);
		goto out;
	}
	if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		tls_fail(err, errlen, "tls: private key %s does not match certificate %s",
			 paths->key, paths->cert);
		goto out;
	}

	if (SSL_CTX_load_verify_file(ctx, paths->ca) != 1) {
		tls_fail(err, errlen, "tls: cannot load CA bundle %s", paths->ca);
		goto out;
	}
	/* Tell clients which CAs we accept so a device holding several
	 * certificates picks the Moat one. */
	ca_names = SSL_load_client_CA_file(paths->ca);
	if (ca_names == NULL) {
		tls_fail(err, errlen, "tls: no CA names in %s", paths->ca);
		goto out;
	}
	SSL_CTX_set_client_CA_list(ctx, ca_names);
	ca_names = NULL; /* owned by ctx now */

	verify = SSL_VERIFY_PEER;
	if (require_client_cert)
		verify |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, verify, NULL);
	SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);

	ret = ctx;
	ctx = NULL;
out:
	sk_X509_NAME_pop_free(ca_names, X509_NAME_free);
	EVP_PKEY_free(key);
	BIO_free(bio);
	SSL_CTX_free(ctx);
	return ret;
}

/* Copy a validated id of n bytes into out as a C string. */
static moat_err id_copy(const char *s, size_t n, char *out, size_t outlen)
{
	if (out == NULL || n >= outlen)
		return MOAT_E_LIMIT;
	memcpy(out, s, n);
	out[n] = '\0';
	return MOAT_OK;
}

/* ASCII-only case folding: strncasecmp follows the locale, and the answer
 * to "is this our URI" must not. */
static bool ascii_prefix_nocase(const char *s, const char *prefix, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != prefix[i])
			return false;
	}
	return true;
}

/*
 * Find the device id in URI SANs. *found is set when at least one moat URI
 * is present; its id is then left in *idp and *idn (pointing into sans).
 */
static moat_err uri_identity(const GENERAL_NAMES *sans, bool *found, const char **idp, size_t *idn)
{
	const size_t plen = sizeof(DEVICE_URI_PREFIX) - 1;
	const char *have = NULL;
	size_t have_n = 0;
	moat_err rc = MOAT_E_DENIED;
	int i;

	for (i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		const char *uri;
		size_t n;
		int len;

		if (gn->type != GEN_URI)
			continue;
		uri = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
		len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
		if (uri == NULL || len < 0)
			goto out;
		n = (size_t)len;
		/* URI schemes are case-insensitive: a "MOAT:device:" URI is still
		 * ours and must not silently fall back to the CN. */
		if (n < plen || !ascii_prefix_nocase(uri, DEVICE_URI_PREFIX, plen))
			continue;
		uri += plen;
		n -= plen;
		/* The validity check also rejects embedded NULs. */
		if (!moat_device_id_valid(uri, n))
			goto out;
		/* Two different identities in one certificate: refuse rather than
		 * guess which one the CA meant. */
		if (have != NULL && (have_n != n || memcmp(have, uri, n) != 0))
			goto out;
		have = uri;
		have_n = n;
	}
	*found = have != NULL;
	*idp = have;
	*idn = have_n;
	rc = MOAT_OK;
out:
	return rc;
}

/* The single subject CN as UTF-8, when it is a valid device id. */
static moat_err cn_identity(X509 *cert, char *id, size_t idlen)
{
	const X509_NAME *name = X509_get_subject_name(cert);
	unsigned char *utf8 = NULL;
	moat_err rc = MOAT_E_DENIED;
	int idx;
	int len;

	if (name == NULL)
		goto out;
	idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (idx < 0)
		goto out;
	/* Several CNs: which one would another verifier use? Refuse. */
	if (X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
		goto out;
	len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
	if (len < 0) {
		ERR_clear_error();
		goto out;
	}
	if (!moat_device_id_valid((const char *)utf8, (size_t)len))
		goto out;
	rc = id_copy((const char *)utf8, (size_t)len, id, idlen);
out:
	OPENSSL_free(utf8);
	return rc;
}

moat_err moat_tls_cert_identity(X509 *cert, char *id, size_t idlen)
{
	GENERAL_NAMES *sans = NULL;
	const char *uid = NULL;
	size_t uidn = 0;
	bool found = false;
	moat_err rc = MOAT_E_NOTFOUND;
	int crit = -1;

	if (cert == NULL)
		goto out;
	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (sans == NULL && crit != -1) {
		/* -2: the extension appears twice; >= 0: it does not decode. Either
		 * way the certificate is not something we can read an identity
		 * from unambiguously. */
		ERR_clear_error();
		rc = MOAT_E_DENIED;
		goto out;
	}
	if (sans != NULL) {
		rc = uri_identity(sans, &found, &uid, &uidn);
		if (rc)
			goto out;
	}
	if (found)
		rc = id_copy(uid, uidn, id, idlen);
	else
		rc = cn_identity(cert, id, idlen);
out:
	GENERAL_NAMES_free(sans);
	return rc;
}

moat_err moat_tls_peer_identity(SSL *ssl, char *id, size_t idlen)
{
	X509 *cert;
	moat_err rc = MOAT_E_NOTFOUND;

	if (ssl == NULL)
		goto out;
	cert = SSL_get0_peer_certificate(ssl);
	if (cert == NULL)
		goto out;
	/* The handshake only fails on a bad certificate when verification is
	 * enforced; check the result ourselves so an identity is never read
	 * from an unverified certificate whatever the context says. */
	if (SSL_get_verify_result(ssl) != X509_V_OK) {
		rc = MOAT_E_DENIED;
		goto out;
	}
	rc = moat_tls_cert_identity(cert, id, idlen);
out:
	return rc;
}

void moat_tls_cert_serial(X509 *cert, char *out, size_t outlen)
{
	const ASN1_INTEGER *ai;
	BIGNUM *bn = NULL;
	unsigned char bytes[64];
	int n, pad;
	size_t i;

	if (outlen == 0)
		return;
	out[0] = '\0';
	if (cert == NULL || (ai = X509_get0_serialNumber(cert)) == NULL ||
	    (bn = ASN1_INTEGER_to_BN(ai, NULL)) == NULL)
		return;
	n = BN_num_bytes(bn);
	pad = n < 16 ? 16 : n;
	if (pad <= (int)sizeof(bytes) && (size_t)pad * 2 + 1 <= outlen &&
	    BN_bn2binpad(bn, bytes, pad) == pad) {
		for (i = 0; i < (size_t)pad; i++)
			snprintf(out + 2 * i, 3, "%02x", bytes[i]);
	}
	BN_free(bn);
}

void moat_tls_peer_serial(SSL *ssl, char *out, size_t outlen)
{
	X509 *cert = SSL_get1_peer_certificate(ssl);

	moat_tls_cert_serial(cert, out, outlen);
	X509_free(cert);
}

void moat_tls_cert_fingerprint(X509 *cert, char *out, size_t outlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;

	if (outlen == 0)
		return;
	out[0] = '\0';
	if (cert == NULL || X509_digest(cert, EVP_sha256(), md, &n) != 1 ||
	    (size_t)n * 2 + 1 > outlen)
		return;
	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void moat_tls_peer_anchor(SSL *ssl, char *out, size_t outlen)
{
	STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
	int n = chain ? sk_X509_num(chain) : 0;

	if (outlen)
		out[0] = '\0';
	if (n > 0 && SSL_get_verify_result(ssl) == X509_V_OK)
		moat_tls_cert_fingerprint(sk_X509_value(chain, n - 1), out, outlen);
}
