/* /api/v1/users: operators (create, list, show, change role, disable,
 * reset MFA). No route ever returns a password hash or TOTP secret. */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "auth/password.h"
#include "auth/schema.h"

struct list_ctx {
	json_t *items;
	size_t n;
	char last[80];
};

static moat_err list_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_auth_operator_list_row row;
	struct list_ctx *l = arg;
	struct api_operator op;
	char role[16];
	size_t n;

	if (moat_auth_operator_list_row_decode(cols, ncols, &row) != MOAT_OK ||
	    row.name.len >= sizeof(op.name))
		return MOAT_E_CORRUPT;
	memset(&op, 0, sizeof(op));
	memcpy(op.name, row.name.p, row.name.len);
	n = row.role.len < sizeof(role) - 1 ? row.role.len : sizeof(role) - 1;
	memcpy(role, row.role.p, n);
	role[n] = '\0';
	if (!api_role_parse(role, &op.role))
		return MOAT_E_CORRUPT;
	op.disabled = row.disabled.i != 0;
	op.totp_len = row.enrolled.i ? 1 : 0;
	op.created = row.created_at.i;
	op.updated = row.updated_at.i;
	json_array_append_new(l->items, api_operator_json(&op));
	snprintf(l->last, sizeof(l->last), "%s", op.name);
	l->n++;
	return MOAT_OK;
}

void api_users_list(struct api_call *c)
{
	struct list_ctx l;
	char cursor[80];
	size_t limit;
	struct moat_val v[2];
	moat_err rc;

	if (!api_page(c, &limit, cursor, sizeof(cursor), NULL, 0))
		return;
	memset(&l, 0, sizeof(l));
	l.items = json_array();
	v[0] = moat_val_text(cursor, strlen(cursor));
	v[1] = moat_val_int((int64_t)limit + 1);
	rc = moat_store_read(c->api->o.store, AUTH_STMT(OP_LIST), v, 2, list_cb, &l);
	if (rc != MOAT_OK) {
		json_decref(l.items);
		api_internal(c, rc);
		return;
	}
	api_page_answer(c, l.items, limit, "username");
}

static bool valid_user_name(struct api_call *c, const char *name)
{
	if (api_name_valid(name))
		return true;
	api_problem(c, 422, "validation",
		    "user names are 1-64 characters of a-z, 0-9, '.', '_' and '-', starting with "
		    "a letter or digit",
		    "username");
	return false;
}

/* Only a logged-in administrator who showed TOTP makes another one: never
 * an API token (a leaked token must not mint administrators), never a
 * password-only session. False with 403 answered and audited. */
static bool admin_maker(struct api_call *c, const char *action, const char *target,
			const struct api_operator *op)
{
	if (c->who.kind == AUTH_SESSION && c->who.role == ROLE_ADMIN && c->who.mfa_enrolled)
		return true;
	api_refuse(
	    c, 403, "forbidden",
	    c->who.kind == AUTH_TOKEN
		? "an API token cannot create or promote an administrator; log in as an "
		  "administrator with TOTP"
		: "creating or promoting an administrator needs an administrator's "
		  "session opened with TOTP",
	    "role", action, target, c->who.kind == AUTH_TOKEN ? "token" : "mfa",
	    op ? json_pack("{s:s, s:s}", "role_before", api_role_names[op->role], "role", "admin")
	       : json_pack("{s:s}", "role", "admin"));
	return false;
}

