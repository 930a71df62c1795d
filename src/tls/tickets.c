/*
 * Session-ticket keys managed by Moat (tickets.h): the key ring, its
 * rotation and its byte form, and the OpenSSL callbacks that seal and open
 * tickets with it and decide whether a decrypted ticket may be resumed.
 *
 * Ticket format: OpenSSL's own (RFC 5077 layout: key name, IV, AES-256-CBC,
 * HMAC-SHA256), with keys from the ring through
 * SSL_CTX_set_tlsext_ticket_key_evp_cb. The decision to resume is
 * SSL_CTX_set_session_ticket_cb's: the ticket's application data binds it
 * to the listener and the CAs trusted when it was made.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "tls/tickets.h"
#include "tls/tls.h"

#define TICKET_NAME_LEN 16u
#define TICKET_AES_LEN 32u
#define TICKET_HMAC_LEN 32u
#define TICKETS_TAG "MTK1"
#define TICKETS_TAG_LEN 4u
#define TICKETS_HDR_LEN 13u
/* The end of GeneralizedTime: no sane clock is past it. */
#define TICKETS_TIME_MAX 253402300799LL

_Static_assert(TICKET_NAME_LEN + TICKET_AES_LEN + TICKET_HMAC_LEN == MOAT_TLS_TICKET_KEY_LEN,
	       "key layout");
_Static_assert(TICKETS_HDR_LEN + MOAT_TLS_TICKET_KEYS * MOAT_TLS_TICKET_KEY_LEN ==
		   MOAT_TLS_TICKETS_BLOB_MAX,
	       "blob layout");

struct ticket_key {
	unsigned char name[TICKET_NAME_LEN];
	unsigned char aes[TICKET_AES_LEN];
	unsigned char hmac[TICKET_HMAC_LEN];
};

struct moat_tls_tickets {
	pthread_rwlock_t lock;
	/* Guarded by lock: keys[0] is current, then older and older. */
	struct ticket_key keys[MOAT_TLS_TICKET_KEYS];
	size_t n;
	int64_t current_since; /* Unix seconds */
};

/* What a context needs in its callbacks (its ex_data; freed with it). */
struct ticket_ctx {
	struct moat_tls_tickets *t;
	/* SHA-256 over the listener's label and the CA certificates the
	 * context trusts: a ticket's application data. */
	unsigned char bind[32];
};

static int ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ticket_ctx_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			       void *argp)
{
	struct ticket_ctx *tc = ptr;

	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (tc != NULL)
		OPENSSL_clear_free(tc, sizeof(*tc));
}

static void ex_init(void)
{
	ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ticket_ctx_free_cb);
}

static moat_err key_fill(struct ticket_key *k)
{
	if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
	    RAND_bytes(k->hmac, sizeof(k->hmac)) != 1) {
		OPENSSL_cleanse(k, sizeof(*k));
		return MOAT_E_CRYPTO;
	}
	return MOAT_OK;
}

moat_err moat_tls_tickets_new(int64_t now, struct moat_tls_tickets **out)
{
	struct moat_tls_tickets *t = calloc(1, sizeof(*t));
	moat_err rc = MOAT_E_NOMEM;

	if (t == NULL)
		goto out;
	if (pthread_rwlock_init(&t->lock, NULL) != 0) {
		free(t);
		t = NULL;
		goto out;
	}
	if ((rc = key_fill(&t->keys[0])) != MOAT_OK)
		goto out;
	t->n = 1;
	t->current_since = now;
	*out = t;
	t = NULL;
out:
	moat_tls_tickets_free(t);
	return rc;
}

void moat_tls_tickets_free(struct moat_tls_tickets *t)
{
	if (t == NULL)
		return;
	OPENSSL_cleanse(t->keys, sizeof(t->keys));
	pthread_rwlock_destroy(&t->lock);
	free(t);
}

/* Push a new current key (write lock held); the oldest falls off. */
static moat_err ring_push(struct moat_tls_tickets *t)
{
	struct ticket_key k;
	moat_err rc = key_fill(&k);

	if (rc != MOAT_OK)
		return rc;
	if (t->n == MOAT_TLS_TICKET_KEYS)
		t->n--;
	memmove(&t->keys[1], &t->keys[0], t->n * sizeof(t->keys[0]));
	OPENSSL_cleanse(&t->keys[t->n + 1], (MOAT_TLS_TICKET_KEYS - t->n - 1) * sizeof(k));
	t->keys[0] = k;
	OPENSSL_cleanse(&k, sizeof(k));
	t->n++;
	return MOAT_OK;
}

