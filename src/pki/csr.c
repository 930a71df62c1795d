/*
 * Certificate requests for EST enrollment: the body encodings RFC 7030
 * allows (and the PEM that curl users send), DER parsing with a size cap,
 * and the issuing policy (csr.h lists the rules).
 *
 * Everything here reads bytes an unauthenticated or merely token-holding
 * client chose, and the key process calls it again on what the parent hands
 * over, so every path is bounded and nothing is trusted because an earlier
 * step accepted it. The policy looks only at what the request asks for; the
 * certificate the CA issues never copies a requested extension, only the
 * key, so a check here refuses rather than filters.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/limits.h"
#include "pki/csr.h"
#include "tls/tls.h"

#define DEVICE_URI_PREFIX "moat:device:"
#define DEVICE_URI_PREFIX_LEN (sizeof(DEVICE_URI_PREFIX) - 1)

/* The sentence every key refusal ends with, so a device maker reads at once
 * what to generate instead. */
#define KEYS_ACCEPTED                                                                              \
	"accepted keys are ECDSA P-256 or P-384, Ed25519, and RSA of 3072 to 8192 bits"

/* Longest piece of a peer-chosen string quoted back in a refusal. */
#define QUOTE_MAX 72u

/* PEM labels accepted around a base64 request. "NEW CERTIFICATE REQUEST"
 * is what older Netscape-era and Windows tools write. */
