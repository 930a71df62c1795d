/*
 * The registry service (registry.h): the one place that writes the
 * registry tables. The management API's handlers and `moat cert issue`
 * validate their input and call one function here; it builds the store
 * batch, appends the audit entry to the same batch (moat_audit_log_write:
 * both commit or neither does) and reports which identities the change
 * touched, read before the write where the write would hide them (a
 * deleted group's members, a deleted policy's reach). The broker then
 * re-evaluates only those identities (docs/registry.md).
 *
 * The audit actions and details are the API's contract (docs/audit.md):
 * keys sorted, compact JSON, exactly as before the service existed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "audit/audit_store.h"
#include "core/limits.h"
#include "registry/registry.h"
#include "mqtt/schema.h"
#include "registry/schema.h"

/* A policy.put audit entry carries the rules themselves while they fit well
 * inside MOAT_AUDIT_DETAIL_MAX; beyond that only their number. */
#define AUDIT_RULES_MAX 3000u
_Static_assert(AUDIT_RULES_MAX + 512u <= MOAT_AUDIT_DETAIL_MAX, "policy.put detail fits");

#define BUILTIN_GROUP "devices"

/* ------------------------------------------------------------------ */
/* the change: sorted, unique identities                              */

void moat_reg_change_clear(struct moat_reg_change *ch)
{
	size_t i;

	for (i = 0; i < ch->n; i++)
		free(ch->ids[i]);
	free(ch->ids);
	memset(ch, 0, sizeof(*ch));
}

moat_err moat_reg_change_add(struct moat_reg_change *ch, const char *id)
{
	size_t lo = 0, hi = ch->n, len = strlen(id);
	char *copy;

	if (len == 0 || len > MOAT_DEVICE_ID_MAX)
		return MOAT_E_INVAL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(ch->ids[mid], id);
		if (c == 0)
			return MOAT_OK;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (ch->n == ch->cap) {
		size_t ncap = ch->cap ? ch->cap * 2 : 8;
		char **n = realloc(ch->ids, ncap * sizeof(*n));
		if (n == NULL)
			return MOAT_E_NOMEM;
		ch->ids = n;
		ch->cap = ncap;
	}
	copy = malloc(len + 1);
	if (copy == NULL)
		return MOAT_E_NOMEM;
	memcpy(copy, id, len + 1);
	memmove(&ch->ids[lo + 1], &ch->ids[lo], (ch->n - lo) * sizeof(*ch->ids));
	ch->ids[lo] = copy;
	ch->n++;
	return MOAT_OK;
}

/* ------------------------------------------------------------------ */
/* reads: what a change touches                                        */

static moat_err change_row_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	char id[MOAT_DEVICE_ID_MAX + 1];
	struct moat_val v;

	if (moat_reg_name_row_decode(cols, ncols, &v) != MOAT_OK || v.len == 0 ||
	    v.len >= sizeof(id) || memchr(v.p, '\0', v.len) != NULL)
		return MOAT_E_CORRUPT;
	memcpy(id, v.p, v.len);
	id[v.len] = '\0';
	return moat_reg_change_add(arg, id);
}

/* The rows of st (first column: an identity) added to ch. */
static moat_err touch_rows(const struct moat_reg_ctx *x, struct moat_stmt st, const char *key,
			   struct moat_reg_change *ch)
{
	struct moat_val v = moat_val_text(key, strlen(key));

	return moat_store_read(x->store, st, &v, 1, change_row_cb, ch);
}

static moat_err names_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	json_t *s;

	struct moat_val name;

	if (moat_reg_name_row_decode(cols, ncols, &name) != MOAT_OK)
		return MOAT_E_CORRUPT;
	s = json_stringn((const char *)name.p, name.len);
	return s != NULL && json_array_append_new(arg, s) == 0 ? MOAT_OK : MOAT_E_NOMEM;
}

