/*
 * Certificate requests (PKCS#10) for EST enrollment (RFC 7030): turning a
 * simpleenroll/simplereenroll body into DER, parsing it, and deciding whether
 * Moat will issue a device certificate for it.
 *
 * Pure checks: nothing here touches key material other than the public key
 * inside the request. The key process (ca_proc.c) runs moat_csr_check again
 * itself before it signs, so the network-facing side cannot talk it into
 * issuing for a request these rules refuse.
 *
 * Refusals carry a sentence for the operator or device in `why` (which may
 * be NULL); OpenSSL's error queue is left empty.
 */
#ifndef MOAT_CSR_H
#define MOAT_CSR_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "core/error.h"

/*
 * Parse a DER PKCS#10 request of at most MOAT_CSR_MAX bytes. Bytes after the
 * request are refused. MOAT_E_TOO_LARGE over the limit, MOAT_E_MALFORMED
 * when it is not a request; on MOAT_OK *out is the caller's (X509_REQ_free).
 */
moat_err moat_csr_parse(const uint8_t *der, size_t len, X509_REQ **out, char *why, size_t whylen);

/*
 * The DER request in an EST simpleenroll/simplereenroll body (at most
 * MOAT_CSR_BODY_MAX bytes): base64 (RFC 4648, padded, with or without line
 * breaks; spaces, tabs, CR and LF are ignored, any other byte is refused), or
 * the same inside a PEM "-----BEGIN CERTIFICATE REQUEST-----" block (also
 * "NEW CERTIFICATE REQUEST"), which curl users often send. On MOAT_OK *der is
 * malloc'd (free) and holds *der_len bytes, at most MOAT_CSR_MAX. Nothing is
 * parsed beyond the encoding: pass the result to moat_csr_parse.
 */
moat_err moat_csr_from_est_body(const uint8_t *body, size_t len, uint8_t **der, size_t *der_len,
				char *why, size_t whylen);

/*
 * Whether Moat issues a certificate for device_id from req:
 *  - the key is ECDSA P-256 or P-384, Ed25519, or RSA of 3072 to 8192 bits;
 *  - the request is signed by that key (proof of possession), not with MD5
 *    or SHA-1;
 *  - a subject CN, if present, is exactly device_id (and there is one);
 *  - a subjectAltName among the requested extensions holds only the URI
 *    "moat:device:<device_id>" (any DNS, IP, e-mail or other name refuses);
 *  - at least one of that CN and that URI is present;
 *  - device_id is valid (moat_device_id_valid).
 * MOAT_E_DENIED with a sentence in why on refusal, MOAT_E_MALFORMED when the
 * request cannot be read (no usable key, undecodable names), MOAT_E_INVAL for
 * NULL arguments.
 */
moat_err moat_csr_check(X509_REQ *req, const char *device_id, char *why, size_t whylen);

/*
 * The device id req names: the URI SAN "moat:device:<id>" if present, else
 * the subject CN. Writes a NUL-terminated id. MOAT_E_NOTFOUND when it names
 * none, MOAT_E_DENIED when the name is not a valid device id or two names
 * disagree, MOAT_E_LIMIT when idlen is too small, MOAT_E_MALFORMED when the
 * names cannot be decoded. Batch enrollment tokens use it to learn the id;
 * moat_csr_check still decides.
 */
moat_err moat_csr_subject_id(X509_REQ *req, char *id, size_t idlen);

#endif
