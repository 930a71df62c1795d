/*
 * GET /api/v1/events/ws: audit entries, as they are written, to a
 * WebSocket client with audit:read (src/http's WebSocket support; the
 * console's live event view builds on it).
 *
 * Complete mediation: a subscriber keeps the credential it connected with
 * (the Authorization or Cookie header, wiped when it goes) and before each
 * delivery it is authenticated again exactly as a request would be: a
 * revoked or expired token, a logged-out session, a disabled user or a role
 * without audit:read ends the stream (close 1008) before anything more
 * leaves. The stream starts with entries written after it opened; a reader
 * slower than MOAT_HTTP_WS_MAX_QUEUE is closed (1008), not buffered.
 *
 * Subscribers and the cursor are owned by the management thread (every
 * callback here runs on it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api/api_events.h"
#include "api/internal.h"
#include "audit/audit_store.h"
#include "core/log.h"
#include "core/reactor.h"

/* Audit entries read per delivery (once a second); more in one second are
 * announced as a gap (the client can page /api/v1/audit). */
#define EVENTS_BATCH 256u

struct sub {
	struct moat_api *api;
	struct moat_http_ws *ws; /* NULL until open */
	struct sub *prev, *next;
	bool bearer; /* cred is an Authorization value, else a Cookie header */
	char cred[1024];
	char peer[64];
	char actor[96];
	bool closing;
};

/* Owned by the management thread. */
static struct sub *subs;
static int64_t cursor_seq; /* the newest entry delivered (or seen at the first open) */

struct batch {
	char *msgs[EVENTS_BATCH];
	int64_t seq[EVENTS_BATCH];
	size_t n;
};

static moat_err newest_cb(void *arg, const struct moat_audit_entry *e)
{
	*(int64_t *)arg = e->seq;
	return MOAT_OK;
}

static moat_err batch_cb(void *arg, const struct moat_audit_entry *e)
{
	struct batch *b = arg;
	char *entry = NULL, *msg;
	size_t len;

	if (e->seq <= cursor_seq || b->n >= EVENTS_BATCH)
		return MOAT_OK;
	if (moat_audit_entry_json(e, &entry) != MOAT_OK)
		return MOAT_E_NOMEM;
	len = strlen(entry) + 32;
	msg = malloc(len);
	if (msg == NULL) {
		free(entry);
		return MOAT_E_NOMEM;
	}
	snprintf(msg, len, "{\"type\":\"audit\",\"entry\":%s}", entry);
	free(entry);
	b->msgs[b->n] = msg;
	b->seq[b->n] = e->seq;
	b->n++;
	return MOAT_OK;
}

