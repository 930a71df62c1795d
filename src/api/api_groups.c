/* /api/v1/groups: groups and the policies attached to them; a policy
 * attached to a group applies to every member, ${group} being the group. */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "core/limits.h"
#include "registry/registry.h"
#include "registry/schema.h"

void api_groups_list(struct api_call *c)
{
	char cursor[80];
	struct moat_val v[2];
	size_t limit;

	if (!api_page(c, &limit, cursor, sizeof(cursor), NULL, 0))
		return;
	v[0] = moat_val_text(cursor, strlen(cursor));
	v[1] = moat_val_int((int64_t)limit + 1);
	api_reg_list(c, REG_STMT(GROUP_LIST), v, 2, api_reg_group_cb, api_reg_group_fill, limit,
		     "name");
}

void api_groups_create(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"name", F_STRING, true, 1, MOAT_DEVICE_ID_MAX},
	    {"description", F_STRING, false, 0, API_DESC_MAX},
	};
	const char *name, *desc;
	struct moat_reg_change ch = {0};
	struct moat_reg_ctx x;
	json_t *o = NULL;
	moat_err rc;

	if (!api_validate(c, f, 2))
		return;
	name = api_str(c, "name");
	desc = api_str(c, "description") ? api_str(c, "description") : "";
	if (!api_reg_name_ok(c, "group names", "name", name))
		return;
	rc = api_reg_group_load(c, name, &o);
	json_decref(o);
	o = NULL;
	if (rc == MOAT_OK) {
		api_problem(c, 409, "conflict", "a group with this name exists", "name");
		return;
	}
	if (rc != MOAT_E_NOTFOUND) {
		api_internal(c, rc);
		return;
	}
	api_reg_ctx(c, &x);
	if (!api_reg_done(c, moat_reg_group_create(&x, name, desc), &ch))
		return;
	if ((rc = api_reg_group_load(c, name, &o)) != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	api_reg_answer(c, 201, o);
}

void api_groups_get(struct api_call *c)
{
	json_t *o;

	if (api_reg_path_load(c, api_reg_group_load, "group", &o))
		api_reg_answer(c, 200, o);
}

void api_groups_delete(struct api_call *c)
{
	const char *name = c->params.v[0];
	struct moat_reg_change ch = {0};
	struct moat_reg_ctx x;
	json_t *o = NULL;

	if (!api_reg_path_load(c, api_reg_group_load, "group", &o))
		return;
	if (strcmp(name, API_BUILTIN_GROUP) == 0) {
		api_problem(c, 409, "conflict",
			    "the built-in group '" API_BUILTIN_GROUP "' cannot be deleted", NULL);
		goto out;
	}
	/* Members leave the group and its attachments go with it (the
	 * schema cascades); the service reads them first. */
	api_reg_ctx(c, &x);
	if (api_reg_done(c, moat_reg_group_delete(&x, name, &ch), &ch))
		api_no_content(c);
out:
	json_decref(o);
}

static void group_link(struct api_call *c, bool attach)
{
	static const struct api_field f[] = {{"policy", F_STRING, true, 1, MOAT_DEVICE_ID_MAX}};
	const char *group = c->params.v[0], *policy;
	struct moat_reg_change ch = {0};
	struct moat_reg_ctx x;
	char msg[400];
	json_t *o = NULL;
	bool has;
	moat_err rc;

	if (attach) {
		if (!api_validate(c, f, 1))
			return;
		policy = api_str(c, "policy");
		if (!api_reg_name_ok(c, "policy names", "policy", policy))
			return;
	} else {
		policy = c->params.v[1];
	}
	if (!api_reg_path_load(c, api_reg_group_load, "group", &o))
		return;
	if (attach && !api_reg_policy_exists(c, policy, "policy"))
		goto out;
	has = api_reg_names_has(json_object_get(o, "policies"), policy);
	if (attach && has) {
		snprintf(msg, sizeof(msg), "policy '%s' is already attached to group '%s'", policy,
			 group);
		api_problem(c, 409, "conflict", msg, "policy");
		goto out;
	}
	if (!attach && !has) {
		snprintf(msg, sizeof(msg), "policy '%s' is not attached to group '%s'", policy,
			 group);
		api_problem(c, 404, "not-found", msg, NULL);
		goto out;
	}
	api_reg_ctx(c, &x);
	rc = attach ? moat_reg_group_attach(&x, group, policy, &ch)
		    : moat_reg_group_detach(&x, group, policy, &ch);
	if (!api_reg_done(c, rc, &ch))
		goto out;
	if (!attach) {
		api_no_content(c);
		goto out;
	}
	json_decref(o);
	if ((rc = api_reg_group_load(c, group, &o)) != MOAT_OK) {
		o = NULL;
		api_internal(c, rc);
		goto out;
	}
	api_reg_answer(c, 200, o);
	o = NULL;
out:
	json_decref(o);
}

void api_groups_policy_attach(struct api_call *c)
{
	group_link(c, true);
}

void api_groups_policy_detach(struct api_call *c)
{
	group_link(c, false);
}