/* The first column of st's rows as a JSON array. */
static moat_err names_of(const struct moat_reg_ctx *x, struct moat_stmt st, const char *key,
			 json_t **out)
{
	struct moat_val v = moat_val_text(key, strlen(key));
	json_t *arr = json_array();
	moat_err rc;

	*out = NULL;
	if (arr == NULL)
		return MOAT_E_NOMEM;
	rc = moat_store_read(x->store, st, &v, 1, names_cb, arr);
	if (rc != MOAT_OK) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return MOAT_OK;
}

/* ------------------------------------------------------------------ */
/* writes                                                              */

/* Add one statement to *b (created when NULL); on failure *b is freed. */
static moat_err add(struct moat_store_batch **b, struct moat_stmt st, const struct moat_val *v,
		    size_t n)
{
	moat_err rc = MOAT_OK;

	if (*b == NULL)
		rc = moat_store_batch_new(b);
	if (rc == MOAT_OK)
		rc = moat_store_batch_add(*b, st, v, n);
	if (rc != MOAT_OK) {
		moat_store_batch_free(*b);
		*b = NULL;
	}
	return rc;
}

/* Commit b (taken, may be NULL after a failed add: rc says so) with its
 * audit entry; detail is stolen (NULL: "{}"). */
static moat_err commit(const struct moat_reg_ctx *x, moat_err rc, struct moat_store_batch *b,
		       const char *action, const char *target, json_t *detail)
{
	struct moat_audit_event ev;
	char *d = NULL;

	if (rc != MOAT_OK) {
		moat_store_batch_free(b);
		json_decref(detail);
		return rc;
	}
	if (detail != NULL) {
		d = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(detail);
	}
	memset(&ev, 0, sizeof(ev));
	ev.actor = x->actor != NULL && x->actor[0] != '\0' ? x->actor : "anonymous";
	ev.action = action;
	ev.target = target != NULL ? target : "";
	ev.outcome = "ok";
	ev.peer = x->peer != NULL ? x->peer : "";
	ev.detail = d;
	rc = moat_audit_log_write(x->audit, &b, &ev);
	free(d);
	return rc;
}

/* Two text parameters, in order. */
static moat_err add2(struct moat_store_batch **b, struct moat_stmt st, const char *a, const char *c)
{
	struct moat_val v[2];

	v[0] = moat_val_text(a, strlen(a));
	v[1] = moat_val_text(c, strlen(c));
	return add(b, st, v, 2);
}

