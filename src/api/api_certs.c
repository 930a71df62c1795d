/*
 * Enrollment tokens, issued certificates and their revocation, and
 * decommissioning: the identity half of the registry API. Revocation and
 * decommissioning are enforced by the broker at once (a new registry
 * snapshot: sessions using a revoked certificate or a decommissioned
 * identity are disconnected on every worker).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "api/internal.h"
#include "registry/registry.h"
#include "tls/tls.h"
#include "registry/schema.h"

/* --- enrollment tokens --- */

static json_t *etoken_json(const struct moat_reg_etoken_row *r)
{
	char id[40] = "", ident[80] = "", group[80] = "", creator[96] = "";
	char *dst[2] = {id, ident};
	size_t i;

	const struct moat_val *src[2] = {&r->id, &r->identity};

	for (i = 0; i < 2; i++) {
		size_t n = src[i]->type == MOAT_VAL_TEXT ? src[i]->len : 0;
		if (n >= 40 + 40 * i)
			n = 39 + 40 * i;
		if (n)
			memcpy(dst[i], src[i]->p, n);
		dst[i][n] = '\0';
	}
	if (r->group.type == MOAT_VAL_TEXT && r->group.len < sizeof(group)) {
		memcpy(group, r->group.p, r->group.len);
		group[r->group.len] = '\0';
	}
	if (r->creator.type == MOAT_VAL_TEXT && r->creator.len < sizeof(creator)) {
		memcpy(creator, r->creator.p, r->creator.len);
		creator[r->creator.len] = '\0';
	}
	return json_pack("{s:s, s:o, s:o, s:I, s:o, s:s, s:o}", "id", id, "identity",
			 ident[0] ? json_string(ident) : json_null(), "group",
			 group[0] ? json_string(group) : json_null(), "uses_left",
			 (json_int_t)r->uses_left.i, "expires_at", api_time(r->expires_at.i),
			 "creator", creator, "created_at", api_time(r->created_at.i));
}

static moat_err etoken_list_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	json_t *items = arg;
	struct moat_reg_etoken_row r;
	moat_err rc = moat_reg_etoken_row_decode(cols, ncols, &r);

	if (rc != MOAT_OK || r.creator.type == MOAT_VAL_NULL)
		return MOAT_E_CORRUPT;
	json_array_append_new(items, etoken_json(&r));
	return MOAT_OK;
}

void api_etokens_list(struct api_call *c)
{
	char cursor[64];
	size_t limit;
	struct moat_val v[2];

	if (!api_page(c, &limit, cursor, sizeof(cursor), NULL, 0))
		return;
	v[0] = moat_val_text(cursor, strlen(cursor));
	v[1] = moat_val_int((int64_t)limit + 1);
	api_reg_list(c, REG_STMT(ETOKEN_LIST), v, 2, etoken_list_cb, NULL, limit, "id");
}