static const char *const pem_labels[] = {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"};

static void csr_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void csr_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* A peer-chosen string made safe to quote in a log line or an HTTP answer:
 * printable ASCII only, bounded. */
static void quote(char *out, size_t outlen, const unsigned char *s, size_t n)
{
	size_t i, o = 0;

	if (outlen == 0)
		return;
	for (i = 0; i < n && o + 1 < outlen; i++) {
		unsigned char c = s[i];

		out[o++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
	}
	if (i < n && o >= 3) {
		out[o - 1] = '.';
		out[o - 2] = '.';
		out[o - 3] = '.';
	}
	out[o] = '\0';
}

static bool is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int b64_value(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Strict RFC 4648 base64 with whitespace ignored: padded groups only, no
 * data after the padding, and the bits the padding leaves over must be zero,
 * so one request has exactly one encoding and nothing can hide in it.
 */
static moat_err b64_decode(const uint8_t *p, size_t n, uint8_t *out, size_t cap, size_t *outlen,
			   char *why, size_t whylen)
{
	uint32_t acc = 0;
	size_t q = 0; /* characters in the current group of four */
	size_t pad = 0;
	size_t o = 0;
	bool done = false;
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = p[i];
		int v;

		if (is_ws(c))
			continue;
		if (done) {
			csr_why(why, whylen, "the base64 request continues after its final '='");
			return MOAT_E_MALFORMED;
		}
		if (c == '=') {
			if (q < 2) {
				csr_why(why, whylen, "misplaced '=' in the base64 request");
				return MOAT_E_MALFORMED;
			}
			pad++;
			q++;
			if (q < 4)
				continue;
			/* pad is 1 (three characters, 18 bits) or 2 (two, 12 bits). */
			if (o + 3 - pad > cap) {
				csr_why(why, whylen, "the request is over %u bytes", MOAT_CSR_MAX);
				return MOAT_E_TOO_LARGE;
			}
			if (pad == 1) {
				if ((acc & 0x3u) != 0)
					goto bits;
				out[o++] = (uint8_t)(acc >> 10);
				out[o++] = (uint8_t)(acc >> 2);
			} else {
				if ((acc & 0xfu) != 0)
					goto bits;
				out[o++] = (uint8_t)(acc >> 4);
			}
			done = true;
			q = 0;
			continue;
		}
		if (pad > 0) {
			csr_why(why, whylen, "the base64 request continues after '='");
			return MOAT_E_MALFORMED;
		}
		v = b64_value(c);
		if (v < 0) {
			csr_why(why, whylen,
				"byte 0x%02x at offset %zu is not base64; send the DER request "
				"base64-encoded (RFC 7030) or in PEM",
				c, i);
			return MOAT_E_MALFORMED;
		}
		acc = (acc << 6) | (uint32_t)v;
		if (++q < 4)
			continue;
		if (o + 3 > cap) {
			csr_why(why, whylen, "the request is over %u bytes", MOAT_CSR_MAX);
			return MOAT_E_TOO_LARGE;
		}
		out[o++] = (uint8_t)(acc >> 16);
		out[o++] = (uint8_t)(acc >> 8);
		out[o++] = (uint8_t)acc;
		q = 0;
		acc = 0;
	}
	if (q != 0) {
		csr_why(why, whylen, "the base64 request ends in the middle of a group");
		return MOAT_E_MALFORMED;
	}
	if (o == 0) {
		csr_why(why, whylen, "the request body is empty");
		return MOAT_E_MALFORMED;
	}
	*outlen = o;
	return MOAT_OK;
bits:
	csr_why(why, whylen, "the base64 request has non-zero bits in its last group");
	return MOAT_E_MALFORMED;
}

static bool starts_with(const uint8_t *p, size_t n, const char *s)
{
	size_t l = strlen(s);

	return n >= l && memcmp(p, s, l) == 0;
}

/* The first occurrence of s in [p, p + n), or NULL. */
static const uint8_t *find(const uint8_t *p, size_t n, const char *s)
{
	size_t l = strlen(s);
	size_t i;

	for (i = 0; n >= l && i <= n - l; i++) {
		if (p[i] == (uint8_t)s[0] && memcmp(p + i, s, l) == 0)
			return p + i;
	}
	return NULL;
}

/*
 * Find the base64 between "-----BEGIN <label>-----" (p starts with
 * "-----BEGIN ") and the matching END line, after which only whitespace may
 * follow. Headers (RFC 1421 "Proc-Type:") fail later as non-base64.
 */
static moat_err pem_inner(const uint8_t *p, size_t n, const uint8_t **in, size_t *in_len, char *why,
			  size_t whylen)
{
	char begin[64];
	char end[64];
	const uint8_t *e;
	size_t i, blen, elen;

	for (i = 0; i < sizeof(pem_labels) / sizeof(pem_labels[0]); i++) {
		snprintf(begin, sizeof(begin), "-----BEGIN %s-----", pem_labels[i]);
		snprintf(end, sizeof(end), "-----END %s-----", pem_labels[i]);
		if (starts_with(p, n, begin))
			break;
	}
	if (i == sizeof(pem_labels) / sizeof(pem_labels[0])) {
		csr_why(why, whylen,
			"the PEM block is not a certificate request (expected \"-----BEGIN "
			"CERTIFICATE REQUEST-----\")");
		return MOAT_E_MALFORMED;
	}
	blen = strlen(begin);
	elen = strlen(end);
	e = find(p + blen, n - blen, end);
	if (e == NULL) {
		csr_why(why, whylen, "the PEM request has no \"%s\" line", end);
		return MOAT_E_MALFORMED;
	}
	for (i = (size_t)(e - p) + elen; i < n; i++) {
		if (!is_ws(p[i])) {
			csr_why(why, whylen, "data follows the end of the PEM request");
			return MOAT_E_MALFORMED;
		}
	}
	*in = p + blen;
	*in_len = (size_t)(e - (p + blen));
	return MOAT_OK;
}

moat_err moat_csr_from_est_body(const uint8_t *body, size_t len, uint8_t **der, size_t *der_len,
				char *why, size_t whylen)
{
	const uint8_t *in;
	size_t in_len, i, cap, got = 0;
	uint8_t *out = NULL;
	moat_err rc = MOAT_E_INVAL;

	if ((body == NULL && len > 0) || der == NULL || der_len == NULL) {
		csr_why(why, whylen, "invalid arguments");
		goto out;
	}
	rc = MOAT_E_TOO_LARGE;
	if (len > MOAT_CSR_BODY_MAX) {
		csr_why(why, whylen, "the request body is over %u bytes", MOAT_CSR_BODY_MAX);
		goto out;
	}
	for (i = 0; i < len && is_ws(body[i]); i++)
		;
	in = body + i;
	in_len = len - i;
	if (starts_with(in, in_len, "-----BEGIN ")) {
		rc = pem_inner(in, in_len, &in, &in_len, why, whylen);
		if (rc)
			goto out;
	}
	/* Four characters make three bytes: size by the input, not a guess. */
	cap = in_len / 4 * 3 + 3;
	if (cap > MOAT_CSR_MAX)
		cap = MOAT_CSR_MAX;
	rc = MOAT_E_NOMEM;
	out = malloc(cap);
	if (out == NULL) {
		csr_why(why, whylen, "out of memory");
		goto out;
	}
	rc = b64_decode(in, in_len, out, cap, &got, why, whylen);
	if (rc)
		goto out;
	*der = out;
	*der_len = got;
	out = NULL;
out:
	free(out);
	return rc;
}

moat_err moat_csr_parse(const uint8_t *der, size_t len, X509_REQ **out, char *why, size_t whylen)
{
	const unsigned char *p = der;
	X509_REQ *req = NULL;
	moat_err rc = MOAT_E_INVAL;

	if (der == NULL || out == NULL) {
		csr_why(why, whylen, "invalid arguments");
		goto out;
	}
	rc = MOAT_E_TOO_LARGE;
	if (len > MOAT_CSR_MAX) {
		csr_why(why, whylen, "the request is over %u bytes", MOAT_CSR_MAX);
		goto out;
	}
	rc = MOAT_E_MALFORMED;
	if (len == 0) {
		csr_why(why, whylen, "the request is empty");
		goto out;
	}
	req = d2i_X509_REQ(NULL, &p, (long)len);
	if (req == NULL) {
		csr_why(why, whylen, "not a DER PKCS#10 certificate request");
		goto out;
	}
	if (p != der + len) {
		csr_why(why, whylen, "%zu bytes follow the certificate request",
			(size_t)(der + len - p));
		goto out;
	}
	*out = req;
	req = NULL;
	rc = MOAT_OK;
out:
	X509_REQ_free(req);
	ERR_clear_error();
	return rc;
}

/* Name the key for a refusal: "RSA-2048", "ECDSA on secp224r1", "DSA-2048". */
static void key_describe(EVP_PKEY *pkey, char *out, size_t outlen)
{
	char group[64];
	size_t glen = 0;
	const char *type;
	int bits = EVP_PKEY_get_bits(pkey);

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) == 1)
			snprintf(out, outlen, "ECDSA on %s", group);
		else
			snprintf(out, outlen, "EC with explicit curve parameters");
		return;
	case EVP_PKEY_RSA:
		snprintf(out, outlen, "RSA-%d", bits);
		return;
	default:
		break;
	}
	type = EVP_PKEY_get0_type_name(pkey);
	if (type == NULL)
		type = OBJ_nid2sn(EVP_PKEY_get_base_id(pkey));
	if (type == NULL)
		type = "of an unknown type";
	if (bits > 0)
		snprintf(out, outlen, "%s-%d", type, bits);
	else
		snprintf(out, outlen, "%s", type);
}