moat_err moat_reg_register(const struct moat_reg_ctx *x, const char *id, const char *kind,
			   enum moat_id_state state, const char *const *groups, size_t n_groups,
			   bool replaces, struct moat_reg_change *ch)
{
	struct moat_store_batch *b = NULL;
	const char *sname = moat_id_state_name(state);
	struct moat_val v[4];
	json_t *garr = json_array();
	moat_err rc = garr != NULL ? MOAT_OK : MOAT_E_NOMEM;
	size_t i;

	v[0] = moat_val_text(id, strlen(id));
	/* A decommissioned id comes back only as a new device: nothing of the
	 * old one (state, groups, policies, certificates) carries over. */
	if (rc == MOAT_OK && replaces)
		rc = add(&b, REG_STMT(ID_DELETE_DECOMMISSIONED), v, 1);
	v[1] = moat_val_text(kind, strlen(kind));
	v[2] = moat_val_text(sname, strlen(sname));
	v[3] = moat_val_int(x->now);
	if (rc == MOAT_OK)
		rc = add(&b, REG_STMT(ID_INSERT), v, 4);
	for (i = 0; rc == MOAT_OK && i < n_groups; i++) {
		rc = add2(&b, REG_STMT(MEMBER_ADD), id, groups[i]);
		if (rc == MOAT_OK && json_array_append_new(garr, json_string(groups[i])) != 0)
			rc = MOAT_E_NOMEM;
	}
	if (rc == MOAT_OK)
		rc = moat_reg_change_add(ch, id);
	return commit(x, rc, b, "device.register", id,
		      garr == NULL
			  ? NULL
			  : json_pack("{s:s, s:s, s:o, s:b}", "kind", kind, "state", sname,
				      "groups", garr, "replaces_decommissioned", replaces));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add n identities to ch at once: appended, then sorted and made unique
 * (moat_reg_change_add one by one would be quadratic for 100,000). */
static moat_err change_add_many(struct moat_reg_change *ch, const char *const *ids, size_t n)
{
	size_t i, k, len;
	char **grown;

	if (n > ((size_t)-1) / sizeof(*ch->ids) - ch->n)
		return MOAT_E_NOMEM;
	if (ch->n + n > ch->cap) {
		grown = realloc(ch->ids, (ch->n + n) * sizeof(*grown));
		if (grown == NULL)
			return MOAT_E_NOMEM;
		ch->ids = grown;
		ch->cap = ch->n + n;
	}
	for (i = 0; i < n; i++) {
		len = strlen(ids[i]);
		if (len == 0 || len > MOAT_DEVICE_ID_MAX)
			return MOAT_E_INVAL;
		ch->ids[ch->n] = malloc(len + 1);
		if (ch->ids[ch->n] == NULL)
			return MOAT_E_NOMEM;
		memcpy(ch->ids[ch->n], ids[i], len + 1);
		ch->n++;
	}
	qsort(ch->ids, ch->n, sizeof(*ch->ids), cmp_str);
	for (i = k = 0; i < ch->n; i++) {
		if (k > 0 && strcmp(ch->ids[k - 1], ch->ids[i]) == 0)
			free(ch->ids[i]);
		else
			ch->ids[k++] = ch->ids[i];
	}
	ch->n = k;
	return MOAT_OK;
}

moat_err moat_reg_register_many(const struct moat_reg_ctx *x, const char *const *ids, size_t n,
				enum moat_id_state state, const char *group,
				struct moat_reg_change *ch)
{
	struct moat_store_batch *b = NULL;
	const char *sname = moat_id_state_name(state);
	struct moat_val v[4];
	moat_err rc = MOAT_OK;
	size_t i;

	if (n == 0 || n > MOAT_REG_IMPORT_MAX_IDS || group == NULL)
		return MOAT_E_INVAL;
	v[1] = moat_val_text("device", 6);
	v[2] = moat_val_text(sname, strlen(sname));
	v[3] = moat_val_int(x->now);
	for (i = 0; rc == MOAT_OK && i < n; i++) {
		v[0] = moat_val_text(ids[i], strlen(ids[i]));
		rc = add(&b, REG_STMT(ID_INSERT), v, 4);
		if (rc == MOAT_OK)
			rc = add2(&b, REG_STMT(MEMBER_ADD), ids[i], group);
	}
	if (rc == MOAT_OK)
		rc = change_add_many(ch, ids, n);
	/* One entry for the whole import: what it was, not every id. */
	return commit(x, rc, b, "device.import", group,
		      json_pack("{s:I, s:s, s:s, s:[s], s:s, s:s}", "count", (json_int_t)n, "kind",
				"device", "state", sname, "groups", group, "first", ids[0], "last",
				ids[n - 1]));
}

moat_err moat_reg_set_state(const struct moat_reg_ctx *x, const char *id, enum moat_id_state from,
			    enum moat_id_state to, struct moat_reg_change *ch)
{
	struct moat_store_batch *b = NULL;
	const char *sname = moat_id_state_name(to);
	struct moat_val v[3];
	moat_err rc;

	v[0] = moat_val_text(id, strlen(id));
	v[1] = moat_val_text(sname, strlen(sname));
	v[2] = moat_val_int(x->now);
	rc = add(&b, REG_STMT(ID_SET_STATE), v, 3);
	if (rc == MOAT_OK)
		rc = moat_reg_change_add(ch, id);
	return commit(x, rc, b, "device.state", id,
		      json_pack("{s:s, s:s}", "from", moat_id_state_name(from), "to", sname));
}

moat_err moat_reg_decommission(const struct moat_reg_ctx *x, const char *id,
			       struct moat_reg_decom *counts, struct moat_reg_change *ch)
{
	char prefix[MOAT_DEVICE_ID_MAX + 8];
	struct moat_store_batch *b = NULL;
	struct moat_reg_decom n = {0, 0, 0, 0};
	struct moat_val v[3];
	moat_err rc;

	memset(counts, 0, sizeof(*counts));
	if (strlen(id) > MOAT_DEVICE_ID_MAX)
		return MOAT_E_INVAL;
	snprintf(prefix, sizeof(prefix), "d/%s/", id);
	v[0] = moat_val_text(id, strlen(id));
	rc = moat_store_read_int(x->store, REG_STMT(DECOM_COUNTS), v, 1, &n.certs);
	if (rc == MOAT_OK)
		rc = moat_store_read_int(x->store, REG_STMT(DECOM_TOKENS), v, 1, &n.tokens);
	if (rc == MOAT_OK)
		rc = moat_store_read_int(x->store, MQTT_STMT(DECOM_SESSIONS), v, 1, &n.sessions);
	v[1] = moat_val_text(prefix, strlen(prefix));
	if (rc == MOAT_OK)
		rc =
		    moat_store_read_int(x->store, MQTT_STMT(DECOM_RETAINED), &v[1], 1, &n.retained);
	if (rc != MOAT_OK)
		return rc;
	v[1] = moat_val_text("decommissioned", 14);
	v[2] = moat_val_int(x->now);
	rc = add(&b, REG_STMT(ID_SET_STATE), v, 3);
	v[1] = moat_val_int(x->now);
	v[2] = moat_val_text("decommissioned", 14);
	if (rc == MOAT_OK)
		rc = add(&b, REG_STMT(CERT_REVOKE_ID), v, 3);
	if (rc == MOAT_OK)
		rc = add(&b, REG_STMT(ETOKEN_BURN_ID), v, 1);
	if (rc == MOAT_OK)
		rc = moat_reg_change_add(ch, id);
	rc = commit(x, rc, b, "device.decommission", id,
		    json_pack("{s:I, s:I, s:I, s:I}", "certificates_revoked", (json_int_t)n.certs,
			      "tokens_burned", (json_int_t)n.tokens, "sessions",
			      (json_int_t)n.sessions, "retained", (json_int_t)n.retained));
	if (rc == MOAT_OK)
		*counts = n;
	return rc;
}

/* The identity a certificate was issued to. */
static moat_err cert_owner_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_cert_row r;

	if (moat_reg_cert_row_decode(cols, ncols, &r) != MOAT_OK)
		return MOAT_E_CORRUPT;
	return change_row_cb(arg, &r.identity, 1);
}

