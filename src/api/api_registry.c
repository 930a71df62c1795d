/*
 * The device registry (migration 3) over the management API: the rows and
 * helpers that api_devices.c, api_groups.c and api_policies.c share.
 * Devices and services share one namespace of identities; a policy reaches
 * an identity through a group it is a member of, or by a direct
 * attachment. Handlers validate and answer; every write goes through the
 * registry service (src/registry/service.c), which commits it with its
 * audit entry and names the identities it touched; api_reg_done announces
 * them to the broker.
 *
 * Requests are handled one at a time on the API thread, so what a handler
 * checks before it writes (the group exists, the policy is not built in,
 * the membership is new) is what the statements find when they run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "registry/registry.h"
#include "registry/schema.h"

/* ------------------------------------------------------------------ */
/* rows                                                                */

static json_t *col_text(const struct moat_val *v)
{
	json_t *s = NULL;

	if (v->type == MOAT_VAL_TEXT)
		s = json_stringn((const char *)v->p, v->len);
	return s != NULL ? s : json_null();
}

static json_t *col_time(const struct moat_val *v)
{
	return api_time(v->type == MOAT_VAL_INT ? v->i : 0);
}

static bool col_is(const struct moat_val *v, const char *s)
{
	return v->type == MOAT_VAL_TEXT && v->len == strlen(s) && memcmp(v->p, s, v->len) == 0;
}

static moat_err append(json_t *arr, json_t *o)
{
	return o != NULL && json_array_append_new(arr, o) == 0 ? MOAT_OK : MOAT_E_NOMEM;
}

/* Names (MEMBERS_OF, ATTACHED_TO_*). */
static moat_err names_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_val name;
	moat_err rc = moat_reg_name_row_decode(cols, ncols, &name);

	return rc != MOAT_OK ? rc : append(arg, col_text(&name));
}

static moat_err names_of(struct api_call *c, struct moat_stmt st, const char *key, json_t **out)
{
	json_t *arr = json_array();
	struct moat_val v = moat_val_text(key, strlen(key));
	moat_err rc;

	*out = NULL;
	if (arr == NULL)
		return MOAT_E_NOMEM;
	rc = moat_store_read(c->api->o.store, st, &v, 1, names_cb, arr);
	if (rc != MOAT_OK) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return MOAT_OK;
}

bool api_reg_names_has(json_t *arr, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), name) == 0)
			return true;
	}
	return false;
}

/* ID_GET / ID_LIST */
moat_err api_reg_identity_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_identity_row r;
	moat_err rc = moat_reg_identity_row_decode(cols, ncols, &r);

	if (rc != MOAT_OK)
		return rc;
	return append(
	    arg,
	    json_pack("{s:o, s:o, s:o, s:[], s:[], s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id",
		      col_text(&r.id), "kind", col_text(&r.kind), "state", col_text(&r.state),
		      "groups", "policies", "created_at", col_time(&r.created_at), "updated_at",
		      col_time(&r.updated_at), "first_seen", col_time(&r.first_seen), "last_seen",
		      col_time(&r.last_seen), "last_addr", col_text(&r.last_addr), "firmware",
		      col_text(&r.firmware), "cert_expires_at", col_time(&r.cert_expires_at)));
}

/* GROUP_GET / GROUP_LIST */
moat_err api_reg_group_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_group_row r;
	moat_err rc = moat_reg_group_row_decode(cols, ncols, &r);

	if (rc != MOAT_OK)
		return rc;
	return append(arg, json_pack("{s:o, s:o, s:b, s:I, s:[], s:o}", "name", col_text(&r.name),
				     "description", col_text(&r.description), "builtin",
				     col_is(&r.name, API_BUILTIN_GROUP), "members",
				     (json_int_t)r.members.i, "policies", "created_at",
				     col_time(&r.created_at)));
}

/* POLICY_GET / POLICY_LIST: the rules are one per line. */
moat_err api_reg_policy_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_policy_row r;
	json_t *rules;
	const char *p, *end, *nl;
	moat_err rc = moat_reg_policy_row_decode(cols, ncols, &r);

	if (rc != MOAT_OK)
		return rc;
	rules = json_array();
	if (rules == NULL)
		return MOAT_E_NOMEM;
	p = r.rules.p;
	end = p + r.rules.len;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if (nl > p &&
		    json_array_append_new(rules, json_stringn(p, (size_t)(nl - p))) != 0) {
			json_decref(rules);
			return MOAT_E_NOMEM;
		}
		p = nl + 1;
	}
	return append(arg,
		      json_pack("{s:o, s:o, s:o, s:b, s:o, s:o}", "name", col_text(&r.name),
				"description", col_text(&r.description), "rules", rules, "builtin",
				r.builtin.i != 0, "created_at", col_time(&r.created_at),
				"updated_at", col_time(&r.updated_at)));
}

