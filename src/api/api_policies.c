/* /api/v1/policies: named lists of topic rules (src/registry/acl.h),
 * stored one canonical rule per line. Built-in policies are read-only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "core/limits.h"
#include "registry/registry.h"
#include "registry/schema.h"

_Static_assert(API_POLICY_BODY_MAX <= MOAT_HTTP_BODY_MAX, "policy body within the HTTP cap");
_Static_assert(API_POLICY_BODY_MAX >= MOAT_POLICY_MAX_RULES * (2u * MOAT_RULE_TEXT_MAX + 8u) +
					  2u * API_DESC_MAX + 256u,
	       "a policy of MOAT_POLICY_MAX_RULES longest rules fits the body cap");

void api_policies_list(struct api_call *c)
{
	char cursor[80];
	struct moat_val v[2];
	size_t limit;

	if (!api_page(c, &limit, cursor, sizeof(cursor), NULL, 0))
		return;
	v[0] = moat_val_text(cursor, strlen(cursor));
	v[1] = moat_val_int((int64_t)limit + 1);
	api_reg_list(c, REG_STMT(POLICY_LIST), v, 2, api_reg_policy_cb, NULL, limit, "name");
}

void api_policies_get(struct api_call *c)
{
	json_t *o;

	if (api_reg_path_load(c, api_reg_policy_load, "policy", &o))
		api_reg_answer(c, 200, o);
}

static bool has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return true;
	return false;
}

/*
 * The rules of the body in their stored form: each parsed (the parser's
 * sentence and the item's index on failure), written back in canonical text
 * and joined by newlines, which is why a rule may hold no control
 * character. *text is malloc'd; *formatted lists the canonical rules.
 */
static bool rules_parse(struct api_call *c, json_t *rules, char **text, json_t **formatted)
{
	char field[32], why[200];
	struct moat_rule r;
	size_t i, pos = 0, cap = json_array_size(rules) * (MOAT_RULE_TEXT_MAX + 1) + 1;
	char *t = malloc(cap);
	json_t *fmt = json_array(), *item;

	if (t == NULL || fmt == NULL) {
		api_internal(c, MOAT_E_NOMEM);
		goto fail;
	}
	json_array_foreach(rules, i, item)
	{
		const char *s = json_string_value(item);
		size_t n;

		snprintf(field, sizeof(field), "rules[%zu]", i);
		if (s == NULL || strlen(s) != json_string_length(item)) {
			api_problem(c, 422, "validation", "a rule is a string (no NUL characters)",
				    field);
			goto fail;
		}
		if (has_control(s)) {
			api_problem(c, 422, "validation",
				    "a rule must not contain control characters", field);
			goto fail;
		}
		if (moat_rule_parse(s, &r, why, sizeof(why)) != MOAT_OK) {
			api_problem(c, 422, "validation", why[0] ? why : "not a valid rule", field);
			goto fail;
		}
		n = moat_rule_format(&r, t + pos, cap - pos);
		if (n == 0 || n > MOAT_RULE_TEXT_MAX || n >= cap - pos ||
		    json_array_append_new(fmt, json_stringn(t + pos, n)) != 0) {
			api_internal(c, MOAT_E_INTERNAL);
			goto fail;
		}
		pos += n;
		t[pos++] = '\n';
	}
	t[pos > 0 ? pos - 1 : 0] = '\0';
	*text = t;
	*formatted = fmt;
	return true;
fail:
	free(t);
	json_decref(fmt);
	return false;
}

void api_policies_put(struct api_call *c)
{
	static const struct api_field f[] = {
	    {"description", F_STRING, false, 0, API_DESC_MAX},
	    {"rules", F_ARRAY, true, 1, MOAT_POLICY_MAX_RULES},
	};
	const char *name = c->params.v[0], *desc;
	struct moat_reg_change ch = {0};
	struct moat_reg_ctx x;
	char *text = NULL, msg[320];
	json_t *old = NULL, *fmt = NULL, *o = NULL;
	bool created;
	moat_err rc;

	if (!api_validate(c, f, 2) || !api_reg_name_ok(c, "policy names", "name", name))
		return;
	rc = api_reg_policy_load(c, name, &old);
	if (rc != MOAT_OK && rc != MOAT_E_NOTFOUND) {
		api_internal(c, rc);
		return;
	}
	created = rc == MOAT_E_NOTFOUND;
	if (!created && json_is_true(json_object_get(old, "builtin"))) {
		snprintf(msg, sizeof(msg), "the built-in policy '%s' is read-only", name);
		api_problem(c, 409, "conflict", msg, NULL);
		goto out;
	}
	if (!rules_parse(c, json_object_get(c->body, "rules"), &text, &fmt))
		goto out;
	/* Without a description a replacement keeps the one it had. */
	desc = api_str(c, "description");
	if (desc == NULL)
		desc = created ? "" : json_string_value(json_object_get(old, "description"));
	if (desc == NULL)
		desc = "";
	api_reg_ctx(c, &x);
	if (!api_reg_done(c, moat_reg_policy_put(&x, name, desc, text, created, &ch), &ch))
		goto out;
	if ((rc = api_reg_policy_load(c, name, &o)) != MOAT_OK) {
		api_internal(c, rc);
		goto out;
	}
	api_reg_answer(c, created ? 201 : 200, o);
out:
	free(text);
	json_decref(fmt);
	json_decref(old);
}

void api_policies_delete(struct api_call *c)
{
	const char *name = c->params.v[0];
	struct moat_reg_change ch = {0};
	struct moat_reg_ctx x;
	char msg[320];
	json_t *o = NULL;

	if (!api_reg_path_load(c, api_reg_policy_load, "policy", &o))
		return;
	if (json_is_true(json_object_get(o, "builtin"))) {
		snprintf(msg, sizeof(msg), "the built-in policy '%s' cannot be deleted", name);
		api_problem(c, 409, "conflict", msg, NULL);
		goto out;
	}
	/* Its attachments go with it (the schema cascades). */
	api_reg_ctx(c, &x);
	if (api_reg_done(c, moat_reg_policy_delete(&x, name, &ch), &ch))
		api_no_content(c);
out:
	json_decref(o);
}
