/*
 * Who is calling: session cookies and bearer tokens; the first-admin setup;
 * login (Argon2id, TOTP or a recovery code, throttling with identical
 * answers for unknown users and wrong passwords), logout, and the caller's
 * own profile, password and TOTP enrolment. Also the broker's security
 * events, summed per window into the audit log.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api/internal.h"
#include "auth/password.h"
#include "auth/totp.h"
#include "core/log.h"
#include "core/reactor.h"
#include "pki/ca.h"
#include "auth/schema.h"

#define COOKIE_NAME "__Host-moat_session"

/* --- operators --- */

static moat_err op_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_auth_operator_row row;
	struct api_operator *op = arg;

	if (moat_auth_operator_row_decode(cols, ncols, &row) != MOAT_OK ||
	    row.name.len >= sizeof(op->name) || row.pw_hash.len >= sizeof(op->pw_hash))
		return MOAT_E_CORRUPT;
	memcpy(op->name, row.name.p, row.name.len);
	op->name[row.name.len] = '\0';
	{
		char role[16];
		size_t n = row.role.len < sizeof(role) - 1 ? row.role.len : sizeof(role) - 1;
		memcpy(role, row.role.p, n);
		role[n] = '\0';
		if (!api_role_parse(role, &op->role) || op->role == ROLE_METRICS)
			return MOAT_E_CORRUPT;
	}
	memcpy(op->pw_hash, row.pw_hash.p, row.pw_hash.len);
	op->pw_hash[row.pw_hash.len] = '\0';
	/* A seed too large to be one is damage, never "not enrolled": that
	 * would let a password alone in. */
	if ((row.totp_secret.type == MOAT_VAL_BLOB && row.totp_secret.len > sizeof(op->totp)) ||
	    (row.totp_pending.type == MOAT_VAL_BLOB &&
	     row.totp_pending.len > sizeof(op->totp_pending)))
		return MOAT_E_CORRUPT;
	if (row.totp_secret.type == MOAT_VAL_BLOB) {
		memcpy(op->totp, row.totp_secret.p, row.totp_secret.len);
		op->totp_len = row.totp_secret.len;
	}
	if (row.totp_pending.type == MOAT_VAL_BLOB) {
		memcpy(op->totp_pending, row.totp_pending.p, row.totp_pending.len);
		op->totp_pending_len = row.totp_pending.len;
	}
	op->totp_last_step = row.totp_last_step.i;
	op->disabled = row.disabled.i != 0;
	op->created = row.created_at.i;
	op->updated = row.updated_at.i;
	return MOAT_OK;
}

moat_err api_operator_get(struct moat_api *api, const char *name, struct api_operator *op)
{
	struct moat_val v = moat_val_text(name, strlen(name));
	moat_err rc;

	memset(op, 0, sizeof(*op));
	rc = moat_store_read(api->o.store, AUTH_STMT(OP_GET), &v, 1, op_cb, op);
	if (rc == MOAT_OK && op->name[0] == '\0')
		rc = MOAT_E_NOTFOUND;
	return rc;
}

/* --- sealed TOTP seeds ---
 *
 * Seeds are stored sealed by the key process (MOAT_KEY_SECRETS, pki/ca.h):
 * moat.db alone, a backup or a copied file, does not give anyone an
 * operator's second factor. The associated data names the column and the
 * operator, so a blob copied into another row or column does not open. */

#define TOTP_AD_TAG "moat-totp-v1"

static size_t totp_ad(const char *column, const char *name, uint8_t ad[MOAT_KEY_AD_MAX])
{
	int n =
	    snprintf((char *)ad, MOAT_KEY_AD_MAX, "%s%c%s%c%s", TOTP_AD_TAG, 0, column, 0, name);

	/* Names are at most 64 characters (api_name_valid): always fits. */
	return n > 0 && (size_t)n < MOAT_KEY_AD_MAX ? (size_t)n : 0;
}

/* Sealed as moat_ca_seal makes it; anything else is a seed stored by a
 * Moat from before sealing (api_totp_migrate seals those at start). */
static bool totp_sealed(const uint8_t *p, size_t n)
{
	return n > MOAT_KEY_SEAL_OVERHEAD &&
	       memcmp(p, MOAT_KEY_SEAL_TAG, MOAT_KEY_SEAL_TAG_LEN) == 0;
}

static moat_err totp_seal(struct moat_api *api, const char *column, const char *name,
			  const uint8_t *seed, size_t len, uint8_t out[MOAT_TOTP_STORED_MAX],
			  size_t *out_len)
{
	uint8_t ad[MOAT_KEY_AD_MAX];
	size_t ad_len = totp_ad(column, name, ad);
	char err[MOAT_CA_ERR_MAX] = "";
	moat_err rc;

	if (api->o.ca == NULL || ad_len == 0)
		return MOAT_E_INVAL;
	rc = moat_ca_seal(api->o.ca, MOAT_KEY_SECRETS, ad, ad_len, seed, len, out,
			  MOAT_TOTP_STORED_MAX, out_len, err, sizeof(err));
	if (rc)
		log_error("totp_seal_failed", "user=\"%.64s\" column=%s error=\"%s\"", name, column,
			  err);
	return rc;
}

/* The seed in stored (sealed) form, opened into seed; the caller wipes it. */
static moat_err totp_open(struct moat_api *api, const char *column, const char *name,
			  const uint8_t *stored, size_t len, uint8_t seed[MOAT_TOTP_SECRET_MAX],
			  size_t *seed_len)
{
	uint8_t ad[MOAT_KEY_AD_MAX];
	size_t ad_len = totp_ad(column, name, ad);
	char err[MOAT_CA_ERR_MAX] = "no key process";
	moat_err rc = MOAT_E_INVAL;

	if (!totp_sealed(stored, len)) {
		snprintf(err, sizeof(err), "the seed is not sealed");
		rc = MOAT_E_CORRUPT;
	} else if (api->o.ca != NULL && ad_len > 0) {
		rc = moat_ca_unseal(api->o.ca, MOAT_KEY_SECRETS, ad, ad_len, stored, len, seed,
				    MOAT_TOTP_SECRET_MAX, seed_len, err, sizeof(err));
	}
	if (rc)
		log_error("totp_unseal_failed", "user=\"%.64s\" column=%s error=\"%s\"", name,
			  column, err);
	return rc;
}

