/*
 * The listeners' TLS contexts: built from the configuration, swapped by
 * SIGHUP, and, for HTTPS listeners that do not require client certificates,
 * rebuilt to trust the manufacturer CAs an operator registered, so a device
 * can present its factory certificate to EST simpleenroll (the API checks
 * which CA anchored the chain). MQTT listeners, and HTTPS listeners with
 * require_client_cert = on, trust the Moat CA alone.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "daemon/internal.h"
#include "registry/schema.h"
#include "store/store.h"
#include "tls/tickets.h"
#include "tls/tls.h"

/* Resumption as the listener's tls_resumption says: MQTT listeners share
 * the daemon's ticket keys; HTTPS listeners keep OpenSSL's per-context keys
 * (a resumed session has no verified chain, and EST asks which CA anchored
 * it, so persistent tickets would buy them nothing). */
static moat_err listener_resumption(SSL_CTX *ctx, const struct moat_listener_conf *l,
				    struct moat_tls_tickets *tickets, char *err, size_t errlen)
{
	if (!l->tls_resumption)
		return moat_tls_resumption_off(ctx, err, errlen);
	if (l->protocol == MOAT_PROTO_MQTT && tickets != NULL)
		return moat_tls_tickets_attach(ctx, tickets, l->name, err, errlen);
	return MOAT_OK;
}

moat_err moat_daemon_listeners_build(const struct moat_conf *conf, struct moat_tls_tickets *tickets,
				     struct moat_listener *out, char *err, size_t errlen)
{
	struct moat_tls_paths paths = {conf->tls_cert, conf->tls_key, conf->tls_ca};
	size_t i;

	for (i = 0; i < conf->n_listeners; i++) {
		out[i].conf = conf->listeners[i];
		out[i].ssl_ctx = NULL;
		if (!out[i].conf.tls)
			continue;
		/* An HTTPS listener without required client certificates still
		 * asks for one (listing only our CA, so browsers prompt only for
		 * a certificate this CA issued): EST re-enrollment authenticates
		 * a device with its current certificate. */
		out[i].ssl_ctx =
		    moat_tls_server_ctx(&paths, out[i].conf.require_client_cert, err, errlen);
		if (out[i].ssl_ctx != NULL &&
		    listener_resumption(out[i].ssl_ctx, &out[i].conf, tickets, err, errlen) !=
			MOAT_OK) {
			SSL_CTX_free(out[i].ssl_ctx);
			out[i].ssl_ctx = NULL;
		}
		if (out[i].ssl_ctx == NULL) {
			while (i-- > 0)
				SSL_CTX_free(out[i].ssl_ctx);
			return MOAT_E_TLS;
		}
	}
	return MOAT_OK;
}

void moat_daemon_listeners_swap(struct moat_daemon *d, struct moat_listener *nl, size_t n)
{
	size_t i, j;

	/* Live connections keep the context they were made with (SSL objects
	 * hold a reference). */
	pthread_mutex_lock(&d->ctx_lock);
	for (i = 0; i < d->n_listeners; i++) {
		for (j = 0; j < n; j++) {
			if (strcmp(d->listeners[i].conf.name, nl[j].conf.name) != 0)
				continue;
			if (d->listeners[i].ssl_ctx && nl[j].ssl_ctx) {
				SSL_CTX_free(d->listeners[i].ssl_ctx);
				d->listeners[i].ssl_ctx = nl[j].ssl_ctx;
				nl[j].ssl_ctx = NULL;
			}
		}
	}
	pthread_mutex_unlock(&d->ctx_lock);
	for (j = 0; j < n; j++)
		SSL_CTX_free(nl[j].ssl_ctx);
	/* The HTTPS contexts came back without manufacturer CAs: the caller
	 * reloads the registry with retrust. */
}

void moat_daemon_listeners_free(struct moat_daemon *d)
{
	size_t i;

	for (i = 0; i < d->n_listeners; i++) {
		SSL_CTX_free(d->listeners[i].ssl_ctx);
		d->listeners[i].ssl_ctx = NULL;
	}
}

