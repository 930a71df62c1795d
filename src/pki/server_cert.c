/*
 * Renewing the server certificate from `moat serve` (ca.h,
 * moat_ca_server_cert_check). The serving process never reads ca.key: it
 * reads its own certificate, asks the key process for a renewed one (same
 * names, same key) and replaces the file atomically; the caller then swaps
 * the TLS contexts as SIGHUP does. The key stays: renewal fixes the date,
 * key rotation is the operator's choice.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/file.h"
#include "core/limits.h"
#include "pki/ca.h"
#include "pki/pki.h"

/* A certificate chain file larger than this is not ours to rewrite. */
#define SERVER_CERT_FILE_MAX (64u * 1024u)

static const char pem_end[] = "-----END CERTIFICATE-----";

/* Read the whole file (at most SERVER_CERT_FILE_MAX) as a string. */
static moat_err read_small(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n;
	moat_err rc = MOAT_E_IO;

	if (f == NULL) {
		snprintf(err, errlen, "cannot open %s", path);
		return rc;
	}
	buf = malloc(SERVER_CERT_FILE_MAX + 1);
	if (buf == NULL) {
		rc = MOAT_E_NOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	n = fread(buf, 1, SERVER_CERT_FILE_MAX + 1, f);
	if (ferror(f) || n > SERVER_CERT_FILE_MAX) {
		rc = n > SERVER_CERT_FILE_MAX ? MOAT_E_TOO_LARGE : MOAT_E_IO;
		snprintf(err, errlen, "cannot read %s (or over %u bytes)", path,
			 SERVER_CERT_FILE_MAX);
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	rc = MOAT_OK;
out:
	free(buf);
	fclose(f);
	return rc;
}

/* Is a renewal due: less than a third of the lifetime, or less than
 * MOAT_SERVER_CERT_RENEW_MIN_S, left? */
static bool renewal_due(int64_t not_before, int64_t not_after, int64_t now)
{
	int64_t left = not_after - now;

	return left < (not_after - not_before) / 3 || left < (int64_t)MOAT_SERVER_CERT_RENEW_MIN_S;
}

moat_err moat_ca_server_cert_check(struct moat_ca *ca, const char *cert_path, int64_t now,
				   bool *renewed, int64_t *not_after, char *err, size_t errlen)
{
	char *text = NULL, *pem = NULL, *out = NULL;
	const char *tail;
	uint8_t *der = NULL, *fresh = NULL;
	size_t len = 0, fresh_len = 0, pem_len, tail_len;
	int64_t nb = 0, na = 0;
	BIO *bio = NULL, *w = NULL;
	X509 *x = NULL, *nx = NULL;
	const unsigned char *p;
	int n;
	moat_err rc;

	*renewed = false;
	ERR_clear_error();
	rc = read_small(cert_path, &text, &len, err, errlen);
	if (rc)
		goto out;
	rc = MOAT_E_CRYPTO;
	bio = BIO_new_mem_buf(text, (int)len);
	x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	if (x == NULL || moat_pki_cert_validity(x, &nb, &na) != MOAT_OK) {
		snprintf(err, errlen, "%s holds no readable certificate", cert_path);
		goto out;
	}
	*not_after = na;
	rc = MOAT_OK;
	if (!renewal_due(nb, na, now))
		goto out;
	rc = MOAT_E_CRYPTO;
	n = i2d_X509(x, &der);
	if (n <= 0) {
		snprintf(err, errlen, "cannot encode %s", cert_path);
		goto out;
	}
	rc = moat_ca_renew_server(ca, der, (size_t)n, &fresh, &fresh_len, err, errlen);
	if (rc)
		goto out;
	rc = MOAT_E_CRYPTO;
	p = fresh;
	nx = d2i_X509(NULL, &p, (long)fresh_len);
	w = BIO_new(BIO_s_mem());
	if (nx == NULL || w == NULL || PEM_write_bio_X509(w, nx) != 1 ||
	    moat_pki_cert_validity(nx, NULL, not_after) != MOAT_OK) {
		snprintf(err, errlen, "the key process answered an unreadable certificate");
		goto out;
	}
	/* Keep whatever followed the first certificate (a chain). */
	tail = strstr(text, pem_end);
	tail = tail != NULL ? tail + sizeof(pem_end) - 1 : text + len;
	while (*tail == '\r' || *tail == '\n')
		tail++;
	tail_len = strlen(tail);
	pem_len = (size_t)BIO_get_mem_data(w, &pem);
	rc = MOAT_E_NOMEM;
	out = malloc(pem_len + tail_len + 1);
	if (out == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	memcpy(out, pem, pem_len);
	memcpy(out + pem_len, tail, tail_len);
	rc = moat_file_replace(cert_path, 0644, out, pem_len + tail_len, err, errlen);
	if (rc == MOAT_OK)
		*renewed = true;
out:
	free(out);
	BIO_free(w);
	X509_free(nx);
	X509_free(x);
	BIO_free(bio);
	OPENSSL_free(der);
	free(fresh);
	free(text);
	ERR_clear_error();
	return rc;
}
