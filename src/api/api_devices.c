/* /api/v1/devices: devices and service identities, their lifecycle, group
 * memberships and directly attached policies (api_registry.c has the
 * shared rows and helpers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "core/limits.h"
#include "registry/registry.h"
#include "registry/schema.h"

void api_devices_list(struct api_call *c)
{
	static const char *const extra[] = {"kind", "state", "expiring"};
	char cursor[80], kind[16], state[24], expiring[16];
	enum moat_id_state st;
	struct moat_val v[5];
	size_t limit;
	long days = 0;

	if (!api_page(c, &limit, cursor, sizeof(cursor), extra, 3) ||
	    !api_reg_query_opt(c, "kind", kind, sizeof(kind)) ||
	    !api_reg_query_opt(c, "state", state, sizeof(state)) ||
	    !api_reg_query_opt(c, "expiring", expiring, sizeof(expiring)))
		return;
	if (expiring[0] != '\0') {
		char *end;
		days = strtol(expiring, &end, 10);
		if (expiring[0] < '0' || expiring[0] > '9' || *end != '\0' || days < 1 ||
		    days > 3650) {
			api_problem(c, 400, "bad-request",
				    "expiring is a number of days from 1 to 3650: identities whose "
				    "certificate expires within them",
				    "expiring");
			return;
		}
	}
	if (kind[0] != '\0' && !moat_id_kind_valid(kind)) {
		api_problem(c, 400, "bad-request", "kind must be device or service", "kind");
		return;
	}
	if (state[0] != '\0' && !moat_id_state_parse(state, &st)) {
		api_problem(c, 400, "bad-request",
			    "state must be registered, active, disabled, quarantined or "
			    "decommissioned",
			    "state");
		return;
	}
	v[0] = moat_val_text(cursor, strlen(cursor));
	v[1] = kind[0] ? moat_val_text(kind, strlen(kind)) : moat_val_null();
	v[2] = state[0] ? moat_val_text(state, strlen(state)) : moat_val_null();
	v[3] = moat_val_int((int64_t)limit + 1);
	v[4] = days ? moat_val_int(c->now + (int64_t)days * 86400000) : moat_val_null();
	api_reg_list(c, REG_STMT(ID_LIST), v, 5, api_reg_identity_cb, api_reg_identity_fill, limit,
		     "id");
}

void api_devices_create(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"id", F_STRING, true, 1, MOAT_DEVICE_ID_MAX},
	    {"kind", F_STRING, false, 1, 16},
	    {"state", F_STRING, false, 1, 16},
	    {"groups", F_ARRAY, false, 0, MOAT_ACL_MAX_SOURCES},
	};
	const char *id, *kind, *state;
	enum moat_id_state st;
	json_t *groups, *g, *o = NULL;
	const char **names = NULL;
	struct moat_reg_change ch = {0};
	struct moat_reg_ctx x;
	bool replaces = false;
	char field[32];
	size_t i;
	moat_err rc;

	if (!api_validate(c, f, sizeof(f) / sizeof(f[0])))
		return;
	id = api_str(c, "id");
	kind = api_str(c, "kind") ? api_str(c, "kind") : "device";
	state = api_str(c, "state") ? api_str(c, "state") : "registered";
	if (!api_reg_name_ok(c, "device and service ids", "id", id))
		return;
	if (!moat_id_kind_valid(kind)) {
		api_problem(c, 422, "validation", "kind must be device or service", "kind");
		return;
	}
	if (!moat_id_state_parse(state, &st) ||
	    (st != MOAT_ID_REGISTERED && st != MOAT_ID_ACTIVE)) {
		api_problem(c, 422, "validation", "a new identity is registered or active",
			    "state");
		return;
	}
	groups = json_object_get(c->body, "groups");
	if (groups != NULL)
		groups = json_incref(groups);
	else if (strcmp(kind, "device") == 0)
		groups = json_pack("[s]", API_BUILTIN_GROUP);
	else
		groups = json_array();
	if (groups == NULL) {
		api_internal(c, MOAT_E_NOMEM);
		return;
	}
	json_array_foreach(groups, i, g)
	{
		snprintf(field, sizeof(field), "groups[%zu]", i);
		if (!api_reg_name_ok(c, "group names", field, json_string_value(g)) ||
		    !api_reg_group_exists(c, json_string_value(g), field))
			goto out;
	}
	rc = api_reg_identity_load(c, id, &o);
	if (rc == MOAT_OK) {
		const char *was = json_string_value(json_object_get(o, "state"));
		replaces = was != NULL && strcmp(was, "decommissioned") == 0;
		json_decref(o);
		o = NULL;
		if (!replaces) {
			api_problem(c, 409, "conflict", "an identity with this id exists", "id");
			goto out;
		}
	} else if (rc != MOAT_E_NOTFOUND) {
		api_internal(c, rc);
		goto out;
	}
	names = calloc(json_array_size(groups) + 1, sizeof(*names));
	if (names == NULL) {
		api_internal(c, MOAT_E_NOMEM);
		goto out;
	}
	json_array_foreach(groups, i, g)
	{
		names[i] = json_string_value(g);
	}
	api_reg_ctx(c, &x);
	if (!api_reg_done(
		c,
		moat_reg_register(&x, id, kind, st, names, json_array_size(groups), replaces, &ch),
		&ch))
		goto out;
	rc = api_reg_identity_load(c, id, &o);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		goto out;
	}
	api_reg_answer(c, 201, o);
	o = NULL;
out:
	free(names);
	json_decref(o);
	json_decref(groups);
}

void api_devices_get(struct api_call *c)
{
	json_t *o;

	if (api_reg_path_load(c, api_reg_identity_load, "device or service", &o))
		api_reg_answer(c, 200, o);
}

/* The identity's lifecycle state; false with an internal error answered. */
static bool identity_state(struct api_call *c, json_t *o, enum moat_id_state *st)
{
	const char *s = json_string_value(json_object_get(o, "state"));

	if (s != NULL && moat_id_state_parse(s, st))
		return true;
	api_internal(c, MOAT_E_CORRUPT);
	return false;
}

