/* /api/v1/sessions: an operator's console/CLI sessions; administrators see
 * and revoke everyone's. The session secret never leaves the cookie. */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "auth/schema.h"

struct sess_list {
	json_t *items;
	size_t n;
	const char *current;
};

static void text(char *dst, size_t len, const struct moat_val *v)
{
	size_t n = v->type == MOAT_VAL_TEXT ? v->len : 0;

	if (n >= len)
		n = len - 1;
	if (n)
		memcpy(dst, v->p, n);
	dst[n] = '\0';
}

static moat_err list_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_auth_session_list_row row;
	struct sess_list *l = arg;
	char sid[24], name[80], peer[64], ua[160];

	if (moat_auth_session_list_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	text(sid, sizeof(sid), &row.sid);
	text(name, sizeof(name), &row.name);
	text(peer, sizeof(peer), &row.peer);
	text(ua, sizeof(ua), &row.user_agent);
	json_array_append_new(l->items,
			      json_pack("{s:s, s:s, s:o, s:o, s:s, s:s, s:b}", "id", sid,
					"username", name, "created_at", api_time(row.created_at.i),
					"last_seen", api_time(row.last_seen.i), "peer", peer,
					"user_agent", ua, "current", strcmp(sid, l->current) == 0));
	l->n++;
	return MOAT_OK;
}

void api_sessions_list(struct api_call *c)
{
	static const char *const extra[] = {"all"};
	struct sess_list l = {NULL, 0, c->who.sid};
	char cursor[32], all[8] = "";
	size_t limit;
	struct moat_val v[3];
	bool everyone = false;
	moat_err rc;

	if (!api_page(c, &limit, cursor, sizeof(cursor), extra, 1))
		return;
	if (moat_http_query_get(c->req->query, "all", all, sizeof(all)) == MOAT_OK) {
		if (strcmp(all, "true") != 0 && strcmp(all, "false") != 0) {
			api_problem(c, 400, "bad-request", "all must be true or false", "all");
			return;
		}
		everyone = strcmp(all, "true") == 0;
	}
	if (everyone && !(c->who.perms & P_SESSIONS_ADMIN)) {
		api_refuse(c, 403, "forbidden", "only administrators see everyone's sessions",
			   "all", "session.list", "all", "role", NULL);
		return;
	}
	l.items = json_array();
	v[0] = everyone ? moat_val_null() : moat_val_text(c->who.name, strlen(c->who.name));
	v[1] = moat_val_text(cursor, strlen(cursor));
	v[2] = moat_val_int((int64_t)limit + 1);
	rc = moat_store_read(c->api->o.store, AUTH_STMT(SESS_LIST), v, 3, list_cb, &l);
	if (rc != MOAT_OK) {
		json_decref(l.items);
		api_internal(c, rc);
		return;
	}
	api_page_answer(c, l.items, limit, "id");
}

static moat_err owner_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_val row;
	char *owner = arg;

	if (moat_auth_name_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	text(owner, 80, &row);
	return MOAT_OK;
}

void api_sessions_delete(struct api_call *c)
{
	char owner[80] = "";
	struct moat_val v = moat_val_text(c->params.v[0], strlen(c->params.v[0]));
	struct moat_store_batch *b = NULL;
	moat_err rc;

	rc = moat_store_read(c->api->o.store, AUTH_STMT(SESS_GET_SID), &v, 1, owner_cb, owner);
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	if (owner[0] == '\0') {
		api_problem(c, 404, "not-found", "no such session", NULL);
		return;
	}
	/* Someone else's session is "not found" unless you may manage it (the
	 * answer does not say it exists; the audit log does). */
	if (strcmp(owner, c->who.name) != 0 && !(c->who.perms & P_SESSIONS_ADMIN)) {
		api_refuse(c, 404, "not-found", "no such session", NULL, "session.revoke",
			   c->params.v[0], "role", json_pack("{s:s}", "username", owner));
		return;
	}
	if ((rc = moat_store_batch_new(&b)) != MOAT_OK ||
	    (rc = moat_store_batch_add(b, AUTH_STMT(SESS_DEL), &v, 1)) != MOAT_OK) {
		moat_store_batch_free(b);
		api_internal(c, rc);
		return;
	}
	rc = api_audit(c, &b, "session.revoke", c->params.v[0], "ok",
		       json_pack("{s:s}", "username", owner));
	if (rc != MOAT_OK) {
		api_internal(c, rc);
		return;
	}
	api_no_content(c);
}
