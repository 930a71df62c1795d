/*
 * EST (RFC 7030) enrollment on the management listener, and the CRL:
 *   GET  /.well-known/est/cacerts      the CA certificate (certs-only PKCS#7)
 *   POST /.well-known/est/simpleenroll a CSR made on the device, with an
 *                                      enrollment token as bearer
 *   GET  /.well-known/est/csrattrs     204: nothing required beyond ours
 *   GET  /crl                          the signed CRL
 * The CA key is in the key process (src/pki/ca_proc.c): this thread only
 * sends it a typed signing request. The CSR is checked here and again
 * there (proof of possession, key type, subject bound to the device id).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "api/internal.h"
#include "core/log.h"
#include "core/reactor.h"
#include "pki/ca.h"
#include "pki/csr.h"
#include "registry/registry.h"
#include "registry/schema.h"

/* certs-only PKCS#7 (a degenerate SignedData) holding one certificate,
 * base64 with line breaks as EST answers carry it. */
static char *pkcs7_b64(const uint8_t *der, size_t len, size_t *outlen)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	PKCS7 *p7 = NULL;
	unsigned char *out = NULL, *q;
	char *b64 = NULL;
	int n;

	if (x == NULL || (p7 = PKCS7_new()) == NULL || !PKCS7_set_type(p7, NID_pkcs7_signed) ||
	    !PKCS7_content_new(p7, NID_pkcs7_data) || !PKCS7_add_certificate(p7, x))
		goto out;
	n = i2d_PKCS7(p7, NULL);
	if (n <= 0 || (out = malloc((size_t)n)) == NULL)
		goto out;
	q = out;
	if (i2d_PKCS7(p7, &q) != n)
		goto out;
	{
		size_t raw = (size_t)(4 * ((n + 2) / 3)), lines = raw / 64 + 2;
		char *flat = malloc(raw + 1);
		size_t i, o = 0;
		if (flat == NULL)
			goto out;
		EVP_EncodeBlock((unsigned char *)flat, out, n);
		b64 = malloc(raw + 2 * lines + 1);
		if (b64 != NULL) {
			for (i = 0; i < raw; i++) {
				b64[o++] = flat[i];
				if (i % 64 == 63 || i + 1 == raw)
					b64[o++] = '\n'; /* LF: what base64 -d and openssl read */
			}
			b64[o] = '\0';
			*outlen = o;
		}
		free(flat);
	}
out:
	free(out);
	PKCS7_free(p7);
	X509_free(x);
	return b64;
}

static void est_answer(struct api_call *c, const uint8_t *der, size_t len)
{
	size_t n = 0;
	char *b64 = pkcs7_b64(der, len, &n);

	if (b64 == NULL) {
		api_internal(c, MOAT_E_CRYPTO);
		return;
	}
	c->answered = true;
	moat_http_resp_header(c->resp, "Content-Transfer-Encoding", "base64");
	moat_http_resp_take(c->resp, 200, "application/pkcs7-mime; smime-type=certs-only", b64, n);
}

void api_est_cacerts(struct api_call *c)
{
	uint8_t *der = NULL;
	size_t len = 0;
	char err[256];

	if (c->api->o.ca == NULL ||
	    moat_ca_cacerts(c->api->o.ca, &der, &len, err, sizeof(err)) != MOAT_OK) {
		api_problem(c, 503, "internal", "the CA is not available", NULL);
		return;
	}
	est_answer(c, der, len);
	free(der);
}

void api_est_csrattrs(struct api_call *c)
{
	/* RFC 7030 4.5.2: 204 when the server requires no particular
	 * attributes; the key and subject rules are enforced on the CSR. */
	api_no_content(c);
}

struct etoken {
	bool found;
	char id[40], identity[MOAT_DEVICE_ID_MAX + 1], group[80];
	int64_t uses_left, expires;
};

