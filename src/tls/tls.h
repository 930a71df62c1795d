/*
 * OpenSSL 3 server contexts and device identity.
 *
 * Policy: TLS 1.3, and TLS 1.2 only with ECDHE key exchange and AEAD
 * ciphers. Client certificates verified against the Moat CA; required by
 * default. Session resumption with stateless tickets. Buffers released while
 * a connection is idle (SSL_MODE_RELEASE_BUFFERS).
 */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "core/error.h"

struct moat_tls_paths {
	const char *cert; /* server certificate chain (PEM) */
	const char *key;  /* server private key (PEM) */
	const char *ca;	  /* CA bundle that client certificates must chain to */
};

/*
 * Build a server context. require_client_cert: fail the handshake without a
 * valid client certificate; otherwise a certificate is requested and
 * verified if sent. On failure returns NULL and writes a readable reason
 * (including OpenSSL's) to err.
 */
SSL_CTX *moat_tls_server_ctx(const struct moat_tls_paths *paths, bool require_client_cert,
			     char *err, size_t errlen);

/*
 * The device identity of a verified peer certificate: the URI SAN
 * "moat:device:<id>" when present (the prefix matched without regard to
 * ASCII case), else the subject CN. A moat URI whose id is invalid, or two
 * moat URIs with different ids, refuse the certificate (MOAT_E_DENIED): it
 * never falls back to the CN. A buffer too small for the id is MOAT_E_LIMIT. The id must be a
 * valid device id (moat_device_id_valid). Writes a NUL-terminated id.
 * MOAT_E_NOTFOUND when there is no certificate; MOAT_E_DENIED when the
 * identity is not a valid device id.
 */
moat_err moat_tls_peer_identity(SSL *ssl, char *id, size_t idlen);

/* Same, for a certificate object (unit tests, tools). */
moat_err moat_tls_cert_identity(X509 *cert, char *id, size_t idlen);

/* Device ids: 1-64 characters of [a-z0-9._-], starting with a letter or
 * digit. */
bool moat_device_id_valid(const char *s, size_t n);

/* The peer certificate's serial number as lowercase hex, left-padded to at
 * least 32 digits (the form the CA and the registry use); "" without a
 * certificate. */
void moat_tls_peer_serial(SSL *ssl, char *out, size_t outlen);
void moat_tls_cert_serial(X509 *cert, char *out, size_t outlen);
/* SHA-256 (lowercase hex, 64 digits) of a certificate, and of the trust
 * anchor (the last certificate of the verified chain) of the peer; "" when
 * there is none. */
void moat_tls_cert_fingerprint(X509 *cert, char *out, size_t outlen);
void moat_tls_peer_anchor(SSL *ssl, char *out, size_t outlen);

/* Append OpenSSL's error queue to buf (clearing it). */
void moat_tls_errors(char *buf, size_t len);

#endif