static bool key_accepted(EVP_PKEY *pkey)
{
	char group[64];
	size_t glen = 0;
	int bits, nid;

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_EC:
		/* Named curves only: explicit parameters are how curve
		 * substitution attacks get in. */
		if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1)
			return false;
		nid = OBJ_txt2nid(group);
		return nid == NID_X9_62_prime256v1 || nid == NID_secp384r1;
	case EVP_PKEY_ED25519:
		return true;
	case EVP_PKEY_RSA:
		/* 3072 bits is NIST's floor past 2030; above 8192 a request only
		 * costs us verification time. */
		bits = EVP_PKEY_get_bits(pkey);
		return bits >= (int)MOAT_CSR_RSA_MIN_BITS && bits <= (int)MOAT_CSR_RSA_MAX_BITS;
	default:
		return false;
	}
}

/* Signatures with a hash that collisions have broken prove nothing. */
static bool sig_hash_weak(X509_REQ *req, const char **name)
{
	int md = NID_undef;
	int pk = NID_undef;
	int sig = X509_REQ_get_signature_nid(req);

	if (OBJ_find_sigid_algs(sig, &md, &pk) != 1)
		return false; /* unknown pairing: X509_REQ_verify decides */
	switch (md) {
	case NID_md2:
	case NID_md4:
	case NID_md5:
	case NID_md5_sha1:
	case NID_mdc2:
	case NID_sha1:
		*name = OBJ_nid2sn(md);
		return true;
	default:
		return false;
	}
}

/* The one subject CN as UTF-8 (OPENSSL_free), *cn NULL when there is none. */
static moat_err subject_cn(X509_REQ *req, unsigned char **cn, size_t *cn_len, char *why,
			   size_t whylen)
{
	const X509_NAME *name = X509_REQ_get_subject_name(req);
	const ASN1_STRING *data;
	unsigned char *utf8 = NULL;
	int idx, n;

	*cn = NULL;
	*cn_len = 0;
	if (name == NULL)
		return MOAT_OK;
	idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (idx < 0)
		return MOAT_OK;
	if (X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0) {
		csr_why(why, whylen, "the request's subject has more than one CN");
		return MOAT_E_DENIED;
	}
	data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
	n = data != NULL ? ASN1_STRING_to_UTF8(&utf8, data) : -1;
	if (n < 0) {
		csr_why(why, whylen, "the request's subject CN cannot be decoded");
		return MOAT_E_MALFORMED;
	}
	*cn = utf8;
	*cn_len = (size_t)n;
	return MOAT_OK;
}