moat_err moat_reg_cert_revoke(const struct moat_reg_ctx *x, const char *serial, const char *reason,
			      struct moat_reg_change *ch)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v[3];
	moat_err rc;

	if (reason == NULL)
		reason = "unspecified";
	v[0] = moat_val_text(serial, strlen(serial));
	/* The owner is touched: its sessions using this certificate end. */
	rc = moat_store_read(x->store, REG_STMT(CERT_GET), v, 1, cert_owner_cb, ch);
	v[1] = moat_val_int(x->now);
	v[2] = moat_val_text(reason, strlen(reason));
	if (rc == MOAT_OK)
		rc = add(&b, REG_STMT(CERT_REVOKE), v, 3);
	return commit(x, rc, b, "certificate.revoke", serial, json_pack("{s:s}", "reason", reason));
}

moat_err moat_reg_cert_issue(const struct moat_reg_ctx *x, const char *id, bool do_register,
			     const char *kind, const char *group, const struct moat_reg_cert *cert,
			     struct moat_reg_change *ch)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v[6];
	moat_err rc = MOAT_OK;

	v[0] = moat_val_text(id, strlen(id));
	if (kind == NULL)
		kind = "device";
	if (group == NULL)
		group = BUILTIN_GROUP;
	if (do_register) {
		v[1] = moat_val_text(kind, strlen(kind));
		v[2] = moat_val_text("active", 6);
		v[3] = moat_val_int(x->now);
		rc = add(&b, REG_STMT(ID_INSERT), v, 4);
		if (rc == MOAT_OK)
			rc = add2(&b, REG_STMT(MEMBER_ADD), id, group);
	}
	v[0] = moat_val_text(cert->serial, strlen(cert->serial));
	v[1] = moat_val_text(id, strlen(id));
	v[2] = moat_val_text(cert->fingerprint, strlen(cert->fingerprint));
	v[3] = moat_val_int(cert->not_before);
	v[4] = moat_val_int(cert->not_after);
	v[5] = moat_val_int(x->now);
	if (rc == MOAT_OK)
		rc = add(&b, REG_STMT(CERT_PUT), v, 6);
	if (rc == MOAT_OK)
		rc = moat_reg_change_add(ch, id);
	return commit(x, rc, b, "certificate.issue", id,
		      do_register
			  ? json_pack("{s:s, s:s, s:b, s:s, s:s, s:[s]}", "serial", cert->serial,
				      "fingerprint", cert->fingerprint, "registered", 1, "kind",
				      kind, "state", "active", "groups", group)
			  : json_pack("{s:s, s:s, s:b}", "serial", cert->serial, "fingerprint",
				      cert->fingerprint, "registered", 0));
}

