/* /api/v1/audit: the audit log, newest first, with filters; and a full
 * verification of the hash chain and the signed checkpoints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

struct alist {
	json_t *items;
	size_t n;
	int64_t last_seq;
	moat_err rc;
};

static moat_err row_cb(void *arg, const struct moat_audit_entry *e)
{
	struct alist *l = arg;
	char *s = NULL;
	json_t *j;

	if (moat_audit_entry_json(e, &s) != MOAT_OK)
		return MOAT_E_NOMEM;
	j = json_loads(s, 0, NULL);
	free(s);
	if (j == NULL)
		return MOAT_E_NOMEM;
	json_array_append_new(l->items, j);
	l->n++;
	l->last_seq = e->seq;
	return MOAT_OK;
}

static bool time_param(struct api_call *c, const char *key, int64_t *ms)
{
	char buf[64];
	moat_err rc = moat_http_query_get(c->req->query, key, buf, sizeof(buf));

	*ms = 0;
	if (rc == MOAT_E_NOTFOUND)
		return true;
	if (rc != MOAT_OK || !api_parse_time(buf, ms)) {
		char msg[96];
		snprintf(msg, sizeof(msg),
			 "%s must be an RFC 3339 UTC time such as "
			 "2026-11-22T07:00:00Z",
			 key);
		api_problem(c, 400, "bad-request", msg, key);
		return false;
	}
	return true;
}

void api_audit_list(struct api_call *c)
{
	static const char *const extra[] = {"actor", "action", "since", "until"};
	char cursor[32], actor[128], action[64];
	const char *pa = NULL, *pc = NULL;
	struct alist l = {NULL, 0, 0, MOAT_OK};
	int64_t before = 0, since, until;
	size_t limit;
	moat_err rc;

	if (!api_page(c, &limit, cursor, sizeof(cursor), extra, 4))
		return;
	if (cursor[0]) {
		char *end;
		long long v = strtoll(cursor, &end, 10);
		if (*end != '\0' || v < 1) {
			api_problem(c, 400, "bad-request", "bad cursor", "cursor");
			return;
		}
		before = v;
	}
	rc = moat_http_query_get(c->req->query, "actor", actor, sizeof(actor));
	if (rc == MOAT_OK)
		pa = actor;
	else if (rc != MOAT_E_NOTFOUND) {
		api_problem(c, 400, "bad-request", "bad actor filter", "actor");
		return;
	}
	rc = moat_http_query_get(c->req->query, "action", action, sizeof(action));
	if (rc == MOAT_OK)
		pc = action;
	else if (rc != MOAT_E_NOTFOUND) {
		api_problem(c, 400, "bad-request", "bad action filter", "action");
		return;
	}
	if (!time_param(c, "since", &since) || !time_param(c, "until", &until))
		return;
	l.items = json_array();
	rc = moat_audit_list(c->api->o.store, before, pa, pc, since, until, limit + 1, row_cb, &l);
	if (rc != MOAT_OK) {
		json_decref(l.items);
		api_internal(c, rc);
		return;
	}
	api_page_answer(c, l.items, limit, "seq");
}

void api_audit_verify(struct api_call *c)
{
	struct moat_audit_report rep;
	char err[256] = "";
	moat_err rc;

	rc = moat_audit_verify_store(c->api->o.store, c->api->audit.pk, &rep, err, sizeof(err));
	if (rc != MOAT_OK && rc != MOAT_E_CORRUPT) {
		api_internal(c, rc);
		return;
	}
	api_json(c, 200,
		 json_pack("{s:s, s:I, s:s, s:I, s:I, s:I, s:I}", "status",
			   moat_audit_fault_name(rep.fault), "first_bad_seq",
			   (json_int_t)rep.first_bad_seq, "reason", rep.reason, "entries",
			   (json_int_t)rep.entries, "checkpoints", (json_int_t)rep.checkpoints,
			   "sealed_seq", (json_int_t)rep.sealed_seq, "unsealed",
			   (json_int_t)rep.unsealed));
}