/* Rows of st into a new array. */
static moat_err read_rows(struct api_call *c, struct moat_stmt st, const struct moat_val *v,
			  size_t n, moat_store_row_cb cb, json_t **out)
{
	json_t *arr = json_array();
	moat_err rc;

	*out = NULL;
	if (arr == NULL)
		return MOAT_E_NOMEM;
	rc = moat_store_read(c->api->o.store, st, v, n, cb, arr);
	if (rc != MOAT_OK) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return MOAT_OK;
}

/* The one row st finds for key, or MOAT_E_NOTFOUND. */
static moat_err read_one(struct api_call *c, struct moat_stmt st, moat_store_row_cb cb,
			 const char *key, json_t **out)
{
	struct moat_val v = moat_val_text(key, strlen(key));
	json_t *arr;
	moat_err rc;

	*out = NULL;
	if ((rc = read_rows(c, st, &v, 1, cb, &arr)) != MOAT_OK)
		return rc;
	if (json_array_size(arr) == 0) {
		json_decref(arr);
		return MOAT_E_NOTFOUND;
	}
	*out = json_incref(json_array_get(arr, 0));
	json_decref(arr);
	return MOAT_OK;
}

/* The names of a row (its groups and directly attached policies, or a
 * group's policies), read after the row: reads never nest. */
moat_err api_reg_identity_fill(struct api_call *c, json_t *o)
{
	const char *id = json_string_value(json_object_get(o, "id"));
	json_t *g = NULL, *p = NULL;
	moat_err rc;

	if (id == NULL)
		return MOAT_E_CORRUPT;
	if ((rc = names_of(c, REG_STMT(MEMBERS_OF), id, &g)) != MOAT_OK)
		return rc;
	if ((rc = names_of(c, REG_STMT(ATTACHED_TO_ID), id, &p)) != MOAT_OK) {
		json_decref(g);
		return rc;
	}
	json_object_set_new(o, "groups", g);
	json_object_set_new(o, "policies", p);
	return MOAT_OK;
}

moat_err api_reg_group_fill(struct api_call *c, json_t *o)
{
	const char *name = json_string_value(json_object_get(o, "name"));
	json_t *p = NULL;
	moat_err rc;

	if (name == NULL)
		return MOAT_E_CORRUPT;
	if ((rc = names_of(c, REG_STMT(ATTACHED_TO_GROUP), name, &p)) != MOAT_OK)
		return rc;
	json_object_set_new(o, "policies", p);
	return MOAT_OK;
}