void api_etokens_create(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"identity", F_STRING, false, 1, MOAT_DEVICE_ID_MAX},
	    {"group", F_STRING, false, 1, 64},
	    {"uses", F_INT, false, 1, 100000},
	    {"expires_in_hours", F_INT, false, 1, 720},
	};
	char secret[8 + MOAT_SECRET_TOKEN_B64_LEN + 1], id[24];
	uint8_t h[MOAT_SECRET_HASH_LEN];
	const char *ident, *group;
	long long uses, hours;
	struct moat_reg_ctx x;
	json_t *dev = NULL, *o;
	moat_err rc;

	if (!api_validate(c, f, 4))
		return;
	ident = api_str(c, "identity");
	group = api_str(c, "group");
	if ((ident == NULL) == (group == NULL)) {
		api_problem(c, 422, "validation",
			    "give exactly one of identity (one device) or group (a batch: devices "
			    "named by their CSRs join the group)",
			    ident ? "group" : "identity");
		return;
	}
	if (ident != NULL) {
		rc = api_reg_identity_load(c, ident, &dev);
		if (rc == MOAT_E_NOTFOUND) {
			api_problem(c, 422, "validation", "no such device; register it first",
				    "identity");
			return;
		}
		if (rc != MOAT_OK) {
			api_internal(c, rc);
			return;
		}
		{
			const char *st = json_string_value(json_object_get(dev, "state"));
			const char *kind = json_string_value(json_object_get(dev, "kind"));
			bool ok = st && kind && strcmp(kind, "device") == 0 &&
				  (strcmp(st, "registered") == 0 || strcmp(st, "active") == 0);
			json_decref(dev);
			if (!ok) {
				api_problem(c, 409, "conflict",
					    "only a registered or active device may enroll",
					    "identity");
				return;
			}
		}
	} else if (!api_reg_group_exists(c, group, "group")) {
		return;
	}
	uses = api_int(c, "uses", 1);
	hours = api_int(c, "expires_in_hours", 24);
	if (moat_secret_token("moat_et_", secret, sizeof(secret)) != MOAT_OK) {
		api_internal(c, MOAT_E_CRYPTO);
		return;
	}
	moat_secret_hash(secret, strlen(secret), h);
	(void)moat_secret_hex(h, 8, id, sizeof(id));
	api_reg_ctx(c, &x);
	rc = moat_reg_etoken_create(&x, id, h, sizeof(h), ident, group, uses, hours);
	if (rc != MOAT_OK) {
		sodium_memzero(secret, sizeof(secret));
		api_internal(c, rc);
		return;
	}
	o = json_pack("{s:s, s:s, s:o, s:o, s:I, s:o}", "id", id, "token", secret, "identity",
		      ident ? json_string(ident) : json_null(), "group",
		      group ? json_string(group) : json_null(), "uses_left", (json_int_t)uses,
		      "expires_at", api_time(c->now + hours * 3600000));
	sodium_memzero(secret, sizeof(secret));
	api_json(c, 201, o);
}

/* --- certificates --- */

static json_t *cert_json(const struct moat_reg_cert_row *r)
{
	char serial[72] = "", ident[80] = "", fp[72] = "", reason[128] = "";
	char *dst[3] = {serial, ident, fp};
	size_t len[3] = {sizeof(serial), sizeof(ident), sizeof(fp)}, i;

	const struct moat_val *src[3] = {&r->serial, &r->identity, &r->fingerprint};

	for (i = 0; i < 3; i++) {
		size_t n = src[i]->type == MOAT_VAL_TEXT ? src[i]->len : 0;
		if (n >= len[i])
			n = len[i] - 1;
		if (n)
			memcpy(dst[i], src[i]->p, n);
		dst[i][n] = '\0';
	}
	if (r->reason.type == MOAT_VAL_TEXT && r->reason.len < sizeof(reason)) {
		memcpy(reason, r->reason.p, r->reason.len);
		reason[r->reason.len] = '\0';
	}
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:b, s:o, s:o}", "serial", serial,
			 "identity", ident, "fingerprint", fp, "not_before",
			 api_time(r->not_before.i), "not_after", api_time(r->not_after.i),
			 "issued_at", api_time(r->issued_at.i), "revoked",
			 r->revoked_at.type != MOAT_VAL_NULL, "revoked_at",
			 api_time(r->revoked_at.type == MOAT_VAL_INT ? r->revoked_at.i : 0),
			 "reason", reason[0] ? json_string(reason) : json_null());
}

static moat_err cert_list_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	json_t *items = arg;

	struct moat_reg_cert_row r;
	moat_err rc = moat_reg_cert_row_decode(cols, ncols, &r);

	if (rc != MOAT_OK)
		return rc;
	json_array_append_new(items, cert_json(&r));
	return MOAT_OK;
}

void api_certs_list(struct api_call *c)
{
	static const char *const extra[] = {"identity"};
	char cursor[80], ident[80];
	size_t limit;
	struct moat_val v[3];

	if (!api_page(c, &limit, cursor, sizeof(cursor), extra, 1) ||
	    !api_reg_query_opt(c, "identity", ident, sizeof(ident)))
		return;
	v[0] = ident[0] ? moat_val_text(ident, strlen(ident)) : moat_val_null();
	v[1] = moat_val_text(cursor, strlen(cursor));
	v[2] = moat_val_int((int64_t)limit + 1);
	api_reg_list(c, REG_STMT(CERT_LIST), v, 3, cert_list_cb, NULL, limit, "serial");
}