moat_err moat_tls_tickets_rotate(struct moat_tls_tickets *t, int64_t now)
{
	moat_err rc;

	pthread_rwlock_wrlock(&t->lock);
	rc = ring_push(t);
	if (rc == MOAT_OK)
		t->current_since = now;
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

unsigned moat_tls_tickets_rotate_due(struct moat_tls_tickets *t, int64_t now)
{
	unsigned made = 0;
	int64_t periods;

	pthread_rwlock_wrlock(&t->lock);
	/* A key dated in the future would never rotate. */
	if (t->current_since > now)
		t->current_since = now;
	periods = (now - t->current_since) / (int64_t)MOAT_TLS_TICKET_ROTATE_S;
	while (periods > 0 && made < MOAT_TLS_TICKET_KEYS) {
		if (ring_push(t) != MOAT_OK)
			break;
		made++;
		periods--;
		t->current_since += (int64_t)MOAT_TLS_TICKET_ROTATE_S;
	}
	/* Down longer than the ring covers: every key is new; the schedule
	 * starts again from now. */
	if (made == MOAT_TLS_TICKET_KEYS || t->current_since > now)
		t->current_since = now;
	pthread_rwlock_unlock(&t->lock);
	return made;
}

int64_t moat_tls_tickets_next_rotation(struct moat_tls_tickets *t)
{
	int64_t next;

	pthread_rwlock_rdlock(&t->lock);
	next = t->current_since + (int64_t)MOAT_TLS_TICKET_ROTATE_S;
	pthread_rwlock_unlock(&t->lock);
	return next;
}

size_t moat_tls_tickets_count(struct moat_tls_tickets *t)
{
	size_t n;

	pthread_rwlock_rdlock(&t->lock);
	n = t->n;
	pthread_rwlock_unlock(&t->lock);
	return n;
}

moat_err moat_tls_tickets_export(struct moat_tls_tickets *t, uint8_t *out, size_t cap, size_t *len)
{
	uint64_t since;
	size_t i, o;

	if (out == NULL || len == NULL || cap < MOAT_TLS_TICKETS_BLOB_MAX)
		return MOAT_E_INVAL;
	pthread_rwlock_rdlock(&t->lock);
	memcpy(out, TICKETS_TAG, TICKETS_TAG_LEN);
	since = (uint64_t)t->current_since;
	for (i = 0; i < 8; i++)
		out[TICKETS_TAG_LEN + i] = (uint8_t)(since >> (56 - 8 * i));
	out[12] = (uint8_t)t->n;
	o = TICKETS_HDR_LEN;
	for (i = 0; i < t->n; i++) {
		memcpy(out + o, t->keys[i].name, TICKET_NAME_LEN);
		memcpy(out + o + TICKET_NAME_LEN, t->keys[i].aes, TICKET_AES_LEN);
		memcpy(out + o + TICKET_NAME_LEN + TICKET_AES_LEN, t->keys[i].hmac,
		       TICKET_HMAC_LEN);
		o += MOAT_TLS_TICKET_KEY_LEN;
	}
	pthread_rwlock_unlock(&t->lock);
	*len = o;
	return MOAT_OK;
}

moat_err moat_tls_tickets_import(struct moat_tls_tickets *t, const uint8_t *in, size_t len)
{
	struct ticket_key keys[MOAT_TLS_TICKET_KEYS];
	uint64_t since = 0;
	size_t n, i, j;
	moat_err rc = MOAT_E_MALFORMED;

	if (in == NULL || len < TICKETS_HDR_LEN || memcmp(in, TICKETS_TAG, TICKETS_TAG_LEN) != 0)
		goto out;
	for (i = 0; i < 8; i++)
		since = since << 8 | in[TICKETS_TAG_LEN + i];
	n = in[12];
	if (since == 0 || since > (uint64_t)TICKETS_TIME_MAX || n == 0 ||
	    n > MOAT_TLS_TICKET_KEYS || len != TICKETS_HDR_LEN + n * MOAT_TLS_TICKET_KEY_LEN)
		goto out;
	for (i = 0; i < n; i++) {
		const uint8_t *p = in + TICKETS_HDR_LEN + i * MOAT_TLS_TICKET_KEY_LEN;

		memcpy(keys[i].name, p, TICKET_NAME_LEN);
		memcpy(keys[i].aes, p + TICKET_NAME_LEN, TICKET_AES_LEN);
		memcpy(keys[i].hmac, p + TICKET_NAME_LEN + TICKET_AES_LEN, TICKET_HMAC_LEN);
		/* A ticket names its key: two keys with one name is ambiguous. */
		for (j = 0; j < i; j++)
			if (memcmp(keys[i].name, keys[j].name, TICKET_NAME_LEN) == 0)
				goto out;
	}
	pthread_rwlock_wrlock(&t->lock);
	OPENSSL_cleanse(t->keys, sizeof(t->keys));
	memcpy(t->keys, keys, n * sizeof(keys[0]));
	t->n = n;
	t->current_since = (int64_t)since;
	pthread_rwlock_unlock(&t->lock);
	rc = MOAT_OK;
out:
	OPENSSL_cleanse(keys, sizeof(keys));
	return rc;
}

static struct ticket_ctx *ticket_ctx_of(SSL *s)
{
	SSL_CTX *ctx = SSL_get_SSL_CTX(s);

	return ctx != NULL && ex_index >= 0 ? SSL_CTX_get_ex_data(ctx, ex_index) : NULL;
}

static int hmac_init(EVP_MAC_CTX *hctx, unsigned char *key)
{
	OSSL_PARAM params[3];

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, TICKET_HMAC_LEN);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	return EVP_MAC_CTX_set_params(hctx, params);
}