/* Memberships and attachments of a decommissioned identity never change
 * again: it is terminal. */
static bool not_decommissioned(struct api_call *c, json_t *o)
{
	enum moat_id_state st;
	char msg[320];

	if (!identity_state(c, o, &st))
		return false;
	if (st != MOAT_ID_DECOMMISSIONED)
		return true;
	snprintf(msg, sizeof(msg), "'%s' is decommissioned", c->params.v[0]);
	api_problem(c, 409, "conflict", msg, NULL);
	return false;
}

void api_devices_state(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"state", F_STRING, true, 1, 16},
	};
	enum moat_id_state from, to;
	struct moat_reg_change ch = {0};
	struct moat_reg_ctx x;
	const char *id = c->params.v[0];
	char msg[200];
	json_t *o = NULL;
	moat_err rc;

	if (!api_validate(c, f, 1))
		return;
	/* Decommissioning revokes certificates too: not a plain state change. */
	if (!moat_id_state_parse(api_str(c, "state"), &to) ||
	    (to != MOAT_ID_ACTIVE && to != MOAT_ID_DISABLED && to != MOAT_ID_QUARANTINED)) {
		api_problem(c, 422, "validation", "state must be active, disabled or quarantined",
			    "state");
		return;
	}
	if (!api_reg_path_load(c, api_reg_identity_load, "device or service", &o))
		return;
	if (!identity_state(c, o, &from))
		goto out;
	if (!moat_id_transition_ok(from, to)) {
		snprintf(msg, sizeof(msg), "'%s' cannot go from %s to %s", id,
			 moat_id_state_name(from), moat_id_state_name(to));
		api_problem(c, 409, "conflict", msg, "state");
		goto out;
	}
	api_reg_ctx(c, &x);
	if (!api_reg_done(c, moat_reg_set_state(&x, id, from, to, &ch), &ch))
		goto out;
	json_decref(o);
	if ((rc = api_reg_identity_load(c, id, &o)) != MOAT_OK) {
		o = NULL;
		api_internal(c, rc);
		goto out;
	}
	api_reg_answer(c, 200, o);
	o = NULL;