struct name_page {
	char names[64][80];
	size_t n;
};

static moat_err name_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_auth_operator_list_row row;
	struct name_page *pg = arg;

	if (moat_auth_operator_list_row_decode(cols, ncols, &row) != MOAT_OK ||
	    row.name.len >= sizeof(pg->names[0]) ||
	    pg->n >= sizeof(pg->names) / sizeof(pg->names[0]))
		return MOAT_E_CORRUPT;
	memcpy(pg->names[pg->n], row.name.p, row.name.len);
	pg->names[pg->n][row.name.len] = '\0';
	pg->n++;
	return MOAT_OK;
}

/* Seal name's plaintext seeds, if any, with an audit entry in the same
 * write. */
static moat_err totp_migrate_one(struct moat_api *api, const char *name, size_t *sealed)
{
	uint8_t s1[MOAT_TOTP_STORED_MAX], s2[MOAT_TOTP_STORED_MAX];
	size_t l1 = 0, l2 = 0;
	struct api_operator op API_OPERATOR_WIPED;
	struct moat_store_batch *b = NULL;
	struct moat_audit_event ev;
	struct moat_val v[4];
	bool secret, pending;
	char detail[96];
	int64_t now = moat_wall_ms();
	moat_err rc;

	rc = api_operator_get(api, name, &op);
	if (rc)
		goto out;
	secret = op.totp_len > 0 && !totp_sealed(op.totp, op.totp_len);
	pending = op.totp_pending_len > 0 && !totp_sealed(op.totp_pending, op.totp_pending_len);
	if (!secret && !pending)
		goto out;
	if (secret &&
	    (rc = totp_seal(api, "totp_secret", name, op.totp, op.totp_len, s1, &l1)) != MOAT_OK)
		goto out;
	if (pending && (rc = totp_seal(api, "totp_pending", name, op.totp_pending,
				       op.totp_pending_len, s2, &l2)) != MOAT_OK)
		goto out;
	if ((rc = moat_store_batch_new(&b)) != MOAT_OK)
		goto out;
	v[0] = moat_val_text(name, strlen(name));
	if (secret) {
		/* CONFIRM_TOTP also clears totp_pending: put it back below. */
		v[1] = moat_val_blob(s1, l1);
		v[2] = moat_val_int(op.totp_last_step);
		v[3] = moat_val_int(now);
		rc = moat_store_batch_add(b, AUTH_STMT(OP_CONFIRM_TOTP), v, 4);
	}
	if (rc == MOAT_OK && (pending || (secret && op.totp_pending_len > 0))) {
		v[1] = pending ? moat_val_blob(s2, l2)
			       : moat_val_blob(op.totp_pending, op.totp_pending_len);
		v[2] = moat_val_int(now);
		rc = moat_store_batch_add(b, AUTH_STMT(OP_SET_TOTP_PENDING), v, 3);
	}
	if (rc) {
		moat_store_batch_free(b);
		goto out;
	}
	snprintf(detail, sizeof(detail), "{\"totp_pending\":%s,\"totp_secret\":%s}",
		 pending ? "true" : "false", secret ? "true" : "false");
	memset(&ev, 0, sizeof(ev));
	ev.actor = "system";
	ev.action = "user.totp_sealed";
	ev.target = name;
	ev.outcome = "ok";
	ev.detail = detail;
	rc = moat_audit_log_write(&api->audit, &b, &ev);
	if (rc == MOAT_OK)
		(*sealed)++;
out:
	sodium_memzero(&op, sizeof(op));
	sodium_memzero(s1, sizeof(s1));
	sodium_memzero(s2, sizeof(s2));
	return rc;
}

moat_err api_totp_migrate(struct moat_api *api, char *err, size_t errlen)
{
	struct name_page *pg = calloc(1, sizeof(*pg));
	char cursor[80] = "";
	struct moat_val v[2];
	size_t i, sealed = 0;
	moat_err rc = MOAT_E_NOMEM;

	if (pg == NULL)
		goto out;
	for (;;) {
		pg->n = 0;
		v[0] = moat_val_text(cursor, strlen(cursor));
		v[1] = moat_val_int((int64_t)(sizeof(pg->names) / sizeof(pg->names[0])));
		rc = moat_store_read(api->o.store, AUTH_STMT(OP_LIST), v, 2, name_cb, pg);
		if (rc)
			goto out;
		for (i = 0; i < pg->n; i++) {
			rc = totp_migrate_one(api, pg->names[i], &sealed);
			if (rc) {
				snprintf(err, errlen,
					 "cannot seal the TOTP seeds of operator %s: %s (is "
					 "seal.key the one this database was sealed with?)",
					 pg->names[i], moat_strerror(rc));
				goto out;
			}
		}
		if (pg->n < sizeof(pg->names) / sizeof(pg->names[0]))
			break;
		snprintf(cursor, sizeof(cursor), "%s", pg->names[pg->n - 1]);
	}
	if (sealed > 0) {
		/* The old pages still hold the plaintext in moat.db until a
		 * checkpoint copies the new ones over them (secure_delete zeroes
		 * what is freed then) and truncates the WAL. */
		rc = moat_store_checkpoint_wait(api->o.store);
		if (rc) {
			snprintf(err, errlen, "cannot checkpoint the database: %s",
				 moat_strerror(rc));
			goto out;
		}
		log_notice("totp_sealed", "operators=%zu note=\"plaintext TOTP seeds sealed\"",
			   sealed);
	}
	rc = MOAT_OK;
out:
	if (rc == MOAT_E_NOMEM)
		snprintf(err, errlen, "out of memory");
	else if (rc && err[0] == '\0')
		snprintf(err, errlen, "cannot list the operators: %s", moat_strerror(rc));
	free(pg);
	return rc;
}