void api_users_create(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"username", F_STRING, true, 1, 64},
	    {"role", F_STRING, true, 1, 16},
	    {"password", F_STRING, true, 1, 1024},
	};
	char why[200], hash[MOAT_PASSWORD_HASH_MAX];
	const char *name, *pw;
	enum api_role role;
	struct api_operator op API_OPERATOR_WIPED;
	struct moat_store_batch *b = NULL;
	struct moat_val v[4];
	moat_err rc;

	if (!api_validate(c, f, 3))
		return;
	name = api_str(c, "username");
	pw = api_str(c, "password");
	if (!valid_user_name(c, name))
		return;
	if (!api_role_parse(api_str(c, "role"), &role) || role == ROLE_METRICS) {
		api_problem(c, 422, "validation", "role must be admin, operator, auditor or viewer",
			    "role");
		return;
	}
	if (role == ROLE_ADMIN && !admin_maker(c, "user.create", name, NULL))
		return;
	rc = api_operator_get(c->api, name, &op);
	if (rc == MOAT_OK) {
		api_problem(c, 409, "conflict", "an operator with this name exists", "username");
		return;
	}
	if (rc != MOAT_E_NOTFOUND) {
		api_internal(c, rc);
		return;
	}
	if (moat_password_check_policy(pw, strlen(pw), name, why, sizeof(why)) != MOAT_OK) {
		api_problem(c, 422, "validation", why, "password");
		return;
	}
	if ((rc = moat_password_hash(pw, strlen(pw), hash)) != MOAT_OK ||
	    (rc = moat_store_batch_new(&b)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	v[0] = moat_val_text(name, strlen(name));
	v[1] = moat_val_text(api_role_names[role], strlen(api_role_names[role]));
	v[2] = moat_val_text(hash, strlen(hash));
	v[3] = moat_val_int(c->now);
	if ((rc = moat_store_batch_add(b, AUTH_STMT(OP_INSERT), v, 4)) != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	rc = api_audit(c, &b, "user.create", name, "ok",
		       json_pack("{s:s}", "role", api_role_names[role]));
	if (rc != MOAT_OK || (rc = api_operator_get(c->api, name, &op)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	api_json(c, 201, api_operator_json(&op));
}

/* The operator named by the path, or a 404 answered. */
static bool path_operator(struct api_call *c, struct api_operator *op)
{
	moat_err rc = api_operator_get(c->api, c->params.v[0], op);

	if (rc == MOAT_E_NOTFOUND) {
		api_problem(c, 404, "not-found", "no such operator", NULL);
		return false;
	}
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return false;
	}
	return true;
}

void api_users_get(struct api_call *c)
{
	struct api_operator op API_OPERATOR_WIPED;

	if (path_operator(c, &op))
		api_json(c, 200, api_operator_json(&op));
}

void api_users_patch(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"role", F_STRING, false, 1, 16},
	    {"disabled", F_BOOL, false, 0, 0},
	};
	struct api_operator op API_OPERATOR_WIPED;
	struct moat_store_batch *b = NULL;
	struct moat_val v[3];
	enum api_role role;
	const char *rs;
	json_t *dj, *detail;
	bool disabled;
	int64_t admins = 0;
	moat_err rc = MOAT_OK;

	if (!api_validate(c, f, 2) || !path_operator(c, &op))
		return;
	rs = api_str(c, "role");
	dj = json_object_get(c->body, "disabled");
	if (rs == NULL && dj == NULL) {
		api_problem(c, 422, "validation", "send role and/or disabled", NULL);
		return;
	}
	role = op.role;
	if (rs != NULL && (!api_role_parse(rs, &role) || role == ROLE_METRICS)) {
		api_problem(c, 422, "validation", "role must be admin, operator, auditor or viewer",
			    "role");
		return;
	}
	disabled = dj ? json_is_true(dj) : op.disabled;
	if (role == ROLE_ADMIN && op.role != ROLE_ADMIN &&
	    !admin_maker(c, "user.update", op.name, &op))
		return;
	if (strcmp(op.name, c->who.name) == 0 && c->who.kind == AUTH_SESSION &&
	    (disabled || role != ROLE_ADMIN)) {
		api_refuse(
		    c, 409, "conflict",
		    "you cannot disable or demote yourself; ask another administrator", NULL,
		    "user.update", op.name, "self",
		    json_pack("{s:s, s:b}", "role", api_role_names[role], "disabled", disabled));
		return;
	}
	if (op.role == ROLE_ADMIN && !op.disabled && (role != ROLE_ADMIN || disabled)) {
		v[0] = moat_val_text("admin", 5);
		rc = moat_store_read_int(c->api->o.store, AUTH_STMT(OP_COUNT), v, 1, &admins);
		if (rc != MOAT_OK) {
			api_internal(c, rc);
			return;
		}
		if (admins <= 1) {
			api_refuse(c, 409, "conflict", "this is the last enabled administrator",
				   NULL, "user.update", op.name, "last-admin",
				   json_pack("{s:s, s:b}", "role", api_role_names[role], "disabled",
					     disabled));
			return;
		}
	}
	if ((rc = moat_store_batch_new(&b)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	v[0] = moat_val_text(op.name, strlen(op.name));
	v[2] = moat_val_int(c->now);
	if (role != op.role) {
		v[1] = moat_val_text(api_role_names[role], strlen(api_role_names[role]));
		rc = moat_store_batch_add(b, AUTH_STMT(OP_SET_ROLE), v, 3);
	}
	if (rc == MOAT_OK && disabled != op.disabled) {
		v[1] = moat_val_int(disabled ? 1 : 0);
		rc = moat_store_batch_add(b, AUTH_STMT(OP_SET_DISABLED), v, 3);
	}
	/* A changed role or a disabled account: its sessions end now. */
	if (rc == MOAT_OK && (role != op.role || (disabled && !op.disabled))) {
		v[1] = moat_val_null();
		rc = moat_store_batch_add(b, AUTH_STMT(SESS_DEL_OPERATOR), v, 2);
	}
	if (rc != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	detail =
	    json_pack("{s:s, s:s, s:b, s:b}", "role_before", api_role_names[op.role], "role",
		      api_role_names[role], "disabled_before", op.disabled, "disabled", disabled);
	rc = api_audit(c, &b, "user.update", op.name, "ok", detail);
	if (rc != MOAT_OK || (rc = api_operator_get(c->api, c->params.v[0], &op)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	api_json(c, 200, api_operator_json(&op));
}

void api_users_reset_mfa(struct api_call *c)
{
	struct api_operator op API_OPERATOR_WIPED;
	struct moat_store_batch *b = NULL;
	struct moat_val v[2];
	moat_err rc;

	if (!api_validate(c, NULL, 0) || !path_operator(c, &op))
		return;
	if ((rc = moat_store_batch_new(&b)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	v[0] = moat_val_text(op.name, strlen(op.name));
	v[1] = moat_val_int(c->now);
	rc = moat_store_batch_add(b, AUTH_STMT(OP_RESET_MFA), v, 2);
	if (rc == MOAT_OK)
		rc = moat_store_batch_add(b, AUTH_STMT(RECOVERY_DEL_ALL), v, 1);
	v[1] = moat_val_null();
	if (rc == MOAT_OK)
		rc = moat_store_batch_add(b, AUTH_STMT(SESS_DEL_OPERATOR), v, 2);
	if (rc != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	rc = api_audit(c, &b, "user.reset_mfa", op.name, "ok", NULL);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	api_no_content(c);
}