static moat_err etoken_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_etoken_row row;
	struct etoken *t = arg;
	size_t i;
	char *dst[3] = {t->id, t->identity, t->group};
	size_t len[3] = {sizeof(t->id), sizeof(t->identity), sizeof(t->group)};
	const struct moat_val *src[3] = {&row.id, &row.identity, &row.group};

	if (moat_reg_etoken_row_decode(cols, ncols, &row) != MOAT_OK || ncols != 5)
		return MOAT_E_CORRUPT;
	for (i = 0; i < 3; i++) {
		size_t n = src[i]->type == MOAT_VAL_TEXT ? src[i]->len : 0;
		if (n >= len[i])
			n = len[i] - 1;
		if (n)
			memcpy(dst[i], src[i]->p, n);
		dst[i][n] = '\0';
	}
	t->uses_left = row.uses_left.i;
	t->expires = row.expires_at.i;
	t->found = true;
	return MOAT_OK;
}

struct ident_row {
	bool found;
	enum moat_id_state state;
	char kind[16];
};

static moat_err ident_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_identity_row row;
	struct ident_row *r = arg;
	char state[32];
	size_t n;

	if (moat_reg_identity_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	n = row.kind.len < sizeof(r->kind) - 1 ? row.kind.len : sizeof(r->kind) - 1;
	memcpy(r->kind, row.kind.p, n);
	r->kind[n] = '\0';
	n = row.state.len < sizeof(state) - 1 ? row.state.len : sizeof(state) - 1;
	memcpy(state, row.state.p, n);
	state[n] = '\0';
	if (!moat_id_state_parse(state, &r->state))
		return MOAT_E_CORRUPT;
	r->found = true;
	return MOAT_OK;
}

/*
 * A refused enrollment is the caller's act, never the act of the device it
 * names (that device may be the victim). A caller who proved something (an
 * enrollment token, a factory or device certificate) is the actor of an
 * entry of its own; an anonymous one is summed per window like other
 * unauthenticated refusals, as "anonymous", whatever id it named.
 */
static void enroll_refused(struct api_call *c, int status, const char *type, const char *why,
			   const char *subject)
{
	log_info("est_refused", "peer=%s actor=%s subject=%s reason=\"%s\"", c->req->peer,
		 c->who.actor[0] ? c->who.actor : "anonymous",
		 subject && subject[0] ? subject : "-", why);
	if (c->who.actor[0] != '\0')
		(void)api_audit(c, NULL, "est.enroll_refused", subject ? subject : "", "denied",
				json_pack("{s:s}", "reason", why));
	else
		moat_api_security_event(c->api, "est.enroll_refused", "", c->req->peer, why);
	api_problem(c, status, type, why, NULL);
}

struct mca_find {
	const char *fp;
	char *name;
	size_t namelen;
	bool found;
};

static moat_err mca_find_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_mca_row row;
	struct mca_find *m = arg;
	size_t n;

	if (moat_reg_mca_row_decode(cols, ncols, &row) != MOAT_OK || ncols != 3)
		return MOAT_E_CORRUPT;
	if (row.fingerprint.len != strlen(m->fp) ||
	    memcmp(row.fingerprint.p, m->fp, row.fingerprint.len) != 0)
		return MOAT_OK;
	n = row.name.len < m->namelen - 1 ? row.name.len : m->namelen - 1;
	memcpy(m->name, row.name.p, n);
	m->name[n] = '\0';
	m->found = true;
	return MOAT_OK;
}

/* Did a registered manufacturer CA (not the Moat CA) anchor the client
 * certificate of this connection? Its name in name. */
static bool factory_ca(struct api_call *c, char *name, size_t namelen)
{
	struct mca_find m = {c->req->peer_anchor, name, namelen, false};

	name[0] = '\0';
	if (m.fp == NULL || m.fp[0] == '\0' || api_is_moat_ca(c->api, m.fp))
		return false;
	if (moat_store_read(c->api->o.store, REG_STMT(MCA_ALL), NULL, 0, mca_find_cb, &m) !=
	    MOAT_OK)
		return false;
	if (!m.found)
		name[0] = '\0';
	return m.found;
}

struct mca_scope {
	bool found;
	char devices[MOAT_MCA_PATTERNS_MAX * (MOAT_DEVICE_ID_MAX + 2) + 1];
	char group[80];
};