/*
 * OpenSSL's ticket key callback: enc=1 seals a new ticket with the current
 * key (returns 1); enc=0 finds the key the ticket names: 1 (current), 2
 * (older: OpenSSL renews the ticket), 0 (unknown: full handshake), -1 on
 * error. The key is copied out under the read lock and wiped after use.
 */
static int ticket_key_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
			 EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct ticket_ctx *tc = ticket_ctx_of(s);
	struct ticket_key k;
	int ret = -1;
	size_t i;

	if (tc == NULL)
		return -1;
	pthread_rwlock_rdlock(&tc->t->lock);
	if (enc) {
		k = tc->t->keys[0];
		ret = 1;
	} else {
		ret = 0;
		for (i = 0; i < tc->t->n; i++) {
			if (CRYPTO_memcmp(key_name, tc->t->keys[i].name, TICKET_NAME_LEN) == 0) {
				k = tc->t->keys[i];
				ret = i == 0 ? 1 : 2;
				break;
			}
		}
	}
	pthread_rwlock_unlock(&tc->t->lock);
	if (ret == 0)
		return 0;
	if (enc) {
		memcpy(key_name, k.name, TICKET_NAME_LEN);
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1 ||
		    EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
		    hmac_init(hctx, k.hmac) != 1)
			ret = -1;
	} else {
		if (hmac_init(hctx, k.hmac) != 1 ||
		    EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1)
			ret = -1;
	}
	OPENSSL_cleanse(&k, sizeof(k));
	return ret;
}

/* Is the certificate valid now (notBefore <= now < notAfter)? */
static bool cert_current(X509 *cert)
{
	return cert != NULL && X509_cmp_current_time(X509_get0_notBefore(cert)) < 0 &&
	       X509_cmp_current_time(X509_get0_notAfter(cert)) > 0;
}

/* Seconds from now until the certificate's notAfter (0 when past). */
static long cert_seconds_left(X509 *cert)
{
	int days = 0, secs = 0;
	long left;

	if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cert)) != 1)
		return 0;
	left = (long)days * 86400L + secs;
	return left > 0 ? left : 0;
}

/* A new ticket: bound to the listener and its CAs, and living no longer
 * than the client certificate. */
static int ticket_gen_cb(SSL *s, void *arg)
{
	struct ticket_ctx *tc = arg;
	SSL_SESSION *sess = SSL_get0_session(s);
	X509 *peer;

	if (sess == NULL || tc == NULL)
		return 0;
	if (!SSL_SESSION_set1_ticket_appdata(sess, tc->bind, sizeof(tc->bind)))
		return 0;
	peer = SSL_SESSION_get0_peer(sess);
	if (peer != NULL) {
		long left = cert_seconds_left(peer);

		if (left < SSL_SESSION_get_timeout(sess))
			SSL_SESSION_set_timeout(sess, left);
	}
	return 1;
}

/* A ticket that decrypted: resume only when it was made here (same
 * listener, same trusted CAs) and its client certificate is valid now;
 * otherwise a full handshake verifies the certificate again. */