static void sub_unlink(struct sub *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else if (subs == s)
		subs = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

static void ev_open_cb(void *arg, struct moat_http_ws *ws)
{
	struct sub *s = arg;

	s->ws = ws;
	if (subs == NULL) /* the first subscriber: start from the newest entry */
		(void)moat_audit_list(s->api->o.store, 0, NULL, NULL, 0, 0, 1, newest_cb,
				      &cursor_seq);
	s->next = subs;
	if (subs)
		subs->prev = s;
	subs = s;
	log_info("events_stream_open", "actor=%s peer=%s", s->actor, s->peer);
}

static void ev_message_cb(void *arg, struct moat_http_ws *ws, bool text, const uint8_t *data,
			  size_t len)
{
	(void)arg;
	(void)ws;
	(void)text;
	(void)data;
	(void)len; /* the stream only speaks; what a client says is ignored */
}

static void ev_close_cb(void *arg)
{
	struct sub *s = arg;

	sub_unlink(s);
	log_info("events_stream_closed", "actor=%s peer=%s", s->actor, s->peer);
	sodium_memzero(s->cred, sizeof(s->cred));
	free(s);
}

/* Authenticate the subscriber's credential again, as a request would be. */
static bool sub_authorized(struct sub *s)
{
	struct moat_http_header h = {s->bearer ? "authorization" : "cookie", s->cred,
				     strlen(s->cred)};
	struct moat_http_req req;
	struct moat_http_resp resp;
	struct api_call c;
	bool ok;

	memset(&req, 0, sizeof(req));
	req.method = MOAT_HTTP_GET;
	req.path = req.target = "/api/v1/events/ws";
	req.path_len = strlen(req.path);
	req.query = "";
	req.headers = &h;
	req.n_headers = 1;
	req.body = (const uint8_t *)"";
	req.peer = s->peer;
	req.http_minor = 1;
	moat_http_resp_init(&resp);
	memset(&c, 0, sizeof(c));
	c.api = s->api;
	c.req = &req;
	c.resp = &resp;
	c.now = moat_wall_ms();
	ok = api_authenticate(&c) && c.who.kind != AUTH_NONE &&
	     (c.who.perms & P_AUDIT_READ) == P_AUDIT_READ &&
	     !(c.who.kind == AUTH_SESSION && c.who.role == ROLE_ADMIN && !c.who.mfa_enrolled);
	moat_http_resp_free(&resp);
	sodium_memzero(&c.who, sizeof(c.who));
	return ok;
}

void api_events_tick(struct moat_api *api, uint64_t now_ms)
{
	struct batch b;
	struct sub *s, *next;
	size_t i;
	int64_t newest = 0;

	(void)now_ms;
	if (subs == NULL)
		return;
	memset(&b, 0, sizeof(b));
	/* newest first: the EVENTS_BATCH newest entries after the cursor */
	if (moat_audit_list(api->o.store, 0, NULL, NULL, 0, 0, EVENTS_BATCH, batch_cb, &b) !=
	    MOAT_OK)
		goto out;
	if (b.n == 0)
		goto out;
	newest = b.seq[0];
	for (s = subs; s; s = next) {
		next = s->next;
		if (s->closing)
			continue;
		if (!sub_authorized(s)) {
			s->closing = true;
			log_info("events_stream_revoked", "actor=%s peer=%s", s->actor, s->peer);
			moat_http_ws_close(s->ws, 1008, "authorization ended");
			continue;
		}
		if (b.seq[b.n - 1] > cursor_seq + 1) {
			static const char gap[] = "{\"type\":\"gap\"}";
			(void)moat_http_ws_send(s->ws, true, gap, sizeof(gap) - 1);
		}
		for (i = b.n; i-- > 0;) {
			if (moat_http_ws_send(s->ws, true, b.msgs[i], strlen(b.msgs[i])) !=
			    MOAT_OK) {
				s->closing = true;
				moat_http_ws_close(s->ws, 1008, "too slow");
				break;
			}
		}
	}
	cursor_seq = newest;
out:
	for (i = 0; i < b.n; i++)
		free(b.msgs[i]);
}

void api_events_ws(struct api_call *c)
{
	static const struct moat_http_ws_handler proto = {ev_open_cb, ev_message_cb, ev_close_cb,
							  NULL};
	struct moat_http_ws_handler h = proto;
	const char *auth = moat_http_header(c->req, "authorization");
	const char *cookie = moat_http_header(c->req, "cookie");
	const char *cred = auth ? auth : cookie;
	struct sub *s;

	if (cred == NULL || strlen(cred) >= sizeof(s->cred) ||
	    moat_http_header_count(c->req, auth ? "authorization" : "cookie") != 1) {
		api_problem(c, 400, "bad-request", "send one Authorization or Cookie header", NULL);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		api_internal(c, MOAT_E_NOMEM);
		return;
	}
	s->api = c->api;
	s->bearer = auth != NULL;
	snprintf(s->cred, sizeof(s->cred), "%s", cred);
	snprintf(s->peer, sizeof(s->peer), "%s", c->req->peer ? c->req->peer : "");
	snprintf(s->actor, sizeof(s->actor), "%s", c->who.actor);
	h.arg = s;
	c->answered = true;
	if (moat_http_ws_accept(c->req, c->resp, &h) != MOAT_OK) {
		sodium_memzero(s->cred, sizeof(s->cred));
		free(s);
	}
}