moat_err api_reg_identity_load(struct api_call *c, const char *id, json_t **out)
{
	moat_err rc = read_one(c, REG_STMT(ID_GET), api_reg_identity_cb, id, out);

	if (rc == MOAT_OK && (rc = api_reg_identity_fill(c, *out)) != MOAT_OK) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

moat_err api_reg_group_load(struct api_call *c, const char *name, json_t **out)
{
	moat_err rc = read_one(c, REG_STMT(GROUP_GET), api_reg_group_cb, name, out);

	if (rc == MOAT_OK && (rc = api_reg_group_fill(c, *out)) != MOAT_OK) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

moat_err api_reg_policy_load(struct api_call *c, const char *name, json_t **out)
{
	return read_one(c, REG_STMT(POLICY_GET), api_reg_policy_cb, name, out);
}

/* ------------------------------------------------------------------ */
/* answers                                                             */

/* The thing the path names, or false with 404 (or an internal error)
 * answered. what: "device or service", "group", "policy". */
bool api_reg_path_load(struct api_call *c,
		       moat_err (*load)(struct api_call *, const char *, json_t **),
		       const char *what, json_t **out)
{
	char msg[200];
	moat_err rc = load(c, c->params.v[0], out);

	if (rc == MOAT_OK)
		return true;
	if (rc == MOAT_E_NOTFOUND) {
		snprintf(msg, sizeof(msg), "there is no %s '%s'", what, c->params.v[0]);
		api_problem(c, 404, "not-found", msg, NULL);
	} else {
		api_internal(c, rc);
	}
	return false;
}

/* Answer o (taken): a row loaded after the change committed. */
void api_reg_answer(struct api_call *c, int status, json_t *o)
{
	if (o == NULL)
		api_internal(c, MOAT_E_NOMEM);
	else
		api_json(c, status, o);
}

/* Names of groups and policies follow the device-id rules. */
bool api_reg_name_ok(struct api_call *c, const char *what, const char *field, const char *s)
{
	char msg[200];

	if (s != NULL && api_name_valid(s))
		return true;
	snprintf(msg, sizeof(msg),
		 "%s are 1-64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or "
		 "digit",
		 what);
	api_problem(c, 422, "validation", msg, field);
	return false;
}

/* A reference in the body to a group or policy that must exist: false
 * with 422 naming the field when it does not. */
static bool ref_exists(struct api_call *c, struct moat_stmt st, moat_store_row_cb cb,
		       const char *what, const char *name, const char *field)
{
	char msg[200];
	json_t *o = NULL;
	moat_err rc = read_one(c, st, cb, name, &o);

	json_decref(o);
	if (rc == MOAT_OK)
		return true;
	if (rc == MOAT_E_NOTFOUND) {
		snprintf(msg, sizeof(msg), "there is no %s '%s'", what, name);
		api_problem(c, 422, "validation", msg, field);
	} else {
		api_internal(c, rc);
	}
	return false;
}

bool api_reg_group_exists(struct api_call *c, const char *name, const char *field)
{
	return ref_exists(c, REG_STMT(GROUP_GET), api_reg_group_cb, "group", name, field);
}

bool api_reg_policy_exists(struct api_call *c, const char *name, const char *field)
{
	return ref_exists(c, REG_STMT(POLICY_GET), api_reg_policy_cb, "policy", name, field);
}

void api_reg_ctx(struct api_call *c, struct moat_reg_ctx *x)
{
	memset(x, 0, sizeof(*x));
	x->store = c->api->o.store;
	x->audit = &c->api->audit;
	x->actor = c->who.actor[0] ? c->who.actor : "anonymous";
	x->peer = c->req->peer ? c->req->peer : "";
	x->now = c->now;
}

bool api_reg_done(struct api_call *c, moat_err rc, struct moat_reg_change *ch)
{
	if (rc != MOAT_OK) {
		moat_reg_change_clear(ch);
		api_internal(c, rc);
		return false;
	}
	/* A revocation or a decommission changes the CRL: the cached one is
	 * stale after any committed registry change. */
	c->api->reg_gen++;
	if ((ch->n > 0 || ch->builtin) && c->api->o.registry_changed != NULL)
		c->api->o.registry_changed(c->api->o.registry_arg, ch);
	moat_reg_change_clear(ch);
	return true;
}

/* An optional query parameter; "" when absent. False (400 answered) when
 * it is malformed or too long. */
bool api_reg_query_opt(struct api_call *c, const char *key, char *out, size_t len)
{
	char msg[80];
	moat_err rc = moat_http_query_get(c->req->query, key, out, len);

	if (rc == MOAT_OK)
		return true;
	if (rc == MOAT_E_NOTFOUND) {
		out[0] = '\0';
		return true;
	}
	snprintf(msg, sizeof(msg), "bad %s", key);
	api_problem(c, 400, "bad-request", msg, key);
	return false;
}

/* A page of rows of st (limit + 1 asked for), each filled in, answered. */
void api_reg_list(struct api_call *c, struct moat_stmt st, const struct moat_val *v, size_t n,
		  moat_store_row_cb cb, moat_err (*fill)(struct api_call *, json_t *), size_t limit,
		  const char *cursor_field)
{
	json_t *items = NULL;
	size_t i;
	moat_err rc = read_rows(c, st, v, n, cb, &items);

	/* The extra row only says there is a next page; it is dropped. */
	for (i = 0; rc == MOAT_OK && fill != NULL && i < json_array_size(items) && i < limit; i++)
		rc = fill(c, json_array_get(items, i));
	if (rc != MOAT_OK) {
		json_decref(items);
		api_internal(c, rc);
		return;
	}
	api_page_answer(c, items, limit, cursor_field);
}