static moat_err mca_scope_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_mca_row row;
	struct mca_scope *s = arg;

	if (moat_reg_mca_row_decode(cols, ncols, &row) != MOAT_OK || ncols != 2)
		return MOAT_E_CORRUPT;
	if (row.devices.type == MOAT_VAL_TEXT && row.devices.len < sizeof(s->devices)) {
		memcpy(s->devices, row.devices.p, row.devices.len);
		s->devices[row.devices.len] = '\0';
	}
	if (row.group.type == MOAT_VAL_TEXT && row.group.len < sizeof(s->group)) {
		memcpy(s->group, row.group.p, row.group.len);
		s->group[row.group.len] = '\0';
	}
	s->found = true;
	return MOAT_OK;
}

/* Does one of the newline-separated patterns (an id, or a prefix ending
 * in '*') name id? */
static bool patterns_match(const char *patterns, const char *id)
{
	const char *p = patterns;
	size_t idlen = strlen(id);

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		if (n > 0 && p[n - 1] == '*' ? (idlen >= n - 1 && memcmp(p, id, n - 1) == 0)
					     : (n == idlen && memcmp(p, id, n) == 0))
			return true;
		p += n;
		if (*p == '\n')
			p++;
	}
	return false;
}

/*
 * A factory enrollment exchanges a birth identity for an operational one:
 * (1) the request must carry a new key, never the factory certificate's
 * (that key was made or seen by the factory, and a certificate for it
 * would outlive the trust the factory deserves); (2) the manufacturer CA
 * vouches only for the devices it made: the ids or prefixes, or the group,
 * it was registered with. False with the refusal answered.
 */
static bool factory_allowed(struct api_call *c, const char *mca, const char *id, X509_REQ *req)
{
	const unsigned char *kp = c->req->peer_key;
	struct mca_scope scope;
	struct moat_val v[2];
	EVP_PKEY *fk = NULL;
	char why[256];
	int64_t n = 0;
	bool same;
	moat_err rc;

	fk = c->req->peer_key_len > 0 ? d2i_PUBKEY(NULL, &kp, (long)c->req->peer_key_len) : NULL;
	same = fk == NULL || EVP_PKEY_eq(fk, X509_REQ_get0_pubkey(req)) == 1;
	EVP_PKEY_free(fk);
	if (same) {
		enroll_refused(c, 403, "forbidden",
			       "a factory enrollment needs a new key made on the device: this "
			       "request carries the factory certificate's own key",
			       id);
		return false;
	}
	memset(&scope, 0, sizeof(scope));
	v[0] = moat_val_text(mca, strlen(mca));
	rc = moat_store_read(c->api->o.store, REG_STMT(MCA_SCOPE), v, 1, mca_scope_cb, &scope);
	if (rc == MOAT_OK && scope.group[0] != '\0') {
		v[0] = moat_val_text(id, strlen(id));
		v[1] = moat_val_text(scope.group, strlen(scope.group));
		rc = moat_store_read_int(c->api->o.store, REG_STMT(MEMBER_IS), v, 2, &n);
	}
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return false;
	}
	if (scope.devices[0] == '\0' && scope.group[0] == '\0') {
		snprintf(why, sizeof(why),
			 "manufacturer CA %s has no scope; register it again with the devices or "
			 "the group it made",
			 mca);
		enroll_refused(c, 403, "forbidden", why, id);
		return false;
	}
	if (scope.group[0] != '\0' ? n == 0 : !patterns_match(scope.devices, id)) {
		snprintf(why, sizeof(why), "manufacturer CA %s may not enroll device %s (%s %s)",
			 mca, id, scope.group[0] ? "only members of group" : "only devices",
			 scope.group[0] ? scope.group : "matching its registered ids");
		enroll_refused(c, 403, "forbidden", why, id);
		return false;
	}
	return true;
}