/*
 * The requested subjectAltName (GENERAL_NAMES_free), NULL when the request
 * asks for none. An extension request that does not decode is refused rather
 * than read as "no names": the names are what the policy is about.
 */
static moat_err requested_sans(X509_REQ *req, GENERAL_NAMES **out, char *why, size_t whylen)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	moat_err rc = MOAT_OK;
	int crit = -1;

	*out = NULL;
	exts = X509_REQ_get_extensions(req);
	if (exts == NULL) {
		if (X509_REQ_get_attr_by_NID(req, NID_ext_req, -1) >= 0 ||
		    X509_REQ_get_attr_by_NID(req, NID_ms_ext_req, -1) >= 0) {
			rc = MOAT_E_MALFORMED;
			csr_why(why, whylen, "the request's extensions cannot be decoded");
		}
		goto out;
	}
	gens = X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL);
	if (gens == NULL) {
		if (crit == -2) {
			rc = MOAT_E_DENIED;
			csr_why(why, whylen, "the request has more than one subjectAltName");
		} else if (crit != -1) {
			rc = MOAT_E_MALFORMED;
			csr_why(why, whylen, "the request's subjectAltName cannot be decoded");
		}
		goto out;
	}
	*out = gens;
out:
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return rc;
}

static const char *gn_kind(int type)
{
	switch (type) {
	case GEN_DNS:
		return "DNS";
	case GEN_IPADD:
		return "IP address";
	case GEN_EMAIL:
		return "e-mail";
	case GEN_DIRNAME:
		return "directory";
	case GEN_RID:
		return "registered ID";
	case GEN_OTHERNAME:
		return "otherName";
	default:
		return "unsupported";
	}
}

static bool device_uri_matches(const ASN1_STRING *uri, const char *id, size_t id_len)
{
	const unsigned char *d = ASN1_STRING_get0_data(uri);
	int n = ASN1_STRING_length(uri);

	return d != NULL && n >= 0 && (size_t)n == DEVICE_URI_PREFIX_LEN + id_len &&
	       memcmp(d, DEVICE_URI_PREFIX, DEVICE_URI_PREFIX_LEN) == 0 &&
	       memcmp(d + DEVICE_URI_PREFIX_LEN, id, id_len) == 0;
}

/* The SAN rule: URI moat:device:<id> and nothing else; *uri_seen when one
 * is there. */
static moat_err sans_check(const GENERAL_NAMES *gens, const char *id, size_t id_len, bool *uri_seen,
			   char *why, size_t whylen)
{
	char shown[QUOTE_MAX];
	int i, n = sk_GENERAL_NAME_num(gens);

	*uri_seen = false;
	if (n <= 0) {
		csr_why(why, whylen, "the request's subjectAltName is empty");
		return MOAT_E_DENIED;
	}
	for (i = 0; i < n; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
		const ASN1_STRING *uri;

		if (gn->type != GEN_URI) {
			csr_why(why, whylen,
				"the request asks for a %s name; a device certificate carries "
				"only the URI moat:device:%s",
				gn_kind(gn->type), id);
			return MOAT_E_DENIED;
		}
		uri = gn->d.uniformResourceIdentifier;
		if (!device_uri_matches(uri, id, id_len)) {
			quote(shown, sizeof(shown), ASN1_STRING_get0_data(uri),
			      (size_t)ASN1_STRING_length(uri));
			csr_why(why, whylen,
				"the request asks for the URI \"%s\"; device %s may only have "
				"moat:device:%s",
				shown, id, id);
			return MOAT_E_DENIED;
		}
		*uri_seen = true;
	}
	return MOAT_OK;
}

