/* /api/v1/tokens: API tokens for automation. The secret is returned once,
 * stored as its SHA-256; a token's role never exceeds its creator's. */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "api/internal.h"
#include "auth/schema.h"

struct tok_list {
	json_t *items;
	size_t n;
};

static json_t *token_json(const struct moat_auth_token_row *r)
{
	char id[80], name[80], role[16], creator[96];
	size_t i;
	char *dst[4] = {id, name, role, creator};
	size_t len[4] = {sizeof(id), sizeof(name), sizeof(role), sizeof(creator)};
	const struct moat_val *src[4] = {&r->id, &r->name, &r->role, &r->creator};

	for (i = 0; i < 4; i++) {
		size_t n = src[i]->type == MOAT_VAL_TEXT ? src[i]->len : 0;
		if (n >= len[i])
			n = len[i] - 1;
		if (n)
			memcpy(dst[i], src[i]->p, n);
		dst[i][n] = '\0';
	}
	return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:b, s:o}", "id", id, "name", name,
			 "role", role, "creator", creator, "created_at", api_time(r->created_at.i),
			 "expires_at", api_time(r->expires_at.i), "last_used",
			 api_time(r->last_used.type == MOAT_VAL_INT ? r->last_used.i : 0),
			 "revoked", r->revoked_at.type != MOAT_VAL_NULL, "revoked_at",
			 api_time(r->revoked_at.type == MOAT_VAL_INT ? r->revoked_at.i : 0));
}

static moat_err list_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_auth_token_row row;
	struct tok_list *l = arg;

	if (moat_auth_token_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	json_array_append_new(l->items, token_json(&row));
	l->n++;
	return MOAT_OK;
}

void api_tokens_list(struct api_call *c)
{
	struct tok_list l = {json_array(), 0};
	char cursor[80];
	size_t limit;
	struct moat_val v[2];
	moat_err rc;

	if (!api_page(c, &limit, cursor, sizeof(cursor), NULL, 0)) {
		json_decref(l.items);
		return;
	}
	v[0] = moat_val_text(cursor, strlen(cursor));
	v[1] = moat_val_int((int64_t)limit + 1);
	rc = moat_store_read(c->api->o.store, AUTH_STMT(TOKEN_LIST), v, 2, list_cb, &l);
	if (rc != MOAT_OK) {
		json_decref(l.items);
		api_internal(c, rc);
		return;
	}
	api_page_answer(c, l.items, limit, "id");
}

/* May the caller hand out (or take back) a token of role r? */
static bool within_caller(const struct api_call *c, enum api_role r)
{
	unsigned want = api_role_perms(r) & ~(unsigned)P_SELF;
	unsigned have = c->who.perms & ~(unsigned)P_SELF;

	return (want & ~have) == 0;
}

static moat_err one_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_auth_token_row row;
	json_t **out = arg;

	if (moat_auth_token_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	*out = token_json(&row);
	return MOAT_OK;
}

void api_tokens_create(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"name", F_STRING, true, 1, 64},
	    {"role", F_STRING, true, 1, 16},
	    {"expires_in_days", F_INT, false, 1, MOAT_API_TOKEN_DAYS_MAX},
	};
	char secret[8 + MOAT_SECRET_TOKEN_B64_LEN + 1], id[24];
	uint8_t h[MOAT_SECRET_HASH_LEN];
	const char *name;
	enum api_role role;
	long long days;
	int64_t expires;
	struct moat_store_batch *b = NULL;
	struct moat_val v[7];
	json_t *tok = NULL;
	moat_err rc;

	if (!api_validate(c, f, 3))
		return;
	name = api_str(c, "name");
	if (c->who.kind != AUTH_SESSION) {
		api_refuse(c, 403, "forbidden",
			   "tokens are created by a logged-in operator, not by another token", NULL,
			   "token.create", name, "token",
			   json_pack("{s:s, s:s}", "name", name, "role", api_str(c, "role")));
		return;
	}
	if (!api_role_parse(api_str(c, "role"), &role)) {
		api_problem(c, 422, "validation",
			    "role must be admin, operator, auditor, viewer or metrics", "role");
		return;
	}
	if (!within_caller(c, role)) {
		api_refuse(c, 403, "forbidden", "a token cannot have more rights than its creator",
			   "role", "token.create", name, "role",
			   json_pack("{s:s, s:s}", "name", name, "role", api_role_names[role]));
		return;
	}
	days = api_int(c, "expires_in_days", MOAT_API_TOKEN_DAYS_DEFAULT);
	expires = c->now + (int64_t)days * 86400000;
	if (moat_secret_token("moat_at_", secret, sizeof(secret)) != MOAT_OK ||
	    (rc = moat_store_batch_new(&b)) != MOAT_OK) {
		api_internal(c, MOAT_E_CRYPTO);
		return;
	}
	moat_secret_hash(secret, strlen(secret), h);
	(void)moat_secret_hex(h, 8, id, sizeof(id));
	v[0] = moat_val_text(id, strlen(id));
	v[1] = moat_val_blob(h, sizeof(h));
	v[2] = moat_val_text(name, strlen(name));
	v[3] = moat_val_text(api_role_names[role], strlen(api_role_names[role]));
	v[4] = moat_val_text(c->who.actor, strlen(c->who.actor));
	v[5] = moat_val_int(c->now);
	v[6] = moat_val_int(expires);
	if ((rc = moat_store_batch_add(b, AUTH_STMT(TOKEN_PUT), v, 7)) != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	rc = api_audit(c, &b, "token.create", id, "ok",
		       json_pack("{s:s, s:s, s:I}", "name", name, "role", api_role_names[role],
				 "expires_in_days", (json_int_t)days));
	v[0] = moat_val_text(id, strlen(id));
	if (rc == MOAT_OK)
		rc = moat_store_read(c->api->o.store, AUTH_STMT(TOKEN_GET), v, 1, one_cb, &tok);
	if (rc != MOAT_OK || tok == NULL) {
		sodium_memzero(secret, sizeof(secret));
		api_internal(c, rc != MOAT_OK ? rc : MOAT_E_INTERNAL);
		return;
	}
	json_object_set_new(tok, "token", json_string(secret));
	sodium_memzero(secret, sizeof(secret));
	api_json(c, 201, tok);
}

void api_tokens_delete(struct api_call *c)
{
	struct moat_val v[2];
	struct moat_store_batch *b = NULL;
	json_t *tok = NULL;
	enum api_role role;
	moat_err rc;

	v[0] = moat_val_text(c->params.v[0], strlen(c->params.v[0]));
	rc = moat_store_read(c->api->o.store, AUTH_STMT(TOKEN_GET), v, 1, one_cb, &tok);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	if (tok == NULL) {
		api_problem(c, 404, "not-found", "no such token", NULL);
		return;
	}
	if (!api_role_parse(json_string_value(json_object_get(tok, "role")), &role) ||
	    !within_caller(c, role)) {
		json_t *d = json_pack("{s:O}", "role", json_object_get(tok, "role"));
		json_decref(tok);
		api_refuse(c, 403, "forbidden", "this token has more rights than you", NULL,
			   "token.revoke", c->params.v[0], "role", d);
		return;
	}
	json_decref(tok);
	v[1] = moat_val_int(c->now);
	if ((rc = moat_store_batch_new(&b)) != MOAT_OK ||
	    (rc = moat_store_batch_add(b, AUTH_STMT(TOKEN_REVOKE), v, 2)) != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	rc = api_audit(c, &b, "token.revoke", c->params.v[0], "ok", NULL);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	api_no_content(c);
}