void api_est_enroll(struct api_call *c)
{
	const char *auth = moat_http_header(c->req, "authorization");
	uint8_t h[MOAT_SECRET_HASH_LEN], *der = NULL, *cert = NULL;
	size_t der_len = 0, cert_len = 0;
	char why[256] = "", id[MOAT_DEVICE_ID_MAX + 1], serial[33] = "", fp[65], err[256],
	     mca[80] = "";
	struct etoken t;
	struct ident_row row;
	struct moat_val v[8];
	struct moat_reg_enrollment en;
	struct moat_reg_ctx x;
	X509_REQ *req = NULL;
	int64_t not_after = 0;
	unsigned char md[32];
	unsigned int mdlen = 0;
	moat_err rc;
	size_t i;

	memset(&t, 0, sizeof(t));
	memset(&row, 0, sizeof(row));
	if (c->api->o.ca == NULL) {
		api_problem(c, 503, "internal", "the CA is not available", NULL);
		return;
	}
	if (auth == NULL && factory_ca(c, mca, sizeof(mca))) {
		/* The device's birth identity (a factory certificate from a
		 * registered manufacturer CA) stands in for a token: it is bound
		 * to the id in that certificate. */
		snprintf(c->who.actor, sizeof(c->who.actor), "factory:%s", mca);
		if (c->req->peer_identity == NULL || c->req->peer_identity[0] == '\0') {
			enroll_refused(c, 403, "forbidden",
				       "the factory certificate names no valid device id", NULL);
			return;
		}
		snprintf(t.identity, sizeof(t.identity), "%s", c->req->peer_identity);
		t.found = true;
	} else {
		if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0 ||
		    strlen(auth + 7) > 200) {
			enroll_refused(c, 401, "unauthorized",
				       "send the enrollment token as Authorization: Bearer "
				       "moat_et_..., or present a factory certificate from a "
				       "registered manufacturer CA",
				       NULL);
			return;
		}
		moat_secret_hash(auth + 7, strlen(auth + 7), h);
		v[0] = moat_val_blob(h, sizeof(h));
		rc = moat_store_read(c->api->o.store, REG_STMT(ETOKEN_GET_HASH), v, 1, etoken_cb,
				     &t);
		if (rc != MOAT_OK) {
			api_internal(c, rc);
			return;
		}
		if (!t.found || t.uses_left <= 0 || t.expires <= c->now) {
			enroll_refused(c, 401, "unauthorized",
				       "the enrollment token is unknown, used up or expired", NULL);
			return;
		}
		snprintf(c->who.actor, sizeof(c->who.actor), "enroll-token:%s", t.id);
	}
	if (moat_csr_from_est_body(c->req->body, c->req->body_len, &der, &der_len, why,
				   sizeof(why)) != MOAT_OK ||
	    moat_csr_parse(der, der_len, &req, why, sizeof(why)) != MOAT_OK) {
		enroll_refused(c, 400, "bad-request", why[0] ? why : "not a certificate request",
			       NULL);
		goto out;
	}
	if (t.identity[0] != '\0') {
		snprintf(id, sizeof(id), "%s", t.identity);
	} else if (moat_csr_subject_id(req, id, sizeof(id)) != MOAT_OK) {
		enroll_refused(c, 403, "forbidden", "the request names no valid device id", NULL);
		goto out;
	}
	if (moat_csr_check(req, id, why, sizeof(why)) != MOAT_OK) {
		enroll_refused(c, 403, "forbidden", why, id);
		goto out;
	}
	if (mca[0] != '\0' && !factory_allowed(c, mca, id, req))
		goto out;
	v[0] = moat_val_text(id, strlen(id));
	rc = moat_store_read(c->api->o.store, REG_STMT(ID_GET), v, 1, ident_cb, &row);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		goto out;
	}
	if (row.found && (strcmp(row.kind, "device") != 0 ||
			  (row.state != MOAT_ID_REGISTERED && row.state != MOAT_ID_ACTIVE))) {
		snprintf(why, sizeof(why), "%s %s may not enroll (state %s)", row.kind, id,
			 moat_id_state_name(row.state));
		enroll_refused(c, 403, "forbidden", why, id);
		goto out;
	}
	if (!row.found && t.group[0] == '\0') {
		enroll_refused(c, 403, "forbidden", "the device is not registered", id);
		goto out;
	}
	/* A batch token registers new devices; it must never mint a
	 * certificate for an identity that already exists (that would let
	 * one token impersonate the whole fleet). */
	if (row.found && t.identity[0] == '\0') {
		enroll_refused(c, 403, "forbidden",
			       "a batch token enrolls new devices only; this id is registered (use "
			       "a per-device token)",
			       id);
		goto out;
	}
	if (!row.found) {
		int64_t n = 0;
		v[0] = moat_val_text(t.group, strlen(t.group));
		rc = moat_store_read_int(c->api->o.store, REG_STMT(GROUP_EXISTS), v, 1, &n);
		if (rc != MOAT_OK) {
			api_internal(c, rc);
			goto out;
		}
		if (n == 0) {
			enroll_refused(c, 409, "conflict", "the token's group no longer exists",
				       id);
			goto out;
		}
	}
	rc =
	    moat_ca_sign(c->api->o.ca, id, der, der_len,
			 c->api->o.cert_days ? c->api->o.cert_days : MOAT_CERT_DAYS_DEFAULT,
			 c->api->o.crl_url, &cert, &cert_len, serial, &not_after, err, sizeof(err));
	if (rc != MOAT_OK) {
		enroll_refused(c, 403, "forbidden", err, id);
		goto out;
	}
	EVP_Digest(cert, cert_len, md, &mdlen, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++)
		snprintf(fp + 2 * i, 3, "%02x", md[i]);
	/* a batch token registers the device on the fly */
	memset(&en, 0, sizeof(en));
	en.id = id;
	en.register_now = !row.found;
	en.group = t.group;
	en.activate = row.found && row.state == MOAT_ID_REGISTERED;
	en.serial = serial;
	en.fingerprint = fp;
	en.not_before = c->now - (int64_t)MOAT_CERT_SKEW_S * 1000;
	en.not_after = not_after * 1000;
	en.etoken_id = mca[0] == '\0' ? t.id : NULL;
	api_reg_ctx(c, &x);
	rc = moat_reg_est_enroll(&x, &en,
				 json_pack("{s:s, s:s, s:s, s:s, s:b}", "serial", serial,
					   "fingerprint", fp, mca[0] ? "factory_ca" : "token",
					   mca[0] ? mca : t.id, "factory_serial",
					   mca[0] && c->req->peer_serial ? c->req->peer_serial : "",
					   "registered_now", !row.found));
	if (rc != MOAT_OK)
		goto fail;
	log_notice("enrolled", "device=%s serial=%s peer=%s", id, serial, c->req->peer);
	api_registry_changed(c->api);
	est_answer(c, cert, cert_len);
	goto out;