moat_err moat_csr_check(X509_REQ *req, const char *device_id, char *why, size_t whylen)
{
	char shown[QUOTE_MAX];
	char key[80];
	GENERAL_NAMES *gens = NULL;
	unsigned char *cn = NULL;
	const char *hash = NULL;
	EVP_PKEY *pkey;
	size_t id_len, cn_len = 0;
	bool uri_seen = false;
	moat_err rc = MOAT_E_INVAL;

	if (req == NULL || device_id == NULL) {
		csr_why(why, whylen, "invalid arguments");
		goto out;
	}
	rc = MOAT_E_DENIED;
	id_len = strnlen(device_id, MOAT_DEVICE_ID_MAX + 1);
	if (!moat_device_id_valid(device_id, id_len)) {
		quote(shown, sizeof(shown), (const unsigned char *)device_id, id_len);
		csr_why(why, whylen,
			"\"%s\" is not a valid device id: use 1-%u characters of a-z 0-9 . _ -, "
			"starting with a letter or digit",
			shown, MOAT_DEVICE_ID_MAX);
		goto out;
	}
	pkey = X509_REQ_get0_pubkey(req);
	if (pkey == NULL) {
		rc = MOAT_E_MALFORMED;
		csr_why(why, whylen, "the request's public key cannot be read");
		goto out;
	}
	/* The key first: verifying a signature is the expensive step, and an
	 * unacceptable key gets the more useful answer. */
	if (!key_accepted(pkey)) {
		key_describe(pkey, key, sizeof(key));
		csr_why(why, whylen, "the request's key is %s; " KEYS_ACCEPTED, key);
		goto out;
	}
	if (sig_hash_weak(req, &hash)) {
		csr_why(why, whylen,
			"the request is signed with %s; sign it with SHA-256 or better",
			hash != NULL ? hash : "a broken hash");
		goto out;
	}
	if (X509_REQ_verify(req, pkey) != 1) {
		csr_why(why, whylen,
			"the request's signature does not verify with the key it contains (no "
			"proof of possession)");
		goto out;
	}
	rc = subject_cn(req, &cn, &cn_len, why, whylen);
	if (rc)
		goto out;
	rc = MOAT_E_DENIED;
	if (cn != NULL && (cn_len != id_len || memcmp(cn, device_id, id_len) != 0)) {
		quote(shown, sizeof(shown), cn, cn_len);
		csr_why(why, whylen, "the request's subject CN \"%s\" is not the device id %s",
			shown, device_id);
		goto out;
	}
	rc = requested_sans(req, &gens, why, whylen);
	if (rc)
		goto out;
	if (gens != NULL) {
		rc = sans_check(gens, device_id, id_len, &uri_seen, why, whylen);
		if (rc)
			goto out;
	}
	rc = MOAT_E_DENIED;
	if (cn == NULL && !uri_seen) {
		csr_why(why, whylen,
			"the request names no device: put the device id in the subject CN or the "
			"URI subjectAltName moat:device:%s",
			device_id);
		goto out;
	}
	rc = MOAT_OK;
out:
	GENERAL_NAMES_free(gens);
	OPENSSL_free(cn);
	ERR_clear_error();
	return rc;
}

moat_err moat_csr_subject_id(X509_REQ *req, char *id, size_t idlen)
{
	GENERAL_NAMES *gens = NULL;
	unsigned char *cn = NULL;
	const unsigned char *have = NULL;
	size_t have_n = 0, cn_len = 0;
	moat_err rc = MOAT_E_INVAL;
	int i, n;

	if (req == NULL)
		goto out;
	rc = requested_sans(req, &gens, NULL, 0);
	if (rc)
		goto out;
	rc = MOAT_E_DENIED;
	n = gens != NULL ? sk_GENERAL_NAME_num(gens) : 0;
	for (i = 0; i < n; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *d;
		int len;

		if (gn->type != GEN_URI)
			continue;
		d = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
		len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
		if (d == NULL || len < (int)DEVICE_URI_PREFIX_LEN ||
		    memcmp(d, DEVICE_URI_PREFIX, DEVICE_URI_PREFIX_LEN) != 0)
			continue;
		d += DEVICE_URI_PREFIX_LEN;
		len -= (int)DEVICE_URI_PREFIX_LEN;
		/* An invalid id in our URI never falls back to the CN, and two
		 * different ids are not ours to choose between. */
		if (!moat_device_id_valid((const char *)d, (size_t)len))
			goto out;
		if (have != NULL && (have_n != (size_t)len || memcmp(have, d, have_n) != 0))
			goto out;
		have = d;
		have_n = (size_t)len;
	}
	if (have == NULL) {
		rc = subject_cn(req, &cn, &cn_len, NULL, 0);
		if (rc)
			goto out;
		rc = MOAT_E_NOTFOUND;
		if (cn == NULL)
			goto out;
		rc = MOAT_E_DENIED;
		if (!moat_device_id_valid((const char *)cn, cn_len))
			goto out;
		have = cn;
		have_n = cn_len;
	}
	rc = MOAT_E_LIMIT;
	if (id == NULL || have_n >= idlen)
		goto out;
	memcpy(id, have, have_n);
	id[have_n] = '\0';
	rc = MOAT_OK;
out:
	GENERAL_NAMES_free(gens);
	OPENSSL_free(cn);
	ERR_clear_error();
	return rc;
}