/* One membership or direct attachment added or removed. */
static moat_err id_link(const struct moat_reg_ctx *x, struct moat_stmt st, const char *action,
			const char *id, const char *field, const char *name,
			struct moat_reg_change *ch)
{
	struct moat_store_batch *b = NULL;
	bool policy = strcmp(field, "policy") == 0;
	moat_err rc;

	/* memberships: (identity, group); attachments: (policy, identity) */
	rc = policy ? add2(&b, st, name, id) : add2(&b, st, id, name);
	if (rc == MOAT_OK)
		rc = moat_reg_change_add(ch, id);
	return commit(x, rc, b, action, id, json_pack("{s:s}", field, name));
}

moat_err moat_reg_group_add(const struct moat_reg_ctx *x, const char *id, const char *group,
			    struct moat_reg_change *ch)
{
	return id_link(x, REG_STMT(MEMBER_ADD), "device.group_add", id, "group", group, ch);
}

moat_err moat_reg_group_remove(const struct moat_reg_ctx *x, const char *id, const char *group,
			       struct moat_reg_change *ch)
{
	return id_link(x, REG_STMT(MEMBER_DEL), "device.group_remove", id, "group", group, ch);
}

moat_err moat_reg_attach(const struct moat_reg_ctx *x, const char *id, const char *policy,
			 struct moat_reg_change *ch)
{
	return id_link(x, REG_STMT(ATTACH_ID), "device.policy_attach", id, "policy", policy, ch);
}

moat_err moat_reg_detach(const struct moat_reg_ctx *x, const char *id, const char *policy,
			 struct moat_reg_change *ch)
{
	return id_link(x, REG_STMT(DETACH_ID), "device.policy_detach", id, "policy", policy, ch);
}

moat_err moat_reg_group_create(const struct moat_reg_ctx *x, const char *name, const char *desc)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v[3];
	moat_err rc;

	v[0] = moat_val_text(name, strlen(name));
	v[1] = moat_val_text(desc, strlen(desc));
	v[2] = moat_val_int(x->now);
	/* An empty group with no policy changes nobody's access. */
	rc = add(&b, REG_STMT(GROUP_INSERT), v, 3);
	return commit(x, rc, b, "group.create", name, json_pack("{s:s}", "description", desc));
}