fail:
	api_internal(c, rc);
out:
	X509_REQ_free(req);
	free(der);
	free(cert);
}

/* The unexpired revoked certificates, grown as the rows come (never
 * preallocated for the largest list), refused past MOAT_CRL_MAX_ENTRIES. */
struct revoked_list {
	struct moat_revoked *v;
	size_t n, cap;
	bool full;
};

static moat_err revoked_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_revoked_row row;
	struct revoked_list *l = arg;
	size_t n;

	if (moat_reg_revoked_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if (l->n >= MOAT_CRL_MAX_ENTRIES) {
		l->full = true;
		return MOAT_E_LIMIT;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct moat_revoked *v;

		if (cap > MOAT_CRL_MAX_ENTRIES)
			cap = MOAT_CRL_MAX_ENTRIES;
		v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return MOAT_E_NOMEM;
		l->v = v;
		l->cap = cap;
	}
	n = row.serial.len < MOAT_CA_SERIAL_HEX_MAX ? row.serial.len : MOAT_CA_SERIAL_HEX_MAX;
	memcpy(l->v[l->n].serial, row.serial.p, n);
	l->v[l->n].serial[n] = '\0';
	/* A revocation time before 1970 (a clock or data error) must not keep
	 * the serial off the CRL, nor fail the whole list: the earliest time. */
	l->v[l->n].revoked_at = row.revoked_at.type == MOAT_VAL_INT && row.revoked_at.i >= 1000
				    ? row.revoked_at.i / 1000
				    : 1;
	l->n++;
	return MOAT_OK;
}