out:
	json_decref(o);
}

/* POST /devices/{id}/groups and /devices/{id}/policies: one membership or
 * attachment added. */
static void identity_link(struct api_call *c, bool policy)
{
	static const struct api_field fg[] = {{"group", F_STRING, true, 1, MOAT_DEVICE_ID_MAX}};
	static const struct api_field fp[] = {{"policy", F_STRING, true, 1, MOAT_DEVICE_ID_MAX}};
	const char *field = policy ? "policy" : "group", *id = c->params.v[0], *name;
	struct moat_reg_change ch = {0};
	struct moat_reg_ctx x;
	char msg[400];
	json_t *o = NULL;
	moat_err rc;

	if (!api_validate(c, policy ? fp : fg, 1))
		return;
	name = api_str(c, field);
	if (!api_reg_name_ok(c, policy ? "policy names" : "group names", field, name) ||
	    !api_reg_path_load(c, api_reg_identity_load, "device or service", &o))
		return;
	if (!not_decommissioned(c, o) || !(policy ? api_reg_policy_exists(c, name, field)
						  : api_reg_group_exists(c, name, field)))
		goto out;
	if (api_reg_names_has(json_object_get(o, policy ? "policies" : "groups"), name)) {
		if (policy)
			snprintf(msg, sizeof(msg), "policy '%s' is already attached to '%s'", name,
				 id);
		else
			snprintf(msg, sizeof(msg), "'%s' is already a member of group '%s'", id,
				 name);
		api_problem(c, 409, "conflict", msg, field);
		goto out;
	}
	api_reg_ctx(c, &x);
	rc = policy ? moat_reg_attach(&x, id, name, &ch) : moat_reg_group_add(&x, id, name, &ch);
	if (!api_reg_done(c, rc, &ch))
		goto out;
	json_decref(o);
	if ((rc = api_reg_identity_load(c, id, &o)) != MOAT_OK) {
		o = NULL;
		api_internal(c, rc);
		goto out;
	}
	api_reg_answer(c, 200, o);
	o = NULL;
out:
	json_decref(o);
}

/* DELETE /devices/{id}/groups/{group} and /devices/{id}/policies/{policy}. */
static void identity_unlink(struct api_call *c, bool policy)
{
	const char *id = c->params.v[0], *name = c->params.v[1];
	struct moat_reg_change ch = {0};
	struct moat_reg_ctx x;
	char msg[400];
	json_t *o = NULL;
	moat_err rc;

	if (!api_reg_path_load(c, api_reg_identity_load, "device or service", &o))
		return;
	if (!api_reg_names_has(json_object_get(o, policy ? "policies" : "groups"), name)) {
		if (policy)
			snprintf(msg, sizeof(msg), "policy '%s' is not attached to '%s'", name, id);
		else
			snprintf(msg, sizeof(msg), "'%s' is not a member of group '%s'", id, name);
		api_problem(c, 404, "not-found", msg, NULL);
		goto out;
	}
	api_reg_ctx(c, &x);
	rc = policy ? moat_reg_detach(&x, id, name, &ch) : moat_reg_group_remove(&x, id, name, &ch);
	if (api_reg_done(c, rc, &ch))
		api_no_content(c);
out:
	json_decref(o);
}

void api_devices_group_add(struct api_call *c)
{
	identity_link(c, false);
}

void api_devices_group_remove(struct api_call *c)
{
	identity_unlink(c, false);
}

void api_devices_policy_attach(struct api_call *c)
{
	identity_link(c, true);
}

void api_devices_policy_detach(struct api_call *c)
{
	identity_unlink(c, true);
}