static moat_err cert_one_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	json_t **out = arg;

	struct moat_reg_cert_row r;
	moat_err rc = moat_reg_cert_row_decode(cols, ncols, &r);

	if (rc != MOAT_OK)
		return rc;
	*out = cert_json(&r);
	return MOAT_OK;
}

static moat_err cert_load(struct api_call *c, const char *serial, json_t **out)
{
	struct moat_val v = moat_val_text(serial, strlen(serial));
	moat_err rc;

	*out = NULL;
	rc = moat_store_read(c->api->o.store, REG_STMT(CERT_GET), &v, 1, cert_one_cb, out);
	if (rc == MOAT_OK && *out == NULL)
		rc = MOAT_E_NOTFOUND;
	return rc;
}

/* Serials as the CA writes them: lowercase hex, at least 32 digits
 * (`openssl x509 -serial` prints upper case and may drop leading zeros). */
static void normalise_serial(char *s, size_t size)
{
	size_t i, len = strlen(s);

	for (i = 0; i < len; i++)
		if (s[i] >= 'A' && s[i] <= 'F')
			s[i] = (char)(s[i] - 'A' + 'a');
	if (len < 32 && size > 32) {
		memmove(s + (32 - len), s, len + 1);
		memset(s, '0', 32 - len);
	}
}

void api_certs_revoke(struct api_call *c)
{
	static const struct api_field f[] = {{"reason", F_STRING, false, 1, 120}};
	const char *reason;
	struct moat_reg_change ch = {0};
	struct moat_reg_ctx x;
	json_t *cert = NULL;

	if (!api_validate(c, f, 1))
		return;
	normalise_serial(c->params.v[0], sizeof(c->params.v[0]));
	if (!api_reg_path_load(c, cert_load, "certificate", &cert))
		return;
	if (json_is_true(json_object_get(cert, "revoked"))) {
		json_decref(cert);
		api_problem(c, 409, "conflict", "the certificate is already revoked", NULL);
		return;
	}
	json_decref(cert);
	reason = api_str(c, "reason");
	api_reg_ctx(c, &x);
	if (!api_reg_done(c, moat_reg_cert_revoke(&x, c->params.v[0], reason, &ch), &ch))
		return;
	if (cert_load(c, c->params.v[0], &cert) != MOAT_OK) {
		api_internal(c, MOAT_E_INTERNAL);
		return;
	}
	api_json(c, 200, cert);
}

/* --- decommissioning --- */

void api_devices_decommission(struct api_call *c)
{
	const char *id = c->params.v[0];
	struct moat_reg_change ch = {0};
	struct moat_reg_decom n;
	struct moat_reg_ctx x;
	unsigned live = 0;
	bool erased = true;
	json_t *dev = NULL;
	const char *state;

	if (!api_validate(c, NULL, 0) ||
	    !api_reg_path_load(c, api_reg_identity_load, "identity", &dev))
		return;
	state = json_string_value(json_object_get(dev, "state"));
	if (state != NULL && strcmp(state, "decommissioned") == 0) {
		json_decref(dev);
		api_problem(c, 409, "conflict", "already decommissioned", NULL);
		return;
	}
	json_decref(dev);
	/* State, certificates and tokens in one batch with the entry. */
	api_reg_ctx(c, &x);
	if (!api_reg_done(c, moat_reg_decommission(&x, id, &n, &ch), &ch))
		return;
	/* The broker owns sessions, queues and retained messages: it erases
	 * them now, before the answer, so an id registered again the next
	 * moment finds nothing of this device (a failure here is retried by
	 * the broker at its next registry pass and at start). */
	if (c->api->o.erase_identity != NULL &&
	    c->api->o.erase_identity(c->api->o.registry_arg, id, &live) != MOAT_OK)
		erased = false;
	if (api_reg_identity_load(c, id, &dev) != MOAT_OK) {
		api_internal(c, MOAT_E_INTERNAL);
		return;
	}
	api_json(c, 200,
		 json_pack("{s:o, s:b, s:{s:I, s:I, s:I, s:I}}", "identity", dev, "erased", erased,
			   "removed", "certificates_revoked", (json_int_t)n.certs, "tokens_burned",
			   (json_int_t)n.tokens, "sessions", (json_int_t)n.sessions, "retained",
			   (json_int_t)n.retained));
}