moat_err moat_reg_group_delete(const struct moat_reg_ctx *x, const char *name,
			       struct moat_reg_change *ch)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v = moat_val_text(name, strlen(name));
	json_t *policies = NULL;
	size_t before = ch->n;
	moat_err rc;

	/* Members leave the group and its attachments go with it (the schema
	 * cascades): read them first; the entry says how much that touched. */
	rc = touch_rows(x, REG_STMT(REG_GROUP_MEMBERS), name, ch);
	if (rc == MOAT_OK)
		rc = names_of(x, REG_STMT(ATTACHED_TO_GROUP), name, &policies);
	if (rc == MOAT_OK)
		rc = add(&b, REG_STMT(GROUP_DEL), &v, 1);
	if (rc == MOAT_OK && strcmp(name, BUILTIN_GROUP) == 0)
		ch->builtin = true;
	return commit(x, rc, b, "group.delete", name,
		      policies == NULL
			  ? NULL
			  : json_pack("{s:I, s:o}", "members", (json_int_t)(ch->n - before),
				      "policies", policies));
}

static moat_err group_link(const struct moat_reg_ctx *x, bool attach, const char *group,
			   const char *policy, struct moat_reg_change *ch)
{
	struct moat_store_batch *b = NULL;
	moat_err rc;

	rc = add2(&b, attach ? REG_STMT(ATTACH_GROUP) : REG_STMT(DETACH_GROUP), policy, group);
	if (rc == MOAT_OK)
		rc = touch_rows(x, REG_STMT(REG_GROUP_MEMBERS), group, ch);
	if (rc == MOAT_OK && strcmp(group, BUILTIN_GROUP) == 0)
		ch->builtin = true;
	return commit(x, rc, b, attach ? "group.policy_attach" : "group.policy_detach", group,
		      json_pack("{s:s}", "policy", policy));
}

moat_err moat_reg_group_attach(const struct moat_reg_ctx *x, const char *group, const char *policy,
			       struct moat_reg_change *ch)
{
	return group_link(x, true, group, policy, ch);
}

moat_err moat_reg_group_detach(const struct moat_reg_ctx *x, const char *group, const char *policy,
			       struct moat_reg_change *ch)
{
	return group_link(x, false, group, policy, ch);
}

static moat_err builtin_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	bool *builtin = arg;

	struct moat_val group;

	if (moat_reg_name_row_decode(cols, ncols, &group) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if (group.len == strlen(BUILTIN_GROUP) && memcmp(group.p, BUILTIN_GROUP, group.len) == 0)
		*builtin = true;
	return MOAT_OK;
}

/* Everyone policy reaches now: group members and direct attachments. */
static moat_err policy_reach(const struct moat_reg_ctx *x, const char *policy,
			     struct moat_reg_change *ch)
{
	struct moat_val v = moat_val_text(policy, strlen(policy));
	moat_err rc = touch_rows(x, REG_STMT(REG_POLICY_IDS), policy, ch);

	if (rc == MOAT_OK)
		rc = moat_store_read(x->store, REG_STMT(REG_POLICY_GROUPS), &v, 1, builtin_cb,
				     &ch->builtin);
	return rc;
}

moat_err moat_reg_policy_put(const struct moat_reg_ctx *x, const char *name, const char *desc,
			     const char *rules, bool created, struct moat_reg_change *ch)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v[4];
	json_t *detail, *list = json_array();
	const char *p = rules, *nl;
	size_t count = 0;
	moat_err rc = list != NULL ? MOAT_OK : MOAT_E_NOMEM;

	/* The rules as the caller formatted them, one per line. */
	while (rc == MOAT_OK && *p != '\0') {
		nl = strchr(p, '\n');
		if (nl == NULL)
			nl = p + strlen(p);
		if (nl > p) {
			count++;
			if (json_array_append_new(list, json_stringn(p, (size_t)(nl - p))) != 0)
				rc = MOAT_E_NOMEM;
		}
		p = *nl != '\0' ? nl + 1 : nl;
	}
	v[0] = moat_val_text(name, strlen(name));
	v[1] = moat_val_text(desc, strlen(desc));
	v[2] = moat_val_text(rules, strlen(rules));
	v[3] = moat_val_int(x->now);
	if (rc == MOAT_OK)
		rc = add(&b, REG_STMT(POLICY_PUT), v, 4);
	if (rc == MOAT_OK && !created)
		rc = policy_reach(x, name, ch);
	if (list != NULL && strlen(rules) <= AUDIT_RULES_MAX) {
		detail = json_pack("{s:b, s:O}", "created", created, "rules", list);
	} else {
		detail =
		    json_pack("{s:b, s:I}", "created", created, "rule_count", (json_int_t)count);
	}
	json_decref(list);
	return commit(x, rc, b, "policy.put", name, detail);
}