void api_operator_wipe(struct api_operator *op)
{
	sodium_memzero(op, sizeof(*op));
}

static void *json_wiped_malloc(size_t n)
{
	return malloc(n);
}

/* The whole block, not just what jansson wrote: a string that shrank may
 * have left secret bytes past its end. */
static void json_wiped_free(void *p)
{
	if (p == NULL)
		return;
	sodium_memzero(p, malloc_usable_size(p));
	free(p);
}

void api_json_wipe_init(void)
{
	json_set_alloc_funcs(json_wiped_malloc, json_wiped_free);
}

json_t *api_operator_json(const struct api_operator *op)
{
	return json_pack("{s:s, s:s, s:b, s:b, s:o, s:o}", "username", op->name, "role",
			 api_role_names[op->role], "disabled", op->disabled, "mfa_enrolled",
			 op->totp_len > 0, "created_at", api_time(op->created), "updated_at",
			 api_time(op->updated));
}

static void noop_cb(void *arg, moat_err rc)
{
	(void)arg;
	(void)rc;
}

/* A write nobody waits for (last-seen times). */
static void write_async(struct moat_api *api, struct moat_stmt id, const struct moat_val *v,
			size_t n)
{
	struct moat_store_batch *b = NULL;

	if (moat_store_batch_new(&b) != MOAT_OK)
		return;
	if (moat_store_batch_add(b, id, v, n) != MOAT_OK) {
		moat_store_batch_free(b);
		return;
	}
	(void)moat_store_submit(api->o.store, b, noop_cb, NULL);
}

/* --- authentication --- */

struct token_row {
	bool found;
	char id[80];
	enum api_role role;
	char creator[80];
	int64_t expires;
	bool revoked;
	bool creator_ok;	    /* the creator exists and is enabled */
	enum api_role creator_role; /* their role now */
};

static void copy_text(char *dst, size_t dstlen, const struct moat_val *v)
{
	size_t n = 0;

	if (v->type == MOAT_VAL_TEXT)
		n = v->len < dstlen - 1 ? v->len : dstlen - 1;
	if (n)
		memcpy(dst, v->p, n);
	dst[n] = '\0';
}

static moat_err token_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_auth_token_auth_row row;
	struct token_row *t = arg;
	char role[16];

	if (moat_auth_token_auth_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	copy_text(t->id, sizeof(t->id), &row.id);
	copy_text(role, sizeof(role), &row.role);
	copy_text(t->creator, sizeof(t->creator), &row.creator);
	if (!api_role_parse(role, &t->role))
		return MOAT_E_CORRUPT;
	t->expires = row.expires_at.i;
	t->revoked = row.revoked_at.type != MOAT_VAL_NULL;
	copy_text(role, sizeof(role), &row.creator_role);
	t->creator_ok = row.creator_role.type == MOAT_VAL_TEXT && row.creator_disabled.i == 0 &&
			api_role_parse(role, &t->creator_role);
	t->found = true;
	return MOAT_OK;
}

struct sess_row {
	bool found;
	char sid[24], name[80], csrf[64];
	enum api_role role;
	int64_t created, last_seen;
	bool mfa, disabled, enrolled;
};

static moat_err sess_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_auth_session_row row;
	struct sess_row *s = arg;
	char role[16];

	if (moat_auth_session_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	copy_text(s->sid, sizeof(s->sid), &row.sid);
	copy_text(s->name, sizeof(s->name), &row.name);
	copy_text(role, sizeof(role), &row.role);
	copy_text(s->csrf, sizeof(s->csrf), &row.csrf);
	if (!api_role_parse(role, &s->role))
		return MOAT_E_CORRUPT;
	s->mfa = row.mfa.i != 0;
	s->created = row.created_at.i;
	s->last_seen = row.last_seen.i;
	s->disabled = row.disabled.i != 0;
	s->enrolled = row.enrolled.i != 0;
	s->found = true;
	return MOAT_OK;
}

/* The value of cookie `name` in any Cookie header, or NULL. */
static bool find_cookie(const struct moat_http_req *req, const char *name, char *out, size_t outlen)
{
	size_t i, nlen = strlen(name);

	for (i = 0; i < req->n_headers; i++) {
		const char *p = req->headers[i].value;
		if (strcasecmp(req->headers[i].name, "cookie") != 0)
			continue;
		while (*p) {
			const char *end = strchr(p, ';');
			size_t len = end ? (size_t)(end - p) : strlen(p);
			while (len && (*p == ' ' || *p == '\t')) {
				p++;
				len--;
			}
			if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
				size_t vlen = len - nlen - 1;
				if (vlen >= outlen)
					return false;
				memcpy(out, p + nlen + 1, vlen);
				out[vlen] = '\0';
				return true;
			}
			p += len;
			if (*p == ';')
				p++;
		}
	}
	return false;
}