/* --- manufacturer CAs: factory certificates they anchor may enroll --- */

/* The scope a row stores as JSON: devices (an array of patterns) or null,
 * group or null. */
static json_t *mca_json(const struct moat_reg_mca_row *r)
{
	char name[80] = "", fp[72] = "";
	json_t *devices = json_null(), *group = json_null();

	memcpy(name, r->name.p, r->name.len);
	memcpy(fp, r->fingerprint.p, r->fingerprint.len);
	if (r->devices.type == MOAT_VAL_TEXT) {
		const char *p = r->devices.p, *end = p + r->devices.len;
		json_decref(devices);
		devices = json_array();
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t n = (size_t)((nl ? nl : end) - p);
			json_array_append_new(devices, json_stringn(p, n));
			p += n + 1;
		}
	}
	if (r->group.type == MOAT_VAL_TEXT) {
		json_decref(group);
		group = json_stringn(r->group.p, r->group.len);
	}
	return json_pack("{s:s, s:s, s:o, s:o, s:o}", "name", name, "fingerprint", fp, "created_at",
			 api_time(r->created_at.i), "devices", devices, "group", group);
}

static moat_err mca_list_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	json_t *items = arg;
	struct moat_reg_mca_row r;

	if (ncols != 6 || moat_reg_mca_row_decode(cols, ncols, &r) != MOAT_OK || r.name.len >= 80 ||
	    r.fingerprint.len >= 72)
		return MOAT_E_CORRUPT;
	json_array_append_new(items, mca_json(&r));
	return MOAT_OK;
}

void api_mcas_list(struct api_call *c)
{
	char cursor[80];
	size_t limit;
	struct moat_val v[2];

	if (!api_page(c, &limit, cursor, sizeof(cursor), NULL, 0))
		return;
	v[0] = moat_val_text(cursor, strlen(cursor));
	v[1] = moat_val_int((int64_t)limit + 1);
	api_reg_list(c, REG_STMT(MCA_LIST), v, 2, mca_list_cb, NULL, limit, "name");
}

/*
 * devices: 1..MOAT_MCA_PATTERNS_MAX patterns, each a device id or a prefix
 * ending in '*' (the prefix itself a valid id), joined by newlines into
 * out. False with a problem answered.
 */
static bool mca_patterns(struct api_call *c, const json_t *arr, char *out, size_t outlen)
{
	size_t i, used = 0;

	if (!json_is_array(arr) || json_array_size(arr) == 0 ||
	    json_array_size(arr) > MOAT_MCA_PATTERNS_MAX) {
		api_problem(c, 422, "validation",
			    "devices must be a list of 1 to 64 device ids or prefixes ending in *",
			    "devices");
		return false;
	}
	for (i = 0; i < json_array_size(arr); i++) {
		const char *p = json_string_value(json_array_get(arr, i));
		size_t n = p ? strlen(p) : 0, id_len = n;

		if (n > 0 && p[n - 1] == '*')
			id_len = n - 1;
		if (p == NULL || id_len == 0 || !moat_device_id_valid(p, id_len) ||
		    used + n + 1 >= outlen) {
			api_problem(c, 422, "validation",
				    "each entry of devices is a device id (1-64 of [a-z0-9._-], "
				    "starting with a letter or digit) or such a prefix ending in *",
				    "devices");
			return false;
		}
		if (used > 0)
			out[used++] = '\n';
		memcpy(out + used, p, n);
		used += n;
	}
	out[used] = '\0';
	return true;
}