moat_err moat_reg_policy_delete(const struct moat_reg_ctx *x, const char *name,
				struct moat_reg_change *ch)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v = moat_val_text(name, strlen(name));
	moat_err rc;

	/* Its attachments go with it (the schema cascades): who it reached
	 * is read first. */
	rc = policy_reach(x, name, ch);
	if (rc == MOAT_OK)
		rc = add(&b, REG_STMT(POLICY_DEL), &v, 1);
	return commit(x, rc, b, "policy.delete", name, NULL);
}

/* ------------------------------------------------------------------ */
/* enrollment tokens, manufacturer CAs                                 */

moat_err moat_reg_etoken_create(const struct moat_reg_ctx *x, const char *id, const uint8_t *hash,
				size_t hash_len, const char *identity, const char *group,
				int64_t uses, int64_t hours)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v[8];
	moat_err rc;

	v[0] = moat_val_text(id, strlen(id));
	v[1] = moat_val_blob(hash, hash_len);
	v[2] = identity != NULL ? moat_val_text(identity, strlen(identity)) : moat_val_null();
	v[3] = group != NULL ? moat_val_text(group, strlen(group)) : moat_val_null();
	v[4] = moat_val_int(uses);
	v[5] = moat_val_int(x->now + hours * 3600000);
	v[6] = moat_val_text(x->actor, strlen(x->actor));
	v[7] = moat_val_int(x->now);
	rc = add(&b, REG_STMT(ETOKEN_PUT), v, 8);
	return commit(x, rc, b, "enroll_token.create", identity != NULL ? identity : group,
		      json_pack("{s:s, s:I, s:I}", "id", id, "uses", (json_int_t)uses,
				"expires_in_hours", (json_int_t)hours));
}

/* The patterns (one a line) as the JSON array the API was given. */
static json_t *patterns_json(const char *patterns)
{
	json_t *arr = json_array();
	const char *p = patterns, *nl;

	while (arr != NULL && *p != '\0') {
		nl = strchr(p, '\n');
		if (json_array_append_new(
			arr, json_stringn(p, nl != NULL ? (size_t)(nl - p) : strlen(p))) != 0) {
			json_decref(arr);
			return NULL;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return arr;
}

moat_err moat_reg_mca_create(const struct moat_reg_ctx *x, const char *name, const char *pem,
			     const char *fingerprint, const char *patterns, const char *group)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v[6];
	moat_err rc;

	v[0] = moat_val_text(name, strlen(name));
	v[1] = moat_val_text(pem, strlen(pem));
	v[2] = moat_val_text(fingerprint, strlen(fingerprint));
	v[3] = moat_val_int(x->now);
	v[4] = patterns != NULL ? moat_val_text(patterns, strlen(patterns)) : moat_val_null();
	v[5] = group != NULL ? moat_val_text(group, strlen(group)) : moat_val_null();
	rc = add(&b, REG_STMT(MCA_PUT), v, 6);
	return commit(x, rc, b, "manufacturer_ca.create", name,
		      json_pack("{s:s, s:o, s:o}", "fingerprint", fingerprint, "devices",
				patterns != NULL ? patterns_json(patterns) : json_null(), "group",
				group != NULL ? json_string(group) : json_null()));
}

moat_err moat_reg_mca_delete(const struct moat_reg_ctx *x, const char *name)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v = moat_val_text(name, strlen(name));
	moat_err rc;

	rc = add(&b, REG_STMT(MCA_DEL), &v, 1);
	return commit(x, rc, b, "manufacturer_ca.delete", name, NULL);
}