static SSL_TICKET_RETURN ticket_dec_cb(SSL *s, SSL_SESSION *ss, const unsigned char *keyname,
				       size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
	struct ticket_ctx *tc = arg;
	void *data = NULL;
	size_t len = 0;
	X509 *peer;

	(void)s;
	(void)keyname;
	(void)keyname_len;
	switch (status) {
	case SSL_TICKET_SUCCESS:
	case SSL_TICKET_SUCCESS_RENEW:
		break;
	case SSL_TICKET_EMPTY:
	case SSL_TICKET_NO_DECRYPT:
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	default:
		return SSL_TICKET_RETURN_ABORT;
	}
	if (tc == NULL || ss == NULL || SSL_SESSION_get0_ticket_appdata(ss, &data, &len) != 1 ||
	    len != sizeof(tc->bind) || CRYPTO_memcmp(data, tc->bind, len) != 0)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	peer = SSL_SESSION_get0_peer(ss);
	if (peer != NULL && !cert_current(peer))
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	return status == SSL_TICKET_SUCCESS_RENEW ? SSL_TICKET_RETURN_USE_RENEW
						  : SSL_TICKET_RETURN_USE;
}

/* SHA-256 over label and the DER digests of the certificates ctx trusts
 * (the store keeps them sorted, so the same set gives the same value). */
static moat_err ctx_binding(SSL_CTX *ctx, const char *label, unsigned char out[32])
{
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	moat_err rc = MOAT_E_CRYPTO;
	int i;

	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, "moat-ticket-v1", 15) != 1 ||
	    EVP_DigestUpdate(md, label, strlen(label) + 1) != 1)
		goto out;
	for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
		X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));

		if (x == NULL)
			continue;
		if (X509_digest(x, EVP_sha256(), d, &dlen) != 1 ||
		    EVP_DigestUpdate(md, d, dlen) != 1)
			goto out;
	}
	if (EVP_DigestFinal_ex(md, out, &dlen) != 1 || dlen != 32)
		goto out;
	rc = MOAT_OK;
out:
	EVP_MD_CTX_free(md);
	return rc;
}

moat_err moat_tls_tickets_attach(SSL_CTX *ctx, struct moat_tls_tickets *t, const char *label,
				 char *err, size_t errlen)
{
	struct ticket_ctx *tc = NULL;
	moat_err rc = MOAT_E_TLS;

	pthread_once(&ex_once, ex_init);
	if (ctx == NULL || t == NULL || label == NULL || ex_index < 0) {
		snprintf(err, errlen, "tls: cannot attach ticket keys");
		goto out;
	}
	tc = OPENSSL_zalloc(sizeof(*tc));
	if (tc == NULL) {
		rc = MOAT_E_NOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	tc->t = t;
	if (ctx_binding(ctx, label, tc->bind) != MOAT_OK) {
		snprintf(err, errlen, "tls: cannot digest the trusted CA certificates");
		moat_tls_errors(err, errlen);
		goto out;
	}
	if (SSL_CTX_get_ex_data(ctx, ex_index) != NULL ||
	    SSL_CTX_set_ex_data(ctx, ex_index, tc) != 1) {
		snprintf(err, errlen, "tls: cannot attach ticket keys");
		moat_tls_errors(err, errlen);
		goto out;
	}
	tc = NULL; /* owned by ctx: freed with it */
	SSL_CTX_set_timeout(ctx, (long)MOAT_TLS_TICKET_LIFETIME_S);
	if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb) != 1 ||
	    SSL_CTX_set_session_ticket_cb(ctx, ticket_gen_cb, ticket_dec_cb,
					  SSL_CTX_get_ex_data(ctx, ex_index)) != 1) {
		snprintf(err, errlen, "tls: cannot install the ticket callbacks");
		moat_tls_errors(err, errlen);
		goto out;
	}
	rc = MOAT_OK;
out:
	if (tc != NULL)
		OPENSSL_clear_free(tc, sizeof(*tc));
	return rc;
}

moat_err moat_tls_resumption_off(SSL_CTX *ctx, char *err, size_t errlen)
{
	/* TLS 1.3: no tickets sent; NO_TICKET also turns TLS 1.2 tickets off
	 * and, with the session cache off, leaves no stateful resumption. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (SSL_CTX_set_num_tickets(ctx, 0) != 1) {
		snprintf(err, errlen, "tls: cannot turn session tickets off");
		moat_tls_errors(err, errlen);
		return MOAT_E_TLS;
	}
	return MOAT_OK;
}