void api_mcas_create(struct api_call *c)
{
	char patterns[MOAT_MCA_PATTERNS_MAX * (MOAT_DEVICE_ID_MAX + 2) + 1] = "";
	const char *name, *pem, *group = NULL;
	json_t *devices;
	char fp[65];
	struct moat_reg_ctx rx;
	size_t extra;
	BIO *bio;
	X509 *x;
	bool ca;
	moat_err rc;

	/* PEM has newlines: validate the fields ourselves (api_validate refuses
	 * control characters in strings). */
	devices = json_object_get(c->body, "devices");
	extra = (size_t)(devices != NULL) + (size_t)(json_object_get(c->body, "group") != NULL);
	if (!json_is_string(json_object_get(c->body, "name")) ||
	    !json_is_string(json_object_get(c->body, "certificate")) ||
	    json_object_size(c->body) != 2 + extra || extra != 1) {
		api_problem(c, 422, "validation",
			    "send name, certificate (PEM) and exactly one of devices (the device "
			    "ids or id prefixes ending in * it made) or group (the group of its "
			    "devices): a manufacturer CA never enrolls the whole fleet",
			    extra == 1 ? NULL : "devices");
		return;
	}
	name = api_str(c, "name");
	pem = api_str(c, "certificate");
	if (!api_reg_name_ok(c, "manufacturer CA", "name", name))
		return;
	if (devices != NULL && !mca_patterns(c, devices, patterns, sizeof(patterns)))
		return;
	if (devices == NULL) {
		group = json_string_value(json_object_get(c->body, "group"));
		if (group == NULL) {
			api_problem(c, 422, "validation", "group must be a group name", "group");
			return;
		}
		if (!api_reg_group_exists(c, group, "group"))
			return;
	}
	if (strlen(pem) > 16384) {
		api_problem(c, 422, "validation", "the certificate is too long", "certificate");
		return;
	}
	bio = BIO_new_mem_buf(pem, (int)strlen(pem));
	x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	ca = x != NULL && X509_check_ca(x) >= 1;
	moat_tls_cert_fingerprint(x, fp, sizeof(fp));
	X509_free(x);
	if (!ca || fp[0] == '\0') {
		api_problem(
		    c, 422, "validation",
		    "the certificate must be a PEM CA certificate (basicConstraints CA:TRUE)",
		    "certificate");
		return;
	}
	if (api_is_moat_ca(c->api, fp)) {
		api_problem(c, 409, "conflict", "this is the Moat CA itself", "certificate");
		return;
	}
	api_reg_ctx(c, &rx);
	rc = moat_reg_mca_create(&rx, name, pem, fp, group == NULL ? patterns : NULL, group);
	/* A duplicate name or fingerprint fails the insert: say which. */
	if (rc == MOAT_E_EXISTS) {
		api_problem(c, 409, "conflict",
			    "a manufacturer CA with this name or certificate exists", NULL);
		return;
	}
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	api_registry_changed(c->api); /* HTTPS listeners trust it from now on */
	api_json(c, 201,
		 json_pack("{s:s, s:s, s:o, s:O, s:o}", "name", name, "fingerprint", fp,
			   "created_at", api_time(c->now), "devices",
			   devices ? devices : json_null(), "group",
			   group ? json_string(group) : json_null()));
}

void api_mcas_delete(struct api_call *c)
{
	struct moat_reg_ctx x;
	json_t *items = json_array();
	struct moat_val lv[2];
	size_t i;
	bool found = false;
	moat_err rc;

	/* exists? (the list is small) */
	lv[0] = moat_val_text("", 0);
	lv[1] = moat_val_int(1000);
	if (moat_store_read(c->api->o.store, REG_STMT(MCA_LIST), lv, 2, mca_list_cb, items) !=
	    MOAT_OK) {
		json_decref(items);
		api_internal(c, MOAT_E_IO);
		return;
	}
	for (i = 0; i < json_array_size(items) && !found; i++)
		found = strcmp(json_string_value(json_object_get(json_array_get(items, i), "name")),
			       c->params.v[0]) == 0;
	json_decref(items);
	if (!found) {
		api_problem(c, 404, "not-found", "no such manufacturer CA", NULL);
		return;
	}
	api_reg_ctx(c, &x);
	rc = moat_reg_mca_delete(&x, c->params.v[0]);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	api_registry_changed(c->api);
	api_no_content(c);
}