/* Sign a fresh CRL into the cache. */
static moat_err crl_refresh(struct moat_api *api, int64_t now_ms)
{
	struct revoked_list l = {NULL, 0, 0, false};
	struct moat_val v = moat_val_int(now_ms);
	uint64_t gen = api->reg_gen;
	uint8_t *crl = NULL;
	size_t len = 0;
	char err[256];
	moat_err rc;

	rc = moat_store_read(api->o.store, REG_STMT(CRL_ENTRIES), &v, 1, revoked_cb, &l);
	if (l.full) {
		/* Never a truncated list: a CRL that silently omits revoked
		 * certificates is worse than none. */
		log_error("crl_too_large", "max=%u", MOAT_CRL_MAX_ENTRIES);
		rc = MOAT_E_LIMIT;
	}
	/* The CRL number only grows: milliseconds since the epoch do, and a
	 * re-signed CRL never shares its number with the last one. */
	if (rc == MOAT_OK)
		rc = moat_ca_crl(api->o.ca, (uint64_t)now_ms, MOAT_CRL_NEXT_UPDATE_S, l.v, l.n,
				 &crl, &len, err, sizeof(err));
	free(l.v);
	if (rc != MOAT_OK) {
		if (!l.full)
			log_error("crl_failed", "error=\"%s\" detail=\"%s\"", moat_strerror(rc),
				  err);
		return rc;
	}
	free(api->crl_der);
	api->crl_der = crl;
	api->crl_len = len;
	api->crl_gen = gen;
	api->crl_made_ms = now_ms;
	log_info("crl_signed", "entries=%zu bytes=%zu", l.n, len);
	return MOAT_OK;
}

void api_crl(struct api_call *c)
{
	struct moat_api *api = c->api;
	char *copy;
	moat_err rc;

	if (api->o.ca == NULL) {
		api_problem(c, 503, "internal", "the CA is not available", NULL);
		return;
	}
	if (api->crl_der == NULL || api->crl_gen != api->reg_gen ||
	    c->now - api->crl_made_ms >= (int64_t)MOAT_CRL_CACHE_MAX_S * 1000 ||
	    c->now < api->crl_made_ms) {
		rc = crl_refresh(api, c->now);
		if (rc == MOAT_E_LIMIT) {
			api_problem(c, 503, "internal",
				    "too many revoked certificates for one CRL; see the server log",
				    NULL);
			return;
		}
		if (rc != MOAT_OK) {
			api_internal(c, rc);
			return;
		}
	}
	copy = malloc(api->crl_len);
	if (copy == NULL) {
		api_internal(c, MOAT_E_NOMEM);
		return;
	}
	memcpy(copy, api->crl_der, api->crl_len);
	c->answered = true;
	moat_http_resp_take(c->resp, 200, "application/pkix-crl", copy, api->crl_len);
}

struct cert_row {
	bool found, revoked;
	char identity[MOAT_DEVICE_ID_MAX + 1];
};

static moat_err cert_row_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_cert_row row;
	struct cert_row *r = arg;
	size_t n;

	if (moat_reg_cert_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	n = row.identity.len < sizeof(r->identity) - 1 ? row.identity.len : sizeof(r->identity) - 1;
	memcpy(r->identity, row.identity.p, n);
	r->identity[n] = '\0';
	r->revoked = row.revoked_at.type != MOAT_VAL_NULL;
	r->found = true;
	return MOAT_OK;
}

/*
 * RFC 7030 4.2.2: the device proves itself with its current certificate
 * (TLS client authentication) and sends a new CSR (a new key, made on the
 * device) for the same identity. The new certificate is recorded; the old
 * one is revoked after MOAT_REENROLL_GRACE_S so the device can reconnect
 * with the new one without a gap.
 */