static void clear_cookie(struct api_call *c)
{
	moat_http_resp_header(c->resp, "Set-Cookie",
			      COOKIE_NAME
			      "=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
}

bool api_authenticate(struct api_call *c)
{
	const char *auth = moat_http_header(c->req, "authorization");
	char secret[128];
	uint8_t h[MOAT_SECRET_HASH_LEN];
	struct moat_val v[2];
	moat_err rc;

	if (auth != NULL) {
		struct token_row t;
		if (moat_http_header_count(c->req, "authorization") != 1 ||
		    strncasecmp(auth, "Bearer ", 7) != 0 || strlen(auth + 7) == 0 ||
		    strlen(auth + 7) > 200) {
			api_problem(c, 401, "unauthorized", "use Authorization: Bearer <token>",
				    NULL);
			return false;
		}
		memset(&t, 0, sizeof(t));
		moat_secret_hash(auth + 7, strlen(auth + 7), h);
		v[0] = moat_val_blob(h, sizeof(h));
		rc =
		    moat_store_read(c->api->o.store, AUTH_STMT(TOKEN_GET_HASH), v, 1, token_cb, &t);
		if (rc != MOAT_OK) {
			api_internal(c, rc);
			return false;
		}
		if (!t.found || t.revoked || t.expires <= c->now || !t.creator_ok) {
			api_problem(c, 401, "unauthorized",
				    "the token is unknown, revoked or expired, or its creator was "
				    "disabled or removed",
				    NULL);
			return false;
		}
		c->who.kind = AUTH_TOKEN;
		c->who.role = t.role;
		/* Never more than the creator may do today (a demoted creator
		 * demotes their tokens). */
		c->who.perms =
		    api_role_perms(t.role) & api_role_perms(t.creator_role) & ~(unsigned)P_SELF;
		snprintf(c->who.name, sizeof(c->who.name), "%s", t.id);
		snprintf(c->who.actor, sizeof(c->who.actor), "token:%s", t.id);
		snprintf(c->who.creator, sizeof(c->who.creator), "%s", t.creator);
		v[0] = moat_val_text(t.id, strlen(t.id));
		v[1] = moat_val_int(c->now);
		write_async(c->api, AUTH_STMT(TOKEN_TOUCH), v, 2);
		return true;
	}
	if (find_cookie(c->req, COOKIE_NAME, secret, sizeof(secret))) {
		struct sess_row s;
		memset(&s, 0, sizeof(s));
		moat_secret_hash(secret, strlen(secret), h);
		sodium_memzero(secret, sizeof(secret));
		v[0] = moat_val_blob(h, sizeof(h));
		rc = moat_store_read(c->api->o.store, AUTH_STMT(SESS_GET), v, 1, sess_cb, &s);
		if (rc != MOAT_OK) {
			api_internal(c, rc);
			return false;
		}
		if (!s.found || s.disabled ||
		    s.last_seen + (int64_t)MOAT_API_SESSION_IDLE_MS <= c->now ||
		    s.created + (int64_t)MOAT_API_SESSION_ABSOLUTE_MS <= c->now) {
			clear_cookie(c);
			api_problem(c, 401, "unauthorized", "the session ended; log in again",
				    NULL);
			return false;
		}
		c->who.kind = AUTH_SESSION;
		c->who.role = s.role;
		c->who.perms = api_role_perms(s.role);
		/* The gate is this session's own second factor: a password-only
		 * session opened before the account enrolled stays gated. */
		c->who.mfa_enrolled = s.mfa && s.enrolled;
		snprintf(c->who.name, sizeof(c->who.name), "%s", s.name);
		snprintf(c->who.actor, sizeof(c->who.actor), "user:%s", s.name);
		snprintf(c->who.sid, sizeof(c->who.sid), "%s", s.sid);
		snprintf(c->who.csrf, sizeof(c->who.csrf), "%s", s.csrf);
		memcpy(c->who.sess_hash, h, sizeof(h));
		if (c->now - s.last_seen >= (int64_t)MOAT_API_SESSION_TOUCH_MS) {
			v[0] = moat_val_blob(h, sizeof(h));
			v[1] = moat_val_int(c->now);
			write_async(c->api, AUTH_STMT(SESS_TOUCH), v, 2);
		}
		return true;
	}
	return true; /* anonymous */
}

/* --- setup --- */

static bool check_password(struct api_call *c, const char *pw, const char *user, const char *field)
{
	char why[200];

	if (moat_password_check_policy(pw, strlen(pw), user, why, sizeof(why)) != MOAT_OK) {
		api_problem(c, 422, "validation", why, field);
		return false;
	}
	return true;
}

static moat_err setup_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_auth_setup_row row;
	int64_t *st = arg; /* [0] expires, [1] used */

	if (moat_auth_setup_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	st[0] = row.expires_at.i;
	st[1] = row.used_at.type == MOAT_VAL_NULL ? 0 : 1;
	st[2] = 1;
	return MOAT_OK;
}

void api_setup(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"setup_token", F_STRING, true, 1, 128},
	    {"username", F_STRING, true, 1, 64},
	    {"password", F_STRING, true, 1, 1024},
	};
	const char *tok, *user, *pw;
	uint8_t h[MOAT_SECRET_HASH_LEN];
	int64_t n = 0, st[3] = {0, 0, 0};
	struct moat_val v[4];
	char hash[MOAT_PASSWORD_HASH_MAX];
	struct moat_store_batch *b = NULL;
	struct api_operator op API_OPERATOR_WIPED;
	moat_err rc;

	snprintf(c->who.actor, sizeof(c->who.actor), "setup");
	if (!api_validate(c, f, 3))
		return;
	tok = api_str(c, "setup_token");
	user = api_str(c, "username");
	pw = api_str(c, "password");
	v[0] = moat_val_null();
	rc = moat_store_read_int(c->api->o.store, AUTH_STMT(OP_COUNT), v, 1, &n);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	moat_secret_hash(tok, strlen(tok), h);
	v[0] = moat_val_blob(h, sizeof(h));
	rc = moat_store_read(c->api->o.store, AUTH_STMT(SETUP_GET), v, 1, setup_cb, st);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	if (n > 0 || !st[2] || st[1] || st[0] <= c->now) {
		const char *why = n > 0	   ? "setup is complete: an operator already exists"
				  : !st[2] ? "unknown setup token"
				  : st[1]  ? "this setup token was already used"
					   : "this setup token has expired; run moat setup-token";
		/* Unauthenticated: summed per window like the broker's events, so
		 * a flood cannot fill the log. */
		api_refusal_event(c, "auth.setup", user, why);
		api_problem(c, 403, "setup-unavailable", why, n > 0 ? NULL : "setup_token");
		return;
	}
	if (!api_name_valid(user)) {
		api_problem(c, 422, "validation",
			    "user names are 1-64 characters of a-z, 0-9, '.', '_' and '-', "
			    "starting with a letter or digit",
			    "username");
		return;
	}
	if (!check_password(c, pw, user, "password"))
		return;
	if ((rc = moat_password_hash(pw, strlen(pw), hash)) != MOAT_OK ||
	    (rc = moat_store_batch_new(&b)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	v[0] = moat_val_text(user, strlen(user));
	v[1] = moat_val_text("admin", 5);
	v[2] = moat_val_text(hash, strlen(hash));
	v[3] = moat_val_int(c->now);
	rc = moat_store_batch_add(b, AUTH_STMT(OP_INSERT), v, 4);
	v[0] = moat_val_blob(h, sizeof(h));
	v[1] = moat_val_int(c->now);
	if (rc == MOAT_OK)
		rc = moat_store_batch_add(b, AUTH_STMT(SETUP_USE), v, 2);
	if (rc != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	rc = api_audit(c, &b, "auth.setup", user, "ok",
		       json_pack("{s:s, s:s}", "username", user, "role", "admin"));
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	log_notice("first_admin_created", "user=%s peer=%s", user, c->req->peer);
	if (api_operator_get(c->api, user, &op) != MOAT_OK) {
		api_internal(c, MOAT_E_INTERNAL);
		return;
	}
	api_json(c, 201, api_operator_json(&op));
}

/* --- login --- */

/* The address the throttle counts an attempt against. */
static const char *throttle_addr(const struct api_call *c)
{
	return c->req->peer && c->req->peer[0] ? c->req->peer : "?";
}

static void login_failed(struct api_call *c, const char *user, const char *why)
{
	moat_login_throttle_fail(c->api->throttle, user, throttle_addr(c), moat_now_ms());
	c->api->logins_failed++;
	/* A name that is not a valid user name may be a password typed into
	 * the wrong box: never record it. */
	if (!api_name_valid(user))
		user = "<invalid user name>";
	log_info("login_failed", "user=\"%.64s\" peer=%s reason=\"%s\"", user, c->req->peer, why);
	(void)api_audit(c, NULL, "auth.login", user, "failed",
			json_pack("{s:s, s:s}", "username", user, "reason", why));
}

static void set_session_cookie(struct api_call *c, const char *secret)
{
	char cookie[256];

	snprintf(cookie, sizeof(cookie),
		 COOKIE_NAME "=%s; Path=/; Max-Age=%u; HttpOnly; Secure; SameSite=Strict", secret,
		 MOAT_API_SESSION_ABSOLUTE_MS / 1000u);
	moat_http_resp_header(c->resp, "Set-Cookie", cookie);
}

void api_login(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"username", F_STRING, true, 1, 64},
	    {"password", F_STRING, true, 1, 1024},
	    {"totp_code", F_STRING, false, 1, 16},
	    {"recovery_code", F_STRING, false, 1, 32},
	};
	char secret[MOAT_SECRET_TOKEN_B64_LEN + 1], csrf[MOAT_SECRET_TOKEN_B64_LEN + 1], sid[24],
	    ua[128];
	const char *user, *pw, *code, *rcode, *hdr;
	uint8_t h[MOAT_SECRET_HASH_LEN], rh[MOAT_SECRET_HASH_LEN];
	struct api_operator op API_OPERATOR_WIPED;
	struct moat_store_batch *b = NULL;
	struct moat_val v[9];
	uint64_t wait;
	int64_t step = 0;
	bool found, ok, used_recovery = false;
	moat_err rc;

	if (!api_validate(c, f, 4))
		return;
	user = api_str(c, "username");
	pw = api_str(c, "password");
	code = api_str(c, "totp_code");
	rcode = api_str(c, "recovery_code");
	snprintf(c->who.actor, sizeof(c->who.actor), "anonymous");
	wait = moat_login_throttle_wait_ms(c->api->throttle, user, throttle_addr(c), moat_now_ms());
	if (wait > 0) {
		char ra[24];
		c->api->logins_throttled++;
		snprintf(ra, sizeof(ra), "%llu", (unsigned long long)((wait + 999) / 1000));
		moat_http_resp_header(c->resp, "Retry-After", ra);
		api_refusal_event(c, "auth.login", user, "throttled");
		api_problem(c, 429, "throttled", "too many failed logins; wait and try again",
			    NULL);
		return;
	}
	rc = api_operator_get(c->api, user, &op);
	if (rc != MOAT_OK && rc != MOAT_E_NOTFOUND) {
		api_internal(c, rc);
		return;
	}
	found = rc == MOAT_OK;
	/* Unknown users cost one Argon2id verification too. */
	if (found)
		ok = moat_password_verify(op.pw_hash, pw, strlen(pw));
	else
		moat_password_dummy_verify(pw, strlen(pw)), ok = false;
	if (!ok || op.disabled) {
		login_failed(c, user,
			     !found ? "unknown user"
			     : !ok  ? "wrong password"
				    : "disabled");
		api_problem(c, 401, "invalid-credentials", "wrong user name or password", NULL);
		return;
	}
	if (op.totp_len > 0) {
		if (code == NULL && rcode == NULL) {
			api_problem(c, 401, "mfa-required",
				    "send totp_code (or a recovery_code) with the password",
				    "totp_code");
			return;
		}
		if (code != NULL) {
			uint8_t seed[MOAT_TOTP_SECRET_MAX];
			size_t seed_len = 0;

			rc = totp_open(c->api, "totp_secret", user, op.totp, op.totp_len, seed,
				       &seed_len);
			sodium_memzero(op.totp, sizeof(op.totp));
			if (rc != MOAT_OK) {
				api_internal(c, rc);
				return;
			}
			rc = moat_totp_verify(seed, seed_len, code, c->now / 1000,
					      op.totp_last_step, &step);
			sodium_memzero(seed, sizeof(seed));
			if (rc != MOAT_OK) {
				login_failed(c, user, "wrong TOTP code");
				api_problem(c, 401, "invalid-credentials", "wrong TOTP code",
					    "totp_code");
				return;
			}
		} else {
			char norm[64];
			int64_t n = 0;
			bool empty;
			if (moat_recovery_normalise(rcode, norm, sizeof(norm)) != MOAT_OK)
				norm[0] = '\0';
			moat_secret_hash(norm, strlen(norm), rh);
			empty = norm[0] == '\0';
			sodium_memzero(norm, sizeof(norm));
			v[0] = moat_val_text(user, strlen(user));
			v[1] = moat_val_blob(rh, sizeof(rh));
			rc =
			    moat_store_read_int(c->api->o.store, AUTH_STMT(RECOVERY_HAS), v, 2, &n);
			if (rc != MOAT_OK) {
				api_internal(c, rc);
				return;
			}
			if (n == 0 || empty) {
				login_failed(c, user, "wrong recovery code");
				api_problem(c, 401, "invalid-credentials", "wrong recovery code",
					    "recovery_code");
				return;
			}
			used_recovery = true;
		}
	}
	/* A new session. */
	if (moat_secret_token("", secret, sizeof(secret)) != MOAT_OK ||
	    moat_secret_token("", csrf, sizeof(csrf)) != MOAT_OK ||
	    moat_store_batch_new(&b) != MOAT_OK) {
		api_internal(c, MOAT_E_CRYPTO);
		return;
	}
	moat_secret_hash(secret, strlen(secret), h);
	(void)moat_secret_hex(h, 8, sid, sizeof(sid));
	hdr = moat_http_header(c->req, "user-agent");
	snprintf(ua, sizeof(ua), "%s", hdr ? hdr : "");
	for (size_t k = 0; ua[k]; k++) /* printable ASCII only: it is shown and sent as JSON */
		if ((unsigned char)ua[k] < 0x20 || (unsigned char)ua[k] > 0x7e)
			ua[k] = '?';
	v[0] = moat_val_blob(h, sizeof(h));
	v[1] = moat_val_text(sid, strlen(sid));
	v[2] = moat_val_text(user, strlen(user));
	v[3] = moat_val_text(csrf, strlen(csrf));
	v[4] = moat_val_int(op.totp_len > 0 ? 1 : 0);
	v[5] = moat_val_int(c->now);
	v[6] = moat_val_int(c->now);
	v[7] = moat_val_text(c->req->peer, strlen(c->req->peer));
	v[8] = moat_val_text(ua, strlen(ua));
	rc = moat_store_batch_add(b, AUTH_STMT(SESS_PUT), v, 9);
	if (rc == MOAT_OK && step > 0) {
		v[0] = moat_val_text(user, strlen(user));
		v[1] = moat_val_int(step);
		rc = moat_store_batch_add(b, AUTH_STMT(OP_SET_TOTP_STEP), v, 2);
	}
	if (rc == MOAT_OK && used_recovery) {
		v[0] = moat_val_text(user, strlen(user));
		v[1] = moat_val_blob(rh, sizeof(rh));
		rc = moat_store_batch_add(b, AUTH_STMT(RECOVERY_USE), v, 2);
	}
	if (rc != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	snprintf(c->who.actor, sizeof(c->who.actor), "user:%s", user);
	rc = api_audit(c, &b, "auth.login", user, "ok",
		       json_pack("{s:s, s:s, s:b}", "session", sid, "mfa",
				 op.totp_len ? (used_recovery ? "recovery_code" : "totp") : "none",
				 "recovery_code_used", used_recovery));
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	moat_login_throttle_success(c->api->throttle, user, throttle_addr(c));
	c->api->logins_ok++;
	set_session_cookie(c, secret);
	sodium_memzero(secret, sizeof(secret));
	api_json(c, 200,
		 json_pack("{s:s, s:s, s:b, s:b, s:s, s:s, s:o}", "username", user, "role",
			   api_role_names[op.role], "mfa_enrolled", op.totp_len > 0,
			   "mfa_enrolment_required", op.role == ROLE_ADMIN && op.totp_len == 0,
			   "csrf_token", csrf, "session_id", sid, "expires_at",
			   api_time(c->now + (int64_t)MOAT_API_SESSION_ABSOLUTE_MS)));
	sodium_memzero(csrf, sizeof(csrf));
}

void api_logout(struct api_call *c)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v = moat_val_text(c->who.sid, strlen(c->who.sid));
	moat_err rc;

	if ((rc = moat_store_batch_new(&b)) != MOAT_OK ||
	    (rc = moat_store_batch_add(b, AUTH_STMT(SESS_DEL), &v, 1)) != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	rc = api_audit(c, &b, "auth.logout", c->who.name, "ok",
		       json_pack("{s:s}", "session", c->who.sid));
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	clear_cookie(c);
	api_no_content(c);
}

void api_me(struct api_call *c)
{
	struct api_operator op API_OPERATOR_WIPED;
	moat_err rc = api_operator_get(c->api, c->who.name, &op);
	json_t *j;

	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	j = api_operator_json(&op);
	json_object_set_new(j, "mfa_enrolment_required",
			    json_boolean(op.role == ROLE_ADMIN && op.totp_len == 0));
	json_object_set_new(j, "session_id", json_string(c->who.sid));
	api_json(c, 200, j);
}

void api_me_password(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"current_password", F_STRING, true, 1, 1024},
	    {"new_password", F_STRING, true, 1, 1024},
	};
	char hash[MOAT_PASSWORD_HASH_MAX];
	const char *cur, *nw;
	struct api_operator op API_OPERATOR_WIPED;
	struct moat_store_batch *b = NULL;
	struct moat_val v[3];
	uint64_t wait;
	moat_err rc;

	if (!api_validate(c, f, 2))
		return;
	cur = api_str(c, "current_password");
	nw = api_str(c, "new_password");
	wait = moat_login_throttle_wait_ms(c->api->throttle, c->who.name, throttle_addr(c),
					   moat_now_ms());
	if (wait > 0) {
		api_refuse(c, 429, "throttled", "too many failed attempts; wait and try again",
			   NULL, "user.password_change", c->who.name, "throttled", NULL);
		return;
	}
	if ((rc = api_operator_get(c->api, c->who.name, &op)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	if (!moat_password_verify(op.pw_hash, cur, strlen(cur))) {
		moat_login_throttle_fail(c->api->throttle, c->who.name, throttle_addr(c),
					 moat_now_ms());
		(void)api_audit(c, NULL, "user.password_change", c->who.name, "failed",
				json_pack("{s:s}", "reason", "wrong current password"));
		api_problem(c, 403, "invalid-credentials", "the current password is wrong",
			    "current_password");
		return;
	}
	if (!check_password(c, nw, c->who.name, "new_password"))
		return;
	if ((rc = moat_password_hash(nw, strlen(nw), hash)) != MOAT_OK ||
	    (rc = moat_store_batch_new(&b)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	v[0] = moat_val_text(c->who.name, strlen(c->who.name));
	v[1] = moat_val_text(hash, strlen(hash));
	v[2] = moat_val_int(c->now);
	rc = moat_store_batch_add(b, AUTH_STMT(OP_SET_PASSWORD), v, 3);
	/* Every other session of this user ends. */
	v[1] = moat_val_text(c->who.sid, strlen(c->who.sid));
	if (rc == MOAT_OK)
		rc = moat_store_batch_add(b, AUTH_STMT(SESS_DEL_OPERATOR), v, 2);
	if (rc != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	rc = api_audit(c, &b, "user.password_change", c->who.name, "ok", NULL);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	api_no_content(c);
}

void api_me_totp(struct api_call *c)
{
	uint8_t secret[MOAT_TOTP_SECRET_LEN], sealed[MOAT_TOTP_STORED_MAX];
	size_t sealed_len = 0;
	char b32[MOAT_TOTP_BASE32_MAX + 1], uri[512];
	struct api_operator op API_OPERATOR_WIPED;
	struct moat_store_batch *b = NULL;
	struct moat_val v[3];
	moat_err rc;

	if (!api_validate(c, NULL, 0))
		return;
	if ((rc = api_operator_get(c->api, c->who.name, &op)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	if (op.totp_len > 0) {
		api_problem(c, 409, "conflict",
			    "TOTP is already enrolled; an administrator can reset it", NULL);
		return;
	}
	if (moat_totp_secret_new(secret) != MOAT_OK ||
	    moat_totp_base32(secret, sizeof(secret), b32, sizeof(b32)) != MOAT_OK ||
	    moat_totp_uri(secret, sizeof(secret), "Moat", c->who.name, uri, sizeof(uri)) !=
		MOAT_OK ||
	    moat_store_batch_new(&b) != MOAT_OK) {
		api_internal(c, MOAT_E_CRYPTO);
		return;
	}
	rc = totp_seal(c->api, "totp_pending", c->who.name, secret, sizeof(secret), sealed,
		       &sealed_len);
	sodium_memzero(secret, sizeof(secret));
	if (rc != MOAT_OK) {
		moat_store_batch_free(b);
		sodium_memzero(b32, sizeof(b32));
		sodium_memzero(uri, sizeof(uri));
		api_internal(c, rc);
		return;
	}
	v[0] = moat_val_text(c->who.name, strlen(c->who.name));
	v[1] = moat_val_blob(sealed, sealed_len);
	v[2] = moat_val_int(c->now);
	rc = moat_store_batch_add(b, AUTH_STMT(OP_SET_TOTP_PENDING), v, 3);
	if (rc != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	rc = api_audit(c, &b, "user.totp_begin", c->who.name, "ok", NULL);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	api_json(c, 200, json_pack("{s:s, s:s}", "secret", b32, "otpauth_uri", uri));
	sodium_memzero(b32, sizeof(b32));
	sodium_memzero(uri, sizeof(uri));
}

void api_me_totp_confirm(struct api_call *c)
{
	static const struct api_field f[] = {{"code", F_STRING, true, 1, 16}};
	char codes[MOAT_RECOVERY_CODES][MOAT_RECOVERY_CODE_LEN + 1];
	uint8_t seed[MOAT_TOTP_SECRET_MAX], sealed[MOAT_TOTP_STORED_MAX];
	size_t seed_len = 0, sealed_len = 0;
	struct api_operator op API_OPERATOR_WIPED;
	struct moat_store_batch *b = NULL;
	struct moat_val v[4];
	int64_t step = 0;
	json_t *arr;
	size_t i;
	moat_err rc;

	if (!api_validate(c, f, 1))
		return;
	if ((rc = api_operator_get(c->api, c->who.name, &op)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	if (op.totp_pending_len == 0) {
		api_problem(c, 409, "conflict", "no enrolment in progress: POST /api/v1/me/totp",
			    NULL);
		return;
	}
	rc = totp_open(c->api, "totp_pending", c->who.name, op.totp_pending, op.totp_pending_len,
		       seed, &seed_len);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	if (moat_totp_verify(seed, seed_len, api_str(c, "code"), c->now / 1000, 0, &step) !=
	    MOAT_OK) {
		sodium_memzero(seed, sizeof(seed));
		(void)api_audit(c, NULL, "user.totp_enrol", c->who.name, "failed",
				json_pack("{s:s}", "reason", "wrong code"));
		api_problem(c, 422, "validation", "wrong code; check the authenticator's clock",
			    "code");
		return;
	}
	/* The confirmed seed is sealed for its own column: the pending blob's
	 * associated data names totp_pending. */
	rc = totp_seal(c->api, "totp_secret", c->who.name, seed, seed_len, sealed, &sealed_len);
	sodium_memzero(seed, sizeof(seed));
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	if (moat_recovery_codes(codes, MOAT_RECOVERY_CODES) != MOAT_OK ||
	    moat_store_batch_new(&b) != MOAT_OK) {
		api_internal(c, MOAT_E_CRYPTO);
		return;
	}
	v[0] = moat_val_text(c->who.name, strlen(c->who.name));
	v[1] = moat_val_blob(sealed, sealed_len);
	v[2] = moat_val_int(step);
	v[3] = moat_val_int(c->now);
	rc = moat_store_batch_add(b, AUTH_STMT(OP_CONFIRM_TOTP), v, 4);
	if (rc == MOAT_OK)
		rc = moat_store_batch_add(b, AUTH_STMT(RECOVERY_DEL_ALL), v, 1);
	for (i = 0; rc == MOAT_OK && i < MOAT_RECOVERY_CODES; i++) {
		char norm[64];
		uint8_t rh[MOAT_SECRET_HASH_LEN];
		(void)moat_recovery_normalise(codes[i], norm, sizeof(norm));
		moat_secret_hash(norm, strlen(norm), rh);
		v[1] = moat_val_blob(rh, sizeof(rh));
		rc = moat_store_batch_add(b, AUTH_STMT(RECOVERY_PUT), v, 2);
	}
	if (rc == MOAT_OK) {
		v[0] = moat_val_blob(c->who.sess_hash, sizeof(c->who.sess_hash));
		v[1] = moat_val_int(1);
		rc = moat_store_batch_add(b, AUTH_STMT(SESS_SET_MFA), v, 2);
	}
	/* Sessions opened with the password alone end: the account now has a
	 * second factor they never showed. */
	if (rc == MOAT_OK) {
		v[0] = moat_val_text(c->who.name, strlen(c->who.name));
		v[1] = moat_val_text(c->who.sid, strlen(c->who.sid));
		rc = moat_store_batch_add(b, AUTH_STMT(SESS_DEL_OPERATOR), v, 2);
	}
	sodium_memzero(op.totp_pending, sizeof(op.totp_pending));
	if (rc != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	rc = api_audit(c, &b, "user.totp_enrol", c->who.name, "ok", NULL);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	arr = json_array();
	for (i = 0; i < MOAT_RECOVERY_CODES; i++)
		json_array_append_new(arr, json_string(codes[i]));
	sodium_memzero(codes, sizeof(codes));
	api_json(c, 200, json_pack("{s:o}", "recovery_codes", arr));
}

/* --- security events from the broker --- */

static void secev_add(struct moat_api *api, const char *action, const char *subject,
		      const char *peer, const char *detail, bool refusal)
{
	size_t i;

	if (api == NULL)
		return;
	pthread_mutex_lock(&api->sec_lock);
	for (i = 0; i < api->n_sec; i++) {
		if (strcmp(api->sec[i].action, action) == 0 &&
		    strcmp(api->sec[i].subject, subject ? subject : "") == 0 &&
		    api->sec[i].refusal == refusal &&
		    (!refusal || strcmp(api->sec[i].detail, detail) == 0)) {
			api->sec[i].count++;
			goto out;
		}
	}
	if (api->n_sec >= API_SECEV_MAX) {
		api->sec_dropped++;
		goto out;
	}
	{
		struct api_secev *e = &api->sec[api->n_sec++];
		snprintf(e->action, sizeof(e->action), "%s", action);
		snprintf(e->subject, sizeof(e->subject), "%s", subject ? subject : "");
		snprintf(e->peer, sizeof(e->peer), "%s", peer ? peer : "");
		snprintf(e->detail, sizeof(e->detail), "%s", detail ? detail : "");
		/* Device-chosen bytes: printable ASCII, so the JSON always forms. */
		for (i = 0; e->detail[i]; i++)
			if ((unsigned char)e->detail[i] < 0x20 ||
			    (unsigned char)e->detail[i] > 0x7e)
				e->detail[i] = '?';
		e->count = 1;
		e->refusal = refusal;
	}
out:
	pthread_mutex_unlock(&api->sec_lock);
}

void moat_api_security_event(struct moat_api *api, const char *action, const char *subject,
			     const char *peer, const char *detail)
{
	secev_add(api, action, subject, peer, detail, false);
}

void api_refusal_event(struct api_call *c, const char *action, const char *user, const char *reason)
{
	secev_add(c->api, action, api_name_valid(user) ? user : "<invalid user name>", c->req->peer,
		  reason, true);
}

void api_secev_flush(struct moat_api *api, bool force)
{
	static struct api_secev batch[API_SECEV_MAX];
	uint64_t now = moat_now_ms(), dropped;
	size_t n, i;

	if (!force && now - api->sec_window_start < MOAT_API_SECEV_WINDOW_MS)
		return;
	pthread_mutex_lock(&api->sec_lock);
	n = api->n_sec;
	memcpy(batch, api->sec, n * sizeof(batch[0]));
	dropped = api->sec_dropped;
	api->n_sec = 0;
	api->sec_dropped = 0;
	api->sec_window_start = now;
	pthread_mutex_unlock(&api->sec_lock);
	for (i = 0; i < n; i++) {
		struct moat_audit_event ev;
		json_t *d =
		    batch[i].refusal
			? json_pack("{s:I, s:s, s:s, s:s, s:I}", "count",
				    (json_int_t)batch[i].count, "first_peer", batch[i].peer,
				    "reason", batch[i].detail, "username", batch[i].subject,
				    "window_ms", (json_int_t)MOAT_API_SECEV_WINDOW_MS)
			: json_pack("{s:I, s:s, s:s, s:I}", "count", (json_int_t)batch[i].count,
				    "first_peer", batch[i].peer, "example", batch[i].detail,
				    "window_ms", (json_int_t)MOAT_API_SECEV_WINDOW_MS);
		char *ds = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		char actor[128];
		struct moat_store_batch *b = NULL;
		json_decref(d);
		if (batch[i].subject[0] && !batch[i].refusal)
			snprintf(actor, sizeof(actor), "device:%s", batch[i].subject);
		else
			snprintf(actor, sizeof(actor), "anonymous");
		ev.actor = actor;
		ev.action = batch[i].action;
		ev.target = batch[i].subject;
		ev.outcome = "denied";
		ev.peer = batch[i].peer;
		ev.detail = ds;
		(void)moat_audit_log_write(&api->audit, &b, &ev);
		free(ds);
	}
	if (dropped > 0) {
		struct moat_audit_event ev = {"system", "mqtt.events_dropped", "", "error", "",
					      NULL};
		struct moat_store_batch *b = NULL;
		char d[96];
		snprintf(d, sizeof(d), "{\"count\":%llu}", (unsigned long long)dropped);
		ev.detail = d;
		(void)moat_audit_log_write(&api->audit, &b, &ev);
	}
}