static moat_err mca_add_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_mca_row row;
	SSL_CTX *ctx = arg;
	BIO *bio;
	X509 *x;
	moat_err rc = moat_reg_mca_row_decode(cols, ncols, &row);

	if (rc != MOAT_OK)
		return rc;
	if (row.cert_pem.type != MOAT_VAL_TEXT || row.cert_pem.len > INT32_MAX)
		return MOAT_E_CORRUPT;
	bio = BIO_new_mem_buf(row.cert_pem.p, (int)row.cert_pem.len);
	x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (x == NULL)
		return MOAT_OK; /* checked when registered; never fatal here */
	(void)X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x);
	(void)SSL_CTX_add_client_CA(ctx, x);
	X509_free(x);
	return MOAT_OK;
}

static moat_err mca_digest_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_mca_row row;
	EVP_MD_CTX *md = arg;
	moat_err rc = moat_reg_mca_row_decode(cols, ncols, &row);

	if (rc != MOAT_OK)
		return rc;
	return EVP_DigestUpdate(md, row.fingerprint.p, row.fingerprint.len) == 1 ? MOAT_OK
										 : MOAT_E_CRYPTO;
}

moat_err moat_daemon_https_trust(struct moat_daemon *d, char *err, size_t errlen)
{
	struct moat_tls_paths paths = {d->conf.tls_cert, d->conf.tls_key, d->conf.tls_ca};
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *md;
	moat_err drc;
	size_t i;

	if (d->store == NULL)
		return MOAT_OK;
	/* Most registry changes do not touch manufacturer CAs: rebuild the
	 * contexts only when their set changed (or after start and SIGHUP,
	 * which cleared mca_digest_set). */
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		snprintf(err, errlen, "out of memory");
		return MOAT_E_NOMEM;
	}
	drc = moat_store_read(d->store, REG_STMT(MCA_ALL), NULL, 0, mca_digest_cb, md);
	if (drc == MOAT_OK && EVP_DigestFinal_ex(md, digest, &dlen) != 1)
		drc = MOAT_E_CRYPTO;
	EVP_MD_CTX_free(md);
	if (drc != MOAT_OK) {
		snprintf(err, errlen, "cannot read manufacturer CAs: %s", moat_strerror(drc));
		return drc;
	}
	if (d->mca_digest_set && dlen == sizeof(d->mca_digest) &&
	    memcmp(digest, d->mca_digest, dlen) == 0)
		return MOAT_OK;
	for (i = 0; i < d->n_listeners; i++) {
		struct moat_listener *l = &d->listeners[i];
		SSL_CTX *ctx;
		moat_err rc;

		if (l->conf.protocol != MOAT_PROTO_HTTPS || l->conf.require_client_cert)
			continue;
		ctx = moat_tls_server_ctx(&paths, false, err, errlen);
		if (ctx == NULL)
			return MOAT_E_TLS;
		if ((rc = listener_resumption(ctx, &l->conf, d->tickets, err, errlen)) != MOAT_OK) {
			SSL_CTX_free(ctx);
			return rc;
		}
		rc = moat_store_read(d->store, REG_STMT(MCA_ALL), NULL, 0, mca_add_cb, ctx);
		if (rc != MOAT_OK) {
			SSL_CTX_free(ctx);
			snprintf(err, errlen, "cannot read manufacturer CAs: %s",
				 moat_strerror(rc));
			return rc;
		}
		pthread_mutex_lock(&d->ctx_lock);
		SSL_CTX_free(l->ssl_ctx);
		l->ssl_ctx = ctx;
		pthread_mutex_unlock(&d->ctx_lock);
	}
	if (dlen == sizeof(d->mca_digest)) {
		memcpy(d->mca_digest, digest, dlen);
		d->mca_digest_set = true;
	}
	return MOAT_OK;
}