void api_est_reenroll(struct api_call *c)
{
	const char *id = c->req->peer_identity ? c->req->peer_identity : "";
	const char *old = c->req->peer_serial ? c->req->peer_serial : "";
	uint8_t *der = NULL, *cert = NULL;
	size_t der_len = 0, cert_len = 0, i;
	char why[256] = "", serial[33] = "", fp[65], err[256];
	struct ident_row row;
	struct cert_row cur;
	struct moat_val v[6];
	struct moat_reg_ctx x;
	X509_REQ *req = NULL;
	int64_t not_after = 0;
	unsigned char md[32];
	unsigned int mdlen = 0;
	moat_err rc;

	memset(&row, 0, sizeof(row));
	memset(&cur, 0, sizeof(cur));
	if (c->api->o.ca == NULL) {
		api_problem(c, 503, "internal", "the CA is not available", NULL);
		return;
	}
	if (id[0] == '\0' || old[0] == '\0' || !api_is_moat_ca(c->api, c->req->peer_anchor)) {
		enroll_refused(c, 401, "unauthorized",
			       "re-enrollment needs the current certificate from this CA (TLS "
			       "client authentication)",
			       NULL);
		return;
	}
	snprintf(c->who.actor, sizeof(c->who.actor), "device:%s", id);
	v[0] = moat_val_text(old, strlen(old));
	rc = moat_store_read(c->api->o.store, REG_STMT(CERT_GET), v, 1, cert_row_cb, &cur);
	if (rc == MOAT_OK) {
		v[0] = moat_val_text(id, strlen(id));
		rc = moat_store_read(c->api->o.store, REG_STMT(ID_GET), v, 1, ident_cb, &row);
	}
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	if (!cur.found || cur.revoked || strcmp(cur.identity, id) != 0) {
		enroll_refused(c, 403, "forbidden",
			       "the presented certificate is not a current enrolled certificate of "
			       "this device",
			       id);
		return;
	}
	if (!row.found || row.state != MOAT_ID_ACTIVE || strcmp(row.kind, "device") != 0) {
		enroll_refused(c, 403, "forbidden", "only an active device may re-enroll", id);
		return;
	}
	if (moat_csr_from_est_body(c->req->body, c->req->body_len, &der, &der_len, why,
				   sizeof(why)) != MOAT_OK ||
	    moat_csr_parse(der, der_len, &req, why, sizeof(why)) != MOAT_OK) {
		enroll_refused(c, 400, "bad-request", why[0] ? why : "not a certificate request",
			       id);
		goto out;
	}
	if (moat_csr_check(req, id, why, sizeof(why)) != MOAT_OK) {
		enroll_refused(c, 403, "forbidden", why, id);
		goto out;
	}
	rc =
	    moat_ca_sign(c->api->o.ca, id, der, der_len,
			 c->api->o.cert_days ? c->api->o.cert_days : MOAT_CERT_DAYS_DEFAULT,
			 c->api->o.crl_url, &cert, &cert_len, serial, &not_after, err, sizeof(err));
	if (rc != MOAT_OK) {
		enroll_refused(c, 403, "forbidden", err, id);
		goto out;
	}
	EVP_Digest(cert, cert_len, md, &mdlen, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++)
		snprintf(fp + 2 * i, 3, "%02x", md[i]);
	api_reg_ctx(c, &x);
	rc = moat_reg_est_reenroll(&x, id, serial, fp, c->now - (int64_t)MOAT_CERT_SKEW_S * 1000,
				   not_after * 1000, old, (int64_t)MOAT_REENROLL_GRACE_S);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		goto out;
	}
	log_notice("reenrolled", "device=%s serial=%s replaces=%s", id, serial, old);
	est_answer(c, cert, cert_len);
out:
	X509_REQ_free(req);
	free(der);
	free(cert);
}

/* Called from the API's tick: revoke certificates whose grace period after
 * re-enrollment has ended, and let the broker enforce it. */
void api_est_revoke_due(struct moat_api *api)
{
	struct moat_reg_ctx x;
	int64_t n = 0;

	memset(&x, 0, sizeof(x));
	x.store = api->o.store;
	x.audit = &api->audit;
	x.actor = "system";
	x.peer = "";
	x.now = moat_wall_ms();
	if (moat_reg_revoke_due(&x, &n) == MOAT_OK && n > 0)
		api_registry_changed(api);
}