/* ------------------------------------------------------------------ */
/* EST enrollment                                                      */

moat_err moat_reg_est_enroll(const struct moat_reg_ctx *x, const struct moat_reg_enrollment *e,
			     struct json_t *detail)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v[6];
	moat_err rc = MOAT_OK;

	v[0] = moat_val_text(e->id, strlen(e->id));
	if (e->register_now) {
		v[1] = moat_val_text("device", 6);
		v[2] = moat_val_text("active", 6);
		v[3] = moat_val_int(x->now);
		rc = add(&b, REG_STMT(ID_INSERT), v, 4);
		v[1] = moat_val_text(e->group, strlen(e->group));
		if (rc == MOAT_OK)
			rc = add(&b, REG_STMT(MEMBER_ADD), v, 2);
	} else if (e->activate) {
		v[1] = moat_val_text("active", 6);
		v[2] = moat_val_int(x->now);
		rc = add(&b, REG_STMT(ID_SET_STATE), v, 3);
	}
	if (rc == MOAT_OK) {
		v[0] = moat_val_text(e->serial, strlen(e->serial));
		v[1] = moat_val_text(e->id, strlen(e->id));
		v[2] = moat_val_text(e->fingerprint, strlen(e->fingerprint));
		v[3] = moat_val_int(e->not_before);
		v[4] = moat_val_int(e->not_after);
		v[5] = moat_val_int(x->now);
		rc = add(&b, REG_STMT(CERT_PUT), v, 6);
	}
	if (rc == MOAT_OK && e->etoken_id != NULL) {
		v[0] = moat_val_text(e->etoken_id, strlen(e->etoken_id));
		rc = add(&b, REG_STMT(ETOKEN_USE), v, 1);
	}
	return commit(x, rc, b, "est.enroll", e->id, detail);
}

moat_err moat_reg_est_reenroll(const struct moat_reg_ctx *x, const char *id, const char *serial,
			       const char *fingerprint, int64_t not_before, int64_t not_after,
			       const char *old_serial, int64_t grace_s)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v[6];
	moat_err rc;

	v[0] = moat_val_text(serial, strlen(serial));
	v[1] = moat_val_text(id, strlen(id));
	v[2] = moat_val_text(fingerprint, strlen(fingerprint));
	v[3] = moat_val_int(not_before);
	v[4] = moat_val_int(not_after);
	v[5] = moat_val_int(x->now);
	rc = add(&b, REG_STMT(CERT_PUT), v, 6);
	v[0] = moat_val_text(old_serial, strlen(old_serial));
	v[1] = moat_val_int(x->now + grace_s * 1000);
	if (rc == MOAT_OK)
		rc = add(&b, REG_STMT(CERT_SCHEDULE_REVOKE), v, 2);
	return commit(x, rc, b, "est.reenroll", id,
		      json_pack("{s:s, s:s, s:I}", "serial", serial, "replaces", old_serial,
				"old_revoked_in_s", (json_int_t)grace_s));
}

moat_err moat_reg_revoke_due(const struct moat_reg_ctx *x, int64_t *n)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v = moat_val_int(x->now);
	moat_err rc;

	*n = 0;
	rc = moat_store_read_int(x->store, REG_STMT(CERT_DUE_COUNT), &v, 1, n);
	if (rc != MOAT_OK || *n == 0)
		return rc;
	rc = add(&b, REG_STMT(CERT_REVOKE_DUE), &v, 1);
	return commit(x, rc, b, "certificate.revoke", NULL,
		      json_pack("{s:I, s:s}", "count", (json_int_t)*n, "reason", "superseded"));
}
